from harness.tasks.subsets import pick, pick_stratified


def test_pick_is_seeded_sorted_and_unique():
    a = pick(1319, 50, seed=0, salt="gsm8k")
    assert a == pick(1319, 50, seed=0, salt="gsm8k")
    assert a != pick(1319, 50, seed=1, salt="gsm8k")
    assert a == sorted(set(a)) and len(a) == 50 and max(a) < 1319


def test_pick_all_when_limit_is_none_or_large():
    assert pick(5, None, 0) == [0, 1, 2, 3, 4]
    assert pick(5, 9, 0) == [0, 1, 2, 3, 4]


def test_stratified_spreads_evenly_and_respects_small_strata():
    sizes = {f"s{i}": 100 for i in range(57)}
    sizes["s3"] = 4
    got = pick_stratified(sizes, 1140, seed=0)
    assert sum(len(v) for v in got.values()) == 1140
    assert len(got["s3"]) == 4  # capped by its size, the rest spread over the others
    counts = [len(v) for k, v in got.items() if k != "s3"]
    assert max(counts) - min(counts) <= 1
    assert got == pick_stratified(sizes, 1140, seed=0)


def test_stratified_limit_below_strata_count():
    sizes = {f"s{i}": 10 for i in range(57)}
    got = pick_stratified(sizes, 5, seed=0)
    assert sum(len(v) for v in got.values()) == 5 and all(len(v) == 1 for v in got.values())


def test_prefix_clusters_split_at_subject_boundaries():
    from harness.backends.llamacpp.prefix_plan import cluster_by_prefix

    system = list(range(40))  # shared by every chat prompt
    a = system + [100] * 1000  # subject A's few-shot prefix
    b = system + [200] * 1000
    seqs = sorted([a + [1, 2], a + [3, 4], a + [5, 6], b + [7, 8], b + [9, 1], system + [300, 301]])
    clusters = cluster_by_prefix(seqs, 32, [1] * len(seqs))
    assert [(p, len(m)) for p, m in clusters] == [(1040, 3), (1040, 2), (0, 1)]
    assert sum(len(m) for _, m in clusters) == len(seqs)
