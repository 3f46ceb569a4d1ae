"""The ``omnipatch`` command (``omnipatch = "omnipatch.cli:main"``): :mod:`omnipatch.cli.main`."""

from __future__ import annotations

from omnipatch.cli.main import build_parser, main

__all__ = ["main", "build_parser"]
