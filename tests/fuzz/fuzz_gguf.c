/*
 * fuzz_gguf.c — libFuzzer harness for the model loader: the input is a whole
 * GGUF file. It is parsed from memory (plm_gguf_open_memory) and, when that
 * succeeds, loaded as a model through a memfd (metadata, vocabulary,
 * hyperparameters, weight binding), and if that succeeds too, one token is
 * decoded. The same file is also loaded as a LoRA adapter (lora.c: names,
 * shapes, types) against the tiny llama of tests/data/tiny (the harness runs
 * from the repository root; the seed corpus holds its adapters), and when it
 * loads, one token is decoded with it. Any outcome but a crash, a sanitizer
 * report or a leak is fine.
 */
#include "gguf.h"
#include "pocketlm.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static plm_model *adapter_base; /* the tiny llama, loaded once (NULL when not found) */

static void free_adapter_base(void) { plm_model_free(adapter_base); }

static void try_adapter(const char *path) {
    static int tried;
    if (!tried) {
        tried = 1;
        if (plm_model_load("tests/data/tiny/llama.gguf", NULL, &adapter_base) != PLM_OK) adapter_base = NULL;
        else atexit(free_adapter_base);
    }
    plm_adapter *a = NULL;
    if (!adapter_base || plm_adapter_load(adapter_base, path, &a) != PLM_OK) return;
    plm_context_params cp = plm_context_default_params();
    cp.n_ctx = 16;
    cp.n_threads = 1;
    plm_context *ctx = NULL;
    if (plm_context_create(adapter_base, &cp, &ctx) == PLM_OK) {
        plm_token t = 1;
        plm_batch b = {.n_tokens = 1, .token = &t};
        if (plm_context_set_adapters(ctx, 1, &a, NULL) == PLM_OK) plm_decode(ctx, &b);
        plm_context_free(ctx);
    }
    plm_adapter_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    plm_gguf *g = NULL;
    if (plm_gguf_open_memory(data, size, &g) != PLM_OK) return 0;
    char buf[256];
    for (uint64_t i = 0; i < g->n_kv; i++) plm_gguf_value_format(&g->kv[i].value, buf, sizeof buf);
    plm_gguf_close(g);

    int fd = memfd_create("fuzz.gguf", 0);
    if (fd < 0) return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        plm_model *m = NULL;
        if (plm_model_load(path, NULL, &m) == PLM_OK) {
            plm_context_params cp = plm_context_default_params();
            cp.n_ctx = 16;
            cp.n_threads = 1;
            plm_context *ctx = NULL;
            if (plm_context_create(m, &cp, &ctx) == PLM_OK) {
                plm_token t = 0;
                plm_batch b = {.n_tokens = 1, .token = &t};
                plm_decode(ctx, &b);
                plm_context_free(ctx);
            }
            plm_model_free(m);
        }
        try_adapter(path);
    }
    close(fd);
    return 0;
}
