/*
 * cli/main.c — the `pocketlm` command: generate, info, tokenize, perplexity.
 *
 * A thin shell over the public API (it includes only pocketlm.h): argument
 * parsing, printing, timing. Without -m it runs the default model.
 */
#include "pocketlm.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct opts {
    const char *model;
    const char *prompt;
    const char *file;
    int n_predict;
    int n_threads;
    int n_ctx;
    bool n_ctx_given; /* -c was on the command line (perplexity has its own default) */
    int n_batch;
    int max_chunks;
    bool echo;
    bool special;
    bool no_bos;
    bool ids_only;
    bool verbose;
    plm_sampler_params sp;
    const char *stop[16];
    int n_stop;
    const char *batch_file; /* generate --batch FILE */
    int parallel;
    const char *json_schema; /* file of a JSON Schema the output must follow */
    const char *grammar;     /* file of a GBNF grammar the output must follow */
} opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(plm_status st) {
    fprintf(stderr, "pocketlm: error: %s (%s)\n", plm_last_error(), plm_status_str(st));
    return 1;
}

static const char *USAGE =
    "usage: pocketlm <command> [options]\n"
    "\n"
    "commands:\n"
    "  generate    continue a prompt            pocketlm generate -p \"The capital of France is\" -n 32\n"
    "  info        describe a model file        pocketlm info\n"
    "  tokenize    show the tokens of a text    pocketlm tokenize -p \"Hello world\"\n"
    "  perplexity  score a text file            pocketlm perplexity -f text.txt -c 512\n"
    "\n"
    "Without -m FILE the default model (SmolLM2-135M-Instruct Q4_1) is used: $POCKETLM_MODEL,\n"
    "else the cache ($POCKETLM_CACHE, else $XDG_CACHE_HOME/pocketlm, else ~/.cache/pocketlm),\n"
    "filled by `python -m pocketlm download` (in a checkout: `make model`).\n"
    "Run `pocketlm <command> --help` for the options of a command.\n";

static void help_generate(void) {
    printf("usage: pocketlm generate -p PROMPT [options]\n\n"
           "Prints the continuation of PROMPT (streamed) to stdout and timings to stderr.\n\n"
           "  -m, --model FILE        GGUF model (default: the default model)\n"
           "  -p, --prompt TEXT       the prompt (required; '-' reads standard input)\n"
           "  -n, --n-predict N       most tokens to generate (default 128; <= 0: until the context is full)\n"
           "  -t, --threads N         threads (default: physical cores)\n"
           "  -c, --ctx-size N        context size in tokens (default: min(train, 4096))\n"
           "      --temp T            temperature; 0 = greedy (default 0)\n"
           "      --top-k K           (default 40)      --top-p P   (default 0.95)\n"
           "      --min-p P           (default 0.05)    --seed N    (default 0x5EED)\n"
           "      --repeat-penalty R  (default 1.0)     --repeat-last-n N (default 64)\n"
           "      --frequency-penalty F, --presence-penalty F (default 0)\n"
           "      --stop TEXT         stop before TEXT (repeatable)\n"
           "      --json-schema FILE  the output is JSON that follows the JSON Schema in FILE\n"
           "      --grammar FILE      the output follows the GBNF grammar in FILE (start rule: root)\n"
           "      --echo              print the prompt before the continuation\n"
           "      --no-bos            do not add the BOS token even if the model asks for it\n"
           "      --batch FILE        many prompts at once ('-' reads standard input): one prompt per line, or\n"
           "                          JSON lines {\"prompt\": ..., and any of max_tokens, temperature, top_k, top_p,\n"
           "                          min_p, seed, stop (a string or a list), ignore_eos}; writes one JSON line\n"
           "                          per prompt, in input order: {\"index\", \"text\", \"stop_reason\",\n"
           "                          \"n_prompt\", \"n_generated\"} or {\"index\", \"error\"}\n"
           "      --parallel N        prompts generated at once with --batch (default 16)\n");
}

static void help_info(void) {
    printf("usage: pocketlm info [-m FILE] [-v]\n\n"
           "Prints the architecture, sizes, quantization and tokenizer of a model.\n"
           "  -m, --model FILE   GGUF model (default: the default model)\n"
           "  -v, --verbose      also list every metadata key\n");
}

static void help_tokenize(void) {
    printf("usage: pocketlm tokenize -p TEXT [options]\n\n"
           "Prints one line per token: id and its text. Only the vocabulary is loaded,\n"
           "so a vocabulary-only GGUF works too.\n"
           "  -m, --model FILE   GGUF model or vocabulary (default: the default model)\n"
           "  -p, --prompt TEXT  text ('-' reads standard input)\n"
           "      --special      match special tokens such as <|im_start|> in the text\n"
           "      --no-bos       do not add BOS/EOS\n"
           "      --ids          print only the ids, space-separated\n");
}

static void help_perplexity(void) {
    printf("usage: pocketlm perplexity -f FILE [options]\n\n"
           "Perplexity of a text, computed as llama.cpp's llama-perplexity does: the text is\n"
           "cut into chunks of the context size, and the second half of each chunk is scored.\n"
           "  -m, --model FILE   GGUF model (default: the default model)\n"
           "  -f, --file FILE    the text (UTF-8)\n"
           "  -c, --ctx-size N   chunk size in tokens, at least 2 (default 512)\n"
           "  -b, --batch N      tokens per decode call (default 512)\n"
           "  -t, --threads N    threads\n"
           "      --chunks N     score at most N chunks\n");
}

static bool parse_int(const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || *end || end == s || v < -2147483647L || v > 2147483647L) return false;
    *out = (int)v;
    return true;
}

static bool parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || end == s) return false;
    *out = v;
    return true;
}

static char *read_all(FILE *f, size_t *n) {
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        if (len + 4096 > cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); return NULL; }
            buf = nb;
            cap *= 2;
        }
        size_t k = fread(buf + len, 1, cap - len - 1, f);
        len += k;
        if (k == 0) break;
    }
    buf[len] = 0;
    *n = len;
    return buf;
}

/* Returns 0 on success, 1 on a bad option, 2 if help was printed. */
static int parse_args(int argc, char **argv, opts *o, void (*help)(void)) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV() do { if (!v) { fprintf(stderr, "pocketlm: option %s needs a value\n", a); return 1; } i++; } while (0)
#define INTV(dst) do { NEEDV(); if (!parse_int(v, &(dst))) { fprintf(stderr, "pocketlm: option %s: '%s' is not an integer\n", a, v); return 1; } } while (0)
#define FLTV(dst) do { NEEDV(); if (!parse_float(v, &(dst))) { fprintf(stderr, "pocketlm: option %s: '%s' is not a number\n", a, v); return 1; } } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { help(); return 2; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEEDV(); o->model = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { NEEDV(); o->prompt = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { NEEDV(); o->file = v; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) INTV(o->n_predict);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) INTV(o->n_threads);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) { INTV(o->n_ctx); o->n_ctx_given = true; }
        else if (!strcmp(a, "--batch") && help == help_generate) { NEEDV(); o->batch_file = v; }
        else if (!strcmp(a, "--parallel")) INTV(o->parallel);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) INTV(o->n_batch);
        else if (!strcmp(a, "--chunks")) INTV(o->max_chunks);
        else if (!strcmp(a, "--temp")) FLTV(o->sp.temperature);
        else if (!strcmp(a, "--top-k")) INTV(o->sp.top_k);
        else if (!strcmp(a, "--top-p")) FLTV(o->sp.top_p);
        else if (!strcmp(a, "--min-p")) FLTV(o->sp.min_p);
        else if (!strcmp(a, "--repeat-penalty")) FLTV(o->sp.repeat_penalty);
        else if (!strcmp(a, "--repeat-last-n")) INTV(o->sp.penalty_last_n);
        else if (!strcmp(a, "--frequency-penalty")) FLTV(o->sp.frequency_penalty);
        else if (!strcmp(a, "--presence-penalty")) FLTV(o->sp.presence_penalty);
        else if (!strcmp(a, "--seed")) {
            NEEDV();
            char *end;
            unsigned long long s = strtoull(v, &end, 0);
            if (*end || end == v) { fprintf(stderr, "pocketlm: --seed: '%s' is not an integer\n", v); return 1; }
            o->sp.seed = s;
        } else if (!strcmp(a, "--stop")) {
            NEEDV();
            if (o->n_stop == 16) { fprintf(stderr, "pocketlm: at most 16 --stop strings\n"); return 1; }
            o->stop[o->n_stop++] = v;
        } else if (!strcmp(a, "--json-schema")) { NEEDV(); o->json_schema = v; }
        else if (!strcmp(a, "--grammar")) { NEEDV(); o->grammar = v; }
        else if (!strcmp(a, "--echo")) o->echo = true;
        else if (!strcmp(a, "--special")) o->special = true;
        else if (!strcmp(a, "--no-bos")) o->no_bos = true;
        else if (!strcmp(a, "--ids")) o->ids_only = true;
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) o->verbose = true;
        else {
            fprintf(stderr, "pocketlm: unknown option '%s' (see --help)\n", a);
            return 1;
        }
#undef NEEDV
#undef INTV
#undef FLTV
    }
    return 0;
}

static plm_status open_model(const opts *o, plm_model **m) { return plm_model_load(o->model, NULL, m); }

static plm_status open_context(const opts *o, plm_model *m, plm_context **ctx) {
    plm_context_params cp = plm_context_default_params();
    cp.n_threads = o->n_threads;
    cp.n_ctx = o->n_ctx;
    if (o->n_batch) cp.n_batch = o->n_batch;
    return plm_context_create(m, &cp, ctx);
}

/* The prompt text: -p, or standard input for '-'. Caller frees *owned. */
static const char *prompt_text(const opts *o, char **owned, size_t *len) {
    *owned = NULL;
    if (!o->prompt) return NULL;
    if (!strcmp(o->prompt, "-")) {
        *owned = read_all(stdin, len);
        return *owned;
    }
    *len = strlen(o->prompt);
    return o->prompt;
}

static int print_piece(const char *piece, size_t len, void *user) {
    (void)user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------ generate --batch */

/* A JSON value of a batch line: the few shapes the options take. */
typedef struct jval {
    enum { J_NULL, J_BOOL, J_NUM, J_STR, J_STRS } kind;
    double num;
    bool b;
    char *str;        /* J_STR (malloc'd, NUL-terminated; embedded NULs end it) */
    char **strs;      /* J_STRS */
    int n_strs;
} jval;

static void jval_free(jval *v) {
    free(v->str);
    for (int i = 0; i < v->n_strs; i++) free(v->strs[i]);
    free(v->strs);
    memset(v, 0, sizeof(*v));
}

static void skip_ws(const char **p) {
    while (**p == ' ' || **p == '\t' || **p == '\r' || **p == '\n') (*p)++;
}

static void put_utf8(char *out, size_t *n, unsigned cp) {
    if (cp < 0x80) out[(*n)++] = (char)cp;
    else if (cp < 0x800) { out[(*n)++] = (char)(0xC0 | cp >> 6); out[(*n)++] = (char)(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) {
        out[(*n)++] = (char)(0xE0 | cp >> 12); out[(*n)++] = (char)(0x80 | (cp >> 6 & 0x3F)); out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*n)++] = (char)(0xF0 | cp >> 18); out[(*n)++] = (char)(0x80 | (cp >> 12 & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp >> 6 & 0x3F)); out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
}

static bool hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return false;
    }
    *out = v;
    return true;
}

/* A JSON string at *p (which is at the opening quote); NULL if malformed. */
static char *parse_jstr(const char **p) {
    const char *s = *p + 1;
    char *out = malloc(strlen(s) * 2 + 1);
    size_t n = 0;
    if (!out) return NULL;
    while (*s && *s != '"') {
        if (*s != '\\') { out[n++] = *s++; continue; }
        s++;
        switch (*s) {
        case '"': case '\\': case '/': out[n++] = *s++; break;
        case 'n': out[n++] = '\n'; s++; break;
        case 't': out[n++] = '\t'; s++; break;
        case 'r': out[n++] = '\r'; s++; break;
        case 'b': out[n++] = '\b'; s++; break;
        case 'f': out[n++] = '\f'; s++; break;
        case 'u': {
            unsigned cp, lo;
            if (!hex4(s + 1, &cp)) goto bad;
            s += 5;
            if (cp >= 0xD800 && cp < 0xDC00 && s[0] == '\\' && s[1] == 'u' && hex4(s + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                s += 6;
            }
            put_utf8(out, &n, cp);
            break;
        }
        default: goto bad;
        }
    }
    if (*s != '"') goto bad;
    out[n] = 0;
    *p = s + 1;
    return out;
bad:
    free(out);
    return NULL;
}

/* A value: string, number, true/false/null, or a list of strings. */
static bool parse_jval(const char **p, jval *v) {
    memset(v, 0, sizeof(*v));
    skip_ws(p);
    if (**p == '"') {
        v->kind = J_STR;
        return (v->str = parse_jstr(p)) != NULL;
    }
    if (**p == '[') {
        v->kind = J_STRS;
        (*p)++;
        skip_ws(p);
        if (**p == ']') { (*p)++; return true; }
        for (;;) {
            skip_ws(p);
            if (**p != '"') return false;
            char **ns = realloc(v->strs, (size_t)(v->n_strs + 1) * sizeof(char *));
            if (!ns) return false;
            v->strs = ns;
            if (!(v->strs[v->n_strs] = parse_jstr(p))) return false;
            v->n_strs++;
            skip_ws(p);
            if (**p == ',') { (*p)++; continue; }
            if (**p == ']') { (*p)++; return true; }
            return false;
        }
    }
    if (!strncmp(*p, "true", 4)) { v->kind = J_BOOL; v->b = true; *p += 4; return true; }
    if (!strncmp(*p, "false", 5)) { v->kind = J_BOOL; *p += 5; return true; }
    if (!strncmp(*p, "null", 4)) { v->kind = J_NULL; *p += 4; return true; }
    char *end;
    v->num = strtod(*p, &end);
    if (end == *p) return false;
    v->kind = J_NUM;
    *p = end;
    return true;
}

/* One prompt of a batch file and its own options. */
typedef struct batch_item {
    char *prompt;
    plm_generate_params gp;
    char **stop;
    int n_stop;
    char *error; /* a line that could not be read */
} batch_item;

static bool jnum_int(const jval *v, int64_t lo, int64_t hi, int64_t *out) {
    if (v->kind != J_NUM || v->num != floor(v->num) || v->num < (double)lo || v->num > (double)hi) return false;
    *out = (int64_t)v->num;
    return true;
}

/* Reads a JSON object line into item (its options over the command line's). */
static void parse_json_line(const char *line, batch_item *it) {
    char msg[256];
    const char *p = line + 1;
    for (;;) {
        skip_ws(&p);
        if (*p == '}') { p++; break; }
        if (*p != '"') { snprintf(msg, sizeof msg, "expected a key at column %d", (int)(p - line) + 1); goto bad; }
        char *key = parse_jstr(&p);
        if (!key) { snprintf(msg, sizeof msg, "malformed key at column %d", (int)(p - line) + 1); goto bad; }
        skip_ws(&p);
        jval v;
        memset(&v, 0, sizeof v);
        bool ok = *p == ':';
        if (ok) {
            p++;
            ok = parse_jval(&p, &v);
        }
        if (!ok) {
            snprintf(msg, sizeof msg, "malformed value of \"%s\"", key);
            free(key);
            jval_free(&v);
            goto bad;
        }
        int64_t i64;
        bool good = true;
        if (!strcmp(key, "prompt")) {
            good = v.kind == J_STR;
            if (good) { free(it->prompt); it->prompt = v.str; v.str = NULL; }
        } else if (!strcmp(key, "max_tokens")) {
            good = jnum_int(&v, 0, INT32_MAX, &i64);
            if (good) it->gp.max_tokens = (int32_t)i64;
        } else if (!strcmp(key, "top_k")) {
            good = jnum_int(&v, -INT32_MAX, INT32_MAX, &i64);
            if (good) it->gp.sampling.top_k = (int32_t)i64;
        } else if (!strcmp(key, "seed")) {
            good = jnum_int(&v, 0, (int64_t)1 << 53, &i64);
            if (good) it->gp.sampling.seed = (uint64_t)i64;
        } else if (!strcmp(key, "temperature") || !strcmp(key, "top_p") || !strcmp(key, "min_p")) {
            good = v.kind == J_NUM;
            float f = (float)v.num;
            if (good) *(key[0] == 't' && key[1] == 'e' ? &it->gp.sampling.temperature
                        : key[0] == 't' ? &it->gp.sampling.top_p : &it->gp.sampling.min_p) = f;
        } else if (!strcmp(key, "ignore_eos")) {
            good = v.kind == J_BOOL;
            if (good) it->gp.ignore_eos = v.b;
        } else if (!strcmp(key, "stop")) {
            good = v.kind == J_STR || v.kind == J_STRS || v.kind == J_NULL;
            for (int i = 0; good && i < it->n_stop; i++) free(it->stop[i]);
            if (good) { free(it->stop); it->stop = NULL; it->n_stop = 0; }
            if (good && v.kind == J_STR) {
                it->stop = malloc(sizeof(char *));
                good = it->stop != NULL;
                if (good) { it->stop[0] = v.str; v.str = NULL; it->n_stop = 1; }
            } else if (good && v.kind == J_STRS) {
                it->stop = v.strs; it->n_stop = v.n_strs; v.strs = NULL; v.n_strs = 0;
            }
        } else {
            snprintf(msg, sizeof msg, "unknown key \"%s\" (known: prompt, max_tokens, temperature, top_k, top_p, min_p, seed, stop, ignore_eos)", key);
            free(key);
            jval_free(&v);
            goto bad;
        }
        jval_free(&v);
        if (!good) {
            snprintf(msg, sizeof msg, "\"%s\" has a value of the wrong type or range", key);
            free(key);
            goto bad;
        }
        free(key);
        skip_ws(&p);
        if (*p == ',') { p++; continue; }
        if (*p == '}') { p++; break; }
        snprintf(msg, sizeof msg, "expected ',' or '}' at column %d", (int)(p - line) + 1);
        goto bad;
    }
    skip_ws(&p);
    if (*p) { snprintf(msg, sizeof msg, "text after the object at column %d", (int)(p - line) + 1); goto bad; }
    if (!it->prompt) { snprintf(msg, sizeof msg, "no \"prompt\""); goto bad; }
    return;
bad:
    it->error = strdup(msg);
}

static void write_json_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static const char *STOP_NAMES[] = {"running", "length", "eog", "stop", "caller", "context_full"};

/* Writes request id's result line (index is its place in the input). */
static void write_result(plm_batch_gen *bg, int32_t id, int index) {
    plm_batch_result r;
    plm_batch_gen_result(bg, id, &r);
    printf("{\"index\": %d, ", index);
    if (r.status) {
        fputs("\"error\": ", stdout);
        write_json_string(stdout, r.error, strlen(r.error));
        fputs("}\n", stdout);
        return;
    }
    fputs("\"text\": ", stdout);
    write_json_string(stdout, r.text, r.text_len);
    printf(", \"stop_reason\": \"%s\", \"n_prompt\": %d, \"n_generated\": %d}\n",
           STOP_NAMES[r.reason >= 0 && r.reason <= PLM_STOP_CONTEXT ? r.reason : 0], r.n_prompt, r.n_generated);
}

static int cmd_generate_batch(opts *o) {
    FILE *f = !strcmp(o->batch_file, "-") ? stdin : fopen(o->batch_file, "rb");
    if (!f) {
        fprintf(stderr, "pocketlm generate: cannot open %s: %s\n", o->batch_file, strerror(errno));
        return 1;
    }
    size_t len = 0;
    char *all = read_all(f, &len);
    if (f != stdin) fclose(f);
    if (!all) {
        fprintf(stderr, "pocketlm generate: out of memory reading %s\n", o->batch_file);
        return 1;
    }
    int parallel = o->parallel ? o->parallel : 16;
    if (parallel < 1 || parallel > 64) {
        fprintf(stderr, "pocketlm generate: --parallel must be in [1, 64] (got %d)\n", parallel);
        free(all);
        return 1;
    }
    plm_generate_params base = plm_generate_default_params();
    base.max_tokens = o->n_predict;
    base.sampling = o->sp;
    base.add_special = !o->no_bos;
    /* the items: one per non-blank line */
    batch_item *items = NULL;
    int n = 0, cap = 0;
    for (char *line = all, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r') line[--l] = 0;
        const char *t = line;
        skip_ws(&t);
        if (!*t) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            batch_item *ni = realloc(items, (size_t)cap * sizeof(*items));
            if (!ni) { fprintf(stderr, "pocketlm generate: out of memory\n"); free(all); free(items); return 1; }
            items = ni;
        }
        batch_item *it = &items[n++];
        memset(it, 0, sizeof(*it));
        it->gp = base;
        if (*t == '{') parse_json_line(t, it);
        else it->prompt = strdup(line);
    }
    free(all);

    plm_model *m = NULL;
    plm_context *ctx = NULL;
    plm_batch_gen *bg = NULL;
    int rc = 0;
    plm_status st = open_model(o, &m);
    /* cells: each running prompt's prompt and tokens, up to the model's context length */
    int32_t seq_len = o->n_ctx;
    plm_model_info info;
    if (!st) st = plm_model_get_info(m, &info);
    if (!st && seq_len <= 0) seq_len = info.n_ctx_train > 0 && info.n_ctx_train < 4096 ? info.n_ctx_train : 4096;
    if (!st) {
        plm_context_params cp = plm_context_default_params();
        cp.n_threads = o->n_threads;
        cp.n_seq_max = parallel;
        int64_t want = (int64_t)parallel * (o->n_predict > 0 ? (seq_len < 512 + o->n_predict ? seq_len : 512 + o->n_predict) : seq_len);
        cp.n_ctx = (int32_t)(want > 32768 ? (seq_len > 32768 ? seq_len : 32768) : (want < seq_len ? seq_len : want));
        if (o->n_batch) cp.n_batch = o->n_batch;
        st = plm_context_create(m, &cp, &ctx);
    }
    if (!st) {
        plm_batch_gen_params bp = plm_batch_gen_default_params();
        bp.n_parallel = parallel;
        bp.n_ctx_seq = seq_len < plm_context_n_ctx(ctx) ? seq_len : plm_context_n_ctx(ctx);
        st = plm_batch_gen_create(ctx, &bp, &bg);
    }
    int32_t *ids = n ? malloc((size_t)n * sizeof(int32_t)) : NULL;
    if (!st && n && !ids) st = PLM_ERR_OOM;
    for (int i = 0; !st && i < n; i++) {
        batch_item *it = &items[i];
        ids[i] = -1;
        if (it->error) continue;
        it->gp.stop = (const char *const *)it->stop;
        it->gp.n_stop = it->n_stop;
        st = plm_batch_gen_submit(bg, it->prompt, strlen(it->prompt), &it->gp, &ids[i]);
        if (st == PLM_ERR_ARG) { /* an empty prompt: this line's error */
            it->error = strdup(plm_last_error());
            st = PLM_OK;
        }
    }
    double t0 = now_s();
    int printed = 0;
    int64_t n_tokens = 0;
    while (!st) {
        int32_t left;
        if ((st = plm_batch_gen_step(bg, &left))) break;
        /* print, in input order, every result that is complete */
        for (; printed < n; printed++) {
            batch_item *it = &items[printed];
            if (it->error) {
                printf("{\"index\": %d, \"error\": ", printed);
                write_json_string(stdout, it->error, strlen(it->error));
                fputs("}\n", stdout);
                continue;
            }
            plm_batch_result r;
            plm_batch_gen_result(bg, ids[printed], &r);
            if (r.reason == PLM_STOP_NONE && r.status == PLM_OK) break;
            n_tokens += r.n_generated;
            write_result(bg, ids[printed], printed);
        }
        fflush(stdout);
        if (left == 0 && printed == n) break;
    }
    if (st) rc = fail(st);
    else {
        double dt = now_s() - t0;
        fprintf(stderr, "%d prompts, %lld tokens generated in %.2f s (%.1f tokens/s at parallel %d)\n", n,
                (long long)n_tokens, dt, dt > 0 ? (double)n_tokens / dt : 0.0, parallel);
    }
    for (int i = 0; i < n; i++) {
        free(items[i].prompt);
        for (int k = 0; k < items[i].n_stop; k++) free(items[i].stop[k]);
        free(items[i].stop);
        free(items[i].error);
    }
    free(items);
    free(ids);
    plm_batch_gen_free(bg);
    plm_context_free(ctx);
    plm_model_free(m);
    return rc;
}

/* The constraint of --json-schema / --grammar, or NULL in *out. Returns nonzero (a message printed) on failure. */
static int load_constraint(const opts *o, plm_grammar **out) {
    *out = NULL;
    if (!o->json_schema && !o->grammar) return 0;
    if (o->json_schema && o->grammar) {
        fprintf(stderr, "pocketlm generate: give --json-schema or --grammar, not both\n");
        return 1;
    }
    const char *path = o->json_schema ? o->json_schema : o->grammar;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "pocketlm generate: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t n;
    char *text = read_all(f, &n);
    fclose(f);
    if (!text) {
        fprintf(stderr, "pocketlm generate: out of memory reading %s\n", path);
        return 1;
    }
    plm_status st = o->json_schema ? plm_grammar_from_json_schema(text, n, out) : plm_grammar_parse(text, n, NULL, out);
    free(text);
    if (st) {
        fprintf(stderr, "pocketlm generate: %s: %s (%s)\n", path, plm_last_error(), plm_status_str(st));
        return 1;
    }
    return 0;
}

static int cmd_generate(opts *o) {
    if (o->batch_file) return cmd_generate_batch(o);
    size_t len;
    char *owned;
    const char *prompt = prompt_text(o, &owned, &len);
    if (!prompt) {
        fprintf(stderr, "pocketlm generate: a prompt is required (-p TEXT); see --help\n");
        return 1;
    }
    plm_grammar *constraint = NULL;
    if (load_constraint(o, &constraint)) {
        free(owned);
        return 1;
    }
    plm_model *m = NULL;
    plm_context *ctx = NULL;
    plm_generator *g = NULL;
    int rc = 0;
    plm_status st = open_model(o, &m);
    if (!st) st = open_context(o, m, &ctx);
    plm_generate_params gp = plm_generate_default_params();
    gp.max_tokens = o->n_predict;
    gp.sampling = o->sp;
    gp.stop = o->stop;
    gp.n_stop = o->n_stop;
    gp.add_special = !o->no_bos;
    gp.grammar = constraint;
    double t0 = now_s(), t1 = 0;
    if (!st) st = plm_generator_create(ctx, prompt, len, &gp, &g);
    if (!st) {
        t1 = now_s();
        if (o->echo) print_piece(prompt, len, NULL);
        plm_stop_reason r = PLM_STOP_NONE;
        size_t k = 0;
        do {
            const char *piece;
            if ((st = plm_generator_next(g, &piece, &k, &r))) break;
            print_piece(piece, k, NULL);
        } while (r == PLM_STOP_NONE || k > 0);
        double t2 = now_s();
        int32_t n_gen;
        plm_generator_tokens(g, &n_gen);
        int32_t n_prompt = plm_generator_n_prompt(g);
        static const char *why[] = {"running", "max tokens", "end of generation", "stop string", "caller", "context full"};
        printf("\n");
        fflush(stdout);
        fprintf(stderr, "[prompt %d tokens in %.1f ms (%.1f tok/s) | generated %d tokens in %.1f ms (%.1f tok/s) | stop: %s | %d threads, %s kernels]\n",
                n_prompt, 1e3 * (t1 - t0), n_prompt / (t1 - t0), n_gen, 1e3 * (t2 - t1), n_gen > 0 ? n_gen / (t2 - t1) : 0.0,
                why[r], plm_context_n_threads(ctx), plm_kernels_name());
    }
    if (st) rc = fail(st);
    plm_generator_free(g);
    plm_grammar_free(constraint);
    plm_context_free(ctx);
    plm_model_free(m);
    free(owned);
    return rc;
}

static int cmd_info(opts *o) {
    plm_model *m = NULL;
    plm_status st = open_model(o, &m);
    if (st) return fail(st);
    plm_model_info in;
    plm_model_get_info(m, &in);
    printf("file:          %s\n", in.path);
    printf("name:          %s\n", in.name);
    printf("architecture:  %s\n", in.arch);
    printf("parameters:    %.1f M\n", (double)in.n_params / 1e6);
    printf("weights:       %s, %.1f MiB\n", in.file_type, (double)in.n_bytes / (1 << 20));
    printf("layers:        %d\n", in.n_layer);
    printf("embedding:     %d\n", in.n_embd);
    printf("heads:         %d (kv %d, head size %d)\n", in.n_head, in.n_head_kv, in.head_dim);
    printf("feed-forward:  %d\n", in.n_ff);
    printf("vocabulary:    %d tokens (bos %d, eos %d, eot %d, add bos: %s)\n", in.n_vocab, in.bos, in.eos, in.eot, in.add_bos ? "yes" : "no");
    printf("context:       %d (training)\n", in.n_ctx_train);
    printf("chat template: %s\n", *in.chat_template ? "yes" : "no");
    printf("kernels:       %s", plm_kernels_name());
    if (in.n_repacked) printf(", %.1f MiB of weights repacked for them", (double)in.n_repacked / (1 << 20));
    printf("\n");
    if (o->verbose) {
        printf("\nmetadata:\n");
        char buf[256];
        for (int32_t i = 0; i < plm_model_meta_count(m); i++) {
            const char *k = plm_model_meta_key(m, i);
            plm_model_meta_str(m, k, buf, sizeof buf);
            for (char *p = buf; *p; p++) if (*p == '\n') *p = ' ';
            printf("  %-40s %s\n", k, buf);
        }
    }
    plm_model_free(m);
    return 0;
}

static int cmd_tokenize(opts *o) {
    size_t len;
    char *owned;
    const char *text = prompt_text(o, &owned, &len);
    if (!text) {
        fprintf(stderr, "pocketlm tokenize: a text is required (-p TEXT); see --help\n");
        return 1;
    }
    /* Only the vocabulary: no tensors are read, and vocabulary files
     * (llama.cpp's ggml-vocab-*.gguf) load as well as models. */
    plm_model_params mp = plm_model_default_params();
    mp.vocab_only = true;
    plm_model *m = NULL;
    plm_status st = plm_model_load(o->model, &mp, &m);
    int32_t n = 0;
    plm_token *toks = NULL;
    if (!st) {
        st = plm_tokenize(m, text, len, !o->no_bos, o->special, NULL, 0, &n);
        if (st == PLM_ERR_BUFFER || !st) {
            toks = malloc(((size_t)n + 1) * sizeof(plm_token));
            st = toks ? plm_tokenize(m, text, len, !o->no_bos, o->special, toks, n, &n) : PLM_ERR_OOM;
        }
    }
    if (!st) {
        for (int32_t i = 0; i < n; i++) {
            if (o->ids_only) {
                printf("%s%d", i ? " " : "", toks[i]);
                continue;
            }
            char piece[256];
            size_t k = 0;
            plm_token_to_piece(m, toks[i], true, piece, sizeof piece, &k);
            printf("%6d  '", toks[i]);
            for (size_t j = 0; j < k && j < sizeof piece; j++) {
                unsigned char c = (unsigned char)piece[j];
                if (c == '\n') printf("\\n");
                else if (c == '\t') printf("\\t");
                else if (c < 0x20) printf("\\x%02x", c);
                else putchar(c);
            }
            printf("'\n");
        }
        if (o->ids_only) printf("\n");
        else fprintf(stderr, "%d tokens\n", n);
    }
    int rc = st ? fail(st) : 0;
    free(toks);
    free(owned);
    plm_model_free(m);
    return rc;
}

static int cmd_perplexity(opts *o) {
    if (!o->file) {
        fprintf(stderr, "pocketlm perplexity: a text file is required (-f FILE); see --help\n");
        return 1;
    }
    FILE *f = fopen(o->file, "rb");
    if (!f) {
        fprintf(stderr, "pocketlm perplexity: cannot open %s: %s\n", o->file, strerror(errno));
        return 1;
    }
    size_t len;
    char *text = read_all(f, &len);
    fclose(f);
    if (!text) {
        fprintf(stderr, "pocketlm perplexity: out of memory\n");
        return 1;
    }
    if (o->n_ctx_given && o->n_ctx < 2) {
        fprintf(stderr, "pocketlm perplexity: -c %d: the chunk size must be at least 2 tokens (default 512)\n", o->n_ctx);
        free(text);
        return 2;
    }
    int n_ctx = o->n_ctx_given ? o->n_ctx : 512;
    opts oc = *o;
    oc.n_ctx = n_ctx;
    plm_model *m = NULL;
    plm_context *ctx = NULL;
    plm_token *toks = NULL;
    int8_t *want = NULL;
    int32_t n = 0;
    int rc = 0;
    plm_status st = open_model(o, &m);
    if (!st) st = open_context(&oc, m, &ctx);
    plm_model_info in;
    if (!st) {
        plm_model_get_info(m, &in);
        st = plm_tokenize(m, text, len, true, false, NULL, 0, &n);
        if (st == PLM_ERR_BUFFER || !st) {
            toks = malloc(((size_t)n + 1) * sizeof(plm_token));
            st = toks ? plm_tokenize(m, text, len, true, false, toks, n, &n) : PLM_ERR_OOM;
        }
    }
    if (st) {
        rc = fail(st);
        goto out;
    }
    int n_chunk = n / n_ctx;
    if (o->max_chunks > 0 && o->max_chunks < n_chunk) n_chunk = o->max_chunks;
    if (n_chunk < 1) {
        fprintf(stderr, "pocketlm perplexity: the text has %d tokens, fewer than one chunk of %d\n", n, n_ctx);
        rc = 1;
        goto out;
    }
    fprintf(stderr, "perplexity: %d tokens, %d chunks of %d, scoring the second half of each\n", n, n_chunk, n_ctx);
    want = malloc((size_t)n_ctx);
    plm_token *chunk = malloc((size_t)n_ctx * sizeof(plm_token));
    if (!want || !chunk) {
        free(chunk);
        rc = fail(PLM_ERR_OOM);
        goto out;
    }
    const int first = n_ctx / 2;
    double nll = 0.0, nll2 = 0.0;
    long count = 0;
    double t0 = now_s();
    for (int c = 0; c < n_chunk && !st; c++) {
        memcpy(chunk, toks + (size_t)c * (size_t)n_ctx, (size_t)n_ctx * sizeof(plm_token));
        if (in.add_bos && in.bos >= 0) chunk[0] = in.bos;
        for (int j = 0; j < n_ctx; j++) want[j] = j >= first && j < n_ctx - 1;
        plm_kv_clear(ctx);
        plm_batch b = {.n_tokens = n_ctx, .token = chunk, .logits = want};
        if ((st = plm_decode(ctx, &b))) break;
        for (int j = first; j < n_ctx - 1; j++) {
            const float *l = plm_context_logits(ctx, j);
            plm_token next = toks[(size_t)c * (size_t)n_ctx + (size_t)j + 1];
            float mx = l[0];
            for (int32_t v = 1; v < in.n_vocab; v++) if (l[v] > mx) mx = l[v];
            double sum = 0.0;
            for (int32_t v = 0; v < in.n_vocab; v++) sum += exp((double)(l[v] - mx));
            double lp = (double)(l[next] - mx) - log(sum);
            nll -= lp;
            nll2 += lp * lp;
            count++;
        }
        printf("[%d]%.4f ", c + 1, exp(nll / (double)count));
        fflush(stdout);
    }
    free(chunk);
    if (st) {
        rc = fail(st);
        goto out;
    }
    double mean = nll / (double)count, var = nll2 / (double)count - mean * mean;
    double ppl = exp(mean), err = count > 1 && var > 0 ? sqrt(var / (double)(count - 1)) * ppl : 0.0;
    printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", ppl, err);
    fprintf(stderr, "%ld tokens scored in %.2f s (%.1f tokens/s evaluated)\n", count, now_s() - t0,
            (double)n_chunk * n_ctx / (now_s() - t0));
out:
    free(want);
    free(toks);
    free(text);
    plm_context_free(ctx);
    plm_model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("pocketlm %s\n", plm_version());
        return 0;
    }
    opts o = {.n_predict = 128, .sp = plm_sampler_default_params()};
    o.sp.temperature = 0.0f;
    const char *cmd = argv[1];
    struct { const char *name; int (*fn)(opts *); void (*help)(void); } cmds[] = {
        {"generate", cmd_generate, help_generate},
        {"info", cmd_info, help_info},
        {"tokenize", cmd_tokenize, help_tokenize},
        {"perplexity", cmd_perplexity, help_perplexity},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(cmd, cmds[i].name)) continue;
        int r = parse_args(argc - 2, argv + 2, &o, cmds[i].help);
        if (r == 2) return 0;
        if (r) return 2;
        return cmds[i].fn(&o);
    }
    fprintf(stderr, "pocketlm: unknown command '%s'\n\n%s", cmd, USAGE);
    return 2;
}
