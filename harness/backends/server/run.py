"""Run harness tasks through an OpenAI-compatible server (``harness bench --backend server``).

Same tasks, journals, records and claims as an in-process run; the record names the server, its
model and version instead of a local file's sha256.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from harness.backends.server.client import ServerClient
from harness.backends.server.lm_model import SCHEME, ServerLM, ServerStats
from harness.backends.server.replies import NoPromptLogprobs
from harness.errors import HarnessError
from harness.models.catalogue import ModelEntry, quant_from_name, resolve
from harness.records.identity import measurement, server_weights
from harness.records.journal import Journal
from harness.tasks.settings import TaskPlan

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
        raise HarnessError(
            f"--api-key-env names {name}, which is not set", f"export {name}=<the server's key> first."
        )
    return key


def server_model(model: ModelEntry, quant_given: bool, served_file: str | None) -> ModelEntry:
    """The catalogue entry for what the server runs: its quant read from the served file's name when it
    says one (a mismatch with --quant is an error: the record would name the wrong weights)."""
    detected = quant_from_name(served_file) if served_file else None
    if not detected or detected.upper() == model.quant.upper():
        return model
    if quant_given:
        raise HarnessError(
            f"--quant {model.quant} but the server runs {served_file} ({detected})",
            f"pass --quant {detected}, or point --base-url at the server running {model.quant}.",
        )
    try:
        return resolve(model.name, detected)
    except HarnessError as exc:
        raise HarnessError(
            f"the server runs {served_file} ({detected}); the catalogue has no {detected} of {model.name}",
            "check --model (the record names it), or add the quant to tasks/models.yaml.",
        ) from exc


class ServerBackend:
    """An OpenAI-compatible server as a bench backend (harness/backends/base.py).

    :meth:`model_entry` asks the server what it serves (the record names that quant); :meth:`check`
    refuses a log-likelihood task when the server gives no prompt log-probs. Each task gets its own
    :class:`ServerLM` (its own counters); the identity names the server, its model id and file.
    """

    load_seconds = 0.0  # the server loaded the model before this run
    speed = None

    def __init__(
        self,
        model: ModelEntry,
        quant_given: bool,
        client: ServerClient,
        concurrency: int,
        local_gguf: Path | None = None,
    ):
        self.requested, self.quant_given, self.client = model, quant_given, client
        self.concurrency, self.local_gguf = concurrency, local_gguf
        self.info = None
        self.model: ModelEntry | None = None
        self.lms: dict[str, ServerLM] = {}
        self.facts: dict = {}

    def model_entry(self) -> ModelEntry:
        if self.model is None:
            self.info = info = self.client.info()
            model = self.model = server_model(self.requested, self.quant_given, info.model_file)
            known = {f.lower() for f in (*model.files.files, model.files.main_file)}
            if info.model_file and info.model_file.lower() not in known:
                # Not an error (a renamed or re-quantized file is legitimate), but the record will name MODEL.
                print(
                    f"warning: the server runs {info.model_file}; the catalogue's file for {model.name} "
                    f"{model.quant} is {model.files.main_file}. The record will say {model.name}: check --model.",
                    file=sys.stderr,
                )
        return self.model

    def check(self, plans: list[TaskPlan]) -> None:
        loglik = [p.name for p in plans if needs_prompt_logprobs(p)]
        logprobs = self.client.supports_prompt_logprobs() if loglik else None
        if loglik and not logprobs:
            err = NoPromptLogprobs(self.client.endpoint)
            raise HarnessError(f"{', '.join(loglik)}: {err.message}", err.hint)
        self.lms = {
            p.name: ServerLM(self.client, self.info, self.concurrency, local_gguf=self.local_gguf)
            for p in plans
        }
        probe_lm = next(
            iter(self.lms.values())
        )  # chat template source and BOS handling are the same for every task
        self.facts = {
            "name": "llama-bench-server (OpenAI-compatible /v1/completions)",
            "server": self.info.as_record(),
            "settings": {"scheme": SCHEME, "temperature": 0.0, "concurrency": self.concurrency},
            "prompt_logprobs": logprobs,
            "chat_template_source": probe_lm.template_source,
            "strip_bos": probe_lm.strip_bos,
        }

    def identity(self, plan: TaskPlan) -> dict:
        return measurement(
            server_weights(self.info.as_record(), self.model.name),
            plan.config_hash(),
            self.facts["settings"],
            None,
        )

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def make_lm(self, plan: TaskPlan, progress: Callable, journal: Journal) -> ServerLM:
        return self.lms[plan.name].attach(progress=progress, journal=journal, samples=plan.samples)

    def stats(self, plan: TaskPlan) -> ServerStats:
        return self.lms[plan.name].stats

    def model_facts(self) -> dict:
        return {"file": self.info.model_file, "sha256": None, "served_model_id": self.info.model_id}

    def backend_facts(self, plan: TaskPlan) -> dict:
        lm = self.lms[plan.name]
        # strip_bos as the task ran: a server of unknown kind is settled on its first prompt (ServerLM._settle_bos)
        return self.facts | {
            "requests": lm.stats.requests,
            "retries": lm.stats.retries,
            "strip_bos": lm.strip_bos,
            "bos_check": lm.bos_check,
        }
