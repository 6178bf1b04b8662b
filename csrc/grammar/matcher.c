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
    uint64_t *loops;      /* (4 words) the bytes that lead back to this state, once computed */
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
    int32_t mask_words;
    int32_t start;
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
        free(u->states[i].loops);
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
                            .accept = accept, .pending = pending, .hash = h};
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
}

int32_t plm_gmu_step(plm_gmatch_universe *u, int32_t s, uint8_t b) {
    if (s < 0) return DEAD;
    gstate *st = &u->states[s];
    if (st->next && st->next[b] != UNKNOWN) return st->next[b];
    int32_t r = compute_step(u, s, b);
    if (r == NOMEM) {
        plm_fail(PLM_ERR_OOM, "out of memory in the grammar matcher");
        return NOMEM;
    }
    st = &u->states[s];
    if (!st->next) {
        if (u->cache_bytes > CACHE_LIMIT) trim(u);
        st->next = malloc(256 * sizeof(int32_t));
        if (!st->next) return r; /* not cached: computed again next time */
        for (int i = 0; i < 256; i++) st->next[i] = UNKNOWN;
        u->cache_bytes += 256 * sizeof(int32_t);
    }
    st->next[b] = r;
    return r;
}

const int32_t *plm_gmu_table(const plm_gmatch_universe *u, int32_t s) { return u->states[s].next; }

const uint64_t *plm_gmu_loops(plm_gmatch_universe *u, int32_t s) {
    if (u->states[s].loops) return u->states[s].loops;
    uint64_t l[4] = {0};
    for (int b = 0; b < 256; b++) {
        int32_t r = plm_gmu_step(u, s, (uint8_t)b);
        if (r == NOMEM) return NULL;
        if (r == s) l[b >> 6] |= 1ull << (b & 63);
    }
    uint64_t *m = malloc(sizeof l);
    if (!m) return NULL;
    memcpy(m, l, sizeof l);
    u->states[s].loops = m;
    u->cache_bytes += sizeof l;
    return m;
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
