"""Log-likelihood scheduling: the branches of the prefix plan (harness/backends/llamacpp/prefix_plan.py)
decoded group by group, each group's shared prefix once, its branches packed into decode calls, and each
consumer's continuation scored from the logit rows read.

The packing is part of the batching scheme (settings.py ``SCHEME``): ``max_branches`` 1 decodes each branch
alone after the prefix (a plain one-sequence evaluation, exactly); more packs up to ``n_batch`` tokens, one
KV stream per branch (bit-identical: tests/test_packing_exact.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from harness.backends.llamacpp.context import Entry, LlamaContext
from harness.backends.llamacpp.prefix_plan import Branch, loglikelihood_clusters, loglikelihood_items

Result = tuple[float, bool]  # (log-prob of the continuation, whether it is the greedy one)


class LoglikScheduler:
    """Scores log-likelihood requests on one context, in the fixed order and packs of the batching scheme."""

    def __init__(self, context: LlamaContext):
        self.context = context
        self.settings = context.settings

    def run(
        self,
        requests: Sequence[tuple[Sequence[int], Sequence[int]]],
        progress: Callable[[int], None] | None = None,
        skip: frozenset[int] | set[int] = frozenset(),
        on_result: Callable[[int, Result], None] | None = None,
    ) -> list[Result | None]:
        """Each request's (log-prob, greedy) (see ``LlamaEngine.loglikelihood``); None for those in ``skip``."""
        if not requests:
            return []
        ctx = self.context
        items = loglikelihood_items(requests)
        longest = max(len(it.tokens) for it in items)
        ctx.check_fits(longest, "log-likelihood request")
        # Several branches per batch get a KV stream each (in one unified cache their log-probs shifted).
        ctx.ensure(
            longest + self.settings.n_batch,
            self.settings.max_branches + 1,
            unified=self.settings.max_branches == 1,
        )
        results: list[Result | None] = [None] * len(requests)
        clusters = loglikelihood_clusters(items, self.settings.min_shared_prefix)
        if skip and progress:
            progress(len(skip))
        for plen, members in clusters:
            members = [m for m in members if any(req not in skip for req, _ in items[m].consumers)]
            if not members:
                continue
            ctx.clear()
            if plen:
                ctx.prefill(items[members[0]].tokens[:plen].tolist(), seq=0)
            pack: list[Branch] = []
            used = 0
            for m in members:
                it = items[m]
                it.consumers = [(req, cont) for req, cont in it.consumers if req not in skip]
                size = len(it.tokens) - plen
                if pack and (used + size > self.settings.n_batch or len(pack) >= self.settings.max_branches):
                    self.score_pack(pack, plen, results, progress, on_result)
                    pack, used = [], 0
                pack.append(it)
                used += size
            if pack:
                self.score_pack(pack, plen, results, progress, on_result)
        return results

    def score_pack(
        self,
        pack: list[Branch],
        plen: int,
        results: list[Result | None],
        progress: Callable[[int], None] | None,
        on_result: Callable[[int, Result], None] | None = None,
    ) -> None:
        """Decode one pack of branches (sequence k + 1 for the k-th, each from the prefix in sequence 0) and
        deliver their scores; the branches' sequences are dropped afterwards."""
        ctx = self.context
        entries: list[Entry] = []
        for k, it in enumerate(pack):
            seq = k + 1
            if plen:
                ctx.branch(seq, plen)
            toks = it.tokens.tolist()
            n = len(toks)
            for p in range(plen, n):
                entries.append((toks[p], p, seq, p >= n - it.n_out))
        rows: list[np.ndarray] = []
        n_batch = self.settings.n_batch
        # A branch longer than n_batch is decoded in consecutive chunks of the same sequence.
        for off in range(0, len(entries), n_batch):
            rows.append(ctx.decode(entries[off : off + n_batch]))
        ctx.stats.prompt_tokens += len(entries)
        self.deliver(pack, np.concatenate(rows) if len(rows) > 1 else rows[0], results, progress, on_result)
        for k in range(len(pack)):
            ctx.drop(k + 1)

    @staticmethod
    def deliver(
        pack: list[Branch],
        logits: np.ndarray,
        results: list[Result | None],
        progress: Callable[[int], None] | None,
        on_result: Callable[[int, Result], None] | None = None,
    ) -> None:
        """A decoded pack's logit rows (each item's last ``n_out`` positions, in pack order) as each consumer's
        (log-prob of its continuation, whether it is the greedy one)."""
        lse = _logsumexp(logits)
        greedy = logits.argmax(axis=1)
        r = 0
        for it in pack:
            for req, cont in it.consumers:
                # The rows of this item are its last n_out positions; a continuation of length L
                # is scored on the last L rows of its own item (L == n_out, or 1 for shared groups).
                base = r + it.n_out - len(cont)
                lp = sum(float(logits[base + j, t] - lse[base + j]) for j, t in enumerate(cont))
                ok = all(int(greedy[base + j]) == t for j, t in enumerate(cont))
                results[req] = (lp, ok)
                if on_result:
                    on_result(req, results[req])
            r += it.n_out
            if progress:
                progress(len(it.consumers))


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1)
    return m + np.log(np.exp(x - m[:, None]).sum(axis=1, dtype=np.float64))
