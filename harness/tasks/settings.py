"""Turn a task setting from ``tasks/tasks.yaml`` into lm-eval task configs for one model.

The prompt, few-shot examples, answer filters and metrics are lm-eval's own YAML; we only point
the data at the Hub (or a mirror) through the ``parquet`` builder, set shots and generation budget,
and choose the subset.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from harness.datafiles import load_file
from harness.datafiles.tasks import TaskSettings
from harness.errors import HarnessError
from harness.models.catalogue import ModelEntry
from harness.paths import TASKS_DIR
from harness.tasks.data import bad_rows, check_columns, data_drift, parquet_file
from harness.tasks.subsets import pick, pick_stratified

SETTINGS_FILE = TASKS_DIR / "tasks.yaml"


@dataclass
class TaskPlan:
    """Everything needed to run one harness task on one model, and to describe it in the record."""

    name: str
    title: str
    chat: bool
    num_fewshot: int
    metrics: list[tuple[str, str]]
    configs: list[dict]  # lm-eval task configs, data pointed at local parquet files
    samples: dict[str, list[int]] | None  # lm-eval task name -> doc ids (None: full test split)
    sizes: dict[str, int]  # lm-eval task name -> rows in its test split
    data_files: dict[str, dict[str, str]] = field(default_factory=dict)  # task -> split -> sha256
    limit: int | None = None
    seed: int = 0
    skipped_rows: list[dict] = field(default_factory=list)  # bad test rows left out (--skip-bad-rows)
    data_modified: list[dict] = field(default_factory=list)  # files unlike their pins (--allow-modified-data)
    skip_bad_rows: bool = (
        False  # --skip-bad-rows: over-long questions found when the task runs are left out too
    )

    def without(self, rows: list[dict]) -> TaskPlan:
        """This plan without the given test rows (``{"task", "row", ...}``: questions found unscorable when the
        task ran, e.g. too long for the model's context), which join ``skipped_rows``."""
        drop = {(r["task"], r["row"]) for r in rows}
        base = (
            self.samples if self.samples is not None else {t: list(range(n)) for t, n in self.sizes.items()}
        )
        samples = {t: [i for i in ids if (t, i) not in drop] for t, ids in base.items()}
        samples = {t: ids for t, ids in samples.items() if ids}
        if not samples:
            raise HarnessError(
                f"task {self.name}: every sampled question is too long for the model",
                "use a model with a longer context, or fewer few-shot examples.",
            )
        seen, new = set(), []
        for r in rows:
            if (r["task"], r["row"]) not in seen:
                seen.add((r["task"], r["row"]))
                new.append(r)
        return replace(
            self,
            samples=samples,
            configs=[c for c in self.configs if c["task"] in samples],
            data_files={k: v for k, v in self.data_files.items() if k in samples},
            skipped_rows=[*self.skipped_rows, *new],
        )

    @property
    def n_samples(self) -> int:
        if self.samples is None:
            return sum(self.sizes.values())
        return sum(len(v) for v in self.samples.values())

    @property
    def is_full(self) -> bool:
        return self.n_samples == sum(self.sizes.values())

    def config_hash(self) -> str:
        """Hash of the task definition: prompts, filters, metrics, shots, the data files' sha256 (the
        bytes, wherever they were read from) and the subset."""
        blob = json.dumps(
            {
                "configs": [_portable(c) for c in self.configs],
                "samples": self.samples,
                "chat": self.chat,
                "data_sha256": self.data_files,
            },
            sort_keys=True,
            default=_jsonable,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _portable(cfg: dict) -> dict:
    """Config without machine-specific paths (the data is identified by repo/config and sha256)."""
    out = {k: v for k, v in cfg.items() if k not in ("dataset_kwargs", "metadata")}
    return out


def _jsonable(obj):
    if callable(obj):
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"
    return repr(obj)


@lru_cache(maxsize=1)
def load_settings(path: Path = SETTINGS_FILE) -> dict:
    """tasks/tasks.yaml as plain data, strictly validated by its model (harness/datafiles/tasks.py: unknown keys
    are errors, not silently ignored; a malformed task is one message naming it and the field)."""
    return load_file(TaskSettings, path).model_dump(exclude_unset=True)


def task_names() -> list[str]:
    return list(load_settings()["tasks"])


def task_spec(name: str, kind: str) -> dict:
    """One task's settings for a model kind (``base``/``instruct``), ``by_kind`` overrides applied."""
    tasks = load_settings()["tasks"]
    if name not in tasks:
        raise HarnessError(f"unknown task {name!r}", f"choose from: {', '.join(tasks)}.")
    spec = dict(tasks[name])
    spec.update(spec.pop("by_kind", {}).get(kind, {}))
    return spec


# lm-eval's task folders that hold every lm_eval_task of tasks/tasks.yaml. Indexing only these takes a tenth of
# the time of lm-eval's full index of 14,683 tasks (3.6 s against 36 s, measured side by side on this machine),
# paid by every bench before its first decode (#18 item 6); the configs read are the same (all 231 names the
# harness uses compared). A name outside them falls back to the full index.
LM_EVAL_TASK_DIRS = ("gsm8k", "llama3", "mmlu")


@lru_cache(maxsize=2)
def task_manager(full: bool = False):
    """lm-eval's task manager over :data:`LM_EVAL_TASK_DIRS` (``full``: over all of lm-eval's tasks)."""
    import datasets.config
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    # Every task here reads local parquet files (dataset_path "parquet", data_files: a mirror or files already
    # fetched by harness/tasks/data.py), yet `datasets` sends a download-count HEAD request to S3 for its
    # "parquet" builder on every load_dataset call (datasets/load.py increase_load_count). It carries nothing
    # and costs a DNS lookup per task, up to a 3 s timeout where the network is filtered: 5.0 of 11.7 s of
    # lm-eval's work for the 57-subject MMLU subset here (scripts/bench_memory.py under cProfile).
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False

    if full:
        return TaskManager()
    root = Path(lm_eval.tasks.__file__).parent
    # Folders given separately are merged with a warning per shared tag (gsm8k's "chain_of_thought" appears in
    # several); one index over lm-eval's whole tree merges them silently. The tasks are the same either way.
    log = logging.getLogger("lm_eval.tasks._index")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return TaskManager(include_defaults=False, include_path=[str(root / d) for d in LM_EVAL_TASK_DIRS])
    finally:
        log.setLevel(level)


def lm_eval_config(name: str) -> dict:
    """lm-eval's own YAML config for a registered task, includes resolved."""
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = task_manager().task_index.get(name) or task_manager(full=True).task_index.get(name)
    if entry is None or not entry.yaml_path:
        raise HarnessError(
            f"lm-eval has no task {name!r}", "check lm-eval's version (pinned in pyproject.toml)."
        )
    return dict(load_yaml(entry.yaml_path, resolve_func=True))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def plan_task(
    name: str,
    model: ModelEntry,
    limit: int | None = None,
    full: bool = False,
    seed: int = 0,
    data_dir: Path | None = None,
    num_fewshot: int | None = None,
    max_gen_toks: int | None = None,
    skip_bad_rows: bool = False,
    allow_modified_data: bool = False,
) -> TaskPlan:
    """Resolve a harness task for a model: lm-eval configs, data files, and the subset to score."""
    settings = load_settings()
    spec = task_spec(name, model.kind)
    if spec.get("requires_kind") and spec["requires_kind"] != model.kind:
        raise HarnessError(
            f"task {name} is defined for {spec['requires_kind']} models; {model.name} is a {model.kind} model",
            "pick the instruct variant of the model, or another task.",
        )
    chat = spec.get("chat") == "always" or (spec.get("chat") == "instruct" and model.is_instruct)
    shots = spec["num_fewshot"] if num_fewshot is None else num_fewshot
    if max_gen_toks is None:
        mgt = spec.get("max_gen_toks")
        max_gen_toks = model.gsm8k_max_gen_toks if mgt == "model" else mgt
    strata = settings["subjects"][spec["subjects"]] if spec.get("subjects") else [None]
    ds = spec["dataset"]
    configs, sizes, hashes = [], {}, {}
    skipped: dict[str, list] = {}
    modified: dict[str, dict] = {}
    for subject in strata:
        lm_name = spec["lm_eval_task"].format(subject=subject)
        cfg = lm_eval_config(lm_name)
        files = {}
        for split_key, split in ds["splits"].items():
            path = parquet_file(ds["repo"], ds["config"].format(subject=subject), split, local=data_dir)
            rows = check_columns(path, ds["columns"])
            bad = bad_rows(path, ds["repo"])
            if bad and (split_key != "test" or not skip_bad_rows):
                more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                raise HarnessError(
                    f"bad data row in task {name}: {bad[0]}{more}",
                    "restore the data file (re-download it, or fix --data-dir); "
                    + (
                        "with --skip-bad-rows such test rows are left out and counted in the record."
                        if split_key == "test"
                        else "few-shot rows cannot be skipped."
                    ),
                )
            if bad:
                skipped[lm_name] = bad
            # The data the claims were made on (tasks/data_pins.yaml): checked after the row checks, so a
            # damaged row is named as such; rows skipped with --skip-bad-rows make the file modified data.
            drift = data_drift(path, ds["repo"], ds["config"].format(subject=subject), split, ds["columns"])
            if drift and not (allow_modified_data or (bad and skip_bad_rows)):
                raise HarnessError(
                    f"task {name}: {drift}: not the data the claims were made on (tasks/data_pins.yaml)",
                    "restore the data file (re-download it, or fix --data-dir); --allow-modified-data runs it "
                    "anyway, recorded as such and never compared with a claim.",
                )
            if drift:
                modified.setdefault(drift.file, drift.as_record())
            if split_key == "test":
                sizes[lm_name] = rows
            files[split] = str(path)
            hashes.setdefault(lm_name, {})[split] = _sha256(path)
        cfg.update(
            dataset_path="parquet",
            dataset_name=None,
            dataset_kwargs={"data_files": files},
            num_fewshot=shots,
        )
        cfg.pop("tag", None)
        cfg["metadata"] = dict(
            cfg.get("metadata") or {}, source_dataset=f"{ds['repo']}/{ds['config'].format(subject=subject)}"
        )
        if max_gen_toks is not None and cfg.get("output_type") == "generate_until":
            gk = dict(cfg.get("generation_kwargs") or {})
            gk["max_gen_toks"] = int(max_gen_toks)
            cfg["generation_kwargs"] = gk
        configs.append(cfg)
    if full:
        limit = None
    elif limit is None:
        limit = spec.get("default_limit")
    if spec.get("stratify"):
        samples = pick_stratified(sizes, limit, seed)
    else:
        (only,) = sizes
        samples = {only: pick(sizes[only], limit, seed, salt=only)}
    for lm_name, bad in skipped.items():
        drop = {b.row for b in bad}
        if lm_name in samples:
            samples[lm_name] = [i for i in samples[lm_name] if i not in drop]
            if not samples[lm_name]:
                del samples[lm_name]
    if not samples:
        raise HarnessError(f"task {name}: every sampled row is bad", "restore the data files.")
    keep = [c for c in configs if c["task"] in samples]
    if all(len(samples[k]) == sizes[k] for k in samples) and len(samples) == len(sizes):
        samples_out = None
    else:
        samples_out = samples
    return TaskPlan(
        name=name,
        title=spec["title"],
        chat=chat,
        num_fewshot=shots,
        metrics=[tuple(m) for m in spec["metrics"]],
        configs=keep,
        samples=samples_out,
        sizes=sizes,
        data_files={k: v for k, v in hashes.items() if k in samples},
        limit=limit,
        seed=seed,
        skipped_rows=[
            {"task": t, **b.as_record(), "file": Path(b.file).name}
            for t, rows in skipped.items()
            for b in rows
        ],
        data_modified=list(modified.values()),
        skip_bad_rows=skip_bad_rows,
    )
