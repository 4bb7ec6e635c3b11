"""The run records of a results folder: listing, merging records from several machines, de-duplication.

Two records measure the same thing when they share the weights (sha256; for a server run, the server
and its model), the task config hash (which
covers prompts, data and sample ids) and the backend's batching scheme; only the newest of them is
kept, so a run copied from another machine, or repeated, is never counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.record import read_record


@dataclass(frozen=True)
class Run:
    """One run record plus the file it came from."""

    path: Path
    rec: dict

    @property
    def model(self) -> str:
        return self.rec["model"]["name"]

    @property
    def quant(self) -> str:
        return self.rec["model"]["quant"]

    @property
    def task(self) -> str:
        return self.rec["task"]["name"]

    @property
    def n(self) -> int:
        return int(self.rec["task"]["n"])

    def identity(self) -> tuple:
        """What makes two runs the same measurement (see module docstring)."""
        backend = self.rec.get("backend", {})
        settings = backend.get("settings", {})
        # A server run has no local file to hash: the weights are named by the server and its model.
        server = backend.get("server") or {}
        weights = self.rec["model"].get("sha256") or (server.get("endpoint"), server.get("model_id"),
                                                       server.get("model_file"), self.rec["model"]["name"])
        return (weights, self.rec["task"]["config_hash"], settings.get("scheme"), settings.get("flash_attn"))

    def sort_key(self) -> tuple:
        return (self.rec.get("created", ""), self.rec.get("run_id", ""))


def record_paths(results_dir: Path) -> list[Path]:
    """Run record files under RESULTS_DIR/runs (lm-eval's own JSON beside them excluded)."""
    runs = Path(results_dir) / "runs"
    return sorted(p for p in runs.glob("*.json") if not p.name.endswith(".lm_eval.json"))


def load_runs(results_dir: Path) -> tuple[list[Run], int]:
    """Complete runs under results_dir, de-duplicated (newest kept); also how many duplicates were dropped."""
    best: dict[tuple, Run] = {}
    total = 0
    for p in record_paths(results_dir):
        run = Run(p, read_record(p))
        if run.rec.get("status") != "complete":
            continue
        total += 1
        key = run.identity()
        if key not in best or run.sort_key() > best[key].sort_key():
            best[key] = run
    runs = sorted(best.values(), key=lambda r: (r.model, r.quant, r.task, r.sort_key()))
    return runs, total - len(runs)


def best_run(runs: list[Run], model: str, task: str, quant: str | None = None) -> Run | None:
    """The most informative run of a model on a task: the most samples, then the newest."""
    cands = [r for r in runs if r.model == model and r.task == task and (quant is None or r.quant == quant)]
    return max(cands, key=lambda r: (r.n, r.sort_key()), default=None)
