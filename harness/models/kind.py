"""Base or instruct: settle a model's kind before its prompts are built, from ``--kind``, the catalogue,
or the GGUF's own tokenizer metadata (on disk, or the header's first MiBs read from the Hub)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from harness.datafiles.catalogue import KINDS
from harness.errors import HarnessError
from harness.models.catalogue import UNDECIDED, ModelEntry
from harness.models.chat_format import (
    gguf_tokenizer_facts,
    kind_from_facts,
    kind_from_gguf,
    remote_tokenizer_facts,
)
from harness.models.hub_files import range_fetch
from harness.models.locate import local_model_path


def decide_kind(entry: ModelEntry, kind: str | None = None, path: Path | None = None) -> ModelEntry:
    """The entry with its kind settled: ``--kind`` if given, else the catalogue's, else the GGUF's evidence.

    Base or instruct decides the prompt format (chat template or plain few-shot) and so the score; it is
    never guessed from a file name. ``kind_source`` says how it was decided (printed and recorded).
    """
    if kind is not None and kind not in KINDS:
        raise HarnessError(
            f"--kind must be one of {', '.join(KINDS)} (got {kind!r})", "use --kind base or --kind instruct."
        )
    if path is None and (kind is not None or entry.kind == UNDECIDED):
        try:
            path = local_model_path(entry)  # the local file, or a Hub GGUF already in the cache
        except HarnessError:
            path = None
    if kind is not None:
        if kind == "instruct" and path is not None:  # its template must work: fail now, not after loading
            if not gguf_tokenizer_facts(Path(path)).get("tokenizer.chat_template"):
                raise HarnessError(
                    f"--kind instruct, but {Path(path).name} has no chat template in its metadata",
                    "run it as a base model (--kind base), or use a GGUF with its chat template.",
                )
            kind_from_gguf(Path(path))  # raises on a template that fails or does not match the vocabulary
        was = (
            f" (overriding {entry.kind}, from {entry.kind_source})"
            if entry.kind not in (kind, UNDECIDED)
            else ""
        )
        return replace(entry, kind=kind, kind_source=f"--kind{was}")
    if entry.kind != UNDECIDED:
        return entry  # the catalogue's, or a local file's own evidence (read when it was resolved)
    if path is not None:
        found, evidence = kind_from_gguf(Path(path))
        return replace(entry, kind=found, kind_source=evidence)
    if entry.repo and entry.files.files:  # a Hub GGUF not downloaded yet: its header's first MiBs, no weights
        first = entry.files.files[0]
        facts = remote_tokenizer_facts(range_fetch(entry, first), Path(first).name)
        found, evidence = kind_from_facts(facts, Path(first).name)
        return replace(
            entry, kind=found, kind_source=evidence.replace("GGUF:", "GGUF header, read from the Hub:", 1)
        )
    raise HarnessError(
        f"cannot tell whether {entry.name} is a base or an instruct model: its GGUF is not on this machine",
        "pass --kind base or --kind instruct (or download it first with `harness download`).",
    )
