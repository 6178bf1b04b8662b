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

#define RANK_MAX 4096 /* far above any LoRA rank in use; bounds the scratch a context needs */

static uint32_t fnv1a(uint32_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 16777619u;
    return h;
}

void plm_adapter_free(plm_adapter *a) {
    if (!a) return;
    for (int32_t i = 0; i < a->n_pairs; i++) {
        free(a->pairs[i].a);
        free(a->pairs[i].bq);
        free(a->pairs[i].bd);
    }
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

/* B (n_out, rank) floats into p's B^T in int8 (lora.h's layout): for each run
 * of 32 outputs (the last one shorter when n_out is not a multiple of 32) and
 * each k, d = amax / 127 and q = round(B / d), as Q8_0 rounds. */
static void quantize_bt(const float *b, plm_lora_pair *p) {
    for (int64_t k = 0; k < p->rank; k++)
        for (int64_t blk = 0; blk < p->nb_out; blk++) {
            const int64_t r0 = blk * PLM_QK, r1 = PLM_MIN(p->n_out, r0 + PLM_QK);
            float amax = 0.0f;
            for (int64_t r = r0; r < r1; r++) amax = fmaxf(amax, fabsf(b[r * p->rank + k]));
            const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
            p->bd[blk * p->rank + k] = amax / 127.0f;
            for (int64_t r = r0; r < r1; r++)
                p->bq[(blk * p->rank + k) * PLM_QK + r - r0] = plm_round_even_i8(b[r * p->rank + k] * id);
        }
}

/* Checks one pair (a, b of the same base) against the model's tensor and reads it. */
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
    if (rank < 1 || rank > RANK_MAX)
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s: adapter tensors of '%s' have rank %" PRId64 " (1 to %d supported)",
                        g->path, base_name, rank, RANK_MAX);
    if (base->ne[0] % PLM_QK != 0)
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s: adapter tensors of '%s': the base tensor's rows have %" PRId64
                        " elements; adapters apply to rows of a multiple of %d elements (A is held as Q8_0)",
                        g->path, base_name, base->ne[0], PLM_QK);
    p->base = base;
    p->rank = (int32_t)rank;
    p->n_in = base->ne[0];
    p->n_out = base->ne[1];
    p->a_row = plm_type_row_size(PLM_TYPE_Q8_0, p->n_in);
    p->nb_out = (p->n_out + PLM_QK - 1) / PLM_QK;
    float *a = NULL, *b = NULL;
    if ((st = read_matrix(g, ta, &a)) || (st = read_matrix(g, tb, &b))) goto done;
    p->a = malloc((size_t)rank * p->a_row);
    p->bq = calloc((size_t)p->nb_out * (size_t)rank, PLM_QK);
    p->bd = malloc((size_t)rank * (size_t)p->nb_out * sizeof(float));
    if (!p->a || !p->bq || !p->bd) {
        st = plm_fail(PLM_ERR_OOM, "out of memory for adapter tensors of '%s'", base_name);
        goto done;
    }
    if (ta->type == PLM_TYPE_Q8_0) memcpy(p->a, ta->data, (size_t)rank * p->a_row);
    else
        for (int64_t k = 0; k < rank; k++) plm_quantize_row_ref(PLM_TYPE_Q8_0, a + k * p->n_in, p->a + k * p->a_row, p->n_in);
    quantize_bt(b, p);
done:
    free(a);
    free(b);
    return st;
}

plm_status plm_adapter_load(const plm_model *model, const char *path, plm_adapter **out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_adapter_load: out is NULL");
    *out = NULL;
    if (!model || !path) return plm_fail(PLM_ERR_ARG, "plm_adapter_load: NULL argument");
    plm_clear_error();
    plm_status st = plm_model_check_weights(model, "plm_adapter_load");
    if (st) return st;
    plm_gguf *g = NULL;
    plm_adapter *a = calloc(1, sizeof(*a));
    if (!a) return plm_fail(PLM_ERR_OOM, "out of memory");
    a->model = model;
    if ((st = plm_gguf_open(path, true, &g))) goto fail;
    if ((st = check_header(model, g, &a->alpha))) goto fail;
    a->path = strdup(path);
    a->by_tensor = malloc((size_t)PLM_MAX(model->g->n_tensors, 1) * sizeof(int32_t));
    a->pairs = calloc((size_t)PLM_MAX(g->n_tensors, 1), sizeof(plm_lora_pair));
    if (!a->path || !a->by_tensor || !a->pairs) {
        st = plm_fail(PLM_ERR_OOM, "out of memory");
        goto fail;
    }
    for (uint64_t i = 0; i < model->g->n_tensors; i++) a->by_tensor[i] = -1;
    uint32_t id = fnv1a(2166136261u, &a->alpha, sizeof a->alpha);
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
        if ((st = load_pair(model, g, t, partner, base_name, p))) {
            a->n_pairs++; /* freed with the rest */
            goto fail;
        }
        const int64_t bi = p->base - model->g->tensors;
        if (a->by_tensor[bi] >= 0) {
            a->n_pairs++;
            st = plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' is targeted twice", g->path, base_name);
            goto fail;
        }
        a->by_tensor[bi] = a->n_pairs++;
        a->max_rank = PLM_MAX(a->max_rank, p->rank);
        id = fnv1a(id, base_name, base_len + 1);
        a->max_n_in = PLM_MAX(a->max_n_in, p->n_in);
        id = fnv1a(id, p->a, (size_t)p->rank * p->a_row);
        id = fnv1a(id, p->bq, (size_t)p->nb_out * (size_t)p->rank * PLM_QK);
        id = fnv1a(id, p->bd, (size_t)p->rank * (size_t)p->nb_out * sizeof(float));
    }
    if (a->n_pairs == 0) {
        st = plm_fail(PLM_ERR_FORMAT, "%s: the adapter has no lora_a/lora_b tensors", g->path);
        goto fail;
    }
    a->id = id;
    plm_gguf_close(g);
    *out = a;
    return PLM_OK;
fail:
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
    float *u = NULL;
    size_t u_bytes = 0;
    if (n > 0) {
        use = malloc((size_t)n * sizeof(*use));
        /* A x of every weight of one product for a micro-batch, then (64-byte aligned) the micro-batch's input
         * quantized for A */
        const size_t nb = (size_t)ctx->params.n_batch;
        u_bytes = (nb * PLM_LINEAR_MAX_WEIGHTS * (size_t)ranks * sizeof(float) + 63) / 64 * 64;
        u = plm_amalloc(u_bytes + nb * plm_type_row_size(ctx->kern->dot_type[PLM_TYPE_Q8_0], n_in));
        if (!use || !u) {
            free(use);
            plm_afree(u);
            return plm_fail(PLM_ERR_OOM, "out of memory for %d adapters", n);
        }
        for (int32_t i = 0; i < n; i++) use[i] = (plm_adapter_use){adapters[i], scales ? scales[i] : 1.0f};
    }
    free(ctx->adapters);
    plm_afree(ctx->lora_u);
    ctx->adapters = use;
    ctx->lora_u = u;
    ctx->lora_act = u ? (uint8_t *)u + u_bytes : NULL;
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
