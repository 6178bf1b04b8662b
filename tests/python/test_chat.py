"""Chat templates: the format is chosen from the template stored in the file.

Rendering runs in C (csrc/chat.c); tests/data/chat_templates.txt holds conversations rendered by jinja2 from the
real templates (tools/make_chat_fixtures.py), which this module and tests/c/test_chat.c both compare with.
"""

import os

import pytest

import pocketlm
from pocketlm.chat import FORMATS, ChatFormat, detect_format, get_format

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "chat_templates.txt")


def _read_fixture():
    """(templates {name: text}, detections {name: (family, default or None)}, cases [(name, gen, msgs, expected)])."""
    with open(FIXTURE, "rb") as f:
        data = f.read()
    pos = 0

    def line():
        nonlocal pos
        end = data.index(b"\n", pos)
        text, pos = data[pos:end].decode(), end + 1
        return text.split(" ")

    def blob(n):
        nonlocal pos
        assert data[pos + n:pos + n + 1] == b"\n"
        text, pos = data[pos:pos + n].decode("utf-8"), pos + n + 1
        return text

    templates, detections, cases = {}, {}, []
    while pos < len(data):
        f = line()
        if f[0].startswith("#"):
            continue
        if f[0] == "T":
            templates[f[1]] = blob(int(f[2]))
        elif f[0] == "D":
            default = blob(int(f[4]))
            detections[f[1]] = (f[2], default if f[3] == "1" else None)
        elif f[0] == "C":
            msgs = []
            for _ in range(int(f[3])):
                m = line()
                msgs.append({"role": m[1], "content": blob(int(m[2]))})
            e = line()
            cases.append((f[1], f[2] == "1", msgs, blob(int(e[1]))))
        else:
            raise AssertionError(f"bad fixture line {f}")
    return templates, detections, cases


TEMPLATES, DETECTIONS, CASES = _read_fixture()

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


@pytest.mark.parametrize("name", sorted(DETECTIONS))
def test_detection_follows_the_rules(name):
    fmt = detect_format(TEMPLATES[name])
    assert (fmt.name, fmt.default_system) == DETECTIONS[name]


@pytest.mark.parametrize("i", range(len(CASES)))
def test_rendering_equals_jinja(i):
    name, gen, msgs, expected = CASES[i]
    assert detect_format(TEMPLATES[name]).render(msgs, add_generation_prompt=gen) == expected


def test_fixture_covers_every_family():
    assert len(CASES) >= 80
    families = {detect_format(TEMPLATES[name]).name for name, _, _, _ in CASES}
    assert families == set(FORMATS)


def test_formats_and_stop_markers():
    assert list(FORMATS) == ["chatml", "llama3", "gemma", "phi3"]
    assert {n: get_format(n).stop for n in FORMATS} == {
        "chatml": ("<|im_end|>",), "llama3": ("<|eot_id|>",), "gemma": ("<end_of_turn>",), "phi3": ("<|end|>",)}
    assert repr(get_format("phi3")) == "<pocketlm.ChatFormat phi3>"
    assert isinstance(get_format("llama3"), ChatFormat)
    # a default system message set by hand; "" is a default too (None is none)
    assert get_format("chatml").__class__("Be kind.").render("Hi", add_generation_prompt=False) == (
        "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n")
    assert FORMATS["chatml"]("").render([], add_generation_prompt=False) == "<|im_start|>system\n<|im_end|>\n"
    with pytest.raises(ValueError):
        get_format(None)


def test_text_survives_as_given():
    fmt = get_format("chatml")
    assert fmt.render([{"role": "user", "content": "a\x00b 👋"}], add_generation_prompt=False) == (
        "<|im_start|>user\na\x00b 👋<|im_end|>\n")
    # Python's whitespace, as Jinja's trim: U+3000 and U+001C are stripped, U+200B is not
    assert get_format("llama3").render("\u3000\x1c\u200bHi\n", add_generation_prompt=False) == (
        "<|start_header_id|>user<|end_header_id|>\n\n\u200bHi<|eot_id|>")


def test_bad_roles_and_text_are_errors_naming_the_message():
    fmt = get_format("gemma")
    with pytest.raises(pocketlm.InvalidArgumentError, match=r"message 1: role \"tool\" is not one of system, user"):
        fmt.render([{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}])
    with pytest.raises(ValueError, match="message 0"):
        fmt.render([{"role": "user\x00", "content": "a"}])
    with pytest.raises(ValueError):  # a lone surrogate cannot be encoded as UTF-8
        fmt.render([{"role": "user", "content": "\ud800"}])
    with pytest.raises(ValueError):
        FORMATS["chatml"]("\udfff").render("Hi")
    with pytest.raises(TypeError, match="message 0"):
        fmt.render([{"role": "user", "content": None}])
    with pytest.raises(ValueError):
        detect_format("\ud800")


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
