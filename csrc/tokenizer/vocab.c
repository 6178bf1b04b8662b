/*
 * vocab.c — the vocabulary: loading tokenizer.ggml.* and the model-independent
 * parts of tokenizing.
 *
 * Owns reading and validating the token list, token types, merges, special
 * ids and flags; the text -> id and (left, right) -> merge hash tables; the
 * end-of-generation set; the pieces (the bytes each token stands for); and the
 * tokenize driver: BOS/EOS, and cutting special-token texts out of the input
 * before the model's algorithm sees the plain text between them. The rules
 * follow llama.cpp's llama-vocab.cpp, so that a GGUF means the same thing here
 * as there; where pocketlm differs it says so below.
 *
 * Three algorithms: byte-level BPE ("gpt2": bpe.c, with pretok.c), WordPiece
 * ("bert": wordpiece.c) and
 * SentencePiece ("llama": spm.c; scores instead of merges, <0xNN> byte
 * fallback, U+2581 for spaces, the add_space_prefix rule).
 */
#include "tokenizer_impl.h"
#include "unicode.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- pre-tokenizer names */

/* tokenizer.ggml.pre values (llama.cpp's names) and what each implies. */
typedef struct pre_info {
    const char *name;
    plm_pretok_kind kind;
    bool ignore_merges;
    bool add_bos; /* default when tokenizer.ggml.add_bos_token is absent */
} pre_info;

static const pre_info pre_table[] = {
    {"default", PLM_PRETOK_DEFAULT, false, false},
    /* Llama 3 */
    {"llama3", PLM_PRETOK_LLAMA3, true, true},
    {"llama-v3", PLM_PRETOK_LLAMA3, true, true},
    {"llama-bpe", PLM_PRETOK_LLAMA3, true, true},
    {"falcon3", PLM_PRETOK_LLAMA3, true, true},
    {"falcon-h1", PLM_PRETOK_LLAMA3, true, true},
    {"pixtral", PLM_PRETOK_LLAMA3, true, true},
    {"midm-2.0", PLM_PRETOK_LLAMA3, true, true},
    {"lfm2", PLM_PRETOK_LLAMA3, true, true},
    {"jina-v5-nano", PLM_PRETOK_LLAMA3, true, true},
    {"dbrx", PLM_PRETOK_LLAMA3, false, false},
    {"smaug-bpe", PLM_PRETOK_LLAMA3, false, false},
    /* Qwen2 */
    {"qwen2", PLM_PRETOK_QWEN2, false, false},
    {"deepseek-r1-qwen", PLM_PRETOK_QWEN2, false, false},
    {"kormo", PLM_PRETOK_QWEN2, false, false},
    {"f2llmv2", PLM_PRETOK_QWEN2, false, false},
    {"megrez", PLM_PRETOK_QWEN2, false, false},
    {"stablelm2", PLM_PRETOK_QWEN2, false, false},
    {"hunyuan", PLM_PRETOK_QWEN2, false, false},
    {"solar-open", PLM_PRETOK_QWEN2, false, false},
    {"qwen35", PLM_PRETOK_QWEN35, false, false},
    {"falcon", PLM_PRETOK_FALCON, false, false},
    {"deepseek-llm", PLM_PRETOK_DEEPSEEK_LLM, false, false},
    {"deepseek-coder", PLM_PRETOK_DEEPSEEK_CODER, false, false},
    /* single digits, then GPT-2 */
    {"smollm", PLM_PRETOK_SMOLLM, false, false},
    {"starcoder", PLM_PRETOK_SMOLLM, false, false},
    {"refact", PLM_PRETOK_SMOLLM, false, false},
    {"command-r", PLM_PRETOK_SMOLLM, false, false},
    {"codeshell", PLM_PRETOK_SMOLLM, false, false},
    {"exaone", PLM_PRETOK_SMOLLM, false, false},
    {"minerva-7b", PLM_PRETOK_SMOLLM, false, false},
    {"mellum2", PLM_PRETOK_SMOLLM, false, false},
    /* GPT-2 */
    {"gpt-2", PLM_PRETOK_GPT2, false, false},
    {"phi-2", PLM_PRETOK_GPT2, false, false},
    {"jina-es", PLM_PRETOK_GPT2, false, false},
    {"jina-de", PLM_PRETOK_GPT2, false, false},
    {"gigachat", PLM_PRETOK_GPT2, false, false},
    {"jina-v2-es", PLM_PRETOK_GPT2, false, false},
    {"jina-v2-de", PLM_PRETOK_GPT2, false, false},
    {"a.x-4.0", PLM_PRETOK_GPT2, false, false},
    {"mellum", PLM_PRETOK_GPT2, false, false},
    {"modern-bert", PLM_PRETOK_GPT2, false, false},
    {"mpt", PLM_PRETOK_GPT2, false, false},
    {"olmo", PLM_PRETOK_GPT2, false, false},
    {"jais", PLM_PRETOK_GPT2, false, false},
    {"trillion", PLM_PRETOK_GPT2, false, false},
    {"granite-docling", PLM_PRETOK_GPT2, false, false},
    {"exaone4", PLM_PRETOK_GPT2, false, false},
};

/* ------------------------------------------------------------- hashing */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h ^ (h >> 32);
}

static uint64_t hash_pair(uint64_t key) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 31);
}

/* Smallest power of two >= 2n (at least 16), or 0 on overflow. */
static uint64_t table_size(uint64_t n) {
    uint64_t c = 16;
    while (c < 2 * n) {
        if (c > (UINT64_MAX >> 2)) return 0;
        c *= 2;
    }
    return c;
}

plm_token plm_vocab_lookup(const plm_vocab *v, const char *s, size_t n) {
    uint64_t h = hash_bytes(s, n);
    uint32_t fp = (uint32_t)(h >> 32);
    for (uint64_t i = h & v->text_mask;; i = (i + 1) & v->text_mask) {
        plm_text_slot slot = v->text_slots[i];
        if (slot.id < 0) return -1;
        if (slot.hash != fp) continue;
        const plm_tok_info *t = &v->tok[slot.id];
        if (t->len == n && memcmp(t->text, s, n) == 0) return slot.id;
    }
}

/* Later duplicates replace earlier ones, as in llama.cpp's token_to_id map
 * (which now rejects such vocabularies). */
static void text_insert(plm_vocab *v, int32_t id) {
    const plm_tok_info *t = &v->tok[id];
    uint64_t h = hash_bytes(t->text, t->len);
    uint32_t fp = (uint32_t)(h >> 32);
    for (uint64_t i = h & v->text_mask;; i = (i + 1) & v->text_mask) {
        plm_text_slot *slot = &v->text_slots[i];
        if (slot->id < 0 ||
            (slot->hash == fp && v->tok[slot->id].len == t->len && memcmp(v->tok[slot->id].text, t->text, t->len) == 0)) {
            *slot = (plm_text_slot){fp, id};
            return;
        }
    }
}

int32_t plm_vocab_merge(const plm_vocab *v, plm_token left, plm_token right, plm_token *result) {
    if (!v->merges) return -1;
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    for (uint64_t i = hash_pair(key) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
        const plm_merge_slot *s = &v->merges[i];
        if (s->rank < 0) return -1;
        if (s->key == key) {
            *result = s->result;
            return s->rank;
        }
    }
}

/* The first (lowest-ranked) occurrence of a pair wins, as in llama.cpp. */
static void merge_insert(plm_vocab *v, plm_token left, plm_token right, int32_t rank, plm_token result) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    for (uint64_t i = hash_pair(key) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
        plm_merge_slot *s = &v->merges[i];
        if (s->rank < 0) {
            s->key = key;
            s->rank = rank;
            s->result = result;
            return;
        }
        if (s->key == key) return;
    }
}

/* ------------------------------------------------------------- loading */

static plm_status load_tokens(const plm_gguf *g, plm_vocab *v) {
    const plm_gguf_value *arr = NULL;
    plm_status st = plm_gguf_get_arr(g, "tokenizer.ggml.tokens", true, PLM_GGUF_STRING, &arr);
    if (st) return st;
    uint64_t n = arr->v.arr.n;
    if (n == 0 || n > INT32_MAX)
        return plm_fail(PLM_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %" PRIu64 " entries (1 to %d supported)", g->path, n, INT32_MAX);
    v->n_tokens = (int32_t)n;
    v->tok = calloc(n, sizeof *v->tok);
    v->eog = calloc(n, 1);
    if (!v->tok || !v->eog) return plm_fail(PLM_ERR_OOM, "out of memory for %" PRIu64 " tokens", n);
    for (uint64_t i = 0; i < n; i++) {
        const plm_gguf_str *s = &arr->v.arr.items[i].v.str;
        if (s->len > UINT32_MAX / 2)
            return plm_fail(PLM_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%" PRIu64 "] is %" PRIu64 " bytes long", g->path, i, s->len);
        if (!plm_utf8_valid(s->ptr, s->len))
            return plm_fail(PLM_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%" PRIu64 "] is not valid UTF-8", g->path, i);
        v->tok[i].text = s->ptr;
        v->tok[i].len = (uint32_t)s->len;
        v->tok[i].type = PLM_TOKEN_TYPE_NORMAL;
        v->max_token_len = PLM_MAX(v->max_token_len, (uint32_t)s->len);
    }

    const plm_gguf_value *types = NULL;
    if ((st = plm_gguf_get_arr(g, "tokenizer.ggml.token_type", false, PLM_GGUF_I32, &types))) return st;
    if (types) {
        if (types->v.arr.n != n)
            return plm_fail(PLM_ERR_FORMAT, "%s: tokenizer.ggml.token_type has %" PRIu64 " entries for %" PRIu64 " tokens", g->path,
                            types->v.arr.n, n);
        for (uint64_t i = 0; i < n; i++) {
            int64_t t = plm_gguf_arr_int(types, i);
            if (t < PLM_TOKEN_TYPE_UNDEFINED || t > PLM_TOKEN_TYPE_BYTE)
                return plm_fail(PLM_ERR_FORMAT, "%s: tokenizer.ggml.token_type[%" PRIu64 "] = %" PRId64 " is not a token type (0 to 6)", g->path,
                                i, t);
            v->tok[i].type = (uint8_t)t;
        }
    }

    uint64_t cap = table_size(n);
    v->text_slots = cap ? malloc(cap * sizeof *v->text_slots) : NULL;
    if (!v->text_slots) return plm_fail(PLM_ERR_OOM, "out of memory for the token table");
    memset(v->text_slots, 0xff, cap * sizeof *v->text_slots);
    v->text_mask = cap - 1;
    for (int32_t i = 0; i < v->n_tokens; i++) text_insert(v, i);
    return PLM_OK;
}

/* SentencePiece scores: float32 (or int32, which llama.cpp also reads), one per
 * token. Required here: without them every pair ties and the ids would mean
 * nothing, where llama.cpp silently scores every token 0. */
static plm_status load_scores(const plm_gguf *g, plm_vocab *v) {
    const char *key = "tokenizer.ggml.scores";
    const plm_gguf_value *arr = plm_gguf_get(g, key);
    if (!arr)
        return plm_fail(PLM_ERR_FORMAT, "%s: %s is missing (a SentencePiece vocabulary, tokenizer.ggml.model = 'llama', needs a score per token)",
                        g->path, key);
    if (arr->type != PLM_GGUF_ARRAY || (arr->v.arr.type != PLM_GGUF_F32 && arr->v.arr.type != PLM_GGUF_I32))
        return plm_gguf_get_arr(g, key, true, PLM_GGUF_F32, &arr); /* fails, naming the key and the type */
    if (arr->v.arr.n != (uint64_t)v->n_tokens)
        return plm_fail(PLM_ERR_FORMAT, "%s: %s has %" PRIu64 " entries for %d tokens (tokenizer.ggml.tokens)", g->path, key, arr->v.arr.n,
                        v->n_tokens);
    for (int32_t i = 0; i < v->n_tokens; i++) {
        double x = plm_gguf_arr_float(arr, (uint64_t)i);
        if (x != x) return plm_fail(PLM_ERR_FORMAT, "%s: %s[%d] is NaN", g->path, key, i);
        v->tok[i].score = (float)x;
    }
    return PLM_OK;
}

static plm_status load_merges(const plm_gguf *g, plm_vocab *v) {
    const plm_gguf_value *arr = NULL;
    plm_status st = plm_gguf_get_arr(g, "tokenizer.ggml.merges", true, PLM_GGUF_STRING, &arr);
    if (st) return st;
    uint64_t n = arr->v.arr.n;
    if (n > INT32_MAX) return plm_fail(PLM_ERR_FORMAT, "%s: tokenizer.ggml.merges has %" PRIu64 " entries", g->path, n);
    uint64_t cap = table_size(n);
    v->merges = cap ? malloc(cap * sizeof *v->merges) : NULL;
    if (!v->merges) return plm_fail(PLM_ERR_OOM, "out of memory for %" PRIu64 " merges", n);
    for (uint64_t i = 0; i < cap; i++) v->merges[i].rank = -1;
    v->merge_mask = cap - 1;

    char *joined = NULL;
    size_t joined_cap = 0;
    for (uint64_t i = 0; i < n; i++) {
        const plm_gguf_str *s = &arr->v.arr.items[i].v.str;
        /* "left right": the first space after the first byte separates them. */
        const char *sp = s->len > 1 ? memchr(s->ptr + 1, ' ', s->len - 1) : NULL;
        if (!sp) {
            free(joined);
            return plm_fail(PLM_ERR_FORMAT, "%s: tokenizer.ggml.merges[%" PRIu64 "] has no space between its two parts", g->path, i);
        }
        size_t ll = (size_t)(sp - s->ptr), rl = s->len - ll - 1;
        plm_token left = plm_vocab_lookup(v, s->ptr, ll), right = plm_vocab_lookup(v, sp + 1, rl);
        if (left < 0 || right < 0) continue; /* can never apply to token ids */
        if (ll + rl > joined_cap) {
            size_t c = PLM_MAX(ll + rl, 2 * joined_cap);
            char *j = realloc(joined, c);
            if (!j) {
                free(joined);
                return plm_fail(PLM_ERR_OOM, "out of memory reading merges");
            }
            joined = j;
            joined_cap = c;
        }
        memcpy(joined, s->ptr, ll);
        memcpy(joined + ll, sp + 1, rl);
        plm_token result = plm_vocab_lookup(v, joined, ll + rl);
        /* A merge whose result is not a token is dropped (Hugging Face rejects
         * such vocabularies; llama.cpp would produce an untokenizable symbol). */
        if (result < 0) continue;
        merge_insert(v, left, right, (int32_t)i, result);
    }
    free(joined);
    return PLM_OK;
}

/* Reads an optional token id key; present ids must name a token. */
static plm_status read_id(const plm_gguf *g, const plm_vocab *v, const char *key, plm_token *id) {
    const plm_gguf_value *val = plm_gguf_get(g, key);
    if (!val) return PLM_OK;
    int64_t x;
    if (val->type == PLM_GGUF_U8 || val->type == PLM_GGUF_U16 || val->type == PLM_GGUF_U32 || val->type == PLM_GGUF_U64)
        x = val->v.u64 > INT64_MAX ? INT64_MAX : (int64_t)val->v.u64;
    else if (val->type == PLM_GGUF_I8 || val->type == PLM_GGUF_I16 || val->type == PLM_GGUF_I32 || val->type == PLM_GGUF_I64)
        x = val->v.i64;
    else
        return plm_fail(PLM_ERR_FORMAT, "%s: metadata key '%s' should be a token id but is a %s", g->path, key, plm_gguf_type_name(val->type));
    if (x < 0 || x >= v->n_tokens)
        return plm_fail(PLM_ERR_FORMAT, "%s: %s = %" PRId64 " is not a token id (the vocabulary has %d tokens)", g->path, key, x, v->n_tokens);
    *id = (plm_token)x;
    return PLM_OK;
}

static plm_token find_cstr(const plm_vocab *v, const char *s) { return plm_vocab_lookup(v, s, strlen(s)); }

/* Texts llama.cpp recognizes when the file does not name the token. */
static const char *const eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
                                        "<EOT>", "_<EOT>", "[EOT]", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                        "<end_of_utterance>", NULL};
static const char *const eom_texts[] = {"<|eom_id|>", NULL};
static const char *const fim_pad_texts[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL};
static const char *const fim_rep_texts[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL};
static const char *const fim_sep_texts[] = {"<|file_sep|>", NULL};
/* Every token with one of these texts ends generation. */
static const char *const eog_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
                                        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
                                        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
                                        "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~[", NULL};

/* A token found by its text is treated as a control token, like llama.cpp does. */
static void detect(plm_vocab *v, const char *const *texts, plm_token *id) {
    if (*id >= 0) return;
    for (size_t i = 0; texts[i]; i++) {
        plm_token t = find_cstr(v, texts[i]);
        if (t >= 0) {
            *id = t;
            v->tok[t].type = PLM_TOKEN_TYPE_CONTROL;
            return;
        }
    }
}

static bool eog_has_text(const plm_vocab *v, const char *s) {
    plm_token t = find_cstr(v, s);
    return t >= 0 && v->eog[t];
}

static plm_status load_specials(const plm_gguf *g, plm_vocab *v) {
    plm_status st;
    plm_token fim_pad = -1, fim_rep = -1, fim_sep = -1;
    struct {
        const char *key;
        plm_token *id;
    } keys[] = {
        {"tokenizer.ggml.bos_token_id", &v->bos},         {"tokenizer.ggml.eos_token_id", &v->eos},
        {"tokenizer.ggml.eot_token_id", &v->eot},         {"tokenizer.ggml.eom_token_id", &v->eom},
        {"tokenizer.ggml.unknown_token_id", &v->unk},     {"tokenizer.ggml.padding_token_id", &v->pad},
        {"tokenizer.ggml.fim_pad_token_id", &fim_pad},    {"tokenizer.ggml.fim_rep_token_id", &fim_rep},
        {"tokenizer.ggml.fim_sep_token_id", &fim_sep},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if ((st = read_id(g, v, keys[i].key, keys[i].id))) return st;

    if ((st = plm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", false, &v->add_bos))) return st;
    if ((st = plm_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", false, &v->add_eos))) return st;
    if (v->add_bos && v->bos < 0)
        return plm_fail(PLM_ERR_FORMAT, "%s: the vocabulary asks for a BOS token (tokenizer.ggml.add_bos_token) but has none (tokenizer.ggml.bos_token_id)", g->path);
    if (v->add_eos && v->eos < 0)
        return plm_fail(PLM_ERR_FORMAT, "%s: the vocabulary asks for an EOS token (tokenizer.ggml.add_eos_token) but has none (tokenizer.ggml.eos_token_id)", g->path);

    detect(v, eot_texts, &v->eot);
    detect(v, eom_texts, &v->eom);
    detect(v, fim_pad_texts, &fim_pad);
    detect(v, fim_rep_texts, &fim_rep);
    detect(v, fim_sep_texts, &fim_sep);

    /* The end-of-generation set, as llama.cpp builds it. */
    plm_token named[] = {fim_pad, fim_rep, fim_sep, v->eos, v->eot, v->eom};
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (named[i] >= 0) v->eog[named[i]] = 1;
    for (size_t i = 0; eog_texts[i]; i++) {
        plm_token t = find_cstr(v, eog_texts[i]);
        if (t >= 0) {
            v->eog[t] = 1;
            v->tok[t].type = PLM_TOKEN_TYPE_CONTROL;
        }
    }
    /* gpt-oss and solar-open use <|end|> between messages, not to stop. */
    plm_token end = find_cstr(v, "<|end|>");
    bool has_return = eog_has_text(v, "<|return|>"), has_flush = eog_has_text(v, "<|flush|>");
    bool has_call = eog_has_text(v, "<|call|>") || eog_has_text(v, "<|calls|>");
    if (end >= 0 && v->eog[end] && has_call && (has_return || has_flush)) {
        v->eog[end] = 0;
        v->tok[end].type = PLM_TOKEN_TYPE_USER_DEFINED;
    }
    /* Gemma 4 and PLaMo use </s> as an ordinary token. */
    plm_token s_end = find_cstr(v, "</s>");
    if (s_end >= 0 && v->eog[s_end] && (eog_has_text(v, "<|tool_response>") || eog_has_text(v, "<|plamo:eos|>"))) {
        v->eog[s_end] = 0;
        v->tok[s_end].type = PLM_TOKEN_TYPE_NORMAL;
    }
    /* gpt-oss: always rendered. */
    static const char *const always_shown[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"};
    for (size_t i = 0; i < sizeof always_shown / sizeof always_shown[0]; i++) {
        plm_token t = find_cstr(v, always_shown[i]);
        if (t >= 0) v->tok[t].type = PLM_TOKEN_TYPE_USER_DEFINED;
    }
    return PLM_OK;
}

static bool matchable(const plm_tok_info *t) {
    return t->len > 0 && (t->type == PLM_TOKEN_TYPE_CONTROL || t->type == PLM_TOKEN_TYPE_USER_DEFINED || t->type == PLM_TOKEN_TYPE_UNKNOWN);
}

typedef struct len_id {
    uint32_t len;
    int32_t id;
} len_id;

/* Longest first; ties by id, so the order does not depend on qsort. */
static int by_length_desc(const void *a, const void *b) {
    const len_id *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static plm_status build_specials(plm_vocab *v) {
    int32_t n = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) n += matchable(&v->tok[i]);
    size_t sz = (size_t)(n ? n : 1);
    len_id *tmp = malloc(sz * sizeof *tmp);
    v->specials = malloc(sz * sizeof *v->specials);
    if (!tmp || !v->specials) {
        free(tmp);
        return plm_fail(PLM_ERR_OOM, "out of memory for the special tokens");
    }
    n = 0;
    for (int32_t i = 0; i < v->n_tokens; i++)
        if (matchable(&v->tok[i])) tmp[n++] = (len_id){v->tok[i].len, i};
    qsort(tmp, (size_t)n, sizeof *tmp, by_length_desc);
    for (int32_t i = 0; i < n; i++) v->specials[i] = tmp[i].id;
    v->n_specials = n;
    free(tmp);
    return PLM_OK;
}

/* "<0xAB>" -> 0xAB, else -1. */
static int byte_token_value(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Pieces, as llama.cpp's token_to_piece gives them. BPE: normal tokens are
 * decoded from GPT-2 code points to bytes (a code point outside the 256 is kept
 * as its UTF-8; llama.cpp writes an "[UNK_BYTE_...]" marker instead).
 * SentencePiece: normal tokens are their text with U+2581 as a space (the
 * leading space of a sequence stays; see plm_vocab_add_space_prefix). Both:
 * byte tokens give their byte (an SPM byte token whose text is not <0xNN> is
 * read as a normal one, where llama.cpp would parse garbage); control, unknown
 * and user-defined tokens their text as stored; unused and undefined nothing. */
static plm_status build_pieces(plm_vocab *v) {
    size_t total = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) total += v->tok[i].len + 1;
    v->piece_buf = malloc(total ? total : 1);
    if (!v->piece_buf) return plm_fail(PLM_ERR_OOM, "out of memory for token pieces");
    char *p = v->piece_buf;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        plm_tok_info *t = &v->tok[i];
        int byte = t->type == PLM_TOKEN_TYPE_BYTE ? byte_token_value(t->text, t->len) : -1;
        if (byte >= 0) {
            *p = (char)byte;
            t->piece = p++;
            t->piece_len = 1;
        } else if ((v->kind == PLM_VOCAB_SPM || v->kind == PLM_VOCAB_WPM) && (t->type == PLM_TOKEN_TYPE_NORMAL || t->type == PLM_TOKEN_TYPE_BYTE)) {
            char *start = p;
            for (size_t k = 0; k < t->len;) {
                if (t->len - k >= 3 && memcmp(t->text + k, PLM_SPM_SPACE, 3) == 0) {
                    *p++ = ' ';
                    k += 3;
                } else {
                    *p++ = t->text[k++];
                }
            }
            t->piece = start;
            t->piece_len = (uint32_t)(p - start);
        } else if (t->type == PLM_TOKEN_TYPE_NORMAL || t->type == PLM_TOKEN_TYPE_BYTE) {
            const uint8_t *s = (const uint8_t *)t->text;
            char *start = p;
            for (size_t k = 0; k < t->len;) {
                uint32_t cp;
                size_t l = plm_utf8_decode(s + k, t->len - k, &cp); /* valid: checked on load */
                int b = plm_cp_to_byte(cp);
                if (b >= 0) *p++ = (char)b;
                else {
                    memcpy(p, s + k, l);
                    p += l;
                }
                k += l;
            }
            t->piece = start;
            t->piece_len = (uint32_t)(p - start);
        } else if (t->type == PLM_TOKEN_TYPE_CONTROL || t->type == PLM_TOKEN_TYPE_UNKNOWN || t->type == PLM_TOKEN_TYPE_USER_DEFINED) {
            t->piece = t->text;
            t->piece_len = t->len;
        } else {
            t->piece = t->text;
            t->piece_len = 0;
        }
    }
    return PLM_OK;
}

/* The SentencePiece byte-fallback table: <0xNN>, else (llama.cpp's
 * byte_to_token) the one-character token of an ASCII byte. */
static void spm_byte_tokens(plm_vocab *v) {
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        plm_token t = plm_vocab_lookup(v, name, 6);
        if (t < 0 && b < 0x80) {
            char c = (char)b;
            t = plm_vocab_lookup(v, &c, 1);
        }
        v->byte_tok[b] = t;
    }
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The characters some token has right before a "▁" (not "▁" itself): the only
 * places where a "▁" can join the text before it (see spm.c). Gemma 3 has one,
 * the ">" of ">▁</". */
static plm_status spm_glue(plm_vocab *v) {
    size_t n = 0, cap = 0;
    uint32_t *a = NULL;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        const plm_tok_info *t = &v->tok[i]; /* any type: merges look tokens up by text alone */
        uint32_t prev = PLM_CP_INVALID;
        for (size_t k = 0; k < t->len;) {
            uint32_t cp;
            size_t l = plm_utf8_decode((const uint8_t *)t->text + k, t->len - k, &cp); /* valid: checked on load */
            if (cp == 0x2581 && prev != PLM_CP_INVALID && prev != 0x2581) {
                if (n == cap) {
                    cap = cap ? 2 * cap : 16;
                    uint32_t *b = realloc(a, cap * sizeof *b);
                    if (!b) {
                        free(a);
                        return plm_fail(PLM_ERR_OOM, "out of memory");
                    }
                    a = b;
                }
                a[n++] = prev;
            }
            prev = cp;
            k += l;
        }
    }
    if (n) qsort(a, n, sizeof *a, cmp_u32);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (!u || a[u - 1] != a[i]) a[u++] = a[i];
    v->spm_glue = a;
    v->n_spm_glue = u;
    return PLM_OK;
}

/* tokenizer.ggml.model = "llama". Defaults as llama.cpp sets them for SPM:
 * BOS 1, EOS 2, UNK 0 (each dropped if the vocabulary is too small), add BOS,
 * no EOS, add_space_prefix true; the file's keys override them. The
 * pre-tokenizer name is ignored. */
static plm_status load_spm(const plm_gguf *g, plm_vocab **out) {
    plm_vocab *v = calloc(1, sizeof *v);
    if (!v) return plm_fail(PLM_ERR_OOM, "out of memory");
    v->kind = PLM_VOCAB_SPM;
    v->bos = v->eos = v->eot = v->eom = v->unk = v->pad = -1;
    v->pretok = PLM_PRETOK_DEFAULT;
    v->add_bos = true;
    v->add_eos = false;
    v->add_space_prefix = true;
    plm_status st;
    if ((st = plm_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", false, &v->add_space_prefix)) || (st = load_tokens(g, v)) ||
        (st = load_scores(g, v))) {
        plm_vocab_free(v);
        return st;
    }
    v->unk = v->n_tokens > 0 ? 0 : -1;
    v->bos = v->n_tokens > 1 ? 1 : -1;
    v->eos = v->n_tokens > 2 ? 2 : -1;
    if ((st = load_specials(g, v)) || (st = build_specials(v)) || (st = build_pieces(v)) || (st = spm_glue(v))) {
        plm_vocab_free(v);
        return st;
    }
    spm_byte_tokens(v);
    *out = v;
    return PLM_OK;
}

/* WordPiece ("bert"): llama.cpp's phantom-space spelling (wordpiece.c), [CLS]
 * and [SEP] as BOS and EOS, both added by default; [UNK] is required. */
static plm_status load_wpm(const plm_gguf *g, plm_vocab **out) {
    plm_vocab *v = calloc(1, sizeof *v);
    if (!v) return plm_fail(PLM_ERR_OOM, "out of memory");
    v->kind = PLM_VOCAB_WPM;
    v->bos = v->eos = v->eot = v->eom = v->unk = v->pad = -1;
    v->pretok = PLM_PRETOK_DEFAULT;
    v->add_bos = v->add_eos = true;
    v->wpm_lowercase = v->wpm_strip_accents = v->wpm_chinese_chars = true;
    v->wpm_max_chars = 100;
    plm_status st;
    if ((st = plm_gguf_get_bool(g, "tokenizer.wordpiece.lowercase", false, &v->wpm_lowercase)) ||
        (st = plm_gguf_get_bool(g, "tokenizer.wordpiece.strip_accents", false, &v->wpm_strip_accents)) ||
        (st = plm_gguf_get_bool(g, "tokenizer.wordpiece.chinese_chars", false, &v->wpm_chinese_chars)) ||
        (st = plm_gguf_get_u32(g, "tokenizer.wordpiece.max_word_chars", false, &v->wpm_max_chars)) || (st = load_tokens(g, v)) ||
        /* llama.cpp's bert files may name [CLS] and [SEP] only by these keys; bos/eos_token_id, if given, win */
        (st = read_id(g, v, "tokenizer.ggml.cls_token_id", &v->bos)) ||
        (st = read_id(g, v, "tokenizer.ggml.seperator_token_id", &v->eos)) ||
        (st = load_specials(g, v)) || (st = build_specials(v)) || (st = build_pieces(v))) {
        plm_vocab_free(v);
        return st;
    }
    if (v->unk < 0) {
        st = plm_fail(PLM_ERR_FORMAT, "%s: the WordPiece vocabulary names no unknown token (tokenizer.ggml.unknown_token_id), which words it cannot cover need",
                      g->path);
        plm_vocab_free(v);
        return st;
    }
    *out = v;
    return PLM_OK;
}

plm_status plm_vocab_load(const plm_gguf *g, plm_vocab **out) {
    if (!g || !out) return plm_fail(PLM_ERR_ARG, "plm_vocab_load: NULL argument");
    *out = NULL;
    char *model = NULL, *pre = NULL;
    plm_status st = plm_gguf_get_str(g, "tokenizer.ggml.model", true, &model);
    if (st) return st;
    if (strcmp(model, "llama") == 0) {
        free(model);
        return load_spm(g, out);
    }
    if (strcmp(model, "bert") == 0) {
        free(model);
        return load_wpm(g, out);
    }
    if (strcmp(model, "gpt2") != 0) {
        st = plm_fail(PLM_ERR_UNSUPPORTED,
                      "%s: tokenizer.ggml.model '%s' is not supported (only 'gpt2', byte-level BPE, 'llama', SentencePiece, and 'bert', WordPiece)", g->path,
                      model);
        free(model);
        return st;
    }
    free(model);
    if ((st = plm_gguf_get_str(g, "tokenizer.ggml.pre", false, &pre))) return st;
    const pre_info *pi = NULL;
    for (size_t i = 0; i < sizeof pre_table / sizeof pre_table[0]; i++)
        if (strcmp(pre ? pre : "default", pre_table[i].name) == 0) pi = &pre_table[i];
    if (!pi) {
        st = plm_fail(PLM_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre '%s' is not a supported pre-tokenizer", g->path, pre);
        free(pre);
        return st;
    }
    free(pre);

    plm_vocab *v = calloc(1, sizeof *v);
    if (!v) return plm_fail(PLM_ERR_OOM, "out of memory");
    v->bos = v->eos = v->eot = v->eom = v->unk = v->pad = -1;
    v->pretok = pi->kind;
    v->ignore_merges = pi->ignore_merges;
    v->add_bos = pi->add_bos;
    v->add_eos = false;
    if ((st = load_tokens(g, v)) || (st = load_merges(g, v)) || (st = load_specials(g, v)) || (st = build_specials(v)) ||
        (st = build_pieces(v))) {
        plm_vocab_free(v);
        return st;
    }
    for (int b = 0; b < 256; b++) {
        char enc[4];
        size_t n = plm_utf8_encode(plm_byte_to_cp((uint8_t)b), enc);
        v->byte_tok[b] = plm_vocab_lookup(v, enc, n);
    }
    *out = v;
    return PLM_OK;
}

void plm_vocab_free(plm_vocab *v) {
    if (!v) return;
    free(v->tok);
    free(v->piece_buf);
    free(v->text_slots);
    free(v->merges);
    free(v->specials);
    free(v->eog);
    free(v->spm_glue);
    free(v);
}

/* ------------------------------------------------------------- queries */

int32_t plm_vocab_n_tokens(const plm_vocab *v) { return v->n_tokens; }
plm_token plm_vocab_bos(const plm_vocab *v) { return v->bos; }
plm_token plm_vocab_eos(const plm_vocab *v) { return v->eos; }
plm_token plm_vocab_eot(const plm_vocab *v) { return v->eot; }
bool plm_vocab_add_bos(const plm_vocab *v) { return v->add_bos; }
bool plm_vocab_add_eos(const plm_vocab *v) { return v->add_eos; }
bool plm_vocab_add_space_prefix(const plm_vocab *v) { return v->add_space_prefix; }

bool plm_vocab_is_eog(const plm_vocab *v, plm_token t) { return t >= 0 && t < v->n_tokens && v->eog[t]; }

bool plm_vocab_is_special(const plm_vocab *v, plm_token t) {
    if (t < 0 || t >= v->n_tokens) return false;
    return v->tok[t].type == PLM_TOKEN_TYPE_CONTROL || v->tok[t].type == PLM_TOKEN_TYPE_USER_DEFINED;
}

int32_t plm_vocab_token_type(const plm_vocab *v, plm_token t) {
    if (t < 0 || t >= v->n_tokens) return -1;
    return v->tok[t].type;
}

plm_token plm_vocab_find(const plm_vocab *v, const char *text, size_t len) {
    if (!v || (!text && len)) return -1;
    return plm_vocab_lookup(v, text ? text : "", len);
}

plm_status plm_vocab_piece(const plm_vocab *v, plm_token t, bool special, char *buf, size_t cap, size_t *n_out) {
    if (n_out) *n_out = 0;
    if (!v || !n_out) return plm_fail(PLM_ERR_ARG, "plm_token_to_piece: NULL argument");
    if (t < 0 || t >= v->n_tokens) return plm_fail(PLM_ERR_ARG, "token %d is out of range (the vocabulary has %d tokens)", t, v->n_tokens);
    const plm_tok_info *ti = &v->tok[t];
    size_t n = ti->piece_len;
    if (!special && (ti->type == PLM_TOKEN_TYPE_CONTROL || ti->type == PLM_TOKEN_TYPE_UNKNOWN)) n = 0;
    *n_out = n;
    if (n > cap) return plm_fail(PLM_ERR_BUFFER, "token %d needs %zu bytes, the buffer holds %zu", t, n, cap);
    if (n && !buf) return plm_fail(PLM_ERR_ARG, "plm_token_to_piece: NULL buffer");
    if (n) memcpy(buf, ti->piece, n);
    return PLM_OK;
}

/* ------------------------------------------------------------- tokenize */

/* A run of input: plain text [off, off + len), or a special token. */
typedef struct frag {
    size_t off, len;
    plm_token tok; /* -1 for text */
} frag;

typedef struct frags {
    frag *a;
    size_t n, cap;
} frags;

/* First occurrence of needle (n > 0 bytes) in hay[0..h), or NULL. */
static const char *find_bytes(const char *hay, size_t h, const char *needle, size_t n) {
    const char *p = hay, *end = hay + h;
    while ((size_t)(end - p) >= n) {
        p = memchr(p, (unsigned char)needle[0], (size_t)(end - p) - n + 1);
        if (!p) return NULL;
        if (memcmp(p, needle, n) == 0) return p;
        p++;
    }
    return NULL;
}

static bool frag_push(frags *f, size_t off, size_t len, plm_token tok) {
    if (f->n == f->cap) {
        size_t c = f->cap ? 2 * f->cap : 16;
        frag *a = realloc(f->a, c * sizeof *a);
        if (!a) return false;
        f->a = a;
        f->cap = c;
    }
    f->a[f->n++] = (frag){off, len, tok};
    return true;
}

/* Which byte pairs occur in text: bit (a << 8 | b) of a 65536-bit set. */
static void byte_pairs(const char *text, size_t len, uint64_t bits[1024]) {
    memset(bits, 0, 1024 * sizeof *bits);
    const uint8_t *s = (const uint8_t *)text;
    for (size_t i = 0; i + 1 < len; i++) {
        unsigned p = (unsigned)s[i] << 8 | s[i + 1];
        bits[p >> 6] |= 1ull << (p & 63);
    }
}

/* False when some adjacent pair of t's text is not in the set, so t cannot occur. */
static bool may_occur(const plm_tok_info *t, const uint64_t bits[1024]) {
    const uint8_t *s = (const uint8_t *)t->text;
    for (uint32_t i = 0; i + 1 < t->len; i++) {
        unsigned p = (unsigned)s[i] << 8 | s[i + 1];
        if (!(bits[p >> 6] >> (p & 63) & 1)) return false;
    }
    return true;
}

/* Cuts special-token texts out of the text fragments, one token at a time,
 * longest first, each at every non-overlapping place it occurs (the order of
 * llama.cpp's tokenizer_st_partition). Control and unknown tokens are cut only
 * with parse_special; user-defined tokens always, as in llama.cpp and Hugging
 * Face. Gemma has thousands of special tokens, most of which never occur: a
 * token with a byte pair that the whole text lacks is skipped without a scan. */
static plm_status partition(const plm_vocab *v, const char *text, size_t len, bool parse_special, frags *cur, frags *nxt) {
    uint64_t bits[1024];
    byte_pairs(text, len, bits);
    for (int32_t k = 0; k < v->n_specials; k++) {
        plm_token id = v->specials[k];
        const plm_tok_info *t = &v->tok[id];
        if (!parse_special && t->type != PLM_TOKEN_TYPE_USER_DEFINED) continue;
        if (t->len > len || !may_occur(t, bits)) continue;
        bool found = false;
        for (size_t i = 0; i < cur->n && !found; i++)
            found = cur->a[i].tok < 0 && find_bytes(text + cur->a[i].off, cur->a[i].len, t->text, t->len);
        if (!found) continue;
        nxt->n = 0;
        for (size_t i = 0; i < cur->n; i++) {
            frag f = cur->a[i];
            if (f.tok >= 0) {
                if (!frag_push(nxt, f.off, f.len, f.tok)) return plm_fail(PLM_ERR_OOM, "out of memory splitting special tokens");
                continue;
            }
            size_t off = f.off, end = f.off + f.len;
            while (off < end) {
                const char *m = find_bytes(text + off, end - off, t->text, t->len);
                size_t at = m ? (size_t)(m - text) : end;
                if ((at > off && !frag_push(nxt, off, at - off, -1)) || (m && !frag_push(nxt, at, t->len, id)))
                    return plm_fail(PLM_ERR_OOM, "out of memory splitting special tokens");
                off = m ? at + t->len : end;
            }
        }
        frags tmp = *cur;
        *cur = *nxt;
        *nxt = tmp;
    }
    return PLM_OK;
}

plm_status plm_vocab_tokenize(const plm_vocab *v, const char *text, size_t len, bool add_special, bool parse_special, plm_token *out,
                              int32_t cap, int32_t *n_out) {
    if (n_out) *n_out = 0;
    if (!v || !n_out) return plm_fail(PLM_ERR_ARG, "plm_tokenize: NULL argument");
    if (!text && len) return plm_fail(PLM_ERR_ARG, "plm_tokenize: NULL text with length %zu", len);
    if (cap < 0 || (!out && cap > 0)) return plm_fail(PLM_ERR_ARG, "plm_tokenize: invalid output buffer (cap %d)", cap);
    if (len > (size_t)INT32_MAX - 2) return plm_fail(PLM_ERR_ARG, "plm_tokenize: text of %zu bytes is too long (2 GiB at most)", len);

    plm_tok_out o = {out, cap, 0};
    frags cur = {0}, nxt = {0};
    plm_bpe_buf *bpe = NULL;
    plm_spm_buf *spm = NULL;
    plm_wpm_buf *wpm = NULL;
    if (v->kind == PLM_VOCAB_SPM) spm = plm_spm_buf_new();
    else if (v->kind == PLM_VOCAB_WPM) wpm = plm_wpm_buf_new();
    else bpe = plm_bpe_buf_new();
    plm_status st = PLM_OK;
    if (!bpe && !spm && !wpm) return plm_fail(PLM_ERR_OOM, "out of memory");

    if (add_special && v->add_bos) plm_tok_push(&o, v->bos);
    if (len) {
        if (!frag_push(&cur, 0, len, -1)) st = plm_fail(PLM_ERR_OOM, "out of memory");
        if (!st) st = partition(v, text, len, parse_special, &cur, &nxt);
        /* SentencePiece: text at the start or right after a special token gets
         * the space prefix (llama.cpp's is_prev_special; BOS does not count). */
        bool after_special = true;
        for (size_t i = 0; !st && i < cur.n; i++) {
            const frag *f = &cur.a[i];
            if (f->tok >= 0) plm_tok_push(&o, f->tok);
            else if (wpm) st = plm_wpm_tokenize(v, text + f->off, f->len, wpm, &o);
            else if (spm) st = plm_spm_tokenize(v, text + f->off, f->len, v->add_space_prefix && after_special, spm, &o);
            else st = plm_bpe_tokenize(v, text + f->off, f->len, bpe, &o);
            after_special = f->tok >= 0;
        }
    }
    if (add_special && v->add_eos) plm_tok_push(&o, v->eos);
    free(cur.a);
    free(nxt.a);
    plm_bpe_buf_free(bpe);
    plm_spm_buf_free(spm);
    plm_wpm_buf_free(wpm);
    if (st) return st;
    if (o.n > INT32_MAX) return plm_fail(PLM_ERR_ARG, "plm_tokenize: the text needs %" PRId64 " tokens, more than an int32_t counts", o.n);
    *n_out = (int32_t)o.n;
    if (o.n > cap) return plm_fail(PLM_ERR_BUFFER, "the text needs %" PRId64 " tokens, the buffer holds %d", o.n, cap);
    return PLM_OK;
}
