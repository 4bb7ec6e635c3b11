"""``harness audit RECORD``: is a run record what its weights and settings give? Checked in two steps.

1. **The record agrees with itself** (nothing is run): the task is planned again from the record (its
   config hash must match: same prompts, data bytes and sample ids), and every sample's response goes
   through the task's own lm-eval filters and ``process_results`` (the code that scored it): the extracted
   answer, the target and the correctness must come out as recorded, and every metric (each filter,
   micro and macro, per subtask) must be the mean the samples give. A response changed by hand that
   changes its answer, or a score raised, fails here.
2. **Re-execution**: a seeded random sample of K of the record's questions is run again on the record's
   own weights (their sha256 is checked first), engine settings and batching scheme. llama.cpp's logits
   depend on the batch a token is decoded in, and the engine's prefix plan depends on *which* prompts it is
   given (``cluster_by_prefix``: fewer prompts can share a longer prefix, so a question's suffix would be
   decoded from another position, in another batch). Re-running the K questions as a smaller subset would
   therefore not reproduce the record's bytes. Instead every recorded request is planned, as in the
   recorded run, and only the K chosen are computed: the engine's resume path (``skip``), which keeps the
   prefix plan of all requests and replays a generation unit whole so every request meets the batch mates
   it met (harness/backends/llamacpp/engine.py). Each re-run sample's prompt hash must equal the record's.
   - Same device class and build (CPU model, GPU, llama.cpp build and CPU features, llama-cpp-python
     version, batching scheme): every response and log-prob must be bit-identical; the first question
     that differs is named with how.
   - Otherwise: the agreement rate and the largest log-prob difference, labelled as such (not a check).

The result is written to ``<results>/audits/<record stem>.json`` (when, where, K, seed, result); ``harness
publish`` lists each record's latest audit in the manifest and the report. Step 1 is harness/run/audit_check.py,
step 2 harness/run/audit_rerun.py; this module runs them and writes the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from harness.analysis.estimate import wilson_interval
from harness.errors import HarnessError
from harness.records.audits import AUDITS
from harness.records.record import hardware, harness_commit, package_versions, read_record
from harness.records.schema import RunRecord
from harness.run.audit_check import self_check
from harness.run.audit_rerun import choose, compare_samples, rerun_sample

IDENTICAL, DIFFERS, INCONSISTENT, COMPARED = "identical", "differs", "inconsistent", "compared"
CONSISTENT = "consistent, not re-run"  # --no-rerun: step 1 only


@dataclass
class Audit:
    """What an audit found; ``result`` is one of identical / differs / inconsistent / compared."""

    record: str
    result: str
    problems: list[str] = field(default_factory=list)  # self-consistency, in record order
    first_difference: str | None = None
    k: int = 0
    seed: int = 0
    sample: list[list] = field(default_factory=list)  # [task, doc_id] of the re-run questions
    other_class: list[str] = field(default_factory=list)  # why bit-identity is not expected here
    agreement: float | None = None  # share of re-run questions with identical responses
    max_logprob_diff: float | None = None
    wall_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.result in (IDENTICAL, COMPARED, CONSISTENT)

    def summary(self) -> str:
        """One line for the console and the report."""
        if self.result == INCONSISTENT:
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            return f"INCONSISTENT: {self.problems[0]}{more}"
        if self.result == DIFFERS:
            return f"DIFFERS on re-execution: {self.first_difference}"
        if self.result == CONSISTENT:
            return (
                "consistent, not re-run: every sample's extraction and correctness and every metric follow "
                "from the recorded responses"
            )
        if self.result == IDENTICAL:
            return (
                f"identical: {self.k} re-run question(s) (seed {self.seed}) bit-identical to the record; "
                "the record agrees with itself"
            )
        lp = (
            ""
            if self.max_logprob_diff is None
            else f", largest log-prob difference {self.max_logprob_diff:.3g}"
        )
        return (
            f"compared, bit-identity not required ({'; '.join(self.other_class)}): {self.agreement:.0%} of {self.k} "
            f"re-run question(s) identical{lp}; the record agrees with itself"
        )


def _model_entry(rec: RunRecord, model_path: Path | None):
    """The catalogue entry the record was planned with (its kind as recorded) and the weights' file."""
    from dataclasses import replace

    from harness.models.catalogue import resolve
    from harness.models.locate import local_model_path

    m = rec.model
    if m.family in ("local", "hub"):
        if model_path is None:
            raise HarnessError(
                f"{rec.model.name} was run from a file ({m.file}) the catalogue does not know",
                "give the file with --model PATH.",
            )
        entry = resolve(str(model_path), m.quant)
    else:
        entry = resolve(m.name, m.quant)
    entry = replace(entry, kind=m.kind)
    path = model_path or local_model_path(entry)
    if path is None:
        raise HarnessError(
            f"the weights of {m.name} {m.quant} are not on this machine",
            f"`harness download {m.name} --quant {m.quant}`, or give the file with --model PATH.",
        )
    return entry, Path(path)


def audit(
    record_path: Path,
    k: int = 10,
    seed: int = 0,
    model_path: Path | None = None,
    data_dir: Path | None = None,
    threads: int = 0,
    rerun: bool = True,
) -> Audit:
    """Audit one record (see the module docstring); ``rerun`` False stops after the self-consistency check."""
    from harness.hashing import file_sha256
    from harness.tasks.settings import plan_task, task_manager

    t0 = time.perf_counter()
    rec = read_record(record_path)
    out = Audit(record=Path(record_path).name, result=IDENTICAL, seed=seed)
    if rec.model.sha256 is None:
        raise HarnessError(
            f"{out.record} is a server run: there are no weights' bytes to re-run",
            "audit it with the server that made it (not supported yet).",
        )
    entry, path = _model_entry(rec, model_path)
    t = rec.task
    limit = None if t.full else t.limit
    from harness.run import console

    with console.quiet():  # datasets' and lm-eval's own progress lines go to the log
        plan = plan_task(
            t.name,
            entry,
            limit=limit,
            full=t.full,
            seed=t.seed or 0,
            data_dir=data_dir,
            num_fewshot=t.num_fewshot,
        )
        tasks = task_manager().load(plan.configs)["tasks"]
    recorded_ids = None if t.sample_ids == "all" else t.sample_ids
    if plan.samples != recorded_ids or plan.data_files != t.data_sha256:
        raise HarnessError(
            f"{out.record}: its questions cannot be rebuilt here: the "
            + ("sample ids" if plan.samples != recorded_ids else "data files' sha256")
            + " differ from the record's",
            "audit with the data the record names (task.data_sha256), e.g. --data-dir pointing at that mirror.",
        )
    config_changed = plan.config_hash() != t.config_hash
    tasks = {
        name if isinstance(name, str) else getattr(name, "task_name", str(name)): tk
        for name, tk in tasks.items()
    }
    out.problems = self_check(rec, plan, tasks)
    if out.problems:
        out.result = INCONSISTENT
    if not rerun:
        out.result = out.result if out.problems else CONSISTENT
        out.wall_seconds = round(time.perf_counter() - t0, 3)
        return out
    sha = file_sha256(path)
    if sha != rec.model.sha256:
        out.result, out.first_difference = (
            DIFFERS,
            (
                f"the weights are not the record's: {path.name} has sha256 {sha}, the record names {rec.model.sha256}"
            ),
        )
        out.wall_seconds = round(time.perf_counter() - t0, 3)
        return out
    chosen = choose(rec, k, seed)
    out.k, out.sample = len(chosen), [list(c) for c in chosen]
    samples, out.other_class = rerun_sample(rec, plan, path, set(chosen), threads)
    if config_changed:  # the harness's task code changed since the record: its prompts are checked one by one
        out.other_class.append(f"task config hash {t.config_hash} recorded, {plan.config_hash()} now")
    first, share, worst = compare_samples(rec, samples, chosen)
    out.agreement, out.max_logprob_diff = share, worst
    if out.result != INCONSISTENT:
        if out.other_class:
            out.result = COMPARED
            if first and "prompt sha256" in first:  # prompts do not depend on the device
                out.result, out.first_difference = DIFFERS, first
        elif first:
            out.result, out.first_difference = DIFFERS, first
    out.wall_seconds = round(time.perf_counter() - t0, 3)
    return out


def write_audit(results_dir: Path, a: Audit, record_path: Path) -> Path:
    """``<results>/audits/<record stem>.json``: when, where, K, seed, result, and what was found."""
    from harness.atomic import write_json
    from harness.hashing import file_sha256

    here = hardware()
    info = {
        "record": a.record,
        "record_sha256": file_sha256(Path(record_path), fresh=True),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "where": {
            "cpu": here["cpu"],
            "cores": here["cores"],
            "gpu": here["gpu"],
            "host": here.get("host"),
            "llama-cpp-python": package_versions().get("llama-cpp-python"),
        },
        "harness_commit": harness_commit(),
        "k": a.k,
        "seed": a.seed,
        "result": a.result,
        "summary": a.summary(),
        "problems": a.problems[:20],
        "n_problems": len(a.problems),
        "first_difference": a.first_difference,
        "other_class": a.other_class,
        "agreement": a.agreement,
        "max_logprob_diff": a.max_logprob_diff,
        "sample": a.sample,
        "wall_seconds": a.wall_seconds,
    }
    path = Path(results_dir) / AUDITS / (Path(a.record).stem + ".json")
    write_json(path, info)
    return path
