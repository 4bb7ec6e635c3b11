import math

import pytest

from harness.atomic import atomic_write_text, write_json
from harness.errors import HarnessError
from harness.records.record import read_record, wilson_interval


@pytest.mark.parametrize(
    "p,n,lo,hi",
    [
        # Reference values from the closed-form Wilson score interval (z = 1.96).
        (0.5, 100, 0.4038, 0.5962),
        (0.0, 10, 0.0, 0.2775),
        (0.9, 50, 0.7864, 0.9565),
    ],
)
def test_wilson_interval_matches_formula(p, n, lo, hi):
    got = wilson_interval(p, n)
    assert math.isclose(got[0], lo, abs_tol=5e-4) and math.isclose(got[1], hi, abs_tol=5e-4)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "a.json", "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_read_record_refuses_unknown_schema(tmp_path):
    write_json(tmp_path / "r.json", {"schema_version": 999})
    with pytest.raises(HarnessError, match="schema version"):
        read_record(tmp_path / "r.json")
