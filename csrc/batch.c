/*
 * batch.c — the batch generator: many requests on one context (continuous
 * batching).
 *
 * Owns plm_batch_gen: the queue of requests, admitting them onto sequence ids
 * as cells and ids free up, building each step's one plm_decode batch (the
 * pending token of every running request, then prompt chunks of admitted ones
 * up to prefill_chunk tokens), and turning each request's logits into its next
 * token and text. It reuses the generator's parts rather than repeating them:
 * a sampler per request (sampler.c), a text stream per request (textstream.c),
 * and the cells through plm_kv_* (kvcache.c). The stop rules are those of
 * plm_generator_next, in the same order, so that a request's output equals the
 * one plm_generate gives for it alone.
 */
#include "context.h"
#include "grammar/grammar.h"
#include "textstream.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum rq_state { RQ_QUEUED, RQ_PREFILL, RQ_RUNNING, RQ_DONE } rq_state;

typedef struct request {
    rq_state state;
    plm_generate_params p;   /* p.stop is not kept: the text stream has copies */
    plm_token *prompt;       /* (n_prompt) */
    int32_t n_prompt;
    int32_t n_done;          /* prompt tokens in the cache (evaluated or shared) */
    int32_t n_shared;
    int32_t seq;             /* while admitted */
    int32_t reserve;         /* cells counted for it and not placed yet */
    plm_sampler *smp;        /* while admitted */
    plm_textstream ts;
    plm_token *gen;          /* generated tokens */
    int32_t n_gen, cap_gen;
    char *text;              /* text let out */
    size_t n_text, cap_text, n_taken;
    plm_stop_reason reason;
    plm_status status;
    char *error;
    bool updated;            /* got text or ended in the last step */
} request;

struct plm_batch_gen {
    plm_context *ctx;
    plm_batch_gen_params p;
    request **rq;
    int32_t n_rq, cap_rq;
    int32_t next_queued;     /* lowest id that may still be queued */
    int32_t *active;         /* (n_parallel) admitted request ids, in admission order */
    int32_t n_active;
    int32_t *seq_owner;      /* (n_parallel) request holding each sequence id, -1 if free */
    int32_t n_left;
    plm_batch_piece_fn cb;
    void *cb_user;
    /* one step's batch, sized for the most tokens a step holds */
    plm_token *b_tok;
    int32_t *b_pos, *b_seq, *b_rq;
    int8_t *b_logits;
    int32_t b_cap;
    char *take_buf;
    size_t cap_take;
};

plm_batch_gen_params plm_batch_gen_default_params(void) {
    plm_batch_gen_params p = {.n_parallel = 0, .prefill_chunk = 128, .n_ctx_seq = 0, .share_prefix = true};
    return p;
}

static plm_status grow(void **buf, size_t elem, int32_t *cap, int32_t need) {
    if (need <= *cap) return PLM_OK;
    int32_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    void *nb = realloc(*buf, (size_t)nc * elem);
    if (!nb) return plm_fail(PLM_ERR_OOM, "out of memory");
    *buf = nb;
    *cap = nc;
    return PLM_OK;
}

static plm_status append_text(request *r, const char *s, size_t n) {
    if (r->n_text + n + 1 > r->cap_text) {
        size_t nc = r->cap_text ? r->cap_text : 64;
        while (nc < r->n_text + n + 1) nc *= 2;
        char *nb = realloc(r->text, nc);
        if (!nb) return plm_fail(PLM_ERR_OOM, "out of memory for generated text");
        r->text = nb;
        r->cap_text = nc;
    }
    memcpy(r->text + r->n_text, s, n);
    r->n_text += n;
    r->text[r->n_text] = 0;
    return PLM_OK;
}

static void request_free(request *r) {
    if (!r) return;
    free(r->prompt);
    plm_sampler_free(r->smp);
    plm_grammar_free((plm_grammar *)r->p.grammar);
    plm_textstream_release(&r->ts);
    free(r->gen);
    free(r->text);
    free(r->error);
    free(r);
}

void plm_batch_gen_free(plm_batch_gen *bg) {
    if (!bg) return;
    for (int32_t s = 0; s < bg->p.n_parallel; s++) plm_kv_seq_rm(bg->ctx, s, 0, -1);
    for (int32_t i = 0; i < bg->n_rq; i++) request_free(bg->rq[i]);
    free(bg->rq);
    free(bg->active);
    free(bg->seq_owner);
    free(bg->b_tok);
    free(bg->b_pos);
    free(bg->b_seq);
    free(bg->b_rq);
    free(bg->b_logits);
    free(bg->take_buf);
    free(bg);
}

plm_status plm_batch_gen_create(plm_context *ctx, const plm_batch_gen_params *params, plm_batch_gen **out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_batch_gen_create: out is NULL");
    *out = NULL;
    if (!ctx) return plm_fail(PLM_ERR_ARG, "plm_batch_gen_create: ctx is NULL");
    plm_clear_error();
    plm_batch_gen_params p = params ? *params : plm_batch_gen_default_params();
    const int32_t n_seq_max = ctx->params.n_seq_max;
    if (p.n_parallel == 0) p.n_parallel = n_seq_max;
    if (p.n_parallel < 1 || p.n_parallel > n_seq_max)
        return plm_fail(PLM_ERR_ARG, "n_parallel must be in [1, %d] (the context's n_seq_max; 0 means all) (got %d)",
                        n_seq_max, p.n_parallel);
    if (p.prefill_chunk < 1) return plm_fail(PLM_ERR_ARG, "prefill_chunk must be positive (got %d)", p.prefill_chunk);
    if (p.n_ctx_seq == 0) p.n_ctx_seq = ctx->kv.n_ctx;
    if (p.n_ctx_seq < 2 || p.n_ctx_seq > ctx->kv.n_ctx)
        return plm_fail(PLM_ERR_ARG, "n_ctx_seq must be in [2, %d] (the context's n_ctx; 0 means n_ctx) (got %d)",
                        ctx->kv.n_ctx, p.n_ctx_seq);
    plm_batch_gen *bg = calloc(1, sizeof(*bg));
    if (!bg) return plm_fail(PLM_ERR_OOM, "out of memory");
    bg->ctx = ctx;
    bg->p = p;
    bg->active = malloc((size_t)p.n_parallel * sizeof(int32_t));
    bg->seq_owner = malloc((size_t)p.n_parallel * sizeof(int32_t));
    bg->b_cap = p.n_parallel + p.prefill_chunk;
    bg->b_tok = malloc((size_t)bg->b_cap * sizeof(plm_token));
    bg->b_pos = malloc((size_t)bg->b_cap * sizeof(int32_t));
    bg->b_seq = malloc((size_t)bg->b_cap * sizeof(int32_t));
    bg->b_rq = malloc((size_t)bg->b_cap * sizeof(int32_t));
    bg->b_logits = malloc((size_t)bg->b_cap);
    if (!bg->active || !bg->seq_owner || !bg->b_tok || !bg->b_pos || !bg->b_seq || !bg->b_rq || !bg->b_logits) {
        plm_batch_gen_free(bg);
        return plm_fail(PLM_ERR_OOM, "out of memory for a batch generator of %d sequences", p.n_parallel);
    }
    for (int32_t s = 0; s < p.n_parallel; s++) {
        bg->seq_owner[s] = -1;
        plm_kv_seq_rm(ctx, s, 0, -1);
    }
    if (p.n_parallel > 1) plm_kv_huge_pages(&ctx->kv);
    *out = bg;
    return PLM_OK;
}

void plm_batch_gen_set_callback(plm_batch_gen *bg, plm_batch_piece_fn fn, void *user) {
    if (!bg) return;
    bg->cb = fn;
    bg->cb_user = user;
}

/* Ends r with status st and a message (the request's own failure). */
static void fail_request(plm_batch_gen *bg, int32_t id, plm_status st, const char *fmt, ...) PLM_PRINTF(4, 5);
static void fail_request(plm_batch_gen *bg, int32_t id, plm_status st, const char *fmt, ...) {
    request *r = bg->rq[id];
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    free(r->error);
    r->error = strdup(msg);
    r->status = st;
    r->reason = PLM_STOP_NONE;
    r->state = RQ_DONE;
    r->updated = true;
    bg->n_left--;
    if (bg->cb) bg->cb(id, "", 0, bg->cb_user);
}

plm_status plm_batch_gen_submit_tokens(plm_batch_gen *bg, const plm_token *tokens, int32_t n,
                                       const plm_generate_params *params, int32_t *id) {
    if (!bg || !id || (!tokens && n)) return plm_fail(PLM_ERR_ARG, "plm_batch_gen_submit: NULL argument");
    *id = -1;
    if (n <= 0) return plm_fail(PLM_ERR_ARG, "the prompt is empty: nothing to generate from (n_tokens = %d)", n);
    plm_clear_error();
    plm_status st = grow((void **)&bg->rq, sizeof(request *), &bg->cap_rq, bg->n_rq + 1);
    if (st) return st;
    request *r = calloc(1, sizeof(*r));
    if (!r) return plm_fail(PLM_ERR_OOM, "out of memory");
    r->p = params ? *params : plm_generate_default_params();
    r->p.grammar = r->p.grammar ? plm_grammar_ref(r->p.grammar) : NULL; /* the request's own reference */
    r->prompt = malloc((size_t)n * sizeof(plm_token));
    if (!r->prompt) {
        request_free(r);
        return plm_fail(PLM_ERR_OOM, "out of memory for a prompt of %d tokens", n);
    }
    memcpy(r->prompt, tokens, (size_t)n * sizeof(plm_token));
    r->n_prompt = n;
    r->seq = -1;
    const int32_t idx = bg->n_rq;
    bg->rq[bg->n_rq++] = r;
    bg->n_left++;
    *id = idx;
    /* The request's own problems end it alone. */
    st = plm_textstream_init(&r->ts, r->p.stop, r->p.n_stop);
    r->p.stop = NULL;
    r->p.n_stop = 0;
    if (st == PLM_ERR_OOM) {
        bg->n_rq--;
        bg->n_left--;
        request_free(r);
        *id = -1;
        return st;
    }
    if (st) {
        fail_request(bg, idx, st, "request %d: %s", idx, plm_last_error());
        plm_clear_error();
        return PLM_OK;
    }
    const int32_t n_vocab = bg->ctx->model->hp.n_vocab;
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab) {
            fail_request(bg, idx, PLM_ERR_ARG, "request %d: prompt token %d is %d, outside the vocabulary [0, %d)", idx, i,
                         tokens[i], n_vocab);
            return PLM_OK;
        }
    if (n >= bg->p.n_ctx_seq) {
        fail_request(bg, idx, PLM_ERR_CONTEXT_FULL,
                     "request %d: the prompt has %d tokens but a sequence holds at most %d (n_ctx_seq)", idx, n,
                     bg->p.n_ctx_seq);
        return PLM_OK;
    }
    /* Sampler parameters are checked now, so that a bad one is this request's error. */
    plm_sampler *probe;
    st = plm_sampler_create(&r->p.sampling, n_vocab, &probe);
    if (st == PLM_ERR_OOM) return PLM_OK; /* retried at admission */
    if (st) {
        fail_request(bg, idx, st, "request %d: %s", idx, plm_last_error());
        plm_clear_error();
        return PLM_OK;
    }
    plm_sampler_free(probe);
    return PLM_OK;
}

plm_status plm_batch_gen_submit(plm_batch_gen *bg, const char *prompt, size_t len, const plm_generate_params *params,
                                int32_t *id) {
    if (!bg || !id || (!prompt && len)) return plm_fail(PLM_ERR_ARG, "plm_batch_gen_submit: NULL argument");
    *id = -1;
    const plm_generate_params p = params ? *params : plm_generate_default_params();
    const plm_model *m = bg->ctx->model;
    int32_t cap = (int32_t)PLM_MIN(len + 8, (size_t)INT32_MAX / 8), n = 0;
    plm_token *toks = malloc((size_t)cap * sizeof(plm_token));
    if (!toks) return plm_fail(PLM_ERR_OOM, "out of memory tokenizing the prompt");
    plm_status st = plm_tokenize(m, prompt ? prompt : "", len, p.add_special, p.parse_special, toks, cap, &n);
    if (st == PLM_ERR_BUFFER) {
        free(toks);
        cap = n;
        toks = malloc((size_t)cap * sizeof(plm_token));
        if (!toks) return plm_fail(PLM_ERR_OOM, "out of memory tokenizing the prompt");
        st = plm_tokenize(m, prompt, len, p.add_special, p.parse_special, toks, cap, &n);
    }
    if (!st) st = plm_batch_gen_submit_tokens(bg, toks, n, &p, id);
    free(toks);
    return st;
}

/* ------------------------------------------------------------ stepping */

/* Cells request r may need in all: its prompt and tokens up to max_tokens, within n_ctx_seq. */
static int32_t cells_needed(const plm_batch_gen *bg, const request *r) {
    const int64_t want = r->p.max_tokens > 0 ? (int64_t)r->n_prompt + r->p.max_tokens : (int64_t)bg->p.n_ctx_seq;
    return (int32_t)PLM_MIN(want, (int64_t)bg->p.n_ctx_seq);
}

/* Cells neither used nor counted for an admitted request. */
static int64_t cells_free(const plm_batch_gen *bg) {
    int64_t f = (int64_t)bg->ctx->kv.n_ctx - bg->ctx->kv.used;
    for (int32_t i = 0; i < bg->n_active; i++) f -= bg->rq[bg->active[i]]->reserve;
    return f;
}

/* The admitted request whose cached prompt shares the longest prefix with r's
 * (at most r's prompt less one token, whose logits r needs); its length in
 * *len. *later: the longest prefix an admitted request still evaluating its
 * prompt will have cached once it gets there. */
static int32_t best_donor(const plm_batch_gen *bg, const request *r, int32_t *len, int32_t *later) {
    int32_t best = -1, best_len = 0, best_later = 0;
    for (int32_t i = 0; i < bg->n_active; i++) {
        const request *d = bg->rq[bg->active[i]];
        const int32_t lim = PLM_MIN(d->n_prompt, r->n_prompt - 1);
        int32_t k = 0;
        while (k < lim && d->prompt[k] == r->prompt[k]) k++;
        if (d->state == RQ_PREFILL && k > d->n_done && k > best_later) best_later = k;
        k = PLM_MIN(k, d->n_done);
        if (k > best_len) {
            best_len = k;
            best = i;
        }
    }
    *len = best_len;
    *later = best_later;
    return best;
}

/* A request whose prompt begins like one still being evaluated waits for it
 * when that saves at least this many tokens: prompts that arrive together
 * with a common system prompt evaluate it once. */
#define SHARE_WAIT_MIN 8

/* Ends an admitted request: lets out its held text (unless cancelled), frees
 * its sequence, sampler and the cells only it held. */
static plm_status finish(plm_batch_gen *bg, int32_t id, plm_stop_reason reason, bool flush) {
    request *r = bg->rq[id];
    plm_status st = PLM_OK;
    r->reason = reason;
    if (flush) {
        const char *piece;
        size_t k;
        st = plm_textstream_take(&r->ts, true, &piece, &k);
        if (!st && k) {
            st = append_text(r, piece, k);
            if (!st && bg->cb) bg->cb(id, piece, k, bg->cb_user);
        }
    }
    if (r->state == RQ_PREFILL || r->state == RQ_RUNNING) {
        plm_kv_seq_rm(bg->ctx, r->seq, 0, -1);
        bg->seq_owner[r->seq] = -1;
        int32_t k = 0;
        for (int32_t i = 0; i < bg->n_active; i++)
            if (bg->active[i] != id) bg->active[k++] = bg->active[i];
        bg->n_active = k;
    }
    plm_sampler_free(r->smp);
    r->smp = NULL;
    plm_textstream_release(&r->ts);
    free(r->prompt);
    r->prompt = NULL;
    r->reserve = 0;
    r->seq = -1;
    r->state = RQ_DONE;
    r->updated = true;
    bg->n_left--;
    if (bg->cb) bg->cb(id, "", 0, bg->cb_user);
    return st;
}

/* Admits queued requests, in order, while a sequence id and their cells are free. */
static plm_status admit(plm_batch_gen *bg) {
    plm_context *ctx = bg->ctx;
    while (bg->next_queued < bg->n_rq) {
        const int32_t id = bg->next_queued;
        request *r = bg->rq[id];
        if (r->state != RQ_QUEUED) {
            bg->next_queued++;
            continue;
        }
        if (bg->n_active == bg->p.n_parallel) break;
        int32_t shared = 0, later = 0;
        const int32_t donor = bg->p.share_prefix ? best_donor(bg, r, &shared, &later) : -1;
        if (later - shared >= SHARE_WAIT_MIN) break; /* admitted once the common part is cached */
        const int32_t need = cells_needed(bg, r) - shared;
        if (need > cells_free(bg)) {
            if (bg->n_active > 0) break; /* waits for cells to free up */
            fail_request(bg, id, PLM_ERR_CONTEXT_FULL,
                         "request %d: needs %d cells but only %lld of the context's %d are free", id, need,
                         (long long)cells_free(bg), ctx->kv.n_ctx);
            bg->next_queued++;
            continue;
        }
        plm_status st = plm_sampler_create(&r->p.sampling, ctx->model->hp.n_vocab, &r->smp);
        if (st) return st;
        if (r->p.grammar && (st = plm_sampler_set_grammar(r->smp, ctx->model, r->p.grammar))) {
            plm_sampler_free(r->smp);
            r->smp = NULL;
            return st;
        }
        int32_t seq = 0;
        while (bg->seq_owner[seq] >= 0) seq++;
        if (donor >= 0 && shared > 0) {
            if ((st = plm_kv_seq_cp(ctx, bg->rq[bg->active[donor]]->seq, seq, 0, shared))) {
                plm_sampler_free(r->smp);
                r->smp = NULL;
                return st;
            }
        }
        plm_sampler_accept_prompt(r->smp, r->prompt, r->n_prompt); /* penalties see it; a grammar does not */
        bg->seq_owner[seq] = id;
        bg->active[bg->n_active++] = id;
        r->seq = seq;
        r->n_done = r->n_shared = shared;
        r->reserve = need;
        r->state = RQ_PREFILL;
        bg->next_queued++;
    }
    return PLM_OK;
}

/* The rules of plm_generator_next for the token t just sampled for r. */
static plm_status advance(plm_batch_gen *bg, int32_t id, plm_token t) {
    request *r = bg->rq[id];
    const plm_model *m = bg->ctx->model;
    plm_status st;
    /* A grammar allows an end-of-generation token only where it is complete: that ends it even with ignore_eos. */
    if ((!r->p.ignore_eos || plm_sampler_grammar_accepts(r->smp)) && plm_vocab_is_eog(m->vocab, t))
        return finish(bg, id, PLM_STOP_EOG, true);
    if ((st = grow((void **)&r->gen, sizeof(plm_token), &r->cap_gen, r->n_gen + 1))) return st;
    r->gen[r->n_gen++] = t;
    plm_sampler_accept(r->smp, t);
    if ((st = plm_textstream_push_token(&r->ts, m->vocab, t))) return st;
    if (r->ts.stopped) return finish(bg, id, PLM_STOP_STRING, true);
    if (r->p.max_tokens > 0 && r->n_gen >= r->p.max_tokens) return finish(bg, id, PLM_STOP_LENGTH, true);
    /* alone, the context would hold the prompt and every generated token but t */
    if (r->n_prompt + r->n_gen - 1 >= bg->p.n_ctx_seq) return finish(bg, id, PLM_STOP_CONTEXT, true);
    const char *piece;
    size_t k;
    if ((st = plm_textstream_take(&r->ts, false, &piece, &k))) return st;
    if (k) {
        if ((st = append_text(r, piece, k))) return st;
        r->updated = true;
        if (bg->cb && bg->cb(id, piece, k, bg->cb_user)) return finish(bg, id, PLM_STOP_CALLER, false);
    }
    r->state = RQ_RUNNING;
    return PLM_OK;
}

plm_status plm_batch_gen_step(plm_batch_gen *bg, int32_t *n_left) {
    if (!bg) return plm_fail(PLM_ERR_ARG, "plm_batch_gen_step: bg is NULL");
    plm_clear_error();
    for (int32_t i = 0; i < bg->n_rq; i++) bg->rq[i]->updated = false;
    plm_status st = admit(bg);
    if (n_left) *n_left = bg->n_left;
    if (st) return st;
    if (bg->n_active == 0) return PLM_OK;
    plm_context *ctx = bg->ctx;
    if (ctx->abort_fn && ctx->abort_fn(ctx->abort_user))
        return plm_fail(PLM_ERR_CANCELLED, "batch generation cancelled by the abort callback");

    /* The batch: every running request's pending token, then prompt chunks. */
    int32_t n = 0, budget = bg->p.prefill_chunk;
    for (int32_t i = 0; i < bg->n_active; i++) {
        const request *r = bg->rq[bg->active[i]];
        if (r->state != RQ_RUNNING) continue;
        bg->b_tok[n] = r->gen[r->n_gen - 1];
        bg->b_pos[n] = r->n_prompt + r->n_gen - 1;
        bg->b_seq[n] = r->seq;
        bg->b_rq[n] = bg->active[i];
        bg->b_logits[n++] = 1;
    }
    for (int32_t i = 0; i < bg->n_active && budget > 0; i++) {
        const request *r = bg->rq[bg->active[i]];
        if (r->state != RQ_PREFILL) continue;
        const int32_t k = PLM_MIN(budget, r->n_prompt - r->n_done);
        for (int32_t j = 0; j < k; j++) {
            const int32_t at = r->n_done + j;
            bg->b_tok[n] = r->prompt[at];
            bg->b_pos[n] = at;
            bg->b_seq[n] = r->seq;
            bg->b_rq[n] = bg->active[i];
            bg->b_logits[n++] = at == r->n_prompt - 1;
        }
        budget -= k;
    }
    plm_batch b = {.n_tokens = n, .token = bg->b_tok, .pos = bg->b_pos, .seq_id = bg->b_seq, .logits = bg->b_logits};
    if ((st = plm_decode(ctx, &b))) return st;

    /* The decode happened: account for it, then sample. */
    for (int32_t i = 0; i < n; i++) {
        request *r = bg->rq[bg->b_rq[i]];
        r->reserve--;
        if (r->state == RQ_PREFILL) r->n_done++;
    }
    for (int32_t i = 0; i < n && !st; i++) {
        if (!bg->b_logits[i]) continue;
        const int32_t id = bg->b_rq[i];
        request *r = bg->rq[id];
        if (r->state == RQ_DONE) continue; /* cancelled by the callback meanwhile */
        plm_token t;
        if ((st = plm_sampler_sample(r->smp, ctx, i, &t))) break;
        st = advance(bg, id, t);
    }
    if (!st) st = admit(bg); /* fill what ended at once, so that a caller sees the queue move */
    if (n_left) *n_left = bg->n_left;
    return st;
}

/* ------------------------------------------------------------ results */

static request *get(const plm_batch_gen *bg, int32_t id) {
    if (!bg || id < 0 || id >= bg->n_rq) {
        plm_fail(PLM_ERR_ARG, "request %d does not exist (%d submitted)", id, bg ? bg->n_rq : 0);
        return NULL;
    }
    return bg->rq[id];
}

plm_status plm_batch_gen_take(plm_batch_gen *bg, int32_t id, const char **text, size_t *len) {
    if (!text || !len) return plm_fail(PLM_ERR_ARG, "plm_batch_gen_take: NULL argument");
    *text = "";
    *len = 0;
    request *r = get(bg, id);
    if (!r) return PLM_ERR_ARG;
    const size_t k = r->n_text - r->n_taken;
    if (k == 0) return PLM_OK;
    if (k + 1 > bg->cap_take) {
        char *nb = realloc(bg->take_buf, k + 1);
        if (!nb) return plm_fail(PLM_ERR_OOM, "out of memory");
        bg->take_buf = nb;
        bg->cap_take = k + 1;
    }
    memcpy(bg->take_buf, r->text + r->n_taken, k);
    bg->take_buf[k] = 0;
    r->n_taken = r->n_text;
    *text = bg->take_buf;
    *len = k;
    return PLM_OK;
}

int32_t plm_batch_gen_updated(const plm_batch_gen *bg, int32_t *ids, int32_t cap) {
    if (!bg) return 0;
    int32_t k = 0;
    for (int32_t i = 0; i < bg->n_rq; i++)
        if (bg->rq[i]->updated) {
            if (ids && k < cap) ids[k] = i;
            k++;
        }
    return k;
}

plm_status plm_batch_gen_result(const plm_batch_gen *bg, int32_t id, plm_batch_result *out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_batch_gen_result: out is NULL");
    memset(out, 0, sizeof(*out));
    const request *r = get(bg, id);
    if (!r) return PLM_ERR_ARG;
    out->reason = r->reason;
    out->status = r->status;
    out->error = r->error ? r->error : "";
    out->text = r->text ? r->text : "";
    out->text_len = r->n_text;
    out->n_prompt = r->n_prompt;
    out->n_shared = r->n_shared;
    out->n_generated = r->n_gen;
    return PLM_OK;
}

const plm_token *plm_batch_gen_tokens(const plm_batch_gen *bg, int32_t id, int32_t *n) {
    if (n) *n = 0;
    const request *r = get(bg, id);
    if (!r) return NULL;
    if (n) *n = r->n_gen;
    return r->gen;
}

plm_status plm_batch_gen_cancel(plm_batch_gen *bg, int32_t id) {
    if (!bg) return plm_fail(PLM_ERR_ARG, "plm_batch_gen_cancel: bg is NULL");
    if (id < -1 || id >= bg->n_rq) return plm_fail(PLM_ERR_ARG, "request %d does not exist (%d submitted; -1 means all)", id, bg->n_rq);
    for (int32_t i = id < 0 ? 0 : id; i < (id < 0 ? bg->n_rq : id + 1); i++)
        if (bg->rq[i]->state != RQ_DONE) finish(bg, i, PLM_STOP_CALLER, false);
    return PLM_OK;
}

int32_t plm_batch_gen_n_requests(const plm_batch_gen *bg) { return bg ? bg->n_rq : 0; }
int32_t plm_batch_gen_n_left(const plm_batch_gen *bg) { return bg ? bg->n_left : 0; }
