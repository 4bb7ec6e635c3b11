"""Issue #14 part 6: the preflight's KV figure comes from the plan and equals (exact prompt length) or
bounds (the measured per-task bound used before download) the context the engine really allocates."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.run.preflight import planned_ctx, prompt_bounds

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("task", ["gsm8k", "mmlu_cot"])
def test_preflight_kv_cells_equal_or_bound_the_engines_allocation(task, engine, mirror, tmp_path, monkeypatch):
    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.models.catalogue import resolve
    from harness.records.identity import measurement
    from harness.run.journal import Journal
    from harness.run.runner import engine_session, run_task
    from harness.tasks.settings import plan_task

    entry = resolve("smollm2-135m")
    plan = plan_task(task, entry, limit=1, data_dir=mirror)
    seen = {}
    real_generate = LlamaEngine.generate

    def generate(self, prompts, until, max_new_tokens, **kw):  # the real generation, watched
        out = real_generate(self, prompts, until, max_new_tokens, **kw)
        seen.update(longest=max(len(p) for p in prompts), budget=max(max_new_tokens), cells=self._ctx_size,
                    streams=self._n_seq)
        return out

    monkeypatch.setattr(LlamaEngine, "generate", generate)
    session = engine_session(engine, Path(engine.model_path), "test", 0.0, None)
    journal = Journal(tmp_path / "j.jsonl", measurement("test", plan.config_hash(), engine.settings.as_record(), False))
    try:
        run_task(plan, entry, session, tmp_path, journal)
    finally:
        journal.close()
    settings = engine.settings
    assert seen["streams"] == settings.n_parallel + 1  # gen_streams: a stream per slot, plus the prefix's
    exact = planned_ctx([plan], settings, longest={task: seen["longest"]})["tasks"][task]
    assert exact["gen_budget"] == seen["budget"]
    assert exact["cells"] == seen["cells"]  # from the exact prompt length: the engine's allocation, to the cell
    bound = planned_ctx([plan], settings)["tasks"][task]  # before download: the measured per-task bound
    assert bound["prompt_tokens"] >= seen["longest"] and bound["cells"] >= seen["cells"]
    per_stream = seen["cells"] // seen["streams"]
    print(f"{task}: engine {seen['cells']} cells ({seen['longest']}-token prompt + {seen['budget']}); preflight bound "
          f"{bound['cells']} cells (<= {bound['prompt_tokens']}-token prompt): "
          f"+{(bound['cells'] - seen['cells']) // seen['streams']} cells per stream of {per_stream}")
    assert prompt_bounds().longest  # the table the bound came from is loaded and validated
