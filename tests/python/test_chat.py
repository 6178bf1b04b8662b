"""Chat templates: the format is chosen from the template stored in the file."""

import pytest

import pocketlm
from pocketlm.chat import detect_format, get_format

MESSAGES = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
]


def test_smollm2_uses_chatml_with_its_default_system(model):
    fmt = model.chat_format
    assert fmt.name == "chatml"
    assert fmt.default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.mark.parametrize("messages", [
    MESSAGES[:1],
    MESSAGES,
    [{"role": "system", "content": "Answer in French."}] + MESSAGES,
])
def test_rendering_equals_the_stored_jinja_template(model, messages):
    jinja2 = pytest.importorskip("jinja2")
    expected = jinja2.Environment().from_string(model.info.chat_template).render(
        messages=messages, add_generation_prompt=True)
    assert model.apply_chat_template(messages) == expected


def test_other_families():
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert detect_format("{{ '<|start_header_id|>' + message['role'] }}").render(msgs) == (
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert detect_format("{{ '<start_of_turn>' + role }}").render(msgs + [{"role": "assistant", "content": "Hello"}]) == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello<end_of_turn>\n"
        "<start_of_turn>model\n")
    assert detect_format("{{ '<|user|>' + content + '<|end|>' }}").render(msgs) == (
        "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n")
    assert detect_format("").name == "chatml"
    assert get_format("gemma").name == "gemma"
    with pytest.raises(ValueError):
        get_format("nope")


def test_chat_returns_the_reply(model):
    reply = model.chat("What is 2 + 2?", max_tokens=24, temperature=0)
    assert isinstance(reply, str) and reply.strip()
    assert "<|im_end|>" not in reply and "<|im_start|>" not in reply


def test_chat_stream(model):
    s = model.chat(MESSAGES, stream=True, max_tokens=16, temperature=0)
    assert isinstance(s, pocketlm.Stream)
    text = "".join(s)
    assert text == model.chat(MESSAGES, max_tokens=16, temperature=0)
    assert s.stop_reason in ("eog", "length")


def test_bad_messages(model):
    with pytest.raises(ValueError):
        model.apply_chat_template([{"content": "no role"}])
    with pytest.raises(TypeError):
        model.apply_chat_template([{"role": "user", "content": 3}])
