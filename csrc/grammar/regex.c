/*
 * regex.c — regular expressions and choice lists compiled to GBNF, and the
 * text-building helpers the compilers share.
 *
 * Owns the regex subset (documented at plm_grammar_from_regex in pocketlm.h)
 * and its translation: a regex maps almost one to one onto GBNF (groups,
 * alternation, classes and repetition are GBNF's own), so each construct is
 * written out as GBNF text and gbnf.c reads the result. In JSON mode (a
 * schema's "pattern") the text is what appears between the quotes of a JSON
 * string: '"' and '\' are written as escapes, control characters as \n, \t or
 * \u00XX, and negated classes and '.' leave those characters out.
 */
#include "grammar/grammar.h"
#include "tokenizer/unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------------- gbuf */

void plm_gbuf_put(plm_gbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

void plm_gbuf_puts(plm_gbuf *b, const char *s) { plm_gbuf_put(b, s, strlen(s)); }

void plm_gbuf_printf(plm_gbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        plm_gbuf_put(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    plm_gbuf_put(b, big, (size_t)n);
    free(big);
}

static void put_cp_utf8(plm_gbuf *b, uint32_t cp) {
    char u[4];
    plm_gbuf_put(b, u, plm_utf8_encode(cp, u));
}

/* A code point inside a GBNF literal or class. */
static void put_escaped(plm_gbuf *b, uint32_t cp, bool in_class) {
    if (cp < 0x20 || cp == 0x7F) plm_gbuf_printf(b, "\\x%02X", cp);
    else if (cp == '"' || cp == '\\' || (in_class && (cp == '[' || cp == ']' || cp == '-' || cp == '^')))
        plm_gbuf_printf(b, "\\%c", (char)cp);
    else put_cp_utf8(b, cp);
}

void plm_gbuf_class_char(plm_gbuf *b, uint32_t cp) { put_escaped(b, cp, true); }

/* Decodes UTF-8 (0 length when invalid). */
static size_t decode(const char *p, size_t avail, uint32_t *cp) {
    if (!avail) return 0;
    size_t n = plm_utf8_decode((const uint8_t *)p, avail, cp);
    return *cp == PLM_CP_INVALID ? 0 : n;
}

void plm_gbuf_literal(plm_gbuf *b, const char *s, size_t n) {
    plm_gbuf_put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = decode(s + i, n - i, &cp);
        if (!k) { /* not UTF-8: the byte as itself is not expressible; callers check validity first */
            cp = (unsigned char)s[i];
            k = 1;
        }
        put_escaped(b, cp, false);
        i += k;
    }
    plm_gbuf_put(b, "\"", 1);
}

/* ---------------------------------------------------------------- regex */

typedef struct rx {
    const char *src, *p, *end;
    plm_gbuf *b;
    bool json;
    const char *what;
    int depth;
    plm_status st;
} rx;

static plm_status rx_fail(rx *r, const char *at, const char *fmt, ...) PLM_PRINTF(3, 4);
static plm_status rx_fail(rx *r, const char *at, const char *fmt, ...) {
    if (r->st) return r->st;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line = 1, col = 1;
    for (const char *q = r->src; q < at; q++) {
        if (*q == '\n') line++, col = 1;
        else if (((unsigned char)*q & 0xC0) != 0x80) col++;
    }
    r->st = plm_fail(PLM_ERR_ARG, "%s line %d:%d: %s", r->what, line, col, msg);
    return r->st;
}

/* Code point ranges of a class being built. */
typedef struct rset {
    uint32_t *r; /* pairs */
    int32_t n, cap;
    bool oom;
} rset;

static void rs_add(rset *s, uint32_t lo, uint32_t hi) {
    if (s->n == s->cap) {
        int32_t nc = s->cap ? s->cap * 2 : 16;
        uint32_t *nr = realloc(s->r, (size_t)nc * 2 * sizeof(uint32_t));
        if (!nr) {
            s->oom = true;
            return;
        }
        s->r = nr;
        s->cap = nc;
    }
    s->r[2 * s->n] = lo;
    s->r[2 * s->n + 1] = hi;
    s->n++;
}

static int cmp_pair(const void *a, const void *b) {
    const uint32_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Sorts, merges, and complements if negate (over [0, 10FFFF]). */
static void rs_normalize(rset *s, bool negate) {
    qsort(s->r, (size_t)s->n, 2 * sizeof(uint32_t), cmp_pair);
    int32_t m = 0;
    for (int32_t i = 0; i < s->n; i++) {
        if (m && s->r[2 * i] <= s->r[2 * m - 1] + 1) {
            if (s->r[2 * i + 1] > s->r[2 * m - 1]) s->r[2 * m - 1] = s->r[2 * i + 1];
        } else {
            s->r[2 * m] = s->r[2 * i], s->r[2 * m + 1] = s->r[2 * i + 1], m++;
        }
    }
    s->n = m;
    if (!negate) return;
    rset c = {0};
    uint32_t next = 0;
    for (int32_t i = 0; i < s->n; i++) {
        if (s->r[2 * i] > next) rs_add(&c, next, s->r[2 * i] - 1);
        next = s->r[2 * i + 1] + 1;
    }
    if (next <= 0x10FFFF) rs_add(&c, next, 0x10FFFF);
    free(s->r);
    *s = c;
}

/* Removes [lo, hi] from a normalized set. */
static void rs_remove(rset *s, uint32_t lo, uint32_t hi) {
    rset o = {0};
    for (int32_t i = 0; i < s->n; i++) {
        uint32_t a = s->r[2 * i], z = s->r[2 * i + 1];
        if (z < lo || a > hi) rs_add(&o, a, z);
        else {
            if (a < lo) rs_add(&o, a, lo - 1);
            if (z > hi) rs_add(&o, hi + 1, z);
        }
    }
    o.oom |= s->oom;
    free(s->r);
    *s = o;
}

static bool rs_has(const rset *s, uint32_t cp) {
    for (int32_t i = 0; i < s->n; i++)
        if (cp >= s->r[2 * i] && cp <= s->r[2 * i + 1]) return true;
    return false;
}

/* How a character appears inside a JSON string. */
static void json_char(plm_gbuf *b, uint32_t cp) {
    if (cp == '"') plm_gbuf_puts(b, "\"\\\\\\\"\"");
    else if (cp == '\\') plm_gbuf_puts(b, "\"\\\\\\\\\"");
    else if (cp == '\n') plm_gbuf_puts(b, "\"\\\\n\"");
    else if (cp == '\t') plm_gbuf_puts(b, "\"\\\\t\"");
    else if (cp == '\r') plm_gbuf_puts(b, "\"\\\\r\"");
    else if (cp == '\f') plm_gbuf_puts(b, "\"\\\\f\"");
    else if (cp == '\b') plm_gbuf_puts(b, "\"\\\\b\"");
    else if (cp < 0x20) plm_gbuf_printf(b, "\"\\\\u%04X\"", cp);
    else {
        plm_gbuf_put(b, "\"", 1);
        put_escaped(b, cp, false);
        plm_gbuf_put(b, "\"", 1);
    }
}

/* Writes a normalized set as a GBNF element. */
static void emit_set(rx *r, rset *s) {
    plm_gbuf *b = r->b;
    rset esc = {0};
    if (r->json) { /* characters JSON writes as escapes leave the class and come back as literals */
        for (uint32_t cp = 0; cp < 0x20; cp++)
            if (rs_has(s, cp)) rs_add(&esc, cp, cp);
        if (rs_has(s, '"')) rs_add(&esc, '"', '"');
        if (rs_has(s, '\\')) rs_add(&esc, '\\', '\\');
        rs_remove(s, 0, 0x1F);
        rs_remove(s, '"', '"');
        rs_remove(s, '\\', '\\');
    }
    rs_remove(s, 0xD800, 0xDFFF);
    if (esc.n) plm_gbuf_put(b, "(", 1);
    if (s->n || !esc.n) {
        plm_gbuf_put(b, "[", 1);
        for (int32_t i = 0; i < s->n; i++) {
            put_escaped(b, s->r[2 * i], true);
            if (s->r[2 * i + 1] != s->r[2 * i]) {
                plm_gbuf_put(b, "-", 1);
                put_escaped(b, s->r[2 * i + 1], true);
            }
        }
        if (!s->n) plm_gbuf_puts(b, "^\\x00-\\U0010FFFF"); /* empty: matches nothing */
        plm_gbuf_put(b, "]", 1);
    }
    for (int32_t i = 0; i < esc.n; i++) {
        if (s->n || i) plm_gbuf_puts(b, " | ");
        json_char(b, esc.r[2 * i]);
    }
    if (esc.n) plm_gbuf_put(b, ")", 1);
    if (esc.oom || s->oom) b->oom = true;
    free(esc.r);
}

/* \d \w \s and their negations into s; false if e is not one of them. */
static bool class_escape(char e, rset *s, bool *negated) {
    *negated = e == 'D' || e == 'W' || e == 'S';
    switch (e) {
    case 'd': case 'D': rs_add(s, '0', '9'); return true;
    case 'w': case 'W': rs_add(s, '0', '9'); rs_add(s, 'A', 'Z'); rs_add(s, 'a', 'z'); rs_add(s, '_', '_'); return true;
    case 's': case 'S': rs_add(s, '\t', '\r'); rs_add(s, ' ', ' '); return true;
    default: return false;
    }
}

static bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* One literal character (after '\' when escaped); the position moves past it. */
static bool rx_char(rx *r, uint32_t *cp) {
    const char *at = r->p;
    if (*r->p == '\\') {
        r->p++;
        if (r->p >= r->end) return rx_fail(r, at, "a '\\' ends the expression: expected an escaped character"), false;
        char e = *r->p++;
        switch (e) {
        case 'n': *cp = '\n'; return true;
        case 't': *cp = '\t'; return true;
        case 'r': *cp = '\r'; return true;
        case 'f': *cp = '\f'; return true;
        case 'v': *cp = '\v'; return true;
        case '0': *cp = 0; return true;
        case 'x': case 'u': {
            int digits = e == 'x' ? 2 : 4;
            uint32_t v = 0;
            for (int i = 0; i < digits; i++) {
                if (r->p >= r->end || !is_hex(*r->p))
                    return rx_fail(r, r->p, "expected %d hex digits after '\\%c'", digits, e), false;
                char c = *r->p++;
                v = v * 16 + (uint32_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
            }
            *cp = v;
            return true;
        }
        default:
            if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')) {
                if (e == 'b' || e == 'B') return rx_fail(r, at, "word boundaries (\\%c) are not supported", e), false;
                if (e >= '1' && e <= '9') return rx_fail(r, at, "backreferences (\\%c) are not supported", e), false;
                return rx_fail(r, at, "unknown escape '\\%c'", e), false;
            }
            *cp = (unsigned char)e;
            if ((unsigned char)e >= 0x80) {
                r->p--;
                size_t k = decode(r->p, (size_t)(r->end - r->p), cp);
                if (!k) return rx_fail(r, at, "invalid UTF-8"), false;
                r->p += k;
            }
            return true;
        }
    }
    size_t k = decode(r->p, (size_t)(r->end - r->p), cp);
    if (!k) return rx_fail(r, at, "invalid UTF-8"), false;
    r->p += k;
    return true;
}

static bool rx_alt(rx *r);

static bool rx_class(rx *r) {
    const char *at = r->p++;
    rset s = {0};
    bool negate = false;
    if (r->p < r->end && *r->p == '^') negate = true, r->p++;
    bool first = true;
    while (r->p < r->end && (*r->p != ']' || first)) {
        first = false;
        bool neg2;
        if (*r->p == '\\' && r->p + 1 < r->end && class_escape(r->p[1], &s, &neg2)) {
            if (neg2) {
                free(s.r);
                return rx_fail(r, r->p, "negated escapes (\\%c) inside a class are not supported", r->p[1]), false;
            }
            r->p += 2;
            continue;
        }
        if (*r->p == '[' && r->p + 1 < r->end && r->p[1] == ':') {
            free(s.r);
            return rx_fail(r, r->p, "POSIX classes ([:name:]) are not supported"), false;
        }
        uint32_t a, z;
        if (!rx_char(r, &a)) return free(s.r), false;
        z = a;
        if (r->p + 1 < r->end && *r->p == '-' && r->p[1] != ']') {
            r->p++;
            if (!rx_char(r, &z)) return free(s.r), false;
            if (z < a) return free(s.r), rx_fail(r, at, "class range out of order"), false;
        }
        rs_add(&s, a, z);
    }
    if (r->p >= r->end) return free(s.r), rx_fail(r, at, "this class is not closed: expected ']'"), false;
    r->p++;
    rs_normalize(&s, negate);
    emit_set(r, &s);
    free(s.r);
    return true;
}

static bool rx_count(rx *r, long *v) {
    long x = 0;
    if (r->p >= r->end || *r->p < '0' || *r->p > '9') return rx_fail(r, r->p, "expected a number in {m,n}"), false;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        x = x * 10 + (*r->p++ - '0');
        if (x > 100000) return rx_fail(r, r->p, "repetition count too large (at most 100000)"), false;
    }
    *v = x;
    return true;
}

/* A quantifier after an atom, if any: written as GBNF's. */
static bool rx_quant(rx *r) {
    if (r->p >= r->end) return true;
    char c = *r->p;
    const char *at = r->p;
    if (c == '*' || c == '+' || c == '?') {
        r->p++;
        plm_gbuf_put(r->b, &c, 1);
    } else if (c == '{') {
        r->p++;
        long lo, hi = -2;
        if (!rx_count(r, &lo)) return false;
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            hi = -1;
            if (r->p < r->end && *r->p != '}' && !rx_count(r, &hi)) return false;
        }
        if (r->p >= r->end || *r->p != '}') return rx_fail(r, r->p, "expected '}' closing the repetition"), false;
        r->p++;
        if (hi >= 0 && hi < lo) return rx_fail(r, at, "repetition {%ld,%ld}: the maximum is below the minimum", lo, hi), false;
        if (hi == -2) plm_gbuf_printf(r->b, "{%ld}", lo);
        else if (hi == -1) plm_gbuf_printf(r->b, "{%ld,}", lo);
        else plm_gbuf_printf(r->b, "{%ld,%ld}", lo, hi);
    } else {
        return true;
    }
    if (r->p < r->end && (*r->p == '?' || *r->p == '+'))
        return rx_fail(r, r->p, "%s quantifiers are not supported", *r->p == '?' ? "lazy" : "possessive"), false;
    if (r->p < r->end && (*r->p == '*' || *r->p == '{'))
        return rx_fail(r, r->p, "a quantifier cannot follow a quantifier"), false;
    return true;
}

/* A sequence of quantified atoms up to '|', ')' or the end. */
static bool rx_seq(rx *r) {
    bool any = false;
    while (r->p < r->end && *r->p != '|' && *r->p != ')') {
        const char *at = r->p;
        char c = *r->p;
        if (any) plm_gbuf_put(r->b, " ", 1);
        any = true;
        if (c == '(') {
            r->p++;
            if (r->p < r->end && *r->p == '?') {
                if (r->p + 1 < r->end && r->p[1] == ':') r->p += 2;
                else return rx_fail(r, at, "only plain (...) and non-capturing (?:...) groups are supported"), false;
            }
            if (++r->depth > 200) return rx_fail(r, at, "groups nested too deep"), false;
            plm_gbuf_put(r->b, "(", 1);
            if (!rx_alt(r)) return false;
            if (r->p >= r->end || *r->p != ')') return rx_fail(r, at, "this group is not closed: expected ')'"), false;
            r->p++;
            r->depth--;
            plm_gbuf_put(r->b, ")", 1);
        } else if (c == '[') {
            if (!rx_class(r)) return false;
        } else if (c == '.') {
            r->p++;
            rset s = {0};
            rs_add(&s, '\n', '\n');
            rs_normalize(&s, true);
            emit_set(r, &s);
            free(s.r);
        } else if (c == '^' || c == '$') {
            bool edge = c == '^' ? r->p == r->src : r->p + 1 == r->end;
            if (!edge) return rx_fail(r, at, "'%c' is supported only at the %s of the expression", c, c == '^' ? "start" : "end"), false;
            r->p++;
            plm_gbuf_puts(r->b, "\"\"");
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            return rx_fail(r, at, "'%c' repeats nothing", c), false;
        } else {
            bool neg;
            rset s = {0};
            if (c == '\\' && r->p + 1 < r->end && class_escape(r->p[1], &s, &neg)) {
                r->p += 2;
                rs_normalize(&s, neg);
                emit_set(r, &s);
                free(s.r);
            } else {
                free(s.r);
                uint32_t cp;
                if (!rx_char(r, &cp)) return false;
                if (r->json) json_char(r->b, cp);
                else {
                    plm_gbuf_put(r->b, "\"", 1);
                    put_escaped(r->b, cp, false);
                    plm_gbuf_put(r->b, "\"", 1);
                }
            }
        }
        if (!rx_quant(r)) return false;
    }
    if (!any) plm_gbuf_puts(r->b, "\"\"");
    return true;
}

static bool rx_alt(rx *r) {
    for (;;) {
        if (!rx_seq(r)) return false;
        if (r->p < r->end && *r->p == '|') {
            r->p++;
            plm_gbuf_puts(r->b, " | ");
            continue;
        }
        return true;
    }
}

/* The expression as one GBNF element (a group) appended to b. */
static plm_status regex_expr(const char *re, size_t len, plm_gbuf *b, bool json, const char *what) {
    rx r = {.src = re, .p = re, .end = re + len, .b = b, .json = json, .what = what};
    plm_gbuf_put(b, "(", 1);
    if (rx_alt(&r) && r.p < r.end) rx_fail(&r, r.p, "unexpected ')': no group is open");
    plm_gbuf_put(b, ")", 1);
    if (!r.st && b->oom) return plm_fail(PLM_ERR_OOM, "out of memory compiling a regular expression");
    return r.st;
}

plm_status plm_regex_to_gbnf(const char *re, size_t len, const char *prefix, plm_gbuf *b, const char *what) {
    plm_gbuf_printf(b, "%s ::= ", prefix);
    plm_status st = regex_expr(re, len, b, true, what);
    plm_gbuf_put(b, "\n", 1);
    return st;
}

static plm_status finish_text(plm_gbuf *b, plm_status st, plm_grammar **out) {
    if (!st && b->oom) st = plm_fail(PLM_ERR_OOM, "out of memory building a grammar");
    if (!st) {
        st = plm_grammar_parse_gbnf(b->s, b->n, "root", out);
        if (st) st = plm_fail(PLM_ERR_INTERNAL, "the generated grammar did not read back (%s)", plm_last_error());
    }
    free(b->s);
    return st;
}

plm_status plm_grammar_from_regex(const char *re, size_t len, plm_grammar **out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_grammar_from_regex: out is NULL");
    *out = NULL;
    if (!re && len) return plm_fail(PLM_ERR_ARG, "plm_grammar_from_regex: re is NULL");
    plm_gbuf b = {0};
    plm_gbuf_puts(&b, "root ::= ");
    plm_status st = regex_expr(re ? re : "", len, &b, false, "regex");
    plm_gbuf_put(&b, "\n", 1);
    if (st) {
        free(b.s);
        return st;
    }
    /* A read-back error here is the expression's (an empty class, a pattern that can never finish). */
    st = plm_grammar_parse_gbnf(b.s, b.n, "root", out);
    if (st) st = plm_fail(PLM_ERR_ARG, "regex: %s", plm_last_error());
    free(b.s);
    return st;
}

plm_status plm_grammar_from_choices(const char *const *choices, const size_t *lens, int32_t n, plm_grammar **out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_grammar_from_choices: out is NULL");
    *out = NULL;
    if (n <= 0) return plm_fail(PLM_ERR_ARG, "choices: expected at least one choice (got %d)", n);
    if (!choices || !lens) return plm_fail(PLM_ERR_ARG, "plm_grammar_from_choices: NULL array");
    plm_gbuf b = {0};
    plm_gbuf_puts(&b, "root ::= ");
    for (int32_t i = 0; i < n; i++) {
        if (!choices[i]) {
            free(b.s);
            return plm_fail(PLM_ERR_ARG, "choice %d is NULL", i);
        }
        for (size_t k = 0; k < lens[i];) {
            uint32_t cp;
            size_t m = decode(choices[i] + k, lens[i] - k, &cp);
            if (!m) {
                free(b.s);
                return plm_fail(PLM_ERR_ARG, "choice %d is not valid UTF-8 (byte %zu)", i, k);
            }
            k += m;
        }
        if (i) plm_gbuf_puts(&b, " | ");
        plm_gbuf_literal(&b, choices[i], lens[i]);
    }
    plm_gbuf_put(&b, "\n", 1);
    return finish_text(&b, PLM_OK, out);
}
