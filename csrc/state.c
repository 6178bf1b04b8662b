/*
 * state.c — saving and restoring a context's state, and reading a sequence's
 * token history.
 *
 * Owns the state format: a header (magic, version, the model's shape, the
 * fingerprint of the adapter set the keys and values were computed with), the
 * cells in use (position, sequence mask, token, then each layer's F16 key and
 * value rows) and the last decode's logits rows. Loading treats the buffer as
 * untrusted: every count and field is checked before the context is touched.
 * The cache bookkeeping itself is kvcache.c's.
 */
#include "context.h"

#include <stdlib.h>
#include <string.h>

#define STATE_MAGIC 0x534d4c50u /* "PLMS" */
#define STATE_VERSION 1u

typedef struct state_header {
    uint32_t magic, version;
    uint32_t n_layer, kv_dim, n_vocab, n_seq_max;
    uint32_t n_cells;      /* cells saved */
    uint32_t n_logits;     /* logits rows saved */
    uint32_t last_batch_n; /* entries of the batch those rows came from */
    uint32_t adapters;     /* the context's adapters_id (lora.c): 0 = no adapters */
} state_header;

static size_t cell_bytes(const plm_context *ctx) {
    return sizeof(int32_t) + sizeof(uint64_t) + sizeof(plm_token) +
           2 * (size_t)ctx->model->hp.n_layer * (size_t)ctx->kv.kv_dim * sizeof(plm_f16);
}

size_t plm_context_state_size(const plm_context *ctx) {
    if (!ctx) return 0;
    return sizeof(state_header) + (size_t)ctx->kv.used * cell_bytes(ctx) +
           (size_t)ctx->last_batch_n * sizeof(int32_t) +
           (size_t)ctx->n_logits * (size_t)ctx->model->hp.n_vocab * sizeof(float);
}

static void put(uint8_t **p, const void *src, size_t n) {
    memcpy(*p, src, n);
    *p += n;
}

plm_status plm_context_state_save(const plm_context *ctx, void *buf, size_t cap, size_t *n_out) {
    if (!ctx || !n_out || (cap && !buf)) return plm_fail(PLM_ERR_ARG, "plm_context_state_save: NULL argument");
    size_t need = plm_context_state_size(ctx);
    *n_out = need;
    if (cap < need) return plm_fail(PLM_ERR_BUFFER, "state needs %zu bytes, the buffer has %zu", need, cap);
    const plm_kv *kv = &ctx->kv;
    const plm_hparams *hp = &ctx->model->hp;
    state_header h = {STATE_MAGIC, STATE_VERSION, (uint32_t)hp->n_layer, (uint32_t)kv->kv_dim, (uint32_t)hp->n_vocab,
                      (uint32_t)ctx->params.n_seq_max, (uint32_t)kv->used, (uint32_t)ctx->n_logits,
                      (uint32_t)ctx->last_batch_n, ctx->adapters_id};
    uint8_t *p = buf;
    put(&p, &h, sizeof h);
    const size_t row = (size_t)kv->kv_dim * sizeof(plm_f16);
    for (int32_t c = 0; c < kv->n_active; c++) {
        if (!kv->seq[c]) continue;
        put(&p, &kv->pos[c], sizeof(int32_t));
        put(&p, &kv->seq[c], sizeof(uint64_t));
        put(&p, &kv->tok[c], sizeof(plm_token));
        for (int il = 0; il < hp->n_layer; il++) {
            size_t off = ((size_t)il * (size_t)kv->n_ctx + (size_t)c) * (size_t)kv->kv_dim;
            const plm_f16 *k = kv->k + plm_kv_k_at(kv, il, c, 0); /* the key as a row (context.h: by columns) */
            for (int32_t j = 0; j < kv->kv_dim; j++) put(&p, k + (size_t)j * PLM_KV_BLOCK, sizeof(plm_f16));
            put(&p, kv->v + off, row);
        }
    }
    if (ctx->last_batch_n) put(&p, ctx->logits_idx, (size_t)ctx->last_batch_n * sizeof(int32_t));
    if (ctx->n_logits) put(&p, ctx->logits, (size_t)ctx->n_logits * (size_t)hp->n_vocab * sizeof(float));
    return PLM_OK;
}

plm_status plm_context_state_load(plm_context *ctx, const void *buf, size_t len) {
    if (!ctx || (!buf && len)) return plm_fail(PLM_ERR_ARG, "plm_context_state_load: NULL argument");
    plm_kv *kv = &ctx->kv;
    const plm_hparams *hp = &ctx->model->hp;
    state_header h;
    if (len < sizeof h) return plm_fail(PLM_ERR_FORMAT, "state: %zu bytes is too short for a header", len);
    memcpy(&h, buf, sizeof h);
    if (h.magic != STATE_MAGIC || h.version != STATE_VERSION)
        return plm_fail(PLM_ERR_FORMAT, "state: not a pocketlm state (bad magic or version %u)", h.version);
    if (h.n_layer != (uint32_t)hp->n_layer || h.kv_dim != (uint32_t)kv->kv_dim || h.n_vocab != (uint32_t)hp->n_vocab)
        return plm_fail(PLM_ERR_FORMAT, "state: saved for another model (%u layers, kv %u, vocab %u)", h.n_layer, h.kv_dim, h.n_vocab);
    if (h.adapters != ctx->adapters_id)
        return plm_fail(PLM_ERR_FORMAT, "state: saved with %s, but this context has %s (%d); set the same adapters "
                        "at the same scales (plm_context_set_adapters) before loading it",
                        h.adapters ? "LoRA adapters" : "no adapters",
                        ctx->n_adapters ? "a different adapter set" : "none", ctx->n_adapters);
    if (h.n_cells > (uint32_t)kv->n_ctx)
        return plm_fail(PLM_ERR_CONTEXT_FULL, "state: %u cells do not fit a context of %d", h.n_cells, kv->n_ctx);
    if (h.n_logits > h.last_batch_n || h.last_batch_n > (1u << 24))
        return plm_fail(PLM_ERR_FORMAT, "state: %u logits rows for a batch of %u", h.n_logits, h.last_batch_n);
    uint64_t need = sizeof h + (uint64_t)h.n_cells * cell_bytes(ctx) + (uint64_t)h.last_batch_n * sizeof(int32_t) +
                    (uint64_t)h.n_logits * (uint64_t)hp->n_vocab * sizeof(float);
    if (need != len) return plm_fail(PLM_ERR_FORMAT, "state: %zu bytes, but its header describes %llu", len, (unsigned long long)need);

    /* Validate the cells before touching the context. */
    const uint8_t *p = (const uint8_t *)buf + sizeof h;
    const size_t cb = cell_bytes(ctx);
    uint64_t allowed = ctx->params.n_seq_max >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << ctx->params.n_seq_max) - 1);
    for (uint32_t i = 0; i < h.n_cells; i++) {
        int32_t pos;
        uint64_t seq;
        plm_token t;
        memcpy(&pos, p + i * cb, sizeof pos);
        memcpy(&seq, p + i * cb + sizeof pos, sizeof seq);
        memcpy(&t, p + i * cb + sizeof pos + sizeof seq, sizeof t);
        if (pos < 0 || !seq || (seq & ~allowed) || t < 0 || t >= hp->n_vocab)
            return plm_fail(PLM_ERR_FORMAT, "state: cell %u is invalid (position %d, sequences %#llx, token %d) for this context",
                            i, pos, (unsigned long long)seq, t);
    }
    const uint8_t *idx = p + (size_t)h.n_cells * cb;
    int32_t rows = 0;
    for (uint32_t i = 0; i < h.last_batch_n; i++) {
        int32_t r;
        memcpy(&r, idx + (size_t)i * sizeof r, sizeof r);
        if (r < -1 || r >= (int32_t)h.n_logits || (r >= 0 && r != rows))
            return plm_fail(PLM_ERR_FORMAT, "state: logits index %u is invalid", i);
        rows += r >= 0;
    }
    if (rows != (int32_t)h.n_logits) return plm_fail(PLM_ERR_FORMAT, "state: logits rows do not match their index");
    if ((int32_t)h.n_logits > ctx->logits_cap) {
        float *nl = plm_amalloc((size_t)h.n_logits * (size_t)hp->n_vocab * sizeof(float));
        if (!nl) return plm_fail(PLM_ERR_OOM, "out of memory for %u rows of logits", h.n_logits);
        plm_afree(ctx->logits);
        ctx->logits = nl;
        ctx->logits_cap = (int32_t)h.n_logits;
    }
    if ((int32_t)h.last_batch_n > ctx->logits_idx_cap) {
        int32_t *ni = malloc((size_t)h.last_batch_n * sizeof(int32_t));
        if (!ni) return plm_fail(PLM_ERR_OOM, "out of memory");
        free(ctx->logits_idx);
        ctx->logits_idx = ni;
        ctx->logits_idx_cap = (int32_t)h.last_batch_n;
    }

    plm_kv_clear(ctx);
    const size_t row = (size_t)kv->kv_dim * sizeof(plm_f16);
    for (uint32_t c = 0; c < h.n_cells; c++) {
        const uint8_t *q = p + c * cb;
        int32_t pos;
        uint64_t seq;
        plm_token t;
        memcpy(&pos, q, sizeof pos);
        memcpy(&seq, q + sizeof pos, sizeof seq);
        memcpy(&t, q + sizeof pos + sizeof seq, sizeof t);
        plm_kv_load_cell(kv, (int32_t)c, pos, seq, t);
        q += sizeof(int32_t) + sizeof(uint64_t) + sizeof(plm_token);
        for (int il = 0; il < hp->n_layer; il++) {
            size_t off = ((size_t)il * (size_t)kv->n_ctx + (size_t)c) * (size_t)kv->kv_dim;
            plm_f16 *k = kv->k + plm_kv_k_at(kv, il, (int32_t)c, 0);
            for (int32_t j = 0; j < kv->kv_dim; j++) memcpy(k + (size_t)j * PLM_KV_BLOCK, q + j * sizeof(plm_f16), sizeof(plm_f16));
            memcpy(kv->v + off, q + row, row);
            q += 2 * row;
        }
    }
    plm_status st = plm_kv_load_end(kv);
    if (st) return st;
    if (h.last_batch_n) memcpy(ctx->logits_idx, idx, (size_t)h.last_batch_n * sizeof(int32_t));
    if (h.n_logits) memcpy(ctx->logits, idx + (size_t)h.last_batch_n * sizeof(int32_t), (size_t)h.n_logits * (size_t)hp->n_vocab * sizeof(float));
    ctx->n_logits = (int32_t)h.n_logits;
    ctx->last_batch_n = (int32_t)h.last_batch_n;
    return PLM_OK;
}

int32_t plm_kv_seq_tokens(const plm_context *ctx, int32_t seq, plm_token *out, int32_t cap) {
    if (!ctx || seq < 0 || seq >= ctx->params.n_seq_max) return 0;
    int32_t n = plm_kv_seq_pos_max(ctx, seq) + 1;
    if (!out || cap <= 0) return n;
    int32_t m = PLM_MIN(n, cap);
    for (int32_t i = 0; i < m; i++) out[i] = -1;
    const plm_kv *kv = &ctx->kv;
    for (int32_t i = 0; i < kv->n_cells[seq]; i++) {
        const int32_t c = kv->cells[seq][i];
        if (kv->pos[c] < m) out[kv->pos[c]] = kv->tok[c];
    }
    return n;
}
