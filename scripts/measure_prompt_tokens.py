"""Measure the longest prompt (in tokens) of each task over its whole test split: the figures of
tasks/prompt_tokens.yaml, which the memory preflight uses before a model is downloaded (when its
tokenizer is not here yet).

Every request lm-eval builds for the full test split is tokenized with the offline SmolLM2 tokenizer
(as the engine does: chat template applied for chat tasks, few-shot as multiturn); nothing is decoded.
For a generation task the figure is the longest prompt; for a log-likelihood task the longest branch the
engine decodes (context + continuation - 1 tokens).

    .venv/bin/python scripts/measure_prompt_tokens.py --data-dir ../shared/data/hub [--tasks gsm8k,mmlu_cot]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time

from harness.backends.llamacpp.engine import LlamaEngine
from harness.backends.llamacpp.lm_model import LlamaBenchLM
from harness.backends.llamacpp.settings import EngineSettings
from harness.models.catalogue import resolve
from harness.models.locate import local_model_path
from harness.paths import data_dir as resolve_data_dir
from harness.run.runner import evaluate
from harness.tasks.settings import plan_task, task_spec

TASKS = ("gsm8k", "gsm8k_5shot", "mmlu", "mmlu_loglik", "mmlu_cloze", "mmlu_cot")


class Recorder:
    """The engine, except that requests are measured instead of decoded."""

    def __init__(self, engine: LlamaEngine):
        self._e = engine
        self.longest = 0
        self.n = 0

    def __getattr__(self, name):
        return getattr(self._e, name)

    def generate(self, prompts, until, budget, progress=None, skip=frozenset(), on_result=None):
        self.longest = max([self.longest, *(len(p) for p in prompts)])
        self.n += len(prompts)
        return ["" for _ in prompts]

    def loglikelihood(self, requests, progress=None, skip=frozenset(), on_result=None):
        self.longest = max([self.longest, *(len(c) + len(t) - 1 for c, t in requests)])
        self.n += len(requests)
        return [(0.0, False) for _ in requests]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--tasks", default=",".join(TASKS))
    args = ap.parse_args()
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    entry = resolve("smollm2-135m")
    engine = LlamaEngine(local_model_path(entry), EngineSettings(threads=2))
    out = {}
    for task in args.tasks.split(","):
        for kind in ("instruct", "base"):
            spec = task_spec(task, kind)
            if spec.get("requires_kind") and spec["requires_kind"] != kind:
                continue
            plan = plan_task(
                task,
                dataclasses.replace(entry, kind=kind),
                full=True,
                data_dir=resolve_data_dir(args.data_dir),
            )
            key = f"{task}/{'chat' if plan.chat else 'plain'}"
            if key in out:
                continue
            rec = Recorder(engine)
            t0 = time.perf_counter()
            evaluate(__import__("lm_eval"), LlamaBenchLM(engine=rec), plan)
            out[key] = {"longest": rec.longest, "requests": rec.n, "docs": plan.n_samples}
            print(key, out[key], f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    engine.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
