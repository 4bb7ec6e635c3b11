"""Measure what each task costs in tokens, as the engine counts them: the figures of
harness/tasks/plan_tokens.yaml, from which `harness plan` estimates a run's wall time before a model is
downloaded.

Every request lm-eval builds is tokenized with the offline SmolLM2 tokenizer (as the engine does: chat
template for chat tasks, few-shot as multiturn) and grouped by the engine's own prefix plan
(harness/backends/llamacpp/prefix_plan.py); nothing is decoded. For each task, prompt format and subset size (the
ladder below, seed 0, the harness's own subset picks), the script records the prompt tokens the engine
would decode (each shared prefix once, then every request's own suffix) and the requests.

    .venv/bin/python scripts/measure_plan_tokens.py --data-dir ../shared/data/hub > tasks/plan_tokens.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time

import yaml

from harness.backends.llamacpp.engine import LlamaEngine
from harness.backends.llamacpp.lm_model import LlamaBenchLM
from harness.backends.llamacpp.prefix_plan import generation_plan, loglikelihood_clusters, loglikelihood_items
from harness.backends.llamacpp.settings import EngineSettings
from harness.models.catalogue import resolve
from harness.models.locate import local_model_path
from harness.paths import data_dir as resolve_data_dir
from harness.run.runner import evaluate
from harness.tasks.settings import plan_task, task_spec

HEADER = """\
# Prompt tokens each task costs the engine, per prompt format and subset size (seed 0): each shared prefix
# once plus every request's own suffix, by the engine's own prefix plan. SmolLM2 tokenizer. `harness plan`
# interpolates between the sizes. gen_budget: generated tokens allowed per question ("model": the
# catalogue's gsm8k_max_gen_toks); 256 is the lm-eval backend's default. Written by
#   .venv/bin/python scripts/measure_plan_tokens.py --data-dir ../shared/data/hub > tasks/plan_tokens.yaml
"""
TASKS = ("gsm8k", "gsm8k_5shot", "mmlu", "mmlu_loglik", "mmlu_cloze", "mmlu_cot")
LADDER = (16, 57, 100, 250, 570, 1140, 2850)


class Counter:
    """The engine, except that requests are counted (the engine's prefix plan) instead of decoded."""

    def __init__(self, engine: LlamaEngine):
        self._e = engine
        self.prompt_tokens = 0
        self.requests = 0

    def __getattr__(self, name):
        return getattr(self._e, name)

    def generate(self, prompts, until, budget, progress=None, skip=frozenset(), on_result=None):
        _, seqs, clusters = generation_plan(prompts, self._e.settings.min_shared_prefix)
        for plen, members in clusters:
            self.prompt_tokens += plen + sum(len(seqs[m]) - plen for m in members)
        self.requests += len(prompts)
        return ["" for _ in prompts]

    def loglikelihood(self, requests, progress=None, skip=frozenset(), on_result=None):
        # The engine's branches (harness/backends/llamacpp/prefix_plan.py): requests sharing a context and a
        # one-token continuation share one branch; longer continuations get one each.
        items = loglikelihood_items(requests)
        for plen, members in loglikelihood_clusters(items, self._e.settings.min_shared_prefix):
            self.prompt_tokens += plen + sum(len(items[m].tokens) - plen for m in members)
        self.requests += len(requests)
        return [(0.0, False) for _ in requests]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--kinds", default="instruct,base", help="Model kinds to measure (their prompt formats).")
    args = ap.parse_args()
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    entry = resolve("smollm2-135m")
    engine = LlamaEngine(local_model_path(entry), EngineSettings(threads=2))
    out: dict = {}
    for task in args.tasks.split(","):
        for kind in args.kinds.split(","):
            spec = task_spec(task, kind)
            if spec.get("requires_kind") and spec["requires_kind"] != kind:
                continue
            model = dataclasses.replace(entry, kind=kind)
            full = plan_task(task, model, full=True, data_dir=resolve_data_dir(args.data_dir))
            key = f"{task}/{'chat' if full.chat else 'plain'}"
            if key in out:
                continue
            points = {}
            for n in [*(n for n in LADDER if n < full.n_samples), None]:
                plan = (
                    full
                    if n is None
                    else plan_task(task, model, limit=n, data_dir=resolve_data_dir(args.data_dir))
                )
                rec = Counter(engine)
                t0 = time.perf_counter()
                evaluate(__import__("lm_eval"), LlamaBenchLM(engine=rec), plan)
                points[plan.n_samples] = rec.prompt_tokens
                print(
                    key,
                    plan.n_samples,
                    rec.prompt_tokens,
                    rec.requests,
                    f"{time.perf_counter() - t0:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
            gen = [c for c in full.configs if c.get("output_type") == "generate_until"]
            budget = (
                "model"
                if spec.get("max_gen_toks") == "model"
                else (
                    max(int((c.get("generation_kwargs") or {}).get("max_gen_toks", 256)) for c in gen)
                    if gen
                    else 0
                )
            )
            out[key] = {
                "docs": full.n_samples,
                "output": "generate" if gen else "loglik",
                "gen_budget": budget,
                "prompt_tokens": points,
            }
    engine.close()
    print(
        HEADER + yaml.safe_dump({"schema_version": 1, "tasks": out}, sort_keys=False, default_flow_style=None)
    )


if __name__ == "__main__":
    main()
