/*
 * test_vocab_suite.c — llama.cpp's tokenizer test corpus, every pair of every
 * vocabulary: each vocab/ggml-vocab-NAME.gguf of the corpus directory is loaded
 * vocabulary-only, and each string of its .gguf.inp (separated by
 * "\n__ggml_vocab_test__\n") must tokenize (no BOS/EOS, special texts as plain
 * text, as llama.cpp's test-tokenizer-0 does) to the ids on the same line of
 * its .gguf.out, which llama.cpp's script wrote from Hugging Face's tokenizer.
 *
 * The corpus comes from the llama-cpp-python sdist through
 * tools/fetch_vocab_suite.py (`make corpus`, part of `make model`) into
 * <cache>/llama-cpp-corpus ($POCKETLM_CORPUS overrides the directory). It
 * prints "NAME: passed/total" per vocabulary. A vocabulary pocketlm refuses is
 * listed with the loader's message, which must name what is missing; the ones
 * refused on purpose are in UNSUPPORTED below with the reason, and any other
 * refusal, or a listed one that now loads, fails the test. Every pair of every
 * other vocabulary must pass.
 */
#include "pocketlm.h"
#include "test.h"

#include <dirent.h>
#include <stdint.h>

#define SEP "\n__ggml_vocab_test__\n"

/* Refused on purpose: name, the text the loader's message must contain, why. */
static const struct {
    const char *name, *needle, *why;
} UNSUPPORTED[] = {
    {"nomic-bert-moe", "'t5'", "Unigram (tokenizer.ggml.model 't5') is not implemented"},
    {"gemma-4", "'gemma4'", "Gemma 4's tokenizer (tokenizer.ggml.model 'gemma4') is not implemented"},
};

static char dir[4096];

static const char *unsupported_reason(const char *name, const char **needle) {
    for (size_t i = 0; i < sizeof UNSUPPORTED / sizeof UNSUPPORTED[0]; i++)
        if (strcmp(UNSUPPORTED[i].name, name) == 0) {
            *needle = UNSUPPORTED[i].needle;
            return UNSUPPORTED[i].why;
        }
    return NULL;
}

static bool find_corpus(void) {
    const char *e = getenv("POCKETLM_CORPUS");
    if (e && *e) snprintf(dir, sizeof dir, "%s", e);
    else if ((e = getenv("POCKETLM_CACHE")) && *e) snprintf(dir, sizeof dir, "%s/llama-cpp-corpus", e);
    else if ((e = getenv("XDG_CACHE_HOME")) && *e) snprintf(dir, sizeof dir, "%s/pocketlm/llama-cpp-corpus", e);
    else snprintf(dir, sizeof dir, "%s/.cache/pocketlm/llama-cpp-corpus", getenv("HOME") ? getenv("HOME") : ".");
    char stamp[4200];
    snprintf(stamp, sizeof stamp, "%s/STAMP", dir);
    FILE *f = fopen(stamp, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* The whole file, NUL-terminated; NULL if it cannot be read. */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t k; buf && (k = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += k;
        if (cap - n - 1 == 0) {
            char *b = realloc(buf, cap *= 2);
            if (!b) free(buf);
            buf = b;
        }
    }
    fclose(f);
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Runs one vocabulary's pairs; returns the number that passed, sets *total. */
static int run_pairs(plm_model *m, const char *name, char *inp, size_t inp_len, char *out, int *total) {
    int passed = 0, n = 0;
    char *p = inp, *end = inp + inp_len, *line = out;
    plm_token *toks = NULL, *want = NULL;
    int32_t cap = 0;
    while (p < end) {
        char *s = strstr(p, SEP);
        size_t len = s ? (size_t)(s - p) : (size_t)(end - p);
        if (!line || !*line) {
            CHECKF(0, "%s: %s.out has fewer lines than %s.inp has strings", name, name, name);
            break;
        }
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        n++;
        /* The expected ids. */
        int32_t n_want = 0;
        for (char *q = line; *q;) {
            while (*q == ' ') q++;
            if (!*q) break;
            if (n_want >= cap) {
                cap = cap ? 2 * cap : 256;
                toks = realloc(toks, (size_t)cap * sizeof *toks);
                want = realloc(want, (size_t)cap * sizeof *want);
                if (!toks || !want) {
                    free(toks);
                    free(want);
                    CHECK(0);
                    return passed;
                }
            }
            want[n_want++] = (plm_token)strtol(q, &q, 10);
        }
        int32_t n_got = 0;
        plm_status st = plm_tokenize(m, p, len, false, false, toks, cap, &n_got);
        if (st == PLM_ERR_BUFFER) {
            cap = n_got;
            toks = realloc(toks, (size_t)cap * sizeof *toks);
            want = realloc(want, (size_t)cap * sizeof *want);
            st = toks && want ? plm_tokenize(m, p, len, false, false, toks, cap, &n_got) : PLM_ERR_OOM;
        }
        if (!st && n_got == n_want && (!n_got || memcmp(toks, want, (size_t)n_got * sizeof *toks) == 0)) passed++;
        else {
            fprintf(stderr, "  %s pair %d: text '%.*s'\n    want", name, n, (int)(len > 80 ? 80 : len), p);
            for (int32_t i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n    got ");
            for (int32_t i = 0; !st && i < n_got && i < cap; i++) fprintf(stderr, " %d", toks[i]);
            if (st) fprintf(stderr, " error: %s", plm_last_error());
            fprintf(stderr, "\n");
        }
        line = nl ? nl + 1 : NULL;
        if (!s) break;
        p = s + strlen(SEP);
    }
    free(toks);
    free(want);
    *total = n;
    return passed;
}

static void test_corpus(void) {
    if (!find_corpus()) {
        CHECKF(0, "the llama.cpp test corpus is not in %s: run `make corpus` (python3 tools/fetch_vocab_suite.py)", dir);
        return;
    }
    char vdir[4200];
    snprintf(vdir, sizeof vdir, "%s/vocab", dir);
    DIR *d = opendir(vdir);
    REQUIRE(d);
    char *names[256];
    int n_names = 0;
    for (struct dirent *e; (e = readdir(d)) && n_names < 256;) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, "ggml-vocab-", 11) == 0 && l > 16 && strcmp(e->d_name + l - 5, ".gguf") == 0)
            names[n_names++] = strndup(e->d_name + 11, l - 16);
    }
    closedir(d);
    qsort(names, (size_t)n_names, sizeof *names, by_name);
    CHECKF(n_names >= 15, "only %d vocabularies in %s", n_names, vdir);

    int all_passed = 0, all_total = 0;
    printf("%-16s %s\n", "vocabulary", "pairs passed/total");
    for (int i = 0; i < n_names; i++) {
        const char *name = names[i];
        char path[4400], inp_path[4500], out_path[4500];
        snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf", vdir, name);
        snprintf(inp_path, sizeof inp_path, "%s.inp", path);
        snprintf(out_path, sizeof out_path, "%s.out", path);
        size_t inp_len = 0, out_len = 0;
        char *inp = slurp(inp_path, &inp_len), *out = slurp(out_path, &out_len);

        plm_model_params mp = plm_model_default_params();
        mp.vocab_only = true;
        plm_model *m = NULL;
        plm_status st = plm_model_load(path, &mp, &m);
        const char *needle = NULL, *why = unsupported_reason(name, &needle);
        if (st) {
            printf("%-16s unsupported: %s\n", name, why ? why : plm_last_error());
            CHECKF(why, "%s: refused but not listed as unsupported: %s", name, plm_last_error());
            CHECKF(st == PLM_ERR_UNSUPPORTED && (!needle || strstr(plm_last_error(), needle)), "%s: %s", name, plm_last_error());
        } else if (why) {
            CHECKF(0, "%s is listed as unsupported (%s) but loads: update UNSUPPORTED", name, why);
        } else if (!inp || !out) {
            printf("%-16s loads; no golden pairs in the corpus\n", name);
        } else {
            int total = 0, passed = run_pairs(m, name, inp, inp_len, out, &total);
            printf("%-16s %d/%d\n", name, passed, total);
            CHECKF(passed == total && total > 0, "%s: %d of %d pairs pass", name, passed, total);
            all_passed += passed;
            all_total += total;
        }
        plm_model_free(m);
        free(inp);
        free(out);
        free(names[i]);
    }
    printf("%-16s %d/%d\n", "all", all_passed, all_total);
}

int main(void) {
    RUN(test_corpus);
    return TEST_SUMMARY();
}
