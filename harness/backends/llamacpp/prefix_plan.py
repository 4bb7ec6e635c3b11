"""The engine's prefix plan, pure (numpy only, no llama.cpp): which branches log-likelihood requests are
scored from, which requests share a KV prefix, and generation's fixed order and scheduling units.

The in-process engine (harness/backends/llamacpp/loglik.py, generation.py) and the engine-process split
(harness/backends/llamacpp/assign.py) both plan from these functions, so every engine meets the same batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from harness.errors import HarnessError


@dataclass
class Branch:
    """One branch to decode: its tokens, how many trailing positions need logits, who consumes them."""

    tokens: np.ndarray  # int32 token ids (token_array); branches of one context share the array
    n_out: int
    consumers: list[tuple[int, list[int]]] = field(default_factory=list)  # (request index, continuation)


def common_prefix_len(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """Length of the common prefix of two token sequences (lists or int32 arrays), at most ``limit``."""
    n = min(len(a), len(b), limit)
    if n <= 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if diff.size else n


def token_array(tokens: Sequence[int]) -> np.ndarray:
    """Token ids as one compact int32 array (the same object when it already is one).

    A full MMLU run holds 14,042 contexts of ~600 tokens: as Python lists of ints that is ~36 bytes a token
    (a pointer and an int object), as int32 4 bytes. The requests of one question share its array.
    """
    if isinstance(tokens, np.ndarray) and tokens.dtype == np.int32:
        return tokens
    return np.asarray(tokens, dtype=np.int32)


def order_key(tokens: np.ndarray) -> bytes:
    """Sort key ordering token arrays as lists of ints order (lexicographic, a prefix first): big-endian
    unsigned 4-byte ids compare bytewise as the ids compare numerically."""
    return tokens.astype(">u4").tobytes()


def cluster_by_prefix(
    seqs: Sequence[Sequence[int]], min_shared: int, reserve: list[int]
) -> list[tuple[int, list[int]]]:
    """Group sequences (already sorted) into runs sharing a long prefix; return (prefix length, members).

    ``reserve[i]`` tokens at the end of sequence i stay out of the shared prefix (their logits are read).
    A run is cut where the shared prefix would shrink to less than half: chat prompts of different MMLU
    subjects share a ~40-token system prompt, but each subject's own few-shot prefix is ~1000 tokens,
    and merging them would decode every subject's prefix once per question.
    """
    n = len(seqs)
    if not n:
        return []
    caps = [len(s) - r for s, r in zip(seqs, reserve)]
    adj = [common_prefix_len(seqs[i], seqs[i + 1], min(caps[i], caps[i + 1])) for i in range(n - 1)]
    clusters: list[tuple[int, list[int]]] = []
    members, cur = [0], None
    for i, shared in enumerate(adj):
        if cur is None:  # a run of one: pair it only if its neighbour does not pair much better onward
            nxt = adj[i + 1] if i + 1 < len(adj) else 0
            join = shared >= min_shared and 2 * shared >= nxt
        else:
            join = shared >= min_shared and 2 * shared >= cur
        if join:
            members.append(i + 1)
            cur = shared if cur is None else min(cur, shared)
        else:
            clusters.append((cur or 0, members))
            members, cur = [i + 1], None
    clusters.append((cur or 0, members))
    return clusters


def loglikelihood_items(requests: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[Branch]:
    """The branches log-likelihood ``requests`` are scored from, in decode order.

    Requests sharing a context share one branch when their continuation is one token; a multi-token
    continuation gets a branch of its own (context + all but its last token). Sorted as lists of ints sort.
    """
    # Contexts are held once each, as int32 arrays (token_array): a full MMLU run hands over 56,168 requests
    # whose 14,042 contexts average ~600 tokens; as lists and tuples of ints they took ~500 MB more.
    by_ctx: dict[bytes, tuple[np.ndarray, list[int]]] = {}
    for i, (ctx, cont) in enumerate(requests):
        if len(ctx) == 0 or len(cont) == 0:
            raise HarnessError(
                "a log-likelihood request has an empty context or continuation", "fix the task."
            )
        arr = token_array(ctx)
        by_ctx.setdefault(arr.tobytes(), (arr, []))[1].append(i)
    items: list[Branch] = []
    for arr, idxs in by_ctx.values():
        single = [i for i in idxs if len(requests[i][1]) == 1]
        if single:
            items.append(Branch(arr, 1, [(i, [int(t) for t in requests[i][1]]) for i in single]))
        for i in idxs:
            cont = [int(t) for t in requests[i][1]]
            if len(cont) > 1:
                items.append(Branch(np.concatenate([arr, token_array(cont[:-1])]), len(cont), [(i, cont)]))
    del by_ctx
    items.sort(key=lambda it: (order_key(it.tokens), it.n_out))  # the order lists of ints sort in
    return items


def loglikelihood_clusters(items: list[Branch], min_shared: int) -> list[tuple[int, list[int]]]:
    """The shared-prefix groups of :func:`loglikelihood_items` (prefix length, item indices)."""
    return cluster_by_prefix([it.tokens for it in items], min_shared, [it.n_out for it in items])


def generation_plan(
    prompts: Sequence[Sequence[int]], min_shared: int
) -> tuple[list[int], list[list[int]], list[tuple[int, list[int]]]]:
    """Generation's fixed order: (request index per sorted position, sorted prompts, shared-prefix groups of
    sorted positions)."""
    order = sorted(range(len(prompts)), key=lambda i: (list(prompts[i]), i))
    seqs = [list(prompts[i]) for i in order]
    return order, seqs, cluster_by_prefix(seqs, min_shared, [1] * len(seqs))


def generation_units(queue: list, unit: int) -> list[list]:
    """A prefix group's requests in fixed scheduling units of ``unit`` (``EngineSettings.gen_unit``): the batches
    a request meets depend only on its unit's members."""
    return [queue[i : i + unit] for i in range(0, len(queue), unit)]
