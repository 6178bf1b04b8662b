/*
 * models/phi3.c — the phi3 family: Phi-3, Phi-3.5 mini, Phi-4-mini.
 *
 * Llama-shaped pre-norm blocks whose Q, K and V products are one fused tensor
 * (attn_qkv: rows Q, then K, then V) and whose gate and up products are one
 * tensor (ffn_up: n_ff gate rows, then n_ff up rows); both are bound as row
 * views, so the products run as separate weights sharing one quantized input.
 * RoPE pairs halves (NEOX), may cover only part of each head (Phi-4-mini), and
 * for the 128k models is LongRoPE: per-frequency divisors, the "long" set when
 * the context exceeds rope.scaling.original_context_length and the "short" set
 * otherwise (as llama.cpp chooses), with cos and sin scaled by
 * rope.scaling.attn_factor. As in llama.cpp, the sliding window some Phi-3
 * configs declare is not applied.
 */
#include "models/models.h"

#include <math.h>

static plm_status load(plm_model *m) {
    plm_hparams *hp = &m->hp;
    plm_status st;
    if ((st = plm_model_load_hparams(m))) return st;
    hp->rope_type = PLM_ROPE_NEOX;
    if ((st = plm_model_vector(m, "rope_factors_long.weight", hp->n_rot / 2, false, &m->rope_long)) ||
        (st = plm_model_vector(m, "rope_factors_short.weight", hp->n_rot / 2, false, &m->rope_short)))
        return st;
    if ((st = plm_model_bind_io(m))) return st;
    const int64_t E = hp->n_embd, F = hp->n_ff;
    const int64_t Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    char name[128];
#define W(what) plm_layer_tensor(name, sizeof name, il, what, "weight")
    for (int il = 0; il < hp->n_layer; il++) {
        plm_layer *L = &m->layers[il];
        plm_weight qkv, gate_up;
        if ((st = plm_model_vector(m, W("attn_norm"), E, true, &L->attn_norm)) ||
            (st = plm_model_bind(m, W("attn_qkv"), E, Q + 2 * KV, false, &qkv)))
            return st;
        if (qkv.t) {                                       /* (Q + 2 KV, E) -> Wq, Wk, Wv */
            L->wq = plm_weight_rows(&qkv, 0, Q);
            L->wk = plm_weight_rows(&qkv, Q, KV);
            L->wv = plm_weight_rows(&qkv, Q + KV, KV);
        } else if ((st = plm_model_bind(m, W("attn_q"), E, Q, true, &L->wq)) ||
                   (st = plm_model_bind(m, W("attn_k"), E, KV, true, &L->wk)) ||
                   (st = plm_model_bind(m, W("attn_v"), E, KV, true, &L->wv))) {
            return st;
        }
        if ((st = plm_model_bind(m, W("attn_output"), Q, E, true, &L->wo)) ||
            (st = plm_model_vector(m, W("ffn_norm"), E, true, &L->ffn_norm)) ||
            (st = plm_model_bind(m, W("ffn_up"), E, 2 * F, true, &gate_up)) ||
            (st = plm_model_bind(m, W("ffn_down"), F, E, true, &L->w_down)))
            return st;
        L->w_gate = plm_weight_rows(&gate_up, 0, F);      /* (2F, E) -> Wgate, Wup */
        L->w_up = plm_weight_rows(&gate_up, F, F);
    }
#undef W
    return PLM_OK;
}

static plm_status forward(plm_context *ctx, const plm_ubatch *ub) {
    const plm_model *m = ctx->model;
    const plm_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim;
    const int32_t T = ub->T;
    const float *factors = ctx->kv.n_ctx > hp->n_ctx_orig ? m->rope_long : m->rope_short;
    plm_status st;

    if ((st = plm_blk_embed(ctx, ub, 1.0f))) return st;                               /* x (T, E) */
    for (int il = 0; il < hp->n_layer; il++) {
        const plm_layer *L = &m->layers[il];
        if ((st = plm_blk_check_abort(ctx, il))) return st;
        /* q, k, v = rows of Wqkv (rmsnorm(x) * attn_norm) */
        if ((st = plm_blk_qkv(ctx, L, T, L->attn_norm))) return st;
        plm_attn a = plm_attn_default(m, il);
        a.rope_factors = factors;
        a.q_scale = 1.0f / sqrtf((float)hp->head_dim);             /* q scaled before the product, as llama.cpp */
        a.kq_scale = 1.0f;
        plm_blk_attention(ctx, ub, &a);                            /* xn (T, Q) */
        if ((st = plm_blk_mm(ctx, &L->wo, ctx->x, E, ctx->xn, Q, T, true))) return st; /* x += Wo xn */
        /* x += Wdown (silu(gate rows) * up rows) */
        if ((st = plm_blk_ffn(ctx, L, T, L->ffn_norm, PLM_ACT_SILU, ctx->x, true))) return st;
    }
    return plm_blk_output(ctx, ub, 0.0f);
}

const plm_arch plm_arch_phi3 = {.name = "phi3", .load = load, .forward = forward};
