/*
 * bpe.c — byte-level BPE (tokenizer.ggml.model = "gpt2").
 *
 * A piece of plain text is split into words by the vocabulary's pre-tokenizer
 * (pretok.c). Every byte of a word starts as the token of its GPT-2 code point
 * (vocab.c resolves those 256 ids once), then adjacent pairs merge, lowest
 * merge rank first and leftmost first among equal ranks, until no pair in the
 * word has a merge. Symbols form a linked list and candidate pairs sit in a
 * binary heap, so a word of n bytes costs O(n log n) whatever its length.
 * Heap entries are not removed when a neighbour changes; they are checked
 * when popped and dropped if stale.
 *
 * Owns the merge loop and its scratch memory; special tokens, BOS/EOS and the
 * tables are vocab.c's.
 */
#include "tokenizer_impl.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

typedef struct bigram {
    uint64_t key; /* (rank << 32) | left: the heap order */
    int32_t right;
    int32_t lid, rid; /* the pair's ids when it was queued */
    int32_t result;
} bigram;

struct plm_bpe_buf {
    plm_pretok_buf pre;
    int32_t *id, *prev, *next; /* one symbol per byte of the word; id -1 once merged away */
    bigram *heap;
    char *enc; /* the word in GPT-2 code points, for ignore_merges lookups */
    char *fixed; /* the text with untokenizable invalid bytes replaced */
    size_t cap_sym, cap_heap, cap_enc, cap_fixed;
    size_t n_heap;
};

plm_bpe_buf *plm_bpe_buf_new(void) { return calloc(1, sizeof(plm_bpe_buf)); }

void plm_bpe_buf_free(plm_bpe_buf *b) {
    if (!b) return;
    plm_pretok_free(&b->pre);
    free(b->id);
    free(b->prev);
    free(b->next);
    free(b->heap);
    free(b->enc);
    free(b->fixed);
    free(b);
}

static bool reserve(plm_bpe_buf *b, size_t m) {
    if (m > b->cap_sym) {
        size_t c = PLM_MAX(m, 2 * b->cap_sym);
        int32_t *id = realloc(b->id, c * sizeof *id);
        if (id) b->id = id;
        int32_t *prev = realloc(b->prev, c * sizeof *prev);
        if (prev) b->prev = prev;
        int32_t *next = realloc(b->next, c * sizeof *next);
        if (next) b->next = next;
        if (!id || !prev || !next) return false;
        b->cap_sym = c;
    }
    /* m - 1 initial pairs, and each of at most m - 1 merges queues two more. */
    size_t hneed = 3 * m;
    if (hneed > b->cap_heap) {
        size_t c = PLM_MAX(hneed, 2 * b->cap_heap);
        bigram *h = realloc(b->heap, c * sizeof *h);
        if (!h) return false;
        b->heap = h;
        b->cap_heap = c;
    }
    return true;
}

static void heap_push(plm_bpe_buf *b, bigram e) {
    bigram *h = b->heap;
    size_t i = b->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent].key <= e.key) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = e;
}

static bigram heap_pop(plm_bpe_buf *b) {
    bigram *h = b->heap;
    bigram top = h[0];
    bigram last = h[--b->n_heap];
    size_t n = b->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1].key < h[c].key) c++;
        if (last.key <= h[c].key) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = last;
    return top;
}

static void queue_pair(const plm_vocab *v, plm_bpe_buf *b, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    int32_t lid = b->id[left], rid = b->id[right];
    if (lid < 0 || rid < 0) return;
    plm_token result;
    int32_t rank = plm_vocab_merge(v, lid, rid, &result);
    if (rank < 0) return;
    bigram e = {((uint64_t)(uint32_t)rank << 32) | (uint32_t)left, right, lid, rid, result};
    heap_push(b, e);
}

/* Merges one word w[0..m) and appends its tokens. */
static plm_status bpe_word(const plm_vocab *v, const uint8_t *w, size_t m, plm_bpe_buf *b, plm_tok_out *o) {
    if (m == 1) {
        if (v->byte_tok[w[0]] >= 0) plm_tok_push(o, v->byte_tok[w[0]]);
        return PLM_OK;
    }
    if (v->ignore_merges) {
        /* Each byte becomes a code point below U+0144: at most two UTF-8 bytes. */
        if (2 * m > b->cap_enc) {
            size_t c = PLM_MAX(2 * m, 2 * b->cap_enc);
            char *e = realloc(b->enc, c);
            if (!e) return plm_fail(PLM_ERR_OOM, "out of memory tokenizing a word of %zu bytes", m);
            b->enc = e;
            b->cap_enc = c;
        }
        size_t n = 0;
        for (size_t i = 0; i < m; i++) n += plm_utf8_encode(plm_byte_to_cp(w[i]), b->enc + n);
        plm_token t = plm_vocab_lookup(v, b->enc, n);
        if (t >= 0) {
            plm_tok_push(o, t);
            return PLM_OK;
        }
    }
    if (!reserve(b, m)) return plm_fail(PLM_ERR_OOM, "out of memory tokenizing a word of %zu bytes", m);
    int32_t n = (int32_t)m; /* the caller keeps texts below 2 GiB */
    for (int32_t i = 0; i < n; i++) {
        b->id[i] = v->byte_tok[w[i]];
        b->prev[i] = i - 1;
        b->next[i] = i + 1 < n ? i + 1 : -1;
    }
    b->n_heap = 0;
    for (int32_t i = 0; i + 1 < n; i++) queue_pair(v, b, i, i + 1);
    while (b->n_heap) {
        bigram e = heap_pop(b);
        int32_t left = (int32_t)(uint32_t)e.key;
        if (b->id[left] != e.lid || b->next[left] != e.right || b->id[e.right] != e.rid) continue; /* stale */
        b->id[left] = e.result;
        b->id[e.right] = -1;
        int32_t after = b->next[e.right];
        b->next[left] = after;
        if (after >= 0) b->prev[after] = left;
        queue_pair(v, b, b->prev[left], left);
        queue_pair(v, b, left, after);
    }
    /* Symbol 0 is never merged away. A byte whose code point is not in the
     * vocabulary stays -1 and is dropped, as llama.cpp does. */
    for (int32_t i = 0; i >= 0; i = b->next[i])
        if (b->id[i] >= 0) plm_tok_push(o, b->id[i]);
    return PLM_OK;
}

/* An invalid UTF-8 byte is encoded like any byte when the vocabulary has its
 * token, so detokenizing gives it back. Vocabularies trained on UTF-8 text
 * often lack the bytes that never occur in it (0xC0, 0xC1, 0xF5..0xFF); such a
 * byte becomes U+FFFD, which is what llama.cpp does with every invalid byte.
 * (A byte of valid text without a token is dropped, as llama.cpp and Hugging
 * Face both do.) Returns the text to tokenize: text itself, or a fixed copy. */
static const char *replace_untokenizable(const plm_vocab *v, const char *text, size_t *len, plm_bpe_buf *b, plm_status *st) {
    const uint8_t *s = (const uint8_t *)text;
    size_t n = *len, bad = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        size_t l = s[i] < 0x80 ? 1 : plm_utf8_decode(s + i, n - i, &cp);
        if (s[i] >= 0x80 && cp == PLM_CP_INVALID && v->byte_tok[s[i]] < 0) bad++;
        i += l;
    }
    *st = PLM_OK;
    if (!bad) return text;
    size_t need = n + 2 * bad;
    if (need > b->cap_fixed) {
        size_t c = PLM_MAX(need, 2 * b->cap_fixed);
        char *f = realloc(b->fixed, c);
        if (!f) {
            *st = plm_fail(PLM_ERR_OOM, "out of memory tokenizing %zu bytes", n);
            return NULL;
        }
        b->fixed = f;
        b->cap_fixed = c;
    }
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        size_t l = s[i] < 0x80 ? 1 : plm_utf8_decode(s + i, n - i, &cp);
        if (s[i] >= 0x80 && cp == PLM_CP_INVALID && v->byte_tok[s[i]] < 0) {
            memcpy(b->fixed + o, "\xEF\xBF\xBD", 3);
            o += 3;
        } else {
            memcpy(b->fixed + o, s + i, l);
            o += l;
        }
        i += l;
    }
    *len = o;
    return b->fixed;
}

plm_status plm_bpe_tokenize(const plm_vocab *v, const char *text, size_t len, plm_bpe_buf *b, plm_tok_out *o) {
    plm_status st;
    text = replace_untokenizable(v, text, &len, b, &st);
    if (st) return st;
    const size_t *words;
    size_t n_words;
    st = plm_pretok_split(v->pretok, text, len, &b->pre, &words, &n_words);
    if (st) return st;
    for (size_t i = 0; i < n_words; i++) {
        st = bpe_word(v, (const uint8_t *)text + words[i], words[i + 1] - words[i], b, o);
        if (st) return st;
    }
    return PLM_OK;
}
