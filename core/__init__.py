"""wit's core: what every stage stands on and nothing above it.

Storage (local paths and ``gs://`` alike), the one logging set-up, Beam helpers and the local
runner, and the on-disk contracts passed between stages. Core imports no stage (``query_list``,
``pipeline``, ``dedup``, ``trainer``) and no part of the app (``wit``); import-linter checks it in
``make test`` (``.importlinter``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
