/*
 * lora.c — LoRA adapters: loading them against a model, and a context's set.
 *
 * Owns plm_adapter_load/free and plm_context_set_adapters. An adapter file is a
 * GGUF in llama.cpp's layout (general.type "adapter", adapter.type "lora",
 * adapter.lora.alpha, tensors "<base tensor>.lora_a" [n_in, rank] and
 * "<base tensor>.lora_b" [rank, n_out]); the GGUF itself is parsed and
 * validated by gguf.c. Every pair is checked against the model's tensor it
 * names (a layer projection, matching row length and rows) and read into
 * the 8-bit forms lora.h describes, so the file is closed after loading and
 * A, B may be F32, F16 or Q8_0 (a Q8_0 A is kept as the file has it; other
 * inputs are rounded to 8 bits once, here). The product
 * y = W x + scale * B (A x) is computed by matmul.c, which
 * finds each weight's pairs through lora.h; the mapped base weights are never
 * written, so one model serves contexts with different adapters at once.
 */
#include "lora.h"
#include "matmul.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static uint32_t fnv1a(uint32_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 16777619u;
    return h;
}

void plm_adapter_free(plm_adapter *a) {
    if (!a) return;
    free(a->block);
    free(a->pairs);
    free(a->by_tensor);
    free(a->path);
    free(a);
}

/* Reads the 2-D tensor t (ne0 = n_in, ne1 = rows) of an adapter into floats. */
static plm_status read_matrix(const plm_gguf *g, const plm_gguf_tensor *t, float **out) {
    if (t->type != PLM_TYPE_F32 && t->type != PLM_TYPE_F16 && t->type != PLM_TYPE_Q8_0) {
        const plm_type_traits *tt = plm_type_traits_get(t->type);
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s: adapter tensor '%s' has type %s; LoRA matrices must be F32, F16 or Q8_0",
                        g->path, t->name, tt ? tt->name : "unknown");
    }
    const int64_t n = t->ne[0] * t->ne[1];
    float *v = malloc((size_t)n * sizeof(float));
    if (!v) return plm_fail(PLM_ERR_OOM, "out of memory for adapter tensor '%s'", t->name);
    const size_t row_bytes = plm_type_row_size((plm_type)t->type, t->ne[0]);
    for (int64_t r = 0; r < t->ne[1]; r++)
        plm_dequantize_row_ref((plm_type)t->type, (const uint8_t *)t->data + (size_t)r * row_bytes, v + r * t->ne[0], t->ne[0]);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            free(v);
            return plm_fail(PLM_ERR_FORMAT, "%s: adapter tensor '%s' element %" PRId64 " is not finite", g->path, t->name, i);
        }
    *out = v;
    return PLM_OK;
}

/* "<base>.lora_a" or "<base>.lora_b": the base name's length and which, or false. */
static bool lora_suffix(const char *name, size_t *base_len, bool *is_b) {
    size_t n = strlen(name);
    if (n <= 7 || strncmp(name + n - 7, ".lora_", 6) != 0 || (name[n - 1] != 'a' && name[n - 1] != 'b')) return false;
    *base_len = n - 7;
    *is_b = name[n - 1] == 'b';
    return true;
}

/* Checks the header keys: an adapter, of the LoRA kind, for the model's architecture. */
static plm_status check_header(const plm_model *m, const plm_gguf *g, float *alpha) {
    char *type = NULL, *kind = NULL, *arch = NULL;
    plm_status st;
    if ((st = plm_gguf_get_str(g, "general.type", true, &type))) goto done;
    if (strcmp(type, "adapter") != 0) {
        st = plm_fail(PLM_ERR_FORMAT, "%s: general.type is '%s', not 'adapter': this is not an adapter file", g->path, type);
        goto done;
    }
    if ((st = plm_gguf_get_str(g, "adapter.type", true, &kind))) goto done;
    if (strcmp(kind, "lora") != 0) {
        st = plm_fail(PLM_ERR_UNSUPPORTED, "%s: adapter.type is '%s'; only 'lora' adapters are supported", g->path, kind);
        goto done;
    }
    if ((st = plm_gguf_get_str(g, "general.architecture", true, &arch))) goto done;
    if (strcmp(arch, m->arch) != 0) {
        st = plm_fail(PLM_ERR_FORMAT, "%s: the adapter is for architecture '%s' but the model %s is '%s'", g->path, arch,
                      m->g->path, m->arch);
        goto done;
    }
    *alpha = 0.0f;
    if ((st = plm_gguf_get_f32(g, "adapter.lora.alpha", false, alpha))) goto done;
    if (!isfinite(*alpha)) st = plm_fail(PLM_ERR_FORMAT, "%s: adapter.lora.alpha is not finite", g->path);
done:
    free(type);
    free(kind);
    free(arch);
    return st;
}

/* B (n_out, rank) floats into its runs at out (lora.h's layout, zeroed before): each output row r gets the
 * scale amax_r / 127 (amax_r its largest |B[r][k]|), stored as F16 over b_scale (the largest row scale), and
 * q = round(B / s) with s the scale as stored, as Q8_0 rounds. */
static void quantize_b(const float *b, plm_lora_pair *p, uint8_t *out) {
    float smax = 0.0f;
    for (int64_t i = 0; i < p->n_out * p->rank; i++) smax = fmaxf(smax, fabsf(b[i]));
    p->b_scale = smax / 127.0f;
    const size_t qbytes = plm_lora_run_q(p->rank);
    for (int64_t r = 0; r < p->n_out; r++) {
        uint8_t *run = out + (size_t)(r / PLM_QK) * p->b_run;
        const int i = (int)(r % PLM_QK);
        const float *row = b + r * p->rank;
        float amax = 0.0f;
        for (int32_t k = 0; k < p->rank; k++) amax = fmaxf(amax, fabsf(row[k]));
        const plm_f16 e = plm_f32_to_f16(p->b_scale != 0.0f ? amax / 127.0f / p->b_scale : 0.0f);
        memcpy(run + qbytes + (size_t)i * sizeof e, &e, sizeof e);
        const float s = p->b_scale * plm_f16_to_f32(e), id = s != 0.0f ? 1.0f / s : 0.0f;
        for (int32_t k = 0; k < p->rank; k++) ((int8_t *)run)[128 * (k / 4) + 4 * i + k % 4] = plm_round_even_i8(row[k] * id);
    }
}

/* Checks one pair (a, b of the same base) against the model's tensor and sets p's shapes (its matrices are read
 * by read_pair once the block is laid out). */
static plm_status load_pair(const plm_model *m, const plm_gguf *g, const plm_gguf_tensor *ta, const plm_gguf_tensor *tb,
                            const char *base_name, plm_lora_pair *p) {
    const plm_gguf_tensor *base = plm_gguf_tensor_find(m->g, base_name);
    if (!base)
        return plm_fail(PLM_ERR_FORMAT, "%s: adapter tensor '%s' targets '%s', which the model %s does not have", g->path,
                        ta->name, base_name, m->g->path);
    plm_weight probe;
    plm_model *mm = (plm_model *)m; /* plm_model_bind only reads the model */
    plm_status st = plm_model_bind(mm, base_name, base->ne[0], base->ne[1], true, &probe);
    if (st) return st;
    if (probe.role == PLM_ROLE_NONE)
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s: adapter tensor '%s' targets '%s'; adapters apply to layer projections "
                        "(blk.N.attn_q/attn_k/attn_v/attn_qkv/attn_output/ffn_gate/ffn_up/ffn_down.weight) only",
                        g->path, ta->name, base_name);
    if (ta->n_dims != 2 || tb->n_dims != 2)
        return plm_fail(PLM_ERR_FORMAT, "%s: adapter tensors of '%s' must be 2-D (lora_a has %u dimensions, lora_b %u)",
                        g->path, base_name, ta->n_dims, tb->n_dims);
    const int64_t rank = ta->ne[1];
    if (ta->ne[0] != base->ne[0] || tb->ne[1] != base->ne[1] || tb->ne[0] != rank)
        return plm_fail(PLM_ERR_FORMAT, "%s: adapter tensors of '%s' have shapes lora_a [%" PRId64 ", %" PRId64
                        "] and lora_b [%" PRId64 ", %" PRId64 "]; the base tensor [%" PRId64 ", %" PRId64
                        "] needs lora_a [%" PRId64 ", rank] and lora_b [rank, %" PRId64 "]",
                        g->path, base_name, ta->ne[0], ta->ne[1], tb->ne[0], tb->ne[1], base->ne[0], base->ne[1],
                        base->ne[0], base->ne[1]);
    if (rank < 1 || rank > PLM_LORA_RANK_MAX)
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s: adapter tensors of '%s' have rank %" PRId64 " (1 to %d supported)",
                        g->path, base_name, rank, PLM_LORA_RANK_MAX);
    if (base->ne[0] % PLM_QK != 0)
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s: adapter tensors of '%s': the base tensor's rows have %" PRId64
                        " elements; adapters apply to rows of a multiple of %d elements (A is held as Q8_0)",
                        g->path, base_name, base->ne[0], PLM_QK);
    p->base = base;
    p->rank = (int32_t)rank;
    p->layer = probe.layer;
    p->role = probe.role;
    p->n_in = base->ne[0];
    p->n_out = base->ne[1];
    p->a_row = plm_type_row_size(PLM_TYPE_Q8_0, p->n_in);
    /* the x16 layout where it needs no padding rows: padded, a rank-8 A would be read twice over */
    p->a_x16 = plm_kernels_get()->gemm_x16[PLM_TYPE_Q8_0] != NULL && p->rank % PLM_X16 == 0;
    p->nb_out = (p->n_out + PLM_QK - 1) / PLM_QK;
    p->b_run = plm_lora_run_bytes(p->rank);
    return PLM_OK;
}

/* Reads pair p's A (tensor ta) and B (tb) into its place in the block, a and b (zeroed before). */
static plm_status read_pair(const plm_gguf *g, const plm_gguf_tensor *ta, const plm_gguf_tensor *tb, plm_lora_pair *p,
                            uint8_t *a_out, uint8_t *b_out) {
    float *a = NULL, *b = NULL;
    plm_status st;
    if ((st = read_matrix(g, ta, &a)) || (st = read_matrix(g, tb, &b))) goto done;
    if (ta->type == PLM_TYPE_Q8_0) memcpy(a_out, ta->data, (size_t)p->rank * p->a_row);
    else
        for (int64_t k = 0; k < p->rank; k++)
            plm_quantize_row_ref(PLM_TYPE_Q8_0, a + k * p->n_in, a_out + (size_t)k * p->a_row, p->n_in);
    quantize_b(b, p, b_out);
    p->a = a_out;
    p->b = b_out;
done:
    free(a);
    free(b);
    return st;
}

/* The group of projections a role belongs to: those that read one input, in the order a layer computes them. */
static int role_group(plm_role r) {
    switch (r) {
    case PLM_ROLE_O: return 1;
    case PLM_ROLE_GATE: case PLM_ROLE_UP: return 2;
    case PLM_ROLE_DOWN: return 3;
    default: return 0; /* q, k, v, qkv */
    }
}

/* A pair's place in the order a token uses them: by layer, group, role. */
typedef struct use_key {
    int64_t key;
    int32_t i; /* the pair */
} use_key;

static int64_t use_key_of(const plm_lora_pair *p) {
    return ((int64_t)p->layer * 4 + role_group(p->role)) * PLM_ROLE_COUNT + p->role;
}

static int use_key_cmp(const void *x, const void *y) {
    const int64_t a = ((const use_key *)x)->key, b = ((const use_key *)y)->key;
    return a < b ? -1 : a > b;
}

#define ALIGN64(n) (((n) + 63) / 64 * 64)

#ifdef MADV_HUGEPAGE
/* The block of n bytes (free with free): where the system has them, on 2 MB pages from 1 MB on. A token reads
 * the adapter a few KB at a time between long streams of the model's weights, which leave little of the TLB to
 * it: on 4 KB pages nearly every piece began with a page walk, and the pieces' prefetches waited for it (5.3 MB
 * of a rank-16 adapter on the default model: 1300 pages, or 3). */
static uint8_t *block_alloc(size_t n) {
    const size_t huge = (size_t)2 << 20;
    void *p = NULL;
    if (n < huge / 2) return posix_memalign(&p, 64, PLM_MAX(n, 64)) == 0 ? p : NULL;
    const size_t sz = (n + huge - 1) / huge * huge;
    if (posix_memalign(&p, huge, sz) != 0) return NULL;
    (void)madvise(p, sz, MADV_HUGEPAGE); /* a hint: without it the block is as good, only slower to read */
    return p;
}
#else
static uint8_t *block_alloc(size_t n) {
    void *p = NULL;
    return posix_memalign(&p, 64, PLM_MAX(n, 64)) == 0 ? p : NULL;
}
#endif

/* Lays the pairs out in one block (lora.h: struct plm_adapter's block) and reads their matrices into it; src[2 i],
 * src[2 i + 1] are pair i's lora_a and lora_b. */
static plm_status read_pairs(plm_adapter *ad, const plm_gguf *g, const plm_gguf_tensor *const *src) {
    const int32_t n = ad->n_pairs;
    use_key *ord = malloc((size_t)n * sizeof(*ord));
    size_t *a_off = malloc((size_t)n * 2 * sizeof(size_t));
    plm_status st = PLM_OK;
    if (!ord || !a_off) {
        st = plm_fail(PLM_ERR_OOM, "out of memory for %s's layout", g->path);
        goto done;
    }
    size_t *b_off = a_off + n;
    for (int32_t i = 0; i < n; i++) ord[i] = (use_key){use_key_of(&ad->pairs[i]), i};
    qsort(ord, (size_t)n, sizeof(*ord), use_key_cmp);
    /* groups [s, e) of the order: their A matrices back to back, then their runs of B back to back */
    size_t off = 0;
    for (int32_t s = 0, e; s < n; s = e) {
        const int64_t grp = ord[s].key / PLM_ROLE_COUNT;
        for (e = s + 1; e < n && ord[e].key / PLM_ROLE_COUNT == grp; e++) {}
        off = ALIGN64(off);
        for (int32_t k = s; k < e; k++) {
            const plm_lora_pair *p = &ad->pairs[ord[k].i];
            a_off[ord[k].i] = off;
            off += (size_t)p->rank * p->a_row;
        }
        off = ALIGN64(off);
        for (int32_t k = s; k < e; k++) {
            const plm_lora_pair *p = &ad->pairs[ord[k].i];
            b_off[ord[k].i] = off;
            off += (size_t)p->nb_out * p->b_run;
        }
    }
    ad->block = block_alloc(off);
    if (!ad->block) {
        st = plm_fail(PLM_ERR_OOM, "out of memory for %s's %zu bytes", g->path, off);
        goto done;
    }
    memset(ad->block, 0, off);
    for (int32_t i = 0; i < n; i++) {
        plm_lora_pair *p = &ad->pairs[i];
        if ((st = read_pair(g, src[2 * i], src[2 * i + 1], p, ad->block + a_off[i], ad->block + b_off[i]))) goto done;
    }
done:
    free(ord);
    free(a_off);
    return st;
}

/* The A of the pairs that a_x16 marks into the x16 layout, group by group in place (after the fingerprint, which
 * reads the rows as the file's order has them, whatever the table). The x16 product of a token (and of several) is
 * the fast path of the table's Q8_0 products: A's rows one by one through its gemm took 4-5 times as long per block
 * in cache (a rank-16 adapter: 2.4 M multiply-adds of A per token of the default model). */
static plm_status pack_a(plm_adapter *ad) {
    uint8_t *tmp = NULL;
    for (int32_t i = 0; i < ad->n_pairs; i++) {
        plm_lora_pair *p = &ad->pairs[i];
        if (!p->a_x16) continue;
        if (!tmp && !(tmp = malloc((size_t)PLM_X16 * plm_type_row_size(PLM_TYPE_Q8_0, ad->max_n_in))))
            return plm_fail(PLM_ERR_OOM, "out of memory for %s's layout", ad->path);
        uint8_t *a = (uint8_t *)p->a;
        const size_t group = (size_t)PLM_X16 * p->a_row;
        for (int32_t g = 0; g < p->rank; g += PLM_X16) {
            memcpy(tmp, a + (size_t)g * p->a_row, group);
            plm_x16_pack(PLM_TYPE_Q8_0, tmp, a + (size_t)g * p->a_row, p->n_in);
        }
    }
    free(tmp);
    return PLM_OK;
}

plm_status plm_adapter_load(const plm_model *model, const char *path, plm_adapter **out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_adapter_load: out is NULL");
    *out = NULL;
    if (!model || !path) return plm_fail(PLM_ERR_ARG, "plm_adapter_load: NULL argument");
    plm_clear_error();
    plm_status st = plm_model_check_weights(model, "plm_adapter_load");
    if (st) return st;
    plm_gguf *g = NULL;
    const plm_gguf_tensor **src = NULL; /* (pairs, 2) each pair's lora_a, lora_b */
    plm_adapter *a = calloc(1, sizeof(*a));
    if (!a) return plm_fail(PLM_ERR_OOM, "out of memory");
    a->model = model;
    if ((st = plm_gguf_open(path, true, &g))) goto fail;
    if ((st = check_header(model, g, &a->alpha))) goto fail;
    a->path = strdup(path);
    a->by_tensor = malloc((size_t)PLM_MAX(model->g->n_tensors, 1) * sizeof(int32_t));
    a->pairs = calloc((size_t)PLM_MAX(g->n_tensors, 1), sizeof(plm_lora_pair));
    src = malloc((size_t)PLM_MAX(g->n_tensors, 1) * 2 * sizeof(*src));
    if (!a->path || !a->by_tensor || !a->pairs || !src) {
        st = plm_fail(PLM_ERR_OOM, "out of memory");
        goto fail;
    }
    for (uint64_t i = 0; i < model->g->n_tensors; i++) a->by_tensor[i] = -1;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const plm_gguf_tensor *t = &g->tensors[i];
        size_t base_len;
        bool is_b;
        if (!lora_suffix(t->name, &base_len, &is_b)) {
            st = plm_fail(PLM_ERR_FORMAT, "%s: adapter tensor '%s' is neither '<tensor>.lora_a' nor '<tensor>.lora_b'",
                          g->path, t->name);
            goto fail;
        }
        char base_name[256], other[270];
        if (base_len >= sizeof base_name) {
            st = plm_fail(PLM_ERR_FORMAT, "%s: adapter tensor name '%s' is too long", g->path, t->name);
            goto fail;
        }
        memcpy(base_name, t->name, base_len);
        base_name[base_len] = '\0';
        snprintf(other, sizeof other, "%s.lora_%c", base_name, is_b ? 'a' : 'b');
        const plm_gguf_tensor *partner = plm_gguf_tensor_find(g, other);
        if (!partner) {
            st = plm_fail(PLM_ERR_FORMAT, "%s: adapter tensor '%s' has no '%s'", g->path, t->name, other);
            goto fail;
        }
        if (is_b) continue; /* each pair is read once, from its lora_a */
        plm_lora_pair *p = &a->pairs[a->n_pairs];
        if ((st = load_pair(model, g, t, partner, base_name, p))) goto fail;
        const int64_t bi = p->base - model->g->tensors;
        if (a->by_tensor[bi] >= 0) {
            st = plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' is targeted twice", g->path, base_name);
            goto fail;
        }
        src[2 * a->n_pairs] = t;
        src[2 * a->n_pairs + 1] = partner;
        a->by_tensor[bi] = a->n_pairs++;
        a->max_rank = PLM_MAX(a->max_rank, p->rank);
        a->max_n_in = PLM_MAX(a->max_n_in, p->n_in);
    }
    if (a->n_pairs == 0) {
        st = plm_fail(PLM_ERR_FORMAT, "%s: the adapter has no lora_a/lora_b tensors", g->path);
        goto fail;
    }
    if ((st = read_pairs(a, g, src))) goto fail;
    uint32_t id = fnv1a(2166136261u, &a->alpha, sizeof a->alpha);
    for (int32_t i = 0; i < a->n_pairs; i++) {
        const plm_lora_pair *p = &a->pairs[i];
        id = fnv1a(id, p->base->name, strlen(p->base->name) + 1);
        id = fnv1a(id, p->a, (size_t)p->rank * p->a_row);
        id = fnv1a(id, p->b, (size_t)p->nb_out * p->b_run);
        id = fnv1a(id, &p->b_scale, sizeof p->b_scale);
    }
    a->id = id;
    if ((st = pack_a(a))) goto fail;
    free(src);
    plm_gguf_close(g);
    *out = a;
    return PLM_OK;
fail:
    free(src);
    plm_gguf_close(g);
    plm_adapter_free(a);
    return st;
}

const plm_model *plm_adapter_model(const plm_adapter *a) { return a ? a->model : NULL; }
int32_t plm_adapter_n_targets(const plm_adapter *a) { return a ? a->n_pairs : 0; }
int32_t plm_adapter_rank(const plm_adapter *a) { return a ? a->max_rank : 0; }
float plm_adapter_alpha(const plm_adapter *a) { return a ? a->alpha : 0.0f; }

/* ------------------------------------------------------------ a context's set */

plm_status plm_context_set_adapters(plm_context *ctx, int32_t n, plm_adapter *const *adapters, const float *scales) {
    if (!ctx) return plm_fail(PLM_ERR_ARG, "plm_context_set_adapters: ctx is NULL");
    if (n < 0 || n > PLM_N_ADAPTERS_MAX)
        return plm_fail(PLM_ERR_ARG, "plm_context_set_adapters: %d adapters; a context applies 0 to %d", n, PLM_N_ADAPTERS_MAX);
    if (n > 0 && !adapters) return plm_fail(PLM_ERR_ARG, "plm_context_set_adapters: adapters is NULL");
    plm_clear_error();
    int64_t ranks = 0, n_in = 0;
    uint32_t id = 2166136261u;
    for (int32_t i = 0; i < n; i++) {
        const plm_adapter *a = adapters[i];
        const float s = scales ? scales[i] : 1.0f;
        if (!a) return plm_fail(PLM_ERR_ARG, "plm_context_set_adapters: adapter %d is NULL", i);
        if (a->model != ctx->model)
            return plm_fail(PLM_ERR_ARG, "plm_context_set_adapters: adapter %d (%s) was loaded for another model", i, a->path);
        if (!isfinite(s)) return plm_fail(PLM_ERR_ARG, "plm_context_set_adapters: scale %d is not finite", i);
        ranks += a->max_rank;
        n_in = PLM_MAX(n_in, a->max_n_in);
        id = fnv1a(id, &a->id, sizeof a->id);
        id = fnv1a(id, &s, sizeof s);
    }
    plm_adapter_use *use = NULL;
    float *u = ctx->lora_u;
    size_t u_bytes = 0, bytes = ctx->lora_bytes;
    if (n > 0) {
        use = malloc((size_t)n * sizeof(*use));
        /* A x of every weight of one product for a micro-batch, then (64-byte aligned) the micro-batch's input
         * quantized for A; the context's block when it is large enough (switching adapters, say per request,
         * allocates nothing) */
        const size_t nb = (size_t)ctx->params.n_batch;
        u_bytes = (nb * PLM_LINEAR_MAX_WEIGHTS * (size_t)ranks * sizeof(float) + 63) / 64 * 64;
        const size_t need = u_bytes + nb * plm_type_row_size(ctx->kern->dot_type[PLM_TYPE_Q8_0], n_in);
        if (need > bytes) {
            u = plm_amalloc(need);
            bytes = need;
        }
        if (!use || !u) {
            free(use);
            if (u != ctx->lora_u) plm_afree(u);
            return plm_fail(PLM_ERR_OOM, "out of memory for %d adapters", n);
        }
        for (int32_t i = 0; i < n; i++) use[i] = (plm_adapter_use){adapters[i], scales ? scales[i] : 1.0f};
    }
    free(ctx->adapters);
    if (u != ctx->lora_u) plm_afree(ctx->lora_u);
    ctx->adapters = use;
    ctx->lora_u = u;
    ctx->lora_bytes = bytes;
    ctx->lora_act = n > 0 ? (uint8_t *)u + u_bytes : NULL;
    ctx->n_adapters = n;
    ctx->adapters_id = n == 0 ? 0 : id ? id : 1;
    return PLM_OK;
}

int32_t plm_context_n_adapters(const plm_context *ctx) { return ctx ? ctx->n_adapters : 0; }

plm_adapter *plm_context_adapter(const plm_context *ctx, int32_t i, float *scale) {
    if (!ctx || i < 0 || i >= ctx->n_adapters) return NULL;
    if (scale) *scale = ctx->adapters[i].scale;
    return (plm_adapter *)ctx->adapters[i].a;
}
