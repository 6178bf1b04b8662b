/*
 * models/gemma.c — the Gemma family: gemma2 (Gemma 2) and gemma3 (Gemma 3 text).
 *
 * Embeddings are scaled by sqrt(n_embd). Each block normalizes before AND after
 * both sublayers (attn_norm, post_attention_norm, ffn_norm, post_ffw_norm, all
 * RMSNorm; Gemma's "1 + w" is already folded into the stored weights by the
 * converter), its FFN is GeGLU (tanh-approximated GELU on the gate), and RoPE
 * pairs halves (NEOX). Layers alternate between local ones, which see only the
 * last n_swa positions, and global ones:
 *   gemma2: every other layer is local (0, 2, 4, ...); attention scores are
 *           soft-capped (attn_logit_softcapping, default 50) and so are the
 *           logits (final_logit_softcapping, default 30).
 *   gemma3: five local layers, then one global (il % 6 == 5); each head of q and
 *           k is RMS-normalized before RoPE; local layers use their own RoPE base
 *           (rope.freq_base_swa, default 10000) without the file's linear
 *           scaling; no attention soft-cap; logits soft-capped only if the file
 *           says so.
 * q is scaled by 1/sqrt(head_dim) before the product (1/sqrt(n_embd/n_head) for
 * the 27B models, whose query_pre_attn_scalar differs), as llama.cpp does.
 */
#include "models/models.h"

#include <math.h>

static plm_status load(plm_model *m, int version) {
    plm_hparams *hp = &m->hp;
    plm_status st;
    if ((st = plm_model_load_hparams(m))) return st;
    hp->rope_type = PLM_ROPE_NEOX;
    float rope_base_swa = 10000.0f;
    int pattern; /* layer il is local when il % pattern < pattern - 1 */
    if (version == 2) {
        pattern = 2;
        hp->n_swa = 4096;
        hp->attn_softcap = 50.0f;
        hp->final_softcap = 30.0f;
        if ((st = plm_model_key_f32(m, "attn_logit_softcapping", false, &hp->attn_softcap))) return st;
        rope_base_swa = hp->rope_base;
    } else {
        pattern = 6;
        if ((st = plm_model_key_f32(m, "rope.freq_base_swa", false, &rope_base_swa))) return st;
    }
    if ((st = plm_model_key_u32(m, "attention.sliding_window", false, 0, 1u << 30, &hp->n_swa)) ||
        (st = plm_model_key_f32(m, "final_logit_softcapping", false, &hp->final_softcap)))
        return st;
    if (hp->attn_softcap < 0 || hp->final_softcap < 0 || !(rope_base_swa > 0))
        return plm_fail(PLM_ERR_FORMAT, "%s: soft-caps must not be negative and rope.freq_base_swa must be positive", m->g->path);
    if ((version == 2 && hp->n_layer == 46) || (version == 3 && hp->n_layer == 62)) /* the 27B models */
        hp->attn_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));

    if ((st = plm_model_bind_io(m))) return st;
    char name[128];
#define W(what) plm_layer_tensor(name, sizeof name, il, what, "weight")
    for (int il = 0; il < hp->n_layer; il++) {
        plm_layer *L = &m->layers[il];
        if ((st = plm_model_bind_layer(m, il)) ||
            (st = plm_model_vector(m, W("post_attention_norm"), hp->n_embd, true, &L->attn_post_norm)) ||
            (st = plm_model_vector(m, W("post_ffw_norm"), hp->n_embd, true, &L->ffn_post_norm)))
            return st;
        if (version == 3 &&
            ((st = plm_model_vector(m, W("attn_q_norm"), hp->head_dim, true, &L->q_norm)) ||
             (st = plm_model_vector(m, W("attn_k_norm"), hp->head_dim, true, &L->k_norm))))
            return st;
        if (hp->n_swa > 0 && il % pattern < pattern - 1) {
            L->n_swa = hp->n_swa;
            L->rope_base = rope_base_swa;
            L->rope_freq_scale = 1.0f;
        }
    }
#undef W
    return PLM_OK;
}

static plm_status load_gemma2(plm_model *m) { return load(m, 2); }
static plm_status load_gemma3(plm_model *m) { return load(m, 3); }

static plm_status forward(plm_context *ctx, const plm_ubatch *ub) {
    const plm_model *m = ctx->model;
    const plm_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim;
    const int32_t T = ub->T;
    plm_status st;

    if ((st = plm_blk_embed(ctx, ub, sqrtf((float)E)))) return st;                       /* x (T, E) = embedding * sqrt(E) */
    for (int il = 0; il < hp->n_layer; il++) {
        const plm_layer *L = &m->layers[il];
        if ((st = plm_blk_check_abort(ctx, il))) return st;
        if ((st = plm_blk_qkv(ctx, L, T, L->attn_norm))) return st; /* q, k, v = W{q,k,v} (rmsnorm(x) * attn_norm) */
        plm_attn a = plm_attn_default(m, il);                      /* window, RoPE base, QK-norm, soft-cap of this layer */
        a.q_scale = hp->attn_scale;
        a.kq_scale = 1.0f;
        plm_blk_attention(ctx, ub, &a);                            /* xn (T, Q) */
        if ((st = plm_blk_mm(ctx, &L->wo, ctx->tmp, E, ctx->xn, Q, T, false))) return st; /* tmp (T, E) = Wo xn */
        plm_blk_add_normed(ctx, ctx->x, ctx->tmp, L->attn_post_norm, T); /* x += rmsnorm(tmp) * attn_post_norm */
        /* tmp = Wdown (gelu(gate) * up) */
        if ((st = plm_blk_ffn(ctx, L, T, L->ffn_norm, PLM_ACT_GELU_TANH, ctx->tmp, false))) return st;
        plm_blk_add_normed(ctx, ctx->x, ctx->tmp, L->ffn_post_norm, T);  /* x += rmsnorm(tmp) * ffn_post_norm */
    }
    return plm_blk_output(ctx, ub, hp->final_softcap); /* logits, soft-capped when set */
}

const plm_arch plm_arch_gemma2 = {.name = "gemma2", .load = load_gemma2, .forward = forward};
const plm_arch plm_arch_gemma3 = {.name = "gemma3", .load = load_gemma3, .forward = forward};
