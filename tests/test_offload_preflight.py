"""Offload input checks and memory preflights: RPC workers and local GPUs (neither needed: devices are faked)."""

import pytest

from harness.backends.llamacpp.rpc import parse_endpoints
from harness.errors import HarnessError
from harness.plan.fit import check_memory_spread, fit_layers

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


def gpu(free_gib, name="NVIDIA GeForce RTX 4090"):
    return {
        "device": "CUDA0",
        "description": name,
        "free_bytes": int(free_gib * GIB),
        "total_bytes": 24 * GIB,
    }


def test_a_model_too_big_for_the_gpu_names_the_layer_count_that_fits():
    # Llama 3.3 70B Q4_K_M: ~42.5 GB of weights + 2.5 GiB of KV cache, 80 layers, on a 24 GB card.
    weights, kv = 42_520_000_000, int(2.5 * GIB)
    with pytest.raises(
        HarnessError,
        match=r"80 offloaded layers need about 42\.1 GiB on the GPU plus ~1 GiB of "
        r"compute buffers, which has 23\.0 GiB free \(NVIDIA GeForce RTX 4090",
    ) as err:
        check_memory_spread(
            weights, kv, 80, -1, [gpu(23)], "llama3.3-70b Q4_K_M", available=64 * GIB, kind="gpu"
        )
    n = int(err.value.hint.split("--gpu-layers ")[1].split()[0])
    assert n == fit_layers(weights, kv, 80, 22 * GIB) and 0 < n < 80
    # The suggested count passes the same check, one more layer does not.
    check_memory_spread(weights, kv, 80, n, [gpu(23)], "llama3.3-70b Q4_K_M", available=64 * GIB, kind="gpu")
    with pytest.raises(HarnessError):
        check_memory_spread(
            weights, kv, 80, n + 1, [gpu(23)], "llama3.3-70b Q4_K_M", available=64 * GIB, kind="gpu"
        )


def test_an_8b_model_fits_one_gpu_and_layers_left_on_the_cpu_count_against_ram():
    check_memory_spread(
        4_920_000_000, GIB, 32, -1, [gpu(23)], "llama3.1-8b Q4_K_M", available=2 * GIB, kind="gpu"
    )
    with pytest.raises(HarnessError, match="70 layers kept on this machine") as err:
        check_memory_spread(
            75 * 10**9, 4 * GIB, 80, 10, [gpu(23)], "70b Q8_0", available=24 * GIB, kind="gpu"
        )
    assert "smaller quant" in err.value.hint and "workers" not in err.value.hint


def test_rpc_workers_too_small_together_are_refused_by_the_shared_verdict():
    from harness.backends.llamacpp.settings import EngineSettings
    from harness.plan.fit import fit_or_refuse

    class Plan:
        name, chat = "gsm8k", True
        configs = [{"output_type": "generate_until", "generation_kwargs": {"max_gen_toks": 1024}}]

    shape = {"n_layer": 126, "n_kv_heads": 8, "head_dim": 128}  # Llama 3.1 405B
    settings = EngineSettings(n_parallel=2, rpc_servers=("10.0.0.2:50052", "10.0.0.3:50052"))
    with pytest.raises(HarnessError, match="126 offloaded layers need about .* on the RPC workers") as err:
        fit_or_refuse(
            243 * 10**9,
            shape,
            [Plan()],
            settings,
            "405b Q4_K_M",
            quant_sizes={"Q4_K_M": 243 * 10**9},
            quant="Q4_K_M",
            placed=("rpc", workers(90, 90)),
            available=24 * GIB,
        )
    assert "--gpu-layers" in err.value.hint and "gsm8k" in err.value.message
    fit_or_refuse(
        243 * 10**9,
        shape,
        [Plan()],
        settings,
        "405b Q4_K_M",
        placed=("rpc", workers(90, 90, 90)),
        available=24 * GIB,
    )  # a third worker: it fits
