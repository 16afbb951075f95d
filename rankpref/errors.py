"""Errors that rankpref raises for bad input.

Every error names where the problem is (a file, a line, a field) so a user can fix it
without reading a traceback. The CLI prints these as one line and exits with status 2.
"""

from __future__ import annotations

from pathlib import Path


class RankprefError(Exception):
    """Base class for every error rankpref raises on purpose."""


class DataError(RankprefError):
    """Bad input data: names the file and, where known, the line and field."""

    def __init__(self, message: str, path: str | Path | None = None,
                 line: int | None = None, field: str | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ConfigError(RankprefError):
    """A config file or override that does not validate."""


class UnknownIdError(RankprefError):
    """An item or user id that the model's vocabulary does not know."""


class RunInterrupted(RankprefError):
    """Training stopped by SIGINT (Ctrl-C) or SIGTERM. What finished epochs wrote is kept;
    the CLI prints this as one line and exits with 128 + the signal number."""

    def __init__(self, signum: int, epochs_done: int, checkpoint: str | Path | None):
        import signal

        self.signum = int(signum)
        self.epochs_done = epochs_done
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        name = signal.Signals(self.signum).name
        if self.checkpoint is not None:
            then = (f"{self.checkpoint} holds epoch {epochs_done}; the same command resumes "
                    f"from epoch {epochs_done + 1}")
        else:
            then = "no checkpoint was written (nothing to resume)"
        super().__init__(f"{name} during epoch {epochs_done + 1}: training stopped; {then}")
