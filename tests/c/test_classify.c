/*
 * test_classify.c — label scoring in one batched pass against a naive reference
 * that evaluates prompt + label as separate full sequences; multi-label yes/no;
 * grouping when labels outnumber sequence ids; embeddings against a reference
 * pooling of per-token states obtained one prefix at a time.
 */
#include "pocketlm.h"
#include "test.h"

#include <math.h>

static const double TOL_SCORE = 1e-4; /* classify vs naive, log-probabilities and probabilities */
static const double TOL_EMBED = 1e-4;

static plm_model *model;
static int32_t n_vocab, n_embd;

static plm_context *new_ctx(int n_ctx, int n_seq) {
    plm_context_params p = plm_context_default_params();
    p.n_ctx = n_ctx;
    p.n_seq_max = n_seq;
    p.n_threads = 2;
    plm_context *ctx = NULL;
    if (plm_context_create(model, &p, &ctx)) fprintf(stderr, "  %s\n", plm_last_error());
    return ctx;
}

static int tok(const char *text, bool bos, plm_token *out, int cap) {
    int32_t n = 0;
    plm_tokenize(model, text, strlen(text), bos, true, out, cap, &n);
    return n;
}

static double log_softmax_at(const float *l, plm_token t) {
    float mx = l[0];
    for (int v = 1; v < n_vocab; v++) mx = l[v] > mx ? l[v] : mx;
    double s = 0;
    for (int v = 0; v < n_vocab; v++) s += exp((double)(l[v] - mx));
    return (double)(l[t] - mx) - log(s);
}

/* Naive: decode prompt + label from scratch with logits everywhere. */
static double naive_score(plm_context *ctx, const plm_token *p, int np, const plm_token *lab, int nl) {
    plm_token all[512];
    int8_t want[512];
    memcpy(all, p, (size_t)np * sizeof(plm_token));
    memcpy(all + np, lab, (size_t)nl * sizeof(plm_token));
    for (int i = 0; i < np + nl; i++) want[i] = 1;
    plm_kv_clear(ctx);
    plm_batch b = {.n_tokens = np + nl, .token = all, .logits = want};
    if (plm_decode(ctx, &b)) return NAN;
    double s = 0;
    for (int j = 0; j < nl; j++) s += log_softmax_at(plm_context_logits(ctx, np + j - 1), lab[j]);
    return s;
}

static const char *PROMPT =
    "<|im_start|>user\nClassify the sentiment of this review: \"The battery died after two days and support never "
    "answered my emails.\"<|im_end|>\n<|im_start|>assistant\nSentiment:";
static const char *LABELS[] = {" positive", " negative", " neutral", " mixed feelings", " angry and disappointed"};
enum { NL = 5 };

/* Quick mode (test.h; make test-valgrind): the classification and embedding
 * paths without the naive references, which cost ten times as many tokens. */
static void quick_classify_paths(void) {
    plm_token p[256], lab[NL][16];
    int np = tok(PROMPT, true, p, 256), nl[NL];
    const plm_token *lp[NL];
    for (int i = 0; i < NL; i++) {
        nl[i] = tok(LABELS[i], false, lab[i], 16);
        lp[i] = lab[i];
    }
    plm_context *ctx = new_ctx(512, 8), *small = new_ctx(512, 3);
    REQUIRE(ctx && small);
    float lpo[NL], prob[NL], again[NL];
    REQUIRE(plm_classify(ctx, p, np, lp, nl, NL, NULL, lpo, prob) == PLM_OK);
    CHECK(prob[1] > 0.5f);
    REQUIRE(plm_classify(small, p, np, lp, nl, NL, NULL, again, NULL) == PLM_OK); /* in groups */
    for (int i = 0; i < NL; i++) CHECK(fabs(again[i] - lpo[i]) <= TOL_SCORE);
    plm_classify_params cp = plm_classify_default_params();
    cp.multi_label = true;
    REQUIRE(plm_classify(ctx, p, np, lp, nl, 2, &cp, NULL, prob) == PLM_OK);
    CHECK(prob[0] > 0 && prob[0] < 1 && prob[1] > 0 && prob[1] < 1);
    const plm_token *texts[2] = {p, lab[4]};
    int32_t lens[2] = {8, nl[4]};
    float *emb = malloc(2 * (size_t)n_embd * sizeof(float));
    REQUIRE(emb);
    REQUIRE(plm_embed(ctx, texts, lens, 2, PLM_POOL_MEAN, true, emb) == PLM_OK);
    double ss = 0;
    for (int e = 0; e < n_embd; e++) ss += (double)emb[e] * emb[e];
    CHECK(fabs(ss - 1) < 1e-5);
    free(emb);
    plm_context_free(small);
    plm_context_free(ctx);
}

static void test_matches_naive_reference(void) {
    if (t_quick()) {
        quick_classify_paths();
        return;
    }
    plm_token p[256], lab[NL][16];
    int np = tok(PROMPT, true, p, 256), nl[NL];
    const plm_token *lp[NL];
    for (int i = 0; i < NL; i++) {
        nl[i] = tok(LABELS[i], false, lab[i], 16);
        lp[i] = lab[i];
    }
    plm_context *ctx = new_ctx(512, 8), *ref = new_ctx(512, 1);
    REQUIRE(ctx && ref);
    float lpo[NL], prob[NL];
    REQUIRE(plm_classify(ctx, p, np, lp, nl, NL, NULL, lpo, prob) == PLM_OK);
    double z = 0, naive[NL];
    for (int i = 0; i < NL; i++) {
        naive[i] = naive_score(ref, p, np, lab[i], nl[i]);
        z += exp(naive[i]);
    }
    double worst = 0, worst_p = 0;
    for (int i = 0; i < NL; i++) {
        worst = fmax(worst, fabs(lpo[i] - naive[i]));
        worst_p = fmax(worst_p, fabs(prob[i] - exp(naive[i]) / z));
    }
    fprintf(stderr, "  P(negative) = %.3f; max |diff| vs naive: log-prob %.2g, probability %.2g\n", (double)prob[1], worst, worst_p);
    CHECK(worst <= TOL_SCORE && worst_p <= TOL_SCORE);
    int best = 0;
    for (int i = 1; i < NL; i++) if (prob[i] > prob[best]) best = i;
    CHECKF(best == 1 || best == 4, "the model thinks the review is%s", LABELS[best]); /* negative */
    /* the prompt stays cached in sequence 0: a second call evaluates nothing new and agrees */
    CHECK(plm_kv_seq_pos_max(ctx, 0) == np - 1 && plm_kv_used(ctx) == np);
    float again[NL];
    REQUIRE(plm_classify(ctx, p, np, lp, nl, NL, NULL, again, NULL) == PLM_OK);
    for (int i = 0; i < NL; i++) CHECK(fabs(again[i] - lpo[i]) <= TOL_SCORE);
    /* mean mode divides by the label length */
    plm_classify_params cp = plm_classify_default_params();
    cp.mode = PLM_SCORE_MEAN;
    REQUIRE(plm_classify(ctx, p, np, lp, nl, NL, &cp, again, NULL) == PLM_OK);
    for (int i = 0; i < NL; i++) CHECK(fabs(again[i] - lpo[i] / nl[i]) <= TOL_SCORE);
    /* fewer sequence ids than labels: scored in groups, same result */
    plm_context *small = new_ctx(512, 3);
    REQUIRE(small);
    REQUIRE(plm_classify(small, p, np, lp, nl, NL, NULL, again, NULL) == PLM_OK);
    for (int i = 0; i < NL; i++) CHECK(fabs(again[i] - lpo[i]) <= TOL_SCORE);
    plm_context_free(small);
    plm_context_free(ctx);
    plm_context_free(ref);
}

static void test_multi_label(void) {
    if (t_quick()) {
        fprintf(stderr, "  in the quick run's first test (POCKETLM_TEST_QUICK)\n");
        return;
    }
    const char *text = "<|im_start|>user\nThe match went to extra time and the striker scored a stunning goal.\n";
    const char *sfx[3] = {"Is this about sports? Answer yes or no.<|im_end|>\n<|im_start|>assistant\nAnswer:",
                          "Is this about cooking? Answer yes or no.<|im_end|>\n<|im_start|>assistant\nAnswer:",
                          "Is this about football? Answer yes or no.<|im_end|>\n<|im_start|>assistant\nAnswer:"};
    plm_token p[128], s[3][64];
    int np = tok(text, true, p, 128), ns[3];
    const plm_token *sp[3];
    for (int i = 0; i < 3; i++) {
        ns[i] = tok(sfx[i], false, s[i], 64);
        sp[i] = s[i];
    }
    plm_context *ctx = new_ctx(512, 4), *ref = new_ctx(512, 1);
    REQUIRE(ctx && ref);
    plm_classify_params cp = plm_classify_default_params();
    cp.multi_label = true;
    float prob[3];
    REQUIRE(plm_classify(ctx, p, np, sp, ns, 3, &cp, NULL, prob) == PLM_OK);
    plm_token yes, no;
    REQUIRE(tok(" yes", false, &yes, 1) == 1 && tok(" no", false, &no, 1) == 1);
    for (int i = 0; i < 3; i++) {
        plm_token all[256];
        memcpy(all, p, (size_t)np * sizeof(plm_token));
        memcpy(all + np, s[i], (size_t)ns[i] * sizeof(plm_token));
        plm_kv_clear(ref);
        plm_batch b = {.n_tokens = np + ns[i], .token = all};
        REQUIRE(plm_decode(ref, &b) == PLM_OK);
        const float *l = plm_context_logits(ref, -1);
        double py = 1.0 / (1.0 + exp((double)(l[no] - l[yes])));
        CHECKF(fabs(py - prob[i]) <= TOL_SCORE, "label %d: %.5f vs naive %.5f", i, (double)prob[i], py);
    }
    fprintf(stderr, "  P(yes): sports %.3f, cooking %.3f, football %.3f\n", (double)prob[0], (double)prob[1], (double)prob[2]);
    plm_context_free(ctx);
    plm_context_free(ref);
}

static void test_classify_errors(void) {
    plm_context *ctx = new_ctx(64, 4);
    REQUIRE(ctx);
    plm_token p[4] = {1, 2, 3, 4}, l[1] = {5}, bad[1] = {n_vocab};
    const plm_token *lp[1] = {l}, *bp[1] = {bad};
    int32_t one = 1, zero = 0;
    float out[1];
    CHECK(plm_classify(ctx, p, 4, lp, &one, 0, NULL, out, out) == PLM_ERR_ARG);
    CHECK(strstr(plm_last_error(), "empty") != NULL);
    CHECK(plm_classify(ctx, p, 0, lp, &one, 1, NULL, out, out) == PLM_ERR_ARG);
    CHECK(plm_classify(ctx, p, 4, lp, &zero, 1, NULL, out, out) == PLM_ERR_ARG);
    CHECK(plm_classify(ctx, p, 4, bp, &one, 1, NULL, out, out) == PLM_ERR_ARG);
    static plm_token longp[100];
    for (int i = 0; i < 100; i++) longp[i] = 100 + i;
    CHECK(plm_classify(ctx, longp, 100, lp, &one, 1, NULL, out, out) == PLM_ERR_CONTEXT_FULL);
    plm_context_free(ctx);
}

static void test_embed_matches_reference_pooling(void) {
    if (t_quick()) {
        fprintf(stderr, "  in the quick run's first test (POCKETLM_TEST_QUICK)\n");
        return;
    }
    const char *texts[3] = {"The cat sat on the mat.", "Stock markets fell sharply on Monday.", "Bonjour, comment ça va ?"};
    plm_token t[3][64];
    int32_t n[3];
    const plm_token *tp[3];
    for (int i = 0; i < 3; i++) {
        n[i] = tok(texts[i], false, t[i], 64);
        tp[i] = t[i];
    }
    plm_context *ctx = new_ctx(256, 4);
    REQUIRE(ctx);
    float *mean = malloc(3 * (size_t)n_embd * sizeof(float)), *last = malloc(3 * (size_t)n_embd * sizeof(float));
    float *cls = malloc(3 * (size_t)n_embd * sizeof(float)), *norm = malloc(3 * (size_t)n_embd * sizeof(float));
    float *one = malloc((size_t)n_embd * sizeof(float));
    double *ref = malloc((size_t)n_embd * sizeof(double));
    REQUIRE(plm_embed(ctx, tp, n, 3, PLM_POOL_MEAN, false, mean) == PLM_OK);
    REQUIRE(plm_embed(ctx, tp, n, 3, PLM_POOL_LAST, false, last) == PLM_OK);
    REQUIRE(plm_embed(ctx, tp, n, 3, PLM_POOL_CLS, false, cls) == PLM_OK);
    REQUIRE(plm_embed(ctx, tp, n, 3, PLM_POOL_MEAN, true, norm) == PLM_OK);
    CHECK(plm_kv_used(ctx) == 0);
    double worst = 0;
    for (int i = 0; i < 3; i++) {
        /* token j's state = the last state of the prefix ending at j, one text at a time */
        for (int e = 0; e < n_embd; e++) ref[e] = 0;
        for (int j = 1; j <= n[i]; j++) {
            const plm_token *pre[1] = {t[i]};
            int32_t len = j;
            REQUIRE(plm_embed(ctx, pre, &len, 1, PLM_POOL_LAST, false, one) == PLM_OK);
            for (int e = 0; e < n_embd; e++) ref[e] += one[e];
            if (j == 1)
                for (int e = 0; e < n_embd; e++) worst = fmax(worst, fabs(one[e] - cls[i * n_embd + e]));
            if (j == n[i])
                for (int e = 0; e < n_embd; e++) worst = fmax(worst, fabs(one[e] - last[i * n_embd + e]));
        }
        double ss = 0;
        for (int e = 0; e < n_embd; e++) {
            ref[e] /= n[i];
            worst = fmax(worst, fabs(ref[e] - mean[i * n_embd + e]));
            ss += ref[e] * ref[e];
        }
        for (int e = 0; e < n_embd; e++) worst = fmax(worst, fabs(ref[e] / sqrt(ss) - norm[i * n_embd + e]));
    }
    fprintf(stderr, "  max |embed - reference pooling| = %.2g\n", worst);
    CHECK(worst <= TOL_EMBED);
    double ss = 0;
    for (int e = 0; e < n_embd; e++) ss += (double)norm[e] * norm[e];
    CHECK(fabs(ss - 1) < 1e-5);
    /* errors */
    int32_t z = 0;
    CHECK(plm_embed(ctx, tp, &z, 1, PLM_POOL_MEAN, false, one) == PLM_ERR_ARG);
    CHECK(plm_embed(ctx, tp, n, 0, PLM_POOL_MEAN, false, one) == PLM_ERR_ARG);
    CHECK(plm_embed(ctx, tp, n, 1, (plm_pooling)7, false, one) == PLM_ERR_ARG);
    free(mean); free(last); free(cls); free(norm); free(one); free(ref);
    plm_context_free(ctx);
}

int main(void) {
    if (plm_model_load(NULL, NULL, &model)) {
        fprintf(stderr, "cannot load the default model: %s\n", plm_last_error());
        printf("0 passed, 1 failed\n");
        return 1;
    }
    plm_model_info in;
    plm_model_get_info(model, &in);
    n_vocab = in.n_vocab;
    n_embd = in.n_embd;
    RUN(test_matches_naive_reference);
    RUN(test_multi_label);
    RUN(test_classify_errors);
    RUN(test_embed_matches_reference_pooling);
    plm_model_free(model);
    return TEST_SUMMARY();
}
