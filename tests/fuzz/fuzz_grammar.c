/*
 * fuzz_grammar.c — libFuzzer harness for the constraint compilers and the
 * matcher: the first byte picks GBNF, JSON Schema, a regular expression or a
 * choice list (one choice per line), the rest up to a 0xFF byte is the text
 * and what follows is input walked through the matcher byte by byte. Reading
 * must either succeed or fail with PLM_ERR_ARG and a message; a walk must give
 * states that are alive (>= 0) or dead (-1), never anything else, and a
 * state that accepts must stay alive. The same walk in a matcher in
 * reference mode (each step computed alone, no rows filled ahead) must agree
 * at every byte on alive and accepting.
 */
#include "grammar/grammar.h"
#include "pocketlm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 8192) return 0;
    int mode = data[0] % 4;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    const uint8_t *sep = memchr(text, 0xFF, n);
    size_t tlen = sep ? (size_t)(sep - (const uint8_t *)text) : n;
    const uint8_t *input = sep ? sep + 1 : NULL;
    size_t ilen = sep ? n - tlen - 1 : 0;
    plm_grammar *g = NULL;
    plm_status st;
    if (mode == 0) st = plm_grammar_parse(text, tlen, NULL, &g);
    else if (mode == 1) st = plm_grammar_from_json_schema(text, tlen, &g);
    else if (mode == 2) st = plm_grammar_from_regex(text, tlen, &g);
    else {
        const char *choices[64];
        size_t lens[64];
        int32_t k = 0;
        size_t start = 0;
        for (size_t i = 0; i <= tlen && k < 64; i++)
            if (i == tlen || text[i] == '\n') {
                choices[k] = text + start;
                lens[k++] = i - start;
                start = i + 1;
            }
        st = plm_grammar_from_choices(choices, lens, k, &g);
    }
    if (st != PLM_OK) {
        if (g || (st != PLM_ERR_ARG && st != PLM_ERR_OOM) || !plm_last_error()[0]) abort();
        return 0;
    }
    plm_gmatch_universe *u = NULL, *ref = NULL;
    if (plm_gmu_create(g, &u) == PLM_OK && plm_gmu_create(g, &ref) == PLM_OK) {
        plm_gmu_set_reference(ref);
        int32_t s = plm_gmu_start(u), r = plm_gmu_start(ref);
        if (s < 0 || r < 0) abort(); /* a grammar that reads has a start */
        for (size_t i = 0; i < ilen && s >= 0; i++) {
            s = plm_gmu_step(u, s, input[i]);
            r = plm_gmu_step(ref, r, input[i]);
            if (s < -1 || r < -1 || (s >= 0) != (r >= 0)) abort();
            if (s >= 0 && plm_gmu_accepts(u, s) != plm_gmu_accepts(ref, r)) abort();
        }
        if (s >= 0 && plm_gmu_finished(u, s) && !plm_gmu_accepts(u, s)) abort();
    }
    plm_gmu_free(u);
    plm_gmu_free(ref);
    plm_grammar_free(g);
    return 0;
}
