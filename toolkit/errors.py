"""User-facing errors.

Anything a user can cause (a missing file, an unknown name, a bad config key, a sample of
the wrong shape) raises :class:`OmnipatchError` with a one-line message that names the
culprit and the reason. The CLI prints it as one line and exits with code 2.
"""

from __future__ import annotations


class OmnipatchError(Exception):
    """A user mistake or bad input, reported as one clear line."""


class BadSampleError(OmnipatchError):
    """One sample (file, row, time step) cannot be read or is malformed.

    Datasets raise this so that a run with ``on_bad_sample="skip"`` can skip and report it.
    """

    def __init__(self, source: str, reason: str):
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{source}: {reason}")
