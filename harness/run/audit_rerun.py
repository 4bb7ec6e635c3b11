"""Step 2 of ``harness audit`` (harness/run/audit.py): re-execution. A seeded sample of a record's questions is
run again on the record's own weights, engine settings and batching scheme, every other request of the recorded
plan handed to the engine as already done (its resume ``skip``), so each re-run request meets the batch mates it
met; then the re-run responses are compared with the recorded ones, and the machine and build with the record's."""

from __future__ import annotations

import random
from pathlib import Path

from harness.records.record import hardware, package_versions
from harness.records.schema import RunRecord
from harness.run.audit_check import as_stored


def choose(rec: RunRecord, k: int, seed: int) -> list[tuple[str, int]]:
    """The seeded sample of the record's questions to re-run (all of them when k >= n)."""
    ids = sorted((s.task, s.doc_id) for s in rec.samples)
    if k >= len(ids):
        return ids
    return sorted(random.Random(seed).sample(ids, k))


def other_class(rec: RunRecord, system_info: str) -> list[str]:
    """Why this machine and build cannot be expected to give the record's bits (empty: they can)."""
    from harness.backends.llamacpp.engine import SCHEME

    here = hardware()
    out = []
    if rec.hardware.cpu != here["cpu"]:
        out.append(f"CPU {rec.hardware.cpu!r} recorded, {here['cpu']!r} here")
    if (rec.hardware.gpu or None) != (here["gpu"] or None) or bool(rec.backend.gpu_offload):
        out.append(
            f"GPU {rec.hardware.gpu or 'none'} recorded (offload {bool(rec.backend.gpu_offload)}), "
            f"{here['gpu'] or 'none'} here"
        )
    have = package_versions().get("llama-cpp-python")
    want = rec.packages.llama_cpp_python if rec.packages else None
    if want != have:
        out.append(f"llama-cpp-python {want} recorded, {have} here")
    if (rec.backend.llama_cpp_system_info or "") != system_info:
        was, now = _features(rec.backend.llama_cpp_system_info or ""), _features(system_info)
        delta = [f"+{f}" for f in sorted(now - was)] + [f"-{f}" for f in sorted(was - now)]
        out.append(f"llama.cpp CPU features differ ({' '.join(delta) or 'same features, other text'} here)")
    scheme = rec.backend.settings.get("scheme")
    if scheme != SCHEME:
        out.append(f"batching scheme {scheme} recorded, {SCHEME} here")
    return out


def _features(system_info: str) -> set[str]:
    """The features llama.cpp reports as on ("AVX2 = 1 | AMX_INT8 = 1 | ...")."""
    return {
        part.split("=")[0].strip().split(":")[-1].strip()
        for part in system_info.split("|")
        if part.strip().endswith("= 1")
    }


def _engine_settings(rec: RunRecord, threads: int):
    from dataclasses import fields

    from harness.backends.llamacpp.engine import EngineSettings

    names = {f.name for f in fields(EngineSettings)} - {"threads", "rpc_servers"}
    kw = {k: v for k, v in rec.backend.settings.items() if k in names}
    return EngineSettings(threads=threads, **kw)


def _audit_lm(engine, wanted: set[tuple[str, int]], positions: dict[str, list[int]]):
    """An lm-eval model over ``engine`` that computes only the ``wanted`` questions' requests; every other
    request of the plan is handed to the engine as already done (its resume ``skip``), so the prefix plan
    and the generation units are those of the recorded run. lm-eval numbers a subset's documents by
    position (``doc_id`` of an Instance), ``positions`` maps them back to the data's row ids."""
    from harness.backends.llamacpp.lm_model import LlamaBenchLM

    class AuditLM(LlamaBenchLM):
        def _mask(self, requests, placeholder) -> None:
            self._wanted = [(r.task_name, positions[r.task_name][r.doc_id]) in wanted for r in requests]
            self._placeholder = placeholder

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            self._mask(requests, (0.0, False))
            return super().loglikelihood(requests, disable_tqdm)

        def generate_until(self, requests, disable_tqdm: bool = False):
            self._mask(requests, "")
            return super().generate_until(requests, disable_tqdm)

        def _resume(self, keys):
            return {i: self._placeholder for i, w in enumerate(self._wanted) if not w}, None

    return AuditLM(engine=engine)


def compare_samples(
    rec: RunRecord, rerun: list[dict], chosen: list[tuple[str, int]]
) -> tuple[str | None, float, float | None]:
    """(first difference in words or None, share identical, largest log-prob difference)."""
    got = {(s["task"], s["doc_id"]): s for s in rerun}
    first, same, worst = None, 0, None
    for s in sorted(rec.samples, key=lambda s: (s.task, s.doc_id)):
        k = (s.task, s.doc_id)
        if k not in chosen:
            continue
        r = got.get(k)
        where = f"{s.task} doc {s.doc_id}"
        if r is None:
            first = first or f"{where}: not re-run"
            continue
        if r["prompt_sha256"] != s.prompt_sha256:
            first = (
                first or f"{where}: prompt sha256 {s.prompt_sha256} recorded, {r['prompt_sha256']} rebuilt"
            )
            continue
        resp = as_stored(r["response"])
        if isinstance(resp, list) and isinstance(s.response, list) and len(resp) == len(s.response):
            for j, (a, b) in enumerate(zip(s.response, resp)):
                if isinstance(a, list) and isinstance(b, list) and isinstance(a[0], (int, float)):
                    d = abs(float(a[0]) - float(b[0]))
                    worst = d if worst is None else max(worst, d)
        if resp == s.response:
            same += 1
        elif first is None:
            first = f"{where}: {_how(s.response, resp)}"
    return first, same / max(1, len(chosen)), worst


def _how(recorded: object, rerun: object) -> str:
    """How a re-run response differs from the recorded one, in words."""
    if isinstance(recorded, str) and isinstance(rerun, str):
        i = next(
            (i for i in range(min(len(recorded), len(rerun))) if recorded[i] != rerun[i]),
            min(len(recorded), len(rerun)),
        )
        return (
            f"response differs from character {i}: recorded {recorded[i : i + 40]!r}, "
            f"re-run {rerun[i : i + 40]!r}"
        )
    if isinstance(recorded, list) and isinstance(rerun, list):
        for j, (a, b) in enumerate(zip(recorded, rerun)):
            if a != b:
                return f"choice {j}: recorded {a}, re-run {b}"
    return f"response recorded {str(recorded)[:80]!r}, re-run {str(rerun)[:80]!r}"


def rerun_sample(
    rec: RunRecord, plan, path: Path, wanted: set[tuple[str, int]], threads: int
) -> tuple[list[dict], list[str]]:
    """Run the plan on the record's weights and settings, computing only the ``wanted`` questions: their
    per-sample log (harness.run.runner.summarise), and why this machine and build cannot be expected to give
    the record's bits (:func:`other_class`; empty: they can)."""
    import lm_eval

    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.run import console
    from harness.run.runner import evaluate, summarise

    engine = LlamaEngine(path, _engine_settings(rec, threads))
    try:
        info = engine.lc.llama_print_system_info().decode().strip()
        differences = other_class(rec, info)
        positions = {name: sorted(ids) for name, ids in (plan.samples or {}).items()}
        for c in plan.configs:
            positions.setdefault(c["task"], list(range(plan.sizes[c["task"]])))
        lm = _audit_lm(engine, wanted, positions)
        with console.quiet():
            res = evaluate(lm_eval, lm, plan)
    finally:
        engine.close()
    _, _, log = summarise(plan, res["samples"])
    return [s for s in log if (s["task"], s["doc_id"]) in wanted], differences
