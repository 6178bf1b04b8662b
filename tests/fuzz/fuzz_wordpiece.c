/*
 * fuzz_wordpiece.c — libFuzzer harness for the WordPiece tokenizer
 * (tokenizer/wordpiece.c) on tests/data/tiny/bert.gguf, a real WordPiece
 * vocabulary subset (or $POCKETLM_FUZZ_BERT). Arbitrary bytes, invalid UTF-8
 * included, must tokenize to ids in range, and BERT's rules must hold:
 * [CLS] first and [SEP] last with add_special; surrounding whitespace changes
 * nothing (words are split at it); ASCII upper case gives the ids of lower
 * case (the vocabulary lower-cases). The tokens are then embedded as one text
 * when they fit the model's positions.
 */
#include "pocketlm.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static plm_model *model;
static plm_context *ctx;
static plm_model_info info;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *path = getenv("POCKETLM_FUZZ_BERT");
    if (!path || !*path) path = "tests/data/tiny/bert.gguf";
    plm_context_params cp = plm_context_default_params();
    cp.n_threads = 1;
    if (plm_model_load(path, NULL, &model) != PLM_OK || plm_context_create(model, &cp, &ctx) != PLM_OK) {
        fprintf(stderr, "fuzz_wordpiece: %s\n", plm_last_error());
        abort();
    }
    plm_model_get_info(model, &info);
    if (strcmp(info.arch, "bert") != 0) {
        fprintf(stderr, "fuzz_wordpiece: %s is not a bert model\n", path);
        abort();
    }
    return 0;
}

/* Tokens of text[0..len) (a new array, *n of them); aborts on an unexpected failure. */
static plm_token *tokenize(const char *text, size_t len, bool add_special, int32_t *n) {
    plm_status st = plm_tokenize(model, text, len, add_special, false, NULL, 0, n);
    if (st != PLM_OK && st != PLM_ERR_BUFFER) abort();
    plm_token *t = malloc(((size_t)*n + 1) * sizeof(plm_token));
    if (!t || plm_tokenize(model, text, len, add_special, false, t, *n, n) != PLM_OK) abort();
    for (int32_t i = 0; i < *n; i++)
        if (t[i] < 0 || t[i] >= info.n_vocab) abort();
    return t;
}

static bool same(const plm_token *a, int32_t na, const plm_token *b, int32_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof(plm_token)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    const char *text = (const char *)data;
    int32_t n, n2, n3;
    plm_token *t = tokenize(text, size, true, &n);
    if (n < 2 || t[0] != info.bos || t[n - 1] != info.eos) abort();

    char *buf = malloc(size + 4);
    if (!buf) abort();
    buf[0] = ' ';
    buf[1] = '\n';
    memcpy(buf + 2, text, size);
    buf[size + 2] = '\t';
    plm_token *t2 = tokenize(buf, size + 3, true, &n2);
    if (!same(t, n, t2, n2)) abort();

    for (size_t i = 0; i < size; i++) buf[i] = (char)(data[i] >= 'a' && data[i] <= 'z' ? data[i] - 32 : data[i]);
    plm_token *t3 = tokenize(buf, size, true, &n3);
    plm_token *t4 = NULL;
    int32_t n4 = 0;
    for (size_t i = 0; i < size; i++) buf[i] = (char)(data[i] >= 'A' && data[i] <= 'Z' ? data[i] + 32 : data[i]);
    t4 = tokenize(buf, size, true, &n4);
    if (!same(t3, n3, t4, n4)) abort();

    if (n <= info.n_ctx_train) {
        float out[64];
        const plm_token *tp = t;
        if (info.n_embd > 64 || plm_embed(ctx, &tp, &n, 1, PLM_POOL_MEAN, true, out) != PLM_OK) abort();
    }
    free(buf);
    free(t);
    free(t2);
    free(t3);
    free(t4);
    return 0;
}
