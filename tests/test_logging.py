"""The one logging set-up."""

from __future__ import annotations

import logging

import pytest

from core.logs import progress, resolve_level, setup_logging


def test_levels(monkeypatch):
    monkeypatch.delenv("WIT_LOG_LEVEL", raising=False)
    monkeypatch.setenv("WIT_QUIET", "1")
    assert resolve_level() == logging.WARNING
    monkeypatch.setenv("WIT_QUIET", "0")
    assert resolve_level() == logging.INFO
    assert resolve_level("info", verbose=1) == logging.DEBUG
    assert resolve_level("DEBUG", quiet=True) == logging.WARNING
    monkeypatch.setenv("WIT_LOG_LEVEL", "ERROR")
    assert resolve_level() == logging.ERROR
    with pytest.raises(ValueError, match="unknown log level"):
        resolve_level("loud")


def test_setup_is_idempotent_and_quiets_libraries():
    root = logging.getLogger()
    before = len(root.handlers)
    setup_logging("INFO")
    setup_logging("INFO")
    assert len(root.handlers) <= before + 1
    assert logging.getLogger("apache_beam").level == logging.WARNING
    setup_logging("DEBUG")
    assert logging.getLogger("apache_beam").level == logging.DEBUG
    setup_logging("WARNING")


def test_progress_passes_items_through(monkeypatch):
    monkeypatch.setenv("WIT_PROGRESS", "1")
    monkeypatch.setenv("WIT_QUIET", "0")
    assert list(progress(range(5), desc="x", total=5)) == [0, 1, 2, 3, 4]
    monkeypatch.setenv("WIT_QUIET", "1")
    assert list(progress(iter("abc"), desc="y")) == ["a", "b", "c"]
