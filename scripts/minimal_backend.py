"""The baseline of the backend benchmark: the in-process lm-eval backend a typical user would write.

High-level ``llama_cpp.Llama`` with ``logits_all=True``, one sequence, the KV cache of the previous
call reused for the common token prefix (llama-cpp-python's own trick), greedy ``create_completion``
for generation. Deliberately small: it is what ``scripts/bench_backends.py`` measures ours against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from lm_eval.api.model import TemplateLM


def high_level_llama(model_path: str | Path, **kwargs):
    """llama-cpp-python's high-level ``Llama`` with the engine's CPU buffer choice (no extra buffer types:
    see ``LlamaEngine``), for reference evaluations (tests/test_engine.py) and this backend. ``Llama`` takes no
    argument for ``use_extra_bufts``, so its default model parameters are adjusted while it loads."""
    import llama_cpp
    from llama_cpp import Llama

    real = llama_cpp.llama_cpp.llama_model_default_params

    def params():
        p = real()
        p.use_extra_bufts = False
        return p

    llama_cpp.llama_cpp.llama_model_default_params = params
    try:
        return Llama(model_path=str(model_path), **kwargs)
    finally:
        llama_cpp.llama_cpp.llama_model_default_params = real


class MinimalLlamaLM(TemplateLM):
    """One sequence at a time; log-probs from the full logits matrix."""

    def __init__(self, model_path: str, n_ctx: int = 4096, threads: int = 2):
        super().__init__()
        self.llm = high_level_llama(
            model_path, n_ctx=n_ctx, n_batch=512, n_threads=threads, logits_all=True, verbose=False
        )

    @property
    def eot_token_id(self) -> int:
        return self.llm.token_eos()

    @property
    def prefix_token_id(self) -> int:
        return self.llm.token_bos()

    def tok_encode(self, string: str, add_special_tokens=None, **kwargs) -> list[int]:
        return self.llm.tokenize(string.encode(), add_bos=False, special=True)

    def _eval(self, tokens: list[int]) -> None:
        """Evaluate tokens, reusing the cached prefix shared with the previous call."""
        llm = self.llm
        keep = 0
        for a, b in zip(llm._input_ids[: llm.n_tokens], tokens):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(tokens) - 1)  # at least one token to evaluate, so its logits are fresh
        llm.n_tokens = keep
        llm._ctx.kv_cache_seq_rm(-1, keep, -1)
        llm.eval(tokens[keep:])

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        out = []
        for _, ctx, cont in requests:
            toks = list(ctx) + list(cont)
            self._eval(toks)
            scores = self.llm.scores[len(ctx) - 1 : len(toks) - 1]
            logp = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
            ll = float(sum(logp[i, t] for i, t in enumerate(cont)))
            greedy = all(int(scores[i].argmax()) == t for i, t in enumerate(cont))
            out.append((ll, greedy))
        return out

    def generate_until(self, requests, disable_tqdm: bool = False):
        out = []
        for req in requests:
            context, kw = req.args
            stops = kw.get("until") or []
            res = self.llm.create_completion(
                context,
                max_tokens=int(kw.get("max_gen_toks", 256)),
                temperature=0.0,
                top_k=1,
                stop=stops if isinstance(stops, list) else [stops],
            )
            out.append(res["choices"][0]["text"])
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError
