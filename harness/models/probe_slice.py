"""Probe slices for ``harness plan``: a *slice* of a target model, with its hidden size, FFN width, head layout,
vocabulary size and quant types but only a few layers, for timing llama.cpp's own kernels at the target's shape
(harness/plan/slice_probe.py).

Speed does not depend on weight values, so a slice's weights are random bytes in the quant's block layout with
every fp16 scale set to a small finite value: no quantizer runs (the gguf package has none for the K-quants),
and a 70B-class slice is written at disk speed. Block layouts: ggml-common.h (block_q4_0 ... block_q6_K),
https://github.com/ggml-org/llama.cpp/blob/master/ggml/src/ggml-common.h; sizes checked against the gguf
package's GGML_QUANT_SIZES in tests/test_plan_probe.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.models.llama_gguf import LlamaHeader, llama_writer

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
        return (
            f"e{self.n_embd}-f{self.n_ff}-h{self.n_head}-kv{self.n_head_kv}-d{self.hd}-v{self.n_vocab}-"
            f"{self.layer_type}-{self.output_type}"
        )

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
        out = [
            ("token_embd.weight", (self.n_vocab, self.n_embd), self.layer_type),
            ("output.weight", (self.n_vocab, self.n_embd), self.output_type),
        ]
        for i in range(n_layer):
            out += [
                (f"blk.{i}.attn_q.weight", (q, self.n_embd), self.layer_type),
                (f"blk.{i}.attn_k.weight", (kv, self.n_embd), self.layer_type),
                (f"blk.{i}.attn_v.weight", (kv, self.n_embd), self.layer_type),
                (f"blk.{i}.attn_output.weight", (self.n_embd, q), self.layer_type),
                (f"blk.{i}.ffn_gate.weight", (self.n_ff, self.n_embd), self.layer_type),
                (f"blk.{i}.ffn_up.weight", (self.n_ff, self.n_embd), self.layer_type),
                (f"blk.{i}.ffn_down.weight", (self.n_embd, self.n_ff), self.layer_type),
            ]
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
        raise HarnessError(
            f"a vocabulary of {n_vocab} tokens is too small for a probe slice", "check the model's shape."
        )
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"tok{i}" for i in range(len(tokens), n_vocab)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [
        gguf.TokenType.BYTE
    ] * 256
    types += [gguf.TokenType.NORMAL] * (n_vocab - len(types))
    return {
        "tokens": tokens,
        "scores": [0.0] * 259 + [-float(i) for i in range(n_vocab - 259)],
        "types": types,
    }


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
    w = llama_writer(
        tmp,
        LlamaHeader(
            "probe slice, random weights (timing only)",
            n_layer,
            131072,
            shape.n_embd,
            shape.n_ff,
            shape.n_head,
            shape.n_head_kv,
            shape.hd,
            500000.0,
            1e-5,
            shape.n_vocab,
            head_dim=shape.hd,
        ),
    )
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
    norms = ["output_norm.weight"] + [
        f"blk.{i}.{n}_norm.weight" for i in range(n_layer) for n in ("attn", "ffn")
    ]
    ones = np.ones(shape.n_embd, np.float32)
    for name in norms:
        w.add_tensor_info(name, ones.shape, f32, ones.nbytes)
    mats = shape.matrices(n_layer)
    for name, (rows, cols), t in mats:
        w.add_tensor_info(
            name,
            (rows, cols),
            f32,
            rows * cols // BLOCKS[t][0] * BLOCKS[t][1],
            raw_dtype=gguf.GGMLQuantizationType[t],
        )
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
