"""Answer extraction and scoring through lm-eval's own filters/metric, configured as our tasks are."""

import pytest
from lm_eval.api.registry import get_metric
from lm_eval.filters import build_filter_ensemble

from harness.tasks.settings import lm_eval_config


def _score(task: str, filter_name: str, response: str, target: str) -> tuple[str, float]:
    cfg = lm_eval_config(task)
    (spec,) = [f for f in cfg["filter_list"] if f["name"] == filter_name]
    ensemble = build_filter_ensemble(
        filter_name,
        [[f["function"], {k: v for k, v in f.items() if k != "function"}] for f in spec["filter"]],
    )

    class Inst:
        def __init__(self):
            self.resps = [response]
            self.doc = {}
            self.filtered_resps = {}
            self.doc_id = 0
            self.task_name = task
            self.repeats = 1
            self.request_type = "generate_until"

    inst = Inst()
    ensemble.apply([inst])
    extracted = inst.filtered_resps[filter_name]
    (m,) = [m for m in cfg["metric_list"] if m["metric"] == "exact_match"]
    kwargs = {k: v for k, v in m.items() if k not in ("metric", "aggregation", "higher_is_better")}
    score = get_metric("exact_match")(references=[target], predictions=[extracted], **kwargs)["exact_match"]
    return extracted, score


@pytest.mark.parametrize(
    "response,target,strict,flexible",
    [
        ("5 + 4 = 9. The final answer is 9", "9", 1.0, 1.0),
        ("Total is 1,234. The final answer is 1,234.", "1234", 1.0, 1.0),  # comma and trailing period ignored
        ("The final answer is $18", "18", 1.0, 1.0),  # dollar sign ignored
        (
            "3 + 4 = 7 and 7 * 2 = 14. The final answer is 14.",
            "14",
            1.0,
            1.0,
        ),  # several numbers: the last one
        ("I think it is 12 apples, maybe 13.", "13", 0.0, 1.0),  # no 'final answer': strict fails
        ("I cannot solve this.", "5", 0.0, 0.0),  # no answer at all
        ("The final answer is -3", "-3", 1.0, 1.0),
        ("The final answer is 7. Then 8 more.", "7", 1.0, 0.0),  # flexible takes the last number
    ],
)
def test_gsm8k_cot_llama_extraction(response, target, strict, flexible):
    assert _score("gsm8k_cot_llama", "strict-match", response, target)[1] == strict
    assert _score("gsm8k_cot_llama", "flexible-extract", response, target)[1] == flexible


@pytest.mark.parametrize(
    "response,target,ok",
    [(" B.", "B.", 1.0), (" B", "B.", 1.0), (" C.", "B.", 0.0), ("  b", "B.", 1.0)],
)
def test_mmlu_llama_letter(response, target, ok):
    assert _score("mmlu_llama_anatomy", "strict_match", response, target)[1] == ok
