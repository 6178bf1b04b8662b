/*
 * test_bert.c — the bert family and WordPiece against transformers, offline.
 *
 * tools/make_tiny_bert.py made tests/data/tiny/bert.gguf (random weights,
 * hidden 32, 2 layers, F16 matrices, a 2,799-token subset of all-MiniLM-L6-v2's
 * WordPiece vocabulary) and stored, in tiny/bert.txt, BertTokenizerFast's ids
 * and BertModel's mean-pooled last hidden state for five texts (accents, CJK,
 * punctuation, an uncoverable symbol). Also: several texts per decode give the
 * same rows as one at a time, and what an encoder must refuse is refused with
 * a message that says why. (The real model is tested in tests/python/test_bert.py.)
 */
#include "pocketlm.h"
#include "test.h"

/* max |ours - transformers| over the pooled states (values up to 2): our F16
 * rounding of k and v in attention; measured 1.0e-5. A wrong pooling, mask or
 * norm moves them by tenths. */
static const double TOL = 1e-3;

#define N_TEXTS 5
#define MAX_T 48
#define E 32

static struct ref {
    char text[256];
    int n;
    plm_token ids[MAX_T];
    float emb[E];
} refs[N_TEXTS];
static int n_refs;

static void load_refs(void) {
    FILE *f = fopen(DATA("tiny/bert.txt"), "r");
    if (!f) return;
    char line[4096];
    while (fgets(line, sizeof line, f) && n_refs <= N_TEXTS) {
        if (!strncmp(line, "text ", 5)) {
            if (n_refs == N_TEXTS) break;
            struct ref *r = &refs[n_refs++];
            size_t k = 0;
            for (const char *p = line + 5; p[0] && p[1] && p[0] != '\n' && k + 1 < sizeof r->text; p += 2) {
                unsigned v;
                sscanf(p, "%2x", &v);
                r->text[k++] = (char)v;
            }
            r->text[k] = 0;
        } else if (!strncmp(line, "ids ", 4) && n_refs) {
            struct ref *r = &refs[n_refs - 1];
            char *p = line + 4, *end;
            for (long v; r->n < MAX_T && (v = strtol(p, &end, 10), end != p); p = end) r->ids[r->n++] = (plm_token)v;
        } else if (!strncmp(line, "emb ", 4) && n_refs) {
            char *p = line + 4, *end;
            for (int i = 0; i < E; i++, p = end) refs[n_refs - 1].emb[i] = strtof(p, &end);
        }
    }
    fclose(f);
}

static plm_model *model;

static void test_model(void) {
    REQUIRE(model);
    plm_model_info in;
    REQUIRE(plm_model_get_info(model, &in) == PLM_OK);
    CHECK(strcmp(in.arch, "bert") == 0);
    CHECK(in.n_embd == E && in.n_ctx_train == 64);
    CHECK(plm_model_is_encoder(model));
    CHECK(plm_model_embed_pooling(model) == PLM_POOL_MEAN);
}

static void test_tokens(void) {
    REQUIRE(model && n_refs == N_TEXTS);
    for (int i = 0; i < n_refs; i++) {
        plm_token t[MAX_T];
        int32_t n = 0;
        CHECK(plm_tokenize(model, refs[i].text, strlen(refs[i].text), true, false, t, MAX_T, &n) == PLM_OK);
        CHECKF(n == refs[i].n && !memcmp(t, refs[i].ids, (size_t)n * sizeof(plm_token)), "text %d: %d tokens, want %d", i, n, refs[i].n);
    }
}

static void test_embeddings(void) {
    REQUIRE(model && n_refs == N_TEXTS);
    plm_context_params cp = plm_context_default_params();
    cp.n_threads = 2;
    plm_context *ctx = NULL;
    REQUIRE(plm_context_create(model, &cp, &ctx) == PLM_OK);
    const plm_token *texts[N_TEXTS];
    int32_t lens[N_TEXTS];
    for (int i = 0; i < N_TEXTS; i++) {
        texts[i] = refs[i].ids;
        lens[i] = refs[i].n;
    }
    float all[N_TEXTS * E], one[E];
    CHECK(plm_embed(ctx, texts, lens, N_TEXTS, PLM_POOL_MEAN, false, all) == PLM_OK);
    double worst = 0, worst_batch = 0;
    for (int i = 0; i < N_TEXTS; i++) {
        for (int k = 0; k < E; k++) worst = fmax(worst, fabs((double)all[i * E + k] - refs[i].emb[k]));
        CHECK(plm_embed(ctx, &texts[i], &lens[i], 1, PLM_POOL_MEAN, false, one) == PLM_OK);
        for (int k = 0; k < E; k++) worst_batch = fmax(worst_batch, fabs((double)all[i * E + k] - one[k]));
    }
    CHECKF(worst < TOL, "max difference from transformers %g", worst);
    CHECKF(worst_batch < 1e-5, "batched and single texts differ by %g", worst_batch);
    /* cls pooling is the first row: it differs from the mean */
    CHECK(plm_embed(ctx, texts, lens, 1, PLM_POOL_CLS, false, one) == PLM_OK);
    double d = 0;
    for (int k = 0; k < E; k++) d = fmax(d, fabs((double)one[k] - all[k]));
    CHECK(d > 0.05);
    plm_context_free(ctx);
}

static void test_refusals(void) {
    REQUIRE(model && n_refs);
    plm_context_params cp = plm_context_default_params();
    cp.n_threads = 1;
    cp.n_batch = 16;
    plm_context *ctx = NULL;
    REQUIRE(plm_context_create(model, &cp, &ctx) == PLM_OK);
    /* logits */
    plm_batch b = {.n_tokens = refs[0].n, .token = refs[0].ids};
    CHECK(plm_decode(ctx, &b) == PLM_ERR_UNSUPPORTED);
    CHECK(strstr(plm_last_error(), "encoder") != NULL);
    /* a text longer than one micro-batch (n_batch 16) */
    const plm_token *t = refs[0].ids;
    CHECK(refs[0].n > 16);
    CHECK(plm_embed(ctx, &t, &refs[0].n, 1, PLM_POOL_MEAN, true, (float[E]){0}) == PLM_ERR_CONTEXT_FULL);
    CHECK(strstr(plm_last_error(), "n_batch") != NULL);
    /* a sequence over two decodes */
    int8_t none[8] = {0};
    plm_batch b1 = {.n_tokens = 4, .token = refs[0].ids, .logits = none};
    plm_batch b2 = {.n_tokens = 4, .token = refs[0].ids + 4, .logits = none};
    CHECK(plm_decode(ctx, &b1) == PLM_OK);
    CHECK(plm_decode(ctx, &b2) == PLM_ERR_ARG);
    CHECK(strstr(plm_last_error(), "whole") != NULL);
    plm_context_free(ctx);
    /* more tokens than the model has positions (64) */
    cp.n_ctx = 128;
    cp.n_batch = 128;
    REQUIRE(plm_context_create(model, &cp, &ctx) == PLM_OK);
    plm_token many[80];
    for (int i = 0; i < 80; i++) many[i] = refs[0].ids[i % refs[0].n];
    int32_t n80 = 80;
    const plm_token *mp = many;
    CHECK(plm_embed(ctx, &mp, &n80, 1, PLM_POOL_MEAN, true, (float[E]){0}) == PLM_ERR_ARG);
    CHECK(strstr(plm_last_error(), "positions") != NULL);
    plm_context_free(ctx);
}

int main(void) {
    load_refs();
    if (plm_model_load(DATA("tiny/bert.gguf"), NULL, &model) != PLM_OK) fprintf(stderr, "load: %s\n", plm_last_error());
    RUN(test_model);
    RUN(test_tokens);
    RUN(test_embeddings);
    RUN(test_refusals);
    plm_model_free(model);
    return TEST_SUMMARY();
}
