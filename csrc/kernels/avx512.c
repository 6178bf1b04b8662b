/*
 * kernels/avx512.c — AVX-512 (F, BW, VL, VNNI) versions of the hot matrix
 * kernels: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K weights against
 * their 8-bit activation blocks (gemm and vec_dot), Q2_K and Q3_K (vec_dot),
 * each checked against its scalar reference in quant.c by
 * tests/c/test_quant.c, and the attention's pv8_f16 and softmax exp
 * (exp_sum_f32), SwiGLU (silu_mul) and BERT's GELU (gelu_bias). Every other entry (float formats, the quantizers, the other
 * attention helpers) is the AVX2 table's, and so is the one-token product of
 * Q4_0, Q4_1, Q5_0, Q8_0 and Q6_K (see g_decode); Q4_K's (rows_k45) gives the AVX2 table's bits.
 *
 * This file is compiled with the AVX-512 flags (Makefile ISA_avx512), so
 * nothing in it may run before kernels/dispatch.c has checked the CPU and the
 * OS (ZMM and opmask state); its only entry point is plm_kernels_avx512_table().
 *
 * Integer products use vpdpbusd (VNNI: 4 unsigned x signed byte products
 * summed into an int32 lane, no int16 step that could saturate). Weights
 * stored with an offset (Q4_0: 8, Q5_0: 16) go in unsigned and the offset is
 * taken off as offset * sum(a); Q8_0 weights go in as w + 128 (the sign bit
 * flipped) with 128 * sum(a) taken off, since there is no 512-bit sign
 * instruction to move their signs onto the activations.
 *
 * Layout for several tokens (prefill): sixteen rows in sixteen lanes. A row
 * group's weights are unpacked once per pass so that each 32-bit lane of a ZMM
 * register holds 4 consecutive weights of one row (lane j = row j), and the 4
 * matching activations are one broadcast dword: the per-block scale work
 * (fp16 scales, offsets, conversion, FMA) is done once for 16 rows, and each
 * weight vector loaded serves four tokens. For one token (decode) Q5_K goes
 * four rows side by side, each row's super-block as whole ZMM vectors, since
 * unpacking costs more than it saves for one token. Either way
 * each (row, token) entry is an exact integer sum per block followed by the
 * same float steps, whatever the tile, and vec_dot is the 1 x 1 case, so a
 * token's result does not depend on how tokens were batched.
 */
#include "quant.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define ALWAYS_INLINE inline __attribute__((always_inline))
#define BLOCK(type, base, stride, i, k) ((const type *)((base) + (size_t)(i) * (stride)) + (k))

static inline float h2f(plm_f16 h) { return _cvtsh_ss(h); }

/* acc + dpbusd(u, the 4 bytes at p in every lane), the bytes read by the instruction's own broadcast
 * ({1to16}): GCC keeps _mm512_set1_epi32 of a load as a separate broadcast, one more vector
 * operation per product where the products are most of the work (x16_steps). */
static ALWAYS_INLINE __m512i dpbusd_b4(__m512i acc, __m512i u, const int8_t *p) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*(const int32_t *)(const void *)p));
    return acc;
}

/* Decode reads every weight once from memory; the 16 rows of a group are read
 * side by side, which defeats the hardware prefetcher, so while block k is
 * computed the matching slice of the next group (the next 16 rows, contiguous
 * with these) is prefetched: one sequential stream again (see avx2.c). */
/* The K-quants' decode reads R rows side by side a super-block at a time; the
 * next R rows (contiguous with these) are prefetched as one linear stream:
 * while block k is computed, bytes [k R bs, (k + 1) R bs) of the next R rows. */
static ALWAYS_INLINE void prefetch_tile(const uint8_t *w, size_t ws, const int R, size_t bs, int64_t k) {
    const uint8_t *p = w + (size_t)R * ws + (size_t)k * R * bs;
    for (size_t off = 0; off < R * bs; off += 64) _mm_prefetch((const char *)(p + off), _MM_HINT_T0);
}

static ALWAYS_INLINE void prefetch_next_group(const uint8_t *w, size_t ws, size_t bs, int64_t k) {
    const uint8_t *p = w + 16 * ws + (size_t)k * 16 * bs;
    for (size_t off = 0; off < 16 * bs; off += 64) _mm_prefetch((const char *)(p + off), _MM_HINT_T0);
}

/* The products of several tokens take longer per row group than the stream from memory does, and asked for one
 * group ahead into L1 their blocks arrived late (a burst of a chunk's lines at once, while the last ones were
 * still in flight): two groups ahead into L2 gave a 16-token Q4_1 product from memory 15% less time, 4 tokens 30%
 * (plm-kernel-bench -b, 96 MB), batched generation at parallel 16 6-11% more tokens/s and at parallel 4 25-55%,
 * at a cost of 0-2.5% in cache (make kernel-ab); the K-quants' products of 4 and 16 tokens from memory 35-45% and
 * 8-25% less. Bytes [k 16 bs, (k + 1) 16 bs) of the rows 32 past w. Weights in the x16 layout ask for the same
 * bytes a block at a time during the first pass over a chunk's tokens instead (x16_pass), not all of a chunk's
 * with its unpacking: a burst of up to 144 lines (Q8_0) left the loads behind it waiting; paired from memory
 * (make kernel-ab, 96 MB), Q8_0 -18% at 4 tokens, -15% at 16, -5% at 64, the 4- and 5-bit types -2..-7% at 4
 * tokens and -1..-3% at 16 and 64. */
static ALWAYS_INLINE void prefetch_group_l2(const uint8_t *w, size_t ws, size_t bs, int64_t k) {
    const uint8_t *p = w + 32 * ws + (size_t)k * 16 * bs;
    for (size_t off = 0; off < 16 * bs; off += 64) _mm_prefetch((const char *)(p + off), _MM_HINT_T1);
}

/* Stores lanes j < nr of acc into out[j] (=|+=). */
static ALWAYS_INLINE void x16_store(__m512 acc, int nr, float *out, bool accumulate) {
    const __mmask16 m = (__mmask16)((1u << nr) - 1u);
    if (accumulate) acc = _mm512_add_ps(_mm512_maskz_loadu_ps(m, out), acc);
    _mm512_mask_storeu_ps(out, m, acc);
}

/* ---------------------------------------------- sixteen rows in sixteen lanes
 * 32-element formats. Per block and row group: x[j] (j < 4) holds 16 bytes of
 * rows j, j+4, j+8, j+12 in its four 128-bit lanes; a 4 x 4 dword transpose
 * inside each 128-bit lane turns them into v[g], whose lane 4L + i holds
 * bytes 4g..4g+3 of row 4L + i: lane = row. */

#define X16_KCHUNK 16 /* blocks of a row group unpacked at once (16 * 640 bytes) */
#define X16_COLS 64   /* tokens of one pass (their accumulators stay on the stack) */
#define X16_SUMS 4096 /* per-(token, block) activation terms precomputed per pass */

typedef enum { X16_Q4_0, X16_Q4_1, X16_Q5_0, X16_Q5_1, X16_Q8_0 } x16_kind;

typedef struct x16_block {
    __m512i v[8]; /* L[0..3] (elements 4g..4g+3), H[0..3] (16+4g..): unsigned weights */
    __m512 d;     /* the 16 rows' scales */
    __m512 m;     /* Q4_1/Q5_1: the 16 rows' mins */
} x16_block;

static ALWAYS_INLINE bool x16_has_min(x16_kind kind) { return kind == X16_Q4_1 || kind == X16_Q5_1; }

static ALWAYS_INLINE size_t x16_wblock(x16_kind kind) {
    switch (kind) {
    case X16_Q4_0: return sizeof(plm_block_q4_0);
    case X16_Q4_1: return sizeof(plm_block_q4_1);
    case X16_Q5_0: return sizeof(plm_block_q5_0);
    case X16_Q5_1: return sizeof(plm_block_q5_1);
    case X16_Q8_0: return sizeof(plm_block_q8_0);
    }
    return 0;
}

/* The activation partner: Q8_1 (d, s, qs) for the formats with a min, else Q8_0 (d, qs). */
static ALWAYS_INLINE size_t x16_ablock(x16_kind kind) {
    return x16_has_min(kind) ? sizeof(plm_block_q8_1) : sizeof(plm_block_q8_0);
}

/* Where the activation block's bytes start. */
static ALWAYS_INLINE const int8_t *x16_aqs(x16_kind kind, const uint8_t *y) {
    return x16_has_min(kind) ? ((const plm_block_q8_1 *)y)->qs : ((const plm_block_q8_0 *)y)->qs;
}

/* The weight offset as a multiple of sum(a): sum(w' a) - off * sum(a). */
static ALWAYS_INLINE int32_t x16_offset(x16_kind kind) {
    return kind == X16_Q4_0 ? 8 : kind == X16_Q5_0 ? 16 : kind == X16_Q8_0 ? 128 : 0;
}

static ALWAYS_INLINE __m512i load4x16(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3) {
    __m512i x = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p0));
    x = _mm512_inserti32x4(x, _mm_loadu_si128((const __m128i *)p1), 1);
    x = _mm512_inserti32x4(x, _mm_loadu_si128((const __m128i *)p2), 2);
    return _mm512_inserti32x4(x, _mm_loadu_si128((const __m128i *)p3), 3);
}

/* In-lane 4 x 4 dword transpose: v[g] dword i of each 128-bit lane = dword g of x[i]'s lane. */
static ALWAYS_INLINE void x16_transpose(const __m512i x[4], __m512i v[4]) {
    const __m512i t0 = _mm512_unpacklo_epi32(x[0], x[1]), t1 = _mm512_unpackhi_epi32(x[0], x[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(x[2], x[3]), t3 = _mm512_unpackhi_epi32(x[2], x[3]);
    v[0] = _mm512_unpacklo_epi64(t0, t2);
    v[1] = _mm512_unpackhi_epi64(t0, t2);
    v[2] = _mm512_unpacklo_epi64(t1, t3);
    v[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* The nibbles of 16 bytes at q[r] for 16 rows: low nibbles into lo[0..3],
 * high nibbles into hi[0..3]; with fifth bits (qh5 != NULL: 32 bits per row,
 * bit l for the low nibble of byte l, bit 16 + l for its high nibble) or'ed in
 * as 0x10. */
static ALWAYS_INLINE void x16_nibbles(const uint8_t *const q[16], const uint8_t *const qh5[16], __m512i lo_out[4],
                                      __m512i hi_out[4]) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), b5 = _mm512_set1_epi8(0x10);
    __m512i lo[4], hi[4];
    for (int j = 0; j < 4; j++) {
        const __m512i x = load4x16(q[j], q[j + 4], q[j + 8], q[j + 12]);
        lo[j] = _mm512_and_si512(x, m4);
        hi[j] = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
        if (qh5 != NULL) {
            uint64_t ml = 0, mh = 0;
            for (int l = 0; l < 4; l++) {
                uint32_t h;
                memcpy(&h, qh5[j + 4 * l], 4);
                ml |= (uint64_t)(h & 0xffffu) << (16 * l);
                mh |= (uint64_t)(h >> 16) << (16 * l);
            }
            lo[j] = _mm512_or_si512(lo[j], _mm512_maskz_mov_epi8(ml, b5));
            hi[j] = _mm512_or_si512(hi[j], _mm512_maskz_mov_epi8(mh, b5));
        }
    }
    x16_transpose(lo, lo_out);
    x16_transpose(hi, hi_out);
}

/* Bytes off..off+3 of each of the 16 blocks as one dword per lane (x16_head: the first 4, d and m for
 * Q4_1/Q5_1 as fp16): 16 loads and inserts. Two 8-lane gathers did the same at about twice the cost on
 * Zen 4 (the whole of a row group's unpacking at 16 tokens measured 4.5-8% faster without them, 10-18% at
 * 4 tokens, in one process alternating the two builds). */
static ALWAYS_INLINE __m512i x16_dwords(const uint8_t *const blk[16], size_t off) {
    __m128i q[4];
    for (int l = 0; l < 4; l++) {
        uint32_t h[4];
        for (int i = 0; i < 4; i++) memcpy(&h[i], blk[4 * l + i] + off, 4);
        q[l] = _mm_setr_epi32((int)h[0], (int)h[1], (int)h[2], (int)h[3]);
    }
    const __m512i lo = _mm512_inserti32x4(_mm512_castsi128_si512(q[0]), q[1], 1);
    return _mm512_inserti32x4(_mm512_inserti32x4(lo, q[2], 2), q[3], 3);
}

static ALWAYS_INLINE __m512i x16_head(const uint8_t *const blk[16]) { return x16_dwords(blk, 0); }

/* The fp16 value in the low (high = false) or high half of each dword lane, as floats. */
static ALWAYS_INLINE __m512 x16_half_f32(__m512i x, bool high) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(high ? _mm512_srli_epi32(x, 16) : x));
}

/* Block k of 16 rows (row j at w + rows[j] * ws; short groups repeat a row). */
static ALWAYS_INLINE void x16_unpack(x16_kind kind, const uint8_t *w, size_t ws, const int rows[16], int64_t k,
                                     x16_block *o) {
    const size_t bs = x16_wblock(kind);
    const uint8_t *blk[16];
    for (int j = 0; j < 16; j++) blk[j] = w + (size_t)rows[j] * ws + (size_t)k * bs;
    if (kind == X16_Q8_0) {
        const __m512i flip = _mm512_set1_epi8((char)0x80);
        __m512i lo[4], hi[4];
        for (int j = 0; j < 4; j++) {
            const size_t o8 = offsetof(plm_block_q8_0, qs);
            const uint8_t *q0 = blk[j] + o8, *q1 = blk[j + 4] + o8, *q2 = blk[j + 8] + o8, *q3 = blk[j + 12] + o8;
            lo[j] = _mm512_xor_si512(load4x16(q0, q1, q2, q3), flip);
            hi[j] = _mm512_xor_si512(load4x16(q0 + 16, q1 + 16, q2 + 16, q3 + 16), flip);
        }
        x16_transpose(lo, o->v);
        x16_transpose(hi, o->v + 4);
    } else {
        const uint8_t *q[16], *qh[16];
        for (int j = 0; j < 16; j++) {
            switch (kind) {
            case X16_Q4_0: q[j] = ((const plm_block_q4_0 *)blk[j])->qs; break;
            case X16_Q4_1: q[j] = ((const plm_block_q4_1 *)blk[j])->qs; break;
            case X16_Q5_0: q[j] = ((const plm_block_q5_0 *)blk[j])->qs, qh[j] = ((const plm_block_q5_0 *)blk[j])->qh; break;
            case X16_Q5_1: q[j] = ((const plm_block_q5_1 *)blk[j])->qs, qh[j] = ((const plm_block_q5_1 *)blk[j])->qh; break;
            case X16_Q8_0: break;
            }
        }
        x16_nibbles(q, kind == X16_Q5_0 || kind == X16_Q5_1 ? qh : NULL, o->v, o->v + 4);
    }
    const __m512i head = x16_head(blk);
    o->d = x16_half_f32(head, false);
    if (x16_has_min(kind)) o->m = x16_half_f32(head, true);
}

/* Block k of a group in the x16 layout (quant.h) at g = group + 16 k bs: the same x16_block as x16_unpack makes
 * of the rows, by whole-vector loads (no transposes, no gathering of heads or fifth bits). */
static ALWAYS_INLINE void x16_unpack_packed(x16_kind kind, const uint8_t *g, x16_block *o) {
    const bool five = kind == X16_Q5_0 || kind == X16_Q5_1;
    const int at_h = x16_has_min(kind) ? 64 : 32, at_q = at_h + (five ? 64 : 0);
    o->d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)g));
    if (x16_has_min(kind)) o->m = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(g + 32)));
    if (kind == X16_Q8_0) {
        for (int j = 0; j < 8; j++) o->v[j] = _mm512_loadu_si512((const void *)(g + at_q + 64 * j));
        return;
    }
    const __m512i m4 = _mm512_set1_epi8(0x0f), b5 = _mm512_set1_epi8(0x10);
    for (int j = 0; j < 4; j++) {
        const __m512i x = _mm512_loadu_si512((const void *)(g + at_q + 64 * j));
        __m512i lo = _mm512_and_si512(x, m4), hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
        if (five) {
            uint64_t ml, mh;
            memcpy(&ml, g + at_h + 8 * j, 8);
            memcpy(&mh, g + at_h + 8 * (4 + j), 8);
            lo = _mm512_or_si512(lo, _mm512_maskz_mov_epi8(ml, b5));
            hi = _mm512_or_si512(hi, _mm512_maskz_mov_epi8(mh, b5));
        }
        o->v[j] = lo, o->v[4 + j] = hi;
    }
}

/* sum(a) of an activation block's 32 bytes. */
static ALWAYS_INLINE int32_t sum_i8x32(const int8_t *qs) {
    const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), _mm256_loadu_si256((const __m256i *)qs));
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(h);
}

/* Per (token, block) terms of the activation: its scale, and its Q8_1 sum (s, the formats with a min) or the
 * weight offset's integer term (off, the others). */
typedef struct x16_act {
    float d;
    union {
        float s;
        int32_t off;
    };
} x16_act;
_Static_assert(sizeof(x16_act) == 2 * sizeof(float), "x16_act_row stores (d, s) pairs");

static ALWAYS_INLINE x16_act x16_act_terms(x16_kind kind, const uint8_t *y) {
    x16_act t;
    if (x16_has_min(kind)) {
        const plm_block_q8_1 *b = (const plm_block_q8_1 *)y;
        t.d = h2f(b->d);
        t.s = h2f(b->s);
    } else {
        const plm_block_q8_0 *b = (const plm_block_q8_0 *)y;
        t.d = h2f(b->d);
        t.off = x16_offset(kind) * sum_i8x32(b->qs);
    }
    return t;
}

/* t[0..15] = (d[i], e[i]) pairs: the 16 blocks' terms (e: s, or off's bits). */
static ALWAYS_INLINE void x16_act_store(x16_act *t, __m512 d, __m512 e) {
    const __m512i first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    _mm512_storeu_ps((float *)t, _mm512_permutex2var_ps(d, first, e));
    _mm512_storeu_ps((float *)(t + 8), _mm512_permutex2var_ps(d, _mm512_add_epi32(first, _mm512_set1_epi32(8)), e));
}

/* The terms of blocks 0..nb-1 of one token's activation row y, 16 blocks at a time: Q8_1's (d, s) pairs from
 * their first 4 bytes as x16_head reads the weights', both halves converted at once and interleaved into t;
 * Q8_0's d so too, and the 16 byte sums as vpdpbusd's 4-byte sums of two blocks per register, added across
 * by unpacks and one lane swap (exact integers, the same conversions as one by one: a 16-token product spent
 * 7-11% of its time on the terms, one block at a time). */
static ALWAYS_INLINE void x16_act_row(x16_kind kind, const uint8_t *y, int64_t nb, x16_act *t) {
    const size_t ab = x16_ablock(kind);
    int64_t k = 0;
    const __m512i ones = _mm512_set1_epi8(1);
    const __m512i order = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 16, 24, 17, 25, 18, 26, 19, 27);
    for (; k + 16 <= nb; k += 16) {
        const uint8_t *blk[16];
        for (int i = 0; i < 16; i++) blk[i] = y + (size_t)(k + i) * ab;
        const __m512i head = x16_head(blk);
        if (x16_has_min(kind)) {
            x16_act_store(t + k, x16_half_f32(head, false), x16_half_f32(head, true));
        } else { /* Q8_0: d, and the offset times the block's byte sum, summed 16 blocks at once */
            __m512i z[8]; /* z[m]: 4-byte sums of blocks 2m (low half) and 2m + 1 */
            for (int m = 0; m < 8; m++) {
                const __m256i lo = _mm256_loadu_si256((const __m256i *)(const void *)x16_aqs(kind, blk[2 * m]));
                const __m256i hi = _mm256_loadu_si256((const __m256i *)(const void *)x16_aqs(kind, blk[2 * m + 1]));
                z[m] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
            }
            __m512i u[2]; /* each 128-bit lane: its 4 dwords summed, of z[4 i], .., z[4 i + 3] */
            for (int i = 0; i < 2; i++) {
                __m512i t2[2];
                for (int j = 0; j < 2; j++) {
                    const __m512i a = z[4 * i + 2 * j], b = z[4 * i + 2 * j + 1];
                    t2[j] = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
                }
                u[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(t2[0], t2[1]), _mm512_unpackhi_epi64(t2[0], t2[1]));
                u[i] = _mm512_add_epi32(u[i], _mm512_shuffle_i32x4(u[i], u[i], _MM_SHUFFLE(2, 3, 0, 1)));
            }
            const __m512i sums = _mm512_permutex2var_epi32(u[0], order, u[1]);
            const __m512i off = _mm512_mullo_epi32(sums, _mm512_set1_epi32(x16_offset(kind)));
            x16_act_store(t + k, x16_half_f32(head, false), _mm512_castsi512_ps(off));
        }
    }
    for (; k < nb; k++) t[k] = x16_act_terms(kind, y + (size_t)k * ab);
}

/* acc[c] (16 rows) += W block . activation block of token c (bytes qs[c],
 * terms t[c]) for CT tokens at once: each weight vector is loaded once for the
 * CT tokens, and each token goes through the same operations whatever CT is. */
#define X16_CT 4

/* Each token's 8 products run in 2 chains of 4 (4 tokens and more: 8 chains side by side keep vpdpbusd busy), or
 * for 1 or 2 tokens in 4 chains of 2, which a 4-deep chain's latency would otherwise bound (the integer sums are
 * exact, so the grouping changes no bit). */
static ALWAYS_INLINE void x16_steps(x16_kind kind, const int CT, const x16_block *b, const int8_t *const qs[],
                                    const x16_act t[], __m512 acc[], __m512 macc[]) {
    const int NCH = CT <= 2 ? 4 : 2; /* chains per token: product g of the low (h = 0) or high half in chain (2 h + g) % NCH */
    __m512i s[X16_CT][4];
    for (int c = 0; c < CT; c++)
        for (int h = 0; h < NCH; h++)
            s[c][h] = h == 0 && x16_offset(kind) ? _mm512_set1_epi32(-t[c].off) : _mm512_setzero_si512();
    for (int g = 0; g < 4; g++) {
        const __m512i vl = b->v[g], vh = b->v[4 + g];
        for (int c = 0; c < CT; c++) {
            s[c][(2 * 0 + g) % NCH] = dpbusd_b4(s[c][(2 * 0 + g) % NCH], vl, qs[c] + 4 * g);
            s[c][(2 * 1 + g) % NCH] = dpbusd_b4(s[c][(2 * 1 + g) % NCH], vh, qs[c] + 16 + 4 * g);
        }
    }
    for (int c = 0; c < CT; c++) {
        const __m512i p = NCH == 4 ? _mm512_add_epi32(_mm512_add_epi32(s[c][0], s[c][1]), _mm512_add_epi32(s[c][2], s[c][3]))
                                   : _mm512_add_epi32(s[c][0], s[c][1]);
        if (x16_has_min(kind)) macc[c] = _mm512_fmadd_ps(b->m, _mm512_set1_ps(t[c].s), macc[c]);
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(b->d, _mm512_set1_ps(t[c].d)), acc[c]);
    }
}

/* Tokens c0..c0+CT-1 of a pass over blocks k0..k0+kc-1 (unpacked in blk); first: the row group's first pass,
 * whose sums start at 0 (acc and macc are not read; zeroing all of them for up to X16_COLS tokens beforehand
 * was a memset per row group). */
static ALWAYS_INLINE void x16_pass(x16_kind kind, const int CT, const x16_block *blk, int64_t kc, const uint8_t *y0,
                                   size_t as, const x16_act *t0, int64_t nb, __m512 *acc, __m512 *macc, const uint8_t *pf,
                                   bool first) {
    const size_t ab = x16_ablock(kind), pfs = 16 * x16_wblock(kind);
    __m512 ac[X16_CT], mc[X16_CT];
    for (int c = 0; c < CT; c++) ac[c] = first ? _mm512_setzero_ps() : acc[c], mc[c] = first ? _mm512_setzero_ps() : macc[c];
    for (int64_t k = 0; k < kc; k++) {
        if (pf)
            for (size_t off = 0; off < pfs; off += 64) _mm_prefetch((const char *)(pf + k * pfs + off), _MM_HINT_T1);
        const int8_t *qs[X16_CT];
        x16_act t[X16_CT];
        for (int c = 0; c < CT; c++) qs[c] = x16_aqs(kind, y0 + (size_t)c * as + (size_t)k * ab), t[c] = t0[c * nb + k];
        x16_steps(kind, CT, &blk[k], qs, t, ac, mc);
    }
    for (int c = 0; c < CT; c++) acc[c] = ac[c], macc[c] = mc[c];
}

/* ------------------------------------------------------------- LoRA's B
 * A run's 128-byte group of 4 values of k for 32 outputs is two registers of 16 lanes, each lane's 4 products
 * summed by vpdpbusd (unsigned by signed bytes), so uq goes in as its positive and negative parts, two sums
 * subtracted (exact: |uq|, |q| <= 127); then the reference's product and sum. Used by lora_b32 and by the fused
 * one-token x16 products (gemm_x16_lora). */
#define LORA_G_MAX (PLM_LORA_FUSED_RANK / 4) /* groups of 4 of the rank held as broadcast words */

/* uq's positive and negative parts, 4 of the rank to a 32-bit word (ng words). */
static void lora_pack_u(const int8_t *uq, int ng, int32_t *up, int32_t *un) {
    for (int g = 0; g < ng; g++) {
        uint32_t p = 0, n = 0;
        for (int j = 0; j < 4; j++) {
            const int v = uq[4 * g + j];
            p |= (uint32_t)(v > 0 ? v : 0) << (8 * j);
            n |= (uint32_t)(v < 0 ? -v : 0) << (8 * j);
        }
        up[g] = (int32_t)p;
        un[g] = (int32_t)n;
    }
}

/* The delta of the 16 outputs of half h (0: outputs 0..15, 1: 16..31) of a run: (float)s * (c * e). */
static ALWAYS_INLINE __m512 lora_half(const uint8_t *run, int h, int ng, const int32_t *up, const int32_t *un,
                                      int32_t rank4, __m512 cv) {
    __m512i sp = _mm512_setzero_si512(), sn = sp;
    for (int g = 0; g < ng; g++) {
        const __m512i q = _mm512_loadu_si512((const void *)(run + 128 * g + 64 * h));
        sp = _mm512_dpbusd_epi32(sp, _mm512_set1_epi32(up[g]), q);
        sn = _mm512_dpbusd_epi32(sn, _mm512_set1_epi32(un[g]), q);
    }
    const uint8_t *e = run + (size_t)PLM_QK * (size_t)rank4 + 32 * h;
    const __m512 ce = _mm512_mul_ps(cv, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)e)));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(sp, sn)), ce);
}

/* A LoRA delta given with a one-token x16 product: the epilogue and uq's words. */
typedef struct x16_lora {
    const plm_lora_epi *e;
    int ng;
    int32_t up[LORA_G_MAX], un[LORA_G_MAX];
} x16_lora;

/* Stores v (16 rows from group gi of the product) into out's nr lanes as x16_store does, plus lora_b32's delta of
 * those rows: the same integer sums and the same product and sum. */
static ALWAYS_INLINE void x16_store_lora(__m512 v, int nr, float *out, bool accumulate, const x16_lora *L, int gi) {
    const __mmask16 m = (__mmask16)((1u << nr) - 1u);
    if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, out), v);
    const int hh = L->e->half + gi;
    const uint8_t *run = L->e->run + (size_t)(hh >> 1) * (size_t)L->e->run_bytes;
    v = _mm512_add_ps(v, lora_half(run, hh & 1, L->ng, L->up, L->un, L->e->rank4, _mm512_set1_ps(L->e->c)));
    _mm512_mask_storeu_ps(out, m, v);
}

/* At the first group of each run of B that the fused product reads, asks for the next run: a run's lines are read
 * in two passes 16 rows apart (half 0's values, then half 1's, every other line), which the hardware prefetcher
 * did not keep ahead of. Paired (a rank-16 adapter on the default model), a whole run asked for two runs ahead
 * took 2.1-2.3% off a token's time at one thread and 0.5-0.8% at two; one run ahead another 1.4% and 0.4%; four and
 * eight runs ahead were slower; the 4 lines of a group's own half two groups ahead, 0-1%. */
static ALWAYS_INLINE void x16_lora_prefetch(const x16_lora *L, int gi) {
    const int hh = L->e->half + gi;
    if ((hh & 1) && gi != 0) return;
    const uint8_t *run = L->e->run + (size_t)((hh >> 1) + 1) * (size_t)L->e->run_bytes;
    for (int64_t o = 0; o < L->e->run_bytes; o += 64) _mm_prefetch((const char *)(run + o), _MM_HINT_T0);
}

/* W (nr rows, ws bytes apart) x A (nc tokens, as bytes apart) for the x16 kinds. */
/* packed: the weights are in the x16 layout (quant.h; nr a multiple of 16), else rows as the file has them. lora:
 * NULL, or (one token, packed) a LoRA delta added as each group is stored. */
static ALWAYS_INLINE void x16_gemm(x16_kind kind, const bool packed, int64_t n, const void *vw, size_t ws, int nr,
                                   const void *va, size_t as, int nc, float *out, int64_t ldo, bool accumulate,
                                   const x16_lora *lora) {
    const uint8_t *w = vw, *a = va;
    const int64_t nb = n / PLM_QK;
    const size_t ab = x16_ablock(kind);
    const int cols = (int)(nb * X16_COLS <= X16_SUMS ? X16_COLS : (X16_SUMS / nb > 0 ? X16_SUMS / nb : 1));
    x16_act terms[X16_SUMS];
    __m512 acc[X16_COLS], macc[X16_COLS]; /* macc: the min terms, added at the end */
    x16_block blk[X16_KCHUNK];
    for (int c0 = 0; c0 < nc; c0 += cols) {
        const int ncg = nc - c0 < cols ? nc - c0 : cols;
        const bool pre = nb * ncg <= X16_SUMS; /* else one token with a huge row: terms on the fly */
        for (int c = 0; c < ncg && pre; c++)
            x16_act_row(kind, a + (size_t)(c0 + c) * as, nb, &terms[c * nb]);
        for (int r0 = 0; r0 < nr; r0 += 16) {
            int rows[16];
            for (int j = 0; j < 16; j++) rows[j] = r0 + j < nr ? r0 + j : nr - 1;
            if (ncg == 1) acc[0] = macc[0] = _mm512_setzero_ps(); /* the passes below start their own at 0 */
            if (lora) x16_lora_prefetch(lora, r0 / 16);
            for (int64_t k0 = 0; k0 < nb; k0 += X16_KCHUNK) {
                const int64_t kc = nb - k0 < X16_KCHUNK ? nb - k0 : X16_KCHUNK;
                if (ncg == 1) {
                    /* decode: unpack in registers, prefetch the next row group */
                    const uint8_t *y = a + (size_t)c0 * as;
                    for (int64_t k = k0; k < k0 + kc; k++) {
                        x16_block b;
                        prefetch_next_group(w + (size_t)r0 * ws, ws, x16_wblock(kind), k);
                        if (packed) x16_unpack_packed(kind, w + (size_t)r0 * ws + (size_t)k * 16 * x16_wblock(kind), &b);
                        else x16_unpack(kind, w, ws, rows, k, &b);
                        const uint8_t *yk = y + (size_t)k * ab;
                        const x16_act t = pre ? terms[k] : x16_act_terms(kind, yk);
                        const int8_t *qs = x16_aqs(kind, yk);
                        x16_steps(kind, 1, &b, &qs, &t, &acc[0], &macc[0]);
                    }
                    continue;
                }
                for (int64_t k = 0; k < kc; k++) {
                    if (!packed) prefetch_group_l2(w + (size_t)r0 * ws, ws, x16_wblock(kind), k0 + k);
                    if (packed) x16_unpack_packed(kind, w + (size_t)r0 * ws + (size_t)(k0 + k) * 16 * x16_wblock(kind), &blk[k]);
                    else x16_unpack(kind, w, ws, rows, k0 + k, &blk[k]);
                }
                /* here pre holds: only a single token can have a row too long for terms[] */
                /* packed: the group two ahead asked for during the first pass, a block's bytes per block */
                const uint8_t *pf = packed ? w + (size_t)(r0 + 32) * ws + (size_t)k0 * 16 * x16_wblock(kind) : NULL;
                int c = 0;
                for (; c + X16_CT <= ncg; c += X16_CT, pf = NULL)
                    x16_pass(kind, X16_CT, blk, kc, a + (size_t)(c0 + c) * as + (size_t)k0 * ab, as, &terms[c * nb + k0],
                             nb, &acc[c], &macc[c], pf, k0 == 0);
                /* the 1 to 3 tokens left together (one at a time, each token's chains would wait on each other) */
                const uint8_t *yc = a + (size_t)(c0 + c) * as + (size_t)k0 * ab;
                switch (ncg - c) {
                case 3: x16_pass(kind, 3, blk, kc, yc, as, &terms[c * nb + k0], nb, &acc[c], &macc[c], pf, k0 == 0); break;
                case 2: x16_pass(kind, 2, blk, kc, yc, as, &terms[c * nb + k0], nb, &acc[c], &macc[c], pf, k0 == 0); break;
                case 1: x16_pass(kind, 1, blk, kc, yc, as, &terms[c * nb + k0], nb, &acc[c], &macc[c], pf, k0 == 0); break;
                default: break;
                }
            }
            if (lora) {
                x16_store_lora(x16_has_min(kind) ? _mm512_add_ps(acc[0], macc[0]) : acc[0], nr - r0 < 16 ? nr - r0 : 16,
                               out + r0, accumulate, lora, r0 / 16);
                continue;
            }
            for (int c = 0; c < ncg; c++)
                x16_store(x16_has_min(kind) ? _mm512_add_ps(acc[c], macc[c]) : acc[c], nr - r0 < 16 ? nr - r0 : 16,
                          out + (int64_t)(c0 + c) * ldo + r0, accumulate);
        }
    }
}

/* One token of Q4_0, Q4_1, Q5_0, Q8_0 and Q6_K goes to the AVX2 table's
 * gemm (x8 rows in YMM lanes; row tiles for the K-quants), which measured as
 * fast as this file's one-token paths or faster once the weights come from
 * memory (the unpacking and the access pattern dominate there, not the
 * products), and gives the same bits: per (row, token) it computes the same
 * exact integer block sums and then the same float steps, fma(sum, d * a.d,
 * acc) per block or super-block (and the min terms into a second sum taken
 * off or added at the end). The table's vec_dot for those types is the AVX2
 * one (the 1 x 1 case of that gemm); test_quant checks that every gemm entry
 * of this table equals its vec_dot bit for bit, so a change to either side
 * that breaks this agreement fails there. */
static plm_gemm_fn g_decode[PLM_TYPE_COUNT];

/* uq's positive and negative parts, 4 of the rank to a word, as lora_b32 packs them. */
static void x16_lora_prepare(const plm_lora_epi *e, x16_lora *L) {
    L->e = e;
    L->ng = e->rank4 / 4;
    lora_pack_u(e->uq, L->ng, L->up, L->un);
}

#define X16_GEMM(name, kind, type)                                                                              \
    static void gemm_##name(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nc,     \
                            float *out, int64_t ldo, bool accumulate) {                                        \
        if (nc == 1 && g_decode[type] != NULL) g_decode[type](n, w, ws, nr, a, as, nc, out, ldo, accumulate);   \
        else x16_gemm(kind, false, n, w, ws, nr, a, as, nc, out, ldo, accumulate, NULL);                       \
    }                                                                                                          \
    static void gemm_x16_##name(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nc, \
                                float *out, int64_t ldo, bool accumulate) {                                    \
        x16_gemm(kind, true, n, w, ws, nr, a, as, nc, out, ldo, accumulate, NULL);                             \
    }                                                                                                          \
    static void gemm_x16_lora_##name(int64_t n, const void *w, size_t ws, int nr, const void *a, float *out,   \
                                     bool accumulate, const plm_lora_epi *e) {                                 \
        x16_lora L;                                                                                            \
        x16_lora_prepare(e, &L);                                                                               \
        x16_gemm(kind, true, n, w, ws, nr, a, 0, 1, out, 1, accumulate, &L);                                   \
    }

X16_GEMM(q4_0, X16_Q4_0, PLM_TYPE_Q4_0)
X16_GEMM(q4_1, X16_Q4_1, PLM_TYPE_Q4_1)
X16_GEMM(q5_0, X16_Q5_0, PLM_TYPE_Q5_0)
X16_GEMM(q5_1, X16_Q5_1, PLM_TYPE_Q5_1)
X16_GEMM(q8_0, X16_Q8_0, PLM_TYPE_Q8_0)

/* Q5_1 has no AVX2 gemm: its vec_dot is the 1 x 1 case of the x16 one. */
static float dot_q5_1(int64_t n, const void *w, const void *a) {
    float r;
    gemm_q5_1(n, w, 0, 1, a, 0, 1, &r, 1, false);
    return r;
}

/* ------------------------------------------------------------ K-quants
 * Per 256-element super-block and row: the exact integer sum of the products
 * weighted by the sub-block scales (isum) and, for Q4_K, of the mins times the
 * activation's 32-element sums (imin, from the Q8_K bsums); then
 * acc = fma(isum, d * a.d, acc) and macc = fma(imin, dmin * a.d, macc), result
 * acc - macc (Q6_K: acc). Sums of 16 products of 4-bit weights, or 4 products
 * of 6-bit weights, fit in int16 (|.| <= 30720 and 32256), so the scale is
 * applied by vpdpwssd with the scale in the low int16 of the lane and 0 in the
 * high one (which holds only the sign extension). */

#define X16K_CHUNK 8 /* super-blocks of a row group unpacked at once (8 * 5 KB) */

/* Q4_K/Q5_K scales: 8 scales and 8 mins of 6 bits from 12 bytes (see
 * k4_scale_min in quant.c), as two 4-byte groups each. */
static inline void k4_unpack(const uint8_t *s, uint32_t sc[2], uint32_t mn[2]) {
    uint32_t u[3];
    memcpy(u, s, 12);
    const uint32_t m6 = 0x3f3f3f3fu, m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    sc[0] = u[0] & m6;
    mn[0] = u[1] & m6;
    sc[1] = (u[2] & m4) | (((u[0] >> 6) & m2) << 4);
    mn[1] = ((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4);
}

/* The activation's 32-element sums of sub-blocks 2p and 2p+1 as two int16 (one int32) per p. */
static ALWAYS_INLINE void q8_K_pair_sums(const plm_block_q8_K *a, int32_t out[4]) {
    for (int p = 0; p < 4; p++) {
        const int32_t s0 = a->bsums[4 * p] + a->bsums[4 * p + 1], s1 = a->bsums[4 * p + 2] + a->bsums[4 * p + 3];
        out[p] = (int32_t)(((uint32_t)s0 & 0xffff) | (uint32_t)s1 << 16);
    }
}

/* Q4_K and Q5_K share their layout but for Q5_K's fifth bits: d, dmin and
 * the 12 scale bytes at the same offsets, then (Q5_K) qh[32] and qs[128]. A
 * value of the pair below is one of them: `five` is a constant in every
 * instantiation. Element 64p + l is the low nibble of qs[32p + l] and element
 * 64p + 32 + l its high nibble (l < 32); Q5_K's fifth bits are bit 2p and
 * 2p + 1 of qh[l]. */
static ALWAYS_INLINE size_t k45_size(bool five) { return five ? sizeof(plm_block_q5_K) : sizeof(plm_block_q4_K); }
static ALWAYS_INLINE const uint8_t *k45_qs(bool five, const uint8_t *b) {
    return five ? ((const plm_block_q5_K *)b)->qs : ((const plm_block_q4_K *)b)->qs;
}
_Static_assert(offsetof(plm_block_q4_K, scales) == offsetof(plm_block_q5_K, scales), "K4/K5 layout");
_Static_assert(offsetof(plm_block_q4_K, dmin) == offsetof(plm_block_q5_K, dmin), "K4/K5 layout");

/* One token, R <= 4 rows side by side. Per super-block the activation is regrouped once for the R rows so
 * that it meets the weights as loaded: a ZMM of 64 bytes of qs (runs p = 2h and 2h + 1) holds sub-blocks 4h and
 * 4h + 2 in its low nibbles and 4h + 1 and 4h + 3 in its high ones, so act[2h] = the activation's sub-blocks 4h
 * and 4h + 2 side by side, act[2h + 1] = 4h + 1 and 4h + 3. Each lane sums 4 products (|.| <= 4 * 31 * 128, an
 * int16), times its sub-block's scale by vpdpwssd into the row's isum; the R rows' isum and imin are reduced
 * together (one horizontal pass for the tile, not one per row), then each row's float steps are the AVX2
 * tile's, lane by lane: acc = fma(isum, d * a.d, acc), macc = fma(imin, dmin * a.d, macc), result acc - macc
 * (the same bits). */
static ALWAYS_INLINE __m512i k45_row_isum(const bool five, const uint8_t *blk, const __m512i act[4], __m128i q8s,
                                          __m128i *imin) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), one = _mm512_set1_epi8(1);
    const plm_block_q4_K *b = (const plm_block_q4_K *)blk; /* d, dmin, scales */
    uint32_t sc[2], mn[2];
    k4_unpack(b->scales, sc, mn);
    const __m512i s32 = _mm512_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)sc[1], (int)sc[0]));
    *imin = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)mn[1], (int)mn[0])), q8s);
    __m512i qh = _mm512_setzero_si512();
    if (five) qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)((const plm_block_q5_K *)blk)->qh));
    __m512i isum = _mm512_setzero_si512();
    for (int h = 0; h < 2; h++) {
        const __m512i x = _mm512_loadu_si512(k45_qs(five, blk) + 64 * h);
        __m512i lo = _mm512_and_si512(x, m4), hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
        if (five) {
            /* lo: p = 2h (low half), 2h + 1 (high half): bit 2p; hi: bit 2p + 1 */
            const __m512i cnt = _mm512_setr_epi64(4 * h, 4 * h, 4 * h, 4 * h, 4 * h + 2, 4 * h + 2, 4 * h + 2, 4 * h + 2);
            const __m512i bl = _mm512_and_si512(_mm512_srlv_epi64(qh, cnt), one);
            const __m512i bh = _mm512_and_si512(_mm512_srlv_epi64(qh, _mm512_add_epi64(cnt, _mm512_set1_epi64(1))), one);
            lo = _mm512_or_si512(lo, _mm512_slli_epi16(bl, 4));
            hi = _mm512_or_si512(hi, _mm512_slli_epi16(bh, 4));
        }
        const __m512i pl = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, act[2 * h]);
        const __m512i ph = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, act[2 * h + 1]);
        const __m512i il = _mm512_setr_epi32(4 * h, 4 * h, 4 * h, 4 * h, 4 * h, 4 * h, 4 * h, 4 * h, 4 * h + 2, 4 * h + 2,
                                             4 * h + 2, 4 * h + 2, 4 * h + 2, 4 * h + 2, 4 * h + 2, 4 * h + 2);
        isum = _mm512_dpwssd_epi32(isum, pl, _mm512_permutexvar_epi32(il, s32));
        isum = _mm512_dpwssd_epi32(isum, ph, _mm512_permutexvar_epi32(_mm512_add_epi32(il, _mm512_set1_epi32(1)), s32));
    }
    return isum;
}

/* Lane r: the sum of x[r]'s lanes (r < 4). */
static ALWAYS_INLINE __m128i hsum4_epi32(const __m512i x[4]) {
    __m256i y[4];
    for (int r = 0; r < 4; r++) y[r] = _mm256_add_epi32(_mm512_castsi512_si256(x[r]), _mm512_extracti64x4_epi64(x[r], 1));
    const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(y[0], y[1]), _mm256_hadd_epi32(y[2], y[3]));
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

/* R rows (contiguous, R <= 4) and one token. The rows are read side by side,
 * so the next R rows are prefetched as one sequential stream (see
 * prefetch_tile) while these are computed. */
static ALWAYS_INLINE void rows_k45_R(const bool five, const int R, int64_t nb, const uint8_t *w, size_t ws,
                                     const uint8_t *a, float *out, bool accumulate) {
    const plm_block_q8_K *y = (const plm_block_q8_K *)a;
    const size_t bs = k45_size(five);
    __m128 acc = _mm_setzero_ps(), macc = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        prefetch_tile(w, ws, R, bs, i);
        const int8_t *q = y[i].qs;
        __m512i act[4];
        for (int h = 0; h < 2; h++)
            for (int e = 0; e < 2; e++)
                act[2 * h + e] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(q + 128 * h + 32 * e))),
                                                    _mm256_loadu_si256((const __m256i *)(q + 128 * h + 64 + 32 * e)), 1);
        const __m256i bsums = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
        __m512i isum[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
        __m128i mins[4] = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128()};
        uint32_t dd[4] = {0, 0, 0, 0}; /* d | dmin << 16 of each row's block */
        for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + (size_t)r * ws + (size_t)i * bs;
            isum[r] = k45_row_isum(five, blk, act, q8s, &mins[r]);
            memcpy(&dd[r], blk, 4);
        }
        const __m128i is = hsum4_epi32(isum);
        const __m128i im = _mm_hadd_epi32(_mm_hadd_epi32(mins[0], mins[1]), _mm_hadd_epi32(mins[2], mins[3]));
        const __m128i ddv = _mm_loadu_si128((const __m128i *)dd);
        const __m128 da = _mm_set1_ps(y[i].d);
        const __m128 d = _mm_cvtph_ps(_mm_cvtepi32_epi16(ddv)), dmin = _mm_cvtph_ps(_mm_cvtepi32_epi16(_mm_srli_epi32(ddv, 16)));
        acc = _mm_fmadd_ps(_mm_cvtepi32_ps(is), _mm_mul_ps(d, da), acc);
        macc = _mm_fmadd_ps(_mm_cvtepi32_ps(im), _mm_mul_ps(dmin, da), macc);
    }
    float v[4];
    _mm_storeu_ps(v, _mm_sub_ps(acc, macc));
    for (int r = 0; r < R; r++) {
        if (accumulate) out[r] += v[r];
        else out[r] = v[r];
    }
}

static ALWAYS_INLINE void rows_k45(const bool five, int64_t nb, const uint8_t *w, size_t ws, int nr, const uint8_t *a,
                                   float *out, bool accumulate) {
#define K45_ROWS(R, r) rows_k45_R(five, R, nb, w + (size_t)(r) * ws, ws, a, out + (r), accumulate)
    PLM_BY_FOURS(nr, K45_ROWS);
#undef K45_ROWS
}

/* Many tokens: the x16 layout, v[8 j + 4 h + g] = sub-block j, elements 16h + 4g..+3 of each row. */
typedef struct x16k_block {
    __m512i v[64];
    __m512i sc[8]; /* sub-block j's scale in the low int16 of each row's lane */
    __m512i mn[4]; /* mins of sub-blocks 2p and 2p+1 as the two int16 of each row's lane */
    __m512 d, dmin;
} x16k_block;

static ALWAYS_INLINE __m512 f16x16(const plm_f16 h[16]) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h));
}

/* Q5_K's fifth bits of bytes 16h..16h+15 of the 32-byte run p, in x16_nibbles' form: bit l for the low
 * nibble of byte l (bit 2p of qh[16h + l]), bit 16 + l for its high nibble (bit 2p + 1). */
static ALWAYS_INLINE uint32_t q5k_fifth_bits(const uint8_t *qh, int p, int h) {
    const __m128i x = _mm_loadu_si128((const __m128i *)(qh + 16 * h));
    const uint32_t lo = (uint32_t)_mm_movemask_epi8(_mm_sll_epi16(x, _mm_cvtsi32_si128(7 - 2 * p)));
    const uint32_t hi = (uint32_t)_mm_movemask_epi8(_mm_sll_epi16(x, _mm_cvtsi32_si128(6 - 2 * p)));
    return lo | hi << 16;
}

static ALWAYS_INLINE void x16k_unpack_k45(const bool five, const uint8_t *w, size_t ws, const int rows[16], int64_t i,
                                         x16k_block *o) {
    const uint8_t *blk[16];
    for (int j = 0; j < 16; j++) blk[j] = w + (size_t)rows[j] * ws + (size_t)i * k45_size(five);
    for (int p = 0; p < 4; p++)
        for (int h = 0; h < 2; h++) {
            const uint8_t *q[16], *qh5[16];
            uint32_t bits[16];
            for (int j = 0; j < 16; j++) {
                q[j] = k45_qs(five, blk[j]) + 32 * p + 16 * h;
                if (five) bits[j] = q5k_fifth_bits(((const plm_block_q5_K *)blk[j])->qh, p, h);
                qh5[j] = (const uint8_t *)&bits[j];
            }
            x16_nibbles(q, five ? qh5 : NULL, o->v + 8 * (2 * p) + 4 * h, o->v + 8 * (2 * p + 1) + 4 * h);
        }
    /* the 12 scale bytes of the 16 rows as three dwords per lane, then k4_unpack's operations lane by lane:
     * scalar unpacking through arrays (stores, then vector loads) was 12% of a 16-token product */
    const size_t so = offsetof(plm_block_q4_K, scales);
    const __m512i u0 = x16_dwords(blk, so), u1 = x16_dwords(blk, so + 4), u2 = x16_dwords(blk, so + 8);
    const __m512i m6 = _mm512_set1_epi32(0x3f3f3f3f), m4 = _mm512_set1_epi32(0x0f0f0f0f), m2 = _mm512_set1_epi32(0x03030303);
    const __m512i sc4[2] = {_mm512_and_si512(u0, m6),
                            _mm512_or_si512(_mm512_and_si512(u2, m4),
                                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 6), m2), 4))};
    const __m512i mn4[2] = {_mm512_and_si512(u1, m6),
                            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), m4),
                                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), m2), 4))};
    const __m512i byte = _mm512_set1_epi32(0xff);
    for (int j = 0; j < 8; j++) o->sc[j] = _mm512_and_si512(_mm512_srli_epi32(sc4[j / 4], 8 * (j % 4)), byte);
    for (int q = 0; q < 4; q++) { /* mins 2q and 2q + 1: bytes 2(q % 2) and 2(q % 2) + 1 of mn4[q / 2] */
        const __m512i h = _mm512_srli_epi32(mn4[q / 2], 16 * (q % 2));
        o->mn[q] = _mm512_or_si512(_mm512_and_si512(h, byte), _mm512_slli_epi32(_mm512_and_si512(h, _mm512_set1_epi32(0xff00)), 8));
    }
    const __m512i head = x16_head(blk);
    o->d = x16_half_f32(head, false);
    o->dmin = x16_half_f32(head, true);
}

/* acc[c] += super-block . token c for CT tokens at once (each weight vector loaded once for all). Partial
 * sums go through the int16 scale product in runs of 16 products (Q4_K: |.| <= 16 * 15 * 128) or 8
 * (Q5_K: 8 * 31 * 128). */
static ALWAYS_INLINE void x16k_steps_k45(const bool five, const int CT, const x16k_block *b,
                                         const plm_block_q8_K *const a[], const int32_t *const bs[], __m512 acc[],
                                         __m512 macc[]) {
    const int G = five ? 2 : 4; /* dpbusd per partial sum */
    __m512i isum[X16_CT];
    for (int c = 0; c < CT; c++) isum[c] = _mm512_setzero_si512();
    for (int j = 0; j < 8; j++) {
        const __m512i *v = b->v + 8 * j;
        for (int g0 = 0; g0 < 8; g0 += G) {
            __m512i s[X16_CT];
            for (int c = 0; c < CT; c++) s[c] = _mm512_setzero_si512();
            for (int g = g0; g < g0 + G; g++) {
                const __m512i vg = v[g];
                for (int c = 0; c < CT; c++) s[c] = dpbusd_b4(s[c], vg, a[c]->qs + 32 * j + 4 * g);
            }
            for (int c = 0; c < CT; c++) isum[c] = _mm512_dpwssd_epi32(isum[c], s[c], b->sc[j]);
        }
    }
    for (int c = 0; c < CT; c++) {
        __m512i imin = _mm512_setzero_si512();
        for (int p = 0; p < 4; p++) imin = _mm512_dpwssd_epi32(imin, b->mn[p], _mm512_set1_epi32(bs[c][p]));
        const __m512 da = _mm512_set1_ps(a[c]->d);
        macc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(imin), _mm512_mul_ps(b->dmin, da), macc[c]);
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_mul_ps(b->d, da), acc[c]);
    }
}

/* Tokens c0..c0+CT-1 over the kc unpacked super-blocks; y0 = token c0's block k0, bs0 its pair sums. */
static ALWAYS_INLINE void x16k_pass_k45(const bool five, const int CT, const x16k_block *blk, int64_t kc,
                                        const uint8_t *y0, size_t as, const int32_t *bs0, __m512 *acc, __m512 *macc) {
    __m512 ac[X16_CT], mc[X16_CT];
    for (int c = 0; c < CT; c++) ac[c] = acc[c], mc[c] = macc[c];
    for (int64_t k = 0; k < kc; k++) {
        const plm_block_q8_K *y[X16_CT];
        const int32_t *bs[X16_CT];
        for (int c = 0; c < CT; c++) y[c] = BLOCK(plm_block_q8_K, y0, as, c, k), bs[c] = bs0 + 4 * (c * kc + k);
        x16k_steps_k45(five, CT, &blk[k], y, bs, ac, mc);
    }
    for (int c = 0; c < CT; c++) acc[c] = ac[c], macc[c] = mc[c];
}

static ALWAYS_INLINE void gemm_k45(const bool five, int64_t n, const void *vw, size_t ws, int nr, const void *va,
                                   size_t as, int nc, float *out, int64_t ldo, bool accumulate) {
    const uint8_t *w = vw, *a = va;
    const int64_t nb = n / PLM_QK_K;
    if (nc == 1) {
        rows_k45(five, nb, w, ws, nr, a, out, accumulate); /* Q4_K: the AVX2 table's bits (its vec_dot is this table's) */
        return;
    }
    int32_t bsp[4 * X16_COLS * X16K_CHUNK]; /* the activation's pair sums for the unpacked super-blocks */
    __m512 acc[X16_COLS], macc[X16_COLS];
    x16k_block blk[X16K_CHUNK];
    for (int c0 = 0; c0 < nc; c0 += X16_COLS) {
        const int ncg = nc - c0 < X16_COLS ? nc - c0 : X16_COLS;
        for (int r0 = 0; r0 < nr; r0 += 16) {
            int rows[16];
            for (int j = 0; j < 16; j++) rows[j] = r0 + j < nr ? r0 + j : nr - 1;
            for (int c = 0; c < ncg; c++) acc[c] = macc[c] = _mm512_setzero_ps();
            for (int64_t k0 = 0; k0 < nb; k0 += X16K_CHUNK) {
                const int64_t kc = nb - k0 < X16K_CHUNK ? nb - k0 : X16K_CHUNK;
                for (int64_t k = 0; k < kc; k++) {
                    prefetch_group_l2(w + (size_t)r0 * ws, ws, k45_size(five), k0 + k);
                    x16k_unpack_k45(five, w, ws, rows, k0 + k, &blk[k]);
                }
                for (int c = 0; c < ncg; c++)
                    for (int64_t k = 0; k < kc; k++)
                        q8_K_pair_sums(BLOCK(plm_block_q8_K, a, as, c0 + c, k0 + k), &bsp[4 * (c * kc + k)]);
                const uint8_t *y0 = a + (size_t)c0 * as + (size_t)k0 * sizeof(plm_block_q8_K);
                int c = 0;
                for (; c + X16_CT <= ncg; c += X16_CT)
                    x16k_pass_k45(five, X16_CT, blk, kc, y0 + (size_t)c * as, as, &bsp[4 * c * kc], &acc[c], &macc[c]);
                for (; c < ncg; c++)
                    x16k_pass_k45(five, 1, blk, kc, y0 + (size_t)c * as, as, &bsp[4 * c * kc], &acc[c], &macc[c]);
            }
            for (int c = 0; c < ncg; c++)
                x16_store(_mm512_sub_ps(acc[c], macc[c]), nr - r0 < 16 ? nr - r0 : 16, out + (int64_t)(c0 + c) * ldo + r0,
                          accumulate);
        }
    }
}

static void gemm_q4_K(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nc, float *out,
                      int64_t ldo, bool accumulate) {
    gemm_k45(false, n, w, ws, nr, a, as, nc, out, ldo, accumulate);
}
static void gemm_q5_K(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nc, float *out,
                      int64_t ldo, bool accumulate) {
    gemm_k45(true, n, w, ws, nr, a, as, nc, out, ldo, accumulate);
}
static float dot_q5_K(int64_t n, const void *w, const void *a) {
    float r;
    rows_k45(true, n / PLM_QK_K, w, 0, 1, a, &r, false);
    return r;
}

/* Q6_K: q in [0, 63] goes in unsigned; the -32 offset is 32 * sum(scale_t *
 * bsums_t) per super-block. Half h of a super-block unpacks into two ZMM of 64
 * consecutive elements each: qa (elements 128h + 0..63: ql[64h..64h+63] low
 * nibbles, qh bits 0-1 and 2-3) and qb (128h + 64..127: the high nibbles, qh
 * bits 4-5 and 6-7); sub-block t = element / 16. */
static ALWAYS_INLINE void q6k_unpack_half(const plm_block_q6_K *b, int h, __m512i *qa, __m512i *qb) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m2h = _mm512_set1_epi8(0x30);
    const __m512i ql = _mm512_loadu_si512(b->ql + 64 * h);
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));
    const __m512i sa = _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2), sb = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
    *qa = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(_mm512_sllv_epi64(qh, sa), m2h));
    *qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), _mm512_and_si512(_mm512_srlv_epi64(qh, sb), m2h));
}

/* Q6_K, many tokens: v[4 t + g] = sub-block t (16 elements), elements 4g..4g+3 of each row. */
typedef struct x16k6_block {
    __m512i v[64];
    __m512i sc[16]; /* sub-block t's scale (signed) in each row's lane */
    __m512i scp[8]; /* scales of sub-blocks 2t and 2t+1 as the two int16 of each row's lane */
    __m512 d;
} x16k6_block;

/* 4 x 4 transpose of 128-bit lanes: out[u] lane l = lane u of z[l]. */
static ALWAYS_INLINE void transpose_lanes(const __m512i z[4], __m512i out[4]) {
    const __m512i t0 = _mm512_shuffle_i64x2(z[0], z[1], 0x44), t1 = _mm512_shuffle_i64x2(z[0], z[1], 0xee);
    const __m512i t2 = _mm512_shuffle_i64x2(z[2], z[3], 0x44), t3 = _mm512_shuffle_i64x2(z[2], z[3], 0xee);
    out[0] = _mm512_shuffle_i64x2(t0, t2, 0x88);
    out[1] = _mm512_shuffle_i64x2(t0, t2, 0xdd);
    out[2] = _mm512_shuffle_i64x2(t1, t3, 0x88);
    out[3] = _mm512_shuffle_i64x2(t1, t3, 0xdd);
}

static ALWAYS_INLINE void x16k_unpack_q6_K(const uint8_t *w, size_t ws, const int rows[16], int64_t i, x16k6_block *o) {
    const plm_block_q6_K *b[16];
    for (int j = 0; j < 16; j++) b[j] = BLOCK(plm_block_q6_K, w, ws, rows[j], i);
    for (int h = 0; h < 2; h++) {
        __m512i q[16][2];
        for (int r = 0; r < 16; r++) q6k_unpack_half(b[r], h, &q[r][0], &q[r][1]);
        for (int e = 0; e < 2; e++) {
            /* xs[u][j]: sub-block 8h + 4e + u of rows j, j+4, j+8, j+12 */
            __m512i xs[4][4];
            for (int j = 0; j < 4; j++) {
                const __m512i z[4] = {q[j][e], q[j + 4][e], q[j + 8][e], q[j + 12][e]};
                __m512i t[4];
                transpose_lanes(z, t);
                for (int u = 0; u < 4; u++) xs[u][j] = t[u];
            }
            for (int u = 0; u < 4; u++) x16_transpose(xs[u], o->v + 4 * (8 * h + 4 * e + u));
        }
    }
    uint32_t sc[16][16], scp[8][16];
    plm_f16 d[16];
    for (int r = 0; r < 16; r++) {
        for (int t = 0; t < 16; t++) sc[t][r] = (uint32_t)(int32_t)b[r]->scales[t];
        for (int t = 0; t < 8; t++)
            scp[t][r] = (uint32_t)(uint16_t)(int16_t)b[r]->scales[2 * t] | (uint32_t)(uint16_t)(int16_t)b[r]->scales[2 * t + 1] << 16;
        d[r] = b[r]->d;
    }
    for (int t = 0; t < 16; t++) o->sc[t] = _mm512_loadu_si512(sc[t]);
    for (int t = 0; t < 8; t++) o->scp[t] = _mm512_loadu_si512(scp[t]);
    o->d = f16x16(d);
}

/* acc[c] += super-block . token c for CT tokens at once (each weight vector loaded once for all). */
static ALWAYS_INLINE void x16k_steps_q6_K(const int CT, const x16k6_block *b, const plm_block_q8_K *const a[],
                                          __m512 acc[]) {
    __m512i isum[X16_CT];
    for (int c = 0; c < CT; c++) isum[c] = _mm512_setzero_si512();
    for (int t = 0; t < 16; t++) {
        const __m512i *v = b->v + 4 * t;
        __m512i s[X16_CT];
        for (int c = 0; c < CT; c++) s[c] = _mm512_setzero_si512();
        for (int g = 0; g < 4; g++) {
            const __m512i vg = v[g];
            for (int c = 0; c < CT; c++) s[c] = dpbusd_b4(s[c], vg, a[c]->qs + 16 * t + 4 * g);
        }
        for (int c = 0; c < CT; c++) isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(s[c], b->sc[t]));
    }
    for (int c = 0; c < CT; c++) {
        __m512i off = _mm512_setzero_si512();
        for (int t = 0; t < 8; t++) {
            const int32_t pair =
                (int32_t)((uint32_t)(uint16_t)a[c]->bsums[2 * t] | (uint32_t)(uint16_t)a[c]->bsums[2 * t + 1] << 16);
            off = _mm512_dpwssd_epi32(off, b->scp[t], _mm512_set1_epi32(pair));
        }
        const __m512i total = _mm512_sub_epi32(isum[c], _mm512_slli_epi32(off, 5));
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), _mm512_mul_ps(b->d, _mm512_set1_ps(a[c]->d)), acc[c]);
    }
}

static ALWAYS_INLINE void x16k_pass_q6_K(const int CT, const x16k6_block *blk, int64_t kc, const uint8_t *y0, size_t as,
                                         __m512 *acc) {
    __m512 ac[X16_CT];
    for (int c = 0; c < CT; c++) ac[c] = acc[c];
    for (int64_t k = 0; k < kc; k++) {
        const plm_block_q8_K *y[X16_CT];
        for (int c = 0; c < CT; c++) y[c] = BLOCK(plm_block_q8_K, y0, as, c, k);
        x16k_steps_q6_K(CT, &blk[k], y, ac);
    }
    for (int c = 0; c < CT; c++) acc[c] = ac[c];
}

static void gemm_q6_K(int64_t n, const void *vw, size_t ws, int nr, const void *va, size_t as, int nc, float *out,
                      int64_t ldo, bool accumulate) {
    const uint8_t *w = vw, *a = va;
    const int64_t nb = n / PLM_QK_K;
    if (nc == 1) { /* the AVX2 row tiles: same bits (see g_decode) */
        g_decode[PLM_TYPE_Q6_K](n, vw, ws, nr, va, as, nc, out, ldo, accumulate);
        return;
    }
    __m512 acc[X16_COLS];
    x16k6_block blk[X16K_CHUNK];
    for (int c0 = 0; c0 < nc; c0 += X16_COLS) {
        const int ncg = nc - c0 < X16_COLS ? nc - c0 : X16_COLS;
        for (int r0 = 0; r0 < nr; r0 += 16) {
            int rows[16];
            for (int j = 0; j < 16; j++) rows[j] = r0 + j < nr ? r0 + j : nr - 1;
            for (int c = 0; c < ncg; c++) acc[c] = _mm512_setzero_ps();
            for (int64_t k0 = 0; k0 < nb; k0 += X16K_CHUNK) {
                const int64_t kc = nb - k0 < X16K_CHUNK ? nb - k0 : X16K_CHUNK;
                for (int64_t k = 0; k < kc; k++) {
                    prefetch_group_l2(w + (size_t)r0 * ws, ws, sizeof(plm_block_q6_K), k0 + k);
                    x16k_unpack_q6_K(w, ws, rows, k0 + k, &blk[k]);
                }
                const uint8_t *y0 = a + (size_t)c0 * as + (size_t)k0 * sizeof(plm_block_q8_K);
                int c = 0;
                for (; c + X16_CT <= ncg; c += X16_CT) x16k_pass_q6_K(X16_CT, blk, kc, y0 + (size_t)c * as, as, &acc[c]);
                for (; c < ncg; c++) x16k_pass_q6_K(1, blk, kc, y0 + (size_t)c * as, as, &acc[c]);
            }
            for (int c = 0; c < ncg; c++)
                x16_store(acc[c], nr - r0 < 16 ? nr - r0 : 16, out + (int64_t)(c0 + c) * ldo + r0, accumulate);
        }
    }
}

/* Q2_K and Q3_K, vec_dot only (no gemm: matmul.c calls it per entry). Element
 * 128c + 32j + 16h + l is bits 2j of qs[32c + 16h + l] and belongs to
 * sub-block 8c + 2j + h = element / 16; a ZMM of 64 consecutive elements
 * (j and j + 1) is the 32 bytes at qs + 32c in both halves, shifted by 2j and
 * 2j + 2. Each lane sums 4 products (an int16), scaled by vpdpwssd. */

/* 16 sums of 16 products (int32 lanes) -> scale each by its sub-block's int16 scale (dword t low half) and add. */
static ALWAYS_INLINE __m512i k23_scaled(__m512i isum, __m512i p, __m512i s32, __m512i pick) {
    return _mm512_dpwssd_epi32(isum, p, _mm512_permutexvar_epi32(pick, s32));
}

/* sum over 16 sub-blocks of scale16[t] * bsums[t] (scale16: 16 int16). */
static ALWAYS_INLINE int32_t k23_scale_bsums(__m256i scale16, const plm_block_q8_K *y) {
    const __m256i s = _mm256_madd_epi16(scale16, _mm256_loadu_si256((const __m256i *)y->bsums));
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(h);
}

static float dot_q2_K(int64_t n, const void *vw, const void *va) {
    const plm_block_q2_K *w = vw;
    const plm_block_q8_K *y = va;
    const __m512i three = _mm512_set1_epi8(3), step4 = _mm512_set1_epi32(4);
    float acc = 0.0f, macc = 0.0f;
    for (int64_t i = 0; i < n / PLM_QK_K; i++) {
        const __m128i sm = _mm_loadu_si128((const __m128i *)w[i].scales);
        const __m128i m4 = _mm_set1_epi8(0x0f);
        const __m512i s32 = _mm512_cvtepu8_epi32(_mm_and_si128(sm, m4));
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m4));
        __m512i isum = _mm512_setzero_si512();
        __m512i pick = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        for (int c = 0; c < 2; c++) {
            const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * c)));
            for (int j = 0; j < 4; j += 2) {
                const __m512i cnt = _mm512_setr_epi64(2 * j, 2 * j, 2 * j, 2 * j, 2 * j + 2, 2 * j + 2, 2 * j + 2, 2 * j + 2);
                const __m512i u = _mm512_and_si512(_mm512_srlv_epi64(q, cnt), three);
                const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, _mm512_loadu_si512(y[i].qs + 128 * c + 32 * j));
                isum = k23_scaled(isum, p, s32, pick);
                pick = _mm512_add_epi32(pick, step4);
            }
        }
        acc = fmaf((float)_mm512_reduce_add_epi32(isum), h2f(w[i].d) * y[i].d, acc);
        macc = fmaf((float)k23_scale_bsums(mins, &y[i]), h2f(w[i].dmin) * y[i].d, macc);
    }
    return acc - macc;
}

/* Q3_K's sixteen 6-bit scales as int8 (scale - 32): the low nibbles of bytes
 * 0..7 are scales 0..7, their high nibbles scales 8..15; the top 2 bits of
 * scale j are bits 2*(j/4) of byte 8 + j%4. */
static inline __m128i q3k_scales(const uint8_t *s) {
    uint32_t hi;
    memcpy(&hi, s + 8, 4);
    const __m128i lo8 = _mm_loadl_epi64((const __m128i *)s);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i low = _mm_unpacklo_epi64(_mm_and_si128(lo8, m4), _mm_and_si128(_mm_srli_epi16(lo8, 4), m4));
    const __m128i top = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32((int)hi), _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
    return _mm_sub_epi8(_mm_or_si128(low, _mm_slli_epi16(top, 4)), _mm_set1_epi8(32));
}

/* Q3_K: value = 2 low bits + 4 * (hmask bit) - 4, the high bit of element
 * 128c + 32j + l being bit 4c + j of hmask[l]; the -4 is 4 * sum(scale * bsums). */
static float dot_q3_K(int64_t n, const void *vw, const void *va) {
    const plm_block_q3_K *w = vw;
    const plm_block_q8_K *y = va;
    const __m512i three = _mm512_set1_epi8(3), one = _mm512_set1_epi8(1), step4 = _mm512_set1_epi32(4);
    float acc = 0.0f;
    for (int64_t i = 0; i < n / PLM_QK_K; i++) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(q3k_scales(w[i].scales));
        const __m512i s32 = _mm512_cvtepu16_epi32(sc16); /* int16 scale in the low half, 0 in the high half */
        const __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)w[i].hmask));
        __m512i isum = _mm512_setzero_si512();
        __m512i pick = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        for (int c = 0; c < 2; c++) {
            const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * c)));
            for (int j = 0; j < 4; j += 2) {
                const __m512i cnt = _mm512_setr_epi64(2 * j, 2 * j, 2 * j, 2 * j, 2 * j + 2, 2 * j + 2, 2 * j + 2, 2 * j + 2);
                const int hb = 4 * c + j;
                const __m512i hcnt = _mm512_setr_epi64(hb, hb, hb, hb, hb + 1, hb + 1, hb + 1, hb + 1);
                const __m512i high = _mm512_and_si512(_mm512_srlv_epi64(hm, hcnt), one);
                const __m512i u = _mm512_or_si512(_mm512_and_si512(_mm512_srlv_epi64(q, cnt), three), _mm512_slli_epi16(high, 2));
                const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, _mm512_loadu_si512(y[i].qs + 128 * c + 32 * j));
                isum = k23_scaled(isum, p, s32, pick);
                pick = _mm512_add_epi32(pick, step4);
            }
        }
        const int32_t total = _mm512_reduce_add_epi32(isum) - 4 * k23_scale_bsums(sc16, &y[i]);
        acc = fmaf((float)total, h2f(w[i].d) * y[i].d, acc);
    }
    return acc;
}

/* ------------------------------------------------------------- LoRA */

/* quant.h's lora_b32 with VNNI (lora_half, above), a run's two halves in turn. Ranks above 4 LORA_G_MAX take the
 * reference (the same exact sums). */
static void lora_b32(int nb, int32_t rank4, const int8_t *uq, float c, const uint8_t *run, int64_t run_bytes, float *o) {
    const int ng = rank4 / 4;
    if (ng > LORA_G_MAX) {
        plm_kernels_ref()->lora_b32(nb, rank4, uq, c, run, run_bytes, o);
        return;
    }
    int32_t up[LORA_G_MAX], un[LORA_G_MAX];
    lora_pack_u(uq, ng, up, un);
    const __m512 cv = _mm512_set1_ps(c);
    for (int b = 0; b < nb; b++, run += run_bytes, o += PLM_QK)
        for (int h = 0; h < 2; h++)
            _mm512_storeu_ps(o + 16 * h, _mm512_add_ps(_mm512_loadu_ps(o + 16 * h), lora_half(run, h, ng, up, un, rank4, cv)));
}

/* ------------------------------------------------------------- softmax */

/* exp of 16 floats as the AVX2 table's exp8_ps (quant.h: within a few ulp of expf), with vscalefps
 * for the times 2^n, which rounds subnormal results once and overflows to inf by itself. */
static inline __m512 exp16_ps(__m512 x) {
    const __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(89.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504089f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693147182464599609375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-1.904654299957768e-09f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_mask_mov_ps(_mm512_scalef_ps(p, n), _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

/* kqt_f16 (quant.h) with a block's 16 cells in one register per d (one load, one conversion), each row a
 * chain of FMAs over d per block: up to 4 rows x 4 blocks of chains side by side, so that the FMAs' latency
 * (4 cycles, one chain is 64 of them at head size 64) is hidden behind the others' work. */
static ALWAYS_INLINE void kqt_rows(const int NR, const int NB, int64_t hd, const plm_f16 *kt, int64_t kbs,
                                   const float *q, int64_t qs, float *s, int64_t ss, int nc) {
    __m512 acc[4][4];
    for (int r = 0; r < NR; r++)
        for (int b = 0; b < NB; b++) acc[r][b] = _mm512_setzero_ps();
    for (int64_t d = 0; d < hd; d++) {
        __m512 k[4];
        for (int b = 0; b < NB; b++) k[b] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(kt + b * kbs + PLM_KV_BLOCK * d)));
        for (int r = 0; r < NR; r++) {
            const __m512 qd = _mm512_set1_ps(q[r * qs + d]);
            for (int b = 0; b < NB; b++) acc[r][b] = _mm512_fmadd_ps(qd, k[b], acc[r][b]);
        }
    }
    for (int b = 0; b < NB; b++) {
        const int n = nc - 16 * b < 16 ? nc - 16 * b : 16;
        const __mmask16 m = (__mmask16)((1u << n) - 1u);
        for (int r = 0; r < NR; r++) _mm512_mask_storeu_ps(s + r * ss + 16 * b, m, acc[r][b]);
    }
}

static ALWAYS_INLINE void kqt_blocks(const int NB, int64_t hd, const plm_f16 *kt, int64_t kbs, int nc, const float *q,
                                     int64_t qs, int nr, float *s, int64_t ss) {
#define KQT_ROWS(R, r) kqt_rows(R, NB, hd, kt, kbs, q + (r) * qs, qs, s + (r) * ss, ss, nc)
    PLM_BY_FOURS(nr, KQT_ROWS);
#undef KQT_ROWS
}

static void kqt_f16(int64_t hd, const plm_f16 *kt, int64_t kbs, int nc, const float *q, int64_t qs, int nr, float *s,
                    int64_t ss) {
    for (; nc > 0; nc -= 64, kt += 4 * kbs, s += 64) { /* PLM_ATTN_CELLS is 64; more would come 64 at a time */
        switch (((nc < 64 ? nc : 64) + 15) / 16) {
        case 1: kqt_blocks(1, hd, kt, kbs, nc, q, qs, nr, s, ss); break;
        case 2: kqt_blocks(2, hd, kt, kbs, nc, q, qs, nr, s, ss); break;
        case 3: kqt_blocks(3, hd, kt, kbs, nc, q, qs, nr, s, ss); break;
        default: kqt_blocks(4, hd, kt, kbs, nc < 64 ? nc : 64, q, qs, nr, s, ss); break;
        }
    }
}

/* pv8_f16 (quant.h) with 16 dimensions per FMA and each row's sums in registers across the whole run of cells:
 * per 64 dimensions and 4 rows, each cell's values are converted once (4 conversions) and meet the 4 rows'
 * probabilities (up to 16 FMAs); a row's chain over its nonzero cells in order per lane, the reference's bits.
 * Head sizes that are not a multiple of 16 take the AVX2 table's. */
static void (*g_pv8_avx2)(int64_t hd, const plm_f16 *v, int64_t stride, int nc, const float *p, int64_t ps, int nr,
                          float *o, int64_t os);

static ALWAYS_INLINE void pv_rows(const int R, const int K, const plm_f16 *v, int64_t stride, int nc, const float *p,
                                  int64_t ps, float *o, int64_t os) {
    __m512 acc[4][4];
    for (int r = 0; r < R; r++)
        for (int k = 0; k < K; k++) acc[r][k] = _mm512_loadu_ps(o + r * os + 16 * k);
    for (int c = 0; c < nc; c++) {
        __m512 x[4];
        for (int k = 0; k < K; k++) x[k] = f16x16(v + c * stride + 16 * k);
        for (int r = 0; r < R; r++) {
            const float pc = p[r * ps + c];
            if (pc == 0.0f) continue;
            const __m512 pb = _mm512_set1_ps(pc);
            for (int k = 0; k < K; k++) acc[r][k] = _mm512_fmadd_ps(pb, x[k], acc[r][k]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int k = 0; k < K; k++) _mm512_storeu_ps(o + r * os + 16 * k, acc[r][k]);
}

static ALWAYS_INLINE void pv_chunk(const int K, const plm_f16 *v, int64_t stride, int nc, const float *p, int64_t ps,
                                   int nr, float *o, int64_t os) {
#define PV_ROWS(R, r) pv_rows(R, K, v, stride, nc, p + (r) * ps, ps, o + (r) * os, os)
    PLM_BY_FOURS(nr, PV_ROWS);
#undef PV_ROWS
}

static void pv8_f16(int64_t hd, const plm_f16 *v, int64_t stride, int nc, const float *p, int64_t ps, int nr, float *o,
                    int64_t os) {
    if (hd % 16) {
        g_pv8_avx2(hd, v, stride, nc, p, ps, nr, o, os);
        return;
    }
    for (int64_t d0 = 0; d0 < hd; d0 += 64) {
        switch ((hd - d0 < 64 ? hd - d0 : 64) / 16) {
        case 1: pv_chunk(1, v + d0, stride, nc, p, ps, nr, o + d0, os); break;
        case 2: pv_chunk(2, v + d0, stride, nc, p, ps, nr, o + d0, os); break;
        case 3: pv_chunk(3, v + d0, stride, nc, p, ps, nr, o + d0, os); break;
        default: pv_chunk(4, v + d0, stride, nc, p, ps, nr, o + d0, os); break;
        }
    }
}

/* Lane j of the sum adds the elements j, j + 16, j + 32, ... in order (a tail's missing lanes add 0). */
static float exp_sum_f32(float *x, int64_t n, float scale, float sub) {
    const __m512 vs = _mm512_set1_ps(scale), vsub = _mm512_set1_ps(sub);
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 e = exp16_ps(_mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vs), vsub));
        _mm512_storeu_ps(x + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        const __m512 e = exp16_ps(_mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), vs), vsub));
        _mm512_mask_storeu_ps(x + i, k, e);
        acc = _mm512_mask_add_ps(acc, k, acc, e);
    }
    return _mm512_reduce_add_ps(acc);
}

/* quant.h's rmsnorm: the 8 chains of double sums are the 8 lanes of one register (8 squares converted per
 * addition), then the scaling 16 lanes at a time. */
static void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    __m512d acc = _mm512_setzero_pd();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 v = _mm256_loadu_ps(x + j);
        acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_mul_ps(v, v)));
    }
    double c[8];
    _mm512_storeu_pd(c, acc);
    const float scale = plm_rmsnorm_scale(c, x, j, n, eps);
    const __m512 vs = _mm512_set1_ps(scale);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vs), _mm512_loadu_ps(w + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs),
                                                         _mm512_maskz_loadu_ps(m, w + i)));
    }
}

/* quant.h's argmax_f32: the largest by 16 lanes (a NaN lane keeps the lane's maximum and is remembered), then the
 * first lane equal to it (or the first NaN), 16 at a time. */
static int64_t argmax_f32(const float *x, int64_t n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    __mmask16 bad = 0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        bad |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        m = _mm512_max_ps(v, m); /* a NaN in v gives m's lane */
    }
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + i);
        bad |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        m = _mm512_max_ps(v, m);
    }
    const float mx = _mm512_reduce_max_ps(m);
    const __m512 vmx = _mm512_set1_ps(mx);
    for (i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        const __mmask16 hit = bad ? _mm512_mask_cmp_ps_mask(k, v, v, _CMP_UNORD_Q) : _mm512_mask_cmp_ps_mask(k, v, vmx, _CMP_EQ_OQ);
        if (hit) return bad ? -1 - (i + __builtin_ctz(hit)) : i + __builtin_ctz(hit);
    }
    return 0; /* not reached: some lane holds the maximum */
}

/* quant.h's silu_mul: exp_sum_f32's exp of g * -1 - 0, then the quotient and the product, 16 lanes at a time. */
static void silu_mul(float *g, const float *u, int64_t n) {
    const __m512 neg = _mm512_set1_ps(-1.0f), zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_loadu_ps(g + i);
        const __m512 e = exp16_ps(_mm512_sub_ps(_mm512_mul_ps(x, neg), zero));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(one, e)), _mm512_loadu_ps(u + i)));
    }
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        const __m512 x = _mm512_maskz_loadu_ps(k, g + i);
        const __m512 e = exp16_ps(_mm512_sub_ps(_mm512_mul_ps(x, neg), zero));
        _mm512_mask_storeu_ps(g + i, k, _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(k, u + i)));
    }
}

/* quant.h's gelu_bias, 16 lanes at a time (the tail under a mask): the reference's operations lane by lane (the
 * piece's coefficients picked by a lane permute), so bit-identical to it. */
static ALWAYS_INLINE __m512 gelu16(__m512 v) {
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    const __m512 x = _mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752f));
    const __m512 a = _mm512_min_ps(_mm512_castsi512_ps(_mm512_andnot_si512(sign, _mm512_castps_si512(x))), _mm512_set1_ps(4.0f));
    const __m512i k = _mm512_min_epi32(_mm512_cvttps_epi32(_mm512_mul_ps(a, _mm512_set1_ps(2.0f))),
                                       _mm512_set1_epi32(PLM_ERF_PIECES - 1));
    const __m512 t = _mm512_sub_ps(a, _mm512_fmadd_ps(_mm512_cvtepi32_ps(k), _mm512_set1_ps(0.5f), _mm512_set1_ps(0.25f)));
    __m512 p = _mm512_permutexvar_ps(k, _mm512_castps256_ps512(_mm256_loadu_ps(plm_erf_coef[PLM_ERF_DEGREE])));
    for (int j = PLM_ERF_DEGREE - 1; j >= 0; j--)
        p = _mm512_fmadd_ps(p, t, _mm512_permutexvar_ps(k, _mm512_castps256_ps512(_mm256_loadu_ps(plm_erf_coef[j]))));
    const __m512i e = _mm512_or_si512(_mm512_andnot_si512(sign, _mm512_castps_si512(p)), _mm512_and_si512(sign, _mm512_castps_si512(x)));
    const __m512 h = _mm512_mul_ps(v, _mm512_set1_ps(0.5f));
    return _mm512_fmadd_ps(h, _mm512_castsi512_ps(e), h); /* e = copysignf(p, x) */
}

static void gelu_bias(float *y, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, y + i);
        if (b) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b + i));
        _mm512_mask_storeu_ps(y + i, m, gelu16(v));
    }
}

/* ------------------------------------------------------------- table */

static plm_kernels g_table;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    const plm_kernels *avx2 = plm_kernels_avx2_table();
    g_table = *avx2;
    g_table.name = "avx512";
    const plm_type decode_by_avx2[] = {PLM_TYPE_Q4_0, PLM_TYPE_Q4_1, PLM_TYPE_Q5_0, PLM_TYPE_Q8_0, PLM_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof decode_by_avx2 / sizeof decode_by_avx2[0]; i++)
        g_decode[decode_by_avx2[i]] = avx2->gemm[decode_by_avx2[i]]; /* vec_dot stays the AVX2 one */
    g_table.vec_dot[PLM_TYPE_Q5_1] = dot_q5_1;
    g_table.vec_dot[PLM_TYPE_Q2_K] = dot_q2_K;
    g_table.vec_dot[PLM_TYPE_Q3_K] = dot_q3_K;
    g_table.vec_dot[PLM_TYPE_Q5_K] = dot_q5_K;
    g_table.gemm[PLM_TYPE_Q4_0] = gemm_q4_0;
    g_table.gemm[PLM_TYPE_Q4_1] = gemm_q4_1;
    g_table.gemm[PLM_TYPE_Q5_0] = gemm_q5_0;
    g_table.gemm[PLM_TYPE_Q5_1] = gemm_q5_1;
    g_table.gemm[PLM_TYPE_Q8_0] = gemm_q8_0;
    g_table.gemm_x16[PLM_TYPE_Q4_0] = gemm_x16_q4_0;
    g_table.gemm_x16[PLM_TYPE_Q4_1] = gemm_x16_q4_1;
    g_table.gemm_x16[PLM_TYPE_Q5_0] = gemm_x16_q5_0;
    g_table.gemm_x16[PLM_TYPE_Q5_1] = gemm_x16_q5_1;
    g_table.gemm_x16[PLM_TYPE_Q8_0] = gemm_x16_q8_0;
    g_table.gemm_x16_lora[PLM_TYPE_Q4_0] = gemm_x16_lora_q4_0;
    g_table.gemm_x16_lora[PLM_TYPE_Q4_1] = gemm_x16_lora_q4_1;
    g_table.gemm_x16_lora[PLM_TYPE_Q5_0] = gemm_x16_lora_q5_0;
    g_table.gemm_x16_lora[PLM_TYPE_Q5_1] = gemm_x16_lora_q5_1;
    g_table.gemm_x16_lora[PLM_TYPE_Q8_0] = gemm_x16_lora_q8_0;
    g_table.gemm[PLM_TYPE_Q4_K] = gemm_q4_K;
    g_table.gemm[PLM_TYPE_Q5_K] = gemm_q5_K;
    g_table.gemm[PLM_TYPE_Q6_K] = gemm_q6_K;
    g_table.lora_b32 = lora_b32;
    g_table.exp_sum_f32 = exp_sum_f32;
    g_pv8_avx2 = avx2->pv8_f16;
    g_table.pv8_f16 = pv8_f16;
    g_table.kqt_f16 = kqt_f16;
    g_table.gelu_bias = gelu_bias;
    g_table.silu_mul = silu_mul;
    g_table.rmsnorm = rmsnorm;
    g_table.argmax_f32 = argmax_f32;
}

const plm_kernels *plm_kernels_avx512_table(void) {
    pthread_once(&g_once, build_table);
    return &g_table;
}
