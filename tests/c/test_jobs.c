/*
 * test_jobs.c — background jobs (csrc/jobs.c) on the default model: a job's
 * text, polled piece by piece while it runs, equals plm_generate's for the
 * prompt alone (greedy), for one job and for several sharing a worker or
 * spread over two; polling never waits for a decode; cancel, wait, an error
 * reported at poll (a prompt longer than the context), a runner or a job freed
 * while jobs run (no leak, no hang: run it under ASan), and bad arguments.
 * Under POCKETLM_TEST_QUICK=1 (make test-valgrind) fewer tokens and one worker.
 */
#include "pocketlm.h"
#include "test.h"

#include <time.h>

static plm_model *model;
static int32_t n_short = 12, n_one = 16, max_workers = 2;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_ms(int ms) {
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *prompts[] = {
    "The capital of France is",
    "Once upon a time, in a village by the sea,",
    "<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n",
};

static plm_generate_params greedy(int32_t max_tokens) {
    plm_generate_params gp = plm_generate_default_params();
    gp.max_tokens = max_tokens;
    gp.sampling.temperature = 0;
    return gp;
}

/* The reference: plm_generate on a context of its own. */
static char *alone(const char *prompt, int32_t max_tokens, plm_stop_reason *reason) {
    plm_context_params cp = plm_context_default_params();
    cp.n_ctx = 512;
    cp.n_threads = 1;
    plm_context *ctx = NULL;
    char *out = NULL;
    if (plm_context_create(model, &cp, &ctx)) return NULL;
    plm_generate_params gp = greedy(max_tokens);
    if (plm_generate(ctx, prompt, strlen(prompt), &gp, NULL, NULL, &out, reason)) out = NULL;
    plm_context_free(ctx);
    return out;
}

typedef struct polled {
    char text[8192];
    size_t n;
    plm_stop_reason reason;
    int polls;
    double median_poll_s;
} polled;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Polls until the job ends, appending its pieces. */
static plm_status poll_all(plm_job *job, polled *p) {
    static double times[100000];
    memset(p, 0, sizeof *p);
    for (;;) {
        char *s = NULL;
        size_t n = 0;
        double t0 = now_s();
        plm_status st = plm_job_poll(job, &s, &n, &p->reason);
        if (p->polls < 100000) times[p->polls] = now_s() - t0;
        p->polls++;
        int k = p->polls < 100000 ? p->polls : 100000;
        qsort(times, (size_t)k, sizeof times[0], cmp_double);
        p->median_poll_s = times[k / 2];
        if (st) return st;
        if (p->n + n < sizeof p->text) {
            memcpy(p->text + p->n, s, n);
            p->n += n;
            p->text[p->n] = 0;
        }
        plm_free(s);
        if (p->reason != PLM_STOP_NONE) return PLM_OK;
        sleep_ms(2);
    }
}

static plm_jobs *runner(int32_t n_workers, int32_t n_parallel, int32_t n_ctx) {
    plm_jobs_params jp = plm_jobs_default_params();
    jp.n_workers = n_workers;
    jp.n_parallel = n_parallel;
    jp.n_ctx = n_ctx;
    plm_jobs *J = NULL;
    if (plm_jobs_create(model, &jp, &J)) fprintf(stderr, "  %s\n", plm_last_error());
    return J;
}

static void test_one_job_equals_generate(void) {
    plm_stop_reason want_reason;
    char *want = alone(prompts[0], n_one, &want_reason);
    REQUIRE(want != NULL);
    plm_jobs *J = runner(1, 4, 512);
    REQUIRE(J != NULL);
    plm_generate_params gp = greedy(n_one);
    plm_job *job = NULL;
    CHECK(plm_jobs_submit(J, prompts[0], strlen(prompts[0]), &gp, &job) == PLM_OK);
    polled p;
    CHECK(poll_all(job, &p) == PLM_OK);
    CHECKF(strcmp(want, p.text) == 0, "job %s | alone %s", p.text, want);
    CHECK(p.reason == want_reason);
    CHECK(p.polls > 2); /* it came in pieces, the caller running meanwhile */
    /* The median poll: on a shared machine one poll may be preempted; polls that waited for decodes
     * (tens of ms each) would be most of them. */
    CHECKF(p.median_poll_s < 0.001, "the median poll took %.2f ms", p.median_poll_s * 1e3);
    CHECK(plm_job_done(job));
    CHECK(plm_job_n_generated(job) == n_one);
    /* after the end: empty text, the same reason (the worker is idle: the lock is free) */
    char *s = NULL;
    size_t n = 1;
    plm_stop_reason r = PLM_STOP_NONE;
    CHECK(plm_job_poll(job, &s, &n, &r) == PLM_OK && n == 0 && r == want_reason);
    plm_free(s);
    plm_job_free(job);
    plm_jobs_free(J);
    plm_free(want);
}

static void test_several_jobs_share_and_spread(void) {
    enum { N = 3 };
    char *want[N];
    plm_stop_reason wr[N];
    for (int i = 0; i < N; i++) want[i] = alone(prompts[i], n_short, &wr[i]);
    for (int workers = 1; workers <= max_workers; workers++) {
        plm_jobs *J = runner(workers, 4, 512);
        REQUIRE(J != NULL);
        plm_job *jobs[N] = {0};
        plm_generate_params gp = greedy(n_short);
        for (int i = 0; i < N; i++) CHECK(plm_jobs_submit(J, prompts[i], strlen(prompts[i]), &gp, &jobs[i]) == PLM_OK);
        for (int i = 0; i < N; i++) {
            polled p;
            CHECK(poll_all(jobs[i], &p) == PLM_OK);
            CHECKF(want[i] && strcmp(want[i], p.text) == 0, "workers %d job %d: %s | alone %s", workers, i, p.text,
                   want[i] ? want[i] : "(none)");
            CHECK(p.reason == wr[i]);
            plm_job_free(jobs[i]);
        }
        plm_jobs_free(J);
    }
    for (int i = 0; i < N; i++) plm_free(want[i]);
}

static void test_cancel_wait_and_errors(void) {
    plm_jobs *J = runner(1, 2, 128);
    REQUIRE(J != NULL);
    plm_generate_params gp = greedy(200);
    gp.ignore_eos = true;
    plm_job *job = NULL;
    CHECK(plm_jobs_submit(J, prompts[1], strlen(prompts[1]), &gp, &job) == PLM_OK);
    while (plm_job_n_generated(job) < 2) sleep_ms(2);
    plm_job_cancel(job);
    plm_job_wait(job);
    CHECK(plm_job_done(job));
    polled p;
    CHECK(poll_all(job, &p) == PLM_OK);
    CHECK(p.reason == PLM_STOP_CALLER);
    CHECKF(plm_job_n_generated(job) < 100, "%d tokens after a cancel", (int)plm_job_n_generated(job));
    plm_job_free(job);

    /* A prompt longer than the context fails alone, at poll, naming the problem. */
    char longp[4096] = "";
    for (int i = 0; i < 150; i++) strcat(longp, "word ");
    plm_job *bad = NULL, *good = NULL;
    gp = greedy(4);
    CHECK(plm_jobs_submit(J, longp, strlen(longp), &gp, &bad) == PLM_OK);
    CHECK(plm_jobs_submit(J, prompts[0], strlen(prompts[0]), &gp, &good) == PLM_OK);
    plm_job_wait(bad);
    CHECK(plm_job_done(bad));
    char *s = NULL;
    size_t n = 0;
    plm_stop_reason r = PLM_STOP_NONE;
    plm_status st;
    /* a poll may find the worker holding the lock (the other job runs): nothing then, and again */
    while ((st = plm_job_poll(bad, &s, &n, &r)) == PLM_OK && r == PLM_STOP_NONE) plm_free(s);
    CHECKF(st != PLM_OK && strlen(plm_last_error()) > 10, "status %s: %s", plm_status_str(st), plm_last_error());
    CHECK(s == NULL);
    CHECK(poll_all(good, &p) == PLM_OK && p.reason == PLM_STOP_LENGTH && p.n > 0);
    plm_job_free(bad);
    plm_job_free(good);

    /* Bad arguments. */
    plm_job *none = NULL;
    CHECK(plm_jobs_submit(J, "", 0, NULL, &none) == PLM_ERR_ARG && none == NULL);
    CHECK(plm_jobs_submit(NULL, "x", 1, NULL, &none) == PLM_ERR_ARG);
    CHECK(plm_job_poll(NULL, &s, &n, &r) == PLM_ERR_ARG);
    plm_jobs_params jp = plm_jobs_default_params();
    plm_jobs *J2 = NULL;
    jp.n_workers = 0;
    CHECK(plm_jobs_create(model, &jp, &J2) == PLM_ERR_ARG && J2 == NULL);
    CHECK(strstr(plm_last_error(), "n_workers") != NULL);
    jp = plm_jobs_default_params();
    jp.n_parallel = 1000;
    CHECK(plm_jobs_create(model, &jp, &J2) == PLM_ERR_ARG);
    CHECK(plm_jobs_create(NULL, NULL, &J2) == PLM_ERR_ARG);
    plm_jobs_free(J);
}

/* What a garbage collector does: handles dropped while their jobs run. */
static void test_free_while_running(void) {
    plm_generate_params gp = greedy(300);
    gp.ignore_eos = true;
    /* a job freed while it runs: the worker drops it and goes on with the others */
    plm_jobs *J = runner(1, 4, 512);
    REQUIRE(J != NULL);
    plm_job *a = NULL, *b = NULL;
    CHECK(plm_jobs_submit(J, prompts[0], strlen(prompts[0]), &gp, &a) == PLM_OK);
    plm_generate_params g8 = greedy(8);
    CHECK(plm_jobs_submit(J, prompts[2], strlen(prompts[2]), &g8, &b) == PLM_OK);
    while (plm_job_n_generated(a) < 1) sleep_ms(2);
    plm_job_free(a);
    polled p;
    CHECK(poll_all(b, &p) == PLM_OK && p.n > 0);
    plm_job_free(b);
    /* the runner freed while a job runs (and one is still queued): both end cancelled, stay readable */
    CHECK(plm_jobs_submit(J, prompts[1], strlen(prompts[1]), &gp, &a) == PLM_OK);
    CHECK(plm_jobs_submit(J, prompts[0], strlen(prompts[0]), &gp, &b) == PLM_OK);
    while (plm_job_n_generated(a) < 1) sleep_ms(2);
    double t0 = now_s();
    plm_jobs_free(J);
    CHECKF(now_s() - t0 < 1.0, "freeing the runner took %.2f s", now_s() - t0);
    CHECK(plm_job_done(a) && plm_job_done(b));
    char *s = NULL;
    size_t n = 0;
    plm_stop_reason r = PLM_STOP_NONE;
    CHECK(plm_job_poll(a, &s, &n, &r) == PLM_OK && r == PLM_STOP_CALLER); /* detached: no lock */
    plm_free(s);
    plm_job_free(a);
    plm_job_free(b);
    /* and a runner freed with a running job never polled nor freed by its caller first */
    J = runner(2, 2, 256);
    REQUIRE(J != NULL);
    CHECK(plm_jobs_submit(J, prompts[0], strlen(prompts[0]), &gp, &a) == PLM_OK);
    plm_job_free(a);
    plm_jobs_free(J);
}

int main(void) {
    const char *quick = getenv("POCKETLM_TEST_QUICK");
    if (quick && *quick && strcmp(quick, "0") != 0) {
        n_short = 3;
        n_one = 6;
        max_workers = 1;
    }
    if (plm_model_load(NULL, NULL, &model)) {
        fprintf(stderr, "cannot load the default model: %s\n", plm_last_error());
        return 1;
    }
    RUN(test_one_job_equals_generate);
    RUN(test_several_jobs_share_and_spread);
    RUN(test_cancel_wait_and_errors);
    RUN(test_free_while_running);
    plm_model_free(model);
    return TEST_SUMMARY();
}
