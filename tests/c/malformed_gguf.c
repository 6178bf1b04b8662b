/*
 * malformed_gguf.c — the malformed-GGUF generator (see malformed_gguf.h).
 *
 * A model is first described as a spec (metadata keys with their encoded
 * values, tensors with their shapes, types and data), then serialized while the
 * offset and length of every structural field is recorded. Cases are made
 * either by changing the spec (drop a key, declare another shape, put a NaN
 * in a float) and serializing again, or by patching or cutting the bytes of the
 * valid file at recorded fields (bad magic, absurd counts, truncation at every
 * boundary). The expected status and message substrings of each case follow
 * from the format and the loader's documented checks (each needle below says
 * which check must fire); they are not recorded from the library's output.
 */
#include "malformed_gguf.h"

#include "gguf.h"
#include "quant.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------ writer */

void mg_put(mg_buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2 + 64;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            fprintf(stderr, "malformed_gguf: out of memory\n");
            abort();
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}
void mg_u8(mg_buf *b, uint8_t v) { mg_put(b, &v, 1); }
void mg_u32(mg_buf *b, uint32_t v) {
    uint8_t x[4];
    for (int i = 0; i < 4; i++) x[i] = (uint8_t)(v >> (8 * i));
    mg_put(b, x, 4);
}
void mg_u64(mg_buf *b, uint64_t v) {
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
    mg_put(b, x, 8);
}
void mg_f32(mg_buf *b, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    mg_u32(b, u);
}
void mg_f64(mg_buf *b, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    mg_u64(b, u);
}
void mg_str(mg_buf *b, const char *s) {
    mg_u64(b, strlen(s));
    mg_put(b, s, strlen(s));
}
void mg_pad_to(mg_buf *b, size_t align) {
    while (b->n % align) mg_u8(b, 0);
}
void mg_header(mg_buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    mg_put(b, "GGUF", 4);
    mg_u32(b, version);
    mg_u64(b, n_tensors);
    mg_u64(b, n_kv);
}
void mg_kv_u32(mg_buf *b, const char *key, uint32_t v) {
    mg_str(b, key);
    mg_u32(b, PLM_GGUF_U32);
    mg_u32(b, v);
}
void mg_kv_str(mg_buf *b, const char *key, const char *v) {
    mg_str(b, key);
    mg_u32(b, PLM_GGUF_STRING);
    mg_str(b, v);
}
void mg_buf_free(mg_buf *b) {
    free(b->p);
    *b = (mg_buf){0};
}

static void patch_u32(mg_buf *b, size_t off, uint32_t v) {
    for (int i = 0; i < 4; i++) b->p[off + (size_t)i] = (uint8_t)(v >> (8 * i));
}
static void patch_u64(mg_buf *b, size_t off, uint64_t v) {
    for (int i = 0; i < 8; i++) b->p[off + (size_t)i] = (uint8_t)(v >> (8 * i));
}

/* A few formatted strings at once for needles and descriptions (test code: rotating static buffers). */
static const char *S(const char *fmt, ...) {
    static char bufs[8][256];
    static int next;
    char *b = bufs[next++ % 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof bufs[0], fmt, ap);
    va_end(ap);
    return b;
}

/* -------------------------------------------------------------- model spec */

#define MAX_KV 32
#define MAX_T 16
#define MAX_SUB 3
#define MAX_FIELDS 512

typedef struct spec_kv {
    char key[64];
    size_t key_len;  /* bytes of key written (a key may hold a NUL) */
    uint32_t type;   /* value type id as written */
    mg_buf val;      /* the value's encoding, after the type id */
    int n_sub;       /* parts of the value: string length and bytes; array type, count, elements */
    size_t sub[MAX_SUB];
} spec_kv;

typedef struct spec_t {
    char name[64];
    size_t name_len;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    mg_buf data;     /* bytes stored in the data section */
    bool off_set;    /* declare `off` instead of where the data really is */
    uint64_t off;
} spec_t;

typedef struct spec {
    uint32_t version;
    size_t align;    /* padding of the layout (not the general.alignment key) */
    bool no_pad;     /* data right after the tensor infos, unpadded */
    spec_kv kv[MAX_KV];
    int n_kv;
    spec_t t[MAX_T];
    int n_t;
} spec;

typedef enum fkind {
    FK_MAGIC, FK_VERSION, FK_NT, FK_NKV,
    FK_KEYLEN, FK_KEY, FK_VTYPE, FK_VAL,
    FK_TNAMELEN, FK_TNAME, FK_NDIMS, FK_DIM, FK_TTYPE, FK_TOFF,
    FK_PAD, FK_DATA
} fkind;

typedef struct field {
    fkind kind;
    int idx;   /* key or tensor index */
    int sub;   /* part of a value, or dimension */
    size_t off, len;
} field;

typedef struct layout {
    field f[MAX_FIELDS];
    int n;
    size_t infos_end, data_start;
    size_t pos[MAX_T]; /* where each tensor's data really is, relative to data_start */
} layout;

static void spec_free(spec *s) {
    for (int i = 0; i < s->n_kv; i++) mg_buf_free(&s->kv[i].val);
    for (int i = 0; i < s->n_t; i++) mg_buf_free(&s->t[i].data);
}

static spec_kv *kv_find(spec *s, const char *key) {
    for (int i = 0; i < s->n_kv; i++)
        if (s->kv[i].key_len == strlen(key) && memcmp(s->kv[i].key, key, s->kv[i].key_len) == 0) return &s->kv[i];
    return NULL;
}

static int kv_index(spec *s, const char *key) {
    spec_kv *kv = kv_find(s, key);
    return kv ? (int)(kv - s->kv) : -1;
}

static void kv_remove(spec *s, const char *key) {
    spec_kv *kv = kv_find(s, key);
    if (!kv) abort();
    mg_buf_free(&kv->val);
    int i = (int)(kv - s->kv);
    memmove(&s->kv[i], &s->kv[i + 1], (size_t)(s->n_kv - i - 1) * sizeof s->kv[0]);
    s->n_kv--;
}

/* The key's value, emptied and retyped (the key is appended if absent). */
static spec_kv *kv_reset(spec *s, const char *key, uint32_t type) {
    spec_kv *kv = kv_find(s, key);
    if (!kv) {
        if (s->n_kv == MAX_KV) abort();
        kv = &s->kv[s->n_kv++];
        memset(kv, 0, sizeof *kv);
        snprintf(kv->key, sizeof kv->key, "%s", key);
        kv->key_len = strlen(key);
    }
    mg_buf_free(&kv->val);
    kv->type = type;
    kv->n_sub = 0;
    return kv;
}

/* Appends a second key of the same name (for duplicates). */
static spec_kv *kv_append_dup(spec *s, const char *key, uint32_t type) {
    if (s->n_kv == MAX_KV) abort();
    spec_kv *kv = &s->kv[s->n_kv++];
    memset(kv, 0, sizeof *kv);
    snprintf(kv->key, sizeof kv->key, "%s", key);
    kv->key_len = strlen(key);
    kv->type = type;
    return kv;
}

static void set_u32(spec *s, const char *key, uint32_t v) { mg_u32(&kv_reset(s, key, PLM_GGUF_U32)->val, v); }
static void set_f32(spec *s, const char *key, float v) { mg_f32(&kv_reset(s, key, PLM_GGUF_F32)->val, v); }
static void set_f64(spec *s, const char *key, double v) { mg_f64(&kv_reset(s, key, PLM_GGUF_F64)->val, v); }
static void set_bool(spec *s, const char *key, bool v) { mg_u8(&kv_reset(s, key, PLM_GGUF_BOOL)->val, v ? 1 : 0); }

static void str_val(spec_kv *kv, const char *v, size_t n) {
    kv->n_sub = 2;
    kv->sub[0] = 0; /* length */
    kv->sub[1] = 8; /* bytes */
    mg_u64(&kv->val, n);
    mg_put(&kv->val, v, n);
}
static void set_strn(spec *s, const char *key, const char *v, size_t n) { str_val(kv_reset(s, key, PLM_GGUF_STRING), v, n); }
static void set_str(spec *s, const char *key, const char *v) { set_strn(s, key, v, strlen(v)); }

static void arr_head(spec_kv *kv, uint32_t elem, uint64_t n) {
    kv->n_sub = 3;
    kv->sub[0] = 0;  /* element type */
    kv->sub[1] = 4;  /* count */
    kv->sub[2] = 12; /* elements */
    mg_u32(&kv->val, elem);
    mg_u64(&kv->val, n);
}
static void set_arr_str(spec *s, const char *key, const char *const *v, int n) {
    spec_kv *kv = kv_reset(s, key, PLM_GGUF_ARRAY);
    arr_head(kv, PLM_GGUF_STRING, (uint64_t)n);
    for (int i = 0; i < n; i++) mg_str(&kv->val, v[i]);
}
static void set_arr_f32(spec *s, const char *key, const float *v, int n) {
    spec_kv *kv = kv_reset(s, key, PLM_GGUF_ARRAY);
    arr_head(kv, PLM_GGUF_F32, (uint64_t)n);
    for (int i = 0; i < n; i++) mg_f32(&kv->val, v[i]);
}
static void set_arr_i32(spec *s, const char *key, const int32_t *v, int n) {
    spec_kv *kv = kv_reset(s, key, PLM_GGUF_ARRAY);
    arr_head(kv, PLM_GGUF_I32, (uint64_t)n);
    for (int i = 0; i < n; i++) mg_u32(&kv->val, (uint32_t)v[i]);
}

static spec_t *t_find(spec *s, const char *name) {
    for (int i = 0; i < s->n_t; i++)
        if (s->t[i].name_len == strlen(name) && memcmp(s->t[i].name, name, s->t[i].name_len) == 0) return &s->t[i];
    abort(); /* the cases only name tensors of the base model */
}

static int t_index(spec *s, const char *name) { return (int)(t_find(s, name) - s->t); }

static void t_remove(spec *s, const char *name) {
    spec_t *t = t_find(s, name);
    mg_buf_free(&t->data);
    int i = (int)(t - s->t);
    memmove(&s->t[i], &s->t[i + 1], (size_t)(s->n_t - i - 1) * sizeof s->t[0]);
    s->n_t--;
}

static void t_rename(spec_t *t, const char *name) {
    snprintf(t->name, sizeof t->name, "%s", name);
    t->name_len = strlen(name);
}

static void t_shape(spec_t *t, uint32_t n_dims, uint64_t ne0, uint64_t ne1, uint64_t ne2) {
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = ne2;
    t->ne[3] = 1;
}

static uint64_t rng_next(uint64_t *state) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return *state >> 33;
}

/* A tensor of the base model: n_dims 1 (ne1 == 0) or 2, pseudo-random values
 * center +- spread, quantized to type row by row. */
static spec_t *t_add(spec *s, const char *name, uint32_t type, uint64_t ne0, uint64_t ne1, float center, float spread) {
    if (s->n_t == MAX_T) abort();
    spec_t *t = &s->t[s->n_t++];
    memset(t, 0, sizeof *t);
    t_rename(t, name);
    t_shape(t, ne1 ? 2 : 1, ne0, ne1 ? ne1 : 1, 1);
    t->type = type;
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)s->n_t * 7919;
    size_t row = plm_type_row_size((plm_type)type, (int64_t)ne0);
    float *src = malloc(ne0 * sizeof(float));
    uint8_t *dst = malloc(row);
    if (!src || !dst) abort();
    for (uint64_t r = 0; r < t->ne[1]; r++) {
        for (uint64_t i = 0; i < ne0; i++)
            src[i] = center + spread * ((float)(rng_next(&rng) % 2001) / 1000.0f - 1.0f);
        plm_quantize_row_ref((plm_type)type, src, dst, (int64_t)ne0);
        mg_put(&t->data, dst, row);
    }
    free(src);
    free(dst);
    return t;
}

/* ----------------------------------------------------------------- the base */

enum { N_EMBD = 32, N_HEAD = 4, N_HEAD_KV = 2, HEAD_DIM = 8, N_FF = 32, N_VOCAB = 8, ALIGN = 32 };

static const char *const TOKENS[N_VOCAB] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b", "\xe2\x96\x81" "a", "ab"};
static const float SCORES[N_VOCAB] = {0.0f, 0.0f, 0.0f, -1.0f, -2.0f, -3.0f, -1.5f, -2.5f};
static const int32_t TOKEN_TYPES[N_VOCAB] = {2, 3, 3, 1, 1, 1, 1, 1}; /* unknown, control, control, normal... */

static void layout_of(const spec *s, mg_buf *out, layout *L);

/* The valid model: llama, one block, 8 SentencePiece tokens; tensors in data
 * order, the last one Q8_0 (so that a bigger type runs past the end), the first
 * row of token_embd zero (the <unk> embedding; see the "one tensor too many"
 * case). */
static void base_spec(spec *s) {
    memset(s, 0, sizeof *s);
    s->version = 3;
    s->align = ALIGN;
    set_str(s, "general.architecture", "llama"); /* first: see the "no keys" case */
    set_str(s, "general.name", "pocketlm malformed-gguf base");
    set_u32(s, "general.alignment", ALIGN);
    set_u32(s, "llama.context_length", 64);
    set_u32(s, "llama.embedding_length", N_EMBD);
    set_u32(s, "llama.block_count", 1);
    set_u32(s, "llama.feed_forward_length", N_FF);
    set_u32(s, "llama.attention.head_count", N_HEAD);
    set_u32(s, "llama.attention.head_count_kv", N_HEAD_KV);
    set_f32(s, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    set_f32(s, "llama.rope.freq_base", 10000.0f);
    set_u32(s, "llama.rope.dimension_count", HEAD_DIM);
    set_str(s, "tokenizer.ggml.model", "llama");
    set_arr_str(s, "tokenizer.ggml.tokens", TOKENS, N_VOCAB);
    set_arr_f32(s, "tokenizer.ggml.scores", SCORES, N_VOCAB);
    set_arr_i32(s, "tokenizer.ggml.token_type", TOKEN_TYPES, N_VOCAB);
    set_u32(s, "tokenizer.ggml.bos_token_id", 1);
    set_u32(s, "tokenizer.ggml.eos_token_id", 2);
    set_bool(s, "tokenizer.ggml.add_bos_token", true); /* last: see the "one key too few" case */

    spec_t *emb = t_add(s, "token_embd.weight", PLM_TYPE_F32, N_EMBD, N_VOCAB, 0.0f, 0.5f);
    memset(emb->data.p, 0, N_EMBD * sizeof(float));
    t_add(s, "output_norm.weight", PLM_TYPE_F32, N_EMBD, 0, 1.0f, 0.1f);
    t_add(s, "blk.0.attn_norm.weight", PLM_TYPE_F32, N_EMBD, 0, 1.0f, 0.1f);
    t_add(s, "blk.0.attn_q.weight", PLM_TYPE_Q8_0, N_EMBD, N_HEAD * HEAD_DIM, 0.0f, 0.3f);
    t_add(s, "blk.0.attn_k.weight", PLM_TYPE_Q8_0, N_EMBD, N_HEAD_KV * HEAD_DIM, 0.0f, 0.3f);
    t_add(s, "blk.0.attn_v.weight", PLM_TYPE_F16, N_EMBD, N_HEAD_KV * HEAD_DIM, 0.0f, 0.3f);
    t_add(s, "blk.0.attn_output.weight", PLM_TYPE_F32, N_HEAD * HEAD_DIM, N_EMBD, 0.0f, 0.3f);
    t_add(s, "blk.0.ffn_norm.weight", PLM_TYPE_F16, N_EMBD, 0, 1.0f, 0.1f);
    t_add(s, "blk.0.ffn_gate.weight", PLM_TYPE_Q4_0, N_EMBD, N_FF, 0.0f, 0.3f);
    t_add(s, "blk.0.ffn_up.weight", PLM_TYPE_F16, N_EMBD, N_FF, 0.0f, 0.3f);
    t_add(s, "blk.0.ffn_down.weight", PLM_TYPE_Q8_0, N_FF, N_EMBD, 0.0f, 0.3f);

    /* The alignment cases need padding between the tensor infos and the data:
     * lengthen the model name until there is some. */
    for (;;) {
        mg_buf b = {0};
        layout L;
        layout_of(s, &b, &L);
        mg_buf_free(&b);
        if (L.data_start > L.infos_end) break;
        spec_kv *name = kv_find(s, "general.name");
        char longer[64];
        snprintf(longer, sizeof longer, "%.*s!", (int)(name->val.n - 8), (const char *)name->val.p + 8);
        set_str(s, "general.name", longer);
    }
}

/* ------------------------------------------------------------- serializing */

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

static void rec(layout *L, fkind k, int idx, int sub, size_t off, size_t len) {
    if (L->n == MAX_FIELDS) abort();
    L->f[L->n++] = (field){k, idx, sub, off, len};
}

static void layout_of(const spec *s, mg_buf *b, layout *L) {
    memset(L, 0, sizeof *L);
    rec(L, FK_MAGIC, 0, 0, b->n, 4);
    mg_put(b, "GGUF", 4);
    rec(L, FK_VERSION, 0, 0, b->n, 4);
    mg_u32(b, s->version);
    rec(L, FK_NT, 0, 0, b->n, 8);
    mg_u64(b, (uint64_t)s->n_t);
    rec(L, FK_NKV, 0, 0, b->n, 8);
    mg_u64(b, (uint64_t)s->n_kv);
    for (int i = 0; i < s->n_kv; i++) {
        const spec_kv *kv = &s->kv[i];
        rec(L, FK_KEYLEN, i, 0, b->n, 8);
        mg_u64(b, kv->key_len);
        rec(L, FK_KEY, i, 0, b->n, kv->key_len);
        mg_put(b, kv->key, kv->key_len);
        rec(L, FK_VTYPE, i, 0, b->n, 4);
        mg_u32(b, kv->type);
        if (kv->n_sub == 0) {
            rec(L, FK_VAL, i, 0, b->n, kv->val.n);
        } else {
            for (int j = 0; j < kv->n_sub; j++) {
                size_t end = j + 1 < kv->n_sub ? kv->sub[j + 1] : kv->val.n;
                rec(L, FK_VAL, i, j, b->n + kv->sub[j], end - kv->sub[j]);
            }
        }
        mg_put(b, kv->val.p, kv->val.n);
    }
    size_t cur = 0;
    for (int i = 0; i < s->n_t; i++) {
        L->pos[i] = align_up(cur, s->align);
        cur = L->pos[i] + s->t[i].data.n;
    }
    for (int i = 0; i < s->n_t; i++) {
        const spec_t *t = &s->t[i];
        rec(L, FK_TNAMELEN, i, 0, b->n, 8);
        mg_u64(b, t->name_len);
        rec(L, FK_TNAME, i, 0, b->n, t->name_len);
        mg_put(b, t->name, t->name_len);
        rec(L, FK_NDIMS, i, 0, b->n, 4);
        mg_u32(b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims && d < 4; d++) {
            rec(L, FK_DIM, i, (int)d, b->n, 8);
            mg_u64(b, t->ne[d]);
        }
        rec(L, FK_TTYPE, i, 0, b->n, 4);
        mg_u32(b, t->type);
        rec(L, FK_TOFF, i, 0, b->n, 8);
        mg_u64(b, t->off_set ? t->off : L->pos[i]);
    }
    L->infos_end = b->n;
    L->data_start = s->no_pad ? b->n : align_up(b->n, s->align);
    if (L->data_start > b->n) rec(L, FK_PAD, 0, 0, b->n, L->data_start - b->n);
    for (int i = 0; i < s->n_t; i++) {
        while (b->n < L->data_start + L->pos[i]) mg_u8(b, 0);
        rec(L, FK_DATA, i, 0, b->n, s->t[i].data.n);
        mg_put(b, s->t[i].data.p, s->t[i].data.n);
    }
}

static field *find_field(layout *L, fkind k, int idx, int sub) {
    for (int i = 0; i < L->n; i++)
        if (L->f[i].kind == k && L->f[i].idx == idx && L->f[i].sub == sub) return &L->f[i];
    abort();
}

size_t mg_base_model(mg_buf *b) {
    spec s;
    layout L;
    base_spec(&s);
    *b = (mg_buf){0};
    layout_of(&s, b, &L);
    spec_free(&s);
    return L.data_start;
}

/* ------------------------------------------------------------------- cases */

static const char *const CATEGORIES[] = {
    "valid",        /* the base model and its v2 twin: they must load and run */
    "truncation",   /* the file cut at the start and in the middle of every field */
    "header",       /* bad magic, bad or byte-swapped version */
    "counts",       /* absurd (and plausible but wrong) key and tensor counts */
    "lengths",      /* key, string, array and tensor-name lengths past the end or invalid */
    "overflow",     /* offset + size and shape products that overflow 64 bits */
    "alignment",    /* misaligned data offsets, bad general.alignment, unpadded data */
    "types",        /* unknown value, element and tensor types; bad bool; deep nesting */
    "duplicates",   /* duplicate keys and tensor names, overlapping tensor data */
    "size-mismatch",/* declared shape or type disagrees with the data or the model */
    "missing",      /* required keys and tensors absent */
    "nan-inf",      /* NaN and infinities in float metadata and norm weights */
    "metadata",     /* wrong value types, out-of-range or inconsistent hyperparameters and vocabulary */
};

const char *const *mg_categories(int *n) {
    *n = (int)(sizeof CATEGORIES / sizeof CATEGORIES[0]);
    return CATEGORIES;
}

static const char *category(const char *name) {
    for (size_t i = 0; i < sizeof CATEGORIES / sizeof CATEGORIES[0]; i++)
        if (strcmp(CATEGORIES[i], name) == 0) return CATEGORIES[i];
    abort();
}

/* Adds a case owning b's bytes. */
static void add_bytes(mg_cases *c, const char *cat, const char *slug, plm_status st, const char *needles, const char *defect, mg_buf *b) {
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->v = realloc(c->v, (size_t)c->cap * sizeof *c->v);
        if (!c->v) abort();
    }
    mg_case *k = &c->v[c->n++];
    memset(k, 0, sizeof *k);
    k->category = category(cat);
    snprintf(k->file, sizeof k->file, "%s-%s.gguf", cat, slug);
    k->status = st;
    snprintf(k->needles, sizeof k->needles, "%s", needles);
    snprintf(k->defect, sizeof k->defect, "%s", defect);
    k->data = b->p;
    k->size = b->n;
    *b = (mg_buf){0};
    for (int i = 0; i + 1 < c->n; i++)
        if (strcmp(c->v[i].file, k->file) == 0) {
            fprintf(stderr, "malformed_gguf: two cases named %s\n", k->file);
            abort();
        }
}

static void add_spec(mg_cases *c, const char *cat, const char *slug, plm_status st, const char *needles, const char *defect, spec *s) {
    mg_buf b = {0};
    layout L;
    layout_of(s, &b, &L);
    add_bytes(c, cat, slug, st, needles, defect, &b);
    spec_free(s);
}

/* The base file's bytes and layout, for byte-level cases. */
static void base_bytes(mg_buf *b, layout *L, spec *s) {
    base_spec(s);
    *b = (mg_buf){0};
    layout_of(s, b, L);
}

/* ---- valid ---- */

static void cases_valid(mg_cases *c) {
    spec s;
    base_spec(&s);
    add_spec(c, "valid", "base-v3", PLM_OK, "", "none: the base model every case derives from (GGUF v3)", &s);
    base_spec(&s);
    s.version = 2; /* v2 and v3 share the little-endian layout */
    add_spec(c, "valid", "base-v2", PLM_OK, "", "none: the base model as GGUF v2", &s);
}

/* ---- truncation ---- */

static const char *field_name(const spec *s, const field *f) {
    static const char *const val_parts[2][3] = {{"length", "bytes", ""}, {"element type", "count", "elements"}};
    switch (f->kind) {
    case FK_MAGIC: return "the magic";
    case FK_VERSION: return "the version";
    case FK_NT: return "the tensor count";
    case FK_NKV: return "the key count";
    case FK_KEYLEN: return S("the name length of key #%d ('%s')", f->idx, s->kv[f->idx].key);
    case FK_KEY: return S("the name of key #%d ('%s')", f->idx, s->kv[f->idx].key);
    case FK_VTYPE: return S("the value type of key '%s'", s->kv[f->idx].key);
    case FK_VAL:
        if (s->kv[f->idx].n_sub == 0) return S("the value of key '%s'", s->kv[f->idx].key);
        return S("the value (%s) of key '%s'", val_parts[s->kv[f->idx].n_sub == 3][f->sub], s->kv[f->idx].key);
    case FK_TNAMELEN: return S("the name length of tensor info #%d ('%s')", f->idx, s->t[f->idx].name);
    case FK_TNAME: return S("the name of tensor info #%d ('%s')", f->idx, s->t[f->idx].name);
    case FK_NDIMS: return S("the dimension count of tensor '%s'", s->t[f->idx].name);
    case FK_DIM: return S("dimension %d of tensor '%s'", f->sub, s->t[f->idx].name);
    case FK_TTYPE: return S("the type of tensor '%s'", s->t[f->idx].name);
    case FK_TOFF: return S("the data offset of tensor '%s'", s->t[f->idx].name);
    case FK_PAD: return "the alignment padding before the data";
    case FK_DATA: return S("the data of tensor '%s'", s->t[f->idx].name);
    }
    return "?";
}

/* What the parser must name when the file ends at `cut`. The header's counts
 * are checked first against the minimum encodings (13 bytes a key, 24 a tensor
 * info); then the reader fails inside the field the cut falls in, naming the
 * key (by number while its name is being read) or tensor; a cut before the
 * aligned data start, or inside a tensor's data, names that. */
static const char *truncation_needles(const spec *s, const layout *L, size_t cut) {
    if (cut == 0) return "empty file";
    if (cut < 4) return "not a GGUF file";
    if (cut < 24) return "GGUF header";
    if ((uint64_t)s->n_kv > (cut - 24) / 13) return S("header claims %d metadata keys", s->n_kv);
    if ((uint64_t)s->n_t > (cut - 24) / 24) return S("header claims %d tensors", s->n_t);
    if (cut >= L->data_start) {
        for (int i = 0; i < s->n_t; i++)
            if (L->data_start + L->pos[i] + s->t[i].data.n > cut)
                return S("tensor '%s': data offset|past the end of the file (%zu)", s->t[i].name, cut);
        abort();
    }
    for (int i = 0; i < L->n; i++) {
        const field *f = &L->f[i];
        if (cut < f->off || cut >= f->off + f->len) continue;
        switch (f->kind) {
        case FK_KEYLEN: case FK_KEY: return S("metadata key #%d", f->idx);
        case FK_VTYPE: case FK_VAL: return S("metadata key '%s'", s->kv[f->idx].key);
        case FK_TNAMELEN: case FK_TNAME: return S("tensor info #%d", f->idx);
        case FK_NDIMS: case FK_DIM: case FK_TTYPE: case FK_TOFF: return S("tensor '%s'", s->t[f->idx].name);
        case FK_PAD: return S("tensor data would start at offset %zu, past the end of the file (%zu)", L->data_start, cut);
        default: abort();
        }
    }
    abort();
}

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static void cases_truncation(mg_cases *c) {
    spec s;
    layout L;
    mg_buf b = {0};
    base_bytes(&b, &L, &s);
    size_t cuts[2 * MAX_FIELDS + 1];
    int n = 0;
    for (int i = 0; i < L.n; i++) {
        cuts[n++] = L.f[i].off;
        if (L.f[i].len >= 2) cuts[n++] = L.f[i].off + L.f[i].len / 2;
    }
    cuts[n++] = b.n - 1;
    qsort(cuts, (size_t)n, sizeof cuts[0], cmp_size);
    for (int i = 0; i < n; i++) {
        size_t cut = cuts[i];
        if ((i > 0 && cuts[i - 1] == cut) || cut >= b.n) continue;
        const field *f = NULL;
        for (int j = 0; j < L.n; j++)
            if (cut >= L.f[j].off && cut < L.f[j].off + L.f[j].len) f = &L.f[j];
        if (!f) abort();
        const char *where = cut == f->off ? "at the start of" : cut == b.n - 1 ? "at the last byte of" : "in the middle of";
        mg_buf t = {0};
        mg_put(&t, b.p, cut);
        add_bytes(c, "truncation", S("at-%05zu", cut), PLM_ERR_FORMAT, truncation_needles(&s, &L, cut),
                  S("file cut to %zu of %zu bytes, %s %s", cut, b.n, where, field_name(&s, f)), &t);
    }
    mg_buf_free(&b);
    spec_free(&s);
}

/* ---- header ---- */

static void cases_header(mg_cases *c) {
    static const struct { const char *slug, magic[5]; } magics[] = {
        {"magic-GGUG", "GGUG"}, {"magic-zero", {0, 0, 0, 0, 0}}, {"magic-lowercase", "gguf"}, {"magic-GGML", "GGML"},
    };
    for (size_t i = 0; i < sizeof magics / sizeof magics[0]; i++) {
        spec s;
        layout L;
        mg_buf b = {0};
        base_bytes(&b, &L, &s);
        memcpy(b.p, magics[i].magic, 4);
        add_bytes(c, "header", magics[i].slug, PLM_ERR_FORMAT, "not a GGUF file (bad magic at offset 0)",
                  S("magic %02x %02x %02x %02x instead of \"GGUF\"", (uint8_t)magics[i].magic[0], (uint8_t)magics[i].magic[1],
                    (uint8_t)magics[i].magic[2], (uint8_t)magics[i].magic[3]), &b);
        spec_free(&s);
    }
    static const struct { const char *slug; uint32_t v; const char *needles; } versions[] = {
        {"version-0", 0, "unsupported GGUF version 0 (2 and 3 are supported)"},
        {"version-1", 1, "GGUF version 1 is not supported"},
        {"version-4", 4, "unsupported GGUF version 4 "},
        {"version-max", 0xFFFFFFFFu, "unsupported GGUF version 4294967295"},
        {"version-3-big-endian", 0x03000000u, "big-endian files are not supported"},
        {"version-2-big-endian", 0x02000000u, "big-endian files are not supported"},
    };
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        spec s;
        layout L;
        mg_buf b = {0};
        base_bytes(&b, &L, &s);
        patch_u32(&b, 4, versions[i].v);
        add_bytes(c, "header", versions[i].slug, PLM_ERR_UNSUPPORTED, versions[i].needles, S("version field %" PRIu32, versions[i].v), &b);
        spec_free(&s);
    }
    mg_buf t = {0};
    mg_put(&t, "this is a text file, not a model\n", 33);
    add_bytes(c, "header", "text-file", PLM_ERR_FORMAT, "bad magic", "a text file", &t);
}

/* The base file with a 4- or 8-byte field (of the named key or tensor; sub: part
 * of the value or dimension) overwritten at byte rel of the field. */
static void patch_case(mg_cases *c, const char *cat, const char *slug, fkind k, const char *key_or_tensor, int sub, size_t rel,
                       int width, uint64_t v, plm_status st, const char *needles, const char *defect) {
    spec s;
    layout L;
    mg_buf b = {0};
    base_bytes(&b, &L, &s);
    int idx = 0;
    if (key_or_tensor) idx = k >= FK_TNAMELEN ? t_index(&s, key_or_tensor) : kv_index(&s, key_or_tensor);
    field *f = find_field(&L, k, idx, sub);
    if (width == 8) patch_u64(&b, f->off + rel, v);
    else patch_u32(&b, f->off + rel, (uint32_t)v);
    add_bytes(c, cat, slug, st, needles, defect, &b);
    spec_free(&s);
}

/* ---- counts ---- */

static void count_case(mg_cases *c, bool keys, uint64_t v, const char *slug, plm_status st, const char *needles, const char *defect) {
    spec s;
    layout L;
    mg_buf b = {0};
    base_bytes(&b, &L, &s);
    patch_u64(&b, find_field(&L, keys ? FK_NKV : FK_NT, 0, 0)->off, v);
    add_bytes(c, "counts", slug, st, needles, defect, &b);
    spec_free(&s);
}

static void cases_counts(mg_cases *c) {
    spec s;
    layout L;
    mg_buf b = {0};
    base_bytes(&b, &L, &s);
    uint64_t size = b.n, nkv = (uint64_t)s.n_kv, nt = (uint64_t)s.n_t;
    char last_key_c[64], last_t_c[64];
    snprintf(last_key_c, sizeof last_key_c, "%s", s.kv[s.n_kv - 1].key);
    snprintf(last_t_c, sizeof last_t_c, "%s", s.t[s.n_t - 1].name);
    mg_buf_free(&b);
    spec_free(&s);

    count_case(c, true, UINT64_MAX, "keys-max", PLM_ERR_FORMAT, "header claims 18446744073709551615 metadata keys", "key count 2^64-1");
    count_case(c, true, 1ull << 63, "keys-2p63", PLM_ERR_FORMAT, "header claims 9223372036854775808 metadata keys", "key count 2^63");
    count_case(c, true, (1ull << 32) + nkv, "keys-wrap32", PLM_ERR_FORMAT, "metadata keys, more than",
               "key count 2^32 + the real count (a 32-bit reader would see the real one)");
    count_case(c, true, (size - 24) / 13 + 1, "keys-just-implausible", PLM_ERR_FORMAT, "metadata keys, more than",
               "key count one more than the file could hold at 13 bytes a key");
    count_case(c, false, UINT64_MAX, "tensors-max", PLM_ERR_FORMAT, "header claims 18446744073709551615 tensors", "tensor count 2^64-1");
    count_case(c, false, (1ull << 32) + nt, "tensors-wrap32", PLM_ERR_FORMAT, "tensors, more than", "tensor count 2^32 + the real count");
    count_case(c, false, (size - 24) / 24 + 1, "tensors-just-implausible", PLM_ERR_FORMAT, "tensors, more than",
               "tensor count one more than the file could hold at 24 bytes a tensor info");
    /* No keys: the first key (general.architecture, a string: type id 8) is read as tensor info #0, its type as n_dims. */
    count_case(c, true, 0, "keys-zero", PLM_ERR_FORMAT, "tensor 'general.architecture' has 8 dimensions",
               "key count 0: the keys are read as tensor infos");
    /* One key too few: the last key (a bool, type id 7) becomes tensor info #0. */
    count_case(c, true, nkv - 1, "keys-one-too-few", PLM_ERR_FORMAT, S("tensor '%s' has 7 dimensions", last_key_c),
               "key count one less than the keys present");
    /* One key too many: tensor info #0 (token_embd.weight, 2 dims) is read as a key of type 2 (u16) whose value is
     * the low half of ne0; the next name length then straddles ne0 and ne1 and is enormous. */
    count_case(c, true, nkv + 1, "keys-one-too-many", PLM_ERR_FORMAT, "tensor info #0|runs past the end of the file",
               "key count one more than the keys present");
    /* No tensors: the metadata is fine, the model has no weights. */
    count_case(c, false, 0, "tensors-zero", PLM_ERR_FORMAT, "required tensor 'token_embd.weight' is missing", "tensor count 0");
    /* One tensor too many: the extra info is read from the zero padding and zero <unk> embedding: a name of length 0. */
    count_case(c, false, nt + 1, "tensors-one-too-many", PLM_ERR_FORMAT, S("tensor #%d at offset|invalid name (length 0)", (int)nt),
               "tensor count one more than the tensor infos present");
    /* Dimension counts outside 1..4 (GGUF allows at most 4). */
    patch_case(c, "counts", "dimensions-5", FK_NDIMS, "blk.0.attn_q.weight", 0, 0, 4, 5, PLM_ERR_FORMAT,
               "tensor 'blk.0.attn_q.weight' has 5 dimensions (1 to 4 supported)", "blk.0.attn_q.weight claims 5 dimensions");
    patch_case(c, "counts", "dimensions-0", FK_NDIMS, "output_norm.weight", 0, 0, 4, 0, PLM_ERR_FORMAT,
               "tensor 'output_norm.weight' has 0 dimensions (1 to 4 supported)", "output_norm.weight claims 0 dimensions");
    patch_case(c, "counts", "dimensions-max", FK_NDIMS, "token_embd.weight", 0, 0, 4, 0xFFFFFFFFu, PLM_ERR_FORMAT,
               "tensor 'token_embd.weight' has 4294967295 dimensions (1 to 4 supported)", "token_embd.weight claims 2^32-1 dimensions");
    /* (One tensor too few is left out: the data start moves back and what fails then depends on which weight
     * bytes the norms are read from.) */
}

/* ---- lengths ---- */

/* Bytes of the base file after byte rel of the field. */
static uint64_t remaining_after(fkind k, const char *key_or_tensor, int sub, size_t rel) {
    spec s;
    layout L;
    mg_buf b = {0};
    base_bytes(&b, &L, &s);
    int idx = k >= FK_TNAMELEN ? t_index(&s, key_or_tensor) : kv_index(&s, key_or_tensor);
    uint64_t r = b.n - (find_field(&L, k, idx, sub)->off + rel);
    mg_buf_free(&b);
    spec_free(&s);
    return r;
}

static void cases_lengths(mg_cases *c) {
    const char *P = "runs past the end of the file";
    patch_case(c, "lengths", "key-length-max", FK_KEYLEN, "general.architecture", 0, 0, 8, UINT64_MAX, PLM_ERR_FORMAT,
               S("metadata key #0: string of length 18446744073709551615|%s", P), "name length of key #0 is 2^64-1");
    patch_case(c, "lengths", "key-length-past-end", FK_KEYLEN, "llama.block_count", 0, 0, 8,
               remaining_after(FK_KEYLEN, "llama.block_count", 0, 8) + 1, PLM_ERR_FORMAT,
               S("metadata key #%d|%s", 5, P), "name length of key #5 one byte more than the file holds");
    patch_case(c, "lengths", "key-length-zero", FK_KEYLEN, "llama.context_length", 0, 0, 8, 0, PLM_ERR_FORMAT,
               "metadata key #3 at offset|invalid name (length 0)", "name length of key #3 is 0");
    patch_case(c, "lengths", "key-length-2000", FK_KEYLEN, "general.architecture", 0, 0, 8, 2000, PLM_ERR_FORMAT,
               "metadata key #0 at offset|invalid name (length 2000)", "name length of key #0 is 2000 (names are at most 1024 bytes)");
    {
        spec s;
        base_spec(&s);
        spec_kv *kv = kv_find(&s, "general.name");
        kv->key[3] = 0; /* "gen\0ral.name": same length */
        add_spec(c, "lengths", "key-with-nul", PLM_ERR_FORMAT, "metadata key #1 at offset|invalid name (length 12)",
                 "name of key #1 holds a NUL byte", &s);
    }
    patch_case(c, "lengths", "string-length-max", FK_VAL, "general.name", 0, 0, 8, UINT64_MAX, PLM_ERR_FORMAT,
               S("metadata key 'general.name': string of length 18446744073709551615|%s", P), "length of the string value of general.name is 2^64-1");
    patch_case(c, "lengths", "string-length-past-end", FK_VAL, "general.name", 0, 0, 8, remaining_after(FK_VAL, "general.name", 0, 8) + 1,
               PLM_ERR_FORMAT, S("metadata key 'general.name'|%s", P), "length of the string value of general.name one byte past the end");
    {
        /* tokens[3]: after the array header and three strings. */
        size_t rel = 12;
        for (int i = 0; i < 3; i++) rel += 8 + strlen(TOKENS[i]);
        patch_case(c, "lengths", "token-length-past-end", FK_VAL, "tokenizer.ggml.tokens", 0, rel, 8, 1ull << 40, PLM_ERR_FORMAT,
                   S("metadata key 'tokenizer.ggml.tokens': string of length 1099511627776|%s", P),
                   "length of tokenizer.ggml.tokens[3] is 2^40");
    }
    patch_case(c, "lengths", "array-count-max", FK_VAL, "tokenizer.ggml.tokens", 1, 0, 8, UINT64_MAX, PLM_ERR_FORMAT,
               "metadata key 'tokenizer.ggml.tokens': array at offset|claims 18446744073709551615 elements of type string",
               "element count of tokenizer.ggml.tokens is 2^64-1");
    patch_case(c, "lengths", "array-count-past-end", FK_VAL, "tokenizer.ggml.scores", 1, 0, 8,
               remaining_after(FK_VAL, "tokenizer.ggml.scores", 1, 8) / 4 + 1, PLM_ERR_FORMAT,
               "metadata key 'tokenizer.ggml.scores': array at offset|elements of type f32 but only",
               "element count of tokenizer.ggml.scores one more f32 than the file holds");
    patch_case(c, "lengths", "tensor-name-length-max", FK_TNAMELEN, "token_embd.weight", 0, 0, 8, UINT64_MAX, PLM_ERR_FORMAT,
               S("tensor info #0: string of length 18446744073709551615|%s", P), "name length of tensor info #0 is 2^64-1");
    patch_case(c, "lengths", "tensor-name-length-past-end", FK_TNAMELEN, "blk.0.attn_v.weight", 0, 0, 8,
               remaining_after(FK_TNAMELEN, "blk.0.attn_v.weight", 0, 8) + 1, PLM_ERR_FORMAT, S("tensor info #5|%s", P),
               "name length of tensor info #5 one byte past the end");
    patch_case(c, "lengths", "tensor-name-length-zero", FK_TNAMELEN, "blk.0.attn_norm.weight", 0, 0, 8, 0, PLM_ERR_FORMAT,
               "tensor #2 at offset|invalid name (length 0)", "name length of tensor info #2 is 0");
    patch_case(c, "lengths", "tensor-name-length-1500", FK_TNAMELEN, "token_embd.weight", 0, 0, 8, 1500, PLM_ERR_FORMAT,
               "tensor #0 at offset|invalid name (length 1500)", "name length of tensor info #0 is 1500");
}

/* ---- overflow ---- */

static void cases_overflow(mg_cases *c) {
    const char *past = "is past the end of the file";
    spec s;
    layout L;
    mg_buf b = {0};
    base_bytes(&b, &L, &s);
    uint64_t data_start = L.data_start;
    mg_buf_free(&b);
    spec_free(&s);

    base_spec(&s);
    t_find(&s, "blk.0.ffn_down.weight")->off_set = true;
    t_find(&s, "blk.0.ffn_down.weight")->off = 0ull - 32;
    add_spec(c, "overflow", "offset-wraps", PLM_ERR_FORMAT, S("tensor 'blk.0.ffn_down.weight': data offset|%s", past),
             "data offset of blk.0.ffn_down.weight is 2^64-32: data start + offset wraps", &s);
    base_spec(&s);
    t_find(&s, "blk.0.attn_q.weight")->off_set = true;
    t_find(&s, "blk.0.attn_q.weight")->off = (0ull - data_start - 64) & ~(uint64_t)31;
    add_spec(c, "overflow", "end-wraps", PLM_ERR_FORMAT, S("tensor 'blk.0.attn_q.weight': data offset|%s", past),
             "blk.0.attn_q.weight starts within 64 bytes of 2^64: start + size wraps", &s);
    base_spec(&s);
    t_find(&s, "output_norm.weight")->off_set = true;
    t_find(&s, "output_norm.weight")->off = 1ull << 40;
    add_spec(c, "overflow", "offset-far", PLM_ERR_FORMAT, S("tensor 'output_norm.weight': data offset|%s", past),
             "data offset of output_norm.weight is 2^40", &s);
    base_spec(&s);
    t_shape(t_find(&s, "blk.0.attn_output.weight"), 2, 1ull << 32, 1ull << 32, 1);
    add_spec(c, "overflow", "elements-wrap", PLM_ERR_FORMAT, "tensor 'blk.0.attn_output.weight' has an invalid shape (dimension 1 is 4294967296)",
             "shape 2^32 x 2^32: the element count wraps", &s);
    base_spec(&s);
    t_shape(t_find(&s, "blk.0.attn_output.weight"), 2, 32, 1ull << 58, 1);
    add_spec(c, "overflow", "elements-over-int64", PLM_ERR_FORMAT, "tensor 'blk.0.attn_output.weight' has an invalid shape (dimension 1 is 288230376151711744)",
             "shape 32 x 2^58: 2^63 elements, more than int64", &s);
    base_spec(&s);
    t_shape(t_find(&s, "blk.0.attn_output.weight"), 2, 0ull - 32, 32, 1);
    add_spec(c, "overflow", "dimension-negative", PLM_ERR_FORMAT, "tensor 'blk.0.attn_output.weight' has an invalid shape (dimension 0 is 18446744073709551584)",
             "ne0 = 2^64-32 (-32 as int64)", &s);
    base_spec(&s);
    t_shape(t_find(&s, "blk.0.attn_output.weight"), 2, 32, 0, 1);
    add_spec(c, "overflow", "dimension-zero", PLM_ERR_FORMAT, "tensor 'blk.0.attn_output.weight' has an invalid shape (dimension 1 is 0)",
             "ne1 = 0", &s);
    base_spec(&s);
    t_shape(t_find(&s, "blk.0.attn_output.weight"), 1, 1ull << 62, 1, 1);
    add_spec(c, "overflow", "row-bytes-wrap", PLM_ERR_FORMAT, "tensor 'blk.0.attn_output.weight' size overflows",
             "one F32 row of 2^62 elements: 2^64 bytes, wraps to 0", &s);
    base_spec(&s);
    t_shape(t_find(&s, "blk.0.attn_output.weight"), 2, 32, 1ull << 57, 1);
    add_spec(c, "overflow", "tensor-bytes-wrap", PLM_ERR_FORMAT, "tensor 'blk.0.attn_output.weight' size overflows",
             "F32 shape 32 x 2^57: 2^62 elements fit, 2^64 bytes wrap", &s);
}

/* ---- alignment ---- */

static void alignment_key(mg_cases *c, const char *slug, uint32_t type, uint64_t v, const char *str, const char *defect) {
    spec s;
    base_spec(&s);
    spec_kv *kv = kv_reset(&s, "general.alignment", type);
    if (type == PLM_GGUF_STRING) str_val(kv, str, strlen(str));
    else if (type == PLM_GGUF_U64) mg_u64(&kv->val, v);
    else mg_u32(&kv->val, (uint32_t)v);
    add_spec(c, "alignment", slug, PLM_ERR_FORMAT, "general.alignment must be a u32 power of two up to 2^20", defect, &s);
}

static void cases_alignment(mg_cases *c) {
    spec s;
    layout L;
    mg_buf b = {0};
    base_spec(&s);
    spec_t *t = t_find(&s, "blk.0.attn_k.weight");
    layout_of(&s, &b, &L);
    t->off_set = true;
    t->off = L.pos[t - s.t] + 4;
    mg_buf_free(&b);
    add_spec(c, "alignment", "offset-plus-4", PLM_ERR_FORMAT,
             S("tensor 'blk.0.attn_k.weight' data offset %" PRIu64 " is not a multiple of the alignment 32", t->off),
             "data offset of blk.0.attn_k.weight moved by 4 bytes", &s);
    base_spec(&s);
    s.t[0].off_set = true;
    s.t[0].off = 1;
    add_spec(c, "alignment", "offset-1", PLM_ERR_FORMAT, "tensor 'token_embd.weight' data offset 1 is not a multiple of the alignment 32",
             "data offset of token_embd.weight is 1", &s);
    alignment_key(c, "key-24", PLM_GGUF_U32, 24, NULL, "general.alignment = 24, not a power of two");
    alignment_key(c, "key-0", PLM_GGUF_U32, 0, NULL, "general.alignment = 0");
    alignment_key(c, "key-2p21", PLM_GGUF_U32, 1u << 21, NULL, "general.alignment = 2^21, more than 2^20");
    alignment_key(c, "key-u64", PLM_GGUF_U64, 32, NULL, "general.alignment is a u64");
    alignment_key(c, "key-string", PLM_GGUF_STRING, 0, "32", "general.alignment is the string \"32\"");

    /* Declared 64 while the file is laid out for 32: the first tensor at an odd multiple of 32 is misaligned. */
    base_spec(&s);
    b = (mg_buf){0};
    layout_of(&s, &b, &L);
    mg_buf_free(&b);
    int odd = -1;
    for (int i = 0; i < s.n_t && odd < 0; i++)
        if (L.pos[i] % 64) odd = i;
    if (odd < 0) abort();
    const char *needle = S("tensor '%s' data offset %zu is not a multiple of the alignment 64", s.t[odd].name, L.pos[odd]);
    set_u32(&s, "general.alignment", 64);
    add_spec(c, "alignment", "key-64-layout-32", PLM_ERR_FORMAT, needle, "general.alignment = 64 in a file laid out for 32", &s);

    /* 2^20, the largest alignment accepted: the offsets are checked (in tensor order) before the data start. */
    base_spec(&s);
    needle = S("tensor '%s' data offset %zu is not a multiple of the alignment 1048576", s.t[1].name, L.pos[1]);
    set_u32(&s, "general.alignment", 1u << 20);
    add_spec(c, "alignment", "key-2p20", PLM_ERR_FORMAT, needle, "general.alignment = 2^20 in a file laid out for 32", &s);

    /* No padding before the data: everything is read from too early and the last tensor runs past the end. */
    base_spec(&s);
    s.no_pad = true;
    add_spec(c, "alignment", "data-unpadded", PLM_ERR_FORMAT, "tensor 'blk.0.ffn_down.weight': data offset|past the end of the file",
             "data section not padded to the alignment after the tensor infos", &s);
}

/* ---- types ---- */

static void cases_types(mg_cases *c) {
    patch_case(c, "types", "value-type-13", FK_VTYPE, "llama.block_count", 0, 0, 4, 13, PLM_ERR_FORMAT,
               "metadata key 'llama.block_count' at offset|has unknown value type 13", "value type id 13 (types are 0 to 12)");
    patch_case(c, "types", "value-type-max", FK_VTYPE, "general.name", 0, 0, 4, 0xFFFFFFFFu, PLM_ERR_FORMAT,
               "metadata key 'general.name' at offset|has unknown value type 4294967295", "value type id 2^32-1");
    patch_case(c, "types", "element-type-13", FK_VAL, "tokenizer.ggml.scores", 0, 0, 4, 13, PLM_ERR_FORMAT,
               "metadata key 'tokenizer.ggml.scores': array at offset|has unknown element type 13", "array element type id 13");
    patch_case(c, "types", "element-type-max", FK_VAL, "tokenizer.ggml.tokens", 0, 0, 4, 0xFFFFFFFFu, PLM_ERR_FORMAT,
               "metadata key 'tokenizer.ggml.tokens': array at offset|has unknown element type 4294967295", "array element type id 2^32-1");
    static const struct { const char *slug; uint32_t type; const char *what; } ttypes[] = {
        {"tensor-type-99", 99, "type id 99, unknown"},
        {"tensor-type-4", 4, "type id 4 (ggml's removed Q4_2)"},
        {"tensor-type-16", 16, "type id 16 (IQ2_XXS, not supported)"},
        {"tensor-type-max", 0xFFFFFFFFu, "type id 2^32-1"},
        {"tensor-type-q8_k", PLM_TYPE_Q8_K, "Q8_K, an activation-only type, as a weight"},
        {"tensor-type-q8_1", PLM_TYPE_Q8_1, "Q8_1, an activation-only type, as a weight"},
    };
    for (size_t i = 0; i < sizeof ttypes / sizeof ttypes[0]; i++)
        patch_case(c, "types", ttypes[i].slug, FK_TTYPE, "blk.0.attn_q.weight", 0, 0, 4, ttypes[i].type, PLM_ERR_UNSUPPORTED,
                   S("tensor 'blk.0.attn_q.weight' has unsupported type id %" PRIu32, ttypes[i].type),
                   S("blk.0.attn_q.weight has %s", ttypes[i].what));
    {
        spec s;
        layout L;
        mg_buf b = {0};
        base_bytes(&b, &L, &s);
        b.p[find_field(&L, FK_VAL, kv_index(&s, "tokenizer.ggml.add_bos_token"), 0)->off] = 2;
        add_bytes(c, "types", "bool-2", PLM_ERR_FORMAT, "metadata key 'tokenizer.ggml.add_bos_token': bool byte 2 at offset|is not 0 or 1",
                  "bool value byte 2", &b);
        spec_free(&s);
    }
    {
        spec s;
        base_spec(&s);
        spec_kv *kv = kv_reset(&s, "general.nested", PLM_GGUF_ARRAY);
        for (int d = 0; d < 20; d++) {
            mg_u32(&kv->val, PLM_GGUF_ARRAY);
            mg_u64(&kv->val, 1);
        }
        mg_u32(&kv->val, PLM_GGUF_U8);
        mg_u64(&kv->val, 0);
        add_spec(c, "types", "arrays-nested-20", PLM_ERR_FORMAT, "metadata key 'general.nested': arrays nested deeper than 8",
                 "an array of arrays nested 20 deep", &s);
    }
}

/* ---- duplicates ---- */

static void cases_duplicates(mg_cases *c) {
    spec s;
    base_spec(&s);
    t_rename(t_find(&s, "blk.0.attn_k.weight"), "blk.0.attn_q.weight");
    add_spec(c, "duplicates", "tensor-name-next", PLM_ERR_FORMAT, "tensor 'blk.0.attn_q.weight' appears twice",
             "blk.0.attn_k.weight renamed blk.0.attn_q.weight, the tensor before it", &s);
    base_spec(&s);
    t_rename(t_find(&s, "blk.0.ffn_down.weight"), "token_embd.weight");
    add_spec(c, "duplicates", "tensor-name-first-and-last", PLM_ERR_FORMAT, "tensor 'token_embd.weight' appears twice",
             "the last tensor named like the first", &s);
    base_spec(&s);
    str_val(kv_append_dup(&s, "general.name", PLM_GGUF_STRING), "again", 5);
    add_spec(c, "duplicates", "key-same-type", PLM_ERR_FORMAT, "metadata key 'general.name' appears twice", "general.name twice", &s);
    base_spec(&s);
    str_val(kv_append_dup(&s, "llama.block_count", PLM_GGUF_STRING), "1", 1);
    add_spec(c, "duplicates", "key-other-type", PLM_ERR_FORMAT, "metadata key 'llama.block_count' appears twice",
             "llama.block_count twice, the second a string", &s);
    {
        mg_buf b = {0};
        layout L;
        base_spec(&s);
        b = (mg_buf){0};
        layout_of(&s, &b, &L);
        mg_buf_free(&b);
        spec_t *t = t_find(&s, "blk.0.attn_norm.weight");
        t->off_set = true;
        t->off = L.pos[1];
        add_spec(c, "duplicates", "data-shared", PLM_ERR_FORMAT, "tensors 'output_norm.weight' and 'blk.0.attn_norm.weight' overlap",
                 "blk.0.attn_norm.weight declared at the data offset of output_norm.weight", &s);
        base_spec(&s);
        t = t_find(&s, "blk.0.ffn_up.weight");
        t->off_set = true;
        t->off = L.pos[t_index(&s, "blk.0.ffn_gate.weight")] + 32;
        add_spec(c, "duplicates", "data-overlap", PLM_ERR_FORMAT, "tensors 'blk.0.ffn_gate.weight' and 'blk.0.ffn_up.weight' overlap",
                 "blk.0.ffn_up.weight declared 32 bytes into blk.0.ffn_gate.weight", &s);
    }
}

/* ---- size mismatch ---- */

static void cases_size(mg_cases *c) {
    spec s;
    base_spec(&s);
    t_find(&s, "blk.0.attn_v.weight")->type = PLM_TYPE_F32;
    add_spec(c, "size-mismatch", "type-f16-as-f32", PLM_ERR_FORMAT, "tensors 'blk.0.attn_v.weight' and 'blk.0.attn_output.weight' overlap",
             "blk.0.attn_v.weight holds F16 data but says F32 (twice the bytes)", &s);
    base_spec(&s);
    t_find(&s, "blk.0.attn_q.weight")->type = PLM_TYPE_F32;
    add_spec(c, "size-mismatch", "type-q8_0-as-f32", PLM_ERR_FORMAT, "tensors 'blk.0.attn_q.weight' and 'blk.0.attn_k.weight' overlap",
             "blk.0.attn_q.weight holds Q8_0 data but says F32", &s);
    base_spec(&s);
    t_find(&s, "blk.0.ffn_down.weight")->type = PLM_TYPE_F16;
    add_spec(c, "size-mismatch", "type-last-bigger", PLM_ERR_FORMAT, "tensor 'blk.0.ffn_down.weight': data offset|past the end of the file",
             "the last tensor holds Q8_0 data but says F16", &s);
    base_spec(&s);
    t_find(&s, "blk.0.ffn_down.weight")->ne[1] = 2 * N_EMBD;
    add_spec(c, "size-mismatch", "shape-last-bigger", PLM_ERR_FORMAT, "tensor 'blk.0.ffn_down.weight': data offset|past the end of the file",
             "the last tensor declares twice its rows", &s);
    base_spec(&s);
    t_shape(t_find(&s, "output_norm.weight"), 1, 2 * N_EMBD, 1, 1);
    add_spec(c, "size-mismatch", "shape-vector-bigger", PLM_ERR_FORMAT, "tensors 'output_norm.weight' and 'blk.0.attn_norm.weight' overlap",
             "output_norm.weight declares 64 elements, holds 32", &s);
    base_spec(&s);
    t_shape(t_find(&s, "blk.0.attn_q.weight"), 3, N_EMBD, N_EMBD, 2);
    add_spec(c, "size-mismatch", "shape-extra-dimension", PLM_ERR_FORMAT, "tensors 'blk.0.attn_q.weight' and 'blk.0.attn_k.weight' overlap",
             "blk.0.attn_q.weight declares a third dimension of 2", &s);
    base_spec(&s);
    t_shape(t_find(&s, "token_embd.weight"), 2, N_EMBD, N_VOCAB + 1, 1);
    add_spec(c, "size-mismatch", "shape-embd-more-rows", PLM_ERR_FORMAT, "tensors 'token_embd.weight' and 'output_norm.weight' overlap",
             "token_embd.weight declares 9 rows, holds 8", &s);
    base_spec(&s);
    t_shape(t_find(&s, "blk.0.attn_q.weight"), 2, 48, N_EMBD, 1);
    add_spec(c, "size-mismatch", "row-not-blocks", PLM_ERR_FORMAT,
             "tensor 'blk.0.attn_q.weight' of type Q8_0 has rows of 48 elements, not a multiple of the block size 32",
             "Q8_0 rows of 48 elements", &s);
    base_spec(&s);
    t_shape(t_find(&s, "blk.0.ffn_gate.weight"), 2, 16, 2 * N_FF, 1);
    add_spec(c, "size-mismatch", "row-not-blocks-q4_0", PLM_ERR_FORMAT,
             "tensor 'blk.0.ffn_gate.weight' of type Q4_0 has rows of 16 elements, not a multiple of the block size 32",
             "Q4_0 rows of 16 elements", &s);
    /* The data agree with the declared shape, the model does not. */
    base_spec(&s);
    t_shape(t_find(&s, "blk.0.attn_k.weight"), 2, 2 * N_EMBD, N_HEAD_KV * HEAD_DIM / 2, 1);
    add_spec(c, "size-mismatch", "model-shape-reshaped", PLM_ERR_FORMAT,
             "tensor 'blk.0.attn_k.weight' has shape [64, 8, 1, 1], expected [32, 16]", "blk.0.attn_k.weight declared 64 x 8 (same bytes)", &s);
    base_spec(&s);
    t_shape(t_find(&s, "blk.0.attn_v.weight"), 3, N_EMBD, 8, 2);
    add_spec(c, "size-mismatch", "model-shape-3d", PLM_ERR_FORMAT,
             "tensor 'blk.0.attn_v.weight' has shape [32, 8, 2, 1], expected [32, 16]", "blk.0.attn_v.weight declared 32 x 8 x 2 (same bytes)", &s);
    base_spec(&s);
    t_shape(t_find(&s, "blk.0.attn_norm.weight"), 1, N_EMBD / 2, 1, 1);
    add_spec(c, "size-mismatch", "model-vector-short", PLM_ERR_FORMAT,
             "tensor 'blk.0.attn_norm.weight' has 16 x 1 elements, expected a vector of 32", "blk.0.attn_norm.weight declares 16 elements", &s);
    base_spec(&s);
    t_shape(t_find(&s, "token_embd.weight"), 2, N_EMBD, N_VOCAB - 1, 1);
    add_spec(c, "size-mismatch", "model-embd-fewer-rows", PLM_ERR_FORMAT, "the vocabulary has 8 tokens but token_embd.weight has 7 rows",
             "token_embd.weight declares 7 rows for 8 tokens", &s);
    base_spec(&s);
    set_u32(&s, "llama.embedding_length", 2 * N_EMBD);
    add_spec(c, "size-mismatch", "model-embedding-length", PLM_ERR_FORMAT,
             "tensor 'token_embd.weight' has shape [32, 8, 1, 1], expected [64, 8]", "llama.embedding_length 64, tensors of 32", &s);
    base_spec(&s);
    set_u32(&s, "llama.feed_forward_length", 48);
    add_spec(c, "size-mismatch", "model-feed-forward-length", PLM_ERR_FORMAT,
             "tensor 'blk.0.ffn_gate.weight' has shape [32, 32, 1, 1], expected [32, 48]", "llama.feed_forward_length 48, tensors of 32", &s);
    base_spec(&s);
    set_u32(&s, "llama.attention.head_count_kv", N_HEAD);
    add_spec(c, "size-mismatch", "model-head-count-kv", PLM_ERR_FORMAT,
             "tensor 'blk.0.attn_k.weight' has shape [32, 16, 1, 1], expected [32, 32]", "llama.attention.head_count_kv 4, tensors for 2", &s);
}

/* ---- missing ---- */

static void cases_missing(mg_cases *c) {
    static const char *const keys[] = {
        "general.architecture", "llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
        "llama.attention.head_count", "tokenizer.ggml.model", "tokenizer.ggml.tokens",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        spec s;
        base_spec(&s);
        kv_remove(&s, keys[i]);
        add_spec(c, "missing", S("key-%s", keys[i]), PLM_ERR_FORMAT, S("required metadata key '%s' is missing", keys[i]),
                 S("no %s", keys[i]), &s);
    }
    spec s;
    base_spec(&s);
    kv_remove(&s, "tokenizer.ggml.scores");
    add_spec(c, "missing", "key-tokenizer.ggml.scores", PLM_ERR_FORMAT, "tokenizer.ggml.scores is missing",
             "no tokenizer.ggml.scores in a SentencePiece vocabulary", &s);
    base_spec(&s);
    int n = s.n_t;
    char names[MAX_T][64];
    for (int i = 0; i < n; i++) snprintf(names[i], sizeof names[i], "%s", s.t[i].name);
    spec_free(&s);
    for (int i = 0; i < n; i++) {
        base_spec(&s);
        t_remove(&s, names[i]);
        add_spec(c, "missing", S("tensor-%s", names[i]), PLM_ERR_FORMAT, S("required tensor '%s' is missing", names[i]),
                 S("no tensor %s", names[i]), &s);
    }
    base_spec(&s);
    set_u32(&s, "llama.block_count", 2);
    add_spec(c, "missing", "tensor-second-layer", PLM_ERR_FORMAT, "required tensor 'blk.1.attn_norm.weight' is missing",
             "llama.block_count 2 with the tensors of one block", &s);
}

/* ---- nan-inf ---- */

static void float_key(mg_cases *c, const char *slug, const char *key, bool f64, double v, const char *what) {
    spec s;
    base_spec(&s);
    if (f64) set_f64(&s, key, v);
    else set_f32(&s, key, (float)v);
    add_spec(c, "nan-inf", slug, PLM_ERR_FORMAT, S("metadata key '%s' is not a finite float", key), S("%s = %s", key, what), &s);
}

/* Element i of a float vector tensor set to the given bits (F32 or F16). */
static void vector_bits(mg_cases *c, const char *slug, const char *name, int i, uint32_t bits, const char *what) {
    spec s;
    base_spec(&s);
    spec_t *t = t_find(&s, name);
    if (t->type == PLM_TYPE_F32) memcpy(t->data.p + 4 * i, &bits, 4);
    else {
        uint16_t h = (uint16_t)bits;
        memcpy(t->data.p + 2 * i, &h, 2);
    }
    add_spec(c, "nan-inf", slug, PLM_ERR_FORMAT, S("tensor '%s' element %d is not finite", name, i), S("%s[%d] = %s", name, i, what), &s);
}

static void cases_nan_inf(mg_cases *c) {
    const char *eps = "llama.attention.layer_norm_rms_epsilon", *base = "llama.rope.freq_base";
    float_key(c, "rms-eps-nan", eps, false, NAN, "NaN (f32)");
    float_key(c, "rms-eps-inf", eps, false, INFINITY, "+Inf (f32)");
    float_key(c, "rms-eps-minus-inf", eps, false, -INFINITY, "-Inf (f32)");
    float_key(c, "rms-eps-f64-nan", eps, true, NAN, "NaN (f64)");
    float_key(c, "rms-eps-f64-huge", eps, true, 1e300, "1e300 (f64, finite but not as a float)");
    float_key(c, "rope-base-nan", base, false, NAN, "NaN (f32)");
    float_key(c, "rope-base-inf", base, false, INFINITY, "+Inf (f32)");
    float_key(c, "rope-base-minus-inf", base, false, -INFINITY, "-Inf (f32)");
    float_key(c, "rope-base-f64-inf", base, true, INFINITY, "+Inf (f64)");
    float_key(c, "rope-attn-factor-nan", "llama.rope.scaling.attn_factor", false, NAN, "NaN (f32)");
    {
        spec s;
        base_spec(&s);
        set_str(&s, "llama.rope.scaling.type", "linear");
        set_f32(&s, "llama.rope.scaling.factor", NAN);
        add_spec(c, "nan-inf", "rope-scaling-factor-nan", PLM_ERR_FORMAT, "metadata key 'llama.rope.scaling.factor' is not a finite float",
                 "linear RoPE scaling with factor NaN", &s);
        base_spec(&s);
        float scores[N_VOCAB];
        memcpy(scores, SCORES, sizeof scores);
        scores[4] = NAN;
        set_arr_f32(&s, "tokenizer.ggml.scores", scores, N_VOCAB);
        add_spec(c, "nan-inf", "token-score-nan", PLM_ERR_FORMAT, "tokenizer.ggml.scores[4] is NaN", "tokenizer.ggml.scores[4] = NaN", &s);
    }
    vector_bits(c, "output-norm-nan", "output_norm.weight", 5, 0x7FC00000u, "NaN (F32)");
    vector_bits(c, "attn-norm-inf", "blk.0.attn_norm.weight", 0, 0x7F800000u, "+Inf (F32)");
    vector_bits(c, "attn-norm-minus-inf", "blk.0.attn_norm.weight", 31, 0xFF800000u, "-Inf (F32)");
    vector_bits(c, "ffn-norm-f16-inf", "blk.0.ffn_norm.weight", 31, 0x7C00u, "+Inf (F16)");
    vector_bits(c, "ffn-norm-f16-nan", "blk.0.ffn_norm.weight", 7, 0x7E00u, "NaN (F16)");
}

/* ---- metadata ---- */

static void cases_metadata(mg_cases *c) {
    spec s;
#define META(slug, st, needles, defect, mutate) \
    do {                                        \
        base_spec(&s);                          \
        mutate;                                 \
        add_spec(c, "metadata", slug, st, needles, defect, &s); \
    } while (0)
    META("architecture-mamba", PLM_ERR_UNSUPPORTED, "architecture 'mamba' is not supported (supported: llama", "general.architecture = mamba",
         set_str(&s, "general.architecture", "mamba"));
    META("architecture-u32", PLM_ERR_FORMAT, "metadata key 'general.architecture' should be a string but is a u32",
         "general.architecture is a u32", set_u32(&s, "general.architecture", 1));
    META("architecture-nul", PLM_ERR_FORMAT, "metadata key 'general.architecture' contains a NUL byte", "general.architecture = \"lla\\0a\"",
         set_strn(&s, "general.architecture", "lla\0a", 5));
    META("tokenizer-ugm", PLM_ERR_UNSUPPORTED, "tokenizer.ggml.model 'ugm' is not supported", "tokenizer.ggml.model = ugm",
         set_str(&s, "tokenizer.ggml.model", "ugm"));
    META("tokenizer-bert-no-unk", PLM_ERR_FORMAT, "WordPiece vocabulary names no unknown token", "tokenizer.ggml.model = bert without an unknown token",
         set_str(&s, "tokenizer.ggml.model", "bert"));
    META("block-count-string", PLM_ERR_FORMAT, "metadata key 'llama.block_count' should be an integer but is a string",
         "llama.block_count is a string", set_str(&s, "llama.block_count", "1"));
    META("block-count-zero", PLM_ERR_FORMAT, "metadata key 'llama.block_count' = 0 is out of range", "llama.block_count = 0",
         set_u32(&s, "llama.block_count", 0));
    META("block-count-huge", PLM_ERR_FORMAT, "metadata key 'llama.block_count' = 5000 is out of range", "llama.block_count = 5000",
         set_u32(&s, "llama.block_count", 5000));
    META("head-count-zero", PLM_ERR_FORMAT, "metadata key 'llama.attention.head_count' = 0 is out of range", "llama.attention.head_count = 0",
         set_u32(&s, "llama.attention.head_count", 0));
    META("head-count-kv-not-divisor", PLM_ERR_FORMAT, "head_count 4 is not a multiple of head_count_kv 3", "llama.attention.head_count_kv = 3",
         set_u32(&s, "llama.attention.head_count_kv", 3));
    META("context-length-zero", PLM_ERR_FORMAT, "metadata key 'llama.context_length' = 0 is out of range", "llama.context_length = 0",
         set_u32(&s, "llama.context_length", 0));
    META("rope-dimensions-odd", PLM_ERR_FORMAT, "rope.dimension_count 7 does not fit head size 8", "llama.rope.dimension_count = 7",
         set_u32(&s, "llama.rope.dimension_count", 7));
    META("rms-eps-zero", PLM_ERR_FORMAT, "rms epsilon and rope.freq_base must be positive", "llama.attention.layer_norm_rms_epsilon = 0",
         set_f32(&s, "llama.attention.layer_norm_rms_epsilon", 0.0f));
    META("rope-base-negative", PLM_ERR_FORMAT, "rms epsilon and rope.freq_base must be positive", "llama.rope.freq_base = -10000",
         set_f32(&s, "llama.rope.freq_base", -10000.0f));
    META("rms-eps-string", PLM_ERR_FORMAT, "metadata key 'llama.attention.layer_norm_rms_epsilon' should be a number but is a string",
         "llama.attention.layer_norm_rms_epsilon is a string", set_str(&s, "llama.attention.layer_norm_rms_epsilon", "1e-5"));
    {
        static const int32_t ints[N_VOCAB] = {0};
        META("tokens-not-strings", PLM_ERR_FORMAT, "metadata key 'tokenizer.ggml.tokens' should be an array of string",
             "tokenizer.ggml.tokens is an array of i32", set_arr_i32(&s, "tokenizer.ggml.tokens", ints, N_VOCAB));
    }
    META("tokens-empty", PLM_ERR_FORMAT, "tokenizer.ggml.tokens has 0 entries", "tokenizer.ggml.tokens is empty",
         set_arr_str(&s, "tokenizer.ggml.tokens", TOKENS, 0));
    {
        const char *bad[N_VOCAB];
        memcpy(bad, TOKENS, sizeof bad);
        bad[4] = "\xff";
        META("token-invalid-utf8", PLM_ERR_FORMAT, "tokenizer.ggml.tokens[4] is not valid UTF-8", "tokenizer.ggml.tokens[4] = \"\\xff\"",
             set_arr_str(&s, "tokenizer.ggml.tokens", bad, N_VOCAB));
    }
    {
        int32_t types[N_VOCAB];
        memcpy(types, TOKEN_TYPES, sizeof types);
        types[5] = 9;
        META("token-type-9", PLM_ERR_FORMAT, "tokenizer.ggml.token_type[5] = 9 is not a token type", "tokenizer.ggml.token_type[5] = 9",
             set_arr_i32(&s, "tokenizer.ggml.token_type", types, N_VOCAB));
    }
    META("token-types-short", PLM_ERR_FORMAT, "tokenizer.ggml.token_type has 7 entries for 8 tokens", "tokenizer.ggml.token_type of 7 entries",
         set_arr_i32(&s, "tokenizer.ggml.token_type", TOKEN_TYPES, N_VOCAB - 1));
    META("scores-short", PLM_ERR_FORMAT, "tokenizer.ggml.scores has 7 entries for 8 tokens", "tokenizer.ggml.scores of 7 entries",
         set_arr_f32(&s, "tokenizer.ggml.scores", SCORES, N_VOCAB - 1));
    META("bos-out-of-range", PLM_ERR_FORMAT, "tokenizer.ggml.bos_token_id = 99 is not a token id (the vocabulary has 8 tokens)",
         "tokenizer.ggml.bos_token_id = 99", set_u32(&s, "tokenizer.ggml.bos_token_id", 99));
#undef META
}

void mg_build_all(mg_cases *out) {
    *out = (mg_cases){0};
    cases_valid(out);
    cases_truncation(out);
    cases_header(out);
    cases_counts(out);
    cases_lengths(out);
    cases_overflow(out);
    cases_alignment(out);
    cases_types(out);
    cases_duplicates(out);
    cases_size(out);
    cases_missing(out);
    cases_nan_inf(out);
    cases_metadata(out);
}

void mg_cases_free(mg_cases *c) {
    for (int i = 0; i < c->n; i++) free(c->v[i].data);
    free(c->v);
    *c = (mg_cases){0};
}

bool mg_message_matches(const char *needles, const char *msg) {
    const char *p = needles;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        char part[256];
        if (n >= sizeof part) return false;
        memcpy(part, p, n);
        part[n] = 0;
        if (!strstr(msg, part)) return false;
        p += n + (bar ? 1 : 0);
    }
    return true;
}

int mg_write_dir(const mg_cases *c, const char *dir) {
    char path[4096];
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "%s: cannot create: %s\n", dir, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/manifest.tsv", dir);
    FILE *m = fopen(path, "w");
    if (!m) {
        fprintf(stderr, "%s: cannot write: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(m, "file\tstatus\tneedles\tcategory\tdefect\n");
    for (int i = 0; i < c->n; i++) {
        const mg_case *k = &c->v[i];
        snprintf(path, sizeof path, "%s/%s", dir, k->file);
        FILE *f = fopen(path, "wb");
        bool ok = f && (k->size == 0 || fwrite(k->data, 1, k->size, f) == k->size);
        if (f && fclose(f) != 0) ok = false;
        if (!ok) {
            fprintf(stderr, "%s: cannot write: %s\n", path, strerror(errno));
            fclose(m);
            return -1;
        }
        fprintf(m, "%s\t%s\t%s\t%s\t%s\n", k->file, plm_status_str(k->status), k->needles, k->category, k->defect);
    }
    if (fclose(m) != 0) {
        fprintf(stderr, "%s/manifest.tsv: cannot write\n", dir);
        return -1;
    }
    return 0;
}
