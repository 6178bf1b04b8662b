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
    "else the cache ($POCKETLM_CACHE, else ~/.cache/pocketlm), filled by `make model`.\n"
    "Run `pocketlm <command> --help` for the options of a command.\n";

static void help_generate(void) {
    printf("usage: pocketlm generate -p PROMPT [options]\n\n"
           "Prints the continuation of PROMPT (streamed) to stdout and timings to stderr.\n\n"
           "  -m, --model FILE        GGUF model (default: the default model)\n"
           "  -p, --prompt TEXT       the prompt (required; '-' reads standard input)\n"
           "  -n, --n-predict N       most tokens to generate (default 128)\n"
           "  -t, --threads N         threads (default: physical cores)\n"
           "  -c, --ctx-size N        context size in tokens (default: min(train, 4096))\n"
           "      --temp T            temperature; 0 = greedy (default 0)\n"
           "      --top-k K           (default 40)      --top-p P   (default 0.95)\n"
           "      --min-p P           (default 0.05)    --seed N    (default 0x5EED)\n"
           "      --repeat-penalty R  (default 1.0)     --repeat-last-n N (default 64)\n"
           "      --frequency-penalty F, --presence-penalty F (default 0)\n"
           "      --stop TEXT         stop before TEXT (repeatable)\n"
           "      --echo              print the prompt before the continuation\n"
           "      --no-bos            do not add the BOS token even if the model asks for it\n");
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
        } else if (!strcmp(a, "--echo")) o->echo = true;
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

static int cmd_generate(opts *o) {
    size_t len;
    char *owned;
    const char *prompt = prompt_text(o, &owned, &len);
    if (!prompt) {
        fprintf(stderr, "pocketlm generate: a prompt is required (-p TEXT); see --help\n");
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
    printf("kernels:       %s\n", plm_kernels_name());
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
