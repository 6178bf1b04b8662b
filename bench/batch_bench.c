/*
 * bench/batch_bench.c — aggregate generation throughput of the batch generator.
 *
 * Through the public API (it includes only pocketlm.h), on one model and thread
 * count, it runs one workload — -N prompts of varied length (8 to 24 words
 * of text), -n generated tokens each, greedy, end-of-generation ignored
 * so that every prompt yields exactly -n tokens — in two ways:
 *   sequential   plm_generate for one prompt after the other
 *   batched      plm_batch_gen at parallel 1, 4, 8, 16, 32 (-P)
 * and reports generated tokens per second of wall time for each (prompt
 * evaluation included: it is part of the job), and the ratio to sequential.
 * Then one step's cost: a single running sequence's decode step with and
 * without -c tokens in each of 30 finished-but-cached sequences beside it
 * (attention visits a sequence's own cells only, so they should cost nothing):
 * two contexts stepped in turn, the cost the median over 192 pairs of the
 * ratio of their steps' times (a machine whose speed swings by 20% from one
 * second to the next moves both halves of a pair alike).
 * Then the cost per token of one decode of T tokens (CPU time): T = 1 (one
 * sequence's step), T = 16 (one step of 16 sequences, a token each) and
 * T = 512 (one 512-token prompt): how much a batched step gains over single
 * steps is bounded by the ratio of the first two, and the third is prefill's.
 * Each figure also per CPU second of the process (see cpu_s). One JSON object
 * on stdout; a table on stderr.
 *
 *   build/batch-bench [-m FILE] [-t 2] [-N 64] [-n 32] [-P 1,4,8,16,32] [-c 500] [-R 1]
 *
 * -R ROUNDS alternates the sequential run and the batched ones ROUNDS times and reports medians (each
 * round's ratio against its own sequential run).
 */
#include "pocketlm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the process: on a machine shared with other work, tokens per
 * CPU second at one thread is the figure that the others' load disturbs least
 * (with more threads, workers spinning while they wait count too). */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define MAX_ROUNDS 16

/* The median of x[0..n) (sorts x). */
static double median(double *x, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && x[j - 1] > x[j]; j--) {
            const double t = x[j];
            x[j] = x[j - 1];
            x[j - 1] = t;
        }
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static int die(const char *what, plm_status st) {
    fprintf(stderr, "batch-bench: %s: %s (%s)\n", what, plm_last_error(), plm_status_str(st));
    return 1;
}

static const char *WORDS[] = {"the", "river", "carried", "small", "boats", "past", "old", "mills", "while",
                              "children", "watched", "from", "a", "stone", "bridge", "and", "counted", "sails"};

/* Prompt i: 8 to 24 words of text (the counts differ from one prompt to the next). */
static char *make_prompt(int i) {
    const int words = 8 + (i * 5) % 17;
    char *s = malloc((size_t)words * 12 + 1);
    if (!s) return NULL;
    s[0] = 0;
    for (int w = 0; w < words; w++) {
        strcat(s, w ? " " : "");
        strcat(s, WORDS[(w * 7 + i) % (int)(sizeof WORDS / sizeof *WORDS)]);
    }
    return s;
}

static plm_status make_ctx(plm_model *m, int threads, int n_ctx, int n_seq, plm_context **ctx) {
    plm_context_params cp = plm_context_default_params();
    cp.n_threads = threads;
    cp.n_ctx = n_ctx;
    cp.n_seq_max = n_seq;
    return plm_context_create(m, &cp, ctx);
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int threads = 2, N = 64, n_gen = 32, cached = 500, rounds = 1;
    int par[8] = {1, 4, 8, 16, 32}, n_par = 5;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 == argc) {
            fprintf(stderr, "usage: batch-bench [-m FILE] [-t 2] [-N 64] [-n 32] [-P 1,4,8,16,32] [-c 500] [-R 1]\n");
            return 2;
        }
        if (!strcmp(argv[i], "-m")) path = argv[i + 1];
        else if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-N")) N = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-n")) n_gen = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-c")) cached = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-R")) rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-P")) {
            n_par = 0;
            for (char *t = strtok(argv[i + 1], ","); t && n_par < 8; t = strtok(NULL, ",")) par[n_par++] = atoi(t);
        } else {
            fprintf(stderr, "usage: batch-bench [-m FILE] [-t 2] [-N 64] [-n 32] [-P 1,4,8,16,32] [-c 500] [-R 1]\n");
            return 2;
        }
    }
    if (N < 1 || n_gen < 1 || threads < 1 || rounds < 1 || rounds > MAX_ROUNDS) return die("arguments", PLM_ERR_ARG);
    plm_model *m;
    plm_status st = plm_model_load(path, NULL, &m);
    if (st) return die("load", st);
    char **prompts = calloc((size_t)N, sizeof(char *));
    for (int i = 0; i < N; i++)
        if (!(prompts[i] = make_prompt(i))) return die("prompts", PLM_ERR_OOM);
    plm_generate_params gp = plm_generate_default_params();
    gp.max_tokens = n_gen;
    gp.sampling.temperature = 0;
    gp.ignore_eos = true;
    gp.keep_cache = false;
    const int seq_len = 256 + n_gen;

    /* sequential and batched in alternating rounds (-R): on a shared machine a run's speed drifts by more than
     * the differences measured, so each round's ratio is taken against the sequential run just before it and
     * the medians are reported; an untimed generation first pages the weights in */
    plm_context *ctx;
    double t0, c0;
    if ((st = make_ctx(m, threads, seq_len, 1, &ctx))) return die("context", st);
    if ((st = plm_generate(ctx, prompts[0], strlen(prompts[0]), &gp, NULL, NULL, NULL, NULL))) return die("generate", st);
    plm_context_free(ctx);
    fprintf(stderr, "%d prompts x %d tokens, %d threads, %s, %d round%s\n", N, n_gen, threads, plm_kernels_name(),
            rounds, rounds > 1 ? "s (medians)" : "");
    double seq_all[MAX_ROUNDS], seq_c_all[MAX_ROUNDS], tps_all[8][MAX_ROUNDS], cps_all[8][MAX_ROUNDS],
        ratio_all[8][MAX_ROUNDS];
    for (int rd = 0; rd < rounds; rd++) {
        if ((st = make_ctx(m, threads, seq_len, 1, &ctx))) return die("context", st);
        t0 = now_s();
        c0 = cpu_s();
        for (int i = 0; i < N; i++) {
            plm_kv_clear(ctx);
            if ((st = plm_generate(ctx, prompts[i], strlen(prompts[i]), &gp, NULL, NULL, NULL, NULL)))
                return die("generate", st);
        }
        seq_all[rd] = (double)N * n_gen / (now_s() - t0);
        seq_c_all[rd] = (double)N * n_gen / (cpu_s() - c0);
        plm_context_free(ctx);
        for (int k = 0; k < n_par; k++) {
            if ((st = make_ctx(m, threads, par[k] * seq_len, par[k], &ctx))) return die("context", st);
            plm_batch_gen_params bp = plm_batch_gen_default_params();
            bp.n_parallel = par[k];
            bp.n_ctx_seq = seq_len;
            plm_batch_gen *bg;
            if ((st = plm_batch_gen_create(ctx, &bp, &bg))) return die("batch", st);
            t0 = now_s();
            c0 = cpu_s();
            int32_t id, left = 1;
            for (int i = 0; i < N; i++)
                if ((st = plm_batch_gen_submit(bg, prompts[i], strlen(prompts[i]), &gp, &id))) return die("submit", st);
            while (left > 0)
                if ((st = plm_batch_gen_step(bg, &left))) return die("step", st);
            tps_all[k][rd] = (double)N * n_gen / (now_s() - t0);
            cps_all[k][rd] = (double)N * n_gen / (cpu_s() - c0);
            ratio_all[k][rd] = tps_all[k][rd] / seq_all[rd];
            plm_batch_gen_free(bg);
            plm_context_free(ctx);
        }
        if (rounds > 1) {
            fprintf(stderr, "  round %d: sequential %.1f", rd + 1, seq_all[rd]);
            for (int k = 0; k < n_par; k++) fprintf(stderr, ", parallel %d %.1f (%.2fx)", par[k], tps_all[k][rd], ratio_all[k][rd]);
            fprintf(stderr, " tokens/s\n");
        }
    }
    const double seq_tps = median(seq_all, rounds), seq_cps = median(seq_c_all, rounds);
    double tps[8], cps[8], ratio[8];
    fprintf(stderr, "  sequential      %8.1f tokens/s  %8.1f tokens/CPU-s\n", seq_tps, seq_cps);
    for (int k = 0; k < n_par; k++) {
        tps[k] = median(tps_all[k], rounds);
        cps[k] = median(cps_all[k], rounds);
        ratio[k] = median(ratio_all[k], rounds);
        fprintf(stderr, "  parallel %-6d %8.1f tokens/s  %8.1f tokens/CPU-s  (%.2fx, %.2fx per CPU-s, sequential)\n", par[k],
                tps[k], cps[k], ratio[k], cps[k] / seq_cps);
    }

    /* one running sequence's step, alone and beside 30 cached sequences of `cached` tokens: two contexts of the
     * same size, one holding the 30 sequences, stepped in turn (which goes first alternates), each step timed;
     * the figures are medians over the pairs, so that both halves of a pair see the same machine load */
    double step_alone = 0, step_beside = 0, step_cost = 0;
    if (cached > 0) {
        enum { STEP_PAIRS = 192 };
        plm_context *cx[2] = {NULL, NULL}; /* 0: alone, 1: beside the cached sequences */
        for (int i = 0; i < 2; i++)
            if ((st = make_ctx(m, threads, 31 * cached + 1024, 32, &cx[i]))) return die("context", st);
        const int n_tok = cached > 64 + STEP_PAIRS ? cached : 64 + STEP_PAIRS;
        plm_token *toks = malloc((size_t)n_tok * sizeof(plm_token));
        int32_t *pos = malloc((size_t)n_tok * sizeof(int32_t)), *sq = malloc((size_t)n_tok * sizeof(int32_t));
        double *ms[2] = {malloc(STEP_PAIRS * sizeof(double)), malloc(STEP_PAIRS * sizeof(double))};
        double *ratio_pairs = malloc(STEP_PAIRS * sizeof(double));
        if (!toks || !pos || !sq || !ms[0] || !ms[1] || !ratio_pairs) {
            fprintf(stderr, "batch-bench: out of memory\n");
            return 1;
        }
        for (int i = 0; i < n_tok; i++) toks[i] = 100 + (i * 37) % 5000, pos[i] = i;
        for (int s = 1; s <= 30; s++) {
            for (int i = 0; i < cached; i++) sq[i] = s;
            plm_batch b = {.n_tokens = cached, .token = toks, .pos = pos, .seq_id = sq, .logits = NULL};
            if ((st = plm_decode(cx[1], &b))) return die("fill", st);
        }
        for (int c = 0; c < 2; c++) { /* the running sequence: a 64-token prompt, then single-token steps */
            for (int i = 0; i < 64; i++) sq[i] = 0;
            plm_batch b = {.n_tokens = 64, .token = toks, .pos = pos, .seq_id = sq, .logits = NULL};
            if ((st = plm_decode(cx[c], &b))) return die("prompt", st);
        }
        for (int i = 0; i < STEP_PAIRS; i++) {
            for (int h = 0; h < 2; h++) {
                const int c = (h == 0) == (i % 2 == 0) ? 0 : 1;
                int32_t p = 64 + i, s0 = 0;
                plm_token t = toks[64 + i];
                plm_batch one = {.n_tokens = 1, .token = &t, .pos = &p, .seq_id = &s0, .logits = NULL};
                t0 = cpu_s();
                if ((st = plm_decode(cx[c], &one))) return die("step", st);
                ms[c][i] = (cpu_s() - t0) * 1e3;
            }
            ratio_pairs[i] = ms[1][i] / ms[0][i];
        }
        step_alone = median(ms[0], STEP_PAIRS);
        step_beside = median(ms[1], STEP_PAIRS);
        step_cost = median(ratio_pairs, STEP_PAIRS) - 1;
        fprintf(stderr, "  one step (CPU time, medians of %d pairs): %.2f ms alone, %.2f ms beside 30 cached sequences of %d "
                "tokens (%+.1f%%, the median of the pairs' ratios)\n",
                STEP_PAIRS, step_alone, step_beside, cached, step_cost * 100);
        free(ms[0]);
        free(ms[1]);
        free(ratio_pairs);
        plm_context_free(cx[0]);
        plm_context_free(cx[1]);
        free(toks);
        free(pos);
        free(sq);
    }
    /* ms of CPU per token of one decode of T tokens: T sequences after a 32-token prompt each (T = 1, 16;
     * logits for every token), or one 512-token prompt (logits for the last) */
    static const int step_T[] = {1, 16, 512};
    double step_ms[3];
    {
        if ((st = make_ctx(m, threads, 2048, 16, &ctx))) return die("context", st);
        plm_token toks[512];
        int32_t pos[512], sq[512];
        int8_t want[16]; /* a step asks for every sequence's logits, as the batch generator does */
        memset(want, 1, sizeof want);
        for (int i = 0; i < 512; i++) toks[i] = 100 + (i * 37) % 5000;
        for (int k = 0; k < 3; k++) {
            const int T = step_T[k], reps = T == 512 ? 2 : 32;
            plm_kv_clear(ctx);
            if (T == 512) {
                for (int i = 0; i < 512; i++) pos[i] = i, sq[i] = 0;
                plm_batch b = {.n_tokens = 512, .token = toks, .pos = pos, .seq_id = sq, .logits = NULL};
                if ((st = plm_decode(ctx, &b))) return die("prompt", st); /* pages in, warms up */
                t0 = cpu_s();
                for (int r = 0; r < reps; r++) {
                    plm_kv_clear(ctx);
                    if ((st = plm_decode(ctx, &b))) return die("prompt", st);
                }
                step_ms[k] = (cpu_s() - t0) / reps / T * 1e3;
                continue;
            }
            for (int s = 0; s < T; s++) {
                for (int i = 0; i < 32; i++) pos[i] = i, sq[i] = s;
                plm_batch b = {.n_tokens = 32, .token = toks + s, .pos = pos, .seq_id = sq, .logits = NULL};
                if ((st = plm_decode(ctx, &b))) return die("prompt", st);
            }
            t0 = cpu_s();
            for (int r = 0; r < reps; r++) {
                for (int s = 0; s < T; s++) pos[s] = 32 + r, sq[s] = s;
                plm_batch b = {.n_tokens = T, .token = toks + r, .pos = pos, .seq_id = sq, .logits = want};
                if ((st = plm_decode(ctx, &b))) return die("step", st);
            }
            step_ms[k] = (cpu_s() - t0) / reps / T * 1e3;
        }
        plm_context_free(ctx);
        fprintf(stderr, "  CPU ms per token of one decode of T tokens: %.2f (T = 1), %.2f (T = 16), %.2f (T = 512)\n",
                step_ms[0], step_ms[1], step_ms[2]);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"threads\": %d, \"kernels\": \"%s\", \"prompts\": %d, \"tokens\": %d, \"rounds\": %d, "
           "\"sequential_tps\": %.2f, \"sequential_tokens_per_cpu_s\": %.2f, \"ratio_to_sequential\": {",
           threads, plm_kernels_name(), N, n_gen, rounds, seq_tps, seq_cps);
    for (int k = 0; k < n_par; k++) printf("%s\"%d\": %.3f", k ? ", " : "", par[k], ratio[k]);
    printf("}, \"batched\": {");
    for (int k = 0; k < n_par; k++) printf("%s\"%d\": %.2f", k ? ", " : "", par[k], tps[k]);
    printf("}, \"batched_tokens_per_cpu_s\": {");
    for (int k = 0; k < n_par; k++) printf("%s\"%d\": %.2f", k ? ", " : "", par[k], cps[k]);
    printf("}, \"step_ms_alone\": %.3f, \"step_ms_beside_cached\": %.3f, \"step_cost_beside_cached\": %.4f, "
           "\"cached_tokens\": %d, "
           "\"cpu_ms_per_token\": {\"1\": %.3f, \"16\": %.3f, \"512\": %.3f}, \"peak_rss_mib\": %.1f}\n",
           step_alone, step_beside, step_cost, cached, step_ms[0], step_ms[1], step_ms[2], (double)ru.ru_maxrss / 1024.0);
    for (int i = 0; i < N; i++) free(prompts[i]);
    free(prompts);
    plm_model_free(m);
    return 0;
}
