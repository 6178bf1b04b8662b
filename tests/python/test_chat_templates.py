"""The C Jinja interpreter (plm_chat_template_render) against Python's jinja2 on every chat template of llama.cpp's
corpus (tools/fetch_vocab_suite.py; `make corpus`), over a set of conversations: with and without a system prompt,
multi-turn, tool definitions, tool calls and results, generation prompt on and off, enable_thinking.

jinja2 is the reference, in the environment Hugging Face renders chat templates in (trim_blocks, lstrip_blocks, loop
controls, raise_exception, strftime_now, and tojson as json.dumps with ensure_ascii=False). A conversation a template
refuses (raise_exception, or an error in jinja2) must be refused by C too. Run as a script it prints, per template,
how many conversations render identically; the test asserts that no template regresses below the counts in
KNOWN_SHORTFALLS (and that every other template matches on every conversation).
"""

import ctypes
import datetime
import glob
import json
import os
import subprocess
import sys

import pytest

import jinja2  # noqa: E402  (the test extra)
import jinja2.ext  # noqa: E402
import jinja2.nodes  # noqa: E402
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402

import pocketlm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city"},
                           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}
TOOL_CALL = {"role": "assistant", "content": "",
             "tool_calls": [{"id": "call_1", "type": "function",
                             "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]}
TOOL_RESULT = {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temperature\": 21}"}

SYS = {"role": "system", "content": "You are a helpful assistant."}
U1 = {"role": "user", "content": "Hello! What is 2+2?"}
A1 = {"role": "assistant", "content": "2 + 2 = 4."}
U2 = {"role": "user", "content": "And 3 * 3?\nAnswer briefly."}
A2 = {"role": "assistant", "content": "9"}
U3 = {"role": "user", "content": "Thanks — merci, 谢谢 😀"}

# (name, messages, extra variables)
CONVERSATIONS = [
    ("user", [U1], {"add_generation_prompt": True}),
    ("user-nogen", [U1], {"add_generation_prompt": False}),
    ("system-user", [SYS, U1], {"add_generation_prompt": True}),
    ("system-user-nogen", [SYS, U1], {"add_generation_prompt": False}),
    ("multi-turn", [U1, A1, U2], {"add_generation_prompt": True}),
    ("system-multi-turn", [SYS, U1, A1, U2, A2, U3], {"add_generation_prompt": True}),
    ("ends-with-assistant", [SYS, U1, A1], {"add_generation_prompt": False}),
    ("unicode", [U3], {"add_generation_prompt": True}),
    ("tools", [U1], {"add_generation_prompt": True, "tools": [WEATHER_TOOL]}),
    ("system-tools", [SYS, {"role": "user", "content": "Weather in Paris?"}], {"add_generation_prompt": True,
                                                                                 "tools": [WEATHER_TOOL]}),
    ("tool-call", [{"role": "user", "content": "Weather in Paris?"}, TOOL_CALL, TOOL_RESULT],
     {"add_generation_prompt": True, "tools": [WEATHER_TOOL]}),
    ("tool-call-answered", [SYS, {"role": "user", "content": "Weather in Paris?"}, TOOL_CALL, TOOL_RESULT,
                            {"role": "assistant", "content": "It is 21 °C in Paris."}],
     {"add_generation_prompt": False, "tools": [WEATHER_TOOL]}),
    ("thinking-off", [U1], {"add_generation_prompt": True, "enable_thinking": False}),
    ("thinking-on", [SYS, U1], {"add_generation_prompt": True, "enable_thinking": True}),
]

BASE = {"bos_token": "<s>", "eos_token": "</s>", "date_string": "26 Jul 2024"}

# Templates that do not yet render identically on every conversation: name -> (conversations that must match, why).
# Empty: all 70 templates of the corpus render identically on all 14 conversations.
KNOWN_SHORTFALLS = {}


def corpus_dir():
    d = os.environ.get("POCKETLM_CORPUS")
    if not d:
        cache = os.environ.get("POCKETLM_CACHE") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "pocketlm")
        d = os.path.join(cache, "llama-cpp-corpus")
    if not os.path.isfile(os.path.join(d, "STAMP")):
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "fetch_vocab_suite.py")], check=True,
                       stdout=subprocess.DEVNULL)
    return d


def templates():
    return sorted(glob.glob(os.path.join(corpus_dir(), "templates", "*.jinja")))


class _Generation(jinja2.ext.Extension):
    """Hugging Face's {% generation %} ... {% endgeneration %}: marks assistant text; renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def reference_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols", _Generation])

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def reference(template, variables):
    """jinja2's rendering, or the exception when the template refuses the conversation (or cannot be parsed)."""
    if isinstance(template, Exception):
        return template
    try:
        return template.render(**variables)
    except Exception as e:
        return e


_lib = None


def c_render(source, variables):
    global _lib
    if _lib is None:
        # the C library inside the installed extension ($POCKETLM_LIB: another build of it, e.g. build/libpocketlm.so)
        _lib = ctypes.CDLL(os.environ.get("POCKETLM_LIB") or
                           glob.glob(os.path.join(os.path.dirname(pocketlm.__file__), "_core_c*.so"))[0])
        _lib.plm_chat_template_render.restype = ctypes.c_int
        _lib.plm_chat_template_render.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
                                                  ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
        _lib.plm_last_error.restype = ctypes.c_char_p
        _lib.plm_free.argtypes = [ctypes.c_void_p]
    src = source.encode("utf-8")
    js = json.dumps(variables, ensure_ascii=False).encode("utf-8")
    out = ctypes.c_void_p()
    n = ctypes.c_size_t()
    st = _lib.plm_chat_template_render(src, len(src), js, len(js), ctypes.byref(out), ctypes.byref(n))
    if st != 0:
        return RuntimeError(_lib.plm_last_error().decode("utf-8", "replace"))
    text = ctypes.string_at(out, n.value).decode("utf-8")
    _lib.plm_free(out)
    return text


def compare(path, env):
    """Per conversation: (name, identical, reference result, C result)."""
    with open(path, encoding="utf-8") as f:
        source = f.read()
    try:
        template = env.from_string(source)
    except Exception as e:
        template = e
    rows = []
    for name, messages, extra in CONVERSATIONS:
        variables = dict(BASE, messages=messages, **extra)
        ref = reference(template, json.loads(json.dumps(variables)))
        got = c_render(source, variables)
        same = (isinstance(ref, Exception) and isinstance(got, Exception)) or ref == got
        rows.append((name, same, ref, got))
    return rows


@pytest.mark.parametrize("path", templates(), ids=lambda p: os.path.basename(p)[:-6])
def test_template_renders_as_jinja2(path):
    rows = compare(path, reference_env())
    name = os.path.basename(path)[:-6]
    n_same = sum(r[1] for r in rows)
    want = KNOWN_SHORTFALLS.get(name, (len(rows), ""))[0]
    bad = [(r[0], r[2], r[3]) for r in rows if not r[1]]
    assert n_same >= want, "%s: %d of %d conversations identical; first difference: %r" % (name, n_same, len(rows), bad[:1])


def main():
    env = reference_env()
    total = identical = 0
    for path in templates():
        rows = compare(path, env)
        n_same = sum(r[1] for r in rows)
        total += 1
        identical += n_same == len(rows)
        name = os.path.basename(path)[:-6]
        line = "%-50s %2d/%d" % (name, n_same, len(rows))
        bad = [r for r in rows if not r[1]]
        if bad:
            r = bad[0]
            detail = r[3] if isinstance(r[3], Exception) else ("jinja2: %r" % r[2] if isinstance(r[2], Exception) else "differs")
            line += "  first: %s: %s" % (r[0], str(detail)[:150])
        print(line)
    print("templates rendering identically on all %d conversations: %d of %d" % (len(CONVERSATIONS), identical, total))


if __name__ == "__main__":
    main()
