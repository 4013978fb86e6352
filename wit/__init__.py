"""wit: the open, reproducible data engine and trainer behind CLIP.

This package is the common front of the project: the ``wit`` command line, the one logging
set-up, the local Beam runner pin, ``wit doctor``, and the test-world helpers (a loopback web
with faults, the GCS emulator, 2-process gloo groups) that the tests, benchmarks and demo share.
The stages themselves live in ``query_list``, ``pipeline``, ``dedup`` and ``trainer``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
