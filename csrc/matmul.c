/*
 * matmul.c — the matrix-product driver of the forward pass, and its row helpers
 * (RMSNorm of a row, splitting a range across threads).
 *
 * plm_linear computes y_j = W_j x for one to three weights that read the same
 * input (q, k, v; gate, up): the input rows are RMS-normalized when asked and
 * quantized once into the weights' activation type (quant.h: the type the
 * table's vec_dot pairs them with; weights of different such types get one
 * pass each), then
 * the output rows of all the weights are split across the pool in multiples of
 * 8. Each thread walks its rows in tiles of ROW_BLOCK rows by ACT_BLOCK bytes of
 * activations, so that a tile's weights and activations stay in cache, with the
 * table's gemm for the tile or, where the table has none, vec_dot entry by
 * entry. When the context has adapters (lora.c), each weight an adapter targets
 * gets its delta scale * B (A x) added to its own output rows by the thread
 * that computed them, after A x was computed for every token in a pass of its
 * own (F32 dot products of one row each); the delta of a row is a sum over the
 * rank in a fixed order, so a token's result does not depend on the batch
 * around it or on the number of threads.
 * The kernel table is the one chosen at start-up (kernels/dispatch.c);
 * the architectures' graphs are forward.c's and models/'.
 */
#include "matmul.h"
#include "lora.h"

#include <math.h>
#include <string.h>

void plm_split_range(int64_t n, int ith, int nth, int64_t *a, int64_t *b) {
    int64_t per = (n + nth - 1) / nth;
    *a = PLM_MIN(n, per * ith);
    *b = PLM_MIN(n, *a + per);
}

/* RMSNorm of one row, times weight w (sum of squares in double, as ggml does). */
void plm_rmsnorm_row(float *out, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)(x[i] * x[i]);
    float mean = (float)(ss / (double)n);
    float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++) out[i] = (x[i] * scale) * w[i];
}

/* ------------------------------------------------------------ matmul job */

/* One adapter's update of one weight of a product: out_t += scale * B u_t, u_t = A x_t. */
typedef struct lora_term {
    const float *a;   /* (rank, n_in) */
    const float *bt;  /* (rank, ldb) B transposed, from the weight's first row (row0 of a view) */
    int64_t ldb;
    const float *x;   /* (T, ldx) the product's input (normalized when the product normalizes) */
    int64_t ldx, n_in;
    int32_t rank;
    float scale;
    float *u;         /* (T, rank) A x_t, in the context's scratch */
} lora_term;

#define MAX_TERMS (PLM_LINEAR_MAX_WEIGHTS * PLM_N_ADAPTERS_MAX)

/* Up to PLM_LINEAR_MAX_WEIGHTS weights that share one quantized activation:
 * y_j = W_j act, plus the adapters' deltas lora[first[j] .. first[j + 1]). */
typedef struct matmul_job {
    const plm_kernels *kern;
    int n_w;
    const plm_weight *w[PLM_LINEAR_MAX_WEIGHTS];
    float *out[PLM_LINEAR_MAX_WEIGHTS];          /* (T, ldo[j]) */
    int64_t ldo[PLM_LINEAR_MAX_WEIGHTS];
    bool accumulate;        /* out += W act instead of out = W act */
    const uint8_t *act;     /* (T, act_row) */
    size_t act_row;
    int32_t T;
    const lora_term *lora;
    int first[PLM_LINEAR_MAX_WEIGHTS + 1];
} matmul_job;

/* Rows [r0, r1) of out_t += scale * B u_t for every token: for k = 0..rank-1 in
 * order, out[r] += (scale u_t[k]) bt[k][r], the same sum for a row whatever
 * the batch or the rows' split across threads. Four rows at a time in a
 * generic vector type (SSE on x86-64, NEON on ARM), with the scalar's exact
 * operations per element. */
typedef float lora_v4 __attribute__((vector_size(16)));

static void lora_delta(const lora_term *L, float *out, int64_t ldo, int32_t T, int64_t r0, int64_t r1) {
    for (int32_t t = 0; t < T; t++) {
        float *o = out + (int64_t)t * ldo;
        const float *u = L->u + (int64_t)t * L->rank;
        for (int32_t k = 0; k < L->rank; k++) {
            const float c = L->scale * u[k];
            const float *bt = L->bt + (int64_t)k * L->ldb;
            int64_t r = r0;
            for (; r + 4 <= r1; r += 4) {
                lora_v4 ov, bv;
                memcpy(&ov, o + r, sizeof ov);
                memcpy(&bv, bt + r, sizeof bv);
                ov += c * bv;
                memcpy(o + r, &ov, sizeof ov);
            }
            for (; r < r1; r++) o[r] += c * bt[r];
        }
    }
}

/* Weight rows kept hot while the tokens pass over them: 64 rows (23 KB of the
 * default model's Q4_1, 82 KB at n_in 2048) stay in L2, and one gemm call per
 * 64 rows rather than 16 spreads the call's per-token set-up (the activation
 * blocks' scales and sums) over four times the rows: 15-30 % less time per token
 * at 4 to 64 tokens in plm-kernel-bench -b (avx512 and avx2 tables). */
#define ROW_BLOCK 64
#define ACT_BLOCK 65536 /* bytes of activations per pass over a row block (stays in L2) */

/* Each thread takes a share of the output rows (in multiples of 8, the row
 * group of the x8 kernels) and walks it in ROW_BLOCK rows x (ACT_BLOCK bytes of
 * tokens) pieces, so both the weight rows and the activations of a piece stay
 * in cache while it is computed. */
static void matmul_worker(void *arg, int ith, int nth) {
    const matmul_job *job = arg;
    int64_t total = 0;
    for (int j = 0; j < job->n_w; j++) total += job->w[j]->n_out;
    int64_t r0, r1;
    plm_split_range((total + 7) / 8, ith, nth, &r0, &r1);
    r0 = PLM_MIN(total, r0 * 8);
    r1 = PLM_MIN(total, r1 * 8);
    const int32_t tok_block = (int32_t)PLM_MAX(1, PLM_MIN(job->T, (int64_t)(ACT_BLOCK / job->act_row)));
    int64_t base = 0;
    for (int j = 0; j < job->n_w; j++) {
        const plm_weight *W = job->w[j];
        int64_t a = PLM_MAX(r0 - base, 0), b = PLM_MIN(r1 - base, W->n_out);
        base += W->n_out;
        if (a >= b) continue;
        const plm_gemm_fn gemm = job->kern->gemm[W->type];
        const plm_vec_dot_fn dot = job->kern->vec_dot[W->type];
        const uint8_t *wd = W->data;
        float *out = job->out[j];
        const int64_t ldo = job->ldo[j];
        for (int32_t t0 = 0; t0 < job->T; t0 += tok_block) {
            const int32_t nt = PLM_MIN(tok_block, job->T - t0);
            const uint8_t *act = job->act + (size_t)t0 * job->act_row;
            for (int64_t rb = a; rb < b; rb += ROW_BLOCK) {
                const int64_t re = PLM_MIN(b, rb + ROW_BLOCK);
                if (gemm) {
                    gemm(W->n_in, wd + (size_t)rb * W->row_bytes, W->row_bytes, (int)(re - rb), act, job->act_row, nt,
                         out + (int64_t)t0 * ldo + rb, ldo, job->accumulate);
                    continue;
                }
                for (int32_t t = 0; t < nt; t++) {
                    const uint8_t *at = act + (size_t)t * job->act_row;
                    float *o = out + (int64_t)(t0 + t) * ldo;
                    if (job->accumulate)
                        for (int64_t r = rb; r < re; r++) o[r] += dot(W->n_in, wd + (size_t)r * W->row_bytes, at);
                    else
                        for (int64_t r = rb; r < re; r++) o[r] = dot(W->n_in, wd + (size_t)r * W->row_bytes, at);
                }
            }
        }
        for (int k = job->first[j]; k < job->first[j + 1]; k++) lora_delta(&job->lora[k], out, ldo, job->T, a, b);
    }
}

/* u = A x for every (term, rank row) item, each over all T tokens. */
typedef struct lora_a_job {
    const plm_kernels *kern;
    const lora_term *terms;
    int n_terms;
    int64_t n_items;
    int32_t T;
} lora_a_job;

static void lora_a_worker(void *arg, int ith, int nth) {
    const lora_a_job *job = arg;
    const plm_vec_dot_fn fdot = job->kern->vec_dot[PLM_TYPE_F32];
    int64_t i0, i1;
    plm_split_range(job->n_items, ith, nth, &i0, &i1);
    int k = 0;
    int64_t base = 0;
    for (int64_t i = i0; i < i1; i++) {
        while (i - base >= job->terms[k].rank) base += job->terms[k++].rank;
        const lora_term *L = &job->terms[k];
        const int64_t row = i - base;
        const float *arow = L->a + row * L->n_in;
        for (int32_t t = 0; t < job->T; t++) L->u[(int64_t)t * L->rank + row] = fdot(L->n_in, arow, L->x + (int64_t)t * L->ldx);
    }
}

/* Quantize T rows of x (ld floats apart, n used) into ctx->act for dot type `type`. */
typedef struct quant_job {
    const plm_kernels *kern;
    plm_type type;
    const float *x;
    int64_t ldx, n;
    int32_t T;
    uint8_t *act;
    size_t act_row;
    /* optional rmsnorm applied first: into norm_out (T, n) */
    const float *norm_w;
    float *norm_out;
    float eps;
} quant_job;

static void quant_worker(void *arg, int ith, int nth) {
    const quant_job *job = arg;
    int64_t a, b;
    plm_split_range(job->T, ith, nth, &a, &b);
    for (int64_t t = a; t < b; t++) {
        const float *src = job->x + t * job->ldx;
        if (job->norm_w) {
            float *dst = job->norm_out + t * job->n;
            plm_rmsnorm_row(dst, src, job->norm_w, job->n, job->eps);
            src = dst;
        }
        job->kern->quantize[job->type](src, job->act + (size_t)t * job->act_row, job->n);
    }
}

static plm_type dot_type_of(const plm_context *ctx, const plm_weight *w) { return ctx->kern->dot_type[w->type]; }

void plm_run(plm_context *ctx, plm_pool_fn fn, void *arg, bool parallel) {
    if (parallel) plm_pool_run(ctx->pool, fn, arg);
    else fn(arg, 0, 1);
}

/* Quantize x (optionally rmsnorm'ed first) for W's dot type. */
static void prepare_act(plm_context *ctx, const plm_weight *W, const float *x, int64_t ldx, int64_t n, int32_t T,
                        const float *norm_w, float *norm_out) {
    quant_job job = {
        .kern = ctx->kern, .type = dot_type_of(ctx, W), .x = x, .ldx = ldx, .n = n, .T = T,
        .act = ctx->act, .act_row = plm_type_row_size(dot_type_of(ctx, W), n),
        .norm_w = norm_w, .norm_out = norm_out, .eps = ctx->model->hp.norm_eps,
    };
    plm_run(ctx, quant_worker, &job, T >= 4);
}

/* The adapters' terms of weights w[0..n_w) reading x (T rows, ldx apart) into
 * terms, first[j] the first of w[j]'s; computes u = A x for all of them. */
static void lora_terms(plm_context *ctx, int n_w, const plm_weight *const *w, const float *x, int64_t ldx, int32_t T,
                       lora_term *terms, int *first) {
    int n = 0;
    int64_t items = 0;
    float *u = ctx->lora_u;
    for (int j = 0; j < n_w; j++) {
        first[j] = n;
        for (int32_t i = 0; i < ctx->n_adapters; i++) {
            const plm_adapter_use *au = &ctx->adapters[i];
            const plm_lora_pair *p = plm_lora_find(au->a, w[j]);
            if (!p) continue;
            terms[n++] = (lora_term){.a = p->a, .bt = p->bt + w[j]->row0, .ldb = p->n_out, .x = x, .ldx = ldx, .n_in = p->n_in,
                                     .rank = p->rank, .scale = plm_lora_scale(au->a, p, au->scale), .u = u};
            u += (int64_t)T * p->rank;
            items += p->rank;
        }
    }
    first[n_w] = n;
    if (n == 0) return;
    lora_a_job job = {.kern = ctx->kern, .terms = terms, .n_terms = n, .n_items = items, .T = T};
    plm_run(ctx, lora_a_worker, &job, true);
}

/* out_j (=|+=) W_j act (+ adapters' deltas) for weights sharing the activations prepared by prepare_act. */
static void matmul(plm_context *ctx, int n_w, const plm_weight *const *w, float *const *out, const int64_t *ldo,
                   int32_t T, bool accumulate, const lora_term *terms, const int *first) {
    matmul_job job = {.kern = ctx->kern, .n_w = n_w, .accumulate = accumulate, .act = ctx->act,
                      .act_row = plm_type_row_size(dot_type_of(ctx, w[0]), w[0]->n_in), .T = T, .lora = terms};
    for (int j = 0; j <= n_w; j++) job.first[j] = first[j];
    for (int j = 0; j < n_w; j++) {
        job.w[j] = w[j];
        job.out[j] = out[j];
        job.ldo[j] = ldo[j];
    }
    plm_run(ctx, matmul_worker, &job, true);
}

/* y = W x for T rows of x; chooses grouping when the weights share a dot type. */
plm_status plm_linear(plm_context *ctx, int n_w, const plm_weight *const *w, float *const *out, const int64_t *ldo,
                      const float *x, int64_t ldx, int32_t T, bool accumulate, const float *norm_w, float *norm_out) {
    if (n_w < 1 || n_w > PLM_LINEAR_MAX_WEIGHTS)
        return plm_fail(PLM_ERR_ARG, "plm_linear: %d weights; one product takes 1 to %d", n_w, PLM_LINEAR_MAX_WEIGHTS);
    bool same = true;
    for (int j = 1; j < n_w; j++) same = same && dot_type_of(ctx, w[j]) == dot_type_of(ctx, w[0]);
    lora_term terms[MAX_TERMS];
    int first[PLM_LINEAR_MAX_WEIGHTS + 1] = {0};
    if (same) {
        prepare_act(ctx, w[0], x, ldx, w[0]->n_in, T, norm_w, norm_out);
        if (ctx->n_adapters)
            lora_terms(ctx, n_w, w, norm_w ? norm_out : x, norm_w ? w[0]->n_in : ldx, T, terms, first);
        matmul(ctx, n_w, w, out, ldo, T, accumulate, terms, first);
        return PLM_OK;
    }
    for (int j = 0; j < n_w; j++) {
        prepare_act(ctx, w[j], x, ldx, w[j]->n_in, T, j == 0 ? norm_w : NULL, norm_out);
        if (j == 0 && norm_w) {
            x = norm_out;
            ldx = w[0]->n_in;
        }
        if (ctx->n_adapters) lora_terms(ctx, 1, &w[j], x, ldx, T, terms, first);
        else first[1] = 0;
        matmul(ctx, 1, &w[j], &out[j], &ldo[j], T, accumulate, terms, first);
    }
    return PLM_OK;
}

