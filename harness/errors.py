"""User-facing errors: what went wrong and what to do, shown without a traceback by the CLI."""

from __future__ import annotations

import click


class HarnessError(click.ClickException):
    """An error the user can act on. ``hint`` says what to do about it."""

    exit_code = 2

    def __init__(self, message: str, hint: str = ""):
        self.hint = hint
        super().__init__(message)

    def format_message(self) -> str:
        return f"{self.message}\n  -> {self.hint}" if self.hint else self.message
