"""The options several ``harness`` commands share, each declared once (name, type, default, help; a command
may word the help for itself), and the ``--tasks`` parser.

Every number a user gives is bounded where it enters, so a huge value is one usage message (exit 2) before
anything loads, never an overflow inside a library.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from harness.errors import HarnessError
from harness.paths import DATA_DIR_ENV, RESULTS_DIR

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

# More threads than this machine has cores only slows llama.cpp down (they contend for the same cores).
THREADS = click.IntRange(0, os.cpu_count() or 1)
# The seed goes to random, numpy (which accepts 0..2**32-1 only), torch and lm-eval: the range every one of
# them accepts.
SEED = click.IntRange(0, 2**32 - 1)
LIMIT = click.IntRange(1, 10_000_000)  # questions per task: far above any test split (MMLU: 14,042)
GPU_LAYERS = click.IntRange(-1, 100_000)  # -1: all; llama.cpp takes an int32
BUDGET = click.FloatRange(min=0, min_open=True, max=100_000)  # hours (over 11 years)
KINDS = click.Choice(["base", "instruct"])


def threads_option(help: str = "CPU threads (0: all cores).") -> Decorator:
    """``--threads``: llama.cpp's CPU threads, at most this machine's cores."""
    return click.option("--threads", type=THREADS, default=0, help=help)


def gpu_layers_option(
    help: str = "Layers to offload (-1: all when the build has a GPU backend).",
) -> Decorator:
    """``--gpu-layers``: layers offloaded to the GPU (-1: all)."""
    return click.option("--gpu-layers", type=GPU_LAYERS, default=-1, help=help)


def parallel_option(help: str = "Generation sequences decoded together.") -> Decorator:
    """``--parallel``: sequences decoded together (8 by default)."""
    return click.option("--parallel", type=click.IntRange(1, 256), default=8, show_default=True, help=help)


def results_dir_option(help: str | None = None, default: str | None = str(RESULTS_DIR)) -> Decorator:
    """``--results-dir``: the folder holding runs/ (results/ by default; ``default=None``: the command picks)."""
    return click.option(
        "--results-dir",
        type=click.Path(file_okay=False),
        default=default,
        show_default=default is not None,
        help=help,
    )


def quant_option(help: str = "Quant (default: the catalogue's).") -> Decorator:
    """``--quant``: a quant of the catalogue model (each command says what it does without one)."""
    return click.option("--quant", help=help)


def tasks_option(help: str = "Comma-separated: gsm8k, mmlu, mmlu_loglik, mmlu_cot.") -> Decorator:
    """``--tasks/-t``: comma-separated task names (checked by :func:`parse_tasks`)."""
    return click.option("--tasks", "-t", default="gsm8k,mmlu", show_default=True, help=help)


def limit_option(help: str = "Seeded subset size per task (MMLU: stratified over subjects).") -> Decorator:
    """``--limit``: questions per task."""
    return click.option("--limit", type=LIMIT, help=help)


def full_option(help: str = "Run every test question (ignores --limit).") -> Decorator:
    """``--full``: every test question."""
    return click.option("--full", is_flag=True, help=help)


def seed_option(help: str = "Subset seed.", type: click.ParamType = SEED) -> Decorator:
    """``--seed``: the seed of a subset or sample (0 by default)."""
    return click.option("--seed", type=type, default=0, show_default=True, help=help)


def data_dir_option(
    help: str = f"Local Hub-layout data mirror (or ${DATA_DIR_ENV}); default: the Hub.",
) -> Decorator:
    """``--data-dir``: a local Hub-layout data mirror."""
    return click.option("--data-dir", type=click.Path(file_okay=False), help=help)


def kind_option(
    help: str = "Base (plain few-shot) or instruct (chat template). Default: the catalogue's, else "
    "the GGUF's.",
) -> Decorator:
    """``--kind``: base or instruct, overriding the catalogue and the GGUF."""
    return click.option("--kind", type=KINDS, help=help)


def budget_option(
    help: str = "Hours the run may take: refused before it starts when `harness plan` estimates more.",
) -> Decorator:
    """``--budget``: hours the run may take."""
    return click.option("--budget", type=BUDGET, help=help)


def decide_option(help: str) -> Decorator:
    """``--decide``: each task sized to the subset that decides the model's claims."""
    return click.option("--decide", is_flag=True, help=help)


def parse_tasks(spec: str) -> list[str]:
    """``--tasks a,b``: known names, each once, at least one (checked before any model is touched)."""
    from harness.tasks.settings import task_names

    names = [t.strip() for t in spec.split(",") if t.strip()]
    known = task_names()
    if not names:
        raise HarnessError("--tasks names no task", f"choose from: {', '.join(known)}.")
    twice = sorted({t for t in names if names.count(t) > 1})
    if twice:
        raise HarnessError(f"--tasks lists {', '.join(twice)} more than once", "name each task once.")
    unknown = [t for t in names if t not in known]
    if unknown:
        raise HarnessError(
            f"unknown task(s) {', '.join(unknown)} in --tasks", f"choose from: {', '.join(known)}."
        )
    return names


def echo_err(line: str) -> None:
    """One line on stderr (progress and verdicts; stdout is kept for the command's result)."""
    click.echo(line, err=True)
