/*
 * forward.c — the context and the batched forward pass around the families.
 *
 * Owns plm_context_create/free and plm_decode. A context is sized before
 * anything is allocated (KV cache, scratch, attention scores, logits) and
 * refused if that exceeds its memory budget. A batch is checked, given KV
 * cache cells, and split into micro-batches of at most n_batch tokens; each is
 * run by the model's family (models/<family>.c), which composes the shared
 * blocks of models/blocks.c. For the llama family that is:
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
 * weight's dot partner type and split output rows across the thread pool
 * (matmul.c). Cell bookkeeping is kvcache.c's: plm_decode asks it for cells
 * and hands them back when a batch fails.
 */
#include "context.h"
#include "models/models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ params */

plm_context_params plm_context_default_params(void) {
    plm_context_params p = {.n_ctx = 0, .n_batch = 512, .n_seq_max = 8, .n_threads = 0, .memory_budget = 0};
    return p;
}

#define MAX_THREADS PLM_N_THREADS_MAX

/* Checks params and fills in their defaults (n_ctx, n_threads, n_batch <= n_ctx). */
static plm_status resolve_params(const plm_model *model, const plm_context_params *params, const char *what, plm_context_params *out) {
    plm_status st = plm_model_check_weights(model, what);
    if (st) return st;
    plm_context_params p = params ? *params : plm_context_default_params();
    const plm_hparams *hp = &model->hp;
    if (p.n_ctx < 0) return plm_fail(PLM_ERR_ARG, "n_ctx must be >= 0 (got %d)", p.n_ctx);
    if (p.n_ctx > PLM_N_CTX_MAX)
        return plm_fail(PLM_ERR_ARG, "n_ctx %d is larger than the supported maximum %d (PLM_N_CTX_MAX)", p.n_ctx, PLM_N_CTX_MAX);
    if (p.n_ctx == 0) p.n_ctx = PLM_MIN(hp->n_ctx_train, 4096);
    if (p.n_ctx <= 0) return plm_fail(PLM_ERR_ARG, "n_ctx is 0 and the model gives no context length to default to");
    if (p.n_batch <= 0) return plm_fail(PLM_ERR_ARG, "n_batch must be positive (got %d)", p.n_batch);
    if (p.n_seq_max < 1 || p.n_seq_max > PLM_MAX_SEQ)
        return plm_fail(PLM_ERR_ARG, "n_seq_max must be in [1, %d] (got %d)", PLM_MAX_SEQ, p.n_seq_max);
    if (p.n_threads < 0) return plm_fail(PLM_ERR_ARG, "n_threads must be >= 0 (got %d; 0 means one per physical core)", p.n_threads);
    if (p.n_threads > MAX_THREADS) return plm_fail(PLM_ERR_ARG, "n_threads %d is unreasonable (at most %d)", p.n_threads, MAX_THREADS);
    if (p.n_threads == 0) p.n_threads = plm_physical_cores();
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    if (hp->head_dim > 4096 || hp->n_rot > 4096)
        return plm_fail(PLM_ERR_UNSUPPORTED, "attention head size %d is larger than supported (4096)", hp->head_dim);
    *out = p;
    return PLM_OK;
}

/* Bytes a context allocates up front, by part (see plm_context_memory_needed). */
typedef struct ctx_memory {
    uint64_t kv, scratch, scores, logits, total;
} ctx_memory;

/* Row bytes of the quantized activations: the widest input of any product, as
 * floats, is an upper bound for every 8-bit block format, plus alignment. */
static size_t act_row_bytes(const plm_hparams *hp) {
    const int64_t Q = (int64_t)hp->n_head * hp->head_dim;
    return (size_t)PLM_MAX(PLM_MAX((int64_t)hp->n_embd, Q), (int64_t)hp->n_ff) * sizeof(float) + 64;
}

/* Sums a + b * c into *acc; false on overflow. */
static bool add_mul(uint64_t *acc, uint64_t b, uint64_t c) {
    uint64_t t;
    return !plm_mul_ovf(b, c, &t) && !plm_add_ovf(*acc, t, acc);
}

/* p is resolved. Counts what plm_context_create, plm_kv_init and alloc_scores
 * allocate; each aligned block may round up by 63 bytes, which is noise. */
static plm_status context_memory(const plm_hparams *hp, const plm_context_params *p, ctx_memory *m) {
    memset(m, 0, sizeof(*m));
    const uint64_t C = (uint64_t)p->n_ctx, B = (uint64_t)p->n_batch;
    const uint64_t E = (uint64_t)hp->n_embd, Q = (uint64_t)hp->n_head * (uint64_t)hp->head_dim;
    const uint64_t KV = (uint64_t)hp->n_head_kv * (uint64_t)hp->head_dim, F = (uint64_t)hp->n_ff;
    uint64_t kv_row = 0, floats = 0;
    bool ok = add_mul(&kv_row, 2 * (uint64_t)hp->n_layer * sizeof(plm_f16), KV) && /* K and V of every layer */
              /* pos, seq, tok, and the cell's place in its sequence's list */
              add_mul(&kv_row, 1, 2 * sizeof(int32_t) + sizeof(uint64_t) + sizeof(plm_token)) &&
              add_mul(&m->kv, C, kv_row) &&
              /* x, xn, q, kn, vn, gate, up, tmp */
              add_mul(&floats, 1, 2 * E + PLM_MAX(E, Q) + Q + 2 * KV + 2 * F) &&
              add_mul(&m->scratch, B, floats * sizeof(float)) && add_mul(&m->scratch, B, act_row_bytes(hp)) &&
              add_mul(&m->scratch, B + 1, sizeof(int32_t)) && /* attention's token blocks */
              add_mul(&m->scores, (uint64_t)p->n_threads * PLM_ATTN_ROWS * sizeof(float), C) &&
              add_mul(&m->logits, (uint64_t)hp->n_vocab, sizeof(float)) && add_mul(&m->logits, B, sizeof(int32_t)) &&
              add_mul(&m->total, 1, m->kv) && add_mul(&m->total, 1, m->scratch) && add_mul(&m->total, 1, m->scores) &&
              add_mul(&m->total, 1, m->logits) && m->total <= SIZE_MAX / 2;
    if (!ok)
        return plm_fail(PLM_ERR_ARG, "the context's size overflows (n_ctx=%d, n_batch=%d, n_threads=%d with %d layers of %llu key/value dimensions)",
                        p->n_ctx, p->n_batch, p->n_threads, hp->n_layer, (unsigned long long)KV);
    return PLM_OK;
}

/* "12.0 GiB", "3.5 MiB", "512 bytes" */
static const char *fmt_bytes(uint64_t n, char *buf, size_t cap) {
    const double d = (double)n;
    if (n >= (1ull << 30)) snprintf(buf, cap, "%.1f GiB", d / (double)(1ull << 30));
    else if (n >= (1ull << 20)) snprintf(buf, cap, "%.1f MiB", d / (double)(1ull << 20));
    else if (n >= (1ull << 10)) snprintf(buf, cap, "%.1f KiB", d / (double)(1ull << 10));
    else snprintf(buf, cap, "%llu bytes", (unsigned long long)n);
    return buf;
}

/* PLM_ERR_OOM with both figures when m does not fit the budget of p (0: automatic). */
static plm_status check_budget(const plm_context_params *p, const ctx_memory *m) {
    const uint64_t budget = p->memory_budget ? (uint64_t)p->memory_budget : plm_physical_memory();
    if (budget == 0 || m->total <= budget) return PLM_OK; /* automatic, and the machine does not say */
    char need[32], kv[32], have[32];
    return plm_fail(PLM_ERR_OOM, "context needs %s (KV cache %s for n_ctx=%d) but the memory budget is %s (%s)",
                    fmt_bytes(m->total, need, sizeof need), fmt_bytes(m->kv, kv, sizeof kv), p->n_ctx,
                    fmt_bytes(budget, have, sizeof have),
                    p->memory_budget ? "plm_context_params.memory_budget"
                                     : "the machine's memory; set plm_context_params.memory_budget to change it");
}

plm_status plm_context_memory_needed(const plm_model *model, const plm_context_params *params, size_t *out) {
    if (!model || !out) return plm_fail(PLM_ERR_ARG, "plm_context_memory_needed: NULL argument");
    *out = 0;
    plm_clear_error();
    plm_context_params p;
    ctx_memory m;
    plm_status st = resolve_params(model, params, "plm_context_memory_needed", &p);
    if (!st) st = context_memory(&model->hp, &p, &m);
    if (!st) *out = (size_t)m.total;
    return st;
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
    plm_afree(ctx->tmp);
    plm_afree(ctx->act);
    plm_afree(ctx->scores);
    free(ctx->attn_blk);
    plm_afree(ctx->logits);
    free(ctx->logits_idx);
    free(ctx->adapters);
    plm_afree(ctx->lora_u);
    free(ctx);
}

/* Attention scores for n_threads: per thread PLM_ATTN_ROWS query rows of n_ctx (models/blocks.c). */
static float *new_scores(int32_t n_threads, int32_t n_ctx) {
    return plm_amalloc((size_t)n_threads * (size_t)n_ctx * PLM_ATTN_ROWS * sizeof(float));
}

static plm_status alloc_scores(plm_context *ctx) {
    plm_afree(ctx->scores);
    ctx->scores = new_scores(plm_pool_size(ctx->pool), ctx->kv.n_ctx);
    return ctx->scores ? PLM_OK : plm_fail(PLM_ERR_OOM, "out of memory for attention scores");
}

plm_status plm_context_create(plm_model *model, const plm_context_params *params, plm_context **out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_context_create: out is NULL");
    *out = NULL;
    if (!model) return plm_fail(PLM_ERR_ARG, "plm_context_create: model is NULL");
    plm_clear_error();
    const plm_hparams *hp = &model->hp;
    plm_context_params p;
    ctx_memory mem;
    plm_status st = resolve_params(model, params, "plm_context_create", &p);
    if (st) return st;
    /* Sized before anything is allocated: an oversized context is refused with
     * both figures instead of taking the host down half-built (or, with
     * overcommit, later, when the pages are touched). */
    if ((st = context_memory(hp, &p, &mem)) || (st = check_budget(&p, &mem))) return st;

    plm_context *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) return plm_fail(PLM_ERR_OOM, "out of memory");
    ctx->model = model;
    ctx->params = p;
    ctx->kern = plm_kernels_get();
    if ((st = plm_kv_init(&ctx->kv, hp, p.n_ctx))) goto fail;
    if ((st = plm_pool_create(p.n_threads, &ctx->pool))) goto fail;

    const size_t B = (size_t)p.n_batch;
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, KV = ctx->kv.kv_dim, F = hp->n_ff;
    ctx->act_row_cap = act_row_bytes(hp);
    ctx->x = plm_amalloc(B * (size_t)E * sizeof(float));
    ctx->xn = plm_amalloc(B * (size_t)PLM_MAX(E, Q) * sizeof(float));
    ctx->q = plm_amalloc(B * (size_t)Q * sizeof(float));
    ctx->kn = plm_amalloc(B * (size_t)KV * sizeof(float));
    ctx->vn = plm_amalloc(B * (size_t)KV * sizeof(float));
    ctx->gate = plm_amalloc(B * (size_t)F * sizeof(float));
    ctx->up = plm_amalloc(B * (size_t)F * sizeof(float));
    ctx->tmp = plm_amalloc(B * (size_t)E * sizeof(float));
    ctx->act = plm_amalloc(B * ctx->act_row_cap);
    ctx->attn_blk = malloc((B + 1) * sizeof(int32_t));
    if (!ctx->x || !ctx->xn || !ctx->q || !ctx->kn || !ctx->vn || !ctx->gate || !ctx->up || !ctx->tmp || !ctx->act ||
        !ctx->attn_blk) {
        st = plm_fail(PLM_ERR_OOM, "out of memory for a batch of %d tokens", p.n_batch);
        goto fail;
    }
    if ((st = alloc_scores(ctx))) goto fail;
    /* One row of logits and the batch index of a micro-batch up front, as the
     * budget counted them; plm_decode grows both when a batch asks for more. */
    ctx->logits = plm_amalloc((size_t)hp->n_vocab * sizeof(float));
    ctx->logits_idx = malloc(B * sizeof(int32_t));
    if (!ctx->logits || !ctx->logits_idx) {
        st = plm_fail(PLM_ERR_OOM, "out of memory for logits");
        goto fail;
    }
    ctx->logits_cap = 1;
    ctx->logits_idx_cap = p.n_batch;
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
    if (n_threads < 0 || n_threads > MAX_THREADS)
        return plm_fail(PLM_ERR_ARG, "n_threads must be in [0, %d] (got %d; 0 means one per physical core)", MAX_THREADS, n_threads);
    plm_clear_error();
    if (n_threads == 0) n_threads = plm_physical_cores();
    if (n_threads == plm_pool_size(ctx->pool)) return PLM_OK;
    plm_context_params p = ctx->params;
    p.n_threads = n_threads;
    ctx_memory mem;
    plm_status st = context_memory(&ctx->model->hp, &p, &mem);
    if (st || (st = check_budget(&p, &mem))) return st;
    /* The scores buffer first, so that a failure leaves the old pool and its buffer in place. */
    float *scores = new_scores(n_threads, ctx->kv.n_ctx);
    if (!scores) return plm_fail(PLM_ERR_OOM, "out of memory for attention scores of %d threads", n_threads);
    plm_pool *np;
    if ((st = plm_pool_create(n_threads, &np))) {
        plm_afree(scores);
        return st;
    }
    plm_pool_free(ctx->pool);
    ctx->pool = np;
    plm_afree(ctx->scores);
    ctx->scores = scores;
    ctx->params.n_threads = n_threads;
    return PLM_OK;
}

void plm_context_set_abort_callback(plm_context *ctx, plm_abort_fn fn, void *user) {
    if (!ctx) return;
    ctx->abort_fn = fn;
    ctx->abort_user = user;
}

/* ------------------------------------------------------------ decode */

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
    for (int s = 0; s < PLM_MAX_SEQ; s++) pos_max[s] = plm_kv_pos_max_of(&ctx->kv, s);
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
    if (n_want > 0 && ctx->model->family && ctx->model->family->encoder) {
        st = plm_fail(PLM_ERR_UNSUPPORTED, "'%s' is an encoder (%s): it gives embeddings, not next-token logits (use embed, not generate, chat or classify)",
                      ctx->model->name ? ctx->model->name : ctx->model->arch, ctx->model->arch);
        goto done;
    }
    /* Output buffers first: once cells are placed, only the forward pass can fail. */
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

    /* Every token's cell is placed up front: a token sees only cells of its own
     * sequence at positions up to its own, so a later micro-batch's cells (whose
     * keys are not written yet) stay out of sight of an earlier one. */
    if ((st = plm_kv_place(&ctx->kv, n, batch->token, pos, seq, cells))) goto done;
    int32_t n_out = 0;
    for (int32_t i0 = 0; i0 < n && !st; i0 += ctx->params.n_batch) {
        int32_t T = PLM_MIN(ctx->params.n_batch, n - i0);
        plm_ubatch ub = {.i0 = i0, .T = T, .tok = batch->token + i0, .pos = pos + i0, .seq = seq + i0,
                         .cells = cells + i0, .want = want + i0, .n_out = &n_out};
        st = ctx->model->family->forward(ctx, &ub);
    }
    if (st) {
        plm_kv_unplace(&ctx->kv, n, cells);
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
