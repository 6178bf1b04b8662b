/*
 * threadpool.c — the persistent worker pool behind every parallel loop.
 *
 * A job is published by bumping a generation counter; workers spin on it for a
 * short while (jobs arrive every few microseconds during a forward pass) and
 * fall back to a condition variable when idle. Completion is an atomic count the
 * caller spins on. Splitting work is left to the job functions (by rows).
 */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The spin-wait hint: it tells the core that this is a wait loop (a sibling
 * hyperthread gets the pipeline, the loop exit is not mispredicted). */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define CPU_RELAX() ((void)0)
#endif

#define SPIN_ROUNDS 200000 /* pauses before a worker sleeps (~ a few ms) */
#define YIELD_EVERY 256    /* pauses between sched_yield calls while waiting, so that
                            * an oversubscribed CPU still runs the thread waited for */

typedef struct worker {
    plm_pool *pool;
    pthread_t thread;
    int ith;
} worker;

struct plm_pool {
    int n;
    worker *workers;
    _Atomic unsigned gen;
    _Atomic int done;
    _Atomic int sleeping;
    _Atomic bool stop;
    plm_pool_fn fn;
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void *worker_main(void *p) {
    worker *w = p;
    plm_pool *pool = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ROUNDS) {
                CPU_RELAX();
                if (spins % YIELD_EVERY == 0) sched_yield();
                continue;
            }
            pthread_mutex_lock(&pool->mu);
            atomic_fetch_add(&pool->sleeping, 1);
            while (atomic_load(&pool->gen) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->cv, &pool->mu);
            atomic_fetch_sub(&pool->sleeping, 1);
            pthread_mutex_unlock(&pool->mu);
            spins = 0;
        }
        seen = g;
        if (atomic_load(&pool->stop)) break;
        pool->fn(pool->arg, w->ith, pool->n);
        atomic_fetch_add_explicit(&pool->done, 1, memory_order_acq_rel);
    }
    return NULL;
}

plm_status plm_pool_create(int n_threads, plm_pool **out) {
    *out = NULL;
    if (n_threads < 1) return plm_fail(PLM_ERR_ARG, "n_threads must be at least 1 (got %d)", n_threads);
    plm_pool *pool = calloc(1, sizeof(*pool));
    if (!pool) return plm_fail(PLM_ERR_OOM, "out of memory for the thread pool");
    pool->n = n_threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    if (n_threads > 1) {
        pool->workers = calloc((size_t)n_threads, sizeof(worker));
        if (!pool->workers) {
            plm_pool_free(pool);
            return plm_fail(PLM_ERR_OOM, "out of memory for the thread pool");
        }
        for (int i = 1; i < n_threads; i++) {
            pool->workers[i].pool = pool;
            pool->workers[i].ith = i;
            if (pthread_create(&pool->workers[i].thread, NULL, worker_main, &pool->workers[i]) != 0) {
                pool->n = i; /* only these were started */
                plm_pool_free(pool);
                return plm_fail(PLM_ERR_OOM, "could not start worker thread %d of %d", i, n_threads);
            }
        }
    }
    *out = pool;
    return PLM_OK;
}

void plm_pool_free(plm_pool *pool) {
    if (!pool) return;
    if (pool->workers) {
        pthread_mutex_lock(&pool->mu);
        atomic_store(&pool->stop, true);
        atomic_fetch_add(&pool->gen, 1);
        pthread_cond_broadcast(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
        for (int i = 1; i < pool->n; i++) pthread_join(pool->workers[i].thread, NULL);
        free(pool->workers);
    }
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    free(pool);
}

int plm_pool_size(const plm_pool *pool) { return pool->n; }

void plm_pool_run(plm_pool *pool, plm_pool_fn fn, void *arg) {
    if (pool->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&pool->gen, 1, memory_order_acq_rel);
    if (atomic_load(&pool->sleeping) > 0) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
    }
    fn(arg, 0, pool->n);
    for (unsigned spins = 1; atomic_load_explicit(&pool->done, memory_order_acquire) < pool->n - 1; spins++) {
        CPU_RELAX();
        if (spins % YIELD_EVERY == 0) sched_yield();
    }
}

int plm_physical_cores(void) {
    /* Count distinct (package, core) pairs from sysfs; fall back to online CPUs. */
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1) online = 1;
    int n = 0;
    enum { MAXC = 1024 };
    long keys[MAXC];
    for (long cpu = 0; cpu < online && cpu < MAXC; cpu++) {
        char path[128];
        long pkg = 0, core = -1;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/core_id", cpu);
        FILE *f = fopen(path, "r");
        if (!f) return (int)online;
        if (fscanf(f, "%ld", &core) != 1) core = cpu;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/physical_package_id", cpu);
        f = fopen(path, "r");
        if (f) {
            if (fscanf(f, "%ld", &pkg) != 1) pkg = 0;
            fclose(f);
        }
        long key = pkg * 100000 + core;
        bool seen = false;
        for (int i = 0; i < n; i++) if (keys[i] == key) seen = true;
        if (!seen) keys[n++] = key;
    }
    return n > 0 ? n : (int)online;
}
