/*
 * models/models.h — model families and the building blocks their graphs share.
 *
 * A family (one file each: llama.c, qwen.c, phi3.c, gemma.c) reads its
 * hyperparameters and binds its tensors at load time, and runs its block stack
 * over a micro-batch by composing the blocks below (blocks.c). forward.c owns the
 * context and plm_decode: it assigns cache cells and calls the family's forward
 * once per micro-batch.
 *
 * Buffers of the context the blocks read and write, for a micro-batch of T tokens
 * (E = n_embd, Q = n_head*head_dim, KV = n_head_kv*head_dim, F = n_ff):
 *   ctx->x    (T, E)  residual stream
 *   ctx->xn   (T, max(E, Q))  normalized input of a product / attention output
 *   ctx->q    (T, Q), ctx->kn (T, KV), ctx->vn (T, KV)  this micro-batch's q, k, v
 *   ctx->gate (T, F), ctx->up (T, F)  FFN hidden
 *   ctx->tmp  (T, E)  a sublayer's output before its post-norm
 */
#ifndef PLM_MODELS_H
#define PLM_MODELS_H

#include "context.h"

/* One micro-batch of tokens, already given cache cells. */
typedef struct plm_ubatch {
    int32_t i0;            /* index of the first token in the whole batch */
    int32_t T;             /* tokens */
    const plm_token *tok;  /* (T) */
    const int32_t *pos;    /* (T) */
    const int32_t *seq;    /* (T) */
    const int32_t *cells;  /* (T) cache cell of each token */
    const int8_t *want;    /* (T) nonzero: logits wanted */
    int32_t *n_out;        /* logits rows written so far; advanced by plm_blk_output */
} plm_ubatch;

struct plm_arch {
    const char *name;                                            /* general.architecture */
    plm_status (*load)(plm_model *m);                            /* hyperparameters and weights */
    plm_status (*forward)(plm_context *ctx, const plm_ubatch *ub); /* block stack and output head */
    bool encoder; /* bidirectional, no logits: each sequence whole in one micro-batch (bert) */
};

extern const plm_arch plm_arch_llama, plm_arch_qwen2, plm_arch_qwen3, plm_arch_phi3, plm_arch_gemma2, plm_arch_gemma3,
    plm_arch_bert;

/* ------------------------------------------------------------ building blocks */

typedef enum plm_act { PLM_ACT_SILU, PLM_ACT_GELU_TANH } plm_act;

/* Attention of one layer, as the family configures it. */
typedef struct plm_attn {
    int il;                    /* layer: which cache slice */
    int32_t n_swa;             /* > 0: a key is visible only when pos_q - pos_k < n_swa */
    float rope_base, rope_freq_scale;
    const float *rope_factors; /* (n_rot/2) frequency divisors, or NULL */
    const float *q_norm;       /* (head_dim) per-head RMSNorm of q before RoPE, or NULL */
    const float *k_norm;       /* (head_dim) same for k */
    float q_scale;             /* q *= q_scale after RoPE, before it is rounded to F16 */
    float kq_scale;            /* score = kq_scale * q.k */
    float softcap;             /* > 0: score = softcap * tanh(score / softcap) */
} plm_attn;

/* x (T, E) = token embeddings * scale (rows of a tied output repacked at load read back from its layout). */
plm_status plm_blk_embed(plm_context *ctx, const plm_ubatch *ub, float scale);
/* PLM_ERR_CANCELLED when the abort callback asks, naming the layer. */
plm_status plm_blk_check_abort(plm_context *ctx, int il);
/* q, k, v = Wq xn (+ bq), Wk xn (+ bk), Wv xn (+ bv), xn = rmsnorm(x) * norm_w. */
plm_status plm_blk_qkv(plm_context *ctx, const plm_layer *L, int32_t T, const float *norm_w);
/* RoPE (with optional QK-norm) on q and k, k and v into the cache, then
 * xn (T, Q) = softmax(q k^T + mask) v over the cells of each token's sequence. */
void plm_blk_attention(plm_context *ctx, const plm_ubatch *ub, const plm_attn *a);
/* out (T, ldo) (=|+=) W x: W (n_out, n_in) @ x (n_in, T). */
plm_status plm_blk_mm(plm_context *ctx, const plm_weight *w, float *out, int64_t ldo, const float *x, int64_t ldx,
                      int32_t T, bool accumulate);
/* out (T, E) (=|+=) Wdown (act(Wgate xn) * Wup xn), xn = rmsnorm(x) * norm_w. */
plm_status plm_blk_ffn(plm_context *ctx, const plm_layer *L, int32_t T, const float *norm_w, plm_act act, float *out,
                       bool accumulate);
/* x (T, E) += rmsnorm(y) * w: Gemma's post-norms (y (T, E) is normalized in place). */
void plm_blk_add_normed(plm_context *ctx, float *x, float *y, const float *w, int32_t T);
/* For the tokens that want them: logits = Wout (rmsnorm(x) * output_norm),
 * soft-capped when softcap > 0, into ctx->logits from row *ub->n_out on; and
 * every token's normalized hidden state into ctx->hidden_out when set. */
plm_status plm_blk_output(plm_context *ctx, const plm_ubatch *ub, float softcap);

/* Attention parameters of layer il from the hyperparameters (the common case). */
plm_attn plm_attn_default(const plm_model *m, int il);

#endif
