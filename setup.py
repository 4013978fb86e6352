"""Setuptools entry point.

The metadata lives in ``pyproject.toml``; this file exists because Dataflow stages a job's
code with ``--setup_file ./setup.py`` (it runs ``python setup.py sdist`` and installs the
result on every worker).
"""

from setuptools import setup

setup()
