"""Structured output on the default model: every output that ended by end-of-generation parses and validates
with the ``jsonschema`` package (an implementation independent of pocketlm's), regexes are checked with ``re``,
choices by membership, GBNF with a recognizer written here; malformed grammars, schemas and expressions raise
InvalidArgumentError naming line:column.

The schema suite (tests/data/json_schemas.json, 61 schemas covering every supported keyword and nesting) runs
greedy on every schema and with seeds 1-3 on every fifth; POCKETLM_FULL_SCHEMA_SUITE=1 runs the three seeds on
all of them (about 240 generations). Under the sanitizers (POCKETLM_TEST_QUICK=1, set by make python-test-asan)
every third schema runs greedy and every fifteenth with the seeds: the same compiler and mask code, a third of the
generations.
"""

import datetime
import json
import os
import re

import pytest

import pocketlm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
with open(os.path.join(ROOT, "tests", "data", "json_schemas.json"), encoding="utf-8") as f:
    SUITE = json.load(f)

FULL = os.environ.get("POCKETLM_FULL_SCHEMA_SUITE", "") not in ("", "0")
QUICK = os.environ.get("POCKETLM_TEST_QUICK") == "1" and not FULL


def validate(schema, value):
    jsonschema = pytest.importorskip("jsonschema")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls(schema, format_checker=cls.FORMAT_CHECKER).validate(value)
    # jsonschema checks date-time and time only with optional packages: check them here too.
    def walk(s, v):
        if not isinstance(s, dict):
            return
        if s.get("format") == "date-time" and isinstance(v, str):
            datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
        if s.get("format") == "time" and isinstance(v, str):
            datetime.time.fromisoformat(v.replace("Z", "+00:00"))
        for k, sub in (s.get("properties") or {}).items():
            if isinstance(v, dict) and k in v:
                walk(sub, v[k])
        if isinstance(v, list) and isinstance(s.get("items"), dict):
            for x in v:
                walk(s["items"], x)
    walk(schema, value)


def run_case(model, case, seed):
    prompt = case["prompt"] + "\nAnswer with JSON only."
    kw = dict(temperature=0) if seed is None else dict(temperature=0.9, seed=seed)
    s = model.chat(prompt, stream=True, max_tokens=160, json_schema=case["schema"], **kw)
    with s:
        text = "".join(s)
    return text, s.stop_reason


def cases():
    out = []
    for i, case in enumerate(SUITE):
        if QUICK and i % 3:
            continue
        out.append(pytest.param(case, None, id=f"{case['name']}-greedy"))
        if FULL or i % (15 if QUICK else 5) == 0:
            for seed in (1, 2, 3):
                out.append(pytest.param(case, seed, id=f"{case['name']}-seed{seed}"))
    return out


@pytest.mark.parametrize("case,seed", cases())
def test_schema_suite_outputs_validate(model, case, seed):
    text, reason = run_case(model, case, seed)
    if reason == "eog":
        value = json.loads(text)
        validate(case["schema"], value)
    else:
        # Cut by max_tokens: what was written must still be a prefix the grammar allows (never invalid).
        assert reason == "length", (reason, text)
        assert len(model.tokenize(text, add_special=False)) >= 100, text


def test_suite_is_large_and_covers_the_keywords():
    assert len(SUITE) >= 60
    text = json.dumps([c["schema"] for c in SUITE])
    for kw in ("type", "properties", "required", "additionalProperties", "items", "prefixItems", "enum", "const",
               "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "minItems", "maxItems", "minLength",
               "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "format"):
        assert f'"{kw}"' in text, kw
    for fmt in ("date", "time", "date-time", "uuid", "email"):
        assert f'"format": "{fmt}"' in text, fmt


def test_every_suite_schema_compiles_quickly():
    import time
    for case in SUITE:
        t = time.perf_counter()
        pocketlm.Grammar.from_json_schema(case["schema"])
        assert time.perf_counter() - t < 0.25, case["name"]


def test_choices_and_regex(model):
    for seed in (None, 1, 2):
        kw = dict(temperature=0) if seed is None else dict(temperature=1.0, seed=seed)
        out = model.generate("The weather today is", choices=[" sunny", " rainy", " cloudy and cold"], **kw)
        assert out in (" sunny", " rainy", " cloudy and cold")
        pattern = r"\(\d{3}\) \d{3}-\d{4}"
        out = model.generate("Call us at", regex=pattern, max_tokens=40, **kw)
        assert re.fullmatch(pattern, out), out
        pattern = r"[A-Z][a-z]{2,8}( [A-Z][a-z]{2,8})?"
        out = model.generate("The hero's name is", regex=pattern, max_tokens=40, **kw)
        assert re.fullmatch(pattern, out), out


def test_gbnf_output_is_a_sentence(model):
    gbnf = 'root ::= "1. " move " " move "\\n" ([1-9] ". " move " " move "\\n"){0,3}\n' \
           'move ::= [a-h] [1-8] | [NBRQK] [a-h] [1-8]\n'
    move = r"(?:[a-h][1-8]|[NBRQK][a-h][1-8])"
    rx = re.compile(rf"1\. {move} {move}\n(?:[1-9]\. {move} {move}\n){{0,3}}")
    for seed in (None, 7):
        kw = dict(temperature=0) if seed is None else dict(temperature=1.0, seed=seed)
        s = model.stream("A chess game in short notation:\n", grammar=gbnf, max_tokens=80, **kw)
        text = "".join(s)
        if s.stop_reason == "eog":
            assert rx.fullmatch(text), text
        else:
            assert s.stop_reason == "length"


def test_response_format_shapes(model):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}
    for rf in ({"type": "json_object", "schema": schema},
               {"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}}):
        out = model.chat("Where is the Eiffel Tower?", response_format=rf, temperature=0, max_tokens=40)
        validate(schema, json.loads(out))
    out = model.chat("Give me a JSON object.", response_format={"type": "json_object"}, temperature=0, max_tokens=60)
    assert out.startswith("{")
    assert isinstance(model.chat("Say hi.", response_format={"type": "text"}, max_tokens=5), str)
    with pytest.raises(pocketlm.InvalidArgumentError, match="response_format"):
        model.chat("x", response_format={"type": "yaml"})
    with pytest.raises(pocketlm.InvalidArgumentError, match="not both"):
        model.chat("x", response_format={"type": "json_object"}, json_schema={"type": "object"})


def test_generate_json(model):
    value = model.generate_json([{"role": "user", "content": "Give a number from 1 to 3."}],
                                {"type": "integer", "minimum": 1, "maximum": 3}, temperature=0)
    assert value in (1, 2, 3)
    long_schema = {"type": "array", "items": {"type": "string", "minLength": 30}, "minItems": 3}
    with pytest.raises(pocketlm.IncompleteOutputError) as e:
        model.generate_json("A list of sentences:", long_schema, max_tokens=5)
    assert e.value.stop_reason == "length" and e.value.text.startswith("[")


def test_generate_json_pydantic(model):
    pydantic = pytest.importorskip("pydantic")

    class Ticket(pydantic.BaseModel):
        product: str = pydantic.Field(max_length=30)
        severity: int = pydantic.Field(ge=1, le=5)
        refund: bool

    t = model.generate_json([{"role": "user", "content": "My blender broke after two days. I want my money back!"}],
                            Ticket, temperature=0)
    assert isinstance(t, Ticket) and 1 <= t.severity <= 5


def test_generate_many_constrained_equals_generate(model):
    """The batch generator holds a grammar per request: greedy outputs equal generate()'s, one by one."""
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 120}},
              "required": ["name", "age"]}
    texts = ["Alice is 31 years old.", "Bob, aged 45, lives in Paris.", "The child Carla is 7."]
    prompts = [f"Text: {t}\nJSON of the person:" for t in texts]
    many = model.generate_many(prompts, json_schema=schema, temperature=0, max_tokens=40, progress=False)
    assert many == [model.generate(p, json_schema=schema, temperature=0, max_tokens=40) for p in prompts]
    for out in many:
        validate(schema, json.loads(out))
    items = [{"prompt": "Review: loved it. Sentiment:", "choices": [" positive", " negative"]},
             {"prompt": "Call us at", "regex": r"\(\d{3}\) \d{3}-\d{4}"},
             {"prompt": "Free text:"}]
    got = model.generate_many(items, temperature=0, max_tokens=24, progress=False)
    assert got[0] in (" positive", " negative") and re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", got[1])
    assert got[2] == model.generate("Free text:", temperature=0, max_tokens=24)
    with pytest.raises(pocketlm.InvalidArgumentError, match="line 1"):
        model.generate_many(["x"], grammar="root ::= (", progress=False)


def test_malformed_inputs_name_line_and_column(model):
    cases = [
        (dict(grammar='root ::= "a" (\n'), r"line 2:1: expected '\)'"),
        (dict(grammar='root ::= x\n'), r"line 1:10: rule 'x' is used but not defined"),
        (dict(grammar='root ::= root "a" | "b"\n'), "left-recursive"),
        (dict(json_schema={"type": "object", "properties": {"a": {"type": "integer", "multipleOf": 2}}}),
         r"line 1:\d+: unsupported keyword 'multipleOf'"),
        (dict(json_schema='{"type": "object",\n "properties": {"a": }}'), r"line 2:\d+: expected a JSON value"),
        (dict(json_schema={"type": "string", "format": "hostname"}), "unsupported format 'hostname'"),
        (dict(regex="a(b"), r"regex line 1:2: this group is not closed"),
        (dict(regex="a*?"), "lazy"),
        (dict(regex="a", choices=["b"]), "not regex and choices"),
        (dict(choices=[]), "at least one"),
    ]
    for kw, pattern in cases:
        with pytest.raises(pocketlm.InvalidArgumentError, match=pattern):
            model.generate("x", max_tokens=1, **kw)


def test_grammar_objects_and_gbnf_text(model):
    g = pocketlm.Grammar.from_json_schema({"type": "boolean"})
    assert g.kind == "json_schema"
    assert model.generate("Is fire hot? Answer in JSON:", grammar=g, temperature=0) in ("true", "false")
    text = pocketlm.json_schema_to_gbnf({"type": "object", "properties": {"a": {"type": "integer"}}})
    assert "::=" in text and pocketlm.Grammar.from_gbnf(text).kind == "gbnf"


def test_length_stop_mid_structure(model):
    s = model.stream("Numbers:", json_schema={"type": "array", "items": {"type": "integer"}, "minItems": 50},
                     max_tokens=6, temperature=0)
    text = "".join(s)
    assert s.stop_reason == "length" and text.startswith("[")
    with pytest.raises(ValueError):
        json.loads(text)


def test_sampler_with_a_grammar(model):
    sampler = pocketlm.Sampler(model, temperature=0, choices=["yes", "no"])
    out = b""
    with model.context(n_ctx=256) as ctx:
        ctx.eval(model.tokenize("Is fire hot? Answer:"))
        for _ in range(8):
            t = sampler.sample(ctx.logits)
            if model.is_eog(t):
                break
            sampler.accept(t)
            out += model.token_to_piece(t)
            ctx.eval([t])
    assert out in (b"yes", b"no")
    with pytest.raises(pocketlm.InvalidArgumentError, match="needs the Model"):
        pocketlm.Sampler(model.n_vocab, regex="a")
