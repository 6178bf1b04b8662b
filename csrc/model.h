/*
 * model.h — a loaded model: hyperparameters and weights bound to GGUF tensors.
 *
 * model.c opens the file, picks the architecture's family (csrc/models/) from
 * general.architecture, and owns the mapping (through plm_gguf), the vocabulary
 * and the helpers every family's loader uses to read metadata and bind weights
 * with shape checks. Each family's file reads its own hyperparameters and binds
 * its own tensors; forward.c and the family's graph run the model.
 */
#ifndef PLM_MODEL_H
#define PLM_MODEL_H

#include "gguf.h"
#include "quant.h"
#include "tokenizer/tokenizer.h"

/* What a layer's weight projects: the part of "blk.<il>.<role>.weight" its
 * tensor's name gives (plm_model_bind reads it). Adapters (lora.c) name their
 * targets the same way. */
typedef enum plm_role {
    PLM_ROLE_NONE = 0, /* not a layer's projection (token_embd, output, a family's own) */
    PLM_ROLE_Q, PLM_ROLE_K, PLM_ROLE_V, PLM_ROLE_QKV, PLM_ROLE_O,
    PLM_ROLE_GATE, PLM_ROLE_UP, PLM_ROLE_DOWN,
    PLM_ROLE_COUNT
} plm_role;

/* "attn_q", ...: the tensor name part of a role; NULL for PLM_ROLE_NONE. */
const char *plm_role_name(plm_role r);

/* A weight matrix W (n_out rows of n_in elements) in its file block format. A
 * weight may be a view of some rows of a fused tensor (Phi-3's attn_qkv): rows
 * [row0, row0 + n_out) of t. */
typedef struct plm_weight {
    const plm_gguf_tensor *t;
    const void *data;  /* first row */
    plm_type type;
    int64_t n_in;      /* ne[0]: row length */
    int64_t n_out;     /* rows */
    size_t row_bytes;
    int64_t row0;      /* first row of t this weight covers (views), else 0 */
    int32_t layer;     /* the block it belongs to, -1 for none */
    plm_role role;     /* what it projects, from t's name */
    bool x16;          /* data in the kernel table's row-group layout (quant.h; model.c repacks at load) */
} plm_weight;

/* One block. Optional parts are NULL (vectors) or have t == NULL (weights). */
typedef struct plm_layer {
    float *attn_norm;         /* (n_embd) */
    plm_weight wq;            /* (n_head*head_dim, n_embd) */
    plm_weight wk;            /* (n_head_kv*head_dim, n_embd) */
    plm_weight wv;            /* (n_head_kv*head_dim, n_embd) */
    float *bq, *bk, *bv;      /* (n_head*head_dim), (kv_dim), (kv_dim) biases: Qwen2 */
    float *q_norm, *k_norm;   /* (head_dim) per-head RMSNorm before RoPE: Qwen3, Gemma 3 */
    plm_weight wo;            /* (n_embd, n_head*head_dim) */
    float *attn_post_norm;    /* (n_embd) norm of the attention output before the residual: Gemma */
    float *ffn_norm;          /* (n_embd) */
    plm_weight w_gate;        /* (n_ff, n_embd) */
    plm_weight w_up;          /* (n_ff, n_embd) */
    plm_weight w_down;        /* (n_embd, n_ff) */
    float *ffn_post_norm;     /* (n_embd) norm of the FFN output before the residual: Gemma */
    /* attention of this layer */
    int32_t n_swa;            /* sliding window: keys at pos_q - pos_k >= n_swa are hidden; 0 = global */
    float rope_base;          /* RoPE frequency base (local layers have their own in Gemma 3) */
    float rope_freq_scale;    /* 1 / linear scaling factor */
} plm_layer;

/* How RoPE pairs dimensions: NORM rotates (2i, 2i+1), llama-style files whose
 * Q/K rows the converter permuted; NEOX rotates (i, i + n_rot/2). */
typedef enum plm_rope_type { PLM_ROPE_NORM = 0, PLM_ROPE_NEOX = 2 } plm_rope_type;

typedef struct plm_hparams {
    int32_t n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_rot;
    float norm_eps;
    float rope_base;
    float rope_freq_scale;   /* 1 / linear scaling factor */
    plm_rope_type rope_type;
    float rope_attn_factor;  /* multiplies cos and sin (Phi-3 LongRoPE), 1 otherwise */
    int32_t n_ctx_orig;      /* rope.scaling.original_context_length (n_ctx_train when absent) */
    int32_t n_swa;           /* sliding window of local layers, 0 = none */
    float attn_scale;        /* q is multiplied by this (1/sqrt(head_dim) unless the family says otherwise) */
    float attn_softcap;      /* attention scores soft-capped at this (Gemma 2), 0 = none */
    float final_softcap;     /* logits soft-capped at this (Gemma 2), 0 = none */
} plm_hparams;

typedef struct plm_arch plm_arch; /* a family's loader and graph: models/models.h */

/* A sequence-classification head in llama.cpp's layout (model.c says which
 * tensors and keys), dequantized to floats at load: it is small (at most
 * n_embd x n_embd) and runs once per text. Applied by plm_classify_head
 * (classify.c) to the pooled final-norm hidden state h (n_embd):
 *   y = dense ? tanh(dense h + dense_b) : h      (n_hidden) or (n_embd)
 *   scores = out ? out y + out_b : y             (n_out) */
typedef struct plm_cls_head {
    int32_t n_out;       /* outputs (labels); 0 when the model has no head */
    int32_t n_hidden;    /* rows of the dense layer; 0 without one */
    float *dense;        /* (n_hidden, n_embd) cls.weight, or NULL */
    float *dense_b;      /* (n_hidden) cls.bias, or NULL */
    float *out;          /* (n_out, n_hidden or n_embd) cls.output.weight, or NULL */
    float *out_b;        /* (n_out) cls.output.bias, or NULL */
    plm_pooling pooling; /* how the text's token states are pooled into h */
    char **labels;       /* (n_out) NUL-terminated label names */
} plm_cls_head;

struct plm_model {
    plm_gguf *g;
    plm_vocab *vocab;
    char *arch, *name, *chat_template;
    const char *file_type;
    const plm_arch *family;
    plm_hparams hp;
    plm_weight tok_embd;      /* (n_vocab, n_embd) rows are embeddings */
    float *output_norm;       /* (n_embd) */
    plm_weight output;        /* (n_vocab, n_embd); tok_embd when tied */
    float *rope_factors;      /* (n_rot/2) Llama 3.1 frequency divisors, or NULL */
    float *rope_long;         /* (n_rot/2) Phi-3 LongRoPE divisors beyond n_ctx_orig, or NULL */
    float *rope_short;        /* (n_rot/2) Phi-3 LongRoPE divisors within n_ctx_orig, or NULL */
    plm_layer *layers;        /* (n_layer) */
    plm_cls_head cls;         /* optional classification head (cls.n_out == 0: none) */
    uint64_t n_params;
    uint64_t n_bytes;
    uint64_t n_repacked;      /* bytes of weights repack_weights rearranged (model.c) */
    char **meta_keys;
    struct plm_token_trie *trie; /* vocabulary trie for grammar masks (grammar/mask.c): built on first use */
    bool vocab_only;          /* loaded with plm_model_params.vocab_only: no family, hyperparameters or weights */
    void *family_data;                   /* a family's own weights (models/bert.c), or NULL */
    void (*family_data_free)(void *);    /* frees family_data */
    struct plm_packed { void *p; size_t size; } *packed; /* (n_packed) anonymous mappings holding weights
                                                          * repacked from a mapped or borrowed file */
    int32_t n_packed;
};

/* Frees a vocabulary trie (grammar/mask.c); NULL is a no-op. */
void plm_token_trie_free(struct plm_token_trie *t);

/* ------------------------------------------------------------ for family loaders */

/* Binds tensor `name` as a weight of n_out rows of n_in; a missing tensor is an
 * error naming it when required, else leaves w zeroed (w->t == NULL). */
plm_status plm_model_bind(plm_model *m, const char *name, int64_t n_in, int64_t n_out, bool required, plm_weight *w);
/* Rows [r0, r0 + n) of w as a weight of their own (a view into a fused tensor). */
plm_weight plm_weight_rows(const plm_weight *w, int64_t r0, int64_t n);
/* Dequantizes the 1-D tensor `name` of n elements into a new float array (free
 * with free()); checks the shape and that every element is finite. */
plm_status plm_model_vector(plm_model *m, const char *name, int64_t n, bool required, float **out);
/* "<arch>.<suffix>" as an integer in [lo, hi] or a float; absent and not
 * required: *out is left as is. */
plm_status plm_model_key_u32(plm_model *m, const char *suffix, bool required, uint32_t lo, uint32_t hi, int32_t *out);
plm_status plm_model_key_f32(plm_model *m, const char *suffix, bool required, float *out);
/* The hyperparameters every family shares (sizes, heads, RMS epsilon, RoPE base
 * and linear/llama3 scaling, sliding window) and the vocabulary size; sets
 * defaults for the rest (no soft-caps, attn_scale 1/sqrt(head_dim), every layer
 * global with the file's RoPE base) and allocates m->layers. */
plm_status plm_model_load_hparams(plm_model *m);
/* token_embd, output_norm and output (tied to token_embd when absent). */
plm_status plm_model_bind_io(plm_model *m);
/* Layer il's tensors of the llama layout: attn_norm, attn_q, attn_k, attn_v,
 * attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down (all required). */
plm_status plm_model_bind_layer(plm_model *m, int il);
/* The optional classification head (cls.*, <arch>.pooling_type,
 * <arch>.classifier.output_labels), for every family; called by plm_model_load
 * after the family's loader. */
plm_status plm_model_load_cls_head(plm_model *m);

/* PLM_OK when m has its weights; PLM_ERR_ARG naming `what` (the caller's
 * function) when it was loaded vocabulary-only. */
plm_status plm_model_check_weights(const plm_model *m, const char *what);

/* "blk.<il>.<what>.<suffix>" into buf. */
const char *plm_layer_tensor(char *buf, size_t cap, int il, const char *what, const char *suffix);

#endif
