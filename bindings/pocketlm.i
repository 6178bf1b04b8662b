/*
 * pocketlm.i — the SWIG interface shared by every language binding.
 *
 * It declares the C API of csrc/include/pocketlm.h as a flat module (plm_ and
 * PLM_ prefixes dropped: plm_model_load becomes model_load), the four opaque
 * handles as classes whose destructor frees them, and a few helpers (plmb_*)
 * where a C signature is awkward to bind (two-pass buffer sizing, batches).
 * The helpers are plain C: they never touch a language runtime, so every
 * binding can release its interpreter lock around them.
 *
 * What is language-specific — how a status becomes an exception or an error,
 * how text, token arrays and logits cross, lock release — lives in the
 * typemap file of that language (python.i), included below before any
 * declaration, since SWIG typemaps apply only to what comes after them. The
 * high-level APIs (python/pocketlm/, lua/) are written over this module.
 *
 * Typemap contract: a language file must provide typemaps for these parameter
 * names (the helpers below are written against them):
 *   plm_status                                      status -> error
 *   const char *path                                a file-system path
 *   (const char *text, size_t len)                  text in (UTF-8 bytes)
 *   (const char *opt_text, size_t opt_len)          text in, or none (None / nil): NULL
 *   (const plm_token *tokens, int32_t n_tokens)     tokens in
 *   (const float *values, int32_t n_values)         floats in
 *   (const char *const *strs, int32_t n_strs)       a list of strings in
 *   (const plm_logit_bias *bias, int32_t n_bias)    token -> bias pairs in
 *   (const plm_token *flat, int32_t n_flat)         tokens of several sequences, concatenated
 *   (const int32_t *lens, int32_t n_lens)           the length of each of those sequences
 *   (const void *data, size_t size)                 bytes in (a saved state)
 *   (const char *const *texts, const size_t *text_lens, int32_t n_texts)
 *                                                   a list of texts in, each with its length (NUL bytes kept)
 *   (float *out_floats, int32_t n_out_floats)       a caller's float32 buffer that C fills (no copy)
 *   (void *out_data, size_t out_size)               a caller's byte buffer that C fills (no copy)
 *   plm_model **out, plm_context **out,
 *   plm_sampler **out, plm_generator **out,
 *   plm_grammar **out                               a new owned handle out
 *   (plm_token **out_tokens, int32_t *out_n)        a malloc'd token array out (free())
 *   (char **out_bytes, size_t *out_len)             malloc'd bytes out (free())
 *   (const char **piece, size_t *piece_len)         borrowed bytes out
 *   (const char **opt_bytes, size_t *opt_len)       borrowed bytes out, or none (None / nil) when NULL
 *   plm_token *out_token, plm_stop_reason *out_reason, plm_model_info *out_info
 * (int32_t *out_family takes plm_token *out_token's typemap.)
 */

#if defined(SWIGPYTHON)
%module(package="pocketlm", threads="1") _core
#else
%module core
#endif

%{
#include "pocketlm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Errors raised by the helpers themselves (the library's own go through
 * plm_last_error). Per thread, like plm_last_error; read once by the binding. */
static _Thread_local const char *plmb_msg;

static plm_status plmb_fail(plm_status st, const char *msg) {
    plmb_msg = msg;
    return st;
}

/* Checks that lens (n_lens lengths, none negative) add up to n_flat and makes
 * an array of pointers into flat, one per sequence (free()). */
static plm_status plmb_split(const plm_token *flat, int32_t n_flat, const int32_t *lens, int32_t n_lens,
                             const plm_token ***out) {
    *out = NULL;
    if (n_lens <= 0) return PLM_OK;
    const plm_token **ptrs = malloc((size_t)n_lens * sizeof(*ptrs));
    if (!ptrs) return plmb_fail(PLM_ERR_OOM, "out of memory");
    int64_t off = 0;
    for (int32_t i = 0; i < n_lens; i++) {
        if (lens[i] < 0 || off + lens[i] > n_flat) {
            free(ptrs);
            return plmb_fail(PLM_ERR_ARG, "sequence lengths do not match the tokens given (negative, or more than there are)");
        }
        ptrs[i] = flat + off;
        off += lens[i];
    }
    if (off != n_flat) {
        free(ptrs);
        return plmb_fail(PLM_ERR_ARG, "sequence lengths add up to fewer tokens than given");
    }
    *out = ptrs;
    return PLM_OK;
}

/* Message for a failed call made just now on this thread. */
static const char *plmb_error_message(void) {
    const char *m = plmb_msg;
    plmb_msg = NULL;
    return m ? m : plm_last_error();
}
%}

%include <stdint.i>

#define PLM_API

/* Names: plm_model_load -> model_load, PLM_ERR_IO -> ERR_IO; classes CamelCase. */
%rename("%(regex:/^(plm|PLM|plmb)_(.*)/\\2/)s") "";
%rename(Model) plm_model;
%rename(Context) plm_context;
%rename(Sampler) plm_sampler;
%rename(Generator) plm_generator;
%rename(Grammar) plm_grammar;
%rename(Adapter) plm_adapter;
%rename(ModelParams) plm_model_params;
%rename(ContextParams) plm_context_params;
%rename(SamplerParams) plm_sampler_params;
%rename(GenerateParams) plm_generate_params;
%rename(ModelInfo) plm_model_info;
%rename(ClassifyParams) plm_classify_params;

/* Freed by the handle destructors, or replaced by a plmb_ helper below. */
%ignore plm_model_free;
%ignore plm_context_free;
%ignore plm_adapter_free;
/* A context's adapter set is changed through plmb_context_add_adapter (no arrays of handles cross). */
%ignore plm_context_set_adapters;
%ignore plm_context_adapter;
%ignore plm_sampler_free;
%ignore plm_generator_free;
%ignore plm_free;
%ignore plm_default_model_path;
%ignore plm_model_get_info;
%ignore plm_model_meta_str;
%ignore plm_tokenize;
%ignore plm_token_to_piece;
%ignore plm_detokenize;
%ignore plm_context_model;
%ignore plm_context_memory_needed; /* a C sizing aid; the bindings report the figures in the error */
%ignore plm_batch;
%ignore plm_decode;
%ignore plm_context_set_abort_callback;
%ignore plm_abort_fn;
%ignore plm_logit_bias;
%ignore plm_sampler_create;
%ignore plm_sampler_sample_logits;
%ignore plm_generator_create;
%ignore plm_generator_create_tokens;
%ignore plm_generator_next;
%ignore plm_generator_tokens;
%ignore plm_generate;
%ignore plm_piece_fn;
%ignore plm_model_info; /* crosses as a language table: see out_info */
/* Classification and embeddings take arrays of token arrays: the helpers
 * below take them concatenated, with their lengths. */
%ignore plm_classify;
%ignore plm_embed;
%ignore plm_classify_head;
%ignore plm_classify_prompt;
%ignore plm_classify_text;
/* State and sequence history go through helpers with caller-sized buffers. */
%ignore plm_context_state_save;
%ignore plm_context_state_load;
%ignore plm_kv_seq_tokens;
/* Chat formats cross as a family number and a default system message (see
 * the plmb_chat_ helpers below); the structs stay in C. */
%ignore plm_chat_format;
%ignore plm_chat_message;
%ignore plm_chat_family_name;
%ignore plm_chat_family_from_name;
%ignore plm_chat_stop;
%ignore plm_chat_detect;
%ignore plm_chat_detect_model;
%ignore plm_chat_render;
%ignore plm_chat_params;
%ignore plm_chat_default_params;
%ignore plm_chat_apply;
%ignore plm_chat_model_stop;
/* The batch generator goes through the plmb_batch_gen_ helpers below (ids,
 * text and results as plain values); cancel and the counts are bound as they are. */
%rename(BatchGen) plm_batch_gen;
%ignore plm_batch_gen_params;
%ignore plm_batch_gen_default_params;
%ignore plm_batch_gen_create;
%ignore plm_batch_gen_free;
%ignore plm_batch_gen_submit;
%ignore plm_batch_gen_submit_tokens;
%ignore plm_batch_gen_set_callback;
%ignore plm_batch_piece_fn;
%ignore plm_batch_gen_step;
%ignore plm_batch_gen_take;
%ignore plm_batch_gen_updated;
%ignore plm_batch_result;
%ignore plm_batch_gen_result;
%ignore plm_batch_gen_tokens;
/* Background jobs: Lua binds them in lua.i (plmb_jobs_ helpers); Python does not yet. */
%ignore plm_jobs_params;
%ignore plm_jobs_default_params;
%ignore plm_jobs_create;
%ignore plm_jobs_free;
%ignore plm_jobs_submit;
%ignore plm_job_free;
%ignore plm_job_poll;
%ignore plm_job_done;
%ignore plm_job_n_generated;
%ignore plm_job_cancel;
%ignore plm_job_wait;
/* The Jinja interpreter is not bound yet (its char ** result needs a typemap); Python's tests reach it with ctypes. */
%ignore plm_chat_template_render;
/* Pointer fields are set through helper arguments instead. */
%ignore plm_sampler_params::logit_bias;
%ignore plm_sampler_params::n_logit_bias;
%ignore plm_generate_params::stop;
%ignore plm_generate_params::n_stop;
/* Grammars cross through the plmb_grammar_* helpers below. */
%ignore plm_grammar_parse;
%ignore plm_grammar_from_json_schema;
%ignore plm_json_schema_to_gbnf;
%ignore plm_grammar_from_regex;
%ignore plm_grammar_from_choices;
%ignore plm_grammar_free;
%ignore plm_sampler_accept_prompt;
%ignore plm_generate_params::grammar;

/* The handles are opaque in C; giving SWIG an empty definition makes each a
 * class, so the handle objects it returns free themselves. */
%nodefaultctor plm_model;
%nodefaultctor plm_context;
%nodefaultctor plm_sampler;
%nodefaultctor plm_generator;
%nodefaultctor plm_batch_gen;
struct plm_batch_gen {};
%extend plm_batch_gen { ~plm_batch_gen() { plm_batch_gen_free($self); } }
%nodefaultctor plm_grammar;
struct plm_grammar {};
%extend plm_grammar { ~plm_grammar() { plm_grammar_free($self); } }
%nodefaultctor plm_adapter;
struct plm_adapter {};
%extend plm_adapter { ~plm_adapter() { plm_adapter_free($self); } }
struct plm_model {};
struct plm_context {};
struct plm_sampler {};
struct plm_generator {};
%extend plm_model { ~plm_model() { plm_model_free($self); } }
%extend plm_context { ~plm_context() { plm_context_free($self); } }
%extend plm_sampler { ~plm_sampler() { plm_sampler_free($self); } }
%extend plm_generator { ~plm_generator() { plm_generator_free($self); } }

#if defined(SWIGPYTHON)
%include "python.i"
#endif
#ifdef SWIGLUA
%include "lua.i"
#endif

/* plm_sampler_sample's result. */
%apply plm_token *out_token { plm_token *out };
%apply plm_token *out_token { int32_t *out_family };
%apply plm_token *out_token { int32_t *out_id };

/* plmb_classify_prompt's other token arrays out. */
%apply (plm_token **out_tokens, int32_t *out_n) {
    (plm_token **out_label_tokens, int32_t *out_n_label_tokens),
    (plm_token **out_label_lens, int32_t *out_n_labels)
};

/* plmb_chat_apply's optional texts: the template variables, and what renders instead of the model's template. */
%apply (const char *opt_text, size_t opt_len) { (const char *vars, size_t vars_len), (const char *over, size_t over_len) };

%include "pocketlm.h"

%inline %{
/* The default model's path as a malloc'd string (free()). */
plm_status plmb_default_model_path(char **out_bytes, size_t *out_len) {
    *out_bytes = NULL;
    *out_len = 0;
    char *buf = malloc(4096);
    if (!buf) return plmb_fail(PLM_ERR_OOM, "out of memory");
    plm_status st = plm_default_model_path(buf, 4096);
    if (st) {
        free(buf);
        return st;
    }
    *out_bytes = buf;
    *out_len = strlen(buf);
    return PLM_OK;
}

plm_status plmb_model_get_info(const plm_model *model, plm_model_info *out_info) {
    return plm_model_get_info(model, out_info);
}

/* The value of a metadata key as text, whole (plm_model_meta_str truncates). */
plm_status plmb_model_meta_str(const plm_model *model, const char *key, char **out_bytes, size_t *out_len) {
    *out_bytes = NULL;
    *out_len = 0;
    for (size_t cap = 256;; cap *= 4) {
        char *buf = malloc(cap);
        if (!buf) return plmb_fail(PLM_ERR_OOM, "out of memory for a metadata value");
        plm_status st = plm_model_meta_str(model, key, buf, cap);
        if (st) {
            free(buf);
            return st;
        }
        size_t n = strlen(buf);
        if (n + 1 < cap || cap >= ((size_t)1 << 30)) {
            *out_bytes = buf;
            *out_len = n;
            return PLM_OK;
        }
        free(buf);
    }
}

/* Tokens of text as a malloc'd array (free()). */
plm_status plmb_tokenize(const plm_model *model, const char *text, size_t len, bool add_special, bool parse_special,
                         plm_token **out_tokens, int32_t *out_n) {
    *out_tokens = NULL;
    *out_n = 0;
    if (len > (size_t)INT32_MAX / 2) return plmb_fail(PLM_ERR_ARG, "text too long to tokenize (more than 1 GiB)");
    int32_t cap = (int32_t)len + 8, n = 0;
    plm_token *toks = malloc((size_t)cap * sizeof(plm_token));
    if (!toks) return plmb_fail(PLM_ERR_OOM, "out of memory for tokens");
    plm_status st = plm_tokenize(model, text, len, add_special, parse_special, toks, cap, &n);
    if (st == PLM_ERR_BUFFER) {
        free(toks);
        cap = n;
        toks = malloc((size_t)cap * sizeof(plm_token));
        if (!toks) return plmb_fail(PLM_ERR_OOM, "out of memory for tokens");
        st = plm_tokenize(model, text, len, add_special, parse_special, toks, cap, &n);
    }
    if (st) {
        free(toks);
        return st;
    }
    *out_tokens = toks;
    *out_n = n;
    return PLM_OK;
}

/* Bytes of tokens (special: also the text of control tokens), malloc'd (free()). */
plm_status plmb_detokenize(const plm_model *model, const plm_token *tokens, int32_t n_tokens, bool special,
                           char **out_bytes, size_t *out_len) {
    *out_bytes = NULL;
    *out_len = 0;
    if (n_tokens < 0) return plmb_fail(PLM_ERR_ARG, "negative token count");
    size_t cap = (size_t)n_tokens * 8 + 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return plmb_fail(PLM_ERR_OOM, "out of memory for text");
    plm_status st = plm_detokenize(model, tokens, n_tokens, special, buf, cap, &n);
    if (st == PLM_ERR_BUFFER) {
        free(buf);
        cap = n + 1;
        buf = malloc(cap);
        if (!buf) return plmb_fail(PLM_ERR_OOM, "out of memory for text");
        st = plm_detokenize(model, tokens, n_tokens, special, buf, cap, &n);
    }
    if (st) {
        free(buf);
        return st;
    }
    *out_bytes = buf;
    *out_len = n;
    return PLM_OK;
}

plm_status plmb_token_to_piece(const plm_model *model, plm_token token, bool special, char **out_bytes,
                               size_t *out_len) {
    return plmb_detokenize(model, &token, 1, special, out_bytes, out_len);
}

/* Evaluates tokens on sequence seq_id, continuing after its last cached
 * position. logits_all asks for the logits of every token (otherwise only the
 * last one's). plm_decode splits the batch into micro-batches itself. */
plm_status plmb_decode(plm_context *ctx, const plm_token *tokens, int32_t n_tokens, int32_t seq_id, bool logits_all) {
    if (n_tokens <= 0) return plm_decode(ctx, &(plm_batch){.n_tokens = n_tokens, .token = tokens});
    int32_t *seq = malloc((size_t)n_tokens * sizeof(int32_t));
    int8_t *want = malloc((size_t)n_tokens);
    if (!seq || !want) {
        free(seq);
        free(want);
        return plmb_fail(PLM_ERR_OOM, "out of memory for a batch");
    }
    for (int32_t i = 0; i < n_tokens; i++) {
        seq[i] = seq_id;
        want[i] = (int8_t)(logits_all || i == n_tokens - 1);
    }
    plm_batch b = {.n_tokens = n_tokens, .token = tokens, .pos = NULL, .seq_id = seq, .logits = want};
    plm_status st = plm_decode(ctx, &b);
    free(seq);
    free(want);
    return st;
}

plm_status plmb_sampler_create(const plm_sampler_params *params, const plm_logit_bias *bias, int32_t n_bias,
                               int32_t n_vocab, plm_sampler **out) {
    plm_sampler_params p = params ? *params : plm_sampler_default_params();
    p.logit_bias = bias;
    p.n_logit_bias = n_bias;
    return plm_sampler_create(&p, n_vocab, out);
}

/* Samples from n_values logits, which must be the sampler's vocabulary size. */
plm_status plmb_sampler_sample_logits(plm_sampler *smp, const float *values, int32_t n_values, plm_token *out_token) {
    if (n_values != plm_sampler_n_vocab(smp)) {
        static _Thread_local char msg[96];
        snprintf(msg, sizeof msg, "expected %d logits (the sampler's vocabulary), got %d", plm_sampler_n_vocab(smp),
                 n_values);
        return plmb_fail(PLM_ERR_ARG, msg);
    }
    return plm_sampler_sample_logits(smp, values, out_token);
}

/* Starts a generation from tokens, with stop strings and a logit bias. */
plm_status plmb_generator_create(plm_context *ctx, const plm_token *tokens, int32_t n_tokens,
                                 const plm_generate_params *params, const char *const *strs, int32_t n_strs,
                                 const plm_logit_bias *bias, int32_t n_bias, plm_generator **out) {
    plm_generate_params p = params ? *params : plm_generate_default_params();
    p.stop = strs;
    p.n_stop = n_strs;
    p.sampling.logit_bias = bias;
    p.sampling.n_logit_bias = n_bias;
    return plm_generator_create_tokens(ctx, tokens, n_tokens, &p, out);
}

/* The next piece of text (borrowed until the next call) and why generation ended (PLM_STOP_NONE while running). */
plm_status plmb_generator_next(plm_generator *gen, const char **piece, size_t *piece_len, plm_stop_reason *out_reason) {
    return plm_generator_next(gen, piece, piece_len, out_reason);
}

/* A copy of the tokens generated so far (free()). */
plm_status plmb_generator_tokens(const plm_generator *gen, plm_token **out_tokens, int32_t *out_n) {
    int32_t n = 0;
    const plm_token *t = plm_generator_tokens(gen, &n);
    *out_tokens = malloc((size_t)(n > 0 ? n : 1) * sizeof(plm_token));
    *out_n = 0;
    if (!*out_tokens) return plmb_fail(PLM_ERR_OOM, "out of memory for tokens");
    if (n > 0) memcpy(*out_tokens, t, (size_t)n * sizeof(plm_token));
    *out_n = n;
    return PLM_OK;
}
/* The tokens sequence seq holds, in position order (-1 where a position is
 * missing), as a malloc'd array (free()). */
plm_status plmb_kv_seq_tokens(const plm_context *ctx, int32_t seq, plm_token **out_tokens, int32_t *out_n) {
    int32_t n = plm_kv_seq_tokens(ctx, seq, NULL, 0);
    *out_n = 0;
    *out_tokens = malloc((size_t)(n > 0 ? n : 1) * sizeof(plm_token));
    if (!*out_tokens) return plmb_fail(PLM_ERR_OOM, "out of memory for tokens");
    *out_n = plm_kv_seq_tokens(ctx, seq, *out_tokens, n);
    return PLM_OK;
}

/* Writes the context's state into the caller's buffer, whose size must be
 * plm_context_state_size(ctx) exactly. */
/* Removes every adapter of ctx's set. */
plm_status plmb_context_clear_adapters(plm_context *ctx) { return plm_context_set_adapters(ctx, 0, NULL, NULL); }

/* Appends adapter at scale to ctx's set (the binding keeps the adapter alive while it is in the set). */
plm_status plmb_context_add_adapter(plm_context *ctx, plm_adapter *adapter, float scale) {
    if (!ctx || !adapter) return plmb_fail(PLM_ERR_ARG, "context_add_adapter: NULL argument");
    plm_adapter *list[PLM_N_ADAPTERS_MAX];
    float scales[PLM_N_ADAPTERS_MAX];
    int32_t n = plm_context_n_adapters(ctx);
    if (n >= PLM_N_ADAPTERS_MAX) return plmb_fail(PLM_ERR_ARG, "a context applies at most 16 adapters");
    for (int32_t i = 0; i < n; i++) list[i] = plm_context_adapter(ctx, i, &scales[i]);
    list[n] = adapter;
    scales[n] = scale;
    return plm_context_set_adapters(ctx, n + 1, list, scales);
}

plm_status plmb_context_state_save(const plm_context *ctx, void *out_data, size_t out_size) {
    size_t n = 0;
    plm_status st = plm_context_state_save(ctx, out_data, out_size, &n);
    if (st == PLM_OK && n != out_size) return plmb_fail(PLM_ERR_ARG, "the state buffer is larger than the state");
    return st;
}

plm_status plmb_context_state_load(plm_context *ctx, const void *data, size_t size) {
    return plm_context_state_load(ctx, data, size);
}

/* plm_classify with the labels' tokens concatenated in flat (lens[i] tokens for
 * label i). out_floats receives the log-probabilities (items 0 .. n_lens-1) and
 * the probabilities (items n_lens .. 2 n_lens - 1). */
plm_status plmb_classify(plm_context *ctx, const plm_token *tokens, int32_t n_tokens, const plm_token *flat,
                         int32_t n_flat, const int32_t *lens, int32_t n_lens, const plm_classify_params *params,
                         float *out_floats, int32_t n_out_floats) {
    if (n_lens > 0 && ((int64_t)n_out_floats < 2 * (int64_t)n_lens || !out_floats))
        return plmb_fail(PLM_ERR_ARG, "the output buffer must hold 2 floats per label");
    const plm_token **ptrs = NULL;
    plm_status st = plmb_split(flat, n_flat, lens, n_lens, &ptrs);
    if (st) return st;
    st = plm_classify(ctx, tokens, n_tokens, ptrs, lens, n_lens, params, out_floats, out_floats + (n_lens > 0 ? n_lens : 0));
    free(ptrs);
    return st;
}

/* plm_classify_prompt for the bindings, which classify through it and
 * plmb_classify and build no prompt themselves: the prompt's tokens, the
 * labels' tokens one after the other, and how many of them each label has.
 * opt_text: the template, none for the default; texts: the labels. */
plm_status plmb_classify_prompt(const plm_model *model, const char *opt_text, size_t opt_len, const char *text,
                                size_t len, const char *const *texts, const size_t *text_lens, int32_t n_texts,
                                bool multi_label, plm_token **out_tokens, int32_t *out_n,
                                plm_token **out_label_tokens, int32_t *out_n_label_tokens,
                                plm_token **out_label_lens, int32_t *out_n_labels) {
    *out_tokens = *out_label_tokens = *out_label_lens = NULL;
    *out_n = *out_n_label_tokens = *out_n_labels = 0;
    if (n_texts <= 0) return plmb_fail(PLM_ERR_ARG, "the label list is empty");
    int32_t *lens = malloc((size_t)n_texts * sizeof(int32_t));
    if (!lens) return plmb_fail(PLM_ERR_OOM, "out of memory");
    plm_status st = plm_classify_prompt(model, opt_text, opt_len, text, len, texts, text_lens, n_texts, multi_label,
                                        out_tokens, out_n, out_label_tokens, lens);
    if (st) {
        free(lens);
        return st;
    }
    for (int32_t i = 0; i < n_texts; i++) *out_n_label_tokens += lens[i];
    *out_label_lens = lens;
    *out_n_labels = n_texts;
    return PLM_OK;
}

/* plm_embed with the texts' tokens concatenated in flat (lens[i] tokens for
 * text i); out_floats (at least n_lens x n_embd) receives the rows. */
plm_status plmb_embed(plm_context *ctx, const plm_token *flat, int32_t n_flat, const int32_t *lens, int32_t n_lens,
                      int32_t pooling, bool normalize, float *out_floats, int32_t n_out_floats) {
    if (!ctx) return plmb_fail(PLM_ERR_ARG, "plm_embed: ctx is NULL");
    plm_model_info info;
    plm_status st = plm_model_get_info(plm_context_model(ctx), &info);
    if (st) return st;
    if (n_lens > 0 && ((int64_t)n_out_floats < (int64_t)n_lens * info.n_embd || !out_floats))
        return plmb_fail(PLM_ERR_ARG, "the output buffer must hold n_embd floats per text");
    const plm_token **ptrs = NULL;
    if ((st = plmb_split(flat, n_flat, lens, n_lens, &ptrs))) return st;
    st = plm_embed(ctx, ptrs, lens, n_lens, (plm_pooling)pooling, normalize, out_floats);
    free(ptrs);
    return st;
}

/* plm_classify_head with the texts' tokens concatenated in flat (lens[i] tokens
 * for text i). out_floats (at least 2 x n_lens x n_cls_out) receives the scores
 * (n_lens rows of n_cls_out) and then the probabilities (the same). */
plm_status plmb_classify_head(plm_context *ctx, const plm_token *flat, int32_t n_flat, const int32_t *lens,
                              int32_t n_lens, float *out_floats, int32_t n_out_floats) {
    if (!ctx) return plmb_fail(PLM_ERR_ARG, "plm_classify_head: ctx is NULL");
    int64_t k = plm_model_n_cls_out(plm_context_model(ctx));
    if (n_lens > 0 && k > 0 && ((int64_t)n_out_floats < 2 * (int64_t)n_lens * k || !out_floats))
        return plmb_fail(PLM_ERR_ARG, "the output buffer must hold 2 x n_cls_out floats per text");
    const plm_token **ptrs = NULL;
    plm_status st = plmb_split(flat, n_flat, lens, n_lens, &ptrs);
    if (st) return st;
    st = plm_classify_head(ctx, ptrs, lens, n_lens, out_floats, out_floats ? out_floats + (n_lens > 0 ? n_lens : 0) * k : NULL);
    free(ptrs);
    return st;
}

/* --------------------------------------------------------------- grammar */

/* A grammar from GBNF text (start rule root: "root" when empty). */
plm_status plmb_grammar_parse(const char *text, size_t len, const char *root, plm_grammar **out) {
    return plm_grammar_parse(text, len, root && *root ? root : NULL, out);
}

/* A grammar from a JSON Schema given as JSON text. */
plm_status plmb_grammar_from_json_schema(const char *text, size_t len, plm_grammar **out) {
    return plm_grammar_from_json_schema(text, len, out);
}

/* The GBNF a JSON Schema compiles to, as malloc'd bytes (free()). */
plm_status plmb_json_schema_to_gbnf(const char *text, size_t len, char **out_bytes, size_t *out_len) {
    return plm_json_schema_to_gbnf(text, len, out_bytes, out_len);
}

/* A grammar for the strings a regular expression matches. */
plm_status plmb_grammar_from_regex(const char *text, size_t len, plm_grammar **out) {
    return plm_grammar_from_regex(text, len, out);
}

/* A grammar for exactly one of the texts. */
plm_status plmb_grammar_from_choices(const char *const *texts, const size_t *text_lens, int32_t n_texts, plm_grammar **out) {
    return plm_grammar_from_choices(texts, text_lens, n_texts, out);
}

/* Sets the grammar of generation parameters (borrowed until the generator is created, which takes its own
 * reference). */
void plmb_generate_params_set_grammar(plm_generate_params *params, const plm_grammar *grammar) {
    if (params) params->grammar = grammar;
}

/* ------------------------------------------------------------------ chat */

/* The name of chat family number family ("chatml"...), None / nil if it is not one. */
const char *plmb_chat_family_name(int32_t family) { return plm_chat_family_name((plm_chat_family)family); }

/* The i-th end-of-turn marker of a family, None / nil past the last. */
const char *plmb_chat_stop(int32_t family, int32_t i) { return plm_chat_stop((plm_chat_family)family, i); }

/* The family of a chat template and its default system message (borrowed from
 * text; none when the template has none). */
plm_status plmb_chat_detect(const char *text, size_t len, int32_t *out_family, const char **opt_bytes, size_t *opt_len) {
    plm_chat_format f;
    plm_status st = plm_chat_detect(text, len, &f);
    *out_family = (int32_t)f.family;
    *opt_bytes = f.default_system;
    *opt_len = f.default_system_len;
    return st;
}

/* Renders a conversation given as texts = [role, content, role, content, ...]
 * in family, with the default system message text when has_default_system,
 * as malloc'd bytes (free()). */
plm_status plmb_chat_render(int32_t family, const char *text, size_t len, bool has_default_system,
                            const char *const *texts, const size_t *text_lens, int32_t n_texts,
                            bool add_generation_prompt, char **out_bytes, size_t *out_len) {
    *out_bytes = NULL;
    *out_len = 0;
    if (n_texts % 2) return plmb_fail(PLM_ERR_ARG, "chat messages: expected role, content pairs (an even count)");
    int32_t n = n_texts / 2;
    plm_chat_message *msgs = malloc((size_t)(n > 0 ? n : 1) * sizeof(*msgs));
    if (!msgs) return plmb_fail(PLM_ERR_OOM, "out of memory for chat messages");
    for (int32_t i = 0; i < n; i++)
        msgs[i] = (plm_chat_message){texts[2 * i], text_lens[2 * i], texts[2 * i + 1], text_lens[2 * i + 1]};
    plm_chat_format fmt = {(plm_chat_family)family, has_default_system ? text : NULL, has_default_system ? len : 0};
    size_t need = 0;
    plm_status st = plm_chat_render(&fmt, msgs, n, add_generation_prompt, NULL, 0, &need);
    char *buf = NULL;
    if (st == PLM_ERR_BUFFER || st == PLM_OK) {
        buf = malloc(need + 1);
        st = buf ? plm_chat_render(&fmt, msgs, n, add_generation_prompt, buf, need + 1, &need)
                 : plmb_fail(PLM_ERR_OOM, "out of memory for a chat prompt");
    }
    free(msgs);
    if (st) {
        free(buf);
        return st;
    }
    *out_bytes = buf;
    *out_len = need;
    return PLM_OK;
}

/* The chat parameters: extra variables (JSON text, or none) and what renders
 * instead of the model's template (a family name when is_template is false,
 * Jinja source when true; none: the model's template). */
static plm_chat_params plmb_chat_params(const char *vars, size_t vars_len, const char *over, size_t over_len,
                                        bool is_template, bool add_generation_prompt) {
    plm_chat_params p = plm_chat_default_params();
    p.add_generation_prompt = add_generation_prompt;
    p.vars_json = vars;
    p.vars_len = vars_len;
    if (over && is_template) {
        p.template_src = over;
        p.template_len = over_len;
    } else if (over) {
        p.format = over;
        p.format_len = over_len;
    }
    return p;
}

/* The prompt of a chat with model (plm_chat_apply): messages as a JSON array
 * (text), as malloc'd bytes (free()). */
plm_status plmb_chat_apply(const plm_model *model, const char *text, size_t len, const char *vars, size_t vars_len,
                           const char *over, size_t over_len, bool is_template, bool add_generation_prompt,
                           char **out_bytes, size_t *out_len) {
    plm_chat_params p = plmb_chat_params(vars, vars_len, over, over_len, is_template, add_generation_prompt);
    return plm_chat_apply(model, text, len, &p, out_bytes, out_len);
}

/* The i-th stop string of such a chat, None / nil past the last. */
const char *plmb_chat_model_stop(const plm_model *model, const char *over, size_t over_len, bool is_template, int32_t i) {
    plm_chat_params p = plmb_chat_params(NULL, 0, over, over_len, is_template, true);
    return plm_chat_model_stop(model, &p, i);
}

/* ------------------------------------------------------ batch generation */

/* A batch generator over ctx (see plm_batch_gen_params; 0 means the default). */
plm_status plmb_batch_gen_create(plm_context *ctx, int32_t n_parallel, int32_t prefill_chunk, int32_t n_ctx_seq,
                                 bool share_prefix, plm_batch_gen **out) {
    plm_batch_gen_params p = plm_batch_gen_default_params();
    p.n_parallel = n_parallel;
    if (prefill_chunk) p.prefill_chunk = prefill_chunk;
    p.n_ctx_seq = n_ctx_seq;
    p.share_prefix = share_prefix;
    return plm_batch_gen_create(ctx, &p, out);
}

/* Queues a request from tokens, with stop strings and a logit bias; its id out. */
plm_status plmb_batch_gen_submit(plm_batch_gen *bg, const plm_token *tokens, int32_t n_tokens,
                                 const plm_generate_params *params, const char *const *strs, int32_t n_strs,
                                 const plm_logit_bias *bias, int32_t n_bias, int32_t *out_id) {
    plm_generate_params p = params ? *params : plm_generate_default_params();
    p.stop = strs;
    p.n_stop = n_strs;
    p.sampling.logit_bias = bias;
    p.sampling.n_logit_bias = n_bias;
    return plm_batch_gen_submit_tokens(bg, tokens, n_tokens, &p, out_id);
}

/* One step; the number of requests not ended yet out. */
plm_status plmb_batch_gen_step(plm_batch_gen *bg, int32_t *out_id) { return plm_batch_gen_step(bg, out_id); }

/* Text of request id let out since the last take (borrowed). */
plm_status plmb_batch_gen_take(plm_batch_gen *bg, int32_t id, const char **piece, size_t *piece_len) {
    return plm_batch_gen_take(bg, id, piece, piece_len);
}

/* Ids of the requests that got text or ended in the last step (free()). */
plm_status plmb_batch_gen_updated(const plm_batch_gen *bg, plm_token **out_tokens, int32_t *out_n) {
    int32_t n = plm_batch_gen_updated(bg, NULL, 0);
    *out_n = 0;
    *out_tokens = malloc((size_t)(n > 0 ? n : 1) * sizeof(plm_token));
    if (!*out_tokens) return plmb_fail(PLM_ERR_OOM, "out of memory");
    *out_n = plm_batch_gen_updated(bg, *out_tokens, n);
    return PLM_OK;
}

/* Request id's result as [reason, status, n_prompt, n_shared, n_generated] (free()). */
plm_status plmb_batch_gen_result(const plm_batch_gen *bg, int32_t id, plm_token **out_tokens, int32_t *out_n) {
    plm_batch_result r;
    *out_tokens = NULL;
    *out_n = 0;
    plm_status st = plm_batch_gen_result(bg, id, &r);
    if (st) return st;
    if (!(*out_tokens = malloc(5 * sizeof(plm_token)))) return plmb_fail(PLM_ERR_OOM, "out of memory");
    (*out_tokens)[0] = (plm_token)r.reason;
    (*out_tokens)[1] = (plm_token)r.status;
    (*out_tokens)[2] = r.n_prompt;
    (*out_tokens)[3] = r.n_shared;
    (*out_tokens)[4] = r.n_generated;
    *out_n = 5;
    return PLM_OK;
}

/* Request id's error message ("" if none) and whole text so far (borrowed). */
plm_status plmb_batch_gen_error(const plm_batch_gen *bg, int32_t id, const char **piece, size_t *piece_len) {
    plm_batch_result r;
    plm_status st = plm_batch_gen_result(bg, id, &r);
    *piece = st ? "" : r.error;
    *piece_len = strlen(*piece);
    return st;
}

plm_status plmb_batch_gen_text(const plm_batch_gen *bg, int32_t id, const char **piece, size_t *piece_len) {
    plm_batch_result r;
    plm_status st = plm_batch_gen_result(bg, id, &r);
    *piece = st ? "" : r.text;
    *piece_len = st ? 0 : r.text_len;
    return st;
}

/* A copy of request id's generated tokens (free()). */
plm_status plmb_batch_gen_tokens(const plm_batch_gen *bg, int32_t id, plm_token **out_tokens, int32_t *out_n) {
    int32_t n = 0;
    const plm_token *t = plm_batch_gen_tokens(bg, id, &n);
    *out_n = 0;
    *out_tokens = NULL;
    if (!t && n == 0 && (id < 0 || id >= plm_batch_gen_n_requests(bg)))
        return plmb_fail(PLM_ERR_ARG, "no such request");
    *out_tokens = malloc((size_t)(n > 0 ? n : 1) * sizeof(plm_token));
    if (!*out_tokens) return plmb_fail(PLM_ERR_OOM, "out of memory for tokens");
    if (n > 0) memcpy(*out_tokens, t, (size_t)n * sizeof(plm_token));
    *out_n = n;
    return PLM_OK;
}
%}
