"""The model catalogue (``tasks/models.yaml``): names, Hub repos, quant files, sizes, eval settings.

Listing or resolving a model never loads weights nor imports llama_cpp.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.datafiles import load_file
from harness.datafiles.catalogue import SAFE_NAME, Catalogue
from harness.errors import HarnessError
from harness.paths import TASKS_DIR

CATALOGUE_FILE = TASKS_DIR / "models.yaml"
_SAFE_NAME = re.compile(SAFE_NAME)
UNDECIDED = "undecided"  # a Hub GGUF's kind before its file is read


@dataclass(frozen=True)
class QuantFiles:
    """The file(s) of one quant: a single file, numbered shards, or raw byte parts to join."""

    quant: str
    files: tuple[str, ...]
    size: int | None = None
    sha256: str | None = None
    split: str = "single"  # single | shards | parts
    joined: str | None = None  # file name after joining byte parts

    @property
    def main_file(self) -> str:
        """The file llama.cpp is pointed at (first shard, or the joined file)."""
        if self.split == "parts":
            return self.joined or re.sub(r"\.part1of\d+$", "", self.files[0])
        return self.files[0]


@dataclass(frozen=True)
class ModelEntry:
    """One catalogue model, plus which quant was asked for."""

    name: str
    family: str
    kind: str  # base | instruct
    params: float
    context_length: int
    quant: str
    files: QuantFiles
    gsm8k_max_gen_toks: int
    repo: str | None = None
    revision: str = "main"
    package: str | None = None
    package_file: str | None = None
    local_path: Path | None = None
    upstream: str | None = None
    licence: str | None = None
    confirmed: bool = False
    aliases: tuple[str, ...] = field(default_factory=tuple)
    # How ``kind`` was decided: "--kind", "catalogue", or the GGUF evidence (harness/models/chat_format.py); never
    # the file name.
    kind_source: str = "catalogue"

    @property
    def is_instruct(self) -> bool:
        return self.kind == "instruct"

    def describe(self) -> dict:
        """What the run record says about where the weights came from."""
        return {
            "name": self.name,
            "family": self.family,
            "kind": self.kind,
            "kind_source": self.kind_source,
            "quant": self.quant,
            "repo": self.repo,
            "revision": self.revision,
            "package": self.package,
            "files": list(self.files.files),
            "catalogue_params": self.params,
            "confirmed": self.confirmed,
        }


def load_catalogue(path: Path = CATALOGUE_FILE) -> dict:
    """The catalogue file as plain data, validated by its model (harness/datafiles/catalogue.py): a malformed
    entry is one message naming the model and the field, not a traceback."""
    return load_file(Catalogue, path).model_dump(exclude_unset=True)


def _aliases(data: dict) -> dict[str, str]:
    out = {}
    for name, entry in data["models"].items():
        out[name] = name
        for alias in entry.get("aliases") or []:
            out[alias] = name
    return out


def resolve(name: str, quant: str | None = None, data: dict | None = None) -> ModelEntry:
    """Catalogue name (or alias, or a local ``.gguf`` path) and quant -> ModelEntry."""
    if name.startswith("hf:"):
        return _hub_entry(name[3:], quant)
    if name.endswith(".gguf"):  # a file name, found or not: never looked up as a catalogue name
        return _local_entry(Path(name), quant)
    if "/" in name:
        what = (
            "a folder"
            if Path(name).is_dir()
            else "not a .gguf file"
            if Path(name).exists()
            else "no such file"
        )
        raise HarnessError(
            f"--model {name!r}: {what}",
            "give a catalogue name (see `harness models`), a path to a .gguf file, or hf:OWNER/REPO/FILE.gguf.",
        )
    if not _SAFE_NAME.match(name):
        raise HarnessError(
            f"model name {name!r} contains characters that are not allowed",
            "use a catalogue name (see `harness models`) or a path to a .gguf file.",
        )
    data = data or load_catalogue()
    aliases = _aliases(data)
    if name not in aliases:
        close = difflib.get_close_matches(name, list(aliases), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise HarnessError(f"unknown model {name!r}", hint + "run `harness models` for the list.")
    canonical = aliases[name]
    entry = data["models"][canonical]
    quants = entry.get("quants") or {}
    q = quant or entry.get("default_quant") or data.get("default_quant", "Q4_K_M")
    if q not in quants:
        raise HarnessError(
            f"model {canonical} has no quant {q!r} in the catalogue",
            f"available: {', '.join(quants)} (choose with QUANT=... or --quant).",
        )
    qf = quants[q]
    files = QuantFiles(
        quant=q,
        files=tuple(qf["files"]),
        size=qf.get("size"),
        sha256=qf.get("sha256"),
        split=qf.get("split", "single"),
        joined=qf.get("joined"),
    )
    return ModelEntry(
        name=canonical,
        family=entry["family"],
        kind=entry["kind"],
        params=float(entry["params"]),
        context_length=int(entry["context_length"]),
        quant=q,
        files=files,
        gsm8k_max_gen_toks=int(entry.get("gsm8k_max_gen_toks", 1024)),
        repo=entry.get("repo"),
        revision=str(entry.get("revision") or "main"),
        package=entry.get("package"),
        package_file=entry.get("package_file"),
        upstream=entry.get("upstream"),
        licence=entry.get("licence"),
        confirmed=bool(entry.get("confirmed", False)),
        aliases=tuple(entry.get("aliases") or ()),
    )


def _local_entry(path: Path, quant: str | None) -> ModelEntry:
    """A user's own GGUF file: no catalogue edit needed; kind from the GGUF's own metadata (see kind_from_gguf)."""
    from harness.models.chat_format import kind_from_gguf

    if not path.is_file():
        what = "is not a file" if path.exists() else "was not found"
        raise HarnessError(
            f"--model {str(path)!r}: the GGUF file {what}",
            "check the path (relative paths start from the current directory), or give a catalogue "
            "name (see `harness models`).",
        )
    try:
        kind, evidence = kind_from_gguf(path)
    except HarnessError as exc:  # a broken template: decide_kind raises it unless --kind settles the kind
        kind, evidence = UNDECIDED, f"not decided: {exc.message}"
    q = quant or quant_from_name(path.name) or "unknown"
    return ModelEntry(
        name=path.stem,
        family="local",
        kind=kind,
        params=0.0,
        context_length=0,
        quant=q,
        files=QuantFiles(quant=q, files=(path.name,), size=path.stat().st_size),
        gsm8k_max_gen_toks=1024,
        local_path=path.resolve(),
        kind_source=evidence,
    )


def _hub_entry(spec: str, quant: str | None) -> ModelEntry:
    """``owner/repo/path/to/file.gguf[@revision]`` on the Hub, without editing the catalogue."""
    spec, _, revision = spec.partition("@")
    parts = spec.split("/")
    if len(parts) < 3 or not spec.endswith(".gguf") or any(p in ("", ".", "..") for p in parts):
        raise HarnessError(
            f"cannot read Hub model spec {spec!r}",
            "write hf:OWNER/REPO/FILE.gguf (optionally @REVISION), e.g. hf:bartowski/Llama-3.2-1B-Instruct-GGUF/"
            "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        )
    repo, file = "/".join(parts[:2]), "/".join(parts[2:])
    name = Path(file).stem
    q = quant or quant_from_name(Path(file).name) or "unknown"
    return ModelEntry(
        name=re.sub(r"[^A-Za-z0-9._-]", "-", name),
        family="hub",
        kind=UNDECIDED,  # read from the GGUF once it is here (decide_kind), or given with --kind
        kind_source="not decided yet: the GGUF is not read",
        params=0.0,
        context_length=0,
        quant=q,
        files=QuantFiles(quant=q, files=(file,)),
        gsm8k_max_gen_toks=1024,
        repo=repo,
        revision=revision or "main",
    )


def quant_from_name(name: str) -> str | None:
    """The quant a GGUF file name states (Q4_K_M, IQ3_XS, Q8_0, F16...), or None."""
    m = re.search(r"(I?Q\d_[A-Z0-9_]+?|Q\d_\d|F16|BF16|F32)(?=[.-])", name, re.IGNORECASE)
    return m.group(1).upper() if m else None
