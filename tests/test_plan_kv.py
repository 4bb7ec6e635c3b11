"""Issue #14 part 6: the preflight's KV figure comes from the plan and equals (exact prompt length) or
bounds (the measured per-task bound used before download) the context the engine really allocates, as
llama.cpp itself reports it (its context size and its KV cache log line: cells, streams, MiB)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.backends.llamacpp.sizing import planned_ctx, prompt_bounds
from harness.errors import HarnessError
from harness.plan.fit import fit_or_refuse

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("task", ["gsm8k", "mmlu_cot"])
def test_preflight_kv_cells_equal_or_bound_the_engines_allocation(
    task, engine, mirror, tmp_path, monkeypatch
):
    from harness.backends.llamacpp.backend import LlamaCppBackend
    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.models.catalogue import resolve
    from harness.records.identity import measurement
    from harness.records.journal import Journal
    from harness.run.runner import run_task
    from harness.tasks.settings import plan_task

    entry = resolve("smollm2-135m")
    plan = plan_task(task, entry, limit=1, data_dir=mirror)
    seen = {}
    real_generate = LlamaEngine.generate

    def generate(self, prompts, until, max_new_tokens, **kw):  # the real generation, watched
        out = real_generate(self, prompts, until, max_new_tokens, **kw)
        seen.update(
            longest=max(len(p) for p in prompts),
            budget=max(max_new_tokens),
            cells=self.context.size,
            streams=self.context.n_seq,
            llama_cpp=self.kv_allocated,
        )
        return out

    monkeypatch.setattr(LlamaEngine, "generate", generate)
    session = LlamaCppBackend.loaded(
        engine, None, "test", 0.0, None, Path(engine.model_path)
    )  # the loaded engine
    journal = Journal(
        tmp_path / "j.jsonl", measurement("test", plan.config_hash(), engine.settings.as_record(), False)
    )
    try:
        run_task(plan, entry, session, tmp_path, journal)
    finally:
        journal.close()
    settings = engine.settings
    assert seen["streams"] == settings.n_parallel + 1  # gen_streams: a stream per slot, plus the prefix's
    exact = planned_ctx([plan], settings, longest={task: seen["longest"]})["tasks"][task]
    assert exact["gen_budget"] == seen["budget"]
    assert (
        exact["cells"] == seen["cells"]
    )  # from the exact prompt length: the engine's allocation, to the cell
    # ... and what llama.cpp says it allocated: its n_ctx, and its KV log line's cells x streams and size.
    reported = seen["llama_cpp"]["report"]
    assert seen["llama_cpp"]["cells"] == exact["cells"] == reported["cells_per_stream"] * reported["streams"]
    assert reported["streams"] == seen["streams"]
    from harness.models.gguf_check import check_gguf

    shape = check_gguf(Path(engine.model_path), entry)
    figures = fit_or_refuse(
        1,
        shape,
        [plan],
        settings,
        "test",
        placed=("cpu", []),
        available=1 << 50,
        longest={task: seen["longest"]},
    )  # the preflight itself, from the header's shape
    assert figures["n_ctx"] == exact["cells"] and reported["layers"] == shape["n_layer"]
    assert (
        f"{figures['kv_bytes'] / 2**20:.2f}" == reported["mib"]
    )  # the bytes, to the 0.01 MiB llama.cpp prints
    bound = planned_ctx([plan], settings)["tasks"][task]  # before download: the measured per-task bound
    assert bound["prompt_tokens"] >= seen["longest"] and bound["cells"] >= seen["cells"]
    per_stream = seen["cells"] // seen["streams"]
    print(
        f"{task}: engine {seen['cells']} cells ({seen['longest']}-token prompt + {seen['budget']}); preflight bound "
        f"{bound['cells']} cells (<= {bound['prompt_tokens']}-token prompt): "
        f"+{(bound['cells'] - seen['cells']) // seen['streams']} cells per stream of {per_stream}"
    )
    assert prompt_bounds().longest  # the table the bound came from is loaded and validated


def test_a_context_llama_cpp_sizes_otherwise_than_planned_is_refused(engine):
    """The engine's check after each context creation: a real context whose cells differ from the planned
    figure (the one the preflight judged) is an error naming both, not a silently larger cache."""
    from harness.backends.llamacpp.log_hook import check_kv_allocation

    engine.context.ensure(1000, 1)
    assert engine.kv_allocated["cells"] == 1024 == engine.kv_allocated["report"]["cells_per_stream"]
    lc = engine.lc
    params = lc.llama_context_default_params()
    params.n_ctx, params.n_seq_max = 2048, 1
    ctx = lc.llama_init_from_model(engine.model, params)  # a real context of 2048 cells
    with pytest.raises(HarnessError, match="allocated 2048 KV cells where 1024 were planned"):
        check_kv_allocation(lc, ctx, 1024)  # frees the context it refuses
