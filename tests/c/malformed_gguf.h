/*
 * malformed_gguf.h — a generator of malformed GGUF model files, shared by the
 * tests of all three languages.
 *
 * malformed_gguf.c builds, from scratch, a tiny but complete llama model (an
 * 8-token SentencePiece vocabulary, one block, F32/F16/Q8_0/Q4_0 weights) that
 * plm_model_load accepts and runs, and then one file per defect: truncation at
 * every structural boundary, bad magic and versions, absurd counts, lengths
 * past the end, offset and size overflows, misalignment, unknown types,
 * duplicates, shapes and types that disagree with the data or the model,
 * missing keys and tensors, NaN and infinities in the floats the loader uses.
 * Each case carries the status plm_model_load must return and substrings its
 * message must contain. test_gguf.c loads them through the public API; the
 * program build/plm-malformed DIR (plm_malformed.c) writes them with a manifest
 * (manifest.tsv: file, status, needles, category, defect) for the Python and
 * Lua tests.
 * It also holds the little-endian GGUF writer that test_gguf.c uses for its
 * own files.
 */
#ifndef PLM_MALFORMED_GGUF_H
#define PLM_MALFORMED_GGUF_H

#include "pocketlm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- writing GGUF by hand: a growing buffer of little-endian values ---- */

typedef struct mg_buf {
    uint8_t *p;
    size_t n, cap;
} mg_buf;

/* Appends (the test programs abort on out of memory: they are not the library). */
void mg_put(mg_buf *b, const void *d, size_t n);
void mg_u8(mg_buf *b, uint8_t v);
void mg_u32(mg_buf *b, uint32_t v);
void mg_u64(mg_buf *b, uint64_t v);
void mg_f32(mg_buf *b, float v);
void mg_f64(mg_buf *b, double v);
/* A GGUF string: u64 length, then the bytes (no NUL). */
void mg_str(mg_buf *b, const char *s);
void mg_pad_to(mg_buf *b, size_t align);
/* "GGUF", version, tensor count, key count. */
void mg_header(mg_buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv);
void mg_kv_u32(mg_buf *b, const char *key, uint32_t v);
void mg_kv_str(mg_buf *b, const char *key, const char *v);
void mg_buf_free(mg_buf *b);

/* ---- the cases ---- */

typedef struct mg_case {
    char file[96];          /* unique file name: "<category>-<slug>.gguf" */
    const char *category;   /* one of mg_categories() */
    plm_status status;      /* what plm_model_load must return (PLM_OK for the valid files) */
    char needles[256];      /* substrings the message must contain, separated by '|' */
    char defect[256];       /* what is wrong, and where */
    uint8_t *data;
    size_t size;
} mg_case;

typedef struct mg_cases {
    mg_case *v;
    int n, cap;
} mg_cases;

/* Builds every case (deterministic: the same bytes on every run). Free with mg_cases_free. */
void mg_build_all(mg_cases *out);
void mg_cases_free(mg_cases *c);

/* The bytes of the valid base model (GGUF v3), which every case derives from;
 * returns the offset of its data section (before it: header, metadata, tensor
 * infos). The caller frees b->p. */
size_t mg_base_model(mg_buf *b);

/* The categories, in the order cases are built; *n receives their number. */
const char *const *mg_categories(int *n);

/* Writes every case as DIR/<file> and the manifest DIR/manifest.tsv. Returns 0,
 * or -1 with a message on stderr. */
int mg_write_dir(const mg_cases *c, const char *dir);

/* True if msg contains every '|'-separated part of needles. */
bool mg_message_matches(const char *needles, const char *msg);

#endif
