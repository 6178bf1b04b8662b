/*
 * sampler.c — choosing the next token from logits.
 *
 * Owns plm_sampler: logit bias, repetition / frequency / presence penalties over
 * a window of recent tokens, then either greedy argmax or the chain
 * top-k -> top-p -> min-p -> temperature -> draw (llama.cpp's default order, so
 * settings mean the same thing in both). The RNG is xoshiro256** seeded by
 * splitmix64: the same seed gives the same choices on every platform.
 *
 * The stages run as a chain: logit bias -> penalties -> constraint -> choice.
 * The constraint (a grammar, csrc/grammar/) is checked lazily: the token the
 * choice stage picks is walked through the grammar first (a few cached table
 * look-ups); only when it is refused is the full mask built, the refused
 * tokens set to -inf and the choice made again. For greedy this is exactly the
 * argmax of the masked logits. Prompt tokens enter the penalty history only
 * (plm_sampler_accept_prompt); chosen tokens also advance the grammar.
 */
#include "grammar/grammar.h"
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    float logit;
    plm_token id;
} cand;

struct plm_sampler {
    plm_sampler_params p;
    const plm_kernels *kern; /* the process's table (its argmax_f32) */
    plm_logit_bias *bias;
    int32_t n_vocab;
    float *work;        /* (n_vocab) biased, penalized logits */
    cand *cands;        /* (n_vocab) */
    plm_token *hist;    /* ring of recent tokens */
    int32_t hist_cap, hist_n, hist_head;
    uint32_t *counts;   /* (n_vocab) occurrences in the window */
    uint64_t rng[4];
    /* the constraint stage (gmu NULL: none) */
    plm_gmatch_universe *gmu;
    const plm_token_trie *trie;
    int32_t gstate;     /* matcher state after the accepted tokens */
    uint64_t *gmask;    /* (ceil(n_vocab / 64)) */
    plm_token gbad;     /* an accepted token the grammar refused, or -1 */
};

plm_sampler_params plm_sampler_default_params(void) {
    plm_sampler_params p = {
        .temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
        .repeat_penalty = 1.0f, .frequency_penalty = 0.0f, .presence_penalty = 0.0f,
        .penalty_last_n = 64, .seed = 0x5EED, .logit_bias = NULL, .n_logit_bias = 0,
    };
    return p;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, 1) with 53 random bits. */
static double next_unit(uint64_t s[4]) { return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

static void seed_rng(plm_sampler *smp) {
    uint64_t x = smp->p.seed;
    for (int i = 0; i < 4; i++) smp->rng[i] = splitmix64(&x);
}

static bool finite_or_default(float v) { return v == v && v < 3.4e38f && v > -3.4e38f; }

plm_status plm_sampler_create(const plm_sampler_params *params, int32_t n_vocab, plm_sampler **out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_sampler_create: out is NULL");
    *out = NULL;
    plm_sampler_params p = params ? *params : plm_sampler_default_params();
    if (n_vocab <= 0) return plm_fail(PLM_ERR_ARG, "n_vocab must be positive (got %d)", n_vocab);
    if (!finite_or_default(p.temperature)) return plm_fail(PLM_ERR_ARG, "temperature must be a finite number");
    if (!finite_or_default(p.top_p) || p.top_p < 0) return plm_fail(PLM_ERR_ARG, "top_p must be in [0, 1] (got %g)", (double)p.top_p);
    if (!finite_or_default(p.min_p) || p.min_p > 1) return plm_fail(PLM_ERR_ARG, "min_p must be in [0, 1] (got %g)", (double)p.min_p);
    if (!finite_or_default(p.repeat_penalty) || p.repeat_penalty <= 0)
        return plm_fail(PLM_ERR_ARG, "repeat_penalty must be positive (got %g; 1 means off)", (double)p.repeat_penalty);
    if (!finite_or_default(p.frequency_penalty) || !finite_or_default(p.presence_penalty))
        return plm_fail(PLM_ERR_ARG, "frequency and presence penalties must be finite");
    if (p.penalty_last_n < -1 || p.penalty_last_n > (1 << 20))
        return plm_fail(PLM_ERR_ARG, "penalty_last_n must be in [-1, 1048576] (got %d)", p.penalty_last_n);
    if (p.n_logit_bias < 0 || (p.n_logit_bias > 0 && !p.logit_bias))
        return plm_fail(PLM_ERR_ARG, "logit_bias: %d entries but no array", p.n_logit_bias);
    for (int32_t i = 0; i < p.n_logit_bias; i++) {
        if (p.logit_bias[i].token < 0 || p.logit_bias[i].token >= n_vocab)
            return plm_fail(PLM_ERR_ARG, "logit_bias entry %d: token %d outside the vocabulary [0, %d)", i, p.logit_bias[i].token, n_vocab);
        float b = p.logit_bias[i].bias;
        if (b != b || b > 3.4e38f) return plm_fail(PLM_ERR_ARG, "logit_bias entry %d: bias must be a number (-inf bans the token)", i);
    }
    plm_sampler *smp = calloc(1, sizeof(*smp));
    if (!smp) return plm_fail(PLM_ERR_OOM, "out of memory");
    smp->p = p;
    smp->kern = plm_kernels_get();
    smp->n_vocab = n_vocab;
    smp->hist_cap = p.penalty_last_n < 0 ? 4096 : PLM_MAX(p.penalty_last_n, 1);
    smp->work = malloc((size_t)n_vocab * sizeof(float));
    smp->cands = malloc((size_t)n_vocab * sizeof(cand));
    smp->counts = calloc((size_t)n_vocab, sizeof(uint32_t));
    smp->hist = malloc((size_t)smp->hist_cap * sizeof(plm_token));
    if (p.n_logit_bias) {
        smp->bias = malloc((size_t)p.n_logit_bias * sizeof(plm_logit_bias));
        if (smp->bias) memcpy(smp->bias, p.logit_bias, (size_t)p.n_logit_bias * sizeof(plm_logit_bias));
    }
    smp->p.logit_bias = smp->bias;
    if (!smp->work || !smp->cands || !smp->counts || !smp->hist || (p.n_logit_bias && !smp->bias)) {
        plm_sampler_free(smp);
        return plm_fail(PLM_ERR_OOM, "out of memory for a sampler over %d tokens", n_vocab);
    }
    seed_rng(smp);
    *out = smp;
    return PLM_OK;
}

void plm_sampler_free(plm_sampler *smp) {
    if (!smp) return;
    free(smp->work);
    free(smp->cands);
    free(smp->counts);
    free(smp->hist);
    free(smp->bias);
    plm_gmu_free(smp->gmu);
    free(smp->gmask);
    free(smp);
}

void plm_sampler_reset(plm_sampler *smp) {
    if (!smp) return;
    memset(smp->counts, 0, (size_t)smp->n_vocab * sizeof(uint32_t));
    smp->hist_n = smp->hist_head = 0;
    seed_rng(smp);
    if (smp->gmu) {
        smp->gstate = plm_gmu_start(smp->gmu);
        smp->gbad = -1;
    }
}

plm_status plm_sampler_set_grammar(plm_sampler *smp, const plm_model *model, const plm_grammar *g) {
    if (!smp) return plm_fail(PLM_ERR_ARG, "plm_sampler_set_grammar: smp is NULL");
    plm_gmu_free(smp->gmu);
    free(smp->gmask);
    smp->gmu = NULL;
    smp->gmask = NULL;
    smp->trie = NULL;
    if (!g) return PLM_OK;
    if (!model) return plm_fail(PLM_ERR_ARG, "plm_sampler_set_grammar: model is NULL");
    if (model->hp.n_vocab != smp->n_vocab)
        return plm_fail(PLM_ERR_ARG, "the model has %d tokens but the sampler was made for %d", model->hp.n_vocab,
                        smp->n_vocab);
    const plm_token_trie *trie;
    plm_status st = plm_model_token_trie(model, &trie);
    if (st) return st;
    if (plm_token_trie_n_vocab(trie) != smp->n_vocab)
        return plm_fail(PLM_ERR_ARG, "the vocabulary has %d tokens but the sampler was made for %d",
                        plm_token_trie_n_vocab(trie), smp->n_vocab);
    if ((st = plm_gmu_create(g, &smp->gmu))) return st;
    smp->gmask = malloc((size_t)(smp->n_vocab + 63) / 64 * sizeof(uint64_t));
    smp->gstate = plm_gmu_start(smp->gmu);
    if (!smp->gmask || smp->gstate < 0) {
        plm_gmu_free(smp->gmu);
        free(smp->gmask);
        smp->gmu = NULL;
        smp->gmask = NULL;
        return plm_fail(PLM_ERR_OOM, "out of memory for a grammar over %d tokens", smp->n_vocab);
    }
    smp->trie = trie;
    smp->gbad = -1;
    return PLM_OK;
}

bool plm_sampler_grammar_accepts(const plm_sampler *smp) {
    return smp && smp->gmu && smp->gbad < 0 && plm_gmu_accepts(smp->gmu, smp->gstate);
}

static void record(plm_sampler *smp, plm_token t);

void plm_sampler_accept_prompt(plm_sampler *smp, const plm_token *tokens, int32_t n) {
    if (!smp || !tokens) return;
    for (int32_t i = 0; i < n; i++) record(smp, tokens[i]);
}

void plm_sampler_accept(plm_sampler *smp, plm_token t) {
    if (!smp || t < 0 || t >= smp->n_vocab) return;
    if (smp->gmu && smp->gbad < 0) {
        int32_t next;
        if (plm_token_allowed(smp->gmu, smp->trie, smp->gstate, t, &next) == 1) smp->gstate = next;
        else smp->gbad = t;
    }
    record(smp, t);
}

/* The penalty history. */
static void record(plm_sampler *smp, plm_token t) {
    if (t < 0 || t >= smp->n_vocab) return;
    if (smp->p.penalty_last_n == 0) return;
    if (smp->hist_n == smp->hist_cap) {
        plm_token old = smp->hist[smp->hist_head];
        if (smp->counts[old]) smp->counts[old]--;
        smp->hist_n--;
    }
    smp->hist[smp->hist_head] = t;
    smp->hist_head = (smp->hist_head + 1) % smp->hist_cap;
    smp->hist_n++;
    smp->counts[t]++;
}

static int cand_desc(const void *a, const void *b) {
    float x = ((const cand *)a)->logit, y = ((const cand *)b)->logit;
    if (x > y) return -1;
    if (x < y) return 1;
    return ((const cand *)a)->id - ((const cand *)b)->id; /* ties: lower id first, deterministic */
}

/* Moves the k largest candidates to the front, sorted (partial selection + sort). */
static void top_k_sorted(cand *c, int32_t n, int32_t k) {
    if (k < n) {
        /* quickselect on logit, descending */
        int32_t lo = 0, hi = n - 1;
        while (lo < hi) {
            cand pivot = c[(lo + hi) / 2];
            int32_t i = lo, j = hi;
            while (i <= j) {
                while (cand_desc(&c[i], &pivot) < 0) i++;
                while (cand_desc(&c[j], &pivot) > 0) j--;
                if (i <= j) {
                    cand t = c[i]; c[i] = c[j]; c[j] = t;
                    i++; j--;
                }
            }
            if (k - 1 <= j) hi = j;
            else if (k - 1 >= i) lo = i;
            else break;
        }
    }
    qsort(c, (size_t)k, sizeof(cand), cand_desc);
}

/* Stage: the logit bias and the penalties, on w (n_vocab). */
static void adjust(plm_sampler *smp, float *w) {
    const plm_sampler_params *p = &smp->p;
    for (int32_t i = 0; i < p->n_logit_bias; i++) w[p->logit_bias[i].token] += p->logit_bias[i].bias;
    if (smp->hist_n > 0 && (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f)) {
        for (int32_t k = 0; k < smp->hist_n; k++) {
            int32_t idx = (smp->hist_head - 1 - k + smp->hist_cap) % smp->hist_cap;
            plm_token t = smp->hist[idx];
            uint32_t cnt = smp->counts[t];
            if (cnt & 0x80000000u) continue; /* this token was penalized already */
            float *l = &w[t];
            if (p->repeat_penalty != 1.0f) *l = *l > 0 ? *l / p->repeat_penalty : *l * p->repeat_penalty;
            *l -= (float)cnt * p->frequency_penalty + p->presence_penalty;
            smp->counts[t] = cnt | 0x80000000u;
        }
        for (int32_t k = 0; k < smp->hist_n; k++) {
            int32_t idx = (smp->hist_head - 1 - k + smp->hist_cap) % smp->hist_cap;
            smp->counts[smp->hist[idx]] &= 0x7fffffffu;
        }
    }
}

/* Stage: the choice, greedy or top-k -> top-p -> min-p -> temperature -> draw,
 * from w (not modified). */
static plm_status choose(plm_sampler *smp, const float *w, plm_token *out) {
    const int32_t n = smp->n_vocab;
    const plm_sampler_params *p = &smp->p;
    const int32_t best = (int32_t)smp->kern->argmax_f32(w, n);
    if (best < 0) return plm_fail(PLM_ERR_ARG, "logit of token %d is NaN", -1 - best);
    if (w[best] == -INFINITY) return plm_fail(PLM_ERR_ARG, "every token is banned (all logits are -inf)");
    if (p->temperature <= 0.0f) {
        *out = best;
        return PLM_OK;
    }

    cand *c = smp->cands;
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++)
        if (w[i] != -INFINITY) c[m++] = (cand){w[i], i};
    int32_t k = p->top_k > 0 ? PLM_MIN(p->top_k, m) : m;
    top_k_sorted(c, m, k);
    m = k;

    /* top-p and min-p on the untempered distribution, as llama.cpp orders them. */
    if (p->top_p < 1.0f || p->min_p > 0.0f) {
        double sum = 0.0;
        for (int32_t i = 0; i < m; i++) sum += exp((double)(c[i].logit - c[0].logit));
        if (p->top_p < 1.0f) {
            double cum = 0.0;
            int32_t keep = m;
            for (int32_t i = 0; i < m; i++) {
                cum += exp((double)(c[i].logit - c[0].logit)) / sum;
                if (cum >= p->top_p) {
                    keep = i + 1;
                    break;
                }
            }
            m = keep;
        }
        if (p->min_p > 0.0f) {
            /* p_i >= min_p * p_max  <=>  logit_i >= logit_max + log(min_p) */
            float floor_logit = c[0].logit + logf(p->min_p);
            int32_t keep = 1;
            while (keep < m && c[keep].logit >= floor_logit) keep++;
            m = keep;
        }
    }

    double sum = 0.0;
    for (int32_t i = 0; i < m; i++) sum += exp((double)((c[i].logit - c[0].logit) / p->temperature));
    double r = next_unit(smp->rng) * sum, acc = 0.0;
    for (int32_t i = 0; i < m; i++) {
        acc += exp((double)((c[i].logit - c[0].logit) / p->temperature));
        if (r < acc) {
            *out = c[i].id;
            return PLM_OK;
        }
    }
    *out = c[m - 1].id;
    return PLM_OK;
}

/* Stage: the constraint. t was chosen from w; if the grammar refuses it, the
 * refused tokens of w become -inf and the choice is made again. */
static plm_status constrain(plm_sampler *smp, float *w, plm_token *t) {
    int32_t next;
    int ok = plm_token_allowed(smp->gmu, smp->trie, smp->gstate, *t, &next);
    if (ok == 1) return PLM_OK;
    if (ok < 0) return plm_fail(PLM_ERR_OOM, "out of memory in the grammar matcher");
    plm_status st = plm_token_mask(smp->gmu, smp->trie, smp->gstate, smp->gmask);
    if (st) return st == PLM_ERR_OOM ? plm_fail(PLM_ERR_OOM, "out of memory building a token mask") : st;
    const uint64_t *m = smp->gmask;
    bool any = false;
    for (int32_t base = 0; base < smp->n_vocab; base += 64) {
        uint64_t bits = m[base >> 6];
        if (bits == ~0ull && any) continue; /* 64 allowed tokens, and an allowed finite one already seen */
        for (int32_t i = base, e = PLM_MIN(base + 64, smp->n_vocab); i < e; i++) {
            if (!((bits >> (i - base)) & 1)) w[i] = -INFINITY;
            else if (w[i] != -INFINITY) any = true;
        }
    }
    if (!any) {
        for (int32_t i = 0; i < smp->n_vocab; i++)
            if ((m[i >> 6] >> (i & 63)) & 1)
                return plm_fail(PLM_ERR_ARG, "every token the grammar allows here is banned (logit -inf)");
        return plm_fail(PLM_ERR_ARG, "the grammar allows no token of this vocabulary here");
    }
    return choose(smp, w, t);
}

plm_status plm_sampler_sample_logits(plm_sampler *smp, const float *logits, plm_token *out) {
    if (!smp || !logits || !out) return plm_fail(PLM_ERR_ARG, "plm_sampler_sample_logits: NULL argument");
    if (smp->gmu && smp->gbad >= 0)
        return plm_fail(PLM_ERR_ARG, "token %d was accepted but the grammar does not allow it there", smp->gbad);
    const plm_sampler_params *p = &smp->p;
    const bool penalties = smp->hist_n > 0 && (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f ||
                                               p->presence_penalty != 0.0f);
    plm_token t;
    plm_status st;
    if (!smp->gmu && p->n_logit_bias == 0 && !penalties) {
        /* nothing to adjust or constrain: the choice reads the logits where they are (no copy of the
         * vocabulary per token, 16 of them per step of a 16-sequence batch) */
        st = choose(smp, logits, &t);
        if (!st) *out = t;
        return st;
    }
    float *w = smp->work;
    memcpy(w, logits, (size_t)smp->n_vocab * sizeof(float));
    adjust(smp, w);
    st = choose(smp, w, &t);
    if (!st && smp->gmu) st = constrain(smp, w, &t);
    if (!st) *out = t;
    return st;
}

/* The context's logits are used in place (read-only here). */
plm_status plm_sampler_sample(plm_sampler *smp, plm_context *ctx, int32_t i, plm_token *out) {
    if (!smp || !ctx || !out) return plm_fail(PLM_ERR_ARG, "plm_sampler_sample: NULL argument");
    const float *l = plm_context_logits(ctx, i);
    if (!l) return PLM_ERR_ARG;
    return plm_sampler_sample_logits(smp, l, out);
}

int32_t plm_sampler_n_vocab(const plm_sampler *smp) { return smp ? smp->n_vocab : 0; }
