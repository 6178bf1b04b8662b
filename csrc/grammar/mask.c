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
 * are handled like any other bytes. End-of-generation tokens are allowed only
 * where the grammar accepts; control tokens (no printed bytes) never are.
 * Masks are cached per matcher state. The trie is built once per model and
 * kept with it (model.c frees it).
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
    int32_t *tok_begin;/* (n_nodes + 1) the tokens at and below node i are order[tok_begin[i], tok_begin[skip[i]]) */
    int32_t *order;    /* tokens in trie order */
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
    free(t->tok_begin);
    free(t->order);
    free(t->off);
    free(t->pool);
    free(t->eog);
    free(t->eogs);
    free(t);
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
    if (!t->desc || !t->tok_begin || !t->order) goto nomem;
    int32_t k = 0;
    for (int32_t i = 0; i < nn; i++) {
        t->tok_begin[i] = k;
        for (int32_t x = t->tok[i]; x >= 0; x = t->tok_next[x]) t->order[k++] = x;
    }
    t->tok_begin[nn] = k;
    for (int32_t i = nn - 1; i >= 0; i--)
        for (int32_t c = i + 1; c < t->skip[i]; c = t->skip[c]) {
            t->desc[i][t->byte[c] >> 6] |= 1ull << (t->byte[c] & 63);
            for (int w = 0; w < 4; w++) t->desc[i][w] |= t->desc[c][w];
        }
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

plm_status plm_token_mask(plm_gmatch_universe *u, const plm_token_trie *t, int32_t s, uint64_t *mask) {
    int32_t words = (t->n_vocab + 63) / 64;
    const uint64_t *cached = plm_gmu_mask(u, s);
    if (cached) {
        memcpy(mask, cached, (size_t)words * sizeof(uint64_t));
        return PLM_OK;
    }
    memset(mask, 0, (size_t)words * sizeof(uint64_t));
    if (s < 0) return PLM_OK;
    int32_t stack_buf[256];
    int32_t *at = t->max_depth < 255 ? stack_buf : malloc(((size_t)t->max_depth + 1) * sizeof(int32_t));
    if (!at) return plm_fail(PLM_ERR_OOM, "out of memory for a token mask");
    at[0] = s;
    const uint8_t *byte = t->byte;
    const uint16_t *depth = t->depth;
    const int32_t *skip = t->skip, *tok = t->tok;
    for (int32_t i = 1; i < t->n_nodes;) {
        int32_t from = at[depth[i] - 1];
        const int32_t *nx = plm_gmu_table(u, from);
        int32_t r = nx ? nx[byte[i]] : -3;
        if (r == -3) r = plm_gmu_step(u, from, byte[i]);
        if (r < 0) {
            if (r == -2) {
                if (at != stack_buf) free(at);
                return PLM_ERR_OOM;
            }
            i = skip[i];
            continue;
        }
        /* A large subtree whose bytes all lead from r back to r: every token in it is allowed, unwalked
         * (the body of a JSON string, say). */
        if (skip[i] - i > 16) {
            const uint64_t *loops = plm_gmu_loops(u, r);
            const uint64_t *d = t->desc[i];
            if (loops && !(d[0] & ~loops[0]) && !(d[1] & ~loops[1]) && !(d[2] & ~loops[2]) && !(d[3] & ~loops[3])) {
                for (int32_t k = t->tok_begin[i], e = t->tok_begin[skip[i]]; k < e; k++)
                    mask[t->order[k] >> 6] |= 1ull << (t->order[k] & 63);
                i = skip[i];
                continue;
            }
        }
        at[depth[i]] = r;
        for (int32_t k = tok[i]; k >= 0; k = t->tok_next[k]) mask[k >> 6] |= 1ull << (k & 63);
        i++;
    }
    if (at != stack_buf) free(at);
    if (plm_gmu_accepts(u, s))
        for (int32_t k = 0; k < t->n_eogs; k++) mask[t->eogs[k] >> 6] |= 1ull << (t->eogs[k] & 63);
    plm_gmu_set_mask(u, s, mask, words);
    return PLM_OK;
}
