"""User-facing errors: what went wrong and what to do.

A plain exception, so that library code (and a notebook importing it) needs no CLI framework; the CLI's
entry point (``harness.cli.main``) is the one place that turns it into a message and an exit status.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit status of the ``harness`` command, in one table (``harness.cli.main`` uses these and no
    other; README documents the same table). 2, 70 and 130 follow sysexits/shell habit: click's usage
    errors are 2, EX_SOFTWARE is 70, 128 + SIGINT is 130."""

    OK = 0  # done
    CHECK_FAILED = 1  # a check ran and said no: `regress` found a regression (click's other errors too)
    USER_ERROR = 2  # bad input, a refused run, a full disk: one message naming it and what to do
    INTERNAL_ERROR = 70  # a bug of the harness: one line, the traceback saved to a file for the report
    INTERRUPTED = 130  # Ctrl-C or SIGTERM: the journals keep what finished; the same command resumes


class HarnessError(Exception):
    """An error the user can act on: ``message`` says what was wrong, ``hint`` what to do about it."""

    exit_code = ExitCode.USER_ERROR

    def __init__(self, message: str, hint: str = ""):
        self.message = message
        self.hint = hint
        super().__init__(message)

    def format_message(self) -> str:
        """The message and its hint, as the CLI prints them."""
        return f"{self.message}\n  -> {self.hint}" if self.hint else self.message
