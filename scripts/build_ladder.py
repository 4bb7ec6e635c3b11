"""Build a real quant ladder of SmolLM2-135M offline and bench it (issue #25: quantization loss, measured).

The offline SmolLM2 GGUF (Q4_1 matrices, Q8_0 token embeddings) is dequantized to F16 with the gguf package
(``gguf.quants.dequantize``), and the F16 values are quantized again to Q8_0 and Q4_0
(``gguf.quants.quantize``: numpy ports of ggml's reference quantizers); 1-D tensors (norms) stay F32. Every
metadata key (tokenizer, chat template, shape) is copied, so the four files differ only in their matrices.
The F16 rung is the Q4_1 model's values rounded to F16 (a Q4_1 value is d*q + m computed in float32: F16
moves 55,885,620 of the 134,515,008 values, by at most 0.00195); Q8_0 and Q4_0 are made from those F16
values, as llama-quantize makes quants from an F16 file. So the ladder measures what re-quantizing this
model's weights costs, not what quantizing the original BF16 checkpoint would cost.

Then each file is benched through the installed ``harness`` entry point (a user's own GGUF: ``--model PATH``)
on the same seeded subsets, into one results folder; ``harness compare --results-dir DIR`` prints the ladder.

    .venv/bin/python scripts/build_ladder.py                 # build/ladder/{models,results}
    .venv/bin/python scripts/build_ladder.py --mmlu-limit 57 --gsm8k-limit 10 --threads 2
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.models.catalogue import resolve  # noqa: E402
from harness.models.locate import local_model_path  # noqa: E402

OUT = ROOT / "build" / "ladder"
RUNGS = ("F16", "Q8_0", "Q4_0")  # written; Q4_1 is the original file, copied


def _copy_metadata(reader, writer, file_type: int) -> None:
    """Every key of the source GGUF except the ones the writer owns and the file type."""
    import gguf

    skip = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.architecture", "general.file_type"}
    for key, fld in reader.fields.items():
        if key in skip:
            continue
        vtype = fld.types[0]
        sub = fld.types[1] if len(fld.types) > 1 else None
        writer.add_key_value(key, fld.contents(), vtype, sub_type=sub)
    writer.add_uint32("general.file_type", file_type)
    del gguf


def requantize(src: Path, out: Path, quant: str) -> Path:
    """Write ``src`` with every matrix held as ``quant`` (F16, Q8_0, Q4_0) from its dequantized values."""
    import gguf
    from gguf.quants import dequantize, quantize

    reader = gguf.GGUFReader(str(src))
    arch = reader.fields["general.architecture"].contents()
    qtype = gguf.GGMLQuantizationType[quant]
    ftype = {
        "F16": gguf.LlamaFileType.MOSTLY_F16,
        "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
    }[quant]
    tmp = out.with_name(out.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), arch)
    _copy_metadata(reader, w, int(ftype))
    for t in reader.tensors:
        # The reader's shape is ggml's (fastest dimension first); numpy's is the reverse.
        values = dequantize(t.data, t.tensor_type).reshape(tuple(reversed(t.shape.tolist())))
        if values.ndim == 1:
            w.add_tensor(t.name, values.astype(np.float32))
        elif quant == "F16":
            w.add_tensor(t.name, values.astype(np.float16))
        else:
            # The rungs below F16 are made from the F16 values, as llama-quantize makes them from an F16 file.
            f16 = values.astype(np.float16).astype(np.float32)
            w.add_tensor(t.name, quantize(f16, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(out)
    return out


def build_models(out_dir: Path) -> dict[str, Path]:
    """The four files of the ladder (built once; delete the folder to rebuild)."""
    src = local_model_path(resolve("smollm2-135m"))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"Q4_1": out_dir / "smollm2-135m-Q4_1.gguf"}
    if not paths["Q4_1"].exists():
        shutil.copyfile(src, paths["Q4_1"])
    for q in RUNGS:
        paths[q] = out_dir / f"smollm2-135m-{q}.gguf"
        if not paths[q].exists():
            t0 = time.perf_counter()
            requantize(src, paths[q], q)
            print(
                f"wrote {paths[q]} ({paths[q].stat().st_size / 2**20:.0f} MiB, {time.perf_counter() - t0:.0f} s)"
            )
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--rungs", default="F16,Q8_0,Q4_0", help="Which files to bench (Q4_1: the original).")
    ap.add_argument("--mmlu-limit", type=int, default=20)
    ap.add_argument("--gsm8k-limit", type=int, default=10)
    # One thread: on a shared 2-core machine two OpenMP threads spin at every barrier while other work runs.
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "hub"))
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args(argv)
    paths = build_models(args.out / "models")
    if args.build_only:
        return 0
    harness = Path(sys.executable).parent / "harness"
    results = args.out / "results"
    for q in args.rungs.split(","):
        path = paths[q]
        for task, limit in (("mmlu_loglik", args.mmlu_limit), ("gsm8k", args.gsm8k_limit)):
            if any((results / "runs").glob(f"smollm2-135m-{q}-{q}-{task}-*.json")):
                continue  # already benched (one record per rung and task)
            cmd = [
                str(harness),
                "bench",
                "--model",
                str(path),
                "--tasks",
                task,
                "--limit",
                str(limit),
                "--threads",
                str(args.threads),
                "--results-dir",
                str(results),
            ]
            if args.data_dir:
                cmd += ["--data-dir", args.data_dir]
            print("$", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
    subprocess.run([str(harness), "compare", "--results-dir", str(results)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
