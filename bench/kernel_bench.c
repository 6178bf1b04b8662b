/*
 * kernel_bench.c — times the kernel tables' matrix products alone, one thread,
 * table against table (`build/plm-kernel-bench [-t TABLE ...] [-r REPS]`).
 *
 * A development tool next to plm_bench.c (which times the whole model through
 * the public API): it includes csrc/quant.h to reach the tables directly. Per
 * weight type it times
 *   decode:  W (rows, n) @ one token, walked in 64-row blocks as matmul.c
 *            does, for a matrix in L2 (1536 x 576: the kernel's own speed) and
 *            one larger than the last-level cache (96 MB: memory-bound);
 *   prefill: W (1536, 576) @ 512 tokens in matmul.c's pieces (64 rows x 64 KB
 *            of activations),
 * and prints GB/s of weights (decode) and GMAC/s (prefill), best of REPS, per
 * table, timed in thread CPU time. With -b it prints instead, per type and
 * table, the cost per token of W (rows, 576) @ T tokens for T = 1, 2, 4, 8,
 * 16, 32, 64 and 512 (ns per token: the products a batched decode of T
 * sequences runs, what the batch generator's speed-up depends on), for a
 * matrix in L2 (1536 rows) and one of 96 MB (from memory, as a model's
 * weights are in a decode step; T <= 64 there, to keep the run short). One thread, so another process on the
 * machine disturbs it less than a 2-thread model run (though it still shares
 * caches and memory bandwidth): repeat and alternate on a shared machine.
 * A table named with "-x16" (`-t avx512-x16`) runs its gemm_x16 entries over
 * the same weights repacked into the x16 layout (quant.h), as a model loaded
 * with repacking has them; types it has no such entry for run as without.
 */
#include "quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* time on the CPU: a preempted slice does not count */
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t g_rng = 0x243f6a8885a308d3ULL;
static float rnd(void) {
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((g_rng >> 40) * (1.0 / 16777216.0)) - 0.5f;
}

/* rows x n weights of type t: 16 distinct quantized rows, repeated. */
static uint8_t *make_weights(plm_type t, int64_t rows, int64_t n) {
    const size_t ws = plm_type_row_size(t, n);
    uint8_t *w = malloc(ws * (size_t)rows);
    float *x = malloc((size_t)n * sizeof(float));
    if (w == NULL || x == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int r = 0; r < 16 && r < rows; r++) {
        uint8_t *row = w + (size_t)r * ws;
        if (plm_type_can_quantize(t)) {
            for (int64_t i = 0; i < n; i++) x[i] = rnd() * 0.1f;
            plm_quantize_row_ref(t, x, row, n);
            continue;
        }
        /* Q2_K, Q3_K, Q5_K: random bits with plain scales (d, dmin = 1/64) */
        for (size_t i = 0; i < ws; i++) row[i] = (uint8_t)(rnd() * 256.0f);
        for (int64_t b = 0; b < n / PLM_QK_K; b++) {
            if (t == PLM_TYPE_Q2_K) ((plm_block_q2_K *)row)[b].d = ((plm_block_q2_K *)row)[b].dmin = 0x2400;
            if (t == PLM_TYPE_Q3_K) ((plm_block_q3_K *)row)[b].d = 0x2400;
            if (t == PLM_TYPE_Q5_K) ((plm_block_q5_K *)row)[b].d = ((plm_block_q5_K *)row)[b].dmin = 0x2400;
        }
    }
    for (int64_t r = 16; r < rows; r++) memcpy(w + (size_t)r * ws, w + (size_t)(r % 16) * ws, ws);
    free(x);
    return w;
}

static uint8_t *make_acts(const plm_kernels *k, plm_type at, int64_t tokens, int64_t n) {
    const size_t as = plm_type_row_size(at, n);
    uint8_t *a = malloc(as * (size_t)tokens);
    float *x = malloc((size_t)n * sizeof(float));
    for (int64_t c = 0; c < tokens; c++) {
        for (int64_t i = 0; i < n; i++) x[i] = rnd() * 4.0f;
        k->quantize[at](x, a + (size_t)c * as, n);
    }
    free(x);
    return a;
}

#define ROW_BLOCK 64 /* matmul.c's */

/* Whether table entry i runs its gemm_x16 over repacked weights (a "-x16" name). */
static bool g_x16[8];

/* The same weights in the x16 layout (rows a multiple of 16), or NULL for a type without one. */
static uint8_t *repacked(plm_type t, const uint8_t *w, int64_t rows, int64_t n) {
    if (!plm_x16_type(t) || rows % PLM_X16) return NULL;
    const size_t ws = plm_type_row_size(t, n);
    uint8_t *p = malloc(ws * (size_t)rows);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t g = 0; g < rows; g += PLM_X16) plm_x16_pack(t, w + (size_t)g * ws, p + (size_t)g * ws, n);
    return p;
}

/* out (tokens, rows) = W @ A in matmul.c's pieces; vec_dot per entry where the table has no gemm. x16: w is in
 * the x16 layout, through the table's gemm_x16. */
static void product(const plm_kernels *k, plm_type t, const uint8_t *w, int64_t rows, int64_t n, const uint8_t *a,
                    int64_t tokens, float *out, bool x16) {
    const size_t ws = plm_type_row_size(t, n), as = plm_type_row_size(plm_type_traits_get(t)->dot_type, n);
    int64_t tb = (int64_t)(65536 / as);
    if (tb < 1) tb = 1;
    for (int64_t t0 = 0; t0 < tokens; t0 += tb) {
        const int64_t nt = tokens - t0 < tb ? tokens - t0 : tb;
        for (int64_t r0 = 0; r0 < rows; r0 += ROW_BLOCK) {
            const int nr = (int)(rows - r0 < ROW_BLOCK ? rows - r0 : ROW_BLOCK);
            if (x16 || k->gemm[t] != NULL) {
                (x16 ? k->gemm_x16[t] : k->gemm[t])(n, w + (size_t)r0 * ws, ws, nr, a + (size_t)t0 * as, as, (int)nt, out + t0 * rows + r0, rows, false);
                continue;
            }
            for (int64_t c = t0; c < t0 + nt; c++)
                for (int r = 0; r < nr; r++)
                    out[c * rows + r0 + r] = k->vec_dot[t](n, w + (size_t)(r0 + r) * ws, a + (size_t)c * as);
        }
    }
}

static double best_time(const plm_kernels *k, plm_type t, const uint8_t *w, int64_t rows, int64_t n, const uint8_t *a,
                        int64_t tokens, float *out, int reps, bool x16) {
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        const double t0 = now_s();
        product(k, t, w, rows, n, a, tokens, out, x16);
        const double dt = now_s() - t0;
        best = dt < best ? dt : best;
    }
    return best;
}

static const plm_kernels *table_named(const char *name, bool *x16) {
    const size_t len = strlen(name);
    *x16 = len > 4 && strcmp(name + len - 4, "-x16") == 0;
    if (*x16) {
        char base[32];
        snprintf(base, sizeof base, "%.*s", (int)(len - 4), name);
        const plm_kernels *k = table_named(base, &(bool){false});
        *x16 = k != NULL && k->gemm_x16[PLM_TYPE_Q4_0] != NULL;
        return *x16 ? k : NULL;
    }
    if (strcmp(name, "scalar") == 0) return plm_kernels_ref();
    if (strcmp(name, "avx2") == 0) return plm_kernels_avx2();
    if (strcmp(name, "avx512") == 0) return plm_kernels_avx512();
    if (strcmp(name, "neon") == 0) return plm_kernels_neon();
    if (strcmp(name, "neon-dotprod") == 0) return plm_kernels_neon_dotprod();
    return NULL;
}

/* ns per token of W (1536, 576) @ T tokens for the batch sizes above, tables taking turns. */
static void batch_costs(const plm_kernels *const *tables, const char *const *names, int n_names, const plm_type *types,
                        size_t n_types, int reps, bool big) {
    static const int64_t sizes[] = {1, 2, 4, 8, 16, 32, 64, 512};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    const int64_t n = 576;
    printf("ns per token of W (%s x %lld) @ T tokens\n%-5s %-12s", big ? "96 MB" : "1536", (long long)n, "type", "table");
    for (int s = 0; s < NS; s++) printf(" %7s%-3lld", "T=", (long long)sizes[s]);
    printf("\n");
    for (size_t ti = 0; ti < n_types; ti++) {
        const plm_type t = types[ti], at = plm_type_traits_get(t)->dot_type;
        const int64_t rows = big ? (int64_t)(96u << 20) / (int64_t)plm_type_row_size(t, n) / 16 * 16 : 1536;
        uint8_t *w = make_weights(t, rows, n), *wx = repacked(t, w, rows, n);
        float *out = calloc((size_t)(rows * 512), sizeof(float));
        double best[8][NS];
        uint8_t *a[8];
        for (int i = 0; i < n_names; i++) {
            a[i] = make_acts(tables[i], at, 512, n);
            for (int s = 0; s < NS; s++) best[i][s] = 1e30;
        }
        for (int rep = 0; rep < reps; rep++)
            for (int i = 0; i < n_names; i++)
                for (int s = 0; s < NS - big; s++) {
                    const bool x16 = g_x16[i] && wx && tables[i]->gemm_x16[t];
                    const double x = best_time(tables[i], t, x16 ? wx : w, rows, n, a[i], sizes[s], out,
                                               sizes[s] >= 64 || big ? 1 : 4, x16);
                    best[i][s] = x < best[i][s] ? x : best[i][s];
                }
        for (int i = 0; i < n_names; i++) {
            printf("%-5s %-12s", plm_type_traits_get(t)->name, names[i]);
            for (int s = 0; s < NS - big; s++) printf(" %10.0f", best[i][s] / (double)sizes[s] * 1e9);
            printf("\n");
            free(a[i]);
        }
        free(w);
        free(wx);
        free(out);
    }
}

int main(int argc, char **argv) {
    const char *names[8];
    int n_names = 0, reps = 5;
    bool batch = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-t") == 0 && i + 1 < argc && n_names < 8) names[n_names++] = argv[++i];
        else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "-b") == 0) batch = true;
        else {
            fprintf(stderr, "usage: plm-kernel-bench [-t scalar|avx2|avx512|avx512-x16|neon|neon-dotprod ...] [-r REPS] [-b]\n");
            return 2;
        }
    }
    if (n_names == 0) { /* the SIMD tables of this architecture */
        static const char *const simd[] = {"avx2", "avx512", "neon", "neon-dotprod"};
        for (size_t i = 0; i < sizeof simd / sizeof simd[0]; i++)
            if (table_named(simd[i], &(bool){false}) != NULL) names[n_names++] = simd[i];
    }
    const plm_kernels *tables[8];
    for (int i = 0; i < n_names; i++) {
        tables[i] = table_named(names[i], &g_x16[i]);
        if (tables[i] == NULL) {
            fprintf(stderr, "plm-kernel-bench: table %s is not available on this CPU or in this build\n", names[i]);
            return 1;
        }
    }
    const plm_type types[] = {PLM_TYPE_Q4_0, PLM_TYPE_Q4_1, PLM_TYPE_Q5_0, PLM_TYPE_Q5_1,
                              PLM_TYPE_Q8_0, PLM_TYPE_Q2_K, PLM_TYPE_Q3_K, PLM_TYPE_Q4_K,
                              PLM_TYPE_Q5_K, PLM_TYPE_Q6_K};
    if (batch) {
        batch_costs(tables, names, n_names, types, sizeof types / sizeof types[0], reps, false);
        batch_costs(tables, names, n_names, types, sizeof types / sizeof types[0], reps, true);
        return 0;
    }
    printf("%-5s %-12s", "type", "table");
    printf(" %14s %14s %16s\n", "decode-L2 GB/s", "decode GB/s", "prefill GMAC/s");
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const plm_type t = types[ti], at = plm_type_traits_get(t)->dot_type;
        const int64_t dn = 2048, drows = (int64_t)(96u << 20) / (int64_t)plm_type_row_size(t, dn) / 16 * 16;
        const int64_t pn = 576, prows = 1536, ptok = 512;
        uint8_t *dw = make_weights(t, drows, dn), *pw = make_weights(t, prows, pn);
        uint8_t *dwx = repacked(t, dw, drows, dn), *pwx = repacked(t, pw, prows, pn);
        float *out = malloc((size_t)(drows > prows * ptok ? drows : prows * ptok) * sizeof(float));
        uint8_t *da[8], *pa[8], *la[8];
        double tl[8], td[8], tp[8];
        for (int i = 0; i < n_names; i++) {
            da[i] = make_acts(tables[i], at, 1, dn);
            pa[i] = make_acts(tables[i], at, ptok, pn);
            la[i] = make_acts(tables[i], at, 1, pn);
            tl[i] = td[i] = tp[i] = 1e30;
        }
        /* the tables take turns, so a disturbance hits them alike; the best time of each counts */
        for (int rep = 0; rep < reps; rep++)
            for (int i = 0; i < n_names; i++) {
                const plm_kernels *k = tables[i];
                const bool x16 = g_x16[i] && dwx && k->gemm_x16[t];
                double x = best_time(k, t, x16 ? pwx : pw, prows, pn, la[i], 1, out, 20, x16);
                tl[i] = x < tl[i] ? x : tl[i];
                x = best_time(k, t, x16 ? dwx : dw, drows, dn, da[i], 1, out, 1, x16);
                td[i] = x < td[i] ? x : td[i];
                x = best_time(k, t, x16 ? pwx : pw, prows, pn, pa[i], ptok, out, 1, x16);
                tp[i] = x < tp[i] ? x : tp[i];
            }
        for (int i = 0; i < n_names; i++) {
            printf("%-5s %-12s %14.2f %14.2f %16.2f\n", plm_type_traits_get(t)->name, names[i],
                   (double)prows * (double)plm_type_row_size(t, pn) / tl[i] * 1e-9,
                   (double)drows * (double)plm_type_row_size(t, dn) / td[i] * 1e-9, (double)prows * pn * ptok / tp[i] * 1e-9);
            free(da[i]);
            free(pa[i]);
            free(la[i]);
        }
        free(dw);
        free(pw);
        free(dwx);
        free(pwx);
        free(out);
    }
    return 0;
}
