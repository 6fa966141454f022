"""User errors: something the user must fix (a setting, a file, a folder), as opposed to a bug in our code.

The CLI prints a ``UserError`` as one line and exits 2; any other exception is a bug and shows its traceback
(exit 1). Domain packages derive their own error types from ``UserError`` (ImageDataError, CorpusError, ...)
and raise ``ConfigError`` for a bad task setting, naming the key and the valid choices.
"""
from __future__ import annotations


class UserError(Exception):
    """A bad input the user can fix; the message says which key, file or folder, and what to do."""


class ConfigError(UserError, ValueError):
    """A config key, value, preset or file the user must fix."""


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, corrupt, or does not fit the model."""


class RunDirError(UserError):
    """A run directory that cannot be used as asked (a file, another run's folder, not writable, busy)."""


class ResultsFileError(UserError):
    """A results.json that cannot be read or merged."""


class NonFiniteError(UserError):
    """Too many consecutive steps with a NaN/inf loss or gradient: the settings or the data need a change."""
