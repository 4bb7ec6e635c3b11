"""Integrity of the claims catalogue: every claim can be matched to something the harness runs."""

from pathlib import Path

import pytest

from harness.catalogue import load_catalogue, model_names, resolve
from harness.claims import load_claims
from harness.compare import setting_mismatch
from harness.paths import TASKS_DIR
from harness.runs import Run
from harness.tasks import task_names, task_spec

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
CLAIMS = load_claims()


def test_claims_file_loads_with_unique_ids():
    assert len(CLAIMS) == len({c.id for c in CLAIMS}) >= 40


@pytest.mark.parametrize("c", CLAIMS, ids=lambda c: c.id)
def test_claim_names_a_catalogue_model_and_a_runnable_setting(c):
    names = set(model_names(load_catalogue()))
    assert c.model in names
    if c.kind == "params":
        return
    assert c.task in task_names()
    entry = resolve(c.model)
    spec = task_spec(c.task, entry.kind)
    if spec.get("requires_kind"):
        assert spec["requires_kind"] == entry.kind
    # A run of this task on this model, as the runner would describe it, must match the claim's setting.
    chat = spec["chat"] == "always" or (spec["chat"] == "instruct" and entry.kind == "instruct")
    run = Run(Path("x.json"), {"model": {"name": c.model, "kind": entry.kind},
                               "task": {"name": c.task, "num_fewshot": spec["num_fewshot"], "chat": chat}})
    assert setting_mismatch(c, run) == []
    other = (c.relation or {}).get("other_model")
    if other:
        assert other in names


@pytest.mark.skipif(not SEEDS.is_dir(), reason="shared/seeds not present on this machine")
def test_cited_articles_exist():
    cited = {c.article for c in CLAIMS if c.article}
    import yaml

    data = yaml.safe_load((TASKS_DIR / "claims.yaml").read_text())
    cited |= {row["article"] for row in data.get("out_of_scope", [])}
    missing = sorted(a for a in cited if not (SEEDS / a).is_file())
    assert not missing


def test_headline_claims_present():
    by_id = {c.id: c for c in CLAIMS}
    assert by_id["llama3.1-405b-instruct.gsm8k.card"].claimed == 96.8
    assert by_id["llama3.1-405b-instruct.mmlu_cot.card"].claimed == 88.6
    assert any(c.model == "smollm2-135m" for c in CLAIMS)  # the offline control
