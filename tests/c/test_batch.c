/*
 * test_batch.c — the batch generator on the default model: each request's
 * tokens, text and stop reason equal what plm_generator gives for it alone
 * (greedy and seeded sampling, 64+ prompts of different lengths at parallel
 * 16, stop strings, end-of-generation and max_tokens ending at different
 * steps, shared prompt prefixes); pieces through the callback and by polling
 * add up to the text; a request that can never fit fails alone; cancelling;
 * cells are all freed at the end; bad arguments; `pocketlm generate --batch`
 * writes the same texts as JSON lines in input order. And where the cache puts
 * sequences stepped together (kvcache.c, read through the internal header):
 * each in runs of its own, its list's 8-cell blocks one stretch of the cache,
 * and a cache sized to the tokens still fills up.
 */
#include "pocketlm.h"
#include "test.h"

#include "context.h" /* the cells' placement, which only the library's internals see */

static plm_model *model;

#define N_CTX_SEQ 512

static plm_context *new_ctx(int n_ctx, int n_seq_max) {
    plm_context_params p = plm_context_default_params();
    p.n_ctx = n_ctx;
    p.n_seq_max = n_seq_max;
    p.n_threads = 2;
    plm_context *ctx = NULL;
    if (plm_context_create(model, &p, &ctx)) fprintf(stderr, "  %s\n", plm_last_error());
    return ctx;
}

typedef struct outcome {
    char text[4096];
    size_t n;
    plm_token toks[256];
    int32_t n_toks;
    plm_stop_reason reason;
} outcome;

/* The reference: request alone on an empty context of N_CTX_SEQ cells. */
static plm_status alone(plm_context *ctx, const char *prompt, const plm_generate_params *gp, outcome *o) {
    memset(o, 0, sizeof(*o));
    plm_kv_clear(ctx);
    plm_generator *g = NULL;
    plm_status st = plm_generator_create(ctx, prompt, strlen(prompt), gp, &g);
    if (st) return st;
    plm_stop_reason r = PLM_STOP_NONE;
    size_t k = 0;
    do {
        const char *piece;
        if ((st = plm_generator_next(g, &piece, &k, &r))) break;
        if (k && o->n + k < sizeof o->text) {
            memcpy(o->text + o->n, piece, k);
            o->n += k;
        }
    } while (r == PLM_STOP_NONE || k > 0);
    o->reason = r;
    int32_t n;
    const plm_token *t = plm_generator_tokens(g, &n);
    o->n_toks = n < 256 ? n : 256;
    memcpy(o->toks, t, (size_t)o->n_toks * sizeof(plm_token));
    plm_generator_free(g);
    return st;
}

/* Prompts of different lengths: plain text, and chat turns (which share the
 * system prompt's tokens and tend to end with an end-of-turn token). */
static const char *topics[] = {"the sea", "a red bicycle", "bread", "the moon", "winter", "a small dog", "chess",
                               "rain in the city", "an old library", "coffee", "mountains", "a train journey",
                               "the color blue", "gardening", "a lost key", "music"};
static const char *forms[] = {
    "Write one sentence about %s.",
    "Here is a short story about %s. Once upon a time,",
    "<|im_start|>system\nYou are a helpful assistant. Answer briefly.<|im_end|>\n<|im_start|>user\nName one fact about %s.<|im_end|>\n<|im_start|>assistant\n",
    "List three words related to %s, separated by commas, and explain why each of them fits the topic well:",
};

static void make_prompt(int i, char *buf, size_t cap) {
    char extra[256] = "";
    for (int k = 0; k < i % 5; k++) strncat(extra, " Please be precise.", sizeof extra - strlen(extra) - 1);
    char body[512];
    snprintf(body, sizeof body, forms[i % 4], topics[(i / 4 + i) % 16]);
    snprintf(buf, cap, "%s%s", body, i % 4 == 2 ? "" : extra);
}

typedef struct piece_log {
    char text[80][4096];
    size_t n[80];
    int ended[80];
    int bad;
} piece_log;

static int on_piece(int32_t id, const char *piece, size_t len, void *user) {
    piece_log *log = user;
    if (id < 0 || id >= 80) {
        log->bad++;
        return 0;
    }
    if (len == 0) {
        log->ended[id]++;
        return 0;
    }
    if (log->ended[id]) log->bad++; /* text after the end */
    if (log->n[id] + len < sizeof log->text[id]) {
        memcpy(log->text[id] + log->n[id], piece, len);
        log->n[id] += len;
    }
    return 0;
}

/* Runs n requests at parallel 16 and compares each with its run alone. */
static void compare_with_alone(int n, const plm_generate_params *base, int vary, int *reasons) {
    plm_context *bctx = new_ctx(4096, 16), *rctx = new_ctx(N_CTX_SEQ, 1);
    REQUIRE(bctx && rctx);
    plm_batch_gen_params bp = plm_batch_gen_default_params();
    bp.n_parallel = 16;
    bp.n_ctx_seq = N_CTX_SEQ;
    bp.prefill_chunk = 96;
    plm_batch_gen *bg = NULL;
    REQUIRE(plm_batch_gen_create(bctx, &bp, &bg) == PLM_OK);
    static piece_log log;
    memset(&log, 0, sizeof log);
    plm_batch_gen_set_callback(bg, on_piece, &log);
    plm_generate_params gp[80];
    static const char *stops_a[] = {"."}, *stops_b[] = {",", "\n\n"};
    char prompts[80][768];
    for (int i = 0; i < n; i++) {
        make_prompt(i, prompts[i], sizeof prompts[i]);
        gp[i] = *base;
        gp[i].max_tokens = 2 + (i * 7) % 11; /* 2..12: lengths end at different steps */
        gp[i].sampling.seed = 1000 + (uint64_t)i;
        if (vary && i % 3 == 1) {
            gp[i].stop = stops_a;
            gp[i].n_stop = 1;
        } else if (vary && i % 3 == 2) {
            gp[i].stop = stops_b;
            gp[i].n_stop = 2;
        }
        int32_t id;
        REQUIRE(plm_batch_gen_submit(bg, prompts[i], strlen(prompts[i]), &gp[i], &id) == PLM_OK);
        CHECK(id == i);
    }
    int32_t left = -1, steps = 0, most_running = 0;
    do {
        plm_status st = plm_batch_gen_step(bg, &left);
        REQUIRE(st == PLM_OK);
        steps++;
        int32_t running = 0;
        for (int i = 0; i < n; i++) {
            plm_batch_result r;
            plm_batch_gen_result(bg, i, &r);
            running += r.reason == PLM_STOP_NONE && r.status == PLM_OK && r.n_generated > 0;
        }
        if (running > most_running) most_running = running;
    } while (left > 0 && steps < 10000);
    CHECK(left == 0);
    CHECKF(t_quick() || most_running >= 12, "at most %d requests generating at once", most_running);
    int shared = 0, mismatched = 0;
    for (int i = 0; i < n; i++) {
        outcome o;
        REQUIRE(alone(rctx, prompts[i], &gp[i], &o) == PLM_OK);
        plm_batch_result r;
        REQUIRE(plm_batch_gen_result(bg, i, &r) == PLM_OK);
        int32_t nt;
        const plm_token *bt = plm_batch_gen_tokens(bg, i, &nt);
        const int same = r.status == PLM_OK && r.reason == o.reason && nt == o.n_toks && r.text_len == o.n &&
                         !memcmp(r.text, o.text, o.n) && (nt == 0 || !memcmp(bt, o.toks, (size_t)nt * sizeof(plm_token)));
        if (!same && mismatched++ < 5)
            fprintf(stderr, "  request %d: batch (%d, %d tokens) '%s' / alone (%d, %d tokens) '%s'\n", i, r.reason, nt,
                    r.text, o.reason, o.n_toks, o.text);
        CHECKF(log.n[i] == r.text_len && !memcmp(log.text[i], r.text, r.text_len), "request %d: callback pieces", i);
        CHECKF(log.ended[i] == 1, "request %d ended %d times", i, log.ended[i]);
        shared += r.n_shared > 0;
        reasons[o.reason]++;
    }
    CHECKF(mismatched == 0, "%d of %d requests differ from their run alone", mismatched, n);
    CHECK(log.bad == 0);
    CHECKF(shared >= (t_quick() ? 2 : 8), "only %d requests shared a prompt prefix", shared);
    CHECK(plm_kv_used(bctx) == 0); /* every sequence's cells freed */
    fprintf(stderr, "  %d requests in %d steps, %d sharing a prefix\n", n, steps, shared);
    plm_batch_gen_free(bg);
    plm_context_free(bctx);
    plm_context_free(rctx);
}

static void test_greedy_equals_alone(void) {
    plm_generate_params gp = plm_generate_default_params();
    gp.sampling.temperature = 0;
    int reasons[8] = {0};
    compare_with_alone(t_quick() ? 16 : 64, &gp, 0, reasons);
}

static void test_seeded_equals_alone(void) {
    plm_generate_params gp = plm_generate_default_params();
    gp.sampling.temperature = 0.8f;
    int reasons[8] = {0};
    compare_with_alone(t_quick() ? 16 : 64, &gp, 0, reasons);
}

static void test_stops_at_different_steps(void) {
    plm_generate_params gp = plm_generate_default_params();
    gp.sampling.temperature = 0;
    int reasons[8] = {0};
    compare_with_alone(t_quick() ? 16 : 72, &gp, 1, reasons);
    CHECKF(t_quick() || (reasons[PLM_STOP_LENGTH] > 0 && reasons[PLM_STOP_EOG] > 0 && reasons[PLM_STOP_STRING] > 0),
           "endings: length %d, end of generation %d, stop string %d", reasons[PLM_STOP_LENGTH], reasons[PLM_STOP_EOG],
           reasons[PLM_STOP_STRING]);
}

static void test_oversized_fails_alone_and_cancel(void) {
    plm_context *ctx = new_ctx(1024, 4);
    REQUIRE(ctx);
    plm_batch_gen_params bp = plm_batch_gen_default_params();
    bp.n_ctx_seq = 256;
    plm_batch_gen *bg = NULL;
    REQUIRE(plm_batch_gen_create(ctx, &bp, &bg) == PLM_OK);
    plm_generate_params gp = plm_generate_default_params();
    gp.sampling.temperature = 0;
    gp.max_tokens = 6;
    char big[4096] = "";
    for (int i = 0; i < 100; i++) strcat(big, "one two three ");
    int32_t a, b, c, d;
    REQUIRE(plm_batch_gen_submit(bg, "The capital of France is", 24, &gp, &a) == PLM_OK);
    REQUIRE(plm_batch_gen_submit(bg, big, strlen(big), &gp, &b) == PLM_OK);
    REQUIRE(plm_batch_gen_submit(bg, "Once upon a time", 16, &gp, &c) == PLM_OK);
    gp.max_tokens = 0; /* until n_ctx_seq: cancelled below */
    REQUIRE(plm_batch_gen_submit(bg, "Count: 1, 2, 3,", 15, &gp, &d) == PLM_OK);
    plm_batch_result r;
    REQUIRE(plm_batch_gen_result(bg, b, &r) == PLM_OK);
    CHECK(r.status == PLM_ERR_CONTEXT_FULL);
    CHECKF(strstr(r.error, "request 1") && strstr(r.error, "256"), "error: %s", r.error);
    int32_t left;
    REQUIRE(plm_batch_gen_step(bg, &left) == PLM_OK);
    REQUIRE(plm_batch_gen_step(bg, &left) == PLM_OK);
    const char *t;
    size_t k;
    REQUIRE(plm_batch_gen_take(bg, a, &t, &k) == PLM_OK);
    CHECK(plm_batch_gen_cancel(bg, d) == PLM_OK);
    REQUIRE(plm_batch_gen_result(bg, d, &r) == PLM_OK);
    CHECK(r.reason == PLM_STOP_CALLER);
    while (left > 0) REQUIRE(plm_batch_gen_step(bg, &left) == PLM_OK);
    REQUIRE(plm_batch_gen_result(bg, a, &r) == PLM_OK);
    CHECK(r.status == PLM_OK && r.reason == PLM_STOP_LENGTH && r.n_generated == 6);
    CHECKF(!strncmp(r.text, " Paris", 6), "got '%s'", r.text);
    /* polling: the first take and the rest add up to the text */
    const char *rest;
    size_t kr;
    char first[256];
    snprintf(first, sizeof first, "%.*s", (int)k, t);
    REQUIRE(plm_batch_gen_take(bg, a, &rest, &kr) == PLM_OK);
    CHECK(k + kr == r.text_len && !strncmp(r.text, first, k) && !memcmp(r.text + k, rest, kr));
    REQUIRE(plm_batch_gen_result(bg, c, &r) == PLM_OK);
    CHECK(r.status == PLM_OK && r.reason == PLM_STOP_LENGTH);
    /* cancel all: queued requests end too */
    REQUIRE(plm_batch_gen_submit(bg, "Hello", 5, &gp, &a) == PLM_OK);
    REQUIRE(plm_batch_gen_submit(bg, "World", 5, &gp, &b) == PLM_OK);
    REQUIRE(plm_batch_gen_step(bg, &left) == PLM_OK);
    CHECK(left == 2);
    CHECK(plm_batch_gen_cancel(bg, -1) == PLM_OK);
    CHECK(plm_batch_gen_n_left(bg) == 0);
    CHECK(plm_kv_used(ctx) == 0);
    REQUIRE(plm_batch_gen_step(bg, &left) == PLM_OK);
    CHECK(left == 0);
    plm_batch_gen_free(bg);
    plm_context_free(ctx);
}

static int abort_now(void *user) {
    (void)user;
    return 1;
}

static char cli_path[1024];

/* JSON string body of s (what the CLI writes between the quotes). */
static void json_escape(const char *s, char *out, size_t cap) {
    size_t n = 0;
    for (; *s && n + 8 < cap; s++) {
        if (*s == '\n') n += (size_t)snprintf(out + n, cap - n, "\\n");
        else if (*s == '"' || *s == '\\') n += (size_t)snprintf(out + n, cap - n, "\\%c", *s);
        else out[n++] = *s;
    }
    out[n] = 0;
}

static void test_cli_batch_file(void) {
    if (!cli_path[0]) {
        fprintf(stderr, "  no CLI beside the tests: skipped\n");
        return;
    }
    const char *path = "build/test_batch_cli.txt";
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs("The capital of France is\n{\"prompt\": \"Once upon a time\", \"max_tokens\": 3}\n\n"
          "{\"prompt\": \"The capital of Italy is\", \"stop\": \".\"}\n{\"prompt\": 1}\n", f);
    fclose(f);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s generate --batch %s --parallel 2 -n 6 -t 2 2>/dev/null", cli_path, path);
    FILE *p = popen(cmd, "r");
    REQUIRE(p);
    char lines[4][1024] = {{0}};
    int n = 0;
    while (n < 4 && fgets(lines[n], sizeof lines[n], p)) n++;
    CHECK(pclose(p) == 0);
    remove(path);
    REQUIRE(n == 4);
    plm_context *ctx = new_ctx(N_CTX_SEQ, 1);
    REQUIRE(ctx);
    const char *prompts[3] = {"The capital of France is", "Once upon a time", "The capital of Italy is"};
    static const char *dot[] = {"."};
    for (int i = 0; i < 3; i++) {
        plm_generate_params gp = plm_generate_default_params();
        gp.sampling.temperature = 0;
        gp.max_tokens = i == 1 ? 3 : 6;
        if (i == 2) {
            gp.stop = dot;
            gp.n_stop = 1;
        }
        outcome o;
        REQUIRE(alone(ctx, prompts[i], &gp, &o) == PLM_OK);
        char want[2048], esc[1024];
        json_escape(o.text, esc, sizeof esc);
        snprintf(want, sizeof want, "{\"index\": %d, \"text\": \"%s\", \"stop_reason\": \"%s\"", i, esc,
                 o.reason == PLM_STOP_STRING ? "stop" : o.reason == PLM_STOP_EOG ? "eog" : "length");
        CHECKF(!strncmp(lines[i], want, strlen(want)), "line %d: %s (want %s)", i, lines[i], want);
    }
    CHECKF(strstr(lines[3], "{\"index\": 3, \"error\": ") && strstr(lines[3], "prompt"), "%s", lines[3]);
    plm_context_free(ctx);
}

/* n_seq sequences of a 5-token prompt each (one decode), then `steps` steps of one token per sequence; the
 * number of sequences whose list has an 8-cell block (list places 8 j .. 8 j + 7, as attention reads them)
 * that is not one stretch of cells. */
static int cells_in_runs(int n_ctx, int n_seq, int steps) {
    plm_context *ctx = new_ctx(n_ctx, n_seq);
    CHECK(ctx != NULL);
    if (!ctx) return n_seq;
    plm_token tok[64];
    int32_t pos[64], seq[64];
    int n = 0;
    for (int s = 0; s < n_seq; s++)
        for (int i = 0; i < 5; i++, n++) tok[n] = 100 + 7 * n, pos[n] = i, seq[n] = s;
    plm_batch b = {.n_tokens = n, .token = tok, .pos = pos, .seq_id = seq};
    CHECK(plm_decode(ctx, &b) == PLM_OK);
    for (int k = 0; k < steps; k++) {
        for (int s = 0; s < n_seq; s++) tok[s] = 200 + s + k, pos[s] = 5 + k, seq[s] = s;
        b.n_tokens = n_seq;
        CHECKF(plm_decode(ctx, &b) == PLM_OK, "step %d: %s", k, plm_last_error());
    }
    const plm_kv *kv = &ctx->kv;
    int broken = 0;
    for (int s = 0; s < n_seq; s++) {
        CHECK(kv->n_cells[s] == 5 + steps);
        bool ok = true;
        for (int i = 0; i < kv->n_cells[s]; i++)
            if (i % 8 && kv->cells[s][i] != kv->cells[s][i - 1] + 1) ok = false;
        broken += !ok;
    }
    CHECK(kv->used == n_seq * (5 + steps));
    plm_context_free(ctx);
    return broken;
}

static void test_cells_in_runs(void) {
    /* room to spare: every sequence's blocks are stretches (interleaved one cell each before: none were) */
    CHECKF(cells_in_runs(1024, 8, 60) == 0, "sequences stepped together share their blocks of cells");
    /* a cache with exactly the cells the tokens take still takes them all */
    cells_in_runs(8 * 65, 8, 60);
}

static void test_bad_arguments_and_abort(void) {
    plm_context *ctx = new_ctx(512, 4);
    REQUIRE(ctx);
    plm_batch_gen *bg = NULL;
    plm_batch_gen_params bp = plm_batch_gen_default_params();
    bp.n_parallel = 5;
    CHECK(plm_batch_gen_create(ctx, &bp, &bg) == PLM_ERR_ARG && strstr(plm_last_error(), "n_parallel"));
    bp.n_parallel = 0;
    bp.prefill_chunk = 0;
    CHECK(plm_batch_gen_create(ctx, &bp, &bg) == PLM_ERR_ARG);
    CHECK(plm_batch_gen_create(NULL, NULL, &bg) == PLM_ERR_ARG);
    REQUIRE(plm_batch_gen_create(ctx, NULL, &bg) == PLM_OK);
    int32_t id;
    CHECK(plm_batch_gen_submit(bg, "", 0, NULL, &id) == PLM_ERR_ARG || id >= 0); /* BOS alone is a prompt */
    plm_token bad[2] = {1, 999999};
    REQUIRE(plm_batch_gen_submit_tokens(bg, bad, 2, NULL, &id) == PLM_OK);
    plm_batch_result r;
    REQUIRE(plm_batch_gen_result(bg, id, &r) == PLM_OK);
    CHECKF(r.status == PLM_ERR_ARG && strstr(r.error, "999999"), "%s", r.error);
    plm_generate_params gp = plm_generate_default_params();
    gp.sampling.top_p = -1;
    REQUIRE(plm_batch_gen_submit(bg, "Hi", 2, &gp, &id) == PLM_OK);
    REQUIRE(plm_batch_gen_result(bg, id, &r) == PLM_OK);
    CHECKF(r.status == PLM_ERR_ARG && strstr(r.error, "top_p"), "%s", r.error);
    CHECK(plm_batch_gen_result(bg, 99, &r) == PLM_ERR_ARG);
    CHECK(plm_batch_gen_cancel(bg, 99) == PLM_ERR_ARG);
    /* an abort leaves the requests as they were: the step can be retried */
    gp = plm_generate_default_params();
    gp.max_tokens = 3;
    REQUIRE(plm_batch_gen_submit(bg, "Hello there", 11, &gp, &id) == PLM_OK);
    plm_context_set_abort_callback(ctx, abort_now, NULL);
    int32_t left;
    CHECK(plm_batch_gen_step(bg, &left) == PLM_ERR_CANCELLED);
    plm_context_set_abort_callback(ctx, NULL, NULL);
    while (plm_batch_gen_n_left(bg) > 0) REQUIRE(plm_batch_gen_step(bg, &left) == PLM_OK);
    REQUIRE(plm_batch_gen_result(bg, id, &r) == PLM_OK);
    CHECK(r.status == PLM_OK && r.n_generated == 3 && r.reason == PLM_STOP_LENGTH);
    plm_batch_gen_free(bg);
    plm_context_free(ctx);
}

int main(int argc, char **argv) {
    /* the CLI sits beside the tests' directory: BUILD/tests/test_batch -> BUILD/pocketlm */
    if (argc > 0 && strlen(argv[0]) < sizeof cli_path - 16) {
        snprintf(cli_path, sizeof cli_path, "%s", argv[0]);
        char *slash = strrchr(cli_path, '/');
        if (slash) *slash = 0;
        slash = strrchr(cli_path, '/');
        if (slash) strcpy(slash + 1, "pocketlm");
        else cli_path[0] = 0;
        FILE *f = cli_path[0] ? fopen(cli_path, "rb") : NULL;
        if (f) fclose(f);
        else cli_path[0] = 0;
    }
    if (plm_model_load(NULL, NULL, &model)) {
        fprintf(stderr, "cannot load the default model: %s\n", plm_last_error());
        return 1;
    }
    RUN(test_bad_arguments_and_abort);
    RUN(test_cells_in_runs);
    RUN(test_oversized_fails_alone_and_cancel);
    RUN(test_cli_batch_file);
    RUN(test_greedy_equals_alone);
    RUN(test_seeded_equals_alone);
    RUN(test_stops_at_different_steps);
    plm_model_free(model);
    return TEST_SUMMARY();
}
