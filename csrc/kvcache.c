/*
 * kvcache.c — the KV cache cells: which sequence holds which position.
 *
 * Keys and values are stored in F16 per layer and cell. A cell belongs to a set
 * of sequences (a bit mask), which is how a prompt evaluated once is shared by
 * several continuations (plm_kv_seq_cp adds a sequence to cells without
 * copying). Attention (models/blocks.c) scans cells [0, n_active) and keeps those of
 * its sequence at positions not after its own.
 */
#include "context.h"

#include <stdlib.h>
#include <string.h>

plm_status plm_kv_init(plm_kv *kv, const plm_hparams *hp, int32_t n_ctx) {
    memset(kv, 0, sizeof(*kv));
    kv->n_ctx = n_ctx;
    kv->kv_dim = hp->n_head_kv * hp->head_dim;
    uint64_t per_layer, total;
    if (plm_mul_ovf((uint64_t)n_ctx, (uint64_t)kv->kv_dim, &per_layer) ||
        plm_mul_ovf(per_layer, (uint64_t)hp->n_layer * sizeof(plm_f16), &total) || total > SIZE_MAX / 2)
        return plm_fail(PLM_ERR_OOM, "KV cache of %d cells is too large", n_ctx);
    kv->k = plm_amalloc((size_t)total);
    kv->v = plm_amalloc((size_t)total);
    kv->pos = malloc((size_t)n_ctx * sizeof(int32_t));
    kv->seq = calloc((size_t)n_ctx, sizeof(uint64_t));
    kv->tok = calloc((size_t)n_ctx, sizeof(plm_token));
    if (!kv->k || !kv->v || !kv->pos || !kv->seq || !kv->tok) {
        plm_kv_release(kv);
        return plm_fail(PLM_ERR_OOM, "out of memory for a KV cache of %d cells (%.1f MiB)", n_ctx, 2.0 * (double)total / (1 << 20));
    }
    for (int32_t i = 0; i < n_ctx; i++) kv->pos[i] = -1;
    return PLM_OK;
}

void plm_kv_release(plm_kv *kv) {
    plm_afree(kv->k);
    plm_afree(kv->v);
    free(kv->pos);
    free(kv->seq);
    free(kv->tok);
    memset(kv, 0, sizeof(*kv));
}

void plm_kv_cell_clear(plm_kv *kv, int32_t c) {
    kv->pos[c] = -1;
    kv->seq[c] = 0;
}

void plm_kv_recount(plm_kv *kv) {
    int32_t used = 0, active = 0;
    for (int32_t c = 0; c < kv->n_ctx; c++) {
        if (kv->seq[c]) {
            used++;
            active = c + 1;
        } else {
            kv->pos[c] = -1;
        }
    }
    kv->used = used;
    kv->n_active = active;
}

plm_status plm_kv_find_free(const plm_kv *kv, int32_t n, int32_t *cells) {
    if (n > kv->n_ctx - kv->used)
        return plm_fail(PLM_ERR_CONTEXT_FULL, "context full: %d tokens do not fit (%d of %d cells in use)", n, kv->used, kv->n_ctx);
    int32_t k = 0;
    for (int32_t c = 0; c < kv->n_ctx && k < n; c++)
        if (!kv->seq[c]) cells[k++] = c;
    if (k < n) return plm_fail(PLM_ERR_INTERNAL, "KV cache bookkeeping is inconsistent");
    return PLM_OK;
}

void plm_kv_pos_max_all(const plm_kv *kv, int32_t *pos_max) {
    for (int s = 0; s < PLM_MAX_SEQ; s++) pos_max[s] = -1;
    for (int32_t c = 0; c < kv->n_active; c++) {
        uint64_t m = kv->seq[c];
        while (m) {
            int s = __builtin_ctzll(m);
            m &= m - 1;
            if (kv->pos[c] > pos_max[s]) pos_max[s] = kv->pos[c];
        }
    }
}

plm_status plm_eval_sequence(plm_context *ctx, const plm_token *toks, int32_t n, int32_t pos0, int32_t seq) {
    int32_t chunk = ctx->params.n_batch;
    int32_t *pos = malloc((size_t)chunk * sizeof(int32_t)), *sq = malloc((size_t)chunk * sizeof(int32_t));
    int8_t *lg = malloc((size_t)chunk);
    if (!pos || !sq || !lg) {
        free(pos); free(sq); free(lg);
        return plm_fail(PLM_ERR_OOM, "out of memory");
    }
    plm_status st = PLM_OK;
    for (int32_t i = 0; i < n && !st; i += chunk) {
        int32_t T = PLM_MIN(chunk, n - i);
        for (int32_t t = 0; t < T; t++) {
            pos[t] = pos0 + i + t;
            sq[t] = seq;
            lg[t] = (i + t == n - 1);
        }
        plm_batch b = {.n_tokens = T, .token = toks + i, .pos = pos, .seq_id = sq, .logits = lg};
        st = plm_decode(ctx, &b);
    }
    free(pos); free(sq); free(lg);
    return st;
}

int32_t plm_kv_common_prefix(const plm_context *ctx, int32_t seq, const plm_token *toks, int32_t n) {
    const plm_kv *kv = &ctx->kv;
    int32_t pm = plm_kv_seq_pos_max(ctx, seq);
    if (pm < 0) return 0;
    int32_t len = PLM_MIN(pm + 1, n);
    plm_token *at = malloc((size_t)len * sizeof(plm_token));
    if (!at) return 0;
    for (int32_t i = 0; i < len; i++) at[i] = -1;
    uint64_t bit = (uint64_t)1 << seq;
    for (int32_t c = 0; c < kv->n_active; c++)
        if ((kv->seq[c] & bit) && kv->pos[c] < len) at[kv->pos[c]] = kv->tok[c];
    int32_t k = 0;
    while (k < len && at[k] == toks[k]) k++;
    free(at);
    return k;
}

/* ------------------------------------------------------------ public API */

static bool seq_ok(const plm_context *ctx, int32_t s) { return s >= 0 && s < ctx->params.n_seq_max; }

void plm_kv_clear(plm_context *ctx) {
    if (!ctx) return;
    for (int32_t c = 0; c < ctx->kv.n_ctx; c++) plm_kv_cell_clear(&ctx->kv, c);
    ctx->kv.used = ctx->kv.n_active = 0;
}

plm_status plm_kv_seq_rm(plm_context *ctx, int32_t seq_id, int32_t p0, int32_t p1) {
    if (!ctx) return plm_fail(PLM_ERR_ARG, "plm_kv_seq_rm: ctx is NULL");
    if (seq_id != -1 && !seq_ok(ctx, seq_id))
        return plm_fail(PLM_ERR_ARG, "sequence id %d out of range [0, %d) (-1 means all)", seq_id, ctx->params.n_seq_max);
    if (p0 < 0) p0 = 0;
    if (p1 < 0) p1 = INT32_MAX;
    uint64_t bit = seq_id < 0 ? ~(uint64_t)0 : (uint64_t)1 << seq_id;
    plm_kv *kv = &ctx->kv;
    for (int32_t c = 0; c < kv->n_active; c++)
        if ((kv->seq[c] & bit) && kv->pos[c] >= p0 && kv->pos[c] < p1) kv->seq[c] &= ~bit;
    plm_kv_recount(kv);
    return PLM_OK;
}

plm_status plm_kv_seq_cp(plm_context *ctx, int32_t src, int32_t dst, int32_t p0, int32_t p1) {
    if (!ctx) return plm_fail(PLM_ERR_ARG, "plm_kv_seq_cp: ctx is NULL");
    if (!seq_ok(ctx, src) || !seq_ok(ctx, dst))
        return plm_fail(PLM_ERR_ARG, "sequence ids %d -> %d out of range [0, %d)", src, dst, ctx->params.n_seq_max);
    if (src == dst) return PLM_OK;
    if (p0 < 0) p0 = 0;
    if (p1 < 0) p1 = INT32_MAX;
    plm_kv *kv = &ctx->kv;
    uint64_t sb = (uint64_t)1 << src, db = (uint64_t)1 << dst;
    for (int32_t c = 0; c < kv->n_active; c++)
        if ((kv->seq[c] & db) && kv->pos[c] >= p0 && kv->pos[c] < p1) kv->seq[c] &= ~db; /* replace what dst had there */
    for (int32_t c = 0; c < kv->n_active; c++)
        if ((kv->seq[c] & sb) && kv->pos[c] >= p0 && kv->pos[c] < p1) kv->seq[c] |= db;
    plm_kv_recount(kv);
    return PLM_OK;
}

int32_t plm_kv_seq_pos_max(const plm_context *ctx, int32_t seq_id) {
    if (!ctx || !seq_ok(ctx, seq_id)) return -1;
    int32_t m = -1;
    uint64_t bit = (uint64_t)1 << seq_id;
    for (int32_t c = 0; c < ctx->kv.n_active; c++)
        if ((ctx->kv.seq[c] & bit) && ctx->kv.pos[c] > m) m = ctx->kv.pos[c];
    return m;
}

int32_t plm_kv_used(const plm_context *ctx) { return ctx ? ctx->kv.used : 0; }
