"""The one GGUF header reader (harness/models/gguf_header.py) against the gguf package's own reader, which
is the independent reference here: every key/value, every tensor's element count, where the data ends;
and any damage to the bytes is a HeaderError (one message), never another exception."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.models.gguf_check import gguf_summary
from harness.models.gguf_header import HeaderError, file_fetch, read_file_header, read_header


def _reference(path):
    """Key/values and tensors as the gguf package reads them."""
    from gguf import GGUFReader, GGUFValueType

    r = GGUFReader(str(path))
    values = {}
    for key, fld in r.fields.items():
        if key.startswith("GGUF."):
            continue  # the reader's own pseudo-fields (version, counts)
        t = fld.types[0]
        if t == GGUFValueType.STRING:
            values[key] = bytes(fld.parts[fld.data[0]]).decode("utf-8", "replace")
        elif t == GGUFValueType.ARRAY:
            if fld.types[1] == GGUFValueType.STRING:
                values[key] = [bytes(fld.parts[i]).decode("utf-8", "replace") for i in fld.data]
            else:
                values[key] = [fld.parts[i][0].item() for i in fld.data]
        else:
            values[key] = fld.parts[fld.data[0]][0].item()
    end = max(int(t.data_offset) + int(t.n_bytes) for t in r.tensors)
    return values, [int(t.n_elements) for t in r.tensors], end


def _tiny(path, arch="llama"):
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), arch)
    w.add_block_count(2)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_embedding_length(64)
    w.add_context_length(512)
    w.add_string("general.name", "tiny ünïcode")
    w.add_token_list(["<s>", "a", "b", "ab"])
    w.add_token_types([3, 1, 1, 1])
    w.add_array("tokenizer.ggml.merges", ["a b"])
    w.add_float32("test.float", 0.25)
    w.add_bool("test.flag", True)
    w.add_tensor("token_embd.weight", np.zeros((4, 64), dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight", np.zeros((64, 64), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("which", ["tiny", "smollm2"])
def test_reader_agrees_with_the_gguf_package(which, tmp_path, request):
    path = _tiny(tmp_path / "t.gguf") if which == "tiny" else request.getfixturevalue("smollm2_path")
    values, elements, end = _reference(path)
    got = read_file_header(path, lambda key: True, tensors=True)
    assert got.values == values
    assert got.tensor_elements == elements
    assert got.data_end == end <= path.stat().st_size
    assert gguf_summary(path)["n_params"] == sum(elements)


def test_a_file_cut_inside_its_tensor_data_is_damaged(tmp_path):
    path = _tiny(tmp_path / "t.gguf")
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(HarnessError, match="damaged GGUF file .truncated"):
        gguf_summary(path)


def test_a_remote_read_fetches_only_what_the_keys_need(tmp_path, smollm2_path):
    calls = []
    fetch = file_fetch(smollm2_path)

    def counted(start, end):
        calls.append((start, end))
        return fetch(start, end)

    h = read_header(
        counted, {"general.architecture"}, stop=lambda values, key: key.startswith("tokenizer."), first=4096
    )
    assert h.values == {"general.architecture": "llama"} and h.fetched == 4096 and len(calls) == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_bytes_are_one_error_never_another_exception(tmp_path, data):
    good = _tiny(tmp_path / "t.gguf").read_bytes()
    cut = data.draw(st.integers(0, len(good)))
    damaged = bytearray(good[:cut])
    for _ in range(data.draw(st.integers(0, 3))):
        if damaged:
            i = data.draw(st.integers(0, len(damaged) - 1))
            damaged[i] = data.draw(st.integers(0, 255))
    blob = bytes(damaged)

    def fetch(start, end):
        return blob[start : end + 1]

    try:
        read_header(fetch, lambda key: True, tensors=True)
    except HeaderError as exc:
        assert exc.message
