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
 * 16. Each thread walks its rows in tiles of ROW_BLOCK rows by ACT_BLOCK bytes of
 * activations, so that a tile's weights and activations stay in cache, with the
 * table's gemm for the tile or, where the table has none, vec_dot entry by
 * entry (weights repacked at load, model.c, by its gemm_x16). When the context has adapters (lora.c), each weight an adapter targets
 * gets its delta scale * B (A x) added to its own output rows by the thread
 * that computed them. The input is quantized once per product for the table's
 * Q8_0 entries (the base's activations serve when they are of that type
 * already); inside the product's pass each thread first computes its share of
 * u = A x (A's Q8_0 rows by the table's Q8_0 gemm, or its gemm_x16 where
 * lora.c laid A out so; the A of q, k, v, or gate, up, of one adapter lie back
 * to back, lora.c, and go through one gemm), then its rows of W x, adding the
 * deltas of a weight's rows once they are all done and every thread's share
 * of u is there: u in int8 against B's int8 values, an
 * exact integer sum per row times the row's scale (lora.h), by the table's
 * lora_b32. No pass of its
 * own for A x: at 2 threads an extra wake-up and wait per product cost more
 * than the adapter's arithmetic. The gemm's entries do not depend on the tile
 * and B's sums are exact integers, so a token's result does not depend on the
 * batch around it or on the number of threads.
 * The kernel table is the one chosen at start-up (kernels/dispatch.c);
 * the architectures' graphs are forward.c's and models/'.
 */
#include "matmul.h"
#include "lora.h"

#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

void plm_split_range(int64_t n, int ith, int nth, int64_t *a, int64_t *b) {
    int64_t per = (n + nth - 1) / nth;
    *a = PLM_MIN(n, per * ith);
    *b = PLM_MIN(n, *a + per);
}

/* ------------------------------------------------------------ matmul job */

/* One adapter's update of one weight of a product: out_t += scale * B u_t, u_t = A x_t. */
typedef struct lora_term {
    const uint8_t *a;    /* (rank, n_in) A, Q8_0 rows of a_row bytes (x16: in the x16 layout, lora.h) */
    size_t a_row;
    int64_t n_in;
    bool x16;
    const uint8_t *b;    /* B's runs of 32 of the base tensor's rows, b_run bytes each (lora.h) */
    size_t b_run;
    int64_t row0;        /* the weight's first row in the base tensor (views) */
    int32_t rank;
    float scale;         /* the adapter's scale times B's (lora.h's b_scale) */
    int64_t col;         /* u_t's first column: u_t[k] = u[t * ldu + col + k] */
} lora_term;

/* Rows of A that lie back to back in memory and whose results are side by side in u (the q, k, v or gate, up
 * of one adapter: lora.c lays them out so): one gemm, one stream. */
typedef struct lora_seg {
    const uint8_t *a;
    size_t a_row;
    int64_t n_in, rows, col;
    bool x16;            /* A in the x16 layout: rows a multiple of 16, multiplied by the table's gemm_x16 */
} lora_seg;

#define MAX_TERMS (PLM_LINEAR_MAX_WEIGHTS * PLM_N_ADAPTERS_MAX)

/* The adapters' terms of one product: for weight j, terms[first[j] .. first[j + 1]); their A x is computed
 * from act, the product's input quantized for the table's Q8_0 entries, into u. */
typedef struct lora_set {
    const lora_term *terms;
    int first[PLM_LINEAR_MAX_WEIGHTS + 1];
    lora_seg segs[MAX_TERMS];
    int n_segs;
    int64_t n_items;        /* rows of A of all the terms (the segments' rows) */
    float *u;               /* (T, ldu) */
    int64_t ldu;
    const uint8_t *act;     /* (T, act_row) */
    size_t act_row;
} lora_set;

/* Up to PLM_LINEAR_MAX_WEIGHTS weights that share one quantized activation:
 * y_j = W_j act, plus the adapters' deltas. */
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
    const lora_set *lora;
    atomic_int *a_left;     /* threads still computing their share of A x */
    struct matmul_cursor *cursor; /* NULL: a fixed share of the rows per thread; else one per thread (matmul_worker) */
} matmul_job;

/* Chunks of ROW_BLOCK rows taken so far from a thread's own share; on a cache line of its own. */
typedef struct matmul_cursor {
    _Alignas(64) atomic_llong taken;
} matmul_cursor;
#define MAX_CURSORS 64 /* threads whose products can share out their rows; more keep fixed shares */

/* Rows [r0, r1) of out_t += scale * B u_t for tokens [t0, t1): u_t in int8 (uq = round(u_t / su) with
 * su = max |u_t| / 127, as Q8_0 rounds), then for each row the exact integer sum of q[k][r] uq[k] times
 * (scale su) e[r] (lora.h's runs, quant.h's lora_b32), the same operations for a row whatever the batch or
 * the rows' split across threads: whole runs through the table's lora_b32, runs cut by r0 or r1 element by
 * element with the kernel's operations. */

/* Token t's u of term L in int8 into uq (rank4 values, zeros past the rank); returns its scale times the term's. */
static float lora_quant_u(const lora_set *ls, const lora_term *L, int32_t t, int8_t *uq) {
    const float *u = ls->u + (int64_t)t * ls->ldu + L->col;
    float amax = 0.0f;
    for (int32_t k = 0; k < L->rank; k++) amax = fabsf(u[k]) > amax ? fabsf(u[k]) : amax; /* fmaxf: a call */
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    for (int32_t k = 0; k < plm_lora_rank4(L->rank); k++) uq[k] = k < L->rank ? plm_round_even_i8(u[k] * id) : 0;
    return L->scale * (amax / 127.0f);
}

static void lora_delta(const plm_kernels *kern, const lora_set *ls, const lora_term *L, float *out, int64_t ldo,
                       int32_t t0, int32_t t1, int64_t r0, int64_t r1) {
    int8_t uq[PLM_LORA_RANK_MAX];
    const int32_t rank4 = plm_lora_rank4(L->rank);
    const int64_t g1 = L->row0 + r1;
    const size_t qs = plm_lora_run_q(L->rank);
    for (int32_t t = t0; t < t1; t++) {
        const float c = lora_quant_u(ls, L, t, uq);
        for (int64_t g = L->row0 + r0; g < g1;) {
            const int64_t blk = g / PLM_QK;
            const uint8_t *run = L->b + (size_t)blk * L->b_run;
            float *o = out + (int64_t)t * ldo + (g - L->row0);
            if (g % PLM_QK != 0 || g1 - g < PLM_QK) { /* a cut run */
                const int8_t *q = (const int8_t *)run;
                const plm_f16 *e = (const plm_f16 *)(run + qs);
                const int64_t ge = PLM_MIN(g1, (blk + 1) * PLM_QK);
                for (int64_t r = g; r < ge; r++) {
                    const int i = (int)(r % PLM_QK);
                    int32_t s = 0;
                    for (int32_t k = 0; k < rank4; k++) s += (int32_t)q[128 * (k / 4) + 4 * i + k % 4] * (int32_t)uq[k];
                    o[r - g] += (float)s * (c * plm_f16_to_f32(e[i]));
                }
                g = ge;
                continue;
            }
            const int nb = (int)((g1 - g) / PLM_QK);
            kern->lora_b32(nb, rank4, uq, c, run, (int64_t)L->b_run, o);
            g += (int64_t)nb * PLM_QK;
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

/* The first item (row of the segments) of thread i's share of A x (i = nth: the end): an even split, moved back
 * to the start of its group of 16 rows where it falls inside a segment in the x16 layout. */
static int64_t lora_a_edge(const lora_set *ls, int i, int nth) {
    int64_t e, end;
    plm_split_range(ls->n_items, i, nth, &e, &end);
    if (i >= nth) return ls->n_items;
    int64_t base = 0;
    for (int k = 0; k < ls->n_segs; k++) {
        const lora_seg *S = &ls->segs[k];
        if (e < base + S->rows) return S->x16 ? base + (e - base) / PLM_X16 * PLM_X16 : e;
        base += S->rows;
    }
    return e;
}

/* This thread's share of u = A x: items (rows of the segments) split across the threads (in whole groups of 16
 * rows where A is in the x16 layout), a segment's run of rows in the share one gemm per block of tokens (its
 * entries are vec_dot's whatever the run and layout, so u does not depend on the split or the table). */
static void lora_a_share(const plm_kernels *kern, const lora_set *ls, int32_t T, int ith, int nth) {
    const plm_vec_dot_fn dot = kern->vec_dot[PLM_TYPE_Q8_0];
    const int32_t tok_block = (int32_t)PLM_MAX(1, PLM_MIN(T, (int64_t)(ACT_BLOCK / ls->act_row)));
    const int64_t i0 = lora_a_edge(ls, ith, nth), i1 = lora_a_edge(ls, ith + 1, nth);
    int k = 0;
    int64_t base = 0;
    for (int64_t i = i0; i < i1;) {
        while (i - base >= ls->segs[k].rows) base += ls->segs[k++].rows;
        const lora_seg *S = &ls->segs[k];
        const int64_t row = i - base, nr = PLM_MIN(i1 - i, S->rows - row);
        const uint8_t *arow = S->a + (size_t)row * S->a_row;
        i += nr;
        for (int32_t t0 = 0; t0 < T; t0 += tok_block) {
            const int32_t nt = PLM_MIN(tok_block, T - t0);
            const uint8_t *act = ls->act + (size_t)t0 * ls->act_row;
            float *u = ls->u + (int64_t)t0 * ls->ldu + S->col + row;
            const plm_gemm_fn gemm = S->x16 ? kern->gemm_x16[PLM_TYPE_Q8_0] : kern->gemm[PLM_TYPE_Q8_0];
            if (gemm) {
                gemm(S->n_in, arow, S->a_row, (int)nr, act, ls->act_row, nt, u, ls->ldu, false);
                continue;
            }
            for (int32_t t = 0; t < nt; t++)
                for (int64_t r = 0; r < nr; r++)
                    u[(int64_t)t * ls->ldu + r] = dot(S->n_in, arow + (size_t)r * S->a_row, act + (size_t)t * ls->act_row);
        }
    }
}

/* The segments of ls's terms [first[0], first[n_w]) (ls->terms, ls->first set). */
static void lora_segments(lora_set *ls, int n_w) {
    ls->n_segs = 0;
    ls->n_items = 0;
    const lora_term *prev = NULL;
    for (int k = ls->first[0]; k < ls->first[n_w]; k++) {
        const lora_term *L = &ls->terms[k];
        lora_seg *S = prev ? &ls->segs[ls->n_segs - 1] : NULL;
        if (S && L->a == prev->a + (size_t)prev->rank * prev->a_row && L->a_row == S->a_row && L->n_in == S->n_in &&
            L->col == S->col + S->rows && L->x16 == S->x16)
            S->rows += L->rank;
        else
            ls->segs[ls->n_segs++] = (lora_seg){.a = L->a, .a_row = L->a_row, .n_in = L->n_in, .rows = L->rank,
                                                .col = L->col, .x16 = L->x16};
        ls->n_items += L->rank;
        prev = L;
    }
}

/* Rows [a, b) of a weight in the x16 layout (quant.h) for tokens act[0 .. nt): whole groups by the table's
 * gemm_x16; a group that a share's edge cuts (a weight placed after one whose rows are not a multiple of 16)
 * whole into a buffer, its rows [a, b) copied out, X16_TOKENS tokens at a time (each entry as alone). */
#define X16_TOKENS 32
static void product_x16(const matmul_job *job, const plm_weight *W, int64_t a, int64_t b, const uint8_t *act, int32_t nt,
                        float *out, int64_t ldo) {
    const plm_gemm_fn gemm = job->kern->gemm_x16[W->type];
    const uint8_t *wd = W->data;
    while (a < b) {
        const int64_t g0 = a / PLM_X16 * PLM_X16;
        if (a == g0 && b - a >= PLM_X16) {
            const int64_t e = a + (b - a) / PLM_X16 * PLM_X16;
            gemm(W->n_in, wd + (size_t)a * W->row_bytes, W->row_bytes, (int)(e - a), act, job->act_row, nt, out + a, ldo,
                 job->accumulate);
            a = e;
            continue;
        }
        const int64_t e = PLM_MIN(b, g0 + PLM_X16);
        float part[X16_TOKENS * PLM_X16];
        for (int32_t c0 = 0; c0 < nt; c0 += X16_TOKENS) {
            const int32_t nc = PLM_MIN(X16_TOKENS, nt - c0);
            gemm(W->n_in, wd + (size_t)g0 * W->row_bytes, W->row_bytes, PLM_X16, act + (size_t)c0 * job->act_row,
                 job->act_row, nc, part, PLM_X16, false);
            for (int32_t c = 0; c < nc; c++)
                for (int64_t r = a; r < e; r++) {
                    float *o = &out[(int64_t)(c0 + c) * ldo + r];
                    *o = job->accumulate ? *o + part[c * PLM_X16 + (r - g0)] : part[c * PLM_X16 + (r - g0)];
                }
        }
        a = e;
    }
}

/* Rows [a, b) of weight j of the product for tokens [t0, t0 + nt): the table's gemm, or vec_dot entry by entry. */
static void product_tile(const matmul_job *job, int j, int64_t a, int64_t b, int32_t t0, int32_t nt) {
    const plm_weight *W = job->w[j];
    const plm_gemm_fn gemm = job->kern->gemm[W->type];
    const uint8_t *wd = W->data, *act = job->act + (size_t)t0 * job->act_row;
    float *out = job->out[j] + (int64_t)t0 * job->ldo[j];
    if (W->x16) {
        product_x16(job, W, a, b, act, nt, out, job->ldo[j]);
        return;
    }
    if (gemm) {
        gemm(W->n_in, wd + (size_t)a * W->row_bytes, W->row_bytes, (int)(b - a), act, job->act_row, nt, out + a,
             job->ldo[j], job->accumulate);
        return;
    }
    const plm_vec_dot_fn dot = job->kern->vec_dot[W->type];
    for (int32_t t = 0; t < nt; t++) {
        const uint8_t *at = act + (size_t)t * job->act_row;
        float *o = out + (int64_t)t * job->ldo[j];
        for (int64_t r = a; r < b; r++) {
            const float v = dot(W->n_in, wd + (size_t)r * W->row_bytes, at);
            o[r] = job->accumulate ? o[r] + v : v;
        }
    }
}

/* Rows [r0, r1) of the product's weights taken together, all its tokens (one token block, no adapters). */
static void matmul_rows(const matmul_job *job, int64_t r0, int64_t r1) {
    int64_t base = 0;
    for (int j = 0; j < job->n_w && base < r1; j++) {
        const int64_t a = PLM_MAX(r0 - base, 0), b = PLM_MIN(r1 - base, job->w[j]->n_out);
        base += job->w[j]->n_out;
        if (a < b) product_tile(job, j, a, b, 0, job->T);
    }
}

/* Each thread takes a share of the output rows (in multiples of 16, the row
 * group of the x16 layout and kernels) and walks it in ROW_BLOCK rows x (ACT_BLOCK bytes of
 * tokens) pieces, so both the weight rows and the activations of a piece stay
 * in cache while it is computed. (Asking for the adapter's bytes ahead, B's
 * runs a block early and the next product's A during this one, measured
 * neither faster nor slower on AMD Zen 4 once the deltas came at the end of a
 * share or in the product's own pass: the hardware prefetchers keep up.)
 * A product of one token block without adapters shares its rows out instead
 * (job->cursor: see matmul). */
static void matmul_worker(void *arg, int ith, int nth) {
    const matmul_job *job = arg;
    const lora_set *ls = job->lora;
    int64_t total = 0;
    for (int j = 0; j < job->n_w; j++) total += job->w[j]->n_out;
    if (job->cursor) {
        /* its own share's rows in order, then what is left of the others', in row groups (PLM_X16): a quarter
         * of what is left of its own (at least ROW_BLOCK rows) while more than two ROW_BLOCKs are left, else one
         * group, so that the threads end within a group's time of each other (taking ROW_BLOCK rows to the end,
         * the thread that came free first waited half a ROW_BLOCK's time on average, 3-4% of a 16-sequence step
         * at 2 threads) and take few turns at the counter (each a locked add, which waits for the product's
         * stores before it: ROW_BLOCK at a time, the output product alone took 384 a thread) */
        const int64_t groups = (total + PLM_X16 - 1) / PLM_X16, per_block = ROW_BLOCK / PLM_X16;
        for (int k = 0; k < nth; k++) {
            const int o = (ith + k) % nth;
            int64_t g0, g1;
            plm_split_range(groups, o, nth, &g0, &g1);
            atomic_llong *taken = &job->cursor[o].taken;
            for (;;) {
                const int64_t left = g1 - g0 - atomic_load_explicit(taken, memory_order_relaxed);
                const int64_t n = k == 0 && left > 2 * per_block ? PLM_MAX(per_block, left / 4) : 1;
                const int64_t g = g0 + atomic_fetch_add_explicit(taken, n, memory_order_relaxed);
                if (g >= g1) break;
                matmul_rows(job, g * PLM_X16, PLM_MIN(total, PLM_MIN(g1, g + n) * PLM_X16));
            }
        }
        return;
    }
    int64_t r0, r1;
    plm_split_range((total + 15) / 16, ith, nth, &r0, &r1);
    r0 = PLM_MIN(total, r0 * 16);
    r1 = PLM_MIN(total, r1 * 16);
    if (ls->n_items) {
        lora_a_share(job->kern, ls, job->T, ith, nth);
        atomic_fetch_sub_explicit(job->a_left, 1, memory_order_release);
    }
    const int32_t tok_block = (int32_t)PLM_MAX(1, PLM_MIN(job->T, (int64_t)(ACT_BLOCK / job->act_row)));
    int64_t base = 0;
    bool u_ready = false;
    for (int j = 0; j < job->n_w; j++) {
        const plm_weight *W = job->w[j];
        int64_t a = PLM_MAX(r0 - base, 0), b = PLM_MIN(r1 - base, W->n_out);
        base += W->n_out;
        if (a >= b) continue;
        float *out = job->out[j];
        const int64_t ldo = job->ldo[j];
        const int k0 = ls->first[j], k1 = ls->first[j + 1];
        /* one token and one term on a weight in the x16 layout whose share starts a group of B's runs: the
         * table's gemm_x16_lora adds the deltas as each group of rows is stored, once u is there (the rows
         * before that get theirs at the end, below) */
        const lora_term *F = NULL;
        if (job->T == 1 && k1 - k0 == 1 && W->x16 && job->kern->gemm_x16_lora[W->type] && a % PLM_X16 == 0 &&
            (b - a) % PLM_X16 == 0 && (ls->terms[k0].row0 + a) % PLM_X16 == 0 &&
            plm_lora_rank4(ls->terms[k0].rank) <= PLM_LORA_FUSED_RANK)
            F = &ls->terms[k0];
        int8_t fuq[PLM_LORA_FUSED_RANK];
        plm_lora_epi epi = {.uq = fuq};
        int64_t fused = b; /* rows [fused, b) have their deltas */
        for (int32_t t0 = 0; t0 < job->T; t0 += tok_block) {
            const int32_t nt = PLM_MIN(tok_block, job->T - t0);
            for (int64_t rb = a; rb < b; rb += ROW_BLOCK) {
                const int64_t re = PLM_MIN(b, rb + ROW_BLOCK);
                if (F && (fused < b || u_ready || (u_ready = atomic_load_explicit(job->a_left, memory_order_acquire) == 0))) {
                    if (fused == b) {
                        fused = rb;
                        epi.c = lora_quant_u(ls, F, 0, fuq);
                        epi.rank4 = plm_lora_rank4(F->rank);
                        epi.run_bytes = (int64_t)F->b_run;
                    }
                    const int64_t g = F->row0 + rb;
                    epi.run = F->b + (size_t)(g / PLM_QK) * F->b_run;
                    epi.half = (int)(g / PLM_X16 % 2);
                    job->kern->gemm_x16_lora[W->type](W->n_in, (const uint8_t *)W->data + (size_t)rb * W->row_bytes, W->row_bytes,
                                                      (int)(re - rb), job->act, out + rb, job->accumulate, &epi);
                    continue;
                }
                product_tile(job, j, rb, re, t0, nt);
            }
            /* the deltas of the weight's rows once they are all done, in one run of lora_b32 per term and token
             * (its u rounded to int8 once), once every thread's share of u is there; every 256 rows instead
             * (while those rows were sure to be in L1) rounded u again each time and cut B's runs into short
             * calls: a rank-16 adapter cost 15-19% over the base at 2 threads that way, 11-13% this way (paired,
             * plm-bench -a), the rows and their runs of B being in L2 still */
            if (k0 == k1 || fused == a) continue;
            for (int spins = 1; !u_ready && atomic_load_explicit(job->a_left, memory_order_acquire) > 0; spins++)
                if (spins % 256 == 0) sched_yield();
            u_ready = true;
            for (int k = k0; k < k1; k++) lora_delta(job->kern, ls, &ls->terms[k], out, ldo, t0, t0 + nt, a, PLM_MIN(b, fused));
        }
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
            job->kern->rmsnorm(dst, src, job->norm_w, job->n, job->eps);
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
 * terms and ls (ls->first[j] the first of w[j]'s; u (T, all their ranks) in
 * the context's scratch). x is quantized for the table's Q8_0 entries into
 * the context's scratch, unless ctx->act holds it so already (act_type, the
 * type the base's weights pair with, is that type) or holds it as Q8_1 (the
 * 4- and 5-bit types with mins), whose blocks give Q8_0's by a copy. */
static void lora_terms(plm_context *ctx, int n_w, const plm_weight *const *w, const float *x, int64_t ldx, int32_t T,
                       plm_type act_type, lora_term *terms, lora_set *ls) {
    int n = 0;
    int64_t col = 0;
    ls->terms = terms;
    for (int j = 0; j < n_w; j++) {
        ls->first[j] = n;
        for (int32_t i = 0; i < ctx->n_adapters; i++) {
            const plm_adapter_use *au = &ctx->adapters[i];
            const plm_lora_pair *p = plm_lora_find(au->a, w[j]);
            if (!p) continue;
            terms[n++] = (lora_term){.a = p->a, .a_row = p->a_row, .n_in = p->n_in,
                                     .x16 = p->a_x16, .b = p->b, .b_run = p->b_run, .row0 = w[j]->row0, .rank = p->rank,
                                     .scale = plm_lora_scale(au->a, p, au->scale) * p->b_scale,
                                     .col = col};
            col += p->rank;
        }
    }
    ls->first[n_w] = n;
    ls->u = ctx->lora_u;
    ls->ldu = col;
    lora_segments(ls, n_w);
    if (n == 0) return;
    const plm_type q8 = ctx->kern->dot_type[PLM_TYPE_Q8_0];
    ls->act_row = plm_type_row_size(q8, w[0]->n_in);
    const bool same = act_type == q8;
    ls->act = same ? ctx->act : ctx->lora_act;
    if (act_type == PLM_TYPE_Q8_1 && q8 == PLM_TYPE_Q8_0) {
        const size_t row1 = plm_type_row_size(PLM_TYPE_Q8_1, w[0]->n_in);
        for (int32_t t = 0; t < T; t++)
            plm_q8_1_as_q8_0(ctx->act + (size_t)t * row1, ctx->lora_act + (size_t)t * ls->act_row, w[0]->n_in);
    } else if (!same) {
        quant_job qj = {.kern = ctx->kern, .type = q8, .x = x, .ldx = ldx, .n = w[0]->n_in, .T = T, .act = ctx->lora_act,
                        .act_row = ls->act_row};
        plm_run(ctx, quant_worker, &qj, T >= 4);
    }
}

/* out_j (=|+=) W_j act (+ adapters' deltas) for weights sharing the activations prepared by prepare_act. */
static void matmul(plm_context *ctx, int n_w, const plm_weight *const *w, float *const *out, const int64_t *ldo,
                   int32_t T, bool accumulate, const lora_set *ls) {
    atomic_int a_left;
    atomic_init(&a_left, plm_pool_size(ctx->pool));
    const size_t act_row = plm_type_row_size(dot_type_of(ctx, w[0]), w[0]->n_in);
    /* A product of one token block is short enough that threads coming free at different times show (one is
     * woken later, or shares its core): each thread walks its own share of the rows ROW_BLOCK at a time, in
     * order (one stream of weights), then takes what is left of the others'. A prompt's token blocks and
     * adapters keep fixed shares (adapters: taking their deltas chunk by chunk measured slower than the fixed
     * shares' runs of deltas, 13-15% over the base at 2 threads against 9-11%); the gemm's entries do not
     * depend on the rows around them, so neither do the results. */
    const int nth = plm_pool_size(ctx->pool);
    matmul_cursor cursor[MAX_CURSORS];
    const bool shared = nth > 1 && nth <= MAX_CURSORS && (int64_t)T * (int64_t)act_row <= ACT_BLOCK && ls->n_items == 0;
    for (int i = 0; shared && i < nth; i++) atomic_init(&cursor[i].taken, 0);
    matmul_job job = {.kern = ctx->kern, .n_w = n_w, .accumulate = accumulate, .act = ctx->act, .act_row = act_row,
                      .T = T, .lora = ls, .a_left = &a_left, .cursor = shared ? cursor : NULL};
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
    lora_set ls = {0};
    if (same) {
        prepare_act(ctx, w[0], x, ldx, w[0]->n_in, T, norm_w, norm_out);
        if (ctx->n_adapters)
            lora_terms(ctx, n_w, w, norm_w ? norm_out : x, norm_w ? w[0]->n_in : ldx, T, dot_type_of(ctx, w[0]), terms,
                       &ls);
        matmul(ctx, n_w, w, out, ldo, T, accumulate, &ls);
        return PLM_OK;
    }
    /* one pass per weight, each with its own terms; x quantized for A once, after the first pass normalized it */
    for (int j = 0; j < n_w; j++) {
        prepare_act(ctx, w[j], x, ldx, w[j]->n_in, T, j == 0 ? norm_w : NULL, norm_out);
        if (j == 0 && norm_w) {
            x = norm_out;
            ldx = w[0]->n_in;
        }
        if (j == 0 && ctx->n_adapters) lora_terms(ctx, n_w, w, x, ldx, T, PLM_TYPE_COUNT, terms, &ls);
        lora_set own = ls; /* w[j]'s terms, their u where the whole set has it */
        if (ctx->n_adapters) {
            own.terms = terms + ls.first[j];
            own.first[0] = 0;
            own.first[1] = ls.first[j + 1] - ls.first[j];
            lora_segments(&own, 1);
        }
        matmul(ctx, 1, &w[j], &out[j], &ldo[j], T, accumulate, &own);
    }
    return PLM_OK;
}
