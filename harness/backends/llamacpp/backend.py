"""The llama.cpp engine as a bench backend (harness/backends/base.py): in engine processes (default, issue #28:
harness/backends/llamacpp/engine_proc.py) or in this process (``--no-engine-process``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from harness.backends.llamacpp.engine import LlamaEngine
from harness.backends.llamacpp.engine_proc import MAX_RESTARTS, EngineProcess
from harness.backends.llamacpp.settings import EngineSettings
from harness.models.catalogue import ModelEntry
from harness.records.journal import Journal
from harness.tasks.settings import TaskPlan

NAME = "llama-bench (in-process llama.cpp, low-level API)"


class FitCheck(Protocol):
    """The memory preflight on the real file, handed in by the bench (harness/plan/fit.py
    ``preflight_file``: the fit decision sits above the backends): refuses (HarnessError) weights + planned KV
    cache that this machine cannot hold; returns the GGUF header summary and whether layers are offloaded."""

    def __call__(
        self,
        model: ModelEntry,
        model_path: Path,
        plans: list[TaskPlan],
        settings: EngineSettings,
        quant_sizes: dict | None = None,
        copies: int = 1,
    ) -> tuple[dict, bool]: ...


class LlamaCppBackend:
    """A local GGUF file run by :class:`LlamaEngine`, in ``engines`` engine processes or (``engine_process``
    False) in this process.

    :meth:`check` runs ``fit``, the memory preflight on the real file (weights + the planned KV cache: exactly
    what the engine will allocate, once per engine); ``notify`` prints an engine restart above the progress
    bars (default: a line on stderr). The identity names the weights by the sha256 of their
    bytes. The engine count is not part of the identity: every result equals one engine's
    (harness/backends/llamacpp/assign.py), so a run resumes with another ``--engines``.
    """

    def __init__(
        self,
        model: ModelEntry,
        model_path: Path,
        settings: EngineSettings,
        verbose: bool = False,
        engines: int = 1,
        engine_process: bool = True,
        max_restarts: int = MAX_RESTARTS,
        *,
        fit: FitCheck | None,
        notify: Callable[[str], None] | None = None,
    ):
        self.model, self.model_path, self.settings, self.verbose = model, Path(model_path), settings, verbose
        self.engines, self.engine_process, self.max_restarts = engines, engine_process, max_restarts
        self.fit, self.notify = fit, notify  # fit None: an engine already loaded (loaded()), nothing to judge
        self.engine: LlamaEngine | EngineProcess | None = None
        self._restarts_before = 0  # engine restarts before the current task
        self.load_seconds = 0.0
        self.speed: dict | None = None
        self._sha: str | None = None
        self._gpu = False

    @classmethod
    def loaded(
        cls,
        engine: LlamaEngine,
        model: ModelEntry | None,
        sha: str,
        load_seconds: float = 0.0,
        speed: dict | None = None,
        model_path: Path | None = None,
    ) -> LlamaCppBackend:
        """A backend around an engine that is already loaded (tests, scripts)."""
        self = cls(model, Path(model_path or engine.model_path), engine.settings, fit=None)
        self.engine, self._sha, self.load_seconds, self.speed = engine, sha, load_seconds, speed
        self._gpu = bool(engine.gpu_offload)
        return self

    def model_entry(self) -> ModelEntry:
        return self.model

    def check(self, plans: list[TaskPlan]) -> None:
        if self.fit is None:  # loaded() around a running engine: what it needs is already allocated
            return
        from harness.models.hub_files import quant_sizes

        # Weights + planned KV cache fit? (and whether layers are offloaded: part of the identity)
        _, self._gpu = self.fit(
            self.model,
            self.model_path,
            plans,
            self.settings,
            quant_sizes(self.model, remote=False),
            copies=self.engines,
        )

    def sha256(self) -> str:
        """The sha256 of the weights' bytes (hashed once; remembered by harness.hashing)."""
        if self._sha is None:
            from harness.hashing import file_sha256

            self._sha = file_sha256(self.model_path)
        return self._sha

    def identity(self, plan: TaskPlan) -> dict:
        from harness.records.identity import measurement

        return measurement(self.sha256(), plan.config_hash(), self.settings.as_record(), self._gpu)

    def start(self) -> None:
        from harness.backends.llamacpp.speed import probe

        t0 = time.perf_counter()
        if self.engine_process:
            self.engine = EngineProcess(
                self.model_path,
                self.settings,
                verbose=self.verbose,
                engines=self.engines,
                max_restarts=self.max_restarts,
                notify=self.notify,
            )
        else:
            self.engine = LlamaEngine(self.model_path, self.settings, verbose=self.verbose)
        self.load_seconds = time.perf_counter() - t0
        self.speed = probe(self.engine)  # this machine's rates, for each record's floor and efficiency

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def make_lm(self, plan: TaskPlan, progress: Callable, journal: Journal) -> object:
        from harness.backends.llamacpp.lm_model import LlamaBenchLM

        self._restarts_before = len(getattr(self.engine, "restarts", []))
        return LlamaBenchLM(engine=self.engine, progress=progress, journal=journal, samples=plan.samples)

    def engine_rss_mb(self) -> float:
        """Peak memory of the engine processes (0 in process: this process's own peak already holds it)."""
        return self.engine.peak_rss_mb() if isinstance(self.engine, EngineProcess) else 0.0

    def engine_cpu_seconds(self) -> float:
        """CPU seconds (user + system) the live engine processes have used (0 in process: this process's own
        CPU time already holds llama.cpp's threads)."""
        return self.engine.cpu_seconds() if isinstance(self.engine, EngineProcess) else 0.0

    def resume_facts(self, plan: TaskPlan) -> dict:
        """The record's ``resume.engine_restarts``: the engine processes' deaths during ``plan``'s task."""
        if not isinstance(self.engine, EngineProcess):
            return {}
        causes = [
            {k: r[k] for k in ("engine", "cause", "requests_kept")}
            for r in self.engine.restarts[self._restarts_before :]
        ]
        return {"engine_restarts": {"count": len(causes), "causes": causes}}

    def stats(self, plan: TaskPlan):
        return self.engine.stats

    def model_facts(self) -> dict:
        engine = self.engine
        return {
            "file": self.model_path.name,
            "sha256": self.sha256(),
            "size_bytes": self.model_path.stat().st_size,
            "n_params": engine.n_params,
            "architecture": engine.meta("general.architecture"),
            "gguf_name": engine.meta("general.name"),
            "n_ctx_train": engine.n_ctx_train,
        }

    def backend_facts(self, plan: TaskPlan) -> dict:
        from harness.backends.llamacpp.lm_model import prompt_format

        engine = self.engine
        out = {
            "name": NAME,
            "settings": engine.settings.as_record(),
            "threads": engine.threads,
            "gpu_offload": engine.gpu_offload,
            "n_ctx": engine.stats.n_ctx,
            "llama_cpp_system_info": engine.system_info(),
            # BOS rule, stop tokens, chat template source/sha256 and its fixed date (harness/backends/llamacpp/lm_model.py)
            "prompt_format": prompt_format(engine),
        }
        if self.engines > 1:
            out["engines"] = self.engines
        if engine.settings.rpc_servers:
            out["rpc_workers"] = engine.rpc_devices
        if engine.gpu_offload and engine.gpus:
            out["gpus"] = [{k: d[k] for k in ("device", "description", "total_bytes")} for d in engine.gpus]
            out["gpu_layers_offloaded"] = engine.layers_offloaded
        return out
