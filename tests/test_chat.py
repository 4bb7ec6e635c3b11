"""Chat template rendering (GGUF template, transformers semantics) and BOS handling."""

from harness.backends.llamacpp.lm_model import render_chat

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def test_generation_prompt_and_bos_from_template():
    text = render_chat(
        LLAMA3_TEMPLATE, [{"role": "user", "content": "Hi"}], True, "<|begin_of_text|>", "<|eot_id|>"
    )
    assert text.startswith("<|begin_of_text|><|start_header_id|>user")
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_gen_prefix_continues_the_assistant_turn():
    msgs = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "The best answer is"}]
    text = render_chat(LLAMA3_TEMPLATE, msgs, False, "<|begin_of_text|>", "<|eot_id|>")
    assert text.endswith("assistant<|end_header_id|>\n\nThe best answer is")  # no <|eot_id|> after it


def test_no_double_bos(engine):
    bos = engine.token_text(engine.bos_id)
    saved = engine.add_bos
    engine.add_bos = True  # behave like a Llama 3 GGUF, whose tokenizer adds BOS
    try:
        plain = engine.tokenize("Hello")
        templated = engine.tokenize(bos + "Hello")
    finally:
        engine.add_bos = saved
    assert plain[0] == engine.bos_id and plain[1] != engine.bos_id
    assert templated.count(engine.bos_id) == 1 and templated[0] == engine.bos_id


def test_smollm2_template_renders_chatml(engine):
    tpl = engine.meta("tokenizer.chat_template")
    text = render_chat(tpl, [{"role": "user", "content": "2+2?"}], True, "", "")
    assert "<|im_start|>user\n2+2?<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
