/*
 * kernel_ab.c — two builds of one kernel table in one process: is a change to a
 * table faster, and by how much (`make kernel-ab [AB_TABLE=avx512] [AB_REV=HEAD]`).
 *
 * A development tool beside kernel_bench.c. The Makefile compiles the table's
 * source twice, as it is at git revision AB_REV ("a") and as it is in the
 * working tree ("b"), each under its own name (plm_ab_table_a, _b), and links
 * both here. Per weight type that the reference can quantize, for T = 1, 4, 16
 * and 64 tokens, it times W (1536 x 576) @ T tokens in matmul.c's 64-row
 * pieces with a, then b (which goes first alternates), REPS times, in thread
 * CPU time, and prints the median over the pairs of (time b / time a) - 1: both
 * halves of a pair see the same machine, so a 5% difference shows on a machine
 * whose speed swings by 20% from one second to the next, where separate runs
 * of kernel_bench cannot tell it. It also says where b's products differ from
 * a's in any bit. The table's headers are the working tree's for both builds.
 * Then, for the types both builds have a gemm_x16 entry for, the same over a
 * 96 MB matrix in the x16 layout (quant.h), read from memory as a model's
 * weights are, at T = 1, 4, 16 and 64 (the outputs of each 64-row piece written
 * over one small buffer, as a layer's product's stay in cache).
 *
 *   build/ab/kernel-ab [REPS]     (default 40; the 96 MB part takes REPS / 4 pairs)
 */
#include "quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const plm_kernels *plm_ab_table_a(void);
const plm_kernels *plm_ab_table_b(void);

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t g_rng = 0x243f6a8885a308d3ULL;
static float rnd(void) {
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((g_rng >> 40) * (1.0 / 16777216.0)) - 0.5f;
}

static int cmp_double(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

#define ROWS 1536
#define N_IN 576
#define ROW_BLOCK 64 /* matmul.c's */
#define MAX_T 64
#define MAX_REPS 1000

/* One type's product at T tokens as both builds run it: W (ROWS rows) in cache, `times` passes, through gemm;
 * or (big) W of `rows` rows in the x16 layout from memory through gemm_x16, its 64-row pieces' outputs written
 * over one small buffer (a layer's product's outputs stay in cache). Out: (T, ROWS). */
typedef struct ab_job {
    plm_type t;
    const uint8_t *w, *a;
    size_t ws, as;
    int64_t rows;
    bool big;
    int T, times;
} ab_job;

static void product(const plm_kernels *k, const ab_job *j, float *out) {
    for (int i = 0; i < (j->big ? 1 : j->times); i++)
        for (int64_t r0 = 0; r0 < (j->big ? j->rows : ROWS); r0 += ROW_BLOCK) {
            const plm_gemm_fn gemm = j->big ? k->gemm_x16[j->t] : k->gemm[j->t];
            gemm(N_IN, j->w + (size_t)r0 * j->ws, j->ws, ROW_BLOCK, j->a, j->as, j->T, out + r0 % ROWS, ROWS, false);
        }
}

/* Prints the median over reps pairs of (time b / time a) - 1 for j (which build goes first alternates), and
 * whether b's outputs differ from a's in any bit. */
static void print_pairs(const plm_kernels *const tab[2], const ab_job *j, int reps, float *const out[2], double *ratio) {
    for (int i = 0; i < reps; i++) {
        double dt[2];
        for (int h = 0; h < 2; h++) {
            const int v = (h == 0) == (i % 2 == 0) ? 0 : 1;
            const double t0 = now_s();
            product(tab[v], j, out[v]);
            dt[v] = now_s() - t0;
        }
        ratio[i] = dt[1] / dt[0];
    }
    const bool same = memcmp(out[0], out[1], (size_t)j->T * ROWS * sizeof(float)) == 0;
    qsort(ratio, (size_t)reps, sizeof(double), cmp_double);
    printf("  T=%-2d %+6.1f%%%s", j->T, (ratio[reps / 2] - 1.0) * 100.0, same ? "" : " (bits differ)");
    fflush(stdout);
}

/* MAX_T tokens of activations of type at (as bytes each) from random floats (x: N_IN of scratch). */
static uint8_t *make_acts(const plm_kernels *k, plm_type at, size_t as, float *x) {
    uint8_t *a = malloc(as * MAX_T);
    for (int c = 0; a && c < MAX_T; c++) {
        for (int i = 0; i < N_IN; i++) x[i] = rnd() * 4.0f;
        k->quantize[at](x, a + (size_t)c * as, N_IN);
    }
    return a;
}

#define BIG_BYTES ((size_t)96 << 20)

/* The x16 entries from memory (see the top). */
static int from_memory(const plm_kernels *const tab[2], int reps, float *const out[2], float *x, double *ratio) {
    static const int sizes[] = {1, 4, 16, 64};
    printf("the same, W (96 MB x %d, x16 layout, from memory) @ T tokens, %d pairs\n", N_IN, reps);
    for (int t = 0; t < PLM_TYPE_COUNT; t++) {
        if (!plm_x16_type((plm_type)t) || !tab[0]->gemm_x16[t] || !tab[1]->gemm_x16[t]) continue;
        const plm_type at = plm_type_traits_get((plm_type)t)->dot_type;
        const size_t ws = plm_type_row_size((plm_type)t, N_IN), as = plm_type_row_size(at, N_IN);
        const int64_t rows = (int64_t)(BIG_BYTES / ws) / ROW_BLOCK * ROW_BLOCK;
        uint8_t *w = malloc(ws * (size_t)rows), *g = malloc(ws * PLM_X16), *a = make_acts(tab[0], at, as, x);
        if (!w || !g || !a) return 1;
        for (int64_t r0 = 0; r0 < rows; r0 += PLM_X16) { /* 16 distinct rows, repeated, then repacked */
            if (r0 < PLM_X16 * 16)
                for (int r = 0; r < PLM_X16; r++) {
                    for (int i = 0; i < N_IN; i++) x[i] = rnd() * 0.1f;
                    plm_quantize_row_ref((plm_type)t, x, g + (size_t)r * ws, N_IN);
                }
            plm_x16_pack((plm_type)t, g, w + (size_t)r0 * ws, N_IN);
        }
        printf("%-6s", plm_type_traits_get((plm_type)t)->name);
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            const ab_job j = {.t = (plm_type)t, .w = w, .a = a, .ws = ws, .as = as, .rows = rows, .big = true, .T = sizes[s]};
            print_pairs(tab, &j, reps, out, ratio);
        }
        printf("\n");
        free(w);
        free(g);
        free(a);
    }
    return 0;
}

int main(int argc, char **argv) {
    const int reps = argc > 1 ? atoi(argv[1]) : 40;
    if (reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "usage: kernel-ab [REPS: 1 to %d]\n", MAX_REPS);
        return 2;
    }
    const plm_kernels *tab[2] = {plm_ab_table_a(), plm_ab_table_b()};
    static const int sizes[] = {1, 4, 16, 64};
    printf("b against a: median over %d pairs of (time b / time a) - 1, W (%d x %d) @ T tokens\n", reps, ROWS, N_IN);
    float *out[2] = {malloc((size_t)MAX_T * ROWS * sizeof(float)), malloc((size_t)MAX_T * ROWS * sizeof(float))};
    float *x = malloc(N_IN * sizeof(float));
    double *ratio = malloc((size_t)reps * sizeof(double));
    if (!out[0] || !out[1] || !x || !ratio) return 1;
    for (int t = 0; t < PLM_TYPE_COUNT; t++) {
        if (!plm_type_can_quantize((plm_type)t) || !tab[0]->gemm[t] || !tab[1]->gemm[t]) continue;
        const plm_type at = plm_type_traits_get((plm_type)t)->dot_type;
        const size_t ws = plm_type_row_size((plm_type)t, N_IN), as = plm_type_row_size(at, N_IN);
        uint8_t *w = malloc(ws * ROWS), *a = make_acts(tab[0], at, as, x);
        if (!w || !a) return 1;
        for (int r = 0; r < ROWS; r++) {
            for (int i = 0; i < N_IN; i++) x[i] = rnd() * 0.1f;
            plm_quantize_row_ref((plm_type)t, x, w + (size_t)r * ws, N_IN);
        }
        printf("%-6s", plm_type_traits_get((plm_type)t)->name);
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            const int T = sizes[s];
            const ab_job j = {.t = (plm_type)t, .w = w, .a = a, .ws = ws, .as = as, .T = T, .times = T < 16 ? 4 : 1};
            print_pairs(tab, &j, reps, out, ratio);
        }
        printf("\n");
        free(w);
        free(a);
    }
    const int rc = from_memory(tab, reps / 4 > 0 ? reps / 4 : 1, out, x, ratio);
    free(out[0]);
    free(out[1]);
    free(x);
    free(ratio);
    return rc;
}
