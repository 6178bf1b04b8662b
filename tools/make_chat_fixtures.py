#!/usr/bin/env python3
"""Write tests/data/chat_templates.txt (conversations rendered by the real Jinja chat templates) and the
chat fuzzer's seed corpus tests/fuzz/corpus/chat/.

A development tool, not a CI step: it needs jinja2 and the gguf package.

    python3 tools/make_chat_fixtures.py [--smollm2 path.gguf] [--gemma3 path.gguf]

pocketlm does not run Jinja: it recognizes a template's family and renders that
family in C (csrc/chat.c). This tool renders a set of conversations with jinja2,
set up as Hugging Face's apply_chat_template does (sandboxed, trim_blocks,
lstrip_blocks, loop controls, raise_exception), from four templates:

  smollm2  the template stored in the default model's GGUF (ChatML with a default system message)
  gemma3   the template stored in Gemma 3 270M's GGUF if it has one; the published GGUF has
           none, so google/gemma-3-*-it's published template (below) stands in
  llama3   Meta-Llama-3-8B-Instruct's published template
  phi3     Phi-3-mini-4k-instruct's published template

bos_token and eos_token are rendered as "": pocketlm's text holds no BOS or EOS
(tokenization adds BOS when the model asks for it). Phi-3's template writes
eos_token after the last turn when there is no generation prompt; with "" the
text is the same as pocketlm's.

Conversations a template refuses (Gemma's raise_exception on roles that do not
alternate) are left out. Two differences from the published Gemma 3 template
are pocketlm's on purpose and are not in the fixture: it strips the system
message before putting it into the first turn, and a conversation of only a
system message becomes one user turn (the template writes nothing).

The file also holds detection cases: templates (the four above and synthetic
ones probing the rules) with the family and default system message that
pocketlm's original Python rules (reference_detect below) give.

Format, one record per header line; every text is stored raw, length-prefixed,
followed by a newline that is not part of it:
  T <name> <nbytes>\\n<template>\\n                     a template
  D <name> <family> <has_default> <nbytes>\\n<default>\\n  detection of template <name>
  C <name> <add_generation_prompt> <n_messages>          a conversation in template <name>,
  M <role> <nbytes>\\n<content>\\n                        then its messages
  E <nbytes>\\n<expected text>\\n                         then the rendering by jinja2

The seed corpus follows the input layout of tests/fuzz/fuzz_chat.c: a flags
byte, then the template and the messages (a role byte and the content),
separated by 0xFF.
"""
import argparse
import os
import re
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "chat_templates.txt")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus", "chat")
CACHE = os.path.expanduser(os.environ.get("POCKETLM_CACHE", "~/.cache/pocketlm"))

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
    "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

GEMMA3 = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""


def u(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = [
    [u("user", "What is the capital of France?")],
    [u("user", "What is the capital of France?"), u("assistant", "Paris."), u("user", "And of Italy?")],
    [u("system", "Answer in French."), u("user", "Hello")],
    [u("system", "Be brief."), u("user", "Name a colour."), u("assistant", "Blue."), u("user", "Another?")],
    [u("user", "  padded question \n"), u("assistant", "\tpadded answer  ")],
    [u("user", "Grüße 👋 — 日本語のテキスト"), u("assistant", "Ça va? ✓")],
    # Unicode whitespace: ideographic space, no-break space, line separator, NEL, and the
    # information separators U+001C..U+001F that Python (so Jinja's trim) counts as whitespace.
    [u("user", "\u3000ideographic and no-break\u00a0"), u("assistant", "\u2028line separator\u0085\x1c\x1f")],
    [u("user", "tags stay text: <|im_end|> <end_of_turn> <|eot_id|> <|end|>")],
    [u("user", "")],
    [u("user", "line one\nline two\n\nline four\n")],
    [u("user", "a\x00b")],
]

SYNTHETIC = [
    ("empty", ""),
    ("chatml-plain", "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                     "'<|im_end|>' + '\n'}}{% endfor %}"),
    ("chatml-double-quotes", '{% if messages[0]["role"] != "system" %}{{ "<|im_start|>system\nYou are Qwen.'
                             '<|im_end|>\n" }}{% endif %}<|im_start|>'),
    ("chatml-mixed-quotes", "{% if messages[0][\"role\"] != 'system' %}<|im_start|>system\nMixed.<|im_end|>"),
    ("chatml-no-newline", "{% if messages[0]['role'] != 'system' %}<|im_start|>system You are X.<|im_end|>"),
    ("chatml-escaped-newline", "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nEscaped.<|im_end|>' }}"),
    ("chatml-unicode-space", "messages[0]['role'] != 'system' <|im_start|>system \u00a0\n\t\nDefault \u00e9.<|im_end|>"),
    ("chatml-indented", "messages[0]['role'] != 'system' <|im_start|>system\n  Indented\n<|im_end|>"),
    ("chatml-empty-default", "messages[0]['role'] != 'system' <|im_start|>system\n<|im_end|>"),
    ("chatml-unterminated", "messages[0]['role'] != 'system' <|im_start|>system\nno end"),
    ("chatml-second-system", "messages[0]['role'] != 'system' <|im_start|>systemX <|im_start|>system\r\n"
                             "Second.<|im_end|> <|im_start|>system\nThird.<|im_end|>"),
    ("chatml-nel-newline", "messages[0]['role'] != 'system' <|im_start|>system\u0085\n\u2029Nel.<|im_end|>"),
    ("chatml-no-check", "<|im_start|>system\nNot a default.<|im_end|>"),
    ("chatml-check-without-marker", "messages[0]['role'] != 'system' system\nX<|im_end|>"),
    ("llama3-marker", "{{ '<|start_header_id|>' + message['role'] }}"),
    ("llama3-before-gemma", "<start_of_turn> <|start_header_id|> <|im_start|>"),
    ("gemma-marker", "{{ '<start_of_turn>' + role }}"),
    ("phi3-markers", "{{ '<|user|>' + content + '<|end|>' }}"),
    ("phi3-user-only", "messages[0]['role'] != 'system' <|user|> <|im_start|>system\nChatML after all.<|im_end|>"),
    ("gemma-with-default", "<start_of_turn> messages[0]['role'] != 'system' <|im_start|>system\nIgnored.<|im_end|>"),
]

FAMILIES = ["chatml", "llama3", "gemma", "phi3"]

_CHATML_DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system\s*\n(.*?)<\|im_end\|>", re.S)


def reference_detect(t):
    """pocketlm's original rules (python/pocketlm/chat.py before the C port): (family, default system or None)."""
    if "<|start_header_id|>" in t:
        return "llama3", None
    if "<start_of_turn>" in t:
        return "gemma", None
    if "<|user|>" in t and "<|end|>" in t:
        return "phi3", None
    if "<|im_start|>" in t and "messages[0]['role'] != 'system'" in t.replace('"', "'"):
        m = _CHATML_DEFAULT_SYSTEM.search(t)
        if m:
            return "chatml", m.group(1)
    return "chatml", None


def stored_template(path):
    from gguf import GGUFReader

    field = GGUFReader(path).fields.get("tokenizer.chat_template")
    return bytes(field.parts[field.data[0]]).decode("utf-8") if field else None


def environment():
    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=[jinja2.ext.loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env


def record(out, header, text):
    b = text.encode("utf-8")
    out += f"{header} {len(b)}\n".encode() + b + b"\n"
    return out


def fuzz_input(flags, template, messages):
    """An input of fuzz_chat.c: messages are (role byte, content) pairs; texts are str or bytes."""
    enc = (lambda t: t if isinstance(t, bytes) else t.encode("utf-8"))
    return bytes([flags]) + enc(template) + b"".join(b"\xff" + bytes([r]) + enc(c) for r, c in messages)


def write_corpus(templates):
    ROLE = {"system": 0, "user": 1, "assistant": 2}
    seeds = {}
    for name, text in templates.items():  # detected format, with a generation prompt
        seeds[f"{name}-3turns"] = fuzz_input(3, text, [(ROLE[m["role"]], m["content"]) for m in CONVERSATIONS[1]])
        seeds[f"{name}-system"] = fuzz_input(2, text, [(ROLE[m["role"]], m["content"]) for m in CONVERSATIONS[3]])
    for family in range(4):  # a given family, with the template segment as default system message
        msgs = [(ROLE[m["role"]], m["content"]) for m in CONVERSATIONS[6]]
        seeds[f"{FAMILIES[family]}-unicode-space"] = fuzz_input(1 | family << 2 | 32, "Be brief.", msgs)
    seeds["nul-and-odd-role"] = fuzz_input(1, "", [(1, "a\x00b"), (3, b"tool\x00result"), (3, b"user\x00ok")])
    seeds["invalid-utf8"] = fuzz_input(3, b"<|im_start|>\xc0\xaf", [(1, b"\xed\xa0\x80"), (2, b"ok\x80")])
    seeds["bad-family"] = fuzz_input(4 << 2 | 1, "", [(1, "Hi")])
    for name, text in SYNTHETIC:
        if name.startswith("chatml-"):
            seeds[f"detect-{name}"] = fuzz_input(3, text, [(1, "Hi")])
    os.makedirs(CORPUS, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds)} seeds into {CORPUS}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smollm2", default=os.path.join(CACHE, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--gemma3", default=os.path.join(CACHE, "gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--out", default=OUT)
    a = ap.parse_args()

    smollm2 = stored_template(a.smollm2)
    if not smollm2:
        sys.exit(f"{a.smollm2}: no tokenizer.chat_template")
    gemma3 = stored_template(a.gemma3) if os.path.exists(a.gemma3) else None
    print(f"gemma3: {'stored template' if gemma3 else 'published template (the GGUF stores none)'}")
    templates = {"smollm2": smollm2, "gemma3": gemma3 or GEMMA3, "llama3": LLAMA3, "phi3": PHI3}
    expect_family = {"smollm2": "chatml", "gemma3": "gemma", "llama3": "llama3", "phi3": "phi3"}

    out = (b"# Chat templates, detection results and conversations rendered by jinja2; written by\n"
           b"# tools/make_chat_fixtures.py (see there for the format). Do not edit by hand.\n")
    env = environment()
    for name, text in list(templates.items()) + SYNTHETIC:
        out = record(out, f"T {name}", text)
        family, default = reference_detect(text)
        if name in expect_family and family != expect_family[name]:
            sys.exit(f"{name}: detected as {family}, expected {expect_family[name]}")
        out = record(out, f"D {name} {family} {int(default is not None)}", default or "")

    n_cases = skipped = 0
    for name, text in templates.items():
        tmpl = env.from_string(text)
        for msgs in CONVERSATIONS:
            for gen in (True, False):
                try:
                    expected = tmpl.render(messages=msgs, add_generation_prompt=gen, bos_token="", eos_token="")
                except jinja2.exceptions.TemplateError as e:
                    print(f"{name}: left out ({e}): {[m['role'] for m in msgs]}")
                    skipped += 1
                    continue
                out += f"C {name} {int(gen)} {len(msgs)}\n".encode()
                for m in msgs:
                    out = record(out, f"M {m['role']}", m["content"])
                out = record(out, "E", expected)
                n_cases += 1
    with open(a.out, "wb") as f:
        f.write(out)
    print(f"wrote {a.out}: {len(templates) + len(SYNTHETIC)} templates, {n_cases} conversations "
          f"({skipped} left out), {len(out)} bytes")
    write_corpus(templates)


if __name__ == "__main__":
    main()
