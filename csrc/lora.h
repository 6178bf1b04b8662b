/*
 * lora.h — LoRA adapters inside the library: what lora.c loads and what the
 * matrix-product driver (matmul.c) reads to add an adapter's delta.
 *
 * An adapter targets some of a model's projection tensors; for each, it holds
 * A (rank, n_in) and B (n_out, rank) in 8 bits, and a context applies
 *   y = W x + scale * B (A x)
 * on top of the base product, row by row, without touching W. A is Q8_0 rows,
 * multiplied by the kernel table's Q8_0 entries like a weight (in the x16
 * layout, as the model's weights are repacked, where the table has a gemm_x16
 * for Q8_0 and the rank is a multiple of 16); B is int8 with
 * one scale per output row, stored by runs of 32 consecutive outputs (PLM_QK),
 * each run's values in groups of 4 of the rank (one 32-bit lane per output, as
 * int8 dot-product instructions read them) and then its 32 scales, so that an
 * output row range reads one contiguous stretch of it and u = A x, quantized
 * to int8 once per token, meets it in integer products (the table's
 * lora_b32). All of an adapter's A and B
 * lie in one block in the order a token reads them (struct plm_adapter), so
 * the A rows of a product's weights are one matrix. 8 bits instead of floats: the
 * adapter's bytes are read once per token, next to the model's, and at F32 a
 * rank-16 adapter on every projection of SmolLM2-135M read a quarter as many
 * bytes as the Q4_1 model itself (docs/adapters.md, "What it costs").
 */
#ifndef PLM_LORA_H
#define PLM_LORA_H

#include "model.h"

/* One target of an adapter: the base tensor and its low-rank update. */
typedef struct plm_lora_pair {
    const plm_gguf_tensor *base; /* the model's tensor (all its rows, when weights are views of it) */
    int32_t rank;
    int32_t layer;               /* the base tensor's block, and what it projects (the block's order) */
    plm_role role;
    int64_t n_in, n_out;         /* the base tensor's row length and rows */
    const uint8_t *a;            /* (rank, n_in) A as Q8_0 rows of a_row bytes, in the adapter's block; with a_x16,
                                  * in groups of 16 rows in the x16 layout (quant.h), which the table's gemm_x16
                                  * multiplies */
    size_t a_row;
    bool a_x16;
    const uint8_t *b;            /* (nb_out) runs of B, b_run bytes each, in the adapter's block: run j holds the 32
                                  * outputs r = 32 j + i (i < 32): q, plm_lora_rank4(rank) / 4 groups of 128 bytes
                                  * (q[k][i] at 128 (k / 4) + 4 i + k % 4), then e, 32 F16, so that
                                  * B[r][k] = b_scale e[i] q[k][i] (nb_out = ceil(n_out / 32); the last run and
                                  * k >= rank padded with zeros) */
    size_t b_run;
    float b_scale;               /* B's largest row scale: e holds each row's scale over it (in (0, 1], F16's normal
                                  * range for all but negligible rows) */
    int64_t nb_out;
} plm_lora_pair;

#define PLM_LORA_RANK_MAX 4096 /* far above any LoRA rank in use; bounds the scratch a context needs */

/* The rank rounded up to a multiple of 4 (the int8 groups of B's runs). */
static inline int32_t plm_lora_rank4(int32_t rank) { return (rank + 3) & ~3; }
/* The bytes of a run of B that hold its int8 values, before the scales; a run's size. */
static inline size_t plm_lora_run_q(int32_t rank) { return (size_t)plm_lora_rank4(rank) * PLM_QK; }
static inline size_t plm_lora_run_bytes(int32_t rank) { return plm_lora_run_q(rank) + PLM_QK * sizeof(plm_f16); }

struct plm_adapter {
    const plm_model *model;
    char *path;
    float alpha;         /* adapter.lora.alpha; 0 = absent: the scale is the caller's alone */
    int32_t n_pairs;
    plm_lora_pair *pairs;
    int32_t *by_tensor;  /* (model's tensors) index of the pair targeting tensor i, or -1 */
    int32_t max_rank;
    int64_t max_n_in;    /* the longest A row (sizes a context's quantized input) */
    uint32_t id;         /* fingerprint of the contents (names, shapes, values, alpha) */
    uint8_t *block;      /* every pair's A and B in one allocation, in the order a token uses them: by layer,
                          * then by group of projections that read one input (q, k, v; o; gate, up; down), the
                          * group's A matrices back to back, then its runs of B back to back, so that the
                          * adapter is one stream a token reads once, a product's pieces are one stretch, and
                          * the A of a group's products are one matrix (one gemm) */
};

/* An adapter in a context's set, with the caller's scale. */
typedef struct plm_adapter_use {
    const struct plm_adapter *a;
    float scale;
} plm_adapter_use;

/* The pair of adapter a targeting w's tensor, or NULL. */
static inline const plm_lora_pair *plm_lora_find(const struct plm_adapter *a, const plm_weight *w) {
    if (!w->t) return NULL;
    const int64_t i = w->t - a->model->g->tensors;
    if (i < 0 || (uint64_t)i >= a->model->g->n_tensors) return NULL;
    const int32_t k = a->by_tensor[i];
    return k < 0 ? NULL : &a->pairs[k];
}

/* The scale a pair's delta is multiplied by: the caller's times alpha / rank (PEFT's and llama.cpp's rule). */
static inline float plm_lora_scale(const struct plm_adapter *a, const plm_lora_pair *p, float user) {
    return a->alpha != 0.0f ? user * a->alpha / (float)p->rank : user;
}

#endif
