"""Is packing several log-likelihood branches into one decode exact? (issue #18 item 5)

Scores the same MMLU-style log-likelihood requests with SmolLM2 (catalogue ``smollm2-135m``) in several
engine modes and compares every log-prob bit for bit against one branch per decode (the engine default):

  a  one branch per decode (max_branches=1, one unified KV cache)                       -- the reference
  b  4 branches per decode in ONE unified KV cache (what the engine refuses; forced here by a subclass)
  c  4 branches per decode, one KV stream per branch (max_branches=4, kv_unified off)
  b+align  as b, but each branch starts on a 16-cell boundary (class AlignedPackedEngine): bit-exact
  a+fa, b+fa  a and b with flash attention on (no fix: its tiled kernel, >= 64 query rows, groups 64 cells)

Then a minimal reproduction isolating the cause of b's shift: one branch decoded ALONE (its own decode
call), but with its KV cells moved by ``d`` cells because another sequence occupies the cells before it.
Whatever that other sequence holds (the same tokens at the same positions, other tokens, other positions)
the branch's logits change for most ``d`` that are not multiples of 8 (8, 16, 24 are exact), and never with
flash attention below 64 query rows: the non-flash attention's kq @ V sums over KV cells in
SIMD lanes chosen by cell index (llamafile tinyBLAS, cell l -> lane l mod 16,
https://github.com/ggml-org/llama.cpp/blob/0c1e57098bba43ac29e6e3b677cdceebdd22334f/ggml/src/ggml-cpu/llamafile/sgemm.cpp#L549-L580)
and its softmax sums 16-cell blocks
(https://github.com/ggml-org/llama.cpp/blob/0c1e57098bba43ac29e6e3b677cdceebdd22334f/ggml/src/ggml-cpu/vec.cpp#L531-L540).
``--cpu-rounds N`` times the modes instead (CPU seconds, best of N; wall time on a shared machine measures
the neighbours).

Usage (CPU, light): HARNESS_DATA_DIR=/path/to/hub .venv/bin/python scripts/packing_exactness.py \
    [--subjects 2 --per-subject 20 --threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.backends.llamacpp.context import LlamaContext  # noqa: E402
from harness.backends.llamacpp.engine import LlamaEngine  # noqa: E402
from harness.backends.llamacpp.loglik import LoglikScheduler  # noqa: E402
from harness.backends.llamacpp.settings import EngineSettings  # noqa: E402

SUBJECTS = ["astronomy", "high_school_biology", "college_computer_science", "marketing"]


class UnifiedContext(LlamaContext):
    """A context whose sequences always share ONE unified KV cache (the engine gives packed branches a stream each)."""

    def ensure(self, n_needed: int, n_seq: int, unified: bool = True) -> None:
        super().ensure(n_needed, n_seq, unified=True)


class UnifiedPackedEngine(LlamaEngine):
    """LlamaEngine whose packed branches share ONE unified KV cache."""

    context_class = UnifiedContext


ALIGN = 16


class AlignedContext(UnifiedContext):
    """The unified context with one more sequence (the fillers) and prefixes cut to a multiple of ``ALIGN``."""

    def ensure(self, n_needed: int, n_seq: int, unified: bool = True) -> None:
        super().ensure(n_needed, n_seq + 1, unified=True)  # one more sequence: the fillers

    def prefill(self, tokens, seq: int, start: int = 0) -> None:
        super().prefill(tokens[: len(tokens) - len(tokens) % ALIGN], seq, start)


class AlignedScheduler(LoglikScheduler):
    """Packs laid out with filler tokens so every branch starts on an ``ALIGN``-cell boundary."""

    def score_pack(self, pack, plen, results, progress, on_result=None) -> None:
        plen -= plen % ALIGN  # the prefix as AlignedContext.prefill decoded it
        sizes = [len(it.tokens) - plen for it in pack]
        # filler before branch k (k >= 1): its start is then congruent to plen modulo ALIGN
        pads = [0] + [(-size) % ALIGN for size in sizes[:-1]]
        total = sum(sizes) + sum(pads)
        if len(pack) > 1 and total > self.settings.n_batch:  # fillers overflow one decode: halve the pack
            half = len(pack) // 2
            self.score_pack(pack[:half], plen, results, progress, on_result)
            self.score_pack(pack[half:], plen, results, progress, on_result)
            return
        ctx = self.context
        fill = ctx.n_seq - 1
        entries, fpos = [], 0
        for k, (it, pad) in enumerate(zip(pack, pads)):
            entries += [(it.tokens[-1], fpos + j, fill, False) for j in range(pad)]
            fpos += pad
            seq = k + 1
            if plen:
                ctx.copy(0, seq, 0, plen)
            n = len(it.tokens)
            entries += [(it.tokens[p], p, seq, p >= n - it.n_out) for p in range(plen, n)]
        logits = ctx.decode(entries)
        ctx.drop(fill)
        ctx.stats.prompt_tokens += len(entries)
        self.deliver(pack, logits, results, progress, on_result)
        for k in range(len(pack)):
            ctx.drop(k + 1)


class AlignedPackedEngine(UnifiedPackedEngine):
    """Unified packing laid out so every branch's KV cells sit, modulo 16, where a one-branch run puts them.

    Non-flash attention on CPU reduces over KV cells in 16-wide SIMD groups keyed by cell index: kq @ V in
    llamafile tinyBLAS (cell l -> lane l mod 16) and the softmax sum (one float reduce per 16-cell block,
    ggml_vec_soft_max_f32). So (1) the shared prefix stops at a multiple of 16 (its last plen % 16 tokens are
    decoded with each branch, in cells of their own) and (2) filler tokens of a scratch sequence, never
    visible to a branch and with no logits read, go between branches so each branch starts on a 16-cell
    block boundary. Every block a branch reads then holds the same non-zero terms in the same lanes as in a
    one-branch run; the other branches' cells add exact zeros."""

    context_class = AlignedContext
    loglik_class = AlignedScheduler


# ---------------------------------------------------------------------------------------------- requests
def _fmt(row) -> str:
    opts = "".join(f"\n{k}. {c}" for k, c in zip("ABCD", row["choices"]))
    return f"{row['question'].strip()}{opts}\nAnswer:"


def mmlu_requests(engine: LlamaEngine, subjects: int, per_subject: int) -> list[tuple[list[int], list[int]]]:
    """5-shot MMLU prompts in lm-eval's ``mmlu`` format from the local Hub mirror (HARNESS_DATA_DIR)."""
    import pandas as pd

    if not os.environ.get("HARNESS_DATA_DIR"):
        raise SystemExit(
            "set HARNESS_DATA_DIR to the Hub mirror holding cais/mmlu (or run with --skip-modes)"
        )
    root = Path(os.environ["HARNESS_DATA_DIR"]) / "cais" / "mmlu"
    reqs = []
    for subj in SUBJECTS[:subjects]:
        dev = pd.read_parquet(root / subj / "dev-00000-of-00001.parquet")
        test = pd.read_parquet(root / subj / "test-00000-of-00001.parquet")
        head = (
            f"The following are multiple choice questions (with answers) about {subj.replace('_', ' ')}.\n\n"
        )
        shots = "".join(f"{_fmt(r)} {'ABCD'[int(r['answer'])]}\n\n" for _, r in dev.iterrows())
        for _, r in test.head(per_subject).iterrows():
            ctx = engine.tokenize(head + shots + _fmt(r))
            for letter in "ABCD":
                reqs.append((ctx, engine.tokenize(" " + letter, add_bos=False)))
    return reqs


# ---------------------------------------------------------------------------------------------- part 1
def cpu_timing(path: Path, reqs, threads: int, modes, rounds: int) -> None:
    """CPU seconds (this process, all threads) per mode, modes alternating, best of ``rounds``: on a shared
    machine wall time measures the neighbours; CPU time of a 1-thread run measures the work."""
    cpu: dict[str, list[float]] = {key: [] for key, *_ in modes}
    for _ in range(rounds):
        for key, _, cls, kw in modes:
            t0 = time.process_time()
            score(path, reqs, threads, cls, **kw)
            cpu[key].append(time.process_time() - t0)
    base = min(cpu["a"])
    print(f"\n| mode | CPU s per round (threads={threads}) | best | best / a |\n|---|---|---|---|")
    for key, v in cpu.items():
        print(f"| {key} | {', '.join(f'{x:.2f}' for x in v)} | {min(v):.2f} | {min(v) / base:.3f} |")


def score(
    path: Path, reqs, threads: int, cls=LlamaEngine, **settings
) -> tuple[list[tuple[float, bool]], float, float]:
    eng = cls(path, EngineSettings(threads=threads, **settings))
    try:
        t0 = time.perf_counter()
        got = eng.loglikelihood(reqs)
        wall = time.perf_counter() - t0
        return got, wall, eng.stats.decode_seconds
    finally:
        eng.close()


def compare(ref, got) -> dict:
    d = np.array([abs(g[0] - r[0]) for g, r in zip(got, ref)])
    return {
        "max_abs": float(d.max()),
        "n_differ": int((d > 0).sum()),
        "n_gt_1e-3": int((d > 1e-3).sum()),
        "greedy_differ": sum(g[1] != r[1] for g, r in zip(got, ref)),
    }


# ---------------------------------------------------------------------------------------------- part 2
class Probe:
    """Low-level access to one engine's context: decode a prefix and branches at chosen KV cells."""

    def __init__(self, eng: LlamaEngine):
        self.e, self.lc = eng, eng.lc

    def context(
        self, flash: bool, unified: bool = True, n_ubatch: int = 512, n_seq: int = 5, n_ctx: int = 512
    ) -> None:
        """Replace the engine's context by one made here (flash attention, micro-batch and layout chosen)."""
        c, lc = self.e.context, self.lc
        c.close()
        p = lc.llama_context_default_params()
        p.n_ctx = n_ctx * (1 if unified else n_seq)
        p.n_batch, p.n_ubatch, p.n_seq_max = 512, n_ubatch, n_seq
        p.n_threads = p.n_threads_batch = self.e.threads
        p.kv_unified = unified
        p.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        c.ctx = lc.llama_init_from_model(self.e.model, p)
        c.mem, c.batch = lc.llama_get_memory(c.ctx), lc.llama_batch_init(512, 0, 1)
        c.unified, c.size = unified, p.n_ctx

    def branches(
        self,
        prefix: list[int],
        branches: list[list[int]],
        blocker: list[int] | None = None,
        blocker_pos: int | None = None,
        remove_blocker: bool = False,
    ) -> list[np.ndarray]:
        """Prefix into seq 0; optionally a ``blocker`` sequence (seq 4) decoded next, which takes the KV cells
        right after the prefix; then all ``branches`` (seqs 1..) in one decode call. Logits of every row."""
        c = self.e.context
        c.clear()
        P = len(prefix)
        c.prefill(prefix, seq=0)
        cp = (0, P) if c.unified else (-1, -1)
        if blocker:
            bpos = P if blocker_pos is None else blocker_pos
            if bpos == P:
                c.copy(0, 4, *cp)
            c.decode([(t, bpos + j, 4, False) for j, t in enumerate(blocker)])
            if remove_blocker:
                c.drop(4)
        entries = []
        for k, br in enumerate(branches):
            c.copy(0, k + 1, *cp)
            entries += [(t, P + j, k + 1, True) for j, t in enumerate(br)]
        out = c.decode(entries)
        rows, r = [], 0
        for br in branches:
            rows.append(out[r : r + len(br)])
            r += len(br)
        return rows


def _lsm(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(1, keepdims=True))


def _dlp(x: np.ndarray, ref: np.ndarray) -> float:
    """Largest |log-prob change| over all rows and the whole vocabulary (0.0: bit-identical logits)."""
    if np.array_equal(x, ref):
        return 0.0
    return float(np.abs(_lsm(x) - _lsm(ref)).max())


def minimal(path: Path, threads: int) -> None:
    eng = LlamaEngine(path, EngineSettings(threads=threads))
    pr = Probe(eng)
    pre = eng.tokenize("The following are questions about astronomy.\n\n" * 6)  # 53 tokens
    A = eng.tokenize(" Which planet has rings? Answer:", add_bos=False)  # 7 tokens
    B = eng.tokenize(" What is a light year? Answer:", add_bos=False)  # 8 tokens, ends like A
    rows = []
    for flash in (False, True):
        pr.context(flash)
        ref_a = pr.branches(pre, [A])[0]
        ref_b = pr.branches(pre, [B])[0]

        def row(name, got, ref):
            rows.append((f"fa={'on' if flash else 'off'}", name, _dlp(got, ref)))

        row("packed A,A: 2nd A (same tokens, same positions)", pr.branches(pre, [A, A])[1], ref_a)
        row("packed A,B: 2nd branch B (other tokens)", pr.branches(pre, [A, B])[1], ref_b)
        row("packed B,A: 2nd branch A (cells moved 8)", pr.branches(pre, [B, A])[1], ref_a)
        row(
            "packed A,A without shared prefix (moved 8)",
            pr.branches([], [pre[:1] + A, pre[:1] + A])[1],
            pr.branches([], [pre[:1] + A])[0],
        )
        for name, blk, bpos, rm in [
            ("A alone after blocker = A at same positions (moved 7)", A, None, False),
            ("A alone after blocker = other tokens, same positions", B[:7], None, False),
            ("A alone after blocker at positions 0..6 (no prefix)", A, 0, False),
            ("A alone after blocker removed (cells reused)", B[:7], None, True),
        ]:
            row(name, pr.branches(pre, [A], blk, bpos, rm)[0], ref_a)
        for d in (1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 24, 75):
            row(
                f"A alone, cells moved by d={d} (blocker of d tokens)",
                pr.branches(pre, [A], list(range(100, 100 + d)), 0)[0],
                ref_a,
            )
    # Separate streams and micro-batch split: each branch's cells sit where a one-branch run puts them.
    pr.context(False, unified=False)
    ref_a, ref_b = pr.branches(pre, [A])[0], pr.branches(pre, [B])[0]
    got = pr.branches(pre, [A, B])
    rows.append(("streams", "packed A,B in 2 streams: A / B", max(_dlp(got[0], ref_a), _dlp(got[1], ref_b))))
    pr.context(False, n_ubatch=8)
    ref_a = pr.branches(pre, [A])[0]
    rows.append(
        (
            "ubatch=8",
            "packed A,A, unified, one micro-batch per branch: 2nd A",
            _dlp(pr.branches(pre, [A, A])[1], ref_a),
        )
    )
    eng.close()
    print(
        "\n## Minimal reproduction: max |delta log-prob| over all rows and vocabulary vs the branch decoded alone"
    )
    print("| mode | case | max abs delta log-prob |\n|---|---|---|")
    for mode, name, v in rows:
        print(f"| {mode} | {name} | {v:.4g} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=2)
    ap.add_argument("--per-subject", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-modes", action="store_true", help="only the minimal reproduction")
    ap.add_argument(
        "--modes", default="", help="comma-separated subset of a,b,c,b+align,a+fa,b+fa (a always)"
    )
    ap.add_argument(
        "--timing-repeats",
        type=int,
        default=1,
        help="rerun a and b+align this many more times, alternating (the machine may be shared)",
    )
    ap.add_argument(
        "--cpu-rounds", type=int, default=0, help="only time the modes: CPU seconds, best of N rounds"
    )
    ap.add_argument("--skip-minimal", action="store_true", help="only the engine modes on MMLU")
    a = ap.parse_args()
    from harness.models.catalogue import resolve
    from harness.models.locate import local_model_path

    path = local_model_path(resolve("smollm2-135m"))
    if not a.skip_modes:
        tok = LlamaEngine(path, EngineSettings(threads=a.threads))
        reqs = mmlu_requests(tok, a.subjects, a.per_subject)
        tok.close()
        print(
            f"{len(reqs)} requests ({len(reqs) // 4} questions x 4 choices), SmolLM2-135M Q4_1, threads={a.threads}"
        )
        modes = [
            ("a", "1 branch/decode", LlamaEngine, {}),
            ("b", "4 branches, unified KV", UnifiedPackedEngine, {"max_branches": 4}),
            ("c", "4 branches, 1 stream each", LlamaEngine, {"max_branches": 4}),
            (
                "b+align",
                "4 branches, unified KV, cells aligned (fillers)",
                AlignedPackedEngine,
                {"max_branches": 4},
            ),
            ("a+fa", "1 branch/decode, flash attn", LlamaEngine, {"flash_attn": True}),
            (
                "b+fa",
                "4 branches, unified KV, flash attn",
                UnifiedPackedEngine,
                {"max_branches": 4, "flash_attn": True},
            ),
        ]
        if a.modes:
            modes = [m for m in modes if m[0] == "a" or m[0] in a.modes.split(",")]
        if a.cpu_rounds:
            cpu_timing(path, reqs, a.threads, modes, a.cpu_rounds)
            return 0
        res = {}
        for key, _, cls, kw in modes:
            res[key] = score(path, reqs, a.threads, cls, **kw)
        print(
            "\n| mode | reference | max abs delta log-prob | n differ (bits) | n > 1e-3 | greedy flags differ |"
            " wall s | decode s |\n|---|---|---|---|---|---|---|---|"
        )
        for key, desc, _, _ in modes:
            ref = "a+fa" if key == "b+fa" else "a"
            if ref not in res:
                continue
            c = compare(res[ref][0], res[key][0])
            print(
                f"| {key}: {desc} | {ref} | {c['max_abs']:.4g} | {c['n_differ']} | {c['n_gt_1e-3']} | "
                f"{c['greedy_differ']} | {res[key][1]:.2f} | {res[key][2]:.2f} |"
            )
        walls = {k: [res[k][1]] for k in ("a", "b+align") if k in res}
        if len(walls) == 2:
            for _ in range(a.timing_repeats):
                for key, _, cls, kw in modes:
                    if key in walls:
                        walls[key].append(score(path, reqs, a.threads, cls, **kw)[1])
            print(
                "\nwall s, alternating runs: "
                + "; ".join(
                    f"{k}: {', '.join(f'{w:.2f}' for w in v)} (min {min(v):.2f})" for k, v in walls.items()
                )
                + f"; b+align/a = {min(walls['b+align']) / min(walls['a']):.3f}"
            )
        if "a+fa" in res:
            c = compare(res["a"][0], res["a+fa"][0])
            print(
                f"\n(a+fa vs a, flash attention itself: max {c['max_abs']:.4g}, {c['n_differ']} differ, "
                f"{c['n_gt_1e-3']} > 1e-3, greedy {c['greedy_differ']})"
            )
    if not a.skip_minimal:
        minimal(path, a.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
