"""The claims catalogue (``tasks/claims.yaml``) and the quantization allowances (``tasks/quant_allowance.yaml``).

Both are data with sources; this module only reads and checks them, so a typo in a claim is an error
with the claim's id rather than a silently skipped row.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.paths import TASKS_DIR

CLAIMS_FILE = TASKS_DIR / "claims.yaml"
ALLOWANCE_FILE = TASKS_DIR / "quant_allowance.yaml"
MARGIN_FILE = TASKS_DIR / "verdict_margins.yaml"
KINDS = ("value", "relation", "params")
_CLAIM_KEYS = {"id", "model", "task", "setting", "kind", "claimed", "claimed_ci95", "claimed_params", "relation",
               "source", "article", "summary", "confirmed", "mapping"}
_SETTING_KEYS = {"shots", "cot", "chat", "metric", "average"}
_REFERENCE_KEYS = {"name", "value", "source", "confirmed", "setting"}
# Who chose the benchmark a claim is tested on: the source itself, or us (the source names no benchmark).
MAPPINGS = ("source", "ours")


@dataclass(frozen=True)
class Claim:
    """One measurable claim: a value, a relation to a reference figure or another model, or a size."""

    id: str
    model: str
    task: str | None
    setting: dict | None
    kind: str
    claimed: float | None
    relation: dict | None
    source: str
    article: str | None
    summary: str
    confirmed: bool
    claimed_params: float | None = None
    claimed_ci95: float | None = None  # the source's own +/- (95% interval half-width), where it prints one
    mapping: dict | None = None  # {"by": "ours", "reason": ...} when the benchmark is our choice, not the source's

    @property
    def mapping_ours(self) -> bool:
        """True when the source names no benchmark and the task this claim is tested on was chosen by us."""
        return (self.mapping or {}).get("by") == "ours"

    def source_text(self, short: bool = False) -> str:
        """The source, flagged when the benchmark mapping is ours so it never reads as the source's own figure."""
        src = self.source.split(" (")[0] if short else self.source
        if not self.mapping_ours:
            return src
        if short:
            return f"{src} [benchmark chosen by us]"
        return f"{src} [benchmark chosen by us, not by the source: {self.mapping.get('reason')}]"

    def setting_text(self) -> str:
        """Human label of the claim's setting: shots, CoT, chat, metric and averaging."""
        s = self.setting or {}
        if not s:
            return "-"
        parts = [f"{s.get('shots')}-shot" if s.get("shots") is not None else "shots ?"]
        if s.get("cot"):
            parts.append("CoT")
        if s.get("chat"):
            parts.append("chat")
        parts.append(f"{s.get('metric') or 'metric ?'}")
        if s.get("average"):
            parts.append(s["average"])
        return " ".join(parts)

    def claim_text(self) -> str:
        """What is claimed, in a few characters: '96.8', '> GPT-4o (96.1)', '>= llama3.1-405b-instruct - 1.0'."""
        if self.kind == "params":
            return f"{self.claimed_params / 1e9:g}B params"
        if self.kind == "value":
            if self.claimed is None:
                return "?"
            return f"{self.claimed:.1f} ± {self.claimed_ci95:.1f}" if self.claimed_ci95 else f"{self.claimed:g}"
        rel = self.relation or {}
        margin = f" - {rel['margin']:g}" if rel.get("margin") else ""
        if rel.get("other_model"):
            return f"{rel['op']} {rel['other_model']}{margin}"
        ref = rel.get("reference") or {}
        val = f"{ref['value']:g}" if ref.get("value") is not None else "?"
        return f"{rel['op']} {ref.get('name')} ({val}){margin}"


def load_claims(path: Path = CLAIMS_FILE) -> list[Claim]:
    """Read and validate the claims catalogue; every problem is reported with the claim's id."""
    data = _read_yaml(path, "claims")
    out, seen = [], set()
    for i, row in enumerate(data.get("claims") or []):
        cid = row.get("id", f"#{i}")
        unknown = set(row) - _CLAIM_KEYS
        if unknown:
            raise HarnessError(f"claim {cid} in {path} has unknown key(s): {', '.join(sorted(unknown))}")
        if cid in seen:
            raise HarnessError(f"claim id {cid} appears twice in {path}")
        seen.add(cid)
        kind = row.get("kind")
        if kind not in KINDS:
            raise HarnessError(f"claim {cid}: kind must be one of {', '.join(KINDS)} (got {kind!r})")
        setting = row.get("setting")
        if kind != "params":
            if not row.get("task") or not isinstance(setting, dict):
                raise HarnessError(f"claim {cid}: a {kind} claim needs a task and a setting")
            _check_setting(cid, setting, "setting")
        if kind == "relation":
            rel = row.get("relation") or {}
            if rel.get("op") not in (">", ">=") or not (rel.get("other_model") or rel.get("reference")):
                raise HarnessError(f"claim {cid}: relation needs op '>' or '>=' and other_model or reference")
            _check_reference(cid, rel.get("reference"))
        if kind == "params" and not row.get("claimed_params"):
            raise HarnessError(f"claim {cid}: a params claim needs claimed_params")
        ci = row.get("claimed_ci95")
        if ci is not None and (kind != "value" or isinstance(ci, bool) or not isinstance(ci, (int, float)) or ci <= 0):
            raise HarnessError(f"claim {cid}: claimed_ci95 is a positive half-width (points) on a value claim (got {ci!r})")
        _check_mapping(cid, row.get("mapping"))
        out.append(
            Claim(
                id=cid, model=row["model"], task=row.get("task"), setting=setting, kind=kind,
                claimed=row.get("claimed"), relation=row.get("relation"), source=row.get("source", ""),
                article=row.get("article"), summary=row.get("summary", ""), confirmed=bool(row.get("confirmed")),
                claimed_params=row.get("claimed_params"), claimed_ci95=ci, mapping=row.get("mapping"),
            )
        )
    return out


def _check_setting(cid: str, setting: dict, what: str, required: frozenset = frozenset(_SETTING_KEYS)) -> None:
    """Every required setting field is stated: a null (e.g. ``cot``) would let a run in any setting match."""
    unknown = set(setting) - _SETTING_KEYS
    if unknown:
        raise HarnessError(f"claim {cid}: unknown {what} key(s) {sorted(unknown)}")
    missing = sorted(k for k in required if setting.get(k) is None)
    if missing:
        raise HarnessError(f"claim {cid}: {what} leaves {', '.join(missing)} unstated",
                           "state each field as the source (or the task it maps to) has it.")


def reference_mismatch(claim: Claim) -> list[str]:
    """How a relation's reference figure was measured differently from the claim's setting (empty: same)."""
    ref = (claim.relation or {}).get("reference") or {}
    rs, cs = ref.get("setting") or {}, claim.setting or {}
    out = []
    for key in sorted(_SETTING_KEYS):
        if rs.get(key) is not None and cs.get(key) is not None and rs[key] != cs[key]:
            out.append(f"{key} {rs[key]!r} for {ref.get('name')}, {cs[key]!r} in the claim")
    return out


def _check_reference(cid: str, ref: dict | None) -> None:
    """A reference figure carries the setting it was measured in, so one from another setting is never compared."""
    if not ref:
        return
    unknown = set(ref) - _REFERENCE_KEYS
    if unknown:
        raise HarnessError(f"claim {cid}: unknown reference key(s) {sorted(unknown)}")
    if ref.get("value") is not None:
        if not isinstance(ref.get("setting"), dict):
            raise HarnessError(f"claim {cid}: reference {ref.get('name')} gives a value but not the setting it was measured in")
        # shots and CoT are what published tables mark per figure (e.g. the Llama 3 paper's 5-shot / no-CoT /
        # zero-shot footnotes); chat, metric and averaging are checked too where the reference states them.
        _check_setting(cid, ref["setting"], "reference setting", frozenset({"shots", "cot"}))


def _check_mapping(cid: str, mapping: dict | None) -> None:
    if mapping is None:
        return
    if not isinstance(mapping, dict) or mapping.get("by") not in MAPPINGS or set(mapping) - {"by", "reason"}:
        raise HarnessError(f"claim {cid}: mapping must be {{by: source|ours, reason: ...}} (got {mapping!r})")
    if mapping["by"] == "ours" and not str(mapping.get("reason") or "").strip():
        raise HarnessError(f"claim {cid}: a benchmark mapping of ours needs its reason")


def params_tolerance(path: Path = CLAIMS_FILE) -> float:
    """Relative tolerance for size claims ("8B"): model names round the parameter count."""
    return float(_read_yaml(path, "claims").get("params_tolerance", 0.05))


@dataclass(frozen=True)
class Allowance:
    """How many points a quant may trail a full-precision figure on one benchmark, and why."""

    points: float
    source: str
    rule: str


def allowance(quant: str, params: float | None, task: str, path: Path = ALLOWANCE_FILE) -> Allowance:
    """First rule of the allowance file matching the quant, model size and benchmark; none -> 0 points."""
    for rule in _read_yaml(path, "quantization allowances").get("allowances", []):
        if quant.upper() not in [q.upper() for q in rule["quants"]]:
            continue
        size_b = (params or 0) / 1e9
        if not (rule.get("min_params_b", 0) <= size_b < rule.get("max_params_b", float("inf"))):
            continue
        pts = rule["points"]
        value = pts.get(task, pts.get("default")) if isinstance(pts, dict) else pts
        if value is None:
            continue
        return Allowance(float(value), rule.get("source", ""), rule.get("name", quant))
    return Allowance(0.0, "no allowance data for this quant", "none")


@dataclass(frozen=True)
class Margin:
    """The reproduction margin of one claim (points): a shortfall up to this much is not evidence against it."""

    points: float
    source: str


def margin(claim: Claim, path: Path = MARGIN_FILE) -> Margin:
    """The claim's own printed 95% half-width (``claimed_ci95``) where it has one, else its task's margin,
    else the file's default (``tasks/verdict_margins.yaml`` says why each is what it is)."""
    if claim.claimed_ci95:
        return Margin(float(claim.claimed_ci95), "the source's own 95% interval (claimed_ci95)")
    data = _margin_data(path)
    row = (data.get("tasks") or {}).get(claim.task) or data["default"]
    return Margin(float(row["points"]), str(row["reason"]))


def decision_power(path: Path = MARGIN_FILE) -> float:
    """The power at which decide-sizes are computed (``power`` in ``tasks/verdict_margins.yaml``)."""
    return float(_margin_data(path)["power"])


def _margin_data(path: Path) -> dict:
    data = _read_yaml(path, "verdict margins")
    rows = [("default", data.get("default"))] + list((data.get("tasks") or {}).items())
    for name, row in rows:
        pts = row.get("points") if isinstance(row, dict) else None
        if isinstance(pts, bool) or not isinstance(pts, (int, float)) or not pts > 0 or not str(row.get("reason") or "").strip():
            raise HarnessError(f"{path}: margin {name!r} needs points > 0 and a reason (got {row!r})",
                               "restore tasks/verdict_margins.yaml from git.")
    pw = data.get("power")
    if isinstance(pw, bool) or not isinstance(pw, (int, float)) or not 0.5 <= pw < 1:
        raise HarnessError(f"{path}: power must be a number in [0.5, 1) (got {pw!r})",
                           "restore tasks/verdict_margins.yaml from git.")
    return data


@lru_cache(maxsize=8)
def _read_yaml_cached(path: str, mtime: float) -> dict:
    return yaml.safe_load(Path(path).read_text()) or {}


def _read_yaml(path: Path, what: str) -> dict:
    try:
        data = _read_yaml_cached(str(path), Path(path).stat().st_mtime)
    except (OSError, yaml.YAMLError) as exc:
        raise HarnessError(f"cannot read {what} file {path}: {exc}", f"restore {Path(path).name} from git.") from exc
    if data.get("schema_version") != 1:
        raise HarnessError(f"{path}: unsupported schema_version {data.get('schema_version')!r}", "expected 1.")
    return data
