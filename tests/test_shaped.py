"""Llama-3-shaped benchmark models (harness/models/shaped.py): a small shape with the real 128k Llama 3
vocabulary and every tensor kind, written with the gguf package's quantizers, loads in the real llama.cpp with
the metadata it was given; the published shapes' parameter counts are those of Meta's models."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.models.shaped import (
    N_VOCAB,
    SHAPES,
    build_shaped_model,
    ensure_shaped_model,
    llama3_vocab,
    model_path,
)


@pytest.fixture(scope="module")
def vocab():
    from harness.models.scripted_model import read_vocab

    try:
        return read_vocab(llama3_vocab())
    except HarnessError as exc:  # no registry access: the sdist holding the vocabulary cannot be fetched
        pytest.skip(exc.format_message())


def test_published_shapes_have_meta_s_parameter_counts():
    # Meta's model cards: Llama 3.2 1B 1.23B, 3B 3.21B, Llama 3.1 8B 8.03B parameters.
    assert SHAPES["1b"].n_params() == pytest.approx(1.236e9, rel=2e-3)
    assert SHAPES["3b"].n_params() == pytest.approx(3.213e9, rel=2e-3)
    assert SHAPES["8b"].n_params() == pytest.approx(8.030e9, rel=2e-3)
    assert SHAPES["1b"].head_dim == 64 and SHAPES["3b"].head_dim == 128 and SHAPES["8b"].head_dim == 128


def test_llama3_rope_factors_follow_the_converter():
    f = SHAPES["8b"].rope_freqs()
    assert f.shape == (64,) and f.dtype == np.float32
    assert f[0] == 1.0 and f[-1] == 8.0  # high frequencies kept, low ones scaled by the factor
    assert np.all(np.diff(f) >= 0)  # smooth in between
    assert SHAPES["1b"].rope_freqs()[-1] == 32.0


@pytest.mark.slow
@pytest.mark.parametrize("quant, file_type", [("Q8_0", 7), ("Q4_0", 2)])
def test_a_tiny_shape_loads_in_llama_cpp_with_its_metadata(quant, file_type, vocab, tmp_path):
    import gguf

    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.backends.llamacpp.settings import EngineSettings

    shape = SHAPES["tiny"]
    path = build_shaped_model(shape, quant, tmp_path / f"tiny.{quant}.gguf", vocab, seed=1)
    assert not list(tmp_path.glob("*.tmp"))
    reader = gguf.GGUFReader(str(path))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["token_embd.weight"] == quant and types["output.weight"] == quant  # the tiny shape is untied
    assert types["blk.1.ffn_down.weight"] == quant and types["blk.0.attn_norm.weight"] == "F32"
    rope = next(t for t in reader.tensors if t.name == "rope_freqs.weight")
    assert np.array_equal(np.asarray(rope.data), shape.rope_freqs())
    engine = LlamaEngine(path, EngineSettings(threads=2))
    try:
        lc, m = engine.lc, engine.model
        assert (
            lc.llama_model_n_layer(m),
            lc.llama_model_n_embd(m),
            lc.llama_model_n_head(m),
            lc.llama_model_n_head_kv(m),
        ) == (shape.n_layer, shape.n_embd, shape.n_head, shape.n_head_kv)
        assert engine.n_vocab == N_VOCAB and engine.n_ctx_train == shape.ctx_train
        assert engine.n_params == shape.n_params()
        assert float(engine.meta("llama.rope.freq_base")) == shape.rope_theta
        assert engine.meta("general.file_type") == str(file_type)
        assert engine.meta("tokenizer.ggml.pre") == "llama-bpe"
        assert engine.tokenize("The answer is")[0] == vocab.id("<|begin_of_text|>")
        # It computes: a finite log-probability, and generation runs to the cap (random weights never stop).
        prompt = engine.tokenize("Question: 2 + 2 = ?\nAnswer:")
        ((lp, _),) = engine.loglikelihood([(prompt, engine.tokenize(" 4", add_bos=False))])
        assert math.isfinite(lp) and lp < 0
        engine.generate([prompt], [[]], [6])
        assert 1 <= engine.stats.generated_tokens <= 6  # capped (a random end token could come earlier)
    finally:
        engine.close()


@pytest.mark.slow
def test_the_build_is_seeded_and_cached(vocab, tmp_path):
    a = build_shaped_model(SHAPES["tiny"], "Q4_0", tmp_path / "a.gguf", vocab, seed=3)
    b = build_shaped_model(SHAPES["tiny"], "Q4_0", tmp_path / "b.gguf", vocab, seed=3)
    c = build_shaped_model(SHAPES["tiny"], "Q4_0", tmp_path / "c.gguf", vocab, seed=4)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    cached = model_path(SHAPES["tiny"], "Q4_0", tmp_path)
    cached.write_bytes(a.read_bytes())
    assert ensure_shaped_model("tiny", "q4_0", cache=tmp_path, log=None) == cached  # found, not rebuilt


def test_unknown_shape_or_quant_is_one_message(tmp_path):
    with pytest.raises(HarnessError, match="unknown benchmark shape"):
        ensure_shaped_model("70b", cache=tmp_path, log=None)
    with pytest.raises(HarnessError, match="unknown benchmark quant"):
        ensure_shaped_model("1b", "Q6_K", cache=tmp_path, log=None)
    assert not list(tmp_path.iterdir())
