/*
 * test_gguf.c — the GGUF reader and model loading from bad files.
 *
 * The reader: every value type, v2 and v3; every strict prefix of a file and
 * random byte flips give a status and a message, never a crash (in memory, so
 * that ASan sees any read past the buffer). Model loading: every case of the
 * malformed-GGUF generator (malformed_gguf.c; the same files the Python and
 * Lua tests load) through plm_model_load, mapped and read, with the status and
 * message each case expects; the valid base model loads and runs; the
 * check_tensors option finds NaN and infinities in tensor data.
 */
#include "gguf.h"
#include "malformed_gguf.h"
#include "quant.h"
#include "test.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* A valid file with one key of every type, a nested array and two F32 tensors. */
static mg_buf make_valid(uint32_t version) {
    mg_buf b = {0};
    mg_header(&b, version, 2, 17);
    mg_kv_str(&b, "general.architecture", "llama");
    mg_str(&b, "t.u8"); mg_u32(&b, PLM_GGUF_U8); mg_u8(&b, 200);
    mg_str(&b, "t.i8"); mg_u32(&b, PLM_GGUF_I8); mg_u8(&b, (uint8_t)-5);
    mg_str(&b, "t.u16"); mg_u32(&b, PLM_GGUF_U16); { uint16_t v = 60000; mg_put(&b, &v, 2); }
    mg_str(&b, "t.i16"); mg_u32(&b, PLM_GGUF_I16); { int16_t v = -30000; mg_put(&b, &v, 2); }
    mg_kv_u32(&b, "t.u32", 4000000000u);
    mg_str(&b, "t.i32"); mg_u32(&b, PLM_GGUF_I32); { int32_t v = -2000000000; mg_put(&b, &v, 4); }
    mg_str(&b, "t.f32"); mg_u32(&b, PLM_GGUF_F32); { float v = 1.5f; mg_put(&b, &v, 4); }
    mg_str(&b, "t.bool"); mg_u32(&b, PLM_GGUF_BOOL); mg_u8(&b, 1);
    mg_kv_str(&b, "t.str", "héllo");
    mg_str(&b, "t.u64"); mg_u32(&b, PLM_GGUF_U64); mg_u64(&b, 1ull << 40);
    mg_str(&b, "t.i64"); mg_u32(&b, PLM_GGUF_I64); mg_u64(&b, (uint64_t)-7);
    mg_str(&b, "t.f64"); mg_u32(&b, PLM_GGUF_F64); { double v = -2.25; mg_put(&b, &v, 8); }
    mg_str(&b, "t.arr_i32"); mg_u32(&b, PLM_GGUF_ARRAY); mg_u32(&b, PLM_GGUF_I32); mg_u64(&b, 3);
    { int32_t v[3] = {1, -2, 3}; mg_put(&b, v, 12); }
    mg_str(&b, "t.arr_str"); mg_u32(&b, PLM_GGUF_ARRAY); mg_u32(&b, PLM_GGUF_STRING); mg_u64(&b, 2); mg_str(&b, "a"); mg_str(&b, "bc");
    /* nested: array of 2 arrays of u8 */
    mg_str(&b, "t.nested"); mg_u32(&b, PLM_GGUF_ARRAY); mg_u32(&b, PLM_GGUF_ARRAY); mg_u64(&b, 2);
    mg_u32(&b, PLM_GGUF_U8); mg_u64(&b, 2); mg_u8(&b, 7); mg_u8(&b, 8);
    mg_u32(&b, PLM_GGUF_U8); mg_u64(&b, 1); mg_u8(&b, 9);
    mg_kv_u32(&b, "general.alignment", 32);
    /* tensors */
    mg_str(&b, "a.weight"); mg_u32(&b, 2); mg_u64(&b, 4); mg_u64(&b, 2); mg_u32(&b, PLM_TYPE_F32); mg_u64(&b, 0);
    mg_str(&b, "b.weight"); mg_u32(&b, 1); mg_u64(&b, 8); mg_u32(&b, PLM_TYPE_F32); mg_u64(&b, 32);
    mg_pad_to(&b, 32);
    for (int i = 0; i < 8; i++) { float v = (float)i; mg_put(&b, &v, 4); }
    for (int i = 0; i < 8; i++) { float v = (float)(10 + i); mg_put(&b, &v, 4); }
    return b;
}

static plm_status open_buf(const mg_buf *b, plm_gguf **g) { return plm_gguf_open_memory(b->p, b->n, g); }

static void test_valid_v3_and_v2(void) {
    for (uint32_t ver = 2; ver <= 3; ver++) {
        mg_buf b = make_valid(ver);
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

/* Every strict prefix of a file is rejected with a message, never a crash. */
static void truncate_everywhere(const mg_buf *b, const char *what) {
    int bad = 0;
    for (size_t n = 0; n < b->n; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan catches any overread */
        memcpy(copy, b->p, n);
        plm_gguf *g = NULL;
        plm_clear_error();
        plm_status st = plm_gguf_open_memory(copy, n, &g);
        if (st == PLM_OK || g != NULL || plm_last_error()[0] == 0) bad++;
        plm_gguf_close(g);
        free(copy);
    }
    CHECKF(bad == 0, "%s: %d of %zu truncations were accepted or gave no message", what, bad, b->n);
}

static void test_truncation_everywhere(void) {
    mg_buf b = make_valid(3);
    truncate_everywhere(&b, "every-type file");
    mg_buf_free(&b);
    mg_base_model(&b);
    truncate_everywhere(&b, "base model");
    mg_buf_free(&b);
}

/* Flips bits at random in p[0, n). */
static void flip_bits(uint8_t *p, size_t n, int flips, uint64_t *rng) {
    for (int f = 0; f < flips; f++) {
        *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t at = (size_t)(*rng >> 33) % n;
        p[at] ^= (uint8_t)(1u << ((*rng >> 20) & 7));
    }
}

/* Random byte flips of a valid file: any outcome but a crash (ASan run checks reads). */
static void test_random_corruption(void) {
    mg_buf b = make_valid(3);
    uint64_t rng = 12345;
    int accepted = 0;
    for (int iter = 0; iter < 3000; iter++) {
        uint8_t *copy = malloc(b.n);
        memcpy(copy, b.p, b.n);
        flip_bits(copy, b.n, 1 + iter % 4, &rng);
        plm_gguf *g = NULL;
        if (plm_gguf_open_memory(copy, b.n, &g) == PLM_OK) accepted++;
        plm_gguf_close(g);
        free(copy);
    }
    CHECK(accepted < 3000); /* most corruptions are caught; none crashed */
    free(b.p);
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    if (n) fwrite(p, 1, n, f);
    fclose(f);
}

/* The base model runs: its vocabulary tokenizes, a context decodes, the logits are finite. */
static void check_runs(plm_model *m, const char *what) {
    plm_model_info info;
    CHECK(plm_model_get_info(m, &info) == PLM_OK);
    CHECKF(strcmp(info.arch, "llama") == 0 && info.n_vocab == 8 && info.n_embd == 32 && info.n_layer == 1, "%s", what);
    plm_token toks[16];
    int32_t n = 0;
    CHECKF(plm_tokenize(m, "ab a", 4, true, false, toks, 16, &n) == PLM_OK && n >= 2 && toks[0] == 1, "%s: %s", what, plm_last_error());
    plm_context_params cp = plm_context_default_params();
    cp.n_ctx = 32;
    cp.n_threads = 1;
    plm_context *ctx = NULL;
    if (plm_context_create(m, &cp, &ctx) != PLM_OK) {
        CHECKF(0, "%s: context: %s", what, plm_last_error());
        return;
    }
    plm_batch batch = {.n_tokens = n, .token = toks};
    CHECKF(plm_decode(ctx, &batch) == PLM_OK, "%s: decode: %s", what, plm_last_error());
    const float *logits = plm_context_logits(ctx, -1);
    CHECK(logits != NULL);
    for (int i = 0; logits && i < 8; i++) CHECKF(isfinite(logits[i]), "%s: logit %d = %g", what, i, (double)logits[i]);
    plm_context_free(ctx);
}

/* Random bit flips of the base model, loaded through a file: two flips in three
 * land in the header, metadata and tensor infos, the rest anywhere. Whatever the
 * loader accepts must also decode without a crash. */
static void test_random_corruption_model(void) {
    mg_buf b;
    size_t data_start = mg_base_model(&b);
    char path[] = "/tmp/plm_corrupt_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    uint64_t rng = 777;
    int accepted = 0, iters = 600;
    uint8_t *copy = malloc(b.n);
    for (int iter = 0; iter < iters; iter++) {
        memcpy(copy, b.p, b.n);
        flip_bits(copy, iter % 3 ? data_start : b.n, 1 + iter % 3, &rng);
        write_file(path, copy, b.n);
        plm_model *m = NULL;
        plm_clear_error();
        plm_status st = plm_model_load(path, NULL, &m);
        if (st == PLM_OK) {
            accepted++;
            plm_token toks[8];
            int32_t n = 0;
            plm_context_params cp = plm_context_default_params();
            cp.n_ctx = 16;
            cp.n_threads = 1;
            plm_context *ctx = NULL;
            if (plm_tokenize(m, "ab", 2, true, false, toks, 8, &n) == PLM_OK && n > 0 && plm_context_create(m, &cp, &ctx) == PLM_OK) {
                plm_batch batch = {.n_tokens = n, .token = toks};
                (void)plm_decode(ctx, &batch); /* corrupt weights may give any logits; it must not crash */
                plm_context_free(ctx);
            }
        } else {
            CHECKF(m == NULL && plm_last_error()[0] != 0, "flip %d: %s without a message", iter, plm_status_str(st));
        }
        plm_model_free(m);
    }
    fprintf(stderr, "  %d of %d corrupted models loaded (and decoded)\n", accepted, iters);
    CHECK(accepted < iters);
    free(copy);
    unlink(path);
    mg_buf_free(&b);
}

/* Every generated case through the public API, mapped and read into memory. */
static void test_malformed_cases(void) {
    mg_cases c;
    mg_build_all(&c);
    char dir[] = "/tmp/plm_malformed_XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    REQUIRE(mg_write_dir(&c, dir) == 0);
    int n_cat;
    const char *const *cats = mg_categories(&n_cat);
    int per_cat[32] = {0}, failed = 0;
    for (int i = 0; i < c.n; i++) {
        const mg_case *k = &c.v[i];
        for (int j = 0; j < n_cat; j++) per_cat[j] += strcmp(k->category, cats[j]) == 0;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, k->file);
        for (int mm = 0; mm < 2; mm++) {
            plm_model_params mp = plm_model_default_params();
            mp.use_mmap = mm == 0;
            plm_model *m = NULL;
            plm_clear_error();
            plm_status st = plm_model_load(path, &mp, &m);
            const char *msg = plm_last_error();
            bool ok = st == k->status && (st == PLM_OK ? m != NULL : m == NULL && mg_message_matches(k->needles, msg) && strstr(msg, path));
            if (!ok) {
                failed++;
                CHECKF(0, "%s (%s; %s): got %s \"%s\", want %s with \"%s\"", k->file, k->defect, mm ? "read" : "mapped", plm_status_str(st), msg,
                       plm_status_str(k->status), k->needles);
            }
            if (st == PLM_OK && m) check_runs(m, k->file);
            plm_model_free(m);
        }
        unlink(path);
    }
    fprintf(stderr, "  %d malformed-GGUF cases (%d failed):", c.n, failed);
    for (int j = 0; j < n_cat; j++) {
        fprintf(stderr, " %s %d%s", cats[j], per_cat[j], j + 1 < n_cat ? "," : "\n");
        CHECKF(per_cat[j] > 0, "category %s has no case", cats[j]);
    }
    char manifest[4096];
    snprintf(manifest, sizeof manifest, "%s/manifest.tsv", dir);
    unlink(manifest);
    CHECK(rmdir(dir) == 0);
    mg_cases_free(&c);
}

/* Errors that are not about the bytes: no file, a directory, an empty file. */
static void test_model_load_errors(void) {
    plm_model *m = NULL;
    CHECK(plm_model_load("/nonexistent/model.gguf", NULL, &m) == PLM_ERR_IO && m == NULL);
    CHECK(strstr(plm_last_error(), "/nonexistent/model.gguf") != NULL);
    CHECK(plm_model_load("/tmp", NULL, &m) == PLM_ERR_IO && m == NULL);
    CHECK(strstr(plm_last_error(), "not a regular file") != NULL);
    char path[] = "/tmp/plm_test_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    CHECK(plm_model_load(path, NULL, &m) == PLM_ERR_FORMAT && m == NULL);
    CHECK(strstr(plm_last_error(), "empty file") != NULL);
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

/* check_tensors: a non-finite float anywhere in the tensor data (an element of
 * an F32 or F16 matrix the loader never converts, the fp16 scale of a block of
 * a quantized tensor) fails the load with the tensor and place named; without
 * the flag those files load (the loader checks only what it converts). The
 * base model and the real default model pass. */
static void test_check_tensors(void) {
    static const struct {
        const char *tensor;
        int64_t index;    /* element (float types) or block (quantized) */
        uint16_t f16;     /* the bits written (F16 elements and block scales) */
        uint32_t f32;     /* ... or these (F32) */
        const char *needles;
    } cases[] = {
        {"blk.0.attn_output.weight", 100, 0, 0x7FC00000u, "tensor 'blk.0.attn_output.weight' element 100 is NaN"},
        {"blk.0.attn_output.weight", 1023, 0, 0xFF800000u, "tensor 'blk.0.attn_output.weight' element 1023 is -Inf"},
        {"blk.0.ffn_up.weight", 7, 0x7C00u, 0, "tensor 'blk.0.ffn_up.weight' element 7 is +Inf"},
        {"blk.0.attn_q.weight", 3, 0x7E00u, 0, "tensor 'blk.0.attn_q.weight' (Q8_0) block 3 has scale d = NaN"},
        {"blk.0.ffn_gate.weight", 31, 0xFC00u, 0, "tensor 'blk.0.ffn_gate.weight' (Q4_0) block 31 has scale d = -Inf"},
    };
    mg_buf b;
    mg_base_model(&b);
    plm_gguf *g = NULL;
    REQUIRE(plm_gguf_open_memory(b.p, b.n, &g) == PLM_OK);
    char path[] = "/tmp/plm_check_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    plm_model_params checked = plm_model_default_params(), plain = plm_model_default_params();
    checked.check_tensors = true;
    uint8_t *copy = malloc(b.n);
    REQUIRE(copy);
    plm_model *m = NULL;
    write_file(path, b.p, b.n);
    CHECKF(plm_model_load(path, &checked, &m) == PLM_OK, "%s", plm_last_error());
    plm_model_free(m);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const plm_gguf_tensor *t = plm_gguf_tensor_find(g, cases[c].tensor);
        REQUIRE(t);
        const plm_type_traits *tt = plm_type_traits_get(t->type);
        size_t at = (size_t)((const uint8_t *)t->data - b.p);
        memcpy(copy, b.p, b.n);
        if (t->type == PLM_TYPE_F32) memcpy(copy + at + 4 * (size_t)cases[c].index, &cases[c].f32, 4);
        else if (t->type == PLM_TYPE_F16) memcpy(copy + at + 2 * (size_t)cases[c].index, &cases[c].f16, 2);
        else memcpy(copy + at + tt->type_size * (size_t)cases[c].index, &cases[c].f16, 2); /* d comes first */
        write_file(path, copy, b.n);
        m = NULL;
        CHECKF(plm_model_load(path, &checked, &m) == PLM_ERR_FORMAT && m == NULL, "case %zu", c);
        CHECKF(strstr(plm_last_error(), cases[c].needles) != NULL, "case %zu: %s", c, plm_last_error());
        CHECKF(plm_model_load(path, &plain, &m) == PLM_OK, "case %zu without check_tensors: %s", c, plm_last_error());
        plm_model_free(m);
    }
    free(copy);
    unlink(path);
    plm_gguf_close(g);
    free(b.p);
    /* no false alarm on a real file (Q4_1 blocks with d and m, F32 norms) */
    checked.use_mmap = true;
    m = NULL;
    CHECKF(plm_model_load(NULL, &checked, &m) == PLM_OK, "%s", plm_last_error());
    plm_model_free(m);
}

int main(void) {
    RUN(test_valid_v3_and_v2);
    RUN(test_truncation_everywhere);
    RUN(test_random_corruption);
    RUN(test_malformed_cases);
    RUN(test_random_corruption_model);
    RUN(test_model_load_errors);
    RUN(test_real_model_file);
    RUN(test_check_tensors);
    return TEST_SUMMARY();
}
