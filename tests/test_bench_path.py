"""Issue #14 part 4: one bench path for both backends (harness/run/bench.py).

``run_bench`` drives any :class:`harness.backends.base.BenchBackend` in one order: plan every task, let
the backend refuse, open the journals, load, run, and free on every way out. A backend written here
against the interface (no model) shows that order and what each failure leaves behind."""

from __future__ import annotations

import dataclasses

import pytest

from harness.errors import HarnessError
from harness.models.catalogue import resolve
from harness.records.identity import measurement
from harness.run.bench import BenchOptions, ServerOptions, run_bench


class Backend:
    """A bench backend that records the calls it gets; ``fail`` names the call that raises."""

    load_seconds, speed = 0.0, None

    def __init__(self, fail: str):
        self.fail, self.calls = fail, []

    def _call(self, name):
        self.calls.append(name)
        if name == self.fail:
            raise HarnessError(f"{name} refused", "test")

    def model_entry(self):
        self._call("model_entry")
        return resolve("smollm2-135m")

    def check(self, plans):
        self.plans = plans
        self._call("check")

    def identity(self, plan):
        self._call("identity")
        return measurement("weights", plan.config_hash(), {"scheme": "test"}, False)

    def start(self):
        self._call("start")

    def close(self):
        self._call("close")


def _options(tmp_path, mirror):
    return BenchOptions(tasks=("gsm8k", "mmlu"), limit=1, data_dir=mirror, results_dir=tmp_path)


def test_a_refusal_comes_before_any_journal_or_load(tmp_path, mirror):
    backend = Backend(fail="check")
    with pytest.raises(HarnessError, match="check refused"):
        run_bench(_options(tmp_path, mirror), backend)
    assert backend.calls == ["model_entry", "check"]  # planned first: the backend judged both plans
    assert [p.name for p in backend.plans] == ["gsm8k", "mmlu"]
    assert not list((tmp_path / ".journal").iterdir())


def test_a_failed_load_frees_the_backend_and_the_journals(tmp_path, mirror):
    backend = Backend(fail="start")
    with pytest.raises(HarnessError, match="start refused"):
        run_bench(_options(tmp_path, mirror), backend)
    assert backend.calls == ["model_entry", "check", "identity", "identity", "start", "close"]
    again = Backend(fail="start")  # the journals' locks were released: the same run can start again
    with pytest.raises(HarnessError, match="start refused"):
        run_bench(_options(tmp_path, mirror), again)
    assert again.calls[-2:] == ["start", "close"]


def test_the_options_are_one_frozen_value():
    opts = BenchOptions(tasks=("gsm8k",), server=ServerOptions("http://127.0.0.1:1/v1"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.limit = 5
    assert opts.engine.n_parallel == 8 and opts.server.concurrency == 4  # the CLI's defaults
