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
import glob
import json
import os
import pytest

import pocketlm  # noqa: E402
from jinja_reference import CONVERSATIONS, corpus_dir, reference_env  # noqa: E402

BASE = {"bos_token": "<s>", "eos_token": "</s>", "date_string": "26 Jul 2024"}

# Templates that do not yet render identically on every conversation: name -> (conversations that must match, why).
# Empty: all 70 templates of the corpus render identically on all 14 conversations.
KNOWN_SHORTFALLS = {}


def templates():
    return sorted(glob.glob(os.path.join(corpus_dir(), "templates", "*.jinja")))


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
