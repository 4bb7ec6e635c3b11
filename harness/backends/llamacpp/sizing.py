"""The engine's context sizing: the KV cells it allocates for planned tasks and their bytes. One definition,
used by the engine's context (harness/backends/llamacpp/context.py) and by the memory preflight and
``harness plan`` that judge it before a model is loaded; the engine checks every context it creates
against it (harness/backends/llamacpp/log_hook.py ``check_kv_allocation``).

Light on purpose: the engine process imports it (no yaml until the prompt-length table is read).
"""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache
from pathlib import Path

from harness.paths import TASKS_DIR

PROMPT_TOKENS_FILE = TASKS_DIR / "prompt_tokens.yaml"


def round_ctx(n_needed: int) -> int:
    """A context's size in cells as the engine creates it (``LlamaContext.ensure``): a multiple of 1024, at
    least 1024. One definition: the preflight sizes exactly what the engine allocates."""
    return max(1024, -(-n_needed // 1024) * 1024)


def kv_cache_bytes(n_layers: int, n_kv_heads: int, head_dim: int, n_ctx: int, bytes_per: int = 2) -> int:
    """f16 K and V for every layer and cell."""
    return 2 * n_layers * n_kv_heads * head_dim * n_ctx * bytes_per


@dataclasses.dataclass(frozen=True)
class PromptBounds:
    """Longest prompt per task and prompt format, measured (tasks/prompt_tokens.yaml), with a margin."""

    longest: dict[str, int]
    factor: float
    plus: int
    unknown: int

    def bound(self, task: str, chat: bool) -> int:
        """The longest prompt ``task`` can have in this prompt format, with the margin (or the unknown-task bound)."""
        got = self.longest.get(f"{task}/{'chat' if chat else 'plain'}")
        return self.unknown if got is None else math.ceil(got * self.factor) + self.plus


@lru_cache(maxsize=1)
def prompt_bounds(path: Path = PROMPT_TOKENS_FILE) -> PromptBounds:
    """tasks/prompt_tokens.yaml, validated by its type (harness/datafiles/plan.py ``PromptTokens``)."""
    # Here, not at the top: the engine process imports this module, and neither pydantic nor yaml.
    from harness.datafiles import load_file
    from harness.datafiles.plan import PromptTokens

    d = load_file(PromptTokens, path)
    longest = {k: v.longest for k, v in d.tasks.items()}
    return PromptBounds(longest, float(d.margin.factor), d.margin.plus, d.unknown_task)


def _gen_budget(plan) -> int:
    """A generation task's token budget per request: the task's ``max_gen_toks`` (the lm-eval backend's
    default, 256, when the config names none: harness/backends/llamacpp/lm_model.py)."""
    budgets = [int((c.get("generation_kwargs") or {}).get("max_gen_toks", 256)) for c in plan.configs]
    return max(budgets or [256])


def planned_ctx(plans: list, settings, longest: dict[str, int] | None = None) -> dict:
    """KV cells of the largest context the engine will create for ``plans`` (it holds one at a time).

    Mirrors the engine (harness/backends/llamacpp/generation.py, loglik.py, speed_probe.py): generation with
    ``gen_streams`` gives each of ``n_parallel`` slots plus the prefix sequence its own stream of ``longest
    prompt + budget + 1`` cells rounded up to 1024; without it one unified cache of ``n_parallel * (prompt +
    budget) + n_batch`` (a bound: the engine subtracts the shared prefix); log-likelihood one cache of
    ``longest branch + n_batch`` (``n_branches + 1`` streams when several branches share a batch); the speed
    probe its own small one. ``longest`` maps a task to its exact longest prompt in tokens; by default the
    measured bound of tasks/prompt_tokens.yaml. Returns the cells and how each task was sized.
    """
    n_par, n_batch = settings.n_parallel, settings.n_batch
    probe = round_ctx(
        512 + n_par * 17 + n_batch
    )  # harness/backends/llamacpp/speed_probe.py: 512-token prompt, 16 steps
    per_task = {}
    for plan in plans:
        prompt = (longest or {}).get(plan.name)
        exact = prompt is not None
        if prompt is None:
            prompt = prompt_bounds().bound(plan.name, plan.chat)
        if any(c.get("output_type") == "generate_until" for c in plan.configs):
            budget = _gen_budget(plan)
            if settings.gen_streams:
                cells = round_ctx(prompt + budget + 1) * (n_par + 1)
            else:
                cells = round_ctx(n_par * (prompt + budget) + n_batch)
        else:
            budget = 0
            multi = settings.max_branches > 1
            cells = round_ctx(prompt + n_batch) * (settings.max_branches + 1 if multi else 1)
        per_task[plan.name] = {"prompt_tokens": prompt, "exact": exact, "gen_budget": budget, "cells": cells}
    return {"cells": max([probe, *(t["cells"] for t in per_task.values())]), "tasks": per_task}
