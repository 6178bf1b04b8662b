/*
 * kernels/dispatch.c — picks the kernel table once, from what the CPU and the
 * OS support, so that one build runs on any CPU of its architecture.
 *
 * This file is compiled without ISA flags: the feature checks here (CPUID and
 * XGETBV on x86-64, the kernel's HWCAP bits on aarch64 Linux) must run before any
 * code from kernels/<isa>.c (built with their instruction sets) is touched,
 * including the code that builds their tables. The kernels themselves live in
 * quant.c (scalar reference) and kernels/<isa>.c; the Makefile compiles only
 * the tables of the target architecture.
 *
 * POCKETLM_KERNELS=scalar|avx2|avx512 (x86-64) or scalar|neon|neon-dotprod
 * (aarch64) forces a table (for debugging, tests and benchmarks); unset, empty
 * or "auto" means the best available. A forced table that this CPU cannot run
 * is never used (its first instruction would be an illegal-instruction
 * crash): the best table that can run is used instead and one line on stderr
 * says so; plm_kernels_name() reports the table in use.
 */
#include "internal.h"
#include "quant.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The tables a name may force, in increasing order of preference, with what
 * each needs (for the message). get() returns NULL when the CPU lacks it. */
typedef struct forcible {
    const char *name;
    const plm_kernels *(*get)(void);
    const char *needs;
} forcible;

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* XCR0 via XGETBV, spelled as bytes so that no -mxsave is needed; only called
 * once CPUID says OSXSAVE is set (otherwise XGETBV faults). */
static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

/* AVX2 + FMA + F16C, and the OS saves the YMM registers on context switch. */
static bool cpu_has_avx2(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
    const bool fma = (ecx & bit_FMA) != 0;
    const bool osxsave = (ecx & bit_OSXSAVE) != 0;
    const bool avx = (ecx & bit_AVX) != 0;
    const bool f16c = (ecx & bit_F16C) != 0;
    if (!(fma && osxsave && avx && f16c)) return false;
    if ((read_xcr0() & 0x6) != 0x6) return false; /* XMM and YMM state */
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    return (ebx & bit_AVX2) != 0;
}

/* AVX-512 F, BW, VL and VNNI on top of AVX2 (the table reuses AVX2 entries),
 * and the OS saves the opmask, ZMM_Hi256 and Hi16_ZMM state (XCR0 bits 5-7). */
static bool cpu_has_avx512(void) {
    if (!cpu_has_avx2()) return false;
    if ((read_xcr0() & 0xe6) != 0xe6) return false;
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    const unsigned need_b = bit_AVX512F | bit_AVX512BW | bit_AVX512VL;
    return (ebx & need_b) == need_b && (ecx & bit_AVX512VNNI) != 0;
}

static const plm_kernels *g_avx2;
static pthread_once_t g_avx2_once = PTHREAD_ONCE_INIT;

static void detect_avx2(void) {
    if (cpu_has_avx2()) g_avx2 = plm_kernels_avx2_table();
}

const plm_kernels *plm_kernels_avx2(void) {
    pthread_once(&g_avx2_once, detect_avx2);
    return g_avx2;
}

static const plm_kernels *g_avx512;
static pthread_once_t g_avx512_once = PTHREAD_ONCE_INIT;

static void detect_avx512(void) {
    if (cpu_has_avx512()) g_avx512 = plm_kernels_avx512_table();
}

const plm_kernels *plm_kernels_avx512(void) {
    pthread_once(&g_avx512_once, detect_avx512);
    return g_avx512;
}

const plm_kernels *plm_kernels_neon(void) { return NULL; }
const plm_kernels *plm_kernels_neon_dotprod(void) { return NULL; }

static const forcible k_forcible[] = {
    {"scalar", plm_kernels_ref, ""},
    {"avx2", plm_kernels_avx2, "AVX2, FMA and F16C"},
    {"avx512", plm_kernels_avx512, "AVX-512 F/BW/VL/VNNI with OS support for the ZMM state"},
};
#define TABLE_NAMES "scalar, avx2, avx512"

#elif defined(__aarch64__)
#if defined(__linux__)
#include <sys/auxv.h>

#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20) /* the kernel's bit for SDOT/UDOT (arch/arm64 uapi hwcap.h) */
#endif
static bool cpu_has_dotprod(void) { return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0; }
#elif defined(__APPLE__)
#include <sys/sysctl.h>

static bool cpu_has_dotprod(void) {
    int v = 0;
    size_t n = sizeof v;
    return sysctlbyname("hw.optional.arm.FEAT_DotProd", &v, &n, NULL, 0) == 0 && v != 0;
}
#else
static bool cpu_has_dotprod(void) { return false; } /* no way to ask: plain NEON */
#endif

/* Advanced SIMD is part of every aarch64 CPU: the plain table always runs. */
const plm_kernels *plm_kernels_neon(void) { return plm_kernels_neon_table(); }

static const plm_kernels *g_neon_dotprod;
static pthread_once_t g_neon_dotprod_once = PTHREAD_ONCE_INIT;

static void detect_neon_dotprod(void) {
    if (cpu_has_dotprod()) g_neon_dotprod = plm_kernels_neon_dotprod_table();
}

const plm_kernels *plm_kernels_neon_dotprod(void) {
    pthread_once(&g_neon_dotprod_once, detect_neon_dotprod);
    return g_neon_dotprod;
}

const plm_kernels *plm_kernels_avx2(void) { return NULL; }
const plm_kernels *plm_kernels_avx512(void) { return NULL; }

static const forcible k_forcible[] = {
    {"scalar", plm_kernels_ref, ""},
    {"neon", plm_kernels_neon, "Advanced SIMD"},
    {"neon-dotprod", plm_kernels_neon_dotprod, "the dot-product extension (HWCAP asimddp: SDOT/UDOT)"},
};
#define TABLE_NAMES "scalar, neon, neon-dotprod"

#else
const plm_kernels *plm_kernels_avx2(void) { return NULL; }
const plm_kernels *plm_kernels_avx512(void) { return NULL; }
const plm_kernels *plm_kernels_neon(void) { return NULL; }
const plm_kernels *plm_kernels_neon_dotprod(void) { return NULL; }

static const forcible k_forcible[] = {
    {"scalar", plm_kernels_ref, ""},
};
#define TABLE_NAMES "scalar"
#endif

#define N_FORCIBLE (sizeof k_forcible / sizeof k_forcible[0])

static const plm_kernels *g_chosen;
static pthread_once_t g_chosen_once = PTHREAD_ONCE_INIT;

static void choose(void) {
    const plm_kernels *best = NULL;
    for (size_t i = N_FORCIBLE; best == NULL && i-- > 0;) best = k_forcible[i].get();
    g_chosen = best;
    const char *env = getenv("POCKETLM_KERNELS");
    if (env == NULL || env[0] == '\0' || strcmp(env, "auto") == 0) return;
    for (size_t i = 0; i < N_FORCIBLE; i++) {
        if (strcmp(env, k_forcible[i].name) != 0) continue;
        const plm_kernels *k = k_forcible[i].get();
        if (k != NULL) g_chosen = k;
        else
            fprintf(stderr, "pocketlm: POCKETLM_KERNELS=%s: this CPU cannot run that table (it needs %s); using %s\n",
                    env, k_forcible[i].needs, best->name);
        return;
    }
    fprintf(stderr, "pocketlm: POCKETLM_KERNELS=%s: no such kernel table in this build (" TABLE_NAMES "); using %s\n",
            env, best->name);
}

const plm_kernels *plm_kernels_get(void) {
    pthread_once(&g_chosen_once, choose);
    return g_chosen;
}

PLM_API const char *plm_kernels_name(void) { return plm_kernels_get()->name; }
