"""Benchmark data: parquet files of a Hub data set, from the Hub (default) or a local mirror.

Both sources use the Hub repository layout (``<config>/<split>-00000-of-00001.parquet`` inside the
data set repo), so one code path serves both: only where the file comes from differs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pyarrow.parquet as pq

from harness.datafiles import load_file
from harness.datafiles.data import DataPins
from harness.errors import HarnessError
from harness.paths import DATA_DIR_ENV, TASKS_DIR, data_dir

PINS_FILE = TASKS_DIR / "data_pins.yaml"


def parquet_file(
    repo: str, config: str, split: str, revision: str = "main", local: Path | None = None
) -> Path:
    """Path of one split's parquet file; downloaded into the HF cache when no mirror is given."""
    name = f"{config}/{split}-00000-of-00001.parquet"
    local = local if local is not None else data_dir()
    if local is not None:
        path = local / repo / name
        if not path.is_file():
            raise HarnessError(
                f"data file {path} is missing",
                f"point --data-dir / {DATA_DIR_ENV} at a folder in the Hub layout (e.g. ../shared/data/hub), "
                "or unset it to download from the Hub.",
            )
        return path
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from harness import hub

    mirror_hint = f"use a local mirror: --data-dir PATH or {DATA_DIR_ENV}=PATH"
    if hub.offline():
        why = "huggingface-hub is in offline mode (HF_HUB_OFFLINE)"
    else:
        why = hub.unreachable()
        why = why and f"the Hub at {hub.endpoint()} is not reachable ({why})"
    if why:  # one line now, not 28 s of retries: a file already in the Hub cache is used as it is
        cached = try_to_load_from_cache(repo, name, revision=revision, repo_type="dataset")
        if isinstance(cached, str):
            return Path(cached)
        raise HarnessError(
            f"{why}, and {repo}/{name} is not in its cache", f"connect to the network, or {mirror_hint}."
        )
    try:
        with hub.quiet_retries():
            return Path(hf_hub_download(repo, name, repo_type="dataset", revision=revision))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        raise HarnessError(
            f"could not fetch {repo}/{name} from the Hugging Face Hub ({type(exc).__name__})",
            f"check the network, or {mirror_hint}.",
        ) from exc


def check_columns(path: Path, required: list[str]) -> int:
    """Fail clearly on a malformed data file; return its row count."""
    try:
        meta = pq.read_schema(path)
        rows = pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:  # pyarrow raises several unrelated types for a broken file
        raise HarnessError(
            f"{path} is not a readable parquet file: {exc}", "re-download or restore it."
        ) from exc
    missing = [c for c in required if c not in meta.names]
    if missing:
        raise HarnessError(
            f"{path} lacks column(s) {', '.join(missing)}", "the file is not the expected data set."
        )
    if rows == 0:
        raise HarnessError(f"{path} has no rows", "re-download or restore it.")
    return rows


@dataclass(frozen=True)
class BadRow:
    """One data row that cannot be scored, and why (named in the message or the record)."""

    file: str
    row: int  # position in the split: lm-eval's doc_id for a test split
    field: str
    problem: str

    def as_record(self) -> dict:
        return {"file": self.file, "row": self.row, "field": self.field, "problem": self.problem}

    def __str__(self) -> str:
        return f"{self.file} row {self.row}, field {self.field!r}: {self.problem}"


# A GSM8K answer ends in "#### N" (Cobbe et al. 2021, github.com/openai/grade-school-math); lm-eval's targets
# are what follows the last "####" (gsm8k-cot-llama.yaml: answer.split('####')[-1].strip()).
_GSM8K_TARGET = re.compile(r"-?[\d,]*\.?\d+")


def _text(v: object) -> bool:
    return isinstance(v, str) and bool(v.strip())


def gsm8k_row_problem(row: dict) -> tuple[str, str] | None:
    if not _text(row.get("question")):
        return "question", f"must be non-empty text (got {_show(row.get('question'))})"
    answer = row.get("answer")
    if not isinstance(answer, str) or "####" not in answer:
        return "answer", f"must be a worked answer ending in '#### N' (got {_show(answer)})"
    target = answer.split("####")[-1].strip()
    if not _GSM8K_TARGET.fullmatch(target):
        return "answer", f"the final answer after '####' is not a number (got {_show(target)})"
    return None


def mmlu_row_problem(row: dict) -> tuple[str, str] | None:
    if not isinstance(row.get("question"), str):
        return "question", f"must be text (got {_show(row.get('question'))})"
    choices = row.get("choices")
    if not isinstance(choices, list) or len(choices) != 4 or not all(_text(c) for c in choices):
        return "choices", f"must be 4 non-empty answer texts (got {_show(choices)})"
    answer = row.get("answer")
    if isinstance(answer, float) and not math.isnan(answer) and answer.is_integer():
        answer = int(answer)
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        return "answer", f"must be the index of the right choice, 0-{len(choices) - 1} (got {_show(answer)})"
    return None


_ROW_CHECKS = {"openai/gsm8k": gsm8k_row_problem, "cais/mmlu": mmlu_row_problem}


def _show(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def bad_rows(path: Path, repo: str) -> list[BadRow]:
    """Rows of a data file that cannot be scored (label out of range, answer missing or unparseable...).

    Checked when a task is planned, so a corrupted file is named before any model loads, instead of
    being scored as wrong answers in silence. Data sets without a row check here return no problems.
    """
    check = _ROW_CHECKS.get(repo)
    if check is None:
        return []
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several unrelated types for a broken file
        raise HarnessError(
            f"{path} is not a readable parquet file: {exc}", "re-download or restore it."
        ) from exc
    out = []
    for i, row in enumerate(rows):
        problem = check(row)
        if problem:
            out.append(BadRow(str(path), i, *problem))
    return out


# ---------------------------------------------------------------------------------------------- pinned data
# Issue #26 item 5: the data is the data the claims were made on. tasks/data_pins.yaml holds, per data file, its
# row count and the sha256 of its *content* (the columns the harness reads, row by row, in data order). Content,
# not file bytes: a parquet file's bytes depend on its writer (pyarrow version, compression, row groups), so the
# same rows fetched from the Hub and from a mirror written elsewhere hash differently as files but not as content;
# a duplicated, missing, reordered or edited row changes the content hash. The bytes' own sha256 stays in every
# record (task.data_sha256) and in the task's config hash.


@dataclass(frozen=True)
class DataPin:
    """What one data file held when the claims were measured on it."""

    rows: int
    sha256: str


@dataclass(frozen=True)
class DataDrift:
    """A data file that is not the pinned one: what was pinned and what was found (recorded when allowed)."""

    file: str  # repo/config/split, as pinned
    rows: int
    sha256: str
    pinned_rows: int
    pinned_sha256: str

    def as_record(self) -> dict:
        return {
            "file": self.file,
            "rows": self.rows,
            "sha256": self.sha256,
            "pinned_rows": self.pinned_rows,
            "pinned_sha256": self.pinned_sha256,
        }

    def __str__(self) -> str:
        what = (
            f"{self.rows} rows where the claims' data has {self.pinned_rows}"
            if self.rows != self.pinned_rows
            else f"the same {self.rows} rows in number, but other content"
        )
        return f"{self.file} has {what} (content sha256 {self.sha256[:16]}, pinned {self.pinned_sha256[:16]})"


@lru_cache(maxsize=1)
def load_pins(path: Path = PINS_FILE) -> dict[str, DataPin]:
    """``repo/config/split`` -> its pin, from tasks/data_pins.yaml, validated by its model
    (harness/datafiles/data.py: a bad entry is one message)."""
    return {name: DataPin(pin.rows, pin.sha256) for name, pin in load_file(DataPins, path).files.items()}


def content_sha256(path: Path, columns: list[str]) -> tuple[int, str]:
    """(rows, sha256 of the content): each row's ``columns`` as one compact JSON line, in data order."""
    try:
        rows = pq.read_table(path, columns=columns).to_pylist()
    except Exception as exc:  # pyarrow raises several unrelated types for a broken file
        raise HarnessError(
            f"{path} is not a readable parquet file: {exc}", "re-download or restore it."
        ) from exc
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps([row[c] for c in columns], ensure_ascii=False, separators=(",", ":")).encode())
        h.update(b"\n")
    return len(rows), h.hexdigest()


def pin_name(repo: str, config: str, split: str) -> str:
    return f"{repo}/{config}/{split}"


def data_drift(path: Path, repo: str, config: str, split: str, columns: list[str]) -> DataDrift | None:
    """How a data file differs from its pin (None: it is the pinned data, or the data set has no pins)."""
    name = pin_name(repo, config, split)
    pins = load_pins()
    if not any(k.startswith(repo + "/") for k in pins):
        return None  # a data set the claims do not use
    pin = pins.get(name)
    rows, sha = content_sha256(path, columns)
    if pin is None:
        return DataDrift(name, rows, sha, 0, "0" * 64)
    if (rows, sha) == (pin.rows, pin.sha256):
        return None
    return DataDrift(name, rows, sha, pin.rows, pin.sha256)


def write_pins(mirror: Path, out: Path = PINS_FILE) -> None:
    """Compute tasks/data_pins.yaml from a Hub-layout mirror (``python -m harness.tasks.data MIRROR``)."""
    from harness.tasks.settings import load_settings

    settings = load_settings()
    files: dict[str, dict] = {}
    for spec in settings["tasks"].values():
        ds = spec["dataset"]
        strata = settings["subjects"][spec["subjects"]] if spec.get("subjects") else [None]
        for subject in strata:
            config = ds["config"].format(subject=subject)
            for split in ds["splits"].values():
                name = pin_name(ds["repo"], config, split)
                if name not in files:
                    rows, sha = content_sha256(
                        parquet_file(ds["repo"], config, split, local=mirror), ds["columns"]
                    )
                    files[name] = {"rows": rows, "sha256": sha}
    head = Path(out).read_text().split("\nfiles:")[0] if Path(out).exists() else "schema_version: 1"
    body = "".join(f"  {k}: {{rows: {v['rows']}, sha256: {v['sha256']}}}\n" for k, v in sorted(files.items()))
    Path(out).write_text(f"{head}\nfiles:\n{body}")


if __name__ == "__main__":
    import sys

    write_pins(Path(sys.argv[1]))
