/*
 * jobs.c — background jobs: generations that run on worker threads while the
 * caller (a game's frame loop, a UI thread) only ever polls.
 *
 * Owns plm_jobs (a runner over one model: a few worker threads, each with its
 * own context and one batch generator) and plm_job (one generation submitted
 * to it). A job is handed to the worker with the fewest live jobs; the worker
 * submits it to its batch generator (so jobs on one worker share each decode,
 * and the cells of a common prompt prefix) and steps that generator, copying
 * each job's new text into the job under the runner's lock. The caller's side
 * (poll, cancel, wait) takes that lock only to copy text or set a flag: it
 * never waits for a decode. The model, tokenizer and sampler work is that of
 * batch.c; this file adds the threads, the queue and the hand-over. Nothing
 * here calls back into the caller: a binding's interpreter is never entered
 * from a worker thread.
 */
#include "internal.h"
#include "pocketlm.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Ended requests the batch generator keeps before an idle worker replaces it
 * (a long-running game submits jobs without end). */
#define JOBS_RECYCLE_AFTER 64

typedef struct worker worker;

struct plm_job {
    plm_jobs *owner;         /* NULL once the runner is freed */
    worker *w;
    int refs;                /* the caller's and the worker's; under owner->mu */
    /* The request, until the worker submits it. */
    char *prompt;
    size_t prompt_len;
    plm_generate_params p;   /* p.stop and p.sampling.logit_bias point into the copies below */
    char **stop;
    plm_logit_bias *bias;
    int32_t id;              /* in w's batch generator; -1 until submitted (worker-only) */
    bool cancel;             /* asked by the caller */
    bool cancel_sent;        /* worker-only */
    /* What the caller reads (under owner->mu). */
    char *text;
    size_t n_text, cap_text, n_taken;
    bool ended;
    plm_stop_reason reason;
    plm_status status;
    char *error;             /* the message of a failed job (malloc'd) */
    int32_t n_prompt, n_generated;
};

struct worker {
    plm_jobs *owner;
    pthread_t thread;
    bool started;
    plm_context *ctx;
    plm_batch_gen *bg;
    plm_job **jobs;          /* assigned and not yet released by this worker (under owner->mu) */
    int32_t n_jobs, cap_jobs;
    int32_t n_live;          /* of which not ended */
};

struct plm_jobs {
    pthread_mutex_t mu;
    pthread_cond_t work;     /* workers wait for jobs */
    pthread_cond_t done;     /* plm_job_wait waits for an ending */
    bool stop;
    plm_jobs_params params;
    plm_batch_gen_params bgp;
    worker *w;
    int32_t n_workers;
};

plm_jobs_params plm_jobs_default_params(void) {
    plm_jobs_params p;
    memset(&p, 0, sizeof p);
    p.n_workers = 1;
    p.n_threads = 1;
    p.n_ctx = 0;
    p.n_parallel = 4;
    p.nice = 10;
    return p;
}

static void job_free_now(plm_job *j) {
    if (!j) return;
    free(j->prompt);
    if (j->stop)
        for (int32_t i = 0; i < j->p.n_stop; i++) free(j->stop[i]);
    free(j->stop);
    free(j->bias);
    free(j->text);
    free(j->error);
    free(j);
}

/* Drops one reference (owner->mu held, or no owner). */
static void job_unref(plm_job *j) {
    if (--j->refs == 0) job_free_now(j);
}

/* Ends j (mu held): reason, or a failure with its message. */
static void job_end(plm_job *j, plm_stop_reason reason, plm_status st, const char *msg) {
    if (j->ended) return;
    j->ended = true;
    j->reason = st == PLM_OK ? reason : PLM_STOP_NONE;
    j->status = st;
    if (st != PLM_OK) j->error = strdup(msg && *msg ? msg : plm_status_str(st));
    j->w->n_live--;
    pthread_cond_broadcast(&j->owner->done);
}

static bool job_append(plm_job *j, const char *s, size_t n) {
    if (n == 0) return true;
    if (j->n_text + n + 1 > j->cap_text) {
        size_t cap = j->cap_text ? j->cap_text : 256;
        while (cap < j->n_text + n + 1) cap *= 2;
        char *t = realloc(j->text, cap);
        if (!t) return false;
        j->text = t;
        j->cap_text = cap;
    }
    memcpy(j->text + j->n_text, s, n);
    j->n_text += n;
    j->text[j->n_text] = '\0';
    return true;
}

static int worker_abort(void *user) {
    worker *w = user;
    /* A relaxed read is enough: a stale false costs one more layer. */
    return __atomic_load_n(&w->owner->stop, __ATOMIC_RELAXED);
}

/* After a step (mu held): hands each submitted job its new text and, if it
 * ended, its reason or error; releases the jobs this worker is done with. */
static void worker_collect(worker *w, plm_status step_st, const char *step_msg) {
    for (int32_t k = 0; k < w->n_jobs; k++) {
        plm_job *j = w->jobs[k];
        if (j->ended || j->id < 0) continue;
        const char *t = NULL;
        size_t n = 0;
        if (plm_batch_gen_take(w->bg, j->id, &t, &n) == PLM_OK && !job_append(j, t, n)) {
            job_end(j, PLM_STOP_NONE, PLM_ERR_OOM, "out of memory for a job's text");
            plm_batch_gen_cancel(w->bg, j->id);
            continue;
        }
        plm_batch_result r;
        if (plm_batch_gen_result(w->bg, j->id, &r) != PLM_OK) continue;
        j->n_prompt = r.n_prompt;
        j->n_generated = r.n_generated;
        if (r.status != PLM_OK) job_end(j, PLM_STOP_NONE, r.status, r.error);
        else if (r.reason != PLM_STOP_NONE) job_end(j, r.reason, PLM_OK, NULL);
        else if (step_st != PLM_OK) {
            job_end(j, PLM_STOP_NONE, step_st, step_msg);
            plm_batch_gen_cancel(w->bg, j->id);
        }
    }
    int32_t keep = 0;
    for (int32_t k = 0; k < w->n_jobs; k++) {
        plm_job *j = w->jobs[k];
        if (j->ended) job_unref(j);
        else w->jobs[keep++] = j;
    }
    w->n_jobs = keep;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    plm_jobs *J = w->owner;
    /* Below the caller's priority, so that the frame loop wins when both want a core. Linux keeps a nice
     * value per thread; elsewhere (or if refused) this does nothing. */
    if (J->params.nice > 0) {
#ifdef SYS_gettid
        id_t tid = (id_t)syscall(SYS_gettid);
        (void)setpriority(PRIO_PROCESS, tid, getpriority(PRIO_PROCESS, tid) + J->params.nice);
#endif
    }
    plm_job **sub = NULL;
    int32_t cap_sub = 0;
    char msg[512];
    pthread_mutex_lock(&J->mu);
    while (!J->stop) {
        /* What to submit and what to cancel, decided under the lock; done outside it. */
        int32_t n_sub = 0;
        bool cancels = false;
        for (int32_t k = 0; k < w->n_jobs; k++) {
            plm_job *j = w->jobs[k];
            if (j->ended) continue;
            if (j->cancel && j->id < 0) {
                job_end(j, PLM_STOP_CALLER, PLM_OK, NULL);
            } else if (j->id < 0) {
                if (n_sub == cap_sub) {
                    int32_t cap = cap_sub ? 2 * cap_sub : 8;
                    plm_job **s = realloc(sub, (size_t)cap * sizeof *s);
                    if (!s) {
                        job_end(j, PLM_STOP_NONE, PLM_ERR_OOM, "out of memory queueing a job");
                        continue;
                    }
                    sub = s;
                    cap_sub = cap;
                }
                sub[n_sub++] = j;
            } else if (j->cancel && !j->cancel_sent) {
                cancels = true;
            }
        }
        if (w->n_live == 0) {
            worker_collect(w, PLM_OK, NULL);
            plm_batch_gen *fresh = NULL;
            /* Idle: the old generator's sequences are empty, so the new one may take them before it goes
             * (if it cannot be made, the old one stays). */
            if (plm_batch_gen_n_requests(w->bg) >= JOBS_RECYCLE_AFTER &&
                plm_batch_gen_create(w->ctx, &J->bgp, &fresh) == PLM_OK) {
                plm_batch_gen_free(w->bg);
                w->bg = fresh;
            }
            pthread_cond_wait(&J->work, &J->mu);
            continue;
        }
        pthread_mutex_unlock(&J->mu);

        for (int32_t k = 0; k < n_sub; k++) {
            plm_job *j = sub[k];
            int32_t id = -1;
            plm_status st = plm_batch_gen_submit(w->bg, j->prompt, j->prompt_len, &j->p, &id);
            if (st != PLM_OK) {
                snprintf(msg, sizeof msg, "%s", plm_last_error());
                pthread_mutex_lock(&J->mu);
                job_end(j, PLM_STOP_NONE, st, msg);
                pthread_mutex_unlock(&J->mu);
            } else {
                j->id = id;
            }
        }
        if (cancels) {
            pthread_mutex_lock(&J->mu);
            for (int32_t k = 0; k < w->n_jobs; k++) {
                plm_job *j = w->jobs[k];
                if (j->cancel && !j->cancel_sent && j->id >= 0) {
                    plm_batch_gen_cancel(w->bg, j->id);
                    j->cancel_sent = true;
                }
            }
            pthread_mutex_unlock(&J->mu);
        }
        int32_t n_left = 0;
        plm_status st = PLM_OK;
        if (plm_batch_gen_n_left(w->bg) > 0) st = plm_batch_gen_step(w->bg, &n_left);
        if (st != PLM_OK) snprintf(msg, sizeof msg, "%s", plm_last_error());

        pthread_mutex_lock(&J->mu);
        if (J->stop) break;
        worker_collect(w, st, msg);
    }
    pthread_mutex_unlock(&J->mu);
    free(sub);
    return NULL;
}

static void jobs_stop_and_join(plm_jobs *J) {
    pthread_mutex_lock(&J->mu);
    __atomic_store_n(&J->stop, true, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&J->work);
    pthread_mutex_unlock(&J->mu);
    for (int32_t i = 0; i < J->n_workers; i++)
        if (J->w[i].started) pthread_join(J->w[i].thread, NULL);
}

void plm_jobs_free(plm_jobs *J) {
    if (!J) return;
    jobs_stop_and_join(J);
    for (int32_t i = 0; i < J->n_workers; i++) {
        worker *w = &J->w[i];
        for (int32_t k = 0; k < w->n_jobs; k++) {
            plm_job *j = w->jobs[k];
            if (!j->ended) {
                j->ended = true;
                j->reason = PLM_STOP_CALLER;
            }
            j->owner = NULL;
            job_unref(j);
        }
        free(w->jobs);
        plm_batch_gen_free(w->bg);
        plm_context_free(w->ctx);
    }
    free(J->w);
    pthread_cond_destroy(&J->work);
    pthread_cond_destroy(&J->done);
    pthread_mutex_destroy(&J->mu);
    free(J);
}

plm_status plm_jobs_create(plm_model *model, const plm_jobs_params *params, plm_jobs **out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_jobs_create: out is NULL");
    *out = NULL;
    if (!model) return plm_fail(PLM_ERR_ARG, "plm_jobs_create: model is NULL");
    plm_jobs_params p = params ? *params : plm_jobs_default_params();
    if (p.n_workers < 1 || p.n_workers > 64)
        return plm_fail(PLM_ERR_ARG, "jobs: n_workers must be in [1, 64], got %d", (int)p.n_workers);
    if (p.n_threads < 1 || p.n_threads > PLM_N_THREADS_MAX)
        return plm_fail(PLM_ERR_ARG, "jobs: n_threads must be in [1, %d], got %d", PLM_N_THREADS_MAX, (int)p.n_threads);
    if (p.n_parallel < 1 || p.n_parallel > PLM_N_SEQ_MAX)
        return plm_fail(PLM_ERR_ARG, "jobs: n_parallel must be in [1, %d], got %d", PLM_N_SEQ_MAX, (int)p.n_parallel);
    if (p.n_ctx < 0) return plm_fail(PLM_ERR_ARG, "jobs: n_ctx must be >= 0, got %d", (int)p.n_ctx);
    if (p.nice < 0 || p.nice > 19) return plm_fail(PLM_ERR_ARG, "jobs: nice must be in [0, 19], got %d", (int)p.nice);

    plm_jobs *J = calloc(1, sizeof *J);
    if (!J) return plm_fail(PLM_ERR_OOM, "out of memory creating a job runner");
    J->w = calloc((size_t)p.n_workers, sizeof *J->w);
    if (!J->w) {
        free(J);
        return plm_fail(PLM_ERR_OOM, "out of memory creating a job runner");
    }
    pthread_mutex_init(&J->mu, NULL);
    pthread_cond_init(&J->work, NULL);
    pthread_cond_init(&J->done, NULL);
    J->params = p;
    J->bgp = plm_batch_gen_default_params();
    J->bgp.n_parallel = p.n_parallel;
    J->n_workers = p.n_workers;

    plm_context_params cp = plm_context_default_params();
    cp.n_ctx = p.n_ctx;
    cp.n_threads = p.n_threads;
    cp.n_seq_max = p.n_parallel;
    plm_status st = PLM_OK;
    for (int32_t i = 0; i < p.n_workers && st == PLM_OK; i++) {
        worker *w = &J->w[i];
        w->owner = J;
        st = plm_context_create(model, &cp, &w->ctx);
        if (st == PLM_OK) st = plm_batch_gen_create(w->ctx, &J->bgp, &w->bg);
        if (st == PLM_OK) {
            plm_context_set_abort_callback(w->ctx, worker_abort, w);
            if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
                st = plm_fail(PLM_ERR_OOM, "jobs: could not start worker thread %d", (int)i);
            else
                w->started = true;
        }
    }
    if (st != PLM_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", plm_last_error());
        plm_jobs_free(J);
        return plm_fail(st, "%s", msg);
    }
    *out = J;
    return PLM_OK;
}

/* Copies what the worker needs from the caller's request: the prompt, the stop
 * strings and the logit bias (the caller's memory may be gone by the time the
 * worker submits it). */
static plm_status job_copy_request(plm_job *j, const char *prompt, size_t len, const plm_generate_params *params) {
    j->p = params ? *params : plm_generate_default_params();
    if (j->p.grammar) return plm_fail(PLM_ERR_UNSUPPORTED, "jobs: a grammar is not supported in a background job");
    if (j->p.n_stop < 0 || (j->p.n_stop > 0 && !j->p.stop))
        return plm_fail(PLM_ERR_ARG, "jobs: stop strings: n_stop %d without strings", (int)j->p.n_stop);
    if (j->p.sampling.n_logit_bias < 0 || (j->p.sampling.n_logit_bias > 0 && !j->p.sampling.logit_bias))
        return plm_fail(PLM_ERR_ARG, "jobs: logit bias: %d entries without an array", (int)j->p.sampling.n_logit_bias);
    j->prompt = malloc(len);
    if (!j->prompt) return plm_fail(PLM_ERR_OOM, "out of memory copying a job's prompt");
    memcpy(j->prompt, prompt, len);
    j->prompt_len = len;
    int32_t n_stop = j->p.n_stop;
    j->p.n_stop = 0;
    if (n_stop > 0) {
        j->stop = calloc((size_t)n_stop, sizeof *j->stop);
        if (!j->stop) return plm_fail(PLM_ERR_OOM, "out of memory copying stop strings");
        for (int32_t i = 0; i < n_stop; i++) {
            if (!params->stop[i]) return plm_fail(PLM_ERR_ARG, "jobs: stop string %d is NULL", (int)i);
            j->stop[i] = strdup(params->stop[i]);
            if (!j->stop[i]) return plm_fail(PLM_ERR_OOM, "out of memory copying stop strings");
            j->p.n_stop = i + 1;
        }
        j->p.stop = (const char *const *)j->stop;
    }
    int32_t n_bias = j->p.sampling.n_logit_bias;
    if (n_bias > 0) {
        j->bias = malloc((size_t)n_bias * sizeof *j->bias);
        if (!j->bias) return plm_fail(PLM_ERR_OOM, "out of memory copying a logit bias");
        memcpy(j->bias, params->sampling.logit_bias, (size_t)n_bias * sizeof *j->bias);
        j->p.sampling.logit_bias = j->bias;
    }
    return PLM_OK;
}

plm_status plm_jobs_submit(plm_jobs *J, const char *prompt, size_t len, const plm_generate_params *params,
                           plm_job **out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_jobs_submit: out is NULL");
    *out = NULL;
    if (!J) return plm_fail(PLM_ERR_ARG, "plm_jobs_submit: the job runner is NULL");
    if (!prompt || len == 0) return plm_fail(PLM_ERR_ARG, "plm_jobs_submit: the prompt is empty");
    plm_job *j = calloc(1, sizeof *j);
    if (!j) return plm_fail(PLM_ERR_OOM, "out of memory creating a job");
    j->id = -1;
    plm_status st = job_copy_request(j, prompt, len, params);
    if (st != PLM_OK) {
        job_free_now(j);
        return st;
    }
    pthread_mutex_lock(&J->mu);
    worker *best = &J->w[0];
    for (int32_t i = 1; i < J->n_workers; i++)
        if (J->w[i].n_live < best->n_live) best = &J->w[i];
    if (best->n_jobs == best->cap_jobs) {
        int32_t cap = best->cap_jobs ? 2 * best->cap_jobs : 8;
        plm_job **a = realloc(best->jobs, (size_t)cap * sizeof *a);
        if (!a) {
            pthread_mutex_unlock(&J->mu);
            job_free_now(j);
            return plm_fail(PLM_ERR_OOM, "out of memory queueing a job");
        }
        best->jobs = a;
        best->cap_jobs = cap;
    }
    j->owner = J;
    j->w = best;
    j->refs = 2;
    best->jobs[best->n_jobs++] = j;
    best->n_live++;
    pthread_cond_broadcast(&J->work);
    pthread_mutex_unlock(&J->mu);
    *out = j;
    return PLM_OK;
}

static void job_lock(plm_job *j) {
    if (j->owner) pthread_mutex_lock(&j->owner->mu);
}

static void job_unlock(plm_job *j) {
    if (j->owner) pthread_mutex_unlock(&j->owner->mu);
}

plm_status plm_job_poll(plm_job *j, char **out_bytes, size_t *out_len, plm_stop_reason *out_reason) {
    if (!out_bytes || !out_len || !out_reason) return plm_fail(PLM_ERR_ARG, "plm_job_poll: an output is NULL");
    *out_bytes = NULL;
    *out_len = 0;
    *out_reason = PLM_STOP_NONE;
    if (!j) return plm_fail(PLM_ERR_ARG, "plm_job_poll: the job is NULL");
    /* Never wait, not even for the lock: a worker preempted while it holds it (it runs at a lower priority)
     * would stall the caller's frame. Busy: nothing new this time. */
    if (j->owner && pthread_mutex_trylock(&j->owner->mu) != 0) {
        *out_bytes = malloc(1);
        if (!*out_bytes) return plm_fail(PLM_ERR_OOM, "out of memory polling a job");
        (*out_bytes)[0] = '\0';
        return PLM_OK;
    }
    size_t n = j->n_text - j->n_taken;
    char *s = malloc(n + 1);
    if (!s) {
        job_unlock(j);
        return plm_fail(PLM_ERR_OOM, "out of memory polling a job");
    }
    if (n) memcpy(s, j->text + j->n_taken, n);
    s[n] = '\0';
    j->n_taken = j->n_text;
    plm_status st = j->ended ? j->status : PLM_OK;
    if (st != PLM_OK) plm_fail(st, "%s", j->error ? j->error : plm_status_str(st));
    *out_reason = j->ended && st == PLM_OK ? j->reason : PLM_STOP_NONE;
    job_unlock(j);
    if (st != PLM_OK) {
        free(s);
        return st;
    }
    *out_bytes = s;
    *out_len = n;
    return PLM_OK;
}

void plm_job_cancel(plm_job *j) {
    if (!j || !j->owner) return;
    pthread_mutex_lock(&j->owner->mu);
    if (!j->ended) {
        j->cancel = true;
        pthread_cond_broadcast(&j->owner->work);
    }
    pthread_mutex_unlock(&j->owner->mu);
}

void plm_job_wait(plm_job *j) {
    if (!j || !j->owner) return;
    plm_jobs *J = j->owner;
    pthread_mutex_lock(&J->mu);
    while (!j->ended) pthread_cond_wait(&J->done, &J->mu);
    pthread_mutex_unlock(&J->mu);
}

bool plm_job_done(plm_job *j) {
    if (!j) return true;
    job_lock(j);
    bool done = j->ended;
    job_unlock(j);
    return done;
}

int32_t plm_job_n_generated(plm_job *j) {
    if (!j) return 0;
    job_lock(j);
    int32_t n = j->n_generated;
    job_unlock(j);
    return n;
}

void plm_job_free(plm_job *j) {
    if (!j) return;
    plm_jobs *J = j->owner;
    if (!J) {
        job_unref(j);
        return;
    }
    pthread_mutex_lock(&J->mu);
    if (!j->ended) {
        j->cancel = true;
        pthread_cond_broadcast(&J->work);
    }
    job_unref(j);
    pthread_mutex_unlock(&J->mu);
}
