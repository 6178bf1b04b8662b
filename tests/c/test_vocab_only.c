/*
 * test_vocab_only.c — loading the vocabulary alone (plm_model_params.vocab_only):
 * the default model loaded that way tokenizes, detokenizes and describes itself
 * exactly as when loaded whole; anything that needs weights (contexts, and so
 * decoding, generation, classification, embeddings) is refused with an error
 * saying the model was loaded vocabulary-only; a vocabulary file of an
 * architecture pocketlm does not run, with no tensors (as llama.cpp's
 * ggml-vocab-*.gguf are), loads and tokenizes, and still fails without
 * vocab_only naming the architecture.
 */
#include "malformed_gguf.h"
#include "pocketlm.h"
#include "test.h"

#include <unistd.h>

static plm_model *load(const char *path, bool vocab_only, plm_status *st) {
    plm_model_params p = plm_model_default_params();
    p.vocab_only = vocab_only;
    plm_model *m = NULL;
    *st = plm_model_load(path, &p, &m);
    return m;
}

static void test_default_off(void) { CHECK(!plm_model_default_params().vocab_only); }

static int tokenize(const plm_model *m, const char *text, bool special, plm_token *out, int cap) {
    int32_t n = 0;
    plm_status st = plm_tokenize(m, text, strlen(text), true, special, out, cap, &n);
    return st ? -1 : n;
}

/* The default model both ways: same tokens, pieces and info. */
static void test_default_model_same_tokens(void) {
    plm_status st;
    plm_model *full = load(NULL, false, &st);
    REQUIRE(st == PLM_OK && full);
    plm_model *voc = load(NULL, true, &st);
    if (st || !voc) {
        plm_model_free(full);
        REQUIRE(0);
    }
    static const char *texts[] = {"Hello world", "  two  spaces\n\nand 12345 digits", "<|im_start|>user\nHi<|im_end|>",
                                  "caf\xc3\xa9 \xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87", ""};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        for (int special = 0; special < 2; special++) {
            plm_token a[128], b[128];
            int na = tokenize(full, texts[i], special, a, 128), nb = tokenize(voc, texts[i], special, b, 128);
            CHECKF(na >= 0 && na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0, "text %zu special %d: %d vs %d tokens", i,
                   special, na, nb);
            char ta[512], tb[512];
            size_t la = 0, lb = 0;
            CHECK(plm_detokenize(full, a, na, true, ta, sizeof ta, &la) == PLM_OK);
            CHECK(plm_detokenize(voc, a, na, true, tb, sizeof tb, &lb) == PLM_OK);
            CHECK(la == lb && memcmp(ta, tb, la) == 0);
        }
    }
    plm_model_info fi, vi;
    REQUIRE(plm_model_get_info(full, &fi) == PLM_OK && plm_model_get_info(voc, &vi) == PLM_OK);
    CHECK(strcmp(fi.arch, vi.arch) == 0);
    CHECK(strcmp(fi.chat_template, vi.chat_template) == 0 && fi.chat_template[0]);
    CHECK(fi.n_vocab == vi.n_vocab && vi.n_vocab == 49152);
    CHECK(fi.bos == vi.bos && fi.eos == vi.eos && fi.eot == vi.eot && fi.add_bos == vi.add_bos);
    CHECK(strcmp(vi.file_type, "none") == 0 && vi.n_layer == 0);
    CHECK(plm_model_meta_count(full) == plm_model_meta_count(voc));
    plm_chat_format fa, fb;
    CHECK(plm_chat_detect_model(full, &fa) == PLM_OK && plm_chat_detect_model(voc, &fb) == PLM_OK && fa.family == fb.family &&
          fa.default_system_len == fb.default_system_len);
    plm_model_free(full);
    plm_model_free(voc);
}

/* Everything that runs the model goes through a context, and both ways in are shut. */
static void test_weights_refused(void) {
    plm_status st;
    plm_model *voc = load(NULL, true, &st);
    REQUIRE(st == PLM_OK && voc);
    plm_context *ctx = (plm_context *)1;
    CHECK(plm_context_create(voc, NULL, &ctx) == PLM_ERR_ARG && ctx == NULL);
    CHECKF(strstr(plm_last_error(), "plm_context_create") && strstr(plm_last_error(), "vocabulary-only") &&
               strstr(plm_last_error(), "vocab_only"),
           "%s", plm_last_error());
    size_t bytes = 1;
    CHECK(plm_context_memory_needed(voc, NULL, &bytes) == PLM_ERR_ARG && bytes == 0);
    CHECKF(strstr(plm_last_error(), "vocabulary-only"), "%s", plm_last_error());
    plm_model_free(voc);
}

static void kv_arr_str(mg_buf *b, const char *key, const char *const *items, size_t n) {
    mg_str(b, key);
    mg_u32(b, 9); /* array */
    mg_u32(b, 8); /* of strings */
    mg_u64(b, n);
    for (size_t i = 0; i < n; i++) mg_str(b, items[i]);
}

/* A byte-level BPE vocabulary of architecture "falcon" with no tensors: the
 * 256 GPT-2 byte characters, "he", "llo", "hello" and their merges. */
static void write_falcon_vocab(const char *path) {
    static char chars[256][4];
    const char *tokens[260], *merges[4] = {"h e", "l l", "ll o", "he llo"};
    size_t n = 0;
    int next = 256;
    for (int b = 0; b < 256; b++) {
        /* GPT-2's byte -> code point map: printable Latin-1 maps to itself, the rest to U+0100 on. */
        int cp = ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174)) ? b : next++;
        if (cp < 0x80) chars[b][0] = (char)cp;
        else {
            chars[b][0] = (char)(0xc0 | (cp >> 6));
            chars[b][1] = (char)(0x80 | (cp & 0x3f));
        }
        tokens[n++] = chars[b];
    }
    tokens[n++] = "he";    /* 256 */
    tokens[n++] = "ll";    /* 257 */
    tokens[n++] = "llo";   /* 258 */
    tokens[n++] = "hello"; /* 259 */
    mg_buf b = {0};
    mg_header(&b, 3, 0, 5);
    mg_kv_str(&b, "general.architecture", "falcon");
    mg_kv_str(&b, "tokenizer.ggml.model", "gpt2");
    mg_kv_str(&b, "tokenizer.ggml.pre", "gpt-2");
    kv_arr_str(&b, "tokenizer.ggml.tokens", tokens, n);
    kv_arr_str(&b, "tokenizer.ggml.merges", merges, 4);
    mg_pad_to(&b, 32);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(b.p, 1, b.n, f);
        fclose(f);
    }
    mg_buf_free(&b);
}

static void test_vocabulary_file(void) {
    char path[] = "/tmp/plm_vocab_only_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    write_falcon_vocab(path);
    plm_status st;
    plm_model *m = load(path, false, &st);
    CHECK(st == PLM_ERR_UNSUPPORTED && !m);
    CHECKF(strstr(plm_last_error(), "'falcon'"), "%s", plm_last_error());
    m = load(path, true, &st);
    CHECKF(st == PLM_OK && m, "%s", plm_last_error());
    if (m) {
        plm_token t[8];
        int n = tokenize(m, "hello hello", false, t, 8);
        CHECK(n == 3 && t[0] == 259 && t[1] == ' ' && t[2] == 259); /* "Ġ" is the token of byte 32 */
        plm_model_info info;
        CHECK(plm_model_get_info(m, &info) == PLM_OK && strcmp(info.arch, "falcon") == 0 && info.n_vocab == 260);
        plm_context *ctx = NULL;
        CHECK(plm_context_create(m, NULL, &ctx) == PLM_ERR_ARG && !ctx);
        plm_model_free(m);
    }
    unlink(path);
}

int main(void) {
    RUN(test_default_off);
    RUN(test_default_model_same_tokens);
    RUN(test_weights_refused);
    RUN(test_vocabulary_file);
    return TEST_SUMMARY();
}
