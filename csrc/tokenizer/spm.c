/*
 * spm.c — SentencePiece tokenization (tokenizer.ggml.model = "llama").
 *
 * The algorithm is llama.cpp's "SPM" tokenizer, so that ids match it: spaces
 * become U+2581 "▁" (one more goes in front when the caller asks, for
 * tokenizer.ggml.add_space_prefix), the text is cut into characters, and then
 * the adjacent pair whose concatenation is the token with the highest score
 * (tokenizer.ggml.scores) merges, the leftmost first among equal scores, until
 * no adjacent pair forms a token. A symbol left over that is not a token
 * becomes one byte-fallback token <0xNN> per byte. There is no pre-tokenizer:
 * the whole fragment between two special tokens is one merge problem.
 *
 * Symbols form a linked list and candidate pairs sit in a binary heap, so n
 * characters cost O(n log n) hash lookups; a pair whose text is longer than the
 * longest token is never looked up. Heap entries are not removed when a
 * neighbour changes: an entry is stale, and dropped when popped, once the
 * lengths of its two symbols no longer add up to its size. To keep the heap
 * small the text is cut into words before each "▁" that no token can join to
 * the character before it (vocab.c lists the characters some token has right
 * before a "▁"; a "▁" after a "▁" is never cut off): no pair across such a cut
 * can ever merge, so each word merges on its own with the same result, in the
 * same order, as the whole text would.
 *
 * Where this differs from llama.cpp: invalid UTF-8. llama.cpp takes the length
 * of a character from its first byte alone, so a stray lead byte swallows the
 * bytes after it (a following space, already turned into "▁", comes back as
 * other bytes). Here every byte that does not start a well-formed sequence is
 * a character of its own, which then falls back to its byte token, so the text
 * always comes back unchanged. And a character whose bytes do not all have a
 * fallback token becomes one unknown token (or nothing, without one), as
 * SentencePiece does without byte fallback, where llama.cpp would throw.
 *
 * Owns the merge loop and its scratch memory; special tokens, BOS/EOS, the
 * space-prefix rule between fragments and the tables are vocab.c's.
 */
#include "tokenizer_impl.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

typedef struct spm_sym {
    size_t off; /* start in the escaped text */
    uint32_t n; /* length in bytes; 0 once merged into its left neighbour */
    int32_t prev, next;
    int32_t id; /* token whose text is the symbol's, -1 if none */
} spm_sym;

typedef struct spm_pair {
    uint64_t key;  /* (~order(score) << 32) | left: the heap's order, smallest first */
    int32_t right; /* symbol index; left is the key's low half */
    uint32_t size; /* bytes of the pair when it was queued */
    int32_t id;    /* the token it forms */
} spm_pair;

struct plm_spm_buf {
    char *text; /* the fragment with spaces escaped */
    spm_sym *sym;
    spm_pair *heap;
    size_t cap_text, cap_sym, cap_heap, n_heap;
};

plm_spm_buf *plm_spm_buf_new(void) { return calloc(1, sizeof(plm_spm_buf)); }

void plm_spm_buf_free(plm_spm_buf *b) {
    if (!b) return;
    free(b->text);
    free(b->sym);
    free(b->heap);
    free(b);
}

/* Grows *p to hold at least n elements of size sz (doubling); false on overflow or OOM. */
static bool grow(void **p, size_t *cap, size_t n, size_t sz) {
    if (n <= *cap) return true;
    size_t c = PLM_MAX(n, 2 * *cap);
    if (c > SIZE_MAX / sz) return false;
    void *q = realloc(*p, c * sz);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

/* A score as an unsigned integer of the same order (scores are never NaN; -0
 * equals 0, as the float comparison of llama.cpp has it). */
static uint32_t score_order(float f) {
    if (f == 0) f = 0;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

/* Higher score first, then the leftmost pair (llama.cpp's order). */
static bool heap_push(plm_spm_buf *b, spm_pair e) {
    if (!grow((void **)&b->heap, &b->cap_heap, b->n_heap + 1, sizeof *b->heap)) return false;
    spm_pair *h = b->heap;
    size_t i = b->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent].key <= e.key) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = e;
    return true;
}

static spm_pair heap_pop(plm_spm_buf *b) {
    spm_pair *h = b->heap;
    spm_pair top = h[0];
    spm_pair last = h[--b->n_heap];
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

/* Queues the pair (left, right) if their joined text is a token; false on OOM. */
static bool queue_pair(const plm_vocab *v, plm_spm_buf *b, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return true;
    const spm_sym *l = &b->sym[left], *r = &b->sym[right];
    uint64_t size = (uint64_t)l->n + r->n;
    if (size > v->max_token_len) return true;
    plm_token id = plm_vocab_lookup(v, b->text + l->off, (size_t)size);
    if (id < 0) return true;
    uint64_t key = ((uint64_t)~score_order(v->tok[id].score) << 32) | (uint32_t)left;
    return heap_push(b, (spm_pair){key, right, (uint32_t)size, id});
}

/* Copies text into b->text with every ' ' as U+2581 (and one in front when
 * prefix); returns the length, or 0 on OOM. */
static size_t escape(plm_spm_buf *b, const char *text, size_t len, bool prefix) {
    size_t spaces = prefix;
    for (const char *p = text, *end = text + len; (p = memchr(p, ' ', (size_t)(end - p))); p++) spaces++;
    if (spaces > (SIZE_MAX - len - 1) / 2) return 0;
    size_t need = len + 2 * spaces + prefix; /* each space grows by 2 bytes; the prefix adds 3 */
    if (!grow((void **)&b->text, &b->cap_text, need, 1)) return 0;
    char *o = b->text;
    if (prefix) {
        memcpy(o, PLM_SPM_SPACE, 3);
        o += 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(o, PLM_SPM_SPACE, 3);
            o += 3;
        } else {
            *o++ = text[i];
        }
    }
    return (size_t)(o - b->text);
}

static bool is_space(const spm_sym *y, const char *text) { return y->n == 3 && memcmp(text + y->off, PLM_SPM_SPACE, 3) == 0; }

/* True when no token joins symbol i - 1 to symbol i, a "▁" (see the top). */
static bool word_starts(const plm_vocab *v, const plm_spm_buf *b, int32_t i) {
    const spm_sym *y = &b->sym[i], *x = &b->sym[i - 1];
    if (!is_space(y, b->text) || is_space(x, b->text)) return false;
    uint32_t cp;
    if (plm_utf8_decode((const uint8_t *)b->text + x->off, x->n, &cp) != x->n) return true; /* an invalid byte: in no token */
    size_t lo = 0, hi = v->n_spm_glue;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v->spm_glue[mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo == v->n_spm_glue || v->spm_glue[lo] != cp;
}

/* Merges the symbols [first, end), linked among themselves, and appends the tokens. */
static plm_status merge_word(const plm_vocab *v, plm_spm_buf *b, int32_t first, int32_t end, plm_tok_out *o) {
    b->n_heap = 0;
    for (int32_t i = first; i + 1 < end; i++)
        if (!queue_pair(v, b, i, i + 1)) return plm_fail(PLM_ERR_OOM, "out of memory tokenizing");
    while (b->n_heap) {
        spm_pair e = heap_pop(b);
        int32_t left = (int32_t)(uint32_t)e.key;
        spm_sym *l = &b->sym[left], *r = &b->sym[e.right];
        if (!l->n || !r->n || l->n + r->n != e.size) continue; /* stale */
        l->n = e.size;
        l->id = e.id;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) b->sym[r->next].prev = left;
        if (!queue_pair(v, b, l->prev, left) || !queue_pair(v, b, left, l->next)) return plm_fail(PLM_ERR_OOM, "out of memory tokenizing");
    }
    /* The first symbol is never merged away. */
    const uint8_t *s = (const uint8_t *)b->text;
    for (int32_t i = first; i >= 0; i = b->sym[i].next) {
        const spm_sym *y = &b->sym[i];
        if (y->id >= 0) {
            plm_tok_push(o, y->id);
            continue;
        }
        /* An unmerged character that is not a token: its bytes' fallback
         * tokens, or one <unk> if any of them has none. */
        bool all = true;
        for (uint32_t k = 0; k < y->n; k++) all = all && v->byte_tok[s[y->off + k]] >= 0;
        if (all)
            for (uint32_t k = 0; k < y->n; k++) plm_tok_push(o, v->byte_tok[s[y->off + k]]);
        else if (v->unk >= 0)
            plm_tok_push(o, v->unk);
    }
    return PLM_OK;
}

plm_status plm_spm_tokenize(const plm_vocab *v, const char *text, size_t len, bool space_prefix, plm_spm_buf *b,
                            plm_tok_out *o) {
    if (!len && !space_prefix) return PLM_OK;
    size_t m = escape(b, text, len, space_prefix);
    /* One symbol per character: at most len + 1 of them, which the caller keeps below 2^31. */
    if (!m || !grow((void **)&b->sym, &b->cap_sym, len + 1, sizeof *b->sym))
        return plm_fail(PLM_ERR_OOM, "out of memory tokenizing %zu bytes", len);

    const uint8_t *s = (const uint8_t *)b->text;
    int32_t n = 0;
    for (size_t off = 0; off < m; n++) {
        uint32_t cp;
        size_t l = s[off] < 0x80 ? 1 : plm_utf8_decode(s + off, m - off, &cp);
        b->sym[n] = (spm_sym){off, (uint32_t)l, -1, -1, plm_vocab_lookup(v, b->text + off, l)};
        off += l;
    }
    for (int32_t first = 0, end; first < n; first = end) {
        for (end = first + 1; end < n && !word_starts(v, b, end); end++) {
            b->sym[end - 1].next = end;
            b->sym[end].prev = end - 1;
        }
        plm_status st = merge_word(v, b, first, end, o);
        if (st) return st;
    }
    return PLM_OK;
}
