/*
 * quant.h — tensor element types, their block layouts, and the kernel table.
 *
 * Types carry ggml's numeric ids (the ones GGUF stores). Weights stay in their
 * block format; activations are quantized on the fly into the type's "dot
 * partner" (Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants,
 * F16 for F16, BF16 for BF16, F32 for F32), and a dot kernel multiplies one
 * weight row with one activation row.
 *
 * quant.c owns the block structs, the fp16/bf16 conversions and the scalar
 * reference kernels; kernels/<isa>.c provide faster versions of some entries;
 * kernels/dispatch.c picks one table at start-up from CPU features.
 */
#ifndef PLM_QUANT_H
#define PLM_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>

/* rintf (ties to even in the default rounding mode), clamped to [-127, 127],
 * NaN -> 0: avoids the undefined float-to-int conversion on non-finite input
 * (an amax so small that 127 / amax overflows gives inf); identical to
 * (int8_t)rintf(v) otherwise. The int8 quantizers' rounding (quant.c, lora.c).
 * Below 127 in magnitude, adding and taking off 1.5 * 2^23 rounds to an
 * integer in the current mode as rintf does: on x86-64 without SSE 4.1 rintf
 * is a call into libm (two calls per element were most of a LoRA delta's
 * per-token set-up). */
static inline int8_t plm_round_even_i8(float v) {
    if (v != v) return 0;
    if (v >= 127.0f) return 127;
    if (v <= -127.0f) return -127;
    return (int8_t)((v + 12582912.0f) - 12582912.0f);
}

typedef enum plm_type {
    PLM_TYPE_F32 = 0,
    PLM_TYPE_F16 = 1,
    PLM_TYPE_Q4_0 = 2,
    PLM_TYPE_Q4_1 = 3,
    PLM_TYPE_Q5_0 = 6,
    PLM_TYPE_Q5_1 = 7,
    PLM_TYPE_Q8_0 = 8,
    PLM_TYPE_Q8_1 = 9,
    PLM_TYPE_Q2_K = 10,
    PLM_TYPE_Q3_K = 11,
    PLM_TYPE_Q4_K = 12,
    PLM_TYPE_Q5_K = 13,
    PLM_TYPE_Q6_K = 14,
    PLM_TYPE_Q8_K = 15,
    PLM_TYPE_BF16 = 30,
    PLM_TYPE_COUNT = 31
} plm_type;

#define PLM_QK 32   /* elements per block of the 32-element formats */
#define PLM_QK_K 256 /* elements per super-block of the K-quants */

typedef uint16_t plm_f16;  /* IEEE half, stored bits */
#define PLM_KV_BLOCK 16    /* cells of a block of the KV cache's transposed keys (context.h, kqt_f16) */
#define PLM_ATTN_CELLS 64  /* cells of one kqt_f16 or pv8_f16 call at most (a run of the cache read in place) */

/* For the kernel tables: rows [0, nr) four at a time, then the 3, 2 or 1 left, each piece through ROWS(R, r)
 * with R a constant, so that a body written for R rows is compiled once per row count. */
#define PLM_BY_FOURS(nr, ROWS)                                                                                     \
    do {                                                                                                           \
        int r_ = 0;                                                                                                \
        for (; r_ + 4 <= (nr); r_ += 4) ROWS(4, r_);                                                               \
        switch ((nr) - r_) {                                                                                       \
        case 3: ROWS(3, r_); break;                                                                                \
        case 2: ROWS(2, r_); break;                                                                                \
        case 1: ROWS(1, r_); break;                                                                                \
        default: break;                                                                                            \
        }                                                                                                          \
    } while (0)
typedef uint16_t plm_bf16; /* bfloat16, stored bits */

/* Block layouts, byte-for-byte as GGUF stores them. */
typedef struct { plm_f16 d; uint8_t qs[PLM_QK / 2]; } plm_block_q4_0;
typedef struct { plm_f16 d; plm_f16 m; uint8_t qs[PLM_QK / 2]; } plm_block_q4_1;
typedef struct { plm_f16 d; uint8_t qh[4]; uint8_t qs[PLM_QK / 2]; } plm_block_q5_0;
typedef struct { plm_f16 d; plm_f16 m; uint8_t qh[4]; uint8_t qs[PLM_QK / 2]; } plm_block_q5_1;
typedef struct { plm_f16 d; int8_t qs[PLM_QK]; } plm_block_q8_0;
typedef struct { plm_f16 d; plm_f16 s; int8_t qs[PLM_QK]; } plm_block_q8_1; /* s = d * sum(qs) */
typedef struct { uint8_t scales[PLM_QK_K / 16]; uint8_t qs[PLM_QK_K / 4]; plm_f16 d; plm_f16 dmin; } plm_block_q2_K;
typedef struct { uint8_t hmask[PLM_QK_K / 8]; uint8_t qs[PLM_QK_K / 4]; uint8_t scales[12]; plm_f16 d; } plm_block_q3_K;
typedef struct { plm_f16 d; plm_f16 dmin; uint8_t scales[12]; uint8_t qs[PLM_QK_K / 2]; } plm_block_q4_K;
typedef struct { plm_f16 d; plm_f16 dmin; uint8_t scales[12]; uint8_t qh[PLM_QK_K / 8]; uint8_t qs[PLM_QK_K / 2]; } plm_block_q5_K;
typedef struct { uint8_t ql[PLM_QK_K / 2]; uint8_t qh[PLM_QK_K / 4]; int8_t scales[PLM_QK_K / 16]; plm_f16 d; } plm_block_q6_K;
typedef struct { float d; int8_t qs[PLM_QK_K]; int16_t bsums[PLM_QK_K / 16]; } plm_block_q8_K;

_Static_assert(sizeof(plm_block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(plm_block_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(plm_block_q5_0) == 22, "q5_0 block");
_Static_assert(sizeof(plm_block_q5_1) == 24, "q5_1 block");
_Static_assert(sizeof(plm_block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(plm_block_q8_1) == 36, "q8_1 block");
_Static_assert(sizeof(plm_block_q2_K) == 84, "q2_K block");
_Static_assert(sizeof(plm_block_q3_K) == 110, "q3_K block");
_Static_assert(sizeof(plm_block_q4_K) == 144, "q4_K block");
_Static_assert(sizeof(plm_block_q5_K) == 176, "q5_K block");
_Static_assert(sizeof(plm_block_q6_K) == 210, "q6_K block");
_Static_assert(sizeof(plm_block_q8_K) == 292, "q8_K block");

typedef struct plm_type_traits {
    const char *name;     /* "Q4_1" */
    int32_t block_size;   /* elements per block */
    uint32_t type_size;   /* bytes per block */
    plm_type dot_type;    /* type activations are quantized to for the reference dot kernel */
    bool is_weight;       /* may appear as a model weight (not Q8_1/Q8_K) */
} plm_type_traits;

/* Traits of a type, NULL if the id is unknown or unsupported. */
const plm_type_traits *plm_type_traits_get(uint32_t type);

/* Bytes of a row of n elements (n must be a multiple of the block size). */
size_t plm_type_row_size(plm_type type, int64_t n);

float plm_f16_to_f32(plm_f16 h);
plm_f16 plm_f32_to_f16(float f);  /* round to nearest even */
float plm_bf16_to_f32(plm_bf16 h);
plm_bf16 plm_f32_to_bf16(float f); /* round to nearest even */

/* Scalar reference kernels (always compiled). n is the row length in elements
 * and a multiple of the block size. */
void plm_dequantize_row_ref(plm_type type, const void *src, float *dst, int64_t n);
/* Quantizes a float row into an activation type (Q8_0, Q8_1, Q8_K, F16, BF16, F32). */
void plm_quantize_row_ref(plm_type type, const float *src, void *dst, int64_t n);

/* w: one weight row of type wtype; a: one activation row of type
 * kernels->dot_type[wtype] of the same table; returns sum_i w[i] * a[i]. */
typedef float (*plm_vec_dot_fn)(int64_t n, const void *w, const void *a);
typedef void (*plm_quantize_fn)(const float *src, void *dst, int64_t n);
/* A tile of dot products: for r < nr and c < nc,
 *   out[c * ldo + r] (=|+=) W_r . A_c
 * with weight row r at w + r * ws bytes and activation row c at a + c * as bytes:
 * W (nr, n) @ A (n, nc) -> out (nc, ldo). Each entry is bit-identical to
 * vec_dot(n, W_r, A_c) of the same table, whatever nr and nc are, so a token's
 * result does not depend on how the tokens were batched. */
typedef void (*plm_gemm_fn)(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nc,
                            float *out, int64_t ldo, bool accumulate);

/* The row-group ("x16") layout of the 32-element weight types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), into which the
 * model rearranges a weight at load when its kernel table has a gemm_x16 entry for the type (model.c): 16 rows,
 * ws = the type's row size apart, become one group of the same 16 ws bytes, block k of the 16 rows at byte
 * 16 k bs (bs the type's block size in bytes), laid out as the table's products read them, lane i = row i:
 *   d[16]   the rows' fp16 scales, 32 bytes
 *   m[16]   Q4_1, Q5_1: the rows' fp16 mins, 32 bytes
 *   h[8]    Q5_0, Q5_1: eight 64-bit masks of the fifth bits, bit 4 i + p of h[g] = bit 4 g + p of row i's qh,
 *           of h[4 + g] = bit 16 + 4 g + p (g < 4, p < 4), 64 bytes
 *   q       the 4-bit types: 4 x 64 bytes, bytes 4 g .. 4 g + 3 of row i's qs at 64 g + 4 i (the low nibbles
 *           are elements 4 g .., the high ones 16 + 4 g ..); Q8_0: 8 x 64 bytes, byte 4 g + p of row i's qs
 *           plus 128 (as unsigned) at 64 g + 4 i + p (g < 8)
 * so every group is the same size as its rows and lies where they lay. */
#define PLM_X16 16
/* True if the type has the x16 layout above. */
bool plm_x16_type(plm_type type);
/* Rows src, src + ws, .., src + 15 ws (n elements each, ws = plm_type_row_size(type, n)) into one group at dst
 * (16 ws bytes, not overlapping src). type must satisfy plm_x16_type. */
void plm_x16_pack(plm_type type, const void *src, void *dst, int64_t n);
/* Row i (< 16) of the group at group, back in the type's own block layout into dst (ws bytes). */
void plm_x16_row(plm_type type, const void *group, int64_t n, int i, void *dst);

/* A row quantized to Q8_1 (n elements) as Q8_0 (its blocks' d and qs, without s): every table's Q8_1 quantizer
 * gives the d and qs its Q8_0 one does (test_quant), so this is the row the Q8_0 quantizer would write. */
void plm_q8_1_as_q8_0(const void *src, void *dst, int64_t n);

/* True if plm_quantize_row_ref handles this type: the activation types above
 * and, for tests and tools, the weight types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K
 * and Q6_K (round to nearest, no error search). Other types leave dst as is. */
bool plm_type_can_quantize(plm_type type);

/* The LoRA delta of the rows of a one-token x16 product (kernels' gemm_x16_lora): B's runs as lora.h lays them
 * out, from the run that holds the product's first row, that row being output 16 half of the run (half 0 or
 * 1); uq and c as lora_b32 takes them. */
typedef struct plm_lora_epi {
    const uint8_t *run;
    int64_t run_bytes;
    int half;
    int32_t rank4;
    const int8_t *uq;
    float c;
} plm_lora_epi;
#define PLM_LORA_FUSED_RANK 256 /* the largest rank4 that gemm_x16_lora takes */

typedef struct plm_kernels {
    const char *name;                        /* "scalar", "avx2", "avx512", "neon", "neon-dotprod" */
    /* The activation type each weight type is multiplied with in this table (the
     * table's choice: the reference's is plm_type_traits_get(t)->dot_type). */
    plm_type dot_type[PLM_TYPE_COUNT];
    plm_vec_dot_fn vec_dot[PLM_TYPE_COUNT];  /* indexed by weight type */
    plm_quantize_fn quantize[PLM_TYPE_COUNT];/* indexed by activation (dot) type */
    plm_gemm_fn gemm[PLM_TYPE_COUNT];        /* indexed by weight type; NULL: use vec_dot per entry */
    /* gemm over weights in the x16 layout (above): w is a group's start, ws the type's row size (groups 16 ws
     * apart), nr a multiple of 16; each entry is bit-identical to vec_dot of the same row in its own layout.
     * NULL: the model keeps that type's weights as the file has them. */
    plm_gemm_fn gemm_x16[PLM_TYPE_COUNT];
    /* x[i] = (float)(F16)(x[i] * scale) (the product rounded to float, then to F16, to nearest even): the
     * attention's probabilities as llama.cpp rounds them, their normalization in the same pass (scale 1 leaves
     * x[i] as it was before the rounding: the queries). */
    void (*round_f16)(float *x, int64_t n, float scale);
    /* Attention over a block of cached rows (F16, `stride` values apart) for nr query rows:
     * kq8 (nc <= 8): s[r * ss + c] = sum over d = 0..hd-1, in that order, of q[r * qs + d] * k[c * stride + d];
     * pv8 (nc <= PLM_ATTN_CELLS): o[r * os + d] += p[r * ps + c] * v[c * stride + d] for c = 0..nc-1 in order,
     * skipping p == 0 (a run of the cache in place: a table keeps the rows' sums in registers across it).
     * Every entry depends only on its own row and cell, never on nr, nc or the
     * block, so attention does not depend on how tokens were batched. */
    void (*kq8_f16)(int64_t hd, const plm_f16 *k, int64_t stride, int nc, const float *q, int64_t qs, int nr,
                    float *s, int64_t ss);
    void (*pv8_f16)(int64_t hd, const plm_f16 *v, int64_t stride, int nc, const float *p, int64_t ps, int nr,
                    float *o, int64_t os);
    /* kq8_f16 over nc <= PLM_ATTN_CELLS keys stored transposed by blocks of PLM_KV_BLOCK cells, as the KV cache
     * keeps them (context.h), block j at kt + j * kbs: with kb = kt + (c / PLM_KV_BLOCK) * kbs,
     * s[r * ss + c] = sum over d = 0..hd-1, in that order, of q[r * qs + d] * kb[d * PLM_KV_BLOCK + c % PLM_KV_BLOCK],
     * the chain kq8_f16 computes for the same key as a row (so the two agree bit for bit). A table reads all
     * PLM_KV_BLOCK lanes of each block's rows (those past nc are computed and dropped); several blocks in one
     * call let it run their chains side by side (one chain alone waits on each FMA's latency). */
    void (*kqt_f16)(int64_t hd, const plm_f16 *kt, int64_t kbs, int nc, const float *q, int64_t qs, int nr, float *s,
                    int64_t ss);
    /* The softmax of a row of attention scores, in two passes: max_f32 returns the largest of x[0..n)
     * (-INFINITY for n == 0); exp_sum_f32 sets x[i] = exp(x[i] * scale - sub), the product and the
     * difference each rounded to float as written, and returns the sum of the results. The reference calls
     * expf and sums in order in double; a SIMD table's exp is within a few ulp of expf over the whole
     * float range (0 for -inf and below about -104, inf above about 88.72, NaN for NaN), and its
     * summation order depends only on n, so a row's result does not depend on how tokens were batched. */
    float (*max_f32)(const float *x, int64_t n);
    float (*exp_sum_f32)(float *x, int64_t n, float scale, float sub);
    /* A LoRA delta from int8 B (matmul.c; lora.h's runs) over nb runs of 32 outputs, runs run_bytes apart: run
     * b holds q, rank4 / 4 groups of 128 bytes (the 32 outputs' 4 values of k = 4 g .. 4 g + 3 each, so
     * q_b[k][i] = run[128 (k / 4) + 4 i + k % 4]), then e_b, 32 F16 scales. With uq the token's u in int8
     * (rank4 values, a multiple of 4, zero past the rank) and c its scale:
     *   s = sum_k q_b[k][i] uq[k] (exact in int32),  o[32 b + i] = o[32 b + i] + (float)s * (c * e_b[i])
     * a product then a sum (no fused multiply-add), so that every table and the caller's element-by-element
     * loop for cut runs agree bit for bit (the integer sum is exact in any order). */
    void (*lora_b32)(int nb, int32_t rank4, const int8_t *uq, float c, const uint8_t *run, int64_t run_bytes, float *o);
    /* gemm_x16 of one token (nc 1, ldo 1) with a LoRA delta given in the same pass (matmul.c, decode): as each
     * group of 16 rows is stored, lora_b32's delta of those rows is added with lora_b32's operations (the
     * stored value, then + (float)s * (c * e)), so the result is bit for bit gemm_x16 followed by lora_b32.
     * e->rank4 <= PLM_LORA_FUSED_RANK. NULL where a table has none (matmul.c adds the deltas afterwards). */
    void (*gemm_x16_lora[PLM_TYPE_COUNT])(int64_t n, const void *w, size_t ws, int nr, const void *a, float *out,
                                          bool accumulate, const struct plm_lora_epi *e);
    /* y[i] = gelu(y[i] + b[i]) for i < n (b NULL: no bias), the exact GELU 0.5 v (1 + erf(v / sqrt 2)) with erf
     * from plm_erf_coef (below, within 1e-7 of erf): every table computes each element with the same
     * operations (fused multiply-adds where the reference has fmaf), so all tables agree bit for bit. AVX2 and
     * AVX-512 have their own; the NEON tables use the reference's. */
    void (*gelu_bias)(float *y, const float *b, int64_t n);
    /* SwiGLU's g[i] = g[i] / (1 + e) * u[i] for i < n, with e = exp(g[i] * -1 - 0) as this table's exp_sum_f32
     * computes it: a sum, a quotient and a product, each rounded to float as written, so that the result is
     * bit for bit what exp_sum_f32 on a copy of g followed by that loop gives (test_quant checks it). NULL where
     * a table has none: the caller runs exactly that (models/blocks.c). */
    void (*silu_mul)(float *g, const float *u, int64_t n);
    /* RMSNorm of one row times weight w: out[i] = (x[i] * scale) * w[i], scale = 1 / sqrtf(mean + eps) with mean
     * the float of ss / n, ss the sum of the squares x[i] * x[i] (each rounded to float) in double, as ggml sums
     * them, in 8 chains: element i into chain i % 8 in order (the n % 8 last into chain 0), the chains added
     * ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7)). One chain of n dependent double additions was the latency
     * of the whole row (2,300 cycles at n = 576, 3% of a 16-sequence step); the order is fixed by n alone, so a
     * row's result does not depend on the batch, and every table's is the reference's bit for bit (test_quant);
     * the double sum rounds to the same float as ggml's in order but for ties within 2^-29 of it. out may be x. */
    void (*rmsnorm)(float *out, const float *x, const float *w, int64_t n, float eps);
    /* Greedy choice over a row of logits: the first index of the largest of x[0..n) (n >= 1; values equal as
     * floats count as the same, so -0 and +0 tie), or -1 - i when x[i] is the first NaN. Every table returns the
     * reference's index (test_quant). A 16-sequence greedy step takes 16 of these over the whole vocabulary, on
     * the thread that samples while the others wait. */
    int64_t (*argmax_f32)(const float *x, int64_t n);
} plm_kernels;

/* rmsnorm's scale (above) once chain k of c holds the squares of elements k, k + 8, ... below j (j a multiple
 * of 8): the squares from j to n into chain 0, the chains added in their fixed order, then 1 / sqrtf(mean + eps).
 * Every table's rmsnorm ends with it, so that they share the reference's steps. */
static inline float plm_rmsnorm_scale(double c[8], const float *x, int64_t j, int64_t n, float eps) {
    for (; j < n; j++) c[0] += (double)(x[j] * x[j]);
    const double ss = ((c[0] + c[1]) + (c[2] + c[3])) + ((c[4] + c[5]) + (c[6] + c[7]));
    return 1.0f / sqrtf((float)(ss / (double)n) + eps);
}

/* erf on [0, 4) in eight pieces of width 1/2: for |x| in piece k (k = min(floor(2|x|), 7), |x| clamped to 4),
 * erf(|x|) = sum_j plm_erf_coef[j][k] t^j with t = |x| - (k / 2 + 1/4), by Horner from j = 7 down with fmaf;
 * erf(x) takes x's sign. Degree-7 fits (Chebyshev nodes) whose float evaluation is within 7.1e-8 of erf;
 * erf(4) is 1 in float. Indexed [j][k] so that a SIMD table loads coefficient j of all pieces as one vector. */
#define PLM_ERF_PIECES 8
#define PLM_ERF_DEGREE 7
extern const float plm_erf_coef[PLM_ERF_DEGREE + 1][PLM_ERF_PIECES];

/* The scalar reference table (every supported type filled in). */
const plm_kernels *plm_kernels_ref(void);
/* The AVX2 table: entries it does not speed up are copied from the reference.
 * NULL if not compiled in or the CPU lacks AVX2+FMA+F16C. */
const plm_kernels *plm_kernels_avx2(void);
/* The AVX2 table itself, without the CPU check. Its code is compiled with
 * -mavx2 -mfma -mf16c: call it only once the CPU is known to have them (as
 * plm_kernels_avx2 does). Built once, thread-safe. */
const plm_kernels *plm_kernels_avx2_table(void);
/* The AVX-512 table (F, BW, VL, VNNI: vpdpbusd kernels for Q4_0, Q4_1, Q5_0,
 * Q5_1, Q8_0, Q2_K-Q6_K; its other entries are the AVX2 table's). NULL if
 * not compiled in, or the CPU lacks those features or AVX2+FMA+F16C, or the OS
 * does not save the opmask and ZMM registers (XCR0 bits 5-7). */
const plm_kernels *plm_kernels_avx512(void);
/* The AVX-512 table itself, without the CPU check (compiled with the Makefile's
 * ISA_avx512 flags: call it only once plm_kernels_avx512 has said yes). */
const plm_kernels *plm_kernels_avx512_table(void);
/* The plain Advanced SIMD table (aarch64; every entry it does not speed up is
 * the reference's). NULL if not compiled in (other architectures). */
const plm_kernels *plm_kernels_neon(void);
/* The same kernels with SDOT (the dot-product extension) for the integer
 * products. NULL if not compiled in or HWCAP lacks asimddp. */
const plm_kernels *plm_kernels_neon_dotprod(void);
/* The tables themselves, without the CPU check (kernels/neon.c, compiled with
 * the Makefile's ISA_neon / ISA_neon_dotprod flags). */
const plm_kernels *plm_kernels_neon_table(void);
const plm_kernels *plm_kernels_neon_dotprod_table(void);
/* The best table for this CPU (x86-64: avx512, then avx2; aarch64:
 * neon-dotprod, then neon; then scalar), chosen once (thread-safe).
 * POCKETLM_KERNELS=scalar|avx2|avx512|neon|neon-dotprod forces one; a table the
 * CPU cannot run is never chosen: the request falls back to the best table
 * that can run (with one line on stderr saying so), so plm_kernels_name()
 * tells which table is really in use. Any other value is "auto". */
const plm_kernels *plm_kernels_get(void);

#endif
