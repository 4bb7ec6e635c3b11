"""User-facing errors: what went wrong and what to do.

A plain exception, so that library code (and a notebook importing it) needs no CLI framework; the CLI's
entry point (``harness.cli.main``) is the one place that turns it into a message and an exit status.
"""

from __future__ import annotations


class HarnessError(Exception):
    """An error the user can act on: ``message`` says what was wrong, ``hint`` what to do about it."""

    exit_code = 2

    def __init__(self, message: str, hint: str = ""):
        self.message = message
        self.hint = hint
        super().__init__(message)

    def format_message(self) -> str:
        """The message and its hint, as the CLI prints them."""
        return f"{self.message}\n  -> {self.hint}" if self.hint else self.message
