/*
 * model.c — loading a model: architecture, hyperparameters, weight binding.
 *
 * Owns plm_model_load/free/info and the default-model lookup. It reads the
 * hyperparameters of the `llama` architecture (SmolLM2, Llama 2/3.x, Mistral,
 * TinyLlama) from metadata, binds every weight to its GGUF tensor after checking
 * shape and type, and dequantizes the small 1-D norm vectors into floats. Other
 * architectures are refused with PLM_ERR_UNSUPPORTED naming them. The math lives
 * in forward.c; the vocabulary in tokenizer/.
 */
#include "model.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_MODEL_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"

plm_model_params plm_model_default_params(void) {
    plm_model_params p = {.use_mmap = true, .check_tensors = false};
    return p;
}

static bool file_exists(const char *p) {
    struct stat sb;
    return p && *p && stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

plm_status plm_default_model_path(char *buf, size_t cap) {
    if (!buf || cap == 0) return plm_fail(PLM_ERR_ARG, "plm_default_model_path: no buffer");
    const char *env = getenv("POCKETLM_MODEL");
    if (env && *env) {
        if ((size_t)snprintf(buf, cap, "%s", env) >= cap) return plm_fail(PLM_ERR_BUFFER, "model path too long");
        if (!file_exists(buf))
            return plm_fail(PLM_ERR_IO, "POCKETLM_MODEL is set to '%s', which is not a file", env);
        return PLM_OK;
    }
    char dir[4096];
    const char *cache = getenv("POCKETLM_CACHE");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (cache && *cache) snprintf(dir, sizeof dir, "%s", cache);
    else if (xdg && *xdg) snprintf(dir, sizeof dir, "%s/pocketlm", xdg);
    else if (home && *home) snprintf(dir, sizeof dir, "%s/.cache/pocketlm", home);
    else return plm_fail(PLM_ERR_IO, "no default model: set POCKETLM_MODEL or POCKETLM_CACHE (HOME is not set)");
    if ((size_t)snprintf(buf, cap, "%s/%s", dir, DEFAULT_MODEL_FILE) >= cap) return plm_fail(PLM_ERR_BUFFER, "model path too long");
    if (!file_exists(buf))
        return plm_fail(PLM_ERR_IO, "default model not found at %s: run `make model` (or tools/fetch_default_model.sh), or set POCKETLM_MODEL to a GGUF file", buf);
    return PLM_OK;
}

static plm_status bind_weight(plm_model *m, const char *name, int64_t n_in, int64_t n_out, bool required, plm_weight *w) {
    memset(w, 0, sizeof(*w));
    const plm_gguf_tensor *t = plm_gguf_tensor_find(m->g, name);
    if (!t) {
        if (!required) return PLM_OK;
        return plm_fail(PLM_ERR_FORMAT, "%s: required tensor '%s' is missing", m->g->path, name);
    }
    if (t->ne[0] != n_in || t->ne[1] != n_out || t->ne[2] != 1 || t->ne[3] != 1)
        return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' has shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 "], expected [%" PRId64 ", %" PRId64 "]",
                        m->g->path, name, t->ne[0], t->ne[1], t->ne[2], t->ne[3], n_in, n_out);
    const plm_type_traits *tt = plm_type_traits_get(t->type);
    if (!tt || !tt->is_weight)
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s: tensor '%s' has unsupported type %u", m->g->path, name, t->type);
    w->t = t;
    w->data = t->data;
    w->type = (plm_type)t->type;
    w->n_in = n_in;
    w->n_out = n_out;
    w->row_bytes = plm_type_row_size(w->type, n_in);
    return PLM_OK;
}

static plm_status load_vector(plm_model *m, const char *name, int64_t n, bool required, float **out) {
    *out = NULL;
    const plm_gguf_tensor *t = plm_gguf_tensor_find(m->g, name);
    if (!t) {
        if (!required) return PLM_OK;
        return plm_fail(PLM_ERR_FORMAT, "%s: required tensor '%s' is missing", m->g->path, name);
    }
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' has %" PRId64 " x %" PRId64 " elements, expected a vector of %" PRId64,
                        m->g->path, name, t->ne[0], t->ne[1], n);
    float *v = malloc((size_t)n * sizeof(float));
    if (!v) return plm_fail(PLM_ERR_OOM, "out of memory for tensor '%s'", name);
    plm_dequantize_row_ref((plm_type)t->type, t->data, v, n);
    for (int64_t i = 0; i < n; i++) {
        if (v[i] != v[i] || v[i] > 3.4e38f || v[i] < -3.4e38f) {
            free(v);
            return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' element %" PRId64 " is not finite", m->g->path, name, i);
        }
    }
    *out = v;
    return PLM_OK;
}

static plm_status arch_key_u32(plm_model *m, const char *suffix, bool required, uint32_t lo, uint32_t hi, int32_t *out) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    uint32_t v = (uint32_t)*out;
    plm_status st = plm_gguf_get_u32(m->g, key, required, &v);
    if (st) return st;
    if (v < lo || v > hi)
        return plm_fail(PLM_ERR_FORMAT, "%s: metadata key '%s' = %u is out of range [%u, %u]", m->g->path, key, v, lo, hi);
    *out = (int32_t)v;
    return PLM_OK;
}

static plm_status arch_key_f32(plm_model *m, const char *suffix, bool required, float *out) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    return plm_gguf_get_f32(m->g, key, required, out);
}

static plm_status load_llama(plm_model *m) {
    plm_hparams *hp = &m->hp;
    plm_status st;
    hp->n_ctx_train = 2048;
    hp->norm_eps = 1e-5f;
    hp->rope_base = 10000.0f;
    hp->rope_freq_scale = 1.0f;
    if ((st = arch_key_u32(m, "block_count", true, 1, 4096, &hp->n_layer)) ||
        (st = arch_key_u32(m, "context_length", false, 1, 1u << 24, &hp->n_ctx_train)) ||
        (st = arch_key_u32(m, "embedding_length", true, 1, 1 << 16, &hp->n_embd)) ||
        (st = arch_key_u32(m, "feed_forward_length", true, 1, 1 << 20, &hp->n_ff)) ||
        (st = arch_key_u32(m, "attention.head_count", true, 1, 1024, &hp->n_head)))
        return st;
    hp->n_head_kv = hp->n_head;
    if ((st = arch_key_u32(m, "attention.head_count_kv", false, 1, 1024, &hp->n_head_kv))) return st;
    if (hp->n_head % hp->n_head_kv)
        return plm_fail(PLM_ERR_FORMAT, "%s: head_count %d is not a multiple of head_count_kv %d", m->g->path, hp->n_head, hp->n_head_kv);
    hp->head_dim = hp->n_embd / hp->n_head;
    if ((st = arch_key_u32(m, "attention.key_length", false, 1, 4096, &hp->head_dim))) return st;
    if (hp->head_dim % 2)
        return plm_fail(PLM_ERR_FORMAT, "%s: attention head size %d is odd", m->g->path, hp->head_dim);
    hp->n_rot = hp->head_dim;
    if ((st = arch_key_u32(m, "rope.dimension_count", false, 2, 4096, &hp->n_rot))) return st;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return plm_fail(PLM_ERR_FORMAT, "%s: rope.dimension_count %d does not fit head size %d", m->g->path, hp->n_rot, hp->head_dim);
    if ((st = arch_key_f32(m, "attention.layer_norm_rms_epsilon", false, &hp->norm_eps)) ||
        (st = arch_key_f32(m, "rope.freq_base", false, &hp->rope_base)))
        return st;
    if (!(hp->norm_eps > 0) || !(hp->rope_base > 0))
        return plm_fail(PLM_ERR_FORMAT, "%s: rms epsilon and rope.freq_base must be positive", m->g->path);

    char key[256], *scaling = NULL;
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch);
    if ((st = plm_gguf_get_str(m->g, key, false, &scaling))) return st;
    if (scaling) {
        float factor = 1.0f;
        bool ok = strcmp(scaling, "none") == 0 || strcmp(scaling, "linear") == 0 || strcmp(scaling, "llama3") == 0;
        if (!ok) {
            st = plm_fail(PLM_ERR_UNSUPPORTED, "%s: rope scaling type '%s' is not supported", m->g->path, scaling);
            free(scaling);
            return st;
        }
        if (strcmp(scaling, "linear") == 0) {
            if ((st = arch_key_f32(m, "rope.scaling.factor", false, &factor))) { free(scaling); return st; }
            if (factor > 0) hp->rope_freq_scale = 1.0f / factor;
        }
        free(scaling);
    }
    /* Llama 3.1+: per-frequency divisors are stored as a tensor. */
    if ((st = load_vector(m, "rope_freqs.weight", hp->n_rot / 2, false, &m->rope_factors))) return st;

    const plm_gguf_tensor *emb = plm_gguf_tensor_find(m->g, "token_embd.weight");
    if (!emb) return plm_fail(PLM_ERR_FORMAT, "%s: required tensor 'token_embd.weight' is missing", m->g->path);
    if (emb->ne[1] < 1 || emb->ne[1] > INT32_MAX)
        return plm_fail(PLM_ERR_FORMAT, "%s: tensor 'token_embd.weight' has an invalid vocabulary size", m->g->path);
    hp->n_vocab = (int32_t)emb->ne[1];
    int32_t nv = plm_vocab_n_tokens(m->vocab);
    if (nv != hp->n_vocab)
        return plm_fail(PLM_ERR_FORMAT, "%s: the vocabulary has %d tokens but token_embd.weight has %d rows", m->g->path, nv, hp->n_vocab);

    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    if ((st = bind_weight(m, "token_embd.weight", E, hp->n_vocab, true, &m->tok_embd))) return st;
    if ((st = load_vector(m, "output_norm.weight", E, true, &m->output_norm))) return st;
    if ((st = bind_weight(m, "output.weight", E, hp->n_vocab, false, &m->output))) return st;
    if (!m->output.t) m->output = m->tok_embd; /* tied embeddings */

    m->layers = calloc((size_t)hp->n_layer, sizeof(plm_layer));
    if (!m->layers) return plm_fail(PLM_ERR_OOM, "out of memory");
    char name[128];
#define LNAME(fmt) (snprintf(name, sizeof name, "blk.%d." fmt ".weight", il), name)
    for (int il = 0; il < hp->n_layer; il++) {
        plm_layer *L = &m->layers[il];
        if ((st = load_vector(m, LNAME("attn_norm"), E, true, &L->attn_norm)) ||
            (st = bind_weight(m, LNAME("attn_q"), E, Q, true, &L->wq)) ||
            (st = bind_weight(m, LNAME("attn_k"), E, KV, true, &L->wk)) ||
            (st = bind_weight(m, LNAME("attn_v"), E, KV, true, &L->wv)) ||
            (st = bind_weight(m, LNAME("attn_output"), Q, E, true, &L->wo)) ||
            (st = load_vector(m, LNAME("ffn_norm"), E, true, &L->ffn_norm)) ||
            (st = bind_weight(m, LNAME("ffn_gate"), E, hp->n_ff, true, &L->w_gate)) ||
            (st = bind_weight(m, LNAME("ffn_up"), E, hp->n_ff, true, &L->w_up)) ||
            (st = bind_weight(m, LNAME("ffn_down"), hp->n_ff, E, true, &L->w_down)))
            return st;
    }
#undef LNAME
    return PLM_OK;
}

void plm_model_free(plm_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int i = 0; i < m->hp.n_layer; i++) {
            free(m->layers[i].attn_norm);
            free(m->layers[i].ffn_norm);
        }
        free(m->layers);
    }
    free(m->output_norm);
    free(m->rope_factors);
    plm_vocab_free(m->vocab);
    free(m->arch);
    free(m->name);
    free(m->chat_template);
    free(m->meta_keys);
    plm_gguf_close(m->g);
    free(m);
}

static const char *dominant_type(const plm_gguf *g) {
    uint64_t bytes[PLM_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].n_dims >= 2 && g->tensors[i].type < PLM_TYPE_COUNT) bytes[g->tensors[i].type] += g->tensors[i].nbytes;
    int best = 0;
    for (int t = 0; t < PLM_TYPE_COUNT; t++) if (bytes[t] > bytes[best]) best = t;
    const plm_type_traits *tt = plm_type_traits_get((uint32_t)best);
    return tt ? tt->name : "?";
}

plm_status plm_model_load(const char *path, const plm_model_params *params, plm_model **out) {
    if (!out) return plm_fail(PLM_ERR_ARG, "plm_model_load: out is NULL");
    *out = NULL;
    plm_clear_error();
    plm_model_params p = params ? *params : plm_model_default_params();
    char def[4096];
    if (!path || !*path) {
        plm_status st = plm_default_model_path(def, sizeof def);
        if (st) return st;
        path = def;
    }
    plm_model *m = calloc(1, sizeof(*m));
    if (!m) return plm_fail(PLM_ERR_OOM, "out of memory");
    plm_status st = plm_gguf_open(path, p.use_mmap, &m->g);
    if (st) goto fail;
    if ((st = plm_gguf_get_str(m->g, "general.architecture", true, &m->arch))) goto fail;
    if ((st = plm_gguf_get_str(m->g, "general.name", false, &m->name))) goto fail;
    if ((st = plm_gguf_get_str(m->g, "tokenizer.chat_template", false, &m->chat_template))) goto fail;
    if (strcmp(m->arch, "llama") != 0) {
        st = plm_fail(PLM_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported (supported: llama)", path, m->arch);
        goto fail;
    }
    if ((st = plm_vocab_load(m->g, &m->vocab))) goto fail;
    if ((st = load_llama(m))) goto fail;
    for (uint64_t i = 0; i < m->g->n_tensors; i++) {
        const plm_gguf_tensor *t = &m->g->tensors[i];
        m->n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        m->n_bytes += t->nbytes;
    }
    m->file_type = dominant_type(m->g);
    *out = m;
    return PLM_OK;
fail:
    plm_model_free(m);
    return st;
}

plm_status plm_model_get_info(const plm_model *m, plm_model_info *out) {
    if (!m || !out) return plm_fail(PLM_ERR_ARG, "plm_model_get_info: NULL argument");
    memset(out, 0, sizeof(*out));
    out->arch = m->arch;
    out->name = m->name ? m->name : "";
    out->file_type = m->file_type;
    out->chat_template = m->chat_template ? m->chat_template : "";
    out->path = m->g->path;
    out->n_vocab = m->hp.n_vocab;
    out->n_ctx_train = m->hp.n_ctx_train;
    out->n_embd = m->hp.n_embd;
    out->n_layer = m->hp.n_layer;
    out->n_head = m->hp.n_head;
    out->n_head_kv = m->hp.n_head_kv;
    out->n_ff = m->hp.n_ff;
    out->head_dim = m->hp.head_dim;
    out->n_params = m->n_params;
    out->n_bytes = m->n_bytes;
    out->bos = plm_vocab_bos(m->vocab);
    out->eos = plm_vocab_eos(m->vocab);
    out->eot = plm_vocab_eot(m->vocab);
    out->add_bos = plm_vocab_add_bos(m->vocab);
    return PLM_OK;
}

int32_t plm_model_meta_count(const plm_model *m) { return m ? (int32_t)m->g->n_kv : 0; }

const char *plm_model_meta_key(const plm_model *m, int32_t i) {
    if (!m || i < 0 || (uint64_t)i >= m->g->n_kv) return NULL;
    return m->g->kv[i].key;
}

plm_status plm_model_meta_str(const plm_model *m, const char *key, char *buf, size_t cap) {
    if (!m || !key || !buf || !cap) return plm_fail(PLM_ERR_ARG, "plm_model_meta_str: NULL argument");
    const plm_gguf_value *v = plm_gguf_get(m->g, key);
    if (!v) return plm_fail(PLM_ERR_ARG, "metadata key '%s' is not in the model", key);
    plm_gguf_value_format(v, buf, cap);
    return PLM_OK;
}

/* Tokenizer entry points of the public API. */
plm_status plm_tokenize(const plm_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                        plm_token *out, int32_t cap, int32_t *n_out) {
    if (!m || (!text && len) || !n_out || (cap > 0 && !out) || cap < 0) return plm_fail(PLM_ERR_ARG, "plm_tokenize: invalid argument");
    return plm_vocab_tokenize(m->vocab, text ? text : "", len, add_special, parse_special, out, cap, n_out);
}

plm_status plm_token_to_piece(const plm_model *m, plm_token token, bool special, char *buf, size_t cap, size_t *n_out) {
    if (!m || !n_out || (cap && !buf)) return plm_fail(PLM_ERR_ARG, "plm_token_to_piece: invalid argument");
    return plm_vocab_piece(m->vocab, token, special, buf, cap, n_out);
}

plm_status plm_detokenize(const plm_model *m, const plm_token *tokens, int32_t n, bool special, char *buf, size_t cap,
                          size_t *n_out) {
    if (!m || !n_out || n < 0 || (n && !tokens) || (cap && !buf)) return plm_fail(PLM_ERR_ARG, "plm_detokenize: invalid argument");
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t k;
        size_t room = total < cap ? cap - total : 0;
        plm_status st = plm_vocab_piece(m->vocab, tokens[i], special, room ? buf + total : NULL, room, &k);
        if (st && st != PLM_ERR_BUFFER) return st;
        total += k;
    }
    *n_out = total;
    if (total > cap) return plm_fail(PLM_ERR_BUFFER, "buffer of %zu bytes is too small: %zu needed", cap, total);
    return PLM_OK;
}

bool plm_token_is_eog(const plm_model *m, plm_token t) { return m && plm_vocab_is_eog(m->vocab, t); }
