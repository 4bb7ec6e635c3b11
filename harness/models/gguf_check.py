"""Check a GGUF header against the catalogue (magic, architecture, params) and read a model's shape.

Catches broken uploads (an 8 MB "Q4_K_M" exists on the Hub) and files that are not Llama models
before llama.cpp is asked to load them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError
from harness.models.gguf_header import FIRST_READ, HeaderError, read_file_header, read_header

# Architectures the harness evaluates: Llama 3.x and SmolLM2 all report "llama".
SUPPORTED_ARCHS = {"llama"}
# Models given as a file path or hf:OWNER/REPO/FILE (catalogue.py's local and Hub entries): any architecture
# llama.cpp loads may be run, so that a user can put a rival model beside a Llama one on the same machine.
OWN_FILE_FAMILIES = {"local", "hub"}
PARAMS_TOLERANCE = 0.05  # GGUF tensor count vs catalogue figure (tied embeddings etc. differ slightly)


def gguf_summary(path: Path) -> dict:
    """Architecture, name, shape and parameter count (sum of tensor elements) of a GGUF file, from its
    header alone (harness/models/gguf_header.py); a file shorter than its tensors say is damaged."""
    path = Path(path)
    try:
        header = read_file_header(path, _not_tokenizer, tensors=True)
    except HeaderError as exc:
        raise HarnessError(
            f"{path.name} is a damaged GGUF file ({exc.message.removeprefix(path.name + ': ')})",
            "download it again, or pass a complete .gguf file.",
        ) from exc
    size = path.stat().st_size
    if header.data_end is not None and size < header.data_end:
        raise HarnessError(
            f"{path.name} is a damaged GGUF file (truncated: its tensors need {header.data_end:,} "
            f"bytes, the file has {size:,})",
            "download it again.",
        )
    arch = header.text("general.architecture") or ""
    return {
        **model_shape(arch, header.num),
        "architecture": arch or None,
        "name": header.text("general.name"),
        "n_params": sum(header.tensor_elements or ()),
        "split_count": header.num("split.count", 1),
    }


def _not_tokenizer(key: str) -> bool:
    """Keys kept by the shape reads: all but the tokenizer's (its arrays are most of a header)."""
    return not key.startswith("tokenizer.")


def check_gguf(path: Path, entry=None, more_shards: list[Path] = ()) -> dict:
    """Refuse a file that is not a GGUF of a supported architecture, or whose size disagrees with the catalogue.

    For numbered shards pass the others in ``more_shards``: parameters are summed over all of them.
    """
    info = gguf_summary(path)
    for shard in more_shards:
        info["n_params"] += gguf_summary(shard)["n_params"]
    all_tensors_counted = info["split_count"] == 1 or bool(more_shards)
    if info["architecture"] not in SUPPORTED_ARCHS:
        if entry is None or entry.family not in OWN_FILE_FAMILIES:
            # A catalogue entry names a Llama-family upload: a file of another architecture is the wrong file.
            raise HarnessError(
                f"{Path(path).name} is a {info['architecture']!r} model, not the Llama-architecture file the "
                f"catalogue names{f' for {entry.name}' if entry is not None else ''}",
                "the upload or the catalogue entry is wrong; pick another quant or model (`harness models`).",
            )
        # A user's own GGUF (a path or hf:) of another family: run it beside the Llama models, and say so.
        print(
            f"note: {Path(path).name} is a {info['architecture']!r} model, not Llama-architecture: it runs "
            "through llama.cpp like any GGUF it can load; the record names its architecture, and Meta's "
            "claims are not compared with it",
            file=sys.stderr,
        )
    if entry is not None and entry.params and all_tensors_counted:
        rel = abs(info["n_params"] - entry.params) / entry.params
        if rel > PARAMS_TOLERANCE:
            raise HarnessError(
                f"{Path(path).name} holds {info['n_params']:,} parameters, the catalogue says "
                f"{int(entry.params):,} for {entry.name}",
                "the upload is broken or the catalogue entry is wrong; do not trust scores from this file.",
            )
    return info


def model_shape(arch: str, num: Callable[[str, int], int]) -> dict:
    """Layer count and attention shape (what the KV cache size depends on) from a header's numbers.

    ``num(key, default)`` reads an integer key. Shared by the full-file read above and the remote header
    read below, so both give the same KV figure. Defaults follow llama.cpp's loader: no
    ``head_count_kv`` means one KV head per query head, no ``key_length`` means embedding / heads.
    """
    n_head = num(f"{arch}.attention.head_count", 1)
    return {
        "n_layer": num(f"{arch}.block_count", 0),
        "n_kv_heads": num(f"{arch}.attention.head_count_kv", n_head),
        "head_dim": num(f"{arch}.attention.key_length", num(f"{arch}.embedding_length", 0) // max(n_head, 1)),
        "n_ctx_train": num(f"{arch}.context_length", 0),
    }


def read_header_shape(fetch: Callable[[int, int], bytes], first: int = FIRST_READ) -> dict:
    """Architecture and KV-cache shape from the start of a GGUF file, read through ``fetch`` (range reads).

    Reads key/value pairs until the shape keys are known and the tokenizer's keys begin: llama.cpp's
    converter writes ``general.*`` and the architecture's keys first, then the tokenizer arrays, which
    are most of a header (a 128k vocabulary and its merges: several MB), and the tensor data after all
    of it. So a remote model's shape costs one ~1 MB range request, not the file. ``fetched`` says how
    many bytes were read.
    """

    def shape_known(values: dict, key: str) -> bool:
        arch = values.get("general.architecture")
        return (
            key.startswith("tokenizer.")
            and bool(arch)
            and f"{arch}.block_count" in values
            and f"{arch}.attention.head_count" in values
        )

    try:
        header = read_header(fetch, _not_tokenizer, stop=shape_known, first=first)
    except HeaderError as exc:
        hint = "download the file again." if exc.truncated else "check the repo and file name."
        raise HarnessError(f"the GGUF header cannot be read: {exc.message}", hint) from exc
    arch = header.text("general.architecture") or ""
    return {
        **model_shape(arch, header.num),
        "architecture": arch or None,
        "name": header.text("general.name"),
        "split_count": header.num("split.count", 1),
        "fetched": header.fetched,
    }
