/*
 * models/bert.c — the bert family: BERT encoders (all-MiniLM, BGE, ...), for
 * embeddings.
 *
 * Loads llama.cpp's "bert" layout (token_embd, position_embd, token_types,
 * token_embd_norm; per layer attn_q/k/v/output, attn_output_norm, ffn_up,
 * ffn_down, layer_output_norm, every product with a bias) and runs:
 *
 *   x  = LN(tok_embd[token] + position_embd[pos] + token_types[0])   (T, E)
 *   per layer:
 *     q, k, v = Wq x + bq, Wk x + bk, Wv x + bv                       (T, E)
 *     a  = softmax(q k^T / sqrt(hd)) v   over the tokens of the same sequence,
 *          in both directions (no causal mask, no RoPE)              (T, E)
 *     x  = LN(x + Wo a + bo)                      attn_output_norm
 *     x  = LN(x + Wdown gelu(Wup x + bup) + bdown) layer_output_norm  (T, F) -> (T, E)
 *   hidden state = x (no output norm, no output head)
 *
 * LN is LayerNorm with weight and bias; gelu is the exact (erf) GELU of BERT
 * (the kernel table's gelu_bias, its erf within 1e-7).
 * For weights whose activations are quantized (Q8_0 ...), the few outlier
 * entries of the inputs of q/k/v, ffn_up and ffn_down are multiplied in float
 * (linear_outliers below).
 * k and v are rounded to F16 for the product, as llama.cpp's cache holds them,
 * so that the kernel table's SIMD attention kernels do the work.
 * Attention needs each sequence whole: the keys are this micro-batch's own, the
 * KV cache is not read (plm_decode still gives the tokens cells, which
 * plm_embed clears). A decode whose sequence is split over two micro-batches
 * or two calls is refused, and so is any request for logits: an encoder has
 * no next-token head. classify.c packs whole texts per micro-batch for
 * families marked encoder.
 */
#include "models/models.h"
#include "matmul.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bert_layer {
    float *bo;                 /* (E) attn_output.bias */
    float *attn_norm_w, *attn_norm_b; /* (E) attn_output_norm */
    float *b_up;               /* (F) ffn_up.bias */
    float *b_down;             /* (E) ffn_down.bias */
    float *out_norm_w, *out_norm_b;   /* (E) layer_output_norm */
    int8_t *down_qt;           /* (F, E) a Q8_0 ffn_down's values transposed (column c of W is row c), or NULL */
    float *down_dt;            /* (F / 32, E) their scales: W[r][c] = down_dt[c / 32][r] * down_qt[c][r] */
} bert_layer;

typedef struct bert_data {
    plm_weight pos;            /* (n_ctx_train, E) position_embd */
    plm_weight types;          /* (n_types, E) token_types, or t == NULL */
    float *embd_norm_w, *embd_norm_b; /* (E) token_embd_norm */
    float *type0;              /* (E) token_types row 0 as floats, or NULL */
    bert_layer *layers;        /* (n_layer) */
    int32_t n_layer;
} bert_data;

static void bert_free(void *p) {
    bert_data *d = p;
    if (!d) return;
    if (d->layers)
        for (int32_t i = 0; i < d->n_layer; i++) {
            bert_layer *L = &d->layers[i];
            float *v[] = {L->bo, L->attn_norm_w, L->attn_norm_b, L->b_up, L->b_down, L->out_norm_w, L->out_norm_b, L->down_dt};
            for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) free(v[k]);
            free(L->down_qt);
        }
    free(d->layers);
    free(d->embd_norm_w);
    free(d->embd_norm_b);
    free(d->type0);
    free(d);
}

/* ffn_down's input (GELU's output) has many outlier channels (linear_outliers
 * below: about 5 a token, 300 distinct ones in a batch of 200 tokens), and
 * gathering their columns from the rows of the weight missed the cache row
 * after row: a Q8_0 ffn_down is kept transposed as well (E x F bytes and
 * F / 32 x E scales, 0.6 MB a layer for MiniLM), so that a column is a row. */
static plm_status transpose_down(const plm_weight *w, bert_layer *B) {
    if (w->type != PLM_TYPE_Q8_0) return PLM_OK;
    const int64_t E = w->n_out, F = w->n_in;
    B->down_qt = malloc((size_t)E * (size_t)F);
    B->down_dt = malloc((size_t)(F / PLM_QK) * (size_t)E * sizeof(float));
    if (!B->down_qt || !B->down_dt) return plm_fail(PLM_ERR_OOM, "out of memory");
    for (int64_t r = 0; r < E; r++) {
        const plm_block_q8_0 *blk = (const plm_block_q8_0 *)(const void *)((const uint8_t *)w->data + (size_t)r * w->row_bytes);
        for (int64_t b = 0; b < F / PLM_QK; b++) {
            B->down_dt[b * E + r] = plm_f16_to_f32(blk[b].d);
            for (int i = 0; i < PLM_QK; i++) B->down_qt[(b * PLM_QK + i) * E + r] = blk[b].qs[i];
        }
    }
    return PLM_OK;
}

static plm_status load(plm_model *m) {
    plm_hparams *hp = &m->hp;
    plm_status st;
    if ((st = plm_model_load_hparams(m))) return st;
    if ((st = plm_model_key_f32(m, "attention.layer_norm_epsilon", true, &hp->norm_eps))) return st;
    if (!(hp->norm_eps > 0)) return plm_fail(PLM_ERR_FORMAT, "%s: bert.attention.layer_norm_epsilon must be positive", m->g->path);
    if (hp->n_ff < hp->n_embd)
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s: bert with feed_forward_length %d below embedding_length %d", m->g->path, hp->n_ff, hp->n_embd);
    if (hp->n_head_kv != hp->n_head || hp->head_dim * hp->n_head != hp->n_embd)
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s: bert with %d key/value heads for %d heads of %d (plain multi-head attention over n_embd %d is supported)",
                        m->g->path, hp->n_head_kv, hp->n_head, hp->head_dim, hp->n_embd);
    bool causal = false;
    char key[64];
    snprintf(key, sizeof key, "%s.attention.causal", m->arch);
    if ((st = plm_gguf_get_bool(m->g, key, false, &causal))) return st;
    if (causal) return plm_fail(PLM_ERR_UNSUPPORTED, "%s: %s is true; a bert model attends both ways", m->g->path, key);

    bert_data *d = calloc(1, sizeof *d);
    if (!d) return plm_fail(PLM_ERR_OOM, "out of memory");
    m->family_data = d;
    m->family_data_free = bert_free;
    d->n_layer = hp->n_layer;
    d->layers = calloc((size_t)hp->n_layer, sizeof *d->layers);
    if (!d->layers) return plm_fail(PLM_ERR_OOM, "out of memory");
    const int64_t E = hp->n_embd, F = hp->n_ff;
    if ((st = plm_model_bind(m, "token_embd.weight", E, hp->n_vocab, true, &m->tok_embd)) ||
        (st = plm_model_bind(m, "position_embd.weight", E, hp->n_ctx_train, true, &d->pos)) ||
        (st = plm_model_vector(m, "token_embd_norm.weight", E, true, &d->embd_norm_w)) ||
        (st = plm_model_vector(m, "token_embd_norm.bias", E, true, &d->embd_norm_b)))
        return st;
    const plm_gguf_tensor *tt = plm_gguf_tensor_find(m->g, "token_types.weight");
    if (tt) {
        if (tt->ne[1] < 1 || tt->ne[1] > 1024)
            return plm_fail(PLM_ERR_FORMAT, "%s: tensor 'token_types.weight' has %lld rows", m->g->path, (long long)tt->ne[1]);
        if ((st = plm_model_bind(m, "token_types.weight", E, tt->ne[1], true, &d->types))) return st;
        if (!(d->type0 = malloc((size_t)E * sizeof(float)))) return plm_fail(PLM_ERR_OOM, "out of memory");
        plm_dequantize_row_ref(d->types.type, d->types.data, d->type0, E);
        for (int64_t i = 0; i < E; i++)
            if (!isfinite(d->type0[i])) return plm_fail(PLM_ERR_FORMAT, "%s: tensor 'token_types.weight' is not finite", m->g->path);
    }
    char name[128];
#define T(what, suffix) plm_layer_tensor(name, sizeof name, il, what, suffix)
    for (int il = 0; il < hp->n_layer; il++) {
        plm_layer *L = &m->layers[il];
        bert_layer *B = &d->layers[il];
        if ((st = plm_model_bind(m, T("attn_q", "weight"), E, E, true, &L->wq)) ||
            (st = plm_model_bind(m, T("attn_k", "weight"), E, E, true, &L->wk)) ||
            (st = plm_model_bind(m, T("attn_v", "weight"), E, E, true, &L->wv)) ||
            (st = plm_model_bind(m, T("attn_output", "weight"), E, E, true, &L->wo)) ||
            (st = plm_model_bind(m, T("ffn_up", "weight"), E, F, true, &L->w_up)) ||
            (st = plm_model_bind(m, T("ffn_down", "weight"), F, E, true, &L->w_down)) ||
            (st = plm_model_vector(m, T("attn_q", "bias"), E, true, &L->bq)) ||
            (st = plm_model_vector(m, T("attn_k", "bias"), E, true, &L->bk)) ||
            (st = plm_model_vector(m, T("attn_v", "bias"), E, true, &L->bv)) ||
            (st = plm_model_vector(m, T("attn_output", "bias"), E, true, &B->bo)) ||
            (st = plm_model_vector(m, T("attn_output_norm", "weight"), E, true, &B->attn_norm_w)) ||
            (st = plm_model_vector(m, T("attn_output_norm", "bias"), E, true, &B->attn_norm_b)) ||
            (st = plm_model_vector(m, T("ffn_up", "bias"), F, true, &B->b_up)) ||
            (st = plm_model_vector(m, T("ffn_down", "bias"), E, true, &B->b_down)) ||
            (st = plm_model_vector(m, T("layer_output_norm", "weight"), E, true, &B->out_norm_w)) ||
            (st = plm_model_vector(m, T("layer_output_norm", "bias"), E, true, &B->out_norm_b)))
            return st;
        if ((st = transpose_down(&L->w_down, B))) return st;
    }
#undef T
    return PLM_OK;
}

/* ------------------------------------------------------------ pieces */

typedef struct ln_job {
    float *x;          /* (T, E) in place: LN(x + y + b) */
    const float *y;    /* (T, E) or NULL */
    const float *b;    /* (E) bias added with y, or NULL */
    const float *w, *beta;
    int64_t E;
    int32_t T;
    float eps;
} ln_job;

static void ln_worker(void *arg, int ith, int nth) {
    const ln_job *j = arg;
    const int64_t E = j->E;
    int64_t t0, t1;
    plm_split_range(j->T, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        float *restrict x = j->x + t * E;
        if (j->y) {
            const float *restrict y = j->y + t * E, *restrict b = j->b;
            int64_t i = 0; /* runs of 16 where the compiler makes vectors of them (the tail apart) */
            if (b) {
                for (; i + 16 <= E; i += 16)
                    for (int u = 0; u < 16; u++) x[i + u] += y[i + u] + b[i + u];
                for (; i < E; i++) x[i] += y[i] + b[i];
            } else {
                for (; i + 16 <= E; i += 16)
                    for (int u = 0; u < 16; u++) x[i + u] += y[i + u];
                for (; i < E; i++) x[i] += y[i];
            }
        }
        /* the mean, then the variance about it, in double over 8 independent partial sums (vectors, no chain) */
        double acc[8] = {0};
        int64_t i0 = 0;
        for (; i0 + 8 <= E; i0 += 8)
            for (int u = 0; u < 8; u++) acc[u] += (double)x[i0 + u];
        for (; i0 < E; i0++) acc[0] += (double)x[i0];
        const double mean = (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))) / (double)E;
        double sq[8] = {0};
        for (i0 = 0; i0 + 8 <= E; i0 += 8)
            for (int u = 0; u < 8; u++) sq[u] += ((double)x[i0 + u] - mean) * ((double)x[i0 + u] - mean);
        for (; i0 < E; i0++) sq[0] += ((double)x[i0] - mean) * ((double)x[i0] - mean);
        const double ss = ((sq[0] + sq[4]) + (sq[1] + sq[5])) + ((sq[2] + sq[6]) + (sq[3] + sq[7]));
        const float inv = (float)(1.0 / sqrt(ss / (double)E + (double)j->eps)), mu = (float)mean;
        const float *restrict w = j->w, *restrict beta = j->beta;
        int64_t i = 0;
        for (; i + 16 <= E; i += 16)
            for (int u = 0; u < 16; u++) x[i + u] = (x[i + u] - mu) * inv * w[i + u] + beta[i + u];
        for (; i < E; i++) x[i] = (x[i] - mu) * inv * w[i] + beta[i];
    }
}

static void layer_norm(plm_context *ctx, float *x, const float *y, const float *b, const float *w, const float *beta, int32_t T) {
    ln_job j = {.x = x, .y = y, .b = b, .w = w, .beta = beta, .E = ctx->model->hp.n_embd, .T = T, .eps = ctx->model->hp.norm_eps};
    plm_run(ctx, ln_worker, &j, T >= 4);
}

typedef struct bias_job {
    const plm_kernels *kern;
    float *y;
    const float *b;
    int64_t n;
    int32_t T;
    bool gelu;
} bias_job;

static void bias_worker(void *arg, int ith, int nth) {
    const bias_job *j = arg;
    int64_t t0, t1;
    plm_split_range(j->T, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        float *restrict y = j->y + t * j->n;
        const float *restrict b = j->b;
        if (j->gelu) j->kern->gelu_bias(y, b, j->n);
        else
            for (int64_t i = 0; i < j->n; i++) y[i] += b[i];
    }
}

/* y (T, n) += b, then gelu when asked (the kernel table's gelu_bias: erf within 1e-7). */
static void add_bias(plm_context *ctx, float *y, const float *b, int64_t n, int32_t T, bool gelu) {
    bias_job j = {.kern = ctx->kern, .y = y, .b = b, .n = n, .T = T, .gelu = gelu};
    plm_run(ctx, bias_worker, &j, T >= 4);
}

/* q, k, v (T, E) += their biases; k and v then rounded to F16 into kf, vf. */
typedef struct qkv_job {
    const plm_kernels *kern;
    float *q, *k, *v;
    const float *bq, *bk, *bv;
    plm_f16 *kf, *vf;
    int64_t E;
    int32_t T;
} qkv_job;

static void qkv_worker(void *arg, int ith, int nth) {
    const qkv_job *j = arg;
    int64_t t0, t1;
    plm_split_range(j->T, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        float *restrict q = j->q + t * j->E, *restrict k = j->k + t * j->E, *restrict v = j->v + t * j->E;
        for (int64_t i = 0; i < j->E; i++) {
            q[i] += j->bq[i];
            k[i] += j->bk[i];
            v[i] += j->bv[i];
        }
        j->kern->quantize[PLM_TYPE_F16](k, j->kf + t * j->E, j->E);
        j->kern->quantize[PLM_TYPE_F16](v, j->vf + t * j->E, j->E);
    }
}

/* Products whose input has outlier channels. BERT's hidden states carry a few
 * channels far larger than the rest (all-MiniLM-L6-v2: channel 99 at 8-10
 * where the median is 0.2), and a weight type whose activations are quantized
 * to 8-bit blocks (Q8_0 and the other block types) loses the small entries
 * sharing a block with them: on one- to five-word texts the Q8_0 file's
 * embeddings fell to cosine 0.997 of the float model's (llama.cpp: the same).
 * So, as LLM.int8() does, an entry beyond OUTLIER_RATIO times its row's RMS is
 * taken out of the quantized input and its product added in float from the
 * weight's dequantized column. The choice is per token and the added terms go
 * in channel order, so a token's result does not depend on its batch. */
#define OUTLIER_RATIO 6.0f
#define OUTLIERS_MAX 8   /* per token; the largest ones when there are more */

static bool quantizes_input(const plm_context *ctx, const plm_weight *w) {
    const plm_type d = ctx->kern->dot_type[w->type];
    return d != PLM_TYPE_F32 && d != PLM_TYPE_F16 && d != PLM_TYPE_BF16;
}

/* Columns of w for the nc channels ch[] of the block starting at channel c0,
 * element c of every row (n_out floats) into dst[i] for channel ch[i]: each
 * row's block is read (and, past Q8_0, dequantized) once for all of them. */
static void weight_columns(const plm_weight *w, int64_t c0, int nc, const int32_t *ch, float *const *dst) {
    const size_t off = plm_type_row_size(w->type, c0);
    const uint8_t *base = (const uint8_t *)w->data + off;
    if (w->type == PLM_TYPE_Q8_0) { /* the common case, read in place */
        for (int64_t r = 0; r < w->n_out; r++) {
            const plm_block_q8_0 *blk = (const plm_block_q8_0 *)(const void *)(base + (size_t)r * w->row_bytes);
            const float d = plm_f16_to_f32(blk->d);
            for (int i = 0; i < nc; i++) dst[i][r] = d * (float)blk->qs[ch[i] - c0];
        }
        return;
    }
    const int64_t bs = plm_type_traits_get(w->type)->block_size;
    float v[PLM_QK_K];
    for (int64_t r = 0; r < w->n_out; r++) {
        plm_dequantize_row_ref(w->type, base + (size_t)r * w->row_bytes, v, bs);
        for (int i = 0; i < nc; i++) dst[i][r] = v[ch[i] - c0];
    }
}

/* y (n) += a x (n) */
static void axpy(float *restrict y, float a, const float *restrict x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) y[i + k] += a * x[i + k];
    for (; i < n; i++) y[i] += a * x[i];
}

/* The outliers of token rows [t0, t1) of x, chosen, their values kept and their entries zeroed in x. */
typedef struct outlier_job {
    float *x;           /* (T, n) */
    int64_t n;
    int32_t T;
    int32_t *oc;        /* (T, OUTLIERS_MAX) channels in increasing order, -1 after the last */
    float *ov;          /* (T, OUTLIERS_MAX) their values */
    /* the adding pass: */
    int n_w;
    float *const *out;
    const int64_t *ldo, *n_out;
    const int32_t *slot; /* (n) channel -> its columns in col, or -1 */
    const float *col;    /* (n_slots, n_cols) the weights' columns of each outlier channel, one after the other */
    int64_t n_cols;
    const int8_t *qt;    /* one Q8_0 weight kept transposed (transpose_down), or NULL: its columns not in col */
    const float *dt;
} outlier_job;

static void outlier_pick_worker(void *arg, int ith, int nth) {
    const outlier_job *j = arg;
    const int64_t n = j->n;
    int64_t t0, t1;
    plm_split_range(j->T, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++) {
        float *xt = j->x + t * n;
        int32_t *o = j->oc + t * OUTLIERS_MAX;
        int k = 0;
        float acc[16] = {0}; /* independent partial sums: no chain of dependent adds */
        int64_t i0 = 0;
        for (; i0 + 16 <= n; i0 += 16)
            for (int u = 0; u < 16; u++) acc[u] += xt[i0 + u] * xt[i0 + u];
        for (; i0 < n; i0++) acc[0] += xt[i0] * xt[i0];
        float ss = 0.0f;
        for (int u = 0; u < 16; u++) ss += acc[u];
        const float lim = OUTLIER_RATIO * sqrtf(ss / (float)n);
        for (int64_t c0 = 0; c0 < n; c0 += 16) {
            const int64_t c1 = PLM_MIN(n, c0 + 16);
            if (c1 - c0 == 16) { /* a whole run below the limit (nearly all): one vector test */
                int any = 0;
                for (int u = 0; u < 16; u++) any |= fabsf(xt[c0 + u]) > lim;
                if (!any) continue;
            }
            for (int64_t i = c0; i < c1; i++) {
                if (!(fabsf(xt[i]) > lim)) continue;
                if (k == OUTLIERS_MAX) { /* full: drop the smallest if it is smaller */
                    int s = 0;
                    for (int u = 1; u < k; u++) s = fabsf(xt[o[u]]) < fabsf(xt[o[s]]) ? u : s;
                    if (fabsf(xt[o[s]]) >= fabsf(xt[i])) continue;
                    memmove(o + s, o + s + 1, (size_t)(k - 1 - s) * sizeof *o);
                    k--;
                }
                o[k++] = (int32_t)i;
            }
        }
        for (int u = 0; u < OUTLIERS_MAX; u++) {
            if (u >= k) {
                o[u] = -1;
                continue;
            }
            j->ov[t * OUTLIERS_MAX + u] = xt[o[u]];
            xt[o[u]] = 0.0f;
        }
    }
}

/* Token rows [t0, t1): x's outlier entries back, and their products added, channel by channel in increasing order. */
static void outlier_add_worker(void *arg, int ith, int nth) {
    const outlier_job *j = arg;
    int64_t t0, t1;
    plm_split_range(j->T, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++)
        for (int u = 0; u < OUTLIERS_MAX && j->oc[t * OUTLIERS_MAX + u] >= 0; u++) {
            const int32_t c = j->oc[t * OUTLIERS_MAX + u];
            const float v = j->ov[t * OUTLIERS_MAX + u];
            j->x[t * j->n + c] = v;
            if (j->qt) { /* as axpy of the column d * q */
                float *restrict o = j->out[0] + t * j->ldo[0];
                const int8_t *restrict q = j->qt + c * j->n_out[0];
                const float *restrict d = j->dt + (c / PLM_QK) * j->n_out[0];
                for (int64_t r = 0; r < j->n_out[0]; r++) o[r] += v * (d[r] * (float)q[r]);
                continue;
            }
            const float *cj = j->col + (int64_t)j->slot[c] * j->n_cols;
            for (int k = 0; k < j->n_w; k++) {
                axpy(j->out[k] + t * j->ldo[k], v, cj, j->n_out[k]);
                cj += j->n_out[k];
            }
        }
}

/* out[j] (T, ldo[j]) = W[j] x for x (T, n): plm_linear, with x's outlier
 * entries (above) computed in float: they are zeroed in x for the product
 * (quantized) and put back after it, and their products are added token by
 * token from the weights' columns, fetched once per outlier channel. */
static plm_status linear_outliers(plm_context *ctx, int n_w, const plm_weight *const *w, float *const *out, const int64_t *ldo,
                                  float *x, int64_t n, int32_t T, const int8_t *qt, const float *dt) {
    if (!quantizes_input(ctx, w[0])) return plm_linear(ctx, n_w, w, out, ldo, x, n, T, false, NULL, NULL);
    int64_t n_cols = 0, n_out[PLM_LINEAR_MAX_WEIGHTS];
    for (int k = 0; k < n_w; k++) n_cols += n_out[k] = w[k]->n_out;
    outlier_job j = {.x = x, .n = n, .T = T, .n_w = n_w, .out = out, .ldo = ldo, .n_out = n_out, .n_cols = n_cols,
                     .qt = n_w == 1 ? qt : NULL, .dt = dt};
    int32_t *slot = malloc((size_t)n * sizeof(int32_t));
    float *col = NULL;
    j.oc = malloc((size_t)T * OUTLIERS_MAX * sizeof(int32_t));
    j.ov = malloc((size_t)T * OUTLIERS_MAX * sizeof(float));
    plm_status st = PLM_OK;
    if (!slot || !j.oc || !j.ov) {
        st = plm_fail(PLM_ERR_OOM, "out of memory");
        goto done;
    }
    plm_run(ctx, outlier_pick_worker, &j, T >= 4);
    for (int64_t c = 0; c < n; c++) slot[c] = -1;
    int32_t n_slots = 0;
    for (int64_t i = 0; i < (int64_t)T * OUTLIERS_MAX && !j.qt; i++)
        if (j.oc[i] >= 0 && slot[j.oc[i]] < 0) slot[j.oc[i]] = n_slots++;
    if (n_slots && !(col = malloc((size_t)n_slots * (size_t)n_cols * sizeof(float)))) {
        /* x's entries go back before the error */
        for (int64_t i = 0; i < (int64_t)T * OUTLIERS_MAX; i++)
            if (j.oc[i] >= 0) x[(i / OUTLIERS_MAX) * n + j.oc[i]] = j.ov[i];
        st = plm_fail(PLM_ERR_OOM, "out of memory");
        goto done;
    }
    for (int k = 0; k < n_w; k++) { /* weight k's columns of the outlier channels, block by block */
        const int64_t bs = plm_type_traits_get(w[k]->type)->block_size;
        int64_t off = 0;
        for (int m = 0; m < k; m++) off += n_out[m];
        for (int64_t c0 = 0; c0 < n; c0 += bs) {
            int32_t ch[PLM_QK_K];
            float *dst[PLM_QK_K];
            int nc = 0;
            for (int64_t c = c0; c < c0 + bs; c++)
                if (slot[c] >= 0) {
                    ch[nc] = (int32_t)c;
                    dst[nc++] = col + (int64_t)slot[c] * n_cols + off;
                }
            if (nc) weight_columns(w[k], c0, nc, ch, dst);
        }
    }
    st = plm_linear(ctx, n_w, w, out, ldo, x, n, T, false, NULL, NULL);
    j.slot = slot;
    j.col = col;
    plm_run(ctx, outlier_add_worker, &j, T >= 4); /* x back even if the product failed */
done:
    free(slot);
    free(col);
    free(j.oc);
    free(j.ov);
    return st;
}

/* Bidirectional attention within each sequence, with the SIMD attention
 * kernels of the kernel table (the ones the decoders' cache attention uses):
 * k and v are rounded to F16 into kf, vf (T, E) as a cache would hold them. A
 * work item is (block of up to PLM_ATTN_ROWS tokens of one sequence, head);
 * its scores are the thread's PLM_ATTN_ROWS rows of n_ctx. */
typedef struct battn_job {
    plm_context *ctx;
    const int32_t *span;    /* (T, 2) [first, end) of each token's sequence */
    const int32_t *blocks;  /* (n_blocks, 2) first token and count of each block */
    int32_t n_blocks;
    const plm_f16 *kf, *vf; /* (T, E) */
} battn_job;

static void battn_worker(void *arg, int ith, int nth) {
    const battn_job *j = arg;
    plm_context *ctx = j->ctx;
    const plm_kernels *kern = ctx->kern;
    const plm_hparams *hp = &ctx->model->hp;
    const int H = hp->n_head, hd = hp->head_dim;
    const int64_t E = hp->n_embd, ss = ctx->kv.n_ctx;
    const float scale = hp->attn_scale;
    float *sc = ctx->scores + (size_t)ith * (size_t)ss * PLM_ATTN_ROWS;
    int64_t w0, w1;
    plm_split_range((int64_t)j->n_blocks * H, ith, nth, &w0, &w1);
    for (int64_t w = w0; w < w1; w++) {
        const int32_t t0 = j->blocks[2 * (w / H)], nt = j->blocks[2 * (w / H) + 1];
        const int h = (int)(w % H);
        const int32_t s0 = j->span[2 * t0], s1 = j->span[2 * t0 + 1], n = s1 - s0;
        const float *q = ctx->q + (int64_t)t0 * E + (int64_t)h * hd;           /* nt rows, E apart */
        for (int32_t c = 0; c < n; c += 8)
            kern->kq8_f16(hd, j->kf + (int64_t)(s0 + c) * E + (int64_t)h * hd, E, PLM_MIN(8, n - c), q, E, nt, sc + c, ss);
        for (int32_t r = 0; r < nt; r++) { /* softmax through the table's max and exp-sum passes */
            float *sr = sc + (int64_t)r * ss;
            float sf = scale;
            if (!(scale > 0)) {
                for (int32_t c = 0; c < n; c++) sr[c] *= scale;
                sf = 1.0f;
            }
            /* x * sf rounds monotonically for sf > 0: the largest product is the largest score's */
            const float m = kern->max_f32(sr, n) * sf;
            const float sum = kern->exp_sum_f32(sr, n, sf, m);
            const float inv = sum > 0 ? 1.0f / sum : 0.0f;
            for (int32_t c = 0; c < n; c++) sr[c] *= inv;
        }
        float *o = ctx->xn + (int64_t)t0 * E + (int64_t)h * hd;                /* nt rows, E apart */
        for (int32_t r = 0; r < nt; r++) memset(o + (int64_t)r * E, 0, (size_t)hd * sizeof(float));
        for (int32_t c = 0; c < n; c += 8)
            kern->pv8_f16(hd, j->vf + (int64_t)(s0 + c) * E + (int64_t)h * hd, E, PLM_MIN(8, n - c), sc + c, ss, nt, o, E);
    }
}

/* span[2t], span[2t+1]: the tokens of t's sequence; each sequence must be
 * contiguous, start at position 0, and be whole in this micro-batch. */
static plm_status sequence_spans(plm_context *ctx, const plm_ubatch *ub, int32_t *span) {
    const plm_kv *kv = &ctx->kv;
    for (int32_t t = 0; t < ub->T;) {
        int32_t e = t + 1;
        while (e < ub->T && ub->seq[e] == ub->seq[t]) e++;
        const uint64_t bit = (uint64_t)1 << ub->seq[t];
        int32_t held = 0;
        for (int32_t c = 0; c < kv->n_active; c++) held += (kv->seq[c] & bit) != 0;
        if (held != e - t)
            return plm_fail(PLM_ERR_ARG, "bert is an encoder: sequence %d must be decoded whole, in one plm_decode of at most n_batch (%d) tokens, "
                            "its tokens side by side (%d of its %d tokens are in this pass); clear it with plm_kv_seq_rm first",
                            ub->seq[t], ctx->params.n_batch, e - t, held);
        for (int32_t u = t; u < e; u++) {
            if (ub->pos[u] >= ctx->model->hp.n_ctx_train)
                return plm_fail(PLM_ERR_ARG, "position %d is past the model's %d positions (bert.context_length)", ub->pos[u], ctx->model->hp.n_ctx_train);
            span[2 * u] = t;
            span[2 * u + 1] = e;
        }
        t = e;
    }
    return PLM_OK;
}

static plm_status forward(plm_context *ctx, const plm_ubatch *ub) {
    const plm_model *m = ctx->model;
    const plm_hparams *hp = &m->hp;
    const bert_data *d = m->family_data;
    const int64_t E = hp->n_embd, F = hp->n_ff;
    const int32_t T = ub->T;
    plm_status st;
    for (int32_t t = 0; t < T; t++)
        if (ub->want[t])
            return plm_fail(PLM_ERR_UNSUPPORTED, "'%s' is an encoder (bert): it gives embeddings, not next-token logits (use embed, not generate, chat or classify)",
                            m->name ? m->name : m->arch);
    int32_t *span = malloc((size_t)T * 4 * sizeof(int32_t)), *blocks = span + 2 * T, n_blocks = 0;
    if (!span) return plm_fail(PLM_ERR_OOM, "out of memory");
    if ((st = sequence_spans(ctx, ub, span))) goto done;
    for (int32_t t = 0; t < T; t += blocks[2 * n_blocks++ + 1]) { /* blocks of PLM_ATTN_ROWS within a sequence */
        blocks[2 * n_blocks] = t;
        blocks[2 * n_blocks + 1] = PLM_MIN(PLM_ATTN_ROWS, span[2 * t + 1] - t);
    }
    /* F16 keys and values in the FFN's gate buffer, which bert does not use: (T, E) each, E <= n_ff (load) */
    plm_f16 *kf = (plm_f16 *)(void *)ctx->gate, *vf = kf + (int64_t)T * E;

    /* x (T, E) = tok_embd[token] + position_embd[pos] + token_types[0] */
    if ((st = plm_blk_embed(ctx, ub, 1.0f))) goto done;
    for (int32_t t = 0; t < T; t++) {
        float *x = ctx->x + (int64_t)t * E, *p = ctx->tmp + (int64_t)t * E;
        plm_dequantize_row_ref(d->pos.type, (const uint8_t *)d->pos.data + (size_t)ub->pos[t] * d->pos.row_bytes, p, E);
        for (int64_t i = 0; i < E; i++) x[i] += p[i] + (d->type0 ? d->type0[i] : 0.0f);
    }
    layer_norm(ctx, ctx->x, NULL, NULL, d->embd_norm_w, d->embd_norm_b, T);

    for (int il = 0; il < hp->n_layer; il++) {
        const plm_layer *L = &m->layers[il];
        const bert_layer *B = &d->layers[il];
        if ((st = plm_blk_check_abort(ctx, il))) goto done;
        const plm_weight *w[3] = {&L->wq, &L->wk, &L->wv};
        float *o[3] = {ctx->q, ctx->kn, ctx->vn};
        int64_t ld[3] = {E, E, E};
        if ((st = linear_outliers(ctx, 3, w, o, ld, ctx->x, E, T, NULL, NULL))) goto done;
        qkv_job qj = {.kern = ctx->kern, .q = ctx->q, .k = ctx->kn, .v = ctx->vn, .bq = L->bq, .bk = L->bk, .bv = L->bv,
                      .kf = kf, .vf = vf, .E = E, .T = T};
        plm_run(ctx, qkv_worker, &qj, T >= 4);
        battn_job aj = {.ctx = ctx, .span = span, .blocks = blocks, .n_blocks = n_blocks, .kf = kf, .vf = vf};
        plm_run(ctx, battn_worker, &aj, true);                                  /* xn (T, E) */
        if ((st = plm_blk_mm(ctx, &L->wo, ctx->tmp, E, ctx->xn, E, T, false))) goto done; /* tmp = Wo xn */
        layer_norm(ctx, ctx->x, ctx->tmp, B->bo, B->attn_norm_w, B->attn_norm_b, T);  /* x = LN(x + tmp + bo) */
        const plm_weight *wu[1] = {&L->w_up};
        float *ou[1] = {ctx->up};
        if ((st = linear_outliers(ctx, 1, wu, ou, &F, ctx->x, E, T, NULL, NULL))) goto done;  /* up (T, F) */
        add_bias(ctx, ctx->up, B->b_up, F, T, true);                            /* gelu(up + b) */
        const plm_weight *wd[1] = {&L->w_down};
        float *od[1] = {ctx->tmp};
        if ((st = linear_outliers(ctx, 1, wd, od, &E, ctx->up, F, T, B->down_qt, B->down_dt))) goto done; /* tmp (T, E) */
        layer_norm(ctx, ctx->x, ctx->tmp, B->b_down, B->out_norm_w, B->out_norm_b, T);
    }
    if (ctx->hidden_out) memcpy(ctx->hidden_out + (int64_t)ub->i0 * E, ctx->x, (size_t)T * (size_t)E * sizeof(float));
done:
    free(span);
    return st;
}

const plm_arch plm_arch_bert = {.name = "bert", .load = load, .forward = forward, .encoder = true};
