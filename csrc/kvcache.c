/*
 * kvcache.c — the KV cache cells: which sequence holds which position.
 *
 * Owns the cell bookkeeping, and nothing else writes it: forward.c asks for
 * cells for a batch (plm_kv_place) and gives them back when the batch fails,
 * state.c loads saved cells through plm_kv_load_cell. Keys and values are
 * stored in F16 per layer and cell (written by models/blocks.c into the cells
 * placed here). A cell belongs to a set of sequences (a bit mask), which is how
 * a prompt evaluated once is shared by several continuations (plm_kv_seq_cp
 * adds a sequence to cells without copying). Each sequence also keeps the list
 * of its cells in position order: attention visits a sequence's own cells
 * through it, so a token's work does not grow with other sequences' cells, and
 * a sequence's numbers do not depend on where its cells lie.
 *
 * Where a new token's cell goes: right after its sequence's last cell when that
 * one is free, else at the start of an empty page of KV_PAGE cells, else in the
 * first free cell. Sequences stepped together (plm_batch_gen) then keep their
 * cells in runs of their own instead of interleaved one cell each, so that the
 * attention's blocks of a sequence's list (PLM_KV_BLOCK cells) are blocks of
 * the cache, read in place (models/blocks.c, context.h's transposed keys)
 * rather than gathered cell by cell; a page's first cell is taken so that a
 * cell's index and its place in the list agree modulo PLM_KV_BLOCK, the
 * blocks' alignment. Where no empty page is left the first free cell is taken
 * as before, so a cache fills up as far as it did.
 */
#include "context.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

plm_status plm_kv_init(plm_kv *kv, const plm_hparams *hp, int32_t n_ctx) {
    memset(kv, 0, sizeof(*kv));
    kv->n_ctx = n_ctx;
    kv->n_layer = hp->n_layer;
    kv->empty_pages = true;
    kv->kv_dim = hp->n_head_kv * hp->head_dim;
    uint64_t per_layer, total, k_layer, k_total;
    const uint64_t n_blk = ((uint64_t)n_ctx + PLM_KV_BLOCK - 1) / PLM_KV_BLOCK;
    if (plm_mul_ovf((uint64_t)n_ctx, (uint64_t)kv->kv_dim, &per_layer) ||
        plm_mul_ovf(per_layer, (uint64_t)hp->n_layer * sizeof(plm_f16), &total) || total > SIZE_MAX / 2 ||
        plm_mul_ovf(n_blk * PLM_KV_BLOCK, (uint64_t)kv->kv_dim, &k_layer) ||
        plm_mul_ovf(k_layer, (uint64_t)hp->n_layer * sizeof(plm_f16), &k_total) || k_total > SIZE_MAX / 2)
        return plm_fail(PLM_ERR_OOM, "KV cache of %d cells is too large", n_ctx);
    kv->k_layer = (size_t)k_layer;
    kv->k = plm_amalloc((size_t)k_total);
    kv->v = plm_amalloc((size_t)total);
    kv->pos = malloc((size_t)n_ctx * sizeof(int32_t));
    kv->seq = calloc((size_t)n_ctx, sizeof(uint64_t));
    kv->tok = calloc((size_t)n_ctx, sizeof(plm_token));
    if (!kv->k || !kv->v || !kv->pos || !kv->seq || !kv->tok) {
        plm_kv_release(kv);
        return plm_fail(PLM_ERR_OOM, "out of memory for a KV cache of %d cells (%.1f MiB)", n_ctx, 2.0 * (double)total / (1 << 20));
    }
    for (int32_t i = 0; i < n_ctx; i++) kv->pos[i] = -1;
    return PLM_OK;
}

void plm_kv_huge_pages(plm_kv *kv) {
#ifdef MADV_HUGEPAGE
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    const size_t k_bytes = kv->k_layer * (size_t)kv->n_layer * sizeof(plm_f16),
                 v_bytes = (size_t)kv->n_ctx * (size_t)kv->kv_dim * (size_t)kv->n_layer * sizeof(plm_f16);
    const struct { void *p; size_t n; } r[2] = {{kv->k, k_bytes}, {kv->v, v_bytes}};
    for (int i = 0; i < 2; i++) {
        const uintptr_t a = ((uintptr_t)r[i].p + pg - 1) / pg * pg, b = ((uintptr_t)r[i].p + r[i].n) / pg * pg;
        if (b > a) (void)madvise((void *)a, b - a, MADV_HUGEPAGE); /* a hint: on 4 KB pages all works, slower */
    }
#else
    (void)kv;
#endif
}

void plm_kv_release(plm_kv *kv) {
    plm_afree(kv->k);
    plm_afree(kv->v);
    free(kv->pos);
    free(kv->seq);
    free(kv->tok);
    for (int s = 0; s < PLM_MAX_SEQ; s++) free(kv->cells[s]);
    memset(kv, 0, sizeof(*kv));
}

/* Room for need cells in sequence s's list (contents kept). */
static plm_status reserve_list(plm_kv *kv, int s, int32_t need) {
    if (need <= kv->cap_cells[s]) return PLM_OK;
    int32_t nc = kv->cap_cells[s] ? kv->cap_cells[s] : 64;
    while (nc < need) nc = nc > kv->n_ctx / 2 ? kv->n_ctx : 2 * nc;
    int32_t *nl = realloc(kv->cells[s], (size_t)nc * sizeof(int32_t));
    if (!nl) return plm_fail(PLM_ERR_OOM, "out of memory for the cell list of sequence %d (%d cells)", s, nc);
    kv->cells[s] = nl;
    kv->cap_cells[s] = nc;
    return PLM_OK;
}

static void free_cell(plm_kv *kv, int32_t c) {
    kv->pos[c] = -1;
    kv->seq[c] = 0;
    kv->used--;
    kv->empty_pages = true;
}

#define KV_PAGE 32 /* cells; a multiple of the cache's blocks (PLM_KV_BLOCK) */

static bool page_empty(const plm_kv *kv, int32_t p) {
    const int32_t c1 = PLM_MIN(kv->n_ctx, (p + 1) * KV_PAGE);
    for (int32_t c = p * KV_PAGE; c < c1; c++)
        if (kv->seq[c]) return false;
    return true;
}

/* The cell for sequence s's next token (see the top of the file); *first_free: no free cell below it. A free
 * cell exists. */
static int32_t pick_cell(plm_kv *kv, int s, int32_t *first_free) {
    const int32_t nl = kv->n_cells[s];
    if (nl > 0) {
        const int32_t c = kv->cells[s][nl - 1] + 1;
        if (c < kv->n_ctx && !kv->seq[c]) return c;
    }
    const int32_t n_pages = (kv->n_ctx + KV_PAGE - 1) / KV_PAGE;
    for (int32_t k = 0; k < n_pages && kv->empty_pages; k++) {
        const int32_t p = (kv->page_next + k) % n_pages, c = p * KV_PAGE + nl % PLM_KV_BLOCK;
        if (c < kv->n_ctx && page_empty(kv, p)) {
            kv->page_next = (p + 1) % n_pages;
            return c;
        }
    }
    kv->empty_pages = false;
    while (kv->seq[*first_free]) (*first_free)++;
    return *first_free;
}

/* n_active after cells at the top were freed. */
static void shrink_active(plm_kv *kv) {
    while (kv->n_active > 0 && !kv->seq[kv->n_active - 1]) kv->n_active--;
}

plm_status plm_kv_place(plm_kv *kv, int32_t n, const plm_token *tok, const int32_t *pos, const int32_t *seq,
                        int32_t *cells) {
    if (n > kv->n_ctx - kv->used)
        return plm_fail(PLM_ERR_CONTEXT_FULL, "context full: %d tokens do not fit (%d of %d cells in use)", n, kv->used, kv->n_ctx);
    int32_t add[PLM_MAX_SEQ] = {0};
    for (int32_t i = 0; i < n; i++) add[seq[i]]++;
    for (int s = 0; s < PLM_MAX_SEQ; s++) {
        plm_status st = add[s] ? reserve_list(kv, s, kv->n_cells[s] + add[s]) : PLM_OK;
        if (st) return st; /* only capacities grew */
    }
    int32_t first_free = 0;
    for (int32_t i = 0; i < n; i++) {
        const int s = seq[i];
        const int32_t c = pick_cell(kv, s, &first_free); /* n free cells exist: used + n <= n_ctx */
        kv->pos[c] = pos[i];
        kv->seq[c] = (uint64_t)1 << s;
        kv->tok[c] = tok[i];
        kv->cells[s][kv->n_cells[s]++] = c;
        cells[i] = c;
        if (c + 1 > kv->n_active) kv->n_active = c + 1;
    }
    kv->used += n;
    return PLM_OK;
}

void plm_kv_unplace(plm_kv *kv, int32_t n, const int32_t *cells) {
    /* Each placed cell is the last of its (only) sequence's list, newest last. */
    for (int32_t i = n - 1; i >= 0; i--) {
        const int32_t c = cells[i];
        const int s = __builtin_ctzll(kv->seq[c]);
        kv->n_cells[s]--;
        free_cell(kv, c);
    }
    shrink_active(kv);
}


/* Lists sequence s's cells from the masks, in position order (insertion sort
 * by position: cells mostly come in position order already). */
static plm_status rebuild_list(plm_kv *kv, int s) {
    const uint64_t bit = (uint64_t)1 << s;
    int32_t n = 0;
    for (int32_t c = 0; c < kv->n_active; c++) n += (kv->seq[c] & bit) != 0;
    plm_status st = reserve_list(kv, s, n);
    if (st) return st;
    int32_t *l = kv->cells[s], k = 0;
    for (int32_t c = 0; c < kv->n_active; c++) {
        if (!(kv->seq[c] & bit)) continue;
        int32_t j = k++;
        while (j > 0 && kv->pos[l[j - 1]] > kv->pos[c]) {
            l[j] = l[j - 1];
            j--;
        }
        l[j] = c;
    }
    kv->n_cells[s] = n;
    return PLM_OK;
}

void plm_kv_load_cell(plm_kv *kv, int32_t c, int32_t pos, uint64_t seq, plm_token tok) {
    kv->pos[c] = pos;
    kv->seq[c] = seq;
    kv->tok[c] = tok;
    if (seq && c + 1 > kv->n_active) kv->n_active = c + 1;
}

static void clear_all(plm_kv *kv) {
    for (int32_t c = 0; c < kv->n_ctx; c++) {
        kv->pos[c] = -1;
        kv->seq[c] = 0;
    }
    for (int s = 0; s < PLM_MAX_SEQ; s++) kv->n_cells[s] = 0;
    kv->used = kv->n_active = 0;
    kv->page_next = 0;
    kv->empty_pages = true;
}

plm_status plm_kv_load_end(plm_kv *kv) {
    kv->used = 0;
    kv->empty_pages = true;
    for (int32_t c = 0; c < kv->n_active; c++) {
        if (kv->seq[c]) kv->used++;
        else kv->pos[c] = -1;
    }
    for (int s = 0; s < PLM_MAX_SEQ; s++) {
        plm_status st = rebuild_list(kv, s);
        if (st) {
            clear_all(kv);
            return st;
        }
    }
    return PLM_OK;
}

int32_t plm_kv_n_upto(const plm_kv *kv, int32_t s, int32_t p) {
    const int32_t *l = kv->cells[s];
    int32_t lo = 0, hi = kv->n_cells[s];
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (kv->pos[l[mid]] <= p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int32_t plm_kv_common_prefix(const plm_context *ctx, int32_t seq, const plm_token *toks, int32_t n) {
    const plm_kv *kv = &ctx->kv;
    if (seq < 0 || seq >= PLM_MAX_SEQ) return 0;
    const int32_t *l = kv->cells[seq];
    int32_t k = 0;
    while (k < n && k < kv->n_cells[seq] && kv->pos[l[k]] == k && kv->tok[l[k]] == toks[k]) k++;
    return k;
}

/* ------------------------------------------------------------ public API */

static bool seq_ok(const plm_context *ctx, int32_t s) { return s >= 0 && s < ctx->params.n_seq_max; }

void plm_kv_clear(plm_context *ctx) {
    if (!ctx) return;
    clear_all(&ctx->kv);
}

/* Removes positions [p0, p1) from sequence s (its list and the cells' masks). */
static void seq_remove(plm_kv *kv, int s, int32_t p0, int32_t p1) {
    const uint64_t bit = (uint64_t)1 << s;
    int32_t *l = kv->cells[s], k = 0;
    for (int32_t i = 0; i < kv->n_cells[s]; i++) {
        const int32_t c = l[i];
        if (kv->pos[c] >= p0 && kv->pos[c] < p1) {
            kv->seq[c] &= ~bit;
            if (!kv->seq[c]) free_cell(kv, c);
        } else {
            l[k++] = c;
        }
    }
    kv->n_cells[s] = k;
}

plm_status plm_kv_seq_rm(plm_context *ctx, int32_t seq_id, int32_t p0, int32_t p1) {
    if (!ctx) return plm_fail(PLM_ERR_ARG, "plm_kv_seq_rm: ctx is NULL");
    if (seq_id != -1 && !seq_ok(ctx, seq_id))
        return plm_fail(PLM_ERR_ARG, "sequence id %d out of range [0, %d) (-1 means all)", seq_id, ctx->params.n_seq_max);
    if (p0 < 0) p0 = 0;
    if (p1 < 0) p1 = INT32_MAX;
    plm_kv *kv = &ctx->kv;
    for (int s = 0; s < PLM_MAX_SEQ; s++)
        if (seq_id < 0 || s == seq_id) seq_remove(kv, s, p0, p1);
    shrink_active(kv);
    return PLM_OK;
}

plm_status plm_kv_seq_cp(plm_context *ctx, int32_t src, int32_t dst, int32_t p0, int32_t p1) {
    if (!ctx) return plm_fail(PLM_ERR_ARG, "plm_kv_seq_cp: ctx is NULL");
    if (!seq_ok(ctx, src) || !seq_ok(ctx, dst))
        return plm_fail(PLM_ERR_ARG, "sequence ids %d -> %d out of range [0, %d)", src, dst, ctx->params.n_seq_max);
    if (src == dst) return PLM_OK;
    if (p0 < 0) p0 = 0;
    if (p1 < 0) p1 = INT32_MAX;
    plm_kv *kv = &ctx->kv;
    /* src's cells in [p0, p1) are one stretch of its list */
    const int32_t a = p0 > 0 ? plm_kv_n_upto(kv, src, p0 - 1) : 0;
    const int32_t b = p1 < INT32_MAX ? plm_kv_n_upto(kv, src, p1 - 1) : kv->n_cells[src];
    const int32_t k = b - a;
    plm_status st = reserve_list(kv, dst, kv->n_cells[dst] + k);
    if (st) return st;
    seq_remove(kv, dst, p0, p1); /* replace what dst had there */
    /* dst now has nothing in [p0, p1): the stretch goes between its cells before p0 and from p1 on */
    int32_t *l = kv->cells[dst];
    const int32_t at = p0 > 0 ? plm_kv_n_upto(kv, dst, p0 - 1) : 0;
    memmove(l + at + k, l + at, (size_t)(kv->n_cells[dst] - at) * sizeof(int32_t));
    const uint64_t db = (uint64_t)1 << dst;
    for (int32_t i = 0; i < k; i++) {
        const int32_t c = kv->cells[src][a + i];
        l[at + i] = c;
        kv->seq[c] |= db;
    }
    kv->n_cells[dst] += k;
    shrink_active(kv);
    return PLM_OK;
}

int32_t plm_kv_seq_pos_max(const plm_context *ctx, int32_t seq_id) {
    if (!ctx || !seq_ok(ctx, seq_id)) return -1;
    return plm_kv_pos_max_of(&ctx->kv, seq_id);
}

int32_t plm_kv_used(const plm_context *ctx) { return ctx ? ctx->kv.used : 0; }
