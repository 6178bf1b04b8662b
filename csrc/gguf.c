/*
 * gguf.c — GGUF v2/v3 parsing and validation over a memory map.
 *
 * Owns: mapping the file, decoding the header, key/value metadata (every value
 * type, nested arrays), tensor infos, alignment and data offsets. Every length,
 * count, offset and size read from the file is checked against the bytes that
 * remain and against integer overflow before it is used; errors name the key or
 * tensor and the file offset. Leaves the meaning of keys and tensors to model.c
 * and the tokenizer, and never touches tensor values.
 */
#include "gguf.h"
#include "quant.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAX_DEPTH 8        /* nested arrays deeper than this are rejected */
#define GGUF_MAX_NAME 1024      /* longest key or tensor name accepted */
#define GGUF_DEFAULT_ALIGNMENT 32

typedef struct reader {
    const char *path; /* the file, named first in every message */
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
    const char *what; /* what is being read, for messages */
} reader;

static const char *const type_names[PLM_GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

static const uint8_t type_sizes[PLM_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *plm_gguf_type_name(plm_gguf_type t) {
    return (unsigned)t < PLM_GGUF_TYPE_COUNT ? type_names[t] : "unknown";
}

static plm_status need(reader *r, uint64_t n) {
    if (n > r->size - r->pos)
        return plm_fail(PLM_ERR_FORMAT, "%s: %s: need %" PRIu64 " bytes at offset %" PRIu64 " but the file ends at %" PRIu64,
                        r->path, r->what, n, r->pos, r->size);
    return PLM_OK;
}

static uint64_t load_le(const uint8_t *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static plm_status read_uint(reader *r, unsigned n, uint64_t *out) {
    plm_status st = need(r, n);
    if (st) return st;
    *out = load_le(r->base + r->pos, n);
    r->pos += n;
    return PLM_OK;
}

static plm_status read_str(reader *r, plm_gguf_str *out) {
    uint64_t len;
    uint64_t at = r->pos;
    plm_status st = read_uint(r, 8, &len);
    if (st) return st;
    if (len > r->size - r->pos)
        return plm_fail(PLM_ERR_FORMAT, "%s: %s: string of length %" PRIu64 " at offset %" PRIu64 " runs past the end of the file (%" PRIu64 " bytes)",
                        r->path, r->what, len, at, r->size);
    out->ptr = (const char *)r->base + r->pos;
    out->len = len;
    r->pos += len;
    return PLM_OK;
}

static char *dup_name(const plm_gguf_str *s) {
    char *p = malloc(s->len + 1);
    if (!p) return NULL;
    memcpy(p, s->ptr, s->len);
    p[s->len] = 0;
    return p;
}

static void value_free(plm_gguf_value *v) {
    if (v->type != PLM_GGUF_ARRAY || !v->v.arr.items) return;
    for (uint64_t i = 0; i < v->v.arr.n; i++) value_free(&v->v.arr.items[i]);
    free(v->v.arr.items);
    v->v.arr.items = NULL;
}

static plm_status read_value(reader *r, plm_gguf_type type, plm_gguf_value *out, int depth) {
    memset(out, 0, sizeof(*out));
    out->type = type;
    uint64_t u;
    plm_status st;
    switch (type) {
    case PLM_GGUF_U8: case PLM_GGUF_U16: case PLM_GGUF_U32: case PLM_GGUF_U64:
        st = read_uint(r, type_sizes[type], &u);
        if (st) return st;
        out->v.u64 = u;
        return PLM_OK;
    case PLM_GGUF_I8: case PLM_GGUF_I16: case PLM_GGUF_I32: case PLM_GGUF_I64: {
        unsigned n = type_sizes[type];
        st = read_uint(r, n, &u);
        if (st) return st;
        if (n < 8 && (u >> (8 * n - 1)) & 1) u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        out->v.i64 = (int64_t)u;
        return PLM_OK;
    }
    case PLM_GGUF_F32: {
        st = read_uint(r, 4, &u);
        if (st) return st;
        uint32_t bits = (uint32_t)u;
        float f;
        memcpy(&f, &bits, 4);
        out->v.f64 = f;
        return PLM_OK;
    }
    case PLM_GGUF_F64: {
        st = read_uint(r, 8, &u);
        if (st) return st;
        memcpy(&out->v.f64, &u, 8);
        return PLM_OK;
    }
    case PLM_GGUF_BOOL:
        st = read_uint(r, 1, &u);
        if (st) return st;
        if (u > 1) return plm_fail(PLM_ERR_FORMAT, "%s: %s: bool byte %" PRIu64 " at offset %" PRIu64 " is not 0 or 1", r->path, r->what, u, r->pos - 1);
        out->v.b = u != 0;
        return PLM_OK;
    case PLM_GGUF_STRING:
        return read_str(r, &out->v.str);
    case PLM_GGUF_ARRAY: {
        if (depth >= GGUF_MAX_DEPTH)
            return plm_fail(PLM_ERR_FORMAT, "%s: %s: arrays nested deeper than %d at offset %" PRIu64, r->path, r->what, GGUF_MAX_DEPTH, r->pos);
        uint64_t et, n, at = r->pos;
        if ((st = read_uint(r, 4, &et)) || (st = read_uint(r, 8, &n))) return st;
        if (et >= PLM_GGUF_TYPE_COUNT)
            return plm_fail(PLM_ERR_FORMAT, "%s: %s: array at offset %" PRIu64 " has unknown element type %" PRIu64, r->path, r->what, at, et);
        out->v.arr.type = (plm_gguf_type)et;
        uint64_t remaining = r->size - r->pos;
        /* Smallest encoding of one element: its fixed size, 8 bytes for a string
         * length, 12 bytes for a nested array header. */
        uint64_t min_elem = type_sizes[et] ? type_sizes[et] : (et == PLM_GGUF_STRING ? 8 : 12);
        if (n > remaining / min_elem)
            return plm_fail(PLM_ERR_FORMAT, "%s: %s: array at offset %" PRIu64 " claims %" PRIu64 " elements of type %s but only %" PRIu64 " bytes remain",
                            r->path, r->what, at, n, type_names[et], remaining);
        if (type_sizes[et]) {
            out->v.arr.n = n;
            out->v.arr.data = r->base + r->pos;
            r->pos += n * type_sizes[et];
            return PLM_OK;
        }
        plm_gguf_value *items = calloc(n ? n : 1, sizeof(*items));
        if (!items) return plm_fail(PLM_ERR_OOM, "%s: %s: out of memory for an array of %" PRIu64 " elements", r->path, r->what, n);
        out->v.arr.items = items;
        for (uint64_t i = 0; i < n; i++) {
            st = read_value(r, (plm_gguf_type)et, &items[i], depth + 1);
            out->v.arr.n = i + 1; /* so value_free frees what was parsed */
            if (st) return st;
        }
        out->v.arr.n = n;
        return PLM_OK;
    }
    default:
        return plm_fail(PLM_ERR_FORMAT, "%s: %s: unknown value type %u at offset %" PRIu64, r->path, r->what, (unsigned)type, r->pos);
    }
}

void plm_gguf_close(plm_gguf *g) {
    if (!g) return;
    if (g->kv) {
        for (uint64_t i = 0; i < g->n_kv; i++) {
            free(g->kv[i].key);
            value_free(&g->kv[i].value);
        }
        free(g->kv);
    }
    if (g->tensors) {
        for (uint64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
        free(g->tensors);
    }
    if (g->owns_base && g->base) {
        if (g->mapped) munmap((void *)g->base, g->size);
        else plm_afree((void *)g->base);
    }
    free(g->path);
    free(g);
}

const plm_gguf_value *plm_gguf_get(const plm_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0) return &g->kv[i].value;
    return NULL;
}

const plm_gguf_tensor *plm_gguf_tensor_find(const plm_gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name && strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

static plm_status parse(plm_gguf *g) {
    reader r = {g->path, g->base, g->size, 0, "GGUF header"};
    plm_status st;
    uint64_t version, n_tensors, n_kv;
    if (g->size < 4 || memcmp(g->base, "GGUF", 4) != 0)
        return plm_fail(PLM_ERR_FORMAT, "%s: not a GGUF file (bad magic at offset 0)", g->path);
    r.pos = 4;
    if ((st = read_uint(&r, 4, &version))) return st;
    if (version != 2 && version != 3) {
        if (version == 1) return plm_fail(PLM_ERR_UNSUPPORTED, "%s: GGUF version 1 is not supported (convert it to v3)", g->path);
        if (version != 0 && (version & 0xffff) == 0)
            return plm_fail(PLM_ERR_UNSUPPORTED, "%s: GGUF version %" PRIu64 " looks byte-swapped: big-endian files are not supported", g->path, version);
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s: unsupported GGUF version %" PRIu64 " (2 and 3 are supported)", g->path, version);
    }
    g->version = (uint32_t)version;
    if ((st = read_uint(&r, 8, &n_tensors)) || (st = read_uint(&r, 8, &n_kv))) return st;

    /* Each key/value needs at least 13 bytes, each tensor info at least 24. */
    if (n_kv > (g->size - r.pos) / 13)
        return plm_fail(PLM_ERR_FORMAT, "%s: header claims %" PRIu64 " metadata keys, more than a %" PRIu64 "-byte file can hold", g->path, n_kv, g->size);
    if (n_tensors > (g->size - r.pos) / 24)
        return plm_fail(PLM_ERR_FORMAT, "%s: header claims %" PRIu64 " tensors, more than a %" PRIu64 "-byte file can hold", g->path, n_tensors, g->size);

    g->kv = calloc(n_kv ? n_kv : 1, sizeof(*g->kv));
    if (!g->kv) return plm_fail(PLM_ERR_OOM, "out of memory for %" PRIu64 " metadata keys", n_kv);
    char what[GGUF_MAX_NAME + 64];
    for (uint64_t i = 0; i < n_kv; i++) {
        plm_gguf_str key;
        uint64_t at = r.pos, type;
        snprintf(what, sizeof what, "metadata key #%" PRIu64, i);
        r.what = what;
        if ((st = read_str(&r, &key))) return st;
        if (key.len == 0 || key.len > GGUF_MAX_NAME || memchr(key.ptr, 0, key.len))
            return plm_fail(PLM_ERR_FORMAT, "%s: metadata key #%" PRIu64 " at offset %" PRIu64 " has an invalid name (length %" PRIu64 ")", g->path, i, at, key.len);
        g->kv[i].key = dup_name(&key);
        g->n_kv = i + 1;
        if (!g->kv[i].key) return plm_fail(PLM_ERR_OOM, "out of memory");
        snprintf(what, sizeof what, "metadata key '%s'", g->kv[i].key);
        if (plm_gguf_get(g, g->kv[i].key) != &g->kv[i].value)
            return plm_fail(PLM_ERR_FORMAT, "%s: metadata key '%s' appears twice (second at offset %" PRIu64 ")", g->path, g->kv[i].key, at);
        if ((st = read_uint(&r, 4, &type))) return st;
        if (type >= PLM_GGUF_TYPE_COUNT)
            return plm_fail(PLM_ERR_FORMAT, "%s: metadata key '%s' at offset %" PRIu64 " has unknown value type %" PRIu64, g->path, g->kv[i].key, at, type);
        if ((st = read_value(&r, (plm_gguf_type)type, &g->kv[i].value, 0))) return st;
    }

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const plm_gguf_value *al = plm_gguf_get(g, "general.alignment");
    if (al) {
        if (al->type != PLM_GGUF_U32 || al->v.u64 == 0 || (al->v.u64 & (al->v.u64 - 1)) || al->v.u64 > (1u << 20))
            return plm_fail(PLM_ERR_FORMAT, "%s: general.alignment must be a u32 power of two up to 2^20", g->path);
        g->alignment = (uint32_t)al->v.u64;
    }

    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof(*g->tensors));
    if (!g->tensors) return plm_fail(PLM_ERR_OOM, "out of memory for %" PRIu64 " tensor infos", n_tensors);
    for (uint64_t i = 0; i < n_tensors; i++) {
        plm_gguf_tensor *t = &g->tensors[i];
        plm_gguf_str name;
        uint64_t at = r.pos, nd, type, off;
        snprintf(what, sizeof what, "tensor info #%" PRIu64, i);
        r.what = what;
        if ((st = read_str(&r, &name))) return st;
        if (name.len == 0 || name.len > GGUF_MAX_NAME || memchr(name.ptr, 0, name.len))
            return plm_fail(PLM_ERR_FORMAT, "%s: tensor #%" PRIu64 " at offset %" PRIu64 " has an invalid name (length %" PRIu64 ")", g->path, i, at, name.len);
        t->name = dup_name(&name);
        g->n_tensors = i + 1;
        if (!t->name) return plm_fail(PLM_ERR_OOM, "out of memory");
        snprintf(what, sizeof what, "tensor '%s'", t->name);
        if (plm_gguf_tensor_find(g, t->name) != t)
            return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' appears twice (second at offset %" PRIu64 ")", g->path, t->name, at);
        if ((st = read_uint(&r, 4, &nd))) return st;
        if (nd < 1 || nd > 4)
            return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' has %" PRIu64 " dimensions (1 to 4 supported)", g->path, t->name, nd);
        t->n_dims = (uint32_t)nd;
        uint64_t nelem = 1;
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        for (uint64_t d = 0; d < nd; d++) {
            uint64_t ne;
            if ((st = read_uint(&r, 8, &ne))) return st;
            if (ne == 0 || ne > INT64_MAX || plm_mul_ovf(nelem, ne, &nelem) || nelem > INT64_MAX)
                return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' has an invalid shape (dimension %" PRIu64 " is %" PRIu64 ")", g->path, t->name, d, ne);
            t->ne[d] = (int64_t)ne;
        }
        if ((st = read_uint(&r, 4, &type)) || (st = read_uint(&r, 8, &off))) return st;
        const plm_type_traits *tt = type <= UINT32_MAX ? plm_type_traits_get((uint32_t)type) : NULL;
        if (!tt || !tt->is_weight)
            return plm_fail(PLM_ERR_UNSUPPORTED, "%s: tensor '%s' has unsupported type id %" PRIu64, g->path, t->name, type);
        t->type = (uint32_t)type;
        if (t->ne[0] % tt->block_size)
            return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' of type %s has rows of %" PRId64 " elements, not a multiple of the block size %d",
                            g->path, t->name, tt->name, t->ne[0], tt->block_size);
        uint64_t row, nbytes;
        if (plm_mul_ovf((uint64_t)(t->ne[0] / tt->block_size), tt->type_size, &row) || plm_mul_ovf(row, nelem / (uint64_t)t->ne[0], &nbytes))
            return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' size overflows", g->path, t->name);
        if (off % g->alignment)
            return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' data offset %" PRIu64 " is not a multiple of the alignment %u", g->path, t->name, off, g->alignment);
        t->offset = off;
        t->nbytes = nbytes;
    }

    uint64_t data = r.pos;
    if (plm_add_ovf(data, g->alignment - 1, &data))
        return plm_fail(PLM_ERR_FORMAT, "%s: data offset overflows", g->path);
    data -= data % g->alignment;
    if (data > g->size && n_tensors > 0)
        return plm_fail(PLM_ERR_FORMAT, "%s: tensor data would start at offset %" PRIu64 ", past the end of the file (%" PRIu64 ")", g->path, data, g->size);
    g->data_offset = data;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        plm_gguf_tensor *t = &g->tensors[i];
        uint64_t start, end;
        if (plm_add_ovf(data, t->offset, &start) || plm_add_ovf(start, t->nbytes, &end) || end > g->size)
            return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s': data offset %" PRIu64 " + %" PRIu64 " bytes is past the end of the file (%" PRIu64 ")",
                            g->path, t->name, start, t->nbytes, g->size);
        t->data = g->base + start;
    }
    /* Tensors must not overlap: sort offsets by a simple insertion over indices. */
    if (g->n_tensors > 1) {
        uint64_t *idx = malloc(g->n_tensors * sizeof(*idx));
        if (!idx) return plm_fail(PLM_ERR_OOM, "out of memory");
        for (uint64_t i = 0; i < g->n_tensors; i++) idx[i] = i;
        /* shell sort by offset */
        for (uint64_t gap = g->n_tensors / 2; gap > 0; gap /= 2)
            for (uint64_t i = gap; i < g->n_tensors; i++)
                for (uint64_t j = i; j >= gap && g->tensors[idx[j - gap]].offset > g->tensors[idx[j]].offset; j -= gap) {
                    uint64_t tmp = idx[j]; idx[j] = idx[j - gap]; idx[j - gap] = tmp;
                }
        for (uint64_t i = 1; i < g->n_tensors; i++) {
            const plm_gguf_tensor *a = &g->tensors[idx[i - 1]], *b = &g->tensors[idx[i]];
            if (a->offset + a->nbytes > b->offset) {
                st = plm_fail(PLM_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data section", g->path, a->name, b->name);
                free(idx);
                return st;
            }
        }
        free(idx);
    }
    return PLM_OK;
}

static plm_status finish_open(plm_gguf *g, plm_gguf **out) {
    plm_status st = parse(g);
    if (st) {
        plm_gguf_close(g);
        return st;
    }
    *out = g;
    return PLM_OK;
}

plm_status plm_gguf_open(const char *path, bool use_mmap, plm_gguf **out) {
    *out = NULL;
    if (!path) return plm_fail(PLM_ERR_ARG, "model path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return plm_fail(PLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return plm_fail(PLM_ERR_IO, "%s: not a regular file", path);
    }
    plm_gguf *g = calloc(1, sizeof(*g));
    if (!g || !(g->path = strdup(path))) {
        free(g);
        close(fd);
        return plm_fail(PLM_ERR_OOM, "out of memory");
    }
    g->size = (uint64_t)sb.st_size;
    g->owns_base = true;
    if (g->size == 0) {
        close(fd);
        plm_gguf_close(g);
        return plm_fail(PLM_ERR_FORMAT, "%s: empty file", path);
    }
    if (use_mmap) {
        void *p = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            plm_gguf_close(g);
            return plm_fail(PLM_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
        }
        g->base = p;
        g->mapped = true;
    } else {
        uint8_t *p = plm_amalloc(g->size);
        if (!p) {
            close(fd);
            plm_gguf_close(g);
            return plm_fail(PLM_ERR_OOM, "%s: out of memory reading %" PRIu64 " bytes", path, (uint64_t)sb.st_size);
        }
        g->base = p;
        uint64_t got = 0;
        while (got < g->size) {
            ssize_t n = read(fd, p + got, g->size - got);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                close(fd);
                plm_gguf_close(g);
                return plm_fail(PLM_ERR_IO, "%s: read failed at offset %" PRIu64, path, got);
            }
            got += (uint64_t)n;
        }
    }
    close(fd);
    return finish_open(g, out);
}

plm_status plm_gguf_open_memory(const void *data, size_t size, plm_gguf **out) {
    *out = NULL;
    plm_gguf *g = calloc(1, sizeof(*g));
    if (!g || !(g->path = strdup("<memory>"))) {
        free(g);
        return plm_fail(PLM_ERR_OOM, "out of memory");
    }
    g->base = data;
    g->size = size;
    if (!data || size == 0) {
        plm_gguf_close(g);
        return plm_fail(PLM_ERR_FORMAT, "<memory>: empty buffer");
    }
    return finish_open(g, out);
}

/* ------------------------------------------------------------- getters */

static plm_status absent(const plm_gguf *g, const char *key, bool required) {
    if (!required) return PLM_OK;
    return plm_fail(PLM_ERR_FORMAT, "%s: required metadata key '%s' is missing", g->path, key);
}

static bool is_uint(plm_gguf_type t) { return t == PLM_GGUF_U8 || t == PLM_GGUF_U16 || t == PLM_GGUF_U32 || t == PLM_GGUF_U64; }
static bool is_sint(plm_gguf_type t) { return t == PLM_GGUF_I8 || t == PLM_GGUF_I16 || t == PLM_GGUF_I32 || t == PLM_GGUF_I64; }

static plm_status get_int(const plm_gguf *g, const char *key, bool required, int64_t lo, int64_t hi, int64_t *out, bool *found) {
    *found = false;
    const plm_gguf_value *v = plm_gguf_get(g, key);
    if (!v) return absent(g, key, required);
    int64_t x;
    if (is_uint(v->type)) {
        if (v->v.u64 > (uint64_t)INT64_MAX) goto range;
        x = (int64_t)v->v.u64;
    } else if (is_sint(v->type)) {
        x = v->v.i64;
    } else {
        return plm_fail(PLM_ERR_FORMAT, "%s: metadata key '%s' should be an integer but is a %s", g->path, key, type_names[v->type]);
    }
    if (x < lo || x > hi) goto range;
    *out = x;
    *found = true;
    return PLM_OK;
range:
    return plm_fail(PLM_ERR_FORMAT, "%s: metadata key '%s' is out of range", g->path, key);
}

plm_status plm_gguf_get_u32(const plm_gguf *g, const char *key, bool required, uint32_t *out) {
    int64_t x; bool f;
    plm_status st = get_int(g, key, required, 0, UINT32_MAX, &x, &f);
    if (!st && f) *out = (uint32_t)x;
    return st;
}

plm_status plm_gguf_get_i32(const plm_gguf *g, const char *key, bool required, int32_t *out) {
    int64_t x; bool f;
    plm_status st = get_int(g, key, required, INT32_MIN, INT32_MAX, &x, &f);
    if (!st && f) *out = (int32_t)x;
    return st;
}

plm_status plm_gguf_get_f32(const plm_gguf *g, const char *key, bool required, float *out) {
    const plm_gguf_value *v = plm_gguf_get(g, key);
    if (!v) return absent(g, key, required);
    double x;
    if (v->type == PLM_GGUF_F32 || v->type == PLM_GGUF_F64) x = v->v.f64;
    else if (is_uint(v->type)) x = (double)v->v.u64;
    else if (is_sint(v->type)) x = (double)v->v.i64;
    else return plm_fail(PLM_ERR_FORMAT, "%s: metadata key '%s' should be a number but is a %s", g->path, key, type_names[v->type]);
    if (x != x || x > 3.4e38 || x < -3.4e38)
        return plm_fail(PLM_ERR_FORMAT, "%s: metadata key '%s' is not a finite float (%g)", g->path, key, x);
    *out = (float)x;
    return PLM_OK;
}

plm_status plm_gguf_get_bool(const plm_gguf *g, const char *key, bool required, bool *out) {
    const plm_gguf_value *v = plm_gguf_get(g, key);
    if (!v) return absent(g, key, required);
    if (v->type != PLM_GGUF_BOOL)
        return plm_fail(PLM_ERR_FORMAT, "%s: metadata key '%s' should be a bool but is a %s", g->path, key, type_names[v->type]);
    *out = v->v.b;
    return PLM_OK;
}

plm_status plm_gguf_get_str(const plm_gguf *g, const char *key, bool required, char **out) {
    const plm_gguf_value *v = plm_gguf_get(g, key);
    if (!v) return absent(g, key, required);
    if (v->type != PLM_GGUF_STRING)
        return plm_fail(PLM_ERR_FORMAT, "%s: metadata key '%s' should be a string but is a %s", g->path, key, type_names[v->type]);
    if (memchr(v->v.str.ptr, 0, v->v.str.len))
        return plm_fail(PLM_ERR_FORMAT, "%s: metadata key '%s' contains a NUL byte", g->path, key);
    char *s = dup_name(&v->v.str);
    if (!s) return plm_fail(PLM_ERR_OOM, "out of memory");
    *out = s;
    return PLM_OK;
}

plm_status plm_gguf_get_arr(const plm_gguf *g, const char *key, bool required, plm_gguf_type elem, const plm_gguf_value **out) {
    const plm_gguf_value *v = plm_gguf_get(g, key);
    if (!v) return absent(g, key, required);
    if (v->type != PLM_GGUF_ARRAY || v->v.arr.type != elem)
        return plm_fail(PLM_ERR_FORMAT, "%s: metadata key '%s' should be an array of %s", g->path, key, type_names[elem]);
    *out = v;
    return PLM_OK;
}

int64_t plm_gguf_arr_int(const plm_gguf_value *a, uint64_t i) {
    plm_gguf_type t = a->v.arr.type;
    unsigned n = type_sizes[t];
    uint64_t u = load_le(a->v.arr.data + i * n, n);
    if (is_sint(t) && n < 8 && (u >> (8 * n - 1)) & 1) u |= ~(uint64_t)0 << (8 * n);
    if (t == PLM_GGUF_F32 || t == PLM_GGUF_F64) return (int64_t)plm_gguf_arr_float(a, i);
    return (int64_t)u;
}

double plm_gguf_arr_float(const plm_gguf_value *a, uint64_t i) {
    plm_gguf_type t = a->v.arr.type;
    if (t == PLM_GGUF_F32) {
        uint32_t bits = (uint32_t)load_le(a->v.arr.data + i * 4, 4);
        float f;
        memcpy(&f, &bits, 4);
        return f;
    }
    if (t == PLM_GGUF_F64) {
        uint64_t bits = load_le(a->v.arr.data + i * 8, 8);
        double d;
        memcpy(&d, &bits, 8);
        return d;
    }
    return (double)plm_gguf_arr_int(a, i);
}

void plm_gguf_value_format(const plm_gguf_value *v, char *buf, size_t cap) {
    if (!cap) return;
    buf[0] = 0;
    switch (v->type) {
    case PLM_GGUF_U8: case PLM_GGUF_U16: case PLM_GGUF_U32: case PLM_GGUF_U64:
        snprintf(buf, cap, "%" PRIu64, v->v.u64); break;
    case PLM_GGUF_I8: case PLM_GGUF_I16: case PLM_GGUF_I32: case PLM_GGUF_I64:
        snprintf(buf, cap, "%" PRId64, v->v.i64); break;
    case PLM_GGUF_F32: case PLM_GGUF_F64:
        snprintf(buf, cap, "%g", v->v.f64); break;
    case PLM_GGUF_BOOL:
        snprintf(buf, cap, "%s", v->v.b ? "true" : "false"); break;
    case PLM_GGUF_STRING: {
        size_t n = v->v.str.len < cap - 1 ? (size_t)v->v.str.len : cap - 1;
        memcpy(buf, v->v.str.ptr, n);
        buf[n] = 0;
        break;
    }
    case PLM_GGUF_ARRAY:
        snprintf(buf, cap, "[%s x %" PRIu64 "]", type_names[v->v.arr.type], v->v.arr.n); break;
    default:
        snprintf(buf, cap, "?");
    }
}
