"""Read a GGUF header (gguf package) and check it against the catalogue: magic, architecture, params.

Catches broken uploads (an 8 MB "Q4_K_M" exists on the Hub) and files that are not Llama models
before llama.cpp is asked to load them.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError

# Architectures the harness evaluates: Llama 3.x and SmolLM2 all report "llama".
SUPPORTED_ARCHS = {"llama"}
PARAMS_TOLERANCE = 0.05  # GGUF tensor count vs catalogue figure (tied embeddings etc. differ slightly)


def gguf_summary(path: Path) -> dict:
    """Architecture, name and parameter count (sum of tensor elements) of a GGUF file."""
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise HarnessError(f"{path.name} is not a GGUF file (bad magic)", "download the model again or pass a .gguf file.")
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # truncated files fail in numpy/struct with various types
        raise HarnessError(f"{path.name} is a damaged GGUF file ({type(exc).__name__}: {exc})", "download it again.") from exc

    def field(key: str) -> str | None:
        fld = reader.fields.get(key)
        return bytes(fld.parts[fld.data[0]]).decode("utf-8", "replace") if fld else None

    def num(key: str, default: int = 0) -> int:
        fld = reader.fields.get(key)
        return int(fld.parts[fld.data[0]][0]) if fld else default

    arch = field("general.architecture") or ""
    n_head = num(f"{arch}.attention.head_count", 1)
    return {
        "n_layer": num(f"{arch}.block_count"),
        "n_kv_heads": num(f"{arch}.attention.head_count_kv", n_head),
        "head_dim": num(f"{arch}.attention.key_length", num(f"{arch}.embedding_length") // max(n_head, 1)),
        "architecture": arch or None,
        "name": field("general.name"),
        "n_params": sum(int(t.n_elements) for t in reader.tensors),
        "split_count": int(reader.fields["split.count"].parts[-1][0]) if "split.count" in reader.fields else 1,
    }


def check_gguf(path: Path, entry=None, more_shards: list[Path] = ()) -> dict:
    """Refuse a file that is not a GGUF of a supported architecture, or whose size disagrees with the catalogue.

    For numbered shards pass the others in ``more_shards``: parameters are summed over all of them.
    """
    info = gguf_summary(path)
    for shard in more_shards:
        info["n_params"] += gguf_summary(shard)["n_params"]
    all_tensors_counted = info["split_count"] == 1 or bool(more_shards)
    if info["architecture"] not in SUPPORTED_ARCHS:
        raise HarnessError(
            f"{Path(path).name} is a {info['architecture']!r} model; the harness evaluates Llama-architecture GGUFs",
            "pick a Llama-family model (`harness models`).",
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
