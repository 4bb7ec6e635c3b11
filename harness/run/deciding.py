"""The claims side of ``harness bench`` and ``harness plan``: ``--decide``'s subset sizes, the plan's claims
section and the bench's note on the claims its subsets cannot decide (the maths: harness/analysis/decide.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from harness.errors import HarnessError
from harness.models.catalogue import UNDECIDED, ModelEntry


def claims_entry(entry: ModelEntry, kind: str | None) -> ModelEntry | None:
    """The entry the claims sections judge: ``--kind`` applied; None for a GGUF whose kind is still undecided
    (no catalogue model, so no claim is about it)."""
    entry = replace(entry, kind=kind) if kind else entry
    return None if entry.kind == UNDECIDED else entry


def deciding_limits(
    model: str, quant: str | None, kind: str | None, tasks: list[str], limit: int | None, full: bool
) -> tuple[tuple[str, int | None], ...]:
    """``--decide``: each task's subset that decides every claim of the model (refused with --limit/--full, and
    for a model no claim is about)."""
    from harness.analysis.decide import decide
    from harness.models.catalogue import resolve

    if limit is not None or full:
        raise HarnessError(
            "--decide sizes each task itself: it cannot be combined with --limit or --full",
            "drop --limit/--full, or drop --decide.",
        )
    entry = claims_entry(resolve(model, quant), kind)
    if entry is None:
        raise HarnessError(
            f"--decide needs a catalogue model (claims are about catalogue models); {model} is not one",
            "run with --limit N or --full.",
        )
    limits = decide(entry, tasks)
    return tuple(limits.items())


def plan_claims(
    model: str,
    quant: str | None,
    kind: str | None,
    tasks: list[str],
    limit: int | None,
    full: bool,
    decide: bool,
) -> tuple[list[str], int | None, bool]:
    """``harness plan``'s claims section, and the (limit, full) its time estimate uses: as given, or with
    ``decide`` the largest of the deciding sizes (an upper bound)."""
    limits = dict(deciding_limits(model, quant, kind, tasks, limit, full)) if decide else None
    lines = _decision_lines(model, quant, kind, tasks, limit, full, limits)
    if limits:  # one subset size for the time estimate: the largest (an upper bound)
        full = any(v is None for v in limits.values())
        limit = None if full else max(limits.values())
    return lines, limit, full


def _decision_lines(
    model: str,
    quant: str | None,
    kind: str | None,
    tasks: list[str],
    limit: int | None,
    full: bool,
    limits: dict[str, int | None] | None,
) -> list[str]:
    """Each claim's expected half-width and decide-size (none for a GGUF that is no catalogue model)."""
    from harness.analysis.decide import for_entry, planned_limits, render
    from harness.models.catalogue import resolve

    entry = claims_entry(resolve(model, quant), kind)
    if entry is None:
        return []
    decided = limits is not None
    if limits is None:
        limits = planned_limits(entry, tasks, limit, full)
    lines = render(for_entry(entry, tasks, limits))
    if decided:
        sizes = ", ".join(f"{t} {'full' if n is None else n}" for t, n in limits.items())
        lines.insert(0, f"--decide: {sizes} (the time above is for the largest, an upper bound)")
    return lines


def undecided_line(
    entry: ModelEntry,
    kind: str | None,
    tasks: tuple[str, ...],
    limit_of: Callable[[str], tuple[int | None, bool]],
) -> str | None:
    """The bench plan line's companion: which claims of this model the planned subsets cannot decide (None:
    every claim can be decided, or no claim is about it). ``limit_of(task)`` -> (limit, full)."""
    from harness.analysis.decide import for_entry, planned_limit, undecided_note

    entry = claims_entry(entry, kind)
    if entry is None:
        return None
    limits = {t: planned_limit(entry, t, *limit_of(t)) for t in tasks}
    return undecided_note(for_entry(entry, list(tasks), limits)) or None
