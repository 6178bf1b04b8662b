/*
 * gguf.h — a validating GGUF (v2, v3) reader over a memory map.
 *
 * gguf.c parses the header, metadata and tensor infos, checks every count,
 * length, offset and size against the file size and against overflow, and hands
 * out pointers into the mapping. It does no math and knows no architecture.
 */
#ifndef PLM_GGUF_H
#define PLM_GGUF_H

#include "internal.h"

typedef enum plm_gguf_type {
    PLM_GGUF_U8 = 0, PLM_GGUF_I8 = 1, PLM_GGUF_U16 = 2, PLM_GGUF_I16 = 3,
    PLM_GGUF_U32 = 4, PLM_GGUF_I32 = 5, PLM_GGUF_F32 = 6, PLM_GGUF_BOOL = 7,
    PLM_GGUF_STRING = 8, PLM_GGUF_ARRAY = 9, PLM_GGUF_U64 = 10, PLM_GGUF_I64 = 11,
    PLM_GGUF_F64 = 12, PLM_GGUF_TYPE_COUNT = 13
} plm_gguf_type;

/* A string inside the file: not NUL-terminated. */
typedef struct plm_gguf_str {
    const char *ptr;
    uint64_t len;
} plm_gguf_str;

typedef struct plm_gguf_value plm_gguf_value;
struct plm_gguf_value {
    plm_gguf_type type;
    union {
        uint64_t u64;   /* unsigned integer types */
        int64_t i64;    /* signed integer types */
        double f64;     /* F32, F64 */
        bool b;
        plm_gguf_str str;
        struct {
            plm_gguf_type type;    /* element type */
            uint64_t n;
            const uint8_t *data;   /* fixed-size elements: raw little-endian bytes in the file */
            plm_gguf_value *items; /* STRING and ARRAY elements, parsed (n of them) */
        } arr;
    } v;
};

typedef struct plm_gguf_kv {
    char *key; /* NUL-terminated */
    plm_gguf_value value;
} plm_gguf_kv;

typedef struct plm_gguf_tensor {
    char *name;         /* NUL-terminated */
    uint32_t n_dims;
    int64_t ne[4];      /* ne[0] is the row length; unused dims are 1 */
    uint32_t type;      /* plm_type id */
    uint64_t offset;    /* relative to the data section */
    uint64_t nbytes;
    const void *data;   /* into the mapping */
} plm_gguf_tensor;

typedef struct plm_gguf {
    char *path;
    uint32_t version;
    const uint8_t *base; /* the whole file */
    uint64_t size;
    uint64_t data_offset;
    uint32_t alignment;
    uint64_t n_kv;
    plm_gguf_kv *kv;
    uint64_t n_tensors;
    plm_gguf_tensor *tensors;
    /* ownership of base */
    bool mapped;
    bool owns_base;
} plm_gguf;

/* Opens and validates a file. *out is new: free with plm_gguf_close. */
plm_status plm_gguf_open(const char *path, bool use_mmap, plm_gguf **out);
/* Parses a buffer the caller keeps alive (not copied). */
plm_status plm_gguf_open_memory(const void *data, size_t size, plm_gguf **out);
void plm_gguf_close(plm_gguf *g);

/* Lookups: NULL when absent. */
const plm_gguf_value *plm_gguf_get(const plm_gguf *g, const char *key);
const plm_gguf_tensor *plm_gguf_tensor_find(const plm_gguf *g, const char *name);

/* Typed getters. Absent key: returns PLM_OK and leaves *out untouched if
 * required is false, else PLM_ERR_FORMAT naming the key. A value of the wrong
 * type or out of range: PLM_ERR_FORMAT naming the key, its type and value. */
plm_status plm_gguf_get_u32(const plm_gguf *g, const char *key, bool required, uint32_t *out);
plm_status plm_gguf_get_i32(const plm_gguf *g, const char *key, bool required, int32_t *out);
plm_status plm_gguf_get_f32(const plm_gguf *g, const char *key, bool required, float *out);
plm_status plm_gguf_get_bool(const plm_gguf *g, const char *key, bool required, bool *out);
/* Returns a malloc'd NUL-terminated copy (free with free()); NUL bytes inside
 * the value are rejected. */
plm_status plm_gguf_get_str(const plm_gguf *g, const char *key, bool required, char **out);
/* An array of the given element type; *out points at the value. */
plm_status plm_gguf_get_arr(const plm_gguf *g, const char *key, bool required, plm_gguf_type elem,
                            const plm_gguf_value **out);

const char *plm_gguf_type_name(plm_gguf_type t);
/* Integer element i of a fixed-size numeric array, widened (caller checks i < n). */
int64_t plm_gguf_arr_int(const plm_gguf_value *arr, uint64_t i);
double plm_gguf_arr_float(const plm_gguf_value *arr, uint64_t i);

/* Renders a value as text into buf (truncated, NUL-terminated). */
void plm_gguf_value_format(const plm_gguf_value *v, char *buf, size_t cap);

#endif
