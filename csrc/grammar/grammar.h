/*
 * grammar.h — the constraint engine's internal interface (csrc/grammar/).
 *
 * One grammar form serves every constraint: rules of alternatives of elements,
 * each element a character class (sorted code point ranges) or a reference to
 * a rule. gbnf.c reads GBNF text into it; schema.c and regex.c compile JSON
 * Schema, regular expressions and choice lists into GBNF text and read that.
 * matcher.c recognizes bytes against a grammar (a pushdown recognizer over
 * UTF-8 whose states are interned, so a state is an integer and a byte step is
 * a cached table look-up); mask.c walks a vocabulary trie against a state to
 * find every token that continues a valid parse. Not installed.
 */
#ifndef PLM_GRAMMAR_H
#define PLM_GRAMMAR_H

#include "internal.h"

/* ------------------------------------------------------------- grammar form */

enum {
    PLM_GE_CHAR = 0, /* v: class index */
    PLM_GE_REF = 1,  /* v: rule index */
    PLM_GE_ALT = 2,  /* end of an alternative (more follow) */
    PLM_GE_END = 3   /* end of the rule's last alternative */
};

typedef struct plm_gelem {
    int32_t type;
    int32_t v;
} plm_gelem;

struct plm_grammar {
    int refs;                  /* atomic: the caller's handle and every sampler holding it */
    int32_t n_rules, root;
    char **names;              /* (n_rules) */
    int32_t *rule_start;       /* (n_rules) first element of each rule in elems */
    int32_t *alt_off, *alt_n;  /* (n_rules) alternative starts of rule r: alts[alt_off[r] ..] */
    int32_t *alts;             /* element index where each alternative begins */
    plm_gelem *elems;
    int32_t n_elems;
    uint32_t *ranges;          /* pairs lo, hi (inclusive), per class, sorted and disjoint */
    int32_t *class_off, *class_n;
    uint64_t (*class_ascii)[2];/* (n_classes) bitmap of the ASCII code points each class holds */
    int32_t n_classes;
};

/* Reads GBNF text. Errors name line:column and what was expected. */
plm_status plm_grammar_parse_gbnf(const char *text, size_t len, const char *root, plm_grammar **out);
/* Does class c contain code point cp? */
bool plm_grammar_class_has(const plm_grammar *g, int32_t c, uint32_t cp);
/* Does class c contain some code point in [lo, hi]? */
bool plm_grammar_class_meets(const plm_grammar *g, int32_t c, uint32_t lo, uint32_t hi);
/* Does one range of class c hold all of [lo, hi]? */
bool plm_grammar_class_range_covers(const plm_grammar *g, int32_t c, uint32_t lo, uint32_t hi);
plm_grammar *plm_grammar_ref(const plm_grammar *g);

/* A growing text buffer for the compilers (out of memory is remembered and
 * reported once, by gbuf_take). */
typedef struct plm_gbuf {
    char *s;
    size_t n, cap;
    bool oom;
} plm_gbuf;
void plm_gbuf_put(plm_gbuf *b, const char *s, size_t n);
void plm_gbuf_puts(plm_gbuf *b, const char *s);
void plm_gbuf_printf(plm_gbuf *b, const char *fmt, ...) PLM_PRINTF(2, 3);
/* A GBNF string literal for bytes s[0, n) (quotes included). */
void plm_gbuf_literal(plm_gbuf *b, const char *s, size_t n);
/* A GBNF class item for code point cp (inside [...]). */
void plm_gbuf_class_char(plm_gbuf *b, uint32_t cp);

/* Regex subset -> GBNF rules named prefix, prefix-1, ... (appended to b); the
 * rule `prefix` matches the whole expression. what names the source in errors. */
plm_status plm_regex_to_gbnf(const char *re, size_t len, const char *prefix, plm_gbuf *b, const char *what);

/* ----------------------------------------------------------------- matcher */

typedef struct plm_gmatch_universe plm_gmatch_universe;

/* Interned states of one grammar: shared by the matchers cloned from one
 * another (one thread at a time). Holds the byte-transition and mask caches. */
plm_status plm_gmu_create(const plm_grammar *g, plm_gmatch_universe **out);
void plm_gmu_free(plm_gmatch_universe *u);
/* The start state, or -1 (and the error set) on out of memory. */
int32_t plm_gmu_start(plm_gmatch_universe *u);
/* The state after byte b from state s: -1 when no parse continues with it,
 * -2 on out of memory. */
int32_t plm_gmu_step(plm_gmatch_universe *u, int32_t s, uint8_t b);
/* The step table of state s (256 entries, -3 where not computed yet; made on first use), or NULL on out of
 * memory: the inlined fast path of plm_gmu_step for tight loops. Valid while plm_gmu_epoch is unchanged (a
 * step that makes a table may drop every other table when the cache is full). */
const int32_t *plm_gmu_table(plm_gmatch_universe *u, int32_t s);
uint32_t plm_gmu_epoch(const plm_gmatch_universe *u);
/* How many characters drawn from set (256 bits; read as well-formed UTF-8 from a character boundary) s takes
 * in a row for certain, at most h: n when every such character takes s to one same state, and each state so
 * reached does the same, n times over (h when it loops). So every string of at most n such characters leads
 * to a live state. *end receives the state reached after n characters. -2 on out of memory. */
int32_t plm_gmu_uniform_run(plm_gmatch_universe *u, int32_t s, const uint64_t set[4], int32_t h, int32_t *end);
/* 1 when no byte of set (continuation bytes aside) continues from s, between characters; else 0 (also when
 * not known); -2 on out of memory. */
int plm_gmu_kills(plm_gmatch_universe *u, int32_t s, const uint64_t set[4]);
/* Reference mode for tests: every step computed on its own, no table filled ahead (an independent check of
 * the shortcuts). */
void plm_gmu_set_reference(plm_gmatch_universe *u);
/* True when the bytes that led to s form a complete sentence of the grammar. */
bool plm_gmu_accepts(const plm_gmatch_universe *u, int32_t s);
/* True when no byte can follow s (it accepts and nothing else). */
bool plm_gmu_finished(const plm_gmatch_universe *u, int32_t s);
/* The state after bytes s[0, n) from state st (-1 dead, -2 out of memory). */
int32_t plm_gmu_walk(plm_gmatch_universe *u, int32_t st, const char *s, size_t n);
/* Bytes held by the state tables and caches. */
size_t plm_gmu_bytes(const plm_gmatch_universe *u);
/* The mask cached for state s (n_vocab bits), or NULL; plm_gmu_set_mask
 * stores a copy (best effort: dropped when the cache is full). */
const uint64_t *plm_gmu_mask(const plm_gmatch_universe *u, int32_t s);
void plm_gmu_set_mask(plm_gmatch_universe *u, int32_t s, const uint64_t *mask, int32_t n_words);

/* ----------------------------------------------------------- vocabulary trie */

typedef struct plm_token_trie plm_token_trie;

/* The trie of a vocabulary's token pieces (control tokens and end-of-generation
 * tokens left out; EOG tokens listed apart). Immutable: any thread may use it. */
plm_status plm_token_trie_build(const plm_model *model, plm_token_trie **out);
void plm_token_trie_free(plm_token_trie *t);
/* The model's trie, built on first use and kept with the model (borrowed). */
plm_status plm_model_token_trie(const plm_model *model, const plm_token_trie **out);
int32_t plm_token_trie_n_vocab(const plm_token_trie *t);
/* Bytes of token id (its piece; n 0 for control tokens). */
const char *plm_token_trie_bytes(const plm_token_trie *t, plm_token id, size_t *n);
bool plm_token_trie_is_eog(const plm_token_trie *t, plm_token id);

/* Is token id allowed in state s (its bytes continue a parse; an EOG token when
 * s accepts)? *next receives the state after it (s for an EOG token). Returns
 * -2 on out of memory, else 0 / 1. */
int plm_token_allowed(plm_gmatch_universe *u, const plm_token_trie *t, int32_t s, plm_token id, int32_t *next);
/* Fills mask (ceil(n_vocab / 64) words, bit i for token i) with every token
 * allowed in state s. */
plm_status plm_token_mask(plm_gmatch_universe *u, const plm_token_trie *t, int32_t s, uint64_t *mask);

#endif
