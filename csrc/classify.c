/*
 * classify.c — zero-shot classification by label likelihood, and embeddings.
 *
 * Owns plm_classify, plm_embed and plm_classify_head. Zero-shot classification
 * evaluates the prompt once in
 * sequence 0, shares its cache with one sequence per label (plm_kv_seq_cp adds
 * the label's sequence to the prompt's cells, no copy), and scores all labels'
 * tokens in a single batched plm_decode. Embeddings capture the final hidden
 * states of several texts decoded as separate sequences and pool them; a
 * classification head (loaded by model.c) maps such a pooled state to label
 * scores. The forward pass is forward.c's; cell bookkeeping kvcache.c's.
 */
#include "context.h"
#include "tokenizer/unicode.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

plm_classify_params plm_classify_default_params(void) {
    plm_classify_params p = {.mode = PLM_SCORE_SUM, .multi_label = false, .yes_token = -1, .no_token = -1, .keep_cache = true};
    return p;
}

/* log softmax(l)[tok] over n_vocab logits. */
static double log_prob(const float *l, int32_t n_vocab, plm_token tok) {
    float mx = l[0];
    for (int32_t v = 1; v < n_vocab; v++) if (l[v] > mx) mx = l[v];
    double s = 0.0;
    for (int32_t v = 0; v < n_vocab; v++) s += exp((double)(l[v] - mx));
    return (double)(l[tok] - mx) - log(s);
}

/* The single token whose text is exactly `text`, or -1. */
static plm_token single_token(const plm_model *m, const char *text) {
    plm_token t[4];
    int32_t n = 0;
    if (plm_tokenize(m, text, strlen(text), false, false, t, 4, &n) != PLM_OK || n != 1) return -1;
    return t[0];
}

static plm_status check_tokens(const plm_context *ctx, const plm_token *t, int32_t n, const char *what, int32_t idx) {
    for (int32_t i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= ctx->model->hp.n_vocab)
            return plm_fail(PLM_ERR_ARG, "%s %d: token %d is %d, outside the vocabulary [0, %d)", what, idx, i, t[i], ctx->model->hp.n_vocab);
    return PLM_OK;
}

plm_status plm_classify(plm_context *ctx, const plm_token *prompt, int32_t n_prompt, const plm_token *const *labels,
                        const int32_t *label_lens, int32_t n_labels, const plm_classify_params *params,
                        float *logprob_out, float *prob_out) {
    if (!ctx) return plm_fail(PLM_ERR_ARG, "plm_classify: ctx is NULL");
    plm_clear_error();
    plm_classify_params p = params ? *params : plm_classify_default_params();
    if (n_prompt <= 0 || !prompt) return plm_fail(PLM_ERR_ARG, "plm_classify: the prompt is empty");
    if (n_labels <= 0 || !labels || !label_lens) return plm_fail(PLM_ERR_ARG, "plm_classify: the label list is empty");
    if (ctx->params.n_seq_max < 2) return plm_fail(PLM_ERR_ARG, "plm_classify needs a context with n_seq_max >= 2");
    plm_status st = check_tokens(ctx, prompt, n_prompt, "prompt", 0);
    if (st) return st;
    int32_t longest = 0;
    for (int32_t i = 0; i < n_labels; i++) {
        if (label_lens[i] <= 0 || !labels[i]) return plm_fail(PLM_ERR_ARG, "label %d is empty", i);
        if ((st = check_tokens(ctx, labels[i], label_lens[i], "label", i))) return st;
        longest = PLM_MAX(longest, label_lens[i]);
    }
    plm_token yes = p.yes_token, no = p.no_token;
    if (p.multi_label) {
        if (yes < 0) yes = single_token(ctx->model, " yes");
        if (no < 0) no = single_token(ctx->model, " no");
        if (yes < 0 || no < 0 || yes >= ctx->model->hp.n_vocab || no >= ctx->model->hp.n_vocab || yes == no)
            return plm_fail(PLM_ERR_ARG, "multi-label classification needs distinct yes/no tokens (\" yes\" and \" no\" are not single tokens of this vocabulary)");
    }
    if (n_prompt + longest > ctx->kv.n_ctx)
        return plm_fail(PLM_ERR_CONTEXT_FULL, "prompt (%d tokens) and the longest label (%d) do not fit the context (%d)", n_prompt, longest, ctx->kv.n_ctx);

    /* The prompt, in sequence 0, reusing what is cached. */
    int32_t keep = p.keep_cache ? plm_kv_common_prefix(ctx, 0, prompt, n_prompt) : 0;
    if (keep >= n_prompt) keep = n_prompt - 1;
    for (int32_t s = 0; s < ctx->params.n_seq_max; s++)
        if ((st = plm_kv_seq_rm(ctx, s, s == 0 ? keep : 0, -1))) return st;
    if ((st = plm_eval_sequence(ctx, prompt + keep, n_prompt - keep, keep, 0))) return st;
    const int32_t V = ctx->model->hp.n_vocab;
    /* log-probability of every label's first token comes from the prompt's last logits */
    float *first = malloc((size_t)V * sizeof(float));
    double *score = malloc((size_t)n_labels * sizeof(double));
    if (!first || !score) {
        free(first);
        free(score);
        return plm_fail(PLM_ERR_OOM, "out of memory");
    }
    memcpy(first, plm_context_logits(ctx, -1), (size_t)V * sizeof(float));

    const int32_t group = ctx->params.n_seq_max - 1;
    plm_token *bt = NULL;
    int32_t *bp = NULL, *bs = NULL;
    int8_t *bl = NULL;
    int32_t cap = 0;
    int32_t g0 = 0;
    while (g0 < n_labels && !st) {
        /* as many labels as there are free sequence ids and cache cells */
        int32_t g1 = g0, total = 0;
        while (g1 < n_labels && g1 - g0 < group && n_prompt + total + label_lens[g1] <= ctx->kv.n_ctx) total += label_lens[g1++];
        if (total > cap) {
            cap = total;
            plm_token *nt = realloc(bt, (size_t)cap * sizeof(plm_token));
            if (nt) bt = nt;
            int32_t *np = realloc(bp, (size_t)cap * sizeof(int32_t));
            if (np) bp = np;
            int32_t *ns = realloc(bs, (size_t)cap * sizeof(int32_t));
            if (ns) bs = ns;
            int8_t *nl = realloc(bl, (size_t)cap);
            if (nl) bl = nl;
            if (!nt || !np || !ns || !nl) {
                st = plm_fail(PLM_ERR_OOM, "out of memory for a batch of %d label tokens", cap);
                break;
            }
        }
        int32_t k = 0;
        for (int32_t i = g0; i < g1; i++) {
            int32_t seq = 1 + (i - g0);
            if ((st = plm_kv_seq_cp(ctx, 0, seq, 0, -1))) break;
            for (int32_t j = 0; j < label_lens[i]; j++, k++) {
                bt[k] = labels[i][j];
                bp[k] = n_prompt + j;
                bs[k] = seq;
                bl[k] = p.multi_label ? (j == label_lens[i] - 1) : (j < label_lens[i] - 1);
            }
        }
        if (st) break;
        bool need_decode = false;
        for (int32_t i = 0; i < k; i++) need_decode |= bl[i] != 0;
        plm_batch b = {.n_tokens = k, .token = bt, .pos = bp, .seq_id = bs, .logits = bl};
        if (need_decode && (st = plm_decode(ctx, &b))) break;
        k = 0;
        for (int32_t i = g0; i < g1; i++) {
            const int32_t L = label_lens[i];
            if (p.multi_label) {
                const float *l = plm_context_logits(ctx, k + L - 1);
                /* P(yes) / (P(yes) + P(no)) = sigmoid(l_yes - l_no) */
                double d = (double)(l[yes] - l[no]);
                score[i] = d >= 0 ? -log1p(exp(-d)) : d - log1p(exp(d));
            } else {
                double s = log_prob(first, V, labels[i][0]);
                for (int32_t j = 1; j < L; j++) s += log_prob(plm_context_logits(ctx, k + j - 1), V, labels[i][j]);
                score[i] = p.mode == PLM_SCORE_MEAN ? s / L : s;
            }
            k += L;
        }
        for (int32_t s = 1; s <= group; s++) plm_kv_seq_rm(ctx, s, 0, -1);
        g0 = g1;
    }
    free(bt);
    free(bp);
    free(bs);
    free(bl);
    free(first);
    if (st) {
        for (int32_t s = 1; s < ctx->params.n_seq_max; s++) plm_kv_seq_rm(ctx, s, 0, -1);
        free(score);
        return st;
    }
    if (logprob_out)
        for (int32_t i = 0; i < n_labels; i++) logprob_out[i] = (float)score[i];
    if (prob_out) {
        if (p.multi_label) {
            for (int32_t i = 0; i < n_labels; i++) prob_out[i] = (float)exp(score[i]);
        } else {
            double mx = score[0], z = 0.0;
            for (int32_t i = 1; i < n_labels; i++) mx = score[i] > mx ? score[i] : mx;
            for (int32_t i = 0; i < n_labels; i++) z += exp(score[i] - mx);
            for (int32_t i = 0; i < n_labels; i++) prob_out[i] = (float)(exp(score[i] - mx) / z);
        }
    }
    free(score);
    return PLM_OK;
}

/* ------------------------------------------------------- the zero-shot prompt */

/* A template cut into items: literal text, and the placeholders {text},
 * {labels} and {label}. The run of ASCII spaces before a placeholder is moved
 * out of the literal into the placeholder (ws), so that the inserted text is
 * tokenized with its leading space, as a word after a space is. */
typedef enum { ITEM_LIT, ITEM_TEXT, ITEM_LABELS, ITEM_LABEL } item_kind;

typedef struct plan_item {
    item_kind kind;
    const char *s; /* ITEM_LIT: the literal; a placeholder: the spaces before it */
    size_t len;
} plan_item;

static const struct {
    const char *name;
    item_kind kind;
} PLACEHOLDERS[] = {{"{text}", ITEM_TEXT}, {"{labels}", ITEM_LABELS}, {"{label}", ITEM_LABEL}};

/* Cuts t (n bytes) into items (at most 2 * (number of '{') + 1: malloc'd). */
static plm_status parse_template(const char *t, size_t n, plan_item **out, int32_t *n_out) {
    size_t braces = 0;
    for (size_t i = 0; i < n; i++) braces += t[i] == '{';
    if (braces > (size_t)INT32_MAX / 2 - 1) return plm_fail(PLM_ERR_ARG, "the template has too many '{'");
    plan_item *it = malloc((2 * braces + 1) * sizeof(plan_item));
    if (!it) return plm_fail(PLM_ERR_OOM, "out of memory parsing a template of %zu bytes", n);
    int32_t k = 0;
    size_t lit = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] != '{') continue;
        for (size_t p = 0; p < sizeof PLACEHOLDERS / sizeof PLACEHOLDERS[0]; p++) {
            const size_t pl = strlen(PLACEHOLDERS[p].name);
            if (n - i < pl || memcmp(t + i, PLACEHOLDERS[p].name, pl) != 0) continue;
            size_t end = i;
            while (end > lit && t[end - 1] == ' ') end--;
            it[k++] = (plan_item){ITEM_LIT, t + lit, end - lit};
            it[k++] = (plan_item){PLACEHOLDERS[p].kind, t + end, i - end};
            lit = i + pl;
            i = lit - 1;
            break;
        }
    }
    it[k++] = (plan_item){ITEM_LIT, t + lit, n - lit};
    *out = it;
    *n_out = k;
    return PLM_OK;
}

/* A growing token array. */
typedef struct tokbuf {
    plm_token *t;
    int32_t n, cap;
} tokbuf;

static plm_status tokbuf_reserve(tokbuf *b, int64_t more) {
    if ((int64_t)b->n + more <= b->cap) return PLM_OK;
    if ((int64_t)b->n + more > INT32_MAX)
        return plm_fail(PLM_ERR_ARG, "the classification prompt has more than %d tokens", INT32_MAX);
    int64_t cap = PLM_MAX((int64_t)b->n + more, PLM_MIN((int64_t)INT32_MAX, 2 * (int64_t)b->cap + 64));
    plm_token *t = realloc(b->t, (size_t)cap * sizeof(plm_token));
    if (!t) return plm_fail(PLM_ERR_OOM, "out of memory for %" PRId64 " prompt tokens", cap);
    b->t = t;
    b->cap = (int32_t)cap;
    return PLM_OK;
}

/* Appends the tokens of pre + s (no BOS/EOS); special: match special-token texts. */
static plm_status tokbuf_add(const plm_model *m, tokbuf *b, const char *pre, size_t npre, const char *s, size_t ns,
                             bool special) {
    if (npre + ns == 0) return PLM_OK;
    char *joined = NULL;
    const char *txt = s;
    if (npre) {
        if (ns > SIZE_MAX - npre || !(joined = malloc(npre + ns)))
            return plm_fail(PLM_ERR_OOM, "out of memory for a text of %zu bytes", ns);
        memcpy(joined, pre, npre);
        memcpy(joined + npre, s, ns);
        txt = joined;
    }
    const size_t len = npre + ns;
    /* a token covers at least one byte, except the few a vocabulary adds (a leading "▁") */
    plm_status st = tokbuf_reserve(b, (int64_t)PLM_MIN(len, (size_t)INT32_MAX) + 8);
    int32_t need = 0;
    if (!st) st = plm_tokenize(m, txt, len, false, special, b->t + b->n, b->cap - b->n, &need);
    if (st == PLM_ERR_BUFFER && !(st = tokbuf_reserve(b, need)))
        st = plm_tokenize(m, txt, len, false, special, b->t + b->n, b->cap - b->n, &need);
    if (!st) b->n += need;
    free(joined);
    return st;
}

/* True when the last character of s (n > 0 bytes) is Unicode White_Space: the
 * \s of the tokenizers' pre-tokenizer. Bytes that do not end a valid UTF-8
 * character are not whitespace. */
static bool ends_with_space(const char *s, size_t n) {
    size_t i = n - 1;
    while (i > 0 && n - i < 4 && ((uint8_t)s[i] & 0xC0) == 0x80) i--;
    uint32_t cp;
    if (plm_utf8_decode((const uint8_t *)s + i, n - i, &cp) != n - i || cp == PLM_CP_INVALID) return false;
    return (plm_unicode_flags(cp) & PLM_UCAT_SPACE) != 0;
}

/* True when s has a character other than Unicode whitespace. */
static bool has_content(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = plm_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (cp == PLM_CP_INVALID || !(plm_unicode_flags(cp) & PLM_UCAT_SPACE)) return true;
        i += k;
    }
    return false;
}

/* The default template: the instruction as a user turn of the model's chat
 * (its own template, plm_chat_apply), the assistant's turn opened, then
 * PLM_CLASSIFY_ANSWER. malloc'd. */
static plm_status default_template(const plm_model *m, bool multi_label, char **out, size_t *len) {
    const char *instr = multi_label ? PLM_CLASSIFY_MULTI_LABEL_INSTRUCTION : PLM_CLASSIFY_INSTRUCTION;
    char *turn = NULL;
    size_t n = 0;
    plm_status st = plm_chat_user_prompt(m, instr, strlen(instr), &turn, &n);
    if (st) return st;
    const size_t na = strlen(PLM_CLASSIFY_ANSWER);
    char *buf = malloc(n + na + 1);
    if (!buf) {
        plm_free(turn);
        return plm_fail(PLM_ERR_OOM, "out of memory for the classification template");
    }
    memcpy(buf, turn, n);
    memcpy(buf + n, PLM_CLASSIFY_ANSWER, na + 1);
    plm_free(turn);
    *out = buf;
    *len = n + na;
    return PLM_OK;
}

plm_status plm_classify_prompt(const plm_model *model, const char *tmpl, size_t tmpl_len, const char *text,
                               size_t text_len, const char *const *labels, const size_t *label_lens, int32_t n_labels,
                               bool multi_label, plm_token **prompt_out, int32_t *n_prompt_out,
                               plm_token **label_tokens_out, int32_t *label_tokens_lens) {
    if (!model || !prompt_out || !n_prompt_out || !label_tokens_out || !label_tokens_lens)
        return plm_fail(PLM_ERR_ARG, "plm_classify_prompt: NULL argument");
    *prompt_out = NULL;
    *n_prompt_out = 0;
    *label_tokens_out = NULL;
    plm_clear_error();
    if ((!text && text_len) || !has_content(text, text_len)) return plm_fail(PLM_ERR_ARG, "the text is empty");
    if (n_labels <= 0 || !labels || !label_lens) return plm_fail(PLM_ERR_ARG, "the label list is empty");
    for (int32_t i = 0; i < n_labels; i++)
        if ((!labels[i] && label_lens[i]) || !has_content(labels[i], label_lens[i]))
            return plm_fail(PLM_ERR_ARG, "label %d is empty", i);
    if (tmpl && memchr(tmpl, 0, tmpl_len)) return plm_fail(PLM_ERR_ARG, "the template contains a NUL byte");

    char *owned = NULL, *joined = NULL;
    plan_item *it = NULL;
    int32_t n_it = 0;
    tokbuf prompt = {0}, lab = {0};
    plm_status st = PLM_OK;
    if (!tmpl) {
        if ((st = default_template(model, multi_label, &owned, &tmpl_len))) goto done;
        tmpl = owned;
    }
    if ((st = parse_template(tmpl, tmpl_len, &it, &n_it))) goto done;
    int32_t n_text = 0, n_label = 0, cut = n_it;
    for (int32_t i = 0; i < n_it; i++) {
        n_text += it[i].kind == ITEM_TEXT;
        if (it[i].kind == ITEM_LABEL) {
            n_label++;
            cut = i;
        }
    }
    if (n_text == 0) {
        st = plm_fail(PLM_ERR_ARG, "the template has no {text} placeholder");
        goto done;
    }
    if (multi_label && n_label != 1) {
        st = plm_fail(PLM_ERR_ARG, "a multi-label template needs exactly one {label} placeholder");
        goto done;
    }
    if (!multi_label && n_label) {
        st = plm_fail(PLM_ERR_ARG, "{label} is for multi-label templates; use {labels} for the list");
        goto done;
    }
    for (int32_t i = cut; i < n_it; i++)
        if (it[i].kind == ITEM_TEXT) {
            st = plm_fail(PLM_ERR_ARG, "in a multi-label template {text} must come before {label}");
            goto done;
        }

    /* {labels}: the labels joined by ", " */
    size_t n_joined = 0;
    for (int32_t i = 0; i < n_labels; i++) n_joined += label_lens[i] + (i ? 2 : 0);
    if (!(joined = malloc(n_joined + 1))) {
        st = plm_fail(PLM_ERR_OOM, "out of memory joining %d labels", n_labels);
        goto done;
    }
    size_t o = 0;
    for (int32_t i = 0; i < n_labels; i++) {
        if (i) {
            memcpy(joined + o, ", ", 2);
            o += 2;
        }
        if (label_lens[i]) memcpy(joined + o, labels[i], label_lens[i]);
        o += label_lens[i];
    }

    /* The prompt: BOS if the vocabulary wants one, then the items before {label}. */
    const plm_token bos = plm_vocab_bos(model->vocab);
    if (plm_vocab_add_bos(model->vocab) && bos >= 0) {
        if ((st = tokbuf_reserve(&prompt, 1))) goto done;
        prompt.t[prompt.n++] = bos;
    }
    const char *last = NULL; /* the last non-empty string put in the prompt, for the label's space */
    size_t last_len = 0;
    for (int32_t i = 0; i < cut && !st; i++) {
        const plan_item *p = &it[i];
        const char *s = p->kind == ITEM_TEXT ? text : p->kind == ITEM_LABELS ? joined : p->s;
        const size_t n = p->kind == ITEM_TEXT ? text_len : p->kind == ITEM_LABELS ? n_joined : p->len;
        if (p->kind == ITEM_LIT) st = tokbuf_add(model, &prompt, NULL, 0, s, n, true);
        else st = tokbuf_add(model, &prompt, p->s, p->len, s, n, false);
        if (n || p->kind != ITEM_LIT) {
            last = n ? s : p->s;
            last_len = n ? n : p->len;
        }
    }
    if (st) goto done;

    /* Each label: its continuation, or (multi-label) the items from {label} on. */
    const bool sep = !multi_label && !(last_len && ends_with_space(last, last_len));
    for (int32_t j = 0; j < n_labels && !st; j++) {
        const int32_t n0 = lab.n;
        if (!multi_label) {
            st = tokbuf_add(model, &lab, " ", sep ? 1 : 0, labels[j], label_lens[j], false);
        } else {
            for (int32_t i = cut; i < n_it && !st; i++) {
                const plan_item *p = &it[i];
                if (p->kind == ITEM_LIT)
                    st = tokbuf_add(model, &lab, NULL, 0, p->s, p->len, true);
                else if (p->kind == ITEM_LABEL)
                    st = tokbuf_add(model, &lab, p->s, p->len, labels[j], label_lens[j], false);
                else
                    st = tokbuf_add(model, &lab, p->s, p->len, joined, n_joined, false);
            }
        }
        label_tokens_lens[j] = lab.n - n0;
        if (!st && lab.n == n0) st = plm_fail(PLM_ERR_ARG, "label %d has no tokens", j);
    }
done:
    free(owned);
    free(joined);
    free(it);
    if (st) {
        free(prompt.t);
        free(lab.t);
        return st;
    }
    plm_clear_error(); /* a PLM_ERR_BUFFER on the way was answered */
    *prompt_out = prompt.t;
    *n_prompt_out = prompt.n;
    *label_tokens_out = lab.t;
    return PLM_OK;
}

plm_status plm_classify_text(plm_context *ctx, const char *tmpl, size_t tmpl_len, const char *text, size_t text_len,
                             const char *const *labels, const size_t *label_lens, int32_t n_labels,
                             const plm_classify_params *params, float *logprob_out, float *prob_out) {
    if (!ctx) return plm_fail(PLM_ERR_ARG, "plm_classify_text: ctx is NULL");
    if (n_labels <= 0 || !labels || !label_lens) return plm_fail(PLM_ERR_ARG, "the label list is empty");
    const bool multi = params && params->multi_label;
    plm_token *prompt = NULL, *flat = NULL;
    int32_t n_prompt = 0;
    int32_t *lens = malloc((size_t)n_labels * sizeof(int32_t));
    const plm_token **ptrs = malloc((size_t)n_labels * sizeof(*ptrs));
    plm_status st = !lens || !ptrs ? plm_fail(PLM_ERR_OOM, "out of memory for %d labels", n_labels) : PLM_OK;
    if (!st)
        st = plm_classify_prompt(ctx->model, tmpl, tmpl_len, text, text_len, labels, label_lens, n_labels, multi,
                                 &prompt, &n_prompt, &flat, lens);
    if (!st) {
        for (int32_t i = 0, o = 0; i < n_labels; o += lens[i++]) ptrs[i] = flat + o;
        st = plm_classify(ctx, prompt, n_prompt, ptrs, lens, n_labels, params, logprob_out, prob_out);
    }
    free(prompt);
    free(flat);
    free(lens);
    free(ptrs);
    return st;
}

/* Pools the final normalized hidden states of n_texts checked texts into out
 * (n_texts x n_embd), optionally L2-normalized. Leaves the cache empty. */
static plm_status pool_texts(plm_context *ctx, const plm_token *const *texts, const int32_t *lens, int32_t n_texts,
                             plm_pooling pooling, bool normalize, float *out) {
    const int64_t E = ctx->model->hp.n_embd;
    plm_status st = PLM_OK;
    plm_kv_clear(ctx);
    /* an encoder sees each text whole: one micro-batch (n_batch tokens) per decode */
    const int32_t room = plm_model_is_encoder(ctx->model) ? PLM_MIN(ctx->kv.n_ctx, ctx->params.n_batch) : ctx->kv.n_ctx;
    int32_t i0 = 0;
    while (i0 < n_texts && !st) {
        /* as many texts as fit: one sequence each */
        int32_t i1 = i0, total = 0;
        while (i1 < n_texts && i1 - i0 < ctx->params.n_seq_max && total + lens[i1] <= room) total += lens[i1++];
        plm_token *bt = malloc((size_t)total * sizeof(plm_token));
        int32_t *bp = malloc((size_t)total * sizeof(int32_t)), *bs = malloc((size_t)total * sizeof(int32_t));
        int8_t *bl = calloc((size_t)total, 1);
        float *hidden = plm_amalloc((size_t)total * (size_t)E * sizeof(float));
        if (!bt || !bp || !bs || !bl || !hidden) {
            st = plm_fail(PLM_ERR_OOM, "out of memory embedding %d tokens", total);
        } else {
            int32_t k = 0;
            for (int32_t i = i0; i < i1; i++)
                for (int32_t j = 0; j < lens[i]; j++, k++) {
                    bt[k] = texts[i][j];
                    bp[k] = j;
                    bs[k] = i - i0;
                }
            ctx->hidden_out = hidden;
            plm_batch b = {.n_tokens = total, .token = bt, .pos = bp, .seq_id = bs, .logits = bl};
            st = plm_decode(ctx, &b);
            ctx->hidden_out = NULL;
            k = 0;
            for (int32_t i = i0; i < i1 && !st; i++) {
                float *o = out + (int64_t)i * E;
                const float *h = hidden + (int64_t)k * E;
                const int32_t L = lens[i];
                if (pooling == PLM_POOL_MEAN) {
                    for (int64_t e = 0; e < E; e++) {
                        double s = 0.0;
                        for (int32_t j = 0; j < L; j++) s += h[(int64_t)j * E + e];
                        o[e] = (float)(s / L);
                    }
                } else {
                    memcpy(o, h + (pooling == PLM_POOL_LAST ? (int64_t)(L - 1) * E : 0), (size_t)E * sizeof(float));
                }
                if (normalize) {
                    double ss = 0.0;
                    for (int64_t e = 0; e < E; e++) ss += (double)o[e] * o[e];
                    float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
                    for (int64_t e = 0; e < E; e++) o[e] *= inv;
                }
                k += L;
            }
        }
        free(bt);
        free(bp);
        free(bs);
        free(bl);
        plm_afree(hidden);
        plm_kv_clear(ctx);
        i0 = i1;
    }
    return st;
}

/* Checks a list of texts for plm_embed and plm_classify_head. */
static plm_status check_texts(const plm_context *ctx, const plm_token *const *texts, const int32_t *lens, int32_t n_texts,
                              const char *fn) {
    if (n_texts <= 0 || !texts || !lens) return plm_fail(PLM_ERR_ARG, "%s: no texts", fn);
    plm_status st;
    for (int32_t i = 0; i < n_texts; i++) {
        if (lens[i] <= 0 || !texts[i]) return plm_fail(PLM_ERR_ARG, "%s: text %d is empty", fn, i);
        if (lens[i] > ctx->kv.n_ctx)
            return plm_fail(PLM_ERR_CONTEXT_FULL, "text %d has %d tokens; the context holds %d", i, lens[i], ctx->kv.n_ctx);
        if (plm_model_is_encoder(ctx->model) && lens[i] > ctx->params.n_batch)
            return plm_fail(PLM_ERR_CONTEXT_FULL, "text %d has %d tokens; an encoder sees a text whole, in one batch of at most n_batch = %d", i,
                            lens[i], ctx->params.n_batch);
        if ((st = check_tokens(ctx, texts[i], lens[i], "text", i))) return st;
    }
    return PLM_OK;
}

plm_status plm_embed(plm_context *ctx, const plm_token *const *texts, const int32_t *lens, int32_t n_texts,
                     plm_pooling pooling, bool normalize, float *out) {
    if (!ctx || !out) return plm_fail(PLM_ERR_ARG, "plm_embed: NULL argument");
    plm_clear_error();
    if (pooling != PLM_POOL_MEAN && pooling != PLM_POOL_LAST && pooling != PLM_POOL_CLS)
        return plm_fail(PLM_ERR_ARG, "plm_embed: unknown pooling %d", (int)pooling);
    plm_status st = check_texts(ctx, texts, lens, n_texts, "plm_embed");
    if (st) return st;
    return pool_texts(ctx, texts, lens, n_texts, pooling, normalize, out);
}

/*
 * The head as llama.cpp's build_pooling applies it for RANK pooling
 * (src/llama-graph.cpp): its input is the graph's t_embd, the output of the
 * final norm (result_norm), pooled per sequence; then
 *   if cls:      x = cls x (+ cls_b); x = tanh(x)   (gelu for ModernBERT; then cls_norm if present)
 *   if cls_out:  x = cls_out x (+ cls_out_b)
 * and for qwen3 a softmax over the outputs (the reranker's P(yes), P(no)).
 * pocketlm returns the raw x and, as probabilities, the softmax over the
 * outputs (so a Qwen3 reranker's probabilities are llama.cpp's scores), or
 * the sigmoid for a single output, which the softmax of one value would make 1.
 */
plm_status plm_classify_head(plm_context *ctx, const plm_token *const *texts, const int32_t *lens, int32_t n_texts,
                             float *scores_out, float *probs_out) {
    if (!ctx) return plm_fail(PLM_ERR_ARG, "plm_classify_head: ctx is NULL");
    plm_clear_error();
    const plm_model *m = ctx->model;
    const plm_cls_head *hd = &m->cls;
    if (hd->n_out <= 0)
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s: the model has no classification head (no cls.weight or cls.output.weight tensor); "
                        "use zero-shot classification (plm_classify) instead", m->g->path);
    plm_status st = check_texts(ctx, texts, lens, n_texts, "plm_classify_head");
    if (st) return st;
    const int64_t E = m->hp.n_embd, H = hd->n_hidden, K = hd->n_out;
    float *pooled = malloc((size_t)n_texts * (size_t)E * sizeof(float));
    double *y = malloc((size_t)PLM_MAX(E, H) * sizeof(double)), *z = malloc((size_t)K * sizeof(double));
    if (!pooled || !y || !z) {
        st = plm_fail(PLM_ERR_OOM, "out of memory for %d pooled texts", n_texts);
        goto done;
    }
    if ((st = pool_texts(ctx, texts, lens, n_texts, hd->pooling, false, pooled))) goto done;
    for (int32_t i = 0; i < n_texts; i++) {
        const float *h = pooled + (int64_t)i * E;
        int64_t n_in = E;
        if (hd->dense) {
            /* dense (H, E) @ h (E) -> tanh -> y (H) */
            for (int64_t r = 0; r < H; r++) {
                const float *w = hd->dense + r * E;
                double s = hd->dense_b ? hd->dense_b[r] : 0.0;
                for (int64_t e = 0; e < E; e++) s += (double)w[e] * h[e];
                y[r] = tanh(s);
            }
            n_in = H;
        } else {
            for (int64_t e = 0; e < E; e++) y[e] = h[e];
        }
        if (hd->out) {
            /* out (K, n_in) @ y (n_in) -> z (K) */
            for (int64_t r = 0; r < K; r++) {
                const float *w = hd->out + r * n_in;
                double s = hd->out_b ? hd->out_b[r] : 0.0;
                for (int64_t e = 0; e < n_in; e++) s += (double)w[e] * y[e];
                z[r] = s;
            }
        } else {
            for (int64_t r = 0; r < K; r++) z[r] = y[r];
        }
        if (scores_out)
            for (int64_t r = 0; r < K; r++) scores_out[i * K + r] = (float)z[r];
        if (probs_out) {
            float *p = probs_out + i * K;
            if (K == 1) {
                p[0] = (float)(z[0] >= 0 ? 1.0 / (1.0 + exp(-z[0])) : exp(z[0]) / (1.0 + exp(z[0])));
            } else {
                double mx = z[0], sum = 0.0;
                for (int64_t r = 1; r < K; r++) mx = z[r] > mx ? z[r] : mx;
                for (int64_t r = 0; r < K; r++) sum += exp(z[r] - mx);
                for (int64_t r = 0; r < K; r++) p[r] = (float)(exp(z[r] - mx) / sum);
            }
        }
    }
done:
    free(pooled);
    free(y);
    free(z);
    return st;
}
