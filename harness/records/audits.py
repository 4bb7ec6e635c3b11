"""The audits of a results folder (``<results>/audits/<record stem>.json``, written by ``harness audit``,
harness/run/audit.py): each record's latest audit, as ``harness publish`` lists it in the manifest and the
report."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

AUDITS = "audits"  # beside runs/ in a results folder


def latest_audits(results_dir: Path) -> dict[str, dict]:
    """Record file name -> its latest audit's facts (when, where, k, seed, result, whether it audited the
    record's present bytes), for the manifest and the report. Unreadable audit files are left out."""
    out: dict[str, dict] = {}
    folder = Path(results_dir) / AUDITS
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            a = json.loads(p.read_text())
            rec = Path(results_dir) / "runs" / a["record"]
            current = rec.is_file() and _sha(rec) == a["record_sha256"]
            result = a["result"]
            if (
                result == "compared" and a.get("agreement") is not None
            ):  # another device class, build or scheme
                result += f": {a['agreement']:.0%} of {a['k']} re-run identical"
            out[a["record"]] = {
                "when": a["when"],
                "where": _where(a["where"]),
                "k": a["k"],
                "seed": a["seed"],
                "result": result if current else f"{result} (record changed since)",
            }
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _where(w: dict) -> str:
    gpu = f", {w['gpu']}" if w.get("gpu") else ""
    return f"{w.get('cpu')} ({w.get('cores')} cores{gpu}), llama-cpp-python {w.get('llama-cpp-python')}"
