"""Kill a real `harness bench` at random points, rerun it until done, and compare with an uninterrupted run.

    .venv/bin/python scripts/kill_resume.py --task gsm8k --limit 24 --kills 6 [--seed 1] [-- extra bench args]

Prints, per kill, the requests journaled so far, and at the end whether the final record equals the
uninterrupted one (task, metrics, per-sample outputs) and how many requests were computed twice.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAME = ("task", "metrics", "per_subtask", "samples")


def journal_lines(results: Path) -> int:
    d = results / ".journal"
    return sum(len(f.read_text().splitlines()) - 1 for f in d.glob("*.jsonl")) if d.exists() else 0


def record(results: Path) -> dict:
    (p,) = [p for p in (results / "runs").glob("*.json") if not p.name.endswith(".lm_eval.json")]
    return json.loads(p.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="gsm8k")
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 10**6)
    ap.add_argument("--data-dir", default="../shared/data/hub")
    ap.add_argument("extra", nargs="*", help="more `harness bench` arguments (after --)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    work = Path(tempfile.mkdtemp(prefix="kill-resume-"))

    def cmd(results: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "harness.cli",
            "bench",
            "--tasks",
            a.task,
            "--limit",
            str(a.limit),
            "--threads",
            "2",
            "--data-dir",
            a.data_dir,
            "--results-dir",
            str(results),
            *a.extra,
        ]

    t0 = time.time()
    subprocess.run(cmd(work / "ref"), check=True, capture_output=True)
    print(f"uninterrupted run: {time.time() - t0:.0f} s")
    killed = work / "killed"
    kills, seen = 0, 0
    while kills < a.kills:
        proc = subprocess.Popen(cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and journal_lines(killed) <= seen:
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 3))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen = journal_lines(killed)
        kills += 1
        print(f"kill {kills}: {seen} request(s) journaled")
    subprocess.run(cmd(killed), check=True, capture_output=True)
    ref, fin = record(work / "ref"), record(killed)
    same = all(ref[k] == fin[k] for k in SAME)
    res = fin["resume"]
    twice = res["requests_from_journal"] + res["requests_computed"] - ref["resume"]["requests_computed"]
    print(
        f"seed {a.seed}: {kills} kills; final run took {res['requests_from_journal']} request(s) from the journal, "
        f"computed {res['requests_computed']}, replayed {res['requests_replayed']} finished one(s) for exact "
        f"batches; results computed twice: {twice}; record identical to the uninterrupted run: {same}"
    )
    return 0 if same and twice == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
