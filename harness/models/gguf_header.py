"""The one GGUF header reader: key/values and tensor infos, over a local file or HTTP range reads.

Layout (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md, "Structure"): magic ``GGUF``, version
(u32), tensor count (u64), key/value count (u64), the key/value pairs, then one info per tensor (name,
dims, type, offset), then the tensor data. Everything the harness needs before loading a model is in
that header: the architecture and KV-cache shape (memory preflight), the tokenizer's special tokens and
chat template (base/instruct, stop strings), and the tensor dims (parameter count).

Why not the ``gguf`` package's ``GGUFReader``: it maps the whole file and builds every array field as
numpy objects (a Llama 3 vocabulary's 280k merges take ~10 s), and it needs the file on disk. This
reader decodes only the keys asked for, skips the rest, and reads through ``fetch(start, end_inclusive)``,
so the same code serves a file on disk and the first megabytes of a file on the Hub (the rest is fetched,
doubling, only when the header runs past what was read; tensor data is never asked for).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError

# Value types and the struct format of the fixed-size ones (gguf.md, "gguf_metadata_value_type").
SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
STRING, ARRAY = 8, 9
FIRST_READ = 1 << 20  # bytes asked for first: most headers' shape keys fit; a Llama 3 header is ~9 MB
MAX_HEADER = 512 << 20  # a header larger than this is not one the harness can use (corrupt length fields)

Fetch = Callable[[int, int], bytes]


class HeaderError(HarnessError):
    """The bytes are not a readable GGUF header; ``truncated`` when they end before the header does."""

    def __init__(self, message: str, truncated: bool = False):
        self.truncated = truncated
        super().__init__(message, "check that it is a complete GGUF file (download it again).")


@dataclass
class Header:
    """What was read: the kept key/values, the tensor count, and (when asked) each tensor's elements."""

    version: int
    n_tensors: int
    values: dict[str, object] = field(default_factory=dict)
    tensor_elements: list[int] | None = None  # one per tensor, in file order
    data_end: int | None = None  # with tensors: the byte where the last tensor's data ends (file size >= it)
    fetched: int = 0  # bytes read through ``fetch``

    def num(self, key: str, default: int = 0) -> int:
        """An integer key's value, or ``default`` when absent or not a number."""
        v = self.values.get(key)
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default

    def text(self, key: str) -> str | None:
        """A string key's value, or None."""
        v = self.values.get(key)
        return v if isinstance(v, str) else None


class _Bytes:
    """Sequential reads over ``fetch``, fetching more (at least doubling) only when a read runs past."""

    def __init__(self, fetch: Fetch, first: int):
        self.fetch, self.first = fetch, first
        self.buf, self.pos, self.fetched, self.eof = bytearray(), 0, 0, False

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > MAX_HEADER:
            raise HeaderError(
                f"a length field of {n} bytes at offset {self.pos} is not a plausible header (corrupt file)"
            )
        while len(self.buf) < self.pos + n:
            if self.eof:
                raise HeaderError(
                    f"the header ends early: {n} bytes wanted at offset {self.pos}, the file "
                    f"has {len(self.buf)} (truncated file)",
                    truncated=True,
                )
            more = max(self.first, len(self.buf), self.pos + n - len(self.buf))
            data = self.fetch(len(self.buf), len(self.buf) + more - 1)
            self.eof = len(data) < more
            self.buf += data
            self.fetched += len(data)

    def take(self, n: int) -> bytes:
        self.need(n)
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        self.need(size)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return v

    def string(self, keep: bool = True) -> str | None:
        n = self.unpack("<Q")
        if not keep:
            self.need(n)
            self.pos += n
            return None
        return self.take(n).decode("utf-8", "replace")

    def value(self, vtype: int, keep: bool):
        if vtype == STRING:
            return self.string(keep)
        if vtype in SCALARS:
            v = self.unpack(SCALARS[vtype])
            return v if keep else None
        if vtype == ARRAY:
            etype, count = self.unpack("<I"), self.unpack("<Q")
            if etype in SCALARS:
                size = struct.calcsize(SCALARS[etype])
                raw = self.take(size * count)
                return [v[0] for v in struct.iter_unpack(SCALARS[etype], raw)] if keep else None
            if etype not in (STRING, ARRAY):
                raise HeaderError(f"unknown GGUF value type {etype} in an array at offset {self.pos}")
            self.need(8 * count)  # every element takes at least its 8-byte length: a bound on a corrupt count
            items = [self.value(etype, keep) for _ in range(count)]
            return items if keep else None
        raise HeaderError(f"unknown GGUF value type {vtype} at offset {self.pos}")


def read_header(
    fetch: Fetch,
    keep: Container[str] | Callable[[str], bool] = (),
    *,
    stop: Callable[[dict, str], bool] | None = None,
    tensors: bool = False,
    first: int = FIRST_READ,
) -> Header:
    """Read a GGUF header through ``fetch``, keeping the values of the keys in ``keep`` (a set, or a
    predicate on the key).

    ``stop(values, next_key)``: end the key/value walk early once it returns True (a shape read stops where
    the tokenizer's arrays begin: llama.cpp's converter writes them after the architecture's keys).
    ``tensors``: also read the tensor infos, for the element count of each tensor.
    """
    wanted = keep if callable(keep) else keep.__contains__
    r = _Bytes(fetch, first)
    try:
        if r.take(4) != b"GGUF":
            raise HeaderError("not a GGUF file (bad magic)")
        version = r.unpack("<I")
        if version < 2:
            raise HeaderError(
                f"GGUF version {version} is too old to read (use a file converted by a recent llama.cpp)"
            )
        n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
        header = Header(version=version, n_tensors=n_tensors)
        walked_all = True
        for _ in range(n_kv):
            key = r.string()
            if stop is not None and stop(header.values, key):
                walked_all = False
                break
            vtype = r.unpack("<I")
            k = wanted(key)
            value = r.value(vtype, k)
            if k or key == "general.alignment":
                header.values[key] = value
        if tensors:
            if not walked_all:
                raise ValueError("tensors=True needs the whole key/value section (no stop)")
            from gguf.constants import GGML_QUANT_SIZES  # (block size, bytes per block) of each tensor type

            elements, end = [], 0
            for _ in range(n_tensors):
                r.string(keep=False)
                n_dims = r.unpack("<I")
                if n_dims > 8:
                    raise HeaderError(f"a tensor with {n_dims} dimensions (corrupt file)")
                n = 1
                for _ in range(n_dims):
                    n *= r.unpack("<Q")
                ttype, offset = r.unpack("<I"), r.unpack("<Q")
                try:
                    block, size = GGML_QUANT_SIZES[ttype]
                except (KeyError, ValueError) as exc:
                    raise HeaderError(
                        f"a tensor of unknown type {ttype} (corrupt file, or a newer GGUF)"
                    ) from exc
                elements.append(n)
                end = max(end, offset + n // block * size)
            align = header.num("general.alignment", 32) or 32
            header.tensor_elements = elements
            header.data_end = -(-r.pos // align) * align + end  # tensor data starts at the aligned header end
    except (struct.error, UnicodeDecodeError) as exc:
        raise HeaderError(f"unreadable header ({exc})") from exc
    header.fetched = r.fetched
    return header


def file_fetch(path: Path) -> Fetch:
    """``fetch`` over a file on disk (memory-mapped: reading a 9 MB header does not copy the weights)."""
    path = Path(path)

    def fetch(start: int, end: int) -> bytes:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if start >= size:
                return b""
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                return m[start : min(end + 1, size)]

    return fetch


def read_file_header(
    path: Path, keep: Container[str] | Callable[[str], bool] = (), *, tensors: bool = False
) -> Header:
    """:func:`read_header` of a file on disk; a bad file is a message naming it."""
    try:
        return read_header(file_fetch(path), keep, tensors=tensors)
    except HeaderError as exc:
        raise HeaderError(f"{Path(path).name}: {exc.message}", exc.truncated) from exc
    except OSError as exc:
        raise HeaderError(f"cannot read {Path(path).name}: {exc.strerror or exc}") from exc
