"""The reference for chat templates: Python's jinja2 (the test extra) in the environment Hugging Face renders them in
(trim_blocks, lstrip_blocks, loop controls, {% generation %}, raise_exception, strftime_now, and tojson as
json.dumps with ensure_ascii=False). Shared by test_chat_templates.py and test_chat_model.py, with the conversations
both render and the corpus of llama.cpp's templates (tools/fetch_vocab_suite.py)."""

import datetime
import json
import os
import subprocess
import sys

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

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
