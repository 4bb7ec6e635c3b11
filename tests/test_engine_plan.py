"""The engine's pure prefix plan (harness/backends/llamacpp/prefix_plan.py), with no model and no llama.cpp.

Its branch plan over compact int32 token arrays is the plan it made over lists of ints (#18 item 4): full MMLU
holds its 14,042 contexts as int32 arrays instead of Python lists; batching order, shared prefixes and so every
log-prob must stay exactly what the list-based plan gave (the batching scheme is not bumped).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.backends.llamacpp.prefix_plan import (
    cluster_by_prefix,
    common_prefix_len,
    generation_plan,
    generation_units,
    loglikelihood_clusters,
    loglikelihood_items,
    order_key,
    token_array,
)
from harness.errors import HarnessError

# Token ids over the whole range a vocabulary can have (Llama 3: 128,256; ids are non-negative int32).
ids = st.integers(min_value=0, max_value=2**31 - 1)
small = st.integers(min_value=0, max_value=3)  # few distinct ids: long shared prefixes and ties
seqs = st.lists(
    st.one_of(st.lists(small, min_size=1, max_size=12), st.lists(ids, min_size=1, max_size=6)),
    min_size=1,
    max_size=30,
)


@given(seqs)
@settings(max_examples=300, deadline=None)
def test_arrays_sort_as_lists_sort(lists):
    arrays = [token_array(x) for x in lists]
    by_list = sorted(range(len(lists)), key=lambda i: lists[i])
    by_array = sorted(range(len(lists)), key=lambda i: order_key(arrays[i]))
    assert [lists[i] for i in by_array] == [lists[i] for i in by_list]


@given(seqs, st.integers(min_value=0, max_value=20))
@settings(max_examples=300, deadline=None)
def test_common_prefix_of_arrays_and_lists(lists, limit):
    for a, b in zip(lists, lists[1:]):
        naive = 0
        while naive < min(len(a), len(b), limit) and a[naive] == b[naive]:
            naive += 1
        assert common_prefix_len(a, b, limit) == naive
        assert common_prefix_len(token_array(a), token_array(b), limit) == naive


@given(seqs, st.integers(min_value=1, max_value=4))
@settings(max_examples=200, deadline=None)
def test_prefix_clusters_are_the_same_for_arrays(lists, min_shared):
    lists = sorted(lists)
    reserve = [1] * len(lists)
    assert cluster_by_prefix([token_array(x) for x in lists], min_shared, reserve) == cluster_by_prefix(
        lists, min_shared, reserve
    )


def test_token_array_keeps_an_int32_array_and_converts_the_rest():
    a = np.array([1, 2, 3], dtype=np.int32)
    assert token_array(a) is a  # the requests of one question share one context array
    assert token_array([1, 2, 3]).dtype == np.int32
    assert token_array((5,)).tolist() == [5]


def test_the_plan_imports_no_llama_cpp():
    code = (
        "import sys\nimport harness.backends.llamacpp.prefix_plan\n"
        "print('llama_cpp' in sys.modules, 'harness.backends.llamacpp.engine' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]


def test_one_token_continuations_of_a_context_share_a_branch_longer_ones_get_their_own():
    ctx, other = [1, 5, 6, 7], [1, 5, 9]
    reqs = [(ctx, [10]), (ctx, [11]), (ctx, [12, 13, 14]), (other, [10]), (list(ctx), [15])]
    items = loglikelihood_items(reqs)
    got = [(it.tokens.tolist(), it.n_out, it.consumers) for it in items]
    assert got == [  # sorted as lists of ints sort
        ([1, 5, 6, 7], 1, [(0, [10]), (1, [11]), (4, [15])]),  # one branch, one logit row for three requests
        ([1, 5, 6, 7, 12, 13], 3, [(2, [12, 13, 14])]),  # context + all but the last token, 3 rows read
        ([1, 5, 9], 1, [(3, [10])]),
    ]
    assert items[0].tokens is token_array(items[0].tokens)  # int32, held once
    for bad in ([([], [1])], [([1], [])]):
        with pytest.raises(HarnessError, match="empty context or continuation"):
            loglikelihood_items(bad)


requests = st.lists(
    st.tuples(st.lists(small, min_size=1, max_size=10), st.lists(small, min_size=1, max_size=3)),
    min_size=1,
    max_size=25,
)


@given(requests, st.integers(min_value=1, max_value=4))
@settings(max_examples=200, deadline=None)
def test_every_request_is_scored_once_from_a_branch_ending_where_its_continuation_starts(reqs, min_shared):
    items = loglikelihood_items(reqs)
    seen = sorted(req for it in items for req, _ in it.consumers)
    assert seen == list(range(len(reqs)))
    for it in items:
        for req, cont in it.consumers:
            ctx, want = reqs[req]
            assert cont == want and len(cont) <= it.n_out
            # the rows read are the last n_out positions; the continuation's own are its last len(cont)
            assert it.tokens.tolist() == (ctx + cont[:-1] if len(cont) > 1 else ctx)
    keys = [(it.tokens.tolist(), it.n_out) for it in items]
    assert keys == sorted(keys)  # the order lists of ints sort in
    clusters = loglikelihood_clusters(items, min_shared)
    assert [m for _, members in clusters for m in members] == list(range(len(items)))  # in order, each once
    for plen, members in clusters:
        for m in members:  # the shared prefix leaves every branch's read rows out of it
            assert plen <= len(items[m].tokens) - items[m].n_out
            assert items[m].tokens[:plen].tolist() == items[members[0]].tokens[:plen].tolist()


@given(
    st.lists(st.lists(small, min_size=1, max_size=10), min_size=1, max_size=25),
    st.integers(1, 4),
    st.integers(1, 5),
)
@settings(max_examples=200, deadline=None)
def test_generation_order_is_sorted_prompts_in_groups_and_fixed_units(prompts, min_shared, unit):
    order, seqs, clusters = generation_plan(prompts, min_shared)
    assert order == sorted(range(len(prompts)), key=lambda i: (prompts[i], i))  # ties: request order
    assert seqs == [prompts[i] for i in order]
    assert [m for _, members in clusters for m in members] == list(range(len(prompts)))
    for plen, members in clusters:
        queue = [(order[m], seqs[m]) for m in members]
        units = generation_units(queue, unit)
        assert [x for u in units for x in u] == queue and all(len(u) == unit for u in units[:-1])
        assert all(plen < len(seqs[m]) for m in members)  # the last prompt token is always a slot's own
