/*
 * kernels/avx2.c — AVX2 + FMA + F16C versions of the dot kernels and of the
 * activation quantizers, one function per type, and of the attention helpers
 * (kq8/pv8, F16 rounding, the softmax's max and exp), each checked against its
 * scalar reference in quant.c by tests/c/test_quant.c.
 *
 * This file is compiled with -mavx2 -mfma -mf16c, so nothing in it may run
 * before kernels/dispatch.c has checked the CPU; its only entry point is
 * plm_kernels_avx2_table(). The quantizers are bit-identical to the reference
 * ones (same products, same rounding), so a model computes on the same
 * activations whichever table is chosen. The dot kernels sum in a different
 * order than the reference and agree with it to fp32 rounding.
 *
 * Integer products use _mm256_maddubs_epi16 (unsigned x signed bytes -> pairs
 * of int16). Weights stored with an offset (Q4_0, Q5_0, Q3_K, Q6_K) go in
 * unsigned and the offset is subtracted as offset * sum(a) (from a second
 * maddubs, or from the Q8_K bsums); unsigned formats (Q4_1, Q5_1, Q2_K, Q4_K,
 * Q5_K) go in directly; Q8_0 weights get their sign moved onto the activation
 * (|w| * sign(w)a). No int16 pair can saturate: weights in [0, 63] (or |w| <=
 * 128) times activations in [-127, 127].
 */
#include "quant.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

/* ------------------------------------------------------------- helpers */

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hsum_ps128(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

static inline float h2f(plm_f16 h) { return _cvtsh_ss(h); }
/* float -> F16 by vcvtps2ph, rounding to nearest even: the reference's plm_f32_to_f16 bit for bit (NaN payloads
 * included; test_quant compares the activation quantizers), without its call. */
static inline plm_f16 f2h(float f) { return (plm_f16)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

/* fp16 -> fp32 by table (256 KB, filled when the table is built): in the
 * 32-element kernels, where two to four scales are converted per 32 elements,
 * a load beats F16C's movzx/vmovd/vcvtph2ps. The scales of one model touch few
 * of its cache lines. */
static float g_f16_table[1 << 16];

static inline float sf(plm_f16 h) { return g_f16_table[h]; }

/* 16 bytes of nibbles -> 32 bytes: low nibbles (elements 0..15) in the low
 * lane, high nibbles (elements 16..31) in the high lane. A broadcast load and
 * a per-lane variable shift cost one ALU uop less than shift + insert. */
static inline __m256i unpack_nibbles(const uint8_t *p) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_srlv_epi64(b, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0f));
}

/* Two adjacent fp16 values of a weight block (d and m) and of an activation
 * block (d and s), converted together: returns [wd*ad, wm*as, ...]. */
static inline __m128 scale_min_pair(const plm_f16 *w, const plm_f16 *a) {
    int32_t x, y;
    memcpy(&x, w, 4);
    memcpy(&y, a, 4);
    const __m128 f = _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128(x), y, 1));
    return _mm_mul_ps(f, _mm_movehl_ps(f, f));
}

/* 32 bits -> 32 bytes, 0xFF where the bit is set (byte j <- bit j). */
static inline __m256i bits_to_bytes(const uint8_t *p) {
    uint32_t x;
    memcpy(&x, p, sizeof x);
    const __m256i shuf = _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202,
                                            0x0303030303030303);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x((long long)0x7fbfdfeff7fbfdfeULL));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

/* Unsigned bytes x signed bytes, summed in groups of 4 into 8 int32. */
static inline __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* Broadcast 16-bit word k of a 128-bit value (copied in both lanes) across a
 * lane: k_word_shuf[k]. k_pair_shuf[k] puts word 2k in the low lane and word
 * 2k+1 in the high lane, for kernels whose 32-byte vector spans two scales. */
static const uint8_t k_word_shuf[8][32] = {
#define W(k) {2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, \
              2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k,      \
              2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1}
    W(0), W(1), W(2), W(3), W(4), W(5), W(6), W(7)
#undef W
};

static const uint8_t k_pair_shuf[4][32] = {
#define P(a, b) {2 * a, 2 * a + 1, 2 * a, 2 * a + 1, 2 * a, 2 * a + 1, 2 * a, 2 * a + 1, 2 * a, 2 * a + 1, 2 * a, \
                 2 * a + 1, 2 * a, 2 * a + 1, 2 * a, 2 * a + 1, 2 * b, 2 * b + 1, 2 * b, 2 * b + 1, 2 * b,      \
                 2 * b + 1, 2 * b, 2 * b + 1, 2 * b, 2 * b + 1, 2 * b, 2 * b + 1, 2 * b, 2 * b + 1, 2 * b, 2 * b + 1}
    P(0, 1), P(2, 3), P(4, 5), P(6, 7)
#undef P
};

static inline __m256i shuf(const uint8_t *table) { return _mm256_loadu_si256((const __m256i *)table); }

/* --------------------------------------------------------------- tiles
 * A tile kernel computes R weight rows x C activation rows at once: each
 * weight block is unpacked once for C tokens and each activation block is
 * loaded once for R rows. Every (row, token) entry goes through the same
 * operations in the same order whatever R and C are, and vec_dot is the 1 x 1
 * tile, so prefill, decode and label scoring agree bit for bit. The bodies
 * take R and C as constants (always inlined into one small function per
 * shape); run_tiles walks an nr x nc region in tiles. */

#define TILE_R 4 /* 4 x 2 measured fastest for the 32-element formats (of 4x2..4x4, 3x3, 2x4) */
#define TILE_C 2
#define ALWAYS_INLINE inline __attribute__((always_inline))

typedef void (*tile_fn)(int64_t nb, const uint8_t *w, size_t ws, const uint8_t *a, size_t as, float *out,
                        int64_t ldo, bool accumulate);

/* One function per tile shape from a body tile_<kind>(R, C, ...), and the
 * table [C - 1][R - 1] of them. */
#define TILE_SHAPE(kind, R, C)                                                                                  \
    static void kind##_##R##x##C(int64_t nb, const uint8_t *w, size_t ws, const uint8_t *a, size_t as,        \
                                 float *out, int64_t ldo, bool accumulate) {                                  \
        tile_##kind(R, C, nb, w, ws, a, as, out, ldo, accumulate);                                            \
    }
#define TILE_SHAPES(kind)                                                                                       \
    TILE_SHAPE(kind, 1, 1) TILE_SHAPE(kind, 2, 1) TILE_SHAPE(kind, 3, 1) TILE_SHAPE(kind, 4, 1)               \
    TILE_SHAPE(kind, 1, 2) TILE_SHAPE(kind, 2, 2) TILE_SHAPE(kind, 3, 2) TILE_SHAPE(kind, 4, 2)               \
    static const tile_fn kind##_tiles[TILE_C][TILE_R] = {                                                     \
        {kind##_1x1, kind##_2x1, kind##_3x1, kind##_4x1}, {kind##_1x2, kind##_2x2, kind##_3x2, kind##_4x2}};

static void run_tiles(const tile_fn tiles[TILE_C][TILE_R], int64_t nb, const void *vw, size_t ws, int nr,
                      const void *va, size_t as, int nc, float *out, int64_t ldo, bool accumulate) {
    const uint8_t *w = vw, *a = va;
    for (int c0 = 0; c0 < nc; c0 += TILE_C) {
        const int cc = nc - c0 < TILE_C ? nc - c0 : TILE_C;
        for (int r0 = 0; r0 < nr; r0 += TILE_R) {
            const int rr = nr - r0 < TILE_R ? nr - r0 : TILE_R;
            tiles[cc - 1][rr - 1](nb, w + (size_t)r0 * ws, ws, a + (size_t)c0 * as, as, out + (int64_t)c0 * ldo + r0,
                                  ldo, accumulate);
        }
    }
}

#define BLOCK(type, base, stride, i, k) ((const type *)((base) + (size_t)(i) * (stride)) + (k))

/* Decode reads every weight once from memory, and several rows read side by
 * side defeat the hardware prefetcher (4 rows at once ran at half the speed of
 * one row at a time on a 30 MB matrix). The R rows of a tile are contiguous
 * and so is the next tile, so while block k is computed the matching slice of
 * the next tile is prefetched: one sequential stream again. */
static ALWAYS_INLINE void prefetch_next_tile(const uint8_t *w, size_t ws, const int R, size_t bs, int64_t k) {
    const uint8_t *p = w + (size_t)R * ws + (size_t)k * R * bs;
    for (size_t off = 0; off < R * bs; off += 64) _mm_prefetch((const char *)(p + off), _MM_HINT_T0);
}

/* ------------------------------------------------- 32-element formats */

/* ------------------------------------------ eight rows in eight lanes
 * For Q4_0 the weights of 8 rows go side by side, one row per 32-bit lane, so
 * that the per-block scale work is done once for 8 rows. Rows j and j+4 share
 * a 256-bit load; after splitting the nibbles, a 4 x 4 dword transpose within
 * each 128-bit half gives vectors L[g] and H[g] whose lane holds elements
 * 4g..4g+3 (L) or 16+4g..16+4g+3 (H) of one row (rows 0-3 low half, 4-7
 * high half), so the matching 4 activations are a plain broadcast load.
 * Products are summed in int16 over the block (at most 15*127*2*8 = 30480, no
 * saturation), once in int32, converted once and scaled by the vector of the
 * 8 rows' scales; the offset of 8 is taken off as 8 * sum(a), summed once per
 * activation block. Entries are exact integer sums followed by the same float
 * steps whatever the tile, so gemm and vec_dot agree bit for bit. In prefill a
 * row group's blocks are unpacked once into a stack buffer and reused for
 * every token. */

#define X8_KCHUNK 32  /* blocks of a row group unpacked at once (32 * 576 bytes) */
#define X8_COLS 64    /* tokens of one pass (their accumulators and block sums stay on the stack) */

typedef enum { X8_Q4_0, X8_Q4_1, X8_Q8_0, X8_Q5_0 } x8_kind;

typedef struct x8_block {
    __m256i v[8];  /* L[0..3], H[0..3]: unsigned weights (Q8_0: |w|) */
    __m256i sg[8]; /* Q8_0: the signed weights, whose signs go onto the activations */
    __m256 d;      /* the 8 rows' scales */
    __m256 m;      /* Q4_1: the 8 rows' mins */
} x8_block;

/* In-lane 4 x 4 dword transpose: v[g] lane j (of each half) = dword g of x[j]. */
static ALWAYS_INLINE void x8_transpose(const __m256i x[4], __m256i v[4]) {
    const __m256i t0 = _mm256_unpacklo_epi32(x[0], x[1]), t1 = _mm256_unpackhi_epi32(x[0], x[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(x[2], x[3]), t3 = _mm256_unpackhi_epi32(x[2], x[3]);
    v[0] = _mm256_unpacklo_epi64(t0, t2);
    v[1] = _mm256_unpackhi_epi64(t0, t2);
    v[2] = _mm256_unpacklo_epi64(t1, t3);
    v[3] = _mm256_unpackhi_epi64(t1, t3);
}

#define X8_F16x8(b, f) \
    _mm256_cvtph_ps(_mm_setr_epi16((short)b[0]->f, (short)b[1]->f, (short)b[2]->f, (short)b[3]->f, (short)b[4]->f, \
                                   (short)b[5]->f, (short)b[6]->f, (short)b[7]->f))

/* The nibbles of 16 bytes at q[j] for 8 rows: low nibbles (elements 0..15 of a
 * 32-element run) into lo[0..3], high nibbles (16..31) into hi[0..3]. */
static ALWAYS_INLINE void x8_nibbles(const uint8_t *const q[8], __m256i lo_out[4], __m256i hi_out[4]) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i lo[4], hi[4];
    for (int j = 0; j < 4; j++) {
        const __m256i x = _mm256_loadu2_m128i((const __m128i *)q[j + 4], (const __m128i *)q[j]);
        lo[j] = _mm256_and_si256(x, m4);
        hi[j] = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
    }
    x8_transpose(lo, lo_out);
    x8_transpose(hi, hi_out);
}

/* Block k of 8 rows (row j at w + rows[j] * ws; short groups repeat a row). */
static ALWAYS_INLINE void x8_unpack_q4_0(const uint8_t *w, size_t ws, const int rows[8], int64_t k, x8_block *o) {
    const plm_block_q4_0 *b[8];
    const uint8_t *q[8];
    for (int j = 0; j < 8; j++) b[j] = BLOCK(plm_block_q4_0, w, ws, rows[j], k), q[j] = b[j]->qs;
    x8_nibbles(q, o->v, o->v + 4);
    o->d = X8_F16x8(b, d);
}

static ALWAYS_INLINE void x8_unpack_q4_1(const uint8_t *w, size_t ws, const int rows[8], int64_t k, x8_block *o) {
    const plm_block_q4_1 *b[8];
    const uint8_t *q[8];
    for (int j = 0; j < 8; j++) b[j] = BLOCK(plm_block_q4_1, w, ws, rows[j], k), q[j] = b[j]->qs;
    x8_nibbles(q, o->v, o->v + 4);
    o->d = X8_F16x8(b, d);
    o->m = X8_F16x8(b, m);
}

/* Q8_0: rows j and j+4 side by side for elements 0..15 (L) and 16..31 (H). */
static ALWAYS_INLINE void x8_unpack_q8_0(const uint8_t *w, size_t ws, const int rows[8], int64_t k, x8_block *o) {
    const plm_block_q8_0 *b[8];
    for (int j = 0; j < 8; j++) b[j] = BLOCK(plm_block_q8_0, w, ws, rows[j], k);
    __m256i lo[4], hi[4];
    for (int j = 0; j < 4; j++) {
        lo[j] = _mm256_loadu2_m128i((const __m128i *)b[j + 4]->qs, (const __m128i *)b[j]->qs);
        hi[j] = _mm256_loadu2_m128i((const __m128i *)(b[j + 4]->qs + 16), (const __m128i *)(b[j]->qs + 16));
    }
    x8_transpose(lo, o->sg);
    x8_transpose(hi, o->sg + 4);
    for (int g = 0; g < 8; g++) o->v[g] = _mm256_sign_epi8(o->sg[g], o->sg[g]);
    o->d = X8_F16x8(b, d);
}

/* Q5_0: the fifth bits of rows j and j+4 for elements 0..15 (L) and 16..31 (H)
 * as one 32-bit mask each, spread to bytes like the nibbles. */
static ALWAYS_INLINE void x8_unpack_q5_0(const uint8_t *w, size_t ws, const int rows[8], int64_t k, x8_block *o) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), b5 = _mm256_set1_epi8(0x10);
    const plm_block_q5_0 *b[8];
    for (int j = 0; j < 8; j++) b[j] = BLOCK(plm_block_q5_0, w, ws, rows[j], k);
    __m256i lo[4], hi[4];
    for (int j = 0; j < 4; j++) {
        uint32_t h0, h1;
        memcpy(&h0, b[j]->qh, 4);
        memcpy(&h1, b[j + 4]->qh, 4);
        const uint32_t ml = (h0 & 0xffffu) | (h1 << 16), mh = (h0 >> 16) | (h1 & 0xffff0000u);
        const __m256i x = _mm256_loadu2_m128i((const __m128i *)b[j + 4]->qs, (const __m128i *)b[j]->qs);
        lo[j] = _mm256_or_si256(_mm256_and_si256(x, m4), _mm256_and_si256(bits_to_bytes((const uint8_t *)&ml), b5));
        hi[j] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(x, 4), m4),
                                _mm256_and_si256(bits_to_bytes((const uint8_t *)&mh), b5));
    }
    x8_transpose(lo, o->v);
    x8_transpose(hi, o->v + 4);
    o->d = X8_F16x8(b, d);
}

static ALWAYS_INLINE void x8_unpack(x8_kind kind, const uint8_t *w, size_t ws, const int rows[8], int64_t k, x8_block *o) {
    switch (kind) {
    case X8_Q4_0: x8_unpack_q4_0(w, ws, rows, k, o); break;
    case X8_Q4_1: x8_unpack_q4_1(w, ws, rows, k, o); break;
    case X8_Q8_0: x8_unpack_q8_0(w, ws, rows, k, o); break;
    case X8_Q5_0: x8_unpack_q5_0(w, ws, rows, k, o); break;
    }
}

/* 8 * sum(a) of a Q8_0 block. */
static ALWAYS_INLINE int32_t q8_0_sum8(const plm_block_q8_0 *y) {
    const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(8), _mm256_loadu_si256((const __m256i *)y->qs)),
                                        _mm256_set1_epi16(1));
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(h);
}

/* Four activation bytes starting at p, in every lane. */
static ALWAYS_INLINE __m256i bcast4(const int8_t *p) {
    int32_t x;
    memcpy(&x, p, 4);
    return _mm256_set1_epi32(x);
}

/* Integer sums of 8 unsigned weight rows (x8 layout) with activation block qs: int16 pairs per row. */
static ALWAYS_INLINE __m256i x8_isum16(const __m256i v[8], const int8_t *qs) {
    const __m256i l = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(v[0], bcast4(qs + 0)), _mm256_maddubs_epi16(v[1], bcast4(qs + 4))),
                                       _mm256_add_epi16(_mm256_maddubs_epi16(v[2], bcast4(qs + 8)), _mm256_maddubs_epi16(v[3], bcast4(qs + 12))));
    const __m256i h = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(v[4], bcast4(qs + 16)), _mm256_maddubs_epi16(v[5], bcast4(qs + 20))),
                                       _mm256_add_epi16(_mm256_maddubs_epi16(v[6], bcast4(qs + 24)), _mm256_maddubs_epi16(v[7], bcast4(qs + 28))));
    return _mm256_add_epi16(l, h);
}

/* Q8_0 weights: |w| x sign(a, w) pairs reach 2*128*127, so each product
 * vector goes to int32 before the sum. */
static ALWAYS_INLINE __m256i x8_isum32_signed(const x8_block *b, const int8_t *qs) {
    __m256i s = _mm256_setzero_si256();
    for (int g = 0; g < 8; g++) {
        const __m256i a = bcast4(qs + 4 * (g & 3) + 16 * (g >> 2));
        s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(b->v[g], _mm256_sign_epi8(a, b->sg[g])),
                                                  _mm256_set1_epi16(1)));
    }
    return s;
}

/* acc (8 rows) += W block . activation block k of the token at y; sum8 = 8 * sum(a) (Q4_0). */
static ALWAYS_INLINE __m256 x8_step(x8_kind kind, const x8_block *b, const uint8_t *y, int64_t k, int32_t sum8,
                                    __m256 acc, __m256 *macc) {
    switch (kind) {
    case X8_Q4_0: {
        const plm_block_q8_0 *a = (const plm_block_q8_0 *)y + k;
        const __m256i p = _mm256_sub_epi32(_mm256_madd_epi16(x8_isum16(b->v, a->qs), _mm256_set1_epi16(1)), _mm256_set1_epi32(sum8));
        return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(b->d, _mm256_set1_ps(sf(a->d))), acc);
    }
    case X8_Q4_1: {
        const plm_block_q8_1 *a = (const plm_block_q8_1 *)y + k;
        const __m256i p = _mm256_madd_epi16(x8_isum16(b->v, a->qs), _mm256_set1_epi16(1));
        *macc = _mm256_fmadd_ps(b->m, _mm256_set1_ps(sf(a->s)), *macc);
        return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(b->d, _mm256_set1_ps(sf(a->d))), acc);
    }
    case X8_Q5_0: {
        /* values up to 31: the two halves go to int32 separately (4 * 31 * 127 * 2 each) */
        const plm_block_q8_0 *a = (const plm_block_q8_0 *)y + k;
        const int8_t *qs = a->qs;
        const __m256i l = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(b->v[0], bcast4(qs + 0)), _mm256_maddubs_epi16(b->v[1], bcast4(qs + 4))),
                                           _mm256_add_epi16(_mm256_maddubs_epi16(b->v[2], bcast4(qs + 8)), _mm256_maddubs_epi16(b->v[3], bcast4(qs + 12))));
        const __m256i h = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(b->v[4], bcast4(qs + 16)), _mm256_maddubs_epi16(b->v[5], bcast4(qs + 20))),
                                           _mm256_add_epi16(_mm256_maddubs_epi16(b->v[6], bcast4(qs + 24)), _mm256_maddubs_epi16(b->v[7], bcast4(qs + 28))));
        const __m256i one = _mm256_set1_epi16(1);
        const __m256i p = _mm256_sub_epi32(_mm256_add_epi32(_mm256_madd_epi16(l, one), _mm256_madd_epi16(h, one)),
                                           _mm256_set1_epi32(2 * sum8));
        return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(b->d, _mm256_set1_ps(sf(a->d))), acc);
    }
    case X8_Q8_0: {
        const plm_block_q8_0 *a = (const plm_block_q8_0 *)y + k;
        const __m256i p = x8_isum32_signed(b, a->qs);
        return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(b->d, _mm256_set1_ps(sf(a->d))), acc);
    }
    }
    return acc;
}

static ALWAYS_INLINE size_t x8_wblock(x8_kind kind) {
    return kind == X8_Q4_0 ? sizeof(plm_block_q4_0)
           : kind == X8_Q4_1 ? sizeof(plm_block_q4_1)
           : kind == X8_Q5_0 ? sizeof(plm_block_q5_0)
                             : sizeof(plm_block_q8_0);
}
static ALWAYS_INLINE size_t x8_ablock(x8_kind kind) {
    return kind == X8_Q4_1 ? sizeof(plm_block_q8_1) : sizeof(plm_block_q8_0);
}

/* Stores lanes j < nr of acc into out[j] (=|+=). */
static ALWAYS_INLINE void x8_store(__m256 acc, int nr, float *out, bool accumulate) {
    float v[8];
    _mm256_storeu_ps(v, acc);
    for (int j = 0; j < nr; j++) {
        if (accumulate) out[j] += v[j];
        else out[j] = v[j];
    }
}

/* W (nr rows, ws bytes apart) x A (nc tokens, as bytes apart) for the x8 kinds. */
static ALWAYS_INLINE void x8_gemm(x8_kind kind, int64_t n, const void *vw, size_t ws, int nr, const void *va, size_t as,
                                  int nc, float *out, int64_t ldo, bool accumulate) {
    const uint8_t *w = vw, *a = va;
    const int64_t nb = n / PLM_QK;
    const int cols = (int)(nb * X8_COLS <= 4096 ? X8_COLS : (4096 / nb > 0 ? 4096 / nb : 1));
    int32_t sum8[4096];
    __m256 acc[X8_COLS], macc[X8_COLS]; /* macc: Q4_1's min terms, added at the end as llama.cpp does */
    x8_block blk[X8_KCHUNK];
    for (int c0 = 0; c0 < nc; c0 += cols) {
        const int ncg = nc - c0 < cols ? nc - c0 : cols;
        /* Q4_0's 8 * sum(a) per block, once per token (on the fly for one token with a huge row) */
        const bool needs_sum = kind == X8_Q4_0 || kind == X8_Q5_0;
        const bool sums = needs_sum && nb * ncg <= 4096;
        for (int c = 0; c < ncg && sums; c++)
            for (int64_t k = 0; k < nb; k++) sum8[c * nb + k] = q8_0_sum8(BLOCK(plm_block_q8_0, a, as, c0 + c, k));
        for (int r0 = 0; r0 < nr; r0 += 8) {
            int rows[8];
            for (int j = 0; j < 8; j++) rows[j] = r0 + j < nr ? r0 + j : nr - 1;
            for (int c = 0; c < ncg; c++) acc[c] = macc[c] = _mm256_setzero_ps();
            for (int64_t k0 = 0; k0 < nb; k0 += X8_KCHUNK) {
                const int64_t kc = nb - k0 < X8_KCHUNK ? nb - k0 : X8_KCHUNK;
                if (ncg == 1) {
                    /* decode: unpack in registers; prefetch the next row group (see prefetch_next_tile) */
                    const uint8_t *y = a + (size_t)c0 * as;
                    for (int64_t k = k0; k < k0 + kc; k++) {
                        x8_block b;
                        prefetch_next_tile(w + (size_t)r0 * ws, ws, 8, x8_wblock(kind), k);
                        x8_unpack(kind, w, ws, rows, k, &b);
                        const int32_t s8 = !needs_sum ? 0 : sums ? sum8[k] : q8_0_sum8((const plm_block_q8_0 *)y + k);
                        acc[0] = x8_step(kind, &b, y, k, s8, acc[0], &macc[0]);
                    }
                    continue;
                }
                for (int64_t k = 0; k < kc; k++) {
                    prefetch_next_tile(w + (size_t)r0 * ws, ws, 8, x8_wblock(kind), k0 + k);
                    x8_unpack(kind, w, ws, rows, k0 + k, &blk[k]);
                }
                for (int c = 0; c < ncg; c++) {
                    const uint8_t *y = a + (size_t)(c0 + c) * as + (size_t)k0 * x8_ablock(kind);
                    const int32_t *s8 = &sum8[c * nb + k0];
                    __m256 ac = acc[c], mc = macc[c];
                    for (int64_t k = 0; k < kc; k++) ac = x8_step(kind, &blk[k], y, k, needs_sum ? s8[k] : 0, ac, &mc);
                    acc[c] = ac;
                    macc[c] = mc;
                }
            }
            for (int c = 0; c < ncg; c++)
                x8_store(kind == X8_Q4_1 ? _mm256_add_ps(acc[c], macc[c]) : acc[c], nr - r0 < 8 ? nr - r0 : 8,
                         out + (int64_t)(c0 + c) * ldo + r0, accumulate);
        }
    }
}

static void gemm_q4_0(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nc, float *out,
                      int64_t ldo, bool accumulate) {
    x8_gemm(X8_Q4_0, n, w, ws, nr, a, as, nc, out, ldo, accumulate);
}
static void gemm_q4_1(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nc, float *out,
                      int64_t ldo, bool accumulate) {
    x8_gemm(X8_Q4_1, n, w, ws, nr, a, as, nc, out, ldo, accumulate);
}
static void gemm_q8_0(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nc, float *out,
                      int64_t ldo, bool accumulate) {
    x8_gemm(X8_Q8_0, n, w, ws, nr, a, as, nc, out, ldo, accumulate);
}
static void gemm_q5_0(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nc, float *out,
                      int64_t ldo, bool accumulate) {
    x8_gemm(X8_Q5_0, n, w, ws, nr, a, as, nc, out, ldo, accumulate);
}

/* vec_dot is the 1 x 1 case of the gemm, so the two agree bit for bit. */
static float dot_q4_0(int64_t n, const void *w, const void *a) {
    float r;
    gemm_q4_0(n, w, 0, 1, a, 0, 1, &r, 1, false);
    return r;
}
static float dot_q4_1(int64_t n, const void *w, const void *a) {
    float r;
    gemm_q4_1(n, w, 0, 1, a, 0, 1, &r, 1, false);
    return r;
}
static float dot_q8_0(int64_t n, const void *w, const void *a) {
    float r;
    gemm_q8_0(n, w, 0, 1, a, 0, 1, &r, 1, false);
    return r;
}

static float dot_q5_0(int64_t n, const void *w, const void *a) {
    float r;
    gemm_q5_0(n, w, 0, 1, a, 0, 1, &r, 1, false);
    return r;
}

/* Q5_1 x Q8_1: unsigned 5-bit values, min term m * s as for Q4_1. */
static inline __m256i q5_1_block(const plm_block_q5_1 *w, const plm_block_q8_1 *a) {
    const __m256i u = _mm256_or_si256(unpack_nibbles(w->qs), _mm256_and_si256(bits_to_bytes(w->qh), _mm256_set1_epi8(0x10)));
    return dot_u8s8(u, _mm256_loadu_si256((const __m256i *)a->qs));
}

static float dot_q5_1(int64_t n, const void *vw, const void *va) {
    const plm_block_q5_1 *w = vw;
    const plm_block_q8_1 *a = va;
    const int64_t nb = n / PLM_QK;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        const __m256i p0 = q5_1_block(&w[i], &a[i]);
        const __m256i p1 = q5_1_block(&w[i + 1], &a[i + 1]);
        const __m128 c0 = scale_min_pair(&w[i].d, &a[i].d);
        const __m128 c1 = scale_min_pair(&w[i + 1].d, &a[i + 1].d);
        accm = _mm_add_ps(accm, _mm_add_ps(c0, c1));
        acc0 = _mm256_fmadd_ps(_mm256_broadcastss_ps(c0), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_broadcastss_ps(c1), _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; i++) {
        const __m128 c0 = scale_min_pair(&w[i].d, &a[i].d);
        accm = _mm_add_ps(accm, c0);
        acc0 = _mm256_fmadd_ps(_mm256_broadcastss_ps(c0), _mm256_cvtepi32_ps(q5_1_block(&w[i], &a[i])), acc0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1)) + _mm_cvtss_f32(_mm_movehdup_ps(accm));
}

/* ------------------------------------------------------------ K-quants
 * Per 256-element super-block: integer sums weighted by the sub-block scales
 * (madd of int16 pair sums with broadcast int16 scales), one float FMA with
 * d * a.d at the end; the min term of Q2_K/Q4_K/Q5_K comes from the Q8_K
 * bsums. */

/* Q2_K: element 128c + 32j + 16h + l is bits 2j.. of qs[32c + 16h + l], scale
 * 8c + 2j + h (low nibble of scales[], min in the high nibble). The helpers
 * below are called with constant j so that every shift is an immediate. */
static inline __m256i q2k_part(__m256i q2, const int8_t *qa, __m256i scales, int j) {
    const __m256i q = _mm256_and_si256(_mm256_srli_epi16(q2, 2 * j), _mm256_set1_epi8(3));
    const __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(qa + 32 * j)));
    return _mm256_madd_epi16(_mm256_shuffle_epi8(scales, shuf(k_pair_shuf[j])), p);
}

static inline __m256i q2k_half(const uint8_t *qs, const int8_t *qa, __m128i sc8) {
    const __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sc8));
    const __m256i q2 = _mm256_loadu_si256((const __m256i *)qs);
    const __m256i s01 = _mm256_add_epi32(q2k_part(q2, qa, scales, 0), q2k_part(q2, qa, scales, 1));
    const __m256i s23 = _mm256_add_epi32(q2k_part(q2, qa, scales, 2), q2k_part(q2, qa, scales, 3));
    return _mm256_add_epi32(s01, s23);
}

static float dot_q2_K(int64_t n, const void *vw, const void *va) {
    const plm_block_q2_K *w = vw;
    const plm_block_q8_K *a = va;
    const int64_t nb = n / PLM_QK_K;
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float d = a[i].d * h2f(w[i].d);
        const float dmin = -a[i].d * h2f(w[i].dmin);
        const __m128i sm = _mm_loadu_si128((const __m128i *)w[i].scales);
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m4));
        const __m256i prod = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)a[i].bsums));
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), accm);
        const __m128i sc8 = _mm_and_si128(sm, m4);
        const __m256i sumi = _mm256_add_epi32(q2k_half(w[i].qs, a[i].qs, sc8),
                                              q2k_half(w[i].qs + 32, a[i].qs + 128, _mm_srli_si128(sc8, 8)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(_mm256_add_ps(acc, accm));
}

/* Q3_K's sixteen 6-bit scales as int8 (scale - 32), in registers: the low
 * nibbles of bytes 0..7 are scales 0..7, their high nibbles scales 8..15; the
 * top 2 bits of scale j are bits 2*(j/4) of byte 8 + j%4. */
static inline __m128i q3k_scales(const uint8_t *s) {
    uint32_t hi;
    memcpy(&hi, s + 8, 4);
    const __m128i lo8 = _mm_loadl_epi64((const __m128i *)s);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i low = _mm_unpacklo_epi64(_mm_and_si128(lo8, m4), _mm_and_si128(_mm_srli_epi16(lo8, 4), m4));
    const __m128i top = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32((int)hi), _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
    return _mm_sub_epi8(_mm_or_si128(low, _mm_slli_epi16(top, 4)), _mm_set1_epi8(32));
}

/* Q3_K: value = 2 low bits - (4 if the hmask bit is clear); both parts go
 * through maddubs as unsigned bytes and are subtracted. */
static inline __m256i q3k_part(__m256i q2, __m256i hmask, const int8_t *qa, __m256i scales, int c, int j) {
    const __m256i q = _mm256_and_si256(_mm256_srli_epi16(q2, 2 * j), _mm256_set1_epi8(3));
    const __m256i bit = _mm256_and_si256(hmask, _mm256_set1_epi8((char)(1 << (4 * c + j))));
    const __m256i sub4 = _mm256_and_si256(_mm256_cmpeq_epi8(bit, _mm256_setzero_si256()), _mm256_set1_epi8(4));
    const __m256i y = _mm256_loadu_si256((const __m256i *)(qa + 32 * j));
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q, y), _mm256_maddubs_epi16(sub4, y));
    return _mm256_madd_epi16(_mm256_shuffle_epi8(scales, shuf(k_pair_shuf[j])), p);
}

static inline __m256i q3k_half(const uint8_t *qs, __m256i hmask, const int8_t *qa, __m128i sc8, int c) {
    const __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(sc8));
    const __m256i q2 = _mm256_loadu_si256((const __m256i *)qs);
    const __m256i s01 = _mm256_add_epi32(q3k_part(q2, hmask, qa, scales, c, 0), q3k_part(q2, hmask, qa, scales, c, 1));
    const __m256i s23 = _mm256_add_epi32(q3k_part(q2, hmask, qa, scales, c, 2), q3k_part(q2, hmask, qa, scales, c, 3));
    return _mm256_add_epi32(s01, s23);
}

static float dot_q3_K(int64_t n, const void *vw, const void *va) {
    const plm_block_q3_K *w = vw;
    const plm_block_q8_K *a = va;
    const int64_t nb = n / PLM_QK_K;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float d = a[i].d * h2f(w[i].d);
        const __m128i sc8 = q3k_scales(w[i].scales);
        const __m256i hmask = _mm256_loadu_si256((const __m256i *)w[i].hmask);
        const __m256i sumi = _mm256_add_epi32(q3k_half(w[i].qs, hmask, a[i].qs, sc8, 0),
                                              q3k_half(w[i].qs + 32, hmask, a[i].qs + 128, _mm_srli_si128(sc8, 8), 1));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}

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

/* Q4_K x Q8_K, eight rows in eight lanes (see the x8 section). Per super-block
 * and row group the 8 sub-blocks of 32 elements become 8 vectors each (from
 * 16-byte halves of rows j and j+4, transposed in lanes); per sub-block the
 * products are summed in int16 (at most 8 * 15 * 127 * 2 = 30480) and scaled by
 * the rows' 6-bit sub-block scales in the madd itself (the scale in both int16
 * of a lane), so each row gets its exact integer sum over the super-block; the
 * mins meet the activation's 32-element sums (from bsums) in int16 pairs. Then
 * acc += d * a.d * isum and macc += dmin * a.d * imin, result acc - macc. */

#define X8K_CHUNK 8 /* super-blocks of a row group unpacked at once (8 * 2.5 KB) */

typedef struct x8k_block {
    __m256i v[64]; /* [8 j + 4 h + g]: sub-block j, elements 16h + 4g .. +3 of each row */
    __m256i sc[8]; /* sub-block j's scale in both int16 of each row's lane */
    __m256i mn[4]; /* mins of sub-blocks 2p and 2p+1 as the two int16 of each row's lane */
    __m256 d, dmin;
} x8k_block;

static ALWAYS_INLINE void x8k_unpack_q4_K(const uint8_t *w, size_t ws, const int rows[8], int64_t i, x8k_block *o) {
    const plm_block_q4_K *b[8];
    for (int j = 0; j < 8; j++) b[j] = BLOCK(plm_block_q4_K, w, ws, rows[j], i);
    for (int p = 0; p < 4; p++)
        for (int h = 0; h < 2; h++) {
            const uint8_t *q[8];
            for (int j = 0; j < 8; j++) q[j] = b[j]->qs + 32 * p + 16 * h;
            x8_nibbles(q, o->v + 8 * (2 * p) + 4 * h, o->v + 8 * (2 * p + 1) + 4 * h);
        }
    uint32_t sc[8][8], mn[4][8];
    for (int r = 0; r < 8; r++) {
        uint32_t s4[2], m4b[2];
        k4_unpack(b[r]->scales, s4, m4b);
        for (int j = 0; j < 8; j++) {
            const uint32_t scj = (s4[j / 4] >> (8 * (j % 4))) & 0xff;
            sc[j][r] = scj | scj << 16;
        }
        for (int q = 0; q < 4; q++) {
            const uint32_t m0 = (m4b[(2 * q) / 4] >> (8 * ((2 * q) % 4))) & 0xff;
            const uint32_t m1 = (m4b[(2 * q + 1) / 4] >> (8 * ((2 * q + 1) % 4))) & 0xff;
            mn[q][r] = m0 | m1 << 16;
        }
    }
    for (int j = 0; j < 8; j++) o->sc[j] = _mm256_loadu_si256((const __m256i *)sc[j]);
    for (int q = 0; q < 4; q++) o->mn[q] = _mm256_loadu_si256((const __m256i *)mn[q]);
    o->d = X8_F16x8(b, d);
    o->dmin = X8_F16x8(b, dmin);
}

/* The activation's 32-element sums of sub-blocks 2p and 2p+1 as two int16 (one int32) per p. */
static ALWAYS_INLINE void q8_K_pair_sums(const plm_block_q8_K *a, int32_t out[4]) {
    for (int p = 0; p < 4; p++) {
        const int32_t s0 = a->bsums[4 * p] + a->bsums[4 * p + 1], s1 = a->bsums[4 * p + 2] + a->bsums[4 * p + 3];
        out[p] = (int32_t)(((uint32_t)s0 & 0xffff) | (uint32_t)s1 << 16);
    }
}

static ALWAYS_INLINE __m256 x8k_step_q4_K(const x8k_block *b, const plm_block_q8_K *a, const int32_t bs[4], __m256 acc,
                                         __m256 *macc) {
    __m256i isum = _mm256_setzero_si256();
    for (int j = 0; j < 8; j++) {
        const __m256i x = x8_isum16(b->v + 8 * j, a->qs + 32 * j);
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(x, b->sc[j]));
    }
    __m256i imin = _mm256_madd_epi16(b->mn[0], _mm256_set1_epi32(bs[0]));
    for (int p = 1; p < 4; p++) imin = _mm256_add_epi32(imin, _mm256_madd_epi16(b->mn[p], _mm256_set1_epi32(bs[p])));
    const __m256 da = _mm256_set1_ps(a->d);
    *macc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(imin), _mm256_mul_ps(b->dmin, da), *macc);
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(b->d, da), acc);
}

/* Single-token Q4_K: rows in their own vectors (the unpacking of the x8 layout
 * costs more than it saves for one token), each super-block's integer sums
 * reduced to one int32 and then the x8 kernel's float steps in scalar form, so
 * the results are the same bits. */
static ALWAYS_INLINE void tile_q4_K(const int R, const int C, int64_t nb, const uint8_t *w, size_t ws,
                                    const uint8_t *a, size_t as, float *out, int64_t ldo, bool accumulate) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    float acc[TILE_R][TILE_C], macc[TILE_R][TILE_C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = macc[r][c] = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        __m128i q8s[TILE_C];
        float da[TILE_C];
        for (int c = 0; c < C; c++) {
            const plm_block_q8_K *b = BLOCK(plm_block_q8_K, a, as, c, i);
            const __m256i bsums = _mm256_loadu_si256((const __m256i *)b->bsums);
            q8s[c] = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
            da[c] = b->d;
        }
        if (C == 1) prefetch_next_tile(w, ws, R, sizeof(plm_block_q4_K), i);
        for (int r = 0; r < R; r++) {
            const plm_block_q4_K *b = BLOCK(plm_block_q4_K, w, ws, r, i);
            const float dw = h2f(b->d), dmin = h2f(b->dmin);
            uint32_t sc[2], mn[2];
            k4_unpack(b->scales, sc, mn);
            const __m128i mins = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)mn[1], (int)mn[0]));
            const __m256i scales =
                _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)sc[1], (int)sc[0])));
            __m256i sv[8];
            for (int j = 0; j < 8; j++) sv[j] = _mm256_shuffle_epi8(scales, shuf(k_word_shuf[j]));
            __m256i sumi[TILE_C];
            for (int c = 0; c < C; c++) sumi[c] = _mm256_setzero_si256();
            for (int j = 0; j < 4; j++) {
                const __m256i q4 = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * j));
                const __m256i lo = _mm256_and_si256(q4, m4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
                for (int c = 0; c < C; c++) {
                    const int8_t *qa = BLOCK(plm_block_q8_K, a, as, c, i)->qs + 64 * j;
                    const __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)qa));
                    const __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(qa + 32)));
                    sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(_mm256_madd_epi16(sv[2 * j], plo),
                                                                         _mm256_madd_epi16(sv[2 * j + 1], phi)));
                }
            }
            for (int c = 0; c < C; c++) {
                const __m128i m = _mm_madd_epi16(mins, q8s[c]);
                const __m128i m2 = _mm_add_epi32(m, _mm_unpackhi_epi64(m, m));
                const int32_t imin = _mm_cvtsi128_si32(_mm_add_epi32(m2, _mm_shuffle_epi32(m2, _MM_SHUFFLE(2, 3, 0, 1))));
                acc[r][c] = fmaf((float)hsum_epi32(sumi[c]), dw * da[c], acc[r][c]);
                macc[r][c] = fmaf((float)imin, dmin * da[c], macc[r][c]);
            }
        }
    }
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++) {
            const float v = acc[r][c] - macc[r][c];
            if (accumulate) out[(int64_t)c * ldo + r] += v;
            else out[(int64_t)c * ldo + r] = v;
        }
}
TILE_SHAPES(q4_K)

static void gemm_q4_K(int64_t n, const void *vw, size_t ws, int nr, const void *va, size_t as, int nc, float *out,
                      int64_t ldo, bool accumulate) {
    const uint8_t *w = vw, *a = va;
    const int64_t nb = n / PLM_QK_K;
    const int cols = (int)(nb * X8_COLS <= 1024 ? X8_COLS : (1024 / nb > 0 ? 1024 / nb : 1));
    int32_t bsp[4096];
    __m256 acc[X8_COLS], macc[X8_COLS];
    x8k_block blk[X8K_CHUNK];
    if (nc == 1) {
        run_tiles(q4_K_tiles, nb, vw, ws, nr, va, as, nc, out, ldo, accumulate);
        return;
    }
    for (int c0 = 0; c0 < nc; c0 += cols) {
        const int ncg = nc - c0 < cols ? nc - c0 : cols;
        const bool sums = nb * ncg <= 1024;
        for (int c = 0; c < ncg && sums; c++)
            for (int64_t k = 0; k < nb; k++) q8_K_pair_sums(BLOCK(plm_block_q8_K, a, as, c0 + c, k), &bsp[4 * (c * nb + k)]);
        for (int r0 = 0; r0 < nr; r0 += 8) {
            int rows[8];
            for (int j = 0; j < 8; j++) rows[j] = r0 + j < nr ? r0 + j : nr - 1;
            for (int c = 0; c < ncg; c++) acc[c] = macc[c] = _mm256_setzero_ps();
            for (int64_t k0 = 0; k0 < nb; k0 += X8K_CHUNK) {
                const int64_t kc = nb - k0 < X8K_CHUNK ? nb - k0 : X8K_CHUNK;
                for (int64_t k = 0; k < kc; k++) {
                    prefetch_next_tile(w + (size_t)r0 * ws, ws, 8, sizeof(plm_block_q4_K), k0 + k);
                    x8k_unpack_q4_K(w, ws, rows, k0 + k, &blk[k]);
                }
                for (int c = 0; c < ncg; c++) {
                    const plm_block_q8_K *y = BLOCK(plm_block_q8_K, a, as, c0 + c, k0);
                    const int32_t *bs = &bsp[4 * (c * nb + k0)];
                    __m256 ac = acc[c], mc = macc[c];
                    for (int64_t k = 0; k < kc; k++) ac = x8k_step_q4_K(&blk[k], &y[k], bs + 4 * k, ac, &mc);
                    acc[c] = ac;
                    macc[c] = mc;
                }
            }
            for (int c = 0; c < ncg; c++)
                x8_store(_mm256_sub_ps(acc[c], macc[c]), nr - r0 < 8 ? nr - r0 : 8, out + (int64_t)(c0 + c) * ldo + r0,
                         accumulate);
        }
    }
}

static float dot_q4_K(int64_t n, const void *w, const void *a) {
    float r;
    gemm_q4_K(n, w, 0, 1, a, 0, 1, &r, 1, false);
    return r;
}

/* Q5_K x Q8_K: Q4_K plus the fifth bits, bit 2j (low nibbles) and 2j+1 (high
 * nibbles) of qh[l]; qh is shifted right by 2 per 64 elements. */
static float dot_q5_K(int64_t n, const void *vw, const void *va) {
    const plm_block_q5_K *w = vw;
    const plm_block_q8_K *a = va;
    const int64_t nb = n / PLM_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i b4 = _mm256_set1_epi8(0x10);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float d = a[i].d * h2f(w[i].d);
        const float dmin = -a[i].d * h2f(w[i].dmin);
        uint32_t sc[2], mn[2];
        k4_unpack(w[i].scales, sc, mn);
        const __m128i mins = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)mn[1], (int)mn[0]));
        const __m256i bsums = _mm256_loadu_si256((const __m256i *)a[i].bsums);
        const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
        accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(_mm_madd_epi16(mins, q8s)), accm);
        const __m256i scales =
            _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)sc[1], (int)sc[0])));
        __m256i qh = _mm256_loadu_si256((const __m256i *)w[i].qh);
        __m256i sumi0 = _mm256_setzero_si256(), sumi1 = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i q4 = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * j));
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q4, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), b4));
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4, 4), m4),
                                               _mm256_and_si256(_mm256_slli_epi16(qh, 3), b4));
            qh = _mm256_srli_epi16(qh, 2);
            const __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(a[i].qs + 64 * j)));
            const __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(a[i].qs + 64 * j + 32)));
            sumi0 = _mm256_add_epi32(sumi0, _mm256_madd_epi16(_mm256_shuffle_epi8(scales, shuf(k_word_shuf[2 * j])), plo));
            sumi1 =
                _mm256_add_epi32(sumi1, _mm256_madd_epi16(_mm256_shuffle_epi8(scales, shuf(k_word_shuf[2 * j + 1])), phi));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_add_epi32(sumi0, sumi1)), acc);
    }
    return hsum_ps(acc) + hsum_ps128(accm);
}

/* Q6_K x Q8_K: q in [0, 63] goes into maddubs unsigned; the -32 offset is
 * applied once per super-block as 32 * sum(scale_k * bsums_k). Per row and
 * half super-block the four q vectors are unpacked once for the C tokens. */
static ALWAYS_INLINE void tile_q6_K(const int R, const int C, int64_t nb, const uint8_t *w, size_t ws,
                                    const uint8_t *a, size_t as, float *out, int64_t ldo, bool accumulate) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i m2h = _mm256_set1_epi8(0x30);
    float acc[TILE_R][TILE_C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        if (C == 1) prefetch_next_tile(w, ws, R, sizeof(plm_block_q6_K), i);
        for (int r = 0; r < R; r++) {
            const plm_block_q6_K *b = BLOCK(plm_block_q6_K, w, ws, r, i);
            const float dw = h2f(b->d);
            const __m256i sc_all = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
            __m256i sumi[TILE_C];
            for (int c = 0; c < C; c++) {
                const __m256i bsums = _mm256_loadu_si256((const __m256i *)BLOCK(plm_block_q8_K, a, as, c, i)->bsums);
                sumi[c] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(sc_all, bsums), 5));
            }
            for (int h = 0; h < 2; h++) {
                const __m128i sc8 = _mm_loadl_epi64((const __m128i *)(b->scales + 8 * h));
                const __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(sc8));
                const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
                const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
                __m256i q[4], sv[4];
                q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2h));
                q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2h));
                q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m2h));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                       _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2h));
                for (int k = 0; k < 4; k++) sv[k] = _mm256_shuffle_epi8(scales, shuf(k_pair_shuf[k]));
                for (int c = 0; c < C; c++) {
                    const int8_t *qa = BLOCK(plm_block_q8_K, a, as, c, i)->qs + 128 * h;
                    for (int k = 0; k < 4; k++) {
                        const __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(qa + 32 * k)));
                        sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(sv[k], p));
                    }
                }
            }
            for (int c = 0; c < C; c++) {
                const float da = BLOCK(plm_block_q8_K, a, as, c, i)->d;
                acc[r][c] = fmaf((float)hsum_epi32(sumi[c]), dw * da, acc[r][c]);
            }
        }
    }
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++) {
            if (accumulate) out[(int64_t)c * ldo + r] += acc[r][c];
            else out[(int64_t)c * ldo + r] = acc[r][c];
        }
}
TILE_SHAPES(q6_K)

/* Q6_K x Q8_K, eight rows in eight lanes for prefill: the 16 sub-blocks of 16
 * elements become 4 vectors each (v[4 s + g]); q in [0, 63] sums in int16 two
 * products at a time (2 * 63 * 127 * 2 = 32004), scaled by the signed sub-block
 * scales in the madd; the -32 offset is 32 * sum(scale * bsum) per row. The
 * single-token tile above reduces to the same integers and float steps. */
typedef struct x8k6_block {
    __m256i v[64];
    __m256i sc[16]; /* sub-block scale (signed) in both int16 of each row's lane */
    __m256i scp[8]; /* scales of sub-blocks 2t and 2t+1 as the two int16 of each row's lane */
    __m256 d;
} x8k6_block;

static ALWAYS_INLINE void x8k_unpack_q6_K(const uint8_t *w, size_t ws, const int rows[8], int64_t i, x8k6_block *o) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2h = _mm256_set1_epi8(0x30);
    const plm_block_q6_K *b[8];
    for (int j = 0; j < 8; j++) b[j] = BLOCK(plm_block_q6_K, w, ws, rows[j], i);
    for (int h = 0; h < 2; h++) {
        /* per row pair (j, j+4) and k: [row j | row j+4] for sub-blocks 8h + 2k (lo) and 8h + 2k + 1 (hi) */
        __m256i lo[4][4], hi[4][4]; /* [k][j] */
        for (int j = 0; j < 4; j++) {
            __m256i q[2][4];
            for (int e = 0; e < 2; e++) {
                const plm_block_q6_K *x = b[j + 4 * e];
                const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
                const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
                q[e][0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2h));
                q[e][1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2h));
                q[e][2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m2h));
                q[e][3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                          _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2h));
            }
            for (int k = 0; k < 4; k++) {
                lo[k][j] = _mm256_permute2x128_si256(q[0][k], q[1][k], 0x20);
                hi[k][j] = _mm256_permute2x128_si256(q[0][k], q[1][k], 0x31);
            }
        }
        for (int k = 0; k < 4; k++) {
            x8_transpose(lo[k], o->v + 4 * (8 * h + 2 * k));
            x8_transpose(hi[k], o->v + 4 * (8 * h + 2 * k + 1));
        }
    }
    uint32_t sc[16][8], scp[8][8];
    for (int r = 0; r < 8; r++) {
        for (int t = 0; t < 16; t++) {
            const uint32_t v = (uint16_t)(int16_t)b[r]->scales[t];
            sc[t][r] = v | v << 16;
        }
        for (int t = 0; t < 8; t++)
            scp[t][r] = (uint32_t)(uint16_t)(int16_t)b[r]->scales[2 * t] | (uint32_t)(uint16_t)(int16_t)b[r]->scales[2 * t + 1] << 16;
    }
    for (int t = 0; t < 16; t++) o->sc[t] = _mm256_loadu_si256((const __m256i *)sc[t]);
    for (int t = 0; t < 8; t++) o->scp[t] = _mm256_loadu_si256((const __m256i *)scp[t]);
    o->d = X8_F16x8(b, d);
}

static ALWAYS_INLINE __m256 x8k_step_q6_K(const x8k6_block *b, const plm_block_q8_K *a, __m256 acc) {
    __m256i isum = _mm256_setzero_si256();
    for (int t = 0; t < 16; t++) {
        const __m256i *v = b->v + 4 * t;
        const int8_t *qs = a->qs + 16 * t;
        const __m256i x01 = _mm256_add_epi16(_mm256_maddubs_epi16(v[0], bcast4(qs)), _mm256_maddubs_epi16(v[1], bcast4(qs + 4)));
        const __m256i x23 = _mm256_add_epi16(_mm256_maddubs_epi16(v[2], bcast4(qs + 8)), _mm256_maddubs_epi16(v[3], bcast4(qs + 12)));
        isum = _mm256_add_epi32(isum, _mm256_add_epi32(_mm256_madd_epi16(x01, b->sc[t]), _mm256_madd_epi16(x23, b->sc[t])));
    }
    __m256i off = _mm256_setzero_si256();
    for (int t = 0; t < 8; t++) {
        const int32_t pair = (int32_t)((uint32_t)(uint16_t)a->bsums[2 * t] | (uint32_t)(uint16_t)a->bsums[2 * t + 1] << 16);
        off = _mm256_add_epi32(off, _mm256_madd_epi16(b->scp[t], _mm256_set1_epi32(pair)));
    }
    isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(off, 5));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(b->d, _mm256_set1_ps(a->d)), acc);
}

static void gemm_q6_K(int64_t n, const void *vw, size_t ws, int nr, const void *va, size_t as, int nc, float *out,
                      int64_t ldo, bool accumulate) {
    const uint8_t *w = vw, *a = va;
    const int64_t nb = n / PLM_QK_K;
    if (nc == 1) {
        run_tiles(q6_K_tiles, nb, vw, ws, nr, va, as, nc, out, ldo, accumulate);
        return;
    }
    __m256 acc[X8_COLS];
    x8k6_block blk[X8K_CHUNK];
    for (int c0 = 0; c0 < nc; c0 += X8_COLS) {
        const int ncg = nc - c0 < X8_COLS ? nc - c0 : X8_COLS;
        for (int r0 = 0; r0 < nr; r0 += 8) {
            int rows[8];
            for (int j = 0; j < 8; j++) rows[j] = r0 + j < nr ? r0 + j : nr - 1;
            for (int c = 0; c < ncg; c++) acc[c] = _mm256_setzero_ps();
            for (int64_t k0 = 0; k0 < nb; k0 += X8K_CHUNK) {
                const int64_t kc = nb - k0 < X8K_CHUNK ? nb - k0 : X8K_CHUNK;
                for (int64_t k = 0; k < kc; k++) {
                    prefetch_next_tile(w + (size_t)r0 * ws, ws, 8, sizeof(plm_block_q6_K), k0 + k);
                    x8k_unpack_q6_K(w, ws, rows, k0 + k, &blk[k]);
                }
                for (int c = 0; c < ncg; c++) {
                    const plm_block_q8_K *y = BLOCK(plm_block_q8_K, a, as, c0 + c, k0);
                    __m256 ac = acc[c];
                    for (int64_t k = 0; k < kc; k++) ac = x8k_step_q6_K(&blk[k], &y[k], ac);
                    acc[c] = ac;
                }
            }
            for (int c = 0; c < ncg; c++)
                x8_store(acc[c], nr - r0 < 8 ? nr - r0 : 8, out + (int64_t)(c0 + c) * ldo + r0, accumulate);
        }
    }
}

static float dot_q6_K(int64_t n, const void *w, const void *a) {
    float r;
    q6_K_1x1(n / PLM_QK_K, w, 0, a, 0, &r, 1, false);
    return r;
}

/* ------------------------------------------------------- float formats
 * Four accumulators of 8 lanes; the tail (n not a multiple of 32) in scalar. */

static float dot_f32(int64_t n, const void *vw, const void *va) {
    const float *w = vw, *a = va;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(a + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(a + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(a + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(a + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(a + i), s0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) sum += w[i] * a[i];
    return sum;
}

static inline __m256 load_f16x8(const plm_f16 *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

static float dot_f16(int64_t n, const void *vw, const void *va) {
    const plm_f16 *w = vw, *a = va;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load_f16x8(w + i), load_f16x8(a + i), s0);
        s1 = _mm256_fmadd_ps(load_f16x8(w + i + 8), load_f16x8(a + i + 8), s1);
        s2 = _mm256_fmadd_ps(load_f16x8(w + i + 16), load_f16x8(a + i + 16), s2);
        s3 = _mm256_fmadd_ps(load_f16x8(w + i + 24), load_f16x8(a + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load_f16x8(w + i), load_f16x8(a + i), s0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) sum += h2f(w[i]) * h2f(a[i]);
    return sum;
}

/* gemm for F32 and F16 weights: each entry is dot_f32 / dot_f16's sum, same
 * lanes, same four accumulators, same reduction and tail, so bit for bit the
 * vec_dot whatever the tile. Up to three tokens share each weight vector (one
 * load, or one F16 conversion, for three FMAs); for F16 the three tokens'
 * activations are converted to floats once for all the tile's rows (a
 * conversion is exact, so the same values as dot_f16's). Rows longer than
 * GEMM_F_NMAX (the stack buffer) take vec_dot entry by entry. */
#define GEMM_F_NMAX 2048

static ALWAYS_INLINE void dot_f_rows(const bool f16, const int C, int64_t n, const void *vw, const float *const a[3],
                                     float res[3]) {
    const float *w32 = vw;
    const plm_f16 *w16 = vw;
    __m256 acc[3][4];
    for (int c = 0; c < C; c++)
        for (int j = 0; j < 4; j++) acc[c][j] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int j = 0; j < 4; j++) {
            const __m256 wj = f16 ? load_f16x8(w16 + i + 8 * j) : _mm256_loadu_ps(w32 + i + 8 * j);
            for (int c = 0; c < C; c++) acc[c][j] = _mm256_fmadd_ps(wj, _mm256_loadu_ps(a[c] + i + 8 * j), acc[c][j]);
        }
    for (; i + 8 <= n; i += 8) {
        const __m256 wj = f16 ? load_f16x8(w16 + i) : _mm256_loadu_ps(w32 + i);
        for (int c = 0; c < C; c++) acc[c][0] = _mm256_fmadd_ps(wj, _mm256_loadu_ps(a[c] + i), acc[c][0]);
    }
    for (int c = 0; c < C; c++) {
        float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[c][0], acc[c][1]), _mm256_add_ps(acc[c][2], acc[c][3])));
        for (int64_t k = i; k < n; k++) sum += (f16 ? h2f(w16[k]) : w32[k]) * a[c][k];
        res[c] = sum;
    }
}

static ALWAYS_INLINE void gemm_f(const bool f16, int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                                 int nc, float *out, int64_t ldo, bool accumulate) {
    if (n > GEMM_F_NMAX) {
        for (int c = 0; c < nc; c++)
            for (int r = 0; r < nr; r++) {
                const void *wr = (const uint8_t *)w + (size_t)r * ws, *ac = (const uint8_t *)a + (size_t)c * as;
                const float v = f16 ? dot_f16(n, wr, ac) : dot_f32(n, wr, ac);
                out[(int64_t)c * ldo + r] = accumulate ? out[(int64_t)c * ldo + r] + v : v;
            }
        return;
    }
    float buf[3][GEMM_F_NMAX];
    for (int c0 = 0; c0 < nc; c0 += 3) {
        const int C = nc - c0 < 3 ? nc - c0 : 3;
        const float *ar[3];
        for (int c = 0; c < C; c++) {
            const uint8_t *src = (const uint8_t *)a + (size_t)(c0 + c) * as;
            if (!f16) {
                ar[c] = (const float *)(const void *)src;
                continue;
            }
            const plm_f16 *h = (const plm_f16 *)(const void *)src;
            int64_t i = 0;
            for (; i + 8 <= n; i += 8) _mm256_storeu_ps(buf[c] + i, load_f16x8(h + i));
            for (; i < n; i++) buf[c][i] = h2f(h[i]);
            ar[c] = buf[c];
        }
        for (int r = 0; r < nr; r++) {
            float res[3];
            const void *wr = (const uint8_t *)w + (size_t)r * ws;
            if (C == 3) dot_f_rows(f16, 3, n, wr, ar, res);
            else if (C == 2) dot_f_rows(f16, 2, n, wr, ar, res);
            else dot_f_rows(f16, 1, n, wr, ar, res);
            for (int c = 0; c < C; c++) {
                float *o = out + (int64_t)(c0 + c) * ldo + r;
                *o = accumulate ? *o + res[c] : res[c];
            }
        }
    }
}

static void gemm_f32(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nc, float *out,
                     int64_t ldo, bool accumulate) {
    gemm_f(false, n, w, ws, nr, a, as, nc, out, ldo, accumulate);
}

static void gemm_f16(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nc, float *out,
                     int64_t ldo, bool accumulate) {
    gemm_f(true, n, w, ws, nr, a, as, nc, out, ldo, accumulate);
}

/* kq8_f16 / pv8_f16 (quant.h): the block's keys are converted and transposed
 * once (lanes = the 8 cells), then each query row is a chain of FMAs over d
 * into one vector of 8 scores, 4 rows at a time; values are converted once and
 * each output row takes one FMA per cell and 8 dimensions. Head sizes above
 * 512 take the scalar form of the same chains. */
#define ATT_HD_MAX 512

/* 8 x 8 transpose of floats (rows r[0..7] -> columns). */
static ALWAYS_INLINE void transpose8_ps(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

static ALWAYS_INLINE void kq8_rows(const int NR, int64_t hd, const float *kt, const float *q, int64_t qs, float *s,
                                   int64_t ss, int nc) {
    __m256 acc[4];
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; d++) {
        const __m256 kv = _mm256_load_ps(kt + 8 * d);
        for (int r = 0; r < NR; r++) acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(q + r * qs + d), kv, acc[r]);
    }
    for (int r = 0; r < NR; r++) {
        float v[8];
        _mm256_storeu_ps(v, acc[r]);
        memcpy(s + r * ss, v, (size_t)nc * sizeof(float));
    }
}

static void kq8_f16(int64_t hd, const plm_f16 *k, int64_t stride, int nc, const float *q, int64_t qs, int nr, float *s,
                    int64_t ss) {
    if (hd > ATT_HD_MAX || hd % 8) {
        for (int r = 0; r < nr; r++)
            for (int c = 0; c < nc; c++) {
                float sum = 0.0f;
                for (int64_t d = 0; d < hd; d++) sum = fmaf(q[r * qs + d], h2f(k[c * stride + d]), sum);
                s[r * ss + c] = sum;
            }
        return;
    }
    _Alignas(32) float kt[ATT_HD_MAX * 8];
    for (int64_t d0 = 0; d0 < hd; d0 += 8) {
        __m256 rows[8];
        for (int c = 0; c < 8; c++) rows[c] = c < nc ? load_f16x8(k + c * stride + d0) : _mm256_setzero_ps();
        transpose8_ps(rows);
        for (int j = 0; j < 8; j++) _mm256_store_ps(kt + 8 * (d0 + j), rows[j]);
    }
#define KQ8_ROWS(R, r) kq8_rows(R, hd, kt, q + (r) * qs, qs, s + (r) * ss, ss, nc)
    PLM_BY_FOURS(nr, KQ8_ROWS);
#undef KQ8_ROWS
}

/* kqt_f16 (quant.h): the block's keys are stored transposed already, 16 cells per dimension: one load and two
 * conversions per d give 16 lanes, each row a chain of FMAs over d into two vectors, 4 rows at a time. */
static ALWAYS_INLINE void kqt_rows(const int NR, int64_t hd, const plm_f16 *kt, const float *q, int64_t qs, float *s,
                                   int64_t ss, int nc) {
    __m256 acc[4][2];
    for (int r = 0; r < NR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; d++) {
        const __m256 k0 = load_f16x8(kt + PLM_KV_BLOCK * d), k1 = load_f16x8(kt + PLM_KV_BLOCK * d + 8);
        for (int r = 0; r < NR; r++) {
            const __m256 qd = _mm256_broadcast_ss(q + r * qs + d);
            acc[r][0] = _mm256_fmadd_ps(qd, k0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(qd, k1, acc[r][1]);
        }
    }
    for (int r = 0; r < NR; r++) {
        float v[16];
        _mm256_storeu_ps(v, acc[r][0]);
        _mm256_storeu_ps(v + 8, acc[r][1]);
        memcpy(s + r * ss, v, (size_t)nc * sizeof(float));
    }
}

/* Block by block (each block's chains are the same whatever the others). */
static void kqt_f16(int64_t hd, const plm_f16 *kt, int64_t kbs, int nc, const float *q, int64_t qs, int nr, float *s,
                    int64_t ss) {
    for (int c0 = 0; c0 < nc; c0 += PLM_KV_BLOCK, kt += kbs, s += PLM_KV_BLOCK) {
        const int n = nc - c0 < PLM_KV_BLOCK ? nc - c0 : PLM_KV_BLOCK;
#define KQT_ROWS(R, r) kqt_rows(R, hd, kt, q + (r) * qs, qs, s + (r) * ss, ss, n)
        PLM_BY_FOURS(nr, KQT_ROWS);
#undef KQT_ROWS
    }
}

/* pv8_f16 (quant.h) for up to 8 cells; the entry below takes a run of them 8 at a time (each row's chain
 * stays in cell order through o). */
static void pv8_cells(int64_t hd, const plm_f16 *v, int64_t stride, int nc, const float *p, int64_t ps, int nr,
                      float *o, int64_t os) {
    if (hd > ATT_HD_MAX || hd % 8) {
        for (int r = 0; r < nr; r++)
            for (int c = 0; c < nc; c++) {
                const float pc = p[r * ps + c];
                if (pc == 0.0f) continue;
                for (int64_t d = 0; d < hd; d++) o[r * os + d] = fmaf(pc, h2f(v[c * stride + d]), o[r * os + d]);
            }
        return;
    }
    _Alignas(32) float vf[8 * ATT_HD_MAX];
    for (int c = 0; c < nc; c++)
        for (int64_t d = 0; d < hd; d += 8) _mm256_store_ps(vf + c * hd + d, load_f16x8(v + c * stride + d));
    for (int r = 0; r < nr; r++) {
        int cs[8], m = 0;
        for (int c = 0; c < nc; c++)
            if (p[r * ps + c] != 0.0f) cs[m++] = c;
        if (m == 0) continue;
        float *y = o + r * os;
        for (int64_t d = 0; d < hd; d += 8) {
            __m256 acc = _mm256_loadu_ps(y + d);
            for (int i = 0; i < m; i++)
                acc = _mm256_fmadd_ps(_mm256_set1_ps(p[r * ps + cs[i]]), _mm256_load_ps(vf + cs[i] * hd + d), acc);
            _mm256_storeu_ps(y + d, acc);
        }
    }
}

static void pv8_f16(int64_t hd, const plm_f16 *v, int64_t stride, int nc, const float *p, int64_t ps, int nr, float *o,
                    int64_t os) {
    for (int c0 = 0; c0 < nc; c0 += 8) pv8_cells(hd, v + c0 * stride, stride, nc - c0 < 8 ? nc - c0 : 8, p + c0, ps, nr, o, os);
}

static void round_f16(float *x, int64_t n, float scale) {
    const __m256 s = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(x + i), s),
                                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
    for (; i < n; i++) x[i] = h2f(f2h(x[i] * scale));
}

/* exp of 8 floats, within 2 ulp of expf: x = n ln2 + r with |r| <= ln2/2 (ln2 in two parts, the first
 * product exact under FMA), exp(r) by its Taylor series to r^7 (truncation below 2^-26 relative), then
 * times 2^n as two powers of two, 2^(n/2) exactly and the rest with one rounding, so that results in the
 * subnormal range round once and results above FLT_MAX become inf. x is clamped to [-104, 89] first
 * (exp(-104) rounds to 0, exp(89) to inf), which also makes -inf give 0; NaN stays NaN. */
static ALWAYS_INLINE __m256 exp8_ps(__m256 x) {
    const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-104.0f)), _mm256_set1_ps(89.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504089f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693147182464599609375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-1.904654299957768e-09f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvtps_epi32(n), n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    const __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

/* The lanes of the first n % 8 elements of a tail (all ones), the rest zero. */
static ALWAYS_INLINE __m256i tail_mask8(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static float max_f32(const float *x, int64_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    if (i < n) {
        const __m256i k = tail_mask8(n - i);
        const __m256 v = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_maskload_ps(x + i, k), _mm256_castsi256_ps(k));
        m = _mm256_max_ps(m, v);
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* Lane j of the sum adds the elements j, j + 8, j + 16, ... in order (a tail's missing lanes add 0). */
static float exp_sum_f32(float *x, int64_t n, float scale, float sub) {
    const __m256 vs = _mm256_set1_ps(scale), vsub = _mm256_set1_ps(sub);
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp8_ps(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), vsub));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (i < n) {
        const __m256i k = tail_mask8(n - i);
        const __m256 e = exp8_ps(_mm256_sub_ps(_mm256_mul_ps(_mm256_maskload_ps(x + i, k), vs), vsub));
        _mm256_maskstore_ps(x + i, k, e);
        acc = _mm256_add_ps(acc, _mm256_and_ps(e, _mm256_castsi256_ps(k)));
    }
    return hsum_ps(acc);
}

/* quant.h's rmsnorm: chains 0-3 and 4-7 of the double sums in two registers (8 squares converted per pair of
 * additions), then the scaling 8 lanes at a time. */
static void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 v = _mm256_loadu_ps(x + j), q = _mm256_mul_ps(v, v);
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(q)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(q, 1)));
    }
    double c[8];
    _mm256_storeu_pd(c, lo);
    _mm256_storeu_pd(c + 4, hi);
    const float scale = plm_rmsnorm_scale(c, x, j, n, eps);
    const __m256 vs = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), _mm256_loadu_ps(w + i)));
    for (; i < n; i++) out[i] = (x[i] * scale) * w[i];
}

/* quant.h's silu_mul: exp_sum_f32's exp of g * -1 - 0, then the quotient and the product, 8 lanes at a time. */
static void silu_mul(float *g, const float *u, int64_t n) {
    const __m256 neg = _mm256_set1_ps(-1.0f), zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 e = exp8_ps(_mm256_sub_ps(_mm256_mul_ps(x, neg), zero));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
    if (i < n) {
        const __m256i k = tail_mask8(n - i);
        const __m256 x = _mm256_maskload_ps(g + i, k);
        const __m256 e = exp8_ps(_mm256_sub_ps(_mm256_mul_ps(x, neg), zero));
        _mm256_maskstore_ps(g + i, k, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_maskload_ps(u + i, k)));
    }
}

/* F16 activations (F16 weights' dot partner) by vcvtps2ph, which the reference's conversion follows bit for bit
 * (NaN payloads included). */
static void quant_f16(const float *src, void *dst, int64_t n) {
    plm_f16 *h = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) h[i] = f2h(src[i]);
}

static inline __m256 load_bf16x8(const plm_bf16 *p) {
    const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

static float dot_bf16(int64_t n, const void *vw, const void *va) {
    const plm_bf16 *w = vw, *a = va;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load_bf16x8(w + i), load_bf16x8(a + i), s0);
        s1 = _mm256_fmadd_ps(load_bf16x8(w + i + 8), load_bf16x8(a + i + 8), s1);
        s2 = _mm256_fmadd_ps(load_bf16x8(w + i + 16), load_bf16x8(a + i + 16), s2);
        s3 = _mm256_fmadd_ps(load_bf16x8(w + i + 24), load_bf16x8(a + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load_bf16x8(w + i), load_bf16x8(a + i), s0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) sum += plm_bf16_to_f32(w[i]) * plm_bf16_to_f32(a[i]);
    return sum;
}

/* ---------------------------------------------- activation quantizers
 * Bit-identical to quant.c: the same fp32 products, rounding to nearest even,
 * NaN -> 0 and a clamp to [-127, 127] as in the reference. The fp16 stores go
 * through plm_f32_to_f16 itself. */

static inline float absmax_32(const float *x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_andnot_ps(sign, _mm256_loadu_ps(x));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8)));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 16)));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 24)));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* rintf(v) as int32 (ties to even), NaN -> 0, clamped to [-127, 127]. */
static inline __m256i round_even_epi32(__m256 v) {
    __m256 r = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_and_ps(r, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
    r = _mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    return _mm256_cvttps_epi32(r);
}

/* Four vectors of 8 int32 (elements 0..31 in order) -> 32 int8 in order. */
static inline __m256i pack_32(__m256i i0, __m256i i1, __m256i i2, __m256i i3) {
    const __m256i a = _mm256_packs_epi32(i0, i1);
    const __m256i b = _mm256_packs_epi32(i2, i3);
    const __m256i c = _mm256_packs_epi16(a, b);
    return _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static void quant_q8_0(const float *src, void *dst, int64_t n) {
    plm_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / PLM_QK; i++, src += PLM_QK) {
        const float amax = absmax_32(src), d = amax / 127.0f;
        const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        y[i].d = f2h(d);
        const __m256i i0 = round_even_epi32(_mm256_mul_ps(_mm256_loadu_ps(src), id));
        const __m256i i1 = round_even_epi32(_mm256_mul_ps(_mm256_loadu_ps(src + 8), id));
        const __m256i i2 = round_even_epi32(_mm256_mul_ps(_mm256_loadu_ps(src + 16), id));
        const __m256i i3 = round_even_epi32(_mm256_mul_ps(_mm256_loadu_ps(src + 24), id));
        _mm256_storeu_si256((__m256i *)y[i].qs, pack_32(i0, i1, i2, i3));
    }
}

static void quant_q8_1(const float *src, void *dst, int64_t n) {
    plm_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / PLM_QK; i++, src += PLM_QK) {
        const float amax = absmax_32(src), d = amax / 127.0f;
        const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        const __m256i i0 = round_even_epi32(_mm256_mul_ps(_mm256_loadu_ps(src), id));
        const __m256i i1 = round_even_epi32(_mm256_mul_ps(_mm256_loadu_ps(src + 8), id));
        const __m256i i2 = round_even_epi32(_mm256_mul_ps(_mm256_loadu_ps(src + 16), id));
        const __m256i i3 = round_even_epi32(_mm256_mul_ps(_mm256_loadu_ps(src + 24), id));
        const int sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
        _mm256_storeu_si256((__m256i *)y[i].qs, pack_32(i0, i1, i2, i3));
        y[i].d = f2h(d);
        y[i].s = f2h((float)sum * d);
    }
}

/* Q8_K: the signed value of largest magnitude is the first element whose
 * magnitude equals the vector maximum (as the reference's strict ">" scan
 * finds); rounding to nearest even matches ggml's nearest_int. */
static void quant_q8_K(const float *src, void *dst, int64_t n) {
    plm_block_q8_K *y = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / PLM_QK_K; i++, src += PLM_QK_K) {
        float amax = 0.0f;
        for (int j = 0; j < PLM_QK_K; j += 32) {
            const float m = absmax_32(src + j);
            amax = m > amax ? m : amax;
        }
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const __m256 vamax = _mm256_set1_ps(amax);
        int first = 0;
        for (int j = 0; j < PLM_QK_K; j += 8) {
            const __m256 ax = _mm256_andnot_ps(sign, _mm256_loadu_ps(src + j));
            const int mask = _mm256_movemask_ps(_mm256_cmp_ps(ax, vamax, _CMP_EQ_OQ));
            if (mask) {
                first = j + __builtin_ctz((unsigned)mask);
                break;
            }
        }
        const float iscale = -127.0f / src[first];
        if (!isfinite(iscale)) {
            memset(&y[i], 0, sizeof y[i]);
            y[i].d = 1.0f / iscale;
            continue;
        }
        const __m256 vis = _mm256_set1_ps(iscale);
        const __m256 lo = _mm256_set1_ps(-128.0f), hi = _mm256_set1_ps(127.0f);
        for (int j = 0; j < PLM_QK_K; j += 32) {
            __m256i q[4];
            for (int k = 0; k < 4; k++) {
                __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(src + j + 8 * k), vis),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
                q[k] = _mm256_cvtps_epi32(v);
            }
            const __m256i packed = pack_32(q[0], q[1], q[2], q[3]);
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), packed);
            /* bsums of elements j..j+15 and j+16..j+31: the two 128-bit lanes */
            const __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), packed), _mm256_set1_epi16(1));
            const __m256i s2 = _mm256_hadd_epi32(s32, s32);
            const __m256i s1 = _mm256_hadd_epi32(s2, s2);
            y[i].bsums[j / 16] = (int16_t)_mm256_cvtsi256_si32(s1);
            y[i].bsums[j / 16 + 1] = (int16_t)_mm_cvtsi128_si32(_mm256_extracti128_si256(s1, 1));
        }
        y[i].d = 1.0f / iscale;
    }
}

/* ------------------------------------------------------------- LoRA */

/* quant.h's lora_b32, 8 outputs at a time: a run's 128-byte group of 4 values of k for 32 outputs is four
 * registers of 8 lanes; q takes uq's signs (vpsignb), vpmaddubsw multiplies by |uq| and adds pairs (at most
 * 2 x 127 x 127, no saturation), vpmaddwd adds the pairs into the lane's int32 sum: exact, as the reference's;
 * then the reference's product and sum. */
static void lora_b32(int nb, int32_t rank4, const int8_t *uq, float c, const uint8_t *run, int64_t run_bytes, float *o) {
    const int ng = rank4 / 4;
    const __m256 cv = _mm256_set1_ps(c);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int b = 0; b < nb; b++, run += run_bytes, o += PLM_QK) {
        __m256i s[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
        for (int g = 0; g < ng; g++) {
            int32_t u4;
            memcpy(&u4, uq + 4 * g, 4);
            const __m256i U = _mm256_set1_epi32(u4), A = _mm256_abs_epi8(U);
            for (int j = 0; j < 4; j++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(run + 128 * g + 32 * j));
                const __m256i p = _mm256_maddubs_epi16(A, _mm256_sign_epi8(q, U));
                s[j] = _mm256_add_epi32(s[j], _mm256_madd_epi16(p, ones));
            }
        }
        const __m128i *e = (const __m128i *)(run + (size_t)PLM_QK * (size_t)rank4);
        for (int j = 0; j < 4; j++) {
            const __m256 ce = _mm256_mul_ps(cv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint8_t *)e + 16 * j))));
            _mm256_storeu_ps(o + 8 * j, _mm256_add_ps(_mm256_loadu_ps(o + 8 * j), _mm256_mul_ps(_mm256_cvtepi32_ps(s[j]), ce)));
        }
    }
}

/* quant.h's gelu_bias, 8 lanes at a time: the reference's operations lane by lane (the piece's coefficients picked
 * by a lane permute), so bit-identical to it. */
static inline __m256 gelu8(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 x = _mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f));
    const __m256 a = _mm256_min_ps(_mm256_andnot_ps(sign, x), _mm256_set1_ps(4.0f));
    const __m256i k = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_mul_ps(a, _mm256_set1_ps(2.0f))),
                                       _mm256_set1_epi32(PLM_ERF_PIECES - 1));
    const __m256 t = _mm256_sub_ps(a, _mm256_fmadd_ps(_mm256_cvtepi32_ps(k), _mm256_set1_ps(0.5f), _mm256_set1_ps(0.25f)));
    __m256 p = _mm256_permutevar8x32_ps(_mm256_loadu_ps(plm_erf_coef[PLM_ERF_DEGREE]), k);
    for (int j = PLM_ERF_DEGREE - 1; j >= 0; j--)
        p = _mm256_fmadd_ps(p, t, _mm256_permutevar8x32_ps(_mm256_loadu_ps(plm_erf_coef[j]), k));
    const __m256 h = _mm256_mul_ps(v, _mm256_set1_ps(0.5f));
    return _mm256_fmadd_ps(h, _mm256_or_ps(_mm256_andnot_ps(sign, p), _mm256_and_ps(sign, x)), h); /* copysignf */
}

static void gelu_bias(float *y, const float *b, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(y + i);
        if (b) v = _mm256_add_ps(v, _mm256_loadu_ps(b + i));
        _mm256_storeu_ps(y + i, gelu8(v));
    }
    if (i < n) plm_kernels_ref()->gelu_bias(y + i, b ? b + i : NULL, n - i);
}

/* ------------------------------------------------------------- table */

static plm_kernels g_table;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    for (uint32_t h = 0; h < (1u << 16); h++) g_f16_table[h] = plm_f16_to_f32((plm_f16)h);
    g_table = *plm_kernels_ref();
    g_table.name = "avx2";
    g_table.vec_dot[PLM_TYPE_F32] = dot_f32;
    g_table.vec_dot[PLM_TYPE_F16] = dot_f16;
    g_table.vec_dot[PLM_TYPE_BF16] = dot_bf16;
    g_table.vec_dot[PLM_TYPE_Q4_0] = dot_q4_0;
    g_table.vec_dot[PLM_TYPE_Q4_1] = dot_q4_1;
    g_table.vec_dot[PLM_TYPE_Q5_0] = dot_q5_0;
    g_table.vec_dot[PLM_TYPE_Q5_1] = dot_q5_1;
    g_table.vec_dot[PLM_TYPE_Q8_0] = dot_q8_0;
    g_table.vec_dot[PLM_TYPE_Q2_K] = dot_q2_K;
    g_table.vec_dot[PLM_TYPE_Q3_K] = dot_q3_K;
    g_table.vec_dot[PLM_TYPE_Q4_K] = dot_q4_K;
    g_table.vec_dot[PLM_TYPE_Q5_K] = dot_q5_K;
    g_table.vec_dot[PLM_TYPE_Q6_K] = dot_q6_K;
    g_table.gemm[PLM_TYPE_F32] = gemm_f32;
    g_table.gemm[PLM_TYPE_F16] = gemm_f16;
    g_table.gemm[PLM_TYPE_Q4_0] = gemm_q4_0;
    g_table.gemm[PLM_TYPE_Q4_1] = gemm_q4_1;
    g_table.gemm[PLM_TYPE_Q8_0] = gemm_q8_0;
    g_table.gemm[PLM_TYPE_Q5_0] = gemm_q5_0;
    g_table.gemm[PLM_TYPE_Q4_K] = gemm_q4_K;
    g_table.gemm[PLM_TYPE_Q6_K] = gemm_q6_K;
    g_table.quantize[PLM_TYPE_Q8_0] = quant_q8_0;
    g_table.quantize[PLM_TYPE_Q8_1] = quant_q8_1;
    g_table.quantize[PLM_TYPE_Q8_K] = quant_q8_K;
    g_table.quantize[PLM_TYPE_F16] = quant_f16;
    g_table.round_f16 = round_f16;
    g_table.kq8_f16 = kq8_f16;
    g_table.kqt_f16 = kqt_f16;
    g_table.pv8_f16 = pv8_f16;
    g_table.max_f32 = max_f32;
    g_table.exp_sum_f32 = exp_sum_f32;
    g_table.lora_b32 = lora_b32;
    g_table.gelu_bias = gelu_bias;
    g_table.silu_mul = silu_mul;
    g_table.rmsnorm = rmsnorm;
}

const plm_kernels *plm_kernels_avx2_table(void) {
    pthread_once(&g_once, build_table);
    return &g_table;
}
