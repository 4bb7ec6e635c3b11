"""Llama-3-shaped benchmark models: the exact tensor shapes of Llama 3.2 1B / 3B and Llama 3.1 8B, random weights.

Why: every speed figure of the harness came from SmolLM2-135M, where per-call overheads, not matrix work, set
the times, with a 49k vocabulary (Llama 3 has 128,256). Compute does not depend on weight values, so a GGUF
with a real model's shapes, its real vocabulary and seeded random weights decodes exactly as fast as the real
model at the same quantization; its scores mean nothing and its generations never stop on their own.

What is written (architecture ``llama``, as llama.cpp's ``convert_hf_to_gguf.py`` writes Meta's checkpoints):

* the shapes below, from Meta's ``config.json`` of each model: layers, hidden size, FFN width, heads, KV heads,
  ``rope_theta`` and the ``llama3`` RoPE scaling, turned into the ``rope_freqs.weight`` factors exactly as
  llama.cpp's converter does (``LlamaModel.generate_extra_tensors``,
  https://github.com/ggml-org/llama.cpp/blob/master/convert_hf_to_gguf.py); 1B and 3B tie the output matrix
  to the token embeddings (``tie_word_embeddings``), so they have no ``output.weight``, as their GGUFs;
* the Llama 3 vocabulary (128,256 tokens, BPE merges, pre-tokenizer ``llama-bpe``) of llama.cpp's own
  ``models/ggml-vocab-llama-bpe.gguf``, taken from the pinned llama-cpp-python sdist (:func:`llama3_vocab`); no
  chat template: the files read as base models;
* weights: seeded uniform random values (numpy PCG64, one stream per tensor; standard deviation 0.02, Meta's
  ``initializer_range``), every matrix quantized with the gguf package's own numpy quantizers
  (``gguf.quants.quantize``, ``Q8_0`` or ``Q4_0``, bit-exact with ggml's reference quantizers), norms and RoPE
  factors in F32. llama.cpp's ``llama-quantize`` would store ``output.weight`` as Q6_K in a Q4_0 file; the gguf
  package has no Q6_K quantizer, so here it has the file's type (the 128k-row output matmul is ~21% of the 1B's
  weights: a Q4_0 output is a little faster than Q6_K would be).

Built per tensor, in chunks of rows, straight into the file: the whole 8B is never in memory (peak: one
quantized tensor, at most the 8B's 0.56 GB Q8_0 token embeddings). ``build/bench-models/`` is the cache
(git-ignored); a file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.models.llama_gguf import LlamaHeader, llama_writer
from harness.models.scripted_model import Vocab, read_vocab
from harness.paths import ROOT

CACHE_DIR = ROOT / "build" / "bench-models"
VOCAB_DIR = ROOT / "build" / "llama3"  # shared with tests/llama3_ref.py (same file, same sha256)
VOCAB = "ggml-vocab-llama-bpe.gguf"
VOCAB_SHA256 = "97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e"  # llama-cpp-python 0.3.36
N_VOCAB = 128256
INIT_STD = 0.02  # Meta's initializer_range
QUANTS = ("Q8_0", "Q4_0")
_CHUNK = 1 << 24  # values generated and quantized at a time (64 MB of float32)


@dataclass(frozen=True)
class Shape:
    """A Llama 3 model's tensor shapes and RoPE settings (the fields of its ``config.json``)."""

    name: str
    title: str
    n_layer: int  # num_hidden_layers
    n_embd: int  # hidden_size
    n_ff: int  # intermediate_size
    n_head: int  # num_attention_heads
    n_head_kv: int  # num_key_value_heads
    tied: bool  # tie_word_embeddings
    rope_factor: float  # rope_scaling.factor
    source: str
    rope_theta: float = 500000.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_ctx: int = 8192  # rope_scaling.original_max_position_embeddings
    ctx_train: int = 131072  # max_position_embeddings
    rms_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def matrices(self) -> list[tuple[str, tuple[int, int]]]:
        """Every weight matrix, (name, (rows, columns)) in numpy order (llama.cpp's ne1, ne0), in file order."""
        hd, kv = self.head_dim, self.n_head_kv * self.head_dim
        out = [("token_embd.weight", (N_VOCAB, self.n_embd))]
        if not self.tied:
            out.append(("output.weight", (N_VOCAB, self.n_embd)))
        for i in range(self.n_layer):
            out += [
                (f"blk.{i}.attn_q.weight", (self.n_head * hd, self.n_embd)),
                (f"blk.{i}.attn_k.weight", (kv, self.n_embd)),
                (f"blk.{i}.attn_v.weight", (kv, self.n_embd)),
                (f"blk.{i}.attn_output.weight", (self.n_embd, self.n_head * hd)),
                (f"blk.{i}.ffn_gate.weight", (self.n_ff, self.n_embd)),
                (f"blk.{i}.ffn_up.weight", (self.n_ff, self.n_embd)),
                (f"blk.{i}.ffn_down.weight", (self.n_embd, self.n_ff)),
            ]
        return out

    def n_params(self) -> int:
        """Parameters as llama.cpp counts them (every tensor's elements; rope_freqs included)."""
        return (
            sum(r * c for _, (r, c) in self.matrices())
            + self.n_embd * (2 * self.n_layer + 1)
            + self.head_dim // 2
        )

    def rope_freqs(self) -> np.ndarray:
        """Llama 3 RoPE scaling factors per frequency, as llama.cpp's converter computes them (module docstring)."""
        dim = self.head_dim
        freqs = 1.0 / (self.rope_theta ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
        low_wavelen = self.original_ctx / self.low_freq_factor
        high_wavelen = self.original_ctx / self.high_freq_factor
        out = []
        for freq in freqs:
            wavelen = 2 * math.pi / freq
            if wavelen < high_wavelen:
                out.append(1.0)
            elif wavelen > low_wavelen:
                out.append(self.rope_factor)
            else:
                smooth = (self.original_ctx / wavelen - self.low_freq_factor) / (
                    self.high_freq_factor - self.low_freq_factor
                )
                out.append(1 / ((1 - smooth) / self.rope_factor + smooth))
        return np.array(out, dtype=np.float32)


# Meta's config.json (the repos are gated; the same files are mirrored ungated, e.g. unsloth/Llama-3.2-1B):
# 1B  https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json: 16 layers, hidden 2048, FFN 8192,
#     32 heads, 8 KV heads (head_dim 64), rope_theta 500000, llama3 scaling factor 32 (low 1, high 4, original
#     8192), max_position_embeddings 131072, tie_word_embeddings true, vocab 128256.
# 3B  https://huggingface.co/meta-llama/Llama-3.2-3B/blob/main/config.json: 28 layers, hidden 3072, FFN 8192,
#     24 heads, 8 KV heads (head_dim 128), the same RoPE, tied.
# 8B  https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json: 32 layers, hidden 4096, FFN 14336,
#     32 heads, 8 KV heads (head_dim 128), llama3 scaling factor 8, not tied.
SHAPES: dict[str, Shape] = {
    "1b": Shape(
        "1b",
        "Llama 3.2 1B",
        16,
        2048,
        8192,
        32,
        8,
        True,
        32.0,
        "https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json",
    ),
    "3b": Shape(
        "3b",
        "Llama 3.2 3B",
        28,
        3072,
        8192,
        24,
        8,
        True,
        32.0,
        "https://huggingface.co/meta-llama/Llama-3.2-3B/blob/main/config.json",
    ),
    "8b": Shape(
        "8b",
        "Llama 3.1 8B",
        32,
        4096,
        14336,
        32,
        8,
        False,
        8.0,
        "https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json",
    ),
    # For tests: the real vocabulary and RoPE, two small untied blocks (every tensor kind, fast to build).
    "tiny": Shape("tiny", "Llama 3 (tiny test shape)", 2, 64, 128, 4, 2, False, 32.0, "tests only"),
}


def shape_of(name: str) -> Shape:
    try:
        return SHAPES[name.lower()]
    except KeyError:
        raise HarnessError(f"unknown benchmark shape {name!r}", f"use one of {', '.join(SHAPES)}.") from None


def model_path(shape: Shape, quant: str, cache: Path = CACHE_DIR, seed: int = 0) -> Path:
    return Path(cache) / f"llama3-{shape.name}-shape-random-s{seed}.{quant.upper()}.gguf"


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def llama3_vocab(dest: Path = VOCAB_DIR) -> Path:
    """llama.cpp's Llama 3 vocabulary GGUF, extracted from the pinned llama-cpp-python sdist (``pip download``,
    cached in ``dest/sdist``) and checked by sha256; a :class:`HarnessError` when it cannot be had."""
    out = Path(dest) / VOCAB
    if _sha256(out) == VOCAB_SHA256:
        return out
    version = importlib.metadata.version("llama-cpp-python")
    sdist_dir = Path(dest) / "sdist"
    name = f"llama_cpp_python-{version}.tar.gz"
    if not (sdist_dir / name).is_file():
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                "--quiet",
                f"llama-cpp-python=={version}",
                "-d",
                str(sdist_dir),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if res.returncode != 0 or not (sdist_dir / name).is_file():
            raise HarnessError(
                f"pip could not fetch the llama-cpp-python {version} sdist (it holds the Llama 3 "
                f"vocabulary): {res.stderr.strip()[-300:]}",
                "check access to PyPI, or put the sdist in " + str(sdist_dir) + ".",
            )
    with tarfile.open(sdist_dir / name) as tar:
        src = tar.extractfile(f"llama_cpp_python-{version}/vendor/llama.cpp/models/{VOCAB}")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part")
        tmp.write_bytes(src.read())
        tmp.replace(out)
    if _sha256(out) != VOCAB_SHA256:
        raise HarnessError(
            f"{out} from llama-cpp-python {version} is not the vocabulary the harness was checked "
            "against (sha256 differs)",
            "use the pinned llama-cpp-python (constraints.txt).",
        )
    return out


def _random_matrix_q(rows: int, cols: int, qtype, rng: np.random.Generator) -> np.ndarray:
    """A rows x cols matrix of uniform random values (std INIT_STD), quantized chunk by chunk: uint8 bytes."""
    from gguf.quants import quant_shape_to_byte_shape, quantize

    out = np.empty(quant_shape_to_byte_shape((rows, cols), qtype), dtype=np.uint8)
    step = max(1, _CHUNK // cols)
    half_width = INIT_STD * math.sqrt(3.0)  # uniform on [-a, a] has std a / sqrt(3)
    for r0 in range(0, rows, step):
        n = min(step, rows - r0)
        x = rng.random((n, cols), dtype=np.float32)
        x -= np.float32(0.5)
        x *= np.float32(2 * half_width)
        out[r0 : r0 + n] = quantize(x, qtype)
    return out


def build_shaped_model(
    shape: Shape,
    quant: str,
    out: Path,
    vocab: Vocab | Path,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write ``shape`` with random ``quant`` (Q8_0 / Q4_0) weights to ``out`` (module docstring); return ``out``.

    ``vocab``: the Llama 3 vocabulary GGUF (:func:`llama3_vocab`), or its fields already read (``read_vocab``).
    """
    import gguf

    quant = quant.upper()
    if quant not in QUANTS:
        raise HarnessError(f"unknown benchmark quant {quant!r}", f"use one of {', '.join(QUANTS)}.")
    qtype = gguf.GGMLQuantizationType[quant]
    ftype = {"Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[quant]
    t0 = time.perf_counter()
    if not isinstance(vocab, Vocab):
        vocab = read_vocab(vocab)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    w = llama_writer(
        tmp,
        LlamaHeader(
            f"{shape.title} shape, random weights (benchmark only)",
            shape.n_layer,
            shape.ctx_train,
            shape.n_embd,
            shape.n_ff,
            shape.n_head,
            shape.n_head_kv,
            shape.head_dim,
            shape.rope_theta,
            shape.rms_eps,
            N_VOCAB,
            file_type=ftype,
        ),
    )
    for key, (value, vtype, sub) in vocab.fields.items():
        w.add_key_value(key, value, vtype, sub_type=sub)
    w.add_bos_token_id(vocab.id("<|begin_of_text|>"))
    w.add_eos_token_id(vocab.id("<|end_of_text|>"))
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    # Tensor infos first (sizes only), then each tensor generated, quantized and written in turn.
    from gguf.quants import quant_shape_to_byte_shape

    f32 = np.dtype(np.float32)
    small = [
        ("rope_freqs.weight", shape.rope_freqs()),
        ("output_norm.weight", np.ones(shape.n_embd, np.float32)),
    ]
    for i in range(shape.n_layer):
        small += [
            (f"blk.{i}.attn_norm.weight", np.ones(shape.n_embd, np.float32)),
            (f"blk.{i}.ffn_norm.weight", np.ones(shape.n_embd, np.float32)),
        ]
    for name, arr in small:
        w.add_tensor_info(name, arr.shape, f32, arr.nbytes)
    mats = shape.matrices()
    for name, (rows, cols) in mats:
        nbytes = int(np.prod(quant_shape_to_byte_shape((rows, cols), qtype)))
        w.add_tensor_info(name, (rows, cols), f32, nbytes, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for _, arr in small:
        w.write_tensor_data(arr)
    for k, (name, (rows, cols)) in enumerate(mats):
        rng = np.random.default_rng([seed, k])  # one stream per tensor: any tensor can be rebuilt alone
        w.write_tensor_data(_random_matrix_q(rows, cols, qtype, rng))
        if log and (k % 16 == 15 or k == len(mats) - 1):
            log(f"  {out.name}: {k + 1}/{len(mats)} matrices, {time.perf_counter() - t0:.0f} s")
    w.close()
    tmp.replace(out)  # no half-written model under the final name
    return out


def ensure_shaped_model(
    name: str,
    quant: str = "Q4_0",
    cache: Path = CACHE_DIR,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
) -> Path:
    """The cached benchmark model of shape ``name``, built first when missing (about 25 s per billion
    parameters on one core)."""
    shape = shape_of(name)
    if quant.upper() not in QUANTS:
        raise HarnessError(f"unknown benchmark quant {quant!r}", f"use one of {', '.join(QUANTS)}.")
    path = model_path(shape, quant, cache, seed)
    if path.is_file():
        return path
    if log:
        log(
            f"building {path.name}: {shape.title} shapes ({shape.n_params() / 1e9:.2f} B parameters), "
            f"random {quant.upper()} weights, into {path.parent}"
        )
    return build_shaped_model(shape, quant, path, llama3_vocab(), seed=seed, log=log)


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.models.shaped 1b,3b --quant Q4_0,Q8_0`` (``make bench-models``): build what is missing."""
    import argparse

    ap = argparse.ArgumentParser(
        description="Build Llama-3-shaped benchmark GGUFs (random weights) into "
        f"{CACHE_DIR}, skipping those already there."
    )
    ap.add_argument("shapes", nargs="?", default="1b", help=f"comma-separated: {', '.join(SHAPES)}")
    ap.add_argument("--quant", default="Q4_0", help=f"comma-separated: {', '.join(QUANTS)}")
    a = ap.parse_args(argv)
    try:
        for name in a.shapes.split(","):
            for quant in a.quant.split(","):
                print(ensure_shaped_model(name.strip(), quant.strip()))
    except HarnessError as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
