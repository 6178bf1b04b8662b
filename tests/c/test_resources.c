/*
 * test_resources.c — long runs do not leak: 1,000 context create/free cycles,
 * each with a decode (and a sampler, an error path, now and then a generation
 * and a state save/load), and 100 model load/free cycles, with the resident set
 * (/proc/self/statm), the bytes malloc holds, the threads and the open file
 * descriptors measured after a warm-up and at the end.
 *
 * The context cycles run over the tiny model of every family (tests/data/tiny),
 * so that each family's forward pass runs, with every 20th on the default model;
 * the model cycles load the tiny models and, every 10th, the default model (two
 * of them read into memory instead of mapped). Tiny models keep this to seconds:
 * a decode of the default model reads its 85 MB of weights.
 *
 * Bounds, stated once: the resident set may grow by 4 MiB over a run (the
 * allocator's arenas settle, pages of the binary are touched late); malloc's
 * bytes in use by 64 KiB (a leak of one small struct per cycle is 1000 x that);
 * threads and file descriptors come back to their counts exactly. Where malloc
 * is not glibc's (ASan, valgrind: freed memory waits in a quarantine, and they
 * report leaks themselves) only the thread and descriptor counts are asserted.
 * Under POCKETLM_TEST_QUICK=1 (make test-valgrind) the cycles are 100 and 10.
 */
#include "pocketlm.h"
#include "test.h"

#include <dirent.h>
#include <malloc.h>
#include <unistd.h>

static const double MAX_RSS_GROWTH = 4.0 * 1024 * 1024;
static const double MAX_HEAP_GROWTH = 64.0 * 1024;

#define N_TINY 7
static const char *const families[N_TINY] = {"llama", "gemma2", "gemma3", "mistral", "phi3", "qwen2", "qwen3"};

static plm_model *tiny[N_TINY], *big;
static int n_ctx_cycles = 1000, n_model_cycles = 100;

/* ------------------------------------------------------------ measures */

typedef struct usage {
    double rss;  /* bytes resident */
    double heap; /* bytes malloc has handed out (0 when not glibc's malloc) */
    int threads, fds;
} usage;

static usage measure(void) {
    usage u = {0, 0, -1, -1};
    /* Freed memory glibc keeps for reuse is not a leak, but sits in the RSS
     * (up to 9 MiB here, coming and going with the order of frees): hand it back first. */
    malloc_trim(0);
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = 0;
        fclose(f);
    }
    u.rss = (double)resident * (double)sysconf(_SC_PAGE_SIZE);
    struct mallinfo2 mi = mallinfo2();
    u.heap = (double)(mi.uordblks + mi.hblkhd);
    f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "Threads: %d", &u.threads) == 1) break;
        fclose(f);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        u.fds = 0;
        for (struct dirent *e; (e = readdir(d));) u.fds += e->d_name[0] != '.';
        closedir(d);
    }
    return u;
}

static void report(const char *what, int cycles, usage a, usage b) {
    fprintf(stderr, "  %d %s: RSS %.1f -> %.1f MiB (%+.0f KiB), malloc'd %.1f -> %.1f MiB (%+.0f KiB), threads %d -> %d, fds %d -> %d\n",
            cycles, what, a.rss / 1048576, b.rss / 1048576, (b.rss - a.rss) / 1024, a.heap / 1048576, b.heap / 1048576,
            (b.heap - a.heap) / 1024, a.threads, b.threads, a.fds, b.fds);
}

static void check_growth(usage a, usage b) {
    CHECK(a.threads > 0 && b.threads == a.threads);
    CHECK(a.fds > 0 && b.fds == a.fds);
    if (a.heap == 0) {
        /* ASan or valgrind replaced malloc: freed memory sits in their quarantine
         * (RSS grows by design) and they report leaks themselves, at exit */
        fprintf(stderr, "  (malloc is not glibc's: memory bounds left to the sanitizer)\n");
        return;
    }
    CHECKF(b.rss - a.rss < MAX_RSS_GROWTH, "RSS grew by %.0f KiB", (b.rss - a.rss) / 1024);
    CHECKF(b.heap - a.heap < MAX_HEAP_GROWTH, "malloc'd bytes grew by %.0f", b.heap - a.heap);
}

/* ------------------------------------------------------------ cycles */

/* One context's life on m: create, decode, sample; a refused decode; every 5th
 * cycle a short generation, every 10th a state saved and loaded back. */
static bool context_cycle(plm_model *m, int i) {
    plm_model_info in;
    if (plm_model_get_info(m, &in)) return false;
    plm_context_params p = plm_context_default_params();
    p.n_ctx = 32;
    p.n_threads = 1 + i % 2;
    plm_context *ctx = NULL;
    if (plm_context_create(m, &p, &ctx)) return false;
    bool ok = false;
    plm_sampler *smp = NULL;
    void *state = NULL;
    const bool is_big = m == big;
    plm_token toks[4] = {1 + i % 7, 5, 9, 13};
    plm_batch b = {.n_tokens = is_big ? 1 : 4, .token = toks};
    if (plm_decode(ctx, &b)) goto out;
    plm_sampler_params sp = plm_sampler_default_params();
    sp.seed = (uint64_t)i;
    plm_token t;
    if (plm_sampler_create(&sp, in.n_vocab, &smp) || plm_sampler_sample(smp, ctx, -1, &t)) goto out;
    plm_sampler_accept(smp, t);
    plm_token bad = in.n_vocab;
    plm_batch bb = {.n_tokens = 1, .token = &bad};
    if (plm_decode(ctx, &bb) != PLM_ERR_ARG) goto out;
    if (!is_big && i % 5 == 0) {
        plm_generate_params gp = plm_generate_default_params();
        gp.max_tokens = 3;
        gp.ignore_eos = true;
        const char *stop[1] = {"zz"};
        gp.stop = stop;
        gp.n_stop = 1;
        char *text = NULL;
        plm_stop_reason r;
        if (plm_generate(ctx, "ab", 2, &gp, NULL, NULL, &text, &r)) goto out;
        plm_free(text);
    }
    if (!is_big && i % 10 == 0) {
        size_t n = plm_context_state_size(ctx), got = 0;
        state = malloc(n);
        if (!state || plm_context_state_save(ctx, state, n, &got) || plm_context_state_load(ctx, state, got)) goto out;
    }
    ok = true;
out:
    if (!ok) fprintf(stderr, "  cycle %d: %s\n", i, plm_last_error());
    free(state);
    plm_sampler_free(smp);
    plm_context_free(ctx);
    return ok;
}

static plm_model *model_at(int i) { return i % 20 == 19 ? big : tiny[i % N_TINY]; }

static void test_context_cycles(void) {
    int failed = 0;
    for (int i = 0; i < 2 * N_TINY + 2; i++) failed += !context_cycle(i < 2 * N_TINY ? tiny[i % N_TINY] : big, i); /* warm-up */
    const usage a = measure();
    for (int i = 0; i < n_ctx_cycles; i++) failed += !context_cycle(model_at(i), i);
    const usage b = measure();
    report("context cycles", n_ctx_cycles, a, b);
    CHECKF(failed == 0, "%d cycles failed", failed);
    check_growth(a, b);
}

/* One model's life: load, tokenize and detokenize, a context, free. */
static bool model_cycle(int i) {
    char path[128];
    plm_model_params mp = plm_model_default_params();
    const bool is_big = i % 10 == 9;
    if (is_big) {
        if (plm_default_model_path(path, sizeof path)) return false;
        mp.use_mmap = !(i == 9 || i == 59); /* the file read into malloc'd memory, twice */
    } else {
        snprintf(path, sizeof path, DATA("tiny/%s.gguf"), families[i % N_TINY]);
    }
    plm_model *m = NULL;
    if (plm_model_load(path, &mp, &m)) {
        fprintf(stderr, "  load %s: %s\n", path, plm_last_error());
        return false;
    }
    plm_token toks[32];
    int32_t n = 0;
    char text[128];
    size_t k = 0;
    bool ok = plm_tokenize(m, "Hello, world", 12, true, true, toks, 32, &n) == PLM_OK &&
              plm_detokenize(m, toks, n, false, text, sizeof text, &k) == PLM_OK;
    plm_context_params p = plm_context_default_params();
    p.n_ctx = 16;
    p.n_threads = 1;
    plm_context *ctx = NULL;
    ok = ok && plm_context_create(m, &p, &ctx) == PLM_OK;
    plm_context_free(ctx);
    /* a file that is not a model, on the way: its error path frees what it took */
    plm_model *none = NULL;
    ok = ok && plm_model_load(DATA("tiny/llama.txt"), NULL, &none) == PLM_ERR_FORMAT && none == NULL;
    plm_model_free(m);
    return ok;
}

static void test_model_cycles(void) {
    int failed = 0;
    for (int i = 0; i < N_TINY; i++) failed += !model_cycle(i); /* warm-up */
    failed += !model_cycle(9);
    const usage a = measure();
    for (int i = 0; i < n_model_cycles; i++) failed += !model_cycle(i);
    const usage b = measure();
    report("model cycles", n_model_cycles, a, b);
    CHECKF(failed == 0, "%d cycles failed", failed);
    check_growth(a, b);
}

int main(void) {
    if (t_quick()) {
        n_ctx_cycles = 100;
        n_model_cycles = 10;
    }
    if (plm_model_load(NULL, NULL, &big)) {
        fprintf(stderr, "cannot load the default model: %s\n", plm_last_error());
        printf("0 passed, 1 failed\n");
        return 1;
    }
    for (int i = 0; i < N_TINY; i++) {
        char path[128];
        snprintf(path, sizeof path, DATA("tiny/%s.gguf"), families[i]);
        if (plm_model_load(path, NULL, &tiny[i])) {
            fprintf(stderr, "cannot load %s: %s\n", path, plm_last_error());
            printf("0 passed, 1 failed\n");
            return 1;
        }
    }
    RUN(test_context_cycles);
    RUN(test_model_cycles);
    for (int i = 0; i < N_TINY; i++) plm_model_free(tiny[i]);
    plm_model_free(big);
    return TEST_SUMMARY();
}
