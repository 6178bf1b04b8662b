/*
 * context.h — a context: KV cache, scratch buffers and thread pool over a model.
 *
 * kvcache.c owns the cell bookkeeping (which sequences hold which positions),
 * forward.c the batched pass that fills cells and produces logits through the
 * model's family (models/).
 */
#ifndef PLM_CONTEXT_H
#define PLM_CONTEXT_H

#include "model.h"
#include "threadpool.h"

#define PLM_MAX_SEQ PLM_N_SEQ_MAX /* sequence ids are bits of a uint64_t cell mask */
#define PLM_ATTN_ROWS 16 /* query rows (heads x tokens) of one attention pass, each with n_ctx scores */

/* The KV cache: n_ctx cells shared by all sequences. A cell holds one position;
 * several sequences may share it (a common prefix evaluated once). Each
 * sequence also lists its own cells in position order, so that attention and
 * every per-sequence query visit that sequence's cells only. Only kvcache.c
 * writes these fields; the others read them. */
typedef struct plm_kv {
    int32_t n_ctx;
    int32_t n_layer;
    int32_t kv_dim;     /* n_head_kv * head_dim */
    plm_f16 *k;         /* keys: k_layer values per layer, by blocks of PLM_KV_BLOCK cells, transposed (plm_kv_k_at) */
    size_t k_layer;     /* n_ctx rounded up to PLM_KV_BLOCK, times kv_dim */
    plm_f16 *v;         /* (n_layer, n_ctx, kv_dim) */
    int32_t *pos;       /* (n_ctx) position, -1 when free */
    uint64_t *seq;      /* (n_ctx) bit s set: the cell belongs to sequence s */
    plm_token *tok;     /* (n_ctx) token that produced the cell */
    int32_t used;       /* cells with at least one sequence */
    int32_t n_active;   /* 1 + highest cell in use */
    int32_t *cells[PLM_MAX_SEQ]; /* (n_cells[s]) sequence s's cells, positions increasing */
    int32_t n_cells[PLM_MAX_SEQ], cap_cells[PLM_MAX_SEQ];
    int32_t page_next;  /* where kvcache.c's search for an empty page starts */
    bool empty_pages;   /* false once a search found none, until a cell is freed */
} plm_kv;

/* Where value j (head j / head_dim, dimension j % head_dim) of cell c's key lies in layer il: keys are kept by
 * blocks of PLM_KV_BLOCK cells, each value of the row for all the block's cells side by side, so that the
 * attention reads a block's dimension d of a head as PLM_KV_BLOCK consecutive values (kqt_f16), no transpose
 * per token (kvcache.c places a sequence's cells in such blocks). Values are kept one row per cell. */
static inline size_t plm_kv_k_at(const plm_kv *kv, int il, int32_t c, int64_t j) {
    return (size_t)il * kv->k_layer + ((size_t)(c / PLM_KV_BLOCK) * (size_t)kv->kv_dim + (size_t)j) * PLM_KV_BLOCK +
           (size_t)(c % PLM_KV_BLOCK);
}

struct plm_context {
    plm_model *model;
    plm_context_params params;
    const plm_kernels *kern;
    plm_pool *pool;
    plm_kv kv;

    /* scratch for one micro-batch of at most n_batch tokens */
    float *x;      /* (n_batch, n_embd) residual stream */
    float *xn;     /* (n_batch, max(n_embd, n_head*head_dim)) normalized input / attention output */
    float *q;      /* (n_batch, n_head*head_dim) */
    float *kn;     /* (n_batch, kv_dim) new keys */
    float *vn;     /* (n_batch, kv_dim) new values */
    float *gate;   /* (n_batch, n_ff) */
    float *up;     /* (n_batch, n_ff) */
    float *tmp;    /* (n_batch, n_embd) a sublayer's output before its post-norm (Gemma) */
    uint8_t *act;  /* (n_batch, row bytes) quantized activations */
    size_t act_row_cap;
    float *scores; /* (n_threads, PLM_ATTN_ROWS, n_ctx) attention scores */
    int32_t *attn_blk; /* (n_batch + 1) token blocks of the attention items (models/blocks.c) */

    /* outputs of the last plm_decode */
    float *logits;        /* (n_logits, n_vocab) */
    int32_t n_logits, logits_cap;
    int32_t *logits_idx;  /* (n_batch_total) batch index -> logits row, -1 if none */
    int32_t logits_idx_cap, last_batch_n;

    /* when set, forward.c writes every token's final normalized hidden state
     * here, row i0 + t for batch entry i0 + t (plm_embed) */
    float *hidden_out;

    plm_abort_fn abort_fn;
    void *abort_user;

    /* LoRA adapters applied to this context's products (lora.c); the model
     * itself is shared and never changed by them */
    struct plm_adapter_use *adapters; /* (n_adapters) borrowed adapters with their scales */
    int32_t n_adapters;
    uint32_t adapters_id;  /* fingerprint of the set (adapters and scales) for saved states; 0 = none */
    float *lora_u;         /* (n_batch, PLM_LINEAR_MAX_WEIGHTS * sum of the adapters' largest ranks) A x */
    uint8_t *lora_act;     /* (n_batch, longest A row) a product's input quantized for A; inside lora_u's block */
    size_t lora_bytes;     /* lora_u's block (kept, and reused by later sets that fit in it) */
};

plm_status plm_kv_init(plm_kv *kv, const plm_hparams *hp, int32_t n_ctx);
void plm_kv_release(plm_kv *kv);
/* Asks for the cache's keys and values on 2 MB pages where the system gives them on request (a batch of several
 * sequences: their steps read a few MB of it scattered over every layer, each 4 KB page a TLB miss; a
 * 16-sequence step 1.5-3.4% less time, paired). Not for every context: a single short chat would hold a whole
 * 2 MB page per layer. */
void plm_kv_huge_pages(plm_kv *kv);
/* Gives n tokens (token tok[i] at position pos[i] of sequence seq[i]; a
 * sequence's positions increase along the batch and are above the ones it
 * holds) free cells, lowest first, writes their indices into cells and records
 * them. All or nothing: PLM_ERR_CONTEXT_FULL if too few cells are free,
 * PLM_ERR_OOM, and the cache is unchanged. */
plm_status plm_kv_place(plm_kv *kv, int32_t n, const plm_token *tok, const int32_t *pos, const int32_t *seq,
                        int32_t *cells);
/* Undoes the last plm_kv_place of these n cells. */
void plm_kv_unplace(plm_kv *kv, int32_t n, const int32_t *cells);
/* Loading a state (state.c): the cache is emptied, cells are set one by one
 * (keys and values are the caller's), then plm_kv_load_end lists each
 * sequence's cells (PLM_ERR_OOM leaves the cache empty). */
void plm_kv_load_cell(plm_kv *kv, int32_t c, int32_t pos, uint64_t seq, plm_token tok);
plm_status plm_kv_load_end(plm_kv *kv);
/* Largest position of sequence s (-1 when empty). */
static inline int32_t plm_kv_pos_max_of(const plm_kv *kv, int32_t s) {
    return kv->n_cells[s] ? kv->pos[kv->cells[s][kv->n_cells[s] - 1]] : -1;
}
/* Number of sequence s's cells at positions <= p (a prefix of its cell list). */
int32_t plm_kv_n_upto(const plm_kv *kv, int32_t s, int32_t p);
/* Number of leading tokens of toks that sequence seq already holds at positions 0, 1, ... */
int32_t plm_kv_common_prefix(const plm_context *ctx, int32_t seq, const plm_token *toks, int32_t n);
/* Decodes toks at positions pos0... in sequence seq, in chunks of n_batch; logits for the last only
 * (forward.c). */
plm_status plm_eval_sequence(plm_context *ctx, const plm_token *toks, int32_t n, int32_t pos0, int32_t seq);

#endif
