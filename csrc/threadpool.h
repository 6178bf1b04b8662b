/*
 * threadpool.h — a persistent pool of worker threads owned by a context.
 *
 * plm_pool_run(pool, fn, arg) calls fn(arg, ith, nth) on every thread of the
 * pool (the caller is thread 0) and returns when all have finished. Workers spin
 * briefly between jobs, since a forward pass issues hundreds of short jobs per
 * token, then sleep on a condition variable.
 */
#ifndef PLM_THREADPOOL_H
#define PLM_THREADPOOL_H

#include "internal.h"

typedef struct plm_pool plm_pool;
typedef void (*plm_pool_fn)(void *arg, int ith, int nth);

/* n_threads >= 1 (including the caller). Free with plm_pool_free. */
plm_status plm_pool_create(int n_threads, plm_pool **out);
void plm_pool_free(plm_pool *pool);
int plm_pool_size(const plm_pool *pool);
void plm_pool_run(plm_pool *pool, plm_pool_fn fn, void *arg);

/* Physical cores (falls back to online CPUs). */
int plm_physical_cores(void);

#endif
