/*
 * test_model.c — the forward pass on the real default model against fixtures
 * written by tools/make_fixtures.py from llama.cpp (and transformers):
 * top-20 logits, greedy continuations, perplexity; and the batch semantics
 * (one batch vs token by token, shared prefixes across sequences, removal,
 * cancellation, context overflow, bad tokens).
 */
#include "pocketlm.h"
#include "test.h"

#include "matmul.h" /* plm_linear over weights made here (test_linear_cut_groups) */

#include <math.h>

/* Tolerances, stated once. Logits are compared with llama.cpp on the same file;
 * both quantize activations to 8 bits but round and sum in different orders. */
/* SmolLM2 has outlier activations of several hundred, so 8-bit activation
 * quantization is coarse and a last-bit difference anywhere flips roundings
 * downstream: the two references differ from each other by up to 0.52 on these
 * prompts, and our scalar and AVX2 kernels (equal to ~1e-7 per dot) by up to 0.4. */
static const float TOL_LOGIT_LC = 0.60f;  /* |ours - llama.cpp| per top-20 logit */
static const float TOL_LOGIT_HF = 0.80f;  /* |ours - transformers float32| (no activation quantization there) */
static const double TOL_PPL_REL = 0.01;   /* perplexity within 1% of llama.cpp's */
/* A greedy step is a near-tie when llama.cpp's top-1 and top-2 logits are closer
 * than the logit tolerance: there the two implementations may legitimately pick
 * differently (llama.cpp and transformers do, on 2 of the 5 prompts). */
static const float TOL_GREEDY_TIE = 0.50f;

static plm_model *model;

#define MAXT 256
typedef struct fcase {
    char name[64];
    plm_token ids[MAXT];
    int n_ids;
    plm_token lc_top[32];
    float lc_val[32];
    int n_lc;
    plm_token hf_top[32];
    float hf_val[32];
    int n_hf;
    plm_token lc_gen[MAXT];
    int n_lc_gen;
    float margin[MAXT];
    int n_margin;
} fcase;

static int parse_ints(const char *s, plm_token *out, int cap) {
    int n = 0;
    char *end;
    while (n < cap) {
        long v = strtol(s, &end, 10);
        if (end == s) break;
        out[n++] = (plm_token)v;
        s = end;
    }
    return n;
}

static int parse_pairs(const char *s, plm_token *ids, float *vals, int cap) {
    int n = 0;
    char *end;
    while (n < cap) {
        long id = strtol(s, &end, 10);
        if (end == s || *end != ':') break;
        s = end + 1;
        vals[n] = strtof(s, &end);
        ids[n++] = (plm_token)id;
        s = end;
    }
    return n;
}

/* Reads "case / ids / lc / hf" blocks; greedy files put generated ids on the lc line. */
static int load_cases(const char *path, fcase *cases, int cap, bool greedy) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[65536];
    int n = -1;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        if (!strncmp(line, "case ", 5)) {
            if (++n >= cap) break;
            memset(&cases[n], 0, sizeof(fcase));
            sscanf(line + 5, "%63s", cases[n].name);
        } else if (n >= 0 && !strncmp(line, "ids ", 4)) {
            cases[n].n_ids = parse_ints(line + 4, cases[n].ids, MAXT);
        } else if (n >= 0 && !strncmp(line, "lc ", 3)) {
            if (greedy) cases[n].n_lc_gen = parse_ints(line + 3, cases[n].lc_gen, MAXT);
            else cases[n].n_lc = parse_pairs(line + 3, cases[n].lc_top, cases[n].lc_val, 32);
        } else if (n >= 0 && !strncmp(line, "margin ", 7)) {
            char *p = line + 7, *end;
            while (cases[n].n_margin < MAXT) {
                float v = strtof(p, &end);
                if (end == p) break;
                cases[n].margin[cases[n].n_margin++] = v;
                p = end;
            }
        } else if (n >= 0 && !strncmp(line, "hf ", 3) && !greedy) {
            cases[n].n_hf = parse_pairs(line + 3, cases[n].hf_top, cases[n].hf_val, 32);
        }
    }
    fclose(f);
    return n + 1;
}

/* Quick mode (test.h) runs the case with the shortest prompt, and 4 greedy tokens. */
#define QUICK_GEN 4
static int shortest(const fcase *cases, int n) {
    int b = 0;
    for (int c = 1; c < n; c++) if (cases[c].n_ids < cases[b].n_ids) b = c;
    return b;
}

static plm_context *new_ctx(int n_ctx, int n_threads) {
    plm_context_params p = plm_context_default_params();
    p.n_ctx = n_ctx;
    p.n_threads = n_threads;
    plm_context *ctx = NULL;
    plm_status st = plm_context_create(model, &p, &ctx);
    if (st) fprintf(stderr, "context: %s\n", plm_last_error());
    return ctx;
}

static int argmax(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (l[i] > l[b]) b = i;
    return b;
}

static void test_logits_match_references(void) {
    static fcase cases[8];
    int n = load_cases(DATA("logits_smollm2.txt"), cases, 8, false);
    REQUIRE(n >= 5);
    plm_context *ctx = new_ctx(512, 2);
    REQUIRE(ctx);
    plm_model_info in;
    plm_model_get_info(model, &in);
    const int only = t_quick() ? shortest(cases, n) : -1;
    for (int c = 0; c < n; c++) {
        if (only >= 0 && c != only) continue;
        fcase *fc = &cases[c];
        plm_kv_clear(ctx);
        plm_batch b = {.n_tokens = fc->n_ids, .token = fc->ids};
        REQUIRE(plm_decode(ctx, &b) == PLM_OK);
        const float *l = plm_context_logits(ctx, -1);
        REQUIRE(l);
        if (fc->lc_val[0] - fc->lc_val[1] >= TOL_GREEDY_TIE)
            CHECKF(argmax(l, in.n_vocab) == fc->lc_top[0], "%s: top token %d, llama.cpp's %d", fc->name, argmax(l, in.n_vocab), fc->lc_top[0]);
        float worst = 0, worst_hf = 0;
        for (int i = 0; i < fc->n_lc; i++) worst = fmaxf(worst, fabsf(l[fc->lc_top[i]] - fc->lc_val[i]));
        for (int i = 0; i < fc->n_hf; i++) worst_hf = fmaxf(worst_hf, fabsf(l[fc->hf_top[i]] - fc->hf_val[i]));
        fprintf(stderr, "  %-8s max |d| vs llama.cpp %.4f, vs transformers %.4f\n", fc->name, (double)worst, (double)worst_hf);
        CHECKF(worst <= TOL_LOGIT_LC, "%s: top-20 logits differ from llama.cpp by up to %.4f", fc->name, (double)worst);
        if (fc->n_hf) {
            CHECKF(worst_hf <= TOL_LOGIT_HF, "%s: top-20 logits differ from transformers by up to %.4f", fc->name, (double)worst_hf);
            if (fc->hf_val[0] - fc->hf_val[1] >= TOL_GREEDY_TIE)
                CHECKF(argmax(l, in.n_vocab) == fc->hf_top[0], "%s: top token differs from transformers'", fc->name);
        }
    }
    plm_context_free(ctx);
}

static void test_greedy_matches_llama_cpp(void) {
    static fcase cases[8];
    int n = load_cases(DATA("greedy_smollm2.txt"), cases, 8, true);
    REQUIRE(n >= 5);
    plm_context *ctx = new_ctx(512, 2);
    REQUIRE(ctx);
    const int only = t_quick() ? shortest(cases, n) : -1;
    for (int c = 0; c < n; c++) {
        if (only >= 0 && c != only) continue;
        fcase *fc = &cases[c];
        plm_generate_params gp = plm_generate_default_params();
        gp.sampling.temperature = 0;
        gp.max_tokens = t_quick() && fc->n_lc_gen > QUICK_GEN ? QUICK_GEN : fc->n_lc_gen;
        gp.keep_cache = false;
        plm_generator *g = NULL;
        REQUIRE(plm_generator_create_tokens(ctx, fc->ids, fc->n_ids, &gp, &g) == PLM_OK);
        plm_stop_reason r = PLM_STOP_NONE;
        const char *piece;
        size_t k;
        while (r == PLM_STOP_NONE) REQUIRE(plm_generator_next(g, &piece, &k, &r) == PLM_OK);
        int32_t ng;
        const plm_token *gen = plm_generator_tokens(g, &ng);
        int same = 0;
        while (same < ng && same < fc->n_lc_gen && gen[same] == fc->lc_gen[same]) same++;
        /* llama.cpp's list ends with EOS when it stopped there; ours stops before it. */
        int want = fc->n_lc_gen;
        if (want > 0 && plm_token_is_eog(model, fc->lc_gen[want - 1])) want--;
        if (want > gp.max_tokens) want = gp.max_tokens;
        REQUIRE(fc->n_margin >= want);
        if (same >= want) {
            fprintf(stderr, "  %-8s identical to llama.cpp for all %d tokens\n", fc->name, want);
        } else {
            fprintf(stderr, "  %-8s identical for %d of %d tokens, then a near-tie (llama.cpp's top-2 margin %.3f)\n",
                    fc->name, same, want, (double)fc->margin[same]);
            CHECKF(fc->margin[same] < TOL_GREEDY_TIE, "%s: greedy continuation diverges from llama.cpp at token %d where its margin is %.3f",
                   fc->name, same, (double)fc->margin[same]);
        }
        plm_generator_free(g);
    }
    plm_context_free(ctx);
}

static void test_perplexity_matches_llama_cpp(void) {
    if (t_quick()) {
        fprintf(stderr, "  skipped (POCKETLM_TEST_QUICK)\n");
        return;
    }
    FILE *f = fopen(DATA("perplexity_smollm2.txt"), "r");
    REQUIRE(f);
    char line[256];
    int n_ctx = 0, chunks = 0;
    double ref = 0;
    while (fgets(line, sizeof line, f)) {
        sscanf(line, "ctx %d", &n_ctx);
        sscanf(line, "chunks %d", &chunks);
        sscanf(line, "ppl %lf", &ref);
    }
    fclose(f);
    REQUIRE(n_ctx > 0 && chunks > 0 && ref > 0);
    f = fopen(DATA("perplexity_gpl3.txt"), "rb");
    REQUIRE(f);
    static char text[1 << 16];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    static plm_token toks[1 << 15];
    int32_t n = 0;
    REQUIRE(plm_tokenize(model, text, len, true, false, toks, 1 << 15, &n) == PLM_OK);
    REQUIRE(n / n_ctx >= chunks);
    plm_context *ctx = new_ctx(n_ctx, 2);
    REQUIRE(ctx);
    plm_model_info in;
    plm_model_get_info(model, &in);
    int8_t *want = malloc((size_t)n_ctx);
    double nll = 0;
    long count = 0;
    const int first = n_ctx / 2;
    for (int c = 0; c < chunks; c++) {
        plm_token *chunk = toks + (size_t)c * (size_t)n_ctx;
        plm_token saved = chunk[0];
        if (in.add_bos) chunk[0] = in.bos;
        for (int j = 0; j < n_ctx; j++) want[j] = j >= first && j < n_ctx - 1;
        plm_kv_clear(ctx);
        plm_batch b = {.n_tokens = n_ctx, .token = chunk, .logits = want};
        REQUIRE(plm_decode(ctx, &b) == PLM_OK);
        chunk[0] = saved;
        for (int j = first; j < n_ctx - 1; j++) {
            const float *l = plm_context_logits(ctx, j);
            float mx = l[argmax(l, in.n_vocab)];
            double s = 0;
            for (int v = 0; v < in.n_vocab; v++) s += exp((double)(l[v] - mx));
            nll -= (double)(l[chunk[j + 1]] - mx) - log(s);
            count++;
        }
    }
    free(want);
    double ppl = exp(nll / (double)count);
    fprintf(stderr, "  perplexity %.4f, llama.cpp %.4f (%+.3f%%)\n", ppl, ref, 100.0 * (ppl / ref - 1));
    CHECKF(fabs(ppl / ref - 1) <= TOL_PPL_REL, "perplexity %.4f vs llama.cpp %.4f", ppl, ref);
    plm_context_free(ctx);
}

/* A prompt in one batch and token by token gives the same logits. */
static void test_batch_equals_incremental(void) {
    plm_token toks[64];
    int32_t n;
    const char *text = "The quick brown fox jumps over the lazy dog, and then it runs away into the forest.";
    REQUIRE(plm_tokenize(model, text, strlen(text), true, false, toks, 64, &n) == PLM_OK);
    plm_context *a = new_ctx(256, 2), *b = new_ctx(256, 1);
    REQUIRE(a && b);
    plm_batch all = {.n_tokens = n, .token = toks};
    REQUIRE(plm_decode(a, &all) == PLM_OK);
    for (int i = 0; i < n; i++) {
        plm_batch one = {.n_tokens = 1, .token = &toks[i]};
        REQUIRE(plm_decode(b, &one) == PLM_OK);
    }
    plm_model_info in;
    plm_model_get_info(model, &in);
    const float *la = plm_context_logits(a, -1), *lb = plm_context_logits(b, -1);
    float worst = 0;
    for (int v = 0; v < in.n_vocab; v++) worst = fmaxf(worst, fabsf(la[v] - lb[v]));
    CHECKF(worst < 1e-3f, "batch vs incremental differ by %g", (double)worst);
    CHECK(plm_kv_seq_pos_max(a, 0) == n - 1 && plm_kv_used(a) == n);
    plm_context_free(a);
    plm_context_free(b);
}

/* Prefix shared with plm_kv_seq_cp, two continuations in one batch, equal to separate runs. */
static void test_shared_prefix_sequences(void) {
    plm_token p[32], c1[8], c2[8];
    int32_t np, n1, n2;
    REQUIRE(plm_tokenize(model, "My favourite fruit is", 21, true, false, p, 32, &np) == PLM_OK);
    REQUIRE(plm_tokenize(model, " the banana", 11, false, false, c1, 8, &n1) == PLM_OK);
    REQUIRE(plm_tokenize(model, " a ripe mango", 13, false, false, c2, 8, &n2) == PLM_OK);
    plm_context *ctx = new_ctx(256, 2);
    REQUIRE(ctx);
    plm_batch b = {.n_tokens = np, .token = p};
    REQUIRE(plm_decode(ctx, &b) == PLM_OK);
    REQUIRE(plm_kv_seq_cp(ctx, 0, 1, 0, -1) == PLM_OK);
    CHECK(plm_kv_used(ctx) == np); /* shared, not copied */
    plm_token bt[16];
    int32_t bp[16], bs[16];
    int8_t bl[16];
    int k = 0;
    for (int i = 0; i < n1; i++, k++) { bt[k] = c1[i]; bp[k] = np + i; bs[k] = 0; bl[k] = i == n1 - 1; }
    for (int i = 0; i < n2; i++, k++) { bt[k] = c2[i]; bp[k] = np + i; bs[k] = 1; bl[k] = i == n2 - 1; }
    plm_batch both = {.n_tokens = k, .token = bt, .pos = bp, .seq_id = bs, .logits = bl};
    REQUIRE(plm_decode(ctx, &both) == PLM_OK);
    CHECK(plm_context_n_logits(ctx) == 2);
    plm_model_info in;
    plm_model_get_info(model, &in);
    float *r1 = malloc((size_t)in.n_vocab * sizeof(float)), *r2 = malloc((size_t)in.n_vocab * sizeof(float));
    memcpy(r1, plm_context_logits(ctx, n1 - 1), (size_t)in.n_vocab * sizeof(float));
    memcpy(r2, plm_context_logits(ctx, k - 1), (size_t)in.n_vocab * sizeof(float));
    CHECK(plm_context_logits(ctx, 0) == NULL); /* not asked for */

    plm_context *sep = new_ctx(256, 2);
    plm_token full[48];
    float worst = 0;
    for (int which = 0; which < 2; which++) {
        int m = 0;
        for (int i = 0; i < np; i++) full[m++] = p[i];
        for (int i = 0; i < (which ? n2 : n1); i++) full[m++] = which ? c2[i] : c1[i];
        plm_kv_clear(sep);
        plm_batch fb = {.n_tokens = m, .token = full};
        REQUIRE(plm_decode(sep, &fb) == PLM_OK);
        const float *l = plm_context_logits(sep, -1), *r = which ? r2 : r1;
        for (int v = 0; v < in.n_vocab; v++) worst = fmaxf(worst, fabsf(l[v] - r[v]));
    }
    CHECKF(worst < 1e-3f, "shared-prefix logits differ from separate runs by %g", (double)worst);
    /* removing sequence 1 frees only its own cells */
    REQUIRE(plm_kv_seq_rm(ctx, 1, -1, -1) == PLM_OK);
    CHECK(plm_kv_used(ctx) == np + n1);
    CHECK(plm_kv_seq_pos_max(ctx, 1) == -1 && plm_kv_seq_pos_max(ctx, 0) == np + n1 - 1);
    /* positions must increase within a sequence */
    plm_batch again = {.n_tokens = 1, .token = c1, .pos = (int32_t[]){0}, .seq_id = (int32_t[]){0}};
    CHECK(plm_decode(ctx, &again) == PLM_ERR_ARG);
    free(r1);
    free(r2);
    plm_context_free(sep);
    plm_context_free(ctx);
}

static int abort_after(void *user) { return --*(int *)user < 0; }

static void test_errors_leave_cache_intact(void) {
    plm_context *ctx = new_ctx(64, 2);
    REQUIRE(ctx);
    plm_token toks[40];
    for (int i = 0; i < 40; i++) toks[i] = 100 + i;
    plm_batch b = {.n_tokens = 40, .token = toks};
    REQUIRE(plm_decode(ctx, &b) == PLM_OK);
    /* overflow */
    CHECK(plm_decode(ctx, &b) == PLM_ERR_CONTEXT_FULL);
    CHECK(strstr(plm_last_error(), "context full") != NULL);
    CHECK(plm_kv_used(ctx) == 40);
    /* out-of-range tokens, bad sequence ids, empty batches */
    plm_token bad = 49152;
    plm_batch bb = {.n_tokens = 1, .token = &bad};
    CHECK(plm_decode(ctx, &bb) == PLM_ERR_ARG && strstr(plm_last_error(), "49152"));
    bad = -1;
    CHECK(plm_decode(ctx, &bb) == PLM_ERR_ARG);
    plm_token ok = 5;
    plm_batch bs = {.n_tokens = 1, .token = &ok, .seq_id = (int32_t[]){99}};
    CHECK(plm_decode(ctx, &bs) == PLM_ERR_ARG && strstr(plm_last_error(), "sequence id"));
    plm_batch be = {.n_tokens = 0, .token = &ok};
    CHECK(plm_decode(ctx, &be) == PLM_ERR_ARG);
    CHECK(plm_kv_used(ctx) == 40);
    /* cancellation mid-batch restores the cache, and the context stays usable */
    int budget = 3;
    plm_context_set_abort_callback(ctx, abort_after, &budget);
    plm_batch b2 = {.n_tokens = 10, .token = toks};
    CHECK(plm_decode(ctx, &b2) == PLM_ERR_CANCELLED);
    CHECK(plm_kv_used(ctx) == 40);
    plm_context_set_abort_callback(ctx, NULL, NULL);
    CHECK(plm_decode(ctx, &b2) == PLM_OK);
    CHECK(plm_kv_used(ctx) == 50);
    plm_context_free(ctx);
    /* bad parameters */
    plm_context_params p = plm_context_default_params();
    p.n_threads = -1;
    plm_context *c2 = NULL;
    CHECK(plm_context_create(model, &p, &c2) == PLM_ERR_ARG && c2 == NULL);
    p = plm_context_default_params();
    p.n_seq_max = 65;
    CHECK(plm_context_create(model, &p, &c2) == PLM_ERR_ARG);
}

/* 1 and 2 threads compute the same logits (rows are split, not summed across threads). */
static void test_threads_agree(void) {
    plm_token toks[16];
    int32_t n;
    REQUIRE(plm_tokenize(model, "Threads should not change results.", 34, true, false, toks, 16, &n) == PLM_OK);
    plm_context *a = new_ctx(64, 1), *b = new_ctx(64, 2);
    REQUIRE(a && b);
    plm_batch bt = {.n_tokens = n, .token = toks};
    REQUIRE(plm_decode(a, &bt) == PLM_OK && plm_decode(b, &bt) == PLM_OK);
    plm_model_info in;
    plm_model_get_info(model, &in);
    CHECK(memcmp(plm_context_logits(a, -1), plm_context_logits(b, -1), (size_t)in.n_vocab * sizeof(float)) == 0);
    plm_context_free(a);
    plm_context_free(b);
}

/* The weights repacked at load (plm_model_params.repack, the default) give the logits the file's layout gives, bit
 * for bit: a prompt, single-token steps and a step of three sequences, at 1 and 2 threads, from a mapped file
 * (repacked into buffers of the model's) and from one read into memory (repacked in place). With the avx512 table
 * the default model's layer weights (Q4_1) and its Q8_0 token embeddings, tied to the output, are repacked (all but
 * the norms: a prompt's embedding rows are read back from the layout); with the others nothing is. */
static void test_repack_keeps_results(void) {
    plm_model_info in;
    plm_model_get_info(model, &in);
    const bool packs = strcmp(plm_kernels_name(), "avx512") == 0;
    CHECKF(packs ? in.n_repacked > in.n_bytes / 100 * 99 && in.n_repacked < in.n_bytes : in.n_repacked == 0,
           "kernels %s: %llu of %llu bytes repacked", plm_kernels_name(), (unsigned long long)in.n_repacked,
           (unsigned long long)in.n_bytes);
    plm_model_params mp = plm_model_default_params();
    CHECK(mp.repack);
    plm_model *plain = NULL, *in_place = NULL;
    mp.repack = false;
    REQUIRE(plm_model_load(NULL, &mp, &plain) == PLM_OK);
    mp.repack = true;
    mp.use_mmap = false;
    REQUIRE(plm_model_load(NULL, &mp, &in_place) == PLM_OK);
    plm_model_info ip, ii;
    plm_model_get_info(plain, &ip);
    plm_model_get_info(in_place, &ii);
    CHECK(ip.n_repacked == 0 && ii.n_repacked == in.n_repacked);
    plm_token toks[24];
    int32_t n;
    REQUIRE(plm_tokenize(model, "Repacked weights must give the very same numbers.", 50, true, false, toks, 24, &n) == PLM_OK);
    const size_t V = (size_t)in.n_vocab;
    for (int threads = 1; threads <= 2; threads++) {
        plm_model *ms[3] = {model, plain, in_place};
        plm_context *c[3] = {0};
        for (int i = 0; i < 3; i++) {
            plm_context_params p = plm_context_default_params();
            p.n_ctx = 128, p.n_threads = threads, p.n_seq_max = 4;
            REQUIRE(plm_context_create(ms[i], &p, &c[i]) == PLM_OK);
        }
        int differ = 0;
        for (int step = 0; step < 4; step++) {
            plm_token one = toks[step % n];
            int32_t pos[1] = {n + step - 1}, seq[1] = {0};
            plm_token three[3] = {one, toks[1], toks[2]};
            int32_t ps3[3] = {n + step - 1, 0, 0}, sq3[3] = {0, 1, 2};
            int8_t all[3] = {1, 1, 1};
            /* the prompt, then one token twice, then one token of sequence 0 beside two new sequences */
            plm_batch b = step == 0  ? (plm_batch){.n_tokens = n, .token = toks}
                          : step < 3 ? (plm_batch){.n_tokens = 1, .token = &one, .pos = pos, .seq_id = seq}
                                     : (plm_batch){.n_tokens = 3, .token = three, .pos = ps3, .seq_id = sq3, .logits = all};
            for (int i = 0; i < 3; i++) REQUIRE(plm_decode(c[i], &b) == PLM_OK);
            for (int r = step < 3 ? -1 : 0; r < (step < 3 ? 0 : 3); r++)
                for (int i = 1; i < 3; i++)
                    differ += memcmp(plm_context_logits(c[0], r), plm_context_logits(c[i], r), V * sizeof(float)) != 0;
        }
        CHECKF(differ == 0, "%d threads: %d logit rows differ between the repacked and the file's layout", threads, differ);
        for (int i = 0; i < 3; i++) plm_context_free(c[i]);
    }
    plm_model_free(plain);
    plm_model_free(in_place);
}

/* plm_linear over weights in the x16 layout placed after one whose rows are not a multiple of 16: the threads'
 * shares (and a one-token product's 64-row pieces), cut in 16s of the three weights' rows taken together, cut
 * their groups, which matmul.c computes whole into a buffer. Every entry equals vec_dot over the rows as the file
 * has them, bit for bit, at 1 and 2 threads, for 1, 3 and 120 tokens (120: fixed shares, not pieces). */
static void test_linear_cut_groups(void) {
    const plm_kernels *k = plm_kernels_get();
    const plm_type wt = PLM_TYPE_Q4_1, at = k->dot_type[wt];
    if (!k->gemm_x16[wt]) {
        fprintf(stderr, "  skipped: the %s table has no x16 layout (the avx512 table has)\n", k->name);
        return;
    }
    enum { N = 576, TMAX = 120 };
    const int rows[3] = {24, 48, 32};
    const bool packed[3] = {false, true, true};
    const size_t ws = plm_type_row_size(wt, N), as = plm_type_row_size(at, N);
    uint8_t *w[3], *file[3];
    plm_weight W[3];
    const plm_weight *wp[3];
    uint64_t rng = 12345;
    for (int j = 0; j < 3; j++) {
        file[j] = malloc(ws * (size_t)rows[j]);
        w[j] = malloc(ws * (size_t)rows[j]);
        float row[N];
        for (int r = 0; r < rows[j]; r++) {
            for (int i = 0; i < N; i++) rng = rng * 6364136223846793005ull + 1442695040888963407ull, row[i] = (float)((int)(rng >> 40) % 2001 - 1000) / 1000.0f;
            plm_quantize_row_ref(wt, row, file[j] + (size_t)r * ws, N);
        }
        if (packed[j])
            for (int g = 0; g < rows[j]; g += PLM_X16) plm_x16_pack(wt, file[j] + (size_t)g * ws, w[j] + (size_t)g * ws, N);
        else memcpy(w[j], file[j], ws * (size_t)rows[j]);
        W[j] = (plm_weight){.data = w[j], .type = wt, .n_in = N, .n_out = rows[j], .row_bytes = ws, .layer = -1, .x16 = packed[j]};
        wp[j] = &W[j];
    }
    float *x = malloc(sizeof(float) * N * TMAX), *out[3], *want[3];
    uint8_t *a = malloc(as * TMAX);
    for (int i = 0; i < N * TMAX; i++) rng = rng * 6364136223846793005ull + 1442695040888963407ull, x[i] = (float)((int)(rng >> 40) % 2001 - 1000) / 100.0f;
    for (int t = 0; t < TMAX; t++) k->quantize[at](x + (size_t)t * N, a + (size_t)t * as, N);
    for (int j = 0; j < 3; j++) {
        out[j] = malloc(sizeof(float) * (size_t)rows[j] * TMAX);
        want[j] = malloc(sizeof(float) * (size_t)rows[j] * TMAX);
        for (int t = 0; t < TMAX; t++)
            for (int r = 0; r < rows[j]; r++) want[j][t * rows[j] + r] = k->vec_dot[wt](N, file[j] + (size_t)r * ws, a + (size_t)t * as);
    }
    const int32_t Ts[3] = {1, 3, TMAX};
    for (int threads = 1; threads <= 2; threads++) {
        plm_context *ctx = new_ctx(256, threads);
        REQUIRE(ctx);
        for (int ti = 0; ti < 3; ti++) {
            const int64_t ldo[3] = {rows[0], rows[1], rows[2]};
            REQUIRE(plm_linear(ctx, 3, wp, out, ldo, x, N, Ts[ti], false, NULL, NULL) == PLM_OK);
            int differ = 0;
            for (int j = 0; j < 3; j++) differ += memcmp(out[j], want[j], sizeof(float) * (size_t)rows[j] * (size_t)Ts[ti]) != 0;
            CHECKF(differ == 0, "%d threads, %d tokens: %d weights' outputs differ from vec_dot", threads, Ts[ti], differ);
        }
        plm_context_free(ctx);
    }
    for (int j = 0; j < 3; j++) free(w[j]), free(file[j]), free(out[j]), free(want[j]);
    free(x);
    free(a);
}

static void test_info(void) {
    plm_model_info in;
    REQUIRE(plm_model_get_info(model, &in) == PLM_OK);
    CHECK(!strcmp(in.arch, "llama"));
    CHECK(in.n_vocab == 49152 && in.n_layer == 30 && in.n_embd == 576 && in.n_head == 9 && in.n_head_kv == 3);
    CHECK(in.n_ff == 1536 && in.head_dim == 64 && in.n_ctx_train == 8192);
    CHECK(!strcmp(in.file_type, "Q4_1"));
    CHECK(strstr(in.chat_template, "<|im_start|>") != NULL);
    CHECK(in.bos == 1 && in.eos == 2 && !in.add_bos);
    CHECK(in.n_params > 130000000 && in.n_params < 140000000);
    char buf[64];
    CHECK(plm_model_meta_str(model, "llama.rope.freq_base", buf, sizeof buf) == PLM_OK && !strcmp(buf, "100000"));
    CHECK(plm_model_meta_str(model, "no.such.key", buf, sizeof buf) == PLM_ERR_ARG);
}

int main(void) {
    plm_status st = plm_model_load(NULL, NULL, &model);
    if (st) {
        fprintf(stderr, "cannot load the default model: %s\n", plm_last_error());
        printf("0 passed, 1 failed\n");
        return 1;
    }
    fprintf(stderr, "kernels: %s\n", plm_kernels_name());
    RUN(test_info);
    RUN(test_logits_match_references);
    RUN(test_greedy_matches_llama_cpp);
    RUN(test_perplexity_matches_llama_cpp);
    RUN(test_batch_equals_incremental);
    RUN(test_shared_prefix_sequences);
    RUN(test_errors_leave_cache_intact);
    RUN(test_threads_agree);
    RUN(test_repack_keeps_results);
    RUN(test_linear_cut_groups);
    plm_model_free(model);
    return TEST_SUMMARY();
}
