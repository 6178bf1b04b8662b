/*
 * tokenizer_impl.h — what the tokenizer's files share and nobody else sees:
 * the layout of plm_vocab, the output sink, and the entry points of the
 * pre-tokenizers (pretok.c), of byte-level BPE (bpe.c) and of SentencePiece
 * (spm.c).
 */
#ifndef PLM_TOKENIZER_IMPL_H
#define PLM_TOKENIZER_IMPL_H

#include "tokenizer.h"

/* Pre-tokenizers: each is a fixed sequence of the splits llama.cpp applies for
 * a family of tokenizer.ggml.pre names (see the table in vocab.c). */
typedef enum plm_pretok_kind {
    PLM_PRETOK_DEFAULT, /* no or "default" pre: punctuation runs, GPT-2, digit runs, ASCII digit triples */
    PLM_PRETOK_GPT2,    /* the GPT-2 pattern alone */
    PLM_PRETOK_SMOLLM,  /* each digit alone, then the GPT-2 pattern (smollm, starcoder, ...) */
    PLM_PRETOK_LLAMA3,  /* the Llama 3 pattern: digits in groups of up to three */
    PLM_PRETOK_QWEN2,   /* the Llama 3 pattern with single digits */
    PLM_PRETOK_QWEN35,  /* the Qwen2 pattern with combining marks inside words */
    PLM_PRETOK_FALCON,  /* punctuation and symbol runs, GPT-2, ASCII digit triples */
    PLM_PRETOK_DEEPSEEK_LLM,  /* line breaks, letter runs, punctuation runs, trailing spaces, CJK runs, digit runs */
    PLM_PRETOK_DEEPSEEK_CODER /* line breaks, letter runs, punctuation runs, CJK runs, single digits */
} plm_pretok_kind;

/* The tokenizer algorithm, from tokenizer.ggml.model. */
typedef enum plm_vocab_kind {
    PLM_VOCAB_BPE, /* "gpt2": byte-level BPE over merges (bpe.c) */
    PLM_VOCAB_SPM, /* "llama": SentencePiece, score-driven merges with byte fallback (spm.c) */
    PLM_VOCAB_WPM  /* "bert": WordPiece, BERT's normalizer and greedy longest pieces (wordpiece.c) */
} plm_vocab_kind;

typedef struct plm_tok_info {
    const char *text;  /* as stored in the GGUF (points into its mapping); not NUL-terminated */
    const char *piece; /* the bytes the token stands for (see plm_vocab_piece) */
    uint32_t len;
    uint32_t piece_len;
    float score;  /* tokenizer.ggml.scores (SentencePiece); 0 for BPE */
    uint8_t type; /* PLM_TOKEN_TYPE_*, after the end-of-generation promotions */
} plm_tok_info;

typedef struct plm_text_slot {
    uint32_t hash; /* high half of the text's hash: most probes end here, without touching the text */
    int32_t id;    /* -1 marks an empty slot */
} plm_text_slot;

typedef struct plm_merge_slot {
    uint64_t key;   /* (left id << 32) | right id */
    int32_t rank;   /* position in tokenizer.ggml.merges; -1 marks an empty slot */
    int32_t result; /* id of the merged token */
} plm_merge_slot;

struct plm_vocab {
    plm_vocab_kind kind;
    int32_t n_tokens;
    uint32_t max_token_len; /* longest stored text, in bytes */
    plm_tok_info *tok;
    char *piece_buf; /* decoded pieces of normal tokens */

    plm_text_slot *text_slots; /* open-addressing table of ids keyed by text */
    uint64_t text_mask;

    plm_merge_slot *merges; /* open-addressing table keyed by the id pair */
    uint64_t merge_mask;

    /* Token of each byte, -1 if missing: for BPE the token of the byte's GPT-2
     * code point; for SentencePiece the byte-fallback token <0xNN> (or, as in
     * llama.cpp, the one-character token of an ASCII byte when <0xNN> is absent). */
    int32_t byte_tok[256];

    int32_t *specials; /* control, user-defined and unknown tokens, longest text first */
    int32_t n_specials;

    uint8_t *eog; /* 1 for end-of-generation tokens */

    plm_token bos, eos, eot, eom, unk, pad;
    bool add_bos, add_eos;
    bool ignore_merges; /* a word that is itself a token is emitted whole (Llama 3) */
    bool add_space_prefix; /* SentencePiece: a space before text that starts the input or follows a special token */
    plm_pretok_kind pretok;

    /* SentencePiece: the code points that some token has right before a "▁"
     * (other than "▁"), sorted; spm.c cuts words before every other "▁". */
    uint32_t *spm_glue;
    size_t n_spm_glue;

    /* WordPiece: tokenizer.wordpiece.* (true and 100 when absent, as llama.cpp assumes) */
    bool wpm_lowercase, wpm_strip_accents, wpm_chinese_chars;
    uint32_t wpm_max_chars; /* a longer word is one [UNK] */
};

/* U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's space. */
#define PLM_SPM_SPACE "\xe2\x96\x81"

/* Output sink: counts every token, stores those that fit. */
typedef struct plm_tok_out {
    plm_token *out;
    int64_t cap;
    int64_t n;
} plm_tok_out;

static inline void plm_tok_push(plm_tok_out *o, plm_token t) {
    if (o->n < o->cap) o->out[o->n] = t;
    o->n++;
}

/* Id of the token whose stored text is exactly s[0..n), or -1. */
plm_token plm_vocab_lookup(const plm_vocab *v, const char *s, size_t n);
/* Rank and result of merging left and right, or -1 rank when they do not merge. */
int32_t plm_vocab_merge(const plm_vocab *v, plm_token left, plm_token right, plm_token *result);

/* Reusable buffers for pre-tokenization; zero-initialize, free with plm_pretok_free. */
typedef struct plm_pretok_buf {
    uint32_t *cps;   /* code point of each unit (PLM_CP_INVALID for an invalid byte) */
    uint16_t *flags; /* PLM_UCAT_* of each unit */
    size_t *offs;    /* byte offset of each unit, plus the end */
    size_t *bounds;  /* word boundaries in units: bounds[0] = 0 < ... < bounds[n] */
    size_t *tmp;
    size_t cap; /* elements in each array */
} plm_pretok_buf;

/* Splits text[0..len) into words. On success words[i] = [(*word_offs)[i],
 * (*word_offs)[i+1]) in bytes for i < *n_words; the array lives in b. A unit
 * is one valid UTF-8 sequence or one invalid byte. */
plm_status plm_pretok_split(plm_pretok_kind kind, const char *text, size_t len, plm_pretok_buf *b,
                            const size_t **word_offs, size_t *n_words);
void plm_pretok_free(plm_pretok_buf *b);

/* Scratch memory of one tokenization (bpe.c); reused across its fragments. */
typedef struct plm_bpe_buf plm_bpe_buf;
plm_bpe_buf *plm_bpe_buf_new(void);
void plm_bpe_buf_free(plm_bpe_buf *b);

/* Byte-level BPE of one piece of plain text (no special tokens in it): splits
 * it with the vocabulary's pre-tokenizer and appends the tokens to o. */
plm_status plm_bpe_tokenize(const plm_vocab *v, const char *text, size_t len, plm_bpe_buf *b, plm_tok_out *o);

/* Scratch memory of SentencePiece tokenization (spm.c); reused across fragments. */
typedef struct plm_spm_buf plm_spm_buf;
plm_spm_buf *plm_spm_buf_new(void);
void plm_spm_buf_free(plm_spm_buf *b);

/* SentencePiece (llama.cpp's "SPM") of one piece of plain text (no special
 * tokens in it): spaces become U+2581, with one more in front when
 * space_prefix, then characters merge by token score and what is left
 * unmerged falls back to byte tokens. Appends the tokens to o. */
plm_status plm_spm_tokenize(const plm_vocab *v, const char *text, size_t len, bool space_prefix, plm_spm_buf *b,
                            plm_tok_out *o);

/* Scratch memory of WordPiece tokenization (wordpiece.c); reused across fragments. */
typedef struct plm_wpm_buf plm_wpm_buf;
plm_wpm_buf *plm_wpm_buf_new(void);
void plm_wpm_buf_free(plm_wpm_buf *b);

/* WordPiece of one piece of plain text (no special tokens in it): BERT's
 * normalizer and pre-tokenizer, then each word's greedy longest pieces, [UNK]
 * for a word that cannot be covered. Appends the tokens to o. */
plm_status plm_wpm_tokenize(const plm_vocab *v, const char *text, size_t len, plm_wpm_buf *b, plm_tok_out *o);

#endif
