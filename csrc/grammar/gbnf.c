/*
 * gbnf.c — reading GBNF (the grammar format of llama.cpp) into the grammar form.
 *
 * Owns plm_grammar: the reader, the checks that make a grammar usable by a
 * top-down recognizer (every rule defined, none left-recursive, alternatives
 * that can never finish removed), the flat layout matcher.c walks, and the
 * reference count that lets samplers share one grammar. The format: rules
 * `name ::= alternatives`, ending at a newline except inside parentheses or
 * after `|`; elements "literal", [class] (ranges, ^ negation), `.` (any
 * character), rule names and (groups), each optionally followed by * + ? {m}
 * {m,} {m,n}; escapes \xHH \uHHHH \UHHHHHHHH \t \r \n \\ \" \[ \] \- \^;
 * comments from # to the end of the line. Repetitions become helper rules
 * here, so the rest of the engine sees only sequences and alternatives.
 */
#include "grammar/grammar.h"
#include "tokenizer/unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ELEMS (1 << 22)   /* a grammar (after repetitions are expanded) larger than this is refused */
#define MAX_NEST 256          /* parentheses nested deeper than this are refused */
#define MAX_CP 0x10FFFFu

typedef struct prule {
    char *name;
    plm_gelem *e;
    int32_t n, cap;
    bool defined;
    const char *ref_at;       /* first reference, for "not defined" */
} prule;

typedef struct parser {
    const char *src, *end, *p;
    prule *rules;
    int32_t n_rules, cap_rules;
    uint32_t *ranges;         /* pairs */
    int32_t n_ranges, cap_ranges;
    int32_t *class_off, *class_n;
    int32_t n_classes, cap_classes;
    int64_t total;            /* elements so far */
    int depth;
    plm_status st;
} parser;

/* --------------------------------------------------------------- errors */

static void position(const parser *ps, const char *at, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (const char *q = ps->src; q < at && q < ps->end; q++) {
        if (*q == '\n') {
            (*line)++;
            *col = 1;
        } else if (((unsigned char)*q & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

static plm_status fail_at(parser *ps, const char *at, const char *fmt, ...) PLM_PRINTF(3, 4);
static plm_status fail_at(parser *ps, const char *at, const char *fmt, ...) {
    if (ps->st) return ps->st;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    position(ps, at, &line, &col);
    ps->st = plm_fail(PLM_ERR_ARG, "grammar line %d:%d: %s", line, col, msg);
    return ps->st;
}

static plm_status oom(parser *ps) {
    if (!ps->st) ps->st = plm_fail(PLM_ERR_OOM, "out of memory reading a grammar");
    return ps->st;
}

/* What is at p, for messages. */
static const char *what_at(const parser *ps, const char *p, char buf[16]) {
    if (p >= ps->end) return "the end of the text";
    unsigned char c = (unsigned char)*p;
    if (c == '\n' || c == '\r') return "a line break";
    if (c >= 0x20 && c < 0x7f) snprintf(buf, 16, "'%c'", c);
    else snprintf(buf, 16, "byte 0x%02X", c);
    return buf;
}

/* ----------------------------------------------------------- rules, elems */

static int32_t add_rule(parser *ps, const char *name, size_t n) {
    if (ps->n_rules == ps->cap_rules) {
        int32_t nc = ps->cap_rules ? ps->cap_rules * 2 : 32;
        prule *nr = realloc(ps->rules, (size_t)nc * sizeof(prule));
        if (!nr) return oom(ps), -1;
        ps->rules = nr;
        ps->cap_rules = nc;
    }
    prule *r = &ps->rules[ps->n_rules];
    memset(r, 0, sizeof *r);
    r->name = malloc(n + 1);
    if (!r->name) return oom(ps), -1;
    memcpy(r->name, name, n);
    r->name[n] = 0;
    return ps->n_rules++;
}

static int32_t find_rule(const parser *ps, const char *name, size_t n) {
    for (int32_t i = 0; i < ps->n_rules; i++)
        if (strlen(ps->rules[i].name) == n && memcmp(ps->rules[i].name, name, n) == 0) return i;
    return -1;
}

/* A helper rule named after its parent: parent_N. */
static int32_t add_helper(parser *ps, int32_t parent) {
    char buf[160];
    snprintf(buf, sizeof buf, "%.120s_%d", ps->rules[parent].name, ps->n_rules);
    int32_t id = add_rule(ps, buf, strlen(buf));
    if (id >= 0) ps->rules[id].defined = true;
    return id;
}

static bool push(parser *ps, int32_t rule, int32_t type, int32_t v) {
    if (ps->st) return false;
    if (++ps->total > MAX_ELEMS) {
        fail_at(ps, ps->p, "the grammar is too large (more than %d elements once repetitions are expanded)", MAX_ELEMS);
        return false;
    }
    prule *r = &ps->rules[rule];
    if (r->n == r->cap) {
        int32_t nc = r->cap ? r->cap * 2 : 8;
        plm_gelem *ne = realloc(r->e, (size_t)nc * sizeof(plm_gelem));
        if (!ne) return oom(ps), false;
        r->e = ne;
        r->cap = nc;
    }
    r->e[r->n++] = (plm_gelem){type, v};
    return true;
}

/* ---------------------------------------------------------------- classes */

static int cmp_range(const void *a, const void *b) {
    const uint32_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0;
}

/* Adds a class from n (lo, hi) pairs: sorted, merged, surrogates removed,
 * complemented if negated. Returns its index or -1. */
static int32_t add_class(parser *ps, uint32_t *pairs, int32_t n, bool negate) {
    qsort(pairs, (size_t)n, 2 * sizeof(uint32_t), cmp_range);
    uint32_t *out = NULL;
    int32_t m = 0;
    /* merge */
    for (int32_t i = 0; i < n; i++) {
        if (m && pairs[2 * i] <= pairs[2 * (m - 1) + 1] + 1) {
            if (pairs[2 * i + 1] > pairs[2 * (m - 1) + 1]) pairs[2 * (m - 1) + 1] = pairs[2 * i + 1];
        } else {
            pairs[2 * m] = pairs[2 * i];
            pairs[2 * m + 1] = pairs[2 * i + 1];
            m++;
        }
    }
    if (negate) {
        out = malloc((size_t)(m + 1) * 2 * sizeof(uint32_t));
        if (!out) return oom(ps), -1;
        int32_t k = 0;
        uint32_t next = 0;
        for (int32_t i = 0; i < m; i++) {
            if (pairs[2 * i] > next) {
                out[2 * k] = next;
                out[2 * k + 1] = pairs[2 * i] - 1;
                k++;
            }
            next = pairs[2 * i + 1] + 1;
        }
        if (next <= MAX_CP) {
            out[2 * k] = next;
            out[2 * k + 1] = MAX_CP;
            k++;
        }
        memcpy(pairs, out, (size_t)k * 2 * sizeof(uint32_t)); /* k <= m + 1 <= capacity of pairs (n + 1) */
        free(out);
        m = k;
    }
    /* Surrogates are not characters: cut [D800, DFFF] out. */
    int32_t need = 0;
    for (int32_t i = 0; i < m; i++) {
        uint32_t lo = pairs[2 * i], hi = pairs[2 * i + 1];
        bool left = lo < 0xD800, right = hi > 0xDFFF;
        if (hi < 0xD800 || lo > 0xDFFF) need += 1;
        else need += (int32_t)left + (int32_t)right;
    }
    if (ps->n_ranges + need > ps->cap_ranges) {
        int32_t nc = ps->cap_ranges ? ps->cap_ranges : 64;
        while (nc < ps->n_ranges + need) nc *= 2;
        uint32_t *nr = realloc(ps->ranges, (size_t)nc * 2 * sizeof(uint32_t));
        if (!nr) return oom(ps), -1;
        ps->ranges = nr;
        ps->cap_ranges = nc;
    }
    if (ps->n_classes == ps->cap_classes) {
        int32_t nc = ps->cap_classes ? ps->cap_classes * 2 : 32;
        int32_t *a = realloc(ps->class_off, (size_t)nc * sizeof(int32_t));
        if (!a) return oom(ps), -1;
        ps->class_off = a;
        int32_t *b = realloc(ps->class_n, (size_t)nc * sizeof(int32_t));
        if (!b) return oom(ps), -1;
        ps->class_n = b;
        ps->cap_classes = nc;
    }
    int32_t off = ps->n_ranges;
    for (int32_t i = 0; i < m; i++) {
        uint32_t lo = pairs[2 * i], hi = pairs[2 * i + 1];
        uint32_t *r = ps->ranges + 2 * ps->n_ranges;
        if (hi < 0xD800 || lo > 0xDFFF) {
            r[0] = lo, r[1] = hi, ps->n_ranges++;
        } else {
            if (lo < 0xD800) r[0] = lo, r[1] = 0xD7FF, r += 2, ps->n_ranges++;
            if (hi > 0xDFFF) r[0] = 0xE000, r[1] = hi, ps->n_ranges++;
        }
    }
    ps->class_off[ps->n_classes] = off;
    ps->class_n[ps->n_classes] = ps->n_ranges - off;
    return ps->n_classes++;
}

/* ---------------------------------------------------------------- lexing */

static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static void skip_space(parser *ps, bool newline_ok) {
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == ' ' || c == '\t') ps->p++;
        else if (c == '#') {
            while (ps->p < ps->end && *ps->p != '\n' && *ps->p != '\r') ps->p++;
        } else if (newline_ok && (c == '\n' || c == '\r')) ps->p++;
        else break;
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes one UTF-8 character at p; 0 length when invalid. */
static size_t utf8_decode(const char *p, const char *end, uint32_t *cp) {
    if (p >= end) return 0;
    size_t n = plm_utf8_decode((const uint8_t *)p, (size_t)(end - p), cp);
    return *cp == PLM_CP_INVALID ? 0 : n;
}

/* One character of a literal or class (an escape or a UTF-8 character). */
static bool parse_char(parser *ps, uint32_t *cp) {
    const char *at = ps->p;
    if (ps->p >= ps->end) return fail_at(ps, at, "expected a character, found the end of the text"), false;
    if (*ps->p == '\\') {
        ps->p++;
        if (ps->p >= ps->end) return fail_at(ps, at, "expected an escape after '\\', found the end of the text"), false;
        char e = *ps->p++;
        int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (digits) {
            uint32_t v = 0;
            for (int i = 0; i < digits; i++) {
                int h = ps->p < ps->end ? hexval(*ps->p) : -1;
                if (h < 0) return fail_at(ps, ps->p, "expected %d hex digits after '\\%c'", digits, e), false;
                v = v * 16 + (uint32_t)h;
                ps->p++;
            }
            if (v > MAX_CP) return fail_at(ps, at, "escape \\%c: code point 0x%X is beyond U+10FFFF", e, v), false;
            *cp = v;
            return true;
        }
        switch (e) {
        case 't': *cp = '\t'; return true;
        case 'r': *cp = '\r'; return true;
        case 'n': *cp = '\n'; return true;
        case 'f': *cp = '\f'; return true;
        case 'v': *cp = '\v'; return true;
        case '0': *cp = 0; return true;
        case '\\': case '"': case '[': case ']': case '-': case '^': case '\'': case '/': case '.':
            *cp = (unsigned char)e;
            return true;
        default: {
            char buf[16];
            ps->p--;
            return fail_at(ps, at, "unknown escape: expected one of \\x \\u \\U \\t \\r \\n \\\\ \\\" \\[ \\] \\- \\^ after '\\', found %s",
                           what_at(ps, ps->p, buf)), false;
        }
        }
    }
    size_t n = utf8_decode(ps->p, ps->end, cp);
    if (!n) return fail_at(ps, at, "invalid UTF-8 in the grammar"), false;
    ps->p += n;
    return true;
}

/* ------------------------------------------------------------ the syntax */

static bool parse_alternates(parser *ps, int32_t rule, bool nested);

/* Moves e[start, n) of rule out into a new helper rule when it is more than one
 * element; returns the single element that stands for it. */
static bool take_symbol(parser *ps, int32_t rule, int32_t start, plm_gelem *sym) {
    int32_t k = ps->rules[rule].n - start;
    if (k == 1) {
        *sym = ps->rules[rule].e[start];
        ps->rules[rule].n = start;
        return true;
    }
    int32_t h = add_helper(ps, rule);
    if (h < 0) return false;
    for (int32_t i = 0; i < k; i++) {
        plm_gelem e = ps->rules[rule].e[start + i];
        if (!push(ps, h, e.type, e.v)) return false;
    }
    if (!push(ps, h, PLM_GE_END, 0)) return false;
    ps->rules[rule].n = start;
    *sym = (plm_gelem){PLM_GE_REF, h};
    return true;
}

/* R ::= sym R | (empty): zero or more. */
static int32_t star_rule(parser *ps, int32_t rule, plm_gelem sym) {
    int32_t r = add_helper(ps, rule);
    if (r < 0) return -1;
    if (!push(ps, r, sym.type, sym.v) || !push(ps, r, PLM_GE_REF, r) || !push(ps, r, PLM_GE_ALT, 0) ||
        !push(ps, r, PLM_GE_END, 0))
        return -1;
    return r;
}

/* R ::= sym next | (empty): optional sym followed (when present) by next (-1: nothing). */
static int32_t opt_rule(parser *ps, int32_t rule, plm_gelem sym, int32_t next) {
    int32_t r = add_helper(ps, rule);
    if (r < 0) return -1;
    if (!push(ps, r, sym.type, sym.v)) return -1;
    if (next >= 0 && !push(ps, r, PLM_GE_REF, next)) return -1;
    if (!push(ps, r, PLM_GE_ALT, 0) || !push(ps, r, PLM_GE_END, 0)) return -1;
    return r;
}

static bool parse_count(parser *ps, long *v) {
    const char *at = ps->p;
    long x = 0;
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') {
        char buf[16];
        return fail_at(ps, at, "expected a number in a {m,n} repetition, found %s", what_at(ps, at, buf)), false;
    }
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        x = x * 10 + (*ps->p++ - '0');
        if (x > 1000000) return fail_at(ps, at, "repetition count too large (at most 1000000)"), false;
    }
    *v = x;
    return true;
}

/* Applies the repetition operator at ps->p to e[start, n) of rule. */
static bool parse_repetition(parser *ps, int32_t rule, int32_t start) {
    char op = *ps->p;
    const char *at = ps->p;
    long lo = 0, hi = -1;
    ps->p++;
    if (op == '{') {
        skip_space(ps, false);
        if (!parse_count(ps, &lo)) return false;
        skip_space(ps, false);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_space(ps, false);
            if (ps->p < ps->end && *ps->p != '}') {
                if (!parse_count(ps, &hi)) return false;
                skip_space(ps, false);
                if (hi < lo) return fail_at(ps, at, "repetition {%ld,%ld}: the maximum is below the minimum", lo, hi), false;
            }
        } else {
            hi = lo;
        }
        if (ps->p >= ps->end || *ps->p != '}') {
            char buf[16];
            return fail_at(ps, ps->p, "expected '}' closing the repetition, found %s", what_at(ps, ps->p, buf)), false;
        }
        ps->p++;
    } else if (op == '+') {
        lo = 1;
    } else if (op == '?') {
        hi = 1;
    }
    if (ps->rules[rule].n == start) return true; /* repeating nothing ("" or ()) is nothing */
    plm_gelem sym;
    if (!take_symbol(ps, rule, start, &sym)) return false;
    if ((int64_t)ps->total + lo + (hi > lo ? hi - lo : 0) * 4 > MAX_ELEMS)
        return fail_at(ps, at, "the grammar is too large (more than %d elements once repetitions are expanded)", MAX_ELEMS), false;
    for (long i = 0; i < lo; i++)
        if (!push(ps, rule, sym.type, sym.v)) return false;
    if (hi < 0) {
        int32_t r = star_rule(ps, rule, sym);
        if (r < 0 || !push(ps, rule, PLM_GE_REF, r)) return false;
    } else if (hi > lo) {
        int32_t next = -1;
        for (long i = 0; i < hi - lo; i++)
            if ((next = opt_rule(ps, rule, sym, next)) < 0) return false;
        if (!push(ps, rule, PLM_GE_REF, next)) return false;
    }
    return true;
}

/* A sequence of elements, up to '|', ')', a line break (at the top level) or the end. */
static bool parse_sequence(parser *ps, int32_t rule, bool nested) {
    int32_t last = -1; /* start of the last element, for a repetition */
    for (;;) {
        skip_space(ps, nested);
        if (ps->p >= ps->end) return true;
        char c = *ps->p;
        const char *at = ps->p;
        if (c == '"') {
            ps->p++;
            last = ps->rules[rule].n;
            while (ps->p < ps->end && *ps->p != '"') {
                uint32_t cp;
                if (!parse_char(ps, &cp)) return false;
                uint32_t pair[2 * 2] = {cp, cp};
                int32_t k = add_class(ps, pair, 1, false);
                if (k < 0 || !push(ps, rule, PLM_GE_CHAR, k)) return false;
            }
            if (ps->p >= ps->end) return fail_at(ps, at, "this string literal is not closed: expected '\"'"), false;
            ps->p++;
        } else if (c == '[') {
            ps->p++;
            last = ps->rules[rule].n;
            bool negate = false;
            if (ps->p < ps->end && *ps->p == '^') negate = true, ps->p++;
            int32_t n = 0, cap = 8;
            uint32_t *pairs = malloc((size_t)(cap + 1) * 2 * sizeof(uint32_t));
            if (!pairs) return oom(ps), false;
            while (ps->p < ps->end && *ps->p != ']') {
                uint32_t a, b;
                if (!parse_char(ps, &a)) return free(pairs), false;
                b = a;
                if (ps->p + 1 < ps->end && *ps->p == '-' && ps->p[1] != ']') {
                    const char *rat = ps->p;
                    ps->p++;
                    if (!parse_char(ps, &b)) return free(pairs), false;
                    if (b < a) return free(pairs), fail_at(ps, rat, "range end U+%04X is below its start U+%04X", b, a), false;
                }
                if (n == cap) {
                    cap *= 2;
                    uint32_t *np = realloc(pairs, (size_t)(cap + 1) * 2 * sizeof(uint32_t));
                    if (!np) return free(pairs), oom(ps), false;
                    pairs = np;
                }
                pairs[2 * n] = a;
                pairs[2 * n + 1] = b;
                n++;
            }
            if (ps->p >= ps->end) return free(pairs), fail_at(ps, at, "this character class is not closed: expected ']'"), false;
            ps->p++;
            int32_t k = add_class(ps, pairs, n, negate);
            free(pairs);
            if (k < 0 || !push(ps, rule, PLM_GE_CHAR, k)) return false;
        } else if (c == '.') {
            ps->p++;
            last = ps->rules[rule].n;
            uint32_t pair[2 * 2] = {0, MAX_CP};
            int32_t k = add_class(ps, pair, 1, false);
            if (k < 0 || !push(ps, rule, PLM_GE_CHAR, k)) return false;
        } else if (is_name_char(c)) {
            const char *s = ps->p;
            while (ps->p < ps->end && is_name_char(*ps->p)) ps->p++;
            size_t n = (size_t)(ps->p - s);
            /* The start of the next rule ("name ::=") ends this sequence at the top level. */
            const char *save = ps->p;
            skip_space(ps, false);
            if (ps->end - ps->p >= 3 && memcmp(ps->p, "::=", 3) == 0) {
                if (nested) return fail_at(ps, s, "expected ')' before the next rule definition"), false;
                return fail_at(ps, s, "expected a line break before the next rule definition"), false;
            }
            ps->p = save;
            int32_t id = find_rule(ps, s, n);
            if (id < 0) {
                if ((id = add_rule(ps, s, n)) < 0) return false;
                ps->rules[id].ref_at = s;
            }
            last = ps->rules[rule].n;
            if (!push(ps, rule, PLM_GE_REF, id)) return false;
        } else if (c == '(') {
            ps->p++;
            if (++ps->depth > MAX_NEST) return fail_at(ps, at, "parentheses nested more than %d deep", MAX_NEST), false;
            int32_t h = add_helper(ps, rule);
            if (h < 0) return false;
            if (!parse_alternates(ps, h, true)) return false;
            ps->depth--;
            if (ps->p >= ps->end || *ps->p != ')') {
                char buf[16];
                int ol, oc;
                position(ps, at, &ol, &oc);
                return fail_at(ps, ps->p, "expected ')' closing the group opened at %d:%d, found %s", ol, oc,
                               what_at(ps, ps->p, buf)), false;
            }
            ps->p++;
            last = ps->rules[rule].n;
            if (!push(ps, rule, PLM_GE_REF, h)) return false;
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (last < 0) return fail_at(ps, at, "'%c' repeats nothing: expected an element before it", c), false;
            if (!parse_repetition(ps, rule, last)) return false;
            last = -1;
        } else if (c == '|' || c == ')' || c == '\n' || c == '\r') {
            return true;
        } else if (c == '<') {
            return fail_at(ps, at, "token references (<...>) are not supported: expected an element"), false;
        } else {
            char buf[16];
            return fail_at(ps, at, "expected an element (a \"literal\", a [class], '.', a rule name or a group), found %s",
                           what_at(ps, at, buf)), false;
        }
    }
}

static bool parse_alternates(parser *ps, int32_t rule, bool nested) {
    for (;;) {
        if (!parse_sequence(ps, rule, nested)) return false;
        if (ps->p < ps->end && *ps->p == '|') {
            if (!push(ps, rule, PLM_GE_ALT, 0)) return false;
            ps->p++;
            skip_space(ps, true);
            continue;
        }
        return push(ps, rule, PLM_GE_END, 0);
    }
}

static bool parse_rule(parser *ps) {
    const char *s = ps->p;
    while (ps->p < ps->end && is_name_char(*ps->p)) ps->p++;
    size_t n = (size_t)(ps->p - s);
    char buf[16];
    if (!n) return fail_at(ps, s, "expected a rule name, found %s", what_at(ps, s, buf)), false;
    skip_space(ps, false);
    if (ps->end - ps->p < 3 || memcmp(ps->p, "::=", 3) != 0)
        return fail_at(ps, ps->p, "expected '::=' after the rule name '%.*s', found %s", (int)PLM_MIN(n, 64), s,
                       what_at(ps, ps->p, buf)), false;
    ps->p += 3;
    int32_t id = find_rule(ps, s, n);
    if (id >= 0 && ps->rules[id].defined)
        return fail_at(ps, s, "rule '%.*s' is defined twice", (int)PLM_MIN(n, 64), s), false;
    if (id < 0 && (id = add_rule(ps, s, n)) < 0) return false;
    ps->rules[id].defined = true;
    skip_space(ps, true);
    if (!parse_alternates(ps, id, false)) return false;
    if (ps->p < ps->end) {
        if (*ps->p == ')') return fail_at(ps, ps->p, "unexpected ')': no group is open"), false;
        if (*ps->p != '\n' && *ps->p != '\r')
            return fail_at(ps, ps->p, "expected a line break or the end after the rule, found %s", what_at(ps, ps->p, buf)), false;
    }
    skip_space(ps, true);
    return true;
}

/* ------------------------------------------------------------------ checks */

static void free_parser(parser *ps) {
    for (int32_t i = 0; i < ps->n_rules; i++) {
        free(ps->rules[i].name);
        free(ps->rules[i].e);
    }
    free(ps->rules);
    free(ps->ranges);
    free(ps->class_off);
    free(ps->class_n);
}

/* Fixed point: a rule has the property if one alternative has it for all its elements. */
static void fixed_point(const parser *ps, bool *flag, bool (*char_ok)(const parser *, int32_t)) {
    bool changed = true;
    while (changed) {
        changed = false;
        for (int32_t r = 0; r < ps->n_rules; r++) {
            if (flag[r]) continue;
            const prule *R = &ps->rules[r];
            bool all = true;
            for (int32_t i = 0; i < R->n; i++) {
                plm_gelem e = R->e[i];
                if (e.type == PLM_GE_ALT || e.type == PLM_GE_END) {
                    if (all) {
                        flag[r] = true;
                        changed = true;
                        break;
                    }
                    all = true;
                } else if (all) {
                    all = e.type == PLM_GE_CHAR ? (char_ok && char_ok(ps, e.v)) : flag[e.v];
                }
            }
        }
    }
}

static bool class_nonempty(const parser *ps, int32_t c) { return ps->class_n[c] > 0; }

/* Depth-first search for a left-recursion cycle; state 1 on the path, 2 done. */
static bool left_cycle(parser *ps, const bool *nullable, int32_t r, uint8_t *mark, int32_t *path, int32_t depth) {
    mark[r] = 1;
    path[depth] = r;
    const prule *R = &ps->rules[r];
    bool at_start = true;
    for (int32_t i = 0; i < R->n; i++) {
        plm_gelem e = R->e[i];
        if (e.type == PLM_GE_ALT || e.type == PLM_GE_END) {
            at_start = true;
            continue;
        }
        if (!at_start) continue;
        if (e.type == PLM_GE_REF) {
            if (mark[e.v] == 1) {
                char chain[512];
                size_t n = 0;
                int32_t from = depth;
                while (from > 0 && path[from] != e.v) from--;
                for (int32_t k = from; k <= depth && n < sizeof chain - 80; k++)
                    n += (size_t)snprintf(chain + n, sizeof chain - n, "%.60s -> ", ps->rules[path[k]].name);
                snprintf(chain + n, sizeof chain - n, "%.60s", ps->rules[e.v].name);
                ps->st = plm_fail(PLM_ERR_ARG,
                                  "grammar: rule '%s' is left-recursive (%s): a top-down matcher cannot run it; "
                                  "rewrite it with repetition (x ::= y (op y)*), or a repetition of something that "
                                  "can be empty", ps->rules[e.v].name, chain);
                return true;
            }
            if (mark[e.v] == 0 && left_cycle(ps, nullable, e.v, mark, path, depth + 1)) return true;
            at_start = nullable[e.v];
        } else {
            at_start = false;
        }
    }
    mark[r] = 2;
    return false;
}

/* Removes alternatives that use a rule that can never finish (or an empty class). */
static void drop_unproductive(parser *ps, const bool *productive) {
    for (int32_t r = 0; r < ps->n_rules; r++) {
        prule *R = &ps->rules[r];
        int32_t w = 0, start = 0;
        bool ok = true;
        for (int32_t i = 0; i < R->n; i++) {
            plm_gelem e = R->e[i];
            if (e.type == PLM_GE_ALT || e.type == PLM_GE_END) {
                if (ok) {
                    for (int32_t k = start; k < i; k++) R->e[w++] = R->e[k];
                    R->e[w++] = (plm_gelem){PLM_GE_ALT, 0};
                }
                start = i + 1;
                ok = true;
            } else if (e.type == PLM_GE_CHAR ? ps->class_n[e.v] == 0 : !productive[e.v]) {
                ok = false;
            }
        }
        if (w > 0) R->e[w - 1].type = PLM_GE_END;
        R->n = w; /* 0: no alternative left (the rule is unreachable now) */
    }
}

static plm_status finish(parser *ps, const char *root, plm_grammar **out) {
    for (int32_t r = 0; r < ps->n_rules; r++)
        if (!ps->rules[r].defined)
            return fail_at(ps, ps->rules[r].ref_at, "rule '%.64s' is used but not defined", ps->rules[r].name);
    int32_t root_id = find_rule(ps, root, strlen(root));
    if (root_id < 0) return plm_fail(PLM_ERR_ARG, "grammar: no rule named '%.64s' (the start rule)", root);

    int32_t n = ps->n_rules;
    bool *nullable = calloc((size_t)n, sizeof(bool)), *productive = calloc((size_t)n, sizeof(bool));
    uint8_t *mark = calloc((size_t)n, 1);
    int32_t *path = malloc((size_t)n * sizeof(int32_t));
    if (!nullable || !productive || !mark || !path) {
        free(nullable), free(productive), free(mark), free(path);
        return oom(ps);
    }
    fixed_point(ps, nullable, NULL);
    fixed_point(ps, productive, class_nonempty);
    plm_status st = PLM_OK;
    if (!productive[root_id]) {
        st = plm_fail(PLM_ERR_ARG, "grammar: rule '%.64s' can never finish (each alternative recurses forever or "
                      "needs a character from an empty class)", root);
    } else {
        drop_unproductive(ps, productive);
        for (int32_t r = 0; r < n && !st; r++)
            if (mark[r] == 0 && left_cycle(ps, nullable, r, mark, path, 0)) st = ps->st;
    }
    free(nullable), free(productive), free(mark), free(path);
    if (st) return st;

    /* Flatten. */
    plm_grammar *g = calloc(1, sizeof(*g));
    if (!g) return oom(ps);
    g->refs = 1;
    g->n_rules = n;
    g->root = root_id;
    int32_t total = 0, n_alts = 0;
    for (int32_t r = 0; r < n; r++) {
        total += ps->rules[r].n ? ps->rules[r].n : 1;
        for (int32_t i = 0; i < ps->rules[r].n; i++)
            n_alts += ps->rules[r].e[i].type == PLM_GE_ALT || ps->rules[r].e[i].type == PLM_GE_END;
    }
    g->names = calloc((size_t)n, sizeof(char *));
    g->rule_start = malloc((size_t)n * sizeof(int32_t));
    g->alt_off = malloc((size_t)n * sizeof(int32_t));
    g->alt_n = malloc((size_t)n * sizeof(int32_t));
    g->alts = malloc((size_t)(n_alts + 1) * sizeof(int32_t));
    g->elems = malloc((size_t)total * sizeof(plm_gelem));
    g->class_ascii = malloc((size_t)(ps->n_classes + 1) * sizeof(*g->class_ascii));
    if (!g->names || !g->rule_start || !g->alt_off || !g->alt_n || !g->alts || !g->elems || !g->class_ascii) {
        plm_grammar_free(g);
        return oom(ps);
    }
    int32_t pos = 0, a = 0;
    for (int32_t r = 0; r < n; r++) {
        prule *R = &ps->rules[r];
        g->names[r] = R->name;
        R->name = NULL;
        g->rule_start[r] = pos;
        g->alt_off[r] = a;
        if (R->n) g->alts[a++] = pos;
        for (int32_t i = 0; i < R->n; i++) {
            g->elems[pos++] = R->e[i];
            if (R->e[i].type == PLM_GE_ALT) g->alts[a++] = pos;
        }
        if (!R->n) g->elems[pos++] = (plm_gelem){PLM_GE_END, 0};
        g->alt_n[r] = a - g->alt_off[r];
    }
    g->n_elems = pos;
    g->ranges = ps->ranges;
    g->class_off = ps->class_off;
    g->class_n = ps->class_n;
    g->n_classes = ps->n_classes;
    ps->ranges = NULL;
    ps->class_off = ps->class_n = NULL;
    for (int32_t c = 0; c < g->n_classes; c++) {
        g->class_ascii[c][0] = g->class_ascii[c][1] = 0;
        for (int32_t k = 0; k < g->class_n[c]; k++) {
            uint32_t lo = g->ranges[2 * (g->class_off[c] + k)], hi = g->ranges[2 * (g->class_off[c] + k) + 1];
            for (uint32_t x = lo; x <= hi && x < 128; x++) g->class_ascii[c][x >> 6] |= 1ull << (x & 63);
        }
    }
    *out = g;
    return PLM_OK;
}

plm_status plm_grammar_parse_gbnf(const char *text, size_t len, const char *root, plm_grammar **out) {
    parser ps = {.src = text, .end = text + len, .p = text};
    skip_space(&ps, true);
    while (!ps.st && ps.p < ps.end) parse_rule(&ps);
    plm_status st = ps.st;
    if (!st && ps.n_rules == 0) st = plm_fail(PLM_ERR_ARG, "grammar: the text defines no rule");
    if (!st) st = finish(&ps, root ? root : "root", out);
    free_parser(&ps);
    return st;
}

/* ------------------------------------------------------------------ public */

plm_status plm_grammar_parse(const char *text, size_t len, const char *root, plm_grammar **out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_grammar_parse: out is NULL");
    *out = NULL;
    if (!text && len) return plm_fail(PLM_ERR_ARG, "plm_grammar_parse: text is NULL");
    return plm_grammar_parse_gbnf(text ? text : "", len, root, out);
}

plm_grammar *plm_grammar_ref(const plm_grammar *g) {
    plm_grammar *m = (plm_grammar *)g;
    __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
    return m;
}

void plm_grammar_free(plm_grammar *g) {
    if (!g || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
    if (g->names)
        for (int32_t i = 0; i < g->n_rules; i++) free(g->names[i]);
    free(g->names);
    free(g->rule_start);
    free(g->alt_off);
    free(g->alt_n);
    free(g->alts);
    free(g->elems);
    free(g->ranges);
    free(g->class_off);
    free(g->class_n);
    free(g->class_ascii);
    free(g);
}

bool plm_grammar_class_has(const plm_grammar *g, int32_t c, uint32_t cp) {
    if (cp < 128) return (g->class_ascii[c][cp >> 6] >> (cp & 63)) & 1;
    const uint32_t *r = g->ranges + 2 * g->class_off[c];
    int32_t lo = 0, hi = g->class_n[c] - 1;
    while (lo <= hi) {
        int32_t mid = (lo + hi) / 2;
        if (cp < r[2 * mid]) hi = mid - 1;
        else if (cp > r[2 * mid + 1]) lo = mid + 1;
        else return true;
    }
    return false;
}

bool plm_grammar_class_range_covers(const plm_grammar *g, int32_t c, uint32_t lo, uint32_t hi) {
    const uint32_t *r = g->ranges + 2 * g->class_off[c];
    for (int32_t k = 0; k < g->class_n[c]; k++)
        if (r[2 * k] <= lo && r[2 * k + 1] >= hi) return true;
    return false;
}

bool plm_grammar_class_meets(const plm_grammar *g, int32_t c, uint32_t lo, uint32_t hi) {
    const uint32_t *r = g->ranges + 2 * g->class_off[c];
    for (int32_t k = 0; k < g->class_n[c]; k++)
        if (r[2 * k] <= hi && r[2 * k + 1] >= lo) return true;
    return false;
}
