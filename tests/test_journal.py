"""The run journal: append-only lines with CRCs, torn lines, identity checks and the single-writer lock.

The property tests damage real journal files on disk in every way a crash, a bad disk or a stray
editor can (bytes appended, inserted, flipped, lines that are not UTF-8, JSON that is not an object)
and check that the journal always opens, never raises, and keeps exactly the intact lines' results.
"""

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.records.identity import key as identity_hash
from harness.records.journal import Journal, request_key

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


def test_other_identity_is_set_aside_never_reused(tmp_path, capsys):
    j = Journal(tmp_path / "j.jsonl", IDENT)
    j.add("k", "old result")
    j.close()
    j = Journal(tmp_path / "j.jsonl", dict(IDENT, task_config_hash="changed"))
    assert len(j) == 0 and "k" not in j  # another setting's results are never taken
    j.close()
    aside = list(tmp_path.glob("j.jsonl.other-setting-*"))
    assert len(aside) == 1 and "old result" in aside[0].read_text()  # kept, not lost
    assert "another run setting" in capsys.readouterr().err


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


def _journal(path, n=6):
    j = Journal(path, IDENT)
    for i in range(n):
        j.add(f"k{i}", [i * 0.5, i % 2 == 0] if i % 3 else f"The final answer is {i}.")
    j.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    "line",
    [
        b"null",
        b"[1, 2]",
        b'"text"',
        b"42",
        b"\xff\xfe\x00 not utf-8",
        b'{"k": ["not", "a", "str"], "v": 1, "crc": 0}',
        b"{" * 5000,
    ],
)
def test_any_bad_line_is_skipped_and_counted(tmp_path, line):
    path = tmp_path / "j.jsonl"
    data = _journal(path)
    lines = data.split(b"\n")
    lines.insert(3, line)
    path.write_bytes(b"\n".join(lines))
    j = Journal(path, IDENT)
    assert len(j) == 6 and j.torn == 1
    j.add("k9", 9)  # and the journal still takes new results
    j.close()
    assert len(Journal(path, IDENT).entries) == 7


def test_garbage_after_a_kill_is_only_a_torn_line(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(_journal(path) + b"\x00\x00\x00\xde\xad\xbe\xef")  # a kill left zero-filled junk
    j = Journal(path, IDENT)
    assert len(j) == 6 and j.torn == 1
    j.close()


def _intact(data: bytes) -> dict:
    """The entries an independent reader finds in lines left exactly as written."""
    out = {}
    for raw in data.split(b"\n"):
        try:
            row = json.loads(raw.decode())
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(row, dict) and "k" in row:
            out[row["k"]] = row["v"]
    return out


DAMAGE = st.one_of(
    st.tuples(st.just("append"), st.binary(max_size=200)),
    st.tuples(st.just("insert"), st.tuples(st.integers(0, 10_000), st.binary(min_size=1, max_size=50))),
    st.tuples(st.just("flip"), st.tuples(st.integers(0, 10_000), st.integers(1, 255))),
    st.tuples(st.just("truncate"), st.integers(0, 10_000)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=st.lists(DAMAGE, min_size=1, max_size=4))
# Found by Hypothesis: the header's "identity" key and its "crc" key both damaged read as another run's header,
# and the whole journal was set aside instead of resumed.
@example(damage=[("flip", (16, 1)), ("flip", (650, 1))])
def test_damaged_journal_always_resumes_with_every_intact_line(tmp_path_factory, damage):
    path = tmp_path_factory.mktemp("j") / "j.jsonl"
    data = bytearray(_journal(path))
    original = bytes(data)
    for kind, arg in damage:
        if kind == "append":
            data += arg
        elif kind == "insert":
            pos, blob = arg
            data[pos % (len(data) + 1) : pos % (len(data) + 1)] = blob
        elif kind == "flip":
            pos, mask = arg
            if data:
                data[pos % len(data)] ^= mask
        else:
            del data[arg % (len(data) + 1) :]
    path.write_bytes(bytes(data))
    j = Journal(path, IDENT)  # never raises, whatever the bytes
    # Every line that is still exactly as written comes back with its result; nothing else does.
    kept_lines = set(original.split(b"\n")) & set(bytes(data).split(b"\n"))
    expected = {k: v for k, v in _intact(b"\n".join(kept_lines)).items()}
    assert j.entries == expected
    j.add("new", "after damage")
    j.close()
    again = Journal(path, IDENT)
    assert again.get("new") == "after damage" and all(again.get(k) == v for k, v in expected.items())
    again.close()
