"""``harness`` command line: noun-verb commands, user errors as one clear message (no traceback).

This module is the group and the one place errors become messages and exit codes (:func:`main`); the commands
are in ``cmd_models.py`` (models, download, verify), ``cmd_bench.py`` (bench, plan, speed, rpc-worker) and
``cmd_results.py`` (scores, compare, publish, regress, audit), their shared options in ``options.py``. A
command parses its options and calls the layers below; nothing here knows how a bench runs.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click

from harness.cli import cmd_bench, cmd_models, cmd_results
from harness.errors import ExitCode, HarnessError
from harness.redact import redact_text


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llama-bench-harness")
def cli() -> None:
    """Re-measure Llama benchmark claims (GSM8K, MMLU) on quantized GGUF weights with llama.cpp."""
    _check_env_numbers()


# Numbers that libraries read from the environment when imported (huggingface-hub: int(); a bad value is a
# ValueError at import, deep inside whichever command first needs the Hub). Checked first, one message each.
ENV_SECONDS = ("HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_ETAG_TIMEOUT")


def _check_env_numbers() -> None:
    for name in ENV_SECONDS:
        raw = os.environ.get(name, "").strip()
        if raw and not (raw.isdigit() and 0 < int(raw) <= 86_400):
            shown = raw if len(raw) <= 40 else raw[:20] + "..."
            raise HarnessError(
                f"{name}={shown!r} is not a whole number of seconds (1 to 86400)",
                f"set {name} to e.g. 10, or unset it.",
            )


for _module in (cmd_models, cmd_bench, cmd_results):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def _terminate(signum, frame) -> None:
    """SIGTERM ends a run like Ctrl-C: the journal keeps what finished and the rerun resumes."""
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: every way out is one message and an exit status from :class:`ExitCode`.

    HarnessError -> its message, exit 2; Ctrl-C or SIGTERM -> exit 130 without a traceback. Anything else is
    a bug of the harness: one line on stderr, the traceback in a file for the report (``HARNESS_DEBUG=1``
    shows it instead), exit 70 (EX_SOFTWARE).

    First, the secrets the run knows are collected and stdout/stderr wrapped so that nothing printed shows
    them (harness.redact), and a duplicate of the real terminal's fd 2 is kept: the final message reaches
    it even when stderr was redirected to ``console.log`` and that disk is full (harness.run.console)."""
    from harness.redact import collect_secrets, wrap_streams
    from harness.run.console import keep_terminal

    signal.signal(signal.SIGTERM, _terminate)
    collect_secrets(sys.argv[1:])
    wrap_streams()
    keep_terminal()
    _finish(_run())


def _run() -> int:
    """Run the command line; the exit status (its final message already printed)."""
    from harness.run.console import last_word

    try:
        cli.main(standalone_mode=False)
    except HarnessError as exc:  # the one place a user-facing error becomes a message and an exit status
        last_word(f"Error: {exc.format_message()}")
        return exc.exit_code
    except click.ClickException as exc:  # click's own usage errors (bad option values, unknown commands)
        try:
            exc.show()
        except OSError:
            last_word(f"Error: {exc.format_message()}")
        return exc.exit_code
    except click.exceptions.Abort:
        last_word("aborted")
        return ExitCode.INTERRUPTED
    except KeyboardInterrupt:
        last_word("interrupted")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `harness scores | head`: the reader left; nothing to say
        return ExitCode.OK
    except SystemExit as exc:  # `regress` exits 1 after its table; click's --help/--version exit 0
        code = exc.code
        return code if isinstance(code, int) else (ExitCode.OK if code is None else ExitCode.CHECK_FAILED)
    except Exception as exc:
        if os.environ.get("HARNESS_DEBUG"):
            raise
        log = _save_traceback()
        last_word(
            f"internal error: {type(exc).__name__}: {redact_text(str(exc))[:300]}\n"
            f"  -> this is a bug in the harness; please report it with {log or 'HARNESS_DEBUG=1 output'}."
        )
        return ExitCode.INTERNAL_ERROR
    return ExitCode.OK


def _finish(code: int) -> None:
    """Exit with ``code``. Python flushes stdout/stderr at exit and turns a failed flush into status 120,
    which would hide the real status (a full disk, a closed pipe): flush here, and when that fails leave
    without Python's exit flush (``os._exit``), the message already on the terminal."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        os._exit(int(code))
    sys.exit(int(code))


def _save_traceback() -> str | None:
    """Write the current traceback (redacted) to the cache folder; return its path, or None."""
    import tempfile
    import traceback

    text = redact_text(traceback.format_exc())
    try:
        folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llama-bench-harness"
        folder.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="error-", suffix=".txt", dir=folder)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path
    except OSError:
        return None
