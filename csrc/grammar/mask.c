/*
 * mask.c — which tokens of a vocabulary continue a parse: the vocabulary trie
 * and the token masks.
 *
 * Owns plm_token_trie: every token's piece (the bytes it prints) in a trie laid
 * out in depth-first order, each node with its byte, depth, the index just
 * past its subtree and the tokens that end there. A mask is one pass over that
 * array, stepping the matcher state of each node's parent by the node's byte
 * (a cached table look-up in matcher.c) and skipping a whole subtree as soon
 * as a prefix is dead, so tokens that cross grammar boundaries ("}," or "\":")
 * are handled like any other bytes. A subtree is also taken whole, unwalked,
 * when the matcher shows that every byte string of its height over the bytes
 * it holds stays alive (the body of a JSON string, bounded or not: most of the
 * vocabulary). Tokens are numbered in trie order ("ranks") while walking, so a
 * subtree's tokens are one range of bits; the mask is then turned into token
 * ids. End-of-generation tokens are allowed only where the grammar accepts;
 * control tokens (no printed bytes) never are. Masks are cached per matcher
 * state. The trie is built once per model and kept with it (model.c frees it).
 */
#include "grammar/grammar.h"
#include "model.h"

#include <stdlib.h>
#include <string.h>

struct plm_token_trie {
    int32_t n_vocab, n_nodes, max_depth;
    uint8_t *byte;     /* (n_nodes) */
    uint16_t *depth;   /* (n_nodes) root 0 */
    int32_t *skip;     /* (n_nodes) first node after the subtree */
    int32_t *tok;      /* (n_nodes) first token ending here, -1 */
    int32_t *tok_next; /* (n_vocab) next token with the same bytes, -1 */
    uint64_t (*desc)[4];/* (n_nodes) the bytes of the nodes below each node (a 256-bit set) */
    uint16_t *height;  /* (n_nodes) depth of the deepest node below, minus the node's own */
    uint8_t *clean;    /* (n_nodes) 3: the bytes down to the node are well-formed UTF-8 ending on a character
                        * boundary, and so is every path below it (up to a possibly unfinished last character) */
    uint16_t *chars;   /* (n_nodes) characters begun on the path down to the node */
    int32_t max_chars; /* most characters in a token */
    uint64_t *short_;  /* (max_chars, rank words): row n holds the tokens of at most n characters, by rank */
    int32_t *tok_begin;/* (n_nodes + 1) the tokens at and below node i are order[tok_begin[i], tok_begin[skip[i]]) */
    int32_t *order;    /* tokens in trie order (rank -> id) */
    int32_t n_order;   /* tokens in the trie */
    uint64_t *in_trie; /* (words) id bits of the tokens in the trie */
    uint32_t *off;     /* (n_vocab + 1) token bytes in pool */
    char *pool;
    uint8_t *eog;      /* (n_vocab) */
    plm_token *eogs;
    int32_t n_eogs;
};

void plm_token_trie_free(plm_token_trie *t) {
    if (!t) return;
    free(t->byte);
    free(t->depth);
    free(t->skip);
    free(t->tok);
    free(t->tok_next);
    free(t->desc);
    free(t->height);
    free(t->clean);
    free(t->chars);
    free(t->short_);
    free(t->in_trie);
    free(t->tok_begin);
    free(t->order);
    free(t->off);
    free(t->pool);
    free(t->eog);
    free(t->eogs);
    free(t);
}

/* Marks in t->clean, for each node, bit 1 when the bytes from the root to it are well-formed UTF-8 (the last
 * character possibly unfinished, with the same byte ranges as the matcher's) and bit 0 when they also end
 * on a character boundary. The bottom-up pass of plm_token_trie_build then clears bit 1 where some path
 * below is not well-formed. */
static bool mark_utf8(plm_token_trie *t) {
    size_t nd = (size_t)t->max_depth + 1;
    uint16_t *cc = malloc(nd * (4 + sizeof(uint16_t))); /* per depth on the current path */
    if (!cc) return false;
    uint8_t *need = (uint8_t *)(cc + nd), *lo = need + nd, *hi = lo + nd, *ok = hi + nd;
    need[0] = 0, ok[0] = 1, lo[0] = hi[0] = 0, cc[0] = 0;
    for (int32_t i = 1; i < t->n_nodes; i++) {
        int d = t->depth[i], p = d - 1;
        uint8_t b = t->byte[i], n = need[p], l = 0x80, h = 0xBF, v = ok[p];
        if (!v) {
        } else if (n) {
            if (b < lo[p] || b > hi[p]) v = 0;
            n--;
        } else if (b < 0x80) {
        } else if (b >= 0xC2 && b <= 0xDF) {
            n = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            n = 2, l = b == 0xE0 ? 0xA0 : 0x80, h = b == 0xED ? 0x9F : 0xBF;
        } else if (b >= 0xF0 && b <= 0xF4) {
            n = 3, l = b == 0xF0 ? 0x90 : 0x80, h = b == 0xF4 ? 0x8F : 0xBF;
        } else {
            v = 0;
        }
        need[d] = n, lo[d] = l, hi[d] = h, ok[d] = v;
        cc[d] = (uint16_t)(cc[p] + (b < 0x80 || b >= 0xC0));
        t->chars[i] = cc[d];
        t->clean[i] = (uint8_t)(v ? (n ? 2 : 3) : 0);
    }
    free(cc);
    return true;
}

static _Thread_local const plm_token_trie *sort_trie; /* qsort has no context argument */

static int cmp_tok(const void *a, const void *b) {
    const plm_token_trie *t = sort_trie;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t nx = t->off[x + 1] - t->off[x], ny = t->off[y + 1] - t->off[y];
    int c = memcmp(t->pool + t->off[x], t->pool + t->off[y], PLM_MIN(nx, ny));
    if (c) return c;
    if (nx != ny) return nx < ny ? -1 : 1;
    return x < y ? -1 : x > y;
}

plm_status plm_token_trie_build(const plm_model *model, plm_token_trie **out) {
    *out = NULL;
    const plm_vocab *v = model->vocab;
    int32_t n = plm_vocab_n_tokens(v);
    plm_token_trie *t = calloc(1, sizeof(*t));
    if (!t) return plm_fail(PLM_ERR_OOM, "out of memory for the vocabulary trie");
    t->n_vocab = n;
    t->off = malloc(((size_t)n + 1) * sizeof(uint32_t));
    t->tok_next = malloc((size_t)n * sizeof(int32_t));
    t->eog = calloc((size_t)n, 1);
    t->eogs = malloc((size_t)n * sizeof(plm_token));
    int32_t *order = malloc((size_t)n * sizeof(int32_t));
    plm_status st = PLM_OK;
    if (!t->off || !t->tok_next || !t->eog || !t->eogs || !order) goto nomem;
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t k = 0;
        st = plm_vocab_piece(v, i, false, NULL, 0, &k);
        if (st && st != PLM_ERR_BUFFER) goto fail;
        st = PLM_OK;
        if (plm_vocab_is_eog(v, i)) k = 0;
        total += k;
        if (total > UINT32_MAX / 2) {
            st = plm_fail(PLM_ERR_UNSUPPORTED, "vocabulary too large for a grammar trie");
            goto fail;
        }
    }
    t->pool = malloc(total + 1);
    if (!t->pool) goto nomem;
    total = 0;
    int32_t n_order = 0;
    for (int32_t i = 0; i < n; i++) {
        t->off[i] = (uint32_t)total;
        t->tok_next[i] = -1;
        if (plm_vocab_is_eog(v, i)) {
            t->eog[i] = 1;
            t->eogs[t->n_eogs++] = i;
            continue;
        }
        size_t k = 0;
        plm_vocab_piece(v, i, false, NULL, 0, &k);
        if (k && (st = plm_vocab_piece(v, i, false, t->pool + total, k, &k))) goto fail;
        total += k;
        if (k) order[n_order++] = i;
    }
    t->off[n] = (uint32_t)total;
    sort_trie = t;
    qsort(order, (size_t)n_order, sizeof(int32_t), cmp_tok);
    /* Nodes: at most one per byte plus the root. */
    size_t cap = total + 1;
    t->byte = malloc(cap);
    t->depth = malloc(cap * sizeof(uint16_t));
    t->skip = malloc(cap * sizeof(int32_t));
    t->tok = malloc(cap * sizeof(int32_t));
    int32_t *path = malloc((total + 2) * sizeof(int32_t));
    if (!t->byte || !t->depth || !t->skip || !t->tok || !path) {
        free(path);
        goto nomem;
    }
    int32_t nn = 1, plen = 0; /* path[0] = root; path[d] = node at depth d on the current string */
    t->byte[0] = 0, t->depth[0] = 0, t->tok[0] = -1, path[0] = 0;
    int32_t prev = -1, last_tok_at_node = -1;
    for (int32_t k = 0; k < n_order; k++) {
        int32_t id = order[k];
        const char *s = t->pool + t->off[id];
        int32_t len = (int32_t)(t->off[id + 1] - t->off[id]);
        if (len > 65535) continue; /* a token longer than any depth the trie records: never allowed */
        int32_t common = 0;
        if (prev >= 0) {
            const char *ps = t->pool + t->off[prev];
            int32_t pl = (int32_t)(t->off[prev + 1] - t->off[prev]);
            while (common < pl && common < len && ps[common] == s[common]) common++;
        }
        while (plen > common) t->skip[path[plen--]] = nn;
        for (int32_t d = common; d < len; d++) {
            int32_t x = nn++;
            t->byte[x] = (uint8_t)s[d];
            t->depth[x] = (uint16_t)(d + 1);
            t->tok[x] = -1;
            path[++plen] = x;
        }
        int32_t node = path[len];
        if (t->tok[node] < 0) t->tok[node] = id;
        else t->tok_next[last_tok_at_node] = id;
        last_tok_at_node = id;
        if (len > t->max_depth) t->max_depth = len;
        prev = id;
    }
    while (plen > 0) t->skip[path[plen--]] = nn;
    t->skip[0] = nn;
    t->n_nodes = nn;
    free(path);
    /* Tokens in trie order, each node's first one, and the bytes below each node. */
    t->desc = calloc((size_t)nn, sizeof(*t->desc));
    t->tok_begin = malloc(((size_t)nn + 1) * sizeof(int32_t));
    t->order = malloc(((size_t)n_order + 1) * sizeof(int32_t));
    t->height = calloc((size_t)nn, sizeof(uint16_t));
    t->clean = calloc((size_t)nn, 1);
    t->chars = calloc((size_t)nn, sizeof(uint16_t));
    t->in_trie = calloc(((size_t)n + 63) / 64, sizeof(uint64_t));
    if (!t->desc || !t->tok_begin || !t->order || !t->height || !t->clean || !t->chars || !t->in_trie) goto nomem;
    int32_t k = 0;
    for (int32_t i = 0; i < nn; i++) {
        t->tok_begin[i] = k;
        for (int32_t x = t->tok[i]; x >= 0; x = t->tok_next[x]) {
            t->order[k++] = x;
            t->in_trie[x >> 6] |= 1ull << (x & 63);
        }
    }
    t->tok_begin[nn] = k;
    t->n_order = k;
    if (!mark_utf8(t)) goto nomem;
    for (int32_t i = nn - 1; i >= 0; i--) {
        bool below_ok = true; /* every path below i well-formed so far */
        for (int32_t c = i + 1; c < t->skip[i]; c = t->skip[c]) {
            t->desc[i][t->byte[c] >> 6] |= 1ull << (t->byte[c] & 63);
            for (int w = 0; w < 4; w++) t->desc[i][w] |= t->desc[c][w];
            if (t->height[c] + 1 > t->height[i]) t->height[i] = (uint16_t)(t->height[c] + 1);
            below_ok = below_ok && (t->clean[c] & 2);
        }
        if (!below_ok) t->clean[i] &= (uint8_t)~2u; /* now bit 1: well-formed down to i and everywhere below */
    }
    /* Tokens by length in characters, as rank bits (for subtrees taken up to a depth). */
    for (int32_t i = 0; i < nn; i++)
        if (t->chars[i] > t->max_chars && t->tok_begin[i + 1] > t->tok_begin[i]) t->max_chars = t->chars[i];
    int32_t rw = (k + 63) / 64;
    t->short_ = calloc((size_t)t->max_chars * (size_t)rw + 1, sizeof(uint64_t));
    if (!t->short_) goto nomem;
    for (int32_t i = 0; i < nn; i++)
        for (int32_t r = t->tok_begin[i]; r < t->tok_begin[i + 1] && t->chars[i] < t->max_chars; r++)
            t->short_[(size_t)t->chars[i] * (size_t)rw + (size_t)(r >> 6)] |= 1ull << (r & 63);
    for (int32_t m = 1; m < t->max_chars; m++)
        for (int32_t w = 0; w < rw; w++) t->short_[(size_t)m * (size_t)rw + (size_t)w] |= t->short_[(size_t)(m - 1) * (size_t)rw + (size_t)w];
    free(order);
    *out = t;
    return PLM_OK;
nomem:
    st = plm_fail(PLM_ERR_OOM, "out of memory for the vocabulary trie");
fail:
    free(order);
    plm_token_trie_free(t);
    return st;
}

plm_status plm_model_token_trie(const plm_model *model, const plm_token_trie **out) {
    plm_model *m = (plm_model *)model;
    plm_token_trie *t = __atomic_load_n(&m->trie, __ATOMIC_ACQUIRE);
    if (!t) {
        plm_status st = plm_token_trie_build(model, &t);
        if (st) return st;
        plm_token_trie *expected = NULL;
        if (!__atomic_compare_exchange_n(&m->trie, &expected, t, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            plm_token_trie_free(t); /* another thread built it first */
            t = expected;
        }
    }
    *out = t;
    return PLM_OK;
}

int32_t plm_token_trie_n_vocab(const plm_token_trie *t) { return t->n_vocab; }

const char *plm_token_trie_bytes(const plm_token_trie *t, plm_token id, size_t *n) {
    *n = t->off[id + 1] - t->off[id];
    return t->pool + t->off[id];
}

bool plm_token_trie_is_eog(const plm_token_trie *t, plm_token id) { return t->eog[id] != 0; }

int plm_token_allowed(plm_gmatch_universe *u, const plm_token_trie *t, int32_t s, plm_token id, int32_t *next) {
    *next = -1;
    if (id < 0 || id >= t->n_vocab || s < 0) return 0;
    if (t->eog[id]) {
        *next = s;
        return plm_gmu_accepts(u, s);
    }
    size_t n = t->off[id + 1] - t->off[id];
    if (!n) return 0;
    int32_t r = plm_gmu_walk(u, s, t->pool + t->off[id], n);
    if (r == -2) return -2;
    *next = r;
    return r >= 0;
}

/* Sets bits [a, b) of m. */
static void set_range(uint64_t *m, int32_t a, int32_t b) {
    if (a >= b) return;
    int32_t wa = a >> 6, wb = (b - 1) >> 6;
    uint64_t first = ~0ull << (a & 63), last = ~0ull >> (63 - ((b - 1) & 63));
    if (wa == wb) {
        m[wa] |= first & last;
        return;
    }
    m[wa] |= first;
    for (int32_t w = wa + 1; w < wb; w++) m[w] = ~0ull;
    m[wb] |= last;
}

/* Sets the bits of [a, b) that are set in src. */
static void set_range_in(uint64_t *m, int32_t a, int32_t b, const uint64_t *src) {
    if (a >= b) return;
    int32_t wa = a >> 6, wb = (b - 1) >> 6;
    uint64_t first = ~0ull << (a & 63), last = ~0ull >> (63 - ((b - 1) & 63));
    if (wa == wb) {
        m[wa] |= src[wa] & first & last;
        return;
    }
    m[wa] |= src[wa] & first;
    for (int32_t w = wa + 1; w < wb; w++) m[w] |= src[w];
    m[wb] |= src[wb] & last;
}

/* Walks the trie from state s into rank bits (tokens in trie order). */
static plm_status walk(plm_gmatch_universe *u, const plm_token_trie *t, int32_t s, uint64_t *rank,
                       int32_t *at, const int32_t **tab) {
    const uint8_t *byte = t->byte, *clean = t->clean;
    const uint16_t *depth = t->depth;
    const int32_t *skip = t->skip, *tb = t->tok_begin;
    uint32_t epoch = plm_gmu_epoch(u);
    at[0] = s;
    tab[0] = NULL;
    for (int32_t i = 1; i < t->n_nodes;) {
        int32_t d = depth[i];
        const int32_t *nx = tab[d - 1];
        if (!nx) {
            if (!(nx = plm_gmu_table(u, at[d - 1]))) return PLM_ERR_OOM;
            if (plm_gmu_epoch(u) != epoch) { /* making it dropped the other tables: fetch them again */
                epoch = plm_gmu_epoch(u);
                for (int32_t k = 0; k < d; k++) tab[k] = NULL;
            }
            tab[d - 1] = nx;
        }
        int32_t r = nx[byte[i]];
        if (r == -3) {
            r = plm_gmu_step(u, at[d - 1], byte[i]);
            if (plm_gmu_epoch(u) != epoch) {
                epoch = plm_gmu_epoch(u);
                for (int32_t k = 0; k < d; k++) tab[k] = NULL;
            }
        }
        if (r < 0) {
            if (r == -2) return PLM_ERR_OOM;
            i = skip[i];
            continue;
        }
        /* A subtree whose bytes r takes n characters deep for certain, and no deeper: its tokens of at most
         * n more characters at once, unwalked (the body of a JSON string, bounded or not). */
        if (skip[i] - i > 1 && clean[i] == 3) {
            int32_t end, n = plm_gmu_uniform_run(u, r, t->desc[i], t->height[i], &end);
            if (n < 0) return PLM_ERR_OOM;
            /* deeper than n, every byte of the subtree dies (or there is no deeper) */
            int done = n >= t->height[i] ? 1 : plm_gmu_kills(u, end, t->desc[i]);
            if (done < 0) return PLM_ERR_OOM;
            if (plm_gmu_epoch(u) != epoch) {
                epoch = plm_gmu_epoch(u);
                for (int32_t k = 0; k < d; k++) tab[k] = NULL;
            }
            if (done) {
                int32_t c = t->chars[i] + n;
                if (n >= t->height[i] || c >= t->max_chars) set_range(rank, tb[i], tb[skip[i]]);
                else set_range_in(rank, tb[i], tb[skip[i]], t->short_ + (size_t)c * (size_t)((t->n_order + 63) / 64));
                i = skip[i];
                continue;
            }
        }
        at[d] = r;
        tab[d] = NULL;
        set_range(rank, tb[i], tb[i + 1]);
        i++;
    }
    return PLM_OK;
}

plm_status plm_token_mask(plm_gmatch_universe *u, const plm_token_trie *t, int32_t s, uint64_t *mask) {
    int32_t words = (t->n_vocab + 63) / 64;
    const uint64_t *cached = plm_gmu_mask(u, s);
    if (cached) {
        memcpy(mask, cached, (size_t)words * sizeof(uint64_t));
        return PLM_OK;
    }
    memset(mask, 0, (size_t)words * sizeof(uint64_t));
    if (s < 0) return PLM_OK;
    int32_t rwords = (t->n_order + 63) / 64;
    size_t depth = (size_t)t->max_depth + 1;
    void *buf_stack[(256 * 2 * sizeof(void *) + 1024 * 8) / sizeof(void *)];
    size_t need = depth * sizeof(int32_t) + depth * sizeof(void *) + (size_t)rwords * 8;
    need = (need + 7) & ~(size_t)7;
    void *buf = need <= sizeof buf_stack ? (void *)buf_stack : malloc(need);
    if (!buf) return plm_fail(PLM_ERR_OOM, "out of memory for a token mask");
    uint64_t *rank = buf;
    const int32_t **tab = (const int32_t **)(rank + rwords);
    int32_t *at = (int32_t *)(tab + depth);
    memset(rank, 0, (size_t)rwords * 8);
    plm_status st = walk(u, t, s, rank, at, tab);
    if (!st) {
        /* ranks -> ids: through the refused tokens when most are allowed, else through the allowed ones */
        int32_t n_set = 0;
        for (int32_t w = 0; w < rwords; w++) n_set += __builtin_popcountll(rank[w]);
        const int32_t *order = t->order;
        if (n_set > t->n_order / 2) {
            memcpy(mask, t->in_trie, (size_t)words * sizeof(uint64_t));
            for (int32_t w = 0; w < rwords; w++) {
                uint64_t m = ~rank[w];
                if (w == rwords - 1 && (t->n_order & 63)) m &= ~0ull >> (64 - (t->n_order & 63));
                for (; m; m &= m - 1) {
                    int32_t id = order[64 * w + __builtin_ctzll(m)];
                    mask[id >> 6] &= ~(1ull << (id & 63));
                }
            }
        } else {
            for (int32_t w = 0; w < rwords; w++)
                for (uint64_t m = rank[w]; m; m &= m - 1) {
                    int32_t id = order[64 * w + __builtin_ctzll(m)];
                    mask[id >> 6] |= 1ull << (id & 63);
                }
        }
        if (plm_gmu_accepts(u, s))
            for (int32_t k = 0; k < t->n_eogs; k++) mask[t->eogs[k] >> 6] |= 1ull << (t->eogs[k] & 63);
        plm_gmu_set_mask(u, s, mask, words);
    }
    if (buf != (void *)buf_stack) free(buf);
    return st;
}
