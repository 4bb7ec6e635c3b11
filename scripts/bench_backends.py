"""Side-by-side backend benchmark (issues #5, #18): our llama.cpp backend vs the routes a user would otherwise take.

    .venv/bin/python scripts/bench_backends.py [--model smollm2|1b|3b|8b|NAME|PATH] [--routes ours,ours1,minimal]

``--model``: ``smollm2`` (SmolLM2-135M-Instruct Q4_1, offline), or a Llama 3 *shape* (``1b``, ``3b``, ``8b``:
Llama 3.2 1B / 3B, Llama 3.1 8B tensor shapes, the real 128k vocabulary, seeded random weights, ``--quant``
Q4_0 or Q8_0; harness/models/shaped.py), built into ``build/bench-models/`` first when missing; or any
catalogue name or GGUF path. Random weights never stop on their own, so generation is capped at
``--gen-tokens`` (printed with the table); the default subsets are sized per model so a run takes minutes on
2 cores (fewer questions: the ratios are what count).

Subsets: MMLU = the first ``--mmlu-per-subject`` test questions of the first ``--mmlu-subjects`` subjects,
5-shot log-likelihood from dev; GSM8K = the first ``--gsm8k`` test questions, 8-shot CoT (no chat). Each route
runs in its own process (peak RSS is that process's), through the same lm-eval task configs. The floor comes
from the speed probe ``harness speed`` runs, taken in its own process on the same model before the routes: this
run's prompt tokens at the probed prompt rate plus its generated tokens at the batched decode rate (and, for
GSM8K, at the run's mean context depth). ``x floor`` is the evaluation's wall time over the floor; ``x floor
(proc)`` is the whole process's (imports, model load, task building, tokenizing) over the same floor. For GSM8K,
``x streams floor`` takes the batched decode rates with one KV stream per sequence (the probe's ``streams``):
the layout the engine generates in so that batched output equals one-at-a-time; the plain floor's shared-prefix
layout reads the few-shot prompt once for all sequences, a stream layout once per sequence.

Routes: ``ours`` (the harness engine, default settings, in its engine process as ``harness bench`` runs it:
harness/backends/llamacpp/engine_proc.py), ``inproc`` (the same engine in the evaluating process, as before
issue #28: the engine process's cost is ``inproc`` against ``ours``), ``ours2e`` (two engine processes of one
thread each, against ``ours``'s one engine of two threads: ``--engines 2``), ``ours1`` (the same engine one request at a time: one
generation slot; the exact one-at-a-time reference for per-sample identity), ``oursb4`` (four log-likelihood
branches per decode batch, one KV stream each), ``oursu`` (generation slots in one unified KV cache sharing
the few-shot prefix: ``--no-gen-streams``, faster where attention dominates, not identical to one-at-a-time), ``minimal`` (scripts/minimal_backend.py: high-level ``Llama``,
prefix reuse, ``logits_all``), ``server`` (lm-eval ``local-completions`` against a llama.cpp ``llama-server
-np 4 -cb`` started here) and ``server-h`` (the harness's own server backend, 4 requests in flight, against
the same server). The server routes use ``--llama-server PATH``, by default llama-server built from the llama.cpp
sources of the pinned llama-cpp-python sdist for this CPU (scripts/build_llama_server.sh, cached in ~/.cache/llama-bench-harness/; built
here when missing), and run generation only: llama-server returns no prompt log-probs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

THREADS = 2
# Subsets per model: (GSM8K questions, MMLU subjects, MMLU questions per subject, generation cap). SmolLM2 keeps
# the issue #5 subsets (its answers stop on their own well before 256 tokens); the shapes never stop.
SUBSETS = {
    "smollm2": (30, 57, 2, 256),
    "1b": (8, 2, 2, 32),
    "3b": (4, 2, 2, 16),
    "8b": (4, 2, 1, 16),
}
ALIASES = {"smollm2": "smollm2-135m"}


def _plans(model: str, data_dir: Path | None, a) -> tuple:
    from harness.models.catalogue import resolve
    from harness.tasks.settings import plan_task

    entry = resolve(model)
    mmlu = plan_task("mmlu_loglik", entry, full=True, data_dir=data_dir)
    mmlu.configs = mmlu.configs[: a.mmlu_subjects]
    mmlu.samples = {c["task"]: list(range(a.mmlu_per_subject)) for c in mmlu.configs}
    gsm = plan_task("gsm8k", entry, full=True, data_dir=data_dir, max_gen_toks=a.gen_tokens)
    gsm.samples = {c["task"]: list(range(a.gsm8k)) for c in gsm.configs}
    gsm.chat = False  # plain prompts: every route sees the same text
    return entry, {"mmlu": mmlu, "gsm8k": gsm}


# Engine routes: settings on top of the defaults (harness/backends/llamacpp/settings.py EngineSettings).
ENGINE_ROUTES = {
    "ours": {},
    "inproc": {},
    "ours2e": {},
    "ours1": {"n_parallel": 1},
    "oursb4": {"max_branches": 4},
    "oursu": {"gen_streams": False},
}
IN_PROCESS = {"inproc"}  # llama.cpp in the evaluating process; every other engine route runs engine processes
ENGINES = {"ours2e": 2}  # engine processes (the THREADS split between them); others: 1


def _built_server() -> str:
    """llama-server from the engine's own llama.cpp commit, compiled for this CPU (built once, cached)."""
    res = subprocess.run(
        [str(ROOT / "scripts" / "build_llama_server.sh")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHON=sys.executable),
    )
    if res.returncode != 0 or not res.stdout.strip():
        sys.exit(f"building llama-server failed (exit {res.returncode}); see the message above")
    return str(ROOT / res.stdout.strip().splitlines()[-1])


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


def run_probe(model: str, deep: int) -> dict:
    """The speed probe of ``harness speed`` (same engine settings as route ``ours``), plus a batched decode at
    depth ``deep`` for the GSM8K floor; in its own process, before any route."""
    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.backends.llamacpp.settings import EngineSettings
    from harness.models.catalogue import resolve
    from harness.models.locate import local_model_path

    engine = LlamaEngine(str(local_model_path(resolve(model))), EngineSettings(threads=THREADS))
    try:
        return engine.speed_probe(deep=deep, streams=True)
    finally:
        engine.close()


def run_route(route: str, task: str, model: str, data_dir: Path | None, server_bin: str | None, a) -> dict:
    """Run one route on one task in this process; return timings, accuracy and per-sample answers."""
    import lm_eval

    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.backends.llamacpp.settings import EngineSettings
    from harness.models.locate import local_model_path
    from harness.run.runner import peak_rss_mb, prompt_of, summarise
    from harness.tasks.settings import task_manager

    entry, plans = _plans(model, data_dir, a)
    plan = plans[task]
    path = str(local_model_path(entry))
    proc = None
    engine = None
    if route in ENGINE_ROUTES:
        from harness.backends.llamacpp.lm_model import LlamaBenchLM

        settings = EngineSettings(threads=THREADS, **ENGINE_ROUTES[route])
        if route in IN_PROCESS:
            engine = LlamaEngine(path, settings)
            engine.trace = {} if task == "gsm8k" else None
        else:
            from harness.backends.llamacpp.engine_proc import EngineProcess

            engine = EngineProcess(path, settings, engines=ENGINES.get(route, 1))
        lm = LlamaBenchLM(engine=engine, max_gen_toks=a.gen_tokens)
    elif route == "minimal":
        from minimal_backend import MinimalLlamaLM

        lm = MinimalLlamaLM(path, threads=THREADS)
    elif route in ("server", "server-h"):
        port = _free_port()
        proc = subprocess.Popen(
            [
                server_bin,
                "-m",
                path,
                "--port",
                str(port),
                "-np",
                "4",
                "-cb",
                "--no-repack",
                "-t",
                str(THREADS),
                "-c",
                str(4 * 2048),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, LD_LIBRARY_PATH=str(Path(server_bin).parent)),
        )
        import urllib.request

        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        if route == "server":
            from lm_eval.models.openai_completions import LocalCompletionsAPI

            lm = LocalCompletionsAPI(
                base_url=f"http://127.0.0.1:{port}/v1/completions",
                model="local",
                tokenizer_backend=None,
                num_concurrent=4,
                max_gen_toks=a.gen_tokens,
            )
        else:
            from harness.backends.server.client import ServerClient
            from harness.backends.server.lm_model import ServerLM

            lm = ServerLM(
                ServerClient(f"http://127.0.0.1:{port}/v1"), concurrency=4, max_gen_toks=a.gen_tokens
            )
    else:
        raise SystemExit(f"unknown route {route}")
    t0 = time.perf_counter()
    try:
        res = lm_eval.simple_evaluate(
            model=lm,
            tasks=plan.configs,
            samples=plan.samples,
            log_samples=True,
            bootstrap_iters=0,
            task_manager=task_manager(),
            verbosity="ERROR",
        )
    finally:
        if proc:
            proc.terminate()
            proc.wait()
    wall = time.perf_counter() - t0
    metrics, _, log = summarise(plan, res["samples"])
    head = next(iter(metrics.values()))
    out = {
        "route": route,
        "task": task,
        "wall": wall,
        "n": plan.n_samples,
        "acc": head["value"],
        "answers": {f"{s['task']}/{s['doc_id']}": _answer(s["extracted"]) for s in log},
        "responses": {f"{s['task']}/{s['doc_id']}": s["response"] for s in log},
        "rss_mb": peak_rss_mb(),
    }
    if engine is not None:
        if engine.trace is not None:
            out["trace"] = {
                f"{r['doc_id']}": engine.trace.get(tuple(lm.tok_encode(prompt_of(r.get("arguments")))))
                for rows in res["samples"].values()
                for r in rows
            }
        st = engine.stats
        out |= {
            "prompt_tokens": st.prompt_tokens,
            "generated_tokens": st.generated_tokens,
            "gen_decodes": st.gen_decodes,
            "gen_depth_sum": st.gen_depth_sum,
            "decode_calls": st.decode_calls,
            "decode_seconds": st.decode_seconds,
            "setup_s": engine.setup_seconds(),
        }
        if route not in IN_PROCESS:  # the engine processes hold the model: their peak memory counts too
            out["rss_mb"] += engine.peak_rss_mb()
        engine.close()
    return out


def _explain_differences(ours: dict, one: dict) -> None:
    """For each output that differs from one-at-a-time greedy: the first differing token, and both runs'
    logit margins there between their greedy token and the runner-up (how near a tie it was)."""
    diff = [k for k in one["responses"] if ours["responses"].get(k) != one["responses"][k]]
    if not diff or "trace" not in ours or "trace" not in one:  # traces: in-process routes only
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
        print(
            f"  {k}: first differing token #{i} of {len(b)}: one-at-a-time margin {b[i][1]:.3f}, "
            f"batched margin {a[i][1]:.3f} (logits, top-1 minus top-2)"
        )


def _child(args: list[str]) -> tuple[dict | None, float, str]:
    """Run this script as a child process; (its JSON answer or None, its wall time from spawn to exit, stderr)."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        return None, wall, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1]), wall, ""


def _resolve_model(a) -> tuple[str, str]:
    """(--model as the children take it: a catalogue name or a GGUF path, its label); shapes built if missing."""
    key = a.model.lower()
    if key in ALIASES:
        return ALIASES[key], ALIASES[key]
    from harness.models.shaped import SHAPES, ensure_shaped_model

    if key in SHAPES:
        path = ensure_shaped_model(key, a.quant)
        return str(path), f"{SHAPES[key].title} shape, random {a.quant.upper()} weights"
    return a.model, a.model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="smollm2, 1b, 3b, 8b, a catalogue name or a GGUF path")
    ap.add_argument("--quant", default="Q4_0", help="quant of a Llama 3 shape: Q4_0 or Q8_0")
    ap.add_argument("--routes", default="ours,inproc,ours1,minimal")
    ap.add_argument("--tasks", default="mmlu,gsm8k")
    ap.add_argument("--gsm8k", type=int, help="GSM8K questions (default: per model, see SUBSETS)")
    ap.add_argument("--mmlu-subjects", type=int, help="MMLU subjects, in the catalogue's order (max 57)")
    ap.add_argument("--mmlu-per-subject", type=int, help="MMLU test questions per subject")
    ap.add_argument(
        "--gen-tokens", type=int, help="generation cap per GSM8K question (random weights never stop)"
    )
    ap.add_argument(
        "--data-dir", default=os.environ.get("HARNESS_DATA_DIR") or str(ROOT.parent / "shared/data/hub")
    )
    ap.add_argument(
        "--llama-server", help="path to a llama.cpp llama-server binary (routes 'server', 'server-h')"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    preset = SUBSETS.get(a.model.lower(), SUBSETS["smollm2"])
    for key, value in zip(("gsm8k", "mmlu_subjects", "mmlu_per_subject", "gen_tokens"), preset):
        if getattr(a, key) is None:
            setattr(a, key, value)
    data_dir = Path(a.data_dir) if a.data_dir else None
    if (
        not a.child
        and not a.llama_server
        and "gsm8k" in a.tasks.split(",")
        and any(r.startswith("server") for r in a.routes.split(","))
    ):
        a.llama_server = _built_server()
    if a.child:
        route, task = a.child.split(":")
        res = (
            run_probe(a.model, int(task))
            if route == "probe"
            else run_route(route, task, a.model, data_dir, a.llama_server, a)
        )
        print(json.dumps(res))
        return 0
    from harness.backends.llamacpp.speed import floor_seconds
    from harness.errors import HarnessError
    from harness.publish.report import markdown_table

    try:
        model, label = _resolve_model(a)
    except HarnessError as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr)
        return 2
    sizes = [
        "--gsm8k",
        str(a.gsm8k),
        "--mmlu-subjects",
        str(a.mmlu_subjects),
        "--mmlu-per-subject",
        str(a.mmlu_per_subject),
        "--gen-tokens",
        str(a.gen_tokens),
    ]
    base = ["--model", model, "--data-dir", a.data_dir, *sizes] + (
        ["--llama-server", a.llama_server] if a.llama_server else []
    )
    print(
        f"model: {label}; {THREADS} threads; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
        f"GSM8K {a.gsm8k} questions, generation capped at {a.gen_tokens} tokens; MMLU {a.mmlu_subjects} subjects"
        f" x {a.mmlu_per_subject}",
        flush=True,
    )
    # The floor's rates: the probe `harness speed` runs, with a batched decode at GSM8K's depth too.
    speed, probe_wall, err = _child(["--child", "probe:1024", *base])
    if speed is None:
        print(f"speed probe failed:\n{err}", file=sys.stderr)
        return 1
    print(
        f"speed probe ({probe_wall:.0f} s): prompt {speed['prompt_tokens_per_s']} tok/s, decode "
        f"{speed['decode_1_tokens_per_s']} tok/s (1 sequence), {speed['decode_batched_tokens_per_s']} tok/s "
        f"({speed['batched_sequences']} sequences) at {speed['prompt_len']}, "
        f"{speed.get('decode_batched_deep_tokens_per_s')} tok/s at {speed.get('deep_len')}; in KV streams "
        f"{speed.get('decode_streams_tokens_per_s')} and {speed.get('decode_streams_deep_tokens_per_s')} tok/s",
        flush=True,
    )
    rows = []
    for task in a.tasks.split(","):
        results, proc_wall = {}, {}
        for route in a.routes.split(","):
            if route.startswith("server") and (task == "mmlu" or not a.llama_server):
                continue  # llama-server returns no prompt log-probs; needs a binary
            if route == "oursu" and task == "mmlu":
                continue  # the KV layout of generation slots: log-likelihood runs exactly as route ours
            res, proc_wall[route], err = _child(["--child", f"{route}:{task}", *base])
            if res is None:
                print(f"{route} {task} failed:\n{err}", file=sys.stderr)
                continue
            results[route] = res
        ours = results.get("ours")
        floor = floor_d = floor_s = depth = None
        if ours:
            floor = floor_seconds(speed, ours["prompt_tokens"], ours["generated_tokens"])
            depth = ours["gen_depth_sum"] / ours["gen_decodes"] if ours.get("gen_decodes") else None
            floor_d = floor_seconds(speed, ours["prompt_tokens"], ours["generated_tokens"], depth)
            if depth is not None and speed.get("decode_streams_deep_tokens_per_s"):
                floor_s = floor_seconds(
                    speed, ours["prompt_tokens"], ours["generated_tokens"], depth, streams=True
                )
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
            fl = floor_d if task == "gsm8k" and floor_d else floor
            rows.append(
                {
                    "task": f"{task} {r['n']}",
                    "route": route,
                    "wall s": f"{r['wall']:.1f}",
                    "proc s": f"{proc_wall[route]:.1f}",
                    "setup s": f"{r['setup_s']:.1f}" if r.get("setup_s") is not None else "-",
                    "peak RSS MB": f"{r['rss_mb']:.0f}",
                    "acc": f"{100 * r['acc']:.1f}",
                    "agree w/ ours": "-" if agree is None else f"{100 * agree:.1f}%",
                    "= 1-at-a-time": "-" if same is None else f"{100 * same:.1f}%",
                    "x ours": "-" if not ours else f"{r['wall'] / ours['wall']:.2f}",
                    "x floor": "-" if not fl else f"{r['wall'] / fl:.2f}",
                    "x floor (proc)": "-" if not fl else f"{proc_wall[route] / fl:.2f}",
                    "x streams floor": f"{r['wall'] / floor_s:.2f}" if task == "gsm8k" and floor_s else "-",
                }
            )
        if ours and one and task == "gsm8k":
            _explain_differences(ours, one)
        if ours:
            print(
                f"{task}: floor {floor:.1f} s = {ours['prompt_tokens']} prompt tokens at {speed['prompt_tokens_per_s']}"
                f" tok/s + {ours['generated_tokens']} generated at {speed['decode_batched_tokens_per_s']} tok/s"
                f" ({speed['batched_sequences']} sequences); ours: {ours['decode_calls']} decode calls,"
                f" {ours['decode_seconds']:.1f} s in llama_decode"
            )
            if task == "gsm8k" and depth is not None:
                print(
                    f"{task}: floor at depth {floor_d:.1f} s (used for x floor): the generated tokens' mean position"
                    f" is {depth:.0f}; batched decode {speed['decode_batched_tokens_per_s']} tok/s at"
                    f" {speed['prompt_len']}, {speed.get('decode_batched_deep_tokens_per_s')} tok/s at"
                    f" {speed.get('deep_len')}"
                )
            if task == "gsm8k" and floor_s is not None:
                print(
                    f"{task}: floor at depth in KV streams {floor_s:.1f} s: batched decode with one KV stream per "
                    f"sequence, generation's layout, {speed['decode_streams_tokens_per_s']} tok/s at "
                    f"{speed['prompt_len']}, {speed['decode_streams_deep_tokens_per_s']} tok/s at {speed['deep_len']}"
                )
        task_rows = [r for r in rows if r["task"].startswith(f"{task} ")]
        if task_rows:  # each task's table as soon as it is done (a long run shows its first table early)
            print(markdown_table(task_rows, tuple(task_rows[0])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
