/*
 * test_sampler.c — the sampler on synthetic logits: greedy, top-k, top-p,
 * min-p, temperature (draw frequencies against the softmax), penalties over a
 * window, logit bias, seeding, and parameter validation.
 */
#include "pocketlm.h"
#include "test.h"

#include <math.h>

#define NV 8

static plm_sampler *make(plm_sampler_params p) {
    plm_sampler *s = NULL;
    plm_status st = plm_sampler_create(&p, NV, &s);
    if (st) fprintf(stderr, "  %s\n", plm_last_error());
    return s;
}

static const float L[NV] = {1.0f, 3.0f, 2.5f, 0.5f, -1.0f, 2.9f, 0.0f, -5.0f};

static void test_greedy(void) {
    plm_sampler_params p = plm_sampler_default_params();
    p.temperature = 0;
    plm_sampler *s = make(p);
    REQUIRE(s);
    plm_token t;
    CHECK(plm_sampler_sample_logits(s, L, &t) == PLM_OK && t == 1);
    plm_sampler_free(s);
    /* top_k = 1 at any temperature is greedy */
    p = plm_sampler_default_params();
    p.temperature = 5.0f;
    p.top_k = 1;
    s = make(p);
    for (int i = 0; i < 50; i++) CHECK(plm_sampler_sample_logits(s, L, &t) == PLM_OK && t == 1);
    plm_sampler_free(s);
}

static void count_draws(plm_sampler_params p, int n, int counts[NV]) {
    plm_sampler *s = make(p);
    memset(counts, 0, NV * sizeof(int));
    for (int i = 0; i < n; i++) {
        plm_token t = -1;
        plm_sampler_sample_logits(s, L, &t);
        if (t >= 0 && t < NV) counts[t]++;
    }
    plm_sampler_free(s);
}

static void test_temperature_matches_softmax(void) {
    plm_sampler_params p = plm_sampler_default_params();
    p.temperature = 1.5f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    enum { N = 200000 };
    int c[NV];
    count_draws(p, N, c);
    double z = 0, pr[NV];
    for (int i = 0; i < NV; i++) z += exp(L[i] / 1.5);
    double worst = 0;
    for (int i = 0; i < NV; i++) {
        pr[i] = exp(L[i] / 1.5) / z;
        double sd = sqrt(pr[i] * (1 - pr[i]) / N);
        double dev = fabs((double)c[i] / N - pr[i]) / (sd > 0 ? sd : 1);
        if (dev > worst) worst = dev;
    }
    CHECKF(worst < 5.0, "draw frequency off by %.1f standard deviations", worst);
}

static void test_filters(void) {
    plm_sampler_params p = plm_sampler_default_params();
    p.temperature = 1.0f;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.top_k = 3; /* only 1, 5, 2 */
    int c[NV];
    count_draws(p, 5000, c);
    CHECK(c[1] > 0 && c[5] > 0 && c[2] > 0);
    CHECK(c[0] + c[3] + c[4] + c[6] + c[7] == 0);
    /* top-p: softmax of L puts ~0.33, 0.30, 0.20 on 1, 5, 2: p = 0.5 keeps 1 and 5 */
    p.top_k = 0;
    p.top_p = 0.5f;
    count_draws(p, 5000, c);
    CHECK(c[1] > 0 && c[5] > 0 && c[2] == 0 && c[0] == 0);
    /* min-p 0.5: keeps tokens with p >= 0.5 p_max: logit >= 3 + ln 0.5 = 2.31 -> 1, 5, 2 */
    p.top_p = 1.0f;
    p.min_p = 0.5f;
    count_draws(p, 5000, c);
    CHECK(c[1] > 0 && c[5] > 0 && c[2] > 0 && c[0] == 0 && c[6] == 0);
}

static void test_penalties_and_bias(void) {
    plm_sampler_params p = plm_sampler_default_params();
    p.temperature = 0;
    p.repeat_penalty = 2.0f; /* 3.0 -> 1.5 once token 1 was seen */
    p.penalty_last_n = 2;
    plm_sampler *s = make(p);
    plm_token t;
    plm_sampler_accept(s, 1);
    CHECK(plm_sampler_sample_logits(s, L, &t) == PLM_OK && t == 5);
    plm_sampler_accept(s, 5);
    CHECK(plm_sampler_sample_logits(s, L, &t) == PLM_OK && t == 2);
    /* the window is 2: after two more tokens, token 1 is forgotten */
    plm_sampler_accept(s, 6);
    plm_sampler_accept(s, 7);
    CHECK(plm_sampler_sample_logits(s, L, &t) == PLM_OK && t == 1);
    plm_sampler_free(s);
    /* frequency penalty scales with count, presence is once */
    p = plm_sampler_default_params();
    p.temperature = 0;
    p.frequency_penalty = 0.3f;
    p.penalty_last_n = -1;
    s = make(p);
    plm_sampler_accept(s, 1);
    CHECK(plm_sampler_sample_logits(s, L, &t) == PLM_OK && t == 5); /* 2.7 < 2.9 */
    plm_sampler_free(s);
    p.frequency_penalty = 0;
    p.presence_penalty = 0.05f;
    s = make(p);
    plm_sampler_accept(s, 1);
    plm_sampler_accept(s, 1);
    CHECK(plm_sampler_sample_logits(s, L, &t) == PLM_OK && t == 1); /* 2.95 > 2.9 */
    plm_sampler_free(s);
    /* logit bias: -inf bans, a positive bias promotes */
    plm_logit_bias b[2] = {{1, -INFINITY}, {7, 9.0f}};
    p = plm_sampler_default_params();
    p.temperature = 0;
    p.logit_bias = b;
    p.n_logit_bias = 1;
    s = make(p);
    CHECK(plm_sampler_sample_logits(s, L, &t) == PLM_OK && t == 5);
    plm_sampler_free(s);
    p.n_logit_bias = 2;
    s = make(p);
    CHECK(plm_sampler_sample_logits(s, L, &t) == PLM_OK && t == 7);
    plm_sampler_free(s);
    /* the input logits are not modified */
    CHECK(L[1] == 3.0f);
}

static void test_seed_reproducible(void) {
    plm_sampler_params p = plm_sampler_default_params();
    p.temperature = 1.0f;
    p.top_k = 0;
    p.seed = 42;
    plm_sampler *a = make(p), *b = make(p);
    p.seed = 43;
    plm_sampler *c = make(p);
    int same_ab = 1, diff_ac = 0;
    plm_token seq1[64];
    for (int i = 0; i < 64; i++) {
        plm_token x, y, z;
        plm_sampler_sample_logits(a, L, &x);
        plm_sampler_sample_logits(b, L, &y);
        plm_sampler_sample_logits(c, L, &z);
        same_ab &= x == y;
        diff_ac |= x != z;
        seq1[i] = x;
    }
    CHECK(same_ab);
    CHECK(diff_ac);
    plm_sampler_reset(a); /* reset reseeds: the same sequence again */
    int again = 1;
    for (int i = 0; i < 64; i++) {
        plm_token x;
        plm_sampler_sample_logits(a, L, &x);
        again &= x == seq1[i];
    }
    CHECK(again);
    plm_sampler_free(a);
    plm_sampler_free(b);
    plm_sampler_free(c);
}

static void test_invalid(void) {
    plm_sampler *s = NULL;
    plm_sampler_params p = plm_sampler_default_params();
    p.top_p = NAN;
    CHECK(plm_sampler_create(&p, NV, &s) == PLM_ERR_ARG && s == NULL);
    p = plm_sampler_default_params();
    p.repeat_penalty = 0;
    CHECK(plm_sampler_create(&p, NV, &s) == PLM_ERR_ARG && strstr(plm_last_error(), "repeat_penalty"));
    p = plm_sampler_default_params();
    plm_logit_bias b = {NV, 1.0f};
    p.logit_bias = &b;
    p.n_logit_bias = 1;
    CHECK(plm_sampler_create(&p, NV, &s) == PLM_ERR_ARG && strstr(plm_last_error(), "logit_bias"));
    p = plm_sampler_default_params();
    CHECK(plm_sampler_create(&p, 0, &s) == PLM_ERR_ARG);
    /* every token banned, and NaN logits */
    s = make(plm_sampler_default_params());
    float banned[NV], nan[NV];
    for (int i = 0; i < NV; i++) { banned[i] = -INFINITY; nan[i] = 0; }
    nan[3] = NAN;
    plm_token t;
    CHECK(plm_sampler_sample_logits(s, banned, &t) == PLM_ERR_ARG);
    CHECK(plm_sampler_sample_logits(s, nan, &t) == PLM_ERR_ARG && strstr(plm_last_error(), "NaN"));
    plm_sampler_free(s);
}

int main(void) {
    RUN(test_greedy);
    RUN(test_temperature_matches_softmax);
    RUN(test_filters);
    RUN(test_penalties_and_bias);
    RUN(test_seed_reproducible);
    RUN(test_invalid);
    return TEST_SUMMARY();
}
