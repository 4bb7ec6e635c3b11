"""The engine's branch plan over compact int32 token arrays is the plan it made over lists of ints (#18 item 4).

Full MMLU holds its 14,042 contexts as int32 arrays instead of Python lists; batching order, shared prefixes and
so every log-prob must stay exactly what the list-based plan gave (the batching scheme is not bumped).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.backends.llamacpp.engine import cluster_by_prefix, common_prefix_len, order_key, token_array

# Token ids over the whole range a vocabulary can have (Llama 3: 128,256; ids are non-negative int32).
ids = st.integers(min_value=0, max_value=2**31 - 1)
small = st.integers(min_value=0, max_value=3)  # few distinct ids: long shared prefixes and ties
seqs = st.lists(st.one_of(st.lists(small, min_size=1, max_size=12), st.lists(ids, min_size=1, max_size=6)),
                min_size=1, max_size=30)


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
    assert cluster_by_prefix([token_array(x) for x in lists], min_shared, reserve) == \
        cluster_by_prefix(lists, min_shared, reserve)


def test_token_array_keeps_an_int32_array_and_converts_the_rest():
    a = np.array([1, 2, 3], dtype=np.int32)
    assert token_array(a) is a  # the requests of one question share one context array
    assert token_array([1, 2, 3]).dtype == np.int32
    assert token_array((5,)).tolist() == [5]
