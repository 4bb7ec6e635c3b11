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
    from harness.models.catalogue import resolve
    from harness.models.locate import local_model_path

    return local_model_path(resolve("smollm2-135m"))


@pytest.fixture(scope="session")
def llama_server_bin(request) -> Path:
    """llama.cpp's llama-server built from the pinned llama-cpp-python sdist's sources, once per machine
    (tests/backend_procs.build_llama_server). The build's progress is shown on the terminal, not captured."""
    from backend_procs import build_llama_server

    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        return build_llama_server()


@pytest.fixture(scope="session")
def engine(smollm2_path):
    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.backends.llamacpp.settings import EngineSettings

    e = LlamaEngine(smollm2_path, EngineSettings(threads=2))
    yield e
    e.close()


@pytest.fixture()
def tmpfs(tmp_path):
    """Mount a small real tmpfs: ``tmpfs(size)`` -> its folder (``size`` as mount takes it, e.g. "16k").

    A real full disk (ENOSPC from the kernel), not a mock. Needs mount rights (root, as in CI's container);
    the test is skipped, with the reason, where that is refused."""
    import subprocess

    mounted = []

    def mount(size: str) -> Path:
        d = tmp_path / f"tmpfs-{len(mounted)}"
        d.mkdir()
        if subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True
        ).returncode:
            pytest.skip("cannot mount a small tmpfs here (needs root, as in CI)")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)
