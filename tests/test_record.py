import pytest
from records import make_record

from harness.atomic import atomic_write_text, write_json
from harness.errors import HarnessError
from harness.records.parse import parse_record
from harness.records.record import read_record, write_record


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "a.json", "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_read_record_refuses_unknown_schema(tmp_path):
    write_json(tmp_path / "r.json", {"schema_version": 999})
    with pytest.raises(HarnessError, match="schema version"):
        read_record(tmp_path / "r.json")


def test_write_record_reads_back_as_the_same_record(tmp_path):
    """A record written by ``write_record`` is what ``read_record`` returns, and its bytes are the record's
    strict JSON (indent 1, its own key order) exactly as ``write_json`` writes it."""
    rec = parse_record(make_record("m", "gsm8k", {"gsm8k": [True, False, True]}))
    write_record(tmp_path / "r.json", rec)
    assert read_record(tmp_path / "r.json") == rec
    write_json(tmp_path / "plain.json", rec.as_json())
    assert (tmp_path / "r.json").read_bytes() == (tmp_path / "plain.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.json", "r.json"]  # no temp file left behind
