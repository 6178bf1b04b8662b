/*
 * test_chat_model.c — plm_chat_apply, the chat of a model from its own
 * template: the default model's and Gemma 3's templates through the
 * interpreter give exactly what the family renderer (plm_chat_render, held to
 * jinja2 by test_chat.c) gives; the family formats named by a caller render as
 * plm_chat_render does; stop strings; the variables a template sees (BOS,
 * EOS, the caller's); and the errors: messages that break the rules, bad JSON
 * and UTF-8, a construct the interpreter lacks (named with its line), a
 * template's raise_exception.
 */
#include "pocketlm.h"
#include "test.h"

#include <stdbool.h>

#define GEMMA3_NAME "gemma-3-270m-q4_k_m.gguf"

/* $POCKETLM_GEMMA3, else <cache>/gemma-3-270m-q4_k_m.gguf, as test_gemma3.c finds it. */
static bool gemma3_path(char *out, size_t cap) {
    const char *env = getenv("POCKETLM_GEMMA3");
    if (env && *env) return snprintf(out, cap, "%s", env) < (int)cap;
    const char *dir = getenv("POCKETLM_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (dir && *dir) n = snprintf(out, cap, "%s/%s", dir, GEMMA3_NAME);
    else if (xdg && *xdg) n = snprintf(out, cap, "%s/pocketlm/%s", xdg, GEMMA3_NAME);
    else if (home && *home) n = snprintf(out, cap, "%s/.cache/pocketlm/%s", home, GEMMA3_NAME);
    else return false;
    return n > 0 && n < (int)cap;
}

static plm_model *load_vocab(const char *path) {
    plm_model *m = NULL;
    plm_model_params mp = plm_model_default_params();
    mp.vocab_only = true;
    if (plm_model_load(path, &mp, &m) != PLM_OK) fprintf(stderr, "  cannot load %s: %s\n", path ? path : "the default model", plm_last_error());
    return m;
}

/* ------------------------------------------------------------ messages */

typedef struct {
    const char *role, *content;
    size_t len; /* of content; 0: strlen */
} msg;

typedef struct {
    char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = 2 * (b->n + n + 1);
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void put_json(buf *b, const char *s, size_t n) {
    put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            put(b, e, 2);
        } else if (c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", c);
            put(b, e, 6);
        } else put(b, s + i, 1);
    }
    put(b, "\"", 1);
}

static size_t clen(const msg *m) { return m->len ? m->len : strlen(m->content); }

/* The messages as a JSON array (caller frees .p). */
static buf to_json(const msg *m, int n) {
    buf b = {0};
    put(&b, "[", 1);
    for (int i = 0; i < n; i++) {
        put(&b, i ? ", {\"role\": " : "{\"role\": ", i ? 11 : 9);
        put_json(&b, m[i].role, strlen(m[i].role));
        put(&b, ", \"content\": ", 13);
        put_json(&b, m[i].content, clen(&m[i]));
        put(&b, "}", 1);
    }
    put(&b, "]", 1);
    return b;
}

/* plm_chat_render of the messages in fmt (malloc'd), or NULL. */
static char *family_render(const plm_chat_format *fmt, const msg *m, int n, bool gen, size_t *len) {
    plm_chat_message cm[16];
    for (int i = 0; i < n; i++) cm[i] = (plm_chat_message){m[i].role, strlen(m[i].role), m[i].content, clen(&m[i])};
    size_t need = 0;
    if (plm_chat_render(fmt, cm, n, gen, NULL, 0, &need) > PLM_ERR_BUFFER) return NULL;
    char *out = malloc(need + 1);
    if (!out || plm_chat_render(fmt, cm, n, gen, out, need + 1, len) != PLM_OK) {
        free(out);
        return NULL;
    }
    return out;
}

static plm_status apply(const plm_model *model, const msg *m, int n, const plm_chat_params *p, char **out, size_t *len) {
    buf js = to_json(m, n);
    plm_status st = plm_chat_apply(model, js.p, js.n, p, out, len);
    free(js.p);
    return st;
}

/* Conversations covering the rules of the families: system prompts first or
 * late, whitespace the trim filter strips (Unicode too), a system message
 * alone (Gemma), NUL bytes, multi-turn, an empty list. */
static const msg C_SYS_USER[] = {{"system", "You are brief.", 0}, {"user", "Hello! What is 2+2?", 0}};
static const msg C_MULTI[] = {{"user", "  Hi \n", 0}, {"assistant", "\tHello!  ", 0}, {"user", "Thanks \xe2\x80\x94 merci, \xe8\xb0\xa2 \xf0\x9f\x98\x80", 0}};
static const msg C_SYS_ONLY[] = {{"system", "  Only system \n", 0}};
static const msg C_LATE_SYS[] = {{"user", "a", 0}, {"system", " late ", 0}, {"assistant", "\xe3\x80\x80x\xc2\xa0", 0}};
static const msg C_NUL[] = {{"user", "a\0b", 3}};
static const struct {
    const msg *m;
    int n;
} CONVS[] = {{C_SYS_USER, 2}, {C_MULTI, 3}, {C_SYS_ONLY, 1}, {C_LATE_SYS, 3}, {C_NUL, 1}, {NULL, 0}};
#define N_CONVS ((int)(sizeof CONVS / sizeof CONVS[0]))

/* Each named family through plm_chat_apply equals plm_chat_render. */
static void test_family_formats_equal_render(void) {
    plm_model *m = load_vocab(NULL);
    REQUIRE(m);
    for (int f = 0; f < PLM_CHAT_N_FAMILIES; f++) {
        plm_chat_format fmt = {(plm_chat_family)f, NULL, 0};
        plm_chat_params p = plm_chat_default_params();
        p.format = plm_chat_family_name(fmt.family);
        p.format_len = strlen(p.format);
        for (int c = 0; c < N_CONVS; c++)
            for (int gen = 0; gen < 2; gen++) {
                size_t want_len = 0, got_len = 0;
                char *want = family_render(&fmt, CONVS[c].m, CONVS[c].n, gen, &want_len), *got = NULL;
                p.add_generation_prompt = gen;
                plm_status st = apply(m, CONVS[c].m, CONVS[c].n, &p, &got, &got_len);
                CHECKF(want && st == PLM_OK && got_len == want_len && !memcmp(got, want, want_len) && got[got_len] == 0,
                       "%s, conversation %d, gen %d: %s\n  got  %.*s\n  want %.*s", p.format, c, gen,
                       st ? plm_last_error() : "differs", (int)got_len, got ? got : "", (int)want_len, want ? want : "");
                plm_free(got);
                free(want);
            }
        CHECK(plm_chat_model_stop(m, &p, 0) && !strcmp(plm_chat_model_stop(m, &p, 0), plm_chat_stop(fmt.family, 0)));
        CHECK(plm_chat_model_stop(m, &p, 1) == NULL);
    }
    plm_model_free(m);
}

/* The model's own template through the interpreter gives what the family
 * renderer gave for it (with SmolLM2's default system message, and without
 * the BOS Gemma's template writes, which tokenization adds). */
static void check_model_as_before(const char *path, const char *stop) {
    plm_model *m = load_vocab(path);
    REQUIRE(m);
    plm_chat_format fmt;
    REQUIRE(plm_chat_detect_model(m, &fmt) == PLM_OK);
    plm_chat_params p = plm_chat_default_params();
    int ok = 0, n = 0;
    /* (not the empty conversation: SmolLM2's template writes nothing for it,
     * where the family renderer wrote the default system message) */
    for (int c = 0; c < N_CONVS - 1; c++)
        for (int gen = 0; gen < 2; gen++) {
            size_t want_len = 0, got_len = 0;
            char *want = family_render(&fmt, CONVS[c].m, CONVS[c].n, gen, &want_len), *got = NULL;
            p.add_generation_prompt = gen;
            plm_status st = apply(m, CONVS[c].m, CONVS[c].n, &p, &got, &got_len);
            bool same = want && st == PLM_OK && got_len == want_len && !memcmp(got, want, want_len);
            /* Gemma 3's template refuses a system message after the first
             * turn, where the family renderer wrote it as a turn. */
            bool refused = st == PLM_ERR_ARG && strstr(plm_last_error(), "raise_exception");
            CHECKF(same || (refused && CONVS[c].m == C_LATE_SYS), "%s, conversation %d, gen %d: %s\n  got  %.*s\n  want %.*s",
                   path ? path : "default", c, gen, st ? plm_last_error() : "differs", (int)got_len, got ? got : "",
                   (int)want_len, want ? want : "");
            ok += same;
            n++;
            plm_free(got);
            free(want);
        }
    CHECKF(ok >= n - 2, "%d of %d identical", ok, n);
    CHECK(plm_chat_model_stop(m, NULL, 0) && !strcmp(plm_chat_model_stop(m, NULL, 0), stop));
    CHECK(plm_chat_model_stop(m, NULL, 1) == NULL);
    plm_model_free(m);
}

static void test_default_model_as_before(void) { check_model_as_before(NULL, "<|im_end|>"); }

/* The Gemma 3 270M file stores no template: ChatML, as before. */
static void test_gemma3_as_before(void) {
    char path[1024];
    REQUIRE(gemma3_path(path, sizeof path));
    check_model_as_before(path, "<|im_end|>");
}

/* ------------------------------------------------------------ variables */

static char *piece(const plm_model *m, plm_token t) {
    static char b[2][256];
    static int k;
    char *o = b[k ^= 1];
    size_t n = 0;
    if (t < 0 || plm_token_to_piece(m, t, true, o, sizeof b[0] - 1, &n) != PLM_OK) n = 0;
    o[n] = 0;
    return o;
}

static plm_status with_template(const plm_model *m, const char *tmpl, const char *vars, const msg *msgs, int n, char **out) {
    plm_chat_params p = plm_chat_default_params();
    p.template_src = tmpl;
    p.template_len = strlen(tmpl);
    p.vars_json = vars;
    p.vars_len = vars ? strlen(vars) : 0;
    size_t len;
    return apply(m, msgs, n, &p, out, &len);
}

static void test_variables(void) {
    plm_model *m = load_vocab(NULL);
    REQUIRE(m);
    plm_model_info info;
    REQUIRE(plm_model_get_info(m, &info) == PLM_OK);
    char *out = NULL, want[600];
    snprintf(want, sizeof want, "[%s|%s|True|7|Paris|user]", piece(m, info.bos), piece(m, info.eos));
    CHECKF(with_template(m, "[{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ x }}|{{ tools[0].city }}|"
                            "{{ messages[0].role }}]",
                         " {\"x\": 7, \"tools\": [{\"city\": \"Paris\"}]} ", C_SYS_USER + 1, 1, &out) == PLM_OK &&
               !strcmp(out, want),
           "%s (want %s)", out ? out : plm_last_error(), want);
    plm_free(out);
    /* the caller's variables come last and win; {} and whitespace are no variables */
    CHECK(with_template(m, "{{ add_generation_prompt }}", "{\"add_generation_prompt\": false}", NULL, 0, &out) == PLM_OK &&
          !strcmp(out, "False"));
    plm_free(out);
    CHECK(with_template(m, "{{ messages|length }}", " { \n} ", NULL, 0, &out) == PLM_OK && !strcmp(out, "0"));
    plm_free(out);
    /* tool calls and results cross as they are */
    const char *tool_msgs = "[{\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"function\": {\"name\": \"f\"}}]},"
                            " {\"role\": \"tool\", \"content\": \"21\"}]";
    plm_chat_params p = plm_chat_default_params();
    p.template_src = "{% for m in messages %}{{ m.role }}:{{ m.tool_calls[0].function.name if m.tool_calls else m.content }};{% endfor %}";
    p.template_len = strlen(p.template_src);
    size_t len;
    CHECK(plm_chat_apply(m, tool_msgs, strlen(tool_msgs), &p, &out, &len) == PLM_OK && !strcmp(out, "assistant:f;tool:21;"));
    plm_free(out);
    /* an unrecognized template has no stop strings; a ChatML one has ChatML's */
    CHECK(plm_chat_model_stop(m, &p, 0) == NULL);
    p.template_src = "{{ '<|im_start|>' }}";
    p.template_len = strlen(p.template_src);
    CHECK(plm_chat_model_stop(m, &p, 0) && !strcmp(plm_chat_model_stop(m, &p, 0), "<|im_end|>"));
    plm_model_free(m);
}

/* --------------------------------------------------------------- errors */

static bool fails(plm_status st, plm_status want, const char *needle) {
    if (st == want && strstr(plm_last_error(), needle)) return true;
    fprintf(stderr, "  status %d, message: %s (want %d, \"%s\")\n", st, plm_last_error(), want, needle);
    return false;
}

static void test_errors(void) {
    plm_model *m = load_vocab(NULL);
    REQUIRE(m);
    char *out = (char *)1;
    size_t len = 9;
    const msg robot[] = {{"user", "a", 0}, {"robot", "b", 0}};
    CHECK(fails(apply(m, robot, 2, NULL, &out, &len), PLM_ERR_ARG,
                "message 1: role \"robot\" is not one of system, user, assistant, tool") && !out && !len);
    const msg tool[] = {{"tool", "b", 0}};
    plm_chat_params chatml = plm_chat_default_params();
    chatml.format = "chatml";
    chatml.format_len = 6;
    CHECK(apply(m, tool, 1, NULL, &out, &len) == PLM_OK);
    plm_free(out);
    CHECK(fails(apply(m, tool, 1, &chatml, &out, &len), PLM_ERR_ARG, "message 0: role \"tool\" is not one of system, user, assistant"));
    const char *bad[][2] = {
        {"{\"role\": \"user\"}", "a JSON array of messages is expected"},
        {"[\"hi\"]", "message 0: an object with a role and a content is expected"},
        {"[{\"content\": \"x\"}]", "message 0: role is not a string"},
        {"[{\"role\": 3, \"content\": \"x\"}]", "message 0: role is not a string"},
        {"[{\"role\": \"user\", \"content\": 3}]", "message 0: content must be a string, a list of parts or null"},
        {"[{\"role\": \"user\", \"content\": \"x\"}", "a JSON array of messages is expected"},
        {"[{\"role\": \"user\", \"content\": x}]", "invalid JSON"},
        {"[{\"role\": \"user\", \"content\": \"x\"}], \"add_generation_prompt\": 1", "text after the array at byte 34"},
        {"[{\"role\": \"user\", \"content\": \"x]\"}], \"x\": [1", "text after the array at byte 35"},
        {" [1] \n", "message 0: an object"},
        {"[", "a JSON array of messages is expected"},
        {"[{\"role\": \"user\", \"content\": \"\xff\"}]", "chat messages: invalid UTF-8 at byte 30"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECKF(fails(plm_chat_apply(m, bad[i][0], strlen(bad[i][0]), NULL, &out, &len), PLM_ERR_ARG, bad[i][1]) && !out, "%s",
               bad[i][0]);
    const char *nulls = "[{\"role\": \"assistant\", \"content\": null}]";
    CHECK(fails(plm_chat_apply(m, nulls, strlen(nulls), &chatml, &out, &len), PLM_ERR_ARG, "message 0: content must be a string"));
    /* a JSON error is placed in its own text */
    CHECK(fails(plm_chat_apply(m, "[1, ]", 5, NULL, &out, &len), PLM_ERR_ARG, "at byte"));
    /* variables */
    plm_chat_params p = plm_chat_default_params();
    p.vars_json = "[1]";
    p.vars_len = 3;
    CHECK(fails(apply(m, C_SYS_USER, 2, &p, &out, &len), PLM_ERR_ARG, "chat template variables: "));
    p.vars_json = "{\"a\": 1} x";
    p.vars_len = strlen(p.vars_json);
    CHECK(fails(apply(m, C_SYS_USER, 2, &p, &out, &len), PLM_ERR_ARG, "text after the object"));
    p.vars_json = NULL;
    CHECK(fails(apply(m, C_SYS_USER, 2, &p, &out, &len), PLM_ERR_ARG, "vars_json is NULL"));
    /* formats and templates */
    p = plm_chat_default_params();
    p.format = "mistral";
    p.format_len = 7;
    CHECK(fails(apply(m, C_SYS_USER, 2, &p, &out, &len), PLM_ERR_ARG, "unknown chat format \"mistral\""));
    CHECK(plm_chat_model_stop(m, &p, 0) == NULL);
    p.template_src = "x";
    p.template_len = 1;
    CHECK(fails(apply(m, C_SYS_USER, 2, &p, &out, &len), PLM_ERR_ARG, "not both"));
    CHECK(fails(with_template(m, "{{ messages[0].content }}\n{% include 'x' %}", NULL, C_SYS_USER, 2, &out), PLM_ERR_UNSUPPORTED,
                "line 2"));
    CHECK(fails(with_template(m, "{{ raise_exception('no system here') }}", NULL, C_SYS_USER, 2, &out), PLM_ERR_ARG,
                "no system here"));
    CHECK(fails(with_template(m, "\xff", NULL, C_SYS_USER, 2, &out), PLM_ERR_ARG, "chat template: invalid UTF-8"));
    /* arguments */
    CHECK(fails(plm_chat_apply(NULL, "[]", 2, NULL, &out, &len), PLM_ERR_ARG, "model is NULL"));
    CHECK(fails(plm_chat_apply(m, NULL, 0, NULL, &out, &len), PLM_ERR_ARG, "messages_json is NULL"));
    CHECK(fails(plm_chat_apply(m, "[]", 2, NULL, NULL, &len), PLM_ERR_ARG, "out is NULL"));
    CHECK(fails(plm_chat_apply(m, "[]", 2, NULL, &out, NULL), PLM_ERR_ARG, "out_len is NULL"));
    CHECK(plm_chat_model_stop(NULL, NULL, 0) == NULL);
    plm_model_free(m);
}

int main(void) {
    RUN(test_family_formats_equal_render);
    RUN(test_default_model_as_before);
    RUN(test_gemma3_as_before);
    RUN(test_variables);
    RUN(test_errors);
    return TEST_SUMMARY();
}
