/*
 * bench/plm_bench.c — pocketlm's half of the side-by-side speed comparison.
 *
 * Loads one GGUF file through the public API (it includes only pocketlm.h) and
 * measures three things, each repeated -r times, reporting the median:
 *   prompt processing  one plm_decode of -p tokens on an empty cache, logits for
 *                      the last token only                          -> tokens/s
 *   generation         after a 16-token prompt (-d tokens: a longer history),
 *                      -n single-token decodes, each fed the argmax of the
 *                      previous logits                              -> tokens/s
 *   time to first token  a 64-token prompt on an empty cache plus the argmax
 *                      that picks the first token                   -> ms
 * and prints one JSON object on stdout, with the peak RSS (getrusage). Token ids
 * come from the 32-bit LCG that bench/llama_bench.py also uses, so both engines
 * process identical tokens. Comparing, tabulating and alternating the engines is
 * bench/run.py's job.
 *
 *   build/plm-bench [-m FILE] [-a ADAPTER] [-t THREADS] [-p 512] [-n 128] [-r 3] [-d 16]
 *
 * -a applies a LoRA adapter (GGUF) to the context, to measure what it costs
 * (tools/make_bench_lora.py writes a random one of any rank). With -a, a
 * paired measurement follows: one context decodes -n x -r tokens two at a
 * time, one step with the adapter and one without (which goes first
 * alternates), each step timed, and the cost is the median over the pairs of
 * (time with / time without) - 1. Both steps of a pair see the same machine
 * load and the same cache length, so this figure holds on a busy machine where
 * the separate tokens/s figures swing by 20% from run to run.
 */
#include "pocketlm.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

enum {
    GEN_PROMPT = 16,  /* prompt evaluated before the generation timing starts */
    TTFT_PROMPT = 64, /* prompt of the time-to-first-token measurement */
    N_BATCH = 512,    /* same n_batch / n_ubatch as llama_bench.py */
    N_SHOW = 16       /* generated ids echoed in the JSON, to check both engines agree */
};

/* Seeds of the three token streams; llama_bench.py uses the same. */
#define SEED_PP 1u
#define SEED_GEN 2u
#define SEED_TTFT 3u

typedef struct bench_opts {
    const char *model;
    const char *adapter;
    int n_threads;
    int n_prompt;
    int n_gen;
    int n_rep;
    int depth; /* tokens of history before the generation's timing */
    int repack; /* plm_model_params.repack */
} bench_opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux reports KiB */
}

/* Token i of a stream: 100 + ((s_i >> 8) % 9900) with s_i = s_{i-1} * 1664525 +
 * 1013904223 (mod 2^32), s_0 = seed. Ids in [100, 10000) avoid the special
 * tokens at the start of most vocabularies. */
static void fill_tokens(plm_token *out, int n, uint32_t seed) {
    uint32_t s = seed;
    for (int i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        out[i] = 100 + (plm_token)((s >> 8) % 9900u);
    }
}

static plm_token argmax(const float *logits, int32_t n_vocab) {
    plm_token best = 0;
    for (int32_t v = 1; v < n_vocab; v++)
        if (logits[v] > logits[best]) best = v;
    return best;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n) {
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) return v[0];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

static void print_array(const char *key, const double *v, int n) {
    printf("\"%s\": [", key);
    for (int i = 0; i < n; i++) printf("%s%.3f", i ? ", " : "", v[i]);
    printf("], ");
}

/* Prints s as a JSON string (paths may hold quotes, backslashes or control bytes). */
static void print_json_string(const char *s) {
    putchar('"');
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') printf("\\%c", *c);
        else if (*c < 0x20) printf("\\u%04x", *c);
        else putchar(*c);
    }
    putchar('"');
}

static plm_status decode_fresh(plm_context *ctx, const plm_token *tokens, int n);

/* The paired measurement described at the top: cost[i] = t_with / t_without - 1 for n pairs of decode steps
 * (reps of n_gen pairs after the generation prompt). */
static plm_status lora_paired(plm_context *ctx, plm_adapter *adapter, const bench_opts *o, double *cost,
                              double *sum_with, double *sum_without) {
    plm_token prompt[GEN_PROMPT], next[1];
    fill_tokens(prompt, GEN_PROMPT, SEED_GEN);
    *sum_with = *sum_without = 0.0;
    plm_status st = PLM_OK;
    for (int r = 0, i = 0; r < o->n_rep && !st; r++) {
        if ((st = plm_context_set_adapters(ctx, 1, &adapter, NULL)) || (st = decode_fresh(ctx, prompt, GEN_PROMPT)))
            break;
        uint32_t seed = SEED_GEN + 1000u * (uint32_t)(r + 1);
        for (int k = 0; k < o->n_gen && !st; k++, i++) {
            double t[2];
            for (int h = 0; h < 2 && !st; h++) {
                const int with = (h == 0) == (i % 2 == 0); /* with the adapter first on even pairs */
                if ((st = plm_context_set_adapters(ctx, with, &adapter, NULL))) break;
                fill_tokens(next, 1, seed++);
                plm_batch b = {.n_tokens = 1, .token = next};
                const double t0 = now_s();
                st = plm_decode(ctx, &b);
                t[with] = now_s() - t0;
            }
            cost[i] = t[1] / t[0] - 1.0;
            *sum_with += t[1];
            *sum_without += t[0];
        }
    }
    plm_status st2 = plm_context_set_adapters(ctx, 1, &adapter, NULL);
    return st ? st : st2;
}

static int fail(plm_status st, const char *what) {
    fprintf(stderr, "plm-bench: %s: %s (%s)\n", what, plm_last_error(), plm_status_str(st));
    return 1;
}

/* Decodes tokens [0, n) on an empty cache, N_BATCH at a time; only the last token's logits. */
static plm_status decode_fresh(plm_context *ctx, const plm_token *tokens, int n) {
    plm_kv_clear(ctx);
    for (int i = 0; i < n; i += N_BATCH) {
        plm_batch b = {.n_tokens = n - i < N_BATCH ? n - i : N_BATCH, .token = tokens + i};
        plm_status st = plm_decode(ctx, &b);
        if (st) return st;
    }
    return PLM_OK;
}

/* Decodes the argmax of the current logits, n times; the first N_SHOW chosen ids
 * go to shown. */
static plm_status generate_greedy(plm_context *ctx, int32_t n_vocab, int n, plm_token *shown) {
    for (int i = 0; i < n; i++) {
        const float *logits = plm_context_logits(ctx, -1);
        if (!logits) return PLM_ERR_INTERNAL; /* plm_last_error() says why */
        plm_token next = argmax(logits, n_vocab);
        if (i < N_SHOW) shown[i] = next;
        plm_batch b = {.n_tokens = 1, .token = &next};
        plm_status st = plm_decode(ctx, &b);
        if (st) return st;
    }
    return PLM_OK;
}

static int parse_int(const char *flag, const char *s, int min, int *out) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < min || v > 1000000) {
        fprintf(stderr, "plm-bench: %s needs an integer from %d to 1000000 (got '%s')\n", flag, min, s);
        return 1;
    }
    *out = (int)v;
    return 0;
}

static const char *USAGE =
    "usage: plm-bench [-m FILE] [-a ADAPTER] [-t THREADS] [-p PROMPT_TOKENS] [-n GEN_TOKENS] [-r REPS]\n"
    "  -m FILE     GGUF model (default: the default model, see `pocketlm info`)\n"
    "  -a ADAPTER  a GGUF LoRA adapter applied at scale 1 (default: none)\n"
    "  -t THREADS  worker threads (default 2)\n"
    "  -p N        prompt-processing batch size in tokens (default 512)\n"
    "  -n N        tokens generated one at a time (default 128)\n"
    "  -r N        repetitions; the medians are reported (default 3)\n"
    "  -d N        tokens of history before the generation is timed (default 16)\n"
    "  -x 0|1      1: weights repacked at load for the kernels (default), 0: as the file has them\n"
    "Prints one JSON object on stdout.\n";

static int parse_args(int argc, char **argv, bench_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return 2;
        }
        if (i + 1 == argc) {
            fprintf(stderr, "plm-bench: %s needs a value\n%s", a, USAGE);
            return 1;
        }
        const char *v = argv[++i];
        int bad = 0;
        if (!strcmp(a, "-m")) o->model = v;
        else if (!strcmp(a, "-a")) o->adapter = v;
        else if (!strcmp(a, "-t")) bad = parse_int(a, v, 1, &o->n_threads);
        else if (!strcmp(a, "-p")) bad = parse_int(a, v, 1, &o->n_prompt);
        else if (!strcmp(a, "-n")) bad = parse_int(a, v, 1, &o->n_gen);
        else if (!strcmp(a, "-r")) bad = parse_int(a, v, 1, &o->n_rep);
        else if (!strcmp(a, "-d")) bad = parse_int(a, v, 1, &o->depth);
        else if (!strcmp(a, "-x")) bad = parse_int(a, v, 0, &o->repack) || (o->repack > 1 && fprintf(stderr, "plm-bench: -x takes 0 or 1\n"));
        else {
            fprintf(stderr, "plm-bench: unknown option '%s'\n%s", a, USAGE);
            return 1;
        }
        if (bad) return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    bench_opts o = {.model = NULL, .adapter = NULL, .n_threads = 2, .n_prompt = 512, .n_gen = 128, .n_rep = 3,
                    .depth = GEN_PROMPT, .repack = 1};
    int r = parse_args(argc, argv, &o);
    if (r) return r == 2 ? 0 : 2;

    const double rss_before_load = peak_rss_mib();
    plm_model *model = NULL;
    plm_context *ctx = NULL;
    plm_adapter *adapter = NULL;
    plm_token *tokens = NULL;
    double *pp = NULL, *tg = NULL, *ttft = NULL, *cost = NULL, sum_with = 0.0, sum_without = 0.0;
    plm_token shown[N_SHOW] = {0}, first = -1;
    int rc = 1;
    plm_status st;
    plm_model_params mp = plm_model_default_params();
    mp.repack = o.repack != 0;
    double t0 = now_s();
    if ((st = plm_model_load(o.model, &mp, &model))) return fail(st, "loading the model");
    const double load_ms = 1e3 * (now_s() - t0);
    plm_model_info info;
    if ((st = plm_model_get_info(model, &info))) {
        rc = fail(st, "reading the model info");
        goto out;
    }

    /* Room for the longest run, rounded up to 256 cells as llama_bench.py does. */
    int n_ctx = o.n_prompt;
    const int n_gen_cells = o.n_gen * (o.adapter ? 2 : 1); /* the paired measurement decodes 2 tokens a pair */
    if (n_ctx < GEN_PROMPT + n_gen_cells) n_ctx = GEN_PROMPT + n_gen_cells;
    if (n_ctx < o.depth + o.n_gen) n_ctx = o.depth + o.n_gen;
    if (n_ctx < TTFT_PROMPT) n_ctx = TTFT_PROMPT;
    n_ctx = (n_ctx + 255) / 256 * 256;
    plm_context_params cp = plm_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = N_BATCH;
    cp.n_seq_max = 1;
    cp.n_threads = o.n_threads;
    if ((st = plm_context_create(model, &cp, &ctx))) {
        rc = fail(st, "creating the context");
        goto out;
    }
    if (o.adapter && ((st = plm_adapter_load(model, o.adapter, &adapter)) ||
                      (st = plm_context_set_adapters(ctx, 1, &adapter, NULL)))) {
        rc = fail(st, "loading the adapter");
        goto out;
    }

    int n_tok = o.n_prompt > TTFT_PROMPT ? o.n_prompt : TTFT_PROMPT;
    if (n_tok < o.depth) n_tok = o.depth;
    tokens = malloc((size_t)n_tok * sizeof *tokens);
    pp = malloc((size_t)o.n_rep * sizeof *pp);
    tg = malloc((size_t)o.n_rep * sizeof *tg);
    ttft = malloc((size_t)o.n_rep * sizeof *ttft);
    if (!tokens || !pp || !tg || !ttft) {
        fprintf(stderr, "plm-bench: out of memory\n");
        goto out;
    }

    /* Warm-up, untimed: pages the mapped weights in and starts the thread pool. */
    fill_tokens(tokens, TTFT_PROMPT, SEED_TTFT);
    if ((st = decode_fresh(ctx, tokens, TTFT_PROMPT))) {
        rc = fail(st, "warm-up");
        goto out;
    }

    fill_tokens(tokens, o.n_prompt, SEED_PP);
    for (int i = 0; i < o.n_rep; i++) {
        t0 = now_s();
        if ((st = decode_fresh(ctx, tokens, o.n_prompt))) {
            rc = fail(st, "prompt processing");
            goto out;
        }
        pp[i] = o.n_prompt / (now_s() - t0);
    }

    fill_tokens(tokens, o.depth, SEED_GEN);
    for (int i = 0; i < o.n_rep; i++) {
        if ((st = decode_fresh(ctx, tokens, o.depth))) {
            rc = fail(st, "generation prompt");
            goto out;
        }
        t0 = now_s();
        if ((st = generate_greedy(ctx, info.n_vocab, o.n_gen, shown))) {
            rc = fail(st, "generation");
            goto out;
        }
        tg[i] = o.n_gen / (now_s() - t0);
    }

    fill_tokens(tokens, TTFT_PROMPT, SEED_TTFT);
    for (int i = 0; i < o.n_rep; i++) {
        plm_kv_clear(ctx);
        t0 = now_s();
        plm_batch b = {.n_tokens = TTFT_PROMPT, .token = tokens};
        if ((st = plm_decode(ctx, &b))) {
            rc = fail(st, "time to first token");
            goto out;
        }
        const float *logits = plm_context_logits(ctx, -1);
        if (!logits) {
            rc = fail(PLM_ERR_INTERNAL, "time to first token");
            goto out;
        }
        first = argmax(logits, info.n_vocab);
        ttft[i] = 1e3 * (now_s() - t0);
    }

    if (adapter) {
        cost = malloc((size_t)o.n_gen * (size_t)o.n_rep * sizeof *cost);
        if (!cost) {
            fprintf(stderr, "plm-bench: out of memory\n");
            goto out;
        }
        if ((st = lora_paired(ctx, adapter, &o, cost, &sum_with, &sum_without))) {
            rc = fail(st, "the paired adapter measurement");
            goto out;
        }
    }

    printf("{\"engine\": \"pocketlm\", \"version\": \"%s\", \"kernels\": \"%s\", ", plm_version(),
           plm_kernels_name());
    printf("\"model\": ");
    print_json_string(info.path);
    if (adapter) {
        printf(", \"adapter\": ");
        print_json_string(o.adapter);
        printf(", \"adapter_rank\": %d, \"adapter_targets\": %d", plm_adapter_rank(adapter),
               plm_adapter_n_targets(adapter));
        printf(", \"adapter_cost_paired\": %.4f, \"adapter_cost_paired_total\": %.4f, \"adapter_pairs\": %d",
               median(cost, o.n_gen * o.n_rep), sum_with / sum_without - 1.0, o.n_gen * o.n_rep);
    }
    printf(", \"model_bytes\": %llu, \"n_threads\": %d, ", (unsigned long long)info.n_bytes,
           plm_context_n_threads(ctx));
    printf("\"n_prompt\": %d, \"n_gen\": %d, \"n_rep\": %d, \"depth\": %d, \"n_ctx\": %d, \"n_batch\": %d, ", o.n_prompt,
           o.n_gen, o.n_rep, o.depth, plm_context_n_ctx(ctx), N_BATCH);
    printf("\"pp_tok_s\": %.3f, \"tg_tok_s\": %.3f, \"ttft_ms\": %.3f, ", median(pp, o.n_rep),
           median(tg, o.n_rep), median(ttft, o.n_rep));
    print_array("pp_tok_s_all", pp, o.n_rep);
    print_array("tg_tok_s_all", tg, o.n_rep);
    print_array("ttft_ms_all", ttft, o.n_rep);
    printf("\"gen_tokens\": [");
    int n_show = o.n_gen < N_SHOW ? o.n_gen : N_SHOW;
    for (int i = 0; i < n_show; i++) printf("%s%d", i ? ", " : "", shown[i]);
    printf("], \"ttft_token\": %d, \"load_ms\": %.1f, \"repacked_bytes\": %llu, ", first, load_ms,
           (unsigned long long)info.n_repacked);
    printf("\"rss_before_load_mib\": %.1f, \"peak_rss_mib\": %.1f}\n", rss_before_load, peak_rss_mib());
    rc = 0;
out:
    free(tokens);
    free(pp);
    free(tg);
    free(ttft);
    free(cost);
    plm_context_free(ctx);
    plm_adapter_free(adapter);
    plm_model_free(model);
    return rc;
}
