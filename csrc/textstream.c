/*
 * textstream.c — UTF-8 hold-back and stop-string matching for generated text
 * (see textstream.h). Owns the pending bytes of one generation and nothing
 * else: which token comes next is the sampler's, when to stop for other
 * reasons the caller's.
 */
#include "textstream.h"

#include <stdlib.h>
#include <string.h>

plm_status plm_textstream_init(plm_textstream *ts, const char *const *stop, int32_t n_stop) {
    memset(ts, 0, sizeof(*ts));
    if (n_stop < 0 || (n_stop > 0 && !stop)) return plm_fail(PLM_ERR_ARG, "stop: %d strings but no array", n_stop);
    if (n_stop == 0) return PLM_OK;
    ts->stop = calloc((size_t)n_stop, sizeof(char *));
    ts->stop_len = calloc((size_t)n_stop, sizeof(size_t));
    if (!ts->stop || !ts->stop_len) return plm_fail(PLM_ERR_OOM, "out of memory");
    ts->n_stop = n_stop;
    for (int32_t i = 0; i < n_stop; i++) {
        if (!stop[i]) return plm_fail(PLM_ERR_ARG, "stop string %d is NULL", i);
        ts->stop[i] = strdup(stop[i]);
        if (!ts->stop[i]) return plm_fail(PLM_ERR_OOM, "out of memory");
        ts->stop_len[i] = strlen(stop[i]);
    }
    return PLM_OK;
}

void plm_textstream_release(plm_textstream *ts) {
    for (int32_t i = 0; ts->stop && i < ts->n_stop; i++) free(ts->stop[i]);
    free(ts->stop);
    free(ts->stop_len);
    free(ts->pend);
    free(ts->out);
    memset(ts, 0, sizeof(*ts));
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

/* Length of the prefix of s[0, n) that ends on a UTF-8 character boundary: a
 * trailing sequence that is incomplete but could still become valid is held. */
static size_t utf8_safe_prefix(const char *s, size_t n) {
    size_t start = n;
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte: keep looking for the lead */
        size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 1;
        if (need > back) start = n - back; /* lead byte whose sequence is not complete yet */
        break;
    }
    return start;
}

/* Offset of the first occurrence of any stop string in the pending text, or n_pend. */
static size_t first_stop(const plm_textstream *ts) {
    const size_t n = ts->n_pend;
    size_t first = n;
    for (int32_t i = 0; i < ts->n_stop; i++) {
        const size_t L = ts->stop_len[i];
        if (L == 0 || L > n) continue;
        for (size_t at = 0; at + L <= n && at < first; at++)
            if (memcmp(ts->pend + at, ts->stop[i], L) == 0) {
                first = at;
                break;
            }
    }
    return first;
}

/* Bytes of the pending text that can be let out: the longest suffix that is a
 * prefix of some stop string is held back, and so is an unfinished character. */
static size_t safe_len(const plm_textstream *ts) {
    const size_t n = ts->n_pend;
    size_t keep = n;
    for (int32_t i = 0; i < ts->n_stop; i++) {
        const size_t L = ts->stop_len[i];
        for (size_t k = PLM_MIN(L ? L - 1 : 0, n); k > 0; k--)
            if (memcmp(ts->pend + n - k, ts->stop[i], k) == 0) {
                if (n - k < keep) keep = n - k;
                break;
            }
    }
    return utf8_safe_prefix(ts->pend, keep);
}

plm_status plm_textstream_push(plm_textstream *ts, const char *bytes, size_t n) {
    if (ts->stopped) return PLM_OK;
    plm_status st = reserve(&ts->pend, &ts->cap_pend, ts->n_pend + n + 1);
    if (st) return st;
    memcpy(ts->pend + ts->n_pend, bytes, n);
    ts->n_pend += n;
    const size_t at = first_stop(ts);
    if (at < ts->n_pend) {
        ts->n_pend = at; /* drop the stop string and what follows */
        ts->stopped = true;
    }
    return PLM_OK;
}

plm_status plm_textstream_push_token(plm_textstream *ts, const plm_vocab *vocab, plm_token t) {
    size_t k;
    plm_status st = plm_vocab_piece(vocab, t, false, NULL, 0, &k);
    if (st && st != PLM_ERR_BUFFER) return st;
    if (k == 0) return plm_textstream_push(ts, "", 0);
    char small[64];
    char *buf = k <= sizeof small ? small : malloc(k);
    if (!buf) return plm_fail(PLM_ERR_OOM, "out of memory for a token's text");
    st = plm_vocab_piece(vocab, t, false, buf, k, &k);
    if (!st) st = plm_textstream_push(ts, buf, k);
    if (buf != small) free(buf);
    return st;
}

plm_status plm_textstream_take(plm_textstream *ts, bool flush, const char **piece, size_t *len) {
    const size_t k = flush ? ts->n_pend : safe_len(ts);
    if (k == 0) {
        *piece = "";
        *len = 0;
        return PLM_OK;
    }
    plm_status st = reserve(&ts->out, &ts->cap_out, k + 1);
    if (st) return st;
    memcpy(ts->out, ts->pend, k);
    ts->out[k] = 0;
    memmove(ts->pend, ts->pend + k, ts->n_pend - k);
    ts->n_pend -= k;
    *piece = ts->out;
    *len = k;
    return PLM_OK;
}
