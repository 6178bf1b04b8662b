/*
 * fuzz_tokenizer.c — libFuzzer harness for tokenization and detokenization of
 * arbitrary bytes (invalid UTF-8 included) with the default model's vocabulary
 * (or $POCKETLM_FUZZ_MODEL, e.g. a SentencePiece vocabulary). The first byte
 * picks add_special / parse_special; the tokens are detokenized again, and the
 * input is also read as token ids. Valid UTF-8 text without specials must
 * round-trip exactly. Every pre-tokenizer (pretok.c, whatever the model's) also
 * splits the text: the words must tile it, each boundary on a character.
 */
#include "pocketlm.h"
#include "tokenizer/tokenizer_impl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static plm_model *model;
static int32_t n_vocab;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *path = getenv("POCKETLM_FUZZ_MODEL");
    if (plm_model_load(path, NULL, &model) != PLM_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", plm_last_error());
        abort();
    }
    plm_model_info in;
    plm_model_get_info(model, &in);
    n_vocab = in.n_vocab;
    return 0;
}

static int valid_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k = c < 0x80 ? 1 : (c >= 0xC2 && c < 0xE0) ? 2 : (c >= 0xE0 && c < 0xF0) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (!k || i + k > n) return 0;
        for (size_t j = 1; j < k; j++) if ((s[i + j] & 0xC0) != 0x80) return 0;
        if (k == 3 && ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0))) return 0;
        if (k == 4 && ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90))) return 0;
        i += k;
    }
    return 1;
}

/* Splits text with every pre-tokenizer; aborts unless the words tile it
 * with no empty word and no boundary inside a UTF-8 sequence. */
static void check_pretokenizers(const char *text, size_t len) {
    static const plm_pretok_kind kinds[] = {PLM_PRETOK_DEFAULT, PLM_PRETOK_GPT2, PLM_PRETOK_SMOLLM, PLM_PRETOK_LLAMA3,
                                            PLM_PRETOK_QWEN2, PLM_PRETOK_QWEN35, PLM_PRETOK_FALCON,
                                            PLM_PRETOK_DEEPSEEK_LLM, PLM_PRETOK_DEEPSEEK_CODER};
    const int valid = valid_utf8((const uint8_t *)text, len);
    plm_pretok_buf b = {0};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        const size_t *w = NULL;
        size_t n = 0;
        if (plm_pretok_split(kinds[k], text, len, &b, &w, &n) != PLM_OK) abort();
        if (w[0] != 0 || w[n] != len || (len && !n)) abort();
        for (size_t i = 0; i < n; i++) {
            if (w[i + 1] <= w[i]) abort();
            if (valid && ((uint8_t)text[w[i]] & 0xC0) == 0x80) abort(); /* a cut inside a character */
        }
    }
    plm_pretok_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    check_pretokenizers((const char *)data + 1, size - 1);
    const bool add_special = data[0] & 1, parse_special = data[0] & 2;
    const char *text = (const char *)data + 1;
    const size_t len = size - 1;
    int32_t n = 0;
    plm_status st = plm_tokenize(model, text, len, add_special, parse_special, NULL, 0, &n);
    if (st != PLM_OK && st != PLM_ERR_BUFFER) abort(); /* tokenizing bytes never fails otherwise */
    plm_token *toks = malloc(((size_t)n + 1) * sizeof(plm_token));
    if (plm_tokenize(model, text, len, add_special, parse_special, toks, n, &n) != PLM_OK) abort();
    for (int32_t i = 0; i < n; i++) if (toks[i] < 0 || toks[i] >= n_vocab) abort();
    size_t need = 0;
    st = plm_detokenize(model, toks, n, false, NULL, 0, &need);
    char *out = malloc(need + 1);
    if (plm_detokenize(model, toks, n, false, out, need, &need) != PLM_OK) abort();
    plm_model_info in;
    plm_model_get_info(model, &in);
    /* plain valid text (no specials, no added tokens, no NUL or control bytes a
     * vocabulary may lack) comes back byte for byte */
    int plain = !add_special && !parse_special && valid_utf8((const uint8_t *)text, len) && !memchr(text, '<', len);
    /* SmolLM2's byte-level vocabulary has no tokens for the lead bytes F1-F4
     * (planes 4-16, unassigned or private use): such characters are dropped */
    for (size_t i = 0; plain && i < len; i++)
        plain = ((uint8_t)text[i] >= 0x20 || text[i] == '\n' || text[i] == '\t') && (uint8_t)text[i] < 0xF1;
    if (plain && strcmp(in.arch, "llama") == 0 && (need != len || memcmp(out, text, len) != 0)) abort();
    free(out);
    free(toks);
    /* the input as token ids, in range or not */
    int32_t m = (int32_t)(len / 4);
    plm_token *ids = malloc(((size_t)m + 1) * sizeof(plm_token));
    memcpy(ids, text, (size_t)m * 4);
    char piece[512];
    size_t k;
    for (int32_t i = 0; i < m; i++) plm_token_to_piece(model, ids[i], (i & 1) != 0, piece, sizeof piece, &k);
    plm_detokenize(model, ids, m, true, piece, sizeof piece, &k);
    free(ids);
    return 0;
}
