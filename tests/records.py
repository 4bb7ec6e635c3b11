"""Hand-made run records for testing comparison, publishing and regression logic without a model: made by
the runner's own builder (harness.records.build.build_record), so they are what a real run writes."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from harness.analysis.estimate import wilson_interval
from harness.atomic import write_json
from harness.records.build import build_record
from harness.records.schema import Backend, Hardware, ModelFacts, TaskFacts, Timing
from harness.tasks.settings import task_spec


def make_record(
    model: str,
    task: str,
    correct: dict[str, list[bool]],
    sizes: dict[str, int] | None = None,
    quant: str = "Q4_K_M",
    kind: str = "instruct",
    n_params: float = 8.03e9,
    num_fewshot: int | None = None,
    chat: bool | None = None,
    created: str = "2026-11-22T10:00:00+00:00",
    sha256: str | None = None,
    config_hash: str = "cfg0",
    doc_ids: dict[str, list[int]] | None = None,
) -> dict:
    """A complete record (as written to disk) whose metrics, per-subtask scores and sample log agree with
    ``correct``."""
    if num_fewshot is None:
        num_fewshot = {"gsm8k": 8, "mmlu": 5, "mmlu_loglik": 5, "mmlu_cot": 0, "mmlu_cloze": 0}[task]
    if chat is None:
        chat = kind == "instruct" and task not in ("mmlu_loglik", "mmlu_cloze")
    sizes = sizes or {s: len(v) for s, v in correct.items()}
    metric, filt = task_spec(task, kind)["metrics"][0]  # the headline metric, as tasks/tasks.yaml says
    key = f"{metric},{filt}"
    per_subtask, samples, values = {}, [], []
    for sub, vals in correct.items():
        ids = (doc_ids or {}).get(sub, list(range(len(vals))))
        p = sum(vals) / len(vals)
        per_subtask[sub] = {key: {"value": p, "stderr": math.sqrt(p * (1 - p) / len(vals)), "n": len(vals)}}
        values += vals
        samples += [
            {
                "task": sub,
                "doc_id": i,
                "prompt_sha256": "0" * 16,
                "response": "",
                "extracted": "",
                "target": "",
                "correct": bool(v),
            }
            for i, v in zip(ids, vals)
        ]
    n = len(values)
    p = sum(values) / n
    metrics = {
        key: {
            "average": "micro",
            "value": p,
            "stderr": math.sqrt(p * (1 - p) / n),
            "ci95": list(wilson_interval(p, n)),
            "n": n,
        }
    }
    sha = sha256 or hashlib.sha256(f"{model}{quant}".encode()).hexdigest()
    rec = build_record(
        created=created,
        stem=f"{model}{quant}{task}{created}{config_hash}",
        harness_version=None,
        harness_commit=None,
        command=None,
        packages=None,
        model=ModelFacts(name=model, kind=kind, quant=quant, sha256=sha, n_params=n_params),
        backend=Backend(settings={"scheme": "prefix-branch-v1", "flash_attn": False}),
        hardware=Hardware(cpu="Test CPU", cores=2, ram_gib=24.0, gpu=None),
        task=TaskFacts(
            name=task,
            config_hash=config_hash,
            num_fewshot=num_fewshot,
            chat=chat,
            full=n == sum(sizes.values()),
            n=n,
            n_total=sum(sizes.values()),
            subtask_sizes=sizes,
        ),
        metrics=metrics,
        per_subtask=per_subtask,
        timing=Timing(wall_seconds=10.0),
        samples=samples,
    )
    return rec.as_json()


def write_record(results_dir: Path, rec: dict) -> Path:
    """Write a record under results_dir/runs with a unique, runner-like name."""
    path = Path(results_dir) / "runs" / f"{rec['model']['name']}-{rec['task']['name']}-{rec['run_id']}.json"
    write_json(path, rec)
    return path
