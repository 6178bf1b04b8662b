/*
 * kernels/dispatch.c — picks the kernel table once, from what the CPU and the
 * OS support, so that one build runs on any x86-64.
 *
 * This file is compiled without ISA flags: the CPUID/XGETBV checks here must
 * run before any code from kernels/avx2.c (built with -mavx2 -mfma -mf16c) is
 * touched, including the code that builds its table. The kernels themselves
 * live in quant.c (scalar reference) and kernels/<isa>.c.
 *
 * POCKETLM_KERNELS=scalar forces the reference table (for debugging and for
 * comparing against it); unset or any other value means the best available.
 */
#include "internal.h"
#include "quant.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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
#else
static bool cpu_has_avx2(void) { return false; }
#endif

static const plm_kernels *g_avx2;
static pthread_once_t g_avx2_once = PTHREAD_ONCE_INIT;

static void detect_avx2(void) {
    if (cpu_has_avx2()) g_avx2 = plm_kernels_avx2_table();
}

const plm_kernels *plm_kernels_avx2(void) {
    pthread_once(&g_avx2_once, detect_avx2);
    return g_avx2;
}

static const plm_kernels *g_chosen;
static pthread_once_t g_chosen_once = PTHREAD_ONCE_INIT;

static void choose(void) {
    const char *env = getenv("POCKETLM_KERNELS");
    const bool scalar = env != NULL && strcmp(env, "scalar") == 0;
    const plm_kernels *avx2 = scalar ? NULL : plm_kernels_avx2();
    g_chosen = avx2 != NULL ? avx2 : plm_kernels_ref();
}

const plm_kernels *plm_kernels_get(void) {
    pthread_once(&g_chosen_once, choose);
    return g_chosen;
}

PLM_API const char *plm_kernels_name(void) { return plm_kernels_get()->name; }
