/*
 * test_gemma3.c — the forward pass on Gemma 3 270M (Q4_K_M) against fixtures
 * written by tools/make_gemma3_fixtures.py from llama.cpp (and transformers):
 * top-20 logits (one prompt longer than the 512-token sliding window of the
 * local layers), greedy continuations, perplexity; and a prompt in one batch
 * equals the same prompt token by token.
 *
 * The model is $POCKETLM_GEMMA3, else gemma-3-270m-q4_k_m.gguf in the pocketlm
 * cache; without it the test fails and says to run tools/fetch_gemma3.sh
 * (`make model` does).
 */
#include "pocketlm.h"
#include "test.h"

#include <math.h>

#define GEMMA3_NAME "gemma-3-270m-q4_k_m.gguf"

/* Tolerances, stated once; the philosophy is test_model.c's, measured on these
 * prompts. Both we and llama.cpp quantize activations to 8 bits (Q8_0 for the
 * Q5_0/Q8_0 weights, Q8_K for the K-quants) but round and sum in different
 * orders, and Gemma's normalized activations reach the hundreds (norm weights up
 * to 300), so a last-bit difference flips roundings downstream. transformers
 * dequantizes the weights and computes in float32. Measured spreads of the
 * top-20 logits: llama.cpp vs transformers up to 0.59; our scalar vs our AVX2
 * kernels up to 0.6; ours vs llama.cpp up to 0.77 (AVX2) and 1.10 (scalar),
 * of which up to 0.98 is a shift common to all 20 logits, which softmax
 * ignores. So we check the shape of the top logits tightly and the shift loosely.
 * (Bugs are far outside: the wrong RoPE base on local layers gives 1.0 to 2.4
 * and 7x the perplexity; no sliding window gives 9.4 on the long prompt.) */
static const float TOL_LOGIT_SHAPE = 0.60f; /* max |d_i - mean(d)|, d = ours - reference over its top 20 (measured <= 0.47) */
static const float TOL_LOGIT_RAW = 1.25f;   /* max |d_i| (measured <= 1.10) */
/* Perplexity within 1% of llama.cpp's, and of transformers' float32. llama.cpp
 * takes GELU from an F16 table, which raises its perplexity here by ~0.4%;
 * we compute it exactly, as transformers does: we land between the two. */
static const double TOL_PPL_REL = 0.01;
/* A greedy step is a near-tie when llama.cpp's top-1 and top-2 logits are closer
 * than this: there the implementations may legitimately pick differently. It is
 * 1.0 here (0.5 for SmolLM2) because Gemma 3's logits carry up to ~1.0 of
 * summation-order noise (TOL_LOGIT_RAW): at step 8 of "chat" (logits near -6)
 * llama.cpp's margin is 0.98, our scalar reference kernels give 0.42 for the
 * same token and the AVX2 kernels -0.07, i.e. the two tokens swap. */
static const float TOL_GREEDY_TIE = 1.00f;

static plm_model *model;

#define MAXT 1024
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

/* Reads "case / ids / lc / hf / margin" blocks; greedy files put generated ids on the lc line. */
static int load_cases(const char *path, fcase *cases, int cap, bool greedy) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    static char line[1 << 16];
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

/* $POCKETLM_GEMMA3, else <cache>/gemma-3-270m-q4_k_m.gguf (cache as plm_default_model_path finds it). */
static bool gemma3_path(char *out, size_t cap) {
    const char *env = getenv("POCKETLM_GEMMA3");
    if (env && *env) return snprintf(out, cap, "%s", env) < (int)cap;
    const char *dir = getenv("POCKETLM_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (dir && *dir) n = snprintf(out, cap, "%s/%s", dir, GEMMA3_NAME);
    else if (xdg && *xdg) n = snprintf(out, cap, "%s/pocketlm/%s", xdg, GEMMA3_NAME);
    else if (home && *home) n = snprintf(out, cap, "%s/.cache/pocketlm/%s", home, GEMMA3_NAME);
    else return false;
    return n > 0 && n < (int)cap;
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

/* d = ours - reference over the reference's top n: *raw = max |d|, *shape = max |d - mean(d)|. */
static void compare_top(const float *l, const plm_token *ids, const float *vals, int n, float *raw, float *shape) {
    float mean = 0;
    *raw = *shape = 0;
    for (int i = 0; i < n; i++) mean += (l[ids[i]] - vals[i]) / (float)n;
    for (int i = 0; i < n; i++) {
        *raw = fmaxf(*raw, fabsf(l[ids[i]] - vals[i]));
        *shape = fmaxf(*shape, fabsf(l[ids[i]] - vals[i] - mean));
    }
}

static void test_info(void) {
    plm_model_info in;
    REQUIRE(plm_model_get_info(model, &in) == PLM_OK);
    CHECK(!strcmp(in.arch, "gemma3"));
    CHECK(in.n_vocab == 262144 && in.n_layer == 18 && in.n_embd == 640 && in.n_head == 4 && in.n_head_kv == 1);
    CHECK(in.n_ff == 2048 && in.head_dim == 256 && in.n_ctx_train == 32768);
    CHECK(in.bos == 2 && in.eos == 1 && in.add_bos);
    CHECK(in.n_params > 260000000 && in.n_params < 280000000);
}

static void test_logits_match_references(void) {
    static fcase cases[8];
    int n = load_cases(DATA("logits_gemma3.txt"), cases, 8, false);
    REQUIRE(n >= 6);
    plm_context *ctx = new_ctx(1024, 2);
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
        float raw, shape, raw_hf = 0, shape_hf = 0;
        compare_top(l, fc->lc_top, fc->lc_val, fc->n_lc, &raw, &shape);
        if (fc->n_hf) compare_top(l, fc->hf_top, fc->hf_val, fc->n_hf, &raw_hf, &shape_hf);
        fprintf(stderr, "  %-8s (%3d tokens) vs llama.cpp: max |d| %.4f, shape %.4f; vs transformers: %.4f, %.4f\n", fc->name,
                fc->n_ids, (double)raw, (double)shape, (double)raw_hf, (double)shape_hf);
        CHECKF(shape <= TOL_LOGIT_SHAPE && raw <= TOL_LOGIT_RAW, "%s: top-20 logits differ from llama.cpp by %.4f (shape %.4f)",
               fc->name, (double)raw, (double)shape);
        if (fc->n_hf) {
            CHECKF(shape_hf <= TOL_LOGIT_SHAPE && raw_hf <= TOL_LOGIT_RAW, "%s: top-20 logits differ from transformers by %.4f (shape %.4f)",
                   fc->name, (double)raw_hf, (double)shape_hf);
            if (fc->hf_val[0] - fc->hf_val[1] >= TOL_GREEDY_TIE)
                CHECKF(argmax(l, in.n_vocab) == fc->hf_top[0], "%s: top token differs from transformers'", fc->name);
        }
    }
    plm_context_free(ctx);
}

static void test_greedy_matches_llama_cpp(void) {
    static fcase cases[8];
    int n = load_cases(DATA("greedy_gemma3.txt"), cases, 8, true);
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
        /* llama.cpp's list ends with the end-of-generation token when it stopped there; ours stops before it. */
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
    FILE *f = fopen(DATA("perplexity_gemma3.txt"), "r");
    REQUIRE(f);
    char line[256];
    int n_ctx = 0, chunks = 0;
    double ref = 0, ref_hf = 0;
    while (fgets(line, sizeof line, f)) {
        sscanf(line, "ctx %d", &n_ctx);
        sscanf(line, "chunks %d", &chunks);
        sscanf(line, "ppl %lf", &ref);
        sscanf(line, "hf_ppl %lf", &ref_hf);
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
    fprintf(stderr, "  perplexity %.4f, llama.cpp %.4f (%+.3f%%), transformers %.4f (%+.3f%%)\n", ppl, ref, 100.0 * (ppl / ref - 1),
            ref_hf, ref_hf > 0 ? 100.0 * (ppl / ref_hf - 1) : 0.0);
    CHECKF(fabs(ppl / ref - 1) <= TOL_PPL_REL, "perplexity %.4f vs llama.cpp %.4f", ppl, ref);
    if (ref_hf > 0) CHECKF(fabs(ppl / ref_hf - 1) <= TOL_PPL_REL, "perplexity %.4f vs transformers %.4f", ppl, ref_hf);
    plm_context_free(ctx);
}

/* A prompt in one batch and token by token give the same logits. */
static void test_batch_equals_incremental(void) {
    plm_token toks[64];
    int32_t n;
    const char *text = "The quick brown fox jumps over the lazy dog, and then it runs away into the forest.";
    REQUIRE(plm_tokenize(model, text, strlen(text), true, false, toks, 64, &n) == PLM_OK);
    plm_context *a = new_ctx(128, 2), *b = new_ctx(128, 1);
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
    plm_context_free(a);
    plm_context_free(b);
}

int main(void) {
    char path[4096];
    if (!gemma3_path(path, sizeof path)) {
        fprintf(stderr, "no cache directory for the Gemma 3 model: set POCKETLM_GEMMA3 or HOME\n");
        printf("0 passed, 1 failed\n");
        return 1;
    }
    plm_status st = plm_model_load(path, NULL, &model);
    if (st) {
        fprintf(stderr, "cannot load Gemma 3 270M (%s): run tools/fetch_gemma3.sh or set POCKETLM_GEMMA3\n", plm_last_error());
        printf("0 passed, 1 failed\n");
        return 1;
    }
    fprintf(stderr, "kernels: %s\n", plm_kernels_name());
    RUN(test_info);
    RUN(test_logits_match_references);
    RUN(test_greedy_matches_llama_cpp);
    RUN(test_perplexity_matches_llama_cpp);
    RUN(test_batch_equals_incremental);
    plm_model_free(model);
    return TEST_SUMMARY();
}
