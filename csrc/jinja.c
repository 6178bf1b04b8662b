/*
 * jinja.c — a Jinja2-subset interpreter for chat templates.
 *
 * Owns plm_chat_template_render: the template (tokenizer.chat_template, or one
 * given by the caller) is lexed and parsed into a tree once per call and run
 * against variables given as a JSON object (messages, tools,
 * add_generation_prompt, bos_token, ...). The environment is the one Hugging
 * Face renders chat templates in: trim_blocks and lstrip_blocks on, loop
 * controls (break/continue), the globals raise_exception, strftime_now,
 * namespace and range, and a tojson filter that is Python's json.dumps with
 * ensure_ascii=False. Values print as Python prints them (True, None, 1.0,
 * ['a']). What it does not implement is an error naming the construct and its
 * line, never a silently different prompt.
 *
 * Templates come from files, so they are untrusted: every allocation is from
 * one arena freed at the end; recursion depth, work steps and output size are
 * bounded. Owns no chat knowledge: chat.c keeps the families recognized by
 * pattern.
 */
#include "internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_DEPTH 200
#define MAX_STEPS 5000000
#define MAX_OUT (64u << 20)
#define MAX_ARENA ((size_t)256 << 20) /* everything one render allocates */

/* ------------------------------------------------------------- arena */

typedef struct ablock {
    struct ablock *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} ablock;

typedef struct jx jx; /* the interpreter's state */

/* ------------------------------------------------------------- values */

typedef enum vk { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_MACRO, V_FUNC, V_METHOD } vk;

typedef struct jstr {
    const char *p;
    size_t n;
} jstr;

typedef struct val val;
typedef struct jlist {
    val *a;
    size_t n, cap;
    bool gen; /* a lazy sequence in Jinja2 (map, select...): iterable, but no len(), index or JSON */
} jlist;
typedef struct jdict {
    jstr *k;
    val *v;
    size_t n, cap;
} jdict;
typedef struct node node;
typedef struct macro {
    jstr name;
    jstr *params;
    node **defaults;
    size_t n_params;
    node *body;
} macro;
typedef struct method {
    val *self;
    jstr name;
} method;

struct val {
    vk k;
    bool safe; /* V_STR: Jinja2's Markup (from |safe or |escape): adding a plain string to it escapes that string */
    union {
        bool b;
        int64_t i;
        double f;
        jstr s;
        jlist *l;
        jdict *d; /* V_DICT, V_NS */
        macro *m;
        int fn; /* V_FUNC: builtin index */
        method *me;
    } u;
};

/* ------------------------------------------------------------- tree */

typedef enum nk {
    /* expressions */
    N_LIT, N_NAME, N_ATTR, N_ITEM, N_SLICE, N_CALL, N_FILTER, N_TEST, N_BIN, N_NOT, N_NEG, N_AND, N_OR, N_COND, N_LIST, N_DICT,
    /* statements */
    N_SEQ, N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_BREAK, N_CONTINUE, N_CALLBLOCK
} nk;

struct node {
    nk k;
    int line;
    int op;           /* N_BIN: operator token; N_TEST: negated */
    jstr name;        /* N_NAME, N_ATTR, N_FILTER, N_TEST, N_SET target, N_MACRO */
    jstr attr;        /* N_SET: ns.attr */
    val lit;          /* N_LIT, N_TEXT */
    node *a, *b, *c;  /* operands; N_IF: cond, then, else; N_FOR: iter, body, else; N_SLICE: obj/start in kids */
    node *d;          /* N_FOR: filter */
    node **kids;      /* N_CALL/N_FILTER/N_TEST args, N_LIST items, N_DICT keys+values, N_SEQ statements */
    jstr *kw;         /* keyword names of the last n_kw kids */
    size_t n_kids, n_kw;
    jstr *targets;    /* N_FOR loop variables; N_SET tuple targets */
    size_t n_targets;
    macro *mac;
};

/* ------------------------------------------------------------- state */

typedef struct scope {
    struct scope *parent;
    jdict vars;
} scope;

typedef struct obuf {
    char *p;
    size_t n, cap;
} obuf;

struct jx {
    ablock *arena;
    size_t arena_bytes;
    const char *lc_pos; /* line_at's last position and its line */
    int lc_line;
    const char *src;
    size_t src_len;
    /* lexer */
    const char *tp; /* current position in the current tag's expression */
    const char *te;
    int line;
    /* tokens of the template */
    struct seg *segs;
    size_t n_segs, seg_i;
    /* run */
    long steps;
    int depth;
    plm_status st;
    char err[512];
    int brk; /* 1 break, 2 continue */
};

static void *jalloc(jx *J, size_t n) {
    n = (n + 15) & ~(size_t)15;
    ablock *b = J->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > (1u << 16) ? n : (1u << 16);
        if (J->arena_bytes + cap > MAX_ARENA) {
            if (!J->st) {
                J->st = PLM_ERR_UNSUPPORTED;
                snprintf(J->err, sizeof J->err, "chat template line %d: rendering needs more than %zu MiB", J->line, MAX_ARENA >> 20);
            }
            return NULL;
        }
        J->arena_bytes += cap;
        ablock *nb = malloc(sizeof *nb + cap);
        if (!nb) return NULL;
        nb->next = b;
        nb->used = 0;
        nb->cap = cap;
        J->arena = b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

static void arena_free(jx *J) {
    for (ablock *b = J->arena, *nx; b; b = nx) {
        nx = b->next;
        free(b);
    }
    J->arena = NULL;
}

PLM_PRINTF(3, 4) static bool jfail(jx *J, int line, const char *fmt, ...) {
    if (J->st) return false;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(J->err, sizeof J->err, "chat template line %d: %s", line, msg);
    J->st = PLM_ERR_UNSUPPORTED;
    return false;
}

static bool oom(jx *J) {
    if (!J->st) {
        J->st = PLM_ERR_OOM;
        snprintf(J->err, sizeof J->err, "out of memory rendering the chat template");
    }
    return false;
}

#define CK(x)                       \
    do {                            \
        if (!(x)) return false;     \
    } while (0)

/* ------------------------------------------------------------- value helpers */

static val V(vk k) {
    val v;
    memset(&v, 0, sizeof v);
    v.k = k;
    return v;
}
static val vbool(bool b) {
    val v = V(V_BOOL);
    v.u.b = b;
    return v;
}
static val vint(int64_t i) {
    val v = V(V_INT);
    v.u.i = i;
    return v;
}
static val vfloat(double f) {
    val v = V(V_FLOAT);
    v.u.f = f;
    return v;
}
static val vstr(const char *p, size_t n) {
    val v = V(V_STR);
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}
static bool jstr_eq(jstr a, const char *b) { return a.n == strlen(b) && memcmp(a.p, b, a.n) == 0; }
static bool jstr_same(jstr a, jstr b) { return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0); }

static jstr jdup(jx *J, const char *p, size_t n) {
    char *c = jalloc(J, n + 1);
    if (c && n) memcpy(c, p, n);
    return (jstr){c ? c : "", c ? n : 0};
}

static jlist *list_new(jx *J) { return jalloc(J, sizeof(jlist)); }
static bool list_push(jx *J, jlist *l, val v) {
    if (l->n == l->cap) {
        size_t c = l->cap ? 2 * l->cap : 8;
        val *a = jalloc(J, c * sizeof *a);
        if (!a) return oom(J);
        if (l->n) memcpy(a, l->a, l->n * sizeof *a);
        l->a = a;
        l->cap = c;
    }
    l->a[l->n++] = v;
    return true;
}
static val vlist(jlist *l) {
    val v = V(V_LIST);
    v.u.l = l;
    return v;
}

static jdict *dict_new(jx *J) { return jalloc(J, sizeof(jdict)); }
static val *dict_get(const jdict *d, jstr k) {
    for (size_t i = 0; i < d->n; i++)
        if (jstr_same(d->k[i], k)) return &d->v[i];
    return NULL;
}
static bool dict_set(jx *J, jdict *d, jstr k, val v) {
    val *p = dict_get(d, k);
    if (p) {
        *p = v;
        return true;
    }
    if (d->n == d->cap) {
        size_t c = d->cap ? 2 * d->cap : 8;
        jstr *ks = jalloc(J, c * sizeof *ks);
        val *vs = jalloc(J, c * sizeof *vs);
        if (!ks || !vs) return oom(J);
        if (d->n) {
            memcpy(ks, d->k, d->n * sizeof *ks);
            memcpy(vs, d->v, d->n * sizeof *vs);
        }
        d->k = ks;
        d->v = vs;
        d->cap = c;
    }
    d->k[d->n] = k;
    d->v[d->n++] = v;
    return true;
}
static const char *kind_name(val v);

/* Dict keys are strings; an integer key (as in {0: 'a'}) is kept as "\x01" and its digits. */
static bool key_of(jx *J, val k, jstr *out) {
    if (k.k == V_STR) {
        *out = k.u.s;
        return true;
    }
    if (k.k != V_INT) return jfail(J, J->line, "dict keys must be strings or integers, not a %s", kind_name(k));
    char b[32];
    int n = snprintf(b, sizeof b, "\x01%" PRId64, k.u.i);
    *out = jdup(J, b, (size_t)n);
    return out->n != 0;
}
static val key_val(jstr k) {
    if (k.n > 1 && k.p[0] == '\x01') {
        val v;
        memset(&v, 0, sizeof v);
        v.k = V_INT;
        v.u.i = strtoll(k.p + 1, NULL, 10);
        return v;
    }
    val v;
    memset(&v, 0, sizeof v);
    v.k = V_STR;
    v.u.s = k;
    return v;
}

static val vdict(jdict *d) {
    val v = V(V_DICT);
    v.u.d = d;
    return v;
}

static bool truthy(val v) {
    switch (v.k) {
    case V_UNDEF:
    case V_NONE: return false;
    case V_BOOL: return v.u.b;
    case V_INT: return v.u.i != 0;
    case V_FLOAT: return v.u.f != 0;
    case V_STR: return v.u.s.n != 0;
    case V_LIST: return v.u.l->n != 0;
    case V_DICT: return v.u.d->n != 0;
    default: return true;
    }
}

static const char *kind_name(val v) {
    static const char *const names[] = {"undefined", "None", "bool", "int", "float", "str", "list", "dict", "namespace", "macro", "function", "method"};
    return names[v.k];
}

/* ------------------------------------------------------------- output buffers */

static bool ob_put(jx *J, obuf *o, const char *p, size_t n) {
    if (o->n + n + 1 > o->cap) {
        size_t c = o->cap ? o->cap : 256;
        while (c < o->n + n + 1) c *= 2;
        if (c > MAX_OUT) return jfail(J, J->line, "the rendered text exceeds %u bytes", MAX_OUT);
        char *q = jalloc(J, c);
        if (!q) return oom(J);
        if (o->n) memcpy(q, o->p, o->n);
        o->p = q;
        o->cap = c;
    }
    if (n) memcpy(o->p + o->n, p, n);
    o->n += n;
    o->p[o->n] = 0;
    return true;
}
static bool ob_puts(jx *J, obuf *o, const char *s) { return ob_put(J, o, s, strlen(s)); }

static bool fmt_float(jx *J, obuf *o, double f) {
    char b[40];
    if (isnan(f)) return ob_puts(J, o, "nan");
    if (isinf(f)) return ob_puts(J, o, f > 0 ? "inf" : "-inf");
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, f);
        if (strtod(b, NULL) == f) break;
    }
    /* Python's repr: exponent form from 1e16 on and below 1e-4, else positional with ".0". */
    double a = fabs(f);
    if (a != 0 && (a >= 1e16 || a < 1e-4)) {
        char *e = strchr(b, 'e');
        if (e) {
            char mant[40], out[64];
            snprintf(mant, sizeof mant, "%.*s", (int)(e - b), b);
            int ex = atoi(e + 1);
            snprintf(out, sizeof out, "%se%c%02d", mant, ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
            return ob_puts(J, o, out);
        }
    }
    if (strchr(b, 'e')) {
        /* %g chose an exponent below 1e16: write it out positionally */
        for (int prec = 0; prec <= 20; prec++) {
            snprintf(b, sizeof b, "%.*f", prec, f);
            if (strtod(b, NULL) == f) break;
        }
    }
    CK(ob_puts(J, o, b));
    if (!strchr(b, '.') && !strchr(b, 'e')) CK(ob_puts(J, o, ".0"));
    return true;
}

/* Python's repr of a str. */
static bool repr_str(jx *J, obuf *o, jstr s) {
    bool has_sq = memchr(s.p, '\'', s.n) != NULL, has_dq = memchr(s.p, '"', s.n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    CK(ob_put(J, o, &q, 1));
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        char b[8];
        if (c == (unsigned char)q || c == '\\') {
            b[0] = '\\';
            b[1] = (char)c;
            CK(ob_put(J, o, b, 2));
        } else if (c == '\n') CK(ob_puts(J, o, "\\n"));
        else if (c == '\r') CK(ob_puts(J, o, "\\r"));
        else if (c == '\t') CK(ob_puts(J, o, "\\t"));
        else if (c < 0x20 || c == 0x7f) {
            snprintf(b, sizeof b, "\\x%02x", c);
            CK(ob_puts(J, o, b));
        } else CK(ob_put(J, o, (const char *)&c, 1));
    }
    return ob_put(J, o, &q, 1);
}

static bool to_str(jx *J, obuf *o, val v, bool repr);

static bool to_str(jx *J, obuf *o, val v, bool repr) {
    char b[32];
    switch (v.k) {
    case V_UNDEF: return true;
    case V_NONE: return ob_puts(J, o, "None");
    case V_BOOL: return ob_puts(J, o, v.u.b ? "True" : "False");
    case V_INT:
        snprintf(b, sizeof b, "%" PRId64, v.u.i);
        return ob_puts(J, o, b);
    case V_FLOAT: return fmt_float(J, o, v.u.f);
    case V_STR: return repr ? repr_str(J, o, v.u.s) : ob_put(J, o, v.u.s.p, v.u.s.n);
    case V_LIST:
        if (v.u.l->gen) return jfail(J, J->line, "printing a generator (the result of map, select...); add |list");
        CK(ob_puts(J, o, "["));
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) CK(ob_puts(J, o, ", "));
            CK(to_str(J, o, v.u.l->a[i], true));
        }
        return ob_puts(J, o, "]");
    case V_DICT:
        CK(ob_puts(J, o, "{"));
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i) CK(ob_puts(J, o, ", "));
            CK(to_str(J, o, key_val(v.u.d->k[i]), true));
            CK(ob_puts(J, o, ": "));
            CK(to_str(J, o, v.u.d->v[i], true));
        }
        return ob_puts(J, o, "}");
    case V_NS: return ob_puts(J, o, "<Namespace>");
    default: return jfail(J, J->line, "a %s cannot be printed", kind_name(v));
    }
}

static bool as_str(jx *J, val v, jstr *out) {
    if (v.k == V_STR) {
        *out = v.u.s;
        return true;
    }
    obuf o = {0};
    CK(to_str(J, &o, v, false));
    *out = (jstr){o.p ? o.p : "", o.n};
    return true;
}

/* json.dumps(v, ensure_ascii=False, indent=indent, separators=default, sort_keys=False). */
static bool json_str(jx *J, obuf *o, jstr s) {
    CK(ob_puts(J, o, "\""));
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        char b[8];
        switch (c) {
        case '"': CK(ob_puts(J, o, "\\\"")); break;
        case '\\': CK(ob_puts(J, o, "\\\\")); break;
        case '\n': CK(ob_puts(J, o, "\\n")); break;
        case '\r': CK(ob_puts(J, o, "\\r")); break;
        case '\t': CK(ob_puts(J, o, "\\t")); break;
        case '\b': CK(ob_puts(J, o, "\\b")); break;
        case '\f': CK(ob_puts(J, o, "\\f")); break;
        default:
            if (c < 0x20) {
                snprintf(b, sizeof b, "\\u%04x", c);
                CK(ob_puts(J, o, b));
            } else CK(ob_put(J, o, (const char *)&c, 1));
        }
    }
    return ob_puts(J, o, "\"");
}

static bool json_nl(jx *J, obuf *o, int indent, int level) {
    CK(ob_puts(J, o, "\n"));
    for (int i = 0; i < indent * level; i++) CK(ob_puts(J, o, " "));
    return true;
}

static bool to_json(jx *J, obuf *o, val v, int indent, int level) {
    if (level > MAX_DEPTH) return jfail(J, J->line, "tojson: nesting deeper than %d", MAX_DEPTH);
    const char *item_sep = indent >= 0 ? "," : ", ";
    switch (v.k) {
    case V_UNDEF: return jfail(J, J->line, "tojson: an undefined value");
    case V_NONE: return ob_puts(J, o, "null");
    case V_BOOL: return ob_puts(J, o, v.u.b ? "true" : "false");
    case V_INT:
    case V_FLOAT:
        if (v.k == V_FLOAT && isnan(v.u.f)) return ob_puts(J, o, "NaN");
        if (v.k == V_FLOAT && isinf(v.u.f)) return ob_puts(J, o, v.u.f > 0 ? "Infinity" : "-Infinity");
        return to_str(J, o, v, false);
    case V_STR: return json_str(J, o, v.u.s);
    case V_LIST:
        if (v.u.l->gen) return jfail(J, J->line, "tojson: a generator (the result of map, select...) is not JSON; add |list");
        if (!v.u.l->n) return ob_puts(J, o, "[]");
        CK(ob_puts(J, o, "["));
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) CK(ob_puts(J, o, item_sep));
            if (indent >= 0) CK(json_nl(J, o, indent, level + 1));
            CK(to_json(J, o, v.u.l->a[i], indent, level + 1));
        }
        if (indent >= 0) CK(json_nl(J, o, indent, level));
        return ob_puts(J, o, "]");
    case V_DICT:
    case V_NS:
        if (!v.u.d->n) return ob_puts(J, o, "{}");
        CK(ob_puts(J, o, "{"));
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i) CK(ob_puts(J, o, item_sep));
            if (indent >= 0) CK(json_nl(J, o, indent, level + 1));
            jstr k = v.u.d->k[i];
            if (k.n > 1 && k.p[0] == '\x01') k = (jstr){k.p + 1, k.n - 1};
            CK(json_str(J, o, k));
            CK(ob_puts(J, o, ": "));
            CK(to_json(J, o, v.u.d->v[i], indent, level + 1));
        }
        if (indent >= 0) CK(json_nl(J, o, indent, level));
        return ob_puts(J, o, "}");
    default: return jfail(J, J->line, "tojson: a %s is not JSON", kind_name(v));
    }
}

/* ------------------------------------------------------------- JSON input */

typedef struct jp {
    jx *J;
    const char *p, *e;
    int depth;
    const char *b; /* the text's first byte (offsets in messages) */
} jp;

static void jp_ws(jp *P) {
    while (P->p < P->e && (*P->p == ' ' || *P->p == '\t' || *P->p == '\n' || *P->p == '\r')) P->p++;
}

static bool jp_fail(jp *P, const char *what) {
    P->J->st = PLM_ERR_ARG;
    snprintf(P->J->err, sizeof P->J->err, "chat template variables: invalid JSON at byte %zu: %s", (size_t)(P->p - P->b), what);
    return false;
}

static size_t utf8_put(uint32_t cp, char *o) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int hexv(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; }

static bool jp_hex4(jp *P, uint32_t *out) {
    if (P->e - P->p < 4) return jp_fail(P, "short \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexv(P->p[i]);
        if (h < 0) return jp_fail(P, "bad \\u escape");
        v = v * 16 + (uint32_t)h;
    }
    P->p += 4;
    *out = v;
    return true;
}

static bool jp_string(jp *P, jstr *out) {
    P->p++; /* opening quote */
    obuf o = {0};
    while (P->p < P->e && *P->p != '"') {
        char c = *P->p++;
        if ((unsigned char)c < 0x20) return jp_fail(P, "control character in a string");
        if (c != '\\') {
            CK(ob_put(P->J, &o, &c, 1));
            continue;
        }
        if (P->p >= P->e) return jp_fail(P, "unterminated escape");
        char e = *P->p++, b[4];
        switch (e) {
        case '"': case '\\': case '/': CK(ob_put(P->J, &o, &e, 1)); break;
        case 'n': CK(ob_puts(P->J, &o, "\n")); break;
        case 't': CK(ob_puts(P->J, &o, "\t")); break;
        case 'r': CK(ob_puts(P->J, &o, "\r")); break;
        case 'b': CK(ob_puts(P->J, &o, "\b")); break;
        case 'f': CK(ob_puts(P->J, &o, "\f")); break;
        case 'u': {
            uint32_t cp;
            CK(jp_hex4(P, &cp));
            if (cp >= 0xD800 && cp < 0xDC00 && P->e - P->p >= 6 && P->p[0] == '\\' && P->p[1] == 'u') {
                P->p += 2;
                uint32_t lo;
                CK(jp_hex4(P, &lo));
                if (lo < 0xDC00 || lo > 0xDFFF) return jp_fail(P, "unpaired surrogate");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xD800 && cp < 0xE000) return jp_fail(P, "unpaired surrogate");
            CK(ob_put(P->J, &o, b, utf8_put(cp, b)));
            break;
        }
        default: return jp_fail(P, "unknown escape");
        }
    }
    if (P->p >= P->e) return jp_fail(P, "unterminated string");
    P->p++;
    *out = (jstr){o.p ? o.p : "", o.n};
    return true;
}

static bool jp_value(jp *P, val *out) {
    jp_ws(P);
    if (P->p >= P->e) return jp_fail(P, "unexpected end");
    if (++P->depth > MAX_DEPTH) return jp_fail(P, "nested too deeply");
    char c = *P->p;
    bool ok = true;
    if (c == '{') {
        jdict *d = dict_new(P->J);
        if (!d) return oom(P->J);
        P->p++;
        jp_ws(P);
        if (P->p < P->e && *P->p == '}') P->p++;
        else
            for (;;) {
                jp_ws(P);
                if (P->p >= P->e || *P->p != '"') return jp_fail(P, "expected a key");
                jstr k;
                val v;
                CK(jp_string(P, &k));
                jp_ws(P);
                if (P->p >= P->e || *P->p != ':') return jp_fail(P, "expected ':'");
                P->p++;
                CK(jp_value(P, &v));
                CK(dict_set(P->J, d, k, v));
                jp_ws(P);
                if (P->p < P->e && *P->p == ',') {
                    P->p++;
                    continue;
                }
                if (P->p < P->e && *P->p == '}') {
                    P->p++;
                    break;
                }
                return jp_fail(P, "expected ',' or '}'");
            }
        *out = vdict(d);
    } else if (c == '[') {
        jlist *l = list_new(P->J);
        if (!l) return oom(P->J);
        P->p++;
        jp_ws(P);
        if (P->p < P->e && *P->p == ']') P->p++;
        else
            for (;;) {
                val v;
                CK(jp_value(P, &v));
                CK(list_push(P->J, l, v));
                jp_ws(P);
                if (P->p < P->e && *P->p == ',') {
                    P->p++;
                    continue;
                }
                if (P->p < P->e && *P->p == ']') {
                    P->p++;
                    break;
                }
                return jp_fail(P, "expected ',' or ']'");
            }
        *out = vlist(l);
    } else if (c == '"') {
        jstr s;
        CK(jp_string(P, &s));
        *out = vstr(s.p, s.n);
    } else if ((size_t)(P->e - P->p) >= 4 && memcmp(P->p, "true", 4) == 0) {
        P->p += 4;
        *out = vbool(true);
    } else if ((size_t)(P->e - P->p) >= 5 && memcmp(P->p, "false", 5) == 0) {
        P->p += 5;
        *out = vbool(false);
    } else if ((size_t)(P->e - P->p) >= 4 && memcmp(P->p, "null", 4) == 0) {
        P->p += 4;
        *out = V(V_NONE);
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        char b[64];
        size_t n = 0;
        bool fl = false;
        while (P->p < P->e && n < sizeof b - 1 && *P->p && strchr("+-0123456789.eE", *P->p)) {
            if (strchr(".eE", *P->p)) fl = true;
            b[n++] = *P->p++;
        }
        b[n] = 0;
        char *end;
        if (fl) *out = vfloat(strtod(b, &end));
        else *out = vint(strtoll(b, &end, 10));
        if (*end) return jp_fail(P, "bad number");
    } else ok = jp_fail(P, "unexpected character");
    P->depth--;
    return ok;
}

/* ------------------------------------------------------------- template lexer */

typedef enum segk { SEG_TEXT, SEG_OUT, SEG_TAG } segk;
typedef struct seg {
    segk k;
    const char *p; /* text, or the inside of the tag */
    size_t n;
    int line;
} seg;

/* Line of p; the lexer asks in increasing order, so counting resumes from the last answer. */
static int line_at(jx *J, const char *p) {
    if (!J->lc_pos || p < J->lc_pos) {
        J->lc_pos = J->src;
        J->lc_line = 1;
    }
    for (; J->lc_pos < p; J->lc_pos++) J->lc_line += *J->lc_pos == '\n';
    return J->lc_line;
}

static bool push_seg(jx *J, size_t *cap, segk k, const char *p, size_t n, int line) {
    if (J->n_segs == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        seg *s = jalloc(J, c * sizeof *s);
        if (!s) return oom(J);
        if (J->n_segs) memcpy(s, J->segs, J->n_segs * sizeof *s);
        J->segs = s;
        *cap = c;
    }
    J->segs[J->n_segs++] = (seg){k, p, n, line};
    return true;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Splits the source into text, {{ }} and {% %} segments, applying the
 * whitespace rules: "-" on either side strips all whitespace there;
 * lstrip_blocks strips spaces and tabs from the start of a line up to a block
 * or comment tag ("+" keeps them); trim_blocks drops the newline after one. */
static bool lex(jx *J) {
    size_t cap = 0;
    const char *p = J->src, *e = J->src + J->src_len;
    bool strip_next = false, trim_nl = false;
    while (p < e) {
        const char *t = p;
        for (; t + 1 < e; t++)
            if (t[0] == '{' && (t[1] == '{' || t[1] == '%' || t[1] == '#')) break;
        if (t + 1 >= e) t = e;
        /* the text before the tag */
        const char *ts = p, *te = t;
        if (trim_nl) {
            if (te > ts && *ts == '\n') ts++;
            else if (te - ts >= 2 && ts[0] == '\r' && ts[1] == '\n') ts += 2;
        }
        if (strip_next)
            while (ts < te && is_ws(*ts)) ts++;
        strip_next = trim_nl = false;
        if (t < e) {
            char kind = t[1];
            bool minus = t + 2 < e && t[2] == '-', plus = t + 2 < e && t[2] == '+';
            if (minus) {
                while (te > ts && is_ws(te[-1])) te--;
            } else if (kind != '{' && !plus) {
                /* lstrip_blocks: only spaces and tabs since the start of the line */
                const char *q = te;
                while (q > ts && (q[-1] == ' ' || q[-1] == '\t')) q--;
                if (q == J->src || q[-1] == '\n' || (q == ts && ts != p)) {
                    if (q > p || q == J->src || q[-1] == '\n') te = q;
                }
            }
            if (te > ts) CK(push_seg(J, &cap, SEG_TEXT, ts, (size_t)(te - ts), line_at(J, ts)));
            const char *in = t + 2 + (minus || plus);
            const char *close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
            const char *c = in;
            /* find the closing delimiter, skipping string literals in expressions */
            char q = 0;
            for (; c + 1 < e; c++) {
                if (kind != '#') {
                    if (q) {
                        if (*c == '\\') c++;
                        else if (*c == q) q = 0;
                        continue;
                    }
                    if (*c == '\'' || *c == '"') {
                        q = *c;
                        continue;
                    }
                }
                if (c[0] == close[0] && c[1] == close[1]) break;
            }
            if (c + 1 >= e) return jfail(J, line_at(J, t), "'%.2s' is never closed", t);
            const char *ie = c;
            bool rminus = ie > in && ie[-1] == '-', rplus = ie > in && ie[-1] == '+';
            if (rminus || rplus) ie--;
            if (kind == '{') CK(push_seg(J, &cap, SEG_OUT, in, (size_t)(ie - in), line_at(J, t)));
            else if (kind == '%') {
                /* {% raw %} ... {% endraw %}: the text between, as it is */
                const char *a = in;
                while (a < ie && is_ws(*a)) a++;
                if (ie - a >= 3 && memcmp(a, "raw", 3) == 0) {
                    const char *r = c + 2, *f = NULL;
                    for (const char *s = r; s + 1 < e && !f; s++) {
                        if (s[0] != '{' || s[1] != '%') continue;
                        const char *x = s + 2;
                        if (x < e && (*x == '-' || *x == '+')) x++;
                        while (x < e && is_ws(*x)) x++;
                        if (e - x >= 6 && memcmp(x, "endraw", 6) == 0) f = s;
                    }
                    if (!f) return jfail(J, line_at(J, t), "{%% raw %%} without {%% endraw %%}");
                    const char *rs = r, *re = f;
                    if (rminus)
                        while (rs < re && is_ws(*rs)) rs++;
                    else if (rs < re && *rs == '\n') rs++;
                    if (f + 2 < e && f[2] == '-')
                        while (re > rs && is_ws(re[-1])) re--;
                    if (re > rs) CK(push_seg(J, &cap, SEG_TEXT, rs, (size_t)(re - rs), line_at(J, rs)));
                    const char *fc = f + 2;
                    while (fc + 1 < e && !(fc[0] == '%' && fc[1] == '}')) fc++;
                    if (fc + 1 >= e) return jfail(J, line_at(J, f), "{%% endraw %%} is never closed");
                    rminus = fc > f && fc[-1] == '-';
                    rplus = fc > f && fc[-1] == '+';
                    c = fc;
                } else CK(push_seg(J, &cap, SEG_TAG, in, (size_t)(ie - in), line_at(J, t)));
            }
            if (rminus) strip_next = true;
            else if (kind != '{' && !rplus) trim_nl = true;
            p = c + 2;
        } else {
            if (te > ts) CK(push_seg(J, &cap, SEG_TEXT, ts, (size_t)(te - ts), line_at(J, ts)));
            p = e;
        }
    }
    return true;
}

/* ------------------------------------------------------------- expression tokens */

typedef enum tk { T_END, T_NAME, T_STR, T_INT, T_FLOAT, T_OP } tk;
typedef struct tok {
    tk k;
    jstr s; /* name, string value or operator text */
    int64_t i;
    double f;
} tok;

static bool next_tok(jx *J, tok *t) {
    const char *p = J->tp, *e = J->te;
    while (p < e && is_ws(*p)) p++;
    memset(t, 0, sizeof *t);
    if (p >= e) {
        J->tp = p;
        t->k = T_END;
        return true;
    }
    char c = *p;
    if (c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        const char *s = p;
        while (p < e && (*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))) p++;
        t->k = T_NAME;
        t->s = (jstr){s, (size_t)(p - s)};
    } else if (c >= '0' && c <= '9') {
        const char *s = p;
        bool fl = false;
        while (p < e && ((*p >= '0' && *p <= '9') || *p == '_' || (*p == '.' && p + 1 < e && p[1] >= '0' && p[1] <= '9' && !fl))) {
            if (*p == '.') fl = true;
            p++;
        }
        char b[64];
        size_t n = 0;
        for (const char *q = s; q < p && n < sizeof b - 1; q++)
            if (*q != '_') b[n++] = *q;
        b[n] = 0;
        if (fl) {
            t->k = T_FLOAT;
            t->f = strtod(b, NULL);
        } else {
            t->k = T_INT;
            t->i = strtoll(b, NULL, 10);
        }
    } else if (c == '\'' || c == '"') {
        p++;
        obuf o = {0};
        CK(ob_put(J, &o, "", 0));
        while (p < e && *p != c) {
            char ch = *p++;
            if (ch == '\\' && p < e) {
                char x = *p++;
                switch (x) {
                case 'n': ch = '\n'; break;
                case 't': ch = '\t'; break;
                case 'r': ch = '\r'; break;
                case '\\': ch = '\\'; break;
                case '\'': ch = '\''; break;
                case '"': ch = '"'; break;
                case '0': ch = '\0'; break;
                default: CK(ob_put(J, &o, "\\", 1)); ch = x;
                }
            }
            CK(ob_put(J, &o, &ch, 1));
        }
        if (p >= e) return jfail(J, J->line, "unterminated string literal");
        p++;
        t->k = T_STR;
        t->s = (jstr){o.p, o.n};
    } else {
        static const char *const ops[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "(", ")",
                                          "[", "]", "{", "}", ",", ".", ":", "|", "=", NULL};
        size_t i = 0;
        for (; ops[i]; i++) {
            size_t l = strlen(ops[i]);
            if ((size_t)(e - p) >= l && memcmp(p, ops[i], l) == 0) break;
        }
        if (!ops[i]) return jfail(J, J->line, "unexpected character '%c'", c);
        t->k = T_OP;
        t->s = (jstr){ops[i], strlen(ops[i])};
        p += strlen(ops[i]);
    }
    J->tp = p;
    return true;
}

static bool peek(jx *J, tok *t) {
    const char *save = J->tp;
    bool ok = next_tok(J, t);
    J->tp = save;
    return ok;
}

static bool is_op(const tok *t, const char *op) { return t->k == T_OP && jstr_eq(t->s, op); }
static bool is_name(const tok *t, const char *n) { return t->k == T_NAME && jstr_eq(t->s, n); }

static bool accept_op(jx *J, const char *op) {
    tok t;
    CK(peek(J, &t));
    if (!is_op(&t, op)) return false;
    return next_tok(J, &t);
}
static bool accept_name(jx *J, const char *n) {
    tok t;
    if (!peek(J, &t)) return false;
    if (!is_name(&t, n)) return false;
    return next_tok(J, &t);
}
static bool expect_op(jx *J, const char *op) {
    if (accept_op(J, op)) return true;
    if (J->st) return false;
    tok t;
    peek(J, &t);
    return jfail(J, J->line, "expected '%s', found '%.*s'", op, (int)(t.k == T_END ? 3 : t.s.n), t.k == T_END ? "end" : t.s.p);
}

static node *mk(jx *J, nk k) {
    node *n = jalloc(J, sizeof *n);
    if (!n) {
        oom(J);
        return NULL;
    }
    n->k = k;
    n->line = J->line;
    return n;
}

/* Growable node array in the arena. */
typedef struct nvec {
    node **a;
    jstr *kw;
    size_t n, cap, n_kw;
} nvec;

static bool nvec_push(jx *J, nvec *v, node *x, jstr kw) {
    if (v->n == v->cap) {
        size_t c = v->cap ? 2 * v->cap : 8;
        node **a = jalloc(J, c * sizeof *a);
        jstr *k = jalloc(J, c * sizeof *k);
        if (!a || !k) return oom(J);
        if (v->n) {
            memcpy(a, v->a, v->n * sizeof *a);
            memcpy(k, v->kw, v->n * sizeof *k);
        }
        v->a = a;
        v->kw = k;
        v->cap = c;
    }
    v->kw[v->n] = kw;
    v->a[v->n++] = x;
    if (kw.n) v->n_kw++;
    return true;
}

static node *p_expr(jx *J);
static node *p_or(jx *J);

/* (args, name=value, ...) after the opening parenthesis. */
static bool p_args(jx *J, node *n) {
    nvec v = {0};
    if (!accept_op(J, ")")) {
        if (J->st) return false;
        for (;;) {
            tok a, b;
            CK(peek(J, &a));
            jstr kw = {0};
            if (a.k == T_NAME) {
                const char *save = J->tp;
                CK(next_tok(J, &a));
                CK(peek(J, &b));
                if (is_op(&b, "=")) {
                    CK(next_tok(J, &b));
                    kw = a.s;
                } else J->tp = save;
            }
            if (!kw.n && v.n_kw) return jfail(J, J->line, "a positional argument after a keyword argument");
            node *x = p_expr(J);
            CK(x);
            CK(nvec_push(J, &v, x, kw));
            if (accept_op(J, ",")) {
                if (accept_op(J, ")")) break;
                continue;
            }
            CK(expect_op(J, ")"));
            break;
        }
    }
    n->kids = v.a;
    n->kw = v.kw;
    n->n_kids = v.n;
    n->n_kw = v.n_kw;
    return true;
}

static node *p_primary(jx *J) {
    tok t;
    if (!next_tok(J, &t)) return NULL;
    node *n = NULL;
    if (t.k == T_STR) {
        n = mk(J, N_LIT);
        if (n) n->lit = vstr(t.s.p, t.s.n);
        /* adjacent literals concatenate */
        tok u;
        while (n && peek(J, &u) && u.k == T_STR) {
            next_tok(J, &u);
            obuf o = {0};
            if (!ob_put(J, &o, n->lit.u.s.p, n->lit.u.s.n) || !ob_put(J, &o, u.s.p, u.s.n)) return NULL;
            n->lit = vstr(o.p, o.n);
        }
    } else if (t.k == T_INT) {
        if ((n = mk(J, N_LIT))) n->lit = vint(t.i);
    } else if (t.k == T_FLOAT) {
        if ((n = mk(J, N_LIT))) n->lit = vfloat(t.f);
    } else if (t.k == T_NAME) {
        if (jstr_eq(t.s, "true") || jstr_eq(t.s, "True")) {
            if ((n = mk(J, N_LIT))) n->lit = vbool(true);
        } else if (jstr_eq(t.s, "false") || jstr_eq(t.s, "False")) {
            if ((n = mk(J, N_LIT))) n->lit = vbool(false);
        } else if (jstr_eq(t.s, "none") || jstr_eq(t.s, "None")) {
            if ((n = mk(J, N_LIT))) n->lit = V(V_NONE);
        } else if ((n = mk(J, N_NAME))) n->name = t.s;
    } else if (is_op(&t, "(")) {
        node *x = p_expr(J);
        if (!x) return NULL;
        if (accept_op(J, ",")) { /* a tuple: a list here */
            nvec v = {0};
            if (!nvec_push(J, &v, x, (jstr){0})) return NULL;
            while (!accept_op(J, ")")) {
                if (J->st) return NULL;
                node *y = p_expr(J);
                if (!y || !nvec_push(J, &v, y, (jstr){0})) return NULL;
                if (!accept_op(J, ",")) {
                    if (!expect_op(J, ")")) return NULL;
                    break;
                }
            }
            if ((n = mk(J, N_LIST))) {
                n->kids = v.a;
                n->n_kids = v.n;
            }
        } else {
            if (!expect_op(J, ")")) return NULL;
            n = x;
        }
    } else if (is_op(&t, "[")) {
        nvec v = {0};
        while (!accept_op(J, "]")) {
            if (J->st) return NULL;
            node *y = p_expr(J);
            if (!y || !nvec_push(J, &v, y, (jstr){0})) return NULL;
            if (!accept_op(J, ",")) {
                if (!expect_op(J, "]")) return NULL;
                break;
            }
        }
        if ((n = mk(J, N_LIST))) {
            n->kids = v.a;
            n->n_kids = v.n;
        }
    } else if (is_op(&t, "{")) {
        nvec v = {0};
        while (!accept_op(J, "}")) {
            if (J->st) return NULL;
            node *k = p_expr(J);
            if (!k || !expect_op(J, ":")) return NULL;
            node *y = p_expr(J);
            if (!y || !nvec_push(J, &v, k, (jstr){0}) || !nvec_push(J, &v, y, (jstr){0})) return NULL;
            if (!accept_op(J, ",")) {
                if (!expect_op(J, "}")) return NULL;
                break;
            }
        }
        if ((n = mk(J, N_DICT))) {
            n->kids = v.a;
            n->n_kids = v.n;
        }
    } else {
        jfail(J, J->line, "unexpected '%.*s' in an expression", (int)(t.k == T_END ? 3 : t.s.n), t.k == T_END ? "end" : t.s.p);
        return NULL;
    }
    return n;
}

static node *p_postfix(jx *J, node *n) {
    while (n) {
        tok t;
        if (!peek(J, &t)) return NULL;
        if (is_op(&t, ".")) {
            next_tok(J, &t);
            tok a;
            if (!next_tok(J, &a)) return NULL;
            if (a.k != T_NAME && a.k != T_INT) {
                jfail(J, J->line, "expected an attribute name after '.'");
                return NULL;
            }
            node *x = mk(J, a.k == T_NAME ? N_ATTR : N_ITEM);
            if (!x) return NULL;
            x->a = n;
            if (a.k == T_NAME) x->name = a.s;
            else {
                x->b = mk(J, N_LIT);
                if (!x->b) return NULL;
                x->b->lit = vint(a.i);
            }
            n = x;
        } else if (is_op(&t, "[")) {
            next_tok(J, &t);
            node *parts[3] = {0};
            bool slice = false;
            for (int i = 0; i < 3; i++) {
                tok u;
                if (!peek(J, &u)) return NULL;
                if (!is_op(&u, ":") && !is_op(&u, "]")) {
                    parts[i] = p_expr(J);
                    if (!parts[i]) return NULL;
                }
                if (i < 2 && accept_op(J, ":")) {
                    slice = true;
                    continue;
                }
                break;
            }
            if (!expect_op(J, "]")) return NULL;
            node *x = mk(J, slice ? N_SLICE : N_ITEM);
            if (!x) return NULL;
            x->a = n;
            if (slice) {
                x->kids = jalloc(J, 3 * sizeof *x->kids);
                if (!x->kids) {
                    oom(J);
                    return NULL;
                }
                memcpy(x->kids, parts, sizeof parts);
                x->n_kids = 3;
            } else x->b = parts[0];
            if (!slice && !parts[0]) {
                jfail(J, J->line, "empty subscript");
                return NULL;
            }
            n = x;
        } else if (is_op(&t, "(")) {
            next_tok(J, &t);
            node *x = mk(J, N_CALL);
            if (!x) return NULL;
            x->a = n;
            if (!p_args(J, x)) return NULL;
            n = x;
        } else break;
    }
    return n;
}

static node *p_filters(jx *J, node *n) {
    while (n && accept_op(J, "|")) {
        tok t;
        if (!next_tok(J, &t)) return NULL;
        if (t.k != T_NAME) {
            jfail(J, J->line, "expected a filter name after '|'");
            return NULL;
        }
        node *f = mk(J, N_FILTER);
        if (!f) return NULL;
        f->a = n;
        f->name = t.s;
        if (accept_op(J, "(") && !p_args(J, f)) return NULL;
        n = f;
    }
    return n;
}

static node *p_unary(jx *J) {
    if (accept_op(J, "-")) {
        node *n = mk(J, N_NEG);
        if (n && !(n->a = p_unary(J))) return NULL;
        return n;
    }
    if (accept_op(J, "+")) return p_unary(J);
    node *n = p_primary(J);
    n = p_postfix(J, n);
    return p_filters(J, n);
}

static node *bin(jx *J, int op, node *a, node *b) {
    if (!a || !b) return NULL;
    node *n = mk(J, N_BIN);
    if (!n) return NULL;
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FDIV, OP_MOD, OP_POW, OP_CAT, OP_EQ, OP_NE, OP_LT, OP_GT, OP_LE, OP_GE, OP_IN, OP_NOTIN };

static node *p_pow(jx *J) {
    node *a = p_unary(J);
    while (a && accept_op(J, "**")) a = bin(J, OP_POW, a, p_unary(J));
    return a;
}
static node *p_mul(jx *J) {
    node *a = p_pow(J);
    for (;;) {
        if (!a) return NULL;
        if (accept_op(J, "*")) a = bin(J, OP_MUL, a, p_pow(J));
        else if (accept_op(J, "//")) a = bin(J, OP_FDIV, a, p_pow(J));
        else if (accept_op(J, "/")) a = bin(J, OP_DIV, a, p_pow(J));
        else if (accept_op(J, "%")) a = bin(J, OP_MOD, a, p_pow(J));
        else return a;
    }
}
static node *p_add(jx *J) {
    node *a = p_mul(J);
    for (;;) {
        if (!a) return NULL;
        if (accept_op(J, "+")) a = bin(J, OP_ADD, a, p_mul(J));
        else if (accept_op(J, "-")) a = bin(J, OP_SUB, a, p_mul(J));
        else return a;
    }
}
static node *p_cat(jx *J) {
    node *a = p_add(J);
    while (a && accept_op(J, "~")) a = bin(J, OP_CAT, a, p_add(J));
    return a;
}

/* "is [not] test [arg | (args)]" */
static node *p_test(jx *J, node *a) {
    node *n = mk(J, N_TEST);
    if (!n) return NULL;
    n->a = a;
    n->op = accept_name(J, "not");
    tok t;
    if (!next_tok(J, &t)) return NULL;
    if (t.k != T_NAME) {
        jfail(J, J->line, "expected a test name after 'is'");
        return NULL;
    }
    n->name = t.s;
    if (accept_op(J, "(")) {
        if (!p_args(J, n)) return NULL;
    } else {
        tok u;
        if (!peek(J, &u)) return NULL;
        if (u.k == T_STR || u.k == T_INT || u.k == T_FLOAT || (u.k == T_NAME && !is_name(&u, "and") && !is_name(&u, "or") &&
                                                               !is_name(&u, "else") && !is_name(&u, "if") && !is_name(&u, "in"))) {
            node *x = p_cat(J);
            if (!x) return NULL;
            n->kids = jalloc(J, sizeof *n->kids);
            if (!n->kids) {
                oom(J);
                return NULL;
            }
            n->kids[0] = x;
            n->n_kids = 1;
        }
    }
    return n;
}

static node *p_cmp(jx *J) {
    node *a = p_cat(J);
    for (;;) {
        if (!a) return NULL;
        tok t;
        if (!peek(J, &t)) return NULL;
        int op = 0;
        if (is_op(&t, "==")) op = OP_EQ;
        else if (is_op(&t, "!=")) op = OP_NE;
        else if (is_op(&t, "<")) op = OP_LT;
        else if (is_op(&t, ">")) op = OP_GT;
        else if (is_op(&t, "<=")) op = OP_LE;
        else if (is_op(&t, ">=")) op = OP_GE;
        else if (is_name(&t, "in")) op = OP_IN;
        else if (is_name(&t, "is")) {
            next_tok(J, &t);
            a = p_test(J, a);
            continue;
        } else if (is_name(&t, "not")) {
            const char *save = J->tp;
            next_tok(J, &t);
            if (accept_name(J, "in")) {
                a = bin(J, OP_NOTIN, a, p_cat(J));
                continue;
            }
            J->tp = save;
            return a;
        }
        if (!op) return a;
        next_tok(J, &t);
        a = bin(J, op, a, p_cat(J));
    }
}
static node *p_not(jx *J) {
    if (accept_name(J, "not")) {
        node *n = mk(J, N_NOT);
        if (n && !(n->a = p_not(J))) return NULL;
        return n;
    }
    return p_cmp(J);
}
static node *p_and(jx *J) {
    node *a = p_not(J);
    while (a && accept_name(J, "and")) {
        node *n = mk(J, N_AND);
        if (!n) return NULL;
        n->a = a;
        if (!(n->b = p_not(J))) return NULL;
        a = n;
    }
    return a;
}
static node *p_or(jx *J) {
    node *a = p_and(J);
    while (a && accept_name(J, "or")) {
        node *n = mk(J, N_OR);
        if (!n) return NULL;
        n->a = a;
        if (!(n->b = p_and(J))) return NULL;
        a = n;
    }
    return a;
}
static node *p_expr(jx *J) {
    node *a = p_or(J);
    while (a && accept_name(J, "if")) {
        node *n = mk(J, N_COND);
        if (!n) return NULL;
        n->b = a;
        if (!(n->a = p_or(J))) return NULL;
        if (accept_name(J, "else")) {
            if (!(n->c = p_expr(J))) return NULL;
        }
        a = n;
    }
    return a;
}

/* ------------------------------------------------------------- statements */

/* Parses statements until a tag whose first word is one of ends (NULL-terminated);
 * leaves that tag's word in *end_word and the expression cursor after it. */
static node *p_body(jx *J, const char *const *ends, jstr *end_word);

static bool tag_start(jx *J, const seg *s, jstr *word) {
    J->tp = s->p;
    J->te = s->p + s->n;
    J->line = s->line;
    tok t;
    CK(next_tok(J, &t));
    if (t.k != T_NAME) return jfail(J, s->line, "expected a statement name in {%% %%}");
    *word = t.s;
    return true;
}

static bool tag_done(jx *J) {
    tok t;
    CK(peek(J, &t));
    if (t.k != T_END) return jfail(J, J->line, "unexpected '%.*s' at the end of a statement", (int)t.s.n, t.s.p);
    return true;
}

static bool p_targets(jx *J, jstr **out, size_t *n) {
    jstr buf[8];
    size_t k = 0;
    bool paren = accept_op(J, "(");
    do {
        tok t;
        CK(next_tok(J, &t));
        if (t.k != T_NAME) return jfail(J, J->line, "expected a variable name");
        if (k == 8) return jfail(J, J->line, "more than 8 loop variables");
        buf[k++] = t.s;
    } while (accept_op(J, ","));
    if (paren) CK(expect_op(J, ")"));
    *out = jalloc(J, k * sizeof **out);
    if (!*out) return oom(J);
    memcpy(*out, buf, k * sizeof *buf);
    *n = k;
    return true;
}

static node *p_stmt(jx *J, jstr word) {
    node *n = NULL;
    int line = J->line;
    if (jstr_eq(word, "if")) {
        n = mk(J, N_IF);
        if (!n || !(n->a = p_expr(J)) || !tag_done(J)) return NULL;
        static const char *const ends[] = {"elif", "else", "endif", NULL};
        jstr e;
        if (!(n->b = p_body(J, ends, &e))) return NULL;
        if (jstr_eq(e, "elif")) {
            if (!(n->c = p_stmt(J, (jstr){"if", 2}))) return NULL;
            return n; /* the nested if consumed endif */
        }
        if (jstr_eq(e, "else")) {
            static const char *const e2[] = {"endif", NULL};
            if (!tag_done(J) || !(n->c = p_body(J, e2, &e))) return NULL;
        }
        if (!tag_done(J)) return NULL;
    } else if (jstr_eq(word, "for")) {
        n = mk(J, N_FOR);
        if (!n || !p_targets(J, &n->targets, &n->n_targets)) return NULL;
        if (!accept_name(J, "in")) {
            jfail(J, line, "expected 'in' in a for loop");
            return NULL;
        }
        if (!(n->a = p_or(J))) return NULL;
        if (accept_name(J, "if") && !(n->d = p_or(J))) return NULL;
        if (accept_name(J, "recursive")) {
            jfail(J, line, "recursive for loops are not supported");
            return NULL;
        }
        if (!tag_done(J)) return NULL;
        static const char *const ends[] = {"else", "endfor", NULL};
        jstr e;
        if (!(n->b = p_body(J, ends, &e))) return NULL;
        if (jstr_eq(e, "else")) {
            static const char *const e2[] = {"endfor", NULL};
            if (!tag_done(J) || !(n->c = p_body(J, e2, &e))) return NULL;
        }
        if (!tag_done(J)) return NULL;
    } else if (jstr_eq(word, "set")) {
        tok t, u;
        if (!next_tok(J, &t)) return NULL;
        if (t.k != T_NAME) {
            jfail(J, line, "expected a variable name after 'set'");
            return NULL;
        }
        if (!peek(J, &u)) return NULL;
        if (is_op(&u, ".")) {
            next_tok(J, &u);
            tok a;
            if (!next_tok(J, &a) || a.k != T_NAME) {
                jfail(J, line, "expected an attribute name in 'set'");
                return NULL;
            }
            n = mk(J, N_SET);
            if (!n) return NULL;
            n->name = t.s;
            n->attr = a.s;
            if (!expect_op(J, "=") || !(n->a = p_expr(J)) || !tag_done(J)) return NULL;
        } else if (is_op(&u, "=") || is_op(&u, ",")) {
            n = mk(J, N_SET);
            if (!n) return NULL;
            J->tp = t.s.p;
            if (!p_targets(J, &n->targets, &n->n_targets)) return NULL;
            n->name = n->targets[0];
            if (!expect_op(J, "=") || !(n->a = p_expr(J))) return NULL;
            if (accept_op(J, ",")) {
                /* a, b = x, y */
                node *l = mk(J, N_LIST);
                nvec v = {0};
                if (!l || !nvec_push(J, &v, n->a, (jstr){0})) return NULL;
                do {
                    node *y = p_expr(J);
                    if (!y || !nvec_push(J, &v, y, (jstr){0})) return NULL;
                } while (accept_op(J, ","));
                l->kids = v.a;
                l->n_kids = v.n;
                n->a = l;
            }
            if (!tag_done(J)) return NULL;
        } else {
            /* {% set x %}...{% endset %} (filters on the block are not supported) */
            if (!tag_done(J)) return NULL;
            n = mk(J, N_SETBLOCK);
            if (!n) return NULL;
            n->name = t.s;
            static const char *const ends[] = {"endset", NULL};
            jstr e;
            if (!(n->a = p_body(J, ends, &e)) || !tag_done(J)) return NULL;
        }
    } else if (jstr_eq(word, "macro")) {
        tok t;
        if (!next_tok(J, &t) || t.k != T_NAME) {
            jfail(J, line, "expected a macro name");
            return NULL;
        }
        n = mk(J, N_MACRO);
        macro *m = jalloc(J, sizeof *m);
        if (!n || !m) {
            oom(J);
            return NULL;
        }
        n->mac = m;
        m->name = t.s;
        jstr ps[32];
        node *ds[32];
        size_t k = 0;
        if (!expect_op(J, "(")) return NULL;
        while (!accept_op(J, ")")) {
            if (J->st) return NULL;
            tok a;
            if (!next_tok(J, &a) || a.k != T_NAME || k == 32) {
                jfail(J, line, "bad macro parameter list");
                return NULL;
            }
            ps[k] = a.s;
            ds[k] = NULL;
            if (accept_op(J, "=") && !(ds[k] = p_expr(J))) return NULL;
            k++;
            if (!accept_op(J, ",")) {
                if (!expect_op(J, ")")) return NULL;
                break;
            }
        }
        m->params = jalloc(J, (k + 1) * sizeof *m->params);
        m->defaults = jalloc(J, (k + 1) * sizeof *m->defaults);
        if (!m->params || !m->defaults) {
            oom(J);
            return NULL;
        }
        memcpy(m->params, ps, k * sizeof *ps);
        memcpy(m->defaults, ds, k * sizeof *ds);
        m->n_params = k;
        if (!tag_done(J)) return NULL;
        static const char *const ends[] = {"endmacro", NULL};
        jstr e;
        if (!(m->body = p_body(J, ends, &e))) return NULL;
        tok x;
        if (!peek(J, &x)) return NULL;
        if (x.k == T_NAME) next_tok(J, &x); /* {% endmacro name %} */
        if (!tag_done(J)) return NULL;
    } else if (jstr_eq(word, "break") || jstr_eq(word, "continue")) {
        n = mk(J, jstr_eq(word, "break") ? N_BREAK : N_CONTINUE);
        if (!n || !tag_done(J)) return NULL;
    } else if (jstr_eq(word, "generation")) {
        /* Hugging Face's marker of assistant text: renders its body */
        static const char *const ends[] = {"endgeneration", NULL};
        jstr e;
        if (!tag_done(J) || !(n = p_body(J, ends, &e)) || !tag_done(J)) return NULL;
    } else {
        jfail(J, line, "the statement '%.*s' is not supported", (int)word.n, word.p);
        return NULL;
    }
    if (n) n->line = line;
    return n;
}

static node *p_body(jx *J, const char *const *ends, jstr *end_word) {
    nvec v = {0};
    node *seq = mk(J, N_SEQ);
    if (!seq) return NULL;
    int open_line = J->line;
    while (J->seg_i < J->n_segs) {
        const seg *s = &J->segs[J->seg_i++];
        node *n = NULL;
        if (s->k == SEG_TEXT) {
            if ((n = mk(J, N_TEXT))) n->lit = vstr(s->p, s->n);
        } else if (s->k == SEG_OUT) {
            J->tp = s->p;
            J->te = s->p + s->n;
            J->line = s->line;
            n = mk(J, N_OUT);
            if (n && (!(n->a = p_expr(J)) || !tag_done(J))) return NULL;
        } else {
            jstr w;
            if (!tag_start(J, s, &w)) return NULL;
            for (size_t i = 0; ends && ends[i]; i++)
                if (jstr_eq(w, ends[i])) {
                    *end_word = w;
                    seq->kids = v.a;
                    seq->n_kids = v.n;
                    return seq;
                }
            if (jstr_eq(w, "endif") || jstr_eq(w, "endfor") || jstr_eq(w, "endmacro") || jstr_eq(w, "else") || jstr_eq(w, "elif") ||
                jstr_eq(w, "endset") || jstr_eq(w, "endgeneration")) {
                jfail(J, s->line, "unexpected {%% %.*s %%}", (int)w.n, w.p);
                return NULL;
            }
            n = p_stmt(J, w);
        }
        if (!n || !nvec_push(J, &v, n, (jstr){0})) return NULL;
    }
    if (ends) {
        size_t last = 0;
        while (ends[last + 1]) last++;
        jfail(J, open_line, "the block is never closed with {%% %s %%}", ends[last]);
        return NULL;
    }
    seq->kids = v.a;
    seq->n_kids = v.n;
    return seq;
}

/* ------------------------------------------------------------- evaluation */

enum { F_RANGE, F_NAMESPACE, F_RAISE, F_STRFTIME, F_DICT, F_LEN };
static const char *const FUNCS[] = {"range", "namespace", "raise_exception", "strftime_now", "dict", "len", NULL};

static bool eval(jx *J, scope *sc, node *n, val *out);
static bool exec(jx *J, scope *sc, node *n, obuf *o);

static val *lookup(scope *sc, jstr name) {
    for (; sc; sc = sc->parent) {
        val *v = dict_get(&sc->vars, name);
        if (v) return v;
    }
    return NULL;
}

static bool step(jx *J) {
    if (++J->steps > MAX_STEPS) return jfail(J, J->line, "the template runs too long (more than %d steps)", MAX_STEPS);
    return true;
}

static int cmp_vals(jx *J, val a, val b, bool *ok) {
    *ok = true;
    if ((a.k == V_INT || a.k == V_FLOAT || a.k == V_BOOL) && (b.k == V_INT || b.k == V_FLOAT || b.k == V_BOOL)) {
        double x = a.k == V_FLOAT ? a.u.f : a.k == V_INT ? (double)a.u.i : a.u.b, y = b.k == V_FLOAT ? b.u.f : b.k == V_INT ? (double)b.u.i : b.u.b;
        if (a.k != V_FLOAT && b.k != V_FLOAT) {
            int64_t p = a.k == V_INT ? a.u.i : a.u.b, q = b.k == V_INT ? b.u.i : b.u.b;
            return (p > q) - (p < q);
        }
        return (x > y) - (x < y);
    }
    if (a.k == V_STR && b.k == V_STR) {
        size_t m = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int c = m ? memcmp(a.u.s.p, b.u.s.p, m) : 0;
        if (c) return c < 0 ? -1 : 1;
        return (a.u.s.n > b.u.s.n) - (a.u.s.n < b.u.s.n);
    }
    if (a.k == V_LIST && b.k == V_LIST) {
        for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
            int c = cmp_vals(J, a.u.l->a[i], b.u.l->a[i], ok);
            if (!*ok || c) return c;
        }
        return (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
    }
    *ok = false;
    jfail(J, J->line, "cannot order a %s and a %s", kind_name(a), kind_name(b));
    return 0;
}

static bool equal(val a, val b) {
    if ((a.k == V_INT || a.k == V_FLOAT || a.k == V_BOOL) && (b.k == V_INT || b.k == V_FLOAT || b.k == V_BOOL)) {
        double x = a.k == V_FLOAT ? a.u.f : a.k == V_INT ? (double)a.u.i : a.u.b, y = b.k == V_FLOAT ? b.u.f : b.k == V_INT ? (double)b.u.i : b.u.b;
        if (a.k != V_FLOAT && b.k != V_FLOAT) return (a.k == V_INT ? a.u.i : a.u.b) == (b.k == V_INT ? b.u.i : b.u.b);
        return x == y;
    }
    if (a.k != b.k) return false;
    switch (a.k) {
    case V_UNDEF:
    case V_NONE: return true;
    case V_STR: return jstr_same(a.u.s, b.u.s);
    case V_LIST:
        if (a.u.l->n != b.u.l->n) return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!equal(a.u.l->a[i], b.u.l->a[i])) return false;
        return true;
    case V_DICT:
        if (a.u.d->n != b.u.d->n) return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            val *o = dict_get(b.u.d, a.u.d->k[i]);
            if (!o || !equal(a.u.d->v[i], *o)) return false;
        }
        return true;
    default: return a.u.d == b.u.d;
    }
}

static bool contains(jx *J, val hay, val needle, bool *out) {
    if (hay.k == V_STR) {
        if (needle.k != V_STR) return jfail(J, J->line, "'in <string>' needs a string on the left, not a %s", kind_name(needle));
        jstr h = hay.u.s, n = needle.u.s;
        *out = n.n == 0;
        for (size_t i = 0; !*out && n.n <= h.n && i + n.n <= h.n; i++) *out = memcmp(h.p + i, n.p, n.n) == 0;
        return true;
    }
    if (hay.k == V_LIST) {
        *out = false;
        for (size_t i = 0; i < hay.u.l->n && !*out; i++) *out = equal(hay.u.l->a[i], needle);
        return true;
    }
    if (hay.k == V_DICT || hay.k == V_NS) {
        jstr ks = {0};
        if (needle.k == V_STR || needle.k == V_INT) CK(key_of(J, needle, &ks));
        *out = ks.p && dict_get(hay.u.d, ks) != NULL;
        return true;
    }
    if (hay.k == V_UNDEF) {
        *out = false; /* Jinja2's Undefined iterates as empty */
        return true;
    }
    return jfail(J, J->line, "'in' on a %s", kind_name(hay));
}

static bool str_cat(jx *J, jstr a, jstr b, val *out) {
    char *p = jalloc(J, a.n + b.n + 1);
    if (!p) return oom(J);
    if (a.n) memcpy(p, a.p, a.n);
    if (b.n) memcpy(p + a.n, b.p, b.n);
    *out = vstr(p, a.n + b.n);
    return true;
}

/* markupsafe's escape: & < > " ' */
static bool html_escape(jx *J, jstr s, val *out) {
    obuf o = {0};
    CK(ob_put(J, &o, "", 0));
    for (size_t i = 0; i < s.n; i++) {
        char c = s.p[i];
        const char *r = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '"' ? "&#34;" : c == '\'' ? "&#39;" : NULL;
        CK(r ? ob_puts(J, &o, r) : ob_put(J, &o, &c, 1));
    }
    *out = vstr(o.p, o.n);
    return true;
}

static bool arith(jx *J, int op, val a, val b, val *out) {
    if (op == OP_CAT) {
        jstr x, y;
        CK(as_str(J, a, &x) && as_str(J, b, &y));
        return str_cat(J, x, y, out);
    }
    if (op == OP_ADD && a.k == V_STR && b.k == V_STR) {
        if (a.safe != b.safe) {
            val *plain = a.safe ? &b : &a;
            CK(html_escape(J, plain->u.s, plain));
        }
        CK(str_cat(J, a.u.s, b.u.s, out));
        out->safe = a.safe || b.safe;
        return true;
    }
    if (op == OP_ADD && a.k == V_LIST && b.k == V_LIST) {
        jlist *l = list_new(J);
        if (!l) return oom(J);
        for (size_t i = 0; i < a.u.l->n; i++) CK(list_push(J, l, a.u.l->a[i]));
        for (size_t i = 0; i < b.u.l->n; i++) CK(list_push(J, l, b.u.l->a[i]));
        *out = vlist(l);
        return true;
    }
    if (op == OP_MUL && ((a.k == V_STR && b.k == V_INT) || (a.k == V_INT && b.k == V_STR))) {
        jstr s = a.k == V_STR ? a.u.s : b.u.s;
        int64_t k = a.k == V_INT ? a.u.i : b.u.i;
        obuf o = {0};
        CK(ob_put(J, &o, "", 0));
        for (int64_t i = 0; i < k; i++) CK(ob_put(J, &o, s.p, s.n));
        *out = vstr(o.p, o.n);
        return true;
    }
    bool an = a.k == V_INT || a.k == V_FLOAT || a.k == V_BOOL, bn = b.k == V_INT || b.k == V_FLOAT || b.k == V_BOOL;
    if (!an || !bn) return jfail(J, J->line, "arithmetic on a %s and a %s", kind_name(a), kind_name(b));
    bool fl = a.k == V_FLOAT || b.k == V_FLOAT || op == OP_DIV || op == OP_POW;
    double x = a.k == V_FLOAT ? a.u.f : a.k == V_INT ? (double)a.u.i : a.u.b, y = b.k == V_FLOAT ? b.u.f : b.k == V_INT ? (double)b.u.i : b.u.b;
    int64_t p = a.k == V_INT ? a.u.i : a.k == V_BOOL ? a.u.b : 0, q = b.k == V_INT ? b.u.i : b.k == V_BOOL ? b.u.b : 0;
    if ((op == OP_DIV || op == OP_FDIV || op == OP_MOD) && y == 0) return jfail(J, J->line, "division by zero");
    if (op == OP_POW && a.k != V_FLOAT && b.k != V_FLOAT && q >= 0) {
        int64_t r = 1;
        for (int64_t i = 0; i < q && i < 64; i++) r *= p;
        *out = vint(r);
        return true;
    }
    if (fl) {
        double r = op == OP_ADD ? x + y : op == OP_SUB ? x - y : op == OP_MUL ? x * y : op == OP_DIV ? x / y : op == OP_FDIV ? floor(x / y)
                   : op == OP_MOD ? x - floor(x / y) * y : pow(x, y);
        *out = vfloat(r);
        return true;
    }
    int64_t r;
    switch (op) {
    case OP_ADD: r = p + q; break;
    case OP_SUB: r = p - q; break;
    case OP_MUL: r = p * q; break;
    case OP_FDIV: r = p / q - ((p % q != 0) && ((p < 0) != (q < 0))); break;
    default: r = p % q; if (r && ((r < 0) != (q < 0))) r += q; break;
    }
    *out = vint(r);
    return true;
}

/* Python's index of i in a sequence of n (negative from the end); false when out of range. */
static bool py_index(int64_t i, size_t n, size_t *out) {
    if (i < 0) i += (int64_t)n;
    if (i < 0 || (uint64_t)i >= n) return false;
    *out = (size_t)i;
    return true;
}

static size_t utf8_count(jstr s) {
    size_t k = 0;
    for (size_t i = 0; i < s.n; i++) k += ((unsigned char)s.p[i] & 0xC0) != 0x80;
    return k;
}
/* Byte offset of the k-th character. */
static size_t utf8_off(jstr s, size_t k) {
    size_t i = 0;
    for (; i < s.n && k; k--) {
        i++;
        while (i < s.n && ((unsigned char)s.p[i] & 0xC0) == 0x80) i++;
    }
    return i;
}

static bool get_item(jx *J, val obj, val key, val *out) {
    *out = V(V_UNDEF);
    if (obj.k == V_DICT || obj.k == V_NS) {
        if (key.k == V_STR || key.k == V_INT) {
            jstr ks;
            CK(key_of(J, key, &ks));
            val *v = dict_get(obj.u.d, ks);
            if (v) *out = *v;
        }
        return true;
    }
    if (obj.k == V_LIST && key.k == V_INT) {
        size_t i;
        if (py_index(key.u.i, obj.u.l->n, &i)) *out = obj.u.l->a[i];
        return true;
    }
    if (obj.k == V_STR && key.k == V_INT) {
        size_t i, n = utf8_count(obj.u.s);
        if (py_index(key.u.i, n, &i)) {
            size_t a = utf8_off(obj.u.s, i), b = utf8_off(obj.u.s, i + 1);
            *out = vstr(obj.u.s.p + a, b - a);
        }
        return true;
    }
    if (obj.k == V_UNDEF) return jfail(J, J->line, "subscript of an undefined value");
    if (obj.k == V_NONE) return jfail(J, J->line, "subscript of None");
    return true;
}

static const char *const DICT_METHODS[] = {"items", "keys", "values", "get", NULL};
static const char *const STR_METHODS[] = {"strip", "lstrip", "rstrip", "split", "startswith", "endswith", "upper", "lower", "title",
                                          "capitalize", "replace", "find", "rfind", "count", "join", "splitlines", "isdigit", "isalpha",
                                          "isspace", "format", "rsplit", NULL};
static const char *const LIST_METHODS[] = {"index", "count", NULL};

static bool in_names(const char *const *names, jstr s) {
    for (size_t i = 0; names[i]; i++)
        if (jstr_eq(s, names[i])) return true;
    return false;
}

static bool bind_method(jx *J, val obj, jstr name, val *out) {
    method *m = jalloc(J, sizeof *m);
    val *self = jalloc(J, sizeof *self);
    if (!m || !self) return oom(J);
    *self = obj;
    m->self = self;
    m->name = name;
    *out = V(V_METHOD);
    out->u.me = m;
    return true;
}

static bool get_attr(jx *J, val obj, jstr name, val *out) {
    *out = V(V_UNDEF);
    if (obj.k == V_DICT) {
        if (in_names(DICT_METHODS, name)) return bind_method(J, obj, name, out);
        val *v = dict_get(obj.u.d, name);
        if (v) *out = *v;
        return true;
    }
    if (obj.k == V_NS) {
        val *v = dict_get(obj.u.d, name);
        if (v) *out = *v;
        return true;
    }
    if (obj.k == V_STR && in_names(STR_METHODS, name)) return bind_method(J, obj, name, out);
    if (obj.k == V_LIST && in_names(LIST_METHODS, name)) return bind_method(J, obj, name, out);
    if (obj.k == V_LIST && (jstr_eq(name, "append") || jstr_eq(name, "pop") || jstr_eq(name, "extend") || jstr_eq(name, "insert")))
        return jfail(J, J->line, "list.%.*s: templates may not modify lists (as in Hugging Face's sandbox)", (int)name.n, name.p);
    if (obj.k == V_UNDEF) return jfail(J, J->line, "attribute '%.*s' of an undefined value", (int)name.n, name.p);
    if (obj.k == V_NONE) return jfail(J, J->line, "attribute '%.*s' of None", (int)name.n, name.p);
    return true;
}

/* Arguments of a call, evaluated. */
typedef struct args {
    val *pos;
    size_t n_pos;
    jstr *kw;
    val *kwv;
    size_t n_kw;
} args;

static bool eval_args(jx *J, scope *sc, node *n, args *a) {
    memset(a, 0, sizeof *a);
    size_t np = n->n_kids - n->n_kw;
    a->pos = jalloc(J, (np + 1) * sizeof *a->pos);
    a->kw = jalloc(J, (n->n_kw + 1) * sizeof *a->kw);
    a->kwv = jalloc(J, (n->n_kw + 1) * sizeof *a->kwv);
    if (!a->pos || !a->kw || !a->kwv) return oom(J);
    for (size_t i = 0; i < n->n_kids; i++) {
        val v;
        CK(eval(J, sc, n->kids[i], &v));
        if (n->kw && n->kw[i].n) { /* no keyword names at all: kw is NULL */
            a->kw[a->n_kw] = n->kw[i];
            a->kwv[a->n_kw++] = v;
        } else a->pos[a->n_pos++] = v;
    }
    return true;
}

/* Positional i, else keyword name, else def. */
static val arg(const args *a, size_t i, const char *name, val def) {
    if (i < a->n_pos) return a->pos[i];
    for (size_t k = 0; name && k < a->n_kw; k++)
        if (jstr_eq(a->kw[k], name)) return a->kwv[k];
    return def;
}

static bool call_macro(jx *J, scope *sc, macro *m, const args *a, val *out) {
    (void)sc;
    if (++J->depth > MAX_DEPTH) return jfail(J, J->line, "macros nest deeper than %d", MAX_DEPTH);
    scope *root = sc;
    while (root->parent) root = root->parent;
    scope *ms = jalloc(J, sizeof *ms);
    if (!ms) return oom(J);
    ms->parent = root;
    if (a->n_pos > m->n_params) return jfail(J, J->line, "macro '%.*s' takes %zu arguments, %zu given", (int)m->name.n, m->name.p, m->n_params, a->n_pos);
    for (size_t i = 0; i < m->n_params; i++) {
        val v = V(V_UNDEF);
        bool set = false;
        if (i < a->n_pos) {
            v = a->pos[i];
            set = true;
        }
        for (size_t k = 0; !set && k < a->n_kw; k++)
            if (jstr_same(a->kw[k], m->params[i])) {
                v = a->kwv[k];
                set = true;
            }
        if (!set && m->defaults[i]) CK(eval(J, ms, m->defaults[i], &v));
        CK(dict_set(J, &ms->vars, m->params[i], v));
    }
    obuf o = {0};
    CK(ob_put(J, &o, "", 0));
    CK(exec(J, ms, m->body, &o));
    J->depth--;
    *out = vstr(o.p, o.n);
    return true;
}

/* Length of the Python whitespace character (str.isspace) at s[i..n), or 0:
 * ASCII \t-\r, space, \x1c-\x1f, and U+0085, U+00A0, U+1680, U+2000-U+200A,
 * U+2028, U+2029, U+202F, U+205F, U+3000. */
static size_t py_space(const char *s, size_t i, size_t n) {
    unsigned char c = (unsigned char)s[i];
    if (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)) return 1;
    if (c == 0xC2 && i + 1 < n && ((unsigned char)s[i + 1] == 0x85 || (unsigned char)s[i + 1] == 0xA0)) return 2;
    if (i + 2 >= n || c < 0xE1 || c > 0xE3) return 0;
    unsigned b1 = (unsigned char)s[i + 1], b2 = (unsigned char)s[i + 2];
    uint32_t cp = ((uint32_t)(c & 0x0F) << 12) | ((b1 & 0x3Fu) << 6) | (b2 & 0x3Fu);
    bool sp = cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
    return sp ? 3 : 0;
}
/* The same, ending at s[..e). */
static size_t py_space_before(const char *s, size_t b, size_t e) {
    for (size_t k = 1; k <= 3 && k <= e - b; k++)
        if (py_space(s, e - k, e) == k) return k;
    return 0;
}
static bool is_space_char(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static bool strip_chars(jx *J, jstr s, val chars, bool left, bool right, val *out) {
    size_t a = 0, b = s.n;
    if (chars.k == V_STR) {
        jstr c = chars.u.s;
        while (left && a < b && memchr(c.p, s.p[a], c.n)) a++;
        while (right && b > a && memchr(c.p, s.p[b - 1], c.n)) b--;
    } else if (chars.k == V_UNDEF || chars.k == V_NONE) {
        for (size_t k; left && a < b && (k = py_space(s.p, a, b)) > 0;) a += k;
        for (size_t k; right && b > a && (k = py_space_before(s.p, a, b)) > 0;) b -= k;
    } else return jfail(J, J->line, "strip: characters must be a string");
    *out = vstr(s.p + a, b - a);
    return true;
}

static bool str_replace(jx *J, jstr s, jstr from, jstr to, int64_t count, val *out) {
    obuf o = {0};
    CK(ob_put(J, &o, "", 0));
    size_t i = 0;
    int64_t done = 0;
    if (from.n == 0) {
        /* Python inserts `to` between characters */
        for (; i <= s.n; i++) {
            if (count < 0 || done < count) {
                CK(ob_put(J, &o, to.p, to.n));
                done++;
            }
            if (i < s.n) CK(ob_put(J, &o, s.p + i, 1));
        }
    } else {
        while (i < s.n) {
            if ((count < 0 || done < count) && i + from.n <= s.n && memcmp(s.p + i, from.p, from.n) == 0) {
                CK(ob_put(J, &o, to.p, to.n));
                i += from.n;
                done++;
            } else CK(ob_put(J, &o, s.p + i++, 1));
        }
    }
    *out = vstr(o.p, o.n);
    return true;
}

static bool case_map(jx *J, jstr s, int mode, val *out) { /* 0 lower 1 upper 2 title 3 capitalize (ASCII letters) */
    char *p = jalloc(J, s.n + 1);
    if (!p) return oom(J);
    bool start = true;
    for (size_t i = 0; i < s.n; i++) {
        char c = s.p[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool up = mode == 1 || ((mode == 2 || mode == 3) && start);
        if (mode == 3 && i > 0) up = false;
        if (alpha) c = up ? (char)(c >= 'a' && c <= 'z' ? c - 32 : c) : (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        p[i] = c;
        if (mode == 2) start = !alpha && !((unsigned char)c >= 0x80);
        if (mode == 3) start = false;
    }
    *out = vstr(p, s.n);
    return true;
}

static bool split_str(jx *J, jstr s, val sep, int64_t maxsplit, val *out) {
    jlist *l = list_new(J);
    if (!l) return oom(J);
    if (sep.k == V_STR && sep.u.s.n == 0) return jfail(J, J->line, "split: empty separator");
    size_t i = 0;
    int64_t done = 0;
    if (sep.k != V_STR) {
        for (;;) {
            while (i < s.n && is_space_char(s.p[i])) i++;
            if (i >= s.n) break;
            size_t j = i;
            if (maxsplit >= 0 && done >= maxsplit) {
                size_t e = s.n;
                while (e > i && is_space_char(s.p[e - 1])) e--;
                CK(list_push(J, l, vstr(s.p + i, e - i)));
                break;
            }
            while (j < s.n && !is_space_char(s.p[j])) j++;
            CK(list_push(J, l, vstr(s.p + i, j - i)));
            done++;
            i = j;
        }
    } else {
        jstr d = sep.u.s;
        size_t st = 0;
        while (i + d.n <= s.n) {
            if ((maxsplit < 0 || done < maxsplit) && memcmp(s.p + i, d.p, d.n) == 0) {
                CK(list_push(J, l, vstr(s.p + st, i - st)));
                i += d.n;
                st = i;
                done++;
            } else i++;
        }
        CK(list_push(J, l, vstr(s.p + st, s.n - st)));
    }
    *out = vlist(l);
    return true;
}

static bool join_vals(jx *J, val seq, jstr sep, jstr attr, val *out) {
    if (seq.k != V_LIST) return jfail(J, J->line, "join of a %s", kind_name(seq));
    obuf o = {0};
    CK(ob_put(J, &o, "", 0));
    for (size_t i = 0; i < seq.u.l->n; i++) {
        if (i) CK(ob_put(J, &o, sep.p, sep.n));
        val v = seq.u.l->a[i];
        if (attr.n) CK(get_attr(J, v, attr, &v));
        CK(to_str(J, &o, v, false));
    }
    *out = vstr(o.p, o.n);
    return true;
}

static bool call_method(jx *J, method *m, const args *a, val *out) {
    val self = *m->self;
    jstr nm = m->name;
    *out = V(V_NONE);
    if (self.k == V_DICT) {
        if (jstr_eq(nm, "get")) {
            val k = arg(a, 0, "key", V(V_NONE)), d = arg(a, 1, "default", V(V_NONE));
            jstr ks = {0};
            if (k.k == V_STR || k.k == V_INT) CK(key_of(J, k, &ks));
            val *v = ks.p ? dict_get(self.u.d, ks) : NULL;
            *out = v ? *v : d;
            return true;
        }
        jlist *l = list_new(J);
        if (!l) return oom(J);
        for (size_t i = 0; i < self.u.d->n; i++) {
            val k = key_val(self.u.d->k[i]), v = self.u.d->v[i];
            if (jstr_eq(nm, "keys")) CK(list_push(J, l, k));
            else if (jstr_eq(nm, "values")) CK(list_push(J, l, v));
            else {
                jlist *p = list_new(J);
                if (!p || !list_push(J, p, k) || !list_push(J, p, v)) return oom(J);
                CK(list_push(J, l, vlist(p)));
            }
        }
        *out = vlist(l);
        return true;
    }
    if (self.k == V_LIST) {
        val x = arg(a, 0, NULL, V(V_UNDEF));
        int64_t c = 0, idx = -1;
        for (size_t i = 0; i < self.u.l->n; i++)
            if (equal(self.u.l->a[i], x)) {
                c++;
                if (idx < 0) idx = (int64_t)i;
            }
        if (jstr_eq(nm, "index") && idx < 0) return jfail(J, J->line, "list.index: the value is not in the list");
        *out = vint(jstr_eq(nm, "count") ? c : idx);
        return true;
    }
    jstr s = self.u.s;
    if (jstr_eq(nm, "strip")) return strip_chars(J, s, arg(a, 0, "chars", V(V_NONE)), true, true, out);
    if (jstr_eq(nm, "lstrip")) return strip_chars(J, s, arg(a, 0, "chars", V(V_NONE)), true, false, out);
    if (jstr_eq(nm, "rstrip")) return strip_chars(J, s, arg(a, 0, "chars", V(V_NONE)), false, true, out);
    if (jstr_eq(nm, "upper")) return case_map(J, s, 1, out);
    if (jstr_eq(nm, "lower")) return case_map(J, s, 0, out);
    if (jstr_eq(nm, "title")) return case_map(J, s, 2, out);
    if (jstr_eq(nm, "capitalize")) return case_map(J, s, 3, out);
    if (jstr_eq(nm, "split")) {
        val ms = arg(a, 1, "maxsplit", vint(-1));
        return split_str(J, s, arg(a, 0, "sep", V(V_NONE)), ms.k == V_INT ? ms.u.i : -1, out);
    }
    if (jstr_eq(nm, "rsplit")) {
        val ms = arg(a, 1, "maxsplit", vint(-1));
        if (ms.k == V_INT && ms.u.i >= 0) return jfail(J, J->line, "str.rsplit with maxsplit is not supported");
        return split_str(J, s, arg(a, 0, "sep", V(V_NONE)), -1, out);
    }
    if (jstr_eq(nm, "splitlines")) {
        jlist *l = list_new(J);
        if (!l) return oom(J);
        size_t st = 0;
        for (size_t i = 0; i < s.n; i++)
            if (s.p[i] == '\n' || s.p[i] == '\r') {
                CK(list_push(J, l, vstr(s.p + st, i - st)));
                if (s.p[i] == '\r' && i + 1 < s.n && s.p[i + 1] == '\n') i++;
                st = i + 1;
            }
        if (st < s.n) CK(list_push(J, l, vstr(s.p + st, s.n - st)));
        *out = vlist(l);
        return true;
    }
    if (jstr_eq(nm, "startswith") || jstr_eq(nm, "endswith")) {
        val p = arg(a, 0, NULL, V(V_UNDEF));
        bool ends = jstr_eq(nm, "endswith"), r = false;
        size_t np = p.k == V_LIST ? p.u.l->n : 1;
        for (size_t i = 0; i < np && !r; i++) {
            val x = p.k == V_LIST ? p.u.l->a[i] : p;
            if (x.k != V_STR) return jfail(J, J->line, "str.%.*s needs a string", (int)nm.n, nm.p);
            jstr t = x.u.s;
            r = t.n <= s.n && memcmp(ends ? s.p + s.n - t.n : s.p, t.p, t.n) == 0;
        }
        *out = vbool(r);
        return true;
    }
    if (jstr_eq(nm, "replace")) {
        val f = arg(a, 0, NULL, V(V_UNDEF)), t = arg(a, 1, NULL, V(V_UNDEF)), c = arg(a, 2, "count", vint(-1));
        if (f.k != V_STR || t.k != V_STR) return jfail(J, J->line, "str.replace needs two strings");
        return str_replace(J, s, f.u.s, t.u.s, c.k == V_INT ? c.u.i : -1, out);
    }
    if (jstr_eq(nm, "find") || jstr_eq(nm, "rfind") || jstr_eq(nm, "count")) {
        val f = arg(a, 0, NULL, V(V_UNDEF));
        if (f.k != V_STR) return jfail(J, J->line, "str.%.*s needs a string", (int)nm.n, nm.p);
        jstr t = f.u.s;
        int64_t first = -1, last = -1, cnt = 0;
        for (size_t i = 0; i + t.n <= s.n;) {
            if (memcmp(s.p + i, t.p, t.n) == 0) {
                if (first < 0) first = (int64_t)i;
                last = (int64_t)i;
                cnt++;
                i += t.n ? t.n : 1;
            } else i++;
        }
        if (first >= 0) first = (int64_t)utf8_count((jstr){s.p, (size_t)first});
        if (last >= 0) last = (int64_t)utf8_count((jstr){s.p, (size_t)last});
        *out = vint(jstr_eq(nm, "find") ? first : jstr_eq(nm, "rfind") ? last : cnt);
        return true;
    }
    if (jstr_eq(nm, "join")) return join_vals(J, arg(a, 0, NULL, V(V_UNDEF)), s, (jstr){0}, out);
    if (jstr_eq(nm, "format")) {
        /* {} {0} {name}, and {{ }}; no format specs */
        obuf o = {0};
        CK(ob_put(J, &o, "", 0));
        size_t auto_i = 0;
        for (size_t i = 0; i < s.n; i++) {
            char c = s.p[i];
            if ((c == '{' || c == '}') && i + 1 < s.n && s.p[i + 1] == c) {
                CK(ob_put(J, &o, &c, 1));
                i++;
                continue;
            }
            if (c != '{') {
                CK(ob_put(J, &o, &c, 1));
                continue;
            }
            const char *cl = memchr(s.p + i, '}', s.n - i);
            if (!cl) return jfail(J, J->line, "str.format: an unclosed '{'");
            jstr field = {s.p + i + 1, (size_t)(cl - s.p) - i - 1};
            if (memchr(field.p, ':', field.n) || memchr(field.p, '!', field.n)) return jfail(J, J->line, "str.format: format specifications are not supported");
            val x = V(V_UNDEF);
            if (field.n == 0) x = arg(a, auto_i++, NULL, V(V_UNDEF));
            else if (field.p[0] >= '0' && field.p[0] <= '9') x = arg(a, (size_t)strtoul(field.p, NULL, 10), NULL, V(V_UNDEF));
            else
                for (size_t k = 0; k < a->n_kw; k++)
                    if (jstr_same(a->kw[k], field)) x = a->kwv[k];
            if (x.k == V_UNDEF) return jfail(J, J->line, "str.format: no value for {%.*s}", (int)field.n, field.p);
            CK(to_str(J, &o, x, false));
            i = (size_t)(cl - s.p);
        }
        *out = vstr(o.p, o.n);
        return true;
    }
    if (jstr_eq(nm, "isdigit") || jstr_eq(nm, "isalpha") || jstr_eq(nm, "isspace")) {
        bool r = s.n > 0;
        for (size_t i = 0; i < s.n && r; i++) {
            char c = s.p[i];
            r = jstr_eq(nm, "isdigit") ? (c >= '0' && c <= '9') : jstr_eq(nm, "isspace") ? is_space_char(c) : ((c | 32) >= 'a' && (c | 32) <= 'z');
        }
        *out = vbool(r);
        return true;
    }
    return jfail(J, J->line, "str.%.*s is not supported", (int)nm.n, nm.p);
}

static bool call_func(jx *J, int fn, const args *a, val *out) {
    *out = V(V_NONE);
    switch (fn) {
    case F_RANGE: {
        int64_t lo = 0, hi, stp = 1;
        val x = arg(a, 0, NULL, V(V_UNDEF)), y = arg(a, 1, NULL, V(V_UNDEF)), z = arg(a, 2, NULL, V(V_UNDEF));
        if (x.k != V_INT || (y.k != V_UNDEF && y.k != V_INT) || (z.k != V_UNDEF && z.k != V_INT)) return jfail(J, J->line, "range needs integers");
        if (y.k == V_UNDEF) hi = x.u.i;
        else {
            lo = x.u.i;
            hi = y.u.i;
        }
        if (z.k == V_INT) stp = z.u.i;
        if (stp == 0) return jfail(J, J->line, "range: step 0");
        jlist *l = list_new(J);
        if (!l) return oom(J);
        for (int64_t i = lo; stp > 0 ? i < hi : i > hi; i += stp) {
            if (l->n > 1000000) return jfail(J, J->line, "range of more than a million numbers");
            CK(list_push(J, l, vint(i)));
        }
        *out = vlist(l);
        return true;
    }
    case F_NAMESPACE:
    case F_DICT: {
        jdict *d = dict_new(J);
        if (!d) return oom(J);
        for (size_t i = 0; i < a->n_kw; i++) CK(dict_set(J, d, a->kw[i], a->kwv[i]));
        *out = vdict(d);
        if (fn == F_NAMESPACE) out->k = V_NS;
        return true;
    }
    case F_RAISE: {
        jstr m = {"", 0};
        if (a->n_pos) CK(as_str(J, a->pos[0], &m));
        J->st = PLM_ERR_ARG;
        snprintf(J->err, sizeof J->err, "chat template line %d: raise_exception: %.*s", J->line, (int)(m.n > 400 ? 400 : m.n), m.p);
        return false;
    }
    case F_STRFTIME: {
        val f = arg(a, 0, NULL, V(V_UNDEF));
        if (f.k != V_STR || f.u.s.n > 200) return jfail(J, J->line, "strftime_now needs a format string");
        char fmt[256], b[512];
        memcpy(fmt, f.u.s.p, f.u.s.n);
        fmt[f.u.s.n] = 0;
        time_t now = time(NULL);
        struct tm tmv;
        localtime_r(&now, &tmv);
        size_t n = strftime(b, sizeof b, fmt, &tmv);
        jstr r = jdup(J, b, n);
        *out = vstr(r.p, r.n);
        return true;
    }
    case F_LEN: {
        val x = arg(a, 0, NULL, V(V_UNDEF));
        *out = vint(x.k == V_STR ? (int64_t)utf8_count(x.u.s) : x.k == V_LIST ? (int64_t)x.u.l->n : x.k == V_DICT ? (int64_t)x.u.d->n : 0);
        return true;
    }
    }
    return jfail(J, J->line, "unknown function");
}

static bool run_test(jx *J, jstr name, val v, const args *a, bool *out);
static bool to_list(jx *J, val v, val *out);

/* select / reject / selectattr / rejectattr over a list. */
static bool filter_select(jx *J, val seq, const args *a, bool attr, bool keep, val *out) {
    if (!truthy(seq)) {
        jlist *e = list_new(J);
        if (!e) return oom(J);
        seq = vlist(e);
    }
    if (seq.k == V_DICT || seq.k == V_STR) CK(to_list(J, seq, &seq));
    if (seq.k != V_LIST) return jfail(J, J->line, "select on a %s", kind_name(seq));
    size_t k = 0;
    jstr at = {0};
    if (attr) {
        val x = arg(a, k++, NULL, V(V_UNDEF));
        if (x.k != V_STR) return jfail(J, J->line, "selectattr needs an attribute name");
        at = x.u.s;
    }
    val t = arg(a, k++, NULL, V(V_UNDEF));
    if (t.k != V_UNDEF && t.k != V_STR) return jfail(J, J->line, "select needs a test name");
    args rest = *a;
    rest.pos = a->pos + (a->n_pos > k ? k : a->n_pos);
    rest.n_pos = a->n_pos > k ? a->n_pos - k : 0;
    jlist *l = list_new(J);
    if (!l) return oom(J);
    for (size_t i = 0; i < seq.u.l->n; i++) {
        val x = seq.u.l->a[i], y = x;
        if (attr) CK(get_attr(J, x, at, &y));
        bool r;
        if (t.k == V_UNDEF) r = truthy(y);
        else CK(run_test(J, t.u.s, y, &rest, &r));
        if (r == keep) CK(list_push(J, l, x));
    }
    l->gen = true;
    *out = vlist(l);
    return true;
}

static bool apply_filter(jx *J, scope *sc, jstr name, val v, const args *a, val *out);

static bool filter_map(jx *J, scope *sc, val seq, const args *a, val *out) {
    if (seq.k == V_DICT || seq.k == V_STR || seq.k == V_UNDEF) CK(to_list(J, seq, &seq));
    if (seq.k != V_LIST) return jfail(J, J->line, "map on a %s", kind_name(seq));
    val at = arg(a, 99, "attribute", V(V_UNDEF)), def = arg(a, 99, "default", V(V_UNDEF));
    jlist *l = list_new(J);
    if (!l) return oom(J);
    for (size_t i = 0; i < seq.u.l->n; i++) {
        val x = seq.u.l->a[i], y;
        if (at.k == V_STR) {
            CK(get_attr(J, x, at.u.s, &y));
            if (y.k == V_UNDEF) y = def;
        } else {
            val f = arg(a, 0, NULL, V(V_UNDEF));
            if (f.k != V_STR) return jfail(J, J->line, "map needs a filter name or attribute=");
            args rest = *a;
            rest.pos = a->pos + 1;
            rest.n_pos = a->n_pos ? a->n_pos - 1 : 0;
            CK(apply_filter(J, sc, f.u.s, x, &rest, &y));
        }
        CK(list_push(J, l, y));
    }
    l->gen = true;
    *out = vlist(l);
    return true;
}

static bool to_list(jx *J, val v, val *out) {
    if (v.k == V_LIST && !v.u.l->gen) {
        *out = v;
        return true;
    }
    if (v.k == V_LIST) {
        jlist *c = list_new(J);
        if (!c) return oom(J);
        *c = *v.u.l;
        c->gen = false;
        *out = vlist(c);
        return true;
    }
    jlist *l = list_new(J);
    if (!l) return oom(J);
    if (v.k == V_DICT) {
        for (size_t i = 0; i < v.u.d->n; i++) CK(list_push(J, l, key_val(v.u.d->k[i])));
    } else if (v.k == V_STR) {
        for (size_t i = 0; i < v.u.s.n;) {
            size_t j = i + 1;
            while (j < v.u.s.n && ((unsigned char)v.u.s.p[j] & 0xC0) == 0x80) j++;
            CK(list_push(J, l, vstr(v.u.s.p + i, j - i)));
            i = j;
        }
    } else if (v.k != V_UNDEF) return jfail(J, J->line, "a %s is not iterable", kind_name(v));
    *out = vlist(l);
    return true;
}

static bool apply_filter(jx *J, scope *sc, jstr name, val v, const args *a, val *out) {
#define IS(s) jstr_eq(name, s)
    if (IS("trim")) {
        jstr s;
        CK(as_str(J, v, &s));
        return strip_chars(J, s, arg(a, 0, "chars", V(V_NONE)), true, true, out);
    }
    if (IS("tojson")) {
        val ind = arg(a, 0, "indent", V(V_NONE));
        obuf o = {0};
        CK(ob_put(J, &o, "", 0));
        CK(to_json(J, &o, v, ind.k == V_INT ? (int)ind.u.i : -1, 0));
        *out = vstr(o.p, o.n);
        return true;
    }
    if (IS("length") || IS("count")) {
        if (v.k == V_STR) *out = vint((int64_t)utf8_count(v.u.s));
        else if (v.k == V_LIST && v.u.l->gen) return jfail(J, J->line, "length of a generator (the result of map, select...); add |list");
        else if (v.k == V_LIST) *out = vint((int64_t)v.u.l->n);
        else if (v.k == V_DICT || v.k == V_NS) *out = vint((int64_t)v.u.d->n);
        else if (v.k == V_UNDEF) *out = vint(0);
        else return jfail(J, J->line, "length of a %s", kind_name(v));
        return true;
    }
    if (IS("upper") || IS("lower") || IS("title") || IS("capitalize")) {
        jstr s;
        CK(as_str(J, v, &s));
        return case_map(J, s, IS("lower") ? 0 : IS("upper") ? 1 : IS("title") ? 2 : 3, out);
    }
    if (IS("replace")) {
        jstr s;
        val f = arg(a, 0, NULL, V(V_UNDEF)), t = arg(a, 1, NULL, V(V_UNDEF)), c = arg(a, 2, "count", vint(-1));
        CK(as_str(J, v, &s));
        if (f.k != V_STR || t.k != V_STR) return jfail(J, J->line, "replace needs two strings");
        return str_replace(J, s, f.u.s, t.u.s, c.k == V_INT ? c.u.i : -1, out);
    }
    if (IS("join")) {
        val sep = arg(a, 0, "d", vstr("", 0)), at = arg(a, 1, "attribute", V(V_UNDEF));
        if (sep.k != V_STR) return jfail(J, J->line, "join needs a string separator");
        CK(to_list(J, v, &v));
        return join_vals(J, v, sep.u.s, at.k == V_STR ? at.u.s : (jstr){0}, out);
    }
    if (IS("selectattr")) return filter_select(J, v, a, true, true, out);
    if (IS("rejectattr")) return filter_select(J, v, a, true, false, out);
    if (IS("select")) return filter_select(J, v, a, false, true, out);
    if (IS("reject")) return filter_select(J, v, a, false, false, out);
    if (IS("map")) return filter_map(J, sc, v, a, out);
    if (IS("list")) return to_list(J, v, out);
    if (IS("first") || IS("last")) {
        CK(to_list(J, v, &v));
        *out = v.u.l->n ? v.u.l->a[IS("first") ? 0 : v.u.l->n - 1] : V(V_UNDEF);
        return true;
    }
    if (IS("default") || IS("d")) {
        val d = arg(a, 0, "default_value", vstr("", 0)), b = arg(a, 1, "boolean", vbool(false));
        *out = (v.k == V_UNDEF || (truthy(b) && !truthy(v))) ? d : v;
        return true;
    }
    if (IS("string")) {
        jstr s;
        CK(as_str(J, v, &s));
        *out = vstr(s.p, s.n);
        return true;
    }
    if (IS("safe") || IS("e") || IS("escape")) {
        if (v.k == V_STR && v.safe) {
            *out = v;
            return true;
        }
        jstr s;
        CK(as_str(J, v, &s));
        if (IS("safe")) *out = vstr(s.p, s.n);
        else CK(html_escape(J, s, out));
        out->safe = true;
        return true;
    }
    if (IS("int")) {
        if (v.k == V_INT) *out = v;
        else if (v.k == V_FLOAT) *out = vint((int64_t)v.u.f);
        else if (v.k == V_BOOL) *out = vint(v.u.b);
        else if (v.k == V_STR) {
            char b[64];
            size_t n = v.u.s.n < 63 ? v.u.s.n : 63;
            memcpy(b, v.u.s.p, n);
            b[n] = 0;
            char *e;
            long long x = strtoll(b, &e, 10);
            *out = vint(*e || !n ? 0 : x);
        } else *out = vint(0);
        return true;
    }
    if (IS("float")) {
        if (v.k == V_FLOAT) *out = v;
        else if (v.k == V_INT) *out = vfloat((double)v.u.i);
        else *out = vfloat(0);
        return true;
    }
    if (IS("abs")) {
        if (v.k == V_INT) *out = vint(v.u.i < 0 ? -v.u.i : v.u.i);
        else if (v.k == V_FLOAT) *out = vfloat(fabs(v.u.f));
        else return jfail(J, J->line, "abs of a %s", kind_name(v));
        return true;
    }
    if (IS("items")) {
        if (v.k != V_DICT) return jfail(J, J->line, "items of a %s", kind_name(v));
        method m = {&v, {"items", 5}};
        return call_method(J, &m, a, out);
    }
    if (IS("reverse")) {
        CK(to_list(J, v, &v));
        jlist *l = list_new(J);
        if (!l) return oom(J);
        for (size_t i = v.u.l->n; i-- > 0;) CK(list_push(J, l, v.u.l->a[i]));
        if (v.k == V_STR) return jfail(J, J->line, "reverse of a string");
        *out = vlist(l);
        return true;
    }
    if (IS("unique")) {
        CK(to_list(J, v, &v));
        jlist *l = list_new(J);
        if (!l) return oom(J);
        for (size_t i = 0; i < v.u.l->n; i++) {
            bool seen = false;
            for (size_t k = 0; k < l->n && !seen; k++) seen = equal(l->a[k], v.u.l->a[i]);
            if (!seen) CK(list_push(J, l, v.u.l->a[i]));
        }
        *out = vlist(l);
        return true;
    }
    if (IS("indent")) {
        val w = arg(a, 0, "width", vint(4)), first = arg(a, 1, "first", vbool(false)), blank = arg(a, 2, "blank", vbool(false));
        jstr s, pad;
        CK(as_str(J, v, &s));
        if (w.k == V_STR) pad = w.u.s;
        else {
            int64_t k = w.k == V_INT ? w.u.i : 4;
            if (k < 0 || k > 1000) return jfail(J, J->line, "indent: bad width");
            char *p = jalloc(J, (size_t)k + 1);
            if (!p) return oom(J);
            memset(p, ' ', (size_t)k);
            pad = (jstr){p, (size_t)k};
        }
        obuf o = {0};
        CK(ob_put(J, &o, "", 0));
        size_t st = 0;
        bool line0 = true;
        for (size_t i = 0; i <= s.n; i++) {
            if (i < s.n && s.p[i] != '\n') continue;
            size_t len = i - st;
            bool do_pad = line0 ? truthy(first) : (len > 0 || truthy(blank));
            if (do_pad && (!line0 || truthy(first))) CK(ob_put(J, &o, pad.p, pad.n));
            CK(ob_put(J, &o, s.p + st, len));
            if (i < s.n) CK(ob_put(J, &o, "\n", 1));
            st = i + 1;
            line0 = false;
        }
        *out = vstr(o.p, o.n);
        return true;
    }
    if (IS("dictsort")) {
        if (v.k != V_DICT) return jfail(J, J->line, "dictsort of a %s", kind_name(v));
        jlist *l = list_new(J);
        if (!l) return oom(J);
        size_t n = v.u.d->n;
        size_t *ord = jalloc(J, (n + 1) * sizeof *ord);
        if (!ord) return oom(J);
        for (size_t i = 0; i < n; i++) ord[i] = i;
        for (size_t i = 1; i < n; i++)
            for (size_t k = i; k > 0; k--) {
                bool ok;
                val x = key_val(v.u.d->k[ord[k - 1]]), y = key_val(v.u.d->k[ord[k]]);
                if (x.k == V_STR) CK(case_map(J, x.u.s, 0, &x));
                if (y.k == V_STR) CK(case_map(J, y.u.s, 0, &y));
                if (cmp_vals(J, x, y, &ok) <= 0) break;
                size_t t = ord[k];
                ord[k] = ord[k - 1];
                ord[k - 1] = t;
            }
        for (size_t i = 0; i < n; i++) {
            jlist *p = list_new(J);
            if (!p || !list_push(J, p, key_val(v.u.d->k[ord[i]])) || !list_push(J, p, v.u.d->v[ord[i]])) return oom(J);
            CK(list_push(J, l, vlist(p)));
        }
        *out = vlist(l);
        return true;
    }
    if (IS("sort")) {
        CK(to_list(J, v, &v));
        val rev = arg(a, 0, "reverse", vbool(false)), at = arg(a, 2, "attribute", V(V_UNDEF));
        jlist *l = list_new(J);
        if (!l) return oom(J);
        for (size_t i = 0; i < v.u.l->n; i++) CK(list_push(J, l, v.u.l->a[i]));
        for (size_t i = 1; i < l->n; i++)
            for (size_t k = i; k > 0; k--) {
                val x = l->a[k - 1], y = l->a[k];
                if (at.k == V_STR) {
                    CK(get_attr(J, x, at.u.s, &x));
                    CK(get_attr(J, y, at.u.s, &y));
                }
                bool ok;
                int c = cmp_vals(J, x, y, &ok);
                if (!ok) return false;
                if (truthy(rev) ? c >= 0 : c <= 0) break;
                val t = l->a[k];
                l->a[k] = l->a[k - 1];
                l->a[k - 1] = t;
            }
        *out = vlist(l);
        return true;
    }
    if (IS("round")) {
        val p = arg(a, 0, "precision", vint(0));
        double x = v.k == V_FLOAT ? v.u.f : v.k == V_INT ? (double)v.u.i : 0, m = pow(10, p.k == V_INT ? (double)p.u.i : 0);
        *out = vfloat(nearbyint(x * m) / m);
        return true;
    }
    if (IS("max") || IS("min")) {
        CK(to_list(J, v, &v));
        if (!v.u.l->n) {
            *out = V(V_UNDEF);
            return true;
        }
        val best = v.u.l->a[0];
        for (size_t i = 1; i < v.u.l->n; i++) {
            bool ok;
            int c = cmp_vals(J, v.u.l->a[i], best, &ok);
            if (!ok) return false;
            if (IS("max") ? c > 0 : c < 0) best = v.u.l->a[i];
        }
        *out = best;
        return true;
    }
    if (IS("wordcount")) {
        jstr s;
        CK(as_str(J, v, &s));
        int64_t k = 0;
        bool in = false;
        for (size_t i = 0; i < s.n; i++) {
            bool w = !is_space_char(s.p[i]);
            if (w && !in) k++;
            in = w;
        }
        *out = vint(k);
        return true;
    }
    return jfail(J, J->line, "the filter '%.*s' is not supported", (int)name.n, name.p);
#undef IS
}

static bool run_test(jx *J, jstr name, val v, const args *a, bool *out) {
#define IS(s) jstr_eq(name, s)
    val x = arg(a, 0, NULL, V(V_UNDEF));
    if (IS("defined")) *out = v.k != V_UNDEF;
    else if (IS("undefined")) *out = v.k == V_UNDEF;
    else if (IS("none")) *out = v.k == V_NONE;
    else if (IS("string")) *out = v.k == V_STR;
    else if (IS("number")) *out = v.k == V_INT || v.k == V_FLOAT;
    else if (IS("integer")) *out = v.k == V_INT;
    else if (IS("float")) *out = v.k == V_FLOAT;
    else if (IS("boolean")) *out = v.k == V_BOOL;
    else if (IS("true")) *out = v.k == V_BOOL && v.u.b;
    else if (IS("false")) *out = v.k == V_BOOL && !v.u.b;
    else if (IS("mapping")) *out = v.k == V_DICT || v.k == V_NS;
    else if (IS("iterable")) *out = v.k == V_LIST || v.k == V_DICT || v.k == V_STR;
    else if (IS("sequence")) *out = v.k == V_LIST || v.k == V_DICT || v.k == V_STR;
    else if (IS("callable")) *out = v.k == V_MACRO || v.k == V_FUNC || v.k == V_METHOD;
    else if (IS("odd") || IS("even")) {
        if (v.k != V_INT) return jfail(J, J->line, "'%.*s' needs an integer", (int)name.n, name.p);
        *out = (v.u.i % 2 != 0) == IS("odd");
    } else if (IS("divisibleby")) {
        if (v.k != V_INT || x.k != V_INT || x.u.i == 0) return jfail(J, J->line, "divisibleby needs integers");
        *out = v.u.i % x.u.i == 0;
    } else if (IS("eq") || IS("equalto") || IS("==")) *out = equal(v, x);
    else if (IS("ne") || IS("!=")) *out = !equal(v, x);
    else if (IS("in")) return contains(J, x, v, out);
    else if (IS("lower") || IS("upper")) {
        *out = v.k == V_STR;
        for (size_t i = 0; *out && i < v.u.s.n; i++) {
            char c = v.u.s.p[i];
            *out = IS("lower") ? !(c >= 'A' && c <= 'Z') : !(c >= 'a' && c <= 'z');
        }
    } else if (IS("gt") || IS("ge") || IS("lt") || IS("le") || IS(">") || IS("<") || IS(">=") || IS("<=")) {
        bool ok;
        int c = cmp_vals(J, v, x, &ok);
        if (!ok) return false;
        *out = (IS("gt") || IS(">")) ? c > 0 : (IS("ge") || IS(">=")) ? c >= 0 : (IS("lt") || IS("<")) ? c < 0 : c <= 0;
    } else return jfail(J, J->line, "the test '%.*s' is not supported", (int)name.n, name.p);
    return true;
#undef IS
}

static bool eval(jx *J, scope *sc, node *n, val *out) {
    CK(step(J));
    J->line = n->line;
    switch (n->k) {
    case N_LIT: *out = n->lit; return true;
    case N_NAME: {
        val *v = lookup(sc, n->name);
        if (v) *out = *v;
        else {
            *out = V(V_UNDEF);
            for (int i = 0; FUNCS[i]; i++)
                if (jstr_eq(n->name, FUNCS[i])) {
                    out->k = V_FUNC;
                    out->u.fn = i;
                }
        }
        return true;
    }
    case N_ATTR: {
        val o;
        CK(eval(J, sc, n->a, &o));
        return get_attr(J, o, n->name, out);
    }
    case N_ITEM: {
        val o, k;
        CK(eval(J, sc, n->a, &o) && eval(J, sc, n->b, &k));
        if ((o.k == V_DICT) && k.k == V_STR && !dict_get(o.u.d, k.u.s) && in_names(DICT_METHODS, k.u.s)) return bind_method(J, o, k.u.s, out);
        return get_item(J, o, k, out);
    }
    case N_SLICE: {
        val o, p[3];
        CK(eval(J, sc, n->a, &o));
        for (int i = 0; i < 3; i++) {
            p[i] = V(V_NONE);
            if (n->kids[i]) CK(eval(J, sc, n->kids[i], &p[i]));
            if (p[i].k != V_NONE && p[i].k != V_INT) return jfail(J, n->line, "slice bounds must be integers");
        }
        int64_t stp = p[2].k == V_INT ? p[2].u.i : 1;
        if (stp == 0) return jfail(J, n->line, "slice step 0");
        size_t len = o.k == V_LIST ? o.u.l->n : o.k == V_STR ? utf8_count(o.u.s) : 0;
        if (o.k != V_LIST && o.k != V_STR) return jfail(J, n->line, "slice of a %s", kind_name(o));
        int64_t L = (int64_t)len, lo, hi;
        if (stp > 0) {
            lo = p[0].k == V_INT ? p[0].u.i : 0;
            hi = p[1].k == V_INT ? p[1].u.i : L;
            if (lo < 0) lo = lo + L < 0 ? 0 : lo + L;
            if (hi < 0) hi = hi + L < 0 ? 0 : hi + L;
            if (lo > L) lo = L;
            if (hi > L) hi = L;
        } else {
            lo = p[0].k == V_INT ? p[0].u.i : L - 1;
            hi = p[1].k == V_INT ? p[1].u.i : -L - 1;
            if (lo < 0) lo = lo + L < -1 ? -1 : lo + L;
            if (hi < 0) hi = hi + L < -1 ? -1 : hi + L;
            if (lo >= L) lo = L - 1;
            if (hi >= L) hi = L - 1;
        }
        jlist *l = list_new(J);
        obuf ob = {0};
        if (!l || !ob_put(J, &ob, "", 0)) return oom(J);
        for (int64_t i = lo; stp > 0 ? i < hi : i > hi; i += stp) {
            if (o.k == V_LIST) CK(list_push(J, l, o.u.l->a[i]));
            else {
                size_t a0 = utf8_off(o.u.s, (size_t)i), a1 = utf8_off(o.u.s, (size_t)i + 1);
                CK(ob_put(J, &ob, o.u.s.p + a0, a1 - a0));
            }
        }
        *out = o.k == V_LIST ? vlist(l) : vstr(ob.p, ob.n);
        return true;
    }
    case N_CALL: {
        val f;
        args a;
        CK(eval(J, sc, n->a, &f));
        CK(eval_args(J, sc, n, &a));
        J->line = n->line;
        if (f.k == V_MACRO) return call_macro(J, sc, f.u.m, &a, out);
        if (f.k == V_FUNC) return call_func(J, f.u.fn, &a, out);
        if (f.k == V_METHOD) return call_method(J, f.u.me, &a, out);
        if (n->a->k == N_NAME) return jfail(J, n->line, "'%.*s' is not a function (undefined or a %s)", (int)n->a->name.n, n->a->name.p, kind_name(f));
        if (n->a->k == N_ATTR) return jfail(J, n->line, "'%.*s' is not a method of a %s", (int)n->a->name.n, n->a->name.p, kind_name(*&f));
        return jfail(J, n->line, "a %s is not callable", kind_name(f));
    }
    case N_FILTER: {
        val v;
        args a;
        CK(eval(J, sc, n->a, &v));
        CK(eval_args(J, sc, n, &a));
        J->line = n->line;
        return apply_filter(J, sc, n->name, v, &a, out);
    }
    case N_TEST: {
        val v;
        args a;
        bool r;
        CK(eval(J, sc, n->a, &v));
        CK(eval_args(J, sc, n, &a));
        J->line = n->line;
        CK(run_test(J, n->name, v, &a, &r));
        *out = vbool(n->op ? !r : r);
        return true;
    }
    case N_BIN: {
        val a, b;
        CK(eval(J, sc, n->a, &a) && eval(J, sc, n->b, &b));
        J->line = n->line;
        switch (n->op) {
        case OP_EQ: *out = vbool(equal(a, b)); return true;
        case OP_NE: *out = vbool(!equal(a, b)); return true;
        case OP_LT:
        case OP_GT:
        case OP_LE:
        case OP_GE: {
            bool ok;
            int c = cmp_vals(J, a, b, &ok);
            if (!ok) return false;
            *out = vbool(n->op == OP_LT ? c < 0 : n->op == OP_GT ? c > 0 : n->op == OP_LE ? c <= 0 : c >= 0);
            return true;
        }
        case OP_IN:
        case OP_NOTIN: {
            bool r;
            CK(contains(J, b, a, &r));
            *out = vbool(n->op == OP_IN ? r : !r);
            return true;
        }
        default: return arith(J, n->op, a, b, out);
        }
    }
    case N_NOT: {
        val a;
        CK(eval(J, sc, n->a, &a));
        *out = vbool(!truthy(a));
        return true;
    }
    case N_NEG: {
        val a;
        CK(eval(J, sc, n->a, &a));
        if (a.k == V_INT) *out = vint(-a.u.i);
        else if (a.k == V_FLOAT) *out = vfloat(-a.u.f);
        else return jfail(J, n->line, "negation of a %s", kind_name(a));
        return true;
    }
    case N_AND:
    case N_OR: {
        val a;
        CK(eval(J, sc, n->a, &a));
        if (truthy(a) == (n->k == N_OR)) {
            *out = a;
            return true;
        }
        return eval(J, sc, n->b, out);
    }
    case N_COND: {
        val c;
        CK(eval(J, sc, n->a, &c));
        if (truthy(c)) return eval(J, sc, n->b, out);
        if (n->c) return eval(J, sc, n->c, out);
        *out = V(V_UNDEF);
        return true;
    }
    case N_LIST: {
        jlist *l = list_new(J);
        if (!l) return oom(J);
        for (size_t i = 0; i < n->n_kids; i++) {
            val v;
            CK(eval(J, sc, n->kids[i], &v));
            CK(list_push(J, l, v));
        }
        *out = vlist(l);
        return true;
    }
    case N_DICT: {
        jdict *d = dict_new(J);
        if (!d) return oom(J);
        for (size_t i = 0; i + 1 < n->n_kids; i += 2) {
            val k, v;
            CK(eval(J, sc, n->kids[i], &k) && eval(J, sc, n->kids[i + 1], &v));
            jstr ks;
            CK(key_of(J, k, &ks));
            CK(dict_set(J, d, ks, v));
        }
        *out = vdict(d);
        return true;
    }
    default: return jfail(J, n->line, "internal error: a statement used as an expression");
    }
}

static bool assign(jx *J, scope *sc, const jstr *targets, size_t n, val v) {
    if (n == 1) return dict_set(J, &sc->vars, targets[0], v);
    if (v.k != V_LIST || v.u.l->n != n) return jfail(J, J->line, "cannot unpack a %s into %zu variables", kind_name(v), n);
    for (size_t i = 0; i < n; i++) CK(dict_set(J, &sc->vars, targets[i], v.u.l->a[i]));
    return true;
}

static bool exec_for(jx *J, scope *sc, node *n, obuf *o) {
    val it;
    CK(eval(J, sc, n->a, &it));
    if (it.k == V_DICT) {
        val keys;
        CK(to_list(J, it, &keys));
        it = keys;
    } else if (it.k == V_STR || it.k == V_UNDEF || it.k == V_NONE) {
        if (it.k == V_NONE) return jfail(J, n->line, "for loop over None");
        CK(to_list(J, it, &it));
    } else if (it.k != V_LIST) return jfail(J, n->line, "for loop over a %s", kind_name(it));
    scope *ls = jalloc(J, sizeof *ls);
    if (!ls) return oom(J);
    ls->parent = sc;
    /* the filtered items first: loop.length and loop.last count only those */
    jlist *items = it.u.l;
    if (n->d) {
        items = list_new(J);
        if (!items) return oom(J);
        for (size_t i = 0; i < it.u.l->n; i++) {
            CK(assign(J, ls, n->targets, n->n_targets, it.u.l->a[i]));
            val c;
            CK(eval(J, ls, n->d, &c));
            if (truthy(c)) CK(list_push(J, items, it.u.l->a[i]));
        }
    }
    size_t len = items->n;
    jdict *lp = dict_new(J); /* updated in place: an iteration allocates nothing */
    if (!lp) return oom(J);
    for (size_t i = 0; i < len; i++) {
        CK(step(J));
        CK(dict_set(J, lp, (jstr){"index", 5}, vint((int64_t)i + 1)) && dict_set(J, lp, (jstr){"index0", 6}, vint((int64_t)i)) &&
           dict_set(J, lp, (jstr){"revindex", 8}, vint((int64_t)(len - i))) && dict_set(J, lp, (jstr){"revindex0", 9}, vint((int64_t)(len - i - 1))) &&
           dict_set(J, lp, (jstr){"first", 5}, vbool(i == 0)) && dict_set(J, lp, (jstr){"last", 4}, vbool(i + 1 == len)) &&
           dict_set(J, lp, (jstr){"length", 6}, vint((int64_t)len)) &&
           dict_set(J, lp, (jstr){"previtem", 8}, i ? items->a[i - 1] : V(V_UNDEF)) &&
           dict_set(J, lp, (jstr){"nextitem", 8}, i + 1 < len ? items->a[i + 1] : V(V_UNDEF)));
        val lv = vdict(lp);
        lv.k = V_NS; /* attributes only */
        CK(dict_set(J, &ls->vars, (jstr){"loop", 4}, lv));
        CK(assign(J, ls, n->targets, n->n_targets, items->a[i]));
        CK(exec(J, ls, n->b, o));
        if (J->brk == 1) {
            J->brk = 0;
            break;
        }
        J->brk = 0;
    }
    if (len == 0 && n->c) CK(exec(J, sc, n->c, o));
    return true;
}

static bool exec(jx *J, scope *sc, node *n, obuf *o) {
    CK(step(J));
    J->line = n->line;
    switch (n->k) {
    case N_SEQ:
        for (size_t i = 0; i < n->n_kids && !J->brk; i++) CK(exec(J, sc, n->kids[i], o));
        return true;
    case N_TEXT: return ob_put(J, o, n->lit.u.s.p, n->lit.u.s.n);
    case N_OUT: {
        val v;
        CK(eval(J, sc, n->a, &v));
        return to_str(J, o, v, false);
    }
    case N_IF: {
        val c;
        CK(eval(J, sc, n->a, &c));
        if (truthy(c)) return exec(J, sc, n->b, o);
        if (n->c) return exec(J, sc, n->c, o);
        return true;
    }
    case N_FOR:
        if (++J->depth > MAX_DEPTH) return jfail(J, n->line, "blocks nest deeper than %d", MAX_DEPTH);
        CK(exec_for(J, sc, n, o));
        J->depth--;
        return true;
    case N_SET: {
        val v;
        CK(eval(J, sc, n->a, &v));
        if (n->attr.n) {
            val *ns = lookup(sc, n->name);
            if (!ns || ns->k != V_NS) return jfail(J, n->line, "'%.*s' is not a namespace: cannot set .%.*s", (int)n->name.n, n->name.p, (int)n->attr.n, n->attr.p);
            return dict_set(J, ns->u.d, n->attr, v);
        }
        return assign(J, sc, n->targets, n->n_targets, v);
    }
    case N_SETBLOCK: {
        obuf b = {0};
        CK(ob_put(J, &b, "", 0));
        CK(exec(J, sc, n->a, &b));
        return dict_set(J, &sc->vars, n->name, vstr(b.p, b.n));
    }
    case N_MACRO: {
        val m = V(V_MACRO);
        m.u.m = n->mac;
        return dict_set(J, &sc->vars, n->mac->name, m);
    }
    case N_BREAK: J->brk = 1; return true;
    case N_CONTINUE: J->brk = 2; return true;
    default: {
        val v;
        return eval(J, sc, n, &v);
    }
    }
}

plm_status plm_chat_template_render(const char *tmpl, size_t tmpl_len, const char *vars_json, size_t vars_len, char **out, size_t *out_len) {
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!out || !out_len || (!tmpl && tmpl_len) || (!vars_json && vars_len))
        return plm_fail(PLM_ERR_ARG, "plm_chat_template_render: NULL argument");
    jx J;
    memset(&J, 0, sizeof J);
    J.src = tmpl ? tmpl : "";
    J.src_len = tmpl_len;
    J.line = 1;
    scope *root = jalloc(&J, sizeof *root);
    if (!root) return plm_fail(PLM_ERR_OOM, "out of memory");
    /* the variables */
    if (vars_len) {
        jp P = {&J, vars_json, vars_json + vars_len, 0, vars_json};
        val v;
        if (jp_value(&P, &v)) {
            jp_ws(&P);
            if (P.p != P.e) jp_fail(&P, "text after the object");
            else if (v.k != V_DICT) {
                J.st = PLM_ERR_ARG;
                snprintf(J.err, sizeof J.err, "chat template variables: a JSON object is expected, not a %s", kind_name(v));
            } else root->vars = *v.u.d;
        }
    }
    node *body = NULL;
    if (!J.st && lex(&J)) body = p_body(&J, NULL, NULL);
    obuf o = {0};
    if (!J.st && body && ob_put(&J, &o, "", 0)) exec(&J, root, body, &o);
    plm_status st = J.st;
    if (st) {
        plm_fail(st, "%s", J.err);
        arena_free(&J);
        return st;
    }
    char *r = malloc(o.n + 1);
    if (!r) {
        arena_free(&J);
        return plm_fail(PLM_ERR_OOM, "out of memory for the %zu-byte prompt", o.n);
    }
    memcpy(r, o.p, o.n + 1);
    *out = r;
    *out_len = o.n;
    arena_free(&J);
    return PLM_OK;
}
