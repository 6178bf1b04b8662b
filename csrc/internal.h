/*
 * internal.h — helpers shared by the C core: error reporting, checked arithmetic,
 * allocation. Not installed; nothing here is public API.
 */
#ifndef PLM_INTERNAL_H
#define PLM_INTERNAL_H

#define PLM_BUILDING_LIBRARY 1
#include "pocketlm.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define PLM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define PLM_UNUSED __attribute__((unused))
#else
#define PLM_PRINTF(a, b)
#define PLM_UNUSED
#endif

/* Records a formatted message for plm_last_error() and returns status. */
plm_status plm_fail(plm_status status, const char *fmt, ...) PLM_PRINTF(2, 3);
/* Clears the per-thread message. */
void plm_clear_error(void);

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool plm_add_ovf(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_add_overflow(a, b, r); }
static inline bool plm_mul_ovf(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_mul_overflow(a, b, r); }

/* 64-byte aligned allocation (NULL on failure or size 0); free with plm_afree. */
void *plm_amalloc(size_t size);
void plm_afree(void *p);

/* Bytes of memory this process may use: the machine's physical memory, or the
 * cgroup's memory limit if that is lower; 0 if neither can be read. */
uint64_t plm_physical_memory(void);

#define PLM_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PLM_MAX(a, b) ((a) > (b) ? (a) : (b))

/* chat.c: the prompt of one user message (len bytes of UTF-8) in the model's
 * chat, the assistant's turn opened (plm_chat_apply); *out: free with plm_free. */
plm_status plm_chat_user_prompt(const plm_model *model, const char *text, size_t len, char **out, size_t *out_len);

#endif
