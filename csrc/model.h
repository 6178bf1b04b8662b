/*
 * model.h — a loaded model: hyperparameters and weights bound to GGUF tensors.
 *
 * model.c reads the architecture's hyperparameters from metadata, finds and
 * shape-checks every weight, and owns the mapping (through plm_gguf) and the
 * vocabulary. forward.c runs it.
 */
#ifndef PLM_MODEL_H
#define PLM_MODEL_H

#include "gguf.h"
#include "quant.h"
#include "tokenizer/tokenizer.h"

/* A weight matrix W (n_out rows of n_in elements) in its file block format. */
typedef struct plm_weight {
    const plm_gguf_tensor *t;
    const void *data;
    plm_type type;
    int64_t n_in;      /* ne[0]: row length */
    int64_t n_out;     /* ne[1]: rows */
    size_t row_bytes;
} plm_weight;

typedef struct plm_layer {
    float *attn_norm;         /* (n_embd) */
    plm_weight wq;            /* (n_head*head_dim, n_embd) */
    plm_weight wk;            /* (n_head_kv*head_dim, n_embd) */
    plm_weight wv;            /* (n_head_kv*head_dim, n_embd) */
    plm_weight wo;            /* (n_embd, n_head*head_dim) */
    float *ffn_norm;          /* (n_embd) */
    plm_weight w_gate;        /* (n_ff, n_embd) */
    plm_weight w_up;          /* (n_ff, n_embd) */
    plm_weight w_down;        /* (n_embd, n_ff) */
} plm_layer;

typedef struct plm_hparams {
    int32_t n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_rot;
    float norm_eps;
    float rope_base;
    float rope_freq_scale;   /* 1 / linear scaling factor */
} plm_hparams;

struct plm_model {
    plm_gguf *g;
    plm_vocab *vocab;
    char *arch, *name, *chat_template;
    const char *file_type;
    plm_hparams hp;
    plm_weight tok_embd;      /* (n_vocab, n_embd) rows are embeddings */
    float *output_norm;       /* (n_embd) */
    plm_weight output;        /* (n_vocab, n_embd); tok_embd when tied */
    float *rope_factors;      /* (n_rot/2) Llama 3.1 frequency divisors, or NULL */
    plm_layer *layers;        /* (n_layer) */
    uint64_t n_params;
    uint64_t n_bytes;
    char **meta_keys;
};

#endif
