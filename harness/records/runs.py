"""The run records of a results folder: listing, merging records from several machines, de-duplication.

Two records are the same measurement when ``harness.records.identity`` says so (weights, task config with its
data and sample ids, every score-changing setting); only the newest of them is kept, so a run copied
from another machine, or repeated, is never counted twice. A file that is not a readable record (empty,
invalid JSON, a key missing, another schema) is skipped and listed, never a reason to stop: one bad
file must not block every other result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.records import identity
from harness.records.record import UnreadableRecord, read_record
from harness.records.schema import RunRecord


@dataclass(frozen=True)
class Run:
    """One run record (typed: harness.records.schema) plus the file it came from."""

    path: Path
    rec: RunRecord

    @property
    def model(self) -> str:
        return self.rec.model.name

    @property
    def quant(self) -> str:
        return self.rec.model.quant

    @property
    def task(self) -> str:
        return self.rec.task.name

    @property
    def n(self) -> int:
        return self.rec.task.n

    def identity(self) -> dict:
        """What makes two runs the same measurement (harness.records.identity)."""
        return identity.of_record(self.rec)

    def sort_key(self) -> tuple:
        return (self.rec.created, self.rec.run_id)


def record_paths(results_dir: Path) -> list[Path]:
    """Run record files under RESULTS_DIR/runs (lm-eval's own JSON beside them and hidden temp files excluded)."""
    runs = Path(results_dir) / "runs"
    return sorted(
        p
        for p in runs.glob("*.json")
        if not p.name.endswith(".lm_eval.json") and not p.name.startswith(".") and p.is_file()
    )


@dataclass
class RunSet:
    """The complete runs of a results folder, de-duplicated, and what was left out."""

    runs: list[Run]
    duplicates: int = 0
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # (file, why)

    def warning(self) -> str | None:
        """One line naming the files that were skipped (None when there were none)."""
        if not self.unreadable:
            return None
        shown = "; ".join(f"{p.name}: {why}" for p, why in self.unreadable[:3])
        more = f" (and {len(self.unreadable) - 3} more)" if len(self.unreadable) > 3 else ""
        return f"warning: skipped {len(self.unreadable)} unreadable run record(s): {shown}{more}"


def load_runs(results_dir: Path, names: set[str] | None = None) -> RunSet:
    """Complete runs under results_dir, de-duplicated (newest kept), with the unreadable files listed.
    ``names``: only the record files of these names (what a published manifest lists)."""
    best: dict[str, Run] = {}
    total = 0
    unreadable: list[tuple[Path, str]] = []
    for p in record_paths(results_dir):
        if names is not None and p.name not in names:
            continue
        try:
            run = Run(p, read_record(p))
        except UnreadableRecord as exc:
            unreadable.append((p, exc.reason))
            continue
        if run.rec.status != "complete":
            continue
        total += 1
        k = identity.key(run.identity())
        if k not in best or run.sort_key() > best[k].sort_key():
            best[k] = run
    runs = sorted(best.values(), key=lambda r: (r.model, r.quant, r.task, r.sort_key()))
    return RunSet(runs, total - len(runs), unreadable)


def best_run(runs: list[Run], model: str, task: str, quant: str | None = None) -> Run | None:
    """The most informative run of a model on a task: the most samples, then the newest."""
    cands = [r for r in runs if r.model == model and r.task == task and (quant is None or r.quant == quant)]
    return max(cands, key=lambda r: (r.n, r.sort_key()), default=None)
