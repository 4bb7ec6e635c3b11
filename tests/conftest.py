"""Shared fixtures: the data mirror and the SmolLM2 GGUF (both offline)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The Hub-layout data mirror (HARNESS_DATA_DIR, else ../shared/data/hub)."""
    p = Path(os.environ.get("HARNESS_DATA_DIR") or ROOT.parent / "shared" / "data" / "hub")
    if not (p / "openai" / "gsm8k").is_dir():
        pytest.skip(f"no data mirror at {p}")
    return p


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    from harness.catalogue import local_model_path, resolve

    return local_model_path(resolve("smollm2-135m"))


@pytest.fixture(scope="session")
def engine(smollm2_path):
    from harness.engine import EngineSettings, LlamaEngine

    e = LlamaEngine(smollm2_path, EngineSettings(threads=2))
    yield e
    e.close()
