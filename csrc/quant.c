/*
 * quant.c — tensor element types: their traits, the fp16/bf16 conversions, and
 * the scalar reference kernel table: for every block format pocketlm reads,
 * dequantize a row and dot one weight row with one activation row; quantize a
 * row of activations; the attention helpers (F16 rounding, the kq8/pv8 blocks
 * over cached F16 keys and values). Round-to-nearest weight quantizers for
 * tests and tools come last.
 *
 * Everything here is plain C for any x86-64 (no ISA flags): it is the
 * definition the SIMD kernels in kernels/ are tested against, and the table
 * used when the CPU has nothing better (it has no gemm entries: matmul.c then
 * calls vec_dot entry by entry). The block layouts are GGUF's (see quant.h).
 * The activation quantizers reproduce llama.cpp's bit for bit, because our
 * outputs are compared with llama.cpp's: Q8_0 and Q8_1 as its x86 SIMD path
 * quantizes at run time, Q8_K as ggml's quantize_row_q8_K_ref. Choosing a
 * kernel table for the CPU is kernels/dispatch.c's job.
 */
#include "quant.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ traits */

static const plm_type_traits k_traits[PLM_TYPE_COUNT] = {
    [PLM_TYPE_F32] = {"F32", 1, 4, PLM_TYPE_F32, true},
    [PLM_TYPE_F16] = {"F16", 1, 2, PLM_TYPE_F16, true},
    [PLM_TYPE_BF16] = {"BF16", 1, 2, PLM_TYPE_BF16, true},
    [PLM_TYPE_Q4_0] = {"Q4_0", PLM_QK, sizeof(plm_block_q4_0), PLM_TYPE_Q8_0, true},
    [PLM_TYPE_Q4_1] = {"Q4_1", PLM_QK, sizeof(plm_block_q4_1), PLM_TYPE_Q8_1, true},
    [PLM_TYPE_Q5_0] = {"Q5_0", PLM_QK, sizeof(plm_block_q5_0), PLM_TYPE_Q8_0, true},
    [PLM_TYPE_Q5_1] = {"Q5_1", PLM_QK, sizeof(plm_block_q5_1), PLM_TYPE_Q8_1, true},
    [PLM_TYPE_Q8_0] = {"Q8_0", PLM_QK, sizeof(plm_block_q8_0), PLM_TYPE_Q8_0, true},
    [PLM_TYPE_Q8_1] = {"Q8_1", PLM_QK, sizeof(plm_block_q8_1), PLM_TYPE_Q8_1, false},
    [PLM_TYPE_Q2_K] = {"Q2_K", PLM_QK_K, sizeof(plm_block_q2_K), PLM_TYPE_Q8_K, true},
    [PLM_TYPE_Q3_K] = {"Q3_K", PLM_QK_K, sizeof(plm_block_q3_K), PLM_TYPE_Q8_K, true},
    [PLM_TYPE_Q4_K] = {"Q4_K", PLM_QK_K, sizeof(plm_block_q4_K), PLM_TYPE_Q8_K, true},
    [PLM_TYPE_Q5_K] = {"Q5_K", PLM_QK_K, sizeof(plm_block_q5_K), PLM_TYPE_Q8_K, true},
    [PLM_TYPE_Q6_K] = {"Q6_K", PLM_QK_K, sizeof(plm_block_q6_K), PLM_TYPE_Q8_K, true},
    [PLM_TYPE_Q8_K] = {"Q8_K", PLM_QK_K, sizeof(plm_block_q8_K), PLM_TYPE_Q8_K, false},
};

const plm_type_traits *plm_type_traits_get(uint32_t type) {
    if (type >= PLM_TYPE_COUNT || k_traits[type].name == NULL) return NULL;
    return &k_traits[type];
}

size_t plm_type_row_size(plm_type type, int64_t n) {
    const plm_type_traits *t = plm_type_traits_get((uint32_t)type);
    if (t == NULL || n < 0) return 0;
    return (size_t)(n / t->block_size) * t->type_size;
}

/* --------------------------------------------------------- fp16 and bf16 */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float f16_to_f32(plm_f16 h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24 is exact in fp32 */
        return bits_f32(sign | f32_bits((float)mant * 0x1p-24f));
    }
    if (exp == 31) {
        /* inf, or NaN made quiet (as F16C's vcvtph2ps does) */
        return bits_f32(sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0));
    }
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

static inline plm_f16 f32_to_f16(float f) {
    const uint32_t u = f32_bits(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) {
        /* NaN: keep the top payload bits and make it quiet, as vcvtps2ph does */
        return (plm_f16)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    }
    if (a >= 0x477ff000u) {
        /* >= 65520 rounds (ties to even) past the largest half, 65504 */
        return (plm_f16)(sign | 0x7c00u);
    }
    if (a < 0x38800000u) {
        /* below 2^-14: a half subnormal. Adding 0.5 puts the value where the
         * fp32 ulp is 2^-24, so the fp32 add itself rounds to nearest even. */
        const float r = bits_f32(a) + 0.5f;
        return (plm_f16)(sign | (uint16_t)(f32_bits(r) - 0x3f000000u));
    }
    /* normal: rebias the exponent (127 -> 15) and round the 13 dropped bits to
     * nearest even; a carry out of the mantissa correctly bumps the exponent */
    a += ((uint32_t)(15 - 127) << 23) + 0xfffu + ((a >> 13) & 1u);
    return (plm_f16)(sign | (uint16_t)(a >> 13));
}

static inline float bf16_to_f32(plm_bf16 h) { return bits_f32((uint32_t)h << 16); }

static inline plm_bf16 f32_to_bf16(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (plm_bf16)((u >> 16) | 0x40u); /* quiet NaN */
    return (plm_bf16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float plm_f16_to_f32(plm_f16 h) { return f16_to_f32(h); }
plm_f16 plm_f32_to_f16(float f) { return f32_to_f16(f); }
float plm_bf16_to_f32(plm_bf16 h) { return bf16_to_f32(h); }
plm_bf16 plm_f32_to_bf16(float f) { return f32_to_bf16(f); }

/* ---------------------------------------------------------- small helpers */

/* ggml's nearest_int: adding 1.5*2^23 makes the fp32 add round to an integer
 * (ties to even); valid for |v| < 2^22, which every caller guarantees for
 * finite input. Defined behaviour (garbage, no trap) for NaN and inf. */
static inline int nearest_int(float v) {
    const float t = v + 12582912.0f;
    return (int)(f32_bits(t) & 0x007fffffu) - 0x00400000;
}

/* Truncation toward zero clamped to [0, hi] (NaN -> 0), for the weight
 * quantizers' "(int)(x + 0.5)" rounding. */
static inline int trunc_clamp(float v, int hi) {
    if (!(v >= 0.0f)) return 0;
    if (v >= (float)hi) return hi;
    return (int)v;
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static inline uint32_t load_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Q4_K / Q5_K: eight 6-bit scales and eight 6-bit mins packed in 12 bytes.
 * Sub-blocks 0..3 keep their low 6 bits in bytes 0..3 (scale) and 4..7 (min);
 * sub-blocks 4..7 keep their low 4 bits in the nibbles of bytes 8..11 and
 * their top 2 bits in the top 2 bits of bytes 0..3 (scale) and 4..7 (min). */
static inline void k4_scale_min(const uint8_t *q, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void k4_pack_scale_min(uint8_t *q, int j, int sc, int m) {
    if (j < 4) {
        q[j] = (uint8_t)((q[j] & 0xc0) | sc);
        q[j + 4] = (uint8_t)((q[j + 4] & 0xc0) | m);
    } else {
        q[j + 4] = (uint8_t)((sc & 0xf) | ((m & 0xf) << 4));
        q[j - 4] = (uint8_t)(q[j - 4] | ((sc >> 4) << 6));
        q[j] = (uint8_t)(q[j] | ((m >> 4) << 6));
    }
}

/* Q3_K: sixteen 6-bit scales (stored +32) in 12 bytes: low 4 bits in the
 * nibbles of bytes 0..7 (scale j < 8 in the low nibble of byte j, j >= 8 in the
 * high nibble of byte j-8), top 2 bits in bytes 8..11 (scale j at byte 8 + j%4,
 * bit 2*(j/4)). Returns the signed scale. */
static inline int q3k_scale(const uint8_t *s, int j) {
    const int lo = j < 8 ? (s[j] & 0xf) : (s[j - 8] >> 4);
    const int hi = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* -------------------------------------------------------------- dequantize */

static void dequant_f32(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }

static void dequant_f16(const void *src, float *dst, int64_t n) {
    const plm_f16 *x = src;
    for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(x[i]);
}

static void dequant_bf16(const void *src, float *dst, int64_t n) {
    const plm_bf16 *x = src;
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(x[i]);
}

/* 32-element blocks: byte j holds element j (low nibble) and j+16 (high). */
static void dequant_q4_0(const void *src, float *dst, int64_t n) {
    const plm_block_q4_0 *x = src;
    for (int64_t i = 0; i < n / PLM_QK; i++, dst += PLM_QK) {
        const float d = f16_to_f32(x[i].d);
        for (int j = 0; j < PLM_QK / 2; j++) {
            dst[j] = (float)((x[i].qs[j] & 0xf) - 8) * d;
            dst[j + 16] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void dequant_q4_1(const void *src, float *dst, int64_t n) {
    const plm_block_q4_1 *x = src;
    for (int64_t i = 0; i < n / PLM_QK; i++, dst += PLM_QK) {
        const float d = f16_to_f32(x[i].d), m = f16_to_f32(x[i].m);
        for (int j = 0; j < PLM_QK / 2; j++) {
            dst[j] = (float)(x[i].qs[j] & 0xf) * d + m;
            dst[j + 16] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* Q5: the fifth bit of element j is bit j of the little-endian 32-bit qh. */
static void dequant_q5_0(const void *src, float *dst, int64_t n) {
    const plm_block_q5_0 *x = src;
    for (int64_t i = 0; i < n / PLM_QK; i++, dst += PLM_QK) {
        const float d = f16_to_f32(x[i].d);
        const uint32_t qh = load_u32le(x[i].qh);
        for (int j = 0; j < PLM_QK / 2; j++) {
            const int v0 = (x[i].qs[j] & 0xf) | (int)(((qh >> j) & 1u) << 4);
            const int v1 = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            dst[j] = (float)(v0 - 16) * d;
            dst[j + 16] = (float)(v1 - 16) * d;
        }
    }
}

static void dequant_q5_1(const void *src, float *dst, int64_t n) {
    const plm_block_q5_1 *x = src;
    for (int64_t i = 0; i < n / PLM_QK; i++, dst += PLM_QK) {
        const float d = f16_to_f32(x[i].d), m = f16_to_f32(x[i].m);
        const uint32_t qh = load_u32le(x[i].qh);
        for (int j = 0; j < PLM_QK / 2; j++) {
            const int v0 = (x[i].qs[j] & 0xf) | (int)(((qh >> j) & 1u) << 4);
            const int v1 = (x[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            dst[j] = (float)v0 * d + m;
            dst[j + 16] = (float)v1 * d + m;
        }
    }
}

static void dequant_q8_0(const void *src, float *dst, int64_t n) {
    const plm_block_q8_0 *x = src;
    for (int64_t i = 0; i < n / PLM_QK; i++, dst += PLM_QK) {
        const float d = f16_to_f32(x[i].d);
        for (int j = 0; j < PLM_QK; j++) dst[j] = (float)x[i].qs[j] * d;
    }
}

static void dequant_q8_1(const void *src, float *dst, int64_t n) {
    const plm_block_q8_1 *x = src;
    for (int64_t i = 0; i < n / PLM_QK; i++, dst += PLM_QK) {
        const float d = f16_to_f32(x[i].d);
        for (int j = 0; j < PLM_QK; j++) dst[j] = (float)x[i].qs[j] * d;
    }
}

/* Q2_K and Q3_K share one element order: element 128c + 32j + 16h + l
 * (c < 2, j < 4, h < 2, l < 16) is bits 2j..2j+1 of qs[32c + 16h + l] and uses
 * scale 8c + 2j + h. */
static void dequant_q2_K(const void *src, float *dst, int64_t n) {
    const plm_block_q2_K *x = src;
    for (int64_t i = 0; i < n / PLM_QK_K; i++) {
        const float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
        for (int c = 0; c < 2; c++) {
            const uint8_t *q = x[i].qs + 32 * c;
            for (int j = 0; j < 4; j++) {
                for (int h = 0; h < 2; h++) {
                    const uint8_t sc = x[i].scales[8 * c + 2 * j + h];
                    const float dl = d * (float)(sc & 0xf), ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) *dst++ = dl * (float)((q[16 * h + l] >> (2 * j)) & 3) - ml;
                }
            }
        }
    }
}

/* Q3_K: the third bit of element 128c + 32j + 16h + l is bit 4c + j of
 * hmask[16h + l]; a clear bit means the value is 4 lower (range -4..3). */
static void dequant_q3_K(const void *src, float *dst, int64_t n) {
    const plm_block_q3_K *x = src;
    for (int64_t i = 0; i < n / PLM_QK_K; i++) {
        const float d = f16_to_f32(x[i].d);
        for (int c = 0; c < 2; c++) {
            const uint8_t *q = x[i].qs + 32 * c;
            for (int j = 0; j < 4; j++) {
                const uint8_t hbit = (uint8_t)(1u << (4 * c + j));
                for (int h = 0; h < 2; h++) {
                    const float dl = d * (float)q3k_scale(x[i].scales, 8 * c + 2 * j + h);
                    for (int l = 0; l < 16; l++) {
                        const int v = ((q[16 * h + l] >> (2 * j)) & 3) - ((x[i].hmask[16 * h + l] & hbit) ? 0 : 4);
                        *dst++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

/* Q4_K: element 64j + l is the low nibble of qs[32j + l] (sub-block 2j),
 * element 64j + 32 + l the high nibble (sub-block 2j+1); value d*sc*q - dmin*m. */
static void dequant_q4_K(const void *src, float *dst, int64_t n) {
    const plm_block_q4_K *x = src;
    for (int64_t i = 0; i < n / PLM_QK_K; i++) {
        const float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
        for (int j = 0; j < 4; j++) {
            int sc0, m0, sc1, m1;
            k4_scale_min(x[i].scales, 2 * j, &sc0, &m0);
            k4_scale_min(x[i].scales, 2 * j + 1, &sc1, &m1);
            const float d0 = d * (float)sc0, mm0 = dmin * (float)m0;
            const float d1 = d * (float)sc1, mm1 = dmin * (float)m1;
            const uint8_t *q = x[i].qs + 32 * j;
            for (int l = 0; l < 32; l++) *dst++ = d0 * (float)(q[l] & 0xf) - mm0;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (float)(q[l] >> 4) - mm1;
        }
    }
}

/* Q5_K: as Q4_K, plus a fifth bit: bit 2j (low nibbles) or 2j+1 (high
 * nibbles) of qh[l]. */
static void dequant_q5_K(const void *src, float *dst, int64_t n) {
    const plm_block_q5_K *x = src;
    for (int64_t i = 0; i < n / PLM_QK_K; i++) {
        const float d = f16_to_f32(x[i].d), dmin = f16_to_f32(x[i].dmin);
        for (int j = 0; j < 4; j++) {
            int sc0, m0, sc1, m1;
            k4_scale_min(x[i].scales, 2 * j, &sc0, &m0);
            k4_scale_min(x[i].scales, 2 * j + 1, &sc1, &m1);
            const float d0 = d * (float)sc0, mm0 = dmin * (float)m0;
            const float d1 = d * (float)sc1, mm1 = dmin * (float)m1;
            const uint8_t *q = x[i].qs + 32 * j;
            for (int l = 0; l < 32; l++) {
                const int v = (q[l] & 0xf) | (((x[i].qh[l] >> (2 * j)) & 1) << 4);
                *dst++ = d0 * (float)v - mm0;
            }
            for (int l = 0; l < 32; l++) {
                const int v = (q[l] >> 4) | (((x[i].qh[l] >> (2 * j + 1)) & 1) << 4);
                *dst++ = d1 * (float)v - mm1;
            }
        }
    }
}

/* Q6_K: element 128c + 32k + l (k < 4, l < 32): low 4 bits are the low
 * (k = 0, 1) or high (k = 2, 3) nibble of ql[64c + 32(k & 1) + l], top 2 bits
 * are bits 2k..2k+1 of qh[32c + l]; value (q - 32) * d * scales[8c + 2k + l/16]. */
static inline int q6k_value(const plm_block_q6_K *x, int c, int k, int l) {
    const uint8_t qlb = x->ql[64 * c + 32 * (k & 1) + l];
    const int lo = k < 2 ? (qlb & 0xf) : (qlb >> 4);
    const int hi = (x->qh[32 * c + l] >> (2 * k)) & 3;
    return (lo | (hi << 4)) - 32;
}

static void dequant_q6_K(const void *src, float *dst, int64_t n) {
    const plm_block_q6_K *x = src;
    for (int64_t i = 0; i < n / PLM_QK_K; i++) {
        const float d = f16_to_f32(x[i].d);
        for (int c = 0; c < 2; c++)
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 32; l++)
                    *dst++ = d * (float)x[i].scales[8 * c + 2 * k + l / 16] * (float)q6k_value(&x[i], c, k, l);
    }
}

static void dequant_q8_K(const void *src, float *dst, int64_t n) {
    const plm_block_q8_K *x = src;
    for (int64_t i = 0; i < n / PLM_QK_K; i++, dst += PLM_QK_K)
        for (int j = 0; j < PLM_QK_K; j++) dst[j] = x[i].d * (float)x[i].qs[j];
}

typedef void (*dequant_fn)(const void *src, float *dst, int64_t n);

static const dequant_fn k_dequant[PLM_TYPE_COUNT] = {
    [PLM_TYPE_F32] = dequant_f32,   [PLM_TYPE_F16] = dequant_f16,   [PLM_TYPE_BF16] = dequant_bf16,
    [PLM_TYPE_Q4_0] = dequant_q4_0, [PLM_TYPE_Q4_1] = dequant_q4_1, [PLM_TYPE_Q5_0] = dequant_q5_0,
    [PLM_TYPE_Q5_1] = dequant_q5_1, [PLM_TYPE_Q8_0] = dequant_q8_0, [PLM_TYPE_Q8_1] = dequant_q8_1,
    [PLM_TYPE_Q2_K] = dequant_q2_K, [PLM_TYPE_Q3_K] = dequant_q3_K, [PLM_TYPE_Q4_K] = dequant_q4_K,
    [PLM_TYPE_Q5_K] = dequant_q5_K, [PLM_TYPE_Q6_K] = dequant_q6_K, [PLM_TYPE_Q8_K] = dequant_q8_K,
};

void plm_dequantize_row_ref(plm_type type, const void *src, float *dst, int64_t n) {
    if ((unsigned)type < PLM_TYPE_COUNT && k_dequant[type] != NULL && n > 0) k_dequant[type](src, dst, n);
}

/* ---------------------------------------------- activation quantizers */

static void quant_f32(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }

static void quant_f16(const float *src, void *dst, int64_t n) {
    plm_f16 *y = dst;
    for (int64_t i = 0; i < n; i++) y[i] = f32_to_f16(src[i]);
}

static void quant_bf16(const float *src, void *dst, int64_t n) {
    plm_bf16 *y = dst;
    for (int64_t i = 0; i < n; i++) y[i] = f32_to_bf16(src[i]);
}

/* Q8_0 as llama.cpp quantizes activations at run time on x86 (its AVX path,
 * not ggml's _ref): d = amax/127 stored as fp16, q = round-half-even(x *
 * (127/amax)). Matching it bit for bit keeps our logits next to llama.cpp's. */
static void quant_q8_0(const float *src, void *dst, int64_t n) {
    plm_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / PLM_QK; i++, src += PLM_QK) {
        float amax = 0.0f;
        for (int j = 0; j < PLM_QK; j++) amax = fmaxf(amax, fabsf(src[j]));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[i].d = f32_to_f16(d);
        for (int j = 0; j < PLM_QK; j++) y[i].qs[j] = plm_round_even_i8(src[j] * id);
    }
}

/* Q8_1: as Q8_0, plus s = fp16(sum(q) * d) with the fp32 d (before its
 * rounding to fp16). */
static void quant_q8_1(const float *src, void *dst, int64_t n) {
    plm_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / PLM_QK; i++, src += PLM_QK) {
        float amax = 0.0f;
        for (int j = 0; j < PLM_QK; j++) amax = fmaxf(amax, fabsf(src[j]));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < PLM_QK; j++) {
            y[i].qs[j] = plm_round_even_i8(src[j] * id);
            sum += y[i].qs[j];
        }
        y[i].d = f32_to_f16(d);
        y[i].s = f32_to_f16((float)sum * d);
    }
}

/* ggml's quantize_row_q8_K_ref: the scale comes from the signed value of
 * largest magnitude (the first one, if several), iscale = -127/max, q =
 * nearest_int(iscale*x) (ties to even) capped at 127, d = 1/iscale (fp32), and
 * bsums[k] = sum of q[16k .. 16k+15]. An all-zero block stores d = 0. For
 * finite input |iscale * x| <= 127 (+ rounding), so the clamp only guards
 * against non-finite input. */
static void quant_q8_K(const float *src, void *dst, int64_t n) {
    plm_block_q8_K *y = dst;
    for (int64_t i = 0; i < n / PLM_QK_K; i++, src += PLM_QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < PLM_QK_K; j++) {
            const float ax = fabsf(src[j]);
            if (ax > amax) {
                amax = ax;
                max = src[j];
            }
        }
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.0f / max;
        if (!isfinite(iscale)) {
            /* |max| < 127/FLT_MAX: every product is +-inf or NaN, which ggml's
             * nearest_int turns into 0 (and d into +-0) */
            memset(&y[i], 0, sizeof y[i]);
            y[i].d = 1.0f / iscale;
            continue;
        }
        for (int j = 0; j < PLM_QK_K; j++) {
            const int v = nearest_int(iscale * src[j]);
            y[i].qs[j] = (int8_t)clampi(v, -128, 127);
        }
        for (int k = 0; k < PLM_QK_K / 16; k++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[16 * k + l];
            y[i].bsums[k] = (int16_t)sum;
        }
        y[i].d = 1.0f / iscale;
    }
}

/* ---------------------------------------------------- weight quantizers
 * Round-to-nearest, no error search: for tests and tools, not for making
 * model files. Q4_0..Q5_1 follow ggml's reference formulas. */

/* The signed value of largest magnitude (first one wins). */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, int n, float *mn, float *mx) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < n; j++) {
        lo = x[j] < lo ? x[j] : lo;
        hi = x[j] > hi ? x[j] : hi;
    }
    *mn = lo;
    *mx = hi;
}

static void quant_q4_0(const float *src, void *dst, int64_t n) {
    plm_block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / PLM_QK; i++, src += PLM_QK) {
        const float d = signed_absmax(src, PLM_QK) / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f32_to_f16(d);
        for (int j = 0; j < 16; j++) {
            const int q0 = trunc_clamp(src[j] * id + 8.5f, 15);
            const int q1 = trunc_clamp(src[j + 16] * id + 8.5f, 15);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void quant_q4_1(const float *src, void *dst, int64_t n) {
    plm_block_q4_1 *y = dst;
    for (int64_t i = 0; i < n / PLM_QK; i++, src += PLM_QK) {
        float mn, mx;
        min_max(src, PLM_QK, &mn, &mx);
        const float d = (mx - mn) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f32_to_f16(d);
        y[i].m = f32_to_f16(mn);
        for (int j = 0; j < 16; j++) {
            const int q0 = trunc_clamp((src[j] - mn) * id + 0.5f, 15);
            const int q1 = trunc_clamp((src[j + 16] - mn) * id + 0.5f, 15);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void pack_q5(const int *q, uint8_t *qs, uint8_t *qh) {
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0xf) | ((q[j + 16] & 0xf) << 4));
        h |= (uint32_t)(q[j] >> 4) << j;
        h |= (uint32_t)(q[j + 16] >> 4) << (j + 16);
    }
    for (int b = 0; b < 4; b++) qh[b] = (uint8_t)(h >> (8 * b));
}

static void quant_q5_0(const float *src, void *dst, int64_t n) {
    plm_block_q5_0 *y = dst;
    for (int64_t i = 0; i < n / PLM_QK; i++, src += PLM_QK) {
        const float d = signed_absmax(src, PLM_QK) / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int q[PLM_QK];
        for (int j = 0; j < PLM_QK; j++) q[j] = trunc_clamp(src[j] * id + 16.5f, 31);
        y[i].d = f32_to_f16(d);
        pack_q5(q, y[i].qs, y[i].qh);
    }
}

static void quant_q5_1(const float *src, void *dst, int64_t n) {
    plm_block_q5_1 *y = dst;
    for (int64_t i = 0; i < n / PLM_QK; i++, src += PLM_QK) {
        float mn, mx;
        min_max(src, PLM_QK, &mn, &mx);
        const float d = (mx - mn) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int q[PLM_QK];
        for (int j = 0; j < PLM_QK; j++) q[j] = trunc_clamp((src[j] - mn) * id + 0.5f, 31);
        y[i].d = f32_to_f16(d);
        y[i].m = f32_to_f16(mn);
        pack_q5(q, y[i].qs, y[i].qh);
    }
}

/* Q4_K: per 32-element sub-block, range [min(x, 0), max(x)] over 15 steps;
 * the eight scales and mins are then quantized to 6 bits against the largest
 * of each, and the elements requantized against the stored (rounded) values. */
static void quant_q4_K(const float *src, void *dst, int64_t n) {
    plm_block_q4_K *y = dst;
    for (int64_t i = 0; i < n / PLM_QK_K; i++, src += PLM_QK_K) {
        float scale[8], mins[8], max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 8; j++) {
            float mn, mx;
            min_max(src + 32 * j, 32, &mn, &mx);
            if (mn > 0.0f) mn = 0.0f;
            scale[j] = (mx - mn) / 15.0f;
            mins[j] = -mn;
            max_scale = scale[j] > max_scale ? scale[j] : max_scale;
            max_min = mins[j] > max_min ? mins[j] : max_min;
        }
        const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
        const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
        memset(y[i].scales, 0, sizeof y[i].scales);
        for (int j = 0; j < 8; j++) {
            const int ls = clampi(nearest_int(inv_scale * scale[j]), 0, 63);
            const int lm = clampi(nearest_int(inv_min * mins[j]), 0, 63);
            k4_pack_scale_min(y[i].scales, j, ls, lm);
        }
        y[i].d = f32_to_f16(max_scale / 63.0f);
        y[i].dmin = f32_to_f16(max_min / 63.0f);
        const float d = f16_to_f32(y[i].d), dmin = f16_to_f32(y[i].dmin);
        uint8_t L[PLM_QK_K];
        for (int j = 0; j < 8; j++) {
            int sc, m;
            k4_scale_min(y[i].scales, j, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            for (int l = 0; l < 32; l++) {
                const int q = dl != 0.0f ? nearest_int((src[32 * j + l] + ml) / dl) : 0;
                L[32 * j + l] = (uint8_t)clampi(q, 0, 15);
            }
        }
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * j + l] = (uint8_t)(L[64 * j + l] | (L[64 * j + 32 + l] << 4));
    }
}

/* Q6_K: per 16-element group the signed value of largest magnitude maps to
 * -32; the sixteen group scales are quantized to int8 against the largest
 * (which maps to -128), then the elements requantized against them. */
static void quant_q6_K(const float *src, void *dst, int64_t n) {
    plm_block_q6_K *y = dst;
    for (int64_t i = 0; i < n / PLM_QK_K; i++, src += PLM_QK_K) {
        float scale[16];
        for (int k = 0; k < 16; k++) scale[k] = signed_absmax(src + 16 * k, 16) / -32.0f;
        const float max_scale = signed_absmax(scale, 16);
        memset(&y[i], 0, sizeof y[i]);
        if (max_scale == 0.0f) continue;
        const float iscale = -128.0f / max_scale;
        y[i].d = f32_to_f16(1.0f / iscale);
        for (int k = 0; k < 16; k++) y[i].scales[k] = (int8_t)clampi(nearest_int(iscale * scale[k]), -128, 127);
        const float d = f16_to_f32(y[i].d);
        uint8_t L[PLM_QK_K];
        for (int k = 0; k < 16; k++) {
            const float dl = d * (float)y[i].scales[k];
            for (int l = 0; l < 16; l++) {
                const int q = dl != 0.0f ? nearest_int(src[16 * k + l] / dl) : 0;
                L[16 * k + l] = (uint8_t)(clampi(q, -32, 31) + 32);
            }
        }
        for (int c = 0; c < 2; c++) {
            const uint8_t *Lc = L + 128 * c;
            for (int l = 0; l < 32; l++) {
                y[i].ql[64 * c + l] = (uint8_t)((Lc[l] & 0xf) | ((Lc[l + 64] & 0xf) << 4));
                y[i].ql[64 * c + 32 + l] = (uint8_t)((Lc[l + 32] & 0xf) | ((Lc[l + 96] & 0xf) << 4));
                y[i].qh[32 * c + l] = (uint8_t)((Lc[l] >> 4) | ((Lc[l + 32] >> 4) << 2) | ((Lc[l + 64] >> 4) << 4) |
                                                ((Lc[l + 96] >> 4) << 6));
            }
        }
    }
}

static const plm_quantize_fn k_quant[PLM_TYPE_COUNT] = {
    [PLM_TYPE_F32] = quant_f32,   [PLM_TYPE_F16] = quant_f16,   [PLM_TYPE_BF16] = quant_bf16,
    [PLM_TYPE_Q8_0] = quant_q8_0, [PLM_TYPE_Q8_1] = quant_q8_1, [PLM_TYPE_Q8_K] = quant_q8_K,
    [PLM_TYPE_Q4_0] = quant_q4_0, [PLM_TYPE_Q4_1] = quant_q4_1, [PLM_TYPE_Q5_0] = quant_q5_0,
    [PLM_TYPE_Q5_1] = quant_q5_1, [PLM_TYPE_Q4_K] = quant_q4_K, [PLM_TYPE_Q6_K] = quant_q6_K,
};

bool plm_type_can_quantize(plm_type type) { return (unsigned)type < PLM_TYPE_COUNT && k_quant[type] != NULL; }

void plm_quantize_row_ref(plm_type type, const float *src, void *dst, int64_t n) {
    if (plm_type_can_quantize(type) && n > 0) k_quant[type](src, dst, n);
}

/* ----------------------------------------------------- reference dots
 * Integer sums within a block, fp32 accumulation across blocks (as ggml's
 * scalar kernels); the float formats accumulate in double. */

static float dot_f32(int64_t n, const void *vw, const void *va) {
    const float *w = vw, *a = va;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)w[i] * (double)a[i];
    return (float)sum;
}

static float dot_f16(int64_t n, const void *vw, const void *va) {
    const plm_f16 *w = vw, *a = va;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)f16_to_f32(w[i]) * (double)f16_to_f32(a[i]);
    return (float)sum;
}

static float dot_bf16(int64_t n, const void *vw, const void *va) {
    const plm_bf16 *w = vw, *a = va;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)bf16_to_f32(w[i]) * (double)bf16_to_f32(a[i]);
    return (float)sum;
}

static float dot_q4_0(int64_t n, const void *vw, const void *va) {
    const plm_block_q4_0 *w = vw;
    const plm_block_q8_0 *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / PLM_QK; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            isum += ((w[i].qs[j] & 0xf) - 8) * a[i].qs[j];
            isum += ((w[i].qs[j] >> 4) - 8) * a[i].qs[j + 16];
        }
        sum += (float)isum * (f16_to_f32(w[i].d) * f16_to_f32(a[i].d));
    }
    return sum;
}

/* sum((d q + m) * a) = d da sum(q qa) + m s, with s = da * sum(qa) from Q8_1. */
static float dot_q4_1(int64_t n, const void *vw, const void *va) {
    const plm_block_q4_1 *w = vw;
    const plm_block_q8_1 *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / PLM_QK; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            isum += (w[i].qs[j] & 0xf) * a[i].qs[j];
            isum += (w[i].qs[j] >> 4) * a[i].qs[j + 16];
        }
        sum += (float)isum * (f16_to_f32(w[i].d) * f16_to_f32(a[i].d)) + f16_to_f32(w[i].m) * f16_to_f32(a[i].s);
    }
    return sum;
}

static float dot_q5_0(int64_t n, const void *vw, const void *va) {
    const plm_block_q5_0 *w = vw;
    const plm_block_q8_0 *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / PLM_QK; i++) {
        const uint32_t qh = load_u32le(w[i].qh);
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            const int v0 = ((w[i].qs[j] & 0xf) | (int)(((qh >> j) & 1u) << 4)) - 16;
            const int v1 = ((w[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4)) - 16;
            isum += v0 * a[i].qs[j] + v1 * a[i].qs[j + 16];
        }
        sum += (float)isum * (f16_to_f32(w[i].d) * f16_to_f32(a[i].d));
    }
    return sum;
}

static float dot_q5_1(int64_t n, const void *vw, const void *va) {
    const plm_block_q5_1 *w = vw;
    const plm_block_q8_1 *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / PLM_QK; i++) {
        const uint32_t qh = load_u32le(w[i].qh);
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            const int v0 = (w[i].qs[j] & 0xf) | (int)(((qh >> j) & 1u) << 4);
            const int v1 = (w[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            isum += v0 * a[i].qs[j] + v1 * a[i].qs[j + 16];
        }
        sum += (float)isum * (f16_to_f32(w[i].d) * f16_to_f32(a[i].d)) + f16_to_f32(w[i].m) * f16_to_f32(a[i].s);
    }
    return sum;
}

static float dot_q8_0(int64_t n, const void *vw, const void *va) {
    const plm_block_q8_0 *w = vw;
    const plm_block_q8_0 *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / PLM_QK; i++) {
        int isum = 0;
        for (int j = 0; j < PLM_QK; j++) isum += w[i].qs[j] * a[i].qs[j];
        sum += (float)isum * (f16_to_f32(w[i].d) * f16_to_f32(a[i].d));
    }
    return sum;
}

/* K-quants with a min: sum((d sc q - dmin m) a) uses the Q8_K bsums for the
 * min term, as every ggml kernel does. */
static float dot_q2_K(int64_t n, const void *vw, const void *va) {
    const plm_block_q2_K *w = vw;
    const plm_block_q8_K *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / PLM_QK_K; i++) {
        int isum = 0, msum = 0;
        for (int k = 0; k < 16; k++) msum += (w[i].scales[k] >> 4) * a[i].bsums[k];
        for (int c = 0; c < 2; c++)
            for (int j = 0; j < 4; j++)
                for (int h = 0; h < 2; h++) {
                    const int8_t *qa = a[i].qs + 128 * c + 32 * j + 16 * h;
                    const uint8_t *q = w[i].qs + 32 * c + 16 * h;
                    int s = 0;
                    for (int l = 0; l < 16; l++) s += ((q[l] >> (2 * j)) & 3) * qa[l];
                    isum += (w[i].scales[8 * c + 2 * j + h] & 0xf) * s;
                }
        sum += a[i].d * f16_to_f32(w[i].d) * (float)isum - a[i].d * f16_to_f32(w[i].dmin) * (float)msum;
    }
    return sum;
}

static float dot_q3_K(int64_t n, const void *vw, const void *va) {
    const plm_block_q3_K *w = vw;
    const plm_block_q8_K *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / PLM_QK_K; i++) {
        int isum = 0;
        for (int c = 0; c < 2; c++)
            for (int j = 0; j < 4; j++) {
                const uint8_t hbit = (uint8_t)(1u << (4 * c + j));
                for (int h = 0; h < 2; h++) {
                    const int8_t *qa = a[i].qs + 128 * c + 32 * j + 16 * h;
                    const uint8_t *q = w[i].qs + 32 * c + 16 * h;
                    const uint8_t *hm = w[i].hmask + 16 * h;
                    int s = 0;
                    for (int l = 0; l < 16; l++) s += (((q[l] >> (2 * j)) & 3) - ((hm[l] & hbit) ? 0 : 4)) * qa[l];
                    isum += q3k_scale(w[i].scales, 8 * c + 2 * j + h) * s;
                }
            }
        sum += a[i].d * f16_to_f32(w[i].d) * (float)isum;
    }
    return sum;
}

static float dot_q4_K(int64_t n, const void *vw, const void *va) {
    const plm_block_q4_K *w = vw;
    const plm_block_q8_K *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / PLM_QK_K; i++) {
        int isum = 0, msum = 0;
        for (int j = 0; j < 4; j++) {
            int sc0, m0, sc1, m1;
            k4_scale_min(w[i].scales, 2 * j, &sc0, &m0);
            k4_scale_min(w[i].scales, 2 * j + 1, &sc1, &m1);
            const uint8_t *q = w[i].qs + 32 * j;
            const int8_t *qa = a[i].qs + 64 * j;
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) {
                s0 += (q[l] & 0xf) * qa[l];
                s1 += (q[l] >> 4) * qa[l + 32];
            }
            isum += sc0 * s0 + sc1 * s1;
            msum += m0 * (a[i].bsums[4 * j] + a[i].bsums[4 * j + 1]) + m1 * (a[i].bsums[4 * j + 2] + a[i].bsums[4 * j + 3]);
        }
        sum += a[i].d * f16_to_f32(w[i].d) * (float)isum - a[i].d * f16_to_f32(w[i].dmin) * (float)msum;
    }
    return sum;
}

static float dot_q5_K(int64_t n, const void *vw, const void *va) {
    const plm_block_q5_K *w = vw;
    const plm_block_q8_K *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / PLM_QK_K; i++) {
        int isum = 0, msum = 0;
        for (int j = 0; j < 4; j++) {
            int sc0, m0, sc1, m1;
            k4_scale_min(w[i].scales, 2 * j, &sc0, &m0);
            k4_scale_min(w[i].scales, 2 * j + 1, &sc1, &m1);
            const uint8_t *q = w[i].qs + 32 * j;
            const int8_t *qa = a[i].qs + 64 * j;
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) {
                s0 += ((q[l] & 0xf) | (((w[i].qh[l] >> (2 * j)) & 1) << 4)) * qa[l];
                s1 += ((q[l] >> 4) | (((w[i].qh[l] >> (2 * j + 1)) & 1) << 4)) * qa[l + 32];
            }
            isum += sc0 * s0 + sc1 * s1;
            msum += m0 * (a[i].bsums[4 * j] + a[i].bsums[4 * j + 1]) + m1 * (a[i].bsums[4 * j + 2] + a[i].bsums[4 * j + 3]);
        }
        sum += a[i].d * f16_to_f32(w[i].d) * (float)isum - a[i].d * f16_to_f32(w[i].dmin) * (float)msum;
    }
    return sum;
}

static float dot_q6_K(int64_t n, const void *vw, const void *va) {
    const plm_block_q6_K *w = vw;
    const plm_block_q8_K *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / PLM_QK_K; i++) {
        int isum = 0;
        for (int c = 0; c < 2; c++)
            for (int k = 0; k < 4; k++)
                for (int h = 0; h < 2; h++) {
                    const int8_t *qa = a[i].qs + 128 * c + 32 * k + 16 * h;
                    int s = 0;
                    for (int l = 0; l < 16; l++) s += q6k_value(&w[i], c, k, 16 * h + l) * qa[l];
                    isum += w[i].scales[8 * c + 2 * k + h] * s;
                }
        sum += a[i].d * f16_to_f32(w[i].d) * (float)isum;
    }
    return sum;
}

/* quant.h's argmax_f32: the largest value by lanes of 16 (loops over fixed-size arrays, which the compiler
 * vectorizes where it can), then the first index that holds it. */
static int64_t argmax_f32(const float *w, int64_t n) {
    enum { LANES = 16 };
    float m[LANES];
    int bad[LANES];
    for (int j = 0; j < LANES; j++) m[j] = -INFINITY, bad[j] = 0;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            const float v = w[i + j];
            bad[j] |= v != v;
            m[j] = v > m[j] ? v : m[j];
        }
    float mx = -INFINITY;
    int any_bad = 0;
    for (int j = 0; j < LANES; j++) mx = m[j] > mx ? m[j] : mx, any_bad |= bad[j];
    for (; i < n; i++) mx = w[i] > mx ? w[i] : mx, any_bad |= w[i] != w[i];
    for (i = 0; i < n; i++)
        if (any_bad ? w[i] != w[i] : w[i] == mx) break;
    return any_bad ? -1 - i : i;
}

/* quant.h's rmsnorm, element by element. */
static void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    double c[8] = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) c[k] += (double)(x[j + k] * x[j + k]);
    const float scale = plm_rmsnorm_scale(c, x, j, n, eps);
    for (int64_t i = 0; i < n; i++) out[i] = (x[i] * scale) * w[i];
}

static void round_f16(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = f16_to_f32(f32_to_f16(x[i] * scale));
}

static void kq8_f16(int64_t hd, const plm_f16 *k, int64_t stride, int nc, const float *q, int64_t qs, int nr, float *s,
                    int64_t ss) {
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++) {
            float sum = 0.0f;
            for (int64_t d = 0; d < hd; d++) sum = fmaf(q[r * qs + d], f16_to_f32(k[c * stride + d]), sum);
            s[r * ss + c] = sum;
        }
}

static void kqt_f16(int64_t hd, const plm_f16 *kt, int64_t kbs, int nc, const float *q, int64_t qs, int nr, float *s,
                    int64_t ss) {
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++) {
            const plm_f16 *kb = kt + (c / PLM_KV_BLOCK) * kbs + c % PLM_KV_BLOCK;
            float sum = 0.0f;
            for (int64_t d = 0; d < hd; d++) sum = fmaf(q[r * qs + d], f16_to_f32(kb[d * PLM_KV_BLOCK]), sum);
            s[r * ss + c] = sum;
        }
}

static void pv8_f16(int64_t hd, const plm_f16 *v, int64_t stride, int nc, const float *p, int64_t ps, int nr, float *o,
                    int64_t os) {
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++) {
            const float pc = p[r * ps + c];
            if (pc == 0.0f) continue;
            for (int64_t d = 0; d < hd; d++) o[r * os + d] = fmaf(pc, f16_to_f32(v[c * stride + d]), o[r * os + d]);
        }
}

static float max_f32(const float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

static float exp_sum_f32(float *x, int64_t n, float scale, float sub) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float t = x[i] * scale;
        x[i] = expf(t - sub);
        sum += (double)x[i];
    }
    return (float)sum;
}

static void lora_b32(int nb, int32_t rank4, const int8_t *uq, float c, const uint8_t *run, int64_t run_bytes,
                     float *o) {
    for (int b = 0; b < nb; b++, run += run_bytes) {
        const int8_t *q = (const int8_t *)run;
        const plm_f16 *e = (const plm_f16 *)(run + (size_t)PLM_QK * (size_t)rank4);
        for (int i = 0; i < PLM_QK; i++) {
            int32_t s = 0;
            for (int32_t k = 0; k < rank4; k++) s += (int32_t)q[128 * (k / 4) + 4 * i + k % 4] * (int32_t)uq[k];
            o[PLM_QK * b + i] += (float)s * (c * plm_f16_to_f32(e[i]));
        }
    }
}

/* ---------------------------------------------------------------- x16 layout (quant.h) */

bool plm_x16_type(plm_type type) {
    return type == PLM_TYPE_Q4_0 || type == PLM_TYPE_Q4_1 || type == PLM_TYPE_Q5_0 || type == PLM_TYPE_Q5_1 ||
           type == PLM_TYPE_Q8_0;
}

/* Where a block's parts lie, in its own layout (off_*) and in a 16-block group (at_*); -1: the type has none. */
typedef struct x16_parts {
    size_t bs;                  /* bytes per block */
    int off_m, off_h, off_q;    /* in one block (d at 0) */
    int at_m, at_h, at_q;       /* in a group (d[16] at 0) */
    int nq;                     /* bytes of qs per block: 16 (4-bit) or 32 (Q8_0) */
} x16_parts;

static x16_parts x16_parts_of(plm_type type) {
    const bool min = type == PLM_TYPE_Q4_1 || type == PLM_TYPE_Q5_1, five = type == PLM_TYPE_Q5_0 || type == PLM_TYPE_Q5_1;
    x16_parts p = {.bs = plm_type_traits_get(type)->type_size, .off_m = min ? 2 : -1, .nq = type == PLM_TYPE_Q8_0 ? 32 : 16};
    p.off_h = five ? (min ? 4 : 2) : -1;
    p.off_q = (int)p.bs - p.nq;
    p.at_m = min ? 32 : -1;
    p.at_h = five ? (min ? 64 : 32) : -1;
    p.at_q = 32 + (min ? 32 : 0) + (five ? 64 : 0);
    return p;
}

void plm_x16_pack(plm_type type, const void *src, void *dst, int64_t n) {
    const x16_parts P = x16_parts_of(type);
    const size_t ws = plm_type_row_size(type, n);
    const uint8_t *s = src;
    for (int64_t k = 0; k < n / PLM_QK; k++) {
        uint8_t *g = (uint8_t *)dst + (size_t)k * PLM_X16 * P.bs;
        uint64_t h[8] = {0};
        for (int i = 0; i < PLM_X16; i++) {
            const uint8_t *b = s + (size_t)i * ws + (size_t)k * P.bs;
            memcpy(g + 2 * i, b, 2);
            if (P.off_m >= 0) memcpy(g + P.at_m + 2 * i, b + P.off_m, 2);
            if (P.off_h >= 0) {
                uint32_t qh;
                memcpy(&qh, b + P.off_h, 4);
                for (int j = 0; j < 4; j++)
                    for (int p = 0; p < 4; p++) {
                        h[j] |= (uint64_t)((qh >> (4 * j + p)) & 1u) << (4 * i + p);
                        h[4 + j] |= (uint64_t)((qh >> (16 + 4 * j + p)) & 1u) << (4 * i + p);
                    }
            }
            for (int j = 0; j < P.nq / 4; j++)
                for (int p = 0; p < 4; p++) {
                    const uint8_t v = b[P.off_q + 4 * j + p];
                    g[P.at_q + 64 * j + 4 * i + p] = P.nq == 32 ? (uint8_t)(v ^ 0x80u) : v;
                }
        }
        for (int j = 0; j < 8 && P.at_h >= 0; j++)
            for (int c = 0; c < 8; c++) g[P.at_h + 8 * j + c] = (uint8_t)(h[j] >> (8 * c));
    }
}

void plm_q8_1_as_q8_0(const void *src, void *dst, int64_t n) {
    const plm_block_q8_1 *x = src;
    plm_block_q8_0 *y = dst;
    for (int64_t k = 0; k < n / PLM_QK; k++) {
        y[k].d = x[k].d;
        memcpy(y[k].qs, x[k].qs, PLM_QK);
    }
}

void plm_x16_row(plm_type type, const void *group, int64_t n, int i, void *dst) {
    const x16_parts P = x16_parts_of(type);
    for (int64_t k = 0; k < n / PLM_QK; k++) {
        const uint8_t *g = (const uint8_t *)group + (size_t)k * PLM_X16 * P.bs;
        uint8_t *b = (uint8_t *)dst + (size_t)k * P.bs;
        memcpy(b, g + 2 * i, 2);
        if (P.off_m >= 0) memcpy(b + P.off_m, g + P.at_m + 2 * i, 2);
        if (P.off_h >= 0) {
            uint32_t qh = 0;
            for (int j = 0; j < 8; j++) {
                uint64_t h = 0;
                for (int c = 0; c < 8; c++) h |= (uint64_t)g[P.at_h + 8 * j + c] << (8 * c);
                for (int p = 0; p < 4; p++) qh |= (uint32_t)((h >> (4 * i + p)) & 1u) << ((j < 4 ? 4 * j : 16 + 4 * (j - 4)) + p);
            }
            memcpy(b + P.off_h, &qh, 4);
        }
        for (int j = 0; j < P.nq / 4; j++)
            for (int p = 0; p < 4; p++) {
                const uint8_t v = g[P.at_q + 64 * j + 4 * i + p];
                b[P.off_q + 4 * j + p] = P.nq == 32 ? (uint8_t)(v ^ 0x80u) : v;
            }
    }
}

const float plm_erf_coef[PLM_ERF_DEGREE + 1][PLM_ERF_PIECES] = {
    {2.763263881e-01f, 7.111556530e-01f, 9.229001403e-01f, 9.866716862e-01f, 9.985373020e-01f, 9.998993874e-01f, 9.999957085e-01f, 9.999998808e-01f},
    {1.060014129e+00f, 6.429310441e-01f, 2.365211248e-01f, 5.277499557e-02f, 7.142319344e-03f, 5.862772814e-04f, 2.918901191e-05f, 8.814288321e-07f},
    {-2.650029659e-01f, -4.821981490e-01f, -2.956517339e-01f, -9.235620499e-02f, -1.607015729e-02f, -1.612267457e-03f, -9.486933413e-05f, -3.306070994e-06f},
    {-3.091704845e-01f, 2.678835019e-02f, 1.675358862e-01f, 9.015738964e-02f, 2.172451280e-02f, 2.760380274e-03f, 1.958126231e-04f, 7.970327715e-06f},
    {1.269345582e-01f, 1.506756246e-01f, -6.132035051e-03f, -4.810552299e-02f, -1.908825710e-02f, -3.257710487e-03f, -2.861694375e-04f, -1.378540946e-05f},
    {8.003626764e-02f, -5.321709067e-02f, -4.718655348e-02f, 6.618473213e-03f, 1.066005975e-02f, 2.756291069e-03f, 3.136288433e-04f, 1.833005990e-05f},
    {-3.934079409e-02f, -2.658282965e-02f, 2.059773728e-02f, 9.049494751e-03f, -2.779565053e-03f, -1.667850534e-03f, -2.737584291e-04f, -2.069242146e-05f},
    {-1.580337062e-02f, 1.788549498e-02f, 3.745110705e-03f, -5.933099426e-03f, -7.215269143e-04f, 6.358154933e-04f, 1.735965488e-04f, 1.714472637e-05f},
};

/* The kernel table's gelu_bias, element by element: the operations every table repeats lane by lane. */
static void gelu_bias(float *y, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float v = b ? y[i] + b[i] : y[i], x = v * 0.70710678118654752f, a = fminf(fabsf(x), 4.0f);
        const int k = (int)(a * 2.0f) < PLM_ERF_PIECES - 1 ? (int)(a * 2.0f) : PLM_ERF_PIECES - 1;
        const float t = a - ((float)k * 0.5f + 0.25f);
        float p = plm_erf_coef[PLM_ERF_DEGREE][k];
        for (int j = PLM_ERF_DEGREE - 1; j >= 0; j--) p = fmaf(p, t, plm_erf_coef[j][k]);
        const float h = 0.5f * v;
        y[i] = fmaf(h, copysignf(p, x), h);
    }
}

static const plm_kernels k_ref = {
    .name = "scalar",
    /* as k_traits pairs them (test_quant checks that the two agree) */
    .dot_type =
        {
            [PLM_TYPE_F32] = PLM_TYPE_F32,   [PLM_TYPE_F16] = PLM_TYPE_F16,   [PLM_TYPE_BF16] = PLM_TYPE_BF16,
            [PLM_TYPE_Q4_0] = PLM_TYPE_Q8_0, [PLM_TYPE_Q4_1] = PLM_TYPE_Q8_1, [PLM_TYPE_Q5_0] = PLM_TYPE_Q8_0,
            [PLM_TYPE_Q5_1] = PLM_TYPE_Q8_1, [PLM_TYPE_Q8_0] = PLM_TYPE_Q8_0, [PLM_TYPE_Q2_K] = PLM_TYPE_Q8_K,
            [PLM_TYPE_Q3_K] = PLM_TYPE_Q8_K, [PLM_TYPE_Q4_K] = PLM_TYPE_Q8_K, [PLM_TYPE_Q5_K] = PLM_TYPE_Q8_K,
            [PLM_TYPE_Q6_K] = PLM_TYPE_Q8_K,
        },
    .round_f16 = round_f16,
    .kq8_f16 = kq8_f16,
    .kqt_f16 = kqt_f16,
    .pv8_f16 = pv8_f16,
    .max_f32 = max_f32,
    .exp_sum_f32 = exp_sum_f32,
    .lora_b32 = lora_b32,
    .gelu_bias = gelu_bias,
    .rmsnorm = rmsnorm,
    .argmax_f32 = argmax_f32,
    .vec_dot =
        {
            [PLM_TYPE_F32] = dot_f32,   [PLM_TYPE_F16] = dot_f16,   [PLM_TYPE_BF16] = dot_bf16,
            [PLM_TYPE_Q4_0] = dot_q4_0, [PLM_TYPE_Q4_1] = dot_q4_1, [PLM_TYPE_Q5_0] = dot_q5_0,
            [PLM_TYPE_Q5_1] = dot_q5_1, [PLM_TYPE_Q8_0] = dot_q8_0, [PLM_TYPE_Q2_K] = dot_q2_K,
            [PLM_TYPE_Q3_K] = dot_q3_K, [PLM_TYPE_Q4_K] = dot_q4_K, [PLM_TYPE_Q5_K] = dot_q5_K,
            [PLM_TYPE_Q6_K] = dot_q6_K,
        },
    .quantize =
        {
            [PLM_TYPE_F32] = quant_f32,
            [PLM_TYPE_F16] = quant_f16,
            [PLM_TYPE_BF16] = quant_bf16,
            [PLM_TYPE_Q8_0] = quant_q8_0,
            [PLM_TYPE_Q8_1] = quant_q8_1,
            [PLM_TYPE_Q8_K] = quant_q8_K,
        },
};

const plm_kernels *plm_kernels_ref(void) { return &k_ref; }
