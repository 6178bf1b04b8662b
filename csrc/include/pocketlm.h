/*
 * pocketlm.h — the one public header of pocketlm.
 *
 * pocketlm runs small language models on the CPU from GGUF files. Objects are
 * opaque handles named plm_<object>_<verb>. Every call that can fail returns a
 * plm_status; on failure plm_last_error() returns a message naming what was wrong
 * (which key, which tensor, which offset). The library never exits or aborts.
 *
 * Ownership is stated once per function. "Borrowed" means the pointer belongs to
 * the library and stays valid as long as the text says.
 *
 * Thread safety. A plm_model is immutable after plm_model_load returns: any
 * number of threads may use one model at once, through any functions taking a
 * const plm_model * (tokenize, detokenize, token_to_piece, info and metadata)
 * and by creating, using and freeing their own contexts on it (tested with 8
 * threads, each with its own context: results equal, bit for bit, a sequential
 * run with the same n_threads). A plm_context, plm_sampler or plm_generator is
 * used by one thread at a time: the caller serializes calls on one object
 * (including plm_context_set_abort_callback and plm_context_set_threads); a
 * plm_generator also holds its context until it is freed. Different objects
 * need no locking between them. plm_model_free must not run concurrently with
 * any use of the model, and only after its contexts are freed. plm_last_error()
 * is per thread, and the kernel choice (plm_kernels_name) is made once, under
 * pthread_once, by whichever thread first needs it. The library keeps no
 * other global mutable state; it reads the environment (POCKETLM_MODEL,
 * POCKETLM_KERNELS, ...) but never changes it.
 */
#ifndef POCKETLM_H
#define POCKETLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(PLM_BUILDING_LIBRARY) && defined(__GNUC__)
#define PLM_API __attribute__((visibility("default")))
#else
#define PLM_API
#endif

#define PLM_VERSION "0.1.0"

/* ---------------------------------------------------------------- status */

typedef enum plm_status {
    PLM_OK = 0,
    PLM_ERR_IO = 1,           /* file could not be opened, read or mapped */
    PLM_ERR_FORMAT = 2,       /* malformed file or data */
    PLM_ERR_UNSUPPORTED = 3,  /* valid, but not supported (architecture, tensor type, ...) */
    PLM_ERR_OOM = 4,          /* out of memory */
    PLM_ERR_ARG = 5,          /* invalid argument (NULL, out of range token, bad parameter) */
    PLM_ERR_CONTEXT_FULL = 6, /* the KV cache has no room for the batch */
    PLM_ERR_CANCELLED = 7,    /* the abort callback asked to stop */
    PLM_ERR_BUFFER = 8,       /* caller's output buffer too small; the needed size is reported */
    PLM_ERR_INTERNAL = 9      /* a bug in pocketlm */
} plm_status;

/* Static name of a status ("PLM_ERR_FORMAT"). Never NULL. */
PLM_API const char *plm_status_str(plm_status status);

/* Message of the last failed call on this thread ("" if none). Borrowed: valid
 * until the next pocketlm call on this thread. */
PLM_API const char *plm_last_error(void);

/* Version string, e.g. "0.1.0". Static. */
PLM_API const char *plm_version(void);

/* Name of the kernel set chosen for this CPU ("avx2", "scalar"). Static. */
PLM_API const char *plm_kernels_name(void);

typedef int32_t plm_token;

/* ----------------------------------------------------------------- model */

typedef struct plm_model plm_model;

typedef struct plm_model_params {
    bool use_mmap;      /* map the file (default true); false reads it into memory */
    bool check_tensors; /* default false. true: before anything else, every float the file stores as tensor
                         * data must be finite: the elements of F32, F16 and BF16 tensors and the fp16 scales
                         * (d, dmin, m) of every block of a quantized tensor; else PLM_ERR_FORMAT naming the
                         * tensor and the element or block. Reads the whole file (the mapping's pages all
                         * come in), so loading takes longer. The loader always checks the small vectors it
                         * converts (norms, biases); NaN elsewhere otherwise shows as NaN logits. */
    bool vocab_only;    /* load the vocabulary and metadata alone (default false): no tensors are read, any
                         * architecture is accepted, and the model serves tokenize/detokenize, info, metadata
                         * and chat templates; plm_context_create (so decoding, generation, classification and
                         * embeddings) fails with PLM_ERR_ARG saying the model was loaded vocabulary-only.
                         * For vocabulary files such as llama.cpp's ggml-vocab-*.gguf. */
    bool repack;        /* default true: the decoder weights of the types the CPU's kernel table multiplies
                         * faster in its own row-group layout (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 on AVX-512) are
                         * rearranged once at load, the same values in the same bytes: products of several
                         * tokens (prompts, batched generation) run faster. With use_mmap they move from the
                         * file's pages, which processes mapping the same file share, into this process's
                         * own memory (the same size); false keeps every weight where the file has it. */
} plm_model_params;

PLM_API plm_model_params plm_model_default_params(void);

/* Loads a GGUF model. path NULL or "" means the default model (see
 * plm_default_model_path). On success *out is a new model: free with
 * plm_model_free. On failure *out is NULL. */
PLM_API plm_status plm_model_load(const char *path, const plm_model_params *params, plm_model **out);

/* Frees a model. NULL is a no-op. Every context made from it must be freed first. */
PLM_API void plm_model_free(plm_model *model);

/* Resolves the default model path: $POCKETLM_MODEL if set, else
 * <cache>/SmolLM2-135M-Instruct.Q4_1.gguf where <cache> is $POCKETLM_CACHE, else
 * $XDG_CACHE_HOME/pocketlm, else ~/.cache/pocketlm. Writes a NUL-terminated path
 * into buf. Returns PLM_ERR_IO naming the paths tried if no file is there. */
PLM_API plm_status plm_default_model_path(char *buf, size_t cap);

typedef struct plm_model_info {
    const char *arch;          /* "llama" */
    const char *name;          /* general.name or "" */
    const char *file_type;     /* dominant weight type, e.g. "Q4_1" */
    const char *chat_template; /* tokenizer.chat_template or "" */
    const char *path;          /* the file it came from */
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t n_ff;
    int32_t head_dim;
    uint64_t n_params;
    uint64_t n_bytes;          /* bytes of tensor data */
    plm_token bos, eos, eot;   /* -1 when absent */
    bool add_bos;
    int32_t n_cls_out;         /* outputs of the classification head; 0 without one */
    uint64_t n_repacked;       /* bytes of weights rearranged at load (plm_model_params.repack); 0 when none */
} plm_model_info;

/* Fills *out. Strings are borrowed: valid while the model lives. */
PLM_API plm_status plm_model_get_info(const plm_model *model, plm_model_info *out);

/* Number of metadata keys, the i-th key, and a value rendered as text (arrays
 * are summarized). Borrowed strings valid while the model lives. */
PLM_API int32_t plm_model_meta_count(const plm_model *model);
PLM_API const char *plm_model_meta_key(const plm_model *model, int32_t i);
/* Writes the value of key as text into buf (NUL-terminated, truncated to cap).
 * Returns PLM_ERR_ARG if the key is absent. */
PLM_API plm_status plm_model_meta_str(const plm_model *model, const char *key, char *buf, size_t cap);

/* ------------------------------------------------------------- tokenizer */

/* Tokenizes len bytes of text (UTF-8; invalid bytes are encoded as bytes).
 * add_special: prepend BOS (and append EOS) as the vocabulary asks.
 * parse_special: match special/control token texts such as "<|im_start|>" in
 * text; otherwise they are tokenized as plain text.
 * Writes at most cap tokens into out and sets *n_out to the number of tokens the
 * text needs; if that exceeds cap, returns PLM_ERR_BUFFER. */
PLM_API plm_status plm_tokenize(const plm_model *model, const char *text, size_t len, bool add_special,
                                bool parse_special, plm_token *out, int32_t cap, int32_t *n_out);

/* Bytes of one token's text (may be part of a UTF-8 character). Control tokens
 * give their text only if special is true. *n_out is the needed size; returns
 * PLM_ERR_BUFFER if cap is smaller. Not NUL-terminated. */
PLM_API plm_status plm_token_to_piece(const plm_model *model, plm_token token, bool special, char *buf,
                                      size_t cap, size_t *n_out);

/* Concatenated text of tokens (bytes, not NUL-terminated). Same buffer rules. */
PLM_API plm_status plm_detokenize(const plm_model *model, const plm_token *tokens, int32_t n, bool special,
                                  char *buf, size_t cap, size_t *n_out);

/* True for end-of-generation tokens (EOS, EOT, <|im_end|>, ...). */
PLM_API bool plm_token_is_eog(const plm_model *model, plm_token token);

/* --------------------------------------------------------------- context */

typedef struct plm_context plm_context;

/* Largest n_ctx a context accepts (16M cells). */
#define PLM_N_CTX_MAX (1 << 24)
/* Largest n_seq_max (sequence ids are bits of a 64-bit mask) and n_threads a context accepts. */
#define PLM_N_SEQ_MAX 64
#define PLM_N_THREADS_MAX 512

typedef struct plm_context_params {
    int32_t n_ctx;     /* KV cache cells (tokens over all sequences), at most PLM_N_CTX_MAX;
                        * 0 = min(n_ctx_train, 4096) */
    int32_t n_batch;   /* most tokens per forward micro-batch (longer batches are split); default 512 */
    int32_t n_seq_max; /* most distinct sequence ids (1..PLM_N_SEQ_MAX); default 8 */
    int32_t n_threads; /* worker threads (1..PLM_N_THREADS_MAX); 0 = number of physical cores; < 0 is PLM_ERR_ARG */
    size_t memory_budget; /* most bytes the context may allocate up front (see plm_context_create);
                           * 0 = automatic: the physical memory of the machine, or the cgroup
                           * memory limit if lower */
} plm_context_params;

PLM_API plm_context_params plm_context_default_params(void);

/* Creates a context (KV cache, buffers, thread pool) over model. The model must
 * outlive it. Free with plm_context_free. Before allocating anything it computes
 * the bytes the context needs (plm_context_memory_needed) and refuses a context
 * larger than params->memory_budget with PLM_ERR_OOM and a message giving both
 * figures; an n_ctx above PLM_N_CTX_MAX, or sizes that overflow, are PLM_ERR_ARG. */
PLM_API plm_status plm_context_create(plm_model *model, const plm_context_params *params, plm_context **out);
/* The bytes plm_context_create would allocate for these parameters (NULL: the
 * defaults): the KV cache, the activation scratch of one micro-batch, the
 * attention scores of each thread and one row of logits. plm_decode grows the
 * logits to as many rows as a batch asks for, beyond this figure. Same errors
 * as plm_context_create, except the budget, which is not checked. */
PLM_API plm_status plm_context_memory_needed(const plm_model *model, const plm_context_params *params, size_t *out);
PLM_API void plm_context_free(plm_context *ctx);
PLM_API const plm_model *plm_context_model(const plm_context *ctx);
PLM_API int32_t plm_context_n_ctx(const plm_context *ctx);
PLM_API int32_t plm_context_n_threads(const plm_context *ctx);
/* Changes the number of threads (restarts the pool): 1..PLM_N_THREADS_MAX, 0 = number of
 * physical cores, < 0 is PLM_ERR_ARG. The larger attention scratch of more
 * threads is checked against the context's memory budget (PLM_ERR_OOM); on any
 * error the context keeps its threads. */
PLM_API plm_status plm_context_set_threads(plm_context *ctx, int32_t n_threads);

/* A batch of tokens. token[i] sits at position pos[i] of sequence seq_id[i];
 * logits[i] != 0 asks for its logits. pos NULL: each sequence continues after
 * its last cached position. seq_id NULL: sequence 0. logits NULL: only the last
 * token's logits. */
typedef struct plm_batch {
    int32_t n_tokens;
    const plm_token *token;
    const int32_t *pos;
    const int32_t *seq_id;
    const int8_t *logits;
} plm_batch;

/* Runs the transformer over the batch, appending its keys and values to the
 * cache. On PLM_ERR_CONTEXT_FULL, PLM_ERR_CANCELLED or any error the cache is
 * left as it was before the call. Logits of earlier calls are invalidated. */
PLM_API plm_status plm_decode(plm_context *ctx, const plm_batch *batch);

/* Logits (n_vocab floats) of batch entry i of the last plm_decode; i = -1 means
 * the last entry whose logits were asked for. NULL (with an error message) if
 * none. Borrowed and writable: valid until the next plm_decode on ctx. */
PLM_API float *plm_context_logits(plm_context *ctx, int32_t i);
/* Number of logits rows held, and the batch index of row r. */
PLM_API int32_t plm_context_n_logits(const plm_context *ctx);

/* KV cache. p1 < 0 means "to the end". */
PLM_API void plm_kv_clear(plm_context *ctx);
PLM_API plm_status plm_kv_seq_rm(plm_context *ctx, int32_t seq_id, int32_t p0, int32_t p1);
/* Makes positions [p0, p1) of src also part of dst, sharing the cells (no copy). */
PLM_API plm_status plm_kv_seq_cp(plm_context *ctx, int32_t src, int32_t dst, int32_t p0, int32_t p1);
/* Largest cached position of a sequence, -1 if empty. */
PLM_API int32_t plm_kv_seq_pos_max(const plm_context *ctx, int32_t seq_id);
/* Cells in use. */
PLM_API int32_t plm_kv_used(const plm_context *ctx);
/* The tokens sequence seq holds at positions 0, 1, ... (-1 where a position is
 * missing), up to its largest position. Writes min(count, cap) tokens; returns
 * the count (0 for an empty or invalid sequence). */
PLM_API int32_t plm_kv_seq_tokens(const plm_context *ctx, int32_t seq, plm_token *out, int32_t cap);

/* Context state: the KV cache cells in use (positions, sequences, tokens, keys
 * and values) and the logits of the last plm_decode. A saved state loads into a
 * context over the same model whose n_ctx and n_seq_max can hold it, and whose
 * adapter set (plm_context_set_adapters: the same adapters at the same scales)
 * is the one the state was saved with. */
PLM_API size_t plm_context_state_size(const plm_context *ctx);
/* Writes the state into buf; *n_out is the size needed (PLM_ERR_BUFFER if cap is smaller). */
PLM_API plm_status plm_context_state_save(const plm_context *ctx, void *buf, size_t cap, size_t *n_out);
/* Replaces ctx's cache and logits with a saved state. The buffer is untrusted:
 * a malformed or mismatched state gives PLM_ERR_FORMAT and leaves ctx unchanged. */
PLM_API plm_status plm_context_state_load(plm_context *ctx, const void *buf, size_t len);

/* Called between layers of plm_decode and between tokens of plm_generate; a
 * nonzero return stops the work with PLM_ERR_CANCELLED. Called on the thread
 * that called plm_decode. */
typedef int (*plm_abort_fn)(void *user);
PLM_API void plm_context_set_abort_callback(plm_context *ctx, plm_abort_fn fn, void *user);

/* -------------------------------------------------------------- adapters */

/* A LoRA adapter loaded against one model: for each projection tensor it
 * targets, low-rank matrices A (rank, n_in) and B (n_out, rank) that a context
 * applies as y = W x + scale * B (A x), with scale = the context's scale for
 * the adapter times adapter.lora.alpha / rank. The model's weights are never
 * changed, so contexts of one model can use different adapters at once. */
typedef struct plm_adapter plm_adapter;

/* Loads a GGUF LoRA adapter in llama.cpp's layout (general.type = "adapter",
 * adapter.type = "lora", optional adapter.lora.alpha; tensors "<base>.lora_a"
 * of shape [n_in, rank] and "<base>.lora_b" of [rank, n_out] in F32, F16 or
 * Q8_0, where <base> names a layer projection of the model, e.g.
 * blk.0.attn_q.weight). Its general.architecture must be the model's. A
 * mismatch of names, shapes or types is PLM_ERR_FORMAT or PLM_ERR_UNSUPPORTED
 * naming the tensor. The adapter is read into memory (the file is closed).
 * *out is new: free with plm_adapter_free after every context using it has
 * been freed or given another set; the model must outlive it. */
PLM_API plm_status plm_adapter_load(const plm_model *model, const char *path, plm_adapter **out);
PLM_API void plm_adapter_free(plm_adapter *adapter);
/* The model it was loaded against, the tensors it targets, its largest rank and its alpha (0 when absent). */
PLM_API const plm_model *plm_adapter_model(const plm_adapter *adapter);
PLM_API int32_t plm_adapter_n_targets(const plm_adapter *adapter);
PLM_API int32_t plm_adapter_rank(const plm_adapter *adapter);
PLM_API float plm_adapter_alpha(const plm_adapter *adapter);

/* Most adapters one context applies at once. */
#define PLM_N_ADAPTERS_MAX 16

/* Replaces ctx's adapter set with adapters[0..n) at scales[0..n) (scales NULL:
 * 1 each); n = 0 removes them all. Each adapter must have been loaded against
 * ctx's model and is borrowed: it must stay alive while it is in the set.
 * Keys and values already in the cache were computed with the former set;
 * plm_kv_clear (or plm_kv_seq_rm) what should be recomputed. A saved state
 * records the set it was computed with, and plm_context_state_load refuses a
 * state saved under another set. PLM_ERR_ARG for another model's adapter, a
 * non-finite scale or n outside [0, PLM_N_ADAPTERS_MAX]; on error the set is
 * unchanged. */
PLM_API plm_status plm_context_set_adapters(plm_context *ctx, int32_t n, plm_adapter *const *adapters,
                                            const float *scales);
/* Number of adapters in ctx's set. */
PLM_API int32_t plm_context_n_adapters(const plm_context *ctx);
/* Adapter i of ctx's set (borrowed), its scale in *scale (may be NULL); NULL when i is out of range. */
PLM_API plm_adapter *plm_context_adapter(const plm_context *ctx, int32_t i, float *scale);

/* --------------------------------------------------------------- grammar */

/* A constraint on generated text: a grammar over bytes (UTF-8), enforced token
 * by token by a sampler (plm_sampler_set_grammar, plm_generate_params.grammar).
 * Immutable once made: any number of samplers and threads may use one at once.
 * Every plm_grammar_* maker returns a new grammar (free with plm_grammar_free;
 * samplers keep their own reference, so it may be freed while they use it) and
 * fails with PLM_ERR_ARG and a message naming line:column (of the grammar,
 * schema or expression) and what was expected. */
typedef struct plm_grammar plm_grammar;

/* Reads a grammar in GBNF, the format of llama.cpp's grammars: rules
 * `name ::= alternatives`; "literals", [character classes] with ranges and ^,
 * `.`, rule names, (groups), repetition * + ? {m} {m,} {m,n}, escapes \xHH
 * \uHHHH \UHHHHHHHH \t \r \n, # comments. root names the start rule (NULL:
 * "root"). Left-recursive rules are refused (with the cycle named). */
PLM_API plm_status plm_grammar_parse(const char *text, size_t len, const char *root, plm_grammar **out);
/* A grammar for the JSON documents a JSON Schema (text, len bytes of JSON)
 * accepts: type, properties, required, additionalProperties, items,
 * prefixItems, enum, const, anyOf, oneOf (as anyOf), allOf (of objects),
 * $ref to #/$defs or #/definitions (recursion allowed), minItems, maxItems,
 * minLength, maxLength, pattern, minimum / maximum (integers, and exclusive
 * forms), format date, time, date-time, uuid, email. Annotations (title,
 * description, examples, default, $schema, $id, $comment) are ignored; any
 * other keyword is an error naming it. Output is compact JSON (no spaces between
 * tokens); properties come in the schema's order. */
PLM_API plm_status plm_grammar_from_json_schema(const char *schema, size_t len, plm_grammar **out);
/* The same compilation as GBNF text (malloc'd, NUL-terminated; free with
 * plm_free): what plm_grammar_from_json_schema parses. */
PLM_API plm_status plm_json_schema_to_gbnf(const char *schema, size_t len, char **out, size_t *n_out);
/* A grammar for the strings a regular expression matches, whole (anchors ^ $
 * at the ends are allowed and change nothing). The subset: literals, escapes
 * (\n \t \r \f \v \xHH \uHHHH and escaped punctuation), `.` (any
 * character but a line break), [classes] with ranges and ^, \d \w \s \D \W
 * \S, groups ( ) and (?: ), alternation |, quantifiers * + ? {m} {m,} {m,n}.
 * Lazy or possessive quantifiers, backreferences, lookaround and other group
 * kinds are errors naming them. */
PLM_API plm_status plm_grammar_from_regex(const char *re, size_t len, plm_grammar **out);
/* A grammar for exactly one of n strings (choices[i], lens[i] bytes). */
PLM_API plm_status plm_grammar_from_choices(const char *const *choices, const size_t *lens, int32_t n,
                                            plm_grammar **out);
/* Releases the caller's reference (NULL is a no-op). */
PLM_API void plm_grammar_free(plm_grammar *g);

/* --------------------------------------------------------------- sampler */

typedef struct plm_logit_bias {
    plm_token token;
    float bias;
} plm_logit_bias;

typedef struct plm_sampler_params {
    float temperature;      /* <= 0: greedy (default 0.8) */
    int32_t top_k;          /* <= 0: off (default 40) */
    float top_p;            /* >= 1: off (default 0.95) */
    float min_p;            /* <= 0: off (default 0.05) */
    float repeat_penalty;   /* 1: off (default 1.0) */
    float frequency_penalty;/* 0: off */
    float presence_penalty; /* 0: off */
    int32_t penalty_last_n; /* window of recent tokens for penalties (default 64; -1: whole history) */
    uint64_t seed;          /* same seed, same choices (default 0x5EED) */
    const plm_logit_bias *logit_bias; /* copied at create */
    int32_t n_logit_bias;
} plm_sampler_params;

typedef struct plm_sampler plm_sampler;

PLM_API plm_sampler_params plm_sampler_default_params(void);
/* Creates a sampler for a vocabulary of n_vocab tokens. Free with plm_sampler_free. */
PLM_API plm_status plm_sampler_create(const plm_sampler_params *params, int32_t n_vocab, plm_sampler **out);
PLM_API void plm_sampler_free(plm_sampler *smp);
/* Picks a token from n_vocab logits (not modified). Does not accept it. */
PLM_API plm_status plm_sampler_sample_logits(plm_sampler *smp, const float *logits, plm_token *out);
/* Picks a token from the logits of batch entry i (-1: last) of ctx. */
PLM_API plm_status plm_sampler_sample(plm_sampler *smp, plm_context *ctx, int32_t i, plm_token *out);
/* Records a chosen token: in the penalty history, and through the grammar if
 * one is set (a token the grammar does not allow there makes the next sample
 * fail with PLM_ERR_ARG naming it). */
PLM_API void plm_sampler_accept(plm_sampler *smp, plm_token token);
/* Records prompt tokens in the penalty history only: they never advance a grammar. */
PLM_API void plm_sampler_accept_prompt(plm_sampler *smp, const plm_token *tokens, int32_t n);
/* Clears history, reseeds, and restarts the grammar (if any) from its start. */
PLM_API void plm_sampler_reset(plm_sampler *smp);
/* Constrains the sampler to grammar g (NULL removes the constraint) over
 * model's vocabulary, which must be the sampler's size: from now on only
 * tokens whose bytes continue a valid sentence of g are drawn, and
 * end-of-generation tokens only where the text so far is a whole sentence.
 * The constraint is one stage of the chain: after the logit bias and the
 * penalties, before greedy or top-k / top-p / min-p / temperature; the drawn
 * token is checked first and the full mask built only when it is refused.
 * The sampler keeps its own reference to g; the model must outlive the
 * sampler. The grammar starts from its beginning. */
PLM_API plm_status plm_sampler_set_grammar(plm_sampler *smp, const plm_model *model, const plm_grammar *g);
/* True when a grammar is set and the tokens accepted so far form a whole
 * sentence of it (false without a grammar). */
PLM_API bool plm_sampler_grammar_accepts(const plm_sampler *smp);
/* The vocabulary size the sampler was made for (length of the logits it reads). */
PLM_API int32_t plm_sampler_n_vocab(const plm_sampler *smp);

/* ------------------------------------------------------------ generation */

typedef struct plm_generate_params {
    int32_t max_tokens;        /* default 256; <= 0 means until the context is full */
    plm_sampler_params sampling;
    const char *const *stop;   /* stop strings (copied); never emitted, even in part */
    int32_t n_stop;
    bool add_special;          /* BOS etc. when tokenizing the prompt (default true) */
    bool parse_special;        /* match special tokens in the prompt (default true) */
    bool ignore_eos;           /* keep going past end-of-generation tokens (default false) */
    int32_t seq_id;            /* sequence to use (default 0) */
    bool keep_cache;           /* reuse the longest cached prefix of the prompt (default true) */
    const plm_grammar *grammar;/* constrain the output (NULL: free text); the generator keeps a reference.
                                  Generation then ends where the grammar is complete (PLM_STOP_EOG); a
                                  PLM_STOP_LENGTH ending may cut a structure short. */
} plm_generate_params;

PLM_API plm_generate_params plm_generate_default_params(void);

typedef enum plm_stop_reason {
    PLM_STOP_NONE = 0,   /* still running */
    PLM_STOP_LENGTH = 1, /* max_tokens reached */
    PLM_STOP_EOG = 2,    /* end-of-generation token */
    PLM_STOP_STRING = 3, /* a stop string matched */
    PLM_STOP_CALLER = 4, /* the piece callback returned nonzero */
    PLM_STOP_CONTEXT = 5 /* context full */
} plm_stop_reason;

typedef struct plm_generator plm_generator;

/* Starts a generation of prompt (len bytes) on ctx: tokenizes and evaluates the
 * prompt (this is the expensive part). ctx must outlive the generator and not be
 * used by anything else until the generator is freed. Free with
 * plm_generator_free. */
PLM_API plm_status plm_generator_create(plm_context *ctx, const char *prompt, size_t len,
                                        const plm_generate_params *params, plm_generator **out);
/* Same, from tokens. */
PLM_API plm_status plm_generator_create_tokens(plm_context *ctx, const plm_token *tokens, int32_t n,
                                               const plm_generate_params *params, plm_generator **out);
/* Produces the next piece of text: samples, decodes one token, and returns the
 * text that is now safe to emit (whole UTF-8 characters, no possible start of a
 * stop string). *piece is borrowed until the next call; *len may be 0 while
 * bytes are held back. *reason becomes nonzero when generation has ended; the
 * final call flushes what was held back. */
PLM_API plm_status plm_generator_next(plm_generator *gen, const char **piece, size_t *len,
                                      plm_stop_reason *reason);
/* Tokens generated so far (borrowed until the next call) and their count. */
PLM_API const plm_token *plm_generator_tokens(const plm_generator *gen, int32_t *n);
/* Number of prompt tokens evaluated (excluding reused cache). */
PLM_API int32_t plm_generator_n_prompt(const plm_generator *gen);
PLM_API void plm_generator_free(plm_generator *gen);

/* Callback for plm_generate: a piece of text; return nonzero to stop. */
typedef int (*plm_piece_fn)(const char *piece, size_t len, void *user);

/* Runs a whole generation, calling on_piece (may be NULL) for each piece. If
 * out is not NULL, *out receives the whole text (malloc'd, NUL-terminated; free
 * with plm_free) and *reason why it stopped. */
PLM_API plm_status plm_generate(plm_context *ctx, const char *prompt, size_t len,
                                const plm_generate_params *params, plm_piece_fn on_piece, void *user,
                                char **out, plm_stop_reason *reason);

/* ------------------------------------------------------ batch generation */

/* A batch generator runs many generations on one context at once (continuous
 * batching). Requests are submitted with their own plm_generate_params
 * (sampler and seed, stop strings, max_tokens, ignore_eos); each step is one
 * plm_decode holding the next token of every running request plus chunks of
 * the prompts of newly admitted ones (at most prefill_chunk prompt tokens per
 * step, so running requests keep moving). A request is admitted, in
 * submission order, when a sequence id and the cells it may need are free:
 * min(prompt + max_tokens, n_ctx_seq) cells, fewer by a prefix it shares with
 * a prompt already evaluated (those cells are shared, not recomputed). Its
 * sequence's cells are freed when it ends. With a fixed seed or greedy
 * sampling, each request's tokens and text equal what plm_generate gives for
 * it alone on a context of n_ctx_seq cells (the forward pass gives each row
 * the same numbers whatever else is in the batch). Text comes out as
 * plm_generator's does: whole UTF-8 characters, never part of a stop string,
 * through a callback during plm_batch_gen_step and/or by polling
 * (plm_batch_gen_take). A request that cannot run (a prompt that can never fit,
 * a bad parameter) ends alone with its status and message in its result while
 * the others go on. The generator uses sequence ids [0, n_parallel) of the
 * context (it empties them when created and as requests end) and holds the
 * context until freed. Requests are numbered 0, 1, ... in submission order. */
typedef struct plm_batch_gen plm_batch_gen;

typedef struct plm_batch_gen_params {
    int32_t n_parallel;    /* most requests running at once, 1..n_seq_max; 0 = the context's n_seq_max */
    int32_t prefill_chunk; /* most prompt tokens evaluated per step over all admitted prompts (default 128) */
    int32_t n_ctx_seq;     /* most cells of one request (prompt and generated tokens); 0 = the context's n_ctx */
    bool share_prefix;     /* share the cells of a common prompt prefix (default true) */
} plm_batch_gen_params;

PLM_API plm_batch_gen_params plm_batch_gen_default_params(void);

/* Called during plm_batch_gen_step with a new piece of request id's text (len
 * > 0), and once more with len 0 when the request ends; a nonzero return
 * ends the request (PLM_STOP_CALLER). */
typedef int (*plm_batch_piece_fn)(int32_t id, const char *piece, size_t len, void *user);

/* A new batch generator over ctx (params NULL: defaults). ctx must outlive it
 * and not be used by anything else until it is freed. Free with
 * plm_batch_gen_free. */
PLM_API plm_status plm_batch_gen_create(plm_context *ctx, const plm_batch_gen_params *params, plm_batch_gen **out);
/* Frees the generator and every request (their sequences are emptied). NULL is a no-op. */
PLM_API void plm_batch_gen_free(plm_batch_gen *bg);
/* Queues a request: prompt text (len bytes, tokenized with params' add_special
 * and parse_special) or tokens (copied). params NULL: plm_generate_default_params()
 * (params->seq_id and keep_cache are ignored). *id receives the request's number.
 * Fails (nothing queued) on a NULL argument, an empty prompt or out of memory;
 * problems of the request itself (bad sampler parameters, tokens outside the
 * vocabulary, a prompt longer than n_ctx_seq) end it alone, in its result. */
PLM_API plm_status plm_batch_gen_submit(plm_batch_gen *bg, const char *prompt, size_t len,
                                        const plm_generate_params *params, int32_t *id);
PLM_API plm_status plm_batch_gen_submit_tokens(plm_batch_gen *bg, const plm_token *tokens, int32_t n,
                                               const plm_generate_params *params, int32_t *id);
/* Sets the piece callback (NULL: none). */
PLM_API void plm_batch_gen_set_callback(plm_batch_gen *bg, plm_batch_piece_fn fn, void *user);
/* Admits what fits, runs one decode, samples every request whose logits came
 * out and hands out their text. *n_left (may be NULL) receives the number of
 * requests not yet ended (0: all done; a step then does nothing). On an error
 * of the decode (PLM_ERR_CANCELLED from the abort callback, PLM_ERR_OOM) the
 * requests are as before the step, which may be retried. */
PLM_API plm_status plm_batch_gen_step(plm_batch_gen *bg, int32_t *n_left);
/* Text of request id that was let out since the last take (borrowed until the
 * next call on bg; *len may be 0). */
PLM_API plm_status plm_batch_gen_take(plm_batch_gen *bg, int32_t id, const char **text, size_t *len);
/* Ids of the requests that got text or ended during the last step, in
 * admission order: writes min(count, cap) ids, returns the count. */
PLM_API int32_t plm_batch_gen_updated(const plm_batch_gen *bg, int32_t *ids, int32_t cap);

typedef struct plm_batch_result {
    plm_stop_reason reason; /* PLM_STOP_NONE while queued or running; cancelled: PLM_STOP_CALLER */
    plm_status status;      /* PLM_OK, or why the request could not run (see error) */
    const char *error;      /* "" or the message of status; borrowed while bg lives */
    const char *text;       /* everything let out so far (NUL-terminated); borrowed until the next step */
    size_t text_len;
    int32_t n_prompt;       /* prompt tokens */
    int32_t n_shared;       /* of which taken from another request's cells */
    int32_t n_generated;    /* tokens generated (an end-of-generation token is not counted) */
} plm_batch_result;

/* Result of request id so far. PLM_ERR_ARG for an unknown id. */
PLM_API plm_status plm_batch_gen_result(const plm_batch_gen *bg, int32_t id, plm_batch_result *out);
/* Generated tokens of request id (borrowed until the next step) and their count. */
PLM_API const plm_token *plm_batch_gen_tokens(const plm_batch_gen *bg, int32_t id, int32_t *n);
/* Ends request id (-1: every request not ended yet) with PLM_STOP_CALLER; text
 * held back is dropped. Ended requests are left as they are. */
PLM_API plm_status plm_batch_gen_cancel(plm_batch_gen *bg, int32_t id);
/* Requests submitted so far, and those not ended yet. */
PLM_API int32_t plm_batch_gen_n_requests(const plm_batch_gen *bg);
PLM_API int32_t plm_batch_gen_n_left(const plm_batch_gen *bg);

/* ------------------------------------------------------ background jobs */

/* A job runner generates in the background: plm_jobs_submit returns at once,
 * worker threads tokenize, evaluate and generate, and the caller polls for the
 * text (plm_job_poll never waits for a decode: it copies what is ready). Each
 * of n_workers threads owns a context (n_threads compute threads, n_ctx cells)
 * and a batch generator running up to n_parallel jobs in one decode per step;
 * a job goes to the worker with the fewest live jobs, and queues there when
 * n_parallel are running. So the runner uses n_workers * n_threads cores
 * (defaults 1 and 1: a game keeps the others). Results are those of the batch
 * generator (with a fixed seed or greedy sampling, what plm_generate gives for
 * the prompt alone). No callback runs on a worker thread. Thread-safety: calls
 * on one runner and its jobs may come from any threads, except plm_jobs_free,
 * which must not run alongside calls on its jobs. */
typedef struct plm_jobs plm_jobs;
typedef struct plm_job plm_job;

typedef struct plm_jobs_params {
    int32_t n_workers;  /* worker threads, each with its own context (1..64; default 1) */
    int32_t n_threads;  /* compute threads of each worker's context (default 1) */
    int32_t n_ctx;      /* cells of each worker's context; 0 = the context default */
    int32_t n_parallel; /* jobs decoded together per worker (1..PLM_N_SEQ_MAX; default 4) */
    int32_t nice;       /* how much lower than the caller's the workers' priority is (0..19; default 10; Linux
                         * threads: the compute threads of n_threads > 1 keep the caller's) */
} plm_jobs_params;

PLM_API plm_jobs_params plm_jobs_default_params(void);
/* Starts a runner over model (params NULL: defaults): makes the contexts and
 * starts the threads. model must outlive it. Free with plm_jobs_free. */
PLM_API plm_status plm_jobs_create(plm_model *model, const plm_jobs_params *params, plm_jobs **out);
/* Stops the workers (a decode in progress is cancelled between layers) and
 * joins them, ends every unfinished job as cancelled (PLM_STOP_CALLER) and
 * frees the runner. Jobs the caller has not freed stay readable (poll, done)
 * until plm_job_free. NULL is a no-op. */
PLM_API void plm_jobs_free(plm_jobs *jobs);
/* Queues a generation of prompt (len bytes; params NULL: plm_generate_default_params();
 * seq_id and keep_cache are ignored, stop strings and logit bias are copied, a
 * grammar is PLM_ERR_UNSUPPORTED). *out is a new job: free with plm_job_free.
 * An empty prompt is PLM_ERR_ARG here; what goes wrong in the worker (a prompt
 * longer than the context, bad sampler parameters) is reported by plm_job_poll. */
PLM_API plm_status plm_jobs_submit(plm_jobs *jobs, const char *prompt, size_t len, const plm_generate_params *params,
                                   plm_job **out);
/* The text the job produced since the last poll (*out_bytes: a new NUL-terminated
 * string of *out_len bytes, free with plm_free), and *out_reason: PLM_STOP_NONE
 * while it runs, why it ended once it has (all its text then polled). A job
 * that failed returns its status and message instead (text not polled before
 * is dropped). Never waits, not even for the runner's lock: if a worker holds
 * it at that moment, the poll returns "" and PLM_STOP_NONE (poll again; after
 * plm_job_wait, a poll loop ends at once). */
PLM_API plm_status plm_job_poll(plm_job *job, char **out_bytes, size_t *out_len, plm_stop_reason *out_reason);
/* Whether the job has ended (its text may still wait for a poll). */
PLM_API bool plm_job_done(plm_job *job);
/* Tokens the job generated so far (as of the worker's last step). */
PLM_API int32_t plm_job_n_generated(plm_job *job);
/* Asks the job to end (PLM_STOP_CALLER) at its worker's next step; returns at once. */
PLM_API void plm_job_cancel(plm_job *job);
/* Blocks until the job has ended. */
PLM_API void plm_job_wait(plm_job *job);
/* Frees the caller's handle; a job still running is cancelled and dropped by its
 * worker at its next step. NULL is a no-op. */
PLM_API void plm_job_free(plm_job *job);

/* -------------------------------------------------------- classification */

typedef enum plm_score_mode {
    PLM_SCORE_SUM = 0, /* a label's score is the sum of its tokens' log-probabilities */
    PLM_SCORE_MEAN = 1 /* ... or their mean (does not favour short labels) */
} plm_score_mode;

typedef struct plm_classify_params {
    plm_score_mode mode;  /* default PLM_SCORE_SUM */
    bool multi_label;     /* score labels independently: see plm_classify (default false) */
    plm_token yes_token;  /* multi_label: the "yes" and "no" answer tokens; -1 looks up " yes" / " no" */
    plm_token no_token;
    bool keep_cache;      /* reuse the part of the prompt sequence 0 already holds (default true) */
} plm_classify_params;

PLM_API plm_classify_params plm_classify_default_params(void);

/* Zero-shot classification by label likelihood. The prompt is evaluated once in
 * sequence 0; every label's tokens are then scored in one batched decode, each
 * label its own sequence sharing the prompt's cache (groups of n_seq_max - 1
 * labels when there are more).
 *   logprob_out[i] (may be NULL): sum or mean of log P(label i's tokens | prompt)
 *   prob_out[i]    (may be NULL): softmax of logprob_out over the labels
 * multi_label: labels[i] is a suffix appended to the prompt (e.g. " Topic: sports.
 * Correct?") and prob_out[i] = P(yes) / (P(yes) + P(no)) at its end, each label
 * independent of the others; logprob_out[i] = log of that probability.
 * Label sequences are removed from the cache afterwards; sequence 0 keeps the
 * prompt, so a following call with a prompt sharing its beginning reuses it. */
PLM_API plm_status plm_classify(plm_context *ctx, const plm_token *prompt, int32_t n_prompt,
                                const plm_token *const *labels, const int32_t *label_lens, int32_t n_labels,
                                const plm_classify_params *params, float *logprob_out, float *prob_out);

/* The zero-shot prompt. Python and Lua classify text through these two
 * functions, so that a text gets the same tokens, and the same scores, in
 * every language.
 *
 * A template is the whole prompt, with placeholders: {text} (the text),
 * {labels} (the labels joined by ", ") and, in multi-label mode, {label} (one
 * label). The run of ASCII spaces before a placeholder goes with what is
 * inserted, which is tokenized on its own as plain text (special-token texts in
 * it are not matched); each literal part is tokenized on its own with special
 * tokens matched. The prompt starts with BOS when the vocabulary asks for one.
 * Single-label: each label is scored as a continuation of the prompt, with a
 * space before it unless the prompt's last character is whitespace. Whitespace
 * means the Unicode White_Space property (what \s matches in the tokenizers'
 * pre-tokenizer: space, tab, newline, no-break space U+00A0, ideographic space
 * U+3000, ...); bytes that do not end a valid UTF-8 character are not
 * whitespace. Multi-label: everything from {label} on is the suffix of each
 * label, after which plm_classify compares " yes" and " no".
 * The default template (tmpl NULL) is PLM_CLASSIFY_INSTRUCTION (or
 * PLM_CLASSIFY_MULTI_LABEL_INSTRUCTION) as a user turn of the model's chat
 * (plm_chat_apply: its own template), the assistant's turn opened, then
 * PLM_CLASSIFY_ANSWER. Calibration (Zhao et al. 2021) scores a content-free
 * text such as "N/A" through the same template. */
#define PLM_CLASSIFY_INSTRUCTION "Classify the text into one of these categories: {labels}.\nText: {text}"
#define PLM_CLASSIFY_MULTI_LABEL_INSTRUCTION "Text: {text}\nIs this text about {label}? Answer yes or no."
#define PLM_CLASSIFY_ANSWER "Answer:"

/* Builds what zero-shot classification scores for one text: the prompt's
 * tokens and each label's tokens after it (its continuation, or in multi-label
 * mode its suffix). tmpl: tmpl_len bytes, NULL for the default template; text
 * and labels[i]: text_len and label_lens[i] bytes of UTF-8, each with a
 * character other than whitespace. On success *prompt_out (*n_prompt_out
 * tokens) and *label_tokens_out (the labels' tokens one after the other,
 * label_tokens_lens[i] of them for label i; label_tokens_lens is the caller's,
 * n_labels items) are new arrays: free both with plm_free. On failure both are
 * NULL. PLM_ERR_ARG names a template without {text}, a misplaced {label}, an
 * empty text or label. */
PLM_API plm_status plm_classify_prompt(const plm_model *model, const char *tmpl, size_t tmpl_len, const char *text,
                                       size_t text_len, const char *const *labels, const size_t *label_lens,
                                       int32_t n_labels, bool multi_label, plm_token **prompt_out,
                                       int32_t *n_prompt_out, plm_token **label_tokens_out,
                                       int32_t *label_tokens_lens);

/* plm_classify_prompt (multi-label as params says) then plm_classify: the
 * scores of labels for text under tmpl (NULL: the default). Outputs as
 * plm_classify's. */
PLM_API plm_status plm_classify_text(plm_context *ctx, const char *tmpl, size_t tmpl_len, const char *text,
                                     size_t text_len, const char *const *labels, const size_t *label_lens,
                                     int32_t n_labels, const plm_classify_params *params, float *logprob_out,
                                     float *prob_out);

typedef enum plm_pooling {
    PLM_POOL_MEAN = 0, /* mean of the token states */
    PLM_POOL_LAST = 1, /* the last token's state */
    PLM_POOL_CLS = 2   /* the first token's state */
} plm_pooling;

/* Embeds n_texts token sequences: the final hidden states (after the output
 * norm; an encoder's last layer output) pooled per text, optionally
 * L2-normalized, written row by row into out
 * (n_texts x n_embd floats, caller-owned). Texts are evaluated several at a time
 * as separate sequences and removed from the cache afterwards. Uses every
 * sequence id of ctx. An encoder (plm_model_is_encoder) sees each text whole:
 * a text of more than n_batch tokens gives PLM_ERR_CONTEXT_FULL. */
PLM_API plm_status plm_embed(plm_context *ctx, const plm_token *const *texts, const int32_t *lens, int32_t n_texts,
                             plm_pooling pooling, bool normalize, float *out);

/* The pooling plm_embed should use for this model: the file's <arch>.pooling_type
 * when it is mean (1), cls (2) or last (3), else PLM_POOL_MEAN. */
PLM_API plm_pooling plm_model_embed_pooling(const plm_model *model);
/* True for an encoder (bert): it gives embeddings (plm_embed) and no logits;
 * plm_decode then needs each sequence whole in one call of at most n_batch
 * tokens and refuses batches that ask for logits. */
PLM_API bool plm_model_is_encoder(const plm_model *model);

/* Classification heads. A GGUF may carry a sequence-classification head in
 * llama.cpp's layout: tensors cls.weight (+ cls.bias) and/or cls.output.weight
 * (+ cls.output.bias), the key <arch>.pooling_type and the label names in
 * <arch>.classifier.output_labels. The model then maps a text to n_cls_out
 * scores directly, in one pass, without a prompt or label tokens. */

/* Number of head outputs (labels); 0 when the model has no head. */
PLM_API int32_t plm_model_n_cls_out(const plm_model *model);
/* Name of head output i (from <arch>.classifier.output_labels, else "LABEL_<i>");
 * NULL when i is out of range or there is no head. Borrowed: valid while the
 * model lives. */
PLM_API const char *plm_model_cls_label(const plm_model *model, int32_t i);
/* How the head pools a text's final hidden states: the file's pooling type
 * (mean, cls), or PLM_POOL_LAST for "last", "rank" (llama.cpp's reranker type),
 * "none" or no key (every supported family is a causal decoder, whose last
 * token is the one that has seen the whole text). PLM_POOL_LAST without a head. */
PLM_API plm_pooling plm_model_cls_pooling(const plm_model *model);

/* Runs the model's classification head on n_texts token sequences: each text
 * is evaluated as its own sequence (several per decode), its final hidden
 * states (after the output norm, as plm_embed) are pooled as
 * plm_model_cls_pooling says, and the head is applied:
 *   y = tanh(cls.weight h + cls.bias)          when cls.weight is present
 *   scores = cls.output.weight y + cls.output.bias   when cls.output.weight is
 * (missing biases count as zero). scores_out (may be NULL): n_texts x n_cls_out
 * raw scores, row by row. probs_out (may be NULL): their softmax per text, or
 * the sigmoid of the score when the head has one output. Both caller-owned.
 * Uses every sequence id of ctx and leaves the cache empty, as plm_embed.
 * A model without a head gives PLM_ERR_UNSUPPORTED; an empty text PLM_ERR_ARG. */
PLM_API plm_status plm_classify_head(plm_context *ctx, const plm_token *const *texts, const int32_t *lens,
                                     int32_t n_texts, float *scores_out, float *probs_out);

/* ------------------------------------------------------------------ chat */

/* Chat formats turn a list of messages into the prompt text a model was
 * trained on. A GGUF stores its chat template as Jinja source
 * (tokenizer.chat_template): plm_chat_apply (below) runs it with the Jinja
 * interpreter, and is what the Python and Lua chats use. The families below
 * remain for files without a template, for a caller that names one, and for
 * stop strings; plm_chat_render renders a family directly, recognized by the
 * template's markers:
 *
 *   family  recognized by              a user turn
 *   chatml  <|im_start|>               <|im_start|>user\nHi<|im_end|>\n
 *   llama3  <|start_header_id|>        <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>
 *   gemma   <start_of_turn>            <start_of_turn>user\nHi<end_of_turn>\n
 *   phi3    <|user|> and <|end|>       <|user|>\nHi<|end|>\n
 *
 * A template that matches none is ChatML to plm_chat_detect (plm_chat_apply
 * runs it as it is, with no stop strings). Llama 3 and Gemma strip whitespace
 * around each message (as their templates' trim filter does); Gemma has no
 * system role, so a leading system message opens the first turn, and calls
 * the assistant "model". The BOS token is not part of the text: tokenization
 * adds it when the model asks for it. These functions touch no model state
 * and may be called from any thread. */
typedef enum plm_chat_family {
    PLM_CHAT_CHATML = 0,
    PLM_CHAT_LLAMA3 = 1,
    PLM_CHAT_GEMMA = 2,
    PLM_CHAT_PHI3 = 3
} plm_chat_family;
#define PLM_CHAT_N_FAMILIES 4

typedef struct plm_chat_format {
    plm_chat_family family;
    /* The system message rendered first when a conversation does not start
     * with one (default_system_len bytes of UTF-8); NULL: none. ChatML
     * templates that write one, as SmolLM2's does, give it here. */
    const char *default_system;
    size_t default_system_len;
} plm_chat_format;

typedef struct plm_chat_message {
    const char *role;    /* role_len bytes: "system", "user" or "assistant" */
    size_t role_len;
    const char *content; /* content_len bytes of UTF-8 (NUL bytes are kept); never NULL */
    size_t content_len;
} plm_chat_message;

/* Static name of a family ("chatml", "llama3", "gemma", "phi3"); NULL for a
 * value that is not a family. */
PLM_API const char *plm_chat_family_name(plm_chat_family family);

/* The family named name (len bytes); PLM_ERR_ARG naming the known ones if none. */
PLM_API plm_status plm_chat_family_from_name(const char *name, size_t len, plm_chat_family *out);

/* The i-th end-of-turn marker of a family (i from 0; static), NULL past the
 * last: stop strings for generation, in case the vocabulary does not mark
 * them as end-of-generation tokens. */
PLM_API const char *plm_chat_stop(plm_chat_family family, int32_t i);

/* The format of a Jinja chat template (len bytes; NULL with len 0 is the empty
 * template). out->default_system, when set, points into tmpl: borrowed, valid
 * as long as tmpl is. Returns PLM_ERR_ARG if tmpl is not valid UTF-8. */
PLM_API plm_status plm_chat_detect(const char *tmpl, size_t len, plm_chat_format *out);

/* The format of the model's stored template (ChatML with no default system
 * message when it has none). out->default_system is borrowed: valid while the
 * model lives. PLM_ERR_FORMAT if the stored template is not valid UTF-8. */
PLM_API plm_status plm_chat_detect_model(const plm_model *model, plm_chat_format *out);

/* Renders n messages in fmt, followed by the opening of an assistant turn if
 * add_generation_prompt. fmt->default_system is put first unless messages[0]
 * is a system message. Writes the text (UTF-8 bytes; then a NUL if cap has room
 * for it) into buf and sets *n_out to its length; if that exceeds cap, returns
 * PLM_ERR_BUFFER (buf NULL with cap 0 asks for the size). A role other than
 * system / user / assistant, a NULL content or content that is not valid UTF-8
 * gives PLM_ERR_ARG naming the message's index (from 0). */
PLM_API plm_status plm_chat_render(const plm_chat_format *fmt, const plm_chat_message *msgs, int32_t n,
                                   bool add_generation_prompt, char *buf, size_t cap, size_t *n_out);

/* Renders a Jinja chat template (tmpl_len bytes) with a subset of Jinja2:
 * if/elif/else, for (loop variables, else, an if filter, break/continue), set
 * (namespace attributes, blocks), macro, raw, the filters and tests chat
 * templates use (trim, tojson, length, upper, lower, replace, join, map,
 * selectattr, rejectattr, default, first, last, list, items, dictsort, sort,
 * indent, ...), slicing, and str/dict methods. The environment is Hugging
 * Face's: trim_blocks and lstrip_blocks, raise_exception, strftime_now,
 * namespace, range, and tojson as Python's json.dumps(ensure_ascii=False).
 * vars_json (vars_len bytes) is a JSON object of the variables: messages,
 * add_generation_prompt, bos_token, eos_token, tools, ... On success *out is a
 * new NUL-terminated string of *out_len bytes: free with plm_free. A construct
 * it does not implement gives PLM_ERR_UNSUPPORTED naming it and its line; a
 * raise_exception call PLM_ERR_ARG with the template's message; bad JSON
 * PLM_ERR_ARG. Templates are untrusted: work, nesting and output size are
 * bounded. Thread-safe. */
PLM_API plm_status plm_chat_template_render(const char *tmpl, size_t tmpl_len, const char *vars_json, size_t vars_len,
                                            char **out, size_t *out_len);

typedef struct plm_chat_params {
    bool add_generation_prompt; /* open the assistant's turn at the end (default true) */
    /* vars_len bytes: a JSON object of further template variables (tools,
     * enable_thinking, date_string, ...), which may also replace
     * add_generation_prompt, bos_token and eos_token; NULL: none. */
    const char *vars_json;
    size_t vars_len;
    /* format_len bytes: a family name ("chatml", "llama3", "gemma", "phi3") to
     * render instead of the model's template; NULL: the model's template. */
    const char *format;
    size_t format_len;
    /* template_len bytes: Jinja source to run instead of the model's template
     * (as transformers' apply_chat_template(chat_template=...)); NULL: the
     * model's. Not with format. */
    const char *template_src;
    size_t template_len;
} plm_chat_params;

PLM_API plm_chat_params plm_chat_default_params(void);

/* The prompt text of a chat with model, from its own tokenizer.chat_template
 * run by the interpreter (plm_chat_template_render), or by the ChatML family
 * when the file stores none, or by the family params->format names, or by
 * params->template_src (params NULL: the defaults). messages_json (messages_len bytes of UTF-8) is a JSON
 * array of messages as Hugging Face's chat templates take them: objects with a
 * role (system, user, assistant, or tool for a tool's result) and a content
 * (a string; or a list of parts, or null beside tool_calls, where the template
 * handles them), plus whatever else the template reads (tool_calls,
 * tool_call_id, name...). A family format takes system, user and assistant
 * roles with string contents only, and renders exactly as plm_chat_render.
 * The template's variables are messages, add_generation_prompt, bos_token
 * and eos_token (the texts of the vocabulary's BOS and EOS tokens), then
 * params->vars_json's. Since tokenizing the prompt adds BOS when the
 * vocabulary asks for it, a BOS text the template writes at the very start is
 * left out (so the text is the prompt plm_tokenize(add_special, parse_special)
 * reads). On success *out is a new NUL-terminated string of *out_len bytes:
 * free with plm_free. PLM_ERR_ARG names a message that breaks the rules above
 * ("message 2: role \"robot\" is not one of ..."; from 0), invalid JSON or
 * UTF-8, and a template's raise_exception; PLM_ERR_UNSUPPORTED names a
 * construct the interpreter does not implement and its line, prefixed by the
 * file's path: a template is never replaced by a family silently. Touches no
 * model state; thread-safe. */
PLM_API plm_status plm_chat_apply(const plm_model *model, const char *messages_json, size_t messages_len,
                                  const plm_chat_params *params, char **out, size_t *out_len);

/* The i-th stop string (i from 0; static) of chats plm_chat_apply renders
 * with these params, NULL past the last: the end-of-turn markers of the family
 * rendered, or recognized by the markers above in the template run (a file
 * without a template: ChatML's). A template recognized as no family has none:
 * generation then ends at the vocabulary's end-of-generation tokens (EOS, EOT
 * and the others plm_token_is_eog names), as every generation does. */
PLM_API const char *plm_chat_model_stop(const plm_model *model, const plm_chat_params *params, int32_t i);

/* Frees memory returned by pocketlm (NULL is a no-op). */
PLM_API void plm_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
