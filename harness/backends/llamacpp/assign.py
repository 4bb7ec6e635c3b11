"""Which engine process computes which requests (``--engines N``, issue #28): a fixed split, so every result
equals one engine's bit for bit.

Every engine is handed *all* of a call's requests and skips those that are not its own, exactly as a resumed
run skips journaled ones (LlamaEngine plans its prefix groups, context size and generation units from all
requests, whatever it skips). So an engine decodes its requests in the same batches as a single engine would,
provided the split never cuts what shares a batch:

- log-likelihood: whole shared-prefix groups (prefix_plan.py's ``loglikelihood_clusters``): a group's prefix is
  decoded once, and each branch after it alone (``max_branches`` 1) or in packs of separate KV streams;
- generation: whole scheduling units (``generation_units``: ``gen_unit`` requests of one prefix group),
  the batch mates a request meets; llama.cpp's logits depend on them (settings.py ``SCHEME`` v2).

Units go to engines by longest-processing-time-first on their token counts (ties: the lower engine index),
from the requests alone: never from timing, and the same for a resumed run as for the first.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.backends.llamacpp.prefix_plan import (
    generation_plan,
    generation_units,
    loglikelihood_clusters,
    loglikelihood_items,
)


def spread(units: list[tuple[int, list[int]]], n: int) -> list[set[int]]:
    """(cost, request indices) units over ``n`` engines: biggest first, each to the least loaded engine."""
    load = [0] * n
    shares: list[set[int]] = [set() for _ in range(n)]
    for k in sorted(range(len(units)), key=lambda k: (-units[k][0], k)):
        e = min(range(n), key=lambda e: (load[e], e))
        load[e] += units[k][0]
        shares[e].update(units[k][1])
    return shares


def loglikelihood_units(
    requests: Sequence[tuple[Sequence[int], Sequence[int]]], min_shared: int
) -> list[tuple[int, list[int]]]:
    """Shared-prefix groups of log-likelihood requests as (tokens decoded, request indices)."""
    items = loglikelihood_items(requests)
    out = []
    for plen, members in loglikelihood_clusters(items, min_shared):
        cost = plen + sum(len(items[m].tokens) - plen for m in members)
        out.append((cost, [req for m in members for req, _ in items[m].consumers]))
    return out


def generation_units_of(
    prompts: Sequence[Sequence[int]], budgets: Sequence[int], min_shared: int, unit: int
) -> list[tuple[int, list[int]]]:
    """Generation scheduling units as (prompt suffix + budget tokens, request indices)."""
    order, seqs, clusters = generation_plan(prompts, min_shared)
    out = []
    for plen, members in clusters:
        queue = [(order[m], seqs[m]) for m in members]
        for u in generation_units(queue, max(1, unit)):
            out.append((sum(len(s) - plen + budgets[i] for i, s in u), [i for i, _ in u]))
    return out
