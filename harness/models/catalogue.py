"""The model catalogue (``tasks/models.yaml``): names, Hub repos, quant files, sizes, eval settings.

Listing or resolving a model never loads weights nor imports llama_cpp.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.paths import TASKS_DIR

CATALOGUE_FILE = TASKS_DIR / "models.yaml"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
REQUIRED_KEYS = ("family", "kind", "params", "context_length", "quants", "gsm8k_max_gen_toks")
KINDS = ("base", "instruct")
UNDECIDED = "undecided"  # a Hub GGUF's kind before its file is read
# Every key an entry may have, and every key a quant may have: anything else is a typo, reported on load.
_ENTRY_KEYS = set(REQUIRED_KEYS) | {"aliases", "upstream", "licence", "repo", "revision", "confirmed", "package",
                                    "package_file", "default_quant", "note", "unconfirmed_reason"}
_QUANT_KEYS = {"files", "size", "sha256", "split", "joined", "note"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
    """Parse the catalogue file; a malformed file is a clear error, not a traceback."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise HarnessError(f"cannot read the model catalogue {path}: {exc}", "restore tasks/models.yaml.") from exc
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise HarnessError(f"{path} has no 'models' mapping", "restore tasks/models.yaml.")
    for name, entry in data["models"].items():
        problem = _entry_problem(name, entry, data)
        if problem:
            raise HarnessError(f"{path.name}: model {name!r}: {problem}", f"fix that entry in {path}.")
    return data


def _entry_problem(name: object, e: object, data: dict) -> str | None:
    """What is wrong with one catalogue entry (None when it is well formed)."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        return "the name must be letters, digits, '.', '_' or '-'"
    if not isinstance(e, dict):
        return "the entry is not a mapping of fields"
    missing = [k for k in REQUIRED_KEYS if k not in e]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    unknown = sorted(set(e) - _ENTRY_KEYS)
    if unknown:
        return f"unknown field(s) {', '.join(map(str, unknown))}"
    if e["kind"] not in ("base", "instruct"):
        return f"kind must be base or instruct (got {e['kind']!r})"
    for key in ("family",):
        if not isinstance(e[key], str) or not e[key]:
            return f"{key} must be a non-empty string"
    for key in ("params", "context_length", "gsm8k_max_gen_toks"):
        v = e[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            return f"{key} must be a positive number (got {v!r})"
    if not e.get("repo") and not (e.get("package") and e.get("package_file")):
        return "needs a Hub repo, or a package and package_file"
    if e.get("repo") is not None and (not isinstance(e["repo"], str) or e["repo"].count("/") != 1):
        return f"repo must be OWNER/NAME (got {e['repo']!r})"
    for key in ("revision", "upstream", "licence", "package", "package_file", "default_quant"):
        if e.get(key) is not None and not isinstance(e[key], str):
            return f"{key} must be a string (got {e[key]!r})"
    if not isinstance(e.get("aliases") or [], list) or not all(isinstance(a, str) for a in e.get("aliases") or []):
        return "aliases must be a list of names"
    if "confirmed" in e and not isinstance(e["confirmed"], bool):
        return "confirmed must be true or false"
    quants = e["quants"]
    if not isinstance(quants, dict) or not quants:
        return "quants must map each quant name to its files"
    default = e.get("default_quant") or data.get("default_quant", "Q4_K_M")
    if e.get("default_quant") and default not in quants:
        return f"default_quant {default} is not one of its quants"
    for q, qf in quants.items():
        problem = _quant_problem(qf)
        if problem:
            return f"quant {q}: {problem}"
    return None


def _quant_problem(qf: object) -> str | None:
    if not isinstance(qf, dict):
        return "not a mapping of fields"
    unknown = sorted(set(qf) - _QUANT_KEYS)
    if unknown:
        return f"unknown field(s) {', '.join(map(str, unknown))}"
    files = qf.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) and f and ".." not in f.split("/") for f in files):
        return "files must be a list of file names"
    if qf.get("size") is not None and (isinstance(qf["size"], bool) or not isinstance(qf["size"], int)
                                        or qf["size"] <= 0):
        return f"size must be a positive byte count or null (got {qf['size']!r})"
    if qf.get("sha256") is not None and not (isinstance(qf["sha256"], str) and _SHA256.match(qf["sha256"])):
        return "sha256 must be 64 lowercase hex digits or null"
    split = qf.get("split", "single")
    if split not in ("single", "shards", "parts"):
        return f"split must be single, shards or parts (got {split!r})"
    if split == "single" and len(files) > 1:
        return "several files need split: shards or parts"
    if qf.get("joined") is not None and not isinstance(qf["joined"], str):
        return "joined must be a file name"
    return None


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
        what = "a folder" if Path(name).is_dir() else "not a .gguf file" if Path(name).exists() else "no such file"
        raise HarnessError(f"--model {name!r}: {what}",
                           "give a catalogue name (see `harness models`), a path to a .gguf file, or hf:OWNER/REPO/FILE.gguf.")
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
        raise HarnessError(f"--model {str(path)!r}: the GGUF file {what}",
                           "check the path (relative paths start from the current directory), or give a catalogue "
                           "name (see `harness models`).")
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
