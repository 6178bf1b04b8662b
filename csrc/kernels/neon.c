/*
 * kernels/neon.c — Advanced SIMD (NEON) versions of the dot kernels, the
 * activation quantizers and the attention helpers for aarch64, each checked
 * against its scalar reference in quant.c by tests/c/test_quant.c.
 *
 * The file is compiled twice: as itself (plain armv8-a, which every aarch64
 * CPU runs) into the "neon" table, and through kernels/neon_dotprod.c with
 * PLM_NEON_DOTPROD=1 and -march=armv8.2-a+dotprod into the "neon-dotprod"
 * table, whose integer products are SDOT. The two differ only in dot16()
 * below; kernels/dispatch.c hands out the second only when HWCAP says asimddp.
 *
 * Weights are unpacked to signed bytes (Q4_0 q-8, Q5_0 q-16, Q6_K q-32; the
 * unsigned formats Q4_1, Q4_K, Q5_K as their values 0..31) and multiplied with
 * the int8 activations into int32 lanes, exactly. The float steps per block are
 * the AVX2 table's (fused multiply-add chains, the min terms in a chain of
 * their own, as llama.cpp sums them), so for Q4_0, Q4_1, Q5_0, Q8_0, Q4_K and
 * Q6_K a dot has the AVX2 table's bits, and a model computes as it does on
 * x86: the reference's steps (one rounding per product and sum) agree with
 * them to fp32 rounding, but SmolLM2's outlier activations amplify such
 * last-bit differences into a greedy continuation of its own (the scalar table
 * fails test_model's greedy check on one prompt; these pass it). The float
 * formats sum in four vector lanes and agree with the reference to fp32
 * rounding. The quantizers and the attention helpers are bit-identical to the
 * reference (the same products, rounding to nearest even, the same fused
 * chains).
 * Types without an entry here (Q5_1, Q2_K, Q3_K) keep the reference kernel.
 * The gemm entries take one weight row against up to 4 tokens, so a weight
 * block is unpacked once per 4 tokens in prefill.
 */
#include "quant.h"

#include <arm_neon.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#ifndef PLM_NEON_DOTPROD
#define PLM_NEON_DOTPROD 0
#endif

/* ------------------------------------------------------------- helpers */

/* acc + the products of 16 signed bytes, summed into the 4 int32 lanes (which
 * lane gets which product differs between the two forms; only the lane sum is used). */
#if PLM_NEON_DOTPROD
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }
#else
/* int8 x int8 fits int16 (|-128 * -128| = 2^14); pairs are added into int32. */
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}
#endif

/* fp16 -> fp32 is exact; FCVT does it in one instruction. */
static inline float h2f(plm_f16 h) {
    __fp16 x;
    memcpy(&x, &h, sizeof x);
    return (float)x;
}

static inline float32x4_t load_f16x4(const plm_f16 *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

static inline float32x4_t load_bf16x4(const plm_bf16 *p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

static const uint8_t k_bit_of_byte[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};

/* Bits 0..15 of `bits` -> 16 bytes, each 0x10 where its bit is set (Q5_0's fifth bit). */
static inline uint8x16_t bits_to_0x10(uint32_t bits) {
    const uint8x16_t b = vcombine_u8(vdup_n_u8((uint8_t)bits), vdup_n_u8((uint8_t)(bits >> 8)));
    return vandq_u8(vtstq_u8(b, vld1q_u8(k_bit_of_byte)), vdupq_n_u8(0x10));
}

static inline uint32_t load_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ------------------------------------------------------ integer tiles
 * A tile is one weight row against C <= 4 activation rows: each weight block
 * is unpacked once into signed bytes (and its scales), then dotted with the
 * block of every activation row. Entry (r, c) takes the same exact integer sums
 * and the same float steps, in the same order, whatever C is, so the gemm and
 * vec_dot (the 1 x 1 tile) agree bit for bit. */

#define ALWAYS_INLINE inline __attribute__((always_inline))
#define TILE_C 4

typedef enum { W_Q4_0, W_Q4_1, W_Q5_0, W_Q8_0, W_Q4_K, W_Q5_K, W_Q6_K } wkind;

/* One unpacked weight block: n16 vectors of 16 signed values, in activation
 * order; sc[k] the integer scale of vector k (K-quants), m[j] the 6-bit mins. */
typedef struct {
    int8x16_t v[16];
    int32_t sc[16];
    int32_t m[8];
    float d, dmin;
} wblock;

static ALWAYS_INLINE bool is_k(wkind k) { return k == W_Q4_K || k == W_Q5_K || k == W_Q6_K; }

static ALWAYS_INLINE size_t wblock_bytes(wkind k) {
    switch (k) {
    case W_Q4_0: return sizeof(plm_block_q4_0);
    case W_Q4_1: return sizeof(plm_block_q4_1);
    case W_Q5_0: return sizeof(plm_block_q5_0);
    case W_Q8_0: return sizeof(plm_block_q8_0);
    case W_Q4_K: return sizeof(plm_block_q4_K);
    case W_Q5_K: return sizeof(plm_block_q5_K);
    default: return sizeof(plm_block_q6_K);
    }
}

static ALWAYS_INLINE size_t ablock_bytes(wkind k) {
    return is_k(k) ? sizeof(plm_block_q8_K) : k == W_Q4_1 ? sizeof(plm_block_q8_1) : sizeof(plm_block_q8_0);
}

/* Q4_K / Q5_K 6-bit scale and min of sub-block j (quant.c's k4_scale_min). */
static inline void k4_scale_min(const uint8_t *q, int j, int32_t *sc, int32_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K / Q5_K: sub-block j (32 values) is vectors 2j, 2j+1; the low nibbles of
 * qs[32 (j/2) ..] for even j, the high ones for odd j; Q5_K's fifth bit is bit
 * j of qh[l]. */
static ALWAYS_INLINE void unpack_k4(const uint8_t *qs, const uint8_t *qh, const uint8_t *scales, bool five,
                                    wblock *o) {
    const uint8x16_t m4 = vdupq_n_u8(0xf), b5 = vdupq_n_u8(0x10);
    const uint8x16_t h0 = five ? vld1q_u8(qh) : vdupq_n_u8(0), h1 = five ? vld1q_u8(qh + 16) : vdupq_n_u8(0);
    for (int j = 0; j < 8; j += 2) {
        const uint8x16_t q0 = vld1q_u8(qs + 16 * j), q1 = vld1q_u8(qs + 16 * j + 16);
        uint8x16_t l0 = vandq_u8(q0, m4), l1 = vandq_u8(q1, m4), u0 = vshrq_n_u8(q0, 4), u1 = vshrq_n_u8(q1, 4);
        if (five) {
            const uint8x16_t bl = vdupq_n_u8((uint8_t)(1u << j)), bh = vdupq_n_u8((uint8_t)(2u << j));
            l0 = vorrq_u8(l0, vandq_u8(vtstq_u8(h0, bl), b5));
            l1 = vorrq_u8(l1, vandq_u8(vtstq_u8(h1, bl), b5));
            u0 = vorrq_u8(u0, vandq_u8(vtstq_u8(h0, bh), b5));
            u1 = vorrq_u8(u1, vandq_u8(vtstq_u8(h1, bh), b5));
        }
        o->v[2 * j] = vreinterpretq_s8_u8(l0);
        o->v[2 * j + 1] = vreinterpretq_s8_u8(l1);
        o->v[2 * j + 2] = vreinterpretq_s8_u8(u0);
        o->v[2 * j + 3] = vreinterpretq_s8_u8(u1);
    }
    for (int j = 0; j < 8; j++) {
        k4_scale_min(scales, j, &o->sc[2 * j], &o->m[j]);
        o->sc[2 * j + 1] = o->sc[2 * j];
    }
}

/* Q6_K: element 128c + 32k + l takes the low (k < 2) or high nibble of
 * ql[64c + 32(k & 1) + l] and bits 2k..2k+1 of qh[32c + l] (quant.c's
 * q6k_value), minus 32; each 16 elements have their own signed scale. */
static ALWAYS_INLINE void unpack_q6_K(const plm_block_q6_K *w, wblock *o) {
    const uint8x16_t m4 = vdupq_n_u8(0xf), m3 = vdupq_n_u8(3);
    const int8x16_t s32 = vdupq_n_s8(32);
    for (int c = 0; c < 2; c++)
        for (int h = 0; h < 2; h++) {
            const uint8x16_t qh = vld1q_u8(w->qh + 32 * c + 16 * h);
            const uint8x16_t ql0 = vld1q_u8(w->ql + 64 * c + 16 * h), ql1 = vld1q_u8(w->ql + 64 * c + 32 + 16 * h);
            const uint8x16_t lo[4] = {vandq_u8(ql0, m4), vandq_u8(ql1, m4), vshrq_n_u8(ql0, 4), vshrq_n_u8(ql1, 4)};
            const uint8x16_t hi[4] = {vshlq_n_u8(vandq_u8(qh, m3), 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 2), m3), 4),
                                      vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 4), m3), 4), vshlq_n_u8(vshrq_n_u8(qh, 6), 4)};
            for (int k = 0; k < 4; k++) {
                const int idx = 8 * c + 2 * k + h; /* activations 16 idx .. 16 idx + 15 */
                o->v[idx] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo[k], hi[k])), s32);
                o->sc[idx] = w->scales[idx];
            }
        }
}

static ALWAYS_INLINE void unpack(wkind k, const uint8_t *p, wblock *o) {
    const uint8x16_t m4 = vdupq_n_u8(0xf);
    switch (k) {
    case W_Q4_0: {
        const plm_block_q4_0 *w = (const plm_block_q4_0 *)p;
        const uint8x16_t q = vld1q_u8(w->qs);
        o->v[0] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, m4)), vdupq_n_s8(8));
        o->v[1] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), vdupq_n_s8(8));
        o->d = h2f(w->d);
        break;
    }
    case W_Q4_1: {
        const plm_block_q4_1 *w = (const plm_block_q4_1 *)p;
        const uint8x16_t q = vld1q_u8(w->qs);
        o->v[0] = vreinterpretq_s8_u8(vandq_u8(q, m4));
        o->v[1] = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
        o->d = h2f(w->d);
        o->dmin = h2f(w->m);
        break;
    }
    case W_Q5_0: {
        const plm_block_q5_0 *w = (const plm_block_q5_0 *)p;
        const uint32_t qh = load_u32le(w->qh);
        const uint8x16_t q = vld1q_u8(w->qs);
        o->v[0] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, m4), bits_to_0x10(qh))), vdupq_n_s8(16));
        o->v[1] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), bits_to_0x10(qh >> 16))), vdupq_n_s8(16));
        o->d = h2f(w->d);
        break;
    }
    case W_Q8_0: {
        const plm_block_q8_0 *w = (const plm_block_q8_0 *)p;
        o->v[0] = vld1q_s8(w->qs);
        o->v[1] = vld1q_s8(w->qs + 16);
        o->d = h2f(w->d);
        break;
    }
    case W_Q4_K: {
        const plm_block_q4_K *w = (const plm_block_q4_K *)p;
        unpack_k4(w->qs, NULL, w->scales, false, o);
        o->d = h2f(w->d);
        o->dmin = h2f(w->dmin);
        break;
    }
    case W_Q5_K: {
        const plm_block_q5_K *w = (const plm_block_q5_K *)p;
        unpack_k4(w->qs, w->qh, w->scales, true, o);
        o->d = h2f(w->d);
        o->dmin = h2f(w->dmin);
        break;
    }
    default: {
        const plm_block_q6_K *w = (const plm_block_q6_K *)p;
        unpack_q6_K(w, o);
        o->d = h2f(w->d);
        break;
    }
    }
}

/* One block's contribution to the entry's two float chains, the AVX2
 * table's steps (llama.cpp's form): acc += isum * (d * da) as one fused
 * multiply-add; the min terms go to their own chain, macc += m * s (Q4_1, from
 * Q8_1's s) or macc += msum * (dmin * da) (Q4_K, Q5_K, against the Q8_K bsums),
 * and are added (Q4_1) or subtracted (K-quants) at the end. */
static ALWAYS_INLINE void block_step(wkind k, const wblock *b, const uint8_t *y, float *acc, float *macc) {
    if (!is_k(k)) {
        const int8_t *qs = k == W_Q4_1 ? ((const plm_block_q8_1 *)y)->qs : ((const plm_block_q8_0 *)y)->qs;
        const int32_t isum = vaddvq_s32(dot16(dot16(vdupq_n_s32(0), b->v[0], vld1q_s8(qs)), b->v[1], vld1q_s8(qs + 16)));
        if (k == W_Q4_1) {
            const plm_block_q8_1 *a = (const plm_block_q8_1 *)y;
            *acc = fmaf((float)isum, b->d * h2f(a->d), *acc);
            *macc = fmaf(b->dmin, h2f(a->s), *macc);
            return;
        }
        *acc = fmaf((float)isum, b->d * h2f(((const plm_block_q8_0 *)y)->d), *acc);
        return;
    }
    const plm_block_q8_K *a = (const plm_block_q8_K *)y;
    int32x4_t sv = vdupq_n_s32(0);
    for (int i = 0; i < 16; i++) sv = vmlaq_n_s32(sv, dot16(vdupq_n_s32(0), b->v[i], vld1q_s8(a->qs + 16 * i)), b->sc[i]);
    *acc = fmaf((float)vaddvq_s32(sv), b->d * a->d, *acc);
    if (k == W_Q6_K) return;
    int32_t msum = 0;
    for (int j = 0; j < 8; j++) msum += b->m[j] * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
    *macc = fmaf((float)msum, b->dmin * a->d, *macc);
}

/* sum[c] = W_row . A_c for c < C (activation rows `as` bytes apart). */
static ALWAYS_INLINE void tile(wkind k, const int C, int64_t nb, const uint8_t *w, const uint8_t *a, size_t as,
                               float *sum) {
    const size_t wb = wblock_bytes(k), ab = ablock_bytes(k);
    float acc[TILE_C] = {0}, macc[TILE_C] = {0};
    for (int64_t i = 0; i < nb; i++) {
        wblock b;
        unpack(k, w + (size_t)i * wb, &b);
        for (int c = 0; c < C; c++) block_step(k, &b, a + (size_t)c * as + (size_t)i * ab, &acc[c], &macc[c]);
    }
    for (int c = 0; c < C; c++) sum[c] = k == W_Q4_1 ? acc[c] + macc[c] : is_k(k) ? acc[c] - macc[c] : acc[c];
}

static ALWAYS_INLINE void gemm(wkind k, int64_t n, const void *vw, size_t ws, int nr, const void *va, size_t as, int nc,
                               float *out, int64_t ldo, bool accumulate) {
    const int64_t nb = n / (is_k(k) ? PLM_QK_K : PLM_QK);
    const uint8_t *w = vw, *a = va;
    for (int r = 0; r < nr; r++)
        for (int c0 = 0; c0 < nc; c0 += TILE_C) {
            float s[TILE_C] = {0};
            const uint8_t *wr = w + (size_t)r * ws, *ac = a + (size_t)c0 * as;
            switch (nc - c0 < TILE_C ? nc - c0 : TILE_C) {
            case 1: tile(k, 1, nb, wr, ac, as, s); break;
            case 2: tile(k, 2, nb, wr, ac, as, s); break;
            case 3: tile(k, 3, nb, wr, ac, as, s); break;
            default: tile(k, 4, nb, wr, ac, as, s); break;
            }
            for (int c = 0; c < TILE_C && c0 + c < nc; c++) {
                float *o = out + (int64_t)(c0 + c) * ldo + r;
                *o = accumulate ? *o + s[c] : s[c];
            }
        }
}

static ALWAYS_INLINE float dot(wkind k, int64_t n, const void *w, const void *a) {
    float s;
    tile(k, 1, n / (is_k(k) ? PLM_QK_K : PLM_QK), w, a, 0, &s);
    return s;
}

#define KERNELS(name, kind)                                                                                         \
    static float dot_##name(int64_t n, const void *w, const void *a) { return dot(kind, n, w, a); }              \
    static void gemm_##name(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nc,       \
                            float *out, int64_t ldo, bool accumulate) {                                          \
        gemm(kind, n, w, ws, nr, a, as, nc, out, ldo, accumulate);                                               \
    }
KERNELS(q4_0, W_Q4_0)
KERNELS(q4_1, W_Q4_1)
KERNELS(q5_0, W_Q5_0)
KERNELS(q8_0, W_Q8_0)
KERNELS(q4_K, W_Q4_K)
KERNELS(q5_K, W_Q5_K)
KERNELS(q6_K, W_Q6_K)

/* ------------------------------------------------------- float formats */

static float dot_f32(int64_t n, const void *vw, const void *va) {
    const float *w = vw, *a = va;
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(w + i), vld1q_f32(a + i));
        s1 = vfmaq_f32(s1, vld1q_f32(w + i + 4), vld1q_f32(a + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(w + i + 8), vld1q_f32(a + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(w + i + 12), vld1q_f32(a + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(w + i), vld1q_f32(a + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) sum += w[i] * a[i];
    return sum;
}

static float dot_f16(int64_t n, const void *vw, const void *va) {
    const plm_f16 *w = vw, *a = va;
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, load_f16x4(w + i), load_f16x4(a + i));
        s1 = vfmaq_f32(s1, load_f16x4(w + i + 4), load_f16x4(a + i + 4));
        s2 = vfmaq_f32(s2, load_f16x4(w + i + 8), load_f16x4(a + i + 8));
        s3 = vfmaq_f32(s3, load_f16x4(w + i + 12), load_f16x4(a + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, load_f16x4(w + i), load_f16x4(a + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) sum += h2f(w[i]) * h2f(a[i]);
    return sum;
}

static float dot_bf16(int64_t n, const void *vw, const void *va) {
    const plm_bf16 *w = vw, *a = va;
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, load_bf16x4(w + i), load_bf16x4(a + i));
        s1 = vfmaq_f32(s1, load_bf16x4(w + i + 4), load_bf16x4(a + i + 4));
        s2 = vfmaq_f32(s2, load_bf16x4(w + i + 8), load_bf16x4(a + i + 8));
        s3 = vfmaq_f32(s3, load_bf16x4(w + i + 12), load_bf16x4(a + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, load_bf16x4(w + i), load_bf16x4(a + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) sum += plm_bf16_to_f32(w[i]) * plm_bf16_to_f32(a[i]);
    return sum;
}

/* ------------------------------------------------------- attention
 * kq8_f16 / pv8_f16 (quant.h): the block's keys are converted and transposed
 * once (lanes = cells, two vectors for 8), then each score is one chain of
 * fused multiply-adds over d in order, as the reference's fmaf chain; values
 * are converted once and each output element takes one fused multiply-add per
 * cell in cell order. Head sizes above ATT_HD_MAX or not a multiple of 4 take
 * the scalar form of the same chains. */
#define ATT_HD_MAX 512

/* 4 x 4 transpose: r[c] holds 4 dimensions of cell c -> r[d] holds 4 cells of dimension d. */
static inline void transpose4(float32x4_t r[4]) {
    const float32x4_t t0 = vtrn1q_f32(r[0], r[1]), t1 = vtrn2q_f32(r[0], r[1]);
    const float32x4_t t2 = vtrn1q_f32(r[2], r[3]), t3 = vtrn2q_f32(r[2], r[3]);
    r[0] = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
    r[1] = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
    r[2] = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
    r[3] = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
}

static void kq8_f16(int64_t hd, const plm_f16 *k, int64_t stride, int nc, const float *q, int64_t qs, int nr, float *s,
                    int64_t ss) {
    if (hd > ATT_HD_MAX || hd % 4) {
        for (int r = 0; r < nr; r++)
            for (int c = 0; c < nc; c++) {
                float sum = 0.0f;
                for (int64_t d = 0; d < hd; d++) sum = fmaf(q[r * qs + d], h2f(k[c * stride + d]), sum);
                s[r * ss + c] = sum;
            }
        return;
    }
    float kt[ATT_HD_MAX * 8]; /* kt[8 d + c]: dimension d of cell c */
    for (int64_t d0 = 0; d0 < hd; d0 += 4)
        for (int g = 0; g < 2; g++) {
            float32x4_t r[4];
            for (int c = 0; c < 4; c++)
                r[c] = 4 * g + c < nc ? load_f16x4(k + (4 * g + c) * stride + d0) : vdupq_n_f32(0.0f);
            transpose4(r);
            for (int j = 0; j < 4; j++) vst1q_f32(kt + 8 * (d0 + j) + 4 * g, r[j]);
        }
    for (int r = 0; r < nr; r++) {
        const float *qr = q + r * qs;
        float32x4_t lo = vdupq_n_f32(0.0f), hi = vdupq_n_f32(0.0f);
        for (int64_t d = 0; d < hd; d++) {
            lo = vfmaq_n_f32(lo, vld1q_f32(kt + 8 * d), qr[d]);
            hi = vfmaq_n_f32(hi, vld1q_f32(kt + 8 * d + 4), qr[d]);
        }
        float v[8];
        vst1q_f32(v, lo);
        vst1q_f32(v + 4, hi);
        memcpy(s + r * ss, v, (size_t)nc * sizeof(float));
    }
}

/* pv8_f16 (quant.h) for up to 8 cells; the entry below takes a run of them 8 at a time (each row's chain
 * stays in cell order through o). */
static void pv8_cells(int64_t hd, const plm_f16 *v, int64_t stride, int nc, const float *p, int64_t ps, int nr,
                      float *o, int64_t os) {
    if (hd > ATT_HD_MAX || hd % 4) {
        for (int r = 0; r < nr; r++)
            for (int c = 0; c < nc; c++) {
                const float pc = p[r * ps + c];
                if (pc == 0.0f) continue;
                for (int64_t d = 0; d < hd; d++) o[r * os + d] = fmaf(pc, h2f(v[c * stride + d]), o[r * os + d]);
            }
        return;
    }
    float vf[8 * ATT_HD_MAX];
    for (int c = 0; c < nc; c++)
        for (int64_t d = 0; d < hd; d += 4) vst1q_f32(vf + c * hd + d, load_f16x4(v + c * stride + d));
    for (int r = 0; r < nr; r++) {
        int cs[8], m = 0;
        for (int c = 0; c < nc; c++)
            if (p[r * ps + c] != 0.0f) cs[m++] = c;
        if (m == 0) continue;
        float *y = o + r * os;
        for (int64_t d = 0; d < hd; d += 4) {
            float32x4_t acc = vld1q_f32(y + d);
            for (int i = 0; i < m; i++) acc = vfmaq_n_f32(acc, vld1q_f32(vf + cs[i] * hd + d), p[r * ps + cs[i]]);
            vst1q_f32(y + d, acc);
        }
    }
}

static void pv8_f16(int64_t hd, const plm_f16 *v, int64_t stride, int nc, const float *p, int64_t ps, int nr, float *o,
                    int64_t os) {
    for (int c0 = 0; c0 < nc; c0 += 8) pv8_cells(hd, v + c0 * stride, stride, nc - c0 < 8 ? nc - c0 : 8, p + c0, ps, nr, o, os);
}

/* FCVT rounds to nearest even (the FPCR default) and keeps subnormals (Linux
 * leaves flush-to-zero off), as the reference conversion does. */
static void round_f16(float *x, int64_t n, float scale) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vcvt_f32_f16(vcvt_f16_f32(vmulq_n_f32(vld1q_f32(x + i), scale))));
    for (; i < n; i++) x[i] = h2f(plm_f32_to_f16(x[i] * scale));
}

/* ---------------------------------------------- activation quantizers
 * Bit-identical to quant.c: the same fp32 products, rounding to nearest even
 * (FCVTNS; NaN -> 0), the reference's clamps; the fp16 stores go through
 * plm_f32_to_f16 itself. FMAXNM ignores a NaN as fmaxf does. */

static inline float absmax_32(const float *x, float32x4_t v[8]) {
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int k = 0; k < 8; k++) {
        v[k] = vld1q_f32(x + 4 * k);
        m = vmaxnmq_f32(m, vabsq_f32(v[k]));
    }
    return vmaxnmvq_f32(m);
}

/* 32 floats times id, rounded and clamped to [-127, 127], into q; returns their sum. */
static inline int32_t round_32(const float32x4_t v[8], float id, int8_t *q) {
    const int32x4_t lo = vdupq_n_s32(-127), hi = vdupq_n_s32(127);
    int32x4_t sum = vdupq_n_s32(0);
    int16x8_t h[4];
    for (int k = 0; k < 4; k++) {
        const int32x4_t a = vmaxq_s32(vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(v[2 * k], id)), hi), lo);
        const int32x4_t b = vmaxq_s32(vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(v[2 * k + 1], id)), hi), lo);
        sum = vaddq_s32(sum, vaddq_s32(a, b));
        h[k] = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
    }
    vst1q_s8(q, vcombine_s8(vmovn_s16(h[0]), vmovn_s16(h[1])));
    vst1q_s8(q + 16, vcombine_s8(vmovn_s16(h[2]), vmovn_s16(h[3])));
    return vaddvq_s32(sum);
}

static void quant_q8_0(const float *src, void *dst, int64_t n) {
    plm_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / PLM_QK; i++, src += PLM_QK) {
        float32x4_t v[8];
        const float amax = absmax_32(src, v), d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[i].d = plm_f32_to_f16(d);
        round_32(v, id, y[i].qs);
    }
}

static void quant_q8_1(const float *src, void *dst, int64_t n) {
    plm_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / PLM_QK; i++, src += PLM_QK) {
        float32x4_t v[8];
        const float amax = absmax_32(src, v), d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        const int32_t sum = round_32(v, id, y[i].qs);
        y[i].d = plm_f32_to_f16(d);
        y[i].s = plm_f32_to_f16((float)sum * d);
    }
}

/* Q8_K: the scale comes from the first element of largest magnitude (the
 * reference's strict ">" scan); q = nearest even of iscale * x in [-128, 127]. */
static void quant_q8_K(const float *src, void *dst, int64_t n) {
    plm_block_q8_K *y = dst;
    for (int64_t i = 0; i < n / PLM_QK_K; i++, src += PLM_QK_K) {
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int j = 0; j < PLM_QK_K; j += 4) m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(src + j)));
        const float amax = vmaxnmvq_f32(m);
        if (!(amax > 0.0f)) { /* all zero (or NaN, which the reference's scan skips) */
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        int first = 0;
        while (fabsf(src[first]) != amax) first++;
        const float iscale = -127.0f / src[first];
        if (!isfinite(iscale)) {
            memset(&y[i], 0, sizeof y[i]);
            y[i].d = 1.0f / iscale;
            continue;
        }
        const int32x4_t lo = vdupq_n_s32(-128), hi = vdupq_n_s32(127);
        for (int j = 0; j < PLM_QK_K; j += 16) {
            int32x4_t q[4];
            for (int k = 0; k < 4; k++)
                q[k] = vmaxq_s32(vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(src + j + 4 * k), iscale)), hi), lo);
            const int8x16_t b = vcombine_s8(vmovn_s16(vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]))),
                                            vmovn_s16(vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]))));
            vst1q_s8(y[i].qs + j, b);
            y[i].bsums[j / 16] = vaddlvq_s8(b);
        }
        y[i].d = 1.0f / iscale;
    }
}

/* ------------------------------------------------------------- table */

#if PLM_NEON_DOTPROD
#define TABLE_NAME "neon-dotprod"
#define TABLE_FN plm_kernels_neon_dotprod_table
#else
#define TABLE_NAME "neon"
#define TABLE_FN plm_kernels_neon_table
#endif

static plm_kernels g_table;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    g_table = *plm_kernels_ref();
    g_table.name = TABLE_NAME;
    g_table.vec_dot[PLM_TYPE_F32] = dot_f32;
    g_table.vec_dot[PLM_TYPE_F16] = dot_f16;
    g_table.vec_dot[PLM_TYPE_BF16] = dot_bf16;
    g_table.vec_dot[PLM_TYPE_Q4_0] = dot_q4_0;
    g_table.vec_dot[PLM_TYPE_Q4_1] = dot_q4_1;
    g_table.vec_dot[PLM_TYPE_Q5_0] = dot_q5_0;
    g_table.vec_dot[PLM_TYPE_Q8_0] = dot_q8_0;
    g_table.vec_dot[PLM_TYPE_Q4_K] = dot_q4_K;
    g_table.vec_dot[PLM_TYPE_Q5_K] = dot_q5_K;
    g_table.vec_dot[PLM_TYPE_Q6_K] = dot_q6_K;
    g_table.gemm[PLM_TYPE_Q4_0] = gemm_q4_0;
    g_table.gemm[PLM_TYPE_Q4_1] = gemm_q4_1;
    g_table.gemm[PLM_TYPE_Q5_0] = gemm_q5_0;
    g_table.gemm[PLM_TYPE_Q8_0] = gemm_q8_0;
    g_table.gemm[PLM_TYPE_Q4_K] = gemm_q4_K;
    g_table.gemm[PLM_TYPE_Q5_K] = gemm_q5_K;
    g_table.gemm[PLM_TYPE_Q6_K] = gemm_q6_K;
    g_table.quantize[PLM_TYPE_Q8_0] = quant_q8_0;
    g_table.quantize[PLM_TYPE_Q8_1] = quant_q8_1;
    g_table.quantize[PLM_TYPE_Q8_K] = quant_q8_K;
    g_table.round_f16 = round_f16;
    g_table.kq8_f16 = kq8_f16;
    g_table.pv8_f16 = pv8_f16;
}

const plm_kernels *TABLE_FN(void) {
    pthread_once(&g_once, build_table);
    return &g_table;
}
