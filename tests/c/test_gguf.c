/*
 * test_gguf.c — the GGUF reader: every value type, v2 and v3, and malformed
 * files (truncation at every byte, bad magic and version, absurd counts, lengths
 * past the end, overflowing offsets, misalignment, duplicates) giving a status
 * and a message, never a crash. Also model loading errors that come from the file.
 */
#include "gguf.h"
#include "quant.h"
#include "test.h"

#include <stdint.h>
#include <unistd.h>

/* ---- a small GGUF writer for building test files in memory ---- */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void u8(buf *b, uint8_t v) { put(b, &v, 1); }
static void u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void str(buf *b, const char *s) { u64(b, strlen(s)); put(b, s, strlen(s)); }
static void pad_to(buf *b, size_t align) { while (b->n % align) u8(b, 0); }

/* Header for version v with nt tensors and nkv keys. */
static void header(buf *b, uint32_t v, uint64_t nt, uint64_t nkv) {
    put(b, "GGUF", 4);
    u32(b, v);
    u64(b, nt);
    u64(b, nkv);
}

static void kv_u32(buf *b, const char *k, uint32_t v) { str(b, k); u32(b, PLM_GGUF_U32); u32(b, v); }
static void kv_str(buf *b, const char *k, const char *v) { str(b, k); u32(b, PLM_GGUF_STRING); str(b, v); }

/* A valid file with one key of every type, a nested array and two F32 tensors. */
static buf make_valid(uint32_t version) {
    buf b = {0};
    header(&b, version, 2, 17);
    kv_str(&b, "general.architecture", "llama");
    str(&b, "t.u8"); u32(&b, PLM_GGUF_U8); u8(&b, 200);
    str(&b, "t.i8"); u32(&b, PLM_GGUF_I8); u8(&b, (uint8_t)-5);
    str(&b, "t.u16"); u32(&b, PLM_GGUF_U16); { uint16_t v = 60000; put(&b, &v, 2); }
    str(&b, "t.i16"); u32(&b, PLM_GGUF_I16); { int16_t v = -30000; put(&b, &v, 2); }
    kv_u32(&b, "t.u32", 4000000000u);
    str(&b, "t.i32"); u32(&b, PLM_GGUF_I32); { int32_t v = -2000000000; put(&b, &v, 4); }
    str(&b, "t.f32"); u32(&b, PLM_GGUF_F32); { float v = 1.5f; put(&b, &v, 4); }
    str(&b, "t.bool"); u32(&b, PLM_GGUF_BOOL); u8(&b, 1);
    kv_str(&b, "t.str", "héllo");
    str(&b, "t.u64"); u32(&b, PLM_GGUF_U64); u64(&b, 1ull << 40);
    str(&b, "t.i64"); u32(&b, PLM_GGUF_I64); u64(&b, (uint64_t)-7);
    str(&b, "t.f64"); u32(&b, PLM_GGUF_F64); { double v = -2.25; put(&b, &v, 8); }
    str(&b, "t.arr_i32"); u32(&b, PLM_GGUF_ARRAY); u32(&b, PLM_GGUF_I32); u64(&b, 3);
    { int32_t v[3] = {1, -2, 3}; put(&b, v, 12); }
    str(&b, "t.arr_str"); u32(&b, PLM_GGUF_ARRAY); u32(&b, PLM_GGUF_STRING); u64(&b, 2); str(&b, "a"); str(&b, "bc");
    /* nested: array of 2 arrays of u8 */
    str(&b, "t.nested"); u32(&b, PLM_GGUF_ARRAY); u32(&b, PLM_GGUF_ARRAY); u64(&b, 2);
    u32(&b, PLM_GGUF_U8); u64(&b, 2); u8(&b, 7); u8(&b, 8);
    u32(&b, PLM_GGUF_U8); u64(&b, 1); u8(&b, 9);
    kv_u32(&b, "general.alignment", 32);
    /* tensors */
    str(&b, "a.weight"); u32(&b, 2); u64(&b, 4); u64(&b, 2); u32(&b, PLM_TYPE_F32); u64(&b, 0);
    str(&b, "b.weight"); u32(&b, 1); u64(&b, 8); u32(&b, PLM_TYPE_F32); u64(&b, 32);
    pad_to(&b, 32);
    for (int i = 0; i < 8; i++) { float v = (float)i; put(&b, &v, 4); }
    for (int i = 0; i < 8; i++) { float v = (float)(10 + i); put(&b, &v, 4); }
    return b;
}

static plm_status open_buf(const buf *b, plm_gguf **g) { return plm_gguf_open_memory(b->p, b->n, g); }

static void test_valid_v3_and_v2(void) {
    for (uint32_t ver = 2; ver <= 3; ver++) {
        buf b = make_valid(ver);
        plm_gguf *g = NULL;
        plm_status st = open_buf(&b, &g);
        CHECKF(st == PLM_OK, "v%u: %s", ver, plm_last_error());
        if (st) { free(b.p); continue; }
        CHECK(g->version == ver);
        CHECK(g->n_kv == 17 && g->n_tensors == 2);
        const plm_gguf_value *v;
        CHECK((v = plm_gguf_get(g, "t.u8")) && v->v.u64 == 200);
        CHECK((v = plm_gguf_get(g, "t.i8")) && v->v.i64 == -5);
        CHECK((v = plm_gguf_get(g, "t.u16")) && v->v.u64 == 60000);
        CHECK((v = plm_gguf_get(g, "t.i16")) && v->v.i64 == -30000);
        CHECK((v = plm_gguf_get(g, "t.i32")) && v->v.i64 == -2000000000);
        CHECK((v = plm_gguf_get(g, "t.f32")) && v->v.f64 == 1.5);
        CHECK((v = plm_gguf_get(g, "t.bool")) && v->v.b);
        CHECK((v = plm_gguf_get(g, "t.u64")) && v->v.u64 == 1ull << 40);
        CHECK((v = plm_gguf_get(g, "t.i64")) && v->v.i64 == -7);
        CHECK((v = plm_gguf_get(g, "t.f64")) && v->v.f64 == -2.25);
        CHECK((v = plm_gguf_get(g, "t.arr_i32")) && v->v.arr.n == 3 && plm_gguf_arr_int(v, 1) == -2);
        CHECK((v = plm_gguf_get(g, "t.arr_str")) && v->v.arr.n == 2 && v->v.arr.items[1].v.str.len == 2);
        CHECK((v = plm_gguf_get(g, "t.nested")) && v->v.arr.n == 2 && v->v.arr.items[0].v.arr.n == 2 &&
              plm_gguf_arr_int(&v->v.arr.items[1], 0) == 9);
        uint32_t u = 0;
        CHECK(plm_gguf_get_u32(g, "t.u32", true, &u) == PLM_OK && u == 4000000000u);
        int32_t i = 0;
        CHECK(plm_gguf_get_i32(g, "t.u32", true, &i) == PLM_ERR_FORMAT); /* out of int32 range */
        CHECK(strstr(plm_last_error(), "t.u32") != NULL);
        CHECK(plm_gguf_get_u32(g, "t.str", true, &u) == PLM_ERR_FORMAT);
        CHECK(plm_gguf_get_u32(g, "missing.key", true, &u) == PLM_ERR_FORMAT);
        CHECK(strstr(plm_last_error(), "missing.key") != NULL);
        CHECK(plm_gguf_get_u32(g, "missing.key", false, &u) == PLM_OK);
        char *s = NULL;
        CHECK(plm_gguf_get_str(g, "t.str", true, &s) == PLM_OK && s && strcmp(s, "héllo") == 0);
        free(s);
        const plm_gguf_tensor *t = plm_gguf_tensor_find(g, "b.weight");
        CHECK(t && t->ne[0] == 8 && t->nbytes == 32 && ((const float *)t->data)[3] == 13.0f);
        t = plm_gguf_tensor_find(g, "a.weight");
        CHECK(t && t->ne[1] == 2 && ((const float *)t->data)[7] == 7.0f);
        plm_gguf_close(g);
        free(b.p);
    }
}

/* Every strict prefix of a valid file is rejected with a message, never a crash. */
static void test_truncation_everywhere(void) {
    buf b = make_valid(3);
    int bad = 0;
    for (size_t n = 0; n < b.n; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan catches any overread */
        memcpy(copy, b.p, n);
        plm_gguf *g = NULL;
        plm_status st = plm_gguf_open_memory(copy, n, &g);
        if (st == PLM_OK || g != NULL || plm_last_error()[0] == 0) bad++;
        plm_gguf_close(g);
        free(copy);
    }
    CHECKF(bad == 0, "%d of %zu truncations were accepted or gave no message", bad, b.n);
    free(b.p);
}

static plm_status expect_fail(buf *b, plm_status want, const char *needle) {
    plm_gguf *g = NULL;
    plm_status st = open_buf(b, &g);
    CHECKF(st == want, "got %s (%s), want %s", plm_status_str(st), plm_last_error(), plm_status_str(want));
    if (needle) CHECKF(strstr(plm_last_error(), needle) != NULL, "message '%s' lacks '%s'", plm_last_error(), needle);
    plm_gguf_close(g);
    free(b->p);
    b->p = NULL;
    return st;
}

static void test_bad_headers(void) {
    buf b = make_valid(3);
    memcpy(b.p, "GGUG", 4);
    expect_fail(&b, PLM_ERR_FORMAT, "magic");
    b = make_valid(3);
    b.p[4] = 1;
    expect_fail(&b, PLM_ERR_UNSUPPORTED, "version 1");
    b = make_valid(3);
    b.p[4] = 9;
    expect_fail(&b, PLM_ERR_UNSUPPORTED, "version 9");
    b = make_valid(3);
    b.p[4] = 0; b.p[7] = 3; /* byte-swapped version */
    expect_fail(&b, PLM_ERR_UNSUPPORTED, "big-endian");
    b = (buf){0};
    header(&b, 3, 0, 0xFFFFFFFFFFFFull); /* absurd key count */
    expect_fail(&b, PLM_ERR_FORMAT, "metadata keys");
    b = (buf){0};
    header(&b, 3, 1ull << 60, 0); /* absurd tensor count */
    expect_fail(&b, PLM_ERR_FORMAT, "tensors");
}

static void test_bad_values(void) {
    buf b = {0};
    header(&b, 3, 0, 1);
    u64(&b, 1ull << 62); /* key length past the end */
    u64(&b, 0); u64(&b, 0);
    expect_fail(&b, PLM_ERR_FORMAT, "past the end");
    b = (buf){0};
    header(&b, 3, 0, 1);
    str(&b, "k"); u32(&b, PLM_GGUF_STRING); u64(&b, 0xFFFFFFFFFFFFFFF0ull);
    expect_fail(&b, PLM_ERR_FORMAT, "'k'");
    b = (buf){0};
    header(&b, 3, 0, 1);
    str(&b, "k"); u32(&b, 77); u32(&b, 0);
    expect_fail(&b, PLM_ERR_FORMAT, "unknown value type");
    b = (buf){0};
    header(&b, 3, 0, 1);
    str(&b, "k"); u32(&b, PLM_GGUF_ARRAY); u32(&b, PLM_GGUF_U32); u64(&b, 1ull << 61);
    expect_fail(&b, PLM_ERR_FORMAT, "elements");
    b = (buf){0};
    header(&b, 3, 0, 1);
    str(&b, "k"); u32(&b, PLM_GGUF_ARRAY); u32(&b, PLM_GGUF_STRING); u64(&b, 3); str(&b, "x");
    expect_fail(&b, PLM_ERR_FORMAT, NULL);
    b = (buf){0};
    header(&b, 3, 0, 1);
    str(&b, "k"); u32(&b, PLM_GGUF_BOOL); u8(&b, 2);
    expect_fail(&b, PLM_ERR_FORMAT, "bool");
    b = (buf){0}; /* arrays nested too deep */
    header(&b, 3, 0, 1);
    str(&b, "k"); u32(&b, PLM_GGUF_ARRAY);
    for (int d = 0; d < 20; d++) { u32(&b, PLM_GGUF_ARRAY); u64(&b, 1); }
    u32(&b, PLM_GGUF_U8); u64(&b, 0);
    expect_fail(&b, PLM_ERR_FORMAT, "nested");
    b = (buf){0};
    header(&b, 3, 0, 2);
    kv_u32(&b, "dup", 1);
    kv_u32(&b, "dup", 2);
    expect_fail(&b, PLM_ERR_FORMAT, "twice");
    b = (buf){0};
    header(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 24);
    expect_fail(&b, PLM_ERR_FORMAT, "alignment");
}

/* One tensor with the given fields after a minimal header. */
static buf one_tensor(uint32_t nd, const uint64_t *ne, uint32_t type, uint64_t off, size_t data_bytes) {
    buf b = {0};
    header(&b, 3, 1, 0);
    str(&b, "w");
    u32(&b, nd);
    for (uint32_t i = 0; i < nd; i++) u64(&b, ne[i]);
    u32(&b, type);
    u64(&b, off);
    pad_to(&b, 32);
    for (size_t i = 0; i < data_bytes; i++) u8(&b, 0);
    return b;
}

static void test_bad_tensors(void) {
    uint64_t ne[4] = {32, 2, 1, 1};
    buf b = one_tensor(2, ne, PLM_TYPE_F32, 0, 256);
    plm_gguf *g = NULL;
    CHECK(open_buf(&b, &g) == PLM_OK);
    plm_gguf_close(g);
    free(b.p);
    b = one_tensor(2, ne, PLM_TYPE_F32, 0, 255); /* data one byte short */
    expect_fail(&b, PLM_ERR_FORMAT, "past the end");
    b = one_tensor(2, ne, PLM_TYPE_F32, 0xFFFFFFFFFFFFFFE0ull, 256); /* offset + size overflows */
    expect_fail(&b, PLM_ERR_FORMAT, "'w'");
    b = one_tensor(2, ne, PLM_TYPE_F32, 8, 512); /* misaligned */
    expect_fail(&b, PLM_ERR_FORMAT, "alignment");
    b = one_tensor(2, ne, 99, 0, 256); /* unknown type */
    expect_fail(&b, PLM_ERR_UNSUPPORTED, "type");
    b = one_tensor(2, ne, PLM_TYPE_Q8_K, 0, 256); /* activation-only type as a weight */
    expect_fail(&b, PLM_ERR_UNSUPPORTED, "type");
    uint64_t ne2[2] = {33, 1};
    b = one_tensor(2, ne2, PLM_TYPE_Q4_0, 0, 256); /* row not a multiple of the block */
    expect_fail(&b, PLM_ERR_FORMAT, "block size");
    uint64_t ne3[4] = {1ull << 40, 1ull << 40, 1, 1}; /* element count overflows */
    b = one_tensor(2, ne3, PLM_TYPE_F32, 0, 0);
    expect_fail(&b, PLM_ERR_FORMAT, NULL);
    uint64_t ne5[5] = {1, 1, 1, 1, 1};
    b = one_tensor(5, ne5, PLM_TYPE_F32, 0, 64);
    expect_fail(&b, PLM_ERR_FORMAT, "dimensions");
    uint64_t ne0[2] = {0, 4};
    b = one_tensor(2, ne0, PLM_TYPE_F32, 0, 64);
    expect_fail(&b, PLM_ERR_FORMAT, "shape");
    /* duplicate names */
    b = (buf){0};
    header(&b, 3, 2, 0);
    str(&b, "w"); u32(&b, 1); u64(&b, 8); u32(&b, PLM_TYPE_F32); u64(&b, 0);
    str(&b, "w"); u32(&b, 1); u64(&b, 8); u32(&b, PLM_TYPE_F32); u64(&b, 32);
    pad_to(&b, 32);
    for (int i = 0; i < 64; i++) u8(&b, 0);
    expect_fail(&b, PLM_ERR_FORMAT, "twice");
    /* overlapping data */
    b = (buf){0};
    header(&b, 3, 2, 0);
    str(&b, "x"); u32(&b, 1); u64(&b, 16); u32(&b, PLM_TYPE_F32); u64(&b, 0);
    str(&b, "y"); u32(&b, 1); u64(&b, 16); u32(&b, PLM_TYPE_F32); u64(&b, 32);
    pad_to(&b, 32);
    for (int i = 0; i < 128; i++) u8(&b, 0);
    expect_fail(&b, PLM_ERR_FORMAT, "overlap");
}

/* Random byte flips of a valid file: any outcome but a crash (ASan run checks reads). */
static void test_random_corruption(void) {
    buf b = make_valid(3);
    uint64_t rng = 12345;
    int accepted = 0;
    for (int iter = 0; iter < 3000; iter++) {
        uint8_t *copy = malloc(b.n);
        memcpy(copy, b.p, b.n);
        int flips = 1 + iter % 4;
        for (int f = 0; f < flips; f++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(rng >> 33) % b.n;
            copy[at] ^= (uint8_t)(1u << ((rng >> 20) & 7));
        }
        plm_gguf *g = NULL;
        if (plm_gguf_open_memory(copy, b.n, &g) == PLM_OK) accepted++;
        plm_gguf_close(g);
        free(copy);
    }
    CHECK(accepted < 3000); /* most corruptions are caught; none crashed */
    free(b.p);
}

static void write_file(const char *path, const buf *b) {
    FILE *f = fopen(path, "wb");
    fwrite(b->p, 1, b->n, f);
    fclose(f);
}

static void test_model_load_errors(void) {
    plm_model *m = NULL;
    CHECK(plm_model_load("/nonexistent/model.gguf", NULL, &m) == PLM_ERR_IO && m == NULL);
    CHECK(strstr(plm_last_error(), "/nonexistent/model.gguf") != NULL);
    char path[] = "/tmp/plm_test_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    buf b = {0};
    header(&b, 3, 0, 1);
    kv_str(&b, "general.architecture", "mamba");
    write_file(path, &b);
    CHECK(plm_model_load(path, NULL, &m) == PLM_ERR_UNSUPPORTED && m == NULL);
    CHECKF(strstr(plm_last_error(), "'mamba'") != NULL, "%s", plm_last_error());
    free(b.p);
    b = (buf){0};
    header(&b, 3, 0, 0);
    write_file(path, &b);
    CHECK(plm_model_load(path, NULL, &m) == PLM_ERR_FORMAT);
    CHECKF(strstr(plm_last_error(), "general.architecture") != NULL, "%s", plm_last_error());
    free(b.p);
    write_file(path, &(buf){(uint8_t *)"not a model", 11, 11});
    CHECK(plm_model_load(path, NULL, &m) == PLM_ERR_FORMAT);
    write_file(path, &(buf){(uint8_t *)"", 0, 0});
    CHECK(plm_model_load(path, NULL, &m) == PLM_ERR_FORMAT);
    CHECK(plm_model_load("/tmp", NULL, &m) == PLM_ERR_IO);
    unlink(path);
}

static void test_real_model_file(void) {
    char path[4096];
    REQUIRE(plm_default_model_path(path, sizeof path) == PLM_OK);
    plm_gguf *g = NULL;
    plm_status st = plm_gguf_open(path, true, &g);
    REQUIRE(st == PLM_OK);
    CHECK(g->version == 3 && g->n_tensors == 272);
    char *arch = NULL;
    CHECK(plm_gguf_get_str(g, "general.architecture", true, &arch) == PLM_OK && strcmp(arch, "llama") == 0);
    free(arch);
    const plm_gguf_value *toks = NULL;
    CHECK(plm_gguf_get_arr(g, "tokenizer.ggml.tokens", true, PLM_GGUF_STRING, &toks) == PLM_OK && toks->v.arr.n == 49152);
    plm_gguf_close(g);
    /* the same file read without mmap */
    CHECK(plm_gguf_open(path, false, &g) == PLM_OK);
    plm_gguf_close(g);
}

int main(void) {
    RUN(test_valid_v3_and_v2);
    RUN(test_truncation_everywhere);
    RUN(test_bad_headers);
    RUN(test_bad_values);
    RUN(test_bad_tensors);
    RUN(test_random_corruption);
    RUN(test_model_load_errors);
    RUN(test_real_model_file);
    return TEST_SUMMARY();
}
