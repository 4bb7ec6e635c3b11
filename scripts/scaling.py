"""Scaling of the in-process backend on MMLU log-likelihood (issue #5): questions and few-shot length.

    .venv/bin/python scripts/scaling.py [--subjects 10] [--per-subject 2,8] [--shots 2,4]

For each (questions per subject, shots) it scores the first N test questions of the first S subjects and
prints wall time, prompt tokens decoded, the shared-prefix tokens among them (MMLU's dev split has 5
examples per subject, so shot counts go up to 5), and a least-squares fit
``wall = a * prefix tokens + b * question tokens``: time linear in the number of questions, and a longer
few-shot prefix paid once per prefix (per subject), not once per question.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--subjects", type=int, default=10)
    ap.add_argument("--per-subject", default="2,8")
    ap.add_argument("--shots", default="2,4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--data-dir", default=os.environ.get("HARNESS_DATA_DIR") or str(ROOT.parent / "shared/data/hub")
    )
    a = ap.parse_args()

    import lm_eval

    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.backends.llamacpp.lm_model import LlamaBenchLM
    from harness.backends.llamacpp.settings import EngineSettings
    from harness.models.catalogue import resolve
    from harness.models.locate import local_model_path
    from harness.publish.report import markdown_table
    from harness.tasks.settings import plan_task, task_manager

    entry = resolve(a.model)
    engine = LlamaEngine(local_model_path(entry), EngineSettings(threads=a.threads))
    rows, fit = [], []
    prefix = _prefix_counter(engine)
    for shots in (int(s) for s in a.shots.split(",")):
        for n in (int(x) for x in a.per_subject.split(",")):
            plan = plan_task("mmlu_loglik", entry, full=True, data_dir=Path(a.data_dir), num_fewshot=shots)
            plan.configs = plan.configs[: a.subjects]
            plan.samples = {c["task"]: list(range(n)) for c in plan.configs}
            engine.stats.prompt_tokens = 0
            prefix.reset()
            t0 = time.perf_counter()
            lm_eval.simple_evaluate(
                model=LlamaBenchLM(engine=engine),
                tasks=plan.configs,
                samples=plan.samples,
                bootstrap_iters=0,
                task_manager=task_manager(),
                verbosity="ERROR",
            )
            wall = time.perf_counter() - t0
            total, pre = engine.stats.prompt_tokens, prefix.n
            rows.append(
                {
                    "shots": str(shots),
                    "questions": str(n * len(plan.configs)),
                    "wall s": f"{wall:.1f}",
                    "prompt tokens": str(total),
                    "prefix tokens": str(pre),
                    "question tokens": str(total - pre),
                    "s/question": f"{wall / (n * len(plan.configs)):.3f}",
                }
            )
            fit.append((pre, total - pre, wall))
    engine.close()
    print(markdown_table(rows, tuple(rows[0])))
    x = np.array([[p, q] for p, q, _ in fit], dtype=float)
    y = np.array([w for *_, w in fit])
    (a_pre, b_q), *_ = np.linalg.lstsq(x, y, rcond=None)
    pred = x @ np.array([a_pre, b_q])
    print(
        f"fit: wall = {a_pre * 1000:.2f} ms x prefix tokens + {b_q * 1000:.2f} ms x question tokens; "
        f"largest residual {np.max(np.abs(pred - y) / y) * 100:.1f}% of wall"
    )
    return 0


class _prefix_counter:
    """Counts the tokens the engine decodes into sequence 0: the shared few-shot prefixes."""

    def __init__(self, engine):
        self.n = 0
        orig = engine.context.prefill

        def prefill(tokens, seq, start=0):
            if seq == 0:
                self.n += len(tokens) - start
            return orig(tokens, seq, start)

        engine.context.prefill = prefill

    def reset(self) -> None:
        self.n = 0


if __name__ == "__main__":
    sys.exit(main())
