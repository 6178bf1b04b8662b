/*
 * matcher.c — recognizing bytes against a grammar, one byte at a time.
 *
 * Owns plm_gmatch_universe: the interned states of a top-down (pushdown)
 * recognizer over a grammar of gbnf.c. A parse position is a stack of grammar
 * positions, kept as hash-consed nodes (position, parent node), so equal
 * stacks are one node id and stacks share their tails. A state is the sorted
 * set of stacks whose top is a character class, whether the input so far is a
 * complete sentence, and a partial UTF-8 character (its bits so far and how many
 * bytes are missing). States are interned, so each is an integer and the step
 * from a state by a byte is computed once and then read from a 256-entry table:
 * walking a vocabulary trie (mask.c) is then mostly table look-ups. A partial
 * character stays alive only while some top class holds a code point it can
 * still become, so a state is dead exactly when no continuation can match; and
 * when every top class treats all the code points it can become alike, the
 * state takes the stacks after the character at once ("pending"), so states
 * that differ only in the bits of a character inside, say, a JSON string are
 * one state and their tables are shared.
 * A state's ASCII row is filled at once when its table is made: bytes that
 * every top class treats alike (all the letters inside a JSON string, say) are
 * one step computed once. The row also names the state most ASCII bytes lead
 * to; mask.c uses that summary to allow a whole subtree of the vocabulary trie
 * without walking it (plm_gmu_uniform_run).
 * Left recursion is refused by gbnf.c, so expanding a rule always ends. A rule
 * referenced last in an alternative returns straight to the caller's caller
 * (a tail call), so repetitions (right recursion) keep the stack flat.
 */
#include "grammar/grammar.h"

#include <stdlib.h>
#include <string.h>

#define UNKNOWN (-3)
#define DEAD (-1)
#define NOMEM (-2)
#define CACHE_LIMIT ((size_t)256 << 20) /* transition tables and masks past this are dropped and recomputed */

typedef struct gnode {
    int32_t pos, parent;
} gnode;

typedef struct gstate {
    int32_t off, n;       /* top nodes: ids[off, off + n) */
    uint32_t partial;     /* bits of a partial UTF-8 character */
    uint8_t need;         /* bytes it still needs (0: none pending) */
    uint8_t blo, bhi;     /* range of the next byte while need > 0 */
    uint8_t accept;       /* need == 0: the input so far is a sentence; pending: it will be once the character ends */
    uint8_t pending;      /* need > 0 and every top class treats every completion alike: the stacks are already
                           * those after the character (so states differing only in its bits are one state) */
    uint32_t hash;
    int32_t *next;        /* (256) step by byte, UNKNOWN until computed; NULL until first used */
    uint64_t *mask;       /* cached token mask or NULL */
    int32_t uni;          /* the state most ASCII bytes lead to (DEAD: none; UNKNOWN until the row is filled) */
    uint64_t uset[4];     /* bytes that lead to uni as (part of) one character: those ASCII bytes, every
                           * continuation byte, and the lead bytes whose characters all do (bit b - 0xC0) */
    uint64_t leads_known; /* nonzero once uset[3] is filled (fill_leads) */
    uint64_t dead[2];     /* ASCII bytes that lead nowhere (once the row is filled) */
} gstate;

struct plm_gmatch_universe {
    plm_grammar *g;
    gnode *nodes;
    uint32_t *stamp;
    int32_t n_nodes, cap_nodes;
    int32_t *node_ht;
    uint32_t node_ht_cap;
    gstate *states;
    int32_t n_states, cap_states;
    int32_t *state_ht;
    uint32_t state_ht_cap;
    int32_t *ids;
    int64_t n_ids, cap_ids;
    int32_t *work;        /* pairs (pos, parent) */
    int32_t n_work, cap_work;
    int32_t *out;
    int32_t n_out, cap_out;
    uint32_t cur;
    size_t cache_bytes;
    int32_t start;
    uint32_t epoch;       /* counts trims: a table pointer held across a step is stale once it changes */
    bool plain;           /* reference mode: no rows filled ahead, every step computed alone */
};

static uint32_t mix(uint32_t a, uint32_t b) {
    uint32_t h = a * 0x9E3779B1u ^ (b + 0x7F4A7C15u) * 0x85EBCA77u;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 13;
    return h;
}

plm_status plm_gmu_create(const plm_grammar *g, plm_gmatch_universe **out) {
    *out = NULL;
    plm_gmatch_universe *u = calloc(1, sizeof(*u));
    if (!u) return plm_fail(PLM_ERR_OOM, "out of memory for a grammar matcher");
    u->g = plm_grammar_ref(g);
    u->start = -1;
    u->node_ht_cap = 1024;
    u->state_ht_cap = 1024;
    u->node_ht = malloc(u->node_ht_cap * sizeof(int32_t));
    u->state_ht = malloc(u->state_ht_cap * sizeof(int32_t));
    if (!u->node_ht || !u->state_ht) {
        plm_gmu_free(u);
        return plm_fail(PLM_ERR_OOM, "out of memory for a grammar matcher");
    }
    memset(u->node_ht, 0xff, u->node_ht_cap * sizeof(int32_t));
    memset(u->state_ht, 0xff, u->state_ht_cap * sizeof(int32_t));
    *out = u;
    return PLM_OK;
}

void plm_gmu_free(plm_gmatch_universe *u) {
    if (!u) return;
    for (int32_t i = 0; i < u->n_states; i++) {
        free(u->states[i].next);
        free(u->states[i].mask);
    }
    free(u->states);
    free(u->state_ht);
    free(u->nodes);
    free(u->stamp);
    free(u->node_ht);
    free(u->ids);
    free(u->work);
    free(u->out);
    plm_grammar_free(u->g);
    free(u);
}

static bool grow(void **p, int64_t *cap, int64_t need, size_t item) {
    if (need <= *cap) return true;
    int64_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, (size_t)nc * item);
    if (!np) return false;
    *p = np;
    *cap = nc;
    return true;
}

static bool grow32(void **p, int32_t *cap, int64_t need, size_t item) {
    int64_t c = *cap;
    if (need > INT32_MAX / 2) return false;
    bool ok = grow(p, &c, need, item);
    *cap = (int32_t)c;
    return ok;
}

/* The node for (pos, parent), made on first use; -1 on out of memory. */
static int32_t cons(plm_gmatch_universe *u, int32_t pos, int32_t parent) {
    uint32_t h = mix((uint32_t)pos, (uint32_t)parent), m = u->node_ht_cap - 1;
    for (uint32_t i = h & m;; i = (i + 1) & m) {
        int32_t id = u->node_ht[i];
        if (id < 0) break;
        if (u->nodes[id].pos == pos && u->nodes[id].parent == parent) return id;
    }
    if (u->n_nodes == u->cap_nodes) {
        int32_t old = u->cap_nodes;
        if (!grow32((void **)&u->nodes, &u->cap_nodes, (int64_t)u->n_nodes + 1, sizeof(gnode))) return -1;
        uint32_t *ns = realloc(u->stamp, (size_t)u->cap_nodes * sizeof(uint32_t));
        if (!ns) return -1;
        memset(ns + old, 0, (size_t)(u->cap_nodes - old) * sizeof(uint32_t));
        u->stamp = ns;
    }
    int32_t id = u->n_nodes++;
    u->nodes[id] = (gnode){pos, parent};
    if ((uint32_t)u->n_nodes * 2 > u->node_ht_cap) {
        uint32_t nc = u->node_ht_cap * 2;
        int32_t *nt = malloc(nc * sizeof(int32_t));
        if (!nt) return -1;
        memset(nt, 0xff, nc * sizeof(int32_t));
        for (int32_t k = 0; k < u->n_nodes; k++) {
            uint32_t j = mix((uint32_t)u->nodes[k].pos, (uint32_t)u->nodes[k].parent) & (nc - 1);
            while (nt[j] >= 0) j = (j + 1) & (nc - 1);
            nt[j] = k;
        }
        free(u->node_ht);
        u->node_ht = nt;
        u->node_ht_cap = nc;
    } else {
        uint32_t j = h & m;
        while (u->node_ht[j] >= 0) j = (j + 1) & m;
        u->node_ht[j] = id;
    }
    return id;
}

static bool push_work(plm_gmatch_universe *u, int32_t pos, int32_t parent) {
    if (!grow32((void **)&u->work, &u->cap_work, 2 * ((int64_t)u->n_work + 1), sizeof(int32_t))) return false;
    u->work[2 * u->n_work] = pos;
    u->work[2 * u->n_work + 1] = parent;
    u->n_work++;
    return true;
}

static void new_round(plm_gmatch_universe *u) {
    if (++u->cur == 0) {
        if (u->stamp) memset(u->stamp, 0, (size_t)u->cap_nodes * sizeof(uint32_t));
        u->cur = 1;
    }
    u->n_out = 0;
}

/* Expands the pending positions until each stack's top is a character class;
 * collects those stacks in u->out and whether a stack emptied (accept). */
static bool expand(plm_gmatch_universe *u, bool *accept) {
    const plm_grammar *g = u->g;
    while (u->n_work) {
        u->n_work--;
        int32_t pos = u->work[2 * u->n_work], parent = u->work[2 * u->n_work + 1];
        int32_t id = cons(u, pos, parent);
        if (id < 0) return false;
        if (u->stamp[id] == u->cur) continue;
        u->stamp[id] = u->cur;
        plm_gelem e = g->elems[pos];
        if (e.type == PLM_GE_CHAR) {
            if (!grow32((void **)&u->out, &u->cap_out, (int64_t)u->n_out + 1, sizeof(int32_t))) return false;
            u->out[u->n_out++] = id;
        } else if (e.type == PLM_GE_REF) {
            /* A reference at the end of its alternative returns straight to the parent (a tail call),
             * so a right-recursive repetition does not grow the stack: its states recur and are cached. */
            int32_t after = g->elems[pos + 1].type;
            int32_t ret = after == PLM_GE_ALT || after == PLM_GE_END ? parent : cons(u, pos + 1, parent);
            if (ret < 0 && parent >= 0) return false;
            for (int32_t k = g->alt_n[e.v] - 1; k >= 0; k--)
                if (!push_work(u, g->alts[g->alt_off[e.v] + k], ret)) return false;
        } else if (parent < 0) {
            *accept = true;
        } else {
            gnode p = u->nodes[parent];
            if (!push_work(u, p.pos, p.parent)) return false;
        }
    }
    return true;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

static uint32_t state_hash(const int32_t *ids, int32_t n, uint32_t partial, uint32_t meta) {
    uint32_t h = mix(partial, meta);
    for (int32_t i = 0; i < n; i++) h = mix(h, (uint32_t)ids[i]);
    return h;
}

/* Interns the state (ids[0, n) sorted; they may point into u->ids). */
static int32_t intern(plm_gmatch_universe *u, const int32_t *ids, int32_t n, uint32_t partial, uint8_t need, uint8_t blo,
                      uint8_t bhi, bool accept, bool pending) {
    if (n == 0 && !accept) return DEAD;
    uint32_t meta = (uint32_t)need | (uint32_t)blo << 8 | (uint32_t)bhi << 16 | (uint32_t)accept << 24 |
                    (uint32_t)pending << 25;
    uint32_t h = state_hash(ids, n, partial, meta), m = u->state_ht_cap - 1;
    for (uint32_t i = h & m;; i = (i + 1) & m) {
        int32_t s = u->state_ht[i];
        if (s < 0) break;
        const gstate *st = &u->states[s];
        if (st->hash == h && st->n == n && st->partial == partial && st->need == need && st->blo == blo &&
            st->bhi == bhi && st->accept == accept && st->pending == pending &&
            (n == 0 || memcmp(u->ids + st->off, ids, (size_t)n * sizeof(int32_t)) == 0))
            return s;
    }
    /* ids may live in u->ids: copy by offset after growing. */
    int64_t src = (n > 0 && u->ids && ids >= u->ids && ids < u->ids + u->n_ids) ? ids - u->ids : -1;
    if (!grow((void **)&u->ids, &u->cap_ids, u->n_ids + n, sizeof(int32_t))) return NOMEM;
    if (src >= 0) ids = u->ids + src;
    if (!grow32((void **)&u->states, &u->cap_states, (int64_t)u->n_states + 1, sizeof(gstate))) return NOMEM;
    if (n) memmove(u->ids + u->n_ids, ids, (size_t)n * sizeof(int32_t));
    int32_t s = u->n_states++;
    u->states[s] = (gstate){.off = (int32_t)u->n_ids, .n = n, .partial = partial, .need = need, .blo = blo, .bhi = bhi,
                            .accept = accept, .pending = pending, .hash = h, .uni = UNKNOWN};
    u->n_ids += n;
    if ((uint32_t)u->n_states * 2 > u->state_ht_cap) {
        uint32_t nc = u->state_ht_cap * 2;
        int32_t *nt = malloc(nc * sizeof(int32_t));
        if (!nt) return NOMEM;
        memset(nt, 0xff, nc * sizeof(int32_t));
        for (int32_t k = 0; k < u->n_states; k++) {
            uint32_t j = u->states[k].hash & (nc - 1);
            while (nt[j] >= 0) j = (j + 1) & (nc - 1);
            nt[j] = k;
        }
        free(u->state_ht);
        u->state_ht = nt;
        u->state_ht_cap = nc;
    } else {
        uint32_t j = h & m;
        while (u->state_ht[j] >= 0) j = (j + 1) & m;
        u->state_ht[j] = s;
    }
    return s;
}

int32_t plm_gmu_start(plm_gmatch_universe *u) {
    if (u->start >= 0) return u->start;
    new_round(u);
    const plm_grammar *g = u->g;
    for (int32_t k = g->alt_n[g->root] - 1; k >= 0; k--)
        if (!push_work(u, g->alts[g->alt_off[g->root] + k], -1)) goto nomem;
    bool accept = false;
    if (!expand(u, &accept)) goto nomem;
    if (u->n_out > 1) qsort(u->out, (size_t)u->n_out, sizeof(int32_t), cmp_i32);
    u->start = intern(u, u->out, u->n_out, 0, 0, 0, 0, accept, false);
    if (u->start == NOMEM) goto nomem;
    return u->start;
nomem:
    u->n_work = 0;
    plm_fail(PLM_ERR_OOM, "out of memory in the grammar matcher");
    return -1;
}

/* The stacks after code point cp from state s's stacks, sorted into u->out. */
static bool advance_set(plm_gmatch_universe *u, int32_t s, uint32_t cp, bool *accept) {
    const plm_grammar *g = u->g;
    new_round(u);
    const gstate *st = &u->states[s];
    for (int32_t i = 0; i < st->n; i++) {
        gnode nd = u->nodes[u->ids[st->off + i]];
        if (plm_grammar_class_has(g, g->elems[nd.pos].v, cp) && !push_work(u, nd.pos + 1, nd.parent)) return false;
    }
    *accept = false;
    if (!expand(u, accept)) {
        u->n_work = 0;
        return false;
    }
    if (u->n_out > 1) qsort(u->out, (size_t)u->n_out, sizeof(int32_t), cmp_i32);
    return true;
}

/* Whole code point cp from state s. */
static int32_t advance(plm_gmatch_universe *u, int32_t s, uint32_t cp) {
    bool accept;
    if (!advance_set(u, s, cp, &accept)) return NOMEM;
    return intern(u, u->out, u->n_out, 0, 0, 0, 0, accept, false);
}

/* s's stacks with a partial character: alive if some top class holds a code
 * point the character can still become. */
static int32_t partial_state(plm_gmatch_universe *u, int32_t s, uint32_t partial, uint8_t need, uint8_t blo, uint8_t bhi) {
    const plm_grammar *g = u->g;
    const gstate *st = &u->states[s];
    unsigned sh = 6u * (need - 1u);
    uint32_t lo = ((partial << 6) | (blo & 0x3Fu)) << sh, hi = (((partial << 6) | (bhi & 0x3Fu)) << sh) | ((1u << sh) - 1);
    bool alive = false, uniform = true;
    for (int32_t i = 0; i < st->n; i++) {
        int32_t c = g->elems[u->nodes[u->ids[st->off + i]].pos].v;
        if (!plm_grammar_class_meets(g, c, lo, hi)) continue;
        alive = true;
        /* Every completion lands in this class (a range of it covers [lo, hi]) or in none. */
        if (uniform && !(plm_grammar_class_has(g, c, lo) && plm_grammar_class_range_covers(g, c, lo, hi))) uniform = false;
    }
    if (!alive) return DEAD;
    if (uniform) { /* the result does not depend on the rest of the character: take it now */
        bool accept;
        if (!advance_set(u, s, lo, &accept)) return NOMEM;
        return intern(u, u->out, u->n_out, 0, need, blo, bhi, accept, true);
    }
    return intern(u, st->n ? u->ids + st->off : NULL, st->n, partial, need, blo, bhi, false, false);
}

static int32_t compute_step(plm_gmatch_universe *u, int32_t s, uint8_t b) {
    const gstate *st = &u->states[s];
    if (st->need == 0) {
        if (b < 0x80) return advance(u, s, b);
        if (b >= 0xC2 && b <= 0xDF) return partial_state(u, s, b & 0x1Fu, 1, 0x80, 0xBF);
        if (b >= 0xE0 && b <= 0xEF)
            return partial_state(u, s, b & 0x0Fu, 2, b == 0xE0 ? 0xA0 : 0x80, b == 0xED ? 0x9F : 0xBF);
        if (b >= 0xF0 && b <= 0xF4)
            return partial_state(u, s, b & 0x07u, 3, b == 0xF0 ? 0x90 : 0x80, b == 0xF4 ? 0x8F : 0xBF);
        return DEAD;
    }
    if (b < st->blo || b > st->bhi) return DEAD;
    if (st->pending) {
        uint8_t left = (uint8_t)(st->need - 1);
        return intern(u, st->n ? u->ids + st->off : NULL, st->n, 0, left, left ? 0x80 : 0, left ? 0xBF : 0, st->accept, left > 0);
    }
    uint32_t partial = (st->partial << 6) | (b & 0x3Fu);
    uint8_t need = (uint8_t)(st->need - 1);
    if (need == 0) return advance(u, s, partial);
    return partial_state(u, s, partial, need, 0x80, 0xBF);
}

/* Drops the transition tables and masks (they are recomputed on demand). */
static void trim(plm_gmatch_universe *u) {
    for (int32_t i = 0; i < u->n_states; i++) {
        free(u->states[i].next);
        free(u->states[i].mask);
        u->states[i].next = NULL;
        u->states[i].mask = NULL;
    }
    u->cache_bytes = 0;
    u->epoch++;
}

/* Fills the ASCII row of state s (between characters): the bytes are split into groups that every top class
 * holds all of or none of; each group's step is computed once (a group in no class is dead). Then the
 * summary: uni, the target most bytes share, and the bytes that lead there. False on out of memory. */
static bool fill_ascii(plm_gmatch_universe *u, int32_t s) {
    const plm_grammar *g = u->g;
    uint64_t grp[128][2] = {{~0ull, ~0ull}}, any[2] = {0, 0};
    int ng = 1;
    for (int32_t i = 0; i < u->states[s].n; i++) {
        const uint64_t *c = g->class_ascii[g->elems[u->nodes[u->ids[u->states[s].off + i]].pos].v];
        any[0] |= c[0], any[1] |= c[1];
        for (int k = 0, n0 = ng; k < n0; k++) {
            uint64_t a0 = grp[k][0] & c[0], a1 = grp[k][1] & c[1], b0 = grp[k][0] & ~c[0], b1 = grp[k][1] & ~c[1];
            if ((a0 | a1) && (b0 | b1)) {
                grp[k][0] = a0, grp[k][1] = a1;
                grp[ng][0] = b0, grp[ng][1] = b1;
                ng++;
            }
        }
    }
    int32_t target[128];
    for (int k = 0; k < ng; k++) {
        int rep = grp[k][0] ? __builtin_ctzll(grp[k][0]) : 64 + __builtin_ctzll(grp[k][1]);
        int32_t r = DEAD;
        if ((grp[k][0] & any[0]) | (grp[k][1] & any[1])) r = advance(u, s, (uint32_t)rep);
        if (r == NOMEM) return false;
        target[k] = r;
        int32_t *t = u->states[s].next;
        for (int w = 0; w < 2; w++)
            for (uint64_t m = grp[k][w]; m; m &= m - 1) t[64 * w + __builtin_ctzll(m)] = r;
    }
    gstate *st = &u->states[s];
    int best = 0;
    st->uni = DEAD;
    for (int k = 0; k < ng; k++) {
        if (target[k] < 0) continue;
        int n = 0;
        for (int j = 0; j < ng; j++)
            if (target[j] == target[k]) n += __builtin_popcountll(grp[j][0]) + __builtin_popcountll(grp[j][1]);
        if (n > best) best = n, st->uni = target[k];
    }
    memset(st->uset, 0, sizeof st->uset);
    st->dead[0] = st->dead[1] = 0;
    for (int k = 0; k < ng; k++)
        if (target[k] == DEAD) st->dead[0] |= grp[k][0], st->dead[1] |= grp[k][1];
    if (st->uni >= 0) {
        for (int k = 0; k < ng; k++)
            if (target[k] == st->uni) st->uset[0] |= grp[k][0], st->uset[1] |= grp[k][1];
        st->uset[2] = ~0ull; /* continuation bytes 0x80-0xBF: judged with their lead byte */
    }
    return true;
}

/* Makes s's step table (UNKNOWN everywhere), then fills what is known without a parse: outside a character
 * the ASCII row (fill_ascii) and the bytes no character starts with; inside one, the bytes out of its range.
 * False on out of memory. */
static bool new_table(plm_gmatch_universe *u, int32_t s) {
    if (u->cache_bytes > CACHE_LIMIT) trim(u);
    int32_t *t = malloc(256 * sizeof(int32_t));
    if (!t) return false;
    for (int i = 0; i < 256; i++) t[i] = UNKNOWN;
    u->states[s].next = t;
    u->cache_bytes += 256 * sizeof(int32_t);
    if (u->plain) return true;
    const gstate *st = &u->states[s];
    if (st->need) {
        for (int i = 0; i < 256; i++)
            if (i < st->blo || i > st->bhi) t[i] = DEAD;
        return true;
    }
    for (int i = 0x80; i < 0xC2; i++) t[i] = DEAD;
    for (int i = 0xF5; i < 0x100; i++) t[i] = DEAD;
    return fill_ascii(u, s);
}

static int32_t nomem(void) {
    plm_fail(PLM_ERR_OOM, "out of memory in the grammar matcher");
    return NOMEM;
}

int32_t plm_gmu_step(plm_gmatch_universe *u, int32_t s, uint8_t b) {
    if (s < 0) return DEAD;
    gstate *st = &u->states[s];
    if (st->next && st->next[b] != UNKNOWN) return st->next[b];
    if (!st->next) {
        if (!new_table(u, s)) return nomem();
        st = &u->states[s];
        if (st->next[b] != UNKNOWN) return st->next[b];
    }
    int32_t r = compute_step(u, s, b);
    if (r == NOMEM) return nomem();
    u->states[s].next[b] = r;
    return r;
}

const int32_t *plm_gmu_table(plm_gmatch_universe *u, int32_t s) {
    if (!u->states[s].next && !new_table(u, s)) {
        nomem();
        return NULL;
    }
    return u->states[s].next;
}

uint32_t plm_gmu_epoch(const plm_gmatch_universe *u) { return u->epoch; }

void plm_gmu_set_reference(plm_gmatch_universe *u) { u->plain = true; }

/* The code points a character with lead byte b (0xC2-0xF4) can be, as compute_step's byte ranges allow. */
static void lead_range(uint8_t b, uint32_t *lo, uint32_t *hi) {
    uint32_t partial = b <= 0xDF ? b & 0x1Fu : b <= 0xEF ? b & 0x0Fu : b & 0x07u;
    unsigned need = b <= 0xDF ? 1 : b <= 0xEF ? 2 : 3;
    uint8_t blo = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80, bhi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
    unsigned sh = 6u * (need - 1u);
    *lo = ((partial << 6) | (blo & 0x3Fu)) << sh;
    *hi = (((partial << 6) | (bhi & 0x3Fu)) << sh) | ((1u << sh) - 1);
}

/* Fills uset[3]: the lead bytes every character of which takes s to uni. Such a lead makes a pending state
 * (every top class holds all of its code points or none: partial_state's test), and the classes holding them
 * are those holding the ASCII bytes that lead to uni, so the stacks after it are uni's; where the classes
 * differ, the step is computed. False on out of memory. */
static bool fill_leads(plm_gmatch_universe *u, int32_t s) {
    const plm_grammar *g = u->g;
    u->states[s].leads_known = ~0ull;
    if (u->states[s].uni < 0) return true;
    const uint64_t *us = u->states[s].uset;
    uint32_t rep = us[0] ? (uint32_t)__builtin_ctzll(us[0]) : 64u + (uint32_t)__builtin_ctzll(us[1]);
    uint64_t ok = 0;
    for (int b = 0xC2; b <= 0xF4; b++) {
        uint32_t lo, hi;
        lead_range((uint8_t)b, &lo, &hi);
        bool uniform = true, any = false, same = true;
        const gstate *st = &u->states[s];
        for (int32_t i = 0; i < st->n && uniform; i++) {
            int32_t c = g->elems[u->nodes[u->ids[st->off + i]].pos].v;
            bool m = plm_grammar_class_meets(g, c, lo, hi);
            if (m && !(plm_grammar_class_has(g, c, lo) && plm_grammar_class_range_covers(g, c, lo, hi))) uniform = false;
            any = any || m;
            same = same && m == plm_grammar_class_has(g, c, rep);
        }
        if (!uniform || !any) continue;
        if (!same) {
            int32_t r = advance(u, s, lo);
            if (r == NOMEM) return false;
            if (r != u->states[s].uni) continue;
        }
        ok |= 1ull << (b - 0xC0);
    }
    u->states[s].uset[3] = ok;
    return true;
}

int32_t plm_gmu_uniform_run(plm_gmatch_universe *u, int32_t s, const uint64_t set[4], int32_t h, int32_t *end) {
    int32_t j = 0;
    for (; j < h; j++) {
        *end = s;
        if (u->states[s].need) return j;
        if (!u->states[s].next && !new_table(u, s)) return nomem();
        gstate *st = &u->states[s];
        if (st->uni < 0 || (set[0] & ~st->uset[0]) || (set[1] & ~st->uset[1])) return j;
        if (set[3] && !st->leads_known) {
            if (!fill_leads(u, s)) return nomem();
            st = &u->states[s];
        }
        if (set[3] & ~st->uset[3]) return j;
        if (st->uni == s) return h;
        s = st->uni;
    }
    *end = s;
    return h;
}

int plm_gmu_kills(plm_gmatch_universe *u, int32_t s, const uint64_t set[4]) {
    if (u->states[s].need) return 0;
    if (!u->states[s].next && !new_table(u, s)) return nomem();
    const gstate *st = &u->states[s];
    if (st->uni == UNKNOWN || (set[0] & ~st->dead[0]) || (set[1] & ~st->dead[1])) return 0;
    for (uint64_t m = set[3]; m; m &= m - 1) {
        int32_t r = plm_gmu_step(u, s, (uint8_t)(0xC0 + __builtin_ctzll(m)));
        if (r == NOMEM) return NOMEM;
        if (r != DEAD) return 0;
    }
    return 1;
}

int32_t plm_gmu_walk(plm_gmatch_universe *u, int32_t s, const char *p, size_t n) {
    for (size_t i = 0; i < n && s >= 0; i++) s = plm_gmu_step(u, s, (uint8_t)p[i]);
    return s;
}

bool plm_gmu_accepts(const plm_gmatch_universe *u, int32_t s) {
    return s >= 0 && u->states[s].accept && u->states[s].need == 0;
}

bool plm_gmu_finished(const plm_gmatch_universe *u, int32_t s) {
    return plm_gmu_accepts(u, s) && u->states[s].n == 0;
}

size_t plm_gmu_bytes(const plm_gmatch_universe *u) {
    return u->cache_bytes + (size_t)u->cap_nodes * (sizeof(gnode) + 4) + (size_t)u->cap_states * sizeof(gstate) +
           (size_t)u->cap_ids * 4 + (u->node_ht_cap + u->state_ht_cap) * 4u;
}

const uint64_t *plm_gmu_mask(const plm_gmatch_universe *u, int32_t s) { return s >= 0 ? u->states[s].mask : NULL; }

void plm_gmu_set_mask(plm_gmatch_universe *u, int32_t s, const uint64_t *mask, int32_t n_words) {
    if (s < 0 || u->states[s].mask) return;
    size_t sz = (size_t)n_words * sizeof(uint64_t);
    if (u->cache_bytes + sz > CACHE_LIMIT) return;
    uint64_t *m = malloc(sz);
    if (!m) return;
    memcpy(m, mask, sz);
    u->states[s].mask = m;
    u->cache_bytes += sz;
}
