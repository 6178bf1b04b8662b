/*
 * fuzz_gguf.c — libFuzzer harness for the model loader: the input is a whole
 * GGUF file. It is parsed from memory (plm_gguf_open_memory) and, when that
 * succeeds, loaded as a model through a memfd (metadata, vocabulary,
 * hyperparameters, weight binding), and if that succeeds too, one token is
 * decoded. Any outcome but a crash, a sanitizer report or a leak is fine.
 */
#include "gguf.h"
#include "pocketlm.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
    }
    close(fd);
    return 0;
}
