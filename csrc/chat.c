/*
 * chat.c — chat formats: from a list of messages to the prompt text a model was
 * trained on.
 *
 * A GGUF stores its chat template as Jinja source (tokenizer.chat_template).
 * plm_chat_apply renders a model's chat with it through the interpreter
 * (jinja.c), so that the Python and Lua packages and classification share one
 * implementation: it builds the template's variables (messages, BOS and EOS
 * texts, the caller's), checks the messages, and falls back to a family when
 * the file has no template or the caller names one. This file also owns the
 * four families (ChatML, Llama 3, Gemma, Phi-3): their recognition by marker
 * strings (which gives a chat its stop strings), their direct renderer
 * (plm_chat_render), the same as Jinja templates, the default system message
 * a ChatML template may write (SmolLM2's does), and the end-of-turn markers.
 * It reads the template through plm_model_get_info and leaves tokens (BOS,
 * special-token parsing) to the tokenizer.
 *
 * The rules are those of pocketlm's first, Python, implementation, kept byte
 * for byte: whitespace is what Python's str.isspace() calls whitespace (which
 * is also what Jinja's trim filter and Python's regex \s strip), and the
 * default system message is what the regular expression
 * <\|im_start\|>system\s*\n(.*?)<\|im_end\|> (re.S) captures.
 */
#include "internal.h"

#include "tokenizer/unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- families */

static const char *const FAMILY_NAMES[PLM_CHAT_N_FAMILIES] = {"chatml", "llama3", "gemma", "phi3"};

/* End-of-turn markers, NULL-terminated per family. */
static const char *const STOP_CHATML[] = {"<|im_end|>", NULL};
static const char *const STOP_LLAMA3[] = {"<|eot_id|>", NULL};
static const char *const STOP_GEMMA[] = {"<end_of_turn>", NULL};
static const char *const STOP_PHI3[] = {"<|end|>", NULL};
static const char *const *const FAMILY_STOPS[PLM_CHAT_N_FAMILIES] = {STOP_CHATML, STOP_LLAMA3, STOP_GEMMA, STOP_PHI3};

static bool family_ok(plm_chat_family f) { return (int)f >= 0 && (int)f < PLM_CHAT_N_FAMILIES; }

const char *plm_chat_family_name(plm_chat_family family) { return family_ok(family) ? FAMILY_NAMES[family] : NULL; }

const char *plm_chat_stop(plm_chat_family family, int32_t i) {
    if (!family_ok(family) || i < 0) return NULL;
    const char *const *s = FAMILY_STOPS[family];
    for (int32_t k = 0; s[k]; k++)
        if (k == i) return s[k];
    return NULL;
}

/* Writes at most 40 bytes of s into out (cap >= 48) as printable ASCII, other
 * bytes as \xNN, with "..." when cut: a caller's string quoted in a message. */
static void quote_bytes(const char *s, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == 40) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') out[o++] = (char)c;
        else o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    out[o] = 0;
}

plm_status plm_chat_family_from_name(const char *name, size_t len, plm_chat_family *out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_chat_family_from_name: out is NULL");
    if (!name && len) return plm_fail(PLM_ERR_ARG, "plm_chat_family_from_name: name is NULL");
    for (int f = 0; f < PLM_CHAT_N_FAMILIES; f++) {
        if (strlen(FAMILY_NAMES[f]) == len && memcmp(FAMILY_NAMES[f], name, len) == 0) {
            *out = (plm_chat_family)f;
            return PLM_OK;
        }
    }
    char q[64];
    quote_bytes(name ? name : "", len, q, sizeof q);
    return plm_fail(PLM_ERR_ARG, "unknown chat format \"%s\"; known: chatml, llama3, gemma, phi3", q);
}

/* ---------------------------------------------------------- text helpers */

/* Python's str.isspace(): White_Space plus U+001C..U+001F (which Python counts
 * as separators). Jinja's trim and the regex \s both use it. */
static bool py_isspace(uint32_t cp) {
    if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Offset of the first byte of s[0..n) that does not begin well-formed UTF-8, or n. */
static size_t utf8_invalid_at(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = plm_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (cp == PLM_CP_INVALID) return i;
        i += k;
    }
    return n;
}

/* Length of the whitespace at the start of valid UTF-8 s[0..n). */
static size_t space_prefix(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = plm_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (!py_isspace(cp)) break;
        i += k;
    }
    return i;
}

/* Length of s[0..n) (valid UTF-8) without the whitespace at its end. */
static size_t rstrip_len(const char *s, size_t n) {
    while (n > 0) {
        size_t start = n - 1;
        while (start > 0 && ((unsigned char)s[start] & 0xC0) == 0x80 && n - start < 4) start--;
        uint32_t cp;
        plm_utf8_decode((const uint8_t *)s + start, n - start, &cp);
        if (!py_isspace(cp)) break;
        n = start;
    }
    return n;
}

/* Python's s.strip(): the slice of s[0..n) without leading and trailing whitespace. */
static void strip(const char **s, size_t *n) {
    size_t a = space_prefix(*s, *n);
    *s += a;
    *n = rstrip_len(*s, *n - a);
}

/* First occurrence of needle in s[0..n) (memmem is not standard C). */
static const char *find(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (const char *p = s, *end = s + n; k <= (size_t)(end - p); p++) {
        p = memchr(p, needle[0], (size_t)(end - p) - k + 1);
        if (!p) return NULL;
        if (memcmp(p, needle, k) == 0) return p;
    }
    return NULL;
}

/* True when s holds pat, where a ' in pat also matches a " (the Python code
 * compared after replacing every " with '). */
static bool has_quote_insensitive(const char *s, size_t n, const char *pat) {
    size_t k = strlen(pat);
    for (size_t i = 0; i + k <= n; i++) {
        size_t j = 0;
        for (; j < k; j++) {
            char c = s[i + j];
            if (!(c == pat[j] || (pat[j] == '\'' && c == '"'))) break;
        }
        if (j == k) return true;
    }
    return false;
}

/* --------------------------------------------------------------- detect */

/* The default system message of a ChatML template: the first
 * "<|im_start|>system" followed by whitespace that contains a newline; the
 * message starts after the last newline of that whitespace (regex \s*\n is
 * greedy) and ends at the next "<|im_end|>". Returns false when there is none. */
static bool chatml_default_system(const char *t, size_t n, const char **out, size_t *out_len) {
    static const char open[] = "<|im_start|>system";
    const char *end = t + n;
    for (const char *p = find(t, n, open); p; p = find(p + 1, (size_t)(end - p - 1), open)) {
        const char *q = p + sizeof open - 1;
        const char *after_nl = NULL;
        while (q < end) {
            uint32_t cp;
            size_t k = plm_utf8_decode((const uint8_t *)q, (size_t)(end - q), &cp);
            if (!py_isspace(cp)) break;
            q += k;
            if (cp == '\n') after_nl = q;
        }
        if (!after_nl) continue;
        const char *close = find(after_nl, (size_t)(end - after_nl), "<|im_end|>");
        if (!close) return false; /* no later "<|im_start|>system" can have one either */
        *out = after_nl;
        *out_len = (size_t)(close - after_nl);
        return true;
    }
    return false;
}

/* Detection; what names the template in messages. */
static plm_status detect(const char *tmpl, size_t len, plm_chat_format *out, const char *what) {
    *out = (plm_chat_format){.family = PLM_CHAT_CHATML};
    if (!tmpl && len) return plm_fail(PLM_ERR_ARG, "%s is NULL", what);
    if (!tmpl) return PLM_OK;
    size_t bad = utf8_invalid_at(tmpl, len);
    if (bad < len) return plm_fail(PLM_ERR_ARG, "%s: invalid UTF-8 at byte %zu", what, bad);
    if (find(tmpl, len, "<|start_header_id|>")) {
        out->family = PLM_CHAT_LLAMA3;
    } else if (find(tmpl, len, "<start_of_turn>")) {
        out->family = PLM_CHAT_GEMMA;
    } else if (find(tmpl, len, "<|user|>") && find(tmpl, len, "<|end|>")) {
        out->family = PLM_CHAT_PHI3;
    } else if (find(tmpl, len, "<|im_start|>") && has_quote_insensitive(tmpl, len, "messages[0]['role'] != 'system'")) {
        /* A template that writes a system message only when the conversation
         * has none: that message is the default. */
        const char *s;
        size_t n;
        if (chatml_default_system(tmpl, len, &s, &n)) {
            out->default_system = s;
            out->default_system_len = n;
        }
    }
    return PLM_OK;
}

plm_status plm_chat_detect(const char *tmpl, size_t len, plm_chat_format *out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_chat_detect: out is NULL");
    return detect(tmpl, len, out, "chat template");
}

plm_status plm_chat_detect_model(const plm_model *model, plm_chat_format *out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_chat_detect_model: out is NULL");
    *out = (plm_chat_format){.family = PLM_CHAT_CHATML};
    plm_model_info info;
    plm_status st = plm_model_get_info(model, &info);
    if (st) return st;
    char what[512];
    snprintf(what, sizeof what, "%s: tokenizer.chat_template", info.path);
    /* A detection failure is the file's fault, not the caller's. */
    st = detect(info.chat_template, strlen(info.chat_template), out, what);
    return st == PLM_ERR_ARG ? PLM_ERR_FORMAT : st;
}

/* --------------------------------------------------------------- render */

enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };

/* Appends to a caller's buffer while counting what the whole text needs. */
typedef struct writer {
    char *buf;
    size_t cap, n;
    bool overflow; /* the size does not fit in size_t */
} writer;

static void put(writer *w, const char *s, size_t n) {
    if (w->overflow) return;
    if (n > SIZE_MAX - w->n) {
        w->overflow = true;
        return;
    }
    if (w->buf && w->n < w->cap) memcpy(w->buf + w->n, s, PLM_MIN(n, w->cap - w->n));
    w->n += n;
}

static void puts_(writer *w, const char *s) { put(w, s, strlen(s)); }

/* A checked message: its role and content (stripped or not as the family asks). */
typedef struct turn {
    int role;
    const char *content;
    size_t len;
} turn;

static plm_status check_message(const plm_chat_message *m, int32_t i, turn *out) {
    if (!m->role) return plm_fail(PLM_ERR_ARG, "message %d: role is NULL", i);
    if (!m->content) return plm_fail(PLM_ERR_ARG, "message %d: content is NULL (use \"\" for an empty message)", i);
    static const char *const roles[] = {"system", "user", "assistant"};
    out->role = -1;
    for (int r = 0; r < 3; r++)
        if (m->role_len == strlen(roles[r]) && memcmp(m->role, roles[r], m->role_len) == 0) out->role = r;
    if (out->role < 0) {
        char q[64];
        quote_bytes(m->role, m->role_len, q, sizeof q);
        return plm_fail(PLM_ERR_ARG, "message %d: role \"%s\" is not one of system, user, assistant", i, q);
    }
    size_t bad = utf8_invalid_at(m->content, m->content_len);
    if (bad < m->content_len) return plm_fail(PLM_ERR_ARG, "message %d: content is not valid UTF-8 (byte %zu)", i, bad);
    out->content = m->content;
    out->len = m->content_len;
    return PLM_OK;
}

static const char *role_name(int role) { return role == ROLE_SYSTEM ? "system" : role == ROLE_USER ? "user" : "assistant"; }

static void render_chatml(writer *w, const turn *t, int32_t n, bool gen) {
    for (int32_t i = 0; i < n; i++) {
        puts_(w, "<|im_start|>");
        puts_(w, role_name(t[i].role));
        puts_(w, "\n");
        put(w, t[i].content, t[i].len);
        puts_(w, "<|im_end|>\n");
    }
    if (gen) puts_(w, "<|im_start|>assistant\n");
}

/* Llama 3 strips each message (the template's | trim). */
static void render_llama3(writer *w, const turn *t, int32_t n, bool gen) {
    for (int32_t i = 0; i < n; i++) {
        const char *c = t[i].content;
        size_t k = t[i].len;
        strip(&c, &k);
        puts_(w, "<|start_header_id|>");
        puts_(w, role_name(t[i].role));
        puts_(w, "<|end_header_id|>\n\n");
        put(w, c, k);
        puts_(w, "<|eot_id|>");
    }
    if (gen) puts_(w, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Gemma has no system role: a leading system message opens the first turn,
 * followed by a blank line; the assistant is called "model". */
static void render_gemma(writer *w, const turn *t, int32_t n, bool gen) {
    const char *prefix = NULL;
    size_t prefix_len = 0;
    int32_t first = 0;
    if (n > 0 && t[0].role == ROLE_SYSTEM) {
        prefix = t[0].content;
        prefix_len = t[0].len;
        strip(&prefix, &prefix_len);
        first = 1;
    }
    for (int32_t i = first; i < n; i++) {
        const char *c = t[i].content;
        size_t k = t[i].len;
        strip(&c, &k);
        puts_(w, "<start_of_turn>");
        puts_(w, t[i].role == ROLE_ASSISTANT ? "model" : role_name(t[i].role));
        puts_(w, "\n");
        if (prefix) {
            put(w, prefix, prefix_len);
            puts_(w, "\n\n");
            prefix = NULL;
        }
        put(w, c, k);
        puts_(w, "<end_of_turn>\n");
    }
    if (prefix) { /* a system message and no turn to attach it to */
        puts_(w, "<start_of_turn>user\n");
        put(w, prefix, prefix_len);
        puts_(w, "<end_of_turn>\n");
    }
    if (gen) puts_(w, "<start_of_turn>model\n");
}

static void render_phi3(writer *w, const turn *t, int32_t n, bool gen) {
    for (int32_t i = 0; i < n; i++) {
        puts_(w, "<|");
        puts_(w, role_name(t[i].role));
        puts_(w, "|>\n");
        put(w, t[i].content, t[i].len);
        puts_(w, "<|end|>\n");
    }
    if (gen) puts_(w, "<|assistant|>\n");
}

plm_status plm_chat_render(const plm_chat_format *fmt, const plm_chat_message *msgs, int32_t n,
                           bool add_generation_prompt, char *buf, size_t cap, size_t *n_out) {
    if (n_out) *n_out = 0;
    if (!fmt || !n_out) return plm_fail(PLM_ERR_ARG, "plm_chat_render: %s is NULL", fmt ? "n_out" : "fmt");
    if (!family_ok(fmt->family)) return plm_fail(PLM_ERR_ARG, "plm_chat_render: unknown chat family %d", (int)fmt->family);
    if (n < 0) return plm_fail(PLM_ERR_ARG, "plm_chat_render: negative message count %d", n);
    if (n > 0 && !msgs) return plm_fail(PLM_ERR_ARG, "plm_chat_render: msgs is NULL");
    if (!buf && cap) return plm_fail(PLM_ERR_ARG, "plm_chat_render: buf is NULL but cap is %zu", cap);
    if (fmt->default_system) {
        size_t bad = utf8_invalid_at(fmt->default_system, fmt->default_system_len);
        if (bad < fmt->default_system_len)
            return plm_fail(PLM_ERR_ARG, "the default system message is not valid UTF-8 (byte %zu)", bad);
    }
    /* Room for one more turn in front: the default system message. */
    turn *t = malloc(((size_t)n + 1) * sizeof(*t));
    if (!t) return plm_fail(PLM_ERR_OOM, "out of memory for %d chat messages", n);
    for (int32_t i = 0; i < n; i++) {
        plm_status st = check_message(&msgs[i], i, &t[i + 1]);
        if (st) {
            free(t);
            return st;
        }
    }
    turn *first = t + 1;
    int32_t k = n;
    if (fmt->default_system && (n == 0 || t[1].role != ROLE_SYSTEM)) {
        t[0] = (turn){ROLE_SYSTEM, fmt->default_system, fmt->default_system_len};
        first = t;
        k = n + 1;
    }
    writer w = {.buf = buf, .cap = cap};
    switch (fmt->family) {
    case PLM_CHAT_CHATML: render_chatml(&w, first, k, add_generation_prompt); break;
    case PLM_CHAT_LLAMA3: render_llama3(&w, first, k, add_generation_prompt); break;
    case PLM_CHAT_GEMMA: render_gemma(&w, first, k, add_generation_prompt); break;
    case PLM_CHAT_PHI3: render_phi3(&w, first, k, add_generation_prompt); break;
    }
    free(t);
    if (w.overflow) return plm_fail(PLM_ERR_ARG, "plm_chat_render: the text would be larger than memory can hold");
    *n_out = w.n;
    if (w.n > cap) return plm_fail(PLM_ERR_BUFFER, "plm_chat_render: the text needs %zu bytes, the buffer holds %zu", w.n, cap);
    if (w.n < cap) buf[w.n] = 0;
    return PLM_OK;
}

/* ------------------------------------------------- the model's own template */

/* The families as Jinja templates, for a file that stores no template or a
 * caller that names a family: each gives what plm_chat_render gives for the
 * same messages (tests/c/test_chat_model.c compares them). */
static const char *const FAMILY_JINJA[PLM_CHAT_N_FAMILIES] = {
    "{%- for m in messages -%}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}",

    "{%- for m in messages -%}"
    "{{ '<|start_header_id|>' + m.role + '<|end_header_id|>\\n\\n' + m.content|trim + '<|eot_id|>' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}",

    "{%- set ns = namespace(prefix=none, first=0) -%}"
    "{%- if messages and messages[0].role == 'system' -%}{%- set ns.prefix = messages[0].content|trim -%}"
    "{%- set ns.first = 1 -%}{%- endif -%}"
    "{%- for m in messages[ns.first:] -%}"
    "{{ '<start_of_turn>' + ('model' if m.role == 'assistant' else m.role) + '\\n' }}"
    "{%- if ns.prefix is not none -%}{{ ns.prefix + '\\n\\n' }}{%- set ns.prefix = none -%}{%- endif -%}"
    "{{ m.content|trim + '<end_of_turn>\\n' }}{%- endfor -%}"
    "{%- if ns.prefix is not none -%}{{ '<start_of_turn>user\\n' + ns.prefix + '<end_of_turn>\\n' }}{%- endif -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}",

    "{%- for m in messages -%}{{ '<|' + m.role + '|>\\n' + m.content + '<|end|>\\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}",
};

/* What every chat's messages must be, checked before a template runs: its
 * output is the first problem, empty when there is none. strict (a family
 * format): the roles and text contents plm_chat_render takes; otherwise also
 * the role "tool", and contents that are lists of parts or null (an assistant
 * turn with tool_calls), which templates handle in their own ways. */
static const char CHECK_JINJA[] =
    "{%- set roles = ['system', 'user', 'assistant'] if strict else ['system', 'user', 'assistant', 'tool'] -%}"
    "{%- if messages is string or messages is mapping or messages is not sequence -%}"
    "messages: a JSON array of messages is expected"
    "{%- else -%}{%- for m in messages -%}"
    "{%- if m is not mapping -%}message {{ loop.index0 }}: an object with a role and a content is expected"
    "{%- break -%}"
    "{%- elif m.role is not defined or m.role is not string -%}message {{ loop.index0 }}: role is not a string"
    "{%- break -%}"
    "{%- elif m.role not in roles -%}"
    "message {{ loop.index0 }}: role {{ m.role|tojson }} is not one of {{ roles|join(', ') }}"
    "{%- break -%}"
    "{%- elif strict and m.content is not string -%}"
    "message {{ loop.index0 }}: content must be a string (a family format renders roles and texts only)"
    "{%- break -%}"
    "{%- elif m.content is defined and m.content is not none and m.content is not string"
    " and (m.content is mapping or m.content is not sequence) -%}"
    "message {{ loop.index0 }}: content must be a string, a list of parts or null"
    "{%- break -%}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}";

plm_chat_params plm_chat_default_params(void) { return (plm_chat_params){.add_generation_prompt = true}; }

/* A growing text; oom once an allocation failed. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (n + 1 > b->cap - b->n || !b->p) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* s[0..n) as a JSON string. */
static void sb_json_str(sbuf *b, const char *s, size_t n) {
    sb_puts(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            sb_put(b, e, 2);
        } else if (c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", c);
            sb_put(b, e, 6);
        } else sb_put(b, s + i, 1);
    }
    sb_puts(b, "\"");
}

/* The text of a special token (BOS, EOS) as a JSON string; "" when the
 * vocabulary has none or its text is not UTF-8. */
static void sb_token_text(sbuf *b, const plm_model *model, plm_token t) {
    char text[256];
    size_t n = 0;
    if (t < 0 || plm_token_to_piece(model, t, true, text, sizeof text, &n) != PLM_OK || utf8_invalid_at(text, n) < n) n = 0;
    sb_json_str(b, text, n);
}

/* The members of a JSON object's text ({...} without its braces), after
 * checking that it is one; NULL text gives none. */
static plm_status object_members(const char *s, size_t n, const char *what, const char **inner, size_t *inner_len) {
    *inner = "";
    *inner_len = 0;
    if (!s) return PLM_OK;
    size_t bad = utf8_invalid_at(s, n);
    if (bad < n) return plm_fail(PLM_ERR_ARG, "%s: invalid UTF-8 at byte %zu", what, bad);
    char *out = NULL;
    size_t out_len = 0;
    /* The interpreter reads it alone: it must be one JSON object and nothing else. */
    plm_status st = plm_chat_template_render("", 0, s, n, &out, &out_len);
    plm_free(out);
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", plm_last_error());
        return plm_fail(st, "%s: %s", what, msg);
    }
    size_t a = 0, z = n;
    while (a < n && s[a] != '{') a++;
    while (z > a && s[z - 1] != '}') z--;
    a++;
    z--;
    while (a < z && (s[a] == ' ' || s[a] == '\t' || s[a] == '\n' || s[a] == '\r')) a++;
    *inner = s + a;
    *inner_len = z - a; /* nothing but spaces left: {} */
    return PLM_OK;
}

/* Offset of the end of the JSON array that s[0..n) starts with (after
 * leading spaces), or n + 1 when it does not start with '[' or never closes.
 * Only brackets and strings are followed: the interpreter's reader checks the
 * rest. Anything after that end would be spliced into the variables' object. */
static size_t json_array_end(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    if (i == n || s[i] != '[') return n + 1;
    size_t depth = 0;
    for (; i < n; i++) {
        char c = s[i];
        if (c == '"') {
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\') i++;
        } else if (c == '[' || c == '{') depth++;
        else if ((c == ']' || c == '}') && --depth == 0) return i + 1;
    }
    return n + 1;
}

/* Which family a chat of model with params renders or stops as; -1: the
 * model's own template, not recognized as a family. *tmpl: the Jinja source. */
static plm_status chat_source(const plm_model *model, const plm_chat_params *p, int *family, const char **tmpl,
                              size_t *tmpl_len, plm_model_info *info) {
    plm_status st = plm_model_get_info(model, info);
    if (st) return st;
    if (p->format && p->template_src) return plm_fail(PLM_ERR_ARG, "plm_chat_apply: give a chat format or a template, not both");
    if (p->format) {
        plm_chat_family f;
        if ((st = plm_chat_family_from_name(p->format, p->format_len, &f))) return st;
        *family = (int)f;
        *tmpl = FAMILY_JINJA[f];
        *tmpl_len = strlen(*tmpl);
        return PLM_OK;
    }
    const char *t = p->template_src ? p->template_src : info->chat_template;
    size_t n = p->template_src ? p->template_len : strlen(t);
    if (!n && !p->template_src) {
        *family = PLM_CHAT_CHATML;
        *tmpl = FAMILY_JINJA[PLM_CHAT_CHATML];
        *tmpl_len = strlen(*tmpl);
        return PLM_OK;
    }
    *tmpl = t;
    *tmpl_len = n;
    plm_chat_format f;
    if (p->template_src) {
        if ((st = detect(t, n, &f, "chat template"))) return st;
    } else if (detect(t, n, &f, "tokenizer.chat_template"))
        return plm_fail(PLM_ERR_FORMAT, "%s: %s", info->path, plm_last_error());
    /* detect() calls a template it does not recognize ChatML: only a real
     * marker counts here. */
    *family = f.family != PLM_CHAT_CHATML || find(t, n, "<|im_start|>") ? (int)f.family : -1;
    return PLM_OK;
}

plm_status plm_chat_apply(const plm_model *model, const char *messages_json, size_t messages_len,
                          const plm_chat_params *params, char **out, size_t *out_len) {
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!model || !out || !out_len)
        return plm_fail(PLM_ERR_ARG, "plm_chat_apply: %s is NULL", !model ? "model" : !out ? "out" : "out_len");
    if (!messages_json) return plm_fail(PLM_ERR_ARG, "plm_chat_apply: messages_json is NULL");
    plm_chat_params p = params ? *params : plm_chat_default_params();
    if (!p.vars_json && p.vars_len) return plm_fail(PLM_ERR_ARG, "plm_chat_apply: vars_json is NULL but vars_len is %zu", p.vars_len);
    if (!p.format && p.format_len) return plm_fail(PLM_ERR_ARG, "plm_chat_apply: format is NULL but format_len is %zu", p.format_len);
    if (!p.template_src && p.template_len)
        return plm_fail(PLM_ERR_ARG, "plm_chat_apply: template_src is NULL but template_len is %zu", p.template_len);
    size_t bad = utf8_invalid_at(messages_json, messages_len);
    if (bad < messages_len) return plm_fail(PLM_ERR_ARG, "chat messages: invalid UTF-8 at byte %zu", bad);
    size_t end = json_array_end(messages_json, messages_len);
    if (end > messages_len) return plm_fail(PLM_ERR_ARG, "chat messages: a JSON array of messages is expected");
    if (space_prefix(messages_json + end, messages_len - end) != messages_len - end)
        return plm_fail(PLM_ERR_ARG, "chat messages: text after the array at byte %zu", end);
    const char *extra;
    size_t extra_len;
    plm_status st = object_members(p.vars_json, p.vars_len, "chat template variables", &extra, &extra_len);
    if (st) return st;
    plm_model_info info;
    int family;
    const char *tmpl;
    size_t tmpl_len;
    if ((st = chat_source(model, &p, &family, &tmpl, &tmpl_len, &info))) return st;

    /* The messages alone first, so that their problems are named as such. */
    sbuf v = {0};
    sb_puts(&v, "{\"messages\": ");
    sb_put(&v, messages_json, messages_len);
    sb_puts(&v, p.format ? ", \"strict\": true}" : ", \"strict\": false}");
    char *r = NULL;
    size_t rn = 0;
    if (!v.oom) {
        st = plm_chat_template_render(CHECK_JINJA, sizeof CHECK_JINJA - 1, v.p, v.n, &r, &rn);
        if (st == PLM_ERR_ARG) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", plm_last_error());
            st = plm_fail(st, "chat messages: %s", msg);
        } else if (!st && rn) st = plm_fail(PLM_ERR_ARG, "%s", r);
        plm_free(r);
        r = NULL;
    }
    /* The variables: messages, add_generation_prompt, bos_token, eos_token,
     * then the caller's (which may replace them). */
    v.n = 0;
    sb_puts(&v, "{\"messages\": ");
    sb_put(&v, messages_json, messages_len);
    sb_puts(&v, p.add_generation_prompt ? ", \"add_generation_prompt\": true, \"bos_token\": "
                                        : ", \"add_generation_prompt\": false, \"bos_token\": ");
    sb_token_text(&v, model, info.bos);
    sb_puts(&v, ", \"eos_token\": ");
    sb_token_text(&v, model, info.eos);
    if (extra_len) {
        sb_puts(&v, ", ");
        sb_put(&v, extra, extra_len);
    }
    sb_puts(&v, "}");
    if (!st && v.oom) st = plm_fail(PLM_ERR_OOM, "out of memory for the chat template variables");
    if (!st) {
        st = plm_chat_template_render(tmpl, tmpl_len, v.p, v.n, &r, &rn);
        if (st) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", plm_last_error());
            if (p.format) st = plm_fail(st, "the %s chat format: %s", FAMILY_NAMES[family], msg);
            else if (p.template_src || !*info.chat_template) st = plm_fail(st, "%s", msg);
            else st = plm_fail(st, "%s: tokenizer.chat_template: %s", info.path, msg);
        }
    }
    free(v.p);
    if (st) return st;
    /* Tokenizing the prompt adds BOS when the vocabulary asks for it: the
     * template's own BOS at the start would be a second one. */
    char bos[256];
    size_t bn = 0;
    if (info.add_bos && info.bos >= 0 && plm_token_to_piece(model, info.bos, true, bos, sizeof bos, &bn) == PLM_OK && bn &&
        bn <= rn && memcmp(r, bos, bn) == 0) {
        memmove(r, r + bn, rn - bn + 1);
        rn -= bn;
    }
    *out = r;
    *out_len = rn;
    return PLM_OK;
}

plm_status plm_chat_user_prompt(const plm_model *model, const char *text, size_t len, char **out, size_t *out_len) {
    sbuf js = {0};
    sb_puts(&js, "[{\"role\": \"user\", \"content\": ");
    sb_json_str(&js, text, len);
    sb_puts(&js, "}]");
    plm_status st = js.oom ? plm_fail(PLM_ERR_OOM, "out of memory for a chat message")
                           : plm_chat_apply(model, js.p, js.n, NULL, out, out_len);
    free(js.p);
    return st;
}

const char *plm_chat_model_stop(const plm_model *model, const plm_chat_params *params, int32_t i) {
    plm_chat_params p = params ? *params : plm_chat_default_params();
    plm_model_info info;
    int family;
    const char *tmpl;
    size_t tmpl_len;
    if (!model || (!p.format && p.format_len) || (!p.template_src && p.template_len) ||
        chat_source(model, &p, &family, &tmpl, &tmpl_len, &info) || family < 0)
        return NULL;
    return plm_chat_stop((plm_chat_family)family, i);
}
