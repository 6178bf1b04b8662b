/*
 * schema.c — JSON Schema compiled to a grammar.
 *
 * Owns a small JSON reader (values keep their line:column for messages) and
 * the compiler from a schema to GBNF text, which gbnf.c then reads: one rule
 * per schema node, named after its path, with shared rules for strings,
 * numbers and any value. The keywords supported are listed at
 * plm_grammar_from_json_schema in pocketlm.h; any other keyword is an error
 * naming it and where it is, never silently ignored. Output is compact JSON
 * (an optional single space after ':' and ','), objects list their properties
 * in the schema's order, and unbounded numbers are capped at 16 digits so a
 * model cannot loop on digits forever. Regular expressions ("pattern") go
 * through regex.c in JSON mode.
 */
#include "grammar/grammar.h"
#include "tokenizer/unicode.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ JSON values */

enum { JNULL, JBOOL, JNUM, JSTR, JARR, JOBJ };

typedef struct jval jval;
struct jval {
    int type;
    bool b;
    double num;
    bool is_int;         /* written without fraction or exponent and fits in int64 */
    int64_t i;
    char *s;             /* JSTR: decoded bytes; JNUM: the source text */
    size_t n;
    jval **items;        /* JARR items, JOBJ values */
    char **keys;         /* JOBJ */
    size_t *key_lens;
    int32_t count;
    int32_t line, col;
    int32_t rule;        /* compiled rule number (for $ref targets), -1 */
};

typedef struct jreader {
    const char *src, *p, *end;
    int depth;
    plm_status st;
} jreader;

static void jfree(jval *v) {
    if (!v) return;
    for (int32_t i = 0; i < v->count; i++) {
        jfree(v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->key_lens);
    free(v->s);
    free(v);
}

static void jpos(const char *src, const char *at, int32_t *line, int32_t *col) {
    *line = 1, *col = 1;
    for (const char *q = src; q < at; q++) {
        if (*q == '\n') (*line)++, *col = 1;
        else if (((unsigned char)*q & 0xC0) != 0x80) (*col)++;
    }
}

static jval *jfail(jreader *r, const char *fmt, ...) PLM_PRINTF(2, 3);
static jval *jfail(jreader *r, const char *fmt, ...) {
    if (r->st) return NULL;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int32_t line, col;
    jpos(r->src, r->p, &line, &col);
    r->st = plm_fail(PLM_ERR_ARG, "schema line %d:%d: %s", line, col, msg);
    return NULL;
}

static void jspace(jreader *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static jval *jnew(jreader *r, int type) {
    jval *v = calloc(1, sizeof(*v));
    if (!v) {
        if (!r->st) r->st = plm_fail(PLM_ERR_OOM, "out of memory reading a schema");
        return NULL;
    }
    v->type = type;
    v->rule = -1;
    jpos(r->src, r->p, &v->line, &v->col);
    return v;
}

static int hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static bool jstring(jreader *r, char **out, size_t *n_out) {
    r->p++; /* the quote */
    plm_gbuf b = {0};
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p;
        if (c < 0x20) return free(b.s), jfail(r, "control character in a string (escape it)"), false;
        if (c != '\\') {
            plm_gbuf_put(&b, r->p++, 1);
            continue;
        }
        if (r->end - r->p < 2) break;
        char e = r->p[1];
        r->p += 2;
        char one = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' :
                   e == '"' || e == '\\' || e == '/' ? e : 0;
        if (one) {
            plm_gbuf_put(&b, &one, 1);
            continue;
        }
        if (e != 'u' || r->end - r->p < 4 || hex4(r->p) < 0) {
            r->p -= 2;
            return free(b.s), jfail(r, "invalid escape in a string"), false;
        }
        uint32_t cp = (uint32_t)hex4(r->p);
        r->p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u' && hex4(r->p + 2) >= 0xDC00 &&
            hex4(r->p + 2) <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)hex4(r->p + 2) - 0xDC00);
            r->p += 6;
        } else if (cp >= 0xD800 && cp <= 0xDFFF) {
            return free(b.s), jfail(r, "unpaired surrogate escape in a string"), false;
        }
        char u[4];
        size_t k = plm_utf8_encode(cp, u);
        plm_gbuf_put(&b, u, k);
    }
    if (r->p >= r->end) return free(b.s), jfail(r, "this string is not closed: expected '\"'"), false;
    r->p++;
    if (b.oom) return free(b.s), jfail(r, "out of memory"), false;
    if (!b.s) {
        b.s = malloc(1);
        if (!b.s) return jfail(r, "out of memory"), false;
        b.s[0] = 0;
    }
    *out = b.s;
    *n_out = b.n;
    return true;
}

static bool jpush(jreader *r, jval *v, jval *item, char *key, size_t key_len) {
    if ((v->count & (v->count - 1)) == 0) { /* grow at powers of two */
        size_t nc = v->count ? (size_t)v->count * 2 : 4;
        jval **ni = realloc(v->items, nc * sizeof(jval *));
        if (!ni) goto nomem;
        v->items = ni;
        if (v->type == JOBJ) {
            char **nk = realloc(v->keys, nc * sizeof(char *));
            if (!nk) goto nomem;
            v->keys = nk;
            size_t *nl = realloc(v->key_lens, nc * sizeof(size_t));
            if (!nl) goto nomem;
            v->key_lens = nl;
        }
    }
    v->items[v->count] = item;
    if (v->type == JOBJ) v->keys[v->count] = key, v->key_lens[v->count] = key_len;
    v->count++;
    return true;
nomem:
    jfree(item);
    free(key);
    jfail(r, "out of memory");
    return false;
}

static jval *jvalue(jreader *r) {
    jspace(r);
    if (r->p >= r->end) return jfail(r, "expected a value, found the end of the text");
    if (++r->depth > 256) return jfail(r, "values nested more than 256 deep");
    char c = *r->p;
    jval *v = NULL;
    if (c == '{' || c == '[') {
        v = jnew(r, c == '{' ? JOBJ : JARR);
        if (!v) return NULL;
        r->p++;
        jspace(r);
        char close = c == '{' ? '}' : ']';
        if (r->p < r->end && *r->p == close) {
            r->p++;
        } else {
            for (;;) {
                char *key = NULL;
                size_t key_len = 0;
                if (c == '{') {
                    jspace(r);
                    if (r->p >= r->end || *r->p != '"') return jfree(v), jfail(r, "expected a property name in quotes");
                    if (!jstring(r, &key, &key_len)) return jfree(v), NULL;
                    jspace(r);
                    if (r->p >= r->end || *r->p != ':') return free(key), jfree(v), jfail(r, "expected ':' after the property name");
                    r->p++;
                }
                jval *item = jvalue(r);
                if (!item) return free(key), jfree(v), NULL;
                if (!jpush(r, v, item, key, key_len)) return jfree(v), NULL;
                jspace(r);
                if (r->p < r->end && *r->p == ',') {
                    r->p++;
                    continue;
                }
                if (r->p < r->end && *r->p == close) {
                    r->p++;
                    break;
                }
                return jfree(v), jfail(r, "expected ',' or '%c'", close);
            }
        }
    } else if (c == '"') {
        v = jnew(r, JSTR);
        if (!v || !jstring(r, &v->s, &v->n)) return jfree(v), NULL;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        v = jnew(r, JNUM);
        if (!v) return NULL;
        const char *s = r->p;
        if (*r->p == '-') r->p++;
        if (r->p >= r->end || *r->p < '0' || *r->p > '9') return jfree(v), jfail(r, "expected a digit");
        if (*r->p == '0') r->p++;
        else while (r->p < r->end && *r->p >= '0' && *r->p <= '9') r->p++;
        bool frac = false;
        if (r->p < r->end && *r->p == '.') {
            frac = true;
            r->p++;
            if (r->p >= r->end || *r->p < '0' || *r->p > '9') return jfree(v), jfail(r, "expected a digit after '.'");
            while (r->p < r->end && *r->p >= '0' && *r->p <= '9') r->p++;
        }
        if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
            frac = true;
            r->p++;
            if (r->p < r->end && (*r->p == '+' || *r->p == '-')) r->p++;
            if (r->p >= r->end || *r->p < '0' || *r->p > '9') return jfree(v), jfail(r, "expected a digit in the exponent");
            while (r->p < r->end && *r->p >= '0' && *r->p <= '9') r->p++;
        }
        v->n = (size_t)(r->p - s);
        v->s = malloc(v->n + 1);
        if (!v->s) return jfree(v), jfail(r, "out of memory");
        memcpy(v->s, s, v->n);
        v->s[v->n] = 0;
        v->num = strtod(v->s, NULL);
        if (!frac && v->n < 19) v->is_int = true, v->i = strtoll(v->s, NULL, 10);
        else if (v->num == floor(v->num) && fabs(v->num) < 1e15) v->is_int = true, v->i = (int64_t)v->num;
    } else if (r->end - r->p >= 4 && !memcmp(r->p, "true", 4)) {
        v = jnew(r, JBOOL);
        if (v) v->b = true, r->p += 4;
    } else if (r->end - r->p >= 5 && !memcmp(r->p, "false", 5)) {
        v = jnew(r, JBOOL);
        if (v) r->p += 5;
    } else if (r->end - r->p >= 4 && !memcmp(r->p, "null", 4)) {
        v = jnew(r, JNULL);
        if (v) r->p += 4;
    } else {
        return jfail(r, "expected a JSON value (object, array, string, number, true, false or null)");
    }
    r->depth--;
    return v;
}

static jval *jget(const jval *o, const char *key) {
    if (!o || o->type != JOBJ) return NULL;
    size_t n = strlen(key);
    for (int32_t i = 0; i < o->count; i++)
        if (o->key_lens[i] == n && !memcmp(o->keys[i], key, n)) return o->items[i];
    return NULL;
}

/* A value as compact JSON text (for enum and const). */
static void jwrite(plm_gbuf *b, const jval *v) {
    switch (v->type) {
    case JNULL: plm_gbuf_puts(b, "null"); break;
    case JBOOL: plm_gbuf_puts(b, v->b ? "true" : "false"); break;
    case JNUM: plm_gbuf_put(b, v->s, v->n); break;
    case JSTR:
        plm_gbuf_put(b, "\"", 1);
        for (size_t i = 0; i < v->n; i++) {
            unsigned char c = (unsigned char)v->s[i];
            if (c == '"' || c == '\\') plm_gbuf_printf(b, "\\%c", c);
            else if (c == '\n') plm_gbuf_puts(b, "\\n");
            else if (c == '\t') plm_gbuf_puts(b, "\\t");
            else if (c == '\r') plm_gbuf_puts(b, "\\r");
            else if (c < 0x20) plm_gbuf_printf(b, "\\u%04x", c);
            else plm_gbuf_put(b, (const char *)&c, 1);
        }
        plm_gbuf_put(b, "\"", 1);
        break;
    case JARR:
    case JOBJ:
        plm_gbuf_put(b, v->type == JARR ? "[" : "{", 1);
        for (int32_t i = 0; i < v->count; i++) {
            if (i) plm_gbuf_put(b, ",", 1);
            if (v->type == JOBJ) {
                jval k = {.type = JSTR, .s = v->keys[i], .n = v->key_lens[i]};
                jwrite(b, &k);
                plm_gbuf_put(b, ":", 1);
            }
            jwrite(b, v->items[i]);
        }
        plm_gbuf_put(b, v->type == JARR ? "]" : "}", 1);
        break;
    }
}

/* ------------------------------------------------------------- compiler */

typedef struct compiler {
    const char *src;
    jval *root;
    plm_gbuf out;        /* the rules */
    int32_t n_rules;
    plm_status st;
    bool used_string, used_number, used_integer, used_value, used_char;
    int depth;
} compiler;

static bool cfail(compiler *c, const jval *at, const char *fmt, ...) PLM_PRINTF(3, 4);
static bool cfail(compiler *c, const jval *at, const char *fmt, ...) {
    if (c->st) return false;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->st = plm_fail(PLM_ERR_ARG, "schema line %d:%d: %s", at ? at->line : 1, at ? at->col : 1, msg);
    return false;
}

static int32_t new_rule(compiler *c) { return c->n_rules++; }

/* The rule for a schema node (compiled once; its number is kept for $ref and recursion). */
static bool compile(compiler *c, jval *s, int32_t *rule);

static const char *const ANNOTATIONS[] = {"title", "description", "examples", "default", "$schema", "$id", "$comment",
                                          "deprecated", "readOnly", "writeOnly", "$defs", "definitions", NULL};
static const char *const KNOWN[] = {"type", "properties", "required", "additionalProperties", "items", "prefixItems",
                                    "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "minItems", "maxItems",
                                    "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
                                    "exclusiveMaximum", "format", NULL};

static bool in_list(const char *const *list, const char *k, size_t n) {
    for (int i = 0; list[i]; i++)
        if (strlen(list[i]) == n && !memcmp(list[i], k, n)) return true;
    return false;
}

static bool check_keywords(compiler *c, const jval *s) {
    for (int32_t i = 0; i < s->count; i++)
        if (!in_list(KNOWN, s->keys[i], s->key_lens[i]) && !in_list(ANNOTATIONS, s->keys[i], s->key_lens[i]))
            return cfail(c, s->items[i], "unsupported keyword '%.*s'", (int)PLM_MIN(s->key_lens[i], 64), s->keys[i]);
    return true;
}

static bool get_count(compiler *c, const jval *s, const char *key, int64_t *v, int64_t dflt) {
    const jval *x = jget(s, key);
    *v = dflt;
    if (!x) return true;
    if (x->type != JNUM || !x->is_int || x->i < 0 || x->i > 100000)
        return cfail(c, x, "'%s' must be a whole number in [0, 100000]", key);
    *v = x->i;
    return true;
}

#define STR_CHAR "char"

/* The body of a string rule with length bounds. */
static void emit_string_body(compiler *c, int64_t min, int64_t max) {
    c->used_char = true;
    plm_gbuf *b = &c->out;
    if (min == 0 && max < 0) plm_gbuf_puts(b, "\"\\\"\" " STR_CHAR "* \"\\\"\"");
    else if (max < 0) plm_gbuf_printf(b, "\"\\\"\" " STR_CHAR "{%lld,} \"\\\"\"", (long long)min);
    else plm_gbuf_printf(b, "\"\\\"\" " STR_CHAR "{%lld,%lld} \"\\\"\"", (long long)min, (long long)max);
}

/* ---- integer ranges: canonical decimal numbers (no leading zeros) */

static void put_digits_range(plm_gbuf *b, char lo, char hi) {
    if (lo == hi) plm_gbuf_printf(b, "\"%c\"", lo);
    else if (lo == '0' && hi == '9') plm_gbuf_puts(b, "[0-9]");
    else plm_gbuf_printf(b, "[%c-%c]", lo, hi);
}

/* Strings of exactly n digits (leading zeros allowed) between a and b (both n digits, a <= b). */
static void digits_between(plm_gbuf *b, const char *a, const char *z, int n) {
    if (n == 0) {
        plm_gbuf_puts(b, "\"\"");
        return;
    }
    if (a[0] == z[0]) {
        plm_gbuf_printf(b, "\"%c\" ", a[0]);
        if (n > 1) {
            plm_gbuf_put(b, "(", 1);
            digits_between(b, a + 1, z + 1, n - 1);
            plm_gbuf_put(b, ")", 1);
        }
        return;
    }
    bool a_min = true, z_max = true; /* a[1..] all '0', z[1..] all '9' */
    for (int i = 1; i < n; i++) a_min &= a[i] == '0', z_max &= z[i] == '9';
    if (a_min && z_max) {
        put_digits_range(b, a[0], z[0]);
        if (n > 1) plm_gbuf_printf(b, " [0-9]{%d}", n - 1);
        return;
    }
    char nines[24], zeros[24];
    memset(nines, '9', sizeof nines);
    memset(zeros, '0', sizeof zeros);
    plm_gbuf_put(b, "(", 1);
    char first_full = a[0], last_full = z[0];
    bool sep = false;
    if (!a_min) {
        plm_gbuf_printf(b, "\"%c\" (", a[0]);
        digits_between(b, a + 1, nines, n - 1);
        plm_gbuf_put(b, ")", 1);
        first_full++;
        sep = true;
    }
    if (!z_max) last_full--;
    if (first_full <= last_full) {
        if (sep) plm_gbuf_puts(b, " | ");
        put_digits_range(b, first_full, last_full);
        if (n > 1) plm_gbuf_printf(b, " [0-9]{%d}", n - 1);
        sep = true;
    }
    if (!z_max) {
        if (sep) plm_gbuf_puts(b, " | ");
        plm_gbuf_printf(b, "\"%c\" (", z[0]);
        digits_between(b, zeros, z + 1, n - 1);
        plm_gbuf_put(b, ")", 1);
    }
    plm_gbuf_put(b, ")", 1);
}

/* Non-negative integers in [lo, hi] (hi < 0: no upper bound), canonical form. */
static void nonneg_range(plm_gbuf *b, int64_t lo, int64_t hi) {
    char a[24], z[24];
    int na = snprintf(a, sizeof a, "%lld", (long long)lo);
    int nz = hi >= 0 ? snprintf(z, sizeof z, "%lld", (long long)hi) : 19;
    plm_gbuf_put(b, "(", 1);
    bool sep = false;
    for (int n = na; n <= nz && n <= 19; n++) {
        char from[24], to[24];
        if (n == na) memcpy(from, a, (size_t)n);
        else {
            memset(from, '0', (size_t)n);
            from[0] = n == 1 ? '0' : '1';
        }
        if (hi >= 0 && n == nz) memcpy(to, z, (size_t)n);
        else memset(to, '9', (size_t)n);
        if (sep) plm_gbuf_puts(b, " | ");
        sep = true;
        if (hi < 0 && n == na + 1) { /* every longer number: [1-9] then at least na digits (up to 18 in all) */
            plm_gbuf_printf(b, "[1-9] [0-9]{%d,%d}", na, 18);
            break;
        }
        digits_between(b, from, to, n);
    }
    plm_gbuf_put(b, ")", 1);
}

/* Integers in [lo, hi]; has_lo / has_hi false: unbounded on that side (capped at 16 digits then). */
static void int_range(plm_gbuf *b, bool has_lo, int64_t lo, bool has_hi, int64_t hi) {
    plm_gbuf_put(b, "(", 1);
    bool sep = false;
    if (!has_lo || lo < 0) { /* negatives: "-" then |x| in [max(1, -hi), -lo] */
        int64_t nlo = has_hi && hi < 0 ? -hi : 1, nhi = has_lo ? -lo : -1;
        plm_gbuf_puts(b, "\"-\" ");
        if (nhi < 0) {
            if (nlo <= 1) plm_gbuf_puts(b, "[1-9] [0-9]{0,15}");
            else nonneg_range(b, nlo, -1);
        } else {
            nonneg_range(b, nlo, nhi);
        }
        sep = true;
    }
    if (!has_hi || hi >= 0) {
        int64_t plo = has_lo && lo > 0 ? lo : 0;
        if (sep) plm_gbuf_puts(b, " | ");
        if (!has_hi && plo == 0) plm_gbuf_puts(b, "(\"0\" | [1-9] [0-9]{0,15})");
        else nonneg_range(b, plo, has_hi ? hi : -1);
    }
    plm_gbuf_put(b, ")", 1);
}

/* An integer bound from key: lower (minimum, exclusiveMinimum) bounds keep the largest, upper the smallest. */
static bool int_bound(compiler *c, const jval *s, const char *key, bool lower, bool exclusive, bool *has, int64_t *v) {
    const jval *x = jget(s, key);
    if (!x) return true;
    if (x->type == JBOOL) return cfail(c, x, "'%s' as a boolean (draft 4) is not supported: give the bound as a number", key);
    if (x->type != JNUM) return cfail(c, x, "'%s' must be a number", key);
    double d = lower ? (exclusive ? floor(x->num) + 1 : ceil(x->num)) : (exclusive ? ceil(x->num) - 1 : floor(x->num));
    if (!(fabs(d) < 1e15)) return cfail(c, x, "'%s' is out of range (at most 15 digits)", key);
    int64_t val = (int64_t)d;
    if (!*has || (lower ? val > *v : val < *v)) *v = val;
    *has = true;
    return true;
}

static bool compile_integer(compiler *c, const jval *s, int32_t rule) {
    bool has_lo = false, has_hi = false;
    int64_t lo = 0, hi = 0;
    if (!int_bound(c, s, "minimum", true, false, &has_lo, &lo) || !int_bound(c, s, "exclusiveMinimum", true, true, &has_lo, &lo) ||
        !int_bound(c, s, "maximum", false, false, &has_hi, &hi) || !int_bound(c, s, "exclusiveMaximum", false, true, &has_hi, &hi))
        return false;
    if (has_lo && has_hi && lo > hi) return cfail(c, s, "no integer lies between the minimum and the maximum");
    plm_gbuf_printf(&c->out, "r%d ::= ", rule);
    int_range(&c->out, has_lo, lo, has_hi, hi);
    plm_gbuf_put(&c->out, "\n", 1);
    return true;
}

static bool compile_string(compiler *c, const jval *s, int32_t rule) {
    int64_t min, max;
    if (!get_count(c, s, "minLength", &min, 0) || !get_count(c, s, "maxLength", &max, -1)) return false;
    if (max >= 0 && max < min) return cfail(c, s, "maxLength is below minLength");
    const jval *pat = jget(s, "pattern"), *fmt = jget(s, "format");
    plm_gbuf *b = &c->out;
    if (pat || fmt) {
        if ((min > 0 || max >= 0) && (pat || fmt))
            return cfail(c, s, "minLength/maxLength together with pattern or format are not supported");
        if (pat && fmt) return cfail(c, fmt, "pattern together with format is not supported");
    }
    if (pat) {
        if (pat->type != JSTR) return cfail(c, pat, "'pattern' must be a string");
        char name[32], what[64];
        snprintf(name, sizeof name, "r%d-pattern", rule);
        snprintf(what, sizeof what, "schema line %d:%d: pattern", pat->line, pat->col);
        plm_status st = plm_regex_to_gbnf(pat->s, pat->n, name, b, what);
        if (st) return c->st = st, false;
        plm_gbuf_printf(b, "r%d ::= \"\\\"\" %s \"\\\"\"\n", rule, name);
        return true;
    }
    if (fmt) {
        if (fmt->type != JSTR) return cfail(c, fmt, "'format' must be a string");
        /* Real calendar dates: 30- and 31-day months, February 29 in leap years (Gregorian), years 0001-9999. */
        static const char *const DATE =
            "(([1-9] [0-9]{3} | \"0\" [1-9] [0-9]{2} | \"00\" [1-9] [0-9] | \"000\" [1-9]) \"-\" ("
            "(\"0\" [13578] | \"1\" [02]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01]) | "
            "(\"0\" [469] | \"11\") \"-\" (\"0\" [1-9] | [12] [0-9] | \"30\") | "
            "\"02-\" (\"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8])) | "
            "([0-9]{2} (\"0\" [48] | [2468] [048] | [13579] [26]) | (\"0\" [48] | [2468] [048] | [13579] [26]) \"00\") \"-02-29\")";
        static const char *const TIME =
            "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,6})? (\"Z\" | [+\\-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])";
        plm_gbuf_printf(b, "r%d ::= \"\\\"\" ", rule);
        if (!strcmp(fmt->s, "date")) plm_gbuf_puts(b, DATE);
        else if (!strcmp(fmt->s, "time")) plm_gbuf_puts(b, TIME);
        else if (!strcmp(fmt->s, "date-time")) plm_gbuf_printf(b, "%s \"T\" %s", DATE, TIME);
        else if (!strcmp(fmt->s, "uuid"))
            plm_gbuf_puts(b, "[0-9a-f]{8} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{12}");
        else if (!strcmp(fmt->s, "email"))
            plm_gbuf_puts(b, "[a-zA-Z0-9_+\\-]{1,24} (\".\" [a-zA-Z0-9_+\\-]{1,24}){0,2} \"@\" [a-zA-Z0-9] [a-zA-Z0-9\\-]{0,23} (\".\" [a-zA-Z]{2,12}){1,2}");
        else return cfail(c, fmt, "unsupported format '%.40s' (supported: date, time, date-time, uuid, email)", fmt->s);
        plm_gbuf_puts(b, " \"\\\"\"\n");
        return true;
    }
    plm_gbuf_printf(b, "r%d ::= ", rule);
    emit_string_body(c, min, max);
    plm_gbuf_put(b, "\n", 1);
    return true;
}

/* A property name as a GBNF literal of its JSON form. */
static void emit_key(plm_gbuf *b, const char *k, size_t n) {
    plm_gbuf t = {0};
    jval key = {.type = JSTR, .s = (char *)k, .n = n};
    jwrite(&t, &key);
    plm_gbuf_literal(b, t.s ? t.s : "", t.n);
    if (t.oom) b->oom = true;
    free(t.s);
}

static jval *resolve(compiler *c, jval *ref);

/* Collects properties and required names from s and (for allOf) its parts. */
typedef struct objspec {
    const char **names;
    size_t *lens;
    jval **schemas;
    bool *req;
    int32_t n, cap;
    const jval *additional; /* NULL: none allowed; a schema or true */
    bool additional_any;
} objspec;

static bool obj_add(compiler *c, objspec *o, const char *name, size_t len, jval *schema, const jval *at) {
    for (int32_t i = 0; i < o->n; i++)
        if (o->lens[i] == len && !memcmp(o->names[i], name, len)) {
            if (schema && o->schemas[i] && schema != o->schemas[i])
                return cfail(c, at, "allOf: property '%.*s' is defined twice", (int)PLM_MIN(len, 64), name);
            if (schema) o->schemas[i] = schema;
            return true;
        }
    if (o->n == o->cap) {
        int32_t nc = o->cap ? o->cap * 2 : 8;
        const char **nn = realloc(o->names, (size_t)nc * sizeof(char *));
        if (nn) o->names = nn;
        size_t *nl = realloc(o->lens, (size_t)nc * sizeof(size_t));
        if (nl) o->lens = nl;
        jval **ns = realloc(o->schemas, (size_t)nc * sizeof(jval *));
        if (ns) o->schemas = ns;
        bool *nr = realloc(o->req, (size_t)nc * sizeof(bool));
        if (nr) o->req = nr;
        if (!nn || !nl || !ns || !nr) return c->st = plm_fail(PLM_ERR_OOM, "out of memory compiling a schema"), false;
        o->cap = nc;
    }
    o->names[o->n] = name, o->lens[o->n] = len, o->schemas[o->n] = schema, o->req[o->n] = false;
    o->n++;
    return true;
}

static bool collect_object(compiler *c, jval *s, objspec *o, int depth) {
    if (depth > 32) return cfail(c, s, "allOf nested too deep");
    if (!check_keywords(c, s)) return false;
    jval *props = jget(s, "properties"), *req = jget(s, "required"), *add = jget(s, "additionalProperties");
    if (props) {
        if (props->type != JOBJ) return cfail(c, props, "'properties' must be an object");
        for (int32_t i = 0; i < props->count; i++)
            if (!obj_add(c, o, props->keys[i], props->key_lens[i], props->items[i], props->items[i])) return false;
    }
    if (req) {
        if (req->type != JARR) return cfail(c, req, "'required' must be an array of property names");
        for (int32_t i = 0; i < req->count; i++) {
            jval *r = req->items[i];
            if (r->type != JSTR) return cfail(c, r, "'required' must list strings");
            if (!obj_add(c, o, r->s, r->n, NULL, r)) return false;
            for (int32_t k = 0; k < o->n; k++)
                if (o->lens[k] == r->n && !memcmp(o->names[k], r->s, r->n)) o->req[k] = true;
        }
    }
    if (add) {
        if (add->type == JBOOL) {
            if (add->b) o->additional_any = true;
        } else if (add->type == JOBJ) {
            if (o->additional && o->additional != add) return cfail(c, add, "allOf: two additionalProperties schemas");
            o->additional = add;
        } else {
            return cfail(c, add, "'additionalProperties' must be a boolean or a schema");
        }
    } else if (!props && !req) {
        o->additional_any = true; /* an object with nothing said about its properties: any */
    }
    jval *all = jget(s, "allOf");
    if (all) {
        if (all->type != JARR || all->count == 0) return cfail(c, all, "'allOf' must be a non-empty array of schemas");
        for (int32_t i = 0; i < all->count; i++) {
            jval *part = all->items[i];
            jval *ref = jget(part, "$ref");
            if (ref) { /* a referenced object schema is merged like an inline one */
                jval *target = resolve(c, ref);
                if (!target) return false;
                part = target;
            }
            if (part->type != JOBJ) return cfail(c, part, "allOf: each part must be a schema object");
            jval *t = jget(part, "type");
            if (t && !(t->type == JSTR && !strcmp(t->s, "object")))
                return cfail(c, part, "allOf: only object schemas can be combined (a part has another type)");
            if (!collect_object(c, part, o, depth + 1)) return false;
        }
    }
    return true;
}

static void free_objspec(objspec *o) {
    free(o->names);
    free(o->lens);
    free(o->schemas);
    free(o->req);
}

static bool compile_object(compiler *c, jval *s, int32_t rule) {
    objspec o = {0};
    if (!collect_object(c, s, &o, 0)) return free_objspec(&o), false;
    /* value rules first */
    int32_t *vr = malloc((size_t)(o.n + 1) * sizeof(int32_t));
    if (!vr) return free_objspec(&o), c->st = plm_fail(PLM_ERR_OOM, "out of memory compiling a schema"), false;
    for (int32_t i = 0; i < o.n; i++) {
        if (!o.schemas[i]) {
            c->used_value = true;
            vr[i] = -1;
        } else if (!compile(c, o.schemas[i], &vr[i])) {
            free(vr);
            free_objspec(&o);
            return false;
        }
    }
    int32_t extra = -2; /* -2 none, -1 any value, else a rule */
    if (o.additional && !compile(c, (jval *)o.additional, &extra)) {
        free(vr);
        free_objspec(&o);
        return false;
    }
    if (!o.additional && o.additional_any) extra = -1, c->used_value = true;
    plm_gbuf *b = &c->out;
    /* kv_i: "key" ":" value */
    for (int32_t i = 0; i < o.n; i++) {
        plm_gbuf_printf(b, "r%d-kv%d ::= ", rule, i);
        emit_key(b, o.names[i], o.lens[i]);
        if (vr[i] >= 0) plm_gbuf_printf(b, " \":\" \" \"? r%d\n", vr[i]);
        else plm_gbuf_puts(b, " \":\" \" \"? value\n");
    }
    if (extra != -2) {
        c->used_string = true;
        if (extra >= 0) plm_gbuf_printf(b, "r%d-extra ::= string \":\" \" \"? r%d\n", rule, extra);
        else plm_gbuf_printf(b, "r%d-extra ::= string \":\" \" \"? value\n", rule);
    }
    /* F_i: the rest from property i, nothing written yet; A_i: something written. */
    for (int32_t i = o.n; i >= 0; i--) {
        if (i == o.n) {
            if (extra != -2) {
                plm_gbuf_printf(b, "r%d-a%d ::= (\",\" \" \"? r%d-extra)*\n", rule, i, rule);
                plm_gbuf_printf(b, "r%d-f%d ::= (r%d-extra r%d-a%d)?\n", rule, i, rule, rule, i);
            } else {
                plm_gbuf_printf(b, "r%d-a%d ::= \"\"\nr%d-f%d ::= \"\"\n", rule, i, rule, i);
            }
            continue;
        }
        if (o.req[i]) {
            plm_gbuf_printf(b, "r%d-a%d ::= \",\" \" \"? r%d-kv%d r%d-a%d\n", rule, i, rule, i, rule, i + 1);
            plm_gbuf_printf(b, "r%d-f%d ::= r%d-kv%d r%d-a%d\n", rule, i, rule, i, rule, i + 1);
        } else {
            plm_gbuf_printf(b, "r%d-a%d ::= \",\" \" \"? r%d-kv%d r%d-a%d | r%d-a%d\n", rule, i, rule, i, rule, i + 1, rule, i + 1);
            plm_gbuf_printf(b, "r%d-f%d ::= r%d-kv%d r%d-a%d | r%d-f%d\n", rule, i, rule, i, rule, i + 1, rule, i + 1);
        }
    }
    plm_gbuf_printf(b, "r%d ::= \"{\" r%d-f0 \"}\"\n", rule, rule);
    free(vr);
    free_objspec(&o);
    return true;
}

static bool compile_array(compiler *c, jval *s, int32_t rule) {
    int64_t min, max;
    if (!get_count(c, s, "minItems", &min, 0) || !get_count(c, s, "maxItems", &max, -1)) return false;
    if (max >= 0 && max < min) return cfail(c, s, "maxItems is below minItems");
    jval *items = jget(s, "items"), *prefix = jget(s, "prefixItems");
    int32_t n_prefix = 0;
    int32_t *pr = NULL;
    if (prefix) {
        if (prefix->type != JARR) return cfail(c, prefix, "'prefixItems' must be an array of schemas");
        n_prefix = prefix->count;
        pr = malloc((size_t)(n_prefix + 1) * sizeof(int32_t));
        if (!pr) return c->st = plm_fail(PLM_ERR_OOM, "out of memory compiling a schema"), false;
        for (int32_t i = 0; i < n_prefix; i++)
            if (!compile(c, prefix->items[i], &pr[i])) return free(pr), false;
        if (max >= 0 && max < n_prefix) return free(pr), cfail(c, s, "maxItems is below the number of prefixItems");
    }
    int32_t item = -2; /* -2: no further items; -1: any value */
    if (items) {
        if (items->type == JBOOL) item = items->b ? -1 : -2;
        else if (items->type == JARR) return free(pr), cfail(c, items, "'items' as an array (draft 4 tuples): use prefixItems");
        else if (!compile(c, items, &item)) return free(pr), false;
    } else {
        item = -1;
    }
    if (item == -1) c->used_value = true;
    plm_gbuf *b = &c->out;
    /* The prefix items are all written (a schema's prefixItems are taken as required); then min..max more. */
    int64_t more_min = min > n_prefix ? min - n_prefix : 0, more_max = max < 0 ? -1 : max - n_prefix;
    if (item == -2) {
        if (more_min > 0) return free(pr), cfail(c, s, "minItems asks for more items than prefixItems gives and items is false");
        more_max = 0;
    }
    char it[32];
    if (item >= 0) snprintf(it, sizeof it, "r%d", item);
    else snprintf(it, sizeof it, "value");
    plm_gbuf_printf(b, "r%d ::= \"[\" ", rule);
    for (int32_t i = 0; i < n_prefix; i++) plm_gbuf_printf(b, "%sr%d ", i ? "\",\" \" \"? " : "", pr[i]);
    if (more_max != 0) {
        /* k more items, each after a comma when something precedes it */
        if (n_prefix > 0) {
            if (more_max < 0) plm_gbuf_printf(b, "(\",\" \" \"? %s){%lld,} ", it, (long long)more_min);
            else plm_gbuf_printf(b, "(\",\" \" \"? %s){%lld,%lld} ", it, (long long)more_min, (long long)more_max);
        } else {
            const char *open = more_min == 0 ? "(" : "";
            plm_gbuf_printf(b, "%s%s ", open, it);
            int64_t rmin = more_min > 0 ? more_min - 1 : 0, rmax = more_max < 0 ? -1 : more_max - 1;
            if (rmax < 0) plm_gbuf_printf(b, "(\",\" \" \"? %s){%lld,}", it, (long long)rmin);
            else if (rmax > 0) plm_gbuf_printf(b, "(\",\" \" \"? %s){%lld,%lld}", it, (long long)rmin, (long long)rmax);
            if (more_min == 0) plm_gbuf_puts(b, ")?");
            plm_gbuf_put(b, " ", 1);
        }
    }
    plm_gbuf_puts(b, "\"]\"\n");
    free(pr);
    return true;
}

static bool compile_type(compiler *c, jval *s, const char *type, int32_t rule) {
    plm_gbuf *b = &c->out;
    if (!strcmp(type, "string")) return compile_string(c, s, rule);
    if (!strcmp(type, "integer")) return compile_integer(c, s, rule);
    if (!strcmp(type, "object")) return compile_object(c, s, rule);
    if (!strcmp(type, "array")) return compile_array(c, s, rule);
    if (!strcmp(type, "number")) {
        if (jget(s, "minimum") || jget(s, "maximum") || jget(s, "exclusiveMinimum") || jget(s, "exclusiveMaximum"))
            return cfail(c, s, "minimum/maximum are supported for integers only (type \"integer\"), not numbers");
        c->used_number = true;
        plm_gbuf_printf(b, "r%d ::= number\n", rule);
        return true;
    }
    if (!strcmp(type, "boolean")) return plm_gbuf_printf(b, "r%d ::= \"true\" | \"false\"\n", rule), true;
    if (!strcmp(type, "null")) return plm_gbuf_printf(b, "r%d ::= \"null\"\n", rule), true;
    return cfail(c, s, "unknown type '%.40s'", type);
}

static const char *infer_type(const jval *s) {
    if (jget(s, "properties") || jget(s, "required") || jget(s, "additionalProperties")) return "object";
    if (jget(s, "items") || jget(s, "prefixItems") || jget(s, "minItems") || jget(s, "maxItems")) return "array";
    if (jget(s, "minLength") || jget(s, "maxLength") || jget(s, "pattern") || jget(s, "format")) return "string";
    if (jget(s, "minimum") || jget(s, "maximum") || jget(s, "exclusiveMinimum") || jget(s, "exclusiveMaximum")) return "integer";
    return NULL;
}

static jval *resolve(compiler *c, jval *ref) {
    if (ref->type != JSTR) return cfail(c, ref, "'$ref' must be a string"), NULL;
    const char *p = ref->s;
    if (strcmp(p, "#") == 0) return c->root;
    const char *name = NULL;
    jval *defs = NULL;
    if (!strncmp(p, "#/$defs/", 8)) defs = jget(c->root, "$defs"), name = p + 8;
    else if (!strncmp(p, "#/definitions/", 14)) defs = jget(c->root, "definitions"), name = p + 14;
    else return cfail(c, ref, "unsupported $ref '%.60s' (supported: #, #/$defs/NAME, #/definitions/NAME)", p), NULL;
    jval *t = name ? jget(defs, name) : NULL;
    if (!t) return cfail(c, ref, "$ref '%.60s' points to no definition", p), NULL;
    return t;
}

static bool compile(compiler *c, jval *s, int32_t *rule) {
    if (c->st) return false;
    if (s->rule >= 0) {
        *rule = s->rule;
        return true;
    }
    if (++c->depth > 200) return cfail(c, s, "schema nested too deep");
    int32_t r = s->rule = new_rule(c);
    *rule = r;
    plm_gbuf *b = &c->out;
    bool ok = true;
    if (s->type == JBOOL) {
        if (!s->b) return cfail(c, s, "the schema false accepts nothing");
        c->used_value = true;
        plm_gbuf_printf(b, "r%d ::= value\n", r);
        c->depth--;
        return true;
    }
    if (s->type != JOBJ) return cfail(c, s, "a schema must be an object or a boolean");
    if (!check_keywords(c, s)) return false;
    jval *ref = jget(s, "$ref"), *en = jget(s, "enum"), *cn = jget(s, "const"), *any = jget(s, "anyOf"),
         *one = jget(s, "oneOf"), *all = jget(s, "allOf"), *type = jget(s, "type");
    if (ref) {
        jval *t = resolve(c, ref);
        int32_t tr;
        if (!t || !compile(c, t, &tr)) return false;
        plm_gbuf_printf(b, "r%d ::= r%d\n", r, tr);
    } else if (en || cn) {
        if (en && en->type != JARR) return cfail(c, en, "'enum' must be an array");
        if (en && en->count == 0) return cfail(c, en, "'enum' is empty: nothing can match");
        plm_gbuf_printf(b, "r%d ::= ", r);
        int32_t n = en ? en->count : 1;
        for (int32_t i = 0; i < n; i++) {
            plm_gbuf t = {0};
            jwrite(&t, en ? en->items[i] : cn);
            if (i) plm_gbuf_puts(b, " | ");
            plm_gbuf_literal(b, t.s ? t.s : "", t.n);
            if (t.oom) b->oom = true;
            free(t.s);
        }
        plm_gbuf_put(b, "\n", 1);
    } else if (any || one) {
        jval *list = any ? any : one;
        if (any && one) return cfail(c, one, "anyOf and oneOf together are not supported");
        if (list->type != JARR || list->count == 0) return cfail(c, list, "'%s' must be a non-empty array of schemas", any ? "anyOf" : "oneOf");
        int32_t *alts = malloc((size_t)list->count * sizeof(int32_t));
        if (!alts) return c->st = plm_fail(PLM_ERR_OOM, "out of memory compiling a schema"), false;
        for (int32_t i = 0; i < list->count && ok; i++) ok = compile(c, list->items[i], &alts[i]);
        if (ok) {
            plm_gbuf_printf(b, "r%d ::= ", r);
            for (int32_t i = 0; i < list->count; i++) plm_gbuf_printf(b, "%sr%d", i ? " | " : "", alts[i]);
            plm_gbuf_put(b, "\n", 1);
        }
        free(alts);
    } else if (type) {
        if (type->type == JSTR) {
            ok = compile_type(c, s, type->s, r);
        } else if (type->type == JARR && type->count > 0) {
            /* several types: one rule each, then the choice */
            int32_t first = c->n_rules;
            for (int32_t i = 0; i < type->count && ok; i++) {
                if (type->items[i]->type != JSTR) return cfail(c, type->items[i], "'type' must list type names");
                ok = compile_type(c, s, type->items[i]->s, new_rule(c));
            }
            if (ok) {
                plm_gbuf_printf(b, "r%d ::= ", r);
                for (int32_t i = 0; i < type->count; i++) plm_gbuf_printf(b, "%sr%d", i ? " | " : "", first + i);
                plm_gbuf_put(b, "\n", 1);
            }
        } else {
            return cfail(c, type, "'type' must be a type name or a non-empty array of them");
        }
    } else if (all) {
        ok = compile_object(c, s, r);
    } else {
        const char *t = infer_type(s);
        if (t) ok = compile_type(c, s, t, r);
        else {
            c->used_value = true;
            plm_gbuf_printf(b, "r%d ::= value\n", r);
        }
    }
    c->depth--;
    return ok && !c->st;
}

static plm_status schema_gbnf(const char *text, size_t len, plm_gbuf *out) {
    jreader rd = {.src = text, .p = text, .end = text + len};
    jval *root = jvalue(&rd);
    if (root && !rd.st) {
        jspace(&rd);
        if (rd.p < rd.end) jfail(&rd, "unexpected text after the schema");
    }
    if (rd.st) {
        jfree(root);
        return rd.st;
    }
    compiler c = {.src = text, .root = root};
    int32_t r;
    plm_gbuf_puts(&c.out, "root ::= r0\n");
    compile(&c, root, &r);
    if (!c.st) {
        plm_gbuf *b = &c.out;
        if (c.used_value) {
            c.used_string = c.used_number = true;
            plm_gbuf_puts(b, "value ::= object | array | string | number | \"true\" | \"false\" | \"null\"\n"
                             "object ::= \"{\" (string \":\" \" \"? value (\",\" \" \"? string \":\" \" \"? value)*)? \"}\"\n"
                             "array ::= \"[\" (value (\",\" \" \"? value)*)? \"]\"\n");
        }
        if (c.used_string) {
            c.used_char = true;
            plm_gbuf_puts(b, "string ::= \"\\\"\" " STR_CHAR "* \"\\\"\"\n");
        }
        if (c.used_char)
            plm_gbuf_puts(b, STR_CHAR " ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" ([0-9a-cA-CeEfF] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}))\n");
        if (c.used_number)
            plm_gbuf_puts(b, "number ::= \"-\"? (\"0\" | [1-9] [0-9]{0,15}) (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?\n");
        if (b->oom) c.st = plm_fail(PLM_ERR_OOM, "out of memory compiling a schema");
    }
    jfree(root);
    if (c.st) {
        free(c.out.s);
        return c.st;
    }
    *out = c.out;
    return PLM_OK;
}

plm_status plm_json_schema_to_gbnf(const char *schema, size_t len, char **out, size_t *n_out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_json_schema_to_gbnf: out is NULL");
    *out = NULL;
    if (n_out) *n_out = 0;
    if (!schema && len) return plm_fail(PLM_ERR_ARG, "plm_json_schema_to_gbnf: schema is NULL");
    plm_gbuf b = {0};
    plm_status st = schema_gbnf(schema ? schema : "", len, &b);
    if (st) return st;
    *out = b.s;
    if (n_out) *n_out = b.n;
    return PLM_OK;
}

plm_status plm_grammar_from_json_schema(const char *schema, size_t len, plm_grammar **out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_grammar_from_json_schema: out is NULL");
    *out = NULL;
    if (!schema && len) return plm_fail(PLM_ERR_ARG, "plm_grammar_from_json_schema: schema is NULL");
    plm_gbuf b = {0};
    plm_status st = schema_gbnf(schema ? schema : "", len, &b);
    if (st) return st;
    st = plm_grammar_parse_gbnf(b.s, b.n, "root", out);
    if (st) {
        /* Recursion with no way out (a required property that refers back to itself) reads back as a
         * rule that can never finish: the schema's doing, so it is reported as an argument error. */
        st = plm_fail(st == PLM_ERR_OOM ? PLM_ERR_OOM : PLM_ERR_ARG, "schema: %s", plm_last_error());
    }
    free(b.s);
    return st;
}
