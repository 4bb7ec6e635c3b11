"""Read a GGUF header (gguf package) and check it against the catalogue: magic, architecture, params.

Catches broken uploads (an 8 MB "Q4_K_M" exists on the Hub) and files that are not Llama models
before llama.cpp is asked to load them.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError

# Architectures the harness evaluates: Llama 3.x and SmolLM2 all report "llama".
SUPPORTED_ARCHS = {"llama"}
# Models given as a file path or hf:OWNER/REPO/FILE (catalogue.py's local and Hub entries): any architecture
# llama.cpp loads may be run, so that a user can put a rival model beside a Llama one on the same machine.
OWN_FILE_FAMILIES = {"local", "hub"}
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
    return {
        **model_shape(arch, num),
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
        if entry is None or entry.family not in OWN_FILE_FAMILIES:
            # A catalogue entry names a Llama-family upload: a file of another architecture is the wrong file.
            raise HarnessError(
                f"{Path(path).name} is a {info['architecture']!r} model, not the Llama-architecture file the "
                f"catalogue names{f' for {entry.name}' if entry is not None else ''}",
                "the upload or the catalogue entry is wrong; pick another quant or model (`harness models`).",
            )
        # A user's own GGUF (a path or hf:) of another family: run it beside the Llama models, and say so.
        print(f"note: {Path(path).name} is a {info['architecture']!r} model, not Llama-architecture: it runs "
              "through llama.cpp like any GGUF it can load; the record names its architecture, and Meta's "
              "claims are not compared with it", file=sys.stderr)
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


# GGUF value types and the struct format of the fixed-size ones
# (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md, "Structure").
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
HEADER_FIRST_READ = 1 << 20  # bytes asked for first; more is fetched (doubling) only when the keys run past it


class _Reader:
    """Sequential reads over ``fetch(start, end_inclusive) -> bytes``, fetching more only when needed."""

    def __init__(self, fetch: Callable[[int, int], bytes], first: int):
        self.fetch, self.buf, self.pos, self.first = fetch, bytearray(), 0, first
        self.fetched = 0

    def take(self, n: int) -> bytes:
        while len(self.buf) < self.pos + n:
            more = max(self.first, len(self.buf), self.pos + n - len(self.buf))
            data = self.fetch(len(self.buf), len(self.buf) + more - 1)
            if not data:
                raise HarnessError("the GGUF header ends early (truncated file)", "download the file again.")
            self.buf += data
            self.fetched += len(data)
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self.unpack("<Q")).decode("utf-8", "replace")

    def skip_value(self, vtype: int) -> None:
        if vtype == _STRING:
            self.take(self.unpack("<Q"))
        elif vtype == _ARRAY:
            etype, count = self.unpack("<I"), self.unpack("<Q")
            if etype in _SCALAR:
                self.take(struct.calcsize(_SCALAR[etype]) * count)
            else:
                for _ in range(count):
                    self.skip_value(etype)
        elif vtype in _SCALAR:
            self.take(struct.calcsize(_SCALAR[vtype]))
        else:
            raise HarnessError(f"the GGUF header holds an unknown value type {vtype}", "download the file again.")


def read_header_shape(fetch: Callable[[int, int], bytes], first: int = HEADER_FIRST_READ) -> dict:
    """Architecture and KV-cache shape from the start of a GGUF file, read through ``fetch`` (range reads).

    Reads key/value pairs until the shape keys are known and the tokenizer's keys begin: llama.cpp's
    converter writes ``general.*`` and the architecture's keys first, then the tokenizer arrays, which
    are most of a header (a 128k vocabulary and its merges: several MB), and the tensor data after all
    of it. So a remote model's shape costs one ~1 MB range request, not the file. ``fetched`` says how
    many bytes were read.
    """
    r = _Reader(fetch, first)
    if r.take(4) != b"GGUF":
        raise HarnessError("the file is not a GGUF file (bad magic)", "check the repo and file name.")
    version = r.unpack("<I")
    if version < 2:
        raise HarnessError(f"GGUF version {version} is too old to read", "use a file converted by a recent llama.cpp.")
    r.unpack("<Q")  # tensor count
    n_kv = r.unpack("<Q")
    values: dict[str, object] = {}
    for _ in range(n_kv):
        key = r.string()
        arch = values.get("general.architecture")
        if key.startswith("tokenizer.") and arch and f"{arch}.block_count" in values \
                and f"{arch}.attention.head_count" in values:
            break
        vtype = r.unpack("<I")
        if vtype == _STRING:
            values[key] = r.string()
        elif vtype in _SCALAR:
            values[key] = r.unpack(_SCALAR[vtype])
        else:
            r.skip_value(vtype)
    arch = str(values.get("general.architecture") or "")

    def num(key: str, default: int = 0) -> int:
        v = values.get(key)
        return int(v) if isinstance(v, (int, float)) else default

    return {**model_shape(arch, num), "architecture": arch or None, "name": values.get("general.name"),
            "split_count": num("split.count", 1), "fetched": r.fetched}


def local_fetch(path: Path) -> Callable[[int, int], bytes]:
    """``fetch`` over a local file (the same reader as over HTTP ranges)."""

    def fetch(start: int, end: int) -> bytes:
        with open(path, "rb") as f:
            f.seek(start)
            return f.read(end - start + 1)

    return fetch
