/*
 * models/blocks.c — the building blocks every family's graph composes.
 *
 * Owns the pieces of a transformer block that do not depend on the family:
 * embedding lookup, the Q/K/V products (with biases), RoPE in both pairings,
 * QK-norm, the KV-cache write, masked attention (causal, per sequence, sliding
 * window, soft-capped), the gated FFN (SiLU or tanh-GELU), post-norm residuals
 * and the output head. Matrix products and the pool come from matmul.h; which
 * blocks run in which order is each family's file (llama.c, qwen.c, ...).
 *
 * Numerics follow llama.cpp's CPU path where it makes a difference: q is
 * rounded to F16 like the cached keys before the dot product, attention
 * probabilities are rounded to F16 before the V product, and RoPE advances theta
 * by repeated multiplication.
 */
#include "models/models.h"
#include "matmul.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ embedding */

plm_status plm_blk_embed(plm_context *ctx, const plm_ubatch *ub, float scale) {
    const plm_model *m = ctx->model;
    const int64_t E = m->hp.n_embd;
    const plm_weight *W = &m->tok_embd;
    uint8_t row[8192]; /* a row read back from the x16 layout (quant.h) */
    uint8_t *buf = W->x16 && W->row_bytes > sizeof row ? malloc(W->row_bytes) : row;
    if (!buf) return plm_fail(PLM_ERR_OOM, "out of memory for a token embedding row");
    for (int32_t t = 0; t < ub->T; t++) {
        float *x = ctx->x + (int64_t)t * E;
        const size_t r = (size_t)ub->tok[t];
        const uint8_t *src = (const uint8_t *)W->data + r * W->row_bytes;
        if (W->x16) {
            plm_x16_row(W->type, (const uint8_t *)W->data + r / PLM_X16 * PLM_X16 * W->row_bytes, E, (int)(r % PLM_X16), buf);
            src = buf;
        }
        plm_dequantize_row_ref(W->type, src, x, E);
        if (scale != 1.0f)
            for (int64_t i = 0; i < E; i++) x[i] *= scale;
    }
    if (buf != row) free(buf);
    return PLM_OK;
}

plm_status plm_blk_check_abort(plm_context *ctx, int il) {
    if (ctx->abort_fn && ctx->abort_fn(ctx->abort_user) != 0)
        return plm_fail(PLM_ERR_CANCELLED, "decode cancelled by the abort callback at layer %d", il);
    return PLM_OK;
}

/* ------------------------------------------------------------ products */

plm_status plm_blk_mm(plm_context *ctx, const plm_weight *w, float *out, int64_t ldo, const float *x, int64_t ldx,
                      int32_t T, bool accumulate) {
    const plm_weight *ws[1] = {w};
    float *o[1] = {out};
    int64_t ld[1] = {ldo};
    return plm_linear(ctx, 1, ws, o, ld, x, ldx, T, accumulate, NULL, NULL);
}

static void add_bias(float *y, int64_t ld, const float *b, int64_t n, int32_t T) {
    for (int32_t t = 0; t < T; t++)
        for (int64_t i = 0; i < n; i++) y[(int64_t)t * ld + i] += b[i];
}

plm_status plm_blk_qkv(plm_context *ctx, const plm_layer *L, int32_t T, const float *norm_w) {
    const plm_hparams *hp = &ctx->model->hp;
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, KV = ctx->kv.kv_dim;
    const plm_weight *w[3] = {&L->wq, &L->wk, &L->wv};
    float *o[3] = {ctx->q, ctx->kn, ctx->vn};
    int64_t ld[3] = {Q, KV, KV};
    plm_status st = plm_linear(ctx, 3, w, o, ld, ctx->x, E, T, false, norm_w, ctx->xn);
    if (st) return st;
    if (L->bq) add_bias(ctx->q, Q, L->bq, Q, T);
    if (L->bk) add_bias(ctx->kn, KV, L->bk, KV, T);
    if (L->bv) add_bias(ctx->vn, KV, L->bv, KV, T);
    return PLM_OK;
}

/* ------------------------------------------------------------ attention */

typedef struct attn_job {
    plm_context *ctx;
    const plm_ubatch *ub;
    const plm_attn *a;
    const int32_t *blk; /* (n_blk + 1) token blocks of attention items: tokens [blk[b], blk[b + 1]), one sequence each */
    int32_t n_blk;
    atomic_llong next;  /* attention items handed out so far (attn_worker) */
} attn_job;

/* RoPE of one position: cache[2i], cache[2i + 1] = cos and sin of pos * base^(-2i/n_rot) (divided by
 * factors[i], times freq_scale), scaled by mscale as ggml does; theta advances by repeated multiplication as in
 * ggml, for matching numerics. Computed once per token for its q and k. */
static void rope_cache(float *cache, int n_rot, int32_t pos, float base, float freq_scale, float mscale,
                       const float *factors) {
    float theta_scale = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int i = 0; i < n_rot / 2; i++) {
        float t = factors ? theta / factors[i] : theta;
        t *= freq_scale;
        cache[2 * i] = cosf(t) * mscale;
        cache[2 * i + 1] = sinf(t) * mscale;
        theta *= theta_scale;
    }
}

/* Rotates pairs of each head's first n_rot dimensions by the angles of cache (rope_cache): NORM pairs
 * (2i, 2i+1), NEOX pairs (i, i + n_rot/2). */
static void rope_row(float *x, int n_heads, int head_dim, int n_rot, plm_rope_type type, const float *cache) {
    const int half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            float c = cache[2 * i], s = cache[2 * i + 1];
            int i0 = type == PLM_ROPE_NEOX ? i : 2 * i, i1 = type == PLM_ROPE_NEOX ? i + half : 2 * i + 1;
            float a = v[i0], b = v[i1];
            v[i0] = a * c - b * s;
            v[i1] = a * s + b * c;
        }
    }
}

/* In place: each head of a row (n_heads * head_dim) RMS-normalized times w. */
static void head_norm(const plm_kernels *kern, float *x, int n_heads, int head_dim, const float *w, float eps) {
    for (int h = 0; h < n_heads; h++) kern->rmsnorm(x + (int64_t)h * head_dim, x + (int64_t)h * head_dim, w, head_dim, eps);
}

static void rope_store_worker(void *arg, int ith, int nth) {
    const attn_job *job = arg;
    plm_context *ctx = job->ctx;
    const plm_attn *a = job->a;
    const plm_hparams *hp = &ctx->model->hp;
    plm_kv *kv = &ctx->kv;
    const int64_t Q = (int64_t)hp->n_head * hp->head_dim;
    int64_t t0, t1;
    plm_split_range(job->ub->T, ith, nth, &t0, &t1);
    /* The cells' lines are asked for first: a key goes into its block's columns, one 2-byte store per line of
     * PLM_KV_BLOCK x 2 dimensions, lines that are seldom in cache (a sequence's last block was read one step
     * ago); stored as they came, the stores' misses queued up one behind the other (75% of this worker's time
     * on a 16-sequence step). */
    const size_t line_dims = 64 / (PLM_KV_BLOCK * sizeof(plm_f16));
    for (int64_t t = t0; t < t1; t++) {
        const int32_t c = job->ub->cells[t];
        for (int64_t j = 0; j < kv->kv_dim; j += (int64_t)(line_dims ? line_dims : 1))
            __builtin_prefetch(kv->k + plm_kv_k_at(kv, a->il, c, j), 1, 3);
        const char *vp = (const char *)(kv->v + ((size_t)a->il * (size_t)kv->n_ctx + (size_t)c) * (size_t)kv->kv_dim);
        for (size_t b = 0; b < (size_t)kv->kv_dim * sizeof(plm_f16); b += 64) __builtin_prefetch(vp + b, 1, 3);
    }
    for (int64_t t = t0; t < t1; t++) {
        float *q = ctx->q + t * Q, *k = ctx->kn + t * kv->kv_dim, *v = ctx->vn + t * kv->kv_dim;
        const int32_t pos = job->ub->pos[t];
        if (a->q_norm) head_norm(ctx->kern, q, hp->n_head, hp->head_dim, a->q_norm, hp->norm_eps);
        if (a->k_norm) head_norm(ctx->kern, k, hp->n_head_kv, hp->head_dim, a->k_norm, hp->norm_eps);
        float cache[2 * 2048];
        rope_cache(cache, hp->n_rot, pos, a->rope_base, a->rope_freq_scale, hp->rope_attn_factor, a->rope_factors);
        rope_row(q, hp->n_head, hp->head_dim, hp->n_rot, hp->rope_type, cache);
        rope_row(k, hp->n_head_kv, hp->head_dim, hp->n_rot, hp->rope_type, cache);
        if (a->q_scale != 1.0f)
            for (int64_t i = 0; i < Q; i++) q[i] *= a->q_scale;
        const int32_t c = job->ub->cells[t];
        const size_t off = ((size_t)a->il * (size_t)kv->n_ctx + (size_t)c) * (size_t)kv->kv_dim;
        /* the key into its block's columns (context.h), converted a piece at a time */
        plm_f16 kh[256];
        for (int64_t j0 = 0; j0 < kv->kv_dim; j0 += 256) {
            const int64_t n = PLM_MIN(256, kv->kv_dim - j0);
            ctx->kern->quantize[PLM_TYPE_F16](k + j0, kh, n);
            plm_f16 *dst = kv->k + plm_kv_k_at(kv, a->il, c, j0);
            for (int64_t j = 0; j < n; j++) dst[j * PLM_KV_BLOCK] = kh[j];
        }
        ctx->kern->quantize[PLM_TYPE_F16](v, kv->v + off, kv->kv_dim);
    }
}

/* A work item is (KV head hk, a few tokens of one sequence): the query heads
 * that share hk's keys and values (at most ATTN_HEADS of them) for up to
 * PLM_ATTN_ROWS / heads consecutive tokens of the micro-batch form the rows of
 * one pass over that sequence's cells, in position order (kvcache.c's list),
 * a run of up to PLM_ATTN_CELLS cells at a time where they lie in order (kqt_f16
 * / pv8_f16 read them in place), else a block gathered, so each cached row is
 * converted once for all of them. The pass covers the list from the first cell the window lets any
 * row see to the last one the causal mask does: its cost follows the
 * sequence's own length, not the cache's. Each row's numbers depend only on its
 * own query and its sequence's visible cells in position order, not on the
 * other rows of the item, on other sequences or on where the cells lie. */
#define ATTN_HEADS 8
#define ATTN_HD_MAX 256 /* q and output rows of an item stay on the stack (16 KB each) */

/* Each item reads its sequence's keys and then its values once, from memory when the cache holds more than the
 * last-level cache does (16 sequences of ~80 cells: ~30 MB a step beside the weights' 80 MB): the cells lie in
 * blocks scattered through the cache, whose next ones no hardware prefetcher guesses. So the pass's cells are
 * asked for into L2 a window ahead of the ones computed, keys then values as one sequence of places: the first
 * ATTN_AHEAD bytes' worth at the item's start, then as far again past each run computed. Asked for a block or a
 * few rows ahead of use instead, the kernels waited on their loads (the F16 conversions reading the cache took
 * 70-80% of their samples): a 16-sequence step's attention took 27-40% less time this way. */
#define ATTN_AHEAD 32768 /* bytes of one head's keys or values (hd F16 values a cell) asked for ahead */

typedef struct kv_ahead {
    const plm_kv *kv;
    const plm_f16 *k, *v; /* the layer's keys at column hk hd, its values at that column */
    const int32_t *l;     /* the sequence's cells by place */
    int32_t beg, n;       /* the pass: places [beg, beg + n) */
    int32_t next;         /* the first of the pass's 2 n reads (keys of its places, then values) not asked for */
    int hd;
} kv_ahead;

/* Asks for the pass's reads up to i (keys of place beg + j for j < n, then values of place beg + j - n). */
static void ahead_to(kv_ahead *pa, int64_t i) {
    const plm_kv *kv = pa->kv;
    const size_t row_bytes = (size_t)pa->hd * sizeof(plm_f16), ld = (size_t)kv->kv_dim;
    const int32_t to = (int32_t)PLM_MIN(i, 2 * (int64_t)pa->n);
    for (; pa->next < to; pa->next++) {
        const int32_t j = pa->next < pa->n ? pa->next : pa->next - pa->n, c = pa->l[pa->beg + j];
        if (pa->next < pa->n) {
            /* a block of keys (hd x PLM_KV_BLOCK values side by side) once, at its first cell in the pass */
            if (j > 0 && pa->l[pa->beg + j - 1] / PLM_KV_BLOCK == c / PLM_KV_BLOCK) continue;
            const char *p = (const char *)(pa->k + (size_t)(c / PLM_KV_BLOCK) * PLM_KV_BLOCK * ld);
            for (size_t b = 0; b < row_bytes * PLM_KV_BLOCK; b += 64) __builtin_prefetch(p + b, 0, 2);
        } else {
            const char *p = (const char *)(pa->v + (size_t)c * ld);
            for (size_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(p + b, 0, 2);
            __builtin_prefetch(p + row_bytes - 1, 0, 2);
        }
    }
}

/* How many of cells l[0..n) follow l[0] one after another (at least 1). */
static int cell_run(const int32_t *l, int n) {
    int c = 1;
    while (c < n && l[c] == l[0] + c) c++;
    return c;
}

/* The F16 rows of cells l[0..nc) of the layer's slice X: in place when the cells are consecutive, else
 * gathered into buf (stride hd). Rows are copied 16 bytes at a time (a fixed-size memcpy the compiler inlines),
 * not through a libc call per row. */
static const plm_f16 *gather_rows(const plm_kv *kv, const plm_f16 *X, const int32_t *l, int nc, int hd, plm_f16 *buf,
                                  int64_t *stride) {
    const size_t ld = (size_t)kv->kv_dim, row_bytes = (size_t)hd * sizeof(plm_f16);
    if (cell_run(l, nc) == nc) {
        *stride = kv->kv_dim;
        return X + (size_t)l[0] * ld;
    }
    const size_t n16 = row_bytes / 16, tail = row_bytes % 16;
    for (int c = 0; c < nc; c++) {
        const char *src = (const char *)(X + (size_t)l[c] * ld);
        char *dst = (char *)(buf + (size_t)c * (size_t)hd);
        for (size_t i = 0; i < n16; i++) memcpy(dst + 16 * i, src + 16 * i, 16);
        if (tail) memcpy(dst + 16 * n16, src + 16 * n16, tail);
    }
    *stride = hd;
    return buf;
}

/* The keys of head hk (hd values from column hk hd) of cells l[0..nc) of layer il, transposed (PLM_KV_BLOCK
 * apart per dimension, kqt_f16's layout): in place when the cells are one block of the cache from its first
 * cell (kvcache.c places a sequence's cells so), else copied into buf (NULL: none, see key_scores). */
static const plm_f16 *key_block(const plm_kv *kv, int il, int hk, int hd, const int32_t *l, int nc, plm_f16 *buf) {
    const int64_t col = (int64_t)hk * hd;
    bool run = l[0] % PLM_KV_BLOCK == 0;
    for (int c = 1; c < nc && run; c++) run = l[c] == l[0] + c;
    if (run) return kv->k + plm_kv_k_at(kv, il, l[0], col);
    if (!buf) return NULL;
    memset(buf, 0, (size_t)hd * PLM_KV_BLOCK * sizeof(plm_f16)); /* lanes past nc: read by the kernel, dropped */
    for (int c = 0; c < nc; c++) {
        const plm_f16 *src = kv->k + plm_kv_k_at(kv, il, l[c], col);
        for (int d = 0; d < hd; d++) buf[d * PLM_KV_BLOCK + c] = src[(size_t)d * PLM_KV_BLOCK];
    }
    return buf;
}

/* How many of cells l[0..n) kqt_f16 reads in place: a run from the start of a block of the cache, all n when
 * it runs to the end, else its whole blocks (0: none, l[0] is not a block's first cell). */
static int key_run(const int32_t *l, int n) {
    if (l[0] % PLM_KV_BLOCK != 0) return 0;
    const int r = cell_run(l, n);
    return r == n ? n : r / PLM_KV_BLOCK * PLM_KV_BLOCK;
}

/* Scores of rows q (nr of them, hd apart) against the keys of cells l[0..nc) when key_block has no room for
 * them (heads above ATTN_HD_MAX, cells scattered): kqt_f16's chain, cell by cell. */
static void key_scores(const plm_kv *kv, int il, int hk, int hd, const int32_t *l, int nc, const float *q, int nr,
                       float *s, int64_t ss) {
    for (int c = 0; c < nc; c++) {
        const plm_f16 *k = kv->k + plm_kv_k_at(kv, il, l[c], (int64_t)hk * hd);
        for (int r = 0; r < nr; r++) {
            float sum = 0.0f;
            for (int d = 0; d < hd; d++) sum = fmaf(q[(int64_t)r * hd + d], plm_f16_to_f32(k[(size_t)d * PLM_KV_BLOCK]), sum);
            s[r * ss + c] = sum;
        }
    }
}

static void attn_worker(void *arg, int ith, int nth) {
    const attn_job *job = arg;
    plm_context *ctx = job->ctx;
    const plm_attn *a = job->a;
    const plm_hparams *hp = &ctx->model->hp;
    const plm_kv *kv = &ctx->kv;
    const plm_kernels *kern = ctx->kern;
    const plm_ubatch *ub = job->ub;
    const int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    const int64_t Q = (int64_t)hp->n_head * hd;
    const float scale = a->kq_scale, cap = a->softcap, inv_cap = cap > 0 ? 1.0f / cap : 0.0f;
    const int32_t window = a->n_swa;
    const size_t layer_off = (size_t)a->il * (size_t)kv->n_ctx * (size_t)kv->kv_dim;
    /* rows: heads x tokens of an item (plm_blk_attention made the token blocks of this size) */
    const int nqc = PLM_MIN(group, ATTN_HEADS);
    const int rows_cap = hd <= ATTN_HD_MAX ? PLM_ATTN_ROWS : 1;
    const int heads = PLM_MIN(nqc, rows_cap);
    const int chunks = (group + heads - 1) / heads;
    const int64_t blocks = job->n_blk;
    /* scores of the item's rows, n_ctx apart, indexed by place in the sequence's list
     * (forward.c reserves PLM_ATTN_ROWS rows per thread) */
    float *scores = ctx->scores + (size_t)ith * (size_t)kv->n_ctx * PLM_ATTN_ROWS;
    float qbuf[PLM_ATTN_ROWS * ATTN_HD_MAX], obuf[PLM_ATTN_ROWS * ATTN_HD_MAX];
    plm_f16 kvbuf[PLM_KV_BLOCK * ATTN_HD_MAX]; /* a block of keys (PLM_KV_BLOCK x hd) or 8 rows of values */
    float *qr = hd <= ATTN_HD_MAX ? qbuf : NULL, *orow = hd <= ATTN_HD_MAX ? obuf : NULL;
    plm_f16 *gbuf = hd <= ATTN_HD_MAX ? kvbuf : NULL;
    (void)nth;
    /* items are taken one at a time as threads come free: their costs follow their sequences' lengths, which a
     * fixed split would leave unequal (each item's numbers do not depend on the thread that computes it) */
    const int64_t n_items = (int64_t)hp->n_head_kv * chunks * blocks;
    atomic_llong *next = &((attn_job *)arg)->next;
    for (int64_t w; (w = atomic_fetch_add_explicit(next, 1, memory_order_relaxed)) < n_items;) {
        const int hk = (int)(w / ((int64_t)chunks * blocks));
        const int hc = (int)(w / blocks % chunks);
        const int64_t t0 = job->blk[w % blocks];
        const int h0 = hk * group + hc * heads, nh = PLM_MIN(heads, (hk + 1) * group - h0);
        const int nt = (int)(job->blk[w % blocks + 1] - t0), nr = nt * nh;
        const int32_t s = ub->seq[t0];
        const int32_t *l = kv->cells[s];
        /* token ti sees list places [lo[ti], hi[ti]); both grow with ti (positions increase) */
        int32_t lo[PLM_ATTN_ROWS], hi[PLM_ATTN_ROWS];
        for (int ti = 0; ti < nt; ti++) {
            const int32_t p = ub->pos[t0 + ti];
            hi[ti] = plm_kv_n_upto(kv, s, p);
            lo[ti] = window > 0 ? plm_kv_n_upto(kv, s, p - window) : 0;
        }
        const int32_t c_beg = lo[0] & ~(PLM_KV_BLOCK - 1), c_end = hi[nt - 1];
        /* row r = token t0 + r / nh, head h0 + r % nh; a big head works in place in its output row */
        float *q_rows = qr ? qr : ctx->xn + t0 * Q + (int64_t)h0 * hd;
        float *o_rows = orow ? orow : q_rows;
        for (int r = 0; r < nr; r++)
            memcpy(q_rows + (int64_t)r * hd, ctx->q + (t0 + r / nh) * Q + (int64_t)(h0 + r % nh) * hd,
                   (size_t)hd * sizeof(float));
        /* q is rounded to F16 as the keys are (llama.cpp does the same), then dotted in F32 */
        kern->round_f16(q_rows, (int64_t)nr * hd, 1.0f);
        const plm_f16 *V = kv->v + layer_off + (size_t)hk * (size_t)hd;
        const int64_t kbs = (int64_t)kv->kv_dim * PLM_KV_BLOCK; /* from a block of keys to the next */
        const int32_t ahead_cells = PLM_MAX(PLM_KV_BLOCK, ATTN_AHEAD / (hd * (int)sizeof(plm_f16)));
        kv_ahead ahead = {.kv = kv, .k = kv->k + plm_kv_k_at(kv, a->il, 0, (int64_t)hk * hd), .v = V, .l = l,
                          .beg = c_beg, .n = c_end - c_beg, .hd = hd};
        ahead_to(&ahead, ahead_cells);
        for (int32_t c0 = c_beg; c0 < c_end;) {
            /* a run of whole blocks in place (up to the pass's end), else one block through key_block */
            int nc = key_run(l + c0, PLM_MIN(PLM_ATTN_CELLS, c_end - c0));
            const plm_f16 *kb = NULL;
            if (nc > 0) kb = kv->k + plm_kv_k_at(kv, a->il, l[c0], (int64_t)hk * hd);
            else {
                nc = PLM_MIN(PLM_KV_BLOCK, c_end - c0);
                kb = key_block(kv, a->il, hk, hd, l + c0, nc, gbuf);
            }
            ahead_to(&ahead, (int64_t)c0 + nc - c_beg + ahead_cells);
            if (kb) kern->kqt_f16(hd, kb, kbs, nc, q_rows, hd, nr, scores + c0, kv->n_ctx);
            else key_scores(kv, a->il, hk, hd, l + c0, nc, q_rows, nr, scores + c0, kv->n_ctx);
            c0 += nc;
        }
        /* Each row's softmax runs over its own visible places [lo, hi) (the mask is that range: no test
         * per cell), so its sums do not depend on the item's other rows; the places of the pass outside
         * it get probability 0, which pv8_f16 skips. */
        for (int r = 0; r < nr; r++) {
            const int ti = r / nh;
            float *sr = scores + (size_t)r * (size_t)kv->n_ctx;
            const int32_t n = hi[ti] - lo[ti];
            float *x = sr + lo[ti];
            memset(sr + c_beg, 0, (size_t)(lo[ti] - c_beg) * sizeof(float));
            memset(sr + hi[ti], 0, (size_t)(c_end - hi[ti]) * sizeof(float));
            float sc = scale;
            if (cap > 0 || !(scale > 0)) {
                for (int32_t c = 0; c < n; c++) x[c] = cap > 0 ? cap * tanhf(x[c] * scale * inv_cap) : x[c] * scale;
                sc = 1.0f;
            }
            /* x * sc rounds monotonically for sc > 0, so the largest product is the largest score's */
            const float mx = kern->max_f32(x, n) * sc;
            const float sum = kern->exp_sum_f32(x, n, sc, mx);
            const float inv = sum > 0 ? 1.0f / sum : 0.0f;
            /* Probabilities are rounded to F16 before the V product, as llama.cpp does (normalized in the
             * same pass). */
            kern->round_f16(x, n, inv);
        }
        memset(o_rows, 0, (size_t)nr * (size_t)hd * sizeof(float));
        for (int32_t c0 = c_beg; c0 < c_end;) {
            /* a run of consecutive cells in place (one cell is one), else 8 gathered */
            int nc = cell_run(l + c0, PLM_MIN(PLM_ATTN_CELLS, c_end - c0));
            int64_t vs = kv->kv_dim;
            const plm_f16 *vb = V + (size_t)l[c0] * (size_t)kv->kv_dim;
            if (gbuf && nc < PLM_MIN(8, c_end - c0)) {
                nc = PLM_MIN(8, c_end - c0);
                vb = gather_rows(kv, V, l + c0, nc, hd, gbuf, &vs);
            }
            ahead_to(&ahead, (int64_t)ahead.n + c0 + nc - c_beg + ahead_cells);
            kern->pv8_f16(hd, vb, vs, nc, scores + c0, kv->n_ctx, nr, o_rows, hd);
            c0 += nc;
        }
        if (orow)
            for (int r = 0; r < nr; r++)
                memcpy(ctx->xn + (t0 + r / nh) * Q + (int64_t)(h0 + r % nh) * hd, o_rows + (int64_t)r * hd,
                       (size_t)hd * sizeof(float));
    }
}

void plm_blk_attention(plm_context *ctx, const plm_ubatch *ub, const plm_attn *a) {
    /* Token blocks of the items: runs of one sequence, cut every tpi tokens. */
    const plm_hparams *hp = &ctx->model->hp;
    const int group = hp->n_head / hp->n_head_kv;
    const int rows_cap = hp->head_dim <= ATTN_HD_MAX ? PLM_ATTN_ROWS : 1;
    const int tpi = PLM_MAX(1, rows_cap / PLM_MIN(PLM_MIN(group, ATTN_HEADS), rows_cap));
    int32_t *blk = ctx->attn_blk, n_blk = 0;
    for (int32_t t = 0; t < ub->T; t++)
        if (t == 0 || ub->seq[t] != ub->seq[t - 1] || t - blk[n_blk - 1] >= tpi) blk[n_blk++] = t;
    blk[n_blk] = ub->T;
    attn_job job = {.ctx = ctx, .ub = ub, .a = a, .blk = blk, .n_blk = n_blk};
    atomic_init(&job.next, 0);
    plm_run(ctx, rope_store_worker, &job, ub->T >= 4);
    plm_run(ctx, attn_worker, &job, true);
}

plm_attn plm_attn_default(const plm_model *m, int il) {
    const plm_layer *L = &m->layers[il];
    plm_attn a = {
        .il = il, .n_swa = L->n_swa, .rope_base = L->rope_base, .rope_freq_scale = L->rope_freq_scale,
        .rope_factors = m->rope_factors, .q_norm = L->q_norm, .k_norm = L->k_norm,
        .q_scale = 1.0f, .kq_scale = m->hp.attn_scale, .softcap = m->hp.attn_softcap,
    };
    return a;
}

/* ------------------------------------------------------------ feed-forward */

typedef struct glu_job {
    const plm_kernels *kern;
    float *gate;     /* (T, n) in: gate pre-activation; out: act(gate) * up */
    const float *up; /* (T, n) */
    int64_t n;
    int32_t T;
} glu_job;

/* SiLU(gate) * up, exp(-gate) from the table's exp_sum_f32 (a vectorized exp on SIMD tables, expf on the
 * reference) a stack chunk at a time: element by element, so batching cannot show. */
static void swiglu_worker(void *arg, int ith, int nth) {
    const glu_job *job = arg;
    const plm_kernels *kern = job->kern;
    int64_t a, b;
    plm_split_range((int64_t)job->T * job->n, ith, nth, &a, &b);
    if (kern->silu_mul) {
        kern->silu_mul(job->gate + a, job->up + a, b - a);
        return;
    }
    float e[256];
    for (int64_t i0 = a; i0 < b; i0 += 256) {
        const int64_t n = PLM_MIN(256, b - i0);
        float *g = job->gate + i0;
        const float *u = job->up + i0;
        memcpy(e, g, (size_t)n * sizeof(float));
        kern->exp_sum_f32(e, n, -1.0f, 0.0f);
        for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + e[i]) * u[i];
    }
}

/* GELU, tanh approximation (PyTorch's gelu(approximate="tanh"), ggml's gelu). */
static void geglu_worker(void *arg, int ith, int nth) {
    const glu_job *job = arg;
    const float sqrt_2_over_pi = 0.79788456080286535588f, coef_a = 0.044715f;
    int64_t a, b;
    plm_split_range((int64_t)job->T * job->n, ith, nth, &a, &b);
    for (int64_t i = a; i < b; i++) {
        float g = job->gate[i];
        job->gate[i] = 0.5f * g * (1.0f + tanhf(sqrt_2_over_pi * g * (1.0f + coef_a * g * g))) * job->up[i];
    }
}

plm_status plm_blk_ffn(plm_context *ctx, const plm_layer *L, int32_t T, const float *norm_w, plm_act act, float *out,
                       bool accumulate) {
    const plm_hparams *hp = &ctx->model->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff;
    const plm_weight *w[2] = {&L->w_gate, &L->w_up};
    float *o[2] = {ctx->gate, ctx->up};
    int64_t ld[2] = {F, F};
    plm_status st = plm_linear(ctx, 2, w, o, ld, ctx->x, E, T, false, norm_w, ctx->xn);
    if (st) return st;
    glu_job job = {.kern = ctx->kern, .gate = ctx->gate, .up = ctx->up, .n = F, .T = T};
    plm_run(ctx, act == PLM_ACT_GELU_TANH ? geglu_worker : swiglu_worker, &job, true);
    return plm_blk_mm(ctx, &L->w_down, out, E, ctx->gate, F, T, accumulate);
}

/* ------------------------------------------------------------ residuals */

typedef struct addnorm_job {
    const plm_kernels *kern;
    float *x;
    float *y;
    const float *w;
    int64_t n;
    int32_t T;
    float eps;
} addnorm_job;

static void addnorm_worker(void *arg, int ith, int nth) {
    const addnorm_job *job = arg;
    int64_t a, b;
    plm_split_range(job->T, ith, nth, &a, &b);
    for (int64_t t = a; t < b; t++) {
        float *x = job->x + t * job->n, *y = job->y + t * job->n;
        job->kern->rmsnorm(y, y, job->w, job->n, job->eps);
        for (int64_t i = 0; i < job->n; i++) x[i] += y[i];
    }
}

void plm_blk_add_normed(plm_context *ctx, float *x, float *y, const float *w, int32_t T) {
    addnorm_job job = {.kern = ctx->kern, .x = x, .y = y, .w = w, .n = ctx->model->hp.n_embd, .T = T, .eps = ctx->model->hp.norm_eps};
    plm_run(ctx, addnorm_worker, &job, T >= 4);
}

/* ------------------------------------------------------------ output head */

plm_status plm_blk_output(plm_context *ctx, const plm_ubatch *ub, float softcap) {
    const plm_model *m = ctx->model;
    const plm_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd;
    if (ctx->hidden_out)
        for (int32_t t = 0; t < ub->T; t++)
            ctx->kern->rmsnorm(ctx->hidden_out + (int64_t)(ub->i0 + t) * E, ctx->x + (int64_t)t * E, m->output_norm, E, hp->norm_eps);

    /* Gather the rows that want logits, normalize, project. */
    int32_t k = 0;
    for (int32_t t = 0; t < ub->T; t++) {
        if (!ub->want[t]) continue;
        if (k != t) memcpy(ctx->x + (int64_t)k * E, ctx->x + (int64_t)t * E, (size_t)E * sizeof(float));
        k++;
    }
    if (k == 0) return PLM_OK;
    float *logits = ctx->logits + (int64_t)*ub->n_out * hp->n_vocab;
    const plm_weight *w[1] = {&m->output};
    float *o[1] = {logits};
    int64_t ld[1] = {hp->n_vocab};
    plm_status st = plm_linear(ctx, 1, w, o, ld, ctx->x, E, k, false, m->output_norm, ctx->xn);
    if (st) return st;
    if (softcap > 0) {
        const float inv = 1.0f / softcap;
        for (int64_t i = 0; i < (int64_t)k * hp->n_vocab; i++) logits[i] = softcap * tanhf(logits[i] * inv);
    }
    *ub->n_out += k;
    return PLM_OK;
}
