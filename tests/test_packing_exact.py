"""Packing several log-likelihood branches per decode, one KV stream each, is bit-exact (issue #18 item 5).

In one unified cache a packed branch's KV cells sit at other cell indices than in a one-branch run, and
llama.cpp's non-flash CPU attention groups its float sums by cell index (scripts/packing_exactness.py and
the issue's closing note), so log-probs moved by up to ~0.7. A stream per branch keeps every cell where a
one-branch run puts it: the results must be equal bit for bit, not just close.
"""

import pytest

pytestmark = pytest.mark.slow

FEWSHOT = "The following are multiple choice questions (with answers) about astronomy.\n\n" + "".join(
    f"Question {i}: which planet is number {i} from the Sun?\nA. Mercury\nB. Venus\nC. Earth\nD. Mars\n"
    f"Answer: {'ABCD'[i % 4]}\n\n"
    for i in range(1, 6)
)
# Different lengths, so a pack holds unequal branches (llama.cpp then splits it into several micro-batches).
QUESTIONS = [
    "What is the closest star to Earth?",
    "Which planet has rings?",
    "What is a light year?",
    "Which of these planets has the longest day, measured in Earth days, of the whole solar system?",
]


def test_packed_streams_are_bit_identical_to_one_branch_at_a_time(engine, smollm2_path):
    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.backends.llamacpp.settings import EngineSettings

    reqs = []
    for q in QUESTIONS:
        ctx = engine.tokenize(FEWSHOT + q + "\nA. x\nB. y\nC. z\nD. w\nAnswer:")
        for c in (" A", " B", " C", " D", " Proxima Centauri"):
            reqs.append((ctx, engine.tokenize(c, add_bos=False)))
    before = engine.stats.decode_calls
    want = engine.loglikelihood(reqs)
    one_at_a_time_calls = engine.stats.decode_calls - before
    packed = LlamaEngine(smollm2_path, EngineSettings(threads=2, max_branches=4))
    try:
        got = packed.loglikelihood(reqs)
        assert packed.context.unified is False  # the packed path ran, in separate streams
        assert packed.stats.decode_calls < one_at_a_time_calls  # and really packed branches
    finally:
        packed.close()
    assert got == want  # every float and greedy flag equal, bit for bit
