"""Is `harness plan`'s time estimate right on this machine? The plan, then the run, for Llama-3-shaped models.

For each shape (harness/models/shaped.py: the real Llama 3.2 1B / 3B tensor shapes and vocabulary, random
weights; built on first use into build/bench-models/) and each task (MMLU log-likelihood, GSM8K generation), on
a small subset: `harness plan`'s estimate (in this process, exactly as `harness plan` and the line before `harness
bench` compute it: llama.cpp timed on a slice of the model), then the real run (`harness bench`, the installed
entry point, in its own process), and the estimate over the run's evaluation wall time (``timing.wall_seconds``),
and whether the run lies inside the plan's interval. Prints the load average before and after: on a busy
machine neither figure means much (the plan says when its own probe was disturbed).

Random weights never stop generating, so every GSM8K question runs to its budget: the script runs with a copy of
tasks/ (HARNESS_TASKS_DIR) whose GSM8K budget is ``--gen-tokens`` (32), for the plan and the run alike; the plan's
point then prices exactly the tokens the run generates.

``--extrapolation``: instead, the slice probe's per-layer extrapolation against the engine's speed probe on the
whole model, same lengths, same settings, per rate: the figures for tasks/plan_model.yaml ``extrapolation``.

    .venv/bin/python scripts/check_plan.py --data-dir ../shared/data/hub               # 1b,3b x mmlu,gsm8k
    .venv/bin/python scripts/check_plan.py --shapes 1b --extrapolation
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
HARNESS = Path(sys.executable).parent / "harness"
TASK_FORMATS = {"mmlu": "log-likelihood", "gsm8k": "generation"}


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def tasks_copy(dest: Path, gen_tokens: int) -> Path:
    """tasks/ with GSM8K's generation budget set to ``gen_tokens`` (random weights never stop on their own)."""
    shutil.copytree(ROOT / "tasks", dest)
    d = yaml.safe_load((dest / "tasks.yaml").read_text())
    d["tasks"]["gsm8k"]["max_gen_toks"] = gen_tokens
    (dest / "tasks.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    return dest


def plan_of(path: Path, tasks: list[str], limits: dict[str, int], parallel: int):
    """The plan of each task at its subset size (one slice probe per model: the rates do not depend on the task)."""
    from harness.backends.llamacpp.settings import EngineSettings
    from harness.models.catalogue import resolve
    from harness.plan.assumptions import task_costs
    from harness.plan.estimate import estimate_seconds, plan_entry

    entry = resolve(str(path))
    settings = EngineSettings(n_parallel=parallel)
    first = plan_entry(
        entry,
        True,
        tasks[:1],
        limits[tasks[0]],
        False,
        settings=settings,
        kind="base",
        network=False,
        log=lambda s: print(s, flush=True),
    )
    q = first.quants[0]
    out = {}
    for task in tasks:
        costs = task_costs(dataclasses.replace(entry, kind="base"), [task], limits[task])
        out[task] = estimate_seconds(costs, q.rates)[0]
    return q.rates, out


def run_of(path: Path, task: str, limit: int, parallel: int, data_dir: str, results: Path, env: dict) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            str(HARNESS),
            "bench",
            "-m",
            str(path),
            "-t",
            task,
            "--limit",
            str(limit),
            "--kind",
            "base",
            "--parallel",
            str(parallel),
            "--data-dir",
            data_dir,
            "--results-dir",
            str(results),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if out.returncode:
        sys.exit(f"the run failed:\n{out.stderr[-3000:]}")
    rec = json.loads(
        max(
            (p for p in (results / "runs").glob(f"*-{task}-*.json") if ".lm_eval." not in p.name),
            key=lambda p: p.stat().st_mtime,
        ).read_text()
    )
    rec["process_seconds"] = time.perf_counter() - t0
    return rec


def check(args) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="check-plan-"))
    tasks_dir = tasks_copy(tmp / "tasks", args.gen_tokens)
    os.environ["HARNESS_TASKS_DIR"] = str(
        tasks_dir
    )  # read when harness.paths is first imported: before the next line
    from harness.models.shaped import ensure_shaped_model
    from harness.plan.render import interval_text

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    print(f"before: {load()}", flush=True)
    rows = []
    for shape in args.shapes.split(","):
        path = ensure_shaped_model(shape, args.quant)
        tasks = args.tasks.split(",")
        limits = {t: args.mmlu_limit if t == "mmlu" else args.gsm8k_limit for t in tasks}
        r, est = plan_of(path, tasks, limits, args.parallel)
        print(f"{shape}: rates {r.method}", flush=True)
        for task in tasks:
            rec = run_of(path, task, limits[task], args.parallel, args.data_dir, tmp / "results", env)
            wall = rec["timing"]["wall_seconds"]
            lo, pt, hi = est[task]
            rows.append(
                (
                    f"{shape} {args.quant}",
                    f"{task} ({TASK_FORMATS.get(task, '')}) {limits[task]}",
                    interval_text(est[task]),
                    f"{wall:.0f} s",
                    f"{pt / wall:.2f}",
                    "yes" if lo <= wall <= hi else "NO",
                    f"{rec['timing'].get('prompt_tokens')}/{rec['timing'].get('generated_tokens')}",
                    f"{rec['process_seconds']:.0f} s",
                    f"{r.probe_seconds or 0:.0f} s",
                    str((rec.get("efficiency") or {}).get("contended", "-")),
                )
            )
            print(" | ".join(rows[-1]), flush=True)
    print(f"after: {load()}")
    head = (
        "model",
        "task, questions",
        "estimate (interval)",
        "actual",
        "est/actual",
        "inside",
        "prompt/gen tokens",
        "process",
        "probe",
        "contended",
    )
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
    shutil.rmtree(tmp, ignore_errors=True)


def extrapolation(args) -> None:
    """Slice-extrapolated rates against the whole model's probe (same lengths and settings), per rate."""
    from harness.backends.llamacpp.settings import EngineSettings
    from harness.models.shaped import ensure_shaped_model
    from harness.plan import slice_probe
    from harness.plan.assumptions import plan_model

    print(f"before: {load()}", flush=True)
    settings = EngineSettings(n_parallel=args.parallel)
    for shape_name in args.shapes.split(","):
        path = ensure_shaped_model(shape_name, args.quant)
        shape, n_layer = slice_probe.file_slice_target(path)
        lengths = slice_probe.probe_lengths(shape, n_layer)
        r = slice_probe.measure_slice(
            shape, n_layer, settings, plan_model()["extrapolation"][:2], lengths, log=print
        )
        full, _ = slice_probe.time_slice(path, settings, lengths)
        for key in slice_probe.RATE_KEYS:
            whole = sorted(s[key] for s in full)[len(full) // 2]
            print(
                f"{shape_name} {key}: slices {r.point[key]:.2f} ({r.slow[key]:.2f}-{r.fast[key]:.2f}), whole model "
                f"{whole:.2f} tok/s: whole/extrapolated time {r.point[key] / whole:.2f}",
                flush=True,
            )
    print(f"after: {load()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="1b,3b")
    ap.add_argument("--tasks", default="mmlu,gsm8k")
    ap.add_argument("--quant", default="Q4_0")
    ap.add_argument("--mmlu-limit", type=int, default=8)
    ap.add_argument("--gsm8k-limit", type=int, default=8)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "hub"))
    ap.add_argument("--extrapolation", action="store_true")
    args = ap.parse_args()
    (extrapolation if args.extrapolation else check)(args)


if __name__ == "__main__":
    main()
