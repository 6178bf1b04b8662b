/*
 * fuzz_sampler.c — libFuzzer harness for sampler parameters and logits: the
 * input fills a plm_sampler_params (NaN, infinities and absurd values
 * included), a logit-bias list and a small logits vector; creation must either
 * succeed or fail cleanly, and sampling must return a token in range or an error.
 */
#include "pocketlm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NV 64

static size_t take(void *dst, size_t n, const uint8_t **data, size_t *size) {
    size_t k = n < *size ? n : *size;
    memset(dst, 0, n);
    memcpy(dst, *data, k);
    *data += k;
    *size -= k;
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    plm_sampler_params p = plm_sampler_default_params();
    take(&p.temperature, 4, &data, &size);
    take(&p.top_k, 4, &data, &size);
    take(&p.top_p, 4, &data, &size);
    take(&p.min_p, 4, &data, &size);
    take(&p.repeat_penalty, 4, &data, &size);
    take(&p.frequency_penalty, 4, &data, &size);
    take(&p.presence_penalty, 4, &data, &size);
    take(&p.penalty_last_n, 4, &data, &size);
    take(&p.seed, 8, &data, &size);
    uint8_t nb = 0;
    take(&nb, 1, &data, &size);
    plm_logit_bias bias[16];
    p.n_logit_bias = nb % 17;
    take(bias, sizeof bias, &data, &size);
    p.logit_bias = bias;
    float logits[NV];
    take(logits, sizeof logits, &data, &size);
    plm_sampler *s = NULL;
    if (plm_sampler_create(&p, NV, &s) != PLM_OK) return 0;
    for (int i = 0; i < 8; i++) {
        plm_token t = -1;
        plm_status st = plm_sampler_sample_logits(s, logits, &t);
        if (st == PLM_OK && (t < 0 || t >= NV)) abort();
        if (st == PLM_OK) plm_sampler_accept(s, t);
        plm_sampler_accept(s, (plm_token)(i * 37 - 5)); /* out-of-range tokens are ignored */
    }
    plm_sampler_reset(s);
    plm_sampler_free(s);
    return 0;
}
