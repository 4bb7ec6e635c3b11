"""Llama 3 test material and the independent reference the harness's prompts are compared with.

Material: llama.cpp's Llama 3 vocabulary (``models/ggml-vocab-llama-bpe.gguf``, with its tokenizer test vectors
``.inp``/``.out``) and Meta's chat templates (``models/templates/meta-llama-Llama-3.{1,2,3}-*.jinja``), taken
from the llama-cpp-python sdist the project pins (pip download, cached by pip) into ``build/llama3/``
(git-ignored; nothing of llama.cpp is committed here).

Reference: a ``transformers.PreTrainedTokenizerFast`` built with the ``tokenizers`` library from a GGUF's own
vocabulary and merges (read with the gguf package, not the harness), with Meta's Llama 3 pre-tokenizer split and
BOS post-processor as in https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct/blob/main/tokenizer.json,
and prompts rendered by transformers' own ``apply_chat_template``. Messages are built here from the parquet
rows and lm-eval's task definitions (its YAML ``doc_to_text`` etc.), not by lm-eval's request code.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
import sys
import tarfile
from pathlib import Path

import jinja2

ROOT = Path(__file__).resolve().parent.parent
LLAMA3_DIR = ROOT / "build" / "llama3"
VOCAB = "ggml-vocab-llama-bpe.gguf"
TEMPLATES = {
    "3.1": "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "3.2": "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "3.3": "meta-llama-Llama-3.3-70B-Instruct.jinja",
}
_MEMBERS = [VOCAB, VOCAB + ".inp", VOCAB + ".out", *(f"templates/{t}" for t in TEMPLATES.values())]
# The exact bytes the tests are proven against (llama-cpp-python 0.3.36's vendored llama.cpp); 3.1 and 3.3 ship
# the same template.
SHA256 = {
    VOCAB: "97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e",
    VOCAB + ".inp": "be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0",
    VOCAB + ".out": "118abf2034a197fc5c9dec5204dfdeee7004c7c70952ae577f66b99e212fab9b",
    f"templates/{TEMPLATES['3.1']}": "e10ca381b1ccc5cf9db52e371f3b6651576caee0a630b452e2816b2d404d4b65",
    f"templates/{TEMPLATES['3.2']}": "5816fce10444e03c2e9ee1ef8a4a1ea61ae7e69e438613f3b17b69d0426223a4",
    f"templates/{TEMPLATES['3.3']}": "e10ca381b1ccc5cf9db52e371f3b6651576caee0a630b452e2816b2d404d4b65",
}
# Meta's Llama 3 pre-tokenizer split (tokenizer.json, pre_tokenizer.pretokenizers[0].pattern.Regex).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def fetch_llama3_files(dest: Path = LLAMA3_DIR) -> tuple[Path | None, str]:
    """Extract the vocabulary, its test vectors and Meta's templates from the pinned llama-cpp-python sdist.

    Returns (folder, "") or (None, why not) when pip cannot fetch the sdist (no registry access). Files whose
    sha256 differs from :data:`SHA256` (another llama-cpp-python pin, a damaged extract) are extracted again and
    then must match.
    """
    if all(_sha256(dest / m) == SHA256[m] for m in _MEMBERS):
        return dest, ""
    version = importlib.metadata.version("llama-cpp-python")
    sdist_dir = dest / "sdist"
    found = sorted(sdist_dir.glob(f"llama_cpp_python-{version}.tar.gz"))
    if not found:
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                "--quiet",
                f"llama-cpp-python=={version}",
                "-d",
                str(sdist_dir),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        found = sorted(sdist_dir.glob(f"llama_cpp_python-{version}.tar.gz"))
        if res.returncode != 0 or not found:
            return (
                None,
                f"pip could not fetch the llama-cpp-python {version} sdist: {res.stderr.strip()[-300:]}",
            )
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/models/"
    with tarfile.open(found[0]) as tar:
        for member in _MEMBERS:
            src = tar.extractfile(prefix + member)
            out = dest / member
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".part")
            tmp.write_bytes(src.read())
            tmp.replace(out)
    bad = [m for m in _MEMBERS if _sha256(dest / m) != SHA256[m]]
    assert not bad, (
        f"llama-cpp-python {version} ships other bytes for {bad}: update SHA256 in tests/llama3_ref.py"
    )
    return dest, ""


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def vocab_vectors(folder: Path) -> list[tuple[str, list[int]]]:
    """llama.cpp's tokenizer test vectors: inputs split on its separator, one line of ids per input
    (format of llama.cpp's tests/test-tokenizer-0.cpp)."""
    inputs = (folder / (VOCAB + ".inp")).read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    outputs = (folder / (VOCAB + ".out")).read_text(encoding="utf-8").split("\n")
    if inputs and inputs[-1].endswith("\n__ggml_vocab_test__"):
        inputs[-1] = inputs[-1][: -len("\n__ggml_vocab_test__")]
    assert len(outputs) >= len(inputs)
    return [(s, [int(t) for t in o.split()]) for s, o in zip(inputs, outputs)]


def reference_tokenizer(gguf_path: Path):
    """A PreTrainedTokenizerFast from the GGUF's own tokens and merges (Llama 3 split, byte-level BPE)."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    r = GGUFReader(str(gguf_path))
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    merges = r.fields["tokenizer.ggml.merges"].contents()
    bos = tokens[r.fields["tokenizer.ggml.bos_token_id"].contents()]
    eos = tokens[r.fields["tokenizer.ggml.eos_token_id"].contents()]
    assert r.fields["tokenizer.ggml.pre"].contents() == "llama-bpe"
    bpe = models.BPE(
        vocab={t: i for i, t in enumerate(tokens)},
        merges=[tuple(m.split(" ", 1)) for m in merges],
        ignore_merges=True,
    )  # Llama 3's tokenizer.json sets ignore_merges (llama.cpp does too)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3]
    )
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokens.index(bos))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos)


def chat_ids(
    hf, template: str, messages: list[dict], date_string: str, continue_final: bool = False
) -> list[int]:
    """transformers' apply_chat_template, tokenized (it adds no special tokens: the template writes BOS)."""
    out = hf.apply_chat_template(
        messages,
        chat_template=template,
        tokenize=True,
        add_generation_prompt=not continue_final,
        continue_final_message=continue_final,
        date_string=date_string,
    )
    return list(out["input_ids"] if not isinstance(out, list) else out)


def _render(field: str, doc: dict) -> str:
    return jinja2.Template(field, keep_trailing_newline=True).render(**doc)


def gsm8k_messages(cfg: dict, doc: dict) -> list[dict]:
    """Meta's GSM8K 8-shot CoT as chat turns: each shot a user question and an assistant answer."""
    msgs = []
    for shot in cfg["fewshot_config"]["samples"]:
        msgs += [
            {"role": "user", "content": _render(cfg["doc_to_text"], shot)},
            {"role": "assistant", "content": shot["target"]},
        ]
    return msgs + [{"role": "user", "content": _render(cfg["doc_to_text"], doc)}]


def gsm8k_plain(cfg: dict, doc: dict) -> str:
    """The same 8 shots as one plain text (base models): question + answer, shots separated by a blank line."""
    shots = "".join(
        _render(cfg["doc_to_text"], s) + cfg.get("target_delimiter", " ") + s["target"] + "\n\n"
        for s in cfg["fewshot_config"]["samples"]
    )
    return shots + _render(cfg["doc_to_text"], doc)


def mmlu_llama_messages(cfg: dict, shots: list[dict], doc: dict) -> list[dict]:
    """Meta's MMLU 5-shot chat format: assistant turns "The best answer is X.", the last one open."""
    prefix = cfg["gen_prefix"]
    msgs = []
    for s in shots:
        msgs += [
            {"role": "user", "content": _render(cfg["doc_to_text"], s)},
            {"role": "assistant", "content": f"{prefix} {'ABCD'[s['answer']]}."},
        ]
    return msgs + [
        {"role": "user", "content": _render(cfg["doc_to_text"], doc)},
        {"role": "assistant", "content": prefix},
    ]


def mmlu_plain(cfg: dict, shots: list[dict], doc: dict) -> str:
    """The Hendrycks MMLU prompt (base models): description, 5 answered shots, the question up to "Answer:"."""
    text = cfg["description"]
    for s in shots:
        text += _render(cfg["doc_to_text"], s) + " " + "ABCD"[s["answer"]] + "\n\n"
    return text + _render(cfg["doc_to_text"], doc)
