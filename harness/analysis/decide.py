"""What a planned run can decide about one model's claims, before anything is downloaded (issue #25).

For each claim of the model on the planned tasks: the 95% half-width expected at the planned subset (if
the model scores what is claimed), the half-width that decides the claim with the stated power (margin
plus the quant's allowance, ``harness/analysis/power.py``), and the smallest subset that reaches it, or
"not decidable on this benchmark" when not even the full test set does. ``harness plan`` prints these
lines, ``harness plan --decide`` and ``harness bench --decide`` size each task to decide every claim, and
``harness bench`` says in its plan line when the planned subset cannot decide a claim.

Relations between two models are paired differences: their interval depends on how often the two
models disagree, which no plan can know, so they are listed as decided after both runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.analysis import power
from harness.analysis.claims import Claim, allowance, decision_power, load_claims, margin
from harness.datafiles import load_file
from harness.datafiles.data import SplitSizes
from harness.errors import HarnessError
from harness.paths import TASKS_DIR
from harness.tasks.settings import load_settings, task_spec

SIZES_FILE = TASKS_DIR / "split_sizes.yaml"


def split_sizes(task: str, kind: str) -> dict[str, int]:
    """Rows of the task's test split per stratum (MMLU: per subject), without reading any data."""
    spec = task_spec(task, kind)
    ds = spec["dataset"]
    rows = load_file(SplitSizes, SIZES_FILE).splits.get(ds["repo"]) or {}
    strata = load_settings()["subjects"][spec["subjects"]] if spec.get("subjects") else [None]
    out = {}
    for s in strata:
        cfg = ds["config"].format(subject=s) if s else ds["config"]
        if cfg not in rows:
            raise HarnessError(
                f"{SIZES_FILE} has no row count for {ds['repo']} {cfg}",
                "add it (rows of the test split) and rerun.",
            )
        out[s or task] = rows[cfg]
    return out


@dataclass(frozen=True)
class ClaimDecision:
    """One claim of the planned model on a planned task: what the planned run can decide about it."""

    claim: Claim
    decision: power.Decision | None  # None: a paired relation (decided after both runs)

    def text(self) -> str:
        head = f"{self.claim.id} ({self.claim.claim_text()}, margin {margin(self.claim).points:g})"
        if self.decision is None:
            return f"{head}: paired with {self.claim.relation['other_model']}: decided after both runs"
        return f"{head}: {self.decision.text()}"


def _target(claim: Claim) -> float | None:
    """The figure the claim is judged against (points), or None for a relation between two models."""
    if claim.kind == "value":
        return claim.claimed
    rel = claim.relation or {}
    ref = rel.get("reference") or {}
    if rel.get("other_model") or ref.get("value") is None:
        return None
    return ref["value"] - float(rel.get("margin") or 0)


def claim_decisions(
    model: str, kind: str, quant: str, n_params: float | None, tasks: list[str], limits: dict[str, int | None]
) -> list[ClaimDecision]:
    """Every claim of ``model`` on ``tasks`` (value claims and relations), with what a run of ``limits[task]``
    questions (None: the full test) can decide, at ``quant``'s allowance."""
    out = []
    pw = decision_power()
    for c in load_claims():
        if c.model != model or c.task not in tasks or c.kind == "params":
            continue
        if (c.relation or {}).get("other_model"):
            out.append(ClaimDecision(c, None))
            continue
        target = _target(c)
        if target is None:
            continue
        sizes = split_sizes(c.task, kind)
        needed = power.needed_half_width(margin(c).points, allowance(quant, n_params, c.task).points, pw)
        p = min(max(target / 100, 0.0), 1.0)
        out.append(
            ClaimDecision(c, power.decision(p, sizes, limits.get(c.task), c.setting["average"], needed))
        )
    return out


def deciding_limits(decisions: list[ClaimDecision]) -> dict[str, int | None]:
    """Per task, the smallest subset that decides every claim on it (None: the full test, where some claim
    needs it or cannot be decided at all)."""
    out: dict[str, int | None] = {}
    for d in decisions:
        if d.decision is None:
            continue
        t = d.claim.task
        need = d.decision.decide_n
        if need is None or need >= d.decision.n_total:
            out[t] = None
        elif t not in out or (out[t] is not None and need > out[t]):
            out[t] = need
    return out


def render(decisions: list[ClaimDecision], power_: float | None = None) -> list[str]:
    """The plan's lines: a header, then one line per claim."""
    if not decisions:
        return []
    pw = decision_power() if power_ is None else power_
    lines = [
        f"what this run can decide ({pw:.0%} power if the model scores what is claimed; 95% half-widths; "
        "margins: tasks/verdict_margins.yaml, allowances: tasks/quant_allowance.yaml):"
    ]
    lines += [f"  {d.text()}" for d in decisions]
    return lines


def undecided_note(decisions: list[ClaimDecision]) -> str | None:
    """One line for `harness bench`'s plan when the planned subset cannot decide some claim, else None."""
    bad = [d for d in decisions if d.decision is not None and not d.decision.decides]
    if not bad:
        return None
    never = [d for d in bad if d.decision.decide_n is None]
    text = (
        f"note: at this subset {len(bad)} of {len(decisions)} claim(s) about this model cannot be decided "
        f"(e.g. {bad[0].claim.id}: {bad[0].decision.text()})"
    )
    if never:
        text += f"; {len(never)} not even on the full test set"
    return text + "; `--decide` sizes each task to decide them"


def planned_limit(entry, task: str, limit: int | None, full: bool) -> int | None:
    """The subset a task would run (None: the full test), as ``plan_task`` picks it: ``--full``, else
    ``--limit``, else the task's default."""
    return (
        None if full else (limit if limit is not None else task_spec(task, entry.kind).get("default_limit"))
    )


def planned_limits(entry, tasks: list[str], limit: int | None, full: bool) -> dict[str, int | None]:
    """:func:`planned_limit` of every task."""
    return {t: planned_limit(entry, t, limit, full) for t in tasks}


def for_entry(entry, tasks: list[str], limits: dict[str, int | None]) -> list[ClaimDecision]:
    """:func:`claim_decisions` for a catalogue entry (its name, kind, quant and parameter count)."""
    return claim_decisions(entry.name, entry.kind, entry.quant, entry.params or None, tasks, limits)


def decide(entry, tasks: list[str]) -> dict[str, int | None]:
    """``--decide``: per task, the smallest subset that decides every claim of the model on it (None: the
    full test); a task with no claim of this model keeps its default subset."""
    limits = planned_limits(entry, tasks, None, False)
    return limits | deciding_limits(for_entry(entry, tasks, limits))
