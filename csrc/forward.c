/*
 * forward.c — the batched transformer forward pass and the context around it.
 *
 * Owns plm_context_create/free and plm_decode. A batch is split into
 * micro-batches of at most n_batch tokens; each runs the llama block stack:
 *
 *   x  = tok_embd[token]                              (T, E)
 *   per layer:
 *     xn = rmsnorm(x) * attn_norm                     (T, E)
 *     q, k, v = Wq xn, Wk xn, Wv xn                   (T, Q), (T, KV), (T, KV)
 *     rope(q, k) at each token's position; k, v -> cache cells (F16)
 *     a  = softmax(q k^T / sqrt(hd) + mask) v         (T, Q)  mask: same sequence, pos <= own
 *     x += Wo a                                       (T, E)
 *     xn = rmsnorm(x) * ffn_norm
 *     x += Wdown (silu(Wgate xn) * Wup xn)            (T, F) -> (T, E)
 *   logits = Wout (rmsnorm(x) * output_norm)          (n_out, V) for the rows asked for
 *
 * Matrix products quantize the activations once per micro-batch into the
 * weight's dot partner type and split output rows across the thread pool. Cell
 * bookkeeping is in kvcache.c; kernels come from the table in quant.h.
 */
#include "context.h"
#include "matmul.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ params */

plm_context_params plm_context_default_params(void) {
    plm_context_params p = {.n_ctx = 0, .n_batch = 512, .n_seq_max = 8, .n_threads = 0};
    return p;
}

/* ------------------------------------------------------------ helpers */

/* ------------------------------------------------------------ attention */

typedef struct attn_job {
    plm_context *ctx;
    int il;
    int32_t T;
    const int32_t *pos;   /* (T) */
    const int32_t *seq;   /* (T) */
    const int32_t *cells; /* (T) cell of each token */
} attn_job;

/* Rotates pairs (x[2i], x[2i+1]) by pos * base^(-2i/n_rot) (ggml's "normal" mode);
 * theta advances by repeated multiplication as ggml does, for matching numerics. */
static void rope_row(float *x, int n_heads, int head_dim, int n_rot, int32_t pos, float base, float freq_scale,
                     const float *factors) {
    float theta_scale = powf(base, -2.0f / (float)n_rot);
    float cache[2 * 2048];
    float theta = (float)pos;
    for (int i = 0; i < n_rot / 2; i++) {
        float t = theta * freq_scale;
        if (factors) t /= factors[i];
        cache[2 * i] = cosf(t);
        cache[2 * i + 1] = sinf(t);
        theta *= theta_scale;
    }
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int i = 0; i < n_rot / 2; i++) {
            float c = cache[2 * i], s = cache[2 * i + 1];
            float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * c - b * s;
            v[2 * i + 1] = a * s + b * c;
        }
    }
}

static void rope_store_worker(void *arg, int ith, int nth) {
    const attn_job *job = arg;
    plm_context *ctx = job->ctx;
    const plm_hparams *hp = &ctx->model->hp;
    plm_kv *kv = &ctx->kv;
    const int64_t Q = (int64_t)hp->n_head * hp->head_dim;
    int64_t a, b;
    plm_split_range(job->T, ith, nth, &a, &b);
    for (int64_t t = a; t < b; t++) {
        float *q = ctx->q + t * Q, *k = ctx->kn + t * kv->kv_dim, *v = ctx->vn + t * kv->kv_dim;
        rope_row(q, hp->n_head, hp->head_dim, hp->n_rot, job->pos[t], hp->rope_base, hp->rope_freq_scale, ctx->model->rope_factors);
        rope_row(k, hp->n_head_kv, hp->head_dim, hp->n_rot, job->pos[t], hp->rope_base, hp->rope_freq_scale, ctx->model->rope_factors);
        size_t off = ((size_t)job->il * (size_t)kv->n_ctx + (size_t)job->cells[t]) * (size_t)kv->kv_dim;
        ctx->kern->quantize[PLM_TYPE_F16](k, kv->k + off, kv->kv_dim);
        ctx->kern->quantize[PLM_TYPE_F16](v, kv->v + off, kv->kv_dim);
    }
}

static void attn_worker(void *arg, int ith, int nth) {
    const attn_job *job = arg;
    plm_context *ctx = job->ctx;
    const plm_hparams *hp = &ctx->model->hp;
    const plm_kv *kv = &ctx->kv;
    const int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    const int64_t Q = (int64_t)hp->n_head * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    float *scores = ctx->scores + (size_t)ith * (size_t)kv->n_ctx;
    const size_t layer_off = (size_t)job->il * (size_t)kv->n_ctx * (size_t)kv->kv_dim;
    plm_f16 q16[4096];
    const plm_vec_dot_fn dot_f16 = ctx->kern->vec_dot[PLM_TYPE_F16];
    int64_t a, b;
    plm_split_range((int64_t)job->T * hp->n_head, ith, nth, &a, &b);
    for (int64_t w = a; w < b; w++) {
        int64_t t = w / hp->n_head;
        int h = (int)(w % hp->n_head), hk = h / group;
        const float *q = ctx->q + t * Q + (int64_t)h * hd;
        float *out = ctx->xn + t * Q + (int64_t)h * hd;
        const uint64_t bit = (uint64_t)1 << job->seq[t];
        const int32_t p = job->pos[t];
        /* q is rounded to F16 as the keys are (llama.cpp does the same), then dotted in F32. */
        ctx->kern->quantize[PLM_TYPE_F16](q, q16, hd);
        float mx = -INFINITY;
        for (int32_t c = 0; c < kv->n_active; c++) {
            if (!(kv->seq[c] & bit) || kv->pos[c] > p) {
                scores[c] = -INFINITY;
                continue;
            }
            const plm_f16 *kr = kv->k + layer_off + (size_t)c * (size_t)kv->kv_dim + (size_t)hk * (size_t)hd;
            float s = dot_f16(hd, kr, q16) * scale;
            scores[c] = s;
            if (s > mx) mx = s;
        }
        double sum = 0.0;
        for (int32_t c = 0; c < kv->n_active; c++) {
            float e = scores[c] == -INFINITY ? 0.0f : expf(scores[c] - mx);
            scores[c] = e;
            sum += (double)e;
        }
        float inv = sum > 0 ? (float)(1.0 / sum) : 0.0f;
        for (int i = 0; i < hd; i++) out[i] = 0.0f;
        /* Probabilities are rounded to F16 before the V product, as llama.cpp does. */
        for (int32_t c = 0; c < kv->n_active; c++) {
            float pc = plm_f16_to_f32(plm_f32_to_f16(scores[c] * inv));
            if (pc == 0.0f) continue;
            const plm_f16 *vr = kv->v + layer_off + (size_t)c * (size_t)kv->kv_dim + (size_t)hk * (size_t)hd;
            ctx->kern->axpy_f16(hd, pc, vr, out);
        }
    }
}

/* ------------------------------------------------------------ ffn activation */

typedef struct swiglu_job {
    float *gate;
    const float *up;
    int64_t n;
    int32_t T;
} swiglu_job;

static void swiglu_worker(void *arg, int ith, int nth) {
    const swiglu_job *job = arg;
    int64_t a, b;
    plm_split_range((int64_t)job->T * job->n, ith, nth, &a, &b);
    for (int64_t i = a; i < b; i++) {
        float g = job->gate[i];
        job->gate[i] = g / (1.0f + expf(-g)) * job->up[i];
    }
}

/* ------------------------------------------------------------ context */

void plm_context_free(plm_context *ctx) {
    if (!ctx) return;
    plm_pool_free(ctx->pool);
    plm_kv_release(&ctx->kv);
    plm_afree(ctx->x);
    plm_afree(ctx->xn);
    plm_afree(ctx->q);
    plm_afree(ctx->kn);
    plm_afree(ctx->vn);
    plm_afree(ctx->gate);
    plm_afree(ctx->up);
    plm_afree(ctx->act);
    plm_afree(ctx->scores);
    plm_afree(ctx->logits);
    free(ctx->logits_idx);
    free(ctx);
}

static plm_status alloc_scores(plm_context *ctx) {
    plm_afree(ctx->scores);
    ctx->scores = plm_amalloc((size_t)plm_pool_size(ctx->pool) * (size_t)ctx->kv.n_ctx * sizeof(float));
    return ctx->scores ? PLM_OK : plm_fail(PLM_ERR_OOM, "out of memory for attention scores");
}

plm_status plm_context_create(plm_model *model, const plm_context_params *params, plm_context **out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_context_create: out is NULL");
    *out = NULL;
    if (!model) return plm_fail(PLM_ERR_ARG, "plm_context_create: model is NULL");
    plm_clear_error();
    plm_context_params p = params ? *params : plm_context_default_params();
    const plm_hparams *hp = &model->hp;
    if (p.n_ctx < 0) return plm_fail(PLM_ERR_ARG, "n_ctx must be >= 0 (got %d)", p.n_ctx);
    if (p.n_ctx == 0) p.n_ctx = PLM_MIN(hp->n_ctx_train, 4096);
    if (p.n_batch <= 0) return plm_fail(PLM_ERR_ARG, "n_batch must be positive (got %d)", p.n_batch);
    if (p.n_seq_max < 1 || p.n_seq_max > PLM_MAX_SEQ)
        return plm_fail(PLM_ERR_ARG, "n_seq_max must be in [1, %d] (got %d)", PLM_MAX_SEQ, p.n_seq_max);
    if (p.n_threads < 0) return plm_fail(PLM_ERR_ARG, "n_threads must be >= 0 (got %d; 0 means one per physical core)", p.n_threads);
    if (p.n_threads > 512) return plm_fail(PLM_ERR_ARG, "n_threads %d is unreasonable (at most 512)", p.n_threads);
    if (p.n_threads == 0) p.n_threads = plm_physical_cores();
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    if (hp->head_dim > 4096 || hp->n_rot > 4096)
        return plm_fail(PLM_ERR_UNSUPPORTED, "attention head size %d is larger than supported (4096)", hp->head_dim);

    plm_context *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) return plm_fail(PLM_ERR_OOM, "out of memory");
    ctx->model = model;
    ctx->params = p;
    ctx->kern = plm_kernels_get();
    plm_status st = plm_kv_init(&ctx->kv, hp, p.n_ctx);
    if (st) goto fail;
    if ((st = plm_pool_create(p.n_threads, &ctx->pool))) goto fail;

    const size_t B = (size_t)p.n_batch;
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, KV = ctx->kv.kv_dim, F = hp->n_ff;
    const int64_t wide = PLM_MAX(PLM_MAX(E, Q), F);
    ctx->act_row_cap = (size_t)wide * sizeof(float) + 64;
    ctx->x = plm_amalloc(B * (size_t)E * sizeof(float));
    ctx->xn = plm_amalloc(B * (size_t)PLM_MAX(E, Q) * sizeof(float));
    ctx->q = plm_amalloc(B * (size_t)Q * sizeof(float));
    ctx->kn = plm_amalloc(B * (size_t)KV * sizeof(float));
    ctx->vn = plm_amalloc(B * (size_t)KV * sizeof(float));
    ctx->gate = plm_amalloc(B * (size_t)F * sizeof(float));
    ctx->up = plm_amalloc(B * (size_t)F * sizeof(float));
    ctx->act = plm_amalloc(B * ctx->act_row_cap);
    if (!ctx->x || !ctx->xn || !ctx->q || !ctx->kn || !ctx->vn || !ctx->gate || !ctx->up || !ctx->act) {
        st = plm_fail(PLM_ERR_OOM, "out of memory for a batch of %d tokens", p.n_batch);
        goto fail;
    }
    if ((st = alloc_scores(ctx))) goto fail;
    *out = ctx;
    return PLM_OK;
fail:
    plm_context_free(ctx);
    return st;
}

const plm_model *plm_context_model(const plm_context *ctx) { return ctx ? ctx->model : NULL; }
int32_t plm_context_n_ctx(const plm_context *ctx) { return ctx ? ctx->kv.n_ctx : 0; }
int32_t plm_context_n_threads(const plm_context *ctx) { return ctx ? plm_pool_size(ctx->pool) : 0; }

plm_status plm_context_set_threads(plm_context *ctx, int32_t n_threads) {
    if (!ctx) return plm_fail(PLM_ERR_ARG, "plm_context_set_threads: ctx is NULL");
    if (n_threads < 0 || n_threads > 512) return plm_fail(PLM_ERR_ARG, "n_threads must be in [0, 512] (got %d)", n_threads);
    if (n_threads == 0) n_threads = plm_physical_cores();
    if (n_threads == plm_pool_size(ctx->pool)) return PLM_OK;
    plm_pool *np;
    plm_status st = plm_pool_create(n_threads, &np);
    if (st) return st;
    plm_pool_free(ctx->pool);
    ctx->pool = np;
    ctx->params.n_threads = n_threads;
    return alloc_scores(ctx);
}

void plm_context_set_abort_callback(plm_context *ctx, plm_abort_fn fn, void *user) {
    if (!ctx) return;
    ctx->abort_fn = fn;
    ctx->abort_user = user;
}

/* ------------------------------------------------------------ decode */

static bool aborted(plm_context *ctx) { return ctx->abort_fn && ctx->abort_fn(ctx->abort_user) != 0; }

/* Runs T tokens (already assigned to cells) through the model; writes logits of
 * the rows with want[t] into ctx->logits starting at row *n_out. */
static plm_status forward_ubatch(plm_context *ctx, int32_t i0, int32_t T, const plm_token *tok, const int32_t *pos,
                                 const int32_t *seq, const int32_t *cells, const int8_t *want, int32_t *n_out) {
    const plm_model *m = ctx->model;
    const plm_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, KV = ctx->kv.kv_dim, F = hp->n_ff;

    for (int32_t t = 0; t < T; t++)
        plm_dequantize_row_ref(m->tok_embd.type, (const uint8_t *)m->tok_embd.data + (size_t)tok[t] * m->tok_embd.row_bytes,
                               ctx->x + (int64_t)t * E, E);

    attn_job aj = {.ctx = ctx, .T = T, .pos = pos, .seq = seq, .cells = cells};
    for (int il = 0; il < hp->n_layer; il++) {
        const plm_layer *L = &m->layers[il];
        if (aborted(ctx)) return plm_fail(PLM_ERR_CANCELLED, "decode cancelled by the abort callback at layer %d", il);
        {
            const plm_weight *w[3] = {&L->wq, &L->wk, &L->wv};
            float *o[3] = {ctx->q, ctx->kn, ctx->vn};
            int64_t ld[3] = {Q, KV, KV};
            plm_linear(ctx, 3, w, o, ld, ctx->x, E, T, false, L->attn_norm, ctx->xn);
        }
        aj.il = il;
        plm_run(ctx, rope_store_worker, &aj, T >= 4);
        plm_run(ctx, attn_worker, &aj, true);
        {
            const plm_weight *w[1] = {&L->wo};
            float *o[1] = {ctx->x};
            int64_t ld[1] = {E};
            plm_linear(ctx, 1, w, o, ld, ctx->xn, Q, T, true, NULL, NULL);
        }
        {
            const plm_weight *w[2] = {&L->w_gate, &L->w_up};
            float *o[2] = {ctx->gate, ctx->up};
            int64_t ld[2] = {F, F};
            plm_linear(ctx, 2, w, o, ld, ctx->x, E, T, false, L->ffn_norm, ctx->xn);
        }
        swiglu_job sj = {.gate = ctx->gate, .up = ctx->up, .n = F, .T = T};
        plm_run(ctx, swiglu_worker, &sj, true);
        {
            const plm_weight *w[1] = {&L->w_down};
            float *o[1] = {ctx->x};
            int64_t ld[1] = {E};
            plm_linear(ctx, 1, w, o, ld, ctx->gate, F, T, true, NULL, NULL);
        }
    }

    if (ctx->hidden_out)
        for (int32_t t = 0; t < T; t++)
            plm_rmsnorm_row(ctx->hidden_out + (int64_t)(i0 + t) * E, ctx->x + (int64_t)t * E, m->output_norm, E, hp->norm_eps);

    /* Gather the rows that want logits, normalize, project. */
    int32_t k = 0;
    for (int32_t t = 0; t < T; t++) {
        if (!want[t]) continue;
        if (k != t) memcpy(ctx->x + (int64_t)k * E, ctx->x + (int64_t)t * E, (size_t)E * sizeof(float));
        k++;
    }
    if (k == 0) return PLM_OK;
    const plm_weight *w[1] = {&m->output};
    float *o[1] = {ctx->logits + (int64_t)*n_out * hp->n_vocab};
    int64_t ld[1] = {hp->n_vocab};
    plm_linear(ctx, 1, w, o, ld, ctx->x, E, k, false, m->output_norm, ctx->xn);
    *n_out += k;
    return PLM_OK;
}

plm_status plm_decode(plm_context *ctx, const plm_batch *batch) {
    if (!ctx || !batch) return plm_fail(PLM_ERR_ARG, "plm_decode: NULL argument");
    plm_clear_error();
    const int32_t n = batch->n_tokens;
    const plm_hparams *hp = &ctx->model->hp;
    ctx->n_logits = 0;
    ctx->last_batch_n = 0;
    if (n <= 0) return plm_fail(PLM_ERR_ARG, "plm_decode: the batch is empty (n_tokens = %d)", n);
    if (!batch->token) return plm_fail(PLM_ERR_ARG, "plm_decode: batch.token is NULL");
    if (n > ctx->kv.n_ctx - ctx->kv.used)
        return plm_fail(PLM_ERR_CONTEXT_FULL, "context full: %d tokens do not fit (%d of %d cells in use)", n, ctx->kv.used, ctx->kv.n_ctx);

    int32_t *pos = malloc((size_t)n * sizeof(int32_t));
    int32_t *seq = malloc((size_t)n * sizeof(int32_t));
    int32_t *cells = malloc((size_t)n * sizeof(int32_t));
    int8_t *want = malloc((size_t)n);
    plm_status st = PLM_OK;
    if (!pos || !seq || !cells || !want) {
        st = plm_fail(PLM_ERR_OOM, "out of memory for a batch of %d tokens", n);
        goto done;
    }
    int32_t pos_max[PLM_MAX_SEQ];
    plm_kv_pos_max_all(&ctx->kv, pos_max);
    int32_t n_want = 0;
    for (int32_t i = 0; i < n; i++) {
        plm_token t = batch->token[i];
        if (t < 0 || t >= hp->n_vocab) {
            st = plm_fail(PLM_ERR_ARG, "batch token %d is %d, outside the vocabulary [0, %d)", i, t, hp->n_vocab);
            goto done;
        }
        int32_t s = batch->seq_id ? batch->seq_id[i] : 0;
        if (s < 0 || s >= ctx->params.n_seq_max) {
            st = plm_fail(PLM_ERR_ARG, "batch token %d has sequence id %d, outside [0, %d) (n_seq_max)", i, s, ctx->params.n_seq_max);
            goto done;
        }
        int32_t p = batch->pos ? batch->pos[i] : pos_max[s] + 1;
        if (p < 0) {
            st = plm_fail(PLM_ERR_ARG, "batch token %d has negative position %d", i, p);
            goto done;
        }
        if (p <= pos_max[s]) {
            st = plm_fail(PLM_ERR_ARG, "batch token %d: sequence %d already has position %d (positions must increase; remove later positions with plm_kv_seq_rm first)",
                          i, s, pos_max[s]);
            goto done;
        }
        pos_max[s] = p;
        pos[i] = p;
        seq[i] = s;
        want[i] = batch->logits ? (batch->logits[i] != 0) : (i == n - 1);
        n_want += want[i];
    }
    if ((st = plm_kv_find_free(&ctx->kv, n, cells))) goto done;

    /* Output buffers. */
    if (n_want > ctx->logits_cap) {
        plm_afree(ctx->logits);
        ctx->logits = plm_amalloc((size_t)n_want * (size_t)hp->n_vocab * sizeof(float));
        ctx->logits_cap = ctx->logits ? n_want : 0;
        if (!ctx->logits) {
            st = plm_fail(PLM_ERR_OOM, "out of memory for %d rows of logits", n_want);
            goto done;
        }
    }
    if (n > ctx->logits_idx_cap) {
        free(ctx->logits_idx);
        ctx->logits_idx = malloc((size_t)n * sizeof(int32_t));
        ctx->logits_idx_cap = ctx->logits_idx ? n : 0;
        if (!ctx->logits_idx) {
            st = plm_fail(PLM_ERR_OOM, "out of memory");
            goto done;
        }
    }

    int32_t n_out = 0;
    for (int32_t i0 = 0; i0 < n && !st; i0 += ctx->params.n_batch) {
        int32_t T = PLM_MIN(ctx->params.n_batch, n - i0);
        plm_kv *kv = &ctx->kv;
        for (int32_t t = 0; t < T; t++) {
            int32_t c = cells[i0 + t];
            kv->pos[c] = pos[i0 + t];
            kv->seq[c] = (uint64_t)1 << seq[i0 + t];
            kv->tok[c] = batch->token[i0 + t];
            if (c + 1 > kv->n_active) kv->n_active = c + 1;
        }
        kv->used += T;
        st = forward_ubatch(ctx, i0, T, batch->token + i0, pos + i0, seq + i0, cells + i0, want + i0, &n_out);
    }
    if (st) {
        for (int32_t i = 0; i < n; i++) plm_kv_cell_clear(&ctx->kv, cells[i]);
        plm_kv_recount(&ctx->kv);
        goto done;
    }
    int32_t r = 0;
    for (int32_t i = 0; i < n; i++) ctx->logits_idx[i] = want[i] ? r++ : -1;
    ctx->n_logits = n_out;
    ctx->last_batch_n = n;
done:
    free(pos);
    free(seq);
    free(cells);
    free(want);
    return st;
}

float *plm_context_logits(plm_context *ctx, int32_t i) {
    if (!ctx) return NULL;
    if (ctx->n_logits == 0) {
        plm_fail(PLM_ERR_ARG, "no logits: the last plm_decode asked for none (or failed)");
        return NULL;
    }
    if (i == -1) return ctx->logits + (int64_t)(ctx->n_logits - 1) * ctx->model->hp.n_vocab;
    if (i < 0 || i >= ctx->last_batch_n || ctx->logits_idx[i] < 0) {
        plm_fail(PLM_ERR_ARG, "no logits for batch entry %d (the batch had %d entries; ask with batch.logits)", i, ctx->last_batch_n);
        return NULL;
    }
    return ctx->logits + (int64_t)ctx->logits_idx[i] * ctx->model->hp.n_vocab;
}

int32_t plm_context_n_logits(const plm_context *ctx) { return ctx ? ctx->n_logits : 0; }
