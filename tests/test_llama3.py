"""The Llama 3 path end to end, offline: scripted Llama 3 GGUFs (harness/models/scripted_model.py) built from llama.cpp's
own Llama 3 vocabulary and Meta's 3.1/3.2/3.3 chat templates, run through the real llama.cpp.

What is compared with what (tests/llama3_ref.py has the reference):
* prompt fidelity: the token ids the engine decodes for GSM8K 8-shot CoT and MMLU 5-shot requests (chat for
  instruct, plain for base) equal a transformers/tokenizers reference built from the GGUF's own vocabulary and
  template, with messages built here from the parquet rows; exactly one BOS; the system-header date fixed;
* tokenizer: llama.cpp's Llama 3 test vectors through the engine's ``tokenize``;
* stop: every GSM8K response is the scripted text, generation ends at <|eot_id|> after the script;
* score: GSM8K strict score = share of sampled questions whose target is the scripted number (from the parquet);
  MMLU log-likelihood picks the scripted letter;
* ``harness bench --model <scripted>.gguf`` as a user runs it, base/instruct decided and recorded, and bad
  templates or vocabularies refused with one message.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from llama3_ref import (
    TEMPLATES,
    VOCAB,
    chat_ids,
    fetch_llama3_files,
    gsm8k_messages,
    gsm8k_plain,
    mmlu_llama_messages,
    mmlu_plain,
    reference_tokenizer,
    vocab_vectors,
)

from harness.errors import HarnessError
from harness.models.catalogue import UNDECIDED, resolve
from harness.models.chat_format import DATE_STRING, kind_from_gguf, render_chat
from harness.models.kind import decide_kind
from harness.models.scripted_model import MARGIN, SCRIPT, build_scripted_model, read_vocab

HARNESS = Path(sys.executable).parent / "harness"
GSM8K_TEST = "openai/gsm8k/main/test-00000-of-00001.parquet"
SIMPLE_LLAMA3 = (  # a minimal Llama 3 style template for the bad-input cases
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def llama3_dir() -> Path:
    folder, why = fetch_llama3_files()
    if folder is None:
        pytest.skip(f"no Llama 3 vocabulary: {why}")
    return folder


@pytest.fixture(scope="session")
def vocab(llama3_dir):
    return read_vocab(llama3_dir / VOCAB)


@pytest.fixture(scope="session")
def models(vocab, llama3_dir, tmp_path_factory) -> dict:
    """Scripted instruct models for Meta's three templates, and base models (no template); answer 18, letter B."""
    d = tmp_path_factory.mktemp("llama3")
    out = {
        v: build_scripted_model(
            vocab,
            d / f"scripted-llama{v}.F16.gguf",
            (llama3_dir / "templates" / t).read_text(),
            name=f"scripted-llama{v}",
        )
        for v, t in TEMPLATES.items()
    }
    out["base"] = build_scripted_model(
        vocab, d / "scripted-llama3-base.F16.gguf", None, name="scripted-llama3-base"
    )
    # Base GSM8K prompts end with "A:": without the ":" -> letter rule the script starts there.
    out["base-gsm8k"] = build_scripted_model(
        vocab, d / "scripted-llama3-base-gsm8k.F16.gguf", None, letter=None
    )
    return out


@pytest.fixture(scope="session")
def reference(models):
    return reference_tokenizer(models["3.1"].path)  # all scripted files share the vocabulary


def _engine(path):
    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.backends.llamacpp.settings import EngineSettings

    class Recording(LlamaEngine):
        """The real engine; it only keeps the token ids it was asked to decode."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.gen_prompts: list[list[int]] = []
            self.ll_requests: list[tuple[list[int], list[int]]] = []
            self.trace = {}  # prompt -> every greedy token (end token included), see LlamaEngine.trace

        def generate(self, prompts, until, budget, **kw):
            self.gen_prompts += [list(p) for p in prompts]
            self.budgets = list(budget)
            return super().generate(prompts, until, budget, **kw)

        def loglikelihood(self, requests, **kw):
            self.ll_requests += [(list(c), list(x)) for c, x in requests]
            return super().loglikelihood(requests, **kw)

    return Recording(path, EngineSettings(threads=2))


def evaluate(engine, plan):
    import lm_eval

    from harness.backends.llamacpp.lm_model import LlamaBenchLM
    from harness.run.runner import evaluate as evaluate

    return evaluate(lm_eval, LlamaBenchLM(engine=engine), plan)


def _rows(mirror: Path, rel: str) -> list[dict]:
    import pandas as pd

    rows = pd.read_parquet(mirror / rel).to_dict("records")
    for r in rows:
        if "choices" in r:
            r["choices"] = list(r["choices"])
    return rows


def _gsm8k_target(answer: str) -> str:
    return answer.split("####")[-1].strip().replace(",", "")


# ------------------------------------------------------------------------------------------------ tokenizer
@pytest.mark.slow
def test_llama_cpp_tokenizer_vectors_through_engine_tokenize(models, llama3_dir, reference):
    vectors = vocab_vectors(llama3_dir)
    assert len(vectors) >= 40
    e = _engine(models["3.1"].path)
    try:
        for text, want in vectors:
            assert e.tokenize(text, add_bos=False, parse_special=False) == want, text
            assert reference(text, add_special_tokens=False).input_ids == want, (
                text
            )  # the reference is sound too
        assert e.n_vocab == 128256 and e.add_bos and e.bos_id == 128000 and e.eos_id == 128009
    finally:
        e.close()


# ------------------------------------------------------------------------------------------------ prompt fidelity
@pytest.mark.slow
@pytest.mark.parametrize("version", list(TEMPLATES))
def test_chat_prompts_equal_the_transformers_reference(version, models, reference, mirror):
    """GSM8K 8-shot CoT and MMLU 5-shot chat requests: the engine decodes exactly the reference's token ids."""
    from harness.tasks.settings import lm_eval_config, plan_task

    m = models[version]
    entry = resolve(str(m.path))
    assert entry.kind == "instruct" and "<|eot_id|> (id 128009)" in entry.kind_source
    e = _engine(m.path)
    try:
        gsm = plan_task("gsm8k", entry, limit=3, data_dir=mirror)
        assert gsm.chat
        res = evaluate(e, gsm)
        ((task, ids),) = gsm.samples.items()
        rows, cfg = _rows(mirror, GSM8K_TEST), lm_eval_config(task)
        want = [chat_ids(reference, m.template, gsm8k_messages(cfg, rows[i]), DATE_STRING) for i in ids]
        assert sorted(e.gen_prompts) == sorted(want)
        for p in e.gen_prompts:
            assert p[0] == 128000 and p.count(128000) == 1  # one BOS: the template's, none added on top
            assert "Today Date: 26 Jul 2024\n\n" in reference.decode(p)
        # Stop: the scripted text, ended by <|eot_id|> (script length, not the budget).
        assert [s["resps"] for s in res["samples"][task] if s["filter"] == "strict-match"] == [
            [[m.response]]
        ] * 3
        assert len(e.trace) == 3 and all(
            [tok for tok, _ in t] == list(m.script_ids) for t in e.trace.values()
        )
        assert len(m.script_ids) == 8 < min(e.budgets)

        e.gen_prompts.clear()
        mmlu = plan_task("mmlu", entry, limit=4, data_dir=mirror)  # 4 subjects, one question each
        res = evaluate(e, mmlu)
        want = []
        for task, ids in mmlu.samples.items():
            cfg = lm_eval_config(task)
            sub = cfg["dataset_name"]
            test, shots = (
                _rows(mirror, f"cais/mmlu/{sub}/test-00000-of-00001.parquet"),
                _rows(mirror, f"cais/mmlu/{sub}/dev-00000-of-00001.parquet")[:5],
            )
            want += [
                chat_ids(
                    reference,
                    m.template,
                    mmlu_llama_messages(cfg, shots, test[i]),
                    DATE_STRING,
                    continue_final=True,
                )
                for i in ids
            ]
        assert len(want) == 4 and sorted(e.gen_prompts) == sorted(want)
        assert all(p.count(128000) == 1 for p in e.gen_prompts)
        # After "The best answer is" the script goes " " <N> "." and lm-eval's stop string "." cuts there.
        assert all(s["resps"] == [[" " + m.answer]] for rows in res["samples"].values() for s in rows)
    finally:
        e.close()


@pytest.mark.slow
def test_base_prompts_equal_the_reference_and_loglik_picks_the_scripted_letter(models, reference, mirror):
    from harness.tasks.settings import lm_eval_config, plan_task

    m = models["base-gsm8k"]
    entry = resolve(str(m.path))
    assert entry.kind == "base" and "no chat template" in entry.kind_source
    e = _engine(m.path)
    try:
        assert e.eos_id == 128001 and e.is_eog(
            128009
        )  # base vocab: end of text; <|eot_id|> still ends generation
        gsm = plan_task("gsm8k", entry, limit=3, data_dir=mirror)
        assert not gsm.chat
        res = evaluate(e, gsm)
        ((task, ids),) = gsm.samples.items()
        rows, cfg = _rows(mirror, GSM8K_TEST), lm_eval_config(task)
        want = [reference(gsm8k_plain(cfg, rows[i])).input_ids for i in ids]  # the tokenizer adds BOS
        assert sorted(e.gen_prompts) == sorted(want)
        assert all(p[0] == 128000 and p.count(128000) == 1 for p in e.gen_prompts)
        assert [s["resps"] for s in res["samples"][task] if s["filter"] == "strict-match"] == [
            [[m.response]]
        ] * 3
        assert all(
            [tok for tok, _ in t] == list(m.script_ids) for t in e.trace.values()
        )  # ends at <|end_of_text|>
        assert m.script_ids[-1] == 128001 and len(m.script_ids) == 7
    finally:
        e.close()
    e = _engine(models["base"].path)  # the same, with the ":" -> " B" rule
    try:
        mmlu = plan_task("mmlu", entry, limit=4, data_dir=mirror)  # base: the letter by log-likelihood
        res = evaluate(e, mmlu)
        want, answers = [], []
        for task, ids in mmlu.samples.items():
            cfg = lm_eval_config(task)
            sub = cfg["dataset_name"]
            test, shots = (
                _rows(mirror, f"cais/mmlu/{sub}/test-00000-of-00001.parquet"),
                _rows(mirror, f"cais/mmlu/{sub}/dev-00000-of-00001.parquet")[:5],
            )
            for i in ids:
                ctx = mmlu_plain(cfg, shots, test[i])
                c = reference(ctx).input_ids
                want += [(c, reference(ctx + " " + letter).input_ids[len(c) :]) for letter in "ABCD"]
                answers.append(test[i]["answer"])
        assert sorted(e.ll_requests) == sorted(want)
        # The construction: logit MARGIN for " B" after ":", 0 for every other token.
        lse = math.log(math.exp(MARGIN) + e.n_vocab - 1)
        for rows in res["samples"].values():
            for s in rows:
                lls = [r[0][0] for r in s["resps"]]
                assert lls[1] == pytest.approx(MARGIN - lse, abs=0.02)
                assert lls[0] == lls[2] == lls[3] == pytest.approx(-lse, abs=0.02)
                assert s["acc"] == float(s["doc"]["answer"] == 1)
        assert len(answers) == 4
    finally:
        e.close()


@pytest.mark.slow
def test_system_header_date_is_fixed(models, reference, llama3_dir):
    """Meta's 3.2 template would write today's date (transformers' strftime_now); the harness always writes
    26 Jul 2024, so a rerun on another day decodes the same tokens."""
    msgs = [{"role": "user", "content": "Hi"}]
    for version in TEMPLATES:
        text = render_chat(models[version].template, msgs, True, "<|begin_of_text|>", "<|eot_id|>")
        assert "Today Date: 26 Jul 2024\n\n" in text
    today = date.today().strftime("%d %b %Y")
    free = reference.apply_chat_template(
        msgs, chat_template=models["3.2"].template, tokenize=False, add_generation_prompt=True
    )
    assert f"Today Date: {today}\n\n" in free  # what an unpinned render gives


# ------------------------------------------------------------------------------------------------ harness bench
def _bench(*args, results: Path, mirror: Path):
    env = dict(os.environ, TQDM_DISABLE="1")
    return subprocess.run(
        [
            str(HARNESS),
            "bench",
            *args,
            "--threads",
            "2",
            "--data-dir",
            str(mirror),
            "--results-dir",
            str(results),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def _records(results: Path) -> list[dict]:
    return [
        json.loads(p.read_text())
        for p in sorted((results / "runs").glob("*.json"))
        if not p.name.endswith(".lm_eval.json")
    ]


@pytest.mark.slow
def test_bench_gsm8k_on_a_scripted_llama31(vocab, llama3_dir, mirror, tmp_path):
    """`harness bench --model x.gguf`: strict score = share of sampled targets equal to the scripted number."""
    from harness.tasks.settings import plan_task

    template = (llama3_dir / "templates" / TEMPLATES["3.1"]).read_text()
    probe = build_scripted_model(vocab, tmp_path / "probe" / "scripted-llama3.1.F16.gguf", template)
    ((task, ids),) = plan_task("gsm8k", resolve(str(probe.path)), data_dir=mirror).samples.items()
    rows = _rows(mirror, GSM8K_TEST)
    targets = [_gsm8k_target(rows[i]["answer"]) for i in ids]
    # The most common target that is one token (Llama 3 numbers: up to 3 digits per token).
    answer = max(
        (t for t in targets if t.isdigit() and len(t) <= 3), key=lambda t: (targets.count(t), -int(t))
    )
    m = build_scripted_model(vocab, tmp_path / "scripted-llama3.1.F16.gguf", template, answer=answer)
    res = _bench("--model", str(m.path), "--tasks", "gsm8k", results=tmp_path / "out", mirror=mirror)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (
        "scripted-llama3.1.F16: instruct model (GGUF: chat template present; it ends a turn with <|eot_id|> "
        "(id 128009), the model's end-of-sequence token)"
    ) in res.stderr
    (rec,) = _records(tmp_path / "out")
    assert rec["task"]["sample_ids"] == {task: ids} and rec["task"]["chat"] is True
    n_right = sum(t == answer for t in targets)
    assert n_right >= 2
    assert rec["metrics"]["exact_match,strict-match"]["value"] == pytest.approx(n_right / len(ids), abs=1e-12)
    assert {s["response"] for s in rec["samples"]} == {"".join(SCRIPT) + answer + "."}
    assert rec["timing"]["generated_tokens"] == 7 * len(ids)  # the script; <|eot_id|> ends each (not counted)
    assert rec["model"]["kind"] == "instruct" and rec["model"]["kind_source"].startswith(
        "GGUF: chat template"
    )
    pf = rec["backend"]["prompt_format"]
    assert pf["chat_template"]["sha256"] == hashlib.sha256(template.encode()).hexdigest()
    assert pf["chat_template"]["source"] == "GGUF metadata tokenizer.chat_template"
    assert pf["chat_template"]["date_string"] == "26 Jul 2024"
    assert pf["chat_template"]["starts_with_bos"] is True and pf["chat_template"]["probe_leading_bos"] == 1
    assert pf["bos"] == {"id": 128000, "text": "<|begin_of_text|>", "add_bos_token": True}
    assert pf["stop"]["eos"] == {"id": 128009, "text": "<|eot_id|>"}
    assert (
        pf["chat_template"]["end_of_turn"]["id"] == 128009
        and pf["chat_template"]["end_of_turn"]["ends_generation"]
    )
    assert {t["id"] for t in pf["stop"]["end_of_generation"]} == {128001, 128009}


@pytest.mark.slow
def test_bench_mmlu_loglik_on_the_base_model(models, mirror, tmp_path):
    m = models["base"]
    res = _bench("--model", str(m.path), "--tasks", "mmlu", "--limit", "57", results=tmp_path, mirror=mirror)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "base model (GGUF: no chat template" in res.stderr
    (rec,) = _records(tmp_path)
    assert rec["task"]["chat"] is False and rec["backend"]["prompt_format"]["chat_template"] is None
    picked = []
    for task, ids in rec["task"]["sample_ids"].items():
        sub = task.removeprefix("mmlu_")
        test = _rows(mirror, f"cais/mmlu/{sub}/test-00000-of-00001.parquet")
        picked += [test[i]["answer"] for i in ids]
    assert len(picked) == 57
    assert rec["metrics"]["acc,none"]["value"] == pytest.approx(picked.count(1) / 57, abs=1e-12)  # always "B"


@pytest.mark.slow
def test_kind_flag_overrides_the_gguf_and_is_recorded(models, mirror, tmp_path):
    m = models["3.3"]
    res = _bench(
        "--model",
        str(m.path),
        "--tasks",
        "gsm8k",
        "--limit",
        "2",
        "--kind",
        "base",
        results=tmp_path,
        mirror=mirror,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (
        "scripted-llama3.3.F16: base model (--kind (overriding instruct, from GGUF: chat template"
        in res.stderr
    )
    (rec,) = _records(tmp_path)
    assert rec["model"]["kind"] == "base" and rec["model"]["kind_source"].startswith("--kind")
    assert rec["task"]["chat"] is False  # plain few-shot, as asked


@pytest.mark.slow
def test_bench_through_llama_cpp_python_server_decodes_one_bos(models, reference, mirror, tmp_path):
    """llama-cpp-python's own server (`python -m llama_cpp.server`) adds BOS to every prompt itself; the harness
    asks its /extras/tokenize, leaves the template's <|begin_of_text|> out, and the server's prompt token counts
    equal the reference's (before: two BOS per prompt, +1 token per question, silently)."""
    from backend_procs import llama_cpp_server

    from harness.tasks.settings import lm_eval_config

    m = models["3.2"]
    with llama_cpp_server(m.path) as url:
        res = _bench(
            "--backend",
            "server",
            "--base-url",
            url,
            "--concurrency",
            "1",
            "--model",
            str(m.path),
            "--tasks",
            "gsm8k",
            "--limit",
            "2",
            results=tmp_path,
            mirror=mirror,
        )
    assert res.returncode == 0, res.stderr[-3000:]
    (rec,) = _records(tmp_path)
    assert rec["backend"]["server"]["kind"] == "llama-cpp-python"
    assert (
        rec["backend"]["strip_bos"] is True
        and rec["backend"]["bos_check"] == "llama-cpp-python tokenizer endpoint"
    )
    ((task, ids),) = rec["task"]["sample_ids"].items()
    rows, cfg = _rows(mirror, GSM8K_TEST), lm_eval_config(task)
    want = [chat_ids(reference, m.template, gsm8k_messages(cfg, rows[i]), DATE_STRING) for i in ids]
    assert rec["timing"]["prompt_tokens"] == sum(len(w) for w in want)
    assert {s["response"] for s in rec["samples"]} == {m.response}


@pytest.mark.slow
def test_bench_through_llama_server_decodes_the_same_prompts(
    models, reference, mirror, tmp_path, llama_server_bin
):
    """The server route (llama-server built from the pinned sources, the ``llama_server_bin`` fixture): the harness renders the template and strips
    its BOS text because llama-server adds BOS itself; the server's prompt token counts equal the reference's
    (a double or missing BOS would be off by one per request) and every answer is the scripted text."""
    from backend_procs import llama_server

    from harness.tasks.settings import lm_eval_config

    m = models["3.2"]
    with llama_server(llama_server_bin, m.path, slots=1) as url:
        res = _bench(
            "--backend",
            "server",
            "--base-url",
            url,
            "--concurrency",
            "1",
            "--model",
            str(m.path),
            "--tasks",
            "gsm8k",
            "--limit",
            "4",
            results=tmp_path,
            mirror=mirror,
        )
    assert res.returncode == 0, res.stderr[-3000:]
    (rec,) = _records(tmp_path)
    assert rec["backend"]["strip_bos"] is True and rec["task"]["chat"] is True
    ((task, ids),) = rec["task"]["sample_ids"].items()
    rows, cfg = _rows(mirror, GSM8K_TEST), lm_eval_config(task)
    want = [chat_ids(reference, m.template, gsm8k_messages(cfg, rows[i]), DATE_STRING) for i in ids]
    assert rec["timing"]["prompt_tokens"] == sum(len(w) for w in want)
    assert {s["response"] for s in rec["samples"]} == {m.response}
    # Stopped at <|eot_id|>: llama-server counts the end token among the completion tokens (8 = script length).
    assert rec["timing"]["generated_tokens"] == len(m.script_ids) * len(ids)


@pytest.mark.slow
def test_hub_gguf_kind_is_read_from_its_header_before_any_download(models, mirror, tmp_path):
    """`bench --model hf:...` on a GGUF not downloaded yet (fake Hub on 127.0.0.1): base/instruct comes from the
    header's first MiBs (range requests), printed before the download; the file name says nothing."""
    from hub_server import FakeHub

    data = models["3.1"].path.read_bytes()
    with FakeHub() as hub:
        hub.files[("acme/Scripted-GGUF", "model-F16.gguf")] = data
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env |= {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "TQDM_DISABLE": "1"}
        res = subprocess.run(
            [
                str(HARNESS),
                "bench",
                "--model",
                "hf:acme/Scripted-GGUF/model-F16.gguf",
                "--tasks",
                "gsm8k",
                "--limit",
                "2",
                "--threads",
                "2",
                "--data-dir",
                str(mirror),
                "--results-dir",
                str(tmp_path / "out"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        log = list(hub.log)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (
        "model-F16: instruct model (GGUF header, read from the Hub: chat template present; it ends a turn with "
        "<|eot_id|> (id 128009), the model's end-of-sequence token)"
    ) in res.stderr
    gets = [(p, r) for m, p, r in log if m == "GET" and p.endswith("model-F16.gguf")]
    assert gets[0][1] and gets[0][1].startswith("bytes=0-")  # the first read of the file is a header range
    (rec,) = _records(tmp_path / "out")
    assert rec["task"]["chat"] is True and rec["model"]["kind_source"].startswith(
        "GGUF header, read from the Hub"
    )
    assert {s["response"] for s in rec["samples"]} == {models["3.1"].response}


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.slow
@pytest.mark.parametrize(
    "case,template,drop,message",
    [
        (
            "raises",
            "{{ raise_exception('Only user and assistant roles are supported!') }}",
            (),
            "failed: TemplateError: Only user and assistant roles are supported!",
        ),
        (
            "needs-variable",
            SIMPLE_LLAMA3.replace("{{ bos_token }}", "{{ bos_token }}{{ knowledge_cutoff }}"),
            (),
            "'knowledge_cutoff' is undefined",
        ),
        (
            "no-eot",
            "llama3.1",
            ("<|eot_id|>",),
            "ends an assistant turn with '<|eot_id|>', which is not a special token",
        ),
    ],
)
def test_bad_template_or_vocabulary_is_one_clear_message(
    case, template, drop, message, vocab, llama3_dir, mirror, tmp_path
):
    if template == "llama3.1":
        template = (llama3_dir / "templates" / TEMPLATES["3.1"]).read_text()
    from dataclasses import replace

    from harness.tasks.settings import plan_task

    m = build_scripted_model(vocab, tmp_path / f"bad-{case}.F16.gguf", template, drop_tokens=drop)
    for kind in (
        (),
        ("--kind", "instruct"),
    ):  # kind from the GGUF, or forced: the template is checked either way
        res = _bench(
            "--model",
            str(m.path),
            "--tasks",
            "gsm8k",
            "--limit",
            "2",
            *kind,
            results=tmp_path / "out",
            mirror=mirror,
        )
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert f"bad-{case}.F16.gguf" in res.stderr and message in res.stderr, res.stderr[-2000:]
        assert not (tmp_path / "out").exists()  # refused before any journal or record
    # In-process lm-eval (no CLI): the backend checks the template before the first chat prompt.
    e = _engine(m.path)
    try:
        plan = plan_task("gsm8k", replace(resolve(str(m.path)), kind="instruct"), limit=2, data_dir=mirror)
        with pytest.raises(HarnessError) as err:
            evaluate(e, plan)
        assert f"bad-{case}.F16.gguf" in err.value.message
        assert (
            "which is not one token of its vocabulary" if case == "no-eot" else message
        ) in err.value.message
        assert e.gen_prompts == []  # nothing decoded
    finally:
        e.close()


@pytest.mark.slow
def test_a_template_ending_turns_with_an_eog_token_reads_as_instruct(vocab, llama3_dir, tmp_path):
    """A Llama 3 chat template whose end of turn (<|eot_id|>) is not the declared end of sequence
    (<|end_of_text|>), as in early Llama 3 Instruct conversions: instruct, because llama.cpp itself ends
    generation at <|eot_id|> (its EOG list); the evidence carries the note. (Before: decided base, scored 0.)"""
    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.backends.llamacpp.settings import EngineSettings

    template = (llama3_dir / "templates" / TEMPLATES["3.1"]).read_text()
    m = build_scripted_model(
        vocab, tmp_path / "Llama-3-8B-Instruct-early.F16.gguf", template, end="<|end_of_text|>"
    )
    kind, evidence = kind_from_gguf(m.path)
    assert kind == "instruct"
    assert evidence.startswith(
        "GGUF: chat template present; it ends a turn with <|eot_id|> (id 128009), which "
        "llama.cpp ends generation at, though the declared end of sequence is <|end_of_text|>"
    )
    assert resolve(str(m.path)).kind == "instruct"
    e = LlamaEngine(m.path, EngineSettings(threads=1))
    try:  # the list agrees with the llama.cpp the harness runs
        assert e.is_eog(128009) and e.eos_id == 128001
    finally:
        e.close()


# ------------------------------------------------------------------------------------------------ no llama.cpp needed
def test_render_errors_name_the_model_and_never_fall_back():
    with pytest.raises(HarnessError) as err:
        render_chat(
            "{{ raise_exception('no system role') }}",
            [{"role": "user", "content": "x"}],
            True,
            "",
            "",
            "m.gguf",
        )
    assert "the chat template of m.gguf failed: TemplateError: no system role" in err.value.message
    with pytest.raises(HarnessError) as err:
        render_chat(
            "{{ messages[0].content }} {{ persona }}", [{"role": "user", "content": "x"}], True, "", "", "m"
        )
    assert "'persona' is undefined" in err.value.message
    # Tests of optional variables still work (Meta's templates use them): nothing printed, no error.
    out = render_chat(
        "{% if tools is defined %}T{% endif %}{% if not custom %}ok{% endif %}", [], True, "", ""
    )
    assert out == "ok"


def test_hub_model_kind_is_never_guessed_from_its_name():
    entry = resolve("hf:someone/Llama-3.2-1B-Instruct-GGUF/Llama-3.2-1B-Instruct-Q4_K_M.gguf")
    assert entry.kind == UNDECIDED  # until its header is read (test above) or --kind says
    chosen = decide_kind(entry, "instruct")
    assert chosen.kind == "instruct" and chosen.describe()["kind_source"] == "--kind"


def test_catalogue_kind_and_override_are_recorded():
    entry = resolve("smollm2-135m")
    assert entry.describe()["kind_source"] == "catalogue" and decide_kind(entry) is entry
    flipped = decide_kind(entry, "base")
    assert flipped.kind == "base" and flipped.kind_source == "--kind (overriding instruct, from catalogue)"


def test_truncated_gguf_header_is_a_clear_error(tmp_path):
    bad = tmp_path / "cut.gguf"
    head = b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") + (1).to_bytes(8, "little")
    bad.write_bytes(head + (10**12).to_bytes(8, "little") + b"tokenizer")  # a key length far past the end
    with pytest.raises(HarnessError) as err:
        kind_from_gguf(bad)
    assert "cannot read the tokenizer metadata of cut.gguf" in err.value.message


def test_smollm2_gguf_reads_as_instruct_from_its_own_metadata(smollm2_path):
    kind, evidence = kind_from_gguf(smollm2_path)
    assert kind == "instruct" and "<|im_end|>" in evidence
