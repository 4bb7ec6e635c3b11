"""Deterministic, seeded subsets of a test split, optionally stratified (MMLU: over its 57 subjects).

Same (sizes, limit, seed) -> same ids on every machine: ``random.Random`` with a string seed is
stable across Python versions (cf. openai/simple-evals' ``random.Random(0)``).
"""

from __future__ import annotations

import random


def pick(n_rows: int, limit: int | None, seed: int, salt: str = "") -> list[int]:
    """``limit`` row ids out of ``n_rows`` (all when limit is None or >= n_rows), sorted."""
    if limit is None or limit >= n_rows:
        return list(range(n_rows))
    if limit <= 0:
        raise ValueError("limit must be positive")
    return sorted(random.Random(f"{seed}:{salt}").sample(range(n_rows), limit))


def pick_stratified(sizes: dict[str, int], limit: int | None, seed: int) -> dict[str, list[int]]:
    """Spread ``limit`` ids as evenly as possible over strata (subject -> row count).

    Each stratum gets ``limit // k`` (or all its rows if fewer); what is left over goes one by one to
    strata in a seeded order that still have rows. Ids are positions within each stratum.
    """
    names = list(sizes)
    if limit is None or limit >= sum(sizes.values()):
        return {s: list(range(sizes[s])) for s in names}
    quota = {s: min(sizes[s], limit // len(names)) for s in names}
    left = limit - sum(quota.values())
    order = names[:]
    random.Random(f"{seed}:strata").shuffle(order)
    while left > 0:
        progressed = False
        for s in order:
            if left and quota[s] < sizes[s]:
                quota[s] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return {s: pick(sizes[s], quota[s], seed, salt=s) for s in names if quota[s]}
