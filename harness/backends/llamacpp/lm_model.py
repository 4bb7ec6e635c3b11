"""lm-eval model ``llama-bench``: lm-eval's tasks, filters and metrics over our in-process llama.cpp engine.

lm-eval hands over *all* requests of a run at once; the engine batches them (shared few-shot prefixes
decoded once). Use from Python without the harness CLI::

    import lm_eval, harness.backends.llamacpp.lm_model  # registers "llama-bench"
    lm_eval.simple_evaluate(model="llama-bench", model_args="model=smollm2-135m", tasks=["gsm8k_cot_llama"],
                            apply_chat_template=True, fewshot_as_multiturn=True, limit=10)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from harness.backends.base import TooLong, data_row, request_name
from harness.backends.llamacpp.engine import LlamaEngine
from harness.backends.llamacpp.prefix_plan import token_array
from harness.backends.llamacpp.settings import EngineSettings
from harness.errors import HarnessError
from harness.models.chat_format import CHAT_DATE, DATE_STRING, marker_of, render_chat, turn_end_text
from harness.records.journal import Journal, request_key


def prompt_format(engine: LlamaEngine, name: str | None = None, check: bool = False) -> dict:
    """How prompts are framed for this model: BOS handling, stop tokens, chat template (source, hash, date).

    Goes into every run record (``backend.prompt_format``). With ``check`` a chat template that cannot frame a
    conversation is one :class:`HarnessError` naming the model: it fails to render, it needs a variable the
    harness does not provide, it writes BOS twice, or the token it ends an assistant turn with is not one
    end-of-generation token of the vocabulary (a Llama 3 template over a vocabulary without ``<|eot_id|>``:
    generation would run past every answer). Without ``check`` the problem is recorded instead.
    """
    name = name or Path(engine.model_path).name

    def tok(i: int) -> dict | None:
        return {"id": i, "text": engine.token_text(i)} if i >= 0 else None

    template = engine.meta("tokenizer.chat_template")
    bos_text = engine.token_text(engine.bos_id) if engine.bos_id >= 0 else ""
    eos_text = engine.token_text(engine.eos_id) if engine.eos_id >= 0 else ""
    out: dict = {
        "bos": tok(engine.bos_id) | {"add_bos_token": engine.add_bos} if engine.bos_id >= 0 else None,
        "bos_rule": "one BOS: the harness adds it when the model wants one and the prompt text does not already "
        "start with it (a Llama 3 chat template writes it itself)",
        "stop": {
            "eos": tok(engine.eos_id),
            "eot": tok(engine.eot_id),
            "end_of_generation": [tok(i) for i in engine.eog_ids()],
        },
        "chat_template": None,
    }
    if not template:
        return out
    facts = {
        "source": "GGUF metadata tokenizer.chat_template",
        "sha256": hashlib.sha256(template.encode()).hexdigest(),
        "date_string": DATE_STRING,
        "strftime_now": f"frozen at {CHAT_DATE.isoformat()}",
    }
    out["chat_template"] = facts
    try:
        probe = render_chat(
            template, [{"role": "user", "content": "Probe question?"}], True, bos_text, eos_text, name
        )
        ids = engine.tokenize(probe)
        facts["starts_with_bos"] = bool(bos_text) and probe.startswith(bos_text)
        lead = 0
        while lead < len(ids) and ids[lead] == engine.bos_id >= 0:
            lead += 1
        facts["probe_leading_bos"] = lead  # 1 with a BOS, 0 without; 2 would be a double BOS
        if lead > 1:
            raise HarnessError(
                f"the chat template of {name} starts a prompt with BOS ({bos_text}) twice",
                "fix the template in the GGUF, or run a base-format task (--kind base).",
            )
        after = turn_end_text(template, bos_text, eos_text, name)
        marker = marker_of(after)
        marker_ids = engine.tokenize(marker, add_bos=False) if marker else []
        end = engine.tokenize(after, add_bos=False)[:1]
        facts["end_of_turn"] = (
            tok(end[0]) | {"marker": marker, "ends_generation": engine.is_eog(end[0])} if end else None
        )
        if not marker:
            raise HarnessError(
                f"the chat template of {name} writes nothing after an assistant message: no end of "
                "turn, so generation would not stop at the end of an answer",
                "fix the template in the GGUF, or run a base-format task (--kind base).",
            )
        if len(marker_ids) != 1 or not engine.is_eog(marker_ids[0]):
            what = (
                f"is not one token of its vocabulary (it splits into {len(marker_ids)})"
                if len(marker_ids) != 1
                else f"is token {marker_ids[0]}, which does not end generation"
            )
            raise HarnessError(
                f"the chat template of {name} ends an assistant turn with {marker!r}, which {what}: "
                "generation would not stop at the end of an answer",
                "use a GGUF whose vocabulary matches its template (Llama 3: <|eot_id|>, id 128009), "
                "or run a base-format task (--kind base).",
            )
    except HarnessError as exc:
        if check:
            raise
        facts["problem"] = exc.format_message()
    return out


@register_model("llama-bench")
class LlamaBenchLM(TemplateLM):
    """lm-eval LM over :class:`harness.backends.llamacpp.engine.LlamaEngine` (log-likelihood and greedy generation)."""

    def __init__(
        self,
        model: str = "smollm2-135m",
        quant: str | None = None,
        engine: LlamaEngine | None = None,
        max_gen_toks: int = 256,
        progress: Callable[[str, int], Callable[[int], None]] | None = None,
        journal: Journal | None = None,
        samples: dict[str, list[int]] | None = None,
        **settings,
    ):
        super().__init__()
        if engine is None:
            from harness.models.catalogue import resolve
            from harness.models.locate import local_model_path

            entry = resolve(model, quant)
            path = local_model_path(entry)
            if path is None:
                raise HarnessError(
                    f"{entry.name} {entry.quant} is not downloaded", f"run `harness download {model}`."
                )
            engine = LlamaEngine(path, EngineSettings(**{k: _num(v) for k, v in settings.items()}))
        self.engine = engine
        engine.first_decode_unix = (
            None  # this task's start-up ends at its first decode (engine.setup_seconds)
        )
        self.max_gen_toks = int(max_gen_toks)
        self._progress = progress
        self.journal = journal  # finished requests of an interrupted run, and where new ones are saved
        self.samples = samples  # the plan's subset: messages name a request by its data row (request_name)
        self._template = engine.meta("tokenizer.chat_template")
        self._bos = engine.token_text(engine.bos_id) if engine.bos_id >= 0 else ""
        self._eos = engine.token_text(engine.eos_id) if engine.eos_id >= 0 else ""

    def setup_seconds(self) -> float | None:
        """Seconds from process start to this task's first decode (``LlamaEngine.setup_seconds``)."""
        return self.engine.setup_seconds()

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
                "run it as a base model (--kind base: the task's non-chat format).",
            )
        self._check_chat()
        return self._template

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        self._check_chat()
        return render_chat(
            self._template or "",
            chat_history,
            add_generation_prompt,
            self._bos,
            self._eos,
            self.tokenizer_name,
        )

    def _check_chat(self) -> None:
        """Before the first chat prompt: a template that cannot frame a conversation stops the run with one
        message (see :func:`prompt_format`), instead of scoring prompts it did not mean."""
        if not getattr(self, "_chat_checked", False):
            if not self._template:
                self.chat_template(True)  # raises: no template
            prompt_format(self.engine, self.tokenizer_name, check=True)
            self._chat_checked = True

    # -------------------------------------------------------------- requests
    def _bar(self, what: str, total: int) -> Callable[[int], None] | None:
        return self._progress(what, total) if self._progress else None

    def _too_long(self, lengths: list[int], requests: list, what: str) -> None:
        """Name the requests that cannot fit the model's context (task and data row), before any decoding: one
        over-long question must not stop a task at an unnamed point. All of them are listed in the error, so
        ``--skip-bad-rows`` can leave them out (harness/run/runner.py) and record them."""
        limit = self.engine.n_ctx_train
        over = [(n, req) for n, req in zip(lengths, requests) if n > limit]
        if not over:
            return
        n, req = over[0]
        more = f" (and {len(over) - 1} more)" if len(over) > 1 else ""
        rows = [
            {
                "task": getattr(r, "task_name", None),
                "row": data_row(r, self.samples),
                "field": "question",
                "problem": f"its {what} needs {k} tokens; the model's context is {limit}",
            }
            for k, r in over
        ]
        raise TooLong(
            f"{request_name(req, 'question', self.samples)}: its {what} needs {n} tokens; "
            f"{Path(self.engine.model_path).name} has a context of {limit}{more}",
            "--skip-bad-rows leaves such questions out (recorded in the record's task.skipped_rows); or use fewer "
            "few-shot examples (num_fewshot in tasks/tasks.yaml), or a model with a longer context.",
            [r for r in rows if r["task"] is not None and r["row"] is not None],
        )

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        self._ll_instances = list(requests)  # so a request that cannot fit is named by task and data row
        try:
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        finally:
            self._ll_instances = None
            self._contexts = {}  # _encode_pair's interned contexts, released with the requests

    def _encode_pair(self, context: str, continuation: str):
        """lm-eval's own split of a (context, continuation) pair into tokens, with the context kept compact.

        lm-eval holds every tokenized request until it has all of them (56,168 for full MMLU, ~600 context
        tokens each, the 4 answers of a question repeating one context). As lists of Python ints that took
        ~500 MB; here the context is one int32 array per distinct context, shared by its requests (memory
        figures: scripts/bench_memory.py). The tokens themselves are lm-eval's (``TemplateLM._encode_pair``).
        """
        ctx, cont = super()._encode_pair(context, continuation)
        arr = token_array(ctx)
        seen = self.__dict__.setdefault("_contexts", {})
        if len(seen) > 64:  # only a question's own answers repeat a context back to back
            seen.clear()
        return seen.setdefault(arr.tobytes(), arr), cont

    def _loglikelihood_tokens(
        self, requests, disable_tqdm: bool = False, **kwargs
    ) -> list[tuple[float, bool]]:
        pairs = [(ctx, cont) for _, ctx, cont in requests]
        self._too_long(
            [len(c) + len(x) for c, x in pairs],
            getattr(self, "_ll_instances", None) or [None] * len(pairs),
            "prompt and answer",
        )
        keys = [request_key("ll", token_array(ctx).tolist(), list(cont)) for ctx, cont in pairs]
        done, save = self._resume(keys)
        out = self.engine.loglikelihood(
            pairs, progress=self._bar("log-likelihood", len(pairs)), skip=set(done), on_result=save
        )
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
        self._too_long(
            [len(p) + b for p, b in zip(prompts, budget)], list(requests), "prompt plus its generation budget"
        )
        keys = [request_key("gen", p, u, b) for p, u, b in zip(prompts, until, budget)]
        done, save = self._resume(keys)
        out = self.engine.generate(
            prompts,
            until,
            budget,
            progress=self._bar("generation", len(prompts)),
            skip=set(done),
            on_result=save,
        )
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
