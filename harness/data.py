"""Benchmark data: parquet files of a Hub data set, from the Hub (default) or a local mirror.

Both sources use the Hub repository layout (``<config>/<split>-00000-of-00001.parquet`` inside the
data set repo), so one code path serves both: only where the file comes from differs.
"""

from __future__ import annotations

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
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo, name, repo_type="dataset", revision=revision))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        raise HarnessError(
            f"could not fetch {repo}/{name} from the Hugging Face Hub ({type(exc).__name__})",
            f"check the network, or use a local mirror: --data-dir PATH or {DATA_DIR_ENV}=PATH.",
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
