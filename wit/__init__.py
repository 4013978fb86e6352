"""wit: the open, reproducible data engine and trainer behind CLIP.

This package is the app layer of the project: the ``wit`` command line and its job registry, the
demo, ``wit doctor``, and the test-world helpers (``wit.testing``: a loopback web with faults,
the GCS emulator, 2-process gloo groups) that the tests, benchmarks and demo share. It may import
every stage; no stage imports it. The stages live in ``query_list``, ``pipeline``, ``dedup`` and
``trainer``, and stand on ``core``.
"""

from core import __version__

__all__ = ["__version__"]
