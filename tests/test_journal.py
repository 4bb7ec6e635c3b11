"""The run journal: append-only lines with CRCs, torn lines, identity checks and the single-writer lock."""

import pytest

from harness.errors import HarnessError
from harness.journal import Journal, identity_hash, request_key

IDENT = {"model_sha256": "ab" * 32, "task_config_hash": "cfg", "settings": {"n_parallel": 8}}


def test_entries_survive_reopen_exactly(tmp_path):
    j = Journal(tmp_path / "j.jsonl", IDENT)
    j.add("a", [-1.2345678901234567, True])
    j.add("b", "The final answer is 42.")
    j.close()
    j2 = Journal(tmp_path / "j.jsonl", IDENT)
    assert j2.get("a") == [-1.2345678901234567, True] and j2.get("b") == "The final answer is 42."
    assert len(j2) == 2 and j2.torn == 0 and j2.added == 0
    j2.close()


def test_torn_last_line_costs_only_that_request(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal(path, IDENT)
    for i in range(5):
        j.add(f"k{i}", i)
    j.close()
    text = path.read_text()
    path.write_text(text[: len(text) - 7])  # killed in the middle of writing the last line
    j = Journal(path, IDENT)
    assert sorted(j.entries) == ["k0", "k1", "k2", "k3"] and j.torn == 1
    j.add("k4", 4)  # the recomputed request lands on a clean line of its own
    j.close()
    j = Journal(path, IDENT)
    assert len(j) == 5 and j.torn == 1
    j.close()


def test_flipped_byte_fails_the_crc(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal(path, IDENT)
    j.add("k", "answer 12")
    j.close()
    path.write_text(path.read_text().replace("answer 12", "answer 13"))
    j = Journal(path, IDENT)
    assert "k" not in j and j.torn == 1
    j.close()


def test_other_identity_is_refused(tmp_path):
    Journal(tmp_path / "j.jsonl", IDENT).close()
    with pytest.raises(HarnessError, match="another run setting"):
        Journal(tmp_path / "j.jsonl", dict(IDENT, task_config_hash="changed"))


def test_second_writer_is_refused(tmp_path):
    j = Journal(tmp_path / "j.jsonl", IDENT)
    with pytest.raises(HarnessError, match="another harness run"):
        Journal(tmp_path / "j.jsonl", IDENT)
    j.close()
    Journal(tmp_path / "j.jsonl", IDENT).close()  # free again once the first one closed


def test_keys_and_identity_hashes_are_stable():
    assert request_key("ll", [1, 2], [3]) == request_key("ll", [1, 2], [3]) != request_key("ll", [1, 2], [4])
    assert identity_hash(IDENT) == identity_hash(dict(reversed(list(IDENT.items()))))
    assert identity_hash(IDENT) != identity_hash(dict(IDENT, settings={"n_parallel": 4}))
