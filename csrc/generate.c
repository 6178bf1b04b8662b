/*
 * generate.c — the token loop in C: prompt in, text pieces out.
 *
 * Owns plm_generator (step-wise) and plm_generate (callback form). It reuses the
 * longest cached prefix of the prompt, evaluates the rest in batches, then
 * samples and decodes one token per step. Text leaves in pieces that are safe to
 * show: whole UTF-8 characters only, and never a byte that could begin a stop
 * string (textstream.c holds those back until they can no longer match).
 * Sampling is sampler.c's; the forward pass is forward.c's.
 */
#include "context.h"
#include "textstream.h"

#include <stdlib.h>
#include <string.h>

struct plm_generator {
    plm_context *ctx;
    plm_generate_params p;
    plm_sampler *smp;
    plm_textstream text;
    plm_token *toks;           /* generated tokens */
    int32_t n_toks, cap_toks;
    int32_t n_prompt;          /* prompt tokens evaluated */
    int32_t seq;
    plm_stop_reason reason;
    bool finished;             /* reason set and the tail flushed */
    plm_token last;            /* last evaluated token (its logits are current) */
};

plm_generate_params plm_generate_default_params(void) {
    plm_generate_params p = {
        .max_tokens = 256, .sampling = plm_sampler_default_params(), .stop = NULL, .n_stop = 0,
        .add_special = true, .parse_special = true, .ignore_eos = false, .seq_id = 0, .keep_cache = true,
        .grammar = NULL,
    };
    return p;
}

void plm_generator_free(plm_generator *g) {
    if (!g) return;
    plm_sampler_free(g->smp);
    plm_textstream_release(&g->text);
    free(g->toks);
    free(g);
}

static plm_status reserve(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return PLM_OK;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    char *nb = realloc(*buf, nc);
    if (!nb) return plm_fail(PLM_ERR_OOM, "out of memory for generated text");
    *buf = nb;
    *cap = nc;
    return PLM_OK;
}

plm_status plm_generator_create_tokens(plm_context *ctx, const plm_token *tokens, int32_t n,
                                       const plm_generate_params *params, plm_generator **out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_generator_create: out is NULL");
    *out = NULL;
    if (!ctx || (!tokens && n)) return plm_fail(PLM_ERR_ARG, "plm_generator_create: NULL argument");
    if (n <= 0) return plm_fail(PLM_ERR_ARG, "the prompt is empty: nothing to generate from (n_tokens = %d)", n);
    plm_generate_params p = params ? *params : plm_generate_default_params();
    if (p.seq_id < 0 || p.seq_id >= ctx->params.n_seq_max)
        return plm_fail(PLM_ERR_ARG, "seq_id %d outside [0, %d)", p.seq_id, ctx->params.n_seq_max);
    if (p.n_stop < 0 || (p.n_stop > 0 && !p.stop)) return plm_fail(PLM_ERR_ARG, "stop: %d strings but no array", p.n_stop);
    const int32_t n_vocab = ctx->model->hp.n_vocab;
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return plm_fail(PLM_ERR_ARG, "prompt token %d is %d, outside the vocabulary [0, %d)", i, tokens[i], n_vocab);
    if (n >= ctx->kv.n_ctx)
        return plm_fail(PLM_ERR_CONTEXT_FULL, "the prompt has %d tokens but the context holds %d", n, ctx->kv.n_ctx);

    plm_generator *g = calloc(1, sizeof(*g));
    if (!g) return plm_fail(PLM_ERR_OOM, "out of memory");
    g->ctx = ctx;
    g->p = p;
    g->seq = p.seq_id;
    g->p.stop = NULL;
    plm_status st = plm_sampler_create(&p.sampling, n_vocab, &g->smp);
    if (st || (st = plm_textstream_init(&g->text, p.stop, p.n_stop))) goto fail;
    if (p.grammar && (st = plm_sampler_set_grammar(g->smp, ctx->model, p.grammar))) goto fail;
    g->p.grammar = NULL;
    g->cap_toks = 64;
    g->toks = malloc((size_t)g->cap_toks * sizeof(plm_token));
    if (!g->toks) { st = plm_fail(PLM_ERR_OOM, "out of memory"); goto fail; }

    /* Reuse the cached prefix; always re-evaluate at least the last prompt token for its logits. */
    int32_t keep = p.keep_cache ? plm_kv_common_prefix(ctx, g->seq, tokens, n) : 0;
    if (keep >= n) keep = n - 1;
    if ((st = plm_kv_seq_rm(ctx, g->seq, keep, -1))) goto fail;
    plm_sampler_accept_prompt(g->smp, tokens, n);
    if ((st = plm_eval_sequence(ctx, tokens + keep, n - keep, keep, g->seq))) goto fail;
    g->n_prompt = n - keep;
    g->last = tokens[n - 1];
    *out = g;
    return PLM_OK;
fail:
    plm_generator_free(g);
    return st;
}

plm_status plm_generator_create(plm_context *ctx, const char *prompt, size_t len, const plm_generate_params *params,
                                plm_generator **out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_generator_create: out is NULL");
    *out = NULL;
    if (!ctx || (!prompt && len)) return plm_fail(PLM_ERR_ARG, "plm_generator_create: NULL argument");
    plm_generate_params p = params ? *params : plm_generate_default_params();
    int32_t cap = (int32_t)PLM_MIN(len + 8, (size_t)INT32_MAX / 8), n = 0;
    plm_token *toks = malloc((size_t)cap * sizeof(plm_token));
    if (!toks) return plm_fail(PLM_ERR_OOM, "out of memory tokenizing the prompt");
    plm_status st = plm_tokenize(ctx->model, prompt ? prompt : "", len, p.add_special, p.parse_special, toks, cap, &n);
    if (st == PLM_ERR_BUFFER) {
        free(toks);
        cap = n;
        toks = malloc((size_t)cap * sizeof(plm_token));
        if (!toks) return plm_fail(PLM_ERR_OOM, "out of memory tokenizing the prompt");
        st = plm_tokenize(ctx->model, prompt, len, p.add_special, p.parse_special, toks, cap, &n);
    }
    if (!st) st = plm_generator_create_tokens(ctx, toks, n, &p, out);
    free(toks);
    return st;
}

plm_status plm_generator_next(plm_generator *g, const char **piece, size_t *len, plm_stop_reason *reason) {
    if (!g || !piece || !len || !reason) return plm_fail(PLM_ERR_ARG, "plm_generator_next: NULL argument");
    *piece = "";
    *len = 0;
    *reason = g->reason;
    if (g->finished) return PLM_OK;
    plm_context *ctx = g->ctx;
    plm_status st;

    if (g->reason == PLM_STOP_NONE) {
        if (ctx->abort_fn && ctx->abort_fn(ctx->abort_user))
            return plm_fail(PLM_ERR_CANCELLED, "generation cancelled by the abort callback");
        plm_token t;
        if ((st = plm_sampler_sample(g->smp, ctx, -1, &t))) return st;
        /* A grammar allows an end-of-generation token only where it is complete: that ends it even with ignore_eos. */
        if ((!g->p.ignore_eos || plm_sampler_grammar_accepts(g->smp)) && plm_vocab_is_eog(ctx->model->vocab, t)) {
            g->reason = PLM_STOP_EOG;
        } else {
            if (g->n_toks == g->cap_toks) {
                plm_token *nt = realloc(g->toks, (size_t)g->cap_toks * 2 * sizeof(plm_token));
                if (!nt) return plm_fail(PLM_ERR_OOM, "out of memory");
                g->toks = nt;
                g->cap_toks *= 2;
            }
            g->toks[g->n_toks++] = t;
            plm_sampler_accept(g->smp, t);
            if ((st = plm_textstream_push_token(&g->text, ctx->model->vocab, t))) return st;
            if (g->text.stopped) {
                g->reason = PLM_STOP_STRING;
            } else {
                if (g->p.max_tokens > 0 && g->n_toks >= g->p.max_tokens) g->reason = PLM_STOP_LENGTH;
                else if (ctx->kv.used >= ctx->kv.n_ctx) g->reason = PLM_STOP_CONTEXT;
                else {
                    int32_t pos = plm_kv_seq_pos_max(ctx, g->seq) + 1;
                    st = plm_eval_sequence(ctx, &t, 1, pos, g->seq);
                    if (st == PLM_ERR_CONTEXT_FULL) g->reason = PLM_STOP_CONTEXT;
                    else if (st) return st;
                    g->last = t;
                }
                if (g->reason == PLM_STOP_NONE) return plm_textstream_take(&g->text, false, piece, len);
            }
        }
    }
    /* Ended: flush everything still held back. */
    g->finished = true;
    *reason = g->reason;
    return plm_textstream_take(&g->text, true, piece, len);
}

const plm_token *plm_generator_tokens(const plm_generator *g, int32_t *n) {
    if (n) *n = g ? g->n_toks : 0;
    return g ? g->toks : NULL;
}

int32_t plm_generator_n_prompt(const plm_generator *g) { return g ? g->n_prompt : 0; }

plm_status plm_generate(plm_context *ctx, const char *prompt, size_t len, const plm_generate_params *params,
                        plm_piece_fn on_piece, void *user, char **out, plm_stop_reason *reason) {
    if (out) *out = NULL;
    if (reason) *reason = PLM_STOP_NONE;
    plm_generator *g;
    plm_status st = plm_generator_create(ctx, prompt, len, params, &g);
    if (st) return st;
    char *text = NULL;
    size_t n_text = 0, cap_text = 0;
    plm_stop_reason r = PLM_STOP_NONE;
    for (;;) {
        const char *piece;
        size_t k;
        if ((st = plm_generator_next(g, &piece, &k, &r))) break;
        if (k && out) {
            if ((st = reserve(&text, &cap_text, n_text + k + 1))) break;
            memcpy(text + n_text, piece, k);
            n_text += k;
        }
        if (k && on_piece && on_piece(piece, k, user)) {
            r = PLM_STOP_CALLER;
            break;
        }
        if (r != PLM_STOP_NONE && g->finished) break;
    }
    plm_generator_free(g);
    if (st) {
        free(text);
        return st;
    }
    if (out) {
        if (!text && (st = reserve(&text, &cap_text, 1))) return st;
        text[n_text] = 0;
        *out = text;
    }
    if (reason) *reason = r;
    return PLM_OK;
}
