/*
 * test_quant.c — block formats, fp16/bf16 conversions, quantizers and dot
 * kernels (csrc/quant.c, csrc/kernels/).
 *
 * The scalar reference is checked against the format definitions (hand-built
 * blocks with values worked out by hand) and against a double-precision dot
 * of dequantized rows; each SIMD table is then checked against the reference
 * on many random rows. Tolerances are named constants, relative to
 * sum |w_i a_i| (the scale of the rounding error of a dot product).
 */
#include "matmul.h"
#include "quant.h"
#include "pocketlm.h"
#include "test.h"

#include <float.h>
#include <stdint.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

/* ref vec_dot vs a double dot of the dequantized rows: integer sums are exact,
 * so this covers fp32 accumulation over a few thousand elements. */
static const double TOL_DOT_REL = 1e-5;
/* SIMD vs reference dot on the same blocks: a different fp32 summation order
 * (and fp32 instead of double for the float formats). */
static const double TOL_SIMD_REL = 2e-5;
/* Q8_1 stores s = fp16(d * sum(q)); a Q4_1/Q5_1 dot uses m * s, which differs
 * from m * fp16(d) * sum(q) by at most this fraction of |m * d * sum(q)|
 * (two fp16 roundings, 2^-11 each). */
static const double TOL_Q8_1_S_REL = 1.0 / 1024;

/* ------------------------------------------------------------- helpers */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng_u64(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

static float rng_uniform(void) { return (float)((rng_u64() >> 40) * (1.0 / 16777216.0)); } /* [0, 1) */

static float rng_normal(void) {
    float s = 0.0f;
    for (int i = 0; i < 12; i++) s += rng_uniform();
    return s - 6.0f;
}

/* Activations with the occasional outlier, as in real hidden states. */
static void fill_activations(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        x[i] = rng_normal();
        if (rng_u64() % 64 == 0) x[i] *= 20.0f;
    }
}

static void set_f16(void *block, size_t offset, float value) {
    const plm_f16 h = plm_f32_to_f16(value);
    memcpy((uint8_t *)block + offset, &h, sizeof h);
}

static bool is_k_type(plm_type t) {
    return t == PLM_TYPE_Q2_K || t == PLM_TYPE_Q3_K || t == PLM_TYPE_Q4_K || t == PLM_TYPE_Q5_K ||
           t == PLM_TYPE_Q6_K;
}

/* A weight row of random bytes whose fp16 scales are set to small finite
 * values, so every bit pattern of the quants and packed scales is exercised. */
static void fill_random_weights(plm_type type, void *dst, int64_t n) {
    const plm_type_traits *t = plm_type_traits_get(type);
    uint8_t *p = dst;
    const size_t size = plm_type_row_size(type, n);
    for (size_t i = 0; i < size; i++) p[i] = (uint8_t)rng_u64();
    if (type == PLM_TYPE_F32) {
        float *f = dst;
        for (int64_t i = 0; i < n; i++) f[i] = rng_normal();
        return;
    }
    if (type == PLM_TYPE_F16 || type == PLM_TYPE_BF16) {
        uint16_t *h = dst;
        for (int64_t i = 0; i < n; i++) h[i] = type == PLM_TYPE_F16 ? plm_f32_to_f16(rng_normal()) : plm_f32_to_bf16(rng_normal());
        return;
    }
    for (int64_t b = 0; b < n / t->block_size; b++) {
        uint8_t *blk = p + (size_t)b * t->type_size;
        const float d = (rng_uniform() - 0.5f) * 0.05f;
        const float m = (rng_uniform() - 0.5f) * 0.2f;
        const float dpos = rng_uniform() * 0.01f;
        switch (type) {
        case PLM_TYPE_Q4_0: set_f16(blk, offsetof(plm_block_q4_0, d), d); break;
        case PLM_TYPE_Q5_0: set_f16(blk, offsetof(plm_block_q5_0, d), d); break;
        case PLM_TYPE_Q8_0: set_f16(blk, offsetof(plm_block_q8_0, d), d); break;
        case PLM_TYPE_Q4_1:
            set_f16(blk, offsetof(plm_block_q4_1, d), d);
            set_f16(blk, offsetof(plm_block_q4_1, m), m);
            break;
        case PLM_TYPE_Q5_1:
            set_f16(blk, offsetof(plm_block_q5_1, d), d);
            set_f16(blk, offsetof(plm_block_q5_1, m), m);
            break;
        case PLM_TYPE_Q2_K:
            set_f16(blk, offsetof(plm_block_q2_K, d), dpos);
            set_f16(blk, offsetof(plm_block_q2_K, dmin), dpos * 0.5f);
            break;
        case PLM_TYPE_Q3_K: set_f16(blk, offsetof(plm_block_q3_K, d), d); break;
        case PLM_TYPE_Q4_K:
            set_f16(blk, offsetof(plm_block_q4_K, d), dpos);
            set_f16(blk, offsetof(plm_block_q4_K, dmin), dpos * 0.5f);
            break;
        case PLM_TYPE_Q5_K:
            set_f16(blk, offsetof(plm_block_q5_K, d), dpos);
            set_f16(blk, offsetof(plm_block_q5_K, dmin), dpos * 0.5f);
            break;
        case PLM_TYPE_Q6_K: set_f16(blk, offsetof(plm_block_q6_K, d), d * 0.1f); break;
        default: break;
        }
    }
}

/* The dot of the dequantized rows in double, sum |w_i a_i|, and the extra
 * allowance for Q8_1's fp16 s (zero for other activation types). */
typedef struct {
    double dot, mag, extra;
} expected_dot;

static expected_dot expect_dot(plm_type wtype, const void *w, const void *a, int64_t n) {
    const plm_type atype = plm_type_traits_get(wtype)->dot_type;
    float *wf = malloc((size_t)n * sizeof(float));
    float *af = malloc((size_t)n * sizeof(float));
    expected_dot e = {0, 0, 0};
    plm_dequantize_row_ref(wtype, w, wf, n);
    plm_dequantize_row_ref(atype, a, af, n);
    for (int64_t i = 0; i < n; i++) {
        e.dot += (double)wf[i] * af[i];
        e.mag += fabs((double)wf[i] * af[i]);
    }
    if (atype == PLM_TYPE_Q8_1) {
        const plm_block_q8_1 *ab = a;
        for (int64_t b = 0; b < n / PLM_QK; b++) {
            const plm_f16 mh = wtype == PLM_TYPE_Q4_1 ? ((const plm_block_q4_1 *)w)[b].m : ((const plm_block_q5_1 *)w)[b].m;
            int sum = 0;
            for (int j = 0; j < PLM_QK; j++) sum += ab[b].qs[j];
            e.extra += fabs((double)plm_f16_to_f32(mh) * plm_f16_to_f32(ab[b].d) * sum) * TOL_Q8_1_S_REL;
        }
    }
    free(wf);
    free(af);
    return e;
}

static const plm_type k_weight_types[] = {
    PLM_TYPE_F32,  PLM_TYPE_F16,  PLM_TYPE_BF16, PLM_TYPE_Q4_0, PLM_TYPE_Q4_1, PLM_TYPE_Q5_0, PLM_TYPE_Q5_1,
    PLM_TYPE_Q8_0, PLM_TYPE_Q2_K, PLM_TYPE_Q3_K, PLM_TYPE_Q4_K, PLM_TYPE_Q5_K, PLM_TYPE_Q6_K,
};
#define N_WEIGHT_TYPES (sizeof k_weight_types / sizeof k_weight_types[0])

/* ------------------------------------------------------ layout, traits */

static void test_layout_and_traits(void) {
    CHECK(sizeof(plm_block_q4_0) == 18 && sizeof(plm_block_q4_1) == 20);
    CHECK(sizeof(plm_block_q5_0) == 22 && sizeof(plm_block_q5_1) == 24);
    CHECK(sizeof(plm_block_q8_0) == 34 && sizeof(plm_block_q8_1) == 36);
    CHECK(sizeof(plm_block_q2_K) == 84 && sizeof(plm_block_q3_K) == 110);
    CHECK(sizeof(plm_block_q4_K) == 144 && sizeof(plm_block_q5_K) == 176);
    CHECK(sizeof(plm_block_q6_K) == 210 && sizeof(plm_block_q8_K) == 292);

    static const struct {
        plm_type type;
        const char *name;
        int32_t block;
        uint32_t size;
        plm_type dot;
        bool weight;
    } want[] = {
        {PLM_TYPE_F32, "F32", 1, 4, PLM_TYPE_F32, true},       {PLM_TYPE_F16, "F16", 1, 2, PLM_TYPE_F16, true},
        {PLM_TYPE_BF16, "BF16", 1, 2, PLM_TYPE_BF16, true},    {PLM_TYPE_Q4_0, "Q4_0", 32, 18, PLM_TYPE_Q8_0, true},
        {PLM_TYPE_Q4_1, "Q4_1", 32, 20, PLM_TYPE_Q8_1, true},  {PLM_TYPE_Q5_0, "Q5_0", 32, 22, PLM_TYPE_Q8_0, true},
        {PLM_TYPE_Q5_1, "Q5_1", 32, 24, PLM_TYPE_Q8_1, true},  {PLM_TYPE_Q8_0, "Q8_0", 32, 34, PLM_TYPE_Q8_0, true},
        {PLM_TYPE_Q8_1, "Q8_1", 32, 36, PLM_TYPE_Q8_1, false}, {PLM_TYPE_Q2_K, "Q2_K", 256, 84, PLM_TYPE_Q8_K, true},
        {PLM_TYPE_Q3_K, "Q3_K", 256, 110, PLM_TYPE_Q8_K, true}, {PLM_TYPE_Q4_K, "Q4_K", 256, 144, PLM_TYPE_Q8_K, true},
        {PLM_TYPE_Q5_K, "Q5_K", 256, 176, PLM_TYPE_Q8_K, true}, {PLM_TYPE_Q6_K, "Q6_K", 256, 210, PLM_TYPE_Q8_K, true},
        {PLM_TYPE_Q8_K, "Q8_K", 256, 292, PLM_TYPE_Q8_K, false},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const plm_type_traits *t = plm_type_traits_get(want[i].type);
        REQUIRE(t != NULL);
        CHECKF(strcmp(t->name, want[i].name) == 0, "%s", want[i].name);
        CHECKF(t->block_size == want[i].block && t->type_size == want[i].size, "%s", want[i].name);
        CHECKF(t->dot_type == want[i].dot && t->is_weight == want[i].weight, "%s", want[i].name);
    }
    /* ids GGUF defines that we do not support, and out-of-range ids */
    const uint32_t unknown[] = {4, 5, 16, 17, 20, 29, 31, 39, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) CHECKF(plm_type_traits_get(unknown[i]) == NULL, "id %u", unknown[i]);

    CHECK(plm_type_row_size(PLM_TYPE_Q4_0, 4096) == 128 * 18);
    CHECK(plm_type_row_size(PLM_TYPE_Q6_K, 4096) == 16 * 210);
    CHECK(plm_type_row_size(PLM_TYPE_F16, 7) == 14);
    CHECK(plm_type_row_size(PLM_TYPE_F32, 0) == 0);
    CHECK(plm_type_row_size((plm_type)5, 32) == 0);
}

/* ------------------------------------------------------ fp16 and bf16 */

/* The SIMD tables this build knows, in order, with what each needs; a table
 * the CPU cannot run is reported as skipped, never silently passed over. */
typedef struct simd_table {
    const char *name;
    const plm_kernels *(*get)(void);   /* NULL: not in this build */
    const plm_kernels *(*table)(void); /* the table without the CPU check */
    bool (*cpu_has)(void);
    const char *needs;
    int min_gemm; /* weight types with a gemm kernel the table must have */
} simd_table;

/* CPU features read here independently of kernels/dispatch.c (compilers
 * disagree on which names __builtin_cpu_supports knows). */
#if defined(__x86_64__) || defined(__i386__)
static bool cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

static bool cpu_has_avx2_fma_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_FMA) || !(c & bit_F16C)) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2"); /* includes the OS's YMM support */
}

/* AVX-512 F/BW/VL/VNNI; libgcc's cpu model also checks that the OS saves the ZMM state. */
static bool cpu_has_avx512_vnni(void) {
    if (!cpu_has_avx2_fma_f16c()) return false;
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

/* AMX-TILE and AMX-INT8 (CPUID leaf 7: EDX bits 24 and 25). */
static bool cpu_has_amx_int8(void) {
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & (1u << 24)) && (d & (1u << 25));
}

static const simd_table k_simd_tables[] = {
    {"avx2", plm_kernels_avx2, plm_kernels_avx2_table, cpu_has_avx2_fma_f16c, "AVX2, FMA and F16C", 5},
    {"avx512", plm_kernels_avx512, plm_kernels_avx512_table, cpu_has_avx512_vnni, "AVX-512 F/BW/VL/VNNI", 5},
    {"amx", NULL, NULL, cpu_has_amx_int8, "AMX-TILE/AMX-INT8", 5},
};

#define HW_F16_NAME "F16C"
static bool cpu_has_hw_f16(void) { return cpu_has_f16c(); }
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f) { return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }
__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

#elif defined(__aarch64__) && defined(__linux__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
static bool cpu_has_asimd(void) { return true; } /* part of every aarch64 CPU */
static bool cpu_has_asimddp(void) { return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0; }

static const simd_table k_simd_tables[] = {
    {"neon", plm_kernels_neon, plm_kernels_neon_table, cpu_has_asimd, "Advanced SIMD", 5},
    {"neon-dotprod", plm_kernels_neon_dotprod, plm_kernels_neon_dotprod_table, cpu_has_asimddp,
     "the dot-product extension (HWCAP asimddp)", 5},
};

/* FCVT (armv8-a) converts in the FPCR's rounding mode: nearest even by default. */
#define HW_F16_NAME "FCVT"
static bool cpu_has_hw_f16(void) { return true; }
static uint16_t hw_f32_to_f16(float f) {
    const __fp16 h = (__fp16)f;
    uint16_t u;
    memcpy(&u, &h, sizeof u);
    return u;
}
static float hw_f16_to_f32(uint16_t u) {
    __fp16 h;
    memcpy(&h, &u, sizeof h);
    return (float)h;
}

#else
static bool cpu_has_nothing(void) { return false; }
static const simd_table k_simd_tables[] = {
    {"simd", NULL, NULL, cpu_has_nothing, "a SIMD kernel table (none for this architecture)", 0},
};
#define HW_F16_NAME "hardware"
static bool cpu_has_hw_f16(void) { return false; }
static uint16_t hw_f32_to_f16(float f) { return plm_f32_to_f16(f); }
static float hw_f16_to_f32(uint16_t h) { return plm_f16_to_f32(h); }
#endif
#define N_SIMD_TABLES (sizeof k_simd_tables / sizeof k_simd_tables[0])

/* Table i if this CPU runs it, else NULL after printing why it is skipped. */
static const plm_kernels *simd_table_or_skip(size_t i) {
    const simd_table *t = &k_simd_tables[i];
    if (!t->cpu_has()) {
        fprintf(stderr, "  skipped: %s needs %s\n", t->name, t->needs);
        return NULL;
    }
    if (t->get == NULL) {
        fprintf(stderr, "  skipped: %s needs a kernel table this build does not have (the CPU has %s)\n", t->name,
                t->needs);
        return NULL;
    }
    return t->get();
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void test_f16_known_values(void) {
    static const struct {
        float f;
        uint16_t h;
    } cases[] = {
        {0.0f, 0x0000},
        {-0.0f, 0x8000},
        {1.0f, 0x3c00},
        {-2.0f, 0xc000},
        {0.5f, 0x3800},
        {65504.0f, 0x7bff},        /* largest half */
        {65519.0f, 0x7bff},        /* below the halfway point to 65536 */
        {65520.0f, 0x7c00},        /* halfway: ties to even -> inf */
        {1e10f, 0x7c00},
        {-1e10f, 0xfc00},
        {0x1p-14f, 0x0400},        /* smallest normal */
        {0x1p-24f, 0x0001},        /* smallest subnormal */
        {0x1p-25f, 0x0000},        /* halfway to it: ties to even -> 0 */
        {0x1.8p-24f, 0x0002},      /* 1.5 ulp: ties to even -> 2 */
        {0x1.4p-24f, 0x0001},      /* 1.25 ulp */
        {0x1.ffcp-15f, 0x0400},    /* 1023.5 subnormal ulps -> ties to even 1024 = smallest normal */
        {1.0f + 0x1p-11f, 0x3c00}, /* halfway between 1 and 1 + 2^-10: even is 1 */
        {1.0f + 0x1.8p-10f, 0x3c02},
        {1e-10f, 0x0000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECKF(plm_f32_to_f16(cases[i].f) == cases[i].h, "%a -> 0x%04x, want 0x%04x", cases[i].f, plm_f32_to_f16(cases[i].f),
               cases[i].h);
    CHECK(plm_f32_to_f16(INFINITY) == 0x7c00 && plm_f32_to_f16(-INFINITY) == 0xfc00);
    const uint16_t hn = plm_f32_to_f16(NAN);
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
    CHECK(plm_f16_to_f32(0x7c00) == INFINITY && plm_f16_to_f32(0xfc00) == -INFINITY);
    CHECK(isnan(plm_f16_to_f32(0x7e00)) && isnan(plm_f16_to_f32(0x7c01)));
    CHECK(plm_f16_to_f32(0x0001) == 0x1p-24f && plm_f16_to_f32(0x83ff) == -0x1.ff8p-15f);
    CHECK(plm_f16_to_f32(0x3555) == 0x1.554p-2f);
}

/* Every half survives f16 -> f32 -> f16; every f32 -> f16 agrees with the
 * hardware conversion (F16C on x86-64, FCVT on aarch64) on all
 * subnormal-range and many random inputs. */
static void test_f16_exhaustive(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = plm_f16_to_f32((plm_f16)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            bad += !isnan(f);
            bad += (plm_f32_to_f16(f) & 0x7fff) <= 0x7c00;
        } else {
            bad += plm_f32_to_f16(f) != h;
        }
    }
    CHECKF(bad == 0, "%d halves do not round-trip", bad);

    if (!cpu_has_hw_f16()) {
        fprintf(stderr, "  note: no " HW_F16_NAME ", skipping the hardware comparison\n");
        return;
    }
    int mism = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = hw_f16_to_f32((uint16_t)h);
        if (!isnan(f)) mism += bits_of(f) != bits_of(plm_f16_to_f32((plm_f16)h));
    }
    /* all floats below 2^-13 (subnormal halves and their rounding), in steps */
    for (uint32_t u = 0; u < 0x39000000u; u += 0x1013) {
        const float f = float_of(u);
        mism += hw_f32_to_f16(f) != plm_f32_to_f16(f);
        mism += hw_f32_to_f16(-f) != plm_f32_to_f16(-f);
    }
    for (int i = 0; i < 2000000; i++) {
        const float f = float_of((uint32_t)rng_u64());
        if (isnan(f)) continue;
        mism += hw_f32_to_f16(f) != plm_f32_to_f16(f);
    }
    /* exact ties of every exponent: the mantissa's dropped 13 bits = 0x1000 */
    for (uint32_t e = 100; e < 145; e++)
        for (uint32_t m = 0; m < 64; m++) {
            const float f = float_of((e << 23) | (m << 13) | 0x1000u);
            mism += hw_f32_to_f16(f) != plm_f32_to_f16(f);
        }
    CHECKF(mism == 0, "%d conversions differ from " HW_F16_NAME, mism);
}

static void test_bf16(void) {
    CHECK(plm_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(plm_f32_to_bf16(-2.0f) == 0xc000);
    CHECK(plm_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80);   /* tie -> even */
    CHECK(plm_f32_to_bf16(1.0f + 0x1.8p-7f) == 0x3f82); /* tie -> even (up) */
    CHECK(plm_f32_to_bf16(1.0f + 0x1.2p-8f) == 0x3f81); /* above the tie */
    CHECK(plm_f32_to_bf16(INFINITY) == 0x7f80 && plm_f32_to_bf16(-INFINITY) == 0xff80);
    CHECK(plm_f32_to_bf16(3.4e38f) == 0x7f80); /* rounds past the largest bf16 */
    CHECK(plm_f32_to_bf16(0x1p-130f) == 0x0008); /* subnormals are kept, not flushed */
    const uint16_t bn = plm_f32_to_bf16(float_of(0x7f800001u)); /* signalling NaN -> quiet */
    CHECK((bn & 0x7f80) == 0x7f80 && (bn & 0x40));
    CHECK(plm_bf16_to_f32(0x3f80) == 1.0f && plm_bf16_to_f32(0xc2f7) == -123.5f);
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = plm_bf16_to_f32((plm_bf16)h);
        bad += bits_of(f) != h << 16;
        if (!isnan(f)) bad += plm_f32_to_bf16(f) != h;
    }
    CHECKF(bad == 0, "%d bf16 values do not round-trip", bad);
}

/* ------------------------------------------ known blocks, decoded by hand */

static void test_dequant_known_32(void) {
    float y[PLM_QK];

    plm_block_q4_0 b40;
    memset(b40.qs, 0x88, sizeof b40.qs);
    b40.d = 0x3800; /* 0.5 */
    b40.qs[0] = 0x1f;
    plm_dequantize_row_ref(PLM_TYPE_Q4_0, &b40, y, PLM_QK);
    CHECK(y[0] == 3.5f && y[16] == -3.5f && y[1] == 0.0f && y[31] == 0.0f);

    plm_block_q4_1 b41;
    memset(b41.qs, 0, sizeof b41.qs);
    b41.d = 0x3800; /* 0.5 */
    b41.m = 0xbc00; /* -1 */
    b41.qs[3] = 0xa2;
    plm_dequantize_row_ref(PLM_TYPE_Q4_1, &b41, y, PLM_QK);
    CHECK(y[3] == 0.0f && y[19] == 4.0f && y[0] == -1.0f);

    /* Q5_0: qh bit j is element j's fifth bit; qh = 0x00020001 sets elements 0 and 17 */
    plm_block_q5_0 b50;
    memset(b50.qs, 0, sizeof b50.qs);
    b50.d = 0x4000; /* 2 */
    b50.qh[0] = 0x01;
    b50.qh[1] = 0x00;
    b50.qh[2] = 0x02;
    b50.qh[3] = 0x00;
    b50.qs[0] = 0x50; /* element 0: 0 | 16 -> 0; element 16: 5, bit clear -> 5 - 16 */
    b50.qs[1] = 0x03; /* element 1: 3 - 16; element 17: 0 | 16 -> 0 */
    plm_dequantize_row_ref(PLM_TYPE_Q5_0, &b50, y, PLM_QK);
    CHECK(y[0] == 0.0f && y[16] == -22.0f && y[1] == -26.0f && y[17] == 0.0f && y[2] == -32.0f);

    plm_block_q5_1 b51;
    memset(b51.qs, 0, sizeof b51.qs);
    memset(b51.qh, 0, sizeof b51.qh);
    b51.d = 0x3c00; /* 1 */
    b51.m = 0x4200; /* 3 */
    b51.qh[3] = 0x80; /* bit 31: element 31 */
    b51.qs[15] = 0xf7; /* element 15: 7; element 31: 15 | 16 */
    plm_dequantize_row_ref(PLM_TYPE_Q5_1, &b51, y, PLM_QK);
    CHECK(y[15] == 10.0f && y[31] == 34.0f && y[0] == 3.0f);

    plm_block_q8_0 b80;
    memset(b80.qs, 0, sizeof b80.qs);
    b80.d = 0x3400; /* 0.25 */
    b80.qs[5] = -8;
    b80.qs[31] = 127;
    plm_dequantize_row_ref(PLM_TYPE_Q8_0, &b80, y, PLM_QK);
    CHECK(y[5] == -2.0f && y[31] == 31.75f && y[0] == 0.0f);

    const plm_f16 hf[4] = {0x3c00, 0xc000, 0x7bff, 0x0001};
    plm_dequantize_row_ref(PLM_TYPE_F16, hf, y, 4);
    CHECK(y[0] == 1.0f && y[1] == -2.0f && y[2] == 65504.0f && y[3] == 0x1p-24f);
    const plm_bf16 hb[2] = {0x3f80, 0xc2f7};
    plm_dequantize_row_ref(PLM_TYPE_BF16, hb, y, 2);
    CHECK(y[0] == 1.0f && y[1] == -123.5f);
}

static void test_dequant_known_k(void) {
    float y[PLM_QK_K];

    /* Q2_K: element 128c + 32j + 16h + l = bits 2j of qs[32c + 16h + l],
     * scale byte 8c + 2j + h = (min << 4) | scale; value d*scale*q - dmin*min. */
    plm_block_q2_K b2;
    memset(&b2, 0, sizeof b2);
    b2.d = 0x3c00;    /* 1 */
    b2.dmin = 0x3800; /* 0.5 */
    b2.scales[0] = 0x21; /* scale 1, min 2 */
    b2.scales[2] = 0x13; /* scale 3, min 1 */
    b2.scales[11] = 0xf7; /* c = 1, j = 1, h = 1: scale 7, min 15 */
    b2.qs[0] = 0xe4;     /* bits: j0 = 0, j1 = 1, j2 = 2, j3 = 3 */
    b2.qs[32 + 16 + 4] = 0x08; /* j1 bits = 2 */
    plm_dequantize_row_ref(PLM_TYPE_Q2_K, &b2, y, PLM_QK_K);
    CHECK(y[0] == -1.0f);  /* 1*1*0 - 0.5*2 */
    CHECK(y[32] == 2.5f);  /* j = 1, scale 2: 1*3*1 - 0.5*1 */
    CHECK(y[1] == -1.0f);
    CHECK(y[128 + 32 + 16 + 4] == 6.5f); /* 7*2 - 0.5*15 */

    /* Q3_K: scale j = (low 4 bits | 2 high bits << 4) - 32; low 4 bits in the
     * nibbles of bytes 0..7, high 2 bits at byte 8 + j%4, bit 2*(j/4). */
    plm_block_q3_K b3;
    memset(&b3, 0, sizeof b3);
    b3.d = 0x3800;          /* 0.5 */
    b3.scales[0] = 0x05;    /* scale 0 low bits 5 */
    b3.scales[8] = 0x02;    /* scale 0 high bits 2: 37 - 32 = 5 */
    b3.scales[5] = 0xd0;    /* scale 13 low bits 13 */
    b3.scales[9] = 0x40;    /* scale 13 high bits (bits 6-7 of byte 9) 1: 29 - 32 = -3 */
    b3.qs[0] = 0x03;        /* element 0: 3 */
    b3.hmask[0] = 0x01;     /* element 0 high bit set: 3 */
    /* element 1: 0, high bit clear: -4 */
    /* element 210 = 128 + 64 + 16 + 2: c1 j2 h1 l2 -> qs[32 + 16 + 2] bits 4-5, hmask[18] bit 6, scale 13 */
    b3.qs[50] = 0x20;
    b3.hmask[18] = 0x40;
    plm_dequantize_row_ref(PLM_TYPE_Q3_K, &b3, y, PLM_QK_K);
    CHECK(y[0] == 7.5f);
    CHECK(y[1] == -10.0f);
    CHECK(y[210] == -3.0f);
    CHECK(y[16] == 64.0f); /* scale 1 = 0 - 32 = -32, q = 0 - 4: 0.5 * -32 * -4 */

    /* Q4_K: sub-block 1 (scale 10, min 3) and 6 (scale 45, min 50) by hand:
     * j < 4 keeps 6 bits in bytes j and j+4; j >= 4 keeps the low nibbles in
     * byte j+4 and the top 2 bits in bytes j-4 and j. */
    uint8_t sc[12] = {0};
    sc[1] = 10;
    sc[5] = 3;
    sc[10] = 0x2d; /* 45 & 15 | (50 & 15) << 4 */
    sc[2] = 0x80;  /* (45 >> 4) << 6 */
    sc[6] = 0xc0;  /* (50 >> 4) << 6 */
    plm_block_q4_K b4;
    memset(&b4, 0, sizeof b4);
    b4.d = 0x3800;    /* 0.5 */
    b4.dmin = 0x3400; /* 0.25 */
    memcpy(b4.scales, sc, 12);
    b4.qs[4] = 0x70;  /* element 36 (sub-block 1, high nibble): 7 */
    b4.qs[98] = 0x09; /* element 194 (sub-block 6, low nibble of qs[96 + 2]): 9 */
    plm_dequantize_row_ref(PLM_TYPE_Q4_K, &b4, y, PLM_QK_K);
    CHECK(y[36] == 34.25f); /* 0.5*10*7 - 0.25*3 */
    CHECK(y[194] == 190.0f); /* 0.5*45*9 - 0.25*50 */
    CHECK(y[0] == 0.0f && y[35] == -0.75f);

    plm_block_q5_K b5;
    memset(&b5, 0, sizeof b5);
    b5.d = 0x3800;
    b5.dmin = 0x3400;
    memcpy(b5.scales, sc, 12);
    b5.qs[4] = 0x70;
    b5.qs[98] = 0x09;
    b5.qh[4] = 0x02; /* bit 1: high nibbles of the first 64 -> element 36 */
    b5.qh[2] = 0x40; /* bit 6: low nibbles of the fourth 64 -> element 194 */
    plm_dequantize_row_ref(PLM_TYPE_Q5_K, &b5, y, PLM_QK_K);
    CHECK(y[36] == 114.25f); /* 0.5*10*23 - 0.75 */
    CHECK(y[194] == 550.0f); /* 0.5*45*25 - 12.5 */

    /* Q6_K: element 128c + 32k + l: low nibble (k < 2) or high nibble (k >= 2)
     * of ql[64c + 32(k&1) + l], bits 2k of qh[32c + l]; scale 8c + 2k + l/16. */
    plm_block_q6_K b6;
    memset(&b6, 0, sizeof b6);
    b6.d = 0x3800; /* 0.5 */
    b6.scales[0] = 2;
    b6.scales[5] = -3;
    b6.scales[14] = 7;
    b6.ql[0] = 0x05;
    b6.qh[0] = 0x02;  /* element 0: 5 | 2 << 4 = 37 -> 5 */
    b6.ql[20] = 0xa0; /* element 84 (k 2, l 20): high nibble 10, qh bits 4-5 = 0 -> 10 - 32 */
    b6.ql[97] = 0xf0; /* element 225 (c 1, k 3, l 1): high nibble 15 */
    b6.qh[33] = 0xc0; /* ... qh bits 6-7 = 3: 63 - 32 = 31 */
    plm_dequantize_row_ref(PLM_TYPE_Q6_K, &b6, y, PLM_QK_K);
    CHECK(y[0] == 5.0f);
    CHECK(y[84] == 33.0f);    /* 0.5 * -3 * -22 */
    CHECK(y[225] == 108.5f);  /* 0.5 * 7 * 31 */
    CHECK(y[1] == -32.0f);    /* 0.5 * 2 * -32 */
}

/* ---------------------------------------------------- quantizers */

/* Q8_0 and Q8_1 against the formula written out: d = amax/127, q =
 * rintf(x * (127/amax)) (ties to even, as llama.cpp's x86 quantizer), s = fp16(d * sum q). */
static void test_quantize_q8_0_q8_1(void) {
    enum { N = 32 * 64 };
    float *x = malloc(N * sizeof(float));
    plm_block_q8_0 *y0 = malloc(N / 32 * sizeof *y0);
    plm_block_q8_1 *y1 = malloc(N / 32 * sizeof *y1);
    fill_activations(x, N);
    /* block 1: ties (amax = 127, so x*id = x) */
    for (int j = 0; j < 32; j++) x[32 + j] = (float)(j - 16) + 0.5f;
    x[32 + 31] = 127.0f;
    /* block 2: all zero; block 3: one nonzero; block 4: tiny values */
    for (int j = 0; j < 32; j++) x[64 + j] = 0.0f;
    for (int j = 0; j < 32; j++) x[96 + j] = j == 7 ? -3.0f : 0.0f;
    for (int j = 0; j < 32; j++) x[128 + j] = (float)(j - 16) * 1e-30f;
    plm_quantize_row_ref(PLM_TYPE_Q8_0, x, y0, N);
    plm_quantize_row_ref(PLM_TYPE_Q8_1, x, y1, N);
    int bad = 0;
    for (int b = 0; b < N / 32; b++) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fabsf(x[32 * b + j]) > amax ? fabsf(x[32 * b + j]) : amax;
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            const int q = (int)rintf(x[32 * b + j] * id);
            bad += y0[b].qs[j] != q;
            bad += y1[b].qs[j] != q;
            sum += q;
        }
        bad += y0[b].d != plm_f32_to_f16(d) || y1[b].d != plm_f32_to_f16(d);
        bad += y1[b].s != plm_f32_to_f16(d * (float)sum);
    }
    CHECKF(bad == 0, "%d mismatches", bad);
    /* the tie block: halves round to even */
    CHECK(y0[1].qs[0] == -16 && y0[1].qs[15] == 0 && y0[1].qs[16] == 0 && y0[1].qs[18] == 2 && y0[1].qs[31] == 127);
    CHECK(y0[1].qs[14] == -2); /* -1.5 */
    CHECK(y0[2].d == 0 && y0[2].qs[0] == 0 && y1[2].s == 0);
    CHECK(y0[3].qs[7] == -127 && y0[3].qs[0] == 0);
    /* a row's Q8_1 blocks as Q8_0 (the LoRA path's input for A from the base's Q8_1 activations, matmul.c) are the
     * Q8_0 quantizer's bytes; the SIMD tables' quantizers equal these (test_simd_quantizers_bit_identical) */
    plm_block_q8_0 *y01 = malloc(N / 32 * sizeof *y01);
    plm_q8_1_as_q8_0(y1, y01, N);
    CHECK(memcmp(y0, y01, N / 32 * sizeof *y0) == 0);
    free(y01);
    free(x);
    free(y0);
    free(y1);
}

/* Q8_K against the formula written out with rintf (ties to even) instead of
 * the reference's float-magic rounding. */
static void test_quantize_q8_K(void) {
    enum { N = 256 * 16 };
    float *x = malloc(N * sizeof(float));
    plm_block_q8_K *y = malloc(N / 256 * sizeof *y);
    fill_activations(x, N);
    /* block 1: max is -127 so iscale = 1 and x*iscale ties land on even */
    for (int j = 0; j < 256; j++) x[256 + j] = (float)((j % 40) - 20) + 0.5f;
    x[256 + 9] = -127.0f;
    /* block 2: all zero */
    for (int j = 0; j < 256; j++) x[512 + j] = 0.0f;
    /* blocks 3 and 4: +5 and -5 both present; the first one sets the sign */
    for (int j = 0; j < 256; j++) x[768 + j] = x[1024 + j] = (float)(j % 7) * 0.25f;
    x[768 + 3] = -5.0f;
    x[768 + 10] = 5.0f;
    x[1024 + 3] = 5.0f;
    x[1024 + 10] = -5.0f;
    /* block 5: |max| < 127/FLT_MAX, so iscale overflows: ggml's result is all zeros */
    for (int j = 0; j < 256; j++) x[1280 + j] = (float)(j - 128) * 1e-41f;
    plm_quantize_row_ref(PLM_TYPE_Q8_K, x, y, N);
    int bad = 0;
    for (int b = 0; b < N / 256; b++) {
        const float *xb = x + 256 * b;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 256; j++)
            if (fabsf(xb[j]) > amax) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        if (amax == 0.0f) {
            bad += y[b].d != 0.0f;
            for (int j = 0; j < 256; j++) bad += y[b].qs[j] != 0;
            for (int k = 0; k < 16; k++) bad += y[b].bsums[k] != 0;
            continue;
        }
        const float iscale = -127.0f / max;
        if (isinf(iscale)) {
            bad += y[b].d != 0.0f;
            for (int j = 0; j < 256; j++) bad += y[b].qs[j] != 0;
            for (int k = 0; k < 16; k++) bad += y[b].bsums[k] != 0;
            continue;
        }
        for (int k = 0; k < 16; k++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) {
                int q = (int)rintf(iscale * xb[16 * k + l]);
                q = q > 127 ? 127 : q;
                bad += y[b].qs[16 * k + l] != q;
                sum += q;
            }
            bad += y[b].bsums[k] != sum;
        }
        bad += y[b].d != 1.0f / iscale;
    }
    CHECKF(bad == 0, "%d mismatches", bad);
    CHECK(y[1].d == 1.0f && y[1].qs[9] == -127);
    CHECK(y[1].qs[0] == -20 && y[1].qs[1] == -18 && y[1].qs[2] == -18); /* -19.5, -18.5, -17.5: ties to even */
    /* first maximum -5: iscale = +25.4, d > 0; first maximum +5: d < 0 */
    CHECK(y[3].d > 0.0f && y[3].qs[3] == -127 && y[3].qs[10] == 127);
    CHECK(y[4].d < 0.0f && y[4].qs[3] == -127 && y[4].qs[10] == 127);
    CHECK(y[5].d == 0.0f && y[5].qs[0] == 0 && y[5].bsums[0] == 0);
    free(x);
    free(y);
}

static void test_quantize_floats_and_unsupported(void) {
    const float x[4] = {1.0f, -2.5f, 65536.0f, 1e-30f};
    plm_f16 h[4];
    plm_bf16 b[4];
    float f[4];
    plm_quantize_row_ref(PLM_TYPE_F16, x, h, 4);
    plm_quantize_row_ref(PLM_TYPE_BF16, x, b, 4);
    plm_quantize_row_ref(PLM_TYPE_F32, x, f, 4);
    CHECK(h[0] == 0x3c00 && h[1] == 0xc100 && h[2] == 0x7c00 && h[3] == 0);
    CHECK(b[0] == 0x3f80 && b[1] == 0xc020 && b[2] == 0x4780);
    CHECK(memcmp(f, x, sizeof x) == 0);

    const plm_type no[] = {PLM_TYPE_Q2_K, PLM_TYPE_Q3_K, PLM_TYPE_Q5_K, (plm_type)4, (plm_type)31};
    float src[256] = {1.0f};
    uint8_t dst[512];
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        CHECK(!plm_type_can_quantize(no[i]));
        memset(dst, 0xab, sizeof dst);
        if ((unsigned)no[i] < PLM_TYPE_COUNT) plm_quantize_row_ref(no[i], src, dst, 256);
        CHECK(dst[0] == 0xab && dst[300] == 0xab);
    }
    const plm_type yes[] = {PLM_TYPE_F32,  PLM_TYPE_F16,  PLM_TYPE_BF16, PLM_TYPE_Q8_0, PLM_TYPE_Q8_1, PLM_TYPE_Q8_K,
                            PLM_TYPE_Q4_0, PLM_TYPE_Q4_1, PLM_TYPE_Q5_0, PLM_TYPE_Q5_1, PLM_TYPE_Q4_K, PLM_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) CHECK(plm_type_can_quantize(yes[i]));
}

/* Weight quantizers: every element comes back within the format's step, and
 * the row's RMS error is what round-to-nearest at that bit width gives. */
static void test_quantize_weights_roundtrip(void) {
    /* max_err_steps: max |x - deq| in units of the stored step d. Half a step
     * for round to nearest, plus q * (d - fp16(d)) <= qmax * 2^-11 steps and,
     * with a min, fp16(m)'s error; a whole step for Q4_0/Q5_0, whose quantizer
     * maps the signed maximum to -8 (-16) and clips its opposite to +7 (+15).
     * rms_rel: bound on rms(x - deq) / rms(x) for N(0,1) rows, about 1.2x
     * what the step/sqrt(12) of uniform rounding error predicts. 0 = no check. */
    static const struct {
        plm_type type;
        double max_err_steps;
        double rms_rel;
    } cases[] = {
        {PLM_TYPE_Q4_0, 1.01, 0.10}, {PLM_TYPE_Q4_1, 0.53, 0.09},   {PLM_TYPE_Q5_0, 1.01, 0.05},
        {PLM_TYPE_Q5_1, 0.54, 0.045}, {PLM_TYPE_Q8_0, 0.57, 0.0065}, {PLM_TYPE_Q4_K, 0.0, 0.09},
        {PLM_TYPE_Q6_K, 0.0, 0.022},
    };
    enum { N = 4096 };
    float *x = malloc(N * sizeof(float));
    float *deq = malloc(N * sizeof(float));
    void *q = malloc(plm_type_row_size(PLM_TYPE_F32, N));
    for (int i = 0; i < N; i++) x[i] = rng_normal();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const plm_type t = cases[c].type;
        plm_quantize_row_ref(t, x, q, N);
        plm_dequantize_row_ref(t, q, deq, N);
        double se = 0, sx = 0, worst = 0;
        for (int i = 0; i < N; i++) {
            se += (double)(x[i] - deq[i]) * (x[i] - deq[i]);
            sx += (double)x[i] * x[i];
            if (cases[c].max_err_steps > 0) {
                /* the step of the 32-element block: d (and for Q4_1/Q5_1 also
                 * the fp16 rounding of m, which the step bound absorbs) */
                const int b = i / 32;
                float d = 0;
                switch (t) {
                case PLM_TYPE_Q4_0: d = plm_f16_to_f32(((plm_block_q4_0 *)q)[b].d); break;
                case PLM_TYPE_Q4_1: d = plm_f16_to_f32(((plm_block_q4_1 *)q)[b].d); break;
                case PLM_TYPE_Q5_0: d = plm_f16_to_f32(((plm_block_q5_0 *)q)[b].d); break;
                case PLM_TYPE_Q5_1: d = plm_f16_to_f32(((plm_block_q5_1 *)q)[b].d); break;
                default: d = plm_f16_to_f32(((plm_block_q8_0 *)q)[b].d); break;
                }
                const double steps = fabs((double)x[i] - deq[i]) / fabs(d);
                worst = steps > worst ? steps : worst;
            }
        }
        const double rel = sqrt(se / sx);
        fprintf(stderr, "  %-5s rms error / rms(x) = %.4f, max error = %.3f steps\n", plm_type_traits_get(t)->name, rel, worst);
        CHECKF(rel < cases[c].rms_rel, "%s rms rel error %.4f", plm_type_traits_get(t)->name, rel);
        if (cases[c].max_err_steps > 0)
            CHECKF(worst <= cases[c].max_err_steps, "%s max error %.3f steps", plm_type_traits_get(t)->name, worst);
    }
    /* all-zero rows quantize to zeros without dividing by zero */
    for (int i = 0; i < 256; i++) x[i] = 0.0f;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        plm_quantize_row_ref(cases[c].type, x, q, 256);
        plm_dequantize_row_ref(cases[c].type, q, deq, 256);
        int nz = 0;
        for (int i = 0; i < 256; i++) nz += deq[i] != 0.0f;
        CHECKF(nz == 0, "%s", plm_type_traits_get(cases[c].type)->name);
    }
    free(x);
    free(deq);
    free(q);
}

/* --------------------------------------------------- reference dots */

static int64_t test_lengths(plm_type t, int k) {
    static const int64_t small[] = {32, 64, 96, 256, 1024, 4096, 4128};
    static const int64_t kq[] = {256, 512, 768, 2048, 4096, 4352, 256};
    static const int64_t fl[] = {1, 7, 33, 256, 1000, 4096, 4103};
    if (is_k_type(t)) return kq[k];
    if (t == PLM_TYPE_F32 || t == PLM_TYPE_F16 || t == PLM_TYPE_BF16) return fl[k];
    return small[k];
}
#define N_LENGTHS 7

static void test_ref_dot_matches_dequantized(void) {
    const plm_kernels *ref = plm_kernels_ref();
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const plm_type wt = k_weight_types[ti];
        const plm_type at = plm_type_traits_get(wt)->dot_type;
        REQUIRE(ref->vec_dot[wt] != NULL && ref->quantize[at] != NULL);
        double worst = 0;
        for (int li = 0; li < N_LENGTHS; li++) {
            const int64_t n = test_lengths(wt, li);
            float *xf = malloc((size_t)n * sizeof(float));
            float *wf = malloc((size_t)n * sizeof(float));
            void *w = malloc(plm_type_row_size(wt, n));
            void *a = malloc(plm_type_row_size(at, n));
            for (int rep = 0; rep < 8; rep++) {
                /* half the rows quantized from floats, half random bytes */
                if (rep % 2 == 0 && plm_type_can_quantize(wt)) {
                    for (int64_t i = 0; i < n; i++) wf[i] = rng_normal() * 0.05f;
                    plm_quantize_row_ref(wt, wf, w, n);
                } else {
                    fill_random_weights(wt, w, n);
                }
                fill_activations(xf, n);
                ref->quantize[at](xf, a, n);
                const expected_dot e = expect_dot(wt, w, a, n);
                const double got = ref->vec_dot[wt](n, w, a);
                const double err = fabs(got - e.dot) - e.extra;
                const double ratio = e.mag > 0 ? fabs(got - e.dot) / e.mag : fabs(got - e.dot);
                worst = ratio > worst ? ratio : worst;
                CHECKF(err <= TOL_DOT_REL * e.mag, "%s n=%lld: ref %.9g, dequantized %.9g (mag %.3g)",
                       plm_type_traits_get(wt)->name, (long long)n, got, e.dot, e.mag);
            }
            free(xf);
            free(wf);
            free(w);
            free(a);
        }
        fprintf(stderr, "  %-5s ref vs dequantized: worst |err|/sum|wa| = %.2e\n", plm_type_traits_get(wt)->name, worst);
    }
}

/* An empty row is a dot of 0 and touches no memory. */
static void test_empty_rows(void) {
    for (size_t k = 0; k <= N_SIMD_TABLES; k++) {
        const plm_kernels *t = k == 0 ? plm_kernels_ref() : k_simd_tables[k - 1].get ? k_simd_tables[k - 1].get() : NULL;
        if (t == NULL) continue;
        for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) CHECK(t->vec_dot[k_weight_types[ti]](0, NULL, NULL) == 0.0f);
    }
}

/* -------------------------------------------------- SIMD vs reference */


static void test_dispatch(void) {
    const plm_kernels *ref = plm_kernels_ref();
    CHECK(strcmp(ref->name, "scalar") == 0);
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const plm_type wt = k_weight_types[ti];
        CHECK(ref->dot_type[wt] == plm_type_traits_get(wt)->dot_type);
        CHECK(ref->vec_dot[wt] != NULL && ref->quantize[ref->dot_type[wt]] != NULL);
    }
    const plm_kernels *best = ref;
    for (size_t i = 0; i < N_SIMD_TABLES; i++) {
        const simd_table *t = &k_simd_tables[i];
        if (t->get == NULL) continue;
        const plm_kernels *k = t->get();
        CHECKF((k != NULL) == t->cpu_has(), "%s table %s on a CPU that %s it", t->name, k ? "offered" : "withheld",
               t->cpu_has() ? "has" : "lacks");
        if (k == NULL) continue;
        best = k;
        CHECK(strcmp(k->name, t->name) == 0);
        CHECK(k == t->table());
        for (int ty = 0; ty < PLM_TYPE_COUNT; ty++) {
            CHECK((k->vec_dot[ty] != NULL) == (ref->vec_dot[ty] != NULL));
            CHECK((k->quantize[ty] != NULL) == (ref->quantize[ty] != NULL));
        }
        /* the SIMD tables pair each weight type with the reference's activation type, which the
         * comparisons below rely on (a table that chose another would be compared differently) */
        for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++)
            CHECKF(k->dot_type[k_weight_types[ti]] == ref->dot_type[k_weight_types[ti]], "%s %s", k->name,
                   plm_type_traits_get(k_weight_types[ti])->name);
    }
    const plm_kernels *chosen = plm_kernels_get();
    const char *env = getenv("POCKETLM_KERNELS");
    /* a forced table is used when the CPU runs it; otherwise (and when not forced) the best one */
    const plm_kernels *want = best;
    if (env != NULL && strcmp(env, "scalar") == 0) want = ref;
    for (size_t i = 0; i < N_SIMD_TABLES; i++) {
        const simd_table *t = &k_simd_tables[i];
        if (env != NULL && strcmp(env, t->name) == 0 && t->get != NULL && t->get() != NULL) want = t->get();
    }
    CHECKF(chosen == want, "POCKETLM_KERNELS=%s chose %s, want %s", env ? env : "(unset)", chosen->name, want->name);
    CHECK(plm_kernels_get() == chosen);
    CHECK(strcmp(plm_kernels_name(), chosen->name) == 0);
    fprintf(stderr, "  kernels in use: %s\n", plm_kernels_name());
}

static void check_simd_dots(const plm_kernels *simd) {
    const plm_kernels *ref = plm_kernels_ref();
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const plm_type wt = k_weight_types[ti];
        const plm_type at = simd->dot_type[wt];
        double worst = 0;
        int bad = 0, rows = 0;
        for (int li = 0; li < N_LENGTHS; li++) {
            const int64_t n = test_lengths(wt, li);
            float *xf = malloc((size_t)n * sizeof(float));
            float *wf = malloc((size_t)n * sizeof(float));
            void *w = malloc(plm_type_row_size(wt, n));
            void *a = malloc(plm_type_row_size(at, n));
            for (int rep = 0; rep < 60; rep++, rows++) {
                if (rep % 3 == 0 && plm_type_can_quantize(wt)) {
                    for (int64_t i = 0; i < n; i++) wf[i] = rng_normal() * 0.05f;
                    plm_quantize_row_ref(wt, wf, w, n);
                } else {
                    fill_random_weights(wt, w, n);
                }
                fill_activations(xf, n);
                ref->quantize[at](xf, a, n);
                const expected_dot e = expect_dot(wt, w, a, n);
                const double r = ref->vec_dot[wt](n, w, a);
                const double s = simd->vec_dot[wt](n, w, a);
                const double ratio = e.mag > 0 ? fabs(r - s) / e.mag : fabs(r - s);
                worst = ratio > worst ? ratio : worst;
                if (!(fabs(r - s) <= TOL_SIMD_REL * e.mag)) {
                    if (bad++ < 3)
                        fprintf(stderr, "  FAIL %s n=%lld: ref %.9g %s %.9g (mag %.3g)\n", plm_type_traits_get(wt)->name,
                                (long long)n, r, simd->name, s, e.mag);
                }
            }
            free(xf);
            free(wf);
            free(w);
            free(a);
        }
        CHECKF(bad == 0, "%s %s: %d of %d rows outside TOL_SIMD_REL", simd->name, plm_type_traits_get(wt)->name, bad, rows);
        fprintf(stderr, "  %-5s %s vs ref (%d rows): worst |diff|/sum|wa| = %.2e%s\n", plm_type_traits_get(wt)->name,
                simd->name, rows, worst, simd->vec_dot[wt] == ref->vec_dot[wt] ? " (reference kernel)" : "");
    }
}

static void test_simd_dots(void) {
    for (size_t i = 0; i < N_SIMD_TABLES; i++) {
        const plm_kernels *k = simd_table_or_skip(i);
        if (k != NULL) check_simd_dots(k);
    }
}

/* Runs a gemm entry over an nr x nc tile in both modes (out (nc_all, ldo) preset to -1, acc to its index) and
 * counts the entries of (nc_all, ldo) that are not vec_dot's bits over the rows w as the file has them (inside the
 * tile) or that changed (outside it); the first three are printed. */
static int gemm_tile_mismatches(const plm_kernels *k, plm_gemm_fn gemm, const char *what, plm_type wt, int64_t n,
                                const uint8_t *w, const uint8_t *gw, size_t ws, int nr, const uint8_t *a, size_t as,
                                int nc, int nc_all, int ldo, float *out, float *acc, int *entries, int bad) {
    for (int i = 0; i < nc_all * ldo; i++) out[i] = -1.0f, acc[i] = (float)i;
    gemm(n, gw, ws, nr, a, as, nc, out, ldo, false);
    gemm(n, gw, ws, nr, a, as, nc, acc, ldo, true);
    for (int c = 0; c < nc_all; c++)
        for (int r = 0; r < ldo; r++) {
            const int i = c * ldo + r;
            const bool inside = r < nr && c < nc;
            const float d = inside ? k->vec_dot[wt](n, w + r * ws, a + c * as) : 0.0f;
            const float want = inside ? d : -1.0f, want_acc = inside ? (float)i + d : (float)i;
            *entries += inside;
            if (memcmp(&out[i], &want, sizeof want) != 0 || memcmp(&acc[i], &want_acc, sizeof want) != 0) {
                if (bad++ < 3)
                    fprintf(stderr, "  FAIL %s %s %s n=%lld tile %dx%d entry (%d,%d): %.9g / %.9g, want %.9g / %.9g\n",
                            k->name, plm_type_traits_get(wt)->name, what, (long long)n, nr, nc, r, c, (double)out[i],
                            (double)acc[i], (double)want, (double)want_acc);
            }
        }
    return bad;
}

/* Every gemm entry of every table equals that table's vec_dot bit for bit, for
 * tile regions of any shape (remainder rows and tokens included) and in both
 * the overwrite and the accumulate mode; this is what makes a token's logits
 * independent of how it was batched. */
static void check_gemm_table(const plm_kernels *k) {
    enum { NR = 19, NC = 5, LDO = 21 }; /* rows: a group of 16 and a remainder */
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const plm_type wt = k_weight_types[ti];
        if (k->gemm[wt] == NULL) continue;
        const plm_type at = k->dot_type[wt];
        int bad = 0, entries = 0;
        for (int li = 0; li < N_LENGTHS; li++) {
            const int64_t n = test_lengths(wt, li);
            const size_t ws = plm_type_row_size(wt, n), as = plm_type_row_size(at, n);
            uint8_t *w = malloc(ws * NR), *a = malloc(as * NC);
            float *xf = malloc((size_t)n * sizeof(float));
            for (int r = 0; r < NR; r++) fill_random_weights(wt, w + r * ws, n);
            for (int c = 0; c < NC; c++) {
                fill_activations(xf, n);
                k->quantize[at](xf, a + c * as, n);
            }
            for (int nr = 1; nr <= NR; nr++)
                for (int nc = 1; nc <= NC; nc++) {
                    float out[NC * LDO], acc[NC * LDO];
                    bad = gemm_tile_mismatches(k, k->gemm[wt], "gemm", wt, n, w, w, ws, nr, a, as, nc, NC, LDO, out, acc,
                                               &entries, bad);
                }
            free(w);
            free(a);
            free(xf);
        }
        CHECKF(bad == 0, "%s %s: %d gemm entries differ from vec_dot", k->name, plm_type_traits_get(wt)->name, bad);
        fprintf(stderr, "  %-5s %s gemm: %d entries bit-identical to vec_dot\n", plm_type_traits_get(wt)->name, k->name,
                entries);
    }
}

static void test_gemm_equals_vec_dot(void) {
    check_gemm_table(plm_kernels_ref());
    for (size_t i = 0; i < N_SIMD_TABLES; i++) {
        const plm_kernels *simd = simd_table_or_skip(i);
        if (simd == NULL) continue;
        int with_gemm = 0;
        for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) with_gemm += simd->gemm[k_weight_types[ti]] != NULL;
        CHECKF(with_gemm >= k_simd_tables[i].min_gemm,
               "the %s table has gemm kernels for %d weight types (want at least %d: Q4_0 Q4_1 Q8_0 Q4_K Q6_K)",
               simd->name, with_gemm, k_simd_tables[i].min_gemm);
        check_gemm_table(simd);
    }
}

/* The x16 layout (quant.h): packing 16 rows and reading each back gives the rows' bytes, and every table's
 * gemm_x16 entry over packed groups equals its vec_dot over the rows as the file has them, bit for bit, for
 * 1 to 3 groups and token counts across the products' passes (1 token, remainders of 4, past 64), in both the
 * overwrite and the accumulate mode. */
static void check_x16_table(const plm_kernels *k) {
    enum { NG = 3, NR = NG * PLM_X16 };
    static const int ncs[] = {1, 2, 3, 4, 5, 9, 16, 17, 70};
    enum { NCS = sizeof ncs / sizeof ncs[0], NCMAX = 70 };
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const plm_type wt = k_weight_types[ti];
        if (k->gemm_x16[wt] == NULL) continue;
        CHECKF(plm_x16_type(wt), "%s has gemm_x16 for %s, which has no x16 layout", k->name, plm_type_traits_get(wt)->name);
        const plm_type at = k->dot_type[wt];
        int bad = 0, entries = 0;
        for (int li = 0; li < N_LENGTHS; li += 2) {
            const int64_t n = test_lengths(wt, li);
            const size_t ws = plm_type_row_size(wt, n), as = plm_type_row_size(at, n);
            uint8_t *w = malloc(ws * NR), *pk = malloc(ws * NR), *a = malloc(as * NCMAX);
            float *xf = malloc((size_t)n * sizeof(float));
            float *out = malloc(sizeof(float) * NCMAX * NR), *acc = malloc(sizeof(float) * NCMAX * NR);
            for (int r = 0; r < NR; r++) fill_random_weights(wt, w + r * ws, n);
            for (int c = 0; c < NCMAX; c++) {
                fill_activations(xf, n);
                k->quantize[at](xf, a + c * as, n);
            }
            for (int g = 0; g < NG; g++) plm_x16_pack(wt, w + (size_t)g * PLM_X16 * ws, pk + (size_t)g * PLM_X16 * ws, n);
            for (int ng = 1; ng <= NG; ng++)
                for (int ci = 0; ci < NCS; ci++) {
                    bad = gemm_tile_mismatches(k, k->gemm_x16[wt], "x16", wt, n, w, pk, ws, ng * PLM_X16, a, as, ncs[ci],
                                               NCMAX, NR, out, acc, &entries, bad);
                }
            free(w), free(pk), free(a), free(xf), free(out), free(acc);
        }
        CHECKF(bad == 0, "%s %s: %d gemm_x16 entries differ from vec_dot", k->name, plm_type_traits_get(wt)->name, bad);
        fprintf(stderr, "  %-5s %s gemm_x16: %d entries bit-identical to vec_dot\n", plm_type_traits_get(wt)->name,
                k->name, entries);
    }
}

static void test_x16_layout(void) {
    int types = 0;
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const plm_type wt = k_weight_types[ti];
        if (!plm_x16_type(wt)) continue;
        types++;
        for (int li = 0; li < N_LENGTHS; li++) {
            const int64_t n = test_lengths(wt, li);
            const size_t ws = plm_type_row_size(wt, n);
            uint8_t *w = malloc(ws * PLM_X16), *pk = malloc(ws * PLM_X16), *row = malloc(ws);
            for (int r = 0; r < PLM_X16; r++) fill_random_weights(wt, w + r * ws, n);
            plm_x16_pack(wt, w, pk, n);
            int bad = 0;
            for (int r = 0; r < PLM_X16; r++) {
                memset(row, 0xA5, ws);
                plm_x16_row(wt, pk, n, r, row);
                bad += memcmp(row, w + r * ws, ws) != 0;
            }
            CHECKF(bad == 0, "%s n=%lld: %d of 16 rows read back from the x16 group differ", plm_type_traits_get(wt)->name,
                   (long long)n, bad);
            free(w), free(pk), free(row);
        }
    }
    CHECKF(types == 5, "the x16 layout covers %d of Q4_0 Q4_1 Q5_0 Q5_1 Q8_0", types);
    check_x16_table(plm_kernels_ref());
    for (size_t i = 0; i < N_SIMD_TABLES; i++) {
        const plm_kernels *simd = simd_table_or_skip(i);
        if (simd != NULL) check_x16_table(simd);
    }
}

/* Rows built to hit every corner of the activation quantizers: exact ties at
 * d = 1, zeros, negative zero, subnormals, huge values, repeated maxima of
 * both signs, and plain random rows. */
static void make_quantizer_row(float *x, int64_t n, int kind) {
    for (int64_t i = 0; i < n; i++) {
        switch (kind % 8) {
        case 0: x[i] = rng_normal(); break;
        case 1: x[i] = (float)((int)(rng_u64() % 255) - 127) + ((rng_u64() & 1) ? 0.5f : 0.0f); break;
        case 2: x[i] = (rng_u64() % 4 == 0) ? 0.0f : -0.0f; break;
        case 3: x[i] = rng_normal() * 1e-40f; break;
        case 4: x[i] = rng_normal() * 1e30f; break;
        case 5: x[i] = (rng_u64() % 3 == 0) ? ((rng_u64() & 1) ? 7.0f : -7.0f) : rng_normal(); break;
        case 6: x[i] = (float)(i % 32) - 16.0f; break;
        default: x[i] = rng_normal() * (float)(1 << (rng_u64() % 20)); break;
        }
    }
    if (kind % 8 == 1) /* pin the max so d = 1 (Q8_0) and iscale = +-1 (Q8_K) */
        for (int64_t i = 0; i < n; i += 32) x[i] = (rng_u64() & 1) ? 127.0f : -127.0f;
}

static void check_simd_quantizers(const plm_kernels *simd) {
    const plm_kernels *ref = plm_kernels_ref();
    const plm_type types[] = {PLM_TYPE_Q8_0, PLM_TYPE_Q8_1, PLM_TYPE_Q8_K, PLM_TYPE_F16, PLM_TYPE_BF16, PLM_TYPE_F32};
    enum { N = 4096 };
    float *x = malloc(N * sizeof(float));
    uint8_t *r = malloc(plm_type_row_size(PLM_TYPE_F32, N));
    uint8_t *s = malloc(plm_type_row_size(PLM_TYPE_F32, N));
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const plm_type t = types[ti];
        int bad = 0;
        for (int kind = 0; kind < 200; kind++) {
            /* whole 256-element super-blocks, and for the 32-element formats also odd block counts (576: 18
             * blocks, as a SmolLM2 row: a quantizer working several blocks at a time has a tail) */
            const bool k_type = plm_type_traits_get(t)->block_size == PLM_QK_K;
            const int64_t n = kind % 2 ? N : kind % 4 == 2 && !k_type ? 32 * (1 + (kind / 4) % 37) : 256 * (1 + kind % 5);
            make_quantizer_row(x, n, kind);
            const size_t size = plm_type_row_size(t, n);
            memset(r, 0x5a, size);
            memset(s, 0xa5, size);
            ref->quantize[t](x, r, n);
            simd->quantize[t](x, s, n);
            bad += memcmp(r, s, size) != 0;
        }
        CHECKF(bad == 0, "%s %s: %d rows differ", simd->name, plm_type_traits_get(t)->name, bad);
        fprintf(stderr, "  %-5s %s quantizer: %s, %d of 200 rows differ\n", plm_type_traits_get(t)->name, simd->name,
                simd->quantize[t] == ref->quantize[t] ? "reference kernel" : "own kernel", bad);
    }
    /* non-finite input must not crash either table (results are unspecified) */
    for (int i = 0; i < 256; i++) x[i] = i == 5 ? INFINITY : i == 9 ? NAN : (float)i;
    for (size_t ti = 0; ti < 3; ti++) {
        ref->quantize[types[ti]](x, r, 256);
        simd->quantize[types[ti]](x, s, 256);
    }
    free(x);
    free(r);
    free(s);
}

static void test_simd_quantizers_bit_identical(void) {
    for (size_t i = 0; i < N_SIMD_TABLES; i++) {
        const plm_kernels *k = simd_table_or_skip(i);
        if (k != NULL) check_simd_quantizers(k);
    }
}

/* The attention helper that rounds floats to F16 in place, SIMD vs reference. */
static void check_attention_helpers(const plm_kernels *simd) {
    const plm_kernels *ref = plm_kernels_ref();
    REQUIRE(ref->round_f16);
    enum { N = 1027 };
    static float a[N], b[N];
    uint32_t r = 12345;
    for (int i = 0; i < N; i++) {
        r = r * 1664525u + 1013904223u;
        float v = (float)(r >> 8) / (float)(1u << 24);
        a[i] = b[i] = i % 5 == 0 ? v * 1e-6f : i % 7 == 0 ? v * 7e4f : v; /* subnormal, overflowing, plain */
    }
    a[1] = b[1] = 0.0f;
    a[2] = b[2] = 1.0f + 1.0f / 2048.0f; /* a tie: rounds to even */
    ref->round_f16(a, N, 1.0f);
    simd->round_f16(b, N, 1.0f);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(a[2] == 1.0f);
    /* with a scale: the product rounded to float first, as x[i] *= s then the rounding did, in both tables */
    const float s = 0.37f;
    static float c[N];
    for (int i = 0; i < N; i++) b[i] = a[i] * s, c[i] = a[i];
    simd->round_f16(a, N, s);
    ref->round_f16(c, N, s);
    ref->round_f16(b, N, 1.0f);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(c, b, sizeof c) == 0);
    /* kq8_f16 / pv8_f16: every entry is the reference's chain in the same order,
     * so bit for bit, whatever the number of rows and cells of the call (the
     * tables work on several rows at once: the batch must not show) */
    enum { HD = 64, STRIDE = 72, NR = 16, NC = PLM_ATTN_CELLS };
    static plm_f16 kv[NC * STRIDE];
    static float q[NR * HD], p[NR * NC], s0[NR * 8], s1[NR * 8], o0[NR * HD], o1[NR * HD];
    for (int i = 0; i < NC * STRIDE; i++) {
        r = r * 1664525u + 1013904223u;
        kv[i] = plm_f32_to_f16((float)(r >> 8) / (float)(1u << 24) - 0.5f);
    }
    for (int i = 0; i < NR * HD; i++) {
        r = r * 1664525u + 1013904223u;
        q[i] = (float)(r >> 8) / (float)(1u << 24) - 0.5f;
    }
    for (int i = 0; i < NR * NC; i++) {
        r = r * 1664525u + 1013904223u;
        p[i] = i % 5 == 3 ? 0.0f : (float)(r >> 8) / (float)(1u << 24); /* some cells skipped */
    }
    int bad = 0, calls = 0;
    for (int nr = 1; nr <= NR; nr++)
        for (int nc = 1; nc <= NC; nc++) {
            if (nc <= 8) {
                memset(s0, 0, sizeof s0);
                memset(s1, 0, sizeof s1);
                ref->kq8_f16(HD, kv, STRIDE, nc, q, HD, nr, s0, 8);
                simd->kq8_f16(HD, kv, STRIDE, nc, q, HD, nr, s1, 8);
                bad += memcmp(s0, s1, sizeof s0) != 0;
                calls++;
            }
            for (int i = 0; i < NR * HD; i++) o0[i] = o1[i] = q[i];
            ref->pv8_f16(HD, kv, STRIDE, nc, p, NC, nr, o0, HD);
            simd->pv8_f16(HD, kv, STRIDE, nc, p, NC, nr, o1, HD);
            bad += memcmp(o0, o1, sizeof o0) != 0;
            calls++;
        }
    CHECKF(bad == 0, "%s: %d of %d kq8/pv8 calls differ from the reference", simd->name, bad, calls);
    printf("  %-6s kq8_f16, pv8_f16: %d calls (1-%d rows x 1-8 / 1-%d cells) bit-identical to the reference\n",
           simd->name, calls - bad, NR, NC);
    /* kqt_f16: the same keys transposed by blocks (the KV cache's layout), lanes past nc holding other values
     * (the kernel reads them): the reference's chains, and kq8_f16's on the keys as rows */
    enum { B = PLM_KV_BLOCK, KBS = HD * B + 40 }; /* blocks KBS values apart, as a cache's are kv_dim * B */
    static plm_f16 kt[(NC / B) * KBS], krows[NC * STRIDE];
    static float t0[NR * NC], t1[NR * NC], t2[NR * NC];
    for (int i = 0; i < NC * STRIDE; i++) {
        r = r * 1664525u + 1013904223u;
        krows[i] = plm_f32_to_f16((float)(r >> 8) / (float)(1u << 24) - 0.5f);
    }
    for (int i = 0; i < (NC / B) * KBS; i++) kt[i] = plm_f32_to_f16(99.0f); /* the gaps: never in a result */
    for (int d = 0; d < HD; d++)
        for (int c = 0; c < NC; c++) kt[(c / B) * KBS + d * B + c % B] = krows[c * STRIDE + d];
    int bad_t = 0;
    for (int nr = 1; nr <= NR; nr++)
        for (int nc = 1; nc <= NC; nc++) {
            memset(t0, 0, sizeof t0);
            memset(t1, 0, sizeof t1);
            memset(t2, 0, sizeof t2);
            ref->kqt_f16(HD, kt, KBS, nc, q, HD, nr, t0, NC);
            simd->kqt_f16(HD, kt, KBS, nc, q, HD, nr, t1, NC);
            for (int c = 0; c < nc; c += 8)
                ref->kq8_f16(HD, krows + c * STRIDE, STRIDE, PLM_MIN(nc - c, 8), q, HD, nr, t2 + c, NC);
            bad_t += memcmp(t0, t1, sizeof t0) != 0 || memcmp(t0, t2, sizeof t0) != 0;
        }
    CHECKF(bad_t == 0, "%s: %d of %d kqt_f16 calls differ from the reference or from kq8_f16", simd->name, bad_t, NR * NC);
    printf("  %-6s kqt_f16: %d calls (1-%d rows x 1-%d cells in blocks) bit-identical to the reference and to kq8_f16\n",
           simd->name, NR * NC - bad_t, NR, NC);
}

static void test_attention_helpers(void) {
    check_attention_helpers(plm_kernels_ref());
    for (size_t i = 0; i < N_SIMD_TABLES; i++) {
        const plm_kernels *k = simd_table_or_skip(i);
        if (k != NULL) check_attention_helpers(k);
    }
}

/* Distance in units in the last place between two non-negative floats (their bit patterns are in order). */
static int64_t ulp_dist_nonneg(float a, float b) {
    return llabs((int64_t)bits_of(a) - (int64_t)bits_of(b));
}

/* The softmax helpers: exp_sum_f32's exp within EXP_MAX_ULP of expf over the whole float range
 * (every 1021st float from -110 to 90, every length's tail, then -inf, inf, NaN, -0, huge values),
 * its sum against a double sum of expf, x * scale - sub rounded as written (the max scaled score gives
 * exactly 1), results independent of the row's alignment; max_f32 equal to the reference's. */
enum { EXP_MAX_ULP = 2 };

static void check_softmax_helpers(const plm_kernels *k) {
    REQUIRE(k->max_f32 && k->exp_sum_f32);
    enum { N = 4096 };
    static float x[N + 1], y[N + 1];
    int64_t worst = 0, n_vals = 0;
    float worst_x = 0.0f;
    int bad_special = 0;
    /* negatives from -110 up to -0, then positives from +0 to 90, as bit patterns */
    const uint32_t neg_hi = bits_of(-110.0f), pos_hi = bits_of(90.0f);
    uint32_t u = neg_hi;
    bool neg = true;
    int len = 1;
    while (neg || u <= pos_hi) {
        int n = 0;
        for (; n < len; n++) {
            x[n] = float_of(u);
            if (neg) {
                if (u < 0x80000000u + 1021u) {
                    neg = false;
                    u = 0;
                } else
                    u -= 1021u;
            } else
                u += 1021u;
            if (!neg && u > pos_hi) {
                n++;
                break;
            }
        }
        memcpy(y, x, (size_t)n * sizeof(float));
        k->exp_sum_f32(y, n, 1.0f, 0.0f);
        for (int i = 0; i < n; i++) {
            const float e = expf(x[i]);
            const int64_t d = ulp_dist_nonneg(y[i], e);
            if (d > worst) {
                worst = d;
                worst_x = x[i];
            }
        }
        n_vals += n;
        len = len % 37 + 1; /* every tail length of either table */
    }
    const float special[] = {-INFINITY, INFINITY, NAN, -0.0f, 0.0f, -FLT_MAX, FLT_MAX, -1e30f, 1e30f,
                             -103.9f,   -103.98f, -87.34f, -87.33f, 88.72f, 88.7229f, 88.73f, 1e-30f, -1e-30f};
    const int ns = (int)(sizeof special / sizeof special[0]);
    memcpy(y, special, sizeof special);
    k->exp_sum_f32(y, ns, 1.0f, 0.0f);
    for (int i = 0; i < ns; i++) {
        const float e = expf(special[i]);
        const bool ok = isnan(e) ? isnan(y[i]) : isinf(e) ? y[i] == e : ulp_dist_nonneg(y[i], e) <= EXP_MAX_ULP;
        if (!ok) {
            fprintf(stderr, "  %s: exp(%g) = %a, expf gives %a\n", k->name, (double)special[i], (double)y[i], (double)e);
            bad_special++;
        }
    }
    CHECKF(worst <= EXP_MAX_ULP, "%s: exp(%a) is %lld ulp from expf", k->name, (double)worst_x, (long long)worst);
    CHECK(bad_special == 0);
    /* a row of scores: the sum, the scaled maximum giving 1, the same bits at another alignment */
    for (int n = 0; n <= 300; n += n < 40 ? 1 : 37) {
        for (int i = 0; i < n; i++) x[i] = (float)(rng_u64() >> 40) / (float)(1u << 24) * 40.0f - 20.0f;
        const float scale = 0.125f * 1.1f, mx = k->max_f32(x, n);
        CHECK(mx == plm_kernels_ref()->max_f32(x, n));
        memcpy(y, x, (size_t)n * sizeof(float));
        const float sum = k->exp_sum_f32(y, n, scale, mx * scale);
        double want = 0.0;
        for (int i = 0; i < n; i++) {
            want += (double)expf(x[i] * scale - mx * scale);
            if (x[i] == mx) CHECK(y[i] == 1.0f);
        }
        CHECKF(fabs((double)sum - want) <= 1e-6 * want + 1e-30, "%s: sum of %d exps %g, expected %g", k->name, n,
               (double)sum, want);
        memmove(x + 1, x, (size_t)n * sizeof(float));
        CHECK(k->exp_sum_f32(x + 1, n, scale, mx * scale) == sum);
        CHECK(memcmp(x + 1, y, (size_t)n * sizeof(float)) == 0);
    }
    CHECK(k->max_f32(x, 0) == -INFINITY);
    x[0] = -INFINITY;
    x[1] = -5.0f;
    x[2] = -INFINITY;
    CHECK(k->max_f32(x, 3) == -5.0f);
    printf("  %-6s exp_sum_f32: %lld values, at most %lld ulp from expf; max_f32 as the reference's\n", k->name,
           (long long)n_vals, (long long)worst);
}

static void test_softmax_helpers(void) {
    check_softmax_helpers(plm_kernels_ref());
    for (size_t i = 0; i < N_SIMD_TABLES; i++) {
        const plm_kernels *k = simd_table_or_skip(i);
        if (k != NULL) check_softmax_helpers(k);
    }
}

/* The LoRA delta kernel, SIMD vs reference: bit-identical for any number of runs and any rank (matmul.c mixes
 * it with its own element-by-element loop for cut runs, and a token's result must not depend on the cut);
 * rank 300 is past the AVX-512 table's register path (it hands those to the reference). */
static void check_lora_b32(const plm_kernels *simd) {
    const plm_kernels *ref = plm_kernels_ref();
    REQUIRE(ref->lora_b32 && simd->lora_b32);
    enum { MAX_NB = 9, MAX_RANK4 = 300, RUN = 32 * MAX_RANK4 + 64 + 16 };
    static float a[32 * MAX_NB], b[32 * MAX_NB];
    static uint8_t run[MAX_NB * RUN];
    static int8_t uq[MAX_RANK4];
    const int32_t ranks[] = {1, 3, 16, 64, 300};
    int bad = 0, cases = 0;
    for (size_t ri = 0; ri < sizeof ranks / sizeof ranks[0]; ri++)
        for (int nb = 1; nb <= MAX_NB; nb++, cases++) {
            const int32_t rank = ranks[ri], rank4 = (rank + 3) & ~3;
            const int64_t run_bytes = 32 * rank4 + 64 + (nb % 2) * 16; /* runs packed, or 16 bytes apart */
            for (int i = 0; i < nb * run_bytes; i++) run[i] = (uint8_t)(rng_u64() % 255 + 129); /* q in [-127, 127] */
            for (int r = 0; r < nb; r++)
                for (int i = 0; i < 32; i++) {
                    const plm_f16 e = plm_f32_to_f16((float)(rng_u64() % 1000 + 1) / 1000.0f);
                    memcpy(run + r * run_bytes + 32 * rank4 + 2 * i, &e, 2);
                }
            for (int k = 0; k < rank4; k++) uq[k] = k < rank ? (int8_t)((int)(rng_u64() % 255) - 127) : 0;
            const float c = rng_normal() * 1e-3f;
            for (int i = 0; i < 32 * nb; i++) a[i] = b[i] = rng_normal();
            ref->lora_b32(nb, rank4, uq, c, run, run_bytes, a);
            simd->lora_b32(nb, rank4, uq, c, run, run_bytes, b);
            bad += memcmp(a, b, (size_t)(32 * nb) * sizeof(float)) != 0;
        }
    CHECKF(bad == 0, "%s lora_b32: %d of %d cases differ from the reference", simd->name, bad, cases);
    /* and the reference is the sum it says: o + (sum_k q[k][i] uq[k]) (c e[i]), q[k][i] at 128 (k / 4) + 4 i + k % 4 */
    memset(run, 0, 32 * 4 + 64);
    for (int i = 0; i < 32; i++) {
        run[4 * i] = (uint8_t)(int8_t)(i - 16);
        run[4 * i + 1] = (uint8_t)(int8_t)-127;
        const plm_f16 e = plm_f32_to_f16(i % 2 ? 1.0f : 0.5f);
        memcpy(run + 128 + 2 * i, &e, 2);
        a[i] = 1.0f;
    }
    uq[0] = 2, uq[1] = 1, uq[2] = uq[3] = 0;
    ref->lora_b32(1, 4, uq, 0.25f, run, 32 * 4 + 64, a);
    for (int i = 0; i < 32; i++)
        CHECKF(a[i] == 1.0f + (float)(2 * (i - 16) - 127) * 0.25f * (i % 2 ? 1.0f : 0.5f), "reference lora_b32 [%d] = %g", i,
               (double)a[i]);
}

/* gemm_x16_lora: bit for bit the table's gemm_x16 of one token, then each row's delta as the reference's lora_b32
 * (and matmul.c's cut runs) computes it, o + (float)s * (c * e); for 1 to 3 groups, either half of a run first,
 * ranks 1 to 256, stored or accumulated. Fails when the fused entry reads the wrong half, run or scale. */
static void check_x16_lora(const plm_kernels *k) {
    enum { NG = 3, NR = NG * PLM_X16, MAX_RANK4 = PLM_LORA_FUSED_RANK };
    const int32_t ranks[] = {1, 4, 16, 37, 64, 256};
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        const plm_type wt = k_weight_types[ti];
        if (k->gemm_x16_lora[wt] == NULL) continue;
        CHECKF(k->gemm_x16[wt] != NULL, "%s has gemm_x16_lora for %s but no gemm_x16", k->name, plm_type_traits_get(wt)->name);
        const plm_type at = k->dot_type[wt];
        int bad = 0, cases = 0;
        const int64_t n = test_lengths(wt, 1);
        const size_t ws = plm_type_row_size(wt, n), as = plm_type_row_size(at, n);
        uint8_t *w = malloc(ws * NR), *pk = malloc(ws * NR), *a = malloc(as);
        float *xf = malloc((size_t)n * sizeof(float));
        const int64_t run_bytes = 32 * MAX_RANK4 + 64 + 16;
        uint8_t *runs = malloc((size_t)(NG + 1) * (size_t)run_bytes);
        int8_t uq[MAX_RANK4];
        float want[NR], got[NR];
        for (int r = 0; r < NR; r++) fill_random_weights(wt, w + r * ws, n);
        for (int g = 0; g < NG; g++) plm_x16_pack(wt, w + (size_t)g * PLM_X16 * ws, pk + (size_t)g * PLM_X16 * ws, n);
        fill_activations(xf, n);
        k->quantize[at](xf, a, n);
        for (size_t ri = 0; ri < sizeof ranks / sizeof ranks[0]; ri++)
            for (int half = 0; half < 2; half++)
                for (int ng = 1; ng <= NG; ng++)
                    for (int accumulate = 0; accumulate < 2; accumulate++, cases++) {
                        const int32_t rank = ranks[ri], rank4 = (rank + 3) & ~3;
                        const int64_t rb = 32 * rank4 + 64 + (ri % 2) * 16; /* runs packed, or 16 bytes apart */
                        for (int64_t i = 0; i < (NG + 1) * rb; i++) runs[i] = (uint8_t)(rng_u64() % 255 + 129);
                        for (int r = 0; r <= NG; r++)
                            for (int i = 0; i < 32; i++) {
                                const plm_f16 e = plm_f32_to_f16((float)(rng_u64() % 1000 + 1) / 1000.0f);
                                memcpy(runs + r * rb + 32 * rank4 + 2 * i, &e, 2);
                            }
                        for (int kk = 0; kk < rank4; kk++) uq[kk] = kk < rank ? (int8_t)((int)(rng_u64() % 255) - 127) : 0;
                        const float c = rng_normal() * 1e-3f;
                        const int nr = ng * PLM_X16;
                        for (int i = 0; i < nr; i++) want[i] = got[i] = rng_normal();
                        k->gemm_x16[wt](n, pk, ws, nr, a, as, 1, want, 1, accumulate != 0);
                        for (int i = 0; i < nr; i++) {
                            const int j = 16 * half + i; /* output j of the runs from the first */
                            const uint8_t *run = runs + (j / 32) * rb;
                            int32_t sum = 0;
                            for (int kk = 0; kk < rank4; kk++)
                                sum += (int32_t)(int8_t)run[128 * (kk / 4) + 4 * (j % 32) + kk % 4] * (int32_t)uq[kk];
                            plm_f16 e;
                            memcpy(&e, run + 32 * rank4 + 2 * (j % 32), 2);
                            want[i] = want[i] + (float)sum * (c * plm_f16_to_f32(e));
                        }
                        const plm_lora_epi epi = {.run = runs, .run_bytes = rb, .half = half, .rank4 = rank4, .uq = uq, .c = c};
                        k->gemm_x16_lora[wt](n, pk, ws, nr, a, got, accumulate != 0, &epi);
                        bad += memcmp(want, got, (size_t)nr * sizeof(float)) != 0;
                    }
        CHECKF(bad == 0, "%s %s gemm_x16_lora: %d of %d cases differ from gemm_x16 and the delta", k->name,
               plm_type_traits_get(wt)->name, bad, cases);
        fprintf(stderr, "  %-5s %s gemm_x16_lora: %d cases bit-identical to gemm_x16 and the delta\n",
                plm_type_traits_get(wt)->name, k->name, cases);
        free(w), free(pk), free(a), free(xf), free(runs);
    }
}

static void test_lora_b32(void) {
    for (size_t i = 0; i < N_SIMD_TABLES; i++) {
        const plm_kernels *k = simd_table_or_skip(i);
        if (k != NULL) check_lora_b32(k);
        if (k != NULL) check_x16_lora(k);
    }
}

/* gelu_bias: the reference against 0.5 v (1 + erf(x)) with libm's double erf at the same x = v / sqrt 2 (in
 * float, as the kernel rounds it), over a dense grid where erf is not yet 1 and values from 1e-30 to 1e30: the erf
 * within 1e-7 (measured 7.1e-8; BERT's cosines against sentence-transformers need about that) plus the result's
 * rounding; the bias added first; infinities and NaN as erff's formula gives them. Then every SIMD table bit for
 * bit the reference, at lengths 1-67 (their tails) with and without a bias. */
static void test_gelu_bias(void) {
    const plm_kernels *ref = plm_kernels_ref();
    REQUIRE(ref->gelu_bias);
    enum { N_GRID = 200001, N_WIDE = 20000, N = N_GRID + N_WIDE };
    float *v = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float)), *bias = malloc(N * sizeof(float));
    REQUIRE(v && y && bias);
    for (int i = 0; i < N_GRID; i++) v[i] = -9.0f + 18.0f * (float)i / (float)(N_GRID - 1); /* |x| up to 6.4 */
    for (int i = N_GRID; i < N; i++) v[i] = (rng_u64() & 1 ? -1.0f : 1.0f) * powf(10.0f, -30.0f + 60.0f * rng_uniform());
    for (int i = 0; i < N; i++) bias[i] = i % 3 == 0 ? 0.0f : rng_normal();
    double worst = 0.0, worst_erff = 0.0;
    int bad = 0;
    for (int pass = 0; pass < 2; pass++) { /* without, then with the bias */
        memcpy(y, v, N * sizeof(float));
        if (pass == 1)
            for (int i = 0; i < N; i++) y[i] = v[i] - bias[i];
        ref->gelu_bias(y, pass ? bias : NULL, N);
        for (int i = 0; i < N; i++) {
            const float vi = pass ? (v[i] - bias[i]) + bias[i] : v[i], x = vi * 0.70710678118654752f;
            const double want = 0.5 * (double)vi * (1.0 + erf((double)x));
            const double err = fabs((double)y[i] - want), tol = 0.5 * fabs((double)vi) * 1e-7 + 6e-8 * fabs(want) + 1e-45;
            if (!(err <= tol) && bad++ < 5) printf("  gelu(%.9g) = %.9g, want %.9g\n", (double)vi, (double)y[i], want);
            worst = fmax(worst, err / tol);
            const float with_erff = 0.5f * vi * (1.0f + erff(x));
            worst_erff = fmax(worst_erff, fabs((double)y[i] - (double)with_erff) / fmax(1e-30, 0.5 * fabs((double)vi)));
        }
    }
    CHECKF(bad == 0, "gelu_bias: %d of %d values off by more than erf's 1e-7", bad, 2 * N);
    printf("  scalar gelu_bias: largest error %.2f of the bound; %.2g x v/2 from erff's gelu\n", worst, worst_erff);
    float sp[6] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 30.0f};
    ref->gelu_bias(sp, NULL, 6);
    CHECK(sp[0] == 0.0f && sp[1] == 0.0f && sp[2] == INFINITY && isnan(sp[3]) && isnan(sp[4]) && sp[5] == 30.0f);
    float *z = malloc(N * sizeof(float));
    REQUIRE(z);
    for (size_t ti = 0; ti < N_SIMD_TABLES; ti++) {
        const plm_kernels *k = simd_table_or_skip(ti);
        if (k == NULL) continue;
        int diff = 0;
        for (int pass = 0; pass < 2; pass++) {
            const float *b = pass ? bias : NULL;
            memcpy(y, v, N * sizeof(float));
            memcpy(z, v, N * sizeof(float));
            ref->gelu_bias(y, b, N);
            k->gelu_bias(z, b, N);
            diff += memcmp(y, z, N * sizeof(float)) != 0;
            for (int n = 1; n <= 67; n++) { /* tails; offsets in the grid */
                memcpy(y, v + 1000 * n, (size_t)n * sizeof(float));
                memcpy(z, v + 1000 * n, (size_t)n * sizeof(float));
                z[n] = y[n] = 42.0f; /* not written */
                ref->gelu_bias(y, b ? b + n : NULL, n);
                k->gelu_bias(z, b ? b + n : NULL, n);
                diff += memcmp(y, z, (size_t)(n + 1) * sizeof(float)) != 0 || z[n] != 42.0f;
            }
        }
        CHECKF(diff == 0, "%s gelu_bias: %d of 136 calls differ from the reference", k->name, diff);
        printf("  %-6s gelu_bias: bit-identical to the reference\n", k->name);
    }
    free(v);
    free(y);
    free(z);
    free(bias);
}

/* rmsnorm: every table's equals the reference's bit for bit, lengths 1..70 (the 8 chains' tails), 576 and 1536
 * (the default model's rows), in place and not, values of very different sizes (the double sums' rounding shows),
 * nothing past n written. */
static void test_rmsnorm(void) {
    enum { N = 1600 };
    float *x = malloc(N * sizeof(float)), *w = malloc(N * sizeof(float)), *y = malloc((N + 1) * sizeof(float)),
          *z = malloc((N + 1) * sizeof(float));
    REQUIRE(x && w && y && z);
    uint32_t r = 777u;
    for (int i = 0; i < N; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = ((float)(r >> 8) / 16777216.0f - 0.5f) * (i % 5 == 0 ? 300.0f : i % 7 == 0 ? 1e-3f : 4.0f);
        r = r * 1664525u + 1013904223u;
        w[i] = (float)(r >> 8) / 16777216.0f * 2.0f;
    }
    const plm_kernels *ref = plm_kernels_ref();
    for (size_t ti = 0; ti < N_SIMD_TABLES; ti++) {
        const plm_kernels *k = simd_table_or_skip(ti);
        if (k == NULL) continue;
        int diff = 0, calls = 0;
        for (int n = 1; n <= 72; n++) {
            const int len = n <= 70 ? n : n == 71 ? 576 : 1536, off = n <= 70 ? 3 * n : 1;
            ref->rmsnorm(y, x + off, w + off, len, 1e-5f);
            z[len] = 42.0f; /* not written */
            k->rmsnorm(z, x + off, w + off, len, 1e-5f);
            diff += memcmp(y, z, (size_t)len * sizeof(float)) != 0 || z[len] != 42.0f;
            memcpy(z, x + off, (size_t)len * sizeof(float)); /* in place */
            k->rmsnorm(z, z, w + off, len, 1e-5f);
            diff += memcmp(y, z, (size_t)len * sizeof(float)) != 0;
            calls += 2;
        }
        CHECKF(diff == 0, "%s rmsnorm: %d of %d calls differ from the reference", k->name, diff, calls);
        printf("  %-6s rmsnorm: bit-identical to the reference (%d calls)\n", k->name, calls);
    }
    free(x);
    free(w);
    free(y);
    free(z);
}

/* argmax_f32: every table returns the reference's index: random rows of lengths 1..70 and a vocabulary's 49152,
 * the maximum repeated (the first wins), -0 before +0, all -inf, a NaN (the first one's place, negated). */
static void test_argmax(void) {
    enum { N = 49152 };
    float *x = malloc(N * sizeof(float));
    REQUIRE(x);
    const plm_kernels *ref = plm_kernels_ref();
    uint32_t r = 4242u;
    for (size_t ti = 0; ti < N_SIMD_TABLES; ti++) {
        const plm_kernels *k = simd_table_or_skip(ti);
        if (k == NULL) continue;
        int diff = 0, calls = 0;
        for (int c = 0; c < 8 * 72; c++) {
            const int len = c % 72 < 70 ? c % 72 + 1 : N, kind = c / 72;
            for (int i = 0; i < len; i++) {
                r = r * 1664525u + 1013904223u;
                x[i] = kind == 3 ? -INFINITY : ((float)(r >> 8) / 16777216.0f - 0.5f) * 20.0f;
            }
            const int at = (int)(r % (uint32_t)len), at2 = len > 1 ? (int)((r >> 7) % (uint32_t)len) : at;
            if (kind == 1) x[at] = x[at2] = 50.0f;                   /* a tie: the first place wins */
            if (kind == 2) x[at] = -0.0f, x[at2] = 0.0f, x[0] = -1.0f; /* zeros of both signs */
            if (kind == 2)
                for (int i = 1; i < len; i++) x[i] = x[i] > 0.0f && i != at2 ? -x[i] : x[i];
            if (kind == 4) x[at] = NAN;
            if (kind == 5) x[at] = NAN, x[at2] = NAN;
            if (kind == 6) x[at] = INFINITY;
            if (kind == 7) x[len - 1] = 100.0f; /* in the tail */
            int64_t naive = 0; /* the first NaN, else the first strictly largest */
            for (int i = 1; i < len && x[naive] == x[naive]; i++) naive = x[i] != x[i] || x[i] > x[naive] ? i : naive;
            if (x[naive] != x[naive]) naive = -1 - naive;
            diff += k->argmax_f32(x, len) != ref->argmax_f32(x, len) || ref->argmax_f32(x, len) != naive;
            calls++;
        }
        CHECKF(diff == 0, "%s argmax_f32: %d of %d rows differ from the reference", k->name, diff, calls);
        printf("  %-6s argmax_f32: the reference's index (%d rows)\n", k->name, calls);
    }
    free(x);
}

/* silu_mul (SwiGLU) where a table has one: bit for bit the composition it replaces, the table's exp_sum_f32 on
 * a copy of g and then g / (1 + e) * u element by element, over values from -120 to 120 (exp's overflow to inf and
 * underflow to 0 included), zeros of both signs, infinities and NaN, and lengths 1..67 (tails; nothing past n
 * written). A table without one is said so. */
static void test_silu_mul(void) {
    enum { N = 4096 };
    float *g = malloc(N * sizeof(float)), *u = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float)),
          *z = malloc(N * sizeof(float)), *e = malloc(N * sizeof(float));
    REQUIRE(g && u && y && z && e);
    uint32_t r = 12345u;
    for (int i = 0; i < N; i++) {
        r = r * 1664525u + 1013904223u;
        g[i] = ((float)(r >> 8) / 16777216.0f - 0.5f) * (i % 3 == 0 ? 240.0f : 16.0f);
        r = r * 1664525u + 1013904223u;
        u[i] = ((float)(r >> 8) / 16777216.0f - 0.5f) * 8.0f;
    }
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 88.0f, -88.0f, 104.0f, -104.0f, 1e-30f};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) g[7 * i + 1] = special[i];
    for (size_t ti = 0; ti < N_SIMD_TABLES; ti++) {
        const plm_kernels *k = simd_table_or_skip(ti);
        if (k == NULL) continue;
        if (!k->silu_mul) {
            printf("  %-6s silu_mul: none (the caller composes exp_sum_f32 and the loop)\n", k->name);
            continue;
        }
        int diff = 0;
        for (int n = 1; n <= 67 + 1; n++) {
            const int len = n == 68 ? N - 1 : n, off = n == 68 ? 0 : 50 * n;
            memcpy(e, g + off, (size_t)len * sizeof(float));
            k->exp_sum_f32(e, len, -1.0f, 0.0f);
            for (int i = 0; i < len; i++) y[i] = g[off + i] / (1.0f + e[i]) * u[off + i];
            memcpy(z, g + off, (size_t)len * sizeof(float));
            z[len] = 42.0f; /* not written */
            k->silu_mul(z, u + off, len);
            diff += memcmp(y, z, (size_t)len * sizeof(float)) != 0 || z[len] != 42.0f;
        }
        CHECKF(diff == 0, "%s silu_mul: %d of 68 calls differ from exp_sum_f32 and the loop", k->name, diff);
        printf("  %-6s silu_mul: bit-identical to its exp_sum_f32 and the loop\n", k->name);
    }
    free(g);
    free(u);
    free(y);
    free(z);
    free(e);
}

/* plm_linear's job holds PLM_LINEAR_MAX_WEIGHTS weights: more (or none) is an
 * argument error, found before anything is read. */
static void test_linear_weight_count(void) {
    const plm_weight *w[PLM_LINEAR_MAX_WEIGHTS + 1] = {0};
    float *out[PLM_LINEAR_MAX_WEIGHTS + 1] = {0};
    int64_t ld[PLM_LINEAR_MAX_WEIGHTS + 1] = {0};
    const int bad[3] = {0, -1, PLM_LINEAR_MAX_WEIGHTS + 1};
    for (int i = 0; i < 3; i++) {
        CHECK(plm_linear(NULL, bad[i], w, out, ld, NULL, 0, 1, false, NULL, NULL) == PLM_ERR_ARG);
        CHECKF(strstr(plm_last_error(), "weights; one product takes 1 to 3") != NULL, "%s", plm_last_error());
    }
}

int main(void) {
    RUN(test_layout_and_traits);
    RUN(test_linear_weight_count);
    RUN(test_attention_helpers);
    RUN(test_softmax_helpers);
    RUN(test_lora_b32);
    RUN(test_gelu_bias);
    RUN(test_silu_mul);
    RUN(test_rmsnorm);
    RUN(test_argmax);
    RUN(test_f16_known_values);
    RUN(test_f16_exhaustive);
    RUN(test_bf16);
    RUN(test_dequant_known_32);
    RUN(test_dequant_known_k);
    RUN(test_quantize_q8_0_q8_1);
    RUN(test_quantize_q8_K);
    RUN(test_quantize_floats_and_unsupported);
    RUN(test_quantize_weights_roundtrip);
    RUN(test_ref_dot_matches_dequantized);
    RUN(test_empty_rows);
    RUN(test_dispatch);
    RUN(test_simd_dots);
    RUN(test_gemm_equals_vec_dot);
    RUN(test_x16_layout);
    RUN(test_simd_quantizers_bit_identical);
    return TEST_SUMMARY();
}
