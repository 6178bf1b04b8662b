/*
 * models/qwen.c — the Qwen family: qwen2 (Qwen2, Qwen2.5) and qwen3 (Qwen3 dense).
 *
 * Llama-shaped pre-norm blocks with RoPE on halves (NEOX pairing, the Q/K rows
 * are stored as trained) and a SwiGLU FFN. Qwen2 adds biases to the Q, K and V
 * products; Qwen3 has none but RMS-normalizes each head of q and k (with a
 * weight of head_dim) before RoPE.
 */
#include "models/models.h"

static plm_status load(plm_model *m, bool qk_norm) {
    plm_hparams *hp = &m->hp;
    plm_status st;
    if ((st = plm_model_load_hparams(m))) return st;
    hp->rope_type = PLM_ROPE_NEOX;
    if ((st = plm_model_bind_io(m))) return st;
    const int64_t Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    char name[128];
    for (int il = 0; il < hp->n_layer; il++) {
        plm_layer *L = &m->layers[il];
        if ((st = plm_model_bind_layer(m, il))) return st;
        /* Biases are optional (qwen2 files have them; qwen3 files do not). */
        if ((st = plm_model_vector(m, plm_layer_tensor(name, sizeof name, il, "attn_q", "bias"), Q, false, &L->bq)) ||
            (st = plm_model_vector(m, plm_layer_tensor(name, sizeof name, il, "attn_k", "bias"), KV, false, &L->bk)) ||
            (st = plm_model_vector(m, plm_layer_tensor(name, sizeof name, il, "attn_v", "bias"), KV, false, &L->bv)))
            return st;
        if (qk_norm &&
            ((st = plm_model_vector(m, plm_layer_tensor(name, sizeof name, il, "attn_q_norm", "weight"), hp->head_dim, true, &L->q_norm)) ||
             (st = plm_model_vector(m, plm_layer_tensor(name, sizeof name, il, "attn_k_norm", "weight"), hp->head_dim, true, &L->k_norm))))
            return st;
    }
    return PLM_OK;
}

static plm_status load_qwen2(plm_model *m) { return load(m, false); }
static plm_status load_qwen3(plm_model *m) { return load(m, true); }

static plm_status forward(plm_context *ctx, const plm_ubatch *ub) {
    const plm_model *m = ctx->model;
    const plm_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim;
    const int32_t T = ub->T;
    plm_status st;

    if ((st = plm_blk_embed(ctx, ub, 1.0f))) return st;                               /* x (T, E) */
    for (int il = 0; il < hp->n_layer; il++) {
        const plm_layer *L = &m->layers[il];
        if ((st = plm_blk_check_abort(ctx, il))) return st;
        /* q, k, v = W (rmsnorm(x) * attn_norm) + b (qwen2) */
        if ((st = plm_blk_qkv(ctx, L, T, L->attn_norm))) return st;
        plm_attn a = plm_attn_default(m, il);                      /* qwen3: q, k head-normed before RoPE */
        plm_blk_attention(ctx, ub, &a);                            /* xn (T, Q) */
        if ((st = plm_blk_mm(ctx, &L->wo, ctx->x, E, ctx->xn, Q, T, true))) return st; /* x += Wo xn */
        /* x += Wdown (silu(gate) * up) */
        if ((st = plm_blk_ffn(ctx, L, T, L->ffn_norm, PLM_ACT_SILU, ctx->x, true))) return st;
    }
    return plm_blk_output(ctx, ub, 0.0f);
}

const plm_arch plm_arch_qwen2 = {.name = "qwen2", .load = load_qwen2, .forward = forward};
const plm_arch plm_arch_qwen3 = {.name = "qwen3", .load = load_qwen3, .forward = forward};
