"""Building the harness's lm-eval tasks from local parquet files makes no network request (#18 item 6).

`datasets` sends a download-count HEAD request for its "parquet" builder on every load_dataset call unless told not
to: a DNS lookup per task (57 for MMLU), up to a 3 s timeout each where the network is filtered, and a request a
user of a local mirror did not ask for. The test counts real name lookups while real tasks are built.
"""

from __future__ import annotations

import socket

from harness.models.catalogue import resolve


def test_building_mmlu_tasks_from_a_mirror_looks_up_no_host(mirror, monkeypatch):
    from harness.tasks.settings import plan_task, task_manager

    plan = plan_task("mmlu_loglik", resolve("smollm2-135m"), limit=3, data_dir=mirror)
    assert len(plan.configs) == 3  # three subjects: three load_dataset calls
    lookups: list[str] = []

    def refuse(host, *args, **kwargs):
        lookups.append(str(host))
        raise socket.gaierror("no network in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    tasks = task_manager().load(plan.configs)["tasks"]
    assert len(tasks) == 3 and all(len(t.test_docs()) > 0 for t in tasks.values())
    assert lookups == []
