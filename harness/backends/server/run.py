"""Run harness tasks through an OpenAI-compatible server (``harness bench --backend server``).

Same tasks, journals, records and claims as an in-process run; the record names the server, its
model and version instead of a local file's sha256.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from harness.backends.server.client import NoPromptLogprobs, ServerClient
from harness.backends.server.lm_model import SCHEME, ServerLM
from harness.errors import HarnessError
from harness.models.catalogue import ModelEntry, quant_from_name, resolve
from harness.records.identity import measurement, server_weights
from harness.run.journal import Journal
from harness.run.preflight import check_writable
from harness.run.runner import Session, open_journal, run_task
from harness.tasks.settings import TaskPlan, plan_task

LOGLIK_TYPES = {"loglikelihood", "multiple_choice", "loglikelihood_rolling"}


def needs_prompt_logprobs(plan: TaskPlan) -> bool:
    """Whether a task scores by log-likelihood (it then needs the server's prompt log-probs)."""
    return any(c.get("output_type") in LOGLIK_TYPES for c in plan.configs)


def api_key_from_env(name: str | None) -> str | None:
    """The API key from the variable named by --api-key-env (the key itself never goes on a command line)."""
    if not name:
        return None
    key = os.environ.get(name)
    if not key:
        raise HarnessError(f"--api-key-env names {name}, which is not set", f"export {name}=<the server's key> first.")
    return key


def server_model(model: ModelEntry, quant_given: bool, served_file: str | None) -> ModelEntry:
    """The catalogue entry for what the server runs: its quant read from the served file's name when it
    says one (a mismatch with --quant is an error: the record would name the wrong weights)."""
    detected = quant_from_name(served_file) if served_file else None
    if not detected or detected.upper() == model.quant.upper():
        return model
    if quant_given:
        raise HarnessError(f"--quant {model.quant} but the server runs {served_file} ({detected})",
                           f"pass --quant {detected}, or point --base-url at the server running {model.quant}.")
    try:
        return resolve(model.name, detected)
    except HarnessError as exc:
        raise HarnessError(f"the server runs {served_file} ({detected}); the catalogue has no {detected} of {model.name}",
                           "check --model (the record names it), or add the quant to tasks/models.yaml.") from exc


def run_bench_server(
    model: ModelEntry,
    quant_given: bool,
    tasks: list[str],
    limit: int | None,
    full: bool,
    seed: int,
    data_dir: Path | None,
    client: ServerClient,
    concurrency: int,
    results_dir: Path,
    local_gguf: Path | None = None,
    skip_bad_rows: bool = False,
) -> list[Path]:
    """Plan every task, ask the server what it serves and can do, refuse what it cannot score, then run."""
    info = client.info()
    model = server_model(model, quant_given, info.model_file)
    known = {f.lower() for f in (*model.files.files, model.files.main_file)}
    if info.model_file and info.model_file.lower() not in known:
        # Not an error (a renamed or re-quantized file is legitimate), but the record will name MODEL.
        print(f"warning: the server runs {info.model_file}; the catalogue's file for {model.name} "
              f"{model.quant} is {model.files.main_file}. The record will say {model.name}: check --model.",
              file=sys.stderr)
    plans = [plan_task(t, model, limit=limit, full=full, seed=seed, data_dir=data_dir, skip_bad_rows=skip_bad_rows)
             for t in tasks]
    check_writable(results_dir)
    loglik = [p.name for p in plans if needs_prompt_logprobs(p)]
    logprobs = client.supports_prompt_logprobs() if loglik else None
    if loglik and not logprobs:
        err = NoPromptLogprobs(client.endpoint)
        raise HarnessError(f"{', '.join(loglik)}: {err.message}", err.hint)
    lms = [ServerLM(client, info, concurrency, local_gguf=local_gguf) for _ in plans]
    probe_lm = lms[0]  # chat template source and BOS handling are the same for every task
    backend = {
        "name": "llama-bench-server (OpenAI-compatible /v1/completions)",
        "server": info.as_record(),
        "settings": {"scheme": SCHEME, "temperature": 0.0, "concurrency": concurrency},
        "prompt_logprobs": logprobs,
        "chat_template_source": probe_lm.template_source,
        "strip_bos": probe_lm.strip_bos,
    }
    facts = {"file": info.model_file, "sha256": None, "served_model_id": info.model_id}
    journals: list[Journal] = []
    try:
        for p in plans:
            ident = measurement(server_weights(info.as_record(), model.name), p.config_hash(), backend["settings"],
                                None)
            journals.append(open_journal(results_dir, model, p.name, ident))
        paths = []
        for p, j, lm in zip(plans, journals, lms):
            session = Session(
                make_lm=lm.attach,
                stats=lm.stats,
                model=facts,
                backend=lambda lm=lm: backend | {"requests": lm.stats.requests, "retries": lm.stats.retries},
            )
            paths.append(run_task(p, model, session, results_dir, j))
        return paths
    finally:
        for j in journals:
            j.close()
