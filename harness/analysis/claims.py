"""The claims catalogue (``tasks/claims.yaml``) and the quantization allowances (``tasks/quant_allowance.yaml``).

Both are data with sources; this module only reads and checks them, so a typo in a claim is an error
with the claim's id rather than a silently skipped row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.datafiles import load_file
from harness.datafiles.claims import SETTING_KEYS, AllowanceFile, ClaimsFile, MarginsFile
from harness.paths import TASKS_DIR

CLAIMS_FILE = TASKS_DIR / "claims.yaml"
ALLOWANCE_FILE = TASKS_DIR / "quant_allowance.yaml"
MARGIN_FILE = TASKS_DIR / "verdict_margins.yaml"


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
    mapping: dict | None = (
        None  # {"by": "ours", "reason": ...} when the benchmark is our choice, not the source's
    )

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
            return (
                f"{self.claimed:.1f} ± {self.claimed_ci95:.1f}" if self.claimed_ci95 else f"{self.claimed:g}"
            )
        rel = self.relation or {}
        margin = f" - {rel['margin']:g}" if rel.get("margin") else ""
        if rel.get("other_model"):
            return f"{rel['op']} {rel['other_model']}{margin}"
        ref = rel.get("reference") or {}
        val = f"{ref['value']:g}" if ref.get("value") is not None else "?"
        return f"{rel['op']} {ref.get('name')} ({val}){margin}"


def load_claims(path: Path = CLAIMS_FILE) -> list[Claim]:
    """The claims catalogue, validated by its model (harness/datafiles/claims.py): every problem is one message
    naming the claim's id and the field."""
    out = []
    for c in load_file(ClaimsFile, path).claims:
        row = c.model_dump(exclude_unset=True)
        out.append(
            Claim(
                id=c.id,
                model=c.model,
                task=c.task,
                setting=row.get("setting"),
                kind=c.kind,
                claimed=c.claimed,
                relation=row.get("relation"),
                source=c.source,
                article=c.article,
                summary=c.summary,
                confirmed=bool(c.confirmed),
                claimed_params=c.claimed_params,
                claimed_ci95=c.claimed_ci95,
                mapping=row.get("mapping"),
            )
        )
    return out


def reference_mismatch(claim: Claim) -> list[str]:
    """How a relation's reference figure was measured differently from the claim's setting (empty: same)."""
    ref = (claim.relation or {}).get("reference") or {}
    rs, cs = ref.get("setting") or {}, claim.setting or {}
    out = []
    for key in sorted(SETTING_KEYS):
        if rs.get(key) is not None and cs.get(key) is not None and rs[key] != cs[key]:
            out.append(f"{key} {rs[key]!r} for {ref.get('name')}, {cs[key]!r} in the claim")
    return out


def params_tolerance(path: Path = CLAIMS_FILE) -> float:
    """Relative tolerance for size claims ("8B"): model names round the parameter count."""
    return float(load_file(ClaimsFile, path).params_tolerance)


@dataclass(frozen=True)
class Allowance:
    """How many points a quant may trail a full-precision figure on one benchmark, and why."""

    points: float
    source: str
    rule: str


def allowance(quant: str, params: float | None, task: str, path: Path = ALLOWANCE_FILE) -> Allowance:
    """First rule of the allowance file matching the quant, model size and benchmark; none -> 0 points."""
    size_b = (params or 0) / 1e9
    for rule in load_file(AllowanceFile, path).allowances:
        if quant.upper() not in [q.upper() for q in rule.quants]:
            continue
        high = float("inf") if rule.max_params_b is None else rule.max_params_b
        if not (rule.min_params_b <= size_b < high):
            continue
        pts = rule.points
        value = pts.get(task, pts.get("default")) if isinstance(pts, dict) else pts
        if value is None:
            continue
        return Allowance(float(value), rule.source, rule.name)
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
    data = load_file(MarginsFile, path)
    row = data.tasks.get(claim.task) or data.default
    return Margin(float(row.points), str(row.reason))


def decision_power(path: Path = MARGIN_FILE) -> float:
    """The power at which decide-sizes are computed (``power`` in ``tasks/verdict_margins.yaml``)."""
    return float(load_file(MarginsFile, path).power)
