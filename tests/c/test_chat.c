/*
 * test_chat.c — chat formats: detection and rendering against the real Jinja
 * templates (tests/data/chat_templates.txt, rendered by jinja2 through
 * tools/make_chat_fixtures.py), the rules kept from the original Python
 * implementation (default system message, Gemma's system turn, Unicode
 * whitespace), the caller-sized buffer, and the errors for bad roles, NULL
 * contents and invalid UTF-8. The Jinja interpreter (plm_chat_template_render)
 * renders the same fixture, the default model's stored template as the
 * pattern renderer does, constructs as jinja2 prints them, and refuses what it
 * does not implement.
 */
#include "pocketlm.h"
#include "test.h"

/* ------------------------------------------------------------ fixture */

#define MAX_TEMPLATES 64
#define MAX_MSGS 8

typedef struct {
    char name[64];
    char *text;
    size_t len;
    bool detected;           /* a D record was read */
    char family[16];
    bool has_default;
    char *default_system;
    size_t default_len;
} fx_template;

typedef struct {
    const fx_template *tmpl;
    bool gen;
    int32_t n;
    char role[MAX_MSGS][16];
    char *content[MAX_MSGS];
    size_t content_len[MAX_MSGS];
    char *expected;
    size_t expected_len;
} fx_case;

static fx_template templates[MAX_TEMPLATES];
static int n_templates;
static fx_case *cases;
static int n_cases;
static char *fixture_data;

static fx_template *find_template(const char *name) {
    for (int i = 0; i < n_templates; i++)
        if (!strcmp(templates[i].name, name)) return &templates[i];
    return NULL;
}

/* A header line at *p (advanced past it) copied into line. */
static bool read_line(char **p, char *end, char *line, size_t cap) {
    char *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (!nl || (size_t)(nl - *p) >= cap) return false;
    memcpy(line, *p, (size_t)(nl - *p));
    line[nl - *p] = 0;
    *p = nl + 1;
    return true;
}

/* n raw bytes at *p, then a newline. */
static char *read_blob(char **p, char *end, size_t n) {
    if ((size_t)(end - *p) < n + 1 || (*p)[n] != '\n') return NULL;
    char *b = *p;
    *p += n + 1;
    return b;
}

static bool load_fixture(void) {
    if (fixture_data) return true;
    FILE *f = fopen(DATA("chat_templates.txt"), "rb");
    if (!f) return false;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    fixture_data = malloc((size_t)size + 1);
    if (!fixture_data || fread(fixture_data, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        return false;
    }
    fclose(f);
    cases = calloc(512, sizeof(*cases));
    char *p = fixture_data, *end = fixture_data + size, line[256];
    fx_case *cur = NULL;
    while (p < end) {
        if (!read_line(&p, end, line, sizeof line)) return false;
        char a[64], b[16];
        int x, y;
        size_t n;
        if (line[0] == '#') continue;
        if (sscanf(line, "T %63s %zu", a, &n) == 2 && n_templates < MAX_TEMPLATES) {
            fx_template *t = &templates[n_templates++];
            snprintf(t->name, sizeof t->name, "%s", a);
            if (!(t->text = read_blob(&p, end, n))) return false;
            t->len = n;
        } else if (sscanf(line, "D %63s %15s %d %zu", a, b, &x, &n) == 4) {
            fx_template *t = find_template(a);
            if (!t) return false;
            t->detected = true;
            snprintf(t->family, sizeof t->family, "%s", b);
            t->has_default = x != 0;
            if (!(t->default_system = read_blob(&p, end, n))) return false;
            t->default_len = n;
        } else if (sscanf(line, "C %63s %d %d", a, &x, &y) == 3 && n_cases < 512 && y <= MAX_MSGS) {
            cur = &cases[n_cases++];
            if (!(cur->tmpl = find_template(a))) return false;
            cur->gen = x != 0;
            for (int i = 0; i < y; i++) {
                if (!read_line(&p, end, line, sizeof line) || sscanf(line, "M %15s %zu", cur->role[i], &n) != 2) return false;
                if (!(cur->content[i] = read_blob(&p, end, n))) return false;
                cur->content_len[i] = n;
            }
            cur->n = y;
            if (!read_line(&p, end, line, sizeof line) || sscanf(line, "E %zu", &n) != 1) return false;
            if (!(cur->expected = read_blob(&p, end, n))) return false;
            cur->expected_len = n;
        } else {
            fprintf(stderr, "  bad fixture line: %s\n", line);
            return false;
        }
    }
    return true;
}

static plm_chat_message msg(const char *role, const char *content) {
    return (plm_chat_message){role, strlen(role), content, strlen(content)};
}

/* Renders into a malloc'd buffer (two passes, as a caller would); NULL on error. */
static char *render(const plm_chat_format *fmt, const plm_chat_message *m, int32_t n, bool gen, size_t *len) {
    size_t need = 0;
    plm_status st = plm_chat_render(fmt, m, n, gen, NULL, 0, &need);
    if (st != PLM_OK && st != PLM_ERR_BUFFER) return NULL;
    char *buf = malloc(need + 1);
    st = plm_chat_render(fmt, m, n, gen, buf, need + 1, len);
    if (st != PLM_OK || *len != need) {
        free(buf);
        return NULL;
    }
    return buf;
}

static bool same(const char *got, size_t got_len, const char *want, size_t want_len) {
    return got && got_len == want_len && memcmp(got, want, want_len) == 0;
}

static void show_diff(const char *what, const char *got, size_t got_len, const char *want, size_t want_len) {
    fprintf(stderr, "  %s:\n    got  (%zu) %.*s\n    want (%zu) %.*s\n", what, got_len, (int)got_len, got ? got : "",
            want_len, (int)want_len, want);
}

/* -------------------------------------------------------------- tests */

static void test_fixture_detection(void) {
    REQUIRE(load_fixture());
    CHECK(n_templates >= 20);
    int checked = 0;
    for (int i = 0; i < n_templates; i++) {
        fx_template *t = &templates[i];
        if (!t->detected) continue;
        plm_chat_format f;
        CHECKF(plm_chat_detect(t->text, t->len, &f) == PLM_OK, "%s: %s", t->name, plm_last_error());
        CHECKF(!strcmp(plm_chat_family_name(f.family), t->family), "%s: %s, want %s", t->name,
               plm_chat_family_name(f.family), t->family);
        CHECKF((f.default_system != NULL) == t->has_default, "template %s", t->name);
        if (t->has_default && f.default_system) {
            CHECKF(same(f.default_system, f.default_system_len, t->default_system, t->default_len), "template %s",
                   t->name);
            /* borrowed from the template text */
            CHECK(f.default_system >= t->text && f.default_system + f.default_system_len <= t->text + t->len);
        }
        checked++;
    }
    CHECK(checked == n_templates);
}

static void test_fixture_rendering_equals_jinja(void) {
    REQUIRE(load_fixture());
    CHECK(n_cases >= 80);
    int per_family[PLM_CHAT_N_FAMILIES] = {0};
    for (int i = 0; i < n_cases; i++) {
        const fx_case *c = &cases[i];
        plm_chat_format f;
        REQUIRE(plm_chat_detect(c->tmpl->text, c->tmpl->len, &f) == PLM_OK);
        plm_chat_message m[MAX_MSGS];
        for (int k = 0; k < c->n; k++) m[k] = (plm_chat_message){c->role[k], strlen(c->role[k]), c->content[k], c->content_len[k]};
        size_t len = 0;
        char *out = render(&f, m, c->n, c->gen, &len);
        if (!same(out, len, c->expected, c->expected_len)) {
            char what[128];
            snprintf(what, sizeof what, "case %d (%s, %d messages, generation prompt %d)", i, c->tmpl->name, c->n, c->gen);
            show_diff(what, out, len, c->expected, c->expected_len);
            t_checks_failed++;
        } else {
            per_family[f.family]++;
        }
        free(out);
    }
    for (int k = 0; k < PLM_CHAT_N_FAMILIES; k++) CHECKF(per_family[k] >= 20, "%s: %d cases", plm_chat_family_name(k), per_family[k]);
}

/* ------------------------------------------------ the Jinja interpreter */

/* Appends s (n bytes) as a JSON string. */
static void json_put(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + 6 * n + 8 > *cap) {
        *cap = 2 * (*len + 6 * n + 8);
        *buf = realloc(*buf, *cap);
    }
    char *o = *buf + *len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20) o += sprintf(o, "\\u%04x", c);
        else *o++ = (char)c;
    }
    *o++ = '"';
    *len = (size_t)(o - *buf);
}

static void json_raw(char **buf, size_t *len, size_t *cap, const char *s) {
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        *cap = 2 * (*len + n + 1);
        *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *len, s, n);
    *len += n;
}

/* {"messages": [...], "add_generation_prompt": gen, "bos_token": "", "eos_token": ""}, as the fixture was rendered. */
static char *vars_json(const plm_chat_message *m, int32_t n, bool gen, size_t *len) {
    char *b = NULL;
    size_t cap = 0;
    *len = 0;
    json_raw(&b, len, &cap, "{\"messages\": [");
    for (int32_t i = 0; i < n; i++) {
        json_raw(&b, len, &cap, i ? ", {\"role\": " : "{\"role\": ");
        json_put(&b, len, &cap, m[i].role, m[i].role_len);
        json_raw(&b, len, &cap, ", \"content\": ");
        json_put(&b, len, &cap, m[i].content, m[i].content_len);
        json_raw(&b, len, &cap, "}");
    }
    json_raw(&b, len, &cap, gen ? "], \"add_generation_prompt\": true" : "], \"add_generation_prompt\": false");
    json_raw(&b, len, &cap, ", \"bos_token\": \"\", \"eos_token\": \"\"}");
    return b;
}

/* Every fixture conversation through the interpreter equals jinja2's rendering,
 * and so equals what the pattern renderer gives for the same template. */
static void test_interpreter_equals_jinja(void) {
    REQUIRE(load_fixture());
    int ok = 0;
    for (int i = 0; i < n_cases; i++) {
        const fx_case *c = &cases[i];
        plm_chat_message m[MAX_MSGS];
        for (int k = 0; k < c->n; k++) m[k] = (plm_chat_message){c->role[k], strlen(c->role[k]), c->content[k], c->content_len[k]};
        size_t jl = 0, len = 0;
        char *js = vars_json(m, c->n, c->gen, &jl), *out = NULL;
        plm_status st = plm_chat_template_render(c->tmpl->text, c->tmpl->len, js, jl, &out, &len);
        if (st || !same(out, len, c->expected, c->expected_len)) {
            char what[200];
            snprintf(what, sizeof what, "interpreter, case %d (%s): %s", i, c->tmpl->name, st ? plm_last_error() : "differs");
            show_diff(what, out, len, c->expected, c->expected_len);
            t_checks_failed++;
        } else ok++;
        CHECK(!out || out[len] == 0);
        plm_free(out);
        free(js);
    }
    CHECKF(ok == n_cases && n_cases >= 80, "%d of %d cases", ok, n_cases);
}

/* The default model's stored template (loaded vocabulary-only) through the
 * interpreter gives exactly what plm_chat_render gives. */
static void test_interpreter_default_model(void) {
    plm_model *m = NULL;
    plm_model_params mp = plm_model_default_params();
    mp.vocab_only = true;
    REQUIRE(plm_model_load(NULL, &mp, &m) == PLM_OK);
    plm_model_info info;
    plm_chat_format f;
    REQUIRE(plm_model_get_info(m, &info) == PLM_OK && plm_chat_detect_model(m, &f) == PLM_OK);
    plm_chat_message conv[] = {msg("system", "Be brief."), msg("user", "Hi"), msg("assistant", "Hello!"), msg("user", "2+2?")};
    for (int start = 0; start < 2; start++)
        for (int32_t n = 1; n + start <= 4; n++)
            for (int gen = 0; gen < 2; gen++) {
                size_t want_len = 0, got_len = 0, jl = 0;
                char *want = render(&f, conv + start, n, gen, &want_len), *got = NULL;
                char *js = vars_json(conv + start, n, gen, &jl);
                CHECKF(plm_chat_template_render(info.chat_template, strlen(info.chat_template), js, jl, &got, &got_len) == PLM_OK, "%s",
                       plm_last_error());
                CHECKF(same(got, got_len, want, want_len), "start %d, %d messages, gen %d", start, n, gen);
                plm_free(got);
                free(want);
                free(js);
            }
    plm_model_free(m);
}

static plm_status jinja(const char *tmpl, const char *vars, char **out) {
    size_t len;
    *out = NULL;
    return plm_chat_template_render(tmpl, strlen(tmpl), vars, vars ? strlen(vars) : 0, out, &len);
}

/* Constructs, checked against what Python's jinja2 prints for them (values as Python prints them). */
static void test_interpreter_constructs(void) {
    static const struct {
        const char *tmpl, *vars, *want;
    } cc[] = {
        {"{{ 1 + 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 / 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ 'a' ~ 1 }}", NULL, "3 3 -4 3.5 1 1024 a1"},
        {"{{ true }} {{ none }} {{ [1, 'a', none] }} {{ {'k': 1.0} }} {{ x }}|", NULL, "True None [1, 'a', None] {'k': 1.0} |"},
        {"{% for m in xs %}{{ loop.index }}{{ m }}{% if not loop.last %},{% endif %}{% endfor %}", "{\"xs\": [\"a\", \"b\"]}", "1a,2b"},
        {"{% set ns = namespace(n=0) %}{% for i in range(5) if i is odd %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}", NULL, "4"},
        {"{% macro f(a, b='y') %}[{{ a }}{{ b }}]{% endmacro %}{{ f('x') }}{{ f(1, b=2) }}", NULL, "[xy][12]"},
        {"{{ 'Hello'[1:3] }}{{ [1,2,3][::-1] }}{{ '  t  ' | trim }}{{ 'a,b' .split(',') }}", NULL, "el[3, 2, 1]t['a', 'b']"},
        {"{{ xs | selectattr('r', 'equalto', 'u') | map(attribute='c') | join('+') }}",
         "{\"xs\": [{\"r\": \"u\", \"c\": \"1\"}, {\"r\": \"a\", \"c\": \"2\"}, {\"r\": \"u\", \"c\": \"3\"}]}", "1+3"},
        {"{{ d | tojson }} {{ d | tojson(indent=2) }}", "{\"d\": {\"a\": [1, \"\u00e9\\n\"], \"b\": null}}",
         "{\"a\": [1, \"\u00e9\\n\"], \"b\": null} {\n  \"a\": [\n    1,\n    \"\u00e9\\n\"\n  ],\n  \"b\": null\n}"},
        {"  {% if x %}\nA{% elif y %}\nB{% else %}\nC{% endif %}\n", "{\"y\": 1}", "B"},
        {"{%- for k, v in d.items() -%} {{ k }}={{ v }} {%- endfor %}", "{\"d\": {\"a\": 1, \"b\": 2}}", "a=1b=2"},
        {"{{ 'x' if 0 else 'y' }}{{ 'abc' | upper | replace('B', '-') }}{{ [3,1] | length }}", NULL, "yA-C2"},
        {"{% for i in range(3) %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}", NULL, "02"},
    };
    for (size_t i = 0; i < sizeof cc / sizeof cc[0]; i++) {
        char *out;
        plm_status st = jinja(cc[i].tmpl, cc[i].vars, &out);
        CHECKF(st == PLM_OK && out && strcmp(out, cc[i].want) == 0, "case %zu: got '%s' want '%s' (%s)", i, out ? out : "",
               cc[i].want, st ? plm_last_error() : "");
        plm_free(out);
    }
}

static void test_interpreter_errors(void) {
    char *out = (char *)1;
    CHECK(jinja("a\n{% filter upper %}x{% endfilter %}", NULL, &out) == PLM_ERR_UNSUPPORTED && out == NULL);
    CHECKF(strstr(plm_last_error(), "line 2") && strstr(plm_last_error(), "'filter'"), "%s", plm_last_error());
    CHECK(jinja("{{ x | frobnicate }}", NULL, &out) == PLM_ERR_UNSUPPORTED);
    CHECKF(strstr(plm_last_error(), "'frobnicate'"), "%s", plm_last_error());
    CHECK(jinja("{{ raise_exception('Only user and assistant roles') }}", NULL, &out) == PLM_ERR_ARG);
    CHECKF(strstr(plm_last_error(), "Only user and assistant roles"), "%s", plm_last_error());
    CHECK(jinja("{{ x }}", "{\"x\": [1,}", &out) == PLM_ERR_ARG);
    CHECK(jinja("{{ x }}", "[1]", &out) == PLM_ERR_ARG);
    CHECK(jinja("{% if x %}never closed", NULL, &out) == PLM_ERR_UNSUPPORTED);
    CHECKF(strstr(plm_last_error(), "endif"), "%s", plm_last_error());
    CHECK(jinja("{{ 1 +", NULL, &out) == PLM_ERR_UNSUPPORTED);
    CHECK(jinja("{{ 'x' ", NULL, &out) == PLM_ERR_UNSUPPORTED);
    /* untrusted templates: work, recursion and output are bounded (seconds under valgrind: full runs only) */
    if (!t_quick()) {
        CHECK(jinja("{% for i in range(100000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", NULL, &out) == PLM_ERR_UNSUPPORTED);
        CHECKF(strstr(plm_last_error(), "too long"), "%s", plm_last_error());
        CHECK(jinja("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, &out) == PLM_ERR_UNSUPPORTED);
        CHECK(jinja("{% set s = 'xxxxxxxxxxxxxxxx' * 1000000 %}{% for i in range(10) %}{{ s }}{% endfor %}", NULL, &out) == PLM_ERR_UNSUPPORTED);
    }
    size_t len;
    CHECK(plm_chat_template_render(NULL, 0, NULL, 0, &out, &len) == PLM_OK && len == 0 && out && !*out);
    plm_free(out);
    CHECK(plm_chat_template_render("x", 1, NULL, 0, NULL, &len) == PLM_ERR_ARG);
}

static void test_default_model_template(void) {
    plm_model *m = NULL;
    plm_model_params mp = plm_model_default_params();
    REQUIRE(plm_model_load(NULL, &mp, &m) == PLM_OK);
    plm_chat_format f;
    REQUIRE(plm_chat_detect_model(m, &f) == PLM_OK);
    CHECK(f.family == PLM_CHAT_CHATML);
    const char *want = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
    CHECK(same(f.default_system, f.default_system_len, want, strlen(want)));
    plm_chat_message hi = msg("user", "Hi");
    size_t len;
    char *out = render(&f, &hi, 1, true, &len);
    const char *exp = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    CHECK(same(out, len, exp, strlen(exp)));
    free(out);
    plm_model_free(m);
    /* a model with no stored template: ChatML, no default */
    REQUIRE(plm_model_load(DATA("tiny/llama.gguf"), &mp, &m) == PLM_OK);
    f.default_system = "x";
    CHECK(plm_chat_detect_model(m, &f) == PLM_OK && f.family == PLM_CHAT_CHATML && f.default_system == NULL);
    plm_model_free(m);
    CHECK(plm_chat_detect_model(NULL, &f) == PLM_ERR_ARG);
}

/* Rules of the original Python implementation that no real template shows. */
static void test_python_rules(void) {
    plm_chat_format gemma = {PLM_CHAT_GEMMA, NULL, 0};
    size_t len;
    char *out;
    /* a system message alone becomes a user turn, stripped */
    plm_chat_message sys = msg("system", "  Only system \n");
    out = render(&gemma, &sys, 1, true, &len);
    const char *e1 = "<start_of_turn>user\nOnly system<end_of_turn>\n<start_of_turn>model\n";
    CHECK(same(out, len, e1, strlen(e1)));
    free(out);
    /* only a leading system message is folded into the first turn */
    plm_chat_message three[] = {msg("system", " Sys "), msg("user", "Hi"), msg("system", " late ")};
    out = render(&gemma, three, 3, false, &len);
    const char *e2 = "<start_of_turn>user\nSys\n\nHi<end_of_turn>\n<start_of_turn>system\nlate<end_of_turn>\n";
    CHECK(same(out, len, e2, strlen(e2)));
    free(out);
    plm_chat_message blank = msg("system", "   ");
    out = render(&gemma, &blank, 1, true, &len);
    const char *e3 = "<start_of_turn>user\n<end_of_turn>\n<start_of_turn>model\n";
    CHECK(same(out, len, e3, strlen(e3)));
    free(out);
    out = render(&gemma, NULL, 0, true, &len);
    CHECK(same(out, len, "<start_of_turn>model\n", 21));
    free(out);
    /* a default system message: added unless messages[0] is a system message */
    const char *tmpl = "messages[0]['role'] != 'system' <|im_start|>system\nDef<|im_end|>";
    plm_chat_format chatml;
    REQUIRE(plm_chat_detect(tmpl, strlen(tmpl), &chatml) == PLM_OK);
    out = render(&chatml, NULL, 0, false, &len);
    CHECK(same(out, len, "<|im_start|>system\nDef<|im_end|>\n", 33));
    free(out);
    plm_chat_message own[] = {msg("system", "Own"), msg("user", "Hi")};
    out = render(&chatml, own, 2, true, &len);
    const char *e4 = "<|im_start|>system\nOwn<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    CHECK(same(out, len, e4, strlen(e4)));
    free(out);
    plm_chat_message late[] = {msg("user", "Hi"), msg("system", "Late")};
    out = render(&chatml, late, 2, false, &len);
    const char *e5 = "<|im_start|>system\nDef<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>system\nLate<|im_end|>\n";
    CHECK(same(out, len, e5, strlen(e5)));
    free(out);
    /* an empty default is still a default */
    plm_chat_format empty_default = {PLM_CHAT_CHATML, "", 0};
    out = render(&empty_default, NULL, 0, false, &len);
    CHECK(same(out, len, "<|im_start|>system\n<|im_end|>\n", 30));
    free(out);
    /* Python's whitespace: U+001C and U+3000 are stripped, U+200B (not whitespace) is not */
    plm_chat_format llama3 = {PLM_CHAT_LLAMA3, NULL, 0};
    plm_chat_message ws[] = {msg("user", " \x1c\xe3\x80\x80 "), msg("user", "\xe2\x80\x8bX\xe2\x80\x8b")};
    out = render(&llama3, ws, 2, false, &len);
    const char *e6 = "<|start_header_id|>user<|end_header_id|>\n\n<|eot_id|>"
                     "<|start_header_id|>user<|end_header_id|>\n\n\xe2\x80\x8bX\xe2\x80\x8b<|eot_id|>";
    CHECK(same(out, len, e6, strlen(e6)));
    free(out);
}

static void test_buffer_and_nul_bytes(void) {
    plm_chat_format f = {PLM_CHAT_PHI3, NULL, 0};
    plm_chat_message m = {"user", 4, "a\0b", 3};
    const char want[] = "<|user|>\na\0b<|end|>\n<|assistant|>\n";
    size_t want_len = sizeof want - 1, n = 0;
    CHECK(plm_chat_render(&f, &m, 1, true, NULL, 0, &n) == PLM_ERR_BUFFER && n == want_len);
    char buf[64];
    memset(buf, 'x', sizeof buf);
    n = 0;
    CHECK(plm_chat_render(&f, &m, 1, true, buf, want_len - 1, &n) == PLM_ERR_BUFFER && n == want_len);
    CHECK(buf[want_len - 1] == 'x'); /* nothing past cap */
    CHECK(plm_chat_render(&f, &m, 1, true, buf, want_len, &n) == PLM_OK && n == want_len);
    CHECK(memcmp(buf, want, want_len) == 0 && buf[want_len] == 'x'); /* no room for the NUL: none written */
    CHECK(plm_chat_render(&f, &m, 1, true, buf, sizeof buf, &n) == PLM_OK && n == want_len && buf[want_len] == 0);
    /* an empty rendering fits in cap 0 */
    plm_chat_format chatml = {PLM_CHAT_CHATML, NULL, 0};
    CHECK(plm_chat_render(&chatml, NULL, 0, false, NULL, 0, &n) == PLM_OK && n == 0);
}

static void test_errors(void) {
    plm_chat_format f = {PLM_CHAT_CHATML, NULL, 0};
    char buf[256];
    size_t n = 7;
    plm_chat_message bad_role[] = {msg("user", "a"), msg("tool", "b")};
    CHECK(plm_chat_render(&f, bad_role, 2, true, buf, sizeof buf, &n) == PLM_ERR_ARG && n == 0);
    CHECKF(strstr(plm_last_error(), "message 1") && strstr(plm_last_error(), "\"tool\""), "%s", plm_last_error());
    /* a role with a NUL byte is not "user" */
    plm_chat_message nul_role = {"user\0x", 6, "a", 1};
    CHECK(plm_chat_render(&f, &nul_role, 1, true, buf, sizeof buf, &n) == PLM_ERR_ARG);
    CHECKF(strstr(plm_last_error(), "message 0") && strstr(plm_last_error(), "user\\x00x"), "%s", plm_last_error());
    plm_chat_message case_role = msg("User", "a");
    CHECK(plm_chat_render(&f, &case_role, 1, true, buf, sizeof buf, &n) == PLM_ERR_ARG);
    plm_chat_message null_content[] = {msg("user", "a"), msg("assistant", "b"), {"user", 4, NULL, 0}};
    CHECK(plm_chat_render(&f, null_content, 3, true, buf, sizeof buf, &n) == PLM_ERR_ARG);
    CHECKF(strstr(plm_last_error(), "message 2") && strstr(plm_last_error(), "NULL"), "%s", plm_last_error());
    plm_chat_message null_role = {NULL, 0, "a", 1};
    CHECK(plm_chat_render(&f, &null_role, 1, true, buf, sizeof buf, &n) == PLM_ERR_ARG);
    CHECK(strstr(plm_last_error(), "message 0: role is NULL") != NULL);
    /* invalid UTF-8: a stray continuation byte, an overlong form, a surrogate, a truncated sequence */
    const char *invalid[] = {"ok\x80", "\xc0\xaf", "a\xed\xa0\x80", "\xe2\x82"};
    for (int i = 0; i < 4; i++) {
        plm_chat_message m[] = {msg("system", "fine"), msg("user", invalid[i])};
        CHECK(plm_chat_render(&f, m, 2, true, buf, sizeof buf, &n) == PLM_ERR_ARG);
        CHECKF(strstr(plm_last_error(), "message 1") && strstr(plm_last_error(), "UTF-8"), "%s", plm_last_error());
    }
    plm_chat_format bad_default = {PLM_CHAT_CHATML, "\xff", 1};
    CHECK(plm_chat_render(&bad_default, NULL, 0, true, buf, sizeof buf, &n) == PLM_ERR_ARG);
    CHECK(strstr(plm_last_error(), "default system message") != NULL);
    plm_chat_format bad_family = {(plm_chat_family)4, NULL, 0};
    CHECK(plm_chat_render(&bad_family, NULL, 0, true, buf, sizeof buf, &n) == PLM_ERR_ARG);
    CHECK(plm_chat_render(NULL, NULL, 0, true, buf, sizeof buf, &n) == PLM_ERR_ARG);
    CHECK(plm_chat_render(&f, NULL, 1, true, buf, sizeof buf, &n) == PLM_ERR_ARG);
    CHECK(plm_chat_render(&f, NULL, -1, true, buf, sizeof buf, &n) == PLM_ERR_ARG);
    CHECK(plm_chat_render(&f, NULL, 0, true, NULL, 8, &n) == PLM_ERR_ARG);
    CHECK(plm_chat_render(&f, NULL, 0, true, buf, sizeof buf, NULL) == PLM_ERR_ARG);
    /* detection */
    plm_chat_format d;
    CHECK(plm_chat_detect("<|im_start|>\xfe", 13, &d) == PLM_ERR_ARG && d.family == PLM_CHAT_CHATML);
    CHECKF(strstr(plm_last_error(), "byte 12") != NULL, "%s", plm_last_error());
    CHECK(plm_chat_detect(NULL, 3, &d) == PLM_ERR_ARG);
    CHECK(plm_chat_detect(NULL, 0, &d) == PLM_OK && d.family == PLM_CHAT_CHATML && !d.default_system);
    CHECK(plm_chat_detect("", 0, NULL) == PLM_ERR_ARG);
    /* the template's length is what counts, not a NUL */
    CHECK(plm_chat_detect("x\0<start_of_turn>", 17, &d) == PLM_OK && d.family == PLM_CHAT_GEMMA);
}

static void test_names_and_stops(void) {
    const char *names[] = {"chatml", "llama3", "gemma", "phi3"};
    const char *stops[] = {"<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"};
    for (int k = 0; k < PLM_CHAT_N_FAMILIES; k++) {
        CHECK(!strcmp(plm_chat_family_name((plm_chat_family)k), names[k]));
        plm_chat_family f = PLM_CHAT_CHATML;
        CHECK(plm_chat_family_from_name(names[k], strlen(names[k]), &f) == PLM_OK && (int)f == k);
        CHECK(plm_chat_stop((plm_chat_family)k, 0) && !strcmp(plm_chat_stop((plm_chat_family)k, 0), stops[k]));
        CHECK(plm_chat_stop((plm_chat_family)k, 1) == NULL);
        CHECK(plm_chat_stop((plm_chat_family)k, -1) == NULL);
    }
    CHECK(plm_chat_family_name((plm_chat_family)-1) == NULL && plm_chat_family_name((plm_chat_family)4) == NULL);
    CHECK(plm_chat_stop((plm_chat_family)9, 0) == NULL);
    plm_chat_family f;
    CHECK(plm_chat_family_from_name("nope", 4, &f) == PLM_ERR_ARG);
    CHECKF(strstr(plm_last_error(), "\"nope\"") && strstr(plm_last_error(), "chatml, llama3, gemma, phi3"), "%s",
           plm_last_error());
    CHECK(plm_chat_family_from_name("gemma\0", 6, &f) == PLM_ERR_ARG);
    CHECK(plm_chat_family_from_name("gemm", 4, &f) == PLM_ERR_ARG);
}

int main(void) {
    RUN(test_fixture_detection);
    RUN(test_fixture_rendering_equals_jinja);
    RUN(test_interpreter_equals_jinja);
    RUN(test_interpreter_default_model);
    RUN(test_interpreter_constructs);
    RUN(test_interpreter_errors);
    RUN(test_default_model_template);
    RUN(test_python_rules);
    RUN(test_buffer_and_nul_bytes);
    RUN(test_errors);
    RUN(test_names_and_stops);
    free(cases);
    free(fixture_data);
    return TEST_SUMMARY();
}
