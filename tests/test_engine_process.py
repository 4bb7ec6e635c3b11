"""The engine process (issue #28): what it imports, a crash costs a restart (not the run), a load failure is
not retried, and ``--engines 2`` gives every result one engine gives. Real worker, real bench, real kills."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from harness.backends.llamacpp.assign import generation_units_of, loglikelihood_units, spread

SAME = ("task", "metrics", "per_subtask", "samples")
HEAVY = ("torch", "pyarrow", "datasets", "lm_eval", "pandas", "transformers", "click", "yaml", "tqdm")


def _cmd(mirror, results, task, limit, *extra):
    return [
        sys.executable,
        "-m",
        "harness.cli",
        "bench",
        "--tasks",
        task,
        "--limit",
        str(limit),
        "--threads",
        "2",
        "--data-dir",
        str(mirror),
        "--results-dir",
        str(results),
        *extra,
    ]


def _record(results) -> dict:
    (p,) = [p for p in (results / "runs").glob("*.json") if not p.name.endswith(".lm_eval.json")]
    return json.loads(p.read_text())


def _journal_lines(results) -> int:
    d = results / ".journal"
    return sum(len(f.read_text().splitlines()) - 1 for f in d.glob("*.jsonl")) if d.exists() else 0


def _worker_of(pid: int) -> psutil.Process | None:
    """The bench's engine process (its child running harness.backends.llamacpp.worker)."""
    try:
        for c in psutil.Process(pid).children():
            if "harness.backends.llamacpp.worker" in " ".join(c.cmdline()):
                return c
    except psutil.Error:
        pass
    return None


# ---------------------------------------------------------------------------------------------- the split
def test_split_keeps_prefix_groups_and_generation_units_whole_and_ignores_timing():
    ctx_a, ctx_b = list(range(100, 160)), list(range(500, 580))
    ll = [(ctx_a, [1]), (ctx_a, [2]), (ctx_b, [1]), (ctx_b, [2, 3]), (ctx_a + [7], [4])]
    units = loglikelihood_units(ll, 32)
    shares = spread(units, 2)
    assert shares == spread(units, 2) and set().union(*shares) == set(range(len(ll)))
    assert not shares[0] & shares[1]
    for _, members in units:  # a prefix group is never cut between engines
        assert any(set(members) <= s for s in shares)
    prompts = [list(range(1000, 1040)) + [i] for i in range(7)]
    gen = generation_units_of(prompts, [16] * 7, 32, 2)
    assert sorted(len(m) for _, m in gen) == [1, 2, 2, 2]
    shares = spread(gen, 3)
    for _, members in gen:
        assert any(set(members) <= s for s in shares)


# ---------------------------------------------------------------------------------------------- imports
@pytest.mark.slow
def test_worker_imports_only_the_engine(smollm2_path):
    import lm_eval  # noqa: F401 - the parent holds lm-eval (and through it torch/pyarrow where installed)

    from harness.backends.llamacpp.engine_proc import EngineProcess
    from harness.backends.llamacpp.settings import EngineSettings

    ep = EngineProcess(smollm2_path, EngineSettings(threads=1))
    try:
        mods = ep.worker_modules()
        assert ep.pids[0] != os.getpid()
        assert ep.tokenize("Hello") == ep.tokenize("Hello")
    finally:
        ep.close()
    tops = {m.split(".")[0] for m in mods}
    assert "llama_cpp" in tops and "numpy" in tops
    assert not tops & set(HEAVY), sorted(tops & set(HEAVY))
    ours = sorted(m for m in mods if m.startswith("harness."))
    engine_parts = [
        "context",
        "devices",
        "engine",
        "generation",
        "log_hook",
        "loglik",
        "prefix_plan",
        "rpc",
        "settings",
        "sizing",
        "speed_probe",
        "tokenizer",
    ]  # the engine's own modules, no more
    assert ours == [
        "harness.backends",
        "harness.backends.llamacpp",
        *(f"harness.backends.llamacpp.{m}" for m in engine_parts),
        "harness.errors",
        "harness.paths",
    ], ours
    # (the worker itself runs as __main__: python -m harness.backends.llamacpp.worker)
    assert (
        psutil.pid_exists(ep.pids[0]) is False or psutil.Process(ep.pids[0]).status() == psutil.STATUS_ZOMBIE
    )


@pytest.mark.slow
def test_the_bench_process_never_loads_llama_cpp(mirror):
    """The parent's side of a bench (preflight, start, speed probe, prompt format, model facts) runs without
    llama.cpp in its own address space: only the engine process loads it (a CUDA build beside torch crashed)."""
    code = f"""
import sys
import lm_eval
from harness.backends.llamacpp.backend import LlamaCppBackend
from harness.backends.llamacpp.settings import EngineSettings
from harness.models.catalogue import resolve
from harness.models.locate import local_model_path
from harness.plan.fit import preflight_file
from harness.tasks.settings import plan_task
entry = resolve("smollm2-135m")
from pathlib import Path
plan = plan_task("mmlu_loglik", entry, limit=1, data_dir=Path({str(mirror)!r}))
backend = LlamaCppBackend(entry, local_model_path(entry), EngineSettings(threads=1), fit=preflight_file)
backend.check([plan])
backend.start()
facts = backend.backend_facts(plan) | backend.model_facts()
backend.close()
print(facts["n_params"] > 0, facts["prompt_format"]["chat_template"] is not None, "llama_cpp" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["True", "True", "False"], done.stdout


# ---------------------------------------------------------------------------------------------- load failure
def test_death_at_load_is_a_load_failure_not_retried(tmp_path, mirror):
    env = dict(os.environ, HARNESS_ENGINE_FAULT="load")
    done = subprocess.run(
        _cmd(mirror, tmp_path, "mmlu_loglik", 1), capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "died while loading" in done.stderr and "SIGABRT" in done.stderr, done.stderr[-2000:]
    assert "not retried" in done.stderr and "starting a new one" not in done.stderr
    assert "Traceback" not in done.stderr


def test_deaths_in_a_row_stop_the_run_with_a_resumable_message(tmp_path, mirror):
    env = dict(os.environ, HARNESS_ENGINE_FAULT="request")
    done = subprocess.run(
        _cmd(mirror, tmp_path, "mmlu_loglik", 1, "--max-restarts", "2"),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    err = done.stderr
    assert err.count("died: signal 6 (SIGABRT)") == 2, err[-2000:]
    assert err.count("starting a new one") == 1  # one restart, then the second death in a row stops
    assert "died 2 times in a row without finishing a request" in err and "rerun the same command" in err
    assert "Traceback" not in err
    assert not list((tmp_path / "runs").glob("*.json"))  # nothing that looks complete


# ---------------------------------------------------------------------------------------------- recovery
GEN = ("--parallel", "2", "--gen-unit", "2")
CASES = {"gsm8k": ("gsm8k", 3, GEN), "mmlu": ("mmlu_loglik", 3, ())}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mirror):
    """Uninterrupted one-engine records, per case (computed once for the recovery and --engines tests)."""
    got = {}

    def run(case):
        if case not in got:
            task, limit, extra = CASES[case]
            d = tmp_path_factory.mktemp(f"ref-{case}")
            ref = subprocess.run(
                _cmd(mirror, d, task, limit, *extra), capture_output=True, text=True, timeout=1800
            )
            assert ref.returncode == 0, ref.stderr[-2000:]
            got[case] = _record(d)
        return got[case]

    return run


def _kill_engine(proc, results, sigs, rng, log):
    """Kill the bench's engine process with each of ``sigs`` in turn, each after a new request was journaled
    (plus a seeded delay): real signals from outside, at points the seed picks."""
    seen = 0
    for sig in sigs:
        while proc.poll() is None and _journal_lines(results) <= seen:
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.4))
        worker = _worker_of(proc.pid)
        if proc.poll() is not None or worker is None:
            return
        seen = _journal_lines(results)
        try:
            os.kill(worker.pid, sig)
        except ProcessLookupError:
            return
        log.append(signal.Signals(sig).name)
        while proc.poll() is None and (_worker_of(proc.pid) or worker).pid == worker.pid:  # its replacement
            time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case,seed,sigs",
    [("gsm8k", 1, (signal.SIGKILL, signal.SIGSEGV)), ("mmlu", 2, (signal.SIGABRT, signal.SIGKILL))],
)
def test_killed_engine_restarts_and_the_record_equals_an_uninterrupted_run(
    tmp_path, mirror, reference, case, seed, sigs
):
    task, limit, extra = CASES[case]
    ref = reference(case)
    rng = random.Random(seed)
    kills: list[str] = []
    proc = subprocess.Popen(
        _cmd(mirror, tmp_path, task, limit, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    killer = threading.Thread(target=_kill_engine, args=(proc, tmp_path, sigs, rng, kills))
    killer.start()
    out, err = proc.communicate(timeout=1800)
    killer.join()
    assert proc.returncode == 0, err[-3000:]
    assert kills, f"seed {seed}: the run finished before any kill"
    rec = _record(tmp_path)
    for k in SAME:
        assert rec[k] == ref[k], k
    restarts = rec["resume"]["engine_restarts"]
    assert restarts["count"] == len(kills), (kills, restarts)
    assert [c["cause"].split("(")[1].rstrip(")") for c in restarts["causes"]] == kills
    assert all(c["requests_kept"] >= 1 for c in restarts["causes"])
    assert err.count("starting a new one") == len(kills) and "Traceback" not in err
    assert rec["resume"]["requests_from_journal"] == 0  # recovered inside the run: no rerun was needed
    print(f"{case} seed {seed}: kills {kills}; {restarts}")


# ---------------------------------------------------------------------------------------------- --engines 2
@pytest.mark.slow
@pytest.mark.parametrize("case", ["gsm8k", "mmlu"])
def test_two_engines_give_one_engines_samples(tmp_path, mirror, reference, case):
    task, limit, extra = CASES[case]
    done = subprocess.run(
        _cmd(mirror, tmp_path, task, limit, *extra, "--engines", "2"),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rec, ref = _record(tmp_path), reference(case)
    for k in SAME:
        assert rec[k] == ref[k], k
    assert rec["backend"]["engines"] == 2 and rec["backend"]["threads"] == 2  # 2 engines x 1 thread


@pytest.mark.slow
def test_two_engines_generate_and_score_as_one_engine_at_the_engine_level(smollm2_path, engine):
    """The same check without a bench, small enough for any machine: 4 prompts sharing a few-shot-like prefix,
    2 slots, units of 2 (so each engine gets one whole unit), and log-likelihood over 2 prefix groups; the
    in-process engine (2 threads) is the reference for 2 engine processes of 1 thread each."""
    from harness.backends.llamacpp.engine_proc import EngineProcess
    from harness.backends.llamacpp.settings import EngineSettings

    shared = "Answer each question with one number. Q: What is two plus two? A: 4. Q: What is three times three? A: 9."
    prompts = [
        engine.tokenize(f"{shared} Q: What is {a} plus {b}? A:") for a, b in ((1, 5), (7, 2), (3, 3), (8, 8))
    ]
    other = engine.tokenize(
        "A completely different context about the weather in Paris, which is often mild, and"
    )
    ll = [
        (prompts[0], engine.tokenize(" 6", add_bos=False)),
        (prompts[1], engine.tokenize(" nine", add_bos=False)),
        (other, engine.tokenize(" rainy", add_bos=False)),
        (other, engine.tokenize(" sunny today", add_bos=False)),
    ]
    settings = EngineSettings(threads=2, n_parallel=2, gen_unit=2)
    # Each engine really gets work: one generation unit, one prefix group each.
    assert all(spread(generation_units_of(prompts, [12] * 4, settings.min_shared_prefix, 2), 2))
    assert all(spread(loglikelihood_units(ll, settings.min_shared_prefix), 2))
    one = engine.__class__(smollm2_path, settings)
    try:
        want_gen = one.generate(prompts, [["Q:"]] * 4, [12] * 4)
        want_ll = one.loglikelihood(ll)
    finally:
        one.close()
    two = EngineProcess(smollm2_path, settings, engines=2)
    try:
        got_gen = two.generate(prompts, [["Q:"]] * 4, [12] * 4)
        got_ll = two.loglikelihood(ll)
        assert two.threads == 2 and len(set(two.pids)) == 2
    finally:
        two.close()
    assert got_gen == want_gen
    assert got_ll == want_ll  # bit for bit: the floats compare exactly
