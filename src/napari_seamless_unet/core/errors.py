"""Exceptions raised by the compute core.

Every error a user can cause is a subclass of :class:`UNetInputError`, which is itself a ``ValueError``,
so that callers (widgets, command line) can show its message verbatim instead of a traceback.
"""

from __future__ import annotations


class UNetInputError(ValueError):
    """Bad input: the message says which input, what is wrong and what to do about it."""


class InvalidShapeError(UNetInputError):
    """An image or tile has a shape the network cannot process."""


class ModelFileError(UNetInputError):
    """A model file is missing, truncated, foreign, from a newer format, or unsafe to load."""


class Cancelled(RuntimeError):
    """Raised by synchronous wrappers when the caller asked to stop; carries what was finished."""

    def __init__(self, message: str = "cancelled", partial=None):
        super().__init__(message)
        self.partial = partial
