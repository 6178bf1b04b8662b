/*
 * test_concurrency.c — the thread-safety contract of pocketlm.h, on the default
 * model: one plm_model shared by 8 threads, each with its own context, gives
 * bit for bit what the same work gives run one job after another; tokenizing,
 * detokenizing and reading metadata from 8 threads at once give the sequential
 * results; plm_last_error() is per thread.
 *
 * The threaded runs come first, so that the one-time kernel choice and the
 * first contexts are raced too. Under POCKETLM_TEST_QUICK=1 (make
 * test-valgrind) the prompts are cut to 6 tokens, 2 are generated, the
 * plm_generate half is left out and the tokenizer work is repeated 4 times; the
 * threads stay 8.
 */
#include "pocketlm.h"
#include "test.h"

#include <pthread.h>
#include <sched.h>

#define N_JOBS 8
#define MAX_PROMPT 128
#define MAX_GEN 16

static plm_model *model;
static int32_t n_vocab;
static int n_gen = MAX_GEN, n_rounds = 40, max_prompt = MAX_PROMPT;
static bool with_generate = true;

static const char *const prompts[N_JOBS] = {
    "The capital of France is",
    "<|im_start|>user\nWrite a haiku about rain.<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village by the sea,",
    "Les ordinateurs sont",
    "1, 2, 3, 4, 5,",
    "The three primary colors are",
    "Q: What is the boiling point of water?\nA:",
};

/* One job: prefill a prompt, keep the logits of its last position, then a
 * greedy continuation by hand (argmax, decode one token) and the same through
 * plm_generate (the sampler and the generator's token loop). */
typedef struct job {
    int index;
    int32_t n_threads;
    pthread_barrier_t *start;
    plm_status st;
    char where[160];
    float *logits;            /* (n_vocab) of the last prompt token */
    plm_token gen[MAX_GEN];   /* the greedy loop's tokens */
    char *text;               /* plm_generate's greedy text (malloc'd by pocketlm) */
} job;

static int argmax(const float *l, int32_t n) {
    int b = 0;
    for (int32_t i = 1; i < n; i++) if (l[i] > l[b]) b = i;
    return b;
}

static plm_status fail_at(job *j, const char *where, plm_status st) {
    snprintf(j->where, sizeof j->where, "%s: %s", where, plm_last_error());
    return j->st = st;
}

static void *run_job(void *arg) {
    job *j = arg;
    if (j->start) pthread_barrier_wait(j->start);
    plm_context_params p = plm_context_default_params();
    p.n_ctx = 256;
    p.n_threads = j->n_threads;
    plm_context *ctx = NULL;
    plm_status st = plm_context_create(model, &p, &ctx);
    if (st) return (void *)(intptr_t)fail_at(j, "context", st);
    const char *pr = prompts[j->index];
    plm_token toks[MAX_PROMPT];
    int32_t n = 0;
    if ((st = plm_tokenize(model, pr, strlen(pr), true, true, toks, MAX_PROMPT, &n))) goto out;
    n = n < max_prompt ? n : max_prompt;
    plm_batch b = {.n_tokens = n, .token = toks};
    if ((st = plm_decode(ctx, &b))) goto out;
    memcpy(j->logits, plm_context_logits(ctx, -1), (size_t)n_vocab * sizeof(float));
    for (int i = 0; i < n_gen; i++) {
        plm_token t = argmax(plm_context_logits(ctx, -1), n_vocab);
        j->gen[i] = t;
        plm_batch one = {.n_tokens = 1, .token = &t};
        if ((st = plm_decode(ctx, &one))) goto out;
    }
    if (!with_generate) goto out;
    plm_kv_clear(ctx);
    plm_generate_params gp = plm_generate_default_params();
    gp.sampling.temperature = 0;
    gp.max_tokens = n_gen;
    gp.ignore_eos = true;
    plm_stop_reason r;
    st = plm_generate(ctx, pr, strlen(pr), &gp, NULL, NULL, &j->text, &r);
out:
    if (st) fail_at(j, prompts[j->index], st);
    plm_context_free(ctx);
    return NULL;
}

static void jobs_init(job *jobs) {
    for (int i = 0; i < N_JOBS; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].index = i;
        jobs[i].n_threads = 1 + i % 2; /* half the contexts run a pool of their own */
        jobs[i].logits = malloc((size_t)n_vocab * sizeof(float));
    }
}

static void jobs_free(job *jobs) {
    for (int i = 0; i < N_JOBS; i++) {
        free(jobs[i].logits);
        plm_free(jobs[i].text);
    }
}

static void test_eight_contexts_on_one_model_equal_sequential(void) {
    static job par[N_JOBS], seq[N_JOBS];
    jobs_init(par);
    jobs_init(seq);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N_JOBS);
    pthread_t th[N_JOBS];
    for (int i = 0; i < N_JOBS; i++) {
        par[i].start = &start;
        REQUIRE(pthread_create(&th[i], NULL, run_job, &par[i]) == 0);
    }
    for (int i = 0; i < N_JOBS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < N_JOBS; i++) run_job(&seq[i]);

    for (int i = 0; i < N_JOBS; i++) {
        CHECKF(par[i].st == PLM_OK && seq[i].st == PLM_OK, "job %d: %s %s", i, par[i].where, seq[i].where);
        if (par[i].st || seq[i].st) continue;
        CHECKF(memcmp(par[i].logits, seq[i].logits, (size_t)n_vocab * sizeof(float)) == 0, "job %d: logits differ", i);
        CHECKF(memcmp(par[i].gen, seq[i].gen, (size_t)n_gen * sizeof(plm_token)) == 0, "job %d: greedy tokens differ", i);
        if (with_generate)
            CHECKF(par[i].text && seq[i].text && strcmp(par[i].text, seq[i].text) == 0, "job %d: \"%s\" vs \"%s\"", i,
                   par[i].text ? par[i].text : "(null)", seq[i].text ? seq[i].text : "(null)");
        /* each thread did its own prompt: no two jobs share their logits */
        for (int k = 0; k < i; k++)
            CHECKF(memcmp(par[i].logits, par[k].logits, (size_t)n_vocab * sizeof(float)) != 0, "jobs %d and %d", k, i);
    }
    /* and the results are the model's, not noise */
    CHECKF(argmax(seq[0].logits, n_vocab) == 7042, "top token after \"%s\": %d", prompts[0], argmax(seq[0].logits, n_vocab));
    fprintf(stderr, "  \"%s\" ->%s\n", prompts[0], seq[0].text ? seq[0].text : "");
    jobs_free(par);
    jobs_free(seq);
}

/* ------------------------------------------------------------ tokenizer */

static const char *const texts[N_JOBS] = {
    "Hello world! How are you today?",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n",
    "naïve café — 東京 🌸 emoji 👩‍💻",
    "    indented\n\n\tcode();  // comment",
    "1234567890 3.14159 -42 0x1F",
    "invalid \xc3 UTF-8 \x80 cut \xe2\x82",
    "The quick brown fox jumps over the lazy dog. The quick brown fox.",
    "",
};

typedef struct tok_result {
    plm_token toks[256];
    int32_t n;
    char text[1024];
    size_t n_text;
    char meta[64];
} tok_result;

typedef struct tok_job {
    int index;
    pthread_barrier_t *start;
    const tok_result *want; /* NULL: fill got once */
    tok_result got;
    int mismatches;
    bool error_kept;
} tok_job;

static bool tok_once(int index, tok_result *r) {
    const char *t = texts[index];
    if (plm_tokenize(model, t, strlen(t), false, true, r->toks, 256, &r->n)) return false;
    if (plm_detokenize(model, r->toks, r->n, true, r->text, sizeof r->text, &r->n_text)) return false;
    for (int32_t i = 0; i < r->n; i++) {
        char piece[64];
        size_t k;
        if (plm_token_to_piece(model, r->toks[i], true, piece, sizeof piece, &k)) return false;
    }
    plm_model_info in;
    if (plm_model_get_info(model, &in) || in.n_vocab != n_vocab) return false;
    return plm_model_meta_str(model, "general.architecture", r->meta, sizeof r->meta) == PLM_OK;
}

static void *run_tok_job(void *arg) {
    tok_job *j = arg;
    pthread_barrier_wait(j->start);
    j->error_kept = true;
    for (int round = 0; round < n_rounds; round++) {
        tok_result r;
        memset(&r, 0, sizeof r);
        const bool ok = tok_once(j->index, &r);
        if (!ok || r.n != j->want->n || memcmp(r.toks, j->want->toks, (size_t)r.n * sizeof(plm_token)) != 0 ||
            r.n_text != j->want->n_text || memcmp(r.text, j->want->text, r.n_text) != 0 || strcmp(r.meta, j->want->meta) != 0)
            j->mismatches++;
        /* this thread's own error, while the others make theirs */
        char piece[8];
        size_t k;
        const plm_token bad = n_vocab + 1000 * j->index + round;
        plm_token_to_piece(model, bad, false, piece, sizeof piece, &k);
        sched_yield();
        char want_err[32];
        snprintf(want_err, sizeof want_err, "token %d ", bad);
        if (!strstr(plm_last_error(), want_err)) j->error_kept = false;
    }
    return NULL;
}

static void test_eight_threads_tokenize_concurrently(void) {
    static tok_result want[N_JOBS];
    static tok_job jobs[N_JOBS];
    for (int i = 0; i < N_JOBS; i++) {
        memset(&want[i], 0, sizeof want[i]);
        REQUIRE(tok_once(i, &want[i]));
    }
    /* the texts come back (special tokens, and invalid bytes the vocabulary has a token for), and are not all alike */
    CHECK(want[1].n > 0 && want[1].toks[0] == 1); /* <|im_start|> */
    CHECK(want[5].n_text == strlen(texts[5]) && memcmp(want[5].text, texts[5], want[5].n_text) == 0);
    CHECK(want[7].n == 0 && strcmp(want[0].meta, "llama") == 0);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N_JOBS);
    pthread_t th[N_JOBS];
    for (int i = 0; i < N_JOBS; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].index = i;
        jobs[i].start = &start;
        jobs[i].want = &want[i];
        REQUIRE(pthread_create(&th[i], NULL, run_tok_job, &jobs[i]) == 0);
    }
    for (int i = 0; i < N_JOBS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < N_JOBS; i++) {
        CHECKF(jobs[i].mismatches == 0, "thread %d: %d of %d rounds differ from the sequential result", i, jobs[i].mismatches, n_rounds);
        CHECKF(jobs[i].error_kept, "thread %d: plm_last_error() lost its own message", i);
    }
}

int main(void) {
    if (t_quick()) {
        n_gen = 2;
        n_rounds = 4;
        max_prompt = 6;
        with_generate = false;
    }
    if (plm_model_load(NULL, NULL, &model)) {
        fprintf(stderr, "cannot load the default model: %s\n", plm_last_error());
        printf("0 passed, 1 failed\n");
        return 1;
    }
    plm_model_info in;
    plm_model_get_info(model, &in);
    n_vocab = in.n_vocab;
    RUN(test_eight_contexts_on_one_model_equal_sequential);
    RUN(test_eight_threads_tokenize_concurrently);
    plm_model_free(model);
    return TEST_SUMMARY();
}
