/*
 * test_lora.c — LoRA adapters (lora.c, the delta in matmul.c) on the tiny llama:
 * logits against transformers + PEFT (tests/data/tiny/llama_lora.txt, made by
 * tools/make_tiny_lora.py), batch invariance, several adapters at once, an
 * equal adapter of rank 32 giving the same bits as rank 4, two
 * contexts of one model with different adapters at the same time, the saved
 * state's adapter check, and the loader's refusals.
 */
#include "pocketlm.h"
#include "test.h"

#include <pthread.h>
#include <stdbool.h>

/* Max |ours - transformers| over every compared logit. The base alone is
 * within test_families.c's 0.05 (keys and values cached in F16); the adapters
 * add 8-bit rounding: A and B are held in 8 bits and A x is an int8 product
 * with x quantized to Q8_0 (as llama.cpp multiplies a Q8_0 adapter), about 1%
 * of the adapter's effect, and these random adapters move logits by up to
 * 12.2. Measured: 0.119 (a1), 0.051 (a2), 0.121 (both); 0.004 when A and B
 * were floats. Leaving out alpha / rank gives 5.6. */
static const float TOL_LOGIT = 0.15f;

#define TINY(name) DATA("tiny/" name)
#define MAX_CASES 3
#define MAX_SEQ 3
#define MAX_T 32
#define MAX_COLS 64

typedef struct seq_ref {
    int n;
    plm_token ids[MAX_T];
    float logits[MAX_T][MAX_COLS];
} seq_ref;

typedef struct case_ref {
    char name[16];
    float scale[2];
    int n_seq;
    seq_ref seq[MAX_SEQ];
} case_ref;

static int n_cols;
static plm_token cols[MAX_COLS];
static case_ref cases[MAX_CASES];
static int n_cases;
static plm_model *model;
static plm_adapter *ad[2];

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

static bool load_ref(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    static char line[1 << 14];
    case_ref *c = NULL;
    seq_ref *s = NULL;
    bool ok = true;
    while (ok && fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        if (!strncmp(line, "cols ", 5)) {
            n_cols = parse_ints(line + 5, cols, MAX_COLS);
        } else if (!strncmp(line, "case ", 5)) {
            ok = n_cases < MAX_CASES;
            if (!ok) break;
            c = &cases[n_cases++];
            s = NULL;
            ok = sscanf(line + 5, "%15s %f %f", c->name, &c->scale[0], &c->scale[1]) == 3;
        } else if (c && !strncmp(line, "seq ", 4)) {
            ok = c->n_seq < MAX_SEQ;
            if (!ok) break;
            s = &c->seq[c->n_seq++];
            char nm[16];
            int n_ctx;
            ok = sscanf(line + 4, "%15s %d %d", nm, &s->n, &n_ctx) == 3 && s->n > 0 && s->n <= MAX_T;
        } else if (s && !strncmp(line, "ids ", 4)) {
            ok = parse_ints(line + 4, s->ids, MAX_T) == s->n;
        } else if (s && !strncmp(line, "pos ", 4)) {
            char *p = line + 4, *end;
            long i = strtol(p, &end, 10);
            ok = end != p && i >= 0 && i < s->n;
            for (int k = 0; ok && k < n_cols; k++) {
                p = end;
                s->logits[i][k] = strtof(p, &end);
                ok = end != p;
            }
        }
    }
    fclose(f);
    return ok && n_cols > 0 && n_cases == MAX_CASES;
}

static plm_context *new_ctx(int n_batch, int n_threads) {
    plm_context_params p = plm_context_default_params();
    p.n_ctx = 64;
    p.n_batch = n_batch;
    p.n_threads = n_threads;
    plm_context *ctx = NULL;
    if (plm_context_create(model, &p, &ctx)) fprintf(stderr, "  context: %s\n", plm_last_error());
    return ctx;
}

/* The case's adapters (those with a nonzero scale) on ctx. */
static plm_status set_case(plm_context *ctx, const case_ref *c) {
    plm_adapter *list[2];
    float sc[2];
    int n = 0;
    for (int i = 0; i < 2; i++)
        if (c->scale[i] != 0.0f) {
            list[n] = ad[i];
            sc[n++] = c->scale[i];
        }
    return plm_context_set_adapters(ctx, n, list, sc);
}

/* Logits (n, n_vocab) of every position of s, decoded in chunks of the context's n_batch. */
static bool run_seq(plm_context *ctx, const seq_ref *s, float *out, int n_vocab) {
    plm_kv_clear(ctx);
    int8_t want[MAX_T];
    int32_t pos[MAX_T];
    for (int i = 0; i < s->n; i++) {
        want[i] = 1;
        pos[i] = i;
    }
    plm_batch b = {.n_tokens = s->n, .token = s->ids, .pos = pos, .logits = want};
    if (plm_decode(ctx, &b)) {
        fprintf(stderr, "  decode: %s\n", plm_last_error());
        return false;
    }
    for (int i = 0; i < s->n; i++) memcpy(out + (size_t)i * (size_t)n_vocab, plm_context_logits(ctx, i), (size_t)n_vocab * sizeof(float));
    return true;
}

static void setup(void) {
    REQUIRE(load_ref(TINY("llama_lora.txt")));
    plm_model_params mp = plm_model_default_params();
    REQUIRE(plm_model_load(TINY("llama.gguf"), &mp, &model) == PLM_OK);
    REQUIRE(plm_adapter_load(model, TINY("llama_lora.gguf"), &ad[0]) == PLM_OK);
    REQUIRE(plm_adapter_load(model, TINY("llama_lora_q8.gguf"), &ad[1]) == PLM_OK);
    CHECK(plm_adapter_n_targets(ad[0]) == 14 && plm_adapter_rank(ad[0]) == 4 && plm_adapter_alpha(ad[0]) == 8.0f);
    CHECK(plm_adapter_alpha(ad[1]) == 4.0f && plm_adapter_model(ad[1]) == model);
}

static void test_matches_peft(void) {
    REQUIRE(model && ad[1]);
    plm_model_info info;
    plm_model_get_info(model, &info);
    float *l = malloc((size_t)MAX_T * (size_t)info.n_vocab * sizeof(float));
    float *l1 = malloc((size_t)MAX_T * (size_t)info.n_vocab * sizeof(float));
    REQUIRE(l && l1);
    /* n_batch 64: one pass; 5: micro-batches; 1: token by token (the delta per row must not care) */
    plm_context *big = new_ctx(64, 2), *small = new_ctx(5, 2), *one = new_ctx(1, 1);
    REQUIRE(big && small && one);
    for (int c = 0; c < n_cases; c++) {
        REQUIRE(set_case(big, &cases[c]) == PLM_OK && set_case(small, &cases[c]) == PLM_OK &&
                set_case(one, &cases[c]) == PLM_OK);
        float worst = 0, moved = 0;
        bool same = true;
        for (int si = 0; si < cases[c].n_seq; si++) {
            const seq_ref *s = &cases[c].seq[si];
            REQUIRE(run_seq(big, s, l, info.n_vocab));
            for (int i = 0; i < s->n; i++)
                for (int k = 0; k < n_cols; k++)
                    worst = fmaxf(worst, fabsf(l[(size_t)i * (size_t)info.n_vocab + (size_t)cols[k]] - s->logits[i][k]));
            for (plm_context *o = small; o; o = o == small ? one : NULL) {
                REQUIRE(run_seq(o, s, l1, info.n_vocab));
                same = same && memcmp(l, l1, (size_t)s->n * (size_t)info.n_vocab * sizeof(float)) == 0;
            }
            /* without adapters the logits must differ: the adapter does something */
            REQUIRE(plm_context_set_adapters(small, 0, NULL, NULL) == PLM_OK);
            REQUIRE(run_seq(small, s, l1, info.n_vocab));
            for (int i = 0; i < s->n * info.n_vocab; i++) moved = fmaxf(moved, fabsf(l[i] - l1[i]));
            REQUIRE(set_case(small, &cases[c]) == PLM_OK);
        }
        fprintf(stderr, "  %-5s max |d| vs PEFT %.5f (the adapter moves logits by up to %.2f)\n", cases[c].name,
                (double)worst, (double)moved);
        CHECKF(worst <= TOL_LOGIT, "%s: logits differ from transformers + PEFT by up to %.5f", cases[c].name, (double)worst);
        CHECKF(moved > 1.0f, "%s: the adapter changes logits by only %.5f", cases[c].name, (double)moved);
        CHECKF(same, "%s: logits depend on the batch split or the thread count", cases[c].name);
    }
    plm_context_free(big);
    plm_context_free(small);
    plm_context_free(one);
    free(l);
    free(l1);
}

/* Adapter 1 written as an equal adapter of rank 32 (tools/make_tiny_lora_stacked.py: A stacked 8 times, B / 8
 * repeated, alpha times 8) gives the same bits as adapter 1 itself, alone and beside adapter 2 (whose A is rows of
 * rank 4 where the rank-32 A is in the x16 layout on AVX-512, so one product holds both kinds), at 1 and 2 threads
 * (A x split by groups of 16 rows) and in one pass or token by token. */
static void test_rank32_equals_rank4(void) {
    REQUIRE(model && ad[1]);
    plm_adapter *r32 = NULL;
    REQUIRE(plm_adapter_load(model, TINY("llama_lora_r32.gguf"), &r32) == PLM_OK);
    CHECK(plm_adapter_rank(r32) == 32 && plm_adapter_alpha(r32) == 64.0f);
    plm_model_info info;
    plm_model_get_info(model, &info);
    float *l = malloc((size_t)MAX_T * (size_t)info.n_vocab * sizeof(float));
    float *l1 = malloc((size_t)MAX_T * (size_t)info.n_vocab * sizeof(float));
    REQUIRE(l && l1);
    const struct { int n_batch, n_threads; } shapes[] = {{64, 2}, {64, 1}, {1, 2}};
    int compared = 0;
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        plm_context *ref = new_ctx(shapes[k].n_batch, shapes[k].n_threads), *ctx = new_ctx(shapes[k].n_batch, shapes[k].n_threads);
        REQUIRE(ref && ctx);
        for (int c = 0; c < n_cases; c++) {
            if (cases[c].scale[0] == 0.0f) continue; /* adapter 1 not in the case */
            REQUIRE(set_case(ref, &cases[c]) == PLM_OK);
            plm_adapter *list[2] = {r32, ad[1]};
            const float sc[2] = {cases[c].scale[0], cases[c].scale[1]};
            REQUIRE(plm_context_set_adapters(ctx, sc[1] != 0.0f ? 2 : 1, list, sc) == PLM_OK);
            for (int si = 0; si < cases[c].n_seq; si++) {
                const seq_ref *s = &cases[c].seq[si];
                REQUIRE(run_seq(ref, s, l, info.n_vocab) && run_seq(ctx, s, l1, info.n_vocab));
                CHECKF(memcmp(l, l1, (size_t)s->n * (size_t)info.n_vocab * sizeof(float)) == 0,
                       "%s, sequence %d, n_batch %d, %d threads: the rank-32 adapter's logits differ from rank 4's",
                       cases[c].name, si, shapes[k].n_batch, shapes[k].n_threads);
                compared++;
            }
        }
        plm_context_free(ref);
        plm_context_free(ctx);
    }
    CHECK(compared >= 6);
    plm_adapter_free(r32);
    free(l);
    free(l1);
}

/* Two contexts of one model, adapter 1 and adapter 2, decoding at the same time on two threads. */
typedef struct job {
    plm_context *ctx;
    const seq_ref *s;
    const float *want; /* the context's result computed alone */
    int n_vocab, rounds;
    bool ok;
    float *buf;
    pthread_barrier_t *start;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    pthread_barrier_wait(j->start);
    j->ok = true;
    for (int r = 0; r < j->rounds && j->ok; r++)
        j->ok = run_seq(j->ctx, j->s, j->buf, j->n_vocab) &&
                memcmp(j->buf, j->want, (size_t)j->s->n * (size_t)j->n_vocab * sizeof(float)) == 0;
    return NULL;
}

static void test_two_contexts_concurrently(void) {
    REQUIRE(model && ad[1]);
    plm_model_info info;
    plm_model_get_info(model, &info);
    const size_t row = (size_t)MAX_T * (size_t)info.n_vocab;
    float *mem = malloc(4 * row * sizeof(float));
    REQUIRE(mem);
    plm_context *ctx[2] = {new_ctx(64, 1), new_ctx(64, 1)};
    REQUIRE(ctx[0] && ctx[1]);
    job jobs[2];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    for (int i = 0; i < 2; i++) {
        REQUIRE(plm_context_set_adapters(ctx[i], 1, &ad[i], NULL) == PLM_OK);
        const seq_ref *s = &cases[i].seq[0]; /* case a1 is adapter 1 alone, a2 adapter 2 alone */
        jobs[i] = (job){.ctx = ctx[i], .s = s, .want = mem + 2 * (size_t)i * row, .n_vocab = info.n_vocab,
                        .rounds = 20, .buf = mem + (2 * (size_t)i + 1) * row, .start = &start};
        REQUIRE(run_seq(ctx[i], s, (float *)jobs[i].want, info.n_vocab));
        float worst = 0;
        for (int p = 0; p < s->n; p++)
            for (int k = 0; k < n_cols; k++)
                worst = fmaxf(worst, fabsf(jobs[i].want[(size_t)p * (size_t)info.n_vocab + (size_t)cols[k]] - s->logits[p][k]));
        CHECKF(worst <= TOL_LOGIT, "context %d alone: logits differ from PEFT by %.5f", i, (double)worst);
    }
    CHECK(memcmp(jobs[0].want, jobs[1].want, (size_t)cases[0].seq[0].n * (size_t)info.n_vocab * sizeof(float)) != 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) REQUIRE(pthread_create(&th[i], NULL, run_job, &jobs[i]) == 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    CHECKF(jobs[0].ok && jobs[1].ok, "concurrent contexts: adapter 1 %s, adapter 2 %s", jobs[0].ok ? "ok" : "differs",
           jobs[1].ok ? "ok" : "differs");
    plm_context_free(ctx[0]);
    plm_context_free(ctx[1]);
    free(mem);
}

static void test_state_names_its_adapters(void) {
    REQUIRE(model && ad[1]);
    plm_context *a = new_ctx(64, 1), *b = new_ctx(64, 1);
    REQUIRE(a && b);
    REQUIRE(plm_context_set_adapters(a, 1, &ad[0], NULL) == PLM_OK);
    plm_batch batch = {.n_tokens = 4, .token = cases[0].seq[0].ids};
    REQUIRE(plm_decode(a, &batch) == PLM_OK);
    size_t n = plm_context_state_size(a), got;
    void *buf = malloc(n);
    REQUIRE(buf);
    REQUIRE(plm_context_state_save(a, buf, n, &got) == PLM_OK);
    CHECK(plm_context_state_load(b, buf, n) == PLM_ERR_FORMAT); /* no adapters */
    CHECK(strstr(plm_last_error(), "adapter") != NULL);
    float half = 0.5f;
    REQUIRE(plm_context_set_adapters(b, 1, &ad[0], &half) == PLM_OK);
    CHECK(plm_context_state_load(b, buf, n) == PLM_ERR_FORMAT); /* another scale */
    REQUIRE(plm_context_set_adapters(b, 1, &ad[1], NULL) == PLM_OK);
    CHECK(plm_context_state_load(b, buf, n) == PLM_ERR_FORMAT); /* another adapter */
    REQUIRE(plm_context_set_adapters(b, 1, &ad[0], NULL) == PLM_OK);
    CHECK(plm_context_state_load(b, buf, n) == PLM_OK);
    CHECK(plm_kv_used(b) == 4);
    /* and a state saved without adapters does not load under some */
    plm_context_set_adapters(a, 0, NULL, NULL);
    REQUIRE(plm_context_state_save(a, buf, n, &got) == PLM_OK);
    CHECK(plm_context_state_load(b, buf, got) == PLM_ERR_FORMAT);
    free(buf);
    plm_context_free(a);
    plm_context_free(b);
}

static void test_refusals(void) {
    REQUIRE(model && ad[1]);
    plm_adapter *x = NULL;
    /* a model file is not an adapter */
    CHECK(plm_adapter_load(model, TINY("llama.gguf"), &x) == PLM_ERR_FORMAT && !x);
    CHECK(strstr(plm_last_error(), "general.type") != NULL);
    CHECK(plm_adapter_load(model, TINY("no_such_adapter.gguf"), &x) == PLM_ERR_IO && !x);
    CHECK(plm_adapter_load(NULL, TINY("llama_lora.gguf"), &x) == PLM_ERR_ARG);
    /* another architecture */
    plm_model_params mp = plm_model_default_params();
    plm_model *qwen = NULL, *mistral = NULL;
    REQUIRE(plm_model_load(TINY("qwen2.gguf"), &mp, &qwen) == PLM_OK);
    CHECK(plm_adapter_load(qwen, TINY("llama_lora.gguf"), &x) == PLM_ERR_FORMAT && !x);
    CHECK(strstr(plm_last_error(), "architecture 'llama'") != NULL);
    /* same architecture, other shapes (mistral's hidden size is 64, the adapter's 32) */
    REQUIRE(plm_model_load(TINY("mistral.gguf"), &mp, &mistral) == PLM_OK);
    CHECK(plm_adapter_load(mistral, TINY("llama_lora.gguf"), &x) == PLM_ERR_FORMAT && !x);
    CHECK(strstr(plm_last_error(), "shapes") != NULL);
    fprintf(stderr, "  %s\n", plm_last_error());
    /* a context of another model, too many adapters, a bad scale */
    plm_context *ctx = NULL;
    plm_context_params cp = plm_context_default_params();
    cp.n_ctx = 32;
    REQUIRE(plm_context_create(mistral, &cp, &ctx) == PLM_OK);
    CHECK(plm_context_set_adapters(ctx, 1, &ad[0], NULL) == PLM_ERR_ARG);
    CHECK(plm_context_n_adapters(ctx) == 0);
    plm_context_free(ctx);
    REQUIRE(plm_context_create(model, &cp, &ctx) == PLM_OK);
    plm_adapter *many[PLM_N_ADAPTERS_MAX + 1];
    for (int i = 0; i <= PLM_N_ADAPTERS_MAX; i++) many[i] = ad[i % 2];
    CHECK(plm_context_set_adapters(ctx, PLM_N_ADAPTERS_MAX + 1, many, NULL) == PLM_ERR_ARG);
    CHECK(plm_context_set_adapters(ctx, PLM_N_ADAPTERS_MAX, many, NULL) == PLM_OK);
    CHECK(plm_context_n_adapters(ctx) == PLM_N_ADAPTERS_MAX);
    float nan_scale = NAN;
    CHECK(plm_context_set_adapters(ctx, 1, &ad[0], &nan_scale) == PLM_ERR_ARG);
    CHECK(plm_context_n_adapters(ctx) == PLM_N_ADAPTERS_MAX); /* unchanged on error */
    plm_context_free(ctx);
    plm_model_free(qwen);
    plm_model_free(mistral);
}

int main(void) {
    RUN(setup);
    RUN(test_matches_peft);
    RUN(test_rank32_equals_rank4);
    RUN(test_two_contexts_concurrently);
    RUN(test_state_names_its_adapters);
    RUN(test_refusals);
    plm_adapter_free(ad[0]);
    plm_adapter_free(ad[1]);
    plm_model_free(model);
    return TEST_SUMMARY();
}
