"""Integrity of the claims catalogue: every claim can be matched to something the harness runs."""

from pathlib import Path

import pytest
import yaml
from records import make_record

from harness.analysis.claims import load_claims
from harness.analysis.compare import setting_mismatch
from harness.errors import HarnessError
from harness.models.catalogue import load_catalogue, resolve
from harness.paths import TASKS_DIR
from harness.records.runs import Run
from harness.records.schema import RunRecord
from harness.tasks.settings import task_names, task_spec

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
CLAIMS = load_claims()


def test_claims_file_loads_with_unique_ids():
    assert len(CLAIMS) == len({c.id for c in CLAIMS}) >= 40


@pytest.mark.parametrize("c", CLAIMS, ids=lambda c: c.id)
def test_claim_names_a_catalogue_model_and_a_runnable_setting(c):
    names = set(load_catalogue()["models"])
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
    rec = make_record(
        c.model, c.task, {"x": [True]}, kind=entry.kind, num_fewshot=spec["num_fewshot"], chat=chat
    )
    run = Run(Path("x.json"), RunRecord.model_validate(rec))
    assert setting_mismatch(c, run) == []
    other = (c.relation or {}).get("other_model")
    if other:
        assert other in names


@pytest.mark.skipif(not SEEDS.is_dir(), reason="shared/seeds not present on this machine")
def test_cited_articles_exist():
    cited = {c.article for c in CLAIMS if c.article}
    data = yaml.safe_load((TASKS_DIR / "claims.yaml").read_text())
    cited |= {row["article"] for row in data.get("out_of_scope", [])}
    missing = sorted(a for a in cited if not (SEEDS / a).is_file())
    assert not missing


def test_headline_claims_present():
    by_id = {c.id: c for c in CLAIMS}
    assert by_id["llama3.1-405b-instruct.gsm8k.card"].claimed == 96.8
    assert by_id["llama3.1-405b-instruct.mmlu_cot.card"].claimed == 88.6
    assert any(c.model == "smollm2-135m" for c in CLAIMS)  # the offline control


SETTING_CLAIMS = [c for c in CLAIMS if c.kind != "params"]


@pytest.mark.parametrize("c", SETTING_CLAIMS, ids=lambda c: c.id)
def test_claim_setting_agrees_with_the_task_it_is_compared_through(c):
    """Each stated field equals what the task runs for this model kind: none left null, none contradicting."""
    kind = resolve(c.model).kind
    spec = task_spec(c.task, kind)
    s = c.setting
    assert s["shots"] == spec["num_fewshot"]
    assert isinstance(s["cot"], bool) and s["cot"] == bool(spec.get("cot"))
    assert isinstance(s["chat"], bool)
    assert s["chat"] == (spec["chat"] == "always" or (spec["chat"] == "instruct" and kind == "instruct"))
    assert s["metric"] in spec["claim_metrics"]
    assert s["average"] in ("micro", "macro")
    ref = (c.relation or {}).get("reference") or {}
    if ref.get("value") is not None:  # a published competitor figure: measured in the claim's own setting
        assert ref["setting"] == {k: s[k] for k in ref["setting"]}


def _write_claims(tmp_path: Path, **changes) -> Path:
    row = {
        "id": "x.gsm8k.card",
        "model": "llama3.1-8b",
        "task": "gsm8k",
        "setting": {"shots": 8, "cot": True, "chat": False, "metric": "maj@1", "average": "micro"},
        "kind": "value",
        "claimed": 57.2,
        "source": "s",
        "article": None,
        "summary": "",
        "confirmed": True,
    }
    row.update(changes)
    p = tmp_path / "claims.yaml"
    p.write_text(yaml.safe_dump({"schema_version": 1, "claims": [row]}))
    return p


@pytest.mark.parametrize(
    "changes,message",
    [
        (
            {
                "setting": {
                    "shots": 5,
                    "cot": None,
                    "chat": False,
                    "metric": "exact_match",
                    "average": "micro",
                }
            },
            "leaves cot unstated",
        ),
        ({"claimed_ci95": -1}, "positive half-width"),
        ({"mapping": {"by": "ours"}}, "needs its reason"),
        ({"mapping": {"by": "meta", "reason": "r"}}, "mapping must be"),
        (
            {
                "kind": "relation",
                "claimed": None,
                "relation": {
                    "op": ">",
                    "reference": {"name": "GPT-4o", "value": 96.1, "source": "s", "confirmed": True},
                },
            },
            "not the setting it was measured in",
        ),
    ],
)
def test_loader_refuses_unstated_or_malformed_fields(tmp_path, changes, message):
    with pytest.raises(HarnessError) as err:
        load_claims(_write_claims(tmp_path, **changes))
    assert message in err.value.format_message()


def test_loader_keeps_interval_and_mapping(tmp_path):
    (c,) = load_claims(
        _write_claims(tmp_path, claimed_ci95=2.7, mapping={"by": "ours", "reason": "no benchmark named"})
    )
    assert c.claim_text() == "57.2 ± 2.7" and c.mapping_ours
    assert c.source_text() == "s [benchmark chosen by us, not by the source: no benchmark named]"


def test_base_model_gsm8k_claims_from_the_llama3_paper():
    """Meta's pre-trained GSM8K (Llama 3 paper, Table 12), 8-shot CoT, maj@1, no chat (3.1 eval_details)."""
    by_id = {c.id: c for c in CLAIMS}
    for model, value, ci in (
        ("llama3.1-8b", 57.2, 2.7),
        ("llama3.1-70b", 83.7, 2.0),
        ("llama3.1-405b", 89.0, 1.7),
    ):
        c = by_id[f"{model}.gsm8k.paper"]
        assert (c.model, c.task, c.kind, c.claimed, c.claimed_ci95) == (model, "gsm8k", "value", value, ci)
        assert c.setting == {"shots": 8, "cot": True, "chat": False, "metric": "maj@1", "average": "micro"}
        assert "Table 12" in c.source and "eval_details.md" in c.source and c.confirmed
        assert resolve(model).kind == "base"


def test_base_gsm8k_runs_wei_et_al_format_without_chat(mirror):
    """The setting the base claims need: Wei et al.'s 8 exemplars as plain Q:/A: text, 1024 new tokens."""
    from harness.tasks.settings import plan_task

    base = plan_task("gsm8k", resolve("llama3.1-8b"), limit=2, data_dir=mirror)
    (cfg,) = base.configs
    assert cfg["task"] == "gsm8k_cot" and not base.chat and base.num_fewshot == 8
    assert cfg["doc_to_text"].startswith("Q: ") and cfg["generation_kwargs"]["max_gen_toks"] == 1024
    assert cfg["fewshot_config"]["samples"][0]["target"].endswith("The answer is 6.")
    inst = plan_task("gsm8k", resolve("llama3.1-8b-instruct"), limit=2, data_dir=mirror)
    assert inst.configs[0]["task"] == "gsm8k_cot_llama" and inst.chat
    assert base.metrics == inst.metrics  # same metric and filter names: the claims' maj@1 maps onto both


def test_llama33_relations_say_the_benchmark_is_ours():
    rows = [c for c in CLAIMS if c.model == "llama3.3-70b-instruct" and c.kind == "relation"]
    assert {c.task for c in rows} == {"gsm8k", "mmlu_cot"} and len(rows) == 8
    for c in rows:
        assert c.mapping_ours and c.mapping["reason"].startswith("the article names no benchmark")
        assert "[benchmark chosen by us" in c.source_text(short=True)
    for c in CLAIMS:
        if c.model != "llama3.3-70b-instruct":
            assert not c.mapping_ours, c.id
