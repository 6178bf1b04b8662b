/*
 * test_classify.c — label scoring in one batched pass against a naive reference
 * that evaluates prompt + label as separate full sequences; multi-label yes/no;
 * grouping when labels outnumber sequence ids; embeddings against a reference
 * pooling of per-token states obtained one prefix at a time; the zero-shot
 * prompt (plm_classify_prompt) against the template's pieces tokenized one by
 * one, and its rule for the space before a label.
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

/* ------------------------------------------------ plm_classify_prompt */

/* Appends the tokens of text (no BOS) to out[*n]. */
static void add_tokens(const char *text, bool special, plm_token *out, int32_t *n, int32_t cap) {
    int32_t k = 0;
    if (plm_tokenize(model, text, strlen(text), false, special, out + *n, cap - *n, &k) == PLM_OK) *n += k;
    else *n = cap + 1; /* never equal to a real prompt */
}

static int32_t bos_prefix(plm_token *out) {
    plm_model_info in;
    plm_model_get_info(model, &in);
    if (!in.add_bos || in.bos < 0) return 0;
    out[0] = in.bos;
    return 1;
}

static bool same_tokens(const plm_token *a, int32_t na, const plm_token *b, int32_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof(plm_token)) == 0);
}

/* Builds the prompt of text under tmpl with labels; returns the status. */
static plm_status build(const char *tmpl, const char *text, const char *const *labels, int32_t n_labels, bool multi,
                        plm_token **prompt, int32_t *n_prompt, plm_token **lab, int32_t *lens) {
    size_t ll[8];
    for (int32_t i = 0; i < n_labels && i < 8; i++) ll[i] = strlen(labels[i]);
    return plm_classify_prompt(model, tmpl, tmpl ? strlen(tmpl) : 0, text, strlen(text), labels, ll, n_labels, multi,
                               prompt, n_prompt, lab, lens);
}

/* The template is cut at its placeholders, each piece tokenized on its own:
 * literals with special tokens matched, inserted text as plain text with the
 * spaces before its placeholder. */
static void test_prompt_pieces(void) {
    const char *labels[2] = {"billing", "technical problem"};
    plm_token *p = NULL, *lab = NULL;
    int32_t np = 0, lens[2];
    REQUIRE(build("Message: {text}\n<|im_start|>Team ({labels}):", "Card charged twice.", labels, 2, false, &p, &np,
                  &lab, lens) == PLM_OK);
    plm_token want[128];
    int32_t nw = bos_prefix(want);
    add_tokens("Message:", true, want, &nw, 128);
    add_tokens(" Card charged twice.", false, want, &nw, 128);
    add_tokens("\n<|im_start|>Team (", true, want, &nw, 128);
    add_tokens("billing, technical problem", false, want, &nw, 128);
    add_tokens("):", true, want, &nw, 128);
    CHECK(same_tokens(p, np, want, nw));
    plm_token w1[16], w2[16];
    int32_t n1 = 0, n2 = 0;
    add_tokens(" billing", false, w1, &n1, 16);
    add_tokens(" technical problem", false, w2, &n2, 16);
    CHECK(same_tokens(lab, lens[0], w1, n1));
    CHECK(same_tokens(lab + lens[0], lens[1], w2, n2));
    plm_free(p);
    plm_free(lab);

    /* multi-label: from {label} on is each label's suffix */
    REQUIRE(build("Text: {text}\nAbout {label}? Answer:", "The striker scored.", labels, 2, true, &p, &np, &lab,
                  lens) == PLM_OK);
    nw = bos_prefix(want);
    add_tokens("Text:", true, want, &nw, 128);
    add_tokens(" The striker scored.", false, want, &nw, 128);
    add_tokens("\nAbout", true, want, &nw, 128);
    CHECK(same_tokens(p, np, want, nw));
    n1 = n2 = 0;
    add_tokens(" technical problem", false, w1, &n1, 16);
    add_tokens("? Answer:", true, w1, &n1, 16);
    CHECK(same_tokens(lab + lens[0], lens[1], w1, n1));
    plm_free(p);
    plm_free(lab);

    /* the default template: the instruction as a user turn of the model's chat format, then "Answer:" */
    plm_chat_format fmt;
    REQUIRE(plm_chat_detect_model(model, &fmt) == PLM_OK);
    plm_chat_message msg = {"user", 4, PLM_CLASSIFY_INSTRUCTION, strlen(PLM_CLASSIFY_INSTRUCTION)};
    char tmpl[1024];
    size_t nt = 0;
    REQUIRE(plm_chat_render(&fmt, &msg, 1, true, tmpl, sizeof tmpl - 16, &nt) == PLM_OK);
    strcpy(tmpl + nt, "Answer:");
    plm_token *p2 = NULL, *lab2 = NULL;
    int32_t np2 = 0, lens2[2];
    REQUIRE(build(NULL, "Card charged twice.", labels, 2, false, &p, &np, &lab, lens) == PLM_OK);
    REQUIRE(build(tmpl, "Card charged twice.", labels, 2, false, &p2, &np2, &lab2, lens2) == PLM_OK);
    CHECK(np > 20 && same_tokens(p, np, p2, np2));
    CHECK(same_tokens(lab, lens[0] + lens[1], lab2, lens2[0] + lens2[1]));
    plm_free(p);
    plm_free(lab);
    plm_free(p2);
    plm_free(lab2);
}

/* A label follows the prompt after a space unless the prompt ends in Unicode
 * whitespace (White_Space, as the pre-tokenizer's \s). */
static void test_prompt_label_space(void) {
    static const struct {
        const char *text;
        bool space;
    } cases[] = {
        {"great", true},          {"great\xc2\xa0", false}, /* no-break space U+00A0 */
        {"great\xe3\x80\x80", false}, /* ideographic space U+3000 */
        {"great\t", false},       {"great\n", false},       {"great\xe2\x80\xa8", false}, /* line separator */
        {"great\xc2", true},      /* a truncated character is not whitespace */
        {"great\x1c", true},      /* a separator control: not White_Space */
        {"great\xe2\x80\x8b", true}, /* zero-width space: not White_Space */
    };
    const char *labels[2] = {"good", "bad"};
    plm_context *ctx = new_ctx(256, 4);
    REQUIRE(ctx);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        plm_token *p = NULL, *lab = NULL;
        int32_t np = 0, lens[2];
        REQUIRE(build("Review: {text}", cases[c].text, labels, 2, false, &p, &np, &lab, lens) == PLM_OK);
        plm_token want[64];
        int32_t nw = bos_prefix(want);
        char spaced[64];
        snprintf(spaced, sizeof spaced, " %s", cases[c].text);
        add_tokens("Review:", true, want, &nw, 64);
        add_tokens(spaced, false, want, &nw, 64);
        CHECKF(same_tokens(p, np, want, nw), "case %zu: prompt", c);
        plm_token w[16];
        int32_t n = 0;
        add_tokens(cases[c].space ? " bad" : "bad", false, w, &n, 16);
        CHECKF(same_tokens(lab + lens[0], lens[1], w, n), "case %zu: label tokens", c);
        /* plm_classify_text scores exactly these tokens */
        const plm_token *lp[2] = {lab, lab + lens[0]};
        float a[2], b[2];
        size_t ll[2] = {4, 3};
        REQUIRE(plm_classify(ctx, p, np, lp, lens, 2, NULL, a, NULL) == PLM_OK);
        REQUIRE(plm_classify_text(ctx, "Review: {text}", 14, cases[c].text, strlen(cases[c].text), labels, ll, 2, NULL,
                                  b, NULL) == PLM_OK);
        CHECKF(a[0] == b[0] && a[1] == b[1], "case %zu: %g %g vs %g %g", c, (double)a[0], (double)a[1], (double)b[0],
               (double)b[1]);
        plm_free(p);
        plm_free(lab);
    }
    plm_context_free(ctx);
}

static void test_prompt_errors(void) {
    const char *labels[2] = {"good", " \xe3\x80\x80"};
    plm_token *p = (plm_token *)1, *lab = (plm_token *)1;
    int32_t np = 7, lens[2];
    static const struct {
        const char *tmpl, *text;
        int32_t n_labels;
        bool multi;
        const char *msg;
    } cases[] = {
        {"Review:", "x", 1, false, "no {text} placeholder"},
        {"{text} is {label}", "x", 1, false, "{label} is for multi-label templates"},
        {"{text}?", "x", 1, true, "exactly one {label}"},
        {"{label} {text}", "x", 1, true, "{text} must come before {label}"},
        {"{text}", " \t\xc2\xa0\xe3\x80\x80\n", 1, false, "the text is empty"},
        {"{text}", "x", 2, false, "label 1 is empty"},
        {"{text}", "x", 0, false, "the label list is empty"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        CHECKF(build(cases[c].tmpl, cases[c].text, labels, cases[c].n_labels, cases[c].multi, &p, &np, &lab, lens) ==
                   PLM_ERR_ARG, "case %zu", c);
        CHECKF(strstr(plm_last_error(), cases[c].msg) != NULL, "case %zu: %s", c, plm_last_error());
        CHECK(p == NULL && lab == NULL && np == 0);
    }
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
    RUN(test_prompt_pieces);
    RUN(test_prompt_label_space);
    RUN(test_prompt_errors);
    RUN(test_embed_matches_reference_pooling);
    plm_model_free(model);
    return TEST_SUMMARY();
}
