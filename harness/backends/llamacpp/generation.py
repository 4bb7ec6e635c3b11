"""Greedy generation with continuous batching in slots: requests in the prefix plan's fixed order and units
(harness/backends/llamacpp/prefix_plan.py), each slot's request branched from its group's shared prefix, a
finished slot refilled at once, stop strings applied as lm-eval's ``until``.

Part of the batching scheme (settings.py ``SCHEME``): fixed units of ``gen_unit`` requests (v2), a KV stream
per slot (``gen_streams``, v3), a slot's prompt suffix decoded alone (v4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from harness.backends.llamacpp.context import Entry, LlamaContext
from harness.backends.llamacpp.prefix_plan import generation_plan, generation_units
from harness.backends.llamacpp.tokenizer import Tokenizer

Trace = dict[tuple[int, ...], list[tuple[int, float]]]  # prompt -> (greedy token, logit margin) per step


@dataclass
class SlotState:
    """The request one generation slot (KV sequence ``slot + 1``) is working on."""

    req: int  # the request's index in the call
    pending: list[int]  # prompt tokens after the shared prefix not decoded yet
    pos: int  # the position the slot's next token is decoded at
    gen: list[int] = field(default_factory=list)  # tokens generated so far (no end-of-generation token)
    text: bytes = b""  # their bytes, for the stop-string check
    trace: list[tuple[int, float]] | None = None  # greedy token and margin per step, when tracing


class Generator:
    """Runs generation requests on one context, in the batching scheme's order, units and slots."""

    def __init__(self, context: LlamaContext, tokenizer: Tokenizer):
        self.context = context
        self.settings = context.settings
        self.tokenizer = tokenizer
        # Diagnostics (scripts/bench_backends.py): when a dict, generation records per prompt the greedy
        # tokens and their logit margins over the runner-up.
        self.trace: Trace | None = None

    def run(
        self,
        prompts: Sequence[Sequence[int]],
        until: Sequence[Sequence[str]],
        max_new_tokens: Sequence[int],
        progress: Callable[[int], None] | None = None,
        skip: frozenset[int] | set[int] = frozenset(),
        on_result: Callable[[int, str], None] | None = None,
    ) -> list[str | None]:
        """Each request's greedy continuation (see ``LlamaEngine.generate``); None for those in ``skip``."""
        if not prompts:
            return []
        ctx = self.context
        order, seqs, clusters = generation_plan(prompts, self.settings.min_shared_prefix)
        longest = max(len(s) + max_new_tokens[i] for s, i in zip(seqs, order))
        ctx.check_fits(longest, "prompt plus its generation budget")
        n_par = self.settings.n_parallel
        need = max(
            plen + n_par * max(len(seqs[m]) - plen + max_new_tokens[order[m]] for m in members)
            for plen, members in clusters
        )
        if self.settings.gen_streams:
            per_seq = max(
                plen + max(len(seqs[m]) - plen + max_new_tokens[order[m]] for m in members)
                for plen, members in clusters
            )
            ctx.ensure(per_seq + 1, n_par + 1, unified=False)
        else:
            ctx.ensure(need + self.settings.n_batch, n_par + 1)
        out: list[str | None] = [None] * len(prompts)
        if skip and progress:
            progress(len(skip))
        unit = max(1, self.settings.gen_unit)
        for plen, members in clusters:
            queue = [(order[m], seqs[m]) for m in members]
            units = generation_units(queue, unit)
            # A unit with any unfinished request runs whole (finished ones replayed, their journaled
            # result kept), so every request meets the same batch mates as in an uninterrupted run.
            units = [u for u in units if any(req not in skip for req, _ in u)]
            if not units:
                continue
            ctx.clear()
            if plen:
                ctx.prefill(seqs[members[0]][:plen], seq=0)
            for u in units:
                ctx.stats.replayed_requests += sum(1 for req, _ in u if req in skip)
                self.run_slots(u, plen, until, max_new_tokens, out, progress, on_result, skip)
        for req in skip:
            out[req] = None  # the caller's journaled result stands
        return out

    def run_slots(
        self,
        queue: list[tuple[int, list[int]]],
        plen: int,
        until: Sequence[Sequence[str]],
        max_new_tokens: Sequence[int],
        out: list[str | None],
        progress: Callable[[int], None] | None,
        on_result: Callable[[int, str], None] | None = None,
        skip: frozenset[int] | set[int] = frozenset(),
    ) -> None:
        """Generate for one scheduling unit, ``queue`` ((request index, prompt) in plan order) whose prompts share
        the first ``plen`` tokens, already decoded into sequence 0; each finished text goes into ``out``.

        ``n_parallel`` slots; slot s is KV sequence s + 1 and, with ``gen_streams``, has a KV stream of its own.
        A free slot takes the next request (its sequence branched from the prefix). Each step decodes either
        one chunk of one new slot's prompt suffix, alone, or the last generated token of every live slot, one
        token per stream; greedy tokens are read from the logits. Why one stream per slot and a suffix alone:
        every kernel then sees what it sees in a one-request-at-a-time run (a slot's cells where a lone
        sequence's are, the same matmul shapes), so batched output equals one-at-a-time output, and each
        request meets the same steps whatever was skipped (a replayed request's result is not reported again).
        """
        ctx, tok_of = self.context, self.tokenizer
        n_batch = self.settings.n_batch
        slots: list[SlotState | None] = [None] * self.settings.n_parallel
        q = 0
        while True:
            for s in range(len(slots)):
                if slots[s] is None and q < len(queue):
                    req, toks = queue[q]
                    q += 1
                    if plen:
                        # Separate streams: the whole stream of sequence 0 (the prefix only) is copied.
                        ctx.branch(s + 1, plen)
                    slots[s] = SlotState(req=req, pending=toks[plen:], pos=plen)
                    if self.trace is not None:
                        self.trace[tuple(toks)] = slots[s].trace = []
            live = [s for s in range(len(slots)) if slots[s] is not None]
            if not live:
                return
            entries: list[Entry] = []
            readers: list[int] = []
            pending = [s for s in live if slots[s].pending]
            if pending:
                # A new slot's prompt suffix is decoded alone, in n_batch chunks from the prefix on, as in a
                # one-request-at-a-time run: llama.cpp's CPU matmuls take another kernel for a 1-token slice
                # than for a longer one (llamafile sgemm is for n >= 2 only), so a suffix split over micro-
                # batches mixed with other slots' tokens got slightly different hidden states (scheme v4).
                s = pending[0]
                st = slots[s]
                take = st.pending[:n_batch]
                st.pending = st.pending[len(take) :]
                last = not st.pending
                for j, t in enumerate(take):
                    entries.append((t, st.pos + j, s + 1, last and j == len(take) - 1))
                st.pos += len(take)
                ctx.stats.prompt_tokens += len(take)
                if last:
                    readers.append(s)
            else:
                for s in live[:n_batch]:  # every live slot's last token: one token per KV stream
                    st = slots[s]
                    entries.append((st.gen[-1], st.pos, s + 1, True))
                    ctx.stats.gen_decodes += 1
                    ctx.stats.gen_depth_sum += st.pos
                    st.pos += 1
                    readers.append(s)
            logits = ctx.decode(entries)
            nxt = logits.argmax(axis=1) if len(readers) else []
            if self.trace is not None and len(readers):
                top2 = np.sort(np.partition(logits, -2, axis=1)[:, -2:], axis=1)
            for r, s in enumerate(readers):
                st = slots[s]
                tok = int(nxt[r])
                if self.trace is not None:  # greedy token and its logit margin over the runner-up
                    st.trace.append((tok, float(top2[r, 1] - top2[r, 0])))
                done = tok_of.is_eog(tok)
                if not done:
                    st.gen.append(tok)
                    ctx.stats.generated_tokens += 1
                    st.text += tok_of.piece(tok)
                    text = st.text.decode("utf-8", errors="ignore")
                    stops = [u for u in until[st.req] if u]
                    done = any(u in text for u in stops) or len(st.gen) >= max_new_tokens[st.req]
                if done:
                    text = tok_of.detokenize(st.gen)
                    for u in until[st.req]:
                        if u:
                            text = text.split(u)[0]
                    out[st.req] = text
                    replay = st.req in skip
                    if on_result and not replay:
                        on_result(st.req, text)
                    ctx.drop(s + 1)
                    slots[s] = None
                    if progress and not replay:
                        progress(1)
