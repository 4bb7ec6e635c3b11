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
            out += [(f"blk.{i}.attn_q.weight", (self.n_head * hd, self.n_embd)),
                    (f"blk.{i}.attn_k.weight", (kv, self.n_embd)),
                    (f"blk.{i}.attn_v.weight", (kv, self.n_embd)),
                    (f"blk.{i}.attn_output.weight", (self.n_embd, self.n_head * hd)),
                    (f"blk.{i}.ffn_gate.weight", (self.n_ff, self.n_embd)),
                    (f"blk.{i}.ffn_up.weight", (self.n_ff, self.n_embd)),
                    (f"blk.{i}.ffn_down.weight", (self.n_embd, self.n_ff))]
        return out

    def n_params(self) -> int:
        """Parameters as llama.cpp counts them (every tensor's elements; rope_freqs included)."""
        return (sum(r * c for _, (r, c) in self.matrices()) + self.n_embd * (2 * self.n_layer + 1)
                + self.head_dim // 2)

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
                smooth = (self.original_ctx / wavelen - self.low_freq_factor) / (self.high_freq_factor - self.low_freq_factor)
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
    "1b": Shape("1b", "Llama 3.2 1B", 16, 2048, 8192, 32, 8, True, 32.0,
                "https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json"),
    "3b": Shape("3b", "Llama 3.2 3B", 28, 3072, 8192, 24, 8, True, 32.0,
                "https://huggingface.co/meta-llama/Llama-3.2-3B/blob/main/config.json"),
    "8b": Shape("8b", "Llama 3.1 8B", 32, 4096, 14336, 32, 8, False, 8.0,
                "https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json"),
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
        res = subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet",
                              f"llama-cpp-python=={version}", "-d", str(sdist_dir)],
                             capture_output=True, text=True, timeout=900)
        if res.returncode != 0 or not (sdist_dir / name).is_file():
            raise HarnessError(f"pip could not fetch the llama-cpp-python {version} sdist (it holds the Llama 3 "
                               f"vocabulary): {res.stderr.strip()[-300:]}",
                               "check access to PyPI, or put the sdist in " + str(sdist_dir) + ".")
    with tarfile.open(sdist_dir / name) as tar:
        src = tar.extractfile(f"llama_cpp_python-{version}/vendor/llama.cpp/models/{VOCAB}")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part")
        tmp.write_bytes(src.read())
        tmp.replace(out)
    if _sha256(out) != VOCAB_SHA256:
        raise HarnessError(f"{out} from llama-cpp-python {version} is not the vocabulary the harness was checked "
                           "against (sha256 differs)", "use the pinned llama-cpp-python (constraints.txt).")
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


def build_shaped_model(shape: Shape, quant: str, out: Path, vocab: Vocab | Path, seed: int = 0,
                       log: Callable[[str], None] | None = None) -> Path:
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
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name(f"{shape.title} shape, random weights (benchmark only)")
    w.add_file_type(ftype)
    w.add_block_count(shape.n_layer)
    w.add_context_length(shape.ctx_train)
    w.add_embedding_length(shape.n_embd)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_rope_dimension_count(shape.head_dim)
    w.add_rope_freq_base(shape.rope_theta)
    w.add_layer_norm_rms_eps(shape.rms_eps)
    w.add_vocab_size(N_VOCAB)
    for key, (value, vtype, sub) in vocab.fields.items():
        w.add_key_value(key, value, vtype, sub_type=sub)
    w.add_bos_token_id(vocab.id("<|begin_of_text|>"))
    w.add_eos_token_id(vocab.id("<|end_of_text|>"))
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    # Tensor infos first (sizes only), then each tensor generated, quantized and written in turn.
    from gguf.quants import quant_shape_to_byte_shape

    f32 = np.dtype(np.float32)
    small = [("rope_freqs.weight", shape.rope_freqs()), ("output_norm.weight", np.ones(shape.n_embd, np.float32))]
    for i in range(shape.n_layer):
        small += [(f"blk.{i}.attn_norm.weight", np.ones(shape.n_embd, np.float32)),
                  (f"blk.{i}.ffn_norm.weight", np.ones(shape.n_embd, np.float32))]
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


def ensure_shaped_model(name: str, quant: str = "Q4_0", cache: Path = CACHE_DIR, seed: int = 0,
                        log: Callable[[str], None] | None = print) -> Path:
    """The cached benchmark model of shape ``name``, built first when missing (about 25 s per billion
    parameters on one core)."""
    shape = shape_of(name)
    if quant.upper() not in QUANTS:
        raise HarnessError(f"unknown benchmark quant {quant!r}", f"use one of {', '.join(QUANTS)}.")
    path = model_path(shape, quant, cache, seed)
    if path.is_file():
        return path
    if log:
        log(f"building {path.name}: {shape.title} shapes ({shape.n_params() / 1e9:.2f} B parameters), "
            f"random {quant.upper()} weights, into {path.parent}")
    return build_shaped_model(shape, quant, path, llama3_vocab(), seed=seed, log=log)


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.models.shaped 1b,3b --quant Q4_0,Q8_0`` (``make bench-models``): build what is missing."""
    import argparse

    ap = argparse.ArgumentParser(description="Build Llama-3-shaped benchmark GGUFs (random weights) into "
                                             f"{CACHE_DIR}, skipping those already there.")
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


# ---------------------------------------------------------------------------- probe slices (`harness plan`)
# A *slice* of a target model: its hidden size, FFN width, head layout, vocabulary size and quant types, but only
# a few layers, for `harness plan` to time llama.cpp's own kernels at the target's shape (harness/plan/slice_probe.py).
# Speed does not depend on weight values, so a slice's weights are random bytes in the quant's block layout with
# every fp16 scale set to a small finite value: no quantizer runs (the gguf package has none for the K-quants),
# and a 70B-class slice is written at disk speed. Block layouts: ggml-common.h (block_q4_0 ... block_q6_K),
# https://github.com/ggml-org/llama.cpp/blob/master/ggml/src/ggml-common.h; sizes checked against the gguf
# package's GGML_QUANT_SIZES in tests/test_shaped.py.
# type: (weights per block, bytes per block, byte offsets of the block's fp16 scales)
BLOCKS: dict[str, tuple[int, int, tuple[int, ...]]] = {
    "Q4_0": (32, 18, (0,)),  # d, qs[16]
    "Q4_1": (32, 20, (0, 2)),  # d, m, qs[16]
    "Q5_0": (32, 22, (0,)),  # d, qh[4], qs[16]
    "Q5_1": (32, 24, (0, 2)),  # d, m, qh[4], qs[16]
    "Q8_0": (32, 34, (0,)),  # d, qs[32]
    "Q2_K": (256, 84, (80, 82)),  # scales[16], qs[64], d, dmin
    "Q3_K": (256, 110, (108,)),  # hmask[32], qs[64], scales[12], d
    "Q4_K": (256, 144, (0, 2)),  # d, dmin, scales[12], qs[128]
    "Q5_K": (256, 176, (0, 2)),  # d, dmin, scales[12], qh[32], qs[128]
    "Q6_K": (256, 210, (208,)),  # ql[128], qh[64], scales[16], d
}
_SCALE = np.float16(2.0**-10)  # every block's scale: small and finite (random fp16 bytes include NaN and inf)


@dataclass(frozen=True)
class SliceShape:
    """What a probe slice copies from its target: the layer's matrix sizes and types and the output layer.

    ``layer_type``: the quant type of the layers' matrices (a mixed quant such as Q4_K_M: its main type);
    ``output_type``: the output matrix's (llama.cpp's quantizer keeps it at Q6_K in the K-quant files).
    """

    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    n_vocab: int
    layer_type: str
    output_type: str
    head_dim: int = 0  # 0: n_embd / n_head

    @property
    def key(self) -> str:
        """The cache key: every field that changes the file."""
        return (f"e{self.n_embd}-f{self.n_ff}-h{self.n_head}-kv{self.n_head_kv}-d{self.hd}-v{self.n_vocab}-"
                f"{self.layer_type}-{self.output_type}")

    @property
    def hd(self) -> int:
        return self.head_dim or self.n_embd // self.n_head

    def layer_params(self) -> int:
        """Weights of one layer's matrices (q, k, v, output; gate, up, down)."""
        q, kv = self.n_head * self.hd, self.n_head_kv * self.hd
        return self.n_embd * (q + 2 * kv) + q * self.n_embd + 3 * self.n_embd * self.n_ff

    def matrices(self, n_layer: int) -> list[tuple[str, tuple[int, int], str]]:
        """(name, (rows, columns), type) of every matrix of an ``n_layer`` slice, in file order."""
        q, kv = self.n_head * self.hd, self.n_head_kv * self.hd
        out = [("token_embd.weight", (self.n_vocab, self.n_embd), self.layer_type),
               ("output.weight", (self.n_vocab, self.n_embd), self.output_type)]
        for i in range(n_layer):
            out += [(f"blk.{i}.attn_q.weight", (q, self.n_embd), self.layer_type),
                    (f"blk.{i}.attn_k.weight", (kv, self.n_embd), self.layer_type),
                    (f"blk.{i}.attn_v.weight", (kv, self.n_embd), self.layer_type),
                    (f"blk.{i}.attn_output.weight", (self.n_embd, q), self.layer_type),
                    (f"blk.{i}.ffn_gate.weight", (self.n_ff, self.n_embd), self.layer_type),
                    (f"blk.{i}.ffn_up.weight", (self.n_ff, self.n_embd), self.layer_type),
                    (f"blk.{i}.ffn_down.weight", (self.n_embd, self.n_ff), self.layer_type)]
        # A row length the type's block does not divide: Q8_0, as llama.cpp's quantizer falls back for such rows.
        return [(n, rc, t if rc[1] % BLOCKS[t][0] == 0 else "Q8_0") for n, rc, t in out]

    def slice_bytes(self, n_layer: int) -> int:
        return sum(r * c // BLOCKS[t][0] * BLOCKS[t][1] for _, (r, c), t in self.matrices(n_layer))


def _random_blocks(rows: int, cols: int, qtype: str, rng: np.random.Generator) -> np.ndarray:
    """rows x cols weights of ``qtype`` as random bytes with every block's fp16 scales set to ``_SCALE``."""
    per, size, scales = BLOCKS[qtype]
    blocks = rng.integers(0, 256, (rows * cols // per, size), dtype=np.uint8)
    s = np.frombuffer(_SCALE.tobytes(), dtype=np.uint8)
    for off in scales:
        blocks[:, off : off + 2] = s
    return blocks.reshape(rows, cols // per * size)


def synthetic_vocab_fields(n_vocab: int) -> dict:
    """A SentencePiece-style (``llama``) tokenizer of exactly ``n_vocab`` tokens for a probe slice: unknown, BOS,
    EOS, the 256 byte tokens (every text tokenizes, by byte fallback), then placeholder tokens. The real
    vocabulary does not matter for speed; its size does (the output layer, the logits)."""
    import gguf

    if n_vocab < 300:
        raise HarnessError(f"a vocabulary of {n_vocab} tokens is too small for a probe slice", "check the model's shape.")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"tok{i}" for i in range(len(tokens), n_vocab)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    types += [gguf.TokenType.NORMAL] * (n_vocab - len(types))
    return {"tokens": tokens, "scores": [0.0] * 259 + [-float(i) for i in range(n_vocab - 259)], "types": types}


def build_probe_slice(shape: SliceShape, n_layer: int, out: Path, seed: int = 0) -> Path:
    """Write an ``n_layer`` slice of ``shape`` (random weights, see :data:`BLOCKS`) to ``out``; return ``out``.
    Written under a temporary name and renamed when complete."""
    import gguf

    for t in (shape.layer_type, shape.output_type):
        if t not in BLOCKS:
            raise HarnessError(f"no probe slice for weights of type {t}", f"types: {', '.join(BLOCKS)}.")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    voc = synthetic_vocab_fields(shape.n_vocab)
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name("probe slice, random weights (timing only)")
    w.add_block_count(n_layer)
    w.add_context_length(131072)
    w.add_embedding_length(shape.n_embd)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_key_length(shape.hd)
    w.add_value_length(shape.hd)
    w.add_rope_dimension_count(shape.hd)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(shape.n_vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(voc["tokens"])
    w.add_token_scores(voc["scores"])
    w.add_token_types(voc["types"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    f32 = np.dtype(np.float32)
    norms = ["output_norm.weight"] + [f"blk.{i}.{n}_norm.weight" for i in range(n_layer) for n in ("attn", "ffn")]
    ones = np.ones(shape.n_embd, np.float32)
    for name in norms:
        w.add_tensor_info(name, ones.shape, f32, ones.nbytes)
    mats = shape.matrices(n_layer)
    for name, (rows, cols), t in mats:
        w.add_tensor_info(name, (rows, cols), f32, rows * cols // BLOCKS[t][0] * BLOCKS[t][1],
                          raw_dtype=gguf.GGMLQuantizationType[t])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for _ in norms:
        w.write_tensor_data(ones)
    for k, (_, (rows, cols), t) in enumerate(mats):
        w.write_tensor_data(_random_blocks(rows, cols, t, np.random.default_rng([seed, k])))
    w.close()
    tmp.replace(out)
    return out
