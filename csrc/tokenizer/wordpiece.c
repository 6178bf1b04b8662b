/*
 * wordpiece.c — WordPiece ("bert" vocabularies): BERT's normalizer, its
 * pre-tokenizer and greedy longest-match-first pieces.
 *
 * Owns plm_wpm_tokenize: plain text (special tokens already cut out by vocab.c)
 * -> token ids, as Hugging Face's BertNormalizer + BertPreTokenizer + WordPiece
 * do it:
 *   - clean: NUL, U+FFFD, invalid UTF-8 bytes and control characters (Cc, Cf,
 *     Co, Cs, except tab, newline and carriage return; unassigned code points
 *     stay, as in Hugging Face's tables) are dropped;
 *     whitespace becomes a space;
 *   - CJK ideographs stand alone as words (when the vocabulary says so);
 *   - accents stripped (NFD without the Mn marks) and lower-cased, character by
 *     character, as the vocabulary's flags say (wordpiece_data.h);
 *   - words split at whitespace, and every punctuation character (ASCII
 *     punctuation or Unicode category P) is a word of its own;
 *   - each word becomes its longest vocabulary prefix, then the longest
 *     continuation, and so on; a word that cannot be covered, or is longer than
 *     max_word_chars characters, is one [UNK].
 * The vocabulary is stored as llama.cpp's converter writes it ("phantom space"):
 * a word-initial piece is U+2581 + text, a continuation is the text without
 * "##". The flags are pocketlm's tokenizer.wordpiece.* keys (vocab.c), true
 * when absent, as llama.cpp always lower-cases.
 */
#include "tokenizer_impl.h"
#include "unicode.h"
#include "wordpiece_data.h"

#include <stdlib.h>
#include <string.h>

struct plm_wpm_buf {
    char *word;     /* U+2581 + the current word's normalized UTF-8 */
    size_t len;     /* bytes of word, the prefix included */
    size_t cap;
    size_t n_chars; /* characters of the word */
};

plm_wpm_buf *plm_wpm_buf_new(void) { return calloc(1, sizeof(plm_wpm_buf)); }

void plm_wpm_buf_free(plm_wpm_buf *b) {
    if (!b) return;
    free(b->word);
    free(b);
}

#define PREFIX_LEN 3 /* U+2581 */

static bool is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static bool is_punct(uint32_t c) {
    if (c < 0x80) return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
    return c != PLM_CP_INVALID && (plm_unicode_flags(c) & PLM_UCAT_PUNCT);
}

static const plm_wpm_fold *fold_find(const plm_wpm_fold *t, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t[mid].cp < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && t[lo].cp == cp ? &t[lo] : NULL;
}

static bool word_put(plm_wpm_buf *b, const char *s, size_t n) {
    if (b->len + n > b->cap) {
        size_t c = b->cap ? 2 * b->cap : 256;
        while (c < b->len + n) c *= 2;
        char *w = realloc(b->word, c);
        if (!w) return false;
        b->word = w;
        b->cap = c;
    }
    memcpy(b->word + b->len, s, n);
    b->len += n;
    return true;
}

/* Greedy longest-match-first pieces of the word in b; [UNK] when it cannot be covered. */
static void word_flush(const plm_vocab *v, plm_wpm_buf *b, plm_tok_out *o) {
    const size_t n = b->len - PREFIX_LEN;
    if (n == 0) return;
    const char *w = b->word + PREFIX_LEN;
    const int64_t first = o->n;
    bool ok = b->n_chars <= v->wpm_max_chars;
    for (size_t start = 0; ok && start < n;) {
        size_t end = n - start > v->max_token_len ? start + v->max_token_len : n;
        plm_token t = -1;
        for (; end > start; end--) {
            if (end < n && ((uint8_t)w[end] & 0xC0) == 0x80) continue; /* inside a character */
            t = start == 0 ? plm_vocab_lookup(v, b->word, PREFIX_LEN + end) : plm_vocab_lookup(v, w + start, end - start);
            if (t >= 0 && v->tok[t].type == PLM_TOKEN_TYPE_NORMAL) break;
            t = -1;
        }
        if (t < 0) ok = false;
        else {
            plm_tok_push(o, t);
            start = end;
        }
    }
    if (!ok) {
        o->n = first;
        plm_tok_push(o, v->unk);
    }
    b->len = PREFIX_LEN;
    b->n_chars = 0;
}

/* Appends the normalized character cp (already cleaned) to the word: strip, then lower, as the flags say. */
static bool put_folded(const plm_vocab *v, plm_wpm_buf *b, uint32_t cp) {
    char enc[4];
    uint32_t parts[3];
    size_t np = 0;
    if (v->wpm_strip_accents && cp >= 0xAC00 && cp <= 0xD7A3) { /* Hangul syllable: L V (T) */
        uint32_t s = cp - 0xAC00;
        parts[np++] = 0x1100 + s / 588;
        parts[np++] = 0x1161 + s % 588 / 28;
        if (s % 28) parts[np++] = 0x11A7 + s % 28;
    } else {
        const plm_wpm_fold *f = v->wpm_strip_accents ? fold_find(plm_wpm_strip, sizeof plm_wpm_strip / sizeof plm_wpm_strip[0], cp) : NULL;
        if (!f) parts[np++] = cp;
        else {
            const uint8_t *p = plm_wpm_pool + f->off;
            for (size_t k = 0; k < f->len;) {
                uint32_t c;
                k += plm_utf8_decode(p + k, f->len - k, &c);
                if (np < 3) parts[np++] = c;
                else {
                    /* decompositions longer than three characters: lower-case each as it comes */
                    const plm_wpm_fold *l = v->wpm_lowercase ? fold_find(plm_wpm_lower, sizeof plm_wpm_lower / sizeof plm_wpm_lower[0], c) : NULL;
                    size_t el = l ? 0 : plm_utf8_encode(c, enc);
                    if (l ? !word_put(b, (const char *)plm_wpm_pool + l->off, l->len) : !word_put(b, enc, el)) return false;
                    b->n_chars++;
                }
            }
        }
    }
    for (size_t i = 0; i < np; i++) {
        const plm_wpm_fold *l = v->wpm_lowercase ? fold_find(plm_wpm_lower, sizeof plm_wpm_lower / sizeof plm_wpm_lower[0], parts[i]) : NULL;
        if (l) {
            if (!word_put(b, (const char *)plm_wpm_pool + l->off, l->len)) return false;
            for (size_t k = 0; k < l->len; k++) b->n_chars += ((uint8_t)plm_wpm_pool[l->off + k] & 0xC0) != 0x80;
        } else {
            if (!word_put(b, enc, plm_utf8_encode(parts[i], enc))) return false;
            b->n_chars++;
        }
    }
    return true;
}

plm_status plm_wpm_tokenize(const plm_vocab *v, const char *text, size_t len, plm_wpm_buf *b, plm_tok_out *o) {
    const uint8_t *s = (const uint8_t *)text;
    b->len = 0;
    b->n_chars = 0;
    if (!word_put(b, PLM_SPM_SPACE, PREFIX_LEN)) return plm_fail(PLM_ERR_OOM, "out of memory tokenizing");
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += plm_utf8_decode(s + i, len - i, &cp);
        if (cp == 0 || cp == 0xFFFD || cp == PLM_CP_INVALID) continue;
        /* control characters (Cc, Cf, Co, Cs: U+0085 too, though it is White_Space) go, unassigned ones stay */
        const uint16_t fl = plm_unicode_flags(cp);
        const bool tnr = cp == '\t' || cp == '\n' || cp == '\r';
        if (!tnr && (fl & PLM_UCAT_CONTROL)) continue;
        if (tnr || (fl & PLM_UCAT_SPACE)) {
            word_flush(v, b, o);
            continue;
        }
        if (v->wpm_chinese_chars && is_cjk(cp)) {
            word_flush(v, b, o);
            if (!put_folded(v, b, cp)) return plm_fail(PLM_ERR_OOM, "out of memory tokenizing");
            word_flush(v, b, o);
            continue;
        }
        /* Folding may turn one character into several; each is then split on punctuation and whitespace. */
        size_t at = b->len, chars = b->n_chars;
        if (!put_folded(v, b, cp)) return plm_fail(PLM_ERR_OOM, "out of memory tokenizing");
        if (b->len == at) continue;
        /* the common case: one character that is neither */
        uint32_t c0;
        size_t l0 = plm_utf8_decode((const uint8_t *)b->word + at, b->len - at, &c0);
        if (at + l0 == b->len && !is_punct(c0) && !(plm_unicode_flags(c0) & PLM_UCAT_SPACE)) continue;
        char tmp[64];
        size_t tl = b->len - at;
        if (tl > sizeof tmp) tl = sizeof tmp;
        memcpy(tmp, b->word + at, tl);
        b->len = at;
        b->n_chars = chars;
        for (size_t k = 0; k < tl;) {
            uint32_t c;
            size_t l = plm_utf8_decode((const uint8_t *)tmp + k, tl - k, &c);
            if (plm_unicode_flags(c) & PLM_UCAT_SPACE) word_flush(v, b, o);
            else if (is_punct(c)) {
                word_flush(v, b, o);
                if (!word_put(b, tmp + k, l)) return plm_fail(PLM_ERR_OOM, "out of memory tokenizing");
                b->n_chars = 1;
                word_flush(v, b, o);
            } else {
                if (!word_put(b, tmp + k, l)) return plm_fail(PLM_ERR_OOM, "out of memory tokenizing");
                b->n_chars++;
            }
            k += l;
        }
    }
    word_flush(v, b, o);
    return PLM_OK;
}
