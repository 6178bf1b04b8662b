/*
 * textstream.h — the text side of generation: token pieces in, safe text out.
 *
 * A text stream gathers the bytes of generated tokens and lets out only what is
 * safe to show: whole UTF-8 characters, and never a byte that could begin a
 * stop string (held back until it can no longer match). When a stop string
 * occurs, the text is cut before it and the stream is stopped. It knows nothing
 * of sampling or decoding: plm_generator (generate.c) feeds one stream, the
 * batch generator (batch.c) one per request.
 */
#ifndef PLM_TEXTSTREAM_H
#define PLM_TEXTSTREAM_H

#include "internal.h"
#include "tokenizer/tokenizer.h"

typedef struct plm_textstream {
    char **stop;        /* (n_stop) copies of the stop strings */
    size_t *stop_len;
    int32_t n_stop;
    char *pend;         /* bytes received but not yet let out */
    size_t n_pend, cap_pend;
    char *out;          /* what the last take returned */
    size_t cap_out;
    bool stopped;       /* a stop string occurred: pend holds only the text before it */
} plm_textstream;

/* Empty stream with copies of n_stop stop strings (NULL entries are PLM_ERR_ARG;
 * empty strings never match). Release with plm_textstream_release, also on failure. */
plm_status plm_textstream_init(plm_textstream *ts, const char *const *stop, int32_t n_stop);
void plm_textstream_release(plm_textstream *ts);
/* Appends n bytes; if a stop string now occurs, cuts the pending text before
 * its first occurrence and sets ts->stopped. */
plm_status plm_textstream_push(plm_textstream *ts, const char *bytes, size_t n);
/* Appends the text of token t (control tokens give none). */
plm_status plm_textstream_push_token(plm_textstream *ts, const plm_vocab *vocab, plm_token t);
/* Moves out the pending text that is safe to show (all of it when flush: the
 * generation has ended). *piece is borrowed until the next call; *len may be 0. */
plm_status plm_textstream_take(plm_textstream *ts, bool flush, const char **piece, size_t *len);

#endif
