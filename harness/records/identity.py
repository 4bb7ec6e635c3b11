""" "The same measurement": the one definition of which facts make two results comparable.

Two results are the same measurement when they share the weights (the sha256 of the bytes; for a
server run, the server, its model id and file), the task configuration hash (prompts, filters,
metrics, shots, the data files' sha256 and the sample ids: ``TaskPlan.config_hash``), every engine
setting that can change a score (batching scheme, batch size, log-likelihood packing, generation
streams and units, flash attention, slots...) and whether the model ran on a GPU (GPU kernels give
other logits than CPU ones).

It is used by the resume journal (a journal is reused only by the same measurement), by
``load_runs`` (a repeated or copied run counts once) and by ``regress`` (a baseline is only compared
with the same measurement, and the settings that differ are named); without the weights it is the "same
setting" of the quant ladder (``harness.analysis.ladder``: two quants on the same questions).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.records.schema import RunRecord

# Engine settings that change how fast a run goes, never what it computes: left out of the identity.
NEUTRAL_SETTINGS = frozenset({"threads", "seed", "rpc_servers"})


def measurement(weights: object, config_hash: str, settings: dict, gpu_offload: bool | None) -> dict:
    """The identity of a measurement from its parts (see the module docstring)."""
    kept = {k: v for k, v in sorted(settings.items()) if k not in NEUTRAL_SETTINGS}
    return {
        "weights": weights,
        "task_config_hash": config_hash,
        "settings": kept,
        "gpu_offload": bool(gpu_offload),
    }


def server_weights(server: dict, model_name: str) -> list:
    """What names the weights of a server run, where no local file can be hashed."""
    return [server.get("endpoint"), server.get("model_id"), server.get("model_file"), model_name]


def of_record(rec: RunRecord) -> dict:
    """The identity of a run record (schema 1 records included: a setting they lack counts as absent)."""
    server = rec.backend.server.model_dump() if rec.backend.server else {}
    weights = rec.model.sha256 or server_weights(server, rec.model.name)
    return measurement(weights, rec.task.config_hash, rec.backend.settings, rec.backend.gpu_offload)


def key(ident: dict) -> str:
    """A short stable hash of an identity (journal file names, de-duplication keys)."""
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def differences(a: dict, b: dict) -> list[str]:
    """What differs between two identities, in words ("backend gen_streams True -> False"); empty: the same."""
    out = []
    if a["weights"] != b["weights"]:
        out.append("model file differs")
    if a["task_config_hash"] != b["task_config_hash"]:
        out.append("task config, data or sample ids differ")
    sa, sb = a["settings"], b["settings"]
    for k in sorted(set(sa) | set(sb)):
        if sa.get(k) != sb.get(k):
            out.append(f"backend {k} {sa.get(k)} -> {sb.get(k)}")
    if a["gpu_offload"] != b["gpu_offload"]:
        out.append(f"gpu offload {a['gpu_offload']} -> {b['gpu_offload']}")
    return out
