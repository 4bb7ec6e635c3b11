"""RPC worker input checks and the memory preflight for a model spread over workers (no workers needed)."""

import pytest

from harness.errors import HarnessError
from harness.preflight import check_memory_spread
from harness.rpc import parse_endpoints

GIB = 2**30


def workers(*free_gib):
    return [{"endpoint": f"10.0.0.{i}:50052", "free_bytes": int(f * GIB)} for i, f in enumerate(free_gib, 2)]


def test_endpoints_are_parsed_and_typos_refused():
    assert parse_endpoints("10.0.0.2:50052, host-b.lan:1") == ("10.0.0.2:50052", "host-b.lan:1")
    assert parse_endpoints("[::1]:50052") == ("[::1]:50052",)
    for bad in ("10.0.0.2", "host:0", "host:70000", "http://h:1"):
        with pytest.raises(HarnessError, match="is not host:port"):
            parse_endpoints(bad)


def test_all_layers_on_workers_fit_only_in_their_memory_together():
    # 405B Q4_K_M: ~243 GB of weights + 8 GB of KV cache over 3 workers of 90 GiB free each.
    check_memory_spread(243 * 10**9, 8 * GIB, 126, -1, workers(90, 90, 90), "405b", available=2 * GIB)
    with pytest.raises(HarnessError, match=r"126 offloaded layers need about .* 180\.0 GiB free") as err:
        check_memory_spread(243 * 10**9, 8 * GIB, 126, -1, workers(90, 90), "405b", available=2 * GIB)
    assert "add workers" in err.value.hint


def test_layers_kept_here_count_against_local_ram():
    # 70B Q8_0 (~75 GB, 80 layers): 40 layers here need ~40 GB, more than 24 GiB of RAM.
    with pytest.raises(HarnessError, match="40 layers kept on this machine"):
        check_memory_spread(75 * 10**9, 4 * GIB, 80, 40, workers(60), "70b", available=24 * GIB)
    check_memory_spread(75 * 10**9, 4 * GIB, 80, 70, workers(60, 20), "70b", available=24 * GIB)
