/*
 * util.c — per-thread error messages, status names, aligned allocation, and how
 * much memory the machine offers (the default context memory budget).
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Thread_local char last_error[1024];

plm_status plm_fail(plm_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

void plm_clear_error(void) { last_error[0] = 0; }

const char *plm_last_error(void) { return last_error; }

const char *plm_status_str(plm_status status) {
    switch (status) {
    case PLM_OK: return "PLM_OK";
    case PLM_ERR_IO: return "PLM_ERR_IO";
    case PLM_ERR_FORMAT: return "PLM_ERR_FORMAT";
    case PLM_ERR_UNSUPPORTED: return "PLM_ERR_UNSUPPORTED";
    case PLM_ERR_OOM: return "PLM_ERR_OOM";
    case PLM_ERR_ARG: return "PLM_ERR_ARG";
    case PLM_ERR_CONTEXT_FULL: return "PLM_ERR_CONTEXT_FULL";
    case PLM_ERR_CANCELLED: return "PLM_ERR_CANCELLED";
    case PLM_ERR_BUFFER: return "PLM_ERR_BUFFER";
    case PLM_ERR_INTERNAL: return "PLM_ERR_INTERNAL";
    }
    return "PLM_ERR_UNKNOWN";
}

const char *plm_version(void) { return PLM_VERSION; }

void *plm_amalloc(size_t size) {
    if (size == 0) return NULL;
    void *p = NULL;
    size_t rounded = (size + 63) & ~(size_t)63;
    if (rounded < size) return NULL;
    if (posix_memalign(&p, 64, rounded) != 0) return NULL;
    return p;
}

void plm_afree(void *p) { free(p); }

void plm_free(void *p) { free(p); }

/* A cgroup limit file: a byte count, or "max" (v2) / a huge number (v1) when
 * there is no limit. 0 when absent or unlimited. */
static uint64_t cgroup_limit(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    unsigned long long v = 0;
    if (fscanf(f, "%llu", &v) != 1) v = 0;
    fclose(f);
    return v >= (1ull << 60) ? 0 : (uint64_t)v;
}

uint64_t plm_physical_memory(void) {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    uint64_t mem = 0;
    if (pages > 0 && page > 0 && plm_mul_ovf((uint64_t)pages, (uint64_t)page, &mem)) mem = UINT64_MAX;
    /* In a container the machine's figure overstates what the process gets. */
    const char *limits[2] = {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
    for (int i = 0; i < 2; i++) {
        const uint64_t lim = cgroup_limit(limits[i]);
        if (lim && (mem == 0 || lim < mem)) mem = lim;
    }
    return mem;
}
