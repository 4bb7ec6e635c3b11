"""The speed floor, anchored to llama.cpp's own tools (issue #18 item 7).

    make llama-tools                    # once: builds llama-bench, llama-batched-bench (cached in build/)
    .venv/bin/python scripts/llama_cpp_floor.py [--model smollm2-135m] [--threads 2] [--parallel 8]

The harness's floor (``harness speed``, harness/backends/llamacpp/speed.py) is our own probe of our own
engine. This script measures the same three rates with llama.cpp's tools, built from the llama.cpp
sources of the pinned llama-cpp-python sdist (scripts/build_llama_tools.sh), on the same model file,
threads and CPU settings (``--repack 0``/``--no-repack``: the engine loads weights without CPU repacking,
see EngineSettings.cpu_repack), and prints them side by side with their ratio:

- prompt: llama-bench ``-p 512 -n 0`` (pp512) vs the probe's 512-token prompt rate;
- decode, 1 sequence: llama-bench ``-p 0 -n 16 -d 512`` (tg16 at depth 512) vs the probe's single decode;
- decode, N sequences: llama-batched-bench ``-npp 512 -ntg 16 -npl N -pps`` (prompt shared, as the
  probe's copied prefix) text-generation rate vs the probe's batched decode.

Tool references: https://github.com/ggml-org/llama.cpp/tree/master/tools/llama-bench and
https://github.com/ggml-org/llama.cpp/tree/master/tools/batched-bench
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _llama_bench(tool: Path, model: Path, threads: int, n_batch: int, args: list[str]) -> float:
    """Mean tokens/s of one llama-bench test (JSON output; 3 repetitions), with the engine's settings:
    no CPU repacking, flash attention off, one micro-batch of ``n_batch``."""
    out = subprocess.run(
        [
            str(tool),
            "-m",
            str(model),
            "-t",
            str(threads),
            "--repack",
            "0",
            "-fa",
            "0",
            "-b",
            str(n_batch),
            "-ub",
            str(n_batch),
            "-r",
            "3",
            "-o",
            "json",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(json.loads(out)[0]["avg_ts"])


def _batched_bench(tool: Path, model: Path, threads: int, n_batch: int, parallel: int) -> float:
    """Text-generation tokens/s of N sequences decoding together after a shared 512-token prompt, in one
    unified KV cache (``-kvu``, as the probe's copied prefix), flash attention off, no repacking."""
    out = subprocess.run(
        [
            str(tool),
            "-m",
            str(model),
            "-t",
            str(threads),
            "-tb",
            str(threads),
            "--no-repack",
            "-kvu",
            "-fa",
            "off",
            "-c",
            str(512 + parallel * 16 + n_batch),
            "-b",
            str(n_batch),
            "-ub",
            str(n_batch),
            "-npp",
            "512",
            "-ntg",
            "16",
            "-npl",
            str(parallel),
            "-pps",
            "--output-format",
            "jsonl",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return float(rows[-1]["speed_tg"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="catalogue name or GGUF path (must be on disk)")
    ap.add_argument("--quant")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--tools", type=Path, default=ROOT / "build" / "llama-tools" / "cmake" / "bin")
    a = ap.parse_args()

    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.backends.llamacpp.settings import EngineSettings
    from harness.backends.llamacpp.speed import probe
    from harness.models.catalogue import resolve
    from harness.models.locate import local_model_path

    bench, batched = a.tools / "llama-bench", a.tools / "llama-batched-bench"
    if not (bench.exists() and batched.exists()):
        sys.exit(f"llama.cpp tools not found in {a.tools}: run `make llama-tools` first")
    entry = resolve(a.model, a.quant)
    path = local_model_path(entry)
    if path is None:
        sys.exit(f"{entry.name} {entry.quant} is not on this machine: run `harness download {a.model}` first")

    settings = EngineSettings(threads=a.threads, n_parallel=a.parallel)
    engine = LlamaEngine(path, settings)
    try:
        ours = probe(engine, prompt_tokens=512, decode_steps=16, repeats=3)
    finally:
        engine.close()
    theirs = {
        "prompt_tokens_per_s": _llama_bench(
            bench, path, a.threads, settings.n_batch, ["-p", "512", "-n", "0"]
        ),
        "decode_1_tokens_per_s": _llama_bench(
            bench, path, a.threads, settings.n_batch, ["-p", "0", "-n", "16", "-d", "512"]
        ),
        "decode_batched_tokens_per_s": _batched_bench(batched, path, a.threads, settings.n_batch, a.parallel),
    }
    print(f"{entry.name} {entry.quant}, {a.threads} threads, CPU repacking off; tokens/s")
    print(f"{'rate':<28}{'harness speed':>15}{'llama.cpp tool':>16}{'harness/tool':>14}")
    labels = {
        "prompt_tokens_per_s": "prompt (pp512)",
        "decode_1_tokens_per_s": "decode, 1 seq (tg16 @512)",
        "decode_batched_tokens_per_s": f"decode, {a.parallel} seqs (@512)",
    }
    for key, label in labels.items():
        print(f"{label:<28}{ours[key]:>15.1f}{theirs[key]:>16.1f}{ours[key] / theirs[key]:>14.2f}")


if __name__ == "__main__":
    main()
