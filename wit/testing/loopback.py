"""A guard that keeps a test process on loopback: ``guard()`` installs an audit hook that
refuses (``PermissionError``) every socket connection to an address outside 127.0.0.0/8 and
::1, and remembers what it refused in :data:`refused`.

Tests of the crawl's address policy rely on it twice: a refusal that the crawler failed to make
is not sent anywhere, and the test sees it in ``refused``. Audit hooks cannot be removed, so the
guard is process-wide and installed once (``tests/conftest.py`` does it for the whole suite).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading

refused: list[tuple[str, int]] = []
_installed = threading.Event()


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback or host in ("0.0.0.0", "::")
    except ValueError:
        pass
    try:  # a name: every address it stands for must be loopback
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return True  # it reaches nothing
    return all(_loopback(info[4][0]) for info in infos)


def _hook(event: str, args) -> None:
    if event != "socket.connect":
        return
    sock, address = args
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return
    host = str(address[0])
    if not _loopback(host):
        refused.append((host, address[1] if len(address) > 1 else 0))
        raise PermissionError(f"test guard: connection to {host} refused (tests stay on loopback)")


def guard() -> None:
    if not _installed.is_set():
        sys.addaudithook(_hook)
        _installed.set()
