"""The plan's figures from its data files: assumptions (tasks/plan_model.yaml) and measured tokens per task
(tasks/plan_tokens.yaml), and what they give without a model file: each task's token cost, a quant's size."""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path

from harness.datafiles import load_file
from harness.datafiles.plan import PlanModel, PlanTokens
from harness.errors import HarnessError
from harness.paths import TASKS_DIR

MODEL_FILE = TASKS_DIR / "plan_model.yaml"
TOKENS_FILE = TASKS_DIR / "plan_tokens.yaml"


@lru_cache(maxsize=1)
def plan_model(path: Path = MODEL_FILE) -> dict:
    """tasks/plan_model.yaml, validated by its type (harness/datafiles/plan.py ``PlanModel``), as the plan's
    figures; the slice types must be block types the probe slice can build."""
    from harness.models.probe_slice import BLOCKS

    d = load_file(PlanModel, path)
    out = {
        "bpw": {q: float(v) for q, v in d.bits_per_weight.items()},
        "shapes": {
            p: {k: int(v) for k, v in s.model_dump().items() if v is not None} for p, s in d.shapes.items()
        },
        "slice_types": {q: (v[0], v[1]) for q, v in d.slice_types.items()},
        "typical": {t: (float(v.tokens), v.source) for t, v in d.typical_generated.items()},
        **{
            key: {k: (float(v.point), float(v.high), v.source) for k, v in getattr(d, key)}
            for key in ("overhead", "fallback_overhead")
        },
        "extrapolation": (
            float(d.extrapolation.low),
            float(d.extrapolation.high),
            str(d.extrapolation.source),
        ),
        "checked": (float(d.checked.low_params), float(d.checked.high_params), d.checked.source),
        "fitted_runs": list(d.fitted_runs or []),
        "rate_spread": float(d.rate_spread),
        "token_factor": (float(d.prompt_token_factor.low), float(d.prompt_token_factor.high)),
    }
    bad = [q for q, ts in out["slice_types"].items() if any(t not in BLOCKS for t in ts)]
    if bad:
        raise HarnessError(
            f"{Path(path).name}: slice_types of {', '.join(bad)} name a block type the probe slice cannot build "
            f"(known: {', '.join(sorted(BLOCKS))})",
            "restore tasks/plan_model.yaml from git.",
        )
    return out


@lru_cache(maxsize=1)
def plan_tokens(path: Path = TOKENS_FILE) -> dict:
    """tasks/plan_tokens.yaml (validated by ``PlanTokens``): per task/format, the docs, output type, budget and
    measured prompt tokens at each subset size, up to the whole split. Tokens need not grow with the size: a
    small MMLU subset has one question per subject, and a prefix shared by nobody costs each time."""
    d = load_file(PlanTokens, path)
    return {
        key: {
            "docs": v.docs,
            "output": v.output,
            "budget": v.gen_budget,
            "points": [(0, 0), *sorted(v.prompt_tokens.items())],
        }
        for key, v in d.tasks.items()
    }


@dataclasses.dataclass(frozen=True)
class TaskCost:
    """One planned task: what ``planned_ctx`` reads (name, chat, configs) and what its time needs."""

    name: str
    chat: bool
    n: int
    output: str  # generate | loglik
    prompt_tokens: int  # SmolLM2 tokens after prefix sharing, interpolated from the measured points
    gen_point: float  # generated tokens per question (typical)
    gen_budget: int
    configs: tuple = ()
    depth: float = 0.0  # mean context position of a generated token: the decode rate depends on it


def task_costs(entry, tasks: list[str], limit: int | None = None, full: bool = False) -> list[TaskCost]:
    """The plan's tasks for a model without reading data or weights: the subset size as ``plan_task`` picks
    it (``--full``, ``--limit`` or the task's default), the budget as it sets it, the measured tokens."""
    from harness.tasks.settings import task_spec

    table, model = plan_tokens(), plan_model()
    out = []
    for name in tasks:
        spec = task_spec(name, entry.kind)
        if spec.get("requires_kind") and spec["requires_kind"] != entry.kind:
            raise HarnessError(
                f"task {name} is defined for {spec['requires_kind']} models; {entry.name} is a "
                f"{entry.kind} model",
                "pick the instruct variant of the model, or another task.",
            )
        chat = spec.get("chat") == "always" or (spec.get("chat") == "instruct" and entry.is_instruct)
        key = f"{name}/{'chat' if chat else 'plain'}"
        if key not in table:
            raise HarnessError(
                f"no measured token counts for {key}", "run scripts/measure_plan_tokens.py for it."
            )
        t = table[key]
        lim = None if full else (limit if limit is not None else spec.get("default_limit"))
        n = t["docs"] if lim is None else min(int(lim), t["docs"])
        budget = 0
        configs: tuple = ({"output_type": "loglikelihood"},)
        if t["output"] == "generate":
            mgt = spec.get("max_gen_toks")
            # As plan_task sets it: the task's max_gen_toks ("model": the catalogue's), else lm-eval's config's.
            budget = int(entry.gsm8k_max_gen_toks if mgt == "model" else mgt or t["budget"])
            configs = ({"output_type": "generate_until", "generation_kwargs": {"max_gen_toks": budget}},)
        typical = model["typical"].get(name, (0.0, ""))[0] if t["output"] == "generate" else 0.0
        gen = min(typical, budget)
        out.append(
            TaskCost(
                name,
                chat,
                n,
                t["output"],
                _interpolate(t["points"], n),
                gen,
                budget,
                configs,
                _question_tokens(t["points"]) + gen / 2,
            )
        )
    return out


def _question_tokens(points: list[tuple[int, int]]) -> float:
    """One question's whole prompt (its shared prefix + its own suffix), from the two smallest measured subset
    sizes: each question adds its suffix, the prefix is paid once."""
    (n1, t1), (n2, t2) = points[1], points[2]
    suffix = (t2 - t1) / (n2 - n1)
    return max(0.0, t1 - n1 * suffix) + suffix


def _interpolate(points: list[tuple[int, int]], n: int) -> int:
    """Prompt tokens at ``n`` questions, linear between the measured subset sizes."""
    for (n0, t0), (n1, t1) in zip(points, points[1:]):
        if n <= n1:
            return round(t0 + (t1 - t0) * (n - n0) / (n1 - n0))
    return points[-1][1]


def catalogue_size(entry) -> tuple[int | None, str]:
    """A quant's size without touching the network: the catalogue's exact bytes, else the estimate params x
    bits per weight (tasks/plan_model.yaml; its source starts with "≈"), else (None, "unknown"). The one
    size both `harness plan` and `harness models` show for a file that is not here (issue #29)."""
    if entry.files.size:
        return entry.files.size, "catalogue"
    bpw = plan_model()["bpw"].get(entry.quant)
    if bpw is not None and entry.params:
        return int(entry.params * bpw / 8), "≈ params x bits per weight (tasks/plan_model.yaml)"
    return None, "unknown"
