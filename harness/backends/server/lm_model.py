"""lm-eval model ``llama-bench-server``: lm-eval's tasks and metrics through an OpenAI-compatible server.

For models bigger than one machine, served by an engine the user already runs (llama.cpp's
llama-server, vLLM across GPUs and nodes, any ``/v1/completions`` endpoint). Prompts are rendered
here, with the same chat template code as the in-process backend, and sent as text; several requests
are in flight at once; each finished request goes to the run journal, so a run that loses its server
resumes where it stopped.

Log-likelihood requests need the prompt's own log-probabilities (``echo``); servers that do not
return them (llama-server) are refused before anything runs, instead of scoring at chance.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from harness.backends.base import request_name
from harness.backends.llamacpp.lm_model import render_chat
from harness.backends.server.client import ServerClient, ServerInfo
from harness.backends.server.replies import BadLogprobs, NoPromptLogprobs, logprob_problem
from harness.errors import HarnessError
from harness.records.journal import Journal, request_key

# Recorded as the backend's scheme: with several requests in flight a server batches them as they come,
# so (unlike the in-process backend) batch mates, hence the last bits of a logit, are not fixed.
SCHEME = "server-greedy-v1"


@dataclass
class ServerStats:
    """Token counts (as the server reports them) and request timings, for the run record."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    requests: int = 0
    request_seconds: float = 0.0  # summed over requests (they overlap: compare with wall time)
    replayed_requests: int = 0  # always 0: each request stands alone, nothing is replayed on resume
    retries: int = 0  # transient server faults retried

    def as_record(self) -> dict:
        return asdict(self)


def gguf_chat_facts(path: Path) -> tuple[str | None, str, str]:
    """Chat template, BOS and EOS text of a local GGUF (header only, no weights loaded)."""
    from harness.models.chat_format import gguf_tokenizer_facts

    facts = gguf_tokenizer_facts(Path(path))
    tokens = facts.get("tokenizer.ggml.tokens") or []

    def token(key: str) -> str:
        i = facts.get(key)
        return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else ""

    return (
        facts.get("tokenizer.chat_template"),
        token("tokenizer.ggml.bos_token_id"),
        token("tokenizer.ggml.eos_token_id"),
    )


@register_model("llama-bench-server")
class ServerLM(LM):
    """lm-eval LM whose requests run on a remote OpenAI-compatible server, ``concurrency`` at a time."""

    def __init__(
        self,
        client: ServerClient,
        info: ServerInfo | None = None,
        concurrency: int = 4,
        max_gen_toks: int = 256,
        local_gguf: Path | None = None,
        progress: Callable[[str, int], Callable[[int], None]] | None = None,
        journal: Journal | None = None,
    ):
        super().__init__()
        self.client = client
        self.info = info or client.info()
        self.concurrency = max(1, int(concurrency))
        self.max_gen_toks = int(max_gen_toks)
        self.stats = ServerStats()
        self._progress = progress
        self.journal = journal
        self.samples: dict[str, list[int]] | None = None  # the plan's subset (request_name: data rows)
        self._local_gguf = Path(local_gguf) if local_gguf is not None else None
        self._template: str | None = self.info.chat_template
        self._bos, self._eos = self.info.bos_token or "", self.info.eos_token or ""
        self.template_source = "server" if self._template else None
        if self._template is None and local_gguf is not None:
            self._template, self._bos, self._eos = gguf_chat_facts(local_gguf)
            self.template_source = f"local GGUF {Path(local_gguf).name}" if self._template else None
        # A rendered Llama 3 chat prompt starts with <|begin_of_text|>; a server that adds BOS itself would
        # then see two. Dropping ours keeps the tokens identical to the in-process backend's.
        adds = client.adds_bos(self.info.kind, self._bos) if self._bos else False
        self.strip_bos = bool(adds)
        self.bos_check = f"{self.info.kind} tokenizer endpoint" if self._bos and adds is not None else None
        self._bos_pending = (
            adds is None
        )  # a server of unknown kind: settled on the first prompt (_settle_bos)

    def attach(
        self, progress=None, journal: Journal | None = None, samples: dict[str, list[int]] | None = None
    ) -> ServerLM:
        """Set the progress bar factory, the run journal (what the runner owns) and the plan's subset (messages
        name requests by data row), and return self."""
        self._progress, self.journal, self.samples = progress, journal, samples
        return self

    # -------------------------------------------------------------- chat template
    @property
    def tokenizer_name(self) -> str:
        return (self.info.model_file or self.info.model_id).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        if not chat_template:
            return None
        if not self._template:
            raise HarnessError(
                f"no chat template for {self.info.model_id}: the server does not report one "
                "and the model's GGUF is not downloaded here",
                "download the model (`harness download MODEL`) so its template can be read, or run a base-format task.",
            )
        return self._template

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        return render_chat(self._template or "", chat_history, add_generation_prompt, self._bos, self._eos)

    def _settle_bos(self, prompt: str) -> None:
        """For a server whose kind does not say whether it adds BOS (issue #26 item 7): before any result counts,
        send the first prompt once (one token asked) and compare its ``usage.prompt_tokens`` with the local
        GGUF's count of the same text. Equal: the server adds nothing. One more: it added BOS before the
        template's own, so BOS text is left out of every prompt (and that is checked once more). Anything else,
        or nothing to compare with, is a refusal: a double BOS would change every score, silently."""
        if not self._bos_pending or not prompt.startswith(self._bos):
            return
        self._bos_pending = False
        where = f"the server at {self.client.endpoint} ({self.info.kind})"
        if self._local_gguf is None:
            raise HarnessError(
                f"{where} does not say whether it adds BOS itself, and the prompts start with BOS "
                f"({self._bos}); without the model's GGUF here its token counts cannot be checked",
                "pass --model PATH.gguf (the file the server runs) or download the model first, so the harness "
                "can compare token counts; or serve it with llama-server, vLLM or llama-cpp-python's server.",
            )
        from harness.backends.llamacpp.vocab import LocalVocab

        local = LocalVocab(self._local_gguf).count(prompt)
        served = self.client.complete(prompt, 1, []).prompt_tokens
        if served == local + 1:
            self.strip_bos = True
            again = self.client.complete(prompt[len(self._bos) :], 1, []).prompt_tokens
            if again != local:
                raise HarnessError(
                    f"{where} counts {served} prompt tokens where {self._local_gguf.name} counts {local} "
                    f"(one BOS more), and {again} without the template's BOS: it does not tokenize like that file",
                    "check that the server runs the model's own GGUF.",
                )
            print(
                f"note: {where} adds BOS itself (usage.prompt_tokens {served} = {local} + 1): the template's "
                f"{self._bos} is left out of every prompt, so each is decoded with one BOS",
                file=sys.stderr,
            )
        elif served != local:
            what = (
                "reports no usage.prompt_tokens"
                if served == 0
                else f"counts {served} prompt tokens where {self._local_gguf.name} counts {local}"
            )
            raise HarnessError(
                f"{where} {what} for the first prompt, so whether it adds a second BOS cannot be told",
                "check that the server runs the model's own GGUF and reports usage; or serve it with llama-server, "
                "vLLM or llama-cpp-python's server.",
            )
        self.bos_check = f"usage.prompt_tokens against {self._local_gguf.name}"

    def _wire(self, prompt: str) -> str:
        if self.strip_bos and prompt.startswith(self._bos):
            return prompt[len(self._bos) :]
        return prompt

    # -------------------------------------------------------------- requests
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        if requests:
            self._settle_bos(requests[0].args[0])
        jobs = []
        for req in requests:
            context, gen_kwargs = req.args
            gen_kwargs = dict(gen_kwargs or {})
            if gen_kwargs.get("do_sample") or gen_kwargs.get("temperature", 0) not in (0, 0.0, None):
                raise HarnessError("the harness decodes greedily only", "set do_sample: false in the task.")
            stops = gen_kwargs.get("until") or []
            stops = [stops] if isinstance(stops, str) else list(stops)
            jobs.append((self._wire(context), stops, int(gen_kwargs.get("max_gen_toks", self.max_gen_toks))))
        keys = [request_key("gen", p, u, b) for p, u, b in jobs]

        def run(i: int) -> str:
            prompt, stops, budget = jobs[i]
            out = self.client.complete(prompt, budget, [s for s in stops if s])
            text = out.text
            for s in stops:  # exactly lm-eval's `until`, whatever the server did with `stop`
                if s:
                    text = text.split(s)[0]
            return text, out.prompt_tokens, out.completion_tokens

        return self._run_all("generation", keys, run)

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        if not self.client.supports_prompt_logprobs():
            raise NoPromptLogprobs(self.client.endpoint)
        if requests:
            self._settle_bos(requests[0].args[0] + requests[0].args[1])
        pairs = [(self._wire(r.args[0]), r.args[1]) for r in requests]
        names = [request_name(r, "log-likelihood request", self.samples) for r in requests]
        keys = [request_key("ll-text", c, x) for c, x in pairs]

        def run(i: int):
            context, cont = pairs[i]
            toks, vals, offs, tops = self.client.prompt_logprobs(context + cont, names[i])
            # The continuation is every token that starts at or after the end of the context.
            # (The echo ends with the one generated token the request had to ask for: not ours.)
            idx = [k for k, o in enumerate(offs) if len(context) <= o < len(context) + len(cont)]
            if not idx:
                raise HarnessError(
                    f"the server's tokens of {cont!r} ({names[i]}) could not be located in its echo",
                    "report this with the server's name and version.",
                )
            for k in idx:  # every scored token's log-prob checked where it enters (issue #26 item 2)
                problem = logprob_problem(vals[k])
                if problem:
                    raise BadLogprobs(
                        self.client.endpoint,
                        names[i],
                        f"logprobs.token_logprobs[{k}]",
                        f"(token {toks[k]!r}) {problem}",
                    )
            ll = sum(float(vals[k]) for k in idx)
            if not math.isfinite(ll):  # finite terms can still overflow (Hypothesis found -6e307 x 3)
                raise BadLogprobs(
                    self.client.endpoint,
                    names[i],
                    "logprobs.token_logprobs",
                    f"sums to {ll} over the continuation's tokens, not a finite number",
                )
            greedy = all(not tops[k] or max(tops[k], key=tops[k].get) == toks[k] for k in idx)
            return [ll, greedy], len(toks), 0

        return [(float(v[0]), bool(v[1])) for v in self._run_all("log-likelihood", keys, run)]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise HarnessError("rolling log-likelihood (perplexity tasks) is not supported by llama-bench-server")

    def _run_all(self, what: str, keys: list[str], run: Callable[[int], tuple]) -> list:
        """Run the requests not yet journaled, ``concurrency`` in flight; journal each as it finishes.

        On a fault that outlasts the client's retries, the requests already in flight are awaited and kept,
        nothing new is sent, and the error is raised: the rerun resumes from the journal.
        """
        j = self.journal
        out: list = [j.get(k) if j is not None and k in j else None for k in keys]
        todo = [i for i, k in enumerate(keys) if j is None or k not in j]
        bar = self._progress(what, len(keys)) if self._progress else None
        if bar and len(keys) > len(todo):
            bar(len(keys) - len(todo))
        error: BaseException | None = None
        retries0 = self.client.retries
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="server")
        pending: dict[Future, int] = {}
        queue = iter(todo)
        try:
            while True:
                while error is None and len(pending) < self.concurrency:
                    i = next(queue, None)
                    if i is None:
                        break
                    pending[pool.submit(self._timed, run, i)] = i
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    try:
                        result, n_prompt, n_gen, seconds = fut.result()
                    except BaseException as exc:  # noqa: BLE001 - kept and raised once the in-flight ones are in
                        error = error or exc
                        continue
                    self.stats.requests += 1
                    self.stats.request_seconds += seconds
                    self.stats.prompt_tokens += n_prompt
                    self.stats.generated_tokens += n_gen
                    out[i] = result
                    if j is not None:
                        j.add(keys[i], result)
                    if bar:
                        bar(1)
        except KeyboardInterrupt:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        self.stats.retries += (
            self.client.retries - retries0
        )  # the client (and its counter) may serve other tasks
        if error is not None:
            raise error
        return out

    @staticmethod
    def _timed(run: Callable[[int], tuple], i: int) -> tuple:
        t0 = time.perf_counter()
        return (*run(i), time.perf_counter() - t0)
