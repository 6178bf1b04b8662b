/*
 * tokenizer.h — the vocabulary and tokenizers (internal).
 *
 * vocab.c reads tokenizer.ggml.* from a GGUF (tokens, types, merges, scores,
 * special ids, pre-tokenizer name), and dispatches to the model's algorithm:
 * byte-level BPE (tokenizer.ggml.model = "gpt2") in bpe.c with its
 * pre-tokenizers in pretok.c, or SentencePiece ("llama") in spm.c. Unicode
 * tables live in unicode.c. model.c owns the plm_vocab through plm_model.
 */
#ifndef PLM_TOKENIZER_H
#define PLM_TOKENIZER_H

#include "gguf.h"

typedef struct plm_vocab plm_vocab;

/* Token types as GGUF stores them (tokenizer.ggml.token_type). */
enum {
    PLM_TOKEN_TYPE_UNDEFINED = 0,
    PLM_TOKEN_TYPE_NORMAL = 1,
    PLM_TOKEN_TYPE_UNKNOWN = 2,
    PLM_TOKEN_TYPE_CONTROL = 3,
    PLM_TOKEN_TYPE_USER_DEFINED = 4,
    PLM_TOKEN_TYPE_UNUSED = 5,
    PLM_TOKEN_TYPE_BYTE = 6
};

/* Builds the vocabulary from g's metadata. g must outlive the vocab (strings may
 * point into its mapping). Unknown tokenizer models or pre-tokenizers give
 * PLM_ERR_UNSUPPORTED naming them. Free with plm_vocab_free. */
plm_status plm_vocab_load(const plm_gguf *g, plm_vocab **out);
void plm_vocab_free(plm_vocab *v);

int32_t plm_vocab_n_tokens(const plm_vocab *v);
/* Special ids, -1 when absent. */
plm_token plm_vocab_bos(const plm_vocab *v);
plm_token plm_vocab_eos(const plm_vocab *v);
plm_token plm_vocab_eot(const plm_vocab *v);
bool plm_vocab_add_bos(const plm_vocab *v);
bool plm_vocab_add_eos(const plm_vocab *v);
/* End of generation: EOS, EOT, and control tokens such as <|im_end|>, <|eot_id|>, <end_of_turn>. */
bool plm_vocab_is_eog(const plm_vocab *v, plm_token t);
/* Control or user-defined (matched in text only with parse_special). */
bool plm_vocab_is_special(const plm_vocab *v, plm_token t);
int32_t plm_vocab_token_type(const plm_vocab *v, plm_token t);
/* Id of the token whose text (as the GGUF stores it) is exactly text[0..len), or -1. */
plm_token plm_vocab_find(const plm_vocab *v, const char *text, size_t len);

/* tokenizer.ggml.add_space_prefix as loaded (false for BPE). Whoever joins the
 * pieces of a whole sequence should drop one leading space from the first
 * token's piece when this is true, as llama.cpp's detokenize does (a leading
 * BOS has no space, so then nothing is dropped); the pieces themselves keep it,
 * as in llama.cpp's token_to_piece. */
bool plm_vocab_add_space_prefix(const plm_vocab *v);

/* Same contract as plm_tokenize in pocketlm.h. */
plm_status plm_vocab_tokenize(const plm_vocab *v, const char *text, size_t len, bool add_special,
                              bool parse_special, plm_token *out, int32_t cap, int32_t *n_out);
/* Same contract as plm_token_to_piece in pocketlm.h (raw bytes of the token). */
plm_status plm_vocab_piece(const plm_vocab *v, plm_token t, bool special, char *buf, size_t cap,
                           size_t *n_out);

#endif
