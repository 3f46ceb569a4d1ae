"""A test-only 8th modality: 1-D multichannel signals from ``.npy`` files.

It plugs in from outside the package, through the registries only (as an entry point's
module would: importing it registers the spec and the adapter), and touches no file in
``toolkit/``. The registry-driven contract tests and the CLI path tests run it like the
bundled modalities.
"""

from __future__ import annotations

from tests.plugin_signal import adapter, modality  # noqa: F401  (register "signal")

NAME = "signal"
