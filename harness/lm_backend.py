"""lm-eval model ``llama-bench``: lm-eval's tasks, filters and metrics over our in-process llama.cpp engine.

lm-eval hands over *all* requests of a run at once; the engine batches them (shared few-shot prefixes
decoded once). Use from Python without the harness CLI::

    import lm_eval, harness.lm_backend  # registers "llama-bench"
    lm_eval.simple_evaluate(model="llama-bench", model_args="model=smollm2-135m", tasks=["gsm8k_cot_llama"],
                            apply_chat_template=True, fewshot_as_multiturn=True, limit=10)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from harness.engine import EngineSettings, LlamaEngine
from harness.errors import HarnessError
from harness.journal import Journal, request_key


def render_chat(template: str, messages: list[dict], add_generation_prompt: bool, bos: str, eos: str) -> str:
    """Render the GGUF's Jinja chat template the way transformers does (sandboxed, trim/lstrip blocks).

    ``strftime_now`` is deliberately left undefined: Llama 3.2/3.3 templates then fall back to their
    fixed default date ("26 Jul 2024") instead of today's, so prompts do not change from day to day.
    With ``add_generation_prompt=False`` the last (assistant) message is continued, like transformers'
    ``continue_final_message`` (used by lm-eval for ``gen_prefix`` such as "The best answer is").
    """
    text = _compiled(template).render(
        messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos
    )
    if not add_generation_prompt:
        final = messages[-1]["content"].strip()
        text = text[: text.rindex(final) + len(final)]
    return text


@lru_cache(maxsize=8)
def _compiled(template: str):
    """The chat template compiled once per run, not once per prompt (thousands of prompts per task)."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(msg):
        raise TemplateError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


@register_model("llama-bench")
class LlamaBenchLM(TemplateLM):
    """lm-eval LM over :class:`harness.engine.LlamaEngine` (log-likelihood and greedy generation)."""

    def __init__(
        self,
        model: str = "smollm2-135m",
        quant: str | None = None,
        engine: LlamaEngine | None = None,
        max_gen_toks: int = 256,
        progress: Callable[[str, int], Callable[[int], None]] | None = None,
        journal: Journal | None = None,
        **settings,
    ):
        super().__init__()
        if engine is None:
            from harness.catalogue import local_model_path, resolve

            entry = resolve(model, quant)
            path = local_model_path(entry)
            if path is None:
                raise HarnessError(f"{entry.name} {entry.quant} is not downloaded", f"run `harness download {model}`.")
            engine = LlamaEngine(path, EngineSettings(**{k: _num(v) for k, v in settings.items()}))
        self.engine = engine
        self.max_gen_toks = int(max_gen_toks)
        self._progress = progress
        self.journal = journal  # finished requests of an interrupted run, and where new ones are saved
        self._template = engine.meta("tokenizer.chat_template")
        self._bos = engine.token_text(engine.bos_id) if engine.bos_id >= 0 else ""
        self._eos = engine.token_text(engine.eos_id) if engine.eos_id >= 0 else ""

    # -------------------------------------------------------------- tokenizer facts lm-eval asks for
    @property
    def eot_token_id(self) -> int:
        return self.engine.eos_id

    @property
    def prefix_token_id(self) -> int:
        return self.engine.bos_id if self.engine.bos_id >= 0 else self.engine.eos_id

    @property
    def tokenizer_name(self) -> str:
        return self.engine.model_path.rsplit("/", 1)[-1]

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        # BOS: added only when the model wants one and the text (e.g. a rendered Llama 3 chat
        # template, which starts with <|begin_of_text|>) does not already carry it: no double BOS.
        return list(self._tokenize(string, add_special_tokens))

    @property
    def _tokenize(self) -> Callable[[str, bool | None], tuple[int, ...]]:
        # lm-eval's _encode_pair tokenizes a request's context once per answer choice (4 times per MMLU
        # question, ~600 tokens each); remembering the last few contexts saves 3 of those 4.
        if not hasattr(self, "_tok_cache"):
            self._tok_cache = lru_cache(maxsize=64)(lambda s, b: tuple(self.engine.tokenize(s, add_bos=b)))
        return self._tok_cache

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        if not chat_template:
            return None
        if not self._template:
            raise HarnessError(
                f"{self.tokenizer_name} has no chat template in its GGUF metadata",
                "run it as a base model (the task's non-chat format).",
            )
        return self._template

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return render_chat(self._template or "", chat_history, add_generation_prompt, self._bos, self._eos)

    # -------------------------------------------------------------- requests
    def _bar(self, what: str, total: int) -> Callable[[int], None] | None:
        return self._progress(what, total) if self._progress else None

    def _too_long(self, lengths: list[int], requests: list, what: str) -> None:
        """Name the first request that cannot fit the model's context (task and document), before any decoding:
        one over-long question must not stop a task at an unnamed point."""
        limit = self.engine.n_ctx_train
        for n, req in zip(lengths, requests):
            if n > limit:
                where = f"{getattr(req, 'task_name', None) or 'a task'} document {getattr(req, 'doc_id', '?')}"
                raise HarnessError(
                    f"{where}: its {what} needs {n} tokens; {Path(self.engine.model_path).name} has a context of {limit}",
                    "use fewer few-shot examples (num_fewshot in tasks/tasks.yaml), a smaller --limit subset "
                    "without it, or a model with a longer context.",
                )

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        self._ll_instances = list(requests)  # so a request that cannot fit is named by task and document
        try:
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        finally:
            self._ll_instances = None

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        pairs = [(ctx, cont) for _, ctx, cont in requests]
        self._too_long([len(c) + len(x) for c, x in pairs], getattr(self, "_ll_instances", None) or [None] * len(pairs),
                       "prompt and answer")
        keys = [request_key("ll", list(ctx), list(cont)) for ctx, cont in pairs]
        done, save = self._resume(keys)
        out = self.engine.loglikelihood(pairs, progress=self._bar("log-likelihood", len(pairs)), skip=set(done),
                                        on_result=save)
        for i, v in done.items():
            out[i] = (float(v[0]), bool(v[1]))
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        prompts, until, budget = [], [], []
        for req in tqdm(requests, desc="Tokenizing prompts", disable=True):
            context, gen_kwargs = req.args
            gen_kwargs = dict(gen_kwargs or {})
            stops = gen_kwargs.get("until") or []
            if isinstance(stops, str):
                stops = [stops]
            if gen_kwargs.get("do_sample") or gen_kwargs.get("temperature", 0) not in (0, 0.0, None):
                raise HarnessError("the harness decodes greedily only", "set do_sample: false in the task.")
            prompts.append(self.tok_encode(context))
            until.append(list(stops))
            budget.append(int(gen_kwargs.get("max_gen_toks", self.max_gen_toks)))
        self._too_long([len(p) + b for p, b in zip(prompts, budget)], list(requests), "prompt plus its generation budget")
        keys = [request_key("gen", p, u, b) for p, u, b in zip(prompts, until, budget)]
        done, save = self._resume(keys)
        out = self.engine.generate(prompts, until, budget, progress=self._bar("generation", len(prompts)),
                                   skip=set(done), on_result=save)
        for i, v in done.items():
            out[i] = v
        return out

    def _resume(self, keys: list[str]):
        """Requests already in the journal (index -> result) and a callback that journals new ones."""
        j = self.journal
        if j is None:
            return {}, None
        done = {i: j.get(k) for i, k in enumerate(keys) if k in j}

        def save(i: int, result) -> None:
            j.add(keys[i], list(result) if isinstance(result, tuple) else result)

        return done, save

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise HarnessError("rolling log-likelihood (perplexity tasks) is not supported by llama-bench")


def _num(v):
    """Model-args strings from lm-eval's CLI ("8", "true") to Python values."""
    if isinstance(v, str):
        if v.lower() in ("true", "false"):
            return v.lower() == "true"
        try:
            return int(v)
        except ValueError:
            return v
    return v
