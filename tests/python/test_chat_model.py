"""Chats rendered by the model's own template (plm_chat_apply, through Model.apply_chat_template / chat / chat_many)
against Python's jinja2 rendering the same template with the same variables (jinja_reference.py): the default
model's stored template, and Gemma's template from llama.cpp's corpus on the Gemma 3 270M vocabulary (whose file
stores no template: it keeps the ChatML it had); system prompts, multi-turn, tool definitions, calls and results,
enable_thinking, generation prompt on and off. A template the interpreter cannot render raises an error naming
the construct and its line."""

import json
import os

import pytest

import pocketlm
from jinja_reference import CONVERSATIONS, TOOL_CALL, TOOL_RESULT, WEATHER_TOOL, corpus_dir, reference_env


@pytest.fixture(scope="module")
def vocab(model_path):
    with pocketlm.Model(model_path, vocab_only=True) as m:
        yield m


@pytest.fixture(scope="module")
def gemma():
    from pocketlm import registry
    path = registry.model_path("gemma3-270m")
    if not os.path.isfile(path):
        pytest.fail(f"Gemma 3 270M is not at {path}: run tools/fetch_gemma3.sh (or make model)")
    with pocketlm.Model(path, vocab_only=True) as m:
        yield m


def jinja2_prompt(model, source, messages, variables):
    """jinja2's rendering with the vocabulary's BOS and EOS texts, without the BOS text at the very start when
    tokenization adds BOS (as plm_chat_apply documents); the exception when the template refuses."""
    bos = model.token_to_piece(model.info.bos, special=True).decode("utf-8")
    eos = model.token_to_piece(model.info.eos, special=True).decode("utf-8")
    v = dict(variables, messages=messages, bos_token=bos, eos_token=eos)
    try:
        text = reference_env().from_string(source).render(**json.loads(json.dumps(v)))
    except Exception as e:  # raise_exception, or an error jinja2 raises
        return e
    return text[len(bos):] if model.info.add_bos and bos and text.startswith(bos) else text


def pocketlm_prompt(model, messages, variables, **kw):
    v = dict(variables)
    gen = v.pop("add_generation_prompt")
    tools = v.pop("tools", None)
    try:
        return model.apply_chat_template(messages, add_generation_prompt=gen, tools=tools,
                                         chat_template_kwargs=v or None, **kw)
    except pocketlm.Error as e:
        return e


def check_all(model, source, **kw):
    for name, messages, variables in CONVERSATIONS:
        want = jinja2_prompt(model, source, messages, variables)
        got = pocketlm_prompt(model, messages, variables, **kw)
        if isinstance(want, Exception):
            assert isinstance(got, pocketlm.InvalidArgumentError), (name, want, got)
        else:
            assert got == want, name


def test_default_model_renders_as_jinja2(vocab):
    check_all(vocab, vocab.info.chat_template)


def test_default_model_tool_turns_reach_the_template(vocab):
    # SmolLM2's template writes a tool's result as a turn of role "tool" and reads no tool definitions
    text = vocab.apply_chat_template([{"role": "user", "content": "Weather?"}, TOOL_CALL, TOOL_RESULT],
                                     tools=[WEATHER_TOOL])
    assert "<|im_start|>tool\n{\"temperature\": 21}<|im_end|>\n" in text


def test_gemma_template_renders_as_jinja2(gemma):
    with open(os.path.join(corpus_dir(), "templates", "google-gemma-2-2b-it.jinja"), encoding="utf-8") as f:
        source = f.read()
    assert source.startswith("{{ bos_token }}") and gemma.info.add_bos  # the BOS text is left to tokenization
    check_all(gemma, source, chat_template=source)
    # and it is what the Gemma family renderer gave
    msgs = [{"role": "user", "content": " Hi "}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "2+2?"}]
    assert gemma.apply_chat_template(msgs, chat_template=source) == pocketlm.get_format("gemma").render(msgs)


def test_gemma3_without_template_is_chatml_as_before(gemma):
    assert gemma.info.chat_template == ""
    for name, messages, variables in CONVERSATIONS[:8]:  # role and content only: what the family renderer takes
        gen = variables["add_generation_prompt"]
        assert gemma.apply_chat_template(messages, add_generation_prompt=gen) == \
            pocketlm.get_format("chatml").render(messages, add_generation_prompt=gen), name


def test_named_formats_render_as_the_family_renderer(vocab):
    msgs = [{"role": "system", "content": " Sys "}, {"role": "user", "content": "a\x00b 👋"},
            {"role": "assistant", "content": "\u3000x\u00a0"}]
    for name in ("chatml", "llama3", "gemma", "phi3"):
        for gen in (True, False):
            assert vocab.apply_chat_template(msgs, template=name, add_generation_prompt=gen) == \
                pocketlm.get_format(name).render(msgs, add_generation_prompt=gen)


def test_chat_uses_the_template_and_its_stops(model):
    msgs = [{"role": "user", "content": "What is 2 + 2?"}]
    prompt = model.apply_chat_template(msgs)
    want = model.generate(prompt, max_tokens=12, temperature=0, stop=["<|im_end|>"], add_special=True,
                          parse_special=True)
    assert model.chat(msgs, max_tokens=12, temperature=0) == want
    assert model.chat_many([msgs], max_tokens=12, temperature=0, progress=False) == [want]
    # chat_template_kwargs reach the template
    own = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{{ suffix }}<|im_end|>\n{% endfor %}" \
          "<|im_start|>assistant\n"
    assert model.apply_chat_template(msgs, chat_template=own, chat_template_kwargs={"suffix": "!"}) == \
        "<|im_start|>user\nWhat is 2 + 2?!<|im_end|>\n<|im_start|>assistant\n"


def test_unrenderable_template_names_construct_and_line(vocab):
    bad = "{% for m in messages %}{{ m.content }}\n{% endfor %}\n{{ messages | wordwrap(5) }}"
    with pytest.raises(pocketlm.UnsupportedError, match=r"line 3.*wordwrap|wordwrap.*line 3"):
        vocab.apply_chat_template("Hi", chat_template=bad)
    with pytest.raises(pocketlm.InvalidArgumentError, match="only users here"):
        vocab.apply_chat_template("Hi", chat_template="{{ raise_exception('only users here') }}")


def test_message_errors(vocab):
    with pytest.raises(pocketlm.InvalidArgumentError, match=r'message 1: role "robot" is not one of system, user'):
        vocab.apply_chat_template([{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}])
    with pytest.raises(pocketlm.InvalidArgumentError, match=r'message 0: role "tool" is not one of system, user'):
        vocab.apply_chat_template([TOOL_RESULT], template="chatml")
    with pytest.raises(ValueError, match="message 0"):
        vocab.apply_chat_template([{"role": "user"}])
    with pytest.raises(TypeError, match="message 0"):
        vocab.apply_chat_template([{"role": "user", "content": {"a": 1}}])
    with pytest.raises(ValueError):
        vocab.apply_chat_template([{"role": "user", "content": "\ud800"}])
    with pytest.raises(ValueError, match="not both"):
        vocab.apply_chat_template("Hi", template="chatml", chat_template="x")
    with pytest.raises(ValueError, match="unknown chat format"):
        vocab.apply_chat_template("Hi", template="mistral")
    with pytest.raises(TypeError, match="chat_template_kwargs"):
        vocab.apply_chat_template("Hi", chat_template_kwargs=[1])


def _cli(*args, stdin=""):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "pocketlm", *args], input=stdin, capture_output=True, text=True,
                          timeout=300)


def test_cli_chat_takes_a_template_and_its_variables(model, model_path, tmp_path):
    own = tmp_path / "own.jinja"
    own.write_text("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{{ suffix }}<|im_end|>\n"
                   "{% endfor %}<|im_start|>assistant\n", encoding="utf-8")
    r = _cli("chat", "-m", model_path, "-n", "8", "--temp", "0", "-t", "1", "--chat-template", str(own),
             "--chat-template-kwargs", '{"suffix": " Answer in one word."}', stdin="What is 2 + 2?\n/exit\n")
    assert r.returncode == 0, r.stderr
    want = model.chat("What is 2 + 2?", chat_template=own.read_text(encoding="utf-8"),
                      chat_template_kwargs={"suffix": " Answer in one word."}, max_tokens=8, temperature=0)
    assert want.strip() and r.stdout.strip() == want.strip()
    own.write_text("{{ messages[0].content }}\n{% include 'other.jinja' %}", encoding="utf-8")
    r = _cli("chat", "-m", model_path, "-n", "8", "--chat-template", str(own), stdin="Hi\n/exit\n")
    assert r.returncode == 1 and "PLM_ERR_UNSUPPORTED" in r.stderr and "line 2" in r.stderr and "Traceback" not in r.stderr
