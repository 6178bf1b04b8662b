/*
 * model.c — loading a model: the file, its family, and the loaders' helpers.
 *
 * Owns plm_model_load/free/info and the default-model lookup. It opens the GGUF,
 * loads the vocabulary, and hands the file to the family that general.architecture
 * names (models/: llama and Mistral, qwen2, qwen3, phi3, gemma2, gemma3); other
 * architectures are refused with PLM_ERR_UNSUPPORTED naming them. The helpers
 * here read the hyperparameters all families share, bind weights after checking
 * shape and type, and dequantize the small 1-D vectors (norms, biases) into
 * floats; with check_tensors, it first scans all tensor data for NaN and
 * infinities. It also loads the optional sequence-classification head (cls.*
 * tensors, pooling type and label names; see the comment above
 * plm_model_load_cls_head for the convention) that classify.c applies. The math
 * lives in forward.c and models/; the vocabulary in tokenizer/.
 */
#include "model.h"
#include "models/models.h"

#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MODEL_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"

plm_model_params plm_model_default_params(void) {
    plm_model_params p = {.use_mmap = true, .check_tensors = false, .vocab_only = false, .repack = true};
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
        return plm_fail(PLM_ERR_IO, "default model not found at %s: run `python -m pocketlm download` (in a checkout: `make model`), or set POCKETLM_MODEL to a GGUF file", buf);
    return PLM_OK;
}

static const char *const ROLE_NAMES[PLM_ROLE_COUNT] = {
    [PLM_ROLE_Q] = "attn_q", [PLM_ROLE_K] = "attn_k", [PLM_ROLE_V] = "attn_v", [PLM_ROLE_QKV] = "attn_qkv",
    [PLM_ROLE_O] = "attn_output", [PLM_ROLE_GATE] = "ffn_gate", [PLM_ROLE_UP] = "ffn_up", [PLM_ROLE_DOWN] = "ffn_down",
};

const char *plm_role_name(plm_role r) { return r > PLM_ROLE_NONE && r < PLM_ROLE_COUNT ? ROLE_NAMES[r] : NULL; }

/* "blk.<il>.<role>.weight" -> layer and role; anything else is (-1, NONE). */
static void weight_place(const char *name, int32_t *layer, plm_role *role) {
    *layer = -1;
    *role = PLM_ROLE_NONE;
    unsigned il;
    int n = 0;
    if (sscanf(name, "blk.%u.%n", &il, &n) != 1 || n == 0 || il > 1u << 20) return;
    const char *rest = name + n;
    for (int r = PLM_ROLE_NONE + 1; r < PLM_ROLE_COUNT; r++) {
        size_t len = strlen(ROLE_NAMES[r]);
        if (strncmp(rest, ROLE_NAMES[r], len) == 0 && strcmp(rest + len, ".weight") == 0) {
            *layer = (int32_t)il;
            *role = (plm_role)r;
            return;
        }
    }
}

plm_status plm_model_bind(plm_model *m, const char *name, int64_t n_in, int64_t n_out, bool required, plm_weight *w) {
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
    weight_place(name, &w->layer, &w->role);
    return PLM_OK;
}

plm_status plm_model_vector(plm_model *m, const char *name, int64_t n, bool required, float **out) {
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

plm_status plm_model_key_u32(plm_model *m, const char *suffix, bool required, uint32_t lo, uint32_t hi, int32_t *out) {
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

plm_status plm_model_key_f32(plm_model *m, const char *suffix, bool required, float *out) {
    char key[256];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    return plm_gguf_get_f32(m->g, key, required, out);
}

plm_weight plm_weight_rows(const plm_weight *w, int64_t r0, int64_t n) {
    plm_weight v = *w;
    v.data = (const uint8_t *)w->data + (size_t)r0 * w->row_bytes;
    v.n_out = n;
    v.row0 = w->row0 + r0;
    return v;
}

const char *plm_layer_tensor(char *buf, size_t cap, int il, const char *what, const char *suffix) {
    snprintf(buf, cap, "blk.%d.%s.%s", il, what, suffix);
    return buf;
}

plm_status plm_model_load_hparams(plm_model *m) {
    plm_hparams *hp = &m->hp;
    plm_status st;
    hp->n_ctx_train = 2048;
    hp->norm_eps = 1e-5f;
    hp->rope_base = 10000.0f;
    hp->rope_freq_scale = 1.0f;
    hp->rope_type = PLM_ROPE_NORM;
    hp->rope_attn_factor = 1.0f;
    if ((st = plm_model_key_u32(m, "block_count", true, 1, 4096, &hp->n_layer)) ||
        (st = plm_model_key_u32(m, "context_length", false, 1, 1u << 24, &hp->n_ctx_train)) ||
        (st = plm_model_key_u32(m, "embedding_length", true, 1, 1 << 16, &hp->n_embd)) ||
        (st = plm_model_key_u32(m, "feed_forward_length", true, 1, 1 << 20, &hp->n_ff)) ||
        (st = plm_model_key_u32(m, "attention.head_count", true, 1, 1024, &hp->n_head)))
        return st;
    hp->n_head_kv = hp->n_head;
    if ((st = plm_model_key_u32(m, "attention.head_count_kv", false, 1, 1024, &hp->n_head_kv))) return st;
    if (hp->n_head % hp->n_head_kv)
        return plm_fail(PLM_ERR_FORMAT, "%s: head_count %d is not a multiple of head_count_kv %d", m->g->path, hp->n_head, hp->n_head_kv);
    hp->head_dim = hp->n_embd / hp->n_head;
    if ((st = plm_model_key_u32(m, "attention.key_length", false, 1, 4096, &hp->head_dim))) return st;
    if (hp->head_dim % 2)
        return plm_fail(PLM_ERR_FORMAT, "%s: attention head size %d is odd", m->g->path, hp->head_dim);
    int32_t head_v = hp->head_dim;
    if ((st = plm_model_key_u32(m, "attention.value_length", false, 1, 4096, &head_v))) return st;
    if (head_v != hp->head_dim)
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s: value head size %d differs from key head size %d", m->g->path, head_v, hp->head_dim);
    hp->n_rot = hp->head_dim;
    if ((st = plm_model_key_u32(m, "rope.dimension_count", false, 2, 4096, &hp->n_rot))) return st;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return plm_fail(PLM_ERR_FORMAT, "%s: rope.dimension_count %d does not fit head size %d", m->g->path, hp->n_rot, hp->head_dim);
    if ((st = plm_model_key_f32(m, "attention.layer_norm_rms_epsilon", false, &hp->norm_eps)) ||
        (st = plm_model_key_f32(m, "rope.freq_base", false, &hp->rope_base)) ||
        (st = plm_model_key_f32(m, "rope.scaling.attn_factor", false, &hp->rope_attn_factor)))
        return st;
    if (!(hp->norm_eps > 0) || !(hp->rope_base > 0))
        return plm_fail(PLM_ERR_FORMAT, "%s: rms epsilon and rope.freq_base must be positive", m->g->path);
    if (!(hp->rope_attn_factor > 0) || hp->rope_attn_factor > 100)
        return plm_fail(PLM_ERR_FORMAT, "%s: rope.scaling.attn_factor %g is out of range", m->g->path, (double)hp->rope_attn_factor);
    hp->n_ctx_orig = hp->n_ctx_train;
    if ((st = plm_model_key_u32(m, "rope.scaling.original_context_length", false, 1, 1u << 24, &hp->n_ctx_orig))) return st;

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
            if ((st = plm_model_key_f32(m, "rope.scaling.factor", false, &factor))) { free(scaling); return st; }
            if (factor > 0) hp->rope_freq_scale = 1.0f / factor;
        }
        free(scaling);
    }
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);

    const plm_gguf_tensor *emb = plm_gguf_tensor_find(m->g, "token_embd.weight");
    if (!emb) return plm_fail(PLM_ERR_FORMAT, "%s: required tensor 'token_embd.weight' is missing", m->g->path);
    if (emb->ne[1] < 1 || emb->ne[1] > INT32_MAX)
        return plm_fail(PLM_ERR_FORMAT, "%s: tensor 'token_embd.weight' has an invalid vocabulary size", m->g->path);
    hp->n_vocab = (int32_t)emb->ne[1];
    int32_t nv = plm_vocab_n_tokens(m->vocab);
    if (nv != hp->n_vocab)
        return plm_fail(PLM_ERR_FORMAT, "%s: the vocabulary has %d tokens but token_embd.weight has %d rows", m->g->path, nv, hp->n_vocab);

    m->layers = calloc((size_t)hp->n_layer, sizeof(plm_layer));
    if (!m->layers) return plm_fail(PLM_ERR_OOM, "out of memory");
    for (int il = 0; il < hp->n_layer; il++) {
        m->layers[il].rope_base = hp->rope_base;
        m->layers[il].rope_freq_scale = hp->rope_freq_scale;
    }
    return PLM_OK;
}

plm_status plm_model_bind_layer(plm_model *m, int il) {
    const plm_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    plm_layer *L = &m->layers[il];
    char name[128];
#define W(what) plm_layer_tensor(name, sizeof name, il, what, "weight")
    plm_status st;
    if ((st = plm_model_vector(m, W("attn_norm"), E, true, &L->attn_norm)) ||
        (st = plm_model_bind(m, W("attn_q"), E, Q, true, &L->wq)) ||
        (st = plm_model_bind(m, W("attn_k"), E, KV, true, &L->wk)) ||
        (st = plm_model_bind(m, W("attn_v"), E, KV, true, &L->wv)) ||
        (st = plm_model_bind(m, W("attn_output"), Q, E, true, &L->wo)) ||
        (st = plm_model_vector(m, W("ffn_norm"), E, true, &L->ffn_norm)) ||
        (st = plm_model_bind(m, W("ffn_gate"), E, hp->n_ff, true, &L->w_gate)) ||
        (st = plm_model_bind(m, W("ffn_up"), E, hp->n_ff, true, &L->w_up)) ||
        (st = plm_model_bind(m, W("ffn_down"), hp->n_ff, E, true, &L->w_down)))
        return st;
#undef W
    return PLM_OK;
}

plm_status plm_model_bind_io(plm_model *m) {
    const plm_hparams *hp = &m->hp;
    plm_status st;
    if ((st = plm_model_bind(m, "token_embd.weight", hp->n_embd, hp->n_vocab, true, &m->tok_embd))) return st;
    if ((st = plm_model_vector(m, "output_norm.weight", hp->n_embd, true, &m->output_norm))) return st;
    if ((st = plm_model_bind(m, "output.weight", hp->n_embd, hp->n_vocab, false, &m->output))) return st;
    if (!m->output.t) m->output = m->tok_embd; /* tied embeddings */
    return PLM_OK;
}

/* ------------------------------------------------------------ classification head */

/*
 * The head follows llama.cpp's convention (facts from ggml-org/llama.cpp:
 * src/llama-arch.cpp, src/llama-model.cpp, src/llama-graph.cpp build_pooling,
 * gguf-py/gguf/constants.py, convert_hf_to_gguf.py):
 *  - tensors LLM_TENSOR_CLS "cls" and LLM_TENSOR_CLS_OUT "cls.output", each with
 *    ".weight" and an optional ".bias"; GGUF shapes cls.weight [n_embd, n_embd]
 *    (ne0 first), cls.bias [n_embd], cls.output.weight [n_in, n_cls_out],
 *    cls.output.bias [n_cls_out]; "cls.norm" (ModernBERT's LayerNorm) also exists.
 *  - keys "{arch}.pooling_type" (u32: 0 none, 1 mean, 2 cls, 3 last, 4 rank) and
 *    "{arch}.classifier.output_labels" (array of strings); n_cls_out is the
 *    number of labels when the key is present.
 *  - the head runs on RANK pooling: the pooled final-norm hidden state (first
 *    token; last token for qwen3; mean for modern-bert) goes through
 *    tanh(cls x + cls_b) when cls is present, then cls.output x + cls.output_b
 *    when cls.output is present; qwen3 then takes a softmax over the outputs.
 *  - of the families pocketlm runs, llama.cpp loads a head only for qwen3
 *    ("cls.output.weight" alone, not required). Its converter writes that for a
 *    Qwen3 reranker: pooling_type 4 (rank), output_labels ["yes", "no"] and
 *    cls.output.weight = the lm_head rows of "yes" and "no", no bias.
 * pocketlm loads the same tensors for every family. Every family here is a
 * causal decoder, whose first token sees nothing of the text, so "rank" and an
 * absent or "none" pooling type pool the last token (as llama.cpp does for
 * qwen3, and as transformers' *ForSequenceClassification do); "mean" and "cls"
 * are honoured as stored. Without output_labels the labels are LABEL_0, ...
 * (transformers' default id2label).
 */

/* Dequantizes the 2-D tensor t (ne0 = n_in, ne1 = rows) into a new float array. */
static plm_status cls_matrix(plm_model *m, const plm_gguf_tensor *t, int64_t n_in, float **out) {
    *out = NULL;
    if (t->ne[0] != n_in || t->ne[1] < 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return plm_fail(PLM_ERR_FORMAT, "%s: classifier tensor '%s' has shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 "], expected [%" PRId64 ", n_out]",
                        m->g->path, t->name, t->ne[0], t->ne[1], t->ne[2], t->ne[3], n_in);
    if (t->ne[1] > 65536)
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s: classifier tensor '%s' has %" PRId64 " rows (at most 65536 are supported)", m->g->path, t->name, t->ne[1]);
    const plm_type_traits *tt = plm_type_traits_get(t->type);
    if (!tt || !tt->is_weight)
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s: classifier tensor '%s' has unsupported type %u", m->g->path, t->name, t->type);
    const int64_t rows = t->ne[1];
    float *w = malloc((size_t)rows * (size_t)n_in * sizeof(float));
    if (!w) return plm_fail(PLM_ERR_OOM, "out of memory for tensor '%s'", t->name);
    const size_t row_bytes = plm_type_row_size((plm_type)t->type, n_in);
    for (int64_t r = 0; r < rows; r++) {
        float *o = w + r * n_in;
        plm_dequantize_row_ref((plm_type)t->type, (const uint8_t *)t->data + (size_t)r * row_bytes, o, n_in);
        for (int64_t i = 0; i < n_in; i++) {
            if (o[i] != o[i] || o[i] > 3.4e38f || o[i] < -3.4e38f) {
                free(w);
                return plm_fail(PLM_ERR_FORMAT, "%s: classifier tensor '%s' row %" PRId64 " element %" PRId64 " is not finite", m->g->path, t->name, r, i);
            }
        }
    }
    *out = w;
    return PLM_OK;
}

static void cls_head_free(plm_cls_head *h) {
    free(h->dense);
    free(h->dense_b);
    free(h->out);
    free(h->out_b);
    if (h->labels)
        for (int32_t i = 0; i < h->n_out; i++) free(h->labels[i]);
    free(h->labels);
    memset(h, 0, sizeof(*h));
}

static plm_status cls_labels(plm_model *m, plm_cls_head *h) {
    char key[256];
    snprintf(key, sizeof key, "%s.classifier.output_labels", m->arch);
    const plm_gguf_value *arr = NULL;
    plm_status st = plm_gguf_get_arr(m->g, key, false, PLM_GGUF_STRING, &arr);
    if (st) return st;
    if (arr && arr->v.arr.n != (uint64_t)h->n_out)
        return plm_fail(PLM_ERR_FORMAT, "%s: metadata key '%s' names %" PRIu64 " labels but the classifier head '%s' has %d outputs",
                        m->g->path, key, arr->v.arr.n, h->out ? "cls.output.weight" : "cls.weight", h->n_out);
    h->labels = calloc((size_t)h->n_out, sizeof(char *));
    if (!h->labels) return plm_fail(PLM_ERR_OOM, "out of memory for %d labels", h->n_out);
    for (int32_t i = 0; i < h->n_out; i++) {
        char name[32];
        const char *src = name;
        size_t len;
        if (arr) {
            const plm_gguf_str *s = &arr->v.arr.items[i].v.str;
            if (memchr(s->ptr, 0, s->len))
                return plm_fail(PLM_ERR_FORMAT, "%s: metadata key '%s': label %d contains a NUL byte", m->g->path, key, i);
            src = s->ptr;
            len = s->len;
        } else {
            len = (size_t)snprintf(name, sizeof name, "LABEL_%d", i);
        }
        if (!(h->labels[i] = malloc(len + 1))) return plm_fail(PLM_ERR_OOM, "out of memory for a label");
        memcpy(h->labels[i], src, len);
        h->labels[i][len] = 0;
    }
    return PLM_OK;
}

static plm_status cls_pooling(plm_model *m, plm_cls_head *h) {
    char key[256];
    snprintf(key, sizeof key, "%s.pooling_type", m->arch);
    uint32_t type = 0; /* absent: none */
    plm_status st = plm_gguf_get_u32(m->g, key, false, &type);
    if (st) return st;
    switch (type) {
    case 1: h->pooling = PLM_POOL_MEAN; break;
    case 2: h->pooling = PLM_POOL_CLS; break;
    case 0: case 3: case 4: h->pooling = PLM_POOL_LAST; break;
    default:
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s: metadata key '%s' = %u is not a pooling type pocketlm knows (0 none, 1 mean, 2 cls, 3 last, 4 rank)",
                        m->g->path, key, type);
    }
    return PLM_OK;
}

static plm_status cls_bias(plm_model *m, const char *name, const char *weight, int64_t n, float **out) {
    const plm_gguf_tensor *t = plm_gguf_tensor_find(m->g, name);
    if (t && (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1))
        return plm_fail(PLM_ERR_FORMAT, "%s: classifier tensor '%s' has shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 "]; expected a vector of %" PRId64 " (the rows of '%s')",
                        m->g->path, name, t->ne[0], t->ne[1], t->ne[2], t->ne[3], n, weight);
    return plm_model_vector(m, name, n, false, out);
}

plm_status plm_model_load_cls_head(plm_model *m) {
    plm_cls_head *h = &m->cls;
    const int64_t E = m->hp.n_embd;
    const plm_gguf_tensor *dense = plm_gguf_tensor_find(m->g, "cls.weight");
    const plm_gguf_tensor *out = plm_gguf_tensor_find(m->g, "cls.output.weight");
    const char *orphans[][2] = {{"cls.bias", "cls.weight"}, {"cls.output.bias", "cls.output.weight"}};
    for (int i = 0; i < 2; i++)
        if (plm_gguf_tensor_find(m->g, orphans[i][0]) && !plm_gguf_tensor_find(m->g, orphans[i][1]))
            return plm_fail(PLM_ERR_FORMAT, "%s: classifier tensor '%s' is present without '%s'", m->g->path, orphans[i][0], orphans[i][1]);
    if (!dense && !out) return PLM_OK;
    if (plm_gguf_tensor_find(m->g, "cls.norm.weight"))
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s: classifier tensor 'cls.norm.weight' (a LayerNorm inside the head, ModernBERT's) is not supported", m->g->path);
    plm_status st;
    int64_t n_in = E;
    if (dense) {
        if ((st = cls_matrix(m, dense, E, &h->dense))) goto fail;
        h->n_hidden = (int32_t)dense->ne[1];
        if ((st = cls_bias(m, "cls.bias", "cls.weight", h->n_hidden, &h->dense_b))) goto fail;
        n_in = h->n_hidden;
        h->n_out = h->n_hidden;
    }
    if (out) {
        if (dense && out->ne[0] != n_in) {
            st = plm_fail(PLM_ERR_FORMAT, "%s: classifier tensor 'cls.output.weight' has rows of %" PRId64 " but 'cls.weight' has %" PRId64 " rows",
                          m->g->path, out->ne[0], n_in);
            goto fail;
        }
        if ((st = cls_matrix(m, out, n_in, &h->out))) goto fail;
        h->n_out = (int32_t)out->ne[1];
        if ((st = cls_bias(m, "cls.output.bias", "cls.output.weight", h->n_out, &h->out_b))) goto fail;
    }
    if ((st = cls_pooling(m, h)) || (st = cls_labels(m, h))) goto fail;
    return PLM_OK;
fail:
    cls_head_free(h);
    return st;
}

void plm_model_free(plm_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int i = 0; i < m->hp.n_layer; i++) {
            plm_layer *L = &m->layers[i];
            float *vecs[] = {L->attn_norm, L->bq, L->bk, L->bv, L->q_norm, L->k_norm, L->attn_post_norm, L->ffn_norm, L->ffn_post_norm};
            for (size_t k = 0; k < sizeof vecs / sizeof vecs[0]; k++) free(vecs[k]);
        }
        free(m->layers);
    }
    cls_head_free(&m->cls);
    if (m->family_data_free) m->family_data_free(m->family_data);
    free(m->output_norm);
    free(m->rope_factors);
    free(m->rope_long);
    free(m->rope_short);
    for (int32_t i = 0; i < m->n_packed; i++) munmap(m->packed[i].p, m->packed[i].size);
    free(m->packed);
    plm_token_trie_free(m->trie);
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

/* check_tensors: every tensor's values that are stored as floats — the
 * elements of F32, F16 and BF16 tensors, the fp16 scales (d, and dmin or m
 * where the format has one) of each block of a quantized tensor — must be
 * finite. The quantized values themselves are small integers and cannot be
 * NaN. This reads the whole file, which is why it is not the default. */
typedef struct scale_fields {
    size_t n;         /* fp16 fields per block: 0 (not a block format), 1 or 2 */
    size_t off[2];    /* their byte offsets in the block */
    const char *name[2];
} scale_fields;

#define D(B) offsetof(B, d)
static const scale_fields BLOCK_SCALES[PLM_TYPE_COUNT] = {
    [PLM_TYPE_Q4_0] = {1, {D(plm_block_q4_0)}, {"d"}},
    [PLM_TYPE_Q4_1] = {2, {D(plm_block_q4_1), offsetof(plm_block_q4_1, m)}, {"d", "m"}},
    [PLM_TYPE_Q5_0] = {1, {D(plm_block_q5_0)}, {"d"}},
    [PLM_TYPE_Q5_1] = {2, {D(plm_block_q5_1), offsetof(plm_block_q5_1, m)}, {"d", "m"}},
    [PLM_TYPE_Q8_0] = {1, {D(plm_block_q8_0)}, {"d"}},
    [PLM_TYPE_Q2_K] = {2, {D(plm_block_q2_K), offsetof(plm_block_q2_K, dmin)}, {"d", "dmin"}},
    [PLM_TYPE_Q3_K] = {1, {D(plm_block_q3_K)}, {"d"}},
    [PLM_TYPE_Q4_K] = {2, {D(plm_block_q4_K), offsetof(plm_block_q4_K, dmin)}, {"d", "dmin"}},
    [PLM_TYPE_Q5_K] = {2, {D(plm_block_q5_K), offsetof(plm_block_q5_K, dmin)}, {"d", "dmin"}},
    [PLM_TYPE_Q6_K] = {1, {D(plm_block_q6_K)}, {"d"}},
};
#undef D

static const char *nonfinite_name(bool nan, bool negative) { return nan ? "NaN" : negative ? "-Inf" : "+Inf"; }

/* 16-bit floats with an all-ones exponent (mask) are NaN or infinite. */
static int64_t first_nonfinite16(const uint8_t *p, int64_t n, size_t stride, uint16_t mask, uint16_t *bits) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + (size_t)i * stride, 2);
        if ((h & mask) == mask) {
            *bits = h;
            return i;
        }
    }
    return -1;
}

static plm_status check_tensor_values(const plm_gguf *g) {
    for (uint64_t ti = 0; ti < g->n_tensors; ti++) {
        const plm_gguf_tensor *t = &g->tensors[ti];
        const uint8_t *p = t->data;
        uint16_t h = 0;
        int64_t at;
        if (t->type == PLM_TYPE_F32) {
            const int64_t n = (int64_t)(t->nbytes / 4);
            for (int64_t i = 0; i < n; i++) {
                float v;
                memcpy(&v, p + 4 * i, 4);
                if (!isfinite(v))
                    return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' element %" PRId64 " is %s (check_tensors)", g->path,
                                    t->name, i, nonfinite_name(isnan(v), v < 0));
            }
        } else if (t->type == PLM_TYPE_F16 || t->type == PLM_TYPE_BF16) {
            const uint16_t mask = t->type == PLM_TYPE_F16 ? 0x7C00u : 0x7F80u;
            if ((at = first_nonfinite16(p, (int64_t)(t->nbytes / 2), 2, mask, &h)) >= 0)
                return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' element %" PRId64 " is %s (check_tensors)", g->path,
                                t->name, at, nonfinite_name((h & ~mask & 0x7FFFu) != 0, h & 0x8000u));
        } else {
            const plm_type_traits *tt = plm_type_traits_get(t->type);
            if (!tt || t->type >= PLM_TYPE_COUNT) continue;
            const scale_fields f = BLOCK_SCALES[t->type];
            const int64_t n_blocks = (int64_t)(t->nbytes / tt->type_size);
            for (size_t k = 0; k < f.n; k++)
                if ((at = first_nonfinite16(p + f.off[k], n_blocks, tt->type_size, 0x7C00u, &h)) >= 0)
                    return plm_fail(PLM_ERR_FORMAT,
                                    "%s: tensor '%s' (%s) block %" PRId64 " has scale %s = %s (check_tensors)", g->path,
                                    t->name, tt->name, at, f.name[k], nonfinite_name((h & 0x03FFu) != 0, h & 0x8000u));
        }
    }
    return PLM_OK;
}

/* Whether weight i of ws[0..k) is the first view of a tensor that repack_weights rearranges (see there). */
static bool repackable(const plm_kernels *kern, plm_weight *const *ws, int32_t k, int32_t i) {
    const plm_gguf_tensor *t = ws[i]->t;
    if (!t || ws[i]->x16 || !plm_x16_type(ws[i]->type) || !kern->gemm_x16[ws[i]->type]) return false;
    for (int32_t j = 0; j < i; j++)
        if (ws[j]->t == t) return false; /* an earlier view's */
    const size_t row = ws[i]->row_bytes, rows = (size_t)(t->nbytes / row);
    bool ok = rows % PLM_X16 == 0 && (uint64_t)rows * row == t->nbytes;
    for (int32_t j = i; j < k && ok; j++)
        if (ws[j]->t == t) ok = ws[j]->row0 % PLM_X16 == 0 && ws[j]->n_out % PLM_X16 == 0 && ws[j]->row_bytes == row;
    return ok;
}

#define HUGE_PAGE ((size_t)2 << 20)
#define PACK_ALIGN ((size_t)64)

/* n bytes of anonymous pages from a 2 MB boundary, asked for as 2 MB pages where the system has them (NULL: out
 * of memory; *mapped: the size to unmap). A product streams its weights a few KB per 16-row group, and on 4 KB
 * pages every page began with a TLB miss: decode steps took 1-3.6% less time on 2 MB pages (the default model,
 * the 135M Q8_0 and 1B Q4_0/Q8_0 shapes, a 16-sequence step 1.8%; paired steps of two models in one process). */
static void *arena_map(size_t n, size_t *mapped) {
    const size_t sz = (n + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    uint8_t *raw = mmap(NULL, sz + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE);
    if (p > raw) munmap(raw, (size_t)(p - raw));
    if (raw + sz + HUGE_PAGE > p + sz) munmap(p + sz, (size_t)(raw + sz + HUGE_PAGE - (p + sz)));
#ifdef MADV_HUGEPAGE
    (void)madvise(p, sz, MADV_HUGEPAGE); /* a hint: on 4 KB pages all works, slower */
#endif
    *mapped = sz;
    return p;
}

/* The decoder's projection weights (every view of a tensor: Phi-3's q, k, v rows share one) into the kernel
 * table's x16 layout where it has one for their type and every view starts and ends on a 16-row group (quant.h):
 * the same bytes rearranged, so a weight's size and place in its buffer stay as they were. A file read into
 * memory is repacked in place; a mapped (or borrowed) one into one buffer of the model's for all of them, in the
 * order the layers read them (arena_map), and the mapped pages are given back as it goes (read again from the
 * file only if something else reads the tensor). Token embeddings that are also the output (tied) are repacked
 * with it, and a token's row is read back from the layout (plm_blk_embed): the output product of every generated
 * token reads all of them, a prompt's embedding a row per token (a one-token Q8_0 product from memory takes 19%
 * less time repacked, plm-kernel-bench -b; decode steps 1.3-3% less, paired in one process). Other token
 * embeddings stay as they are. Encoders (bert) are left alone: they read ffn_down by columns. The table is the
 * process's one (kernels/dispatch.c), as every context's is. */
#define RELEASE_BYTES ((uintptr_t)1 << 20)
static plm_status repack_weights(plm_model *m) {
    const plm_kernels *kern = plm_kernels_get();
    const int32_t n_w = m->hp.n_layer * 7 + 1;
    plm_weight **ws = malloc((size_t)n_w * sizeof *ws);
    if (!ws) return plm_fail(PLM_ERR_OOM, "out of memory");
    int32_t k = 0;
    for (int32_t il = 0; il < m->hp.n_layer; il++) {
        plm_layer *L = &m->layers[il];
        plm_weight *lw[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t j = 0; j < sizeof lw / sizeof lw[0]; j++) ws[k++] = lw[j];
    }
    ws[k++] = &m->output;
    const bool in_place = !m->g->mapped && m->g->owns_base;
    size_t total = 0, at = 0;
    for (int32_t i = 0; i < k; i++)
        if (repackable(kern, ws, k, i)) total += (ws[i]->t->nbytes + PACK_ALIGN - 1) / PACK_ALIGN * PACK_ALIGN;
    uint8_t *arena = NULL; /* every repacked tensor of a mapped (or borrowed) file, in the order they are read */
    if (total && !in_place) {
        size_t mapped = 0;
        if (!(m->packed = malloc(sizeof *m->packed)) || !(arena = arena_map(total, &mapped))) {
            free(ws);
            return plm_fail(PLM_ERR_OOM, "out of memory repacking %zu bytes of weights", total);
        }
        m->packed[m->n_packed++] = (struct plm_packed){arena, mapped};
    }
    plm_status st = PLM_OK;
    uint8_t *tmp = NULL; /* a group's rows, to repack in place */
    size_t tmp_cap = 0;
    for (int32_t i = 0; i < k && st == PLM_OK; i++) {
        if (!repackable(kern, ws, k, i)) continue;
        const plm_gguf_tensor *t = ws[i]->t;
        const size_t row = ws[i]->row_bytes, rows = (size_t)(t->nbytes / row);
        uint8_t *dst = NULL;
        if (in_place) {
            if (PLM_X16 * row > tmp_cap) {
                free(tmp);
                if (!(tmp = malloc(tmp_cap = PLM_X16 * row))) st = plm_fail(PLM_ERR_OOM, "out of memory");
            }
            dst = (uint8_t *)(uintptr_t)t->data;
        } else {
            dst = arena + at;
            at += (t->nbytes + PACK_ALIGN - 1) / PACK_ALIGN * PACK_ALIGN;
        }
        if (st) break;
        /* a mapped file's pages inside the tensor's bytes are given back as the groups are done (RELEASE_BYTES
         * at a time), so that a big tensor (a tied output) is not held twice at the peak */
        const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), t0 = (uintptr_t)t->data, t1 = t0 + t->nbytes;
        uintptr_t released = (t0 + pg - 1) / pg * pg;
        for (size_t g = 0; g < rows; g += PLM_X16) {
            const uint8_t *src = (const uint8_t *)t->data + g * row;
            if (in_place) src = memcpy(tmp, src, PLM_X16 * row);
            plm_x16_pack(ws[i]->type, src, dst + g * row, ws[i]->n_in);
            const uintptr_t done = g + PLM_X16 == rows ? t1 / pg * pg : (t0 + (g + PLM_X16) * row) / pg * pg;
            if (m->g->mapped && done > released && (done - released >= RELEASE_BYTES || g + PLM_X16 == rows)) {
                (void)madvise((void *)released, done - released, MADV_DONTNEED);
                released = done;
            }
        }
        for (int32_t j = i; j < k; j++)
            if (ws[j]->t == t) ws[j]->data = dst + (size_t)ws[j]->row0 * row, ws[j]->x16 = true;
        if (m->tok_embd.t == t) m->tok_embd.data = dst, m->tok_embd.x16 = true; /* tied: rows read back (blocks.c) */
        m->n_repacked += t->nbytes;
    }
    free(tmp);
    free(ws);
    return st;
}

/* general.architecture -> family; Mistral files say "llama". */
static const plm_arch *const FAMILIES[] = {
    &plm_arch_llama, &plm_arch_qwen2, &plm_arch_qwen3, &plm_arch_phi3, &plm_arch_gemma2, &plm_arch_gemma3, &plm_arch_bert,
};

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
    if (p.check_tensors && (st = check_tensor_values(m->g))) goto fail;
    if ((st = plm_gguf_get_str(m->g, "general.architecture", true, &m->arch))) goto fail;
    if ((st = plm_gguf_get_str(m->g, "general.name", false, &m->name))) goto fail;
    if ((st = plm_gguf_get_str(m->g, "tokenizer.chat_template", false, &m->chat_template))) goto fail;
    for (size_t i = 0; i < sizeof FAMILIES / sizeof FAMILIES[0]; i++)
        if (strcmp(m->arch, FAMILIES[i]->name) == 0) m->family = FAMILIES[i];
    m->vocab_only = p.vocab_only;
    if (p.vocab_only) {
        /* Any architecture: nothing of the family is read, and the tensors
         * (llama.cpp's vocabulary files have none) are left alone. */
        if ((st = plm_vocab_load(m->g, &m->vocab))) goto fail;
        m->hp.n_vocab = plm_vocab_n_tokens(m->vocab);
        m->file_type = "none";
        *out = m;
        return PLM_OK;
    }
    if (!m->family) {
        char names[256] = "";
        for (size_t i = 0; i < sizeof FAMILIES / sizeof FAMILIES[0]; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", FAMILIES[i]->name);
        st = plm_fail(PLM_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported (supported: %s)", path, m->arch, names);
        goto fail;
    }
    if ((st = plm_vocab_load(m->g, &m->vocab))) goto fail;
    if ((st = m->family->load(m))) goto fail;
    if ((st = plm_model_load_cls_head(m))) goto fail;
    if (p.repack && !m->family->encoder && (st = repack_weights(m))) goto fail;
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

plm_status plm_model_check_weights(const plm_model *m, const char *what) {
    if (!m->vocab_only) return PLM_OK;
    return plm_fail(PLM_ERR_ARG,
                    "%s: model %s was loaded vocabulary-only (plm_model_params.vocab_only): it has no weights to run; "
                    "load it without vocab_only",
                    what, m->g->path);
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
    out->n_cls_out = m->cls.n_out;
    out->n_repacked = m->n_repacked;
    return PLM_OK;
}

int32_t plm_model_n_cls_out(const plm_model *m) { return m ? m->cls.n_out : 0; }

const char *plm_model_cls_label(const plm_model *m, int32_t i) {
    if (!m || i < 0 || i >= m->cls.n_out) return NULL;
    return m->cls.labels[i];
}

plm_pooling plm_model_cls_pooling(const plm_model *m) { return m && m->cls.n_out ? m->cls.pooling : PLM_POOL_LAST; }

plm_pooling plm_model_embed_pooling(const plm_model *m) {
    if (!m) return PLM_POOL_MEAN;
    char key[256];
    snprintf(key, sizeof key, "%s.pooling_type", m->arch);
    uint32_t type = 0;
    if (plm_gguf_get_u32(m->g, key, false, &type)) {
        plm_clear_error();
        return PLM_POOL_MEAN;
    }
    return type == 2 ? PLM_POOL_CLS : type == 3 ? PLM_POOL_LAST : PLM_POOL_MEAN;
}

bool plm_model_is_encoder(const plm_model *m) { return m && m->family->encoder; }

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
