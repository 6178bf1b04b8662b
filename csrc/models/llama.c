/*
 * models/llama.c — the llama family: Llama 2/3.x, SmolLM2, TinyLlama, Mistral.
 *
 * Pre-norm blocks with RMSNorm, RoPE on interleaved pairs (the converter
 * permuted the Q/K rows so that it is so), grouped-query attention and a SwiGLU
 * FFN. Llama 3.1+ files carry per-frequency RoPE divisors (rope_freqs.weight);
 * Mistral files may carry llama.attention.sliding_window, which then applies to
 * every layer.
 */
#include "models/models.h"

static plm_status load(plm_model *m) {
    plm_hparams *hp = &m->hp;
    plm_status st;
    if ((st = plm_model_load_hparams(m))) return st;
    if ((st = plm_model_key_u32(m, "attention.sliding_window", false, 0, 1u << 30, &hp->n_swa))) return st;
    /* Llama 3.1+: per-frequency divisors are stored as a tensor. */
    if ((st = plm_model_vector(m, "rope_freqs.weight", hp->n_rot / 2, false, &m->rope_factors))) return st;
    if ((st = plm_model_bind_io(m))) return st;
    for (int il = 0; il < hp->n_layer; il++) {
        if ((st = plm_model_bind_layer(m, il))) return st;
        m->layers[il].n_swa = hp->n_swa;
    }
    return PLM_OK;
}

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
        if ((st = plm_blk_qkv(ctx, L, T, L->attn_norm))) return st; /* q, k, v = W{q,k,v} (rmsnorm(x) * attn_norm) */
        plm_attn a = plm_attn_default(m, il);                      /* scores q.k / sqrt(hd) */
        plm_blk_attention(ctx, ub, &a);                            /* xn (T, Q) */
        if ((st = plm_blk_mm(ctx, &L->wo, ctx->x, E, ctx->xn, Q, T, true))) return st; /* x += Wo xn */
        /* x += Wdown (silu(gate) * up) */
        if ((st = plm_blk_ffn(ctx, L, T, L->ffn_norm, PLM_ACT_SILU, ctx->x, true))) return st;
    }
    return plm_blk_output(ctx, ub, 0.0f);
}

const plm_arch plm_arch_llama = {.name = "llama", .load = load, .forward = forward};
