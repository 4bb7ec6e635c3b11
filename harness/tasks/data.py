"""Benchmark data: parquet files of a Hub data set, from the Hub (default) or a local mirror.

Both sources use the Hub repository layout (``<config>/<split>-00000-of-00001.parquet`` inside the
data set repo), so one code path serves both: only where the file comes from differs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from harness.errors import HarnessError
from harness.paths import DATA_DIR_ENV, data_dir


def parquet_file(repo: str, config: str, split: str, revision: str = "main", local: Path | None = None) -> Path:
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
        raise HarnessError(f"{why}, and {repo}/{name} is not in its cache",
                           f"connect to the network, or {mirror_hint}.")
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
        raise HarnessError(f"{path} is not a readable parquet file: {exc}", "re-download or restore it.") from exc
    missing = [c for c in required if c not in meta.names]
    if missing:
        raise HarnessError(f"{path} lacks column(s) {', '.join(missing)}", "the file is not the expected data set.")
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
        raise HarnessError(f"{path} is not a readable parquet file: {exc}", "re-download or restore it.") from exc
    out = []
    for i, row in enumerate(rows):
        problem = check(row)
        if problem:
            out.append(BadRow(str(path), i, *problem))
    return out
