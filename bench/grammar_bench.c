/*
 * grammar_bench.c — the cost of structured output on the default model's vocabulary.
 *
 *   build/plm-grammar-bench [SCHEMAS.json] [--steps N] [--gen N] [--reps N] [--threads N] [--no-gen]
 *
 * For each schema of the suite (tests/data/json_schemas.json: an array of
 * {"name", "prompt", "schema"}):
 *   compile  plm_grammar_from_json_schema, best of 5 runs;
 *   mask     a full token mask (every token of the 49,152-token vocabulary
 *            checked against the parser state) at each step of a random walk
 *            of N tokens through the grammar, with one matcher per walk as a
 *            sampler keeps it (its state and cache tables persist between
 *            steps, as in a generation); the first mask of each walk is also
 *            reported apart ("cold": nothing cached yet), and so are the masks
 *            of states the walk had not met before (no cached mask);
 *   check    the sampler's fast path: is one drawn token allowed.
 * Then, unless --no-gen, real generation on the model: greedy, GEN tokens,
 * with and without the schema's grammar, alternating, best of REPS runs each
 * (default 3), tokens/s of each; and over the whole
 * suite (greedy, up to GEN tokens a schema) the sampler's time per token on the
 * model's real logits with and without the constraint, and what a full mask at
 * every token would cost there instead of the drawn-token check.
 * Prints one line per figure; times in microseconds.
 */
#include "grammar/grammar.h"
#include "pocketlm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* The end of the JSON value starting at p (balanced brackets, strings skipped). */
static const char *value_end(const char *p) {
    int depth = 0;
    bool in_str = false;
    for (; *p; p++) {
        if (in_str) {
            if (*p == '\\' && p[1]) p++;
            else if (*p == '"') in_str = false;
            continue;
        }
        if (*p == '"') in_str = true;
        else if (*p == '{' || *p == '[') depth++;
        else if (*p == '}' || *p == ']') {
            if (--depth == 0) return p + 1;
        }
    }
    return NULL;
}

typedef struct item {
    char name[64];
    char prompt[256];
    const char *schema;
    size_t len;
} item;

/* The "name", "prompt" and "schema" of each entry (a simple scan of the suite file, which this repo writes). */
static int read_suite(char *text, item *out, int cap) {
    int n = 0;
    for (char *p = text; n < cap && (p = strstr(p, "\"name\": \"")); n++) {
        p += 9;
        char *e = strchr(p, '"');
        snprintf(out[n].name, sizeof out[n].name, "%.*s", (int)(e - p), p);
        char *q = strstr(e, "\"prompt\": \"");
        q += 11;
        char *qe = q;
        while (*qe && *qe != '"') qe += *qe == '\\' ? 2 : 1;
        snprintf(out[n].prompt, sizeof out[n].prompt, "%.*s", (int)(qe - q), q);
        char *s = strstr(qe, "\"schema\": ");
        s += 10;
        const char *se = value_end(s);
        out[n].schema = s;
        out[n].len = (size_t)(se - s);
        p = (char *)se;
    }
    return n;
}

static void report(const char *what, double *v, int n) {
    if (!n) return;
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += v[i];
    printf("%-34s n=%-6d mean %9.1f us  p50 %9.1f  p99 %9.1f  max %9.1f\n", what, n, sum / n, v[n / 2],
           v[(int)((double)n * 0.99)], v[n - 1]);
}

int main(int argc, char **argv) {
    const char *path = "tests/data/json_schemas.json";
    int steps = 64, gen = 48, reps = 3, threads = 0;
    bool do_gen = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gen") && i + 1 < argc) gen = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-gen")) do_gen = false;
        else path = argv[i];
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return 1;
    }
    char *text = malloc(1 << 22);
    size_t tn = fread(text, 1, (1 << 22) - 1, f);
    text[tn] = 0;
    fclose(f);
    item suite[256];
    int n_suite = read_suite(text, suite, 256);
    char mpath[4096];
    plm_model *model;
    if (plm_default_model_path(mpath, sizeof mpath) || plm_model_load(mpath, NULL, &model)) {
        fprintf(stderr, "%s\n", plm_last_error());
        return 1;
    }
    double t0 = now_us();
    const plm_token_trie *trie;
    if (plm_model_token_trie(model, &trie)) return 1;
    int32_t nv = plm_token_trie_n_vocab(trie);
    printf("vocabulary %d tokens; trie built in %.1f ms (once per model); %d schemas, %d steps each\n", nv,
           (now_us() - t0) / 1e3, n_suite, steps);

    double *comp = malloc(sizeof(double) * (size_t)n_suite), *masks = malloc(sizeof(double) * (size_t)(n_suite * steps + 1));
    double *cold = malloc(sizeof(double) * (size_t)n_suite), *checks = malloc(sizeof(double) * (size_t)(n_suite * steps + 1));
    double *fresh = malloc(sizeof(double) * (size_t)(n_suite * steps + 1));
    int n_masks = 0, n_cold = 0, n_checks = 0, n_fresh = 0;
    uint64_t *mask = malloc((size_t)(nv + 63) / 64 * 8);
    int32_t *allowed = malloc((size_t)nv * sizeof(int32_t));
    for (int k = 0; k < n_suite; k++) {
        double best = 1e18;
        plm_grammar *g = NULL;
        for (int r = 0; r < 5; r++) {
            plm_grammar_free(g);
            double a = now_us();
            if (plm_grammar_from_json_schema(suite[k].schema, suite[k].len, &g)) {
                fprintf(stderr, "%s: %s\n", suite[k].name, plm_last_error());
                return 1;
            }
            double d = now_us() - a;
            if (d < best) best = d;
        }
        comp[k] = best;
        plm_gmatch_universe *u;
        plm_gmu_create(g, &u);
        int32_t s = plm_gmu_start(u);
        for (int st = 0; st < steps; st++) {
            bool seen = plm_gmu_mask(u, s) != NULL;
            double a = now_us();
            plm_token_mask(u, trie, s, mask);
            double d = now_us() - a;
            if (st == 0) cold[n_cold++] = d;
            else masks[n_masks++] = d;
            if (st > 0 && !seen) fresh[n_fresh++] = d;
            int na = 0;
            for (int32_t t = 0; t < nv; t++)
                if ((mask[t >> 6] >> (t & 63)) & 1) allowed[na++] = t;
            if (getenv("GRAMMAR_BENCH_SLOW") && d > atof(getenv("GRAMMAR_BENCH_SLOW")))
                printf("  slow: %s step %d: %.0f us, %d tokens allowed, %zu cache bytes\n", suite[k].name, st, d, na,
                       plm_gmu_bytes(u));
            if (!na) break;
            /* Prefer tokens that are not end-of-generation, so walks go deep. */
            plm_token t = allowed[rnd() % (uint64_t)na];
            for (int tries = 0; tries < 4 && plm_token_trie_is_eog(trie, t); tries++) t = allowed[rnd() % (uint64_t)na];
            int32_t next;
            a = now_us();
            plm_token_allowed(u, trie, s, t, &next);
            checks[n_checks++] = now_us() - a;
            if (plm_token_trie_is_eog(trie, t)) break;
            s = next;
        }
        plm_gmu_free(u);
        plm_grammar_free(g);
    }
    report("schema compile (best of 5)", comp, n_suite);
    report("full mask, first of a walk (cold)", cold, n_cold);
    report("full mask, later steps", masks, n_masks);
    report("  of which states not met before", fresh, n_fresh);
    report("drawn-token check (fast path)", checks, n_checks);

    if (do_gen) {
        plm_context *ctx;
        plm_context_params cp = plm_context_default_params();
        cp.n_ctx = 1024;
        if (threads > 0) cp.n_threads = threads;
        if (plm_context_create(model, &cp, &ctx)) return 1;
        const char *picks[] = {"ticket", "invoice", "user_profile", "event", "array_of_objects", "recursive_tree"};
        double tok_free = 0, t_free = 0, tok_con = 0, t_con = 0;
        for (size_t i = 0; i < sizeof picks / sizeof picks[0]; i++) {
            int k = 0;
            while (k < n_suite && strcmp(suite[k].name, picks[i])) k++;
            if (k == n_suite) continue;
            plm_grammar *g;
            if (plm_grammar_from_json_schema(suite[k].schema, suite[k].len, &g)) return 1;
            char prompt[600];
            snprintf(prompt, sizeof prompt, "<|im_start|>user\n%s Answer with JSON only.<|im_end|>\n<|im_start|>assistant\n",
                     suite[k].prompt);
            /* free and constrained alternate, REPS times each; the best time of each counts (the machine
             * may be shared: the best run is the one least disturbed) */
            double best_t[2] = {1e18, 1e18};
            int32_t best_n[2] = {0, 0};
            for (int run = 0; run < 2 * reps; run++) {
                int con = run & 1;
                plm_generate_params p = plm_generate_default_params();
                p.max_tokens = gen;
                p.sampling.temperature = 0;
                p.ignore_eos = !con; /* both run gen tokens unless the grammar completes first */
                p.grammar = con ? g : NULL;
                p.keep_cache = false;
                plm_generator *gr;
                if (plm_generator_create(ctx, prompt, strlen(prompt), &p, &gr)) return 1;
                double a = now_us();
                plm_stop_reason r = PLM_STOP_NONE;
                size_t len;
                const char *piece;
                do {
                    if (plm_generator_next(gr, &piece, &len, &r)) return 1;
                } while (r == PLM_STOP_NONE);
                double d = now_us() - a;
                int32_t nt;
                plm_generator_tokens(gr, &nt);
                if (nt > 0 && d / nt < best_t[con] / PLM_MAX(best_n[con], 1)) best_t[con] = d, best_n[con] = nt;
                plm_generator_free(gr);
            }
            tok_free += best_n[0], t_free += best_t[0];
            tok_con += best_n[1], t_con += best_t[1];
            plm_grammar_free(g);
        }
        printf("generation, greedy, %d threads, best of %d: unconstrained %.2f tok/s, constrained %.2f tok/s (ratio %.3f)\n",
               plm_context_n_threads(ctx), reps, tok_free / t_free * 1e6, tok_con / t_con * 1e6,
               (tok_con / t_con) / (tok_free / t_free));
        /* The sampler's own time per token on the model's real logits, with and without the constraint
         * (the constrained one checks the drawn token first and builds a mask only when it is refused). */
        double *ts_free = malloc(sizeof(double) * 4096), *ts_con = malloc(sizeof(double) * 4096);
        double *ts_eager = malloc(sizeof(double) * 4096);
        int n_ts = 0, n_masked = 0;
        for (int k = 0; k < n_suite && n_ts < 4000; k++) {
            plm_grammar *g;
            if (plm_grammar_from_json_schema(suite[k].schema, suite[k].len, &g)) return 1;
            char prompt[600];
            snprintf(prompt, sizeof prompt, "<|im_start|>user\n%s Answer with JSON only.<|im_end|>\n<|im_start|>assistant\n",
                     suite[k].prompt);
            plm_token toks[512];
            int32_t nt = 0;
            if (plm_tokenize(model, prompt, strlen(prompt), false, true, toks, 512, &nt)) return 1;
            plm_kv_seq_rm(ctx, 0, 0, -1);
            plm_sampler_params sp = plm_sampler_default_params();
            sp.temperature = 0;
            plm_sampler *sf, *sg;
            plm_sampler_create(&sp, nv, &sf);
            plm_sampler_create(&sp, nv, &sg);
            plm_sampler_set_grammar(sg, model, g);
            plm_gmatch_universe *ue; /* the eager path: a full mask at every token (cached per state), applied */
            plm_gmu_create(g, &ue);
            int32_t es = plm_gmu_start(ue);
            float *w = malloc(sizeof(float) * (size_t)nv);
            int32_t pos = 0;
            plm_batch b = {.n_tokens = nt, .token = toks};
            for (int step = 0; step <= gen; step++) {
                int32_t *ps = malloc(sizeof(int32_t) * (size_t)b.n_tokens), *seq = calloc((size_t)b.n_tokens, 4);
                int8_t *want = calloc((size_t)b.n_tokens, 1);
                for (int32_t i = 0; i < b.n_tokens; i++) ps[i] = pos + i;
                want[b.n_tokens - 1] = 1;
                b.pos = ps, b.seq_id = seq, b.logits = want;
                plm_status st = plm_decode(ctx, &b);
                pos += b.n_tokens;
                free(ps), free(seq), free(want);
                if (st) break;
                const float *l = plm_context_logits(ctx, -1);
                plm_token tf, tg;
                double a = now_us();
                plm_sampler_sample_logits(sf, l, &tf);
                double d1 = now_us();
                if (plm_sampler_sample_logits(sg, l, &tg)) break;
                double d2 = now_us();
                double e0 = now_us();
                plm_token_mask(ue, trie, es, mask);
                for (int32_t t = 0; t < nv; t++) w[t] = (mask[t >> 6] >> (t & 63)) & 1 ? l[t] : -INFINITY;
                plm_token best = 0;
                for (int32_t t = 1; t < nv; t++)
                    if (w[t] > w[best]) best = t;
                ts_eager[n_ts] = now_us() - e0;
                (void)best;
                ts_free[n_ts] = d1 - a;
                ts_con[n_ts++] = d2 - d1;
                n_masked += tf != tg;
                if (plm_token_is_eog(model, tg) || n_ts >= 4000) break;
                plm_sampler_accept(sf, tg);
                plm_sampler_accept(sg, tg);
                size_t tl;
                const char *tb = plm_token_trie_bytes(trie, tg, &tl);
                es = plm_gmu_walk(ue, es, tb, tl);
                toks[0] = tg;
                b = (plm_batch){.n_tokens = 1, .token = toks};
            }
            plm_sampler_free(sf);
            plm_sampler_free(sg);
            plm_gmu_free(ue);
            free(w);
            plm_grammar_free(g);
        }
        report("sampler per token, free", ts_free, n_ts);
        report("sampler per token, constrained", ts_con, n_ts);
        report("eager: full mask + argmax per token", ts_eager, n_ts);
        printf("(greedy over the suite: %d tokens, %d of them where the model's first choice was refused)\n", n_ts,
               n_masked);
        free(ts_free), free(ts_con), free(ts_eager);
        plm_context_free(ctx);
    }
    plm_model_free(model);
    free(text);
    free(comp), free(masks), free(cold), free(checks), free(fresh), free(mask), free(allowed);
    return 0;
}
