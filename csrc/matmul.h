/*
 * matmul.h — the building blocks every architecture's forward pass shares:
 * row-parallel jobs on the context's pool, RMSNorm, and y = W x for one to
 * three weights over a micro-batch, with activations quantized once for the
 * weights' dot type.
 */
#ifndef PLM_MATMUL_H
#define PLM_MATMUL_H

#include "context.h"

/* [a, b): the share of n items for thread ith of nth. */
void plm_split_range(int64_t n, int ith, int nth, int64_t *a, int64_t *b);
/* Runs fn on every pool thread when parallel, else on the caller alone. */
void plm_run(plm_context *ctx, plm_pool_fn fn, void *arg, bool parallel);
/* Most weights one plm_linear call takes (q, k and v). */
#define PLM_LINEAR_MAX_WEIGHTS 3
/* For j < n_w: out[j] (=|+=) W[j] x for T rows of x (ldx floats apart), each
 * output row ldo[j] floats apart: (n_out, n_in) @ (n_in, T) -> (n_out, T).
 * norm_w: x is first RMS-normalized with these weights into norm_out (T, n_in).
 * PLM_ERR_ARG unless 1 <= n_w <= PLM_LINEAR_MAX_WEIGHTS. */
plm_status plm_linear(plm_context *ctx, int n_w, const plm_weight *const *w, float *const *out, const int64_t *ldo,
                      const float *x, int64_t ldx, int32_t T, bool accumulate, const float *norm_w, float *norm_out);

#endif
