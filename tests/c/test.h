/*
 * test.h — a minimal test harness for the C tests: CHECK records a failure and
 * goes on, REQUIRE records it and leaves the test function; main() runs the
 * tests listed with RUN and prints "N passed, N failed".
 */
#ifndef PLM_TEST_H
#define PLM_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_checks_failed;
static int t_tests_passed, t_tests_failed;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);       \
            t_checks_failed++;                                                      \
        }                                                                           \
    } while (0)

#define CHECKF(cond, ...)                                                           \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                           \
            fprintf(stderr, "\n");                                                  \
            t_checks_failed++;                                                      \
        }                                                                           \
    } while (0)

#define REQUIRE(cond)                                                               \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "  FAIL %s:%d: %s (required)\n", __FILE__, __LINE__, #cond); \
            t_checks_failed++;                                                      \
            return;                                                                 \
        }                                                                           \
    } while (0)

/* POCKETLM_TEST_ONLY=name,name runs only the named tests of a binary (make
 * test-arm, where QEMU makes a token through the default model slow); the
 * others print a skipped line and count neither way. */
static inline int t_selected(const char *name) {
    const char *only = getenv("POCKETLM_TEST_ONLY");
    if (!only || !*only) return 1;
    const size_t n = strlen(name);
    for (const char *p = only; (p = strstr(p, name)) != NULL; p += n)
        if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}

#define RUN(fn)                                                                     \
    do {                                                                            \
        int before_ = t_checks_failed;                                              \
        if (!t_selected(#fn)) {                                                     \
            fprintf(stderr, "- %s: skipped (POCKETLM_TEST_ONLY)\n", #fn);           \
            break;                                                                  \
        }                                                                           \
        fprintf(stderr, "- %s\n", #fn);                                             \
        fn();                                                                       \
        if (t_checks_failed == before_) t_tests_passed++;                           \
        else t_tests_failed++;                                                      \
    } while (0)

#define TEST_SUMMARY()                                                              \
    (printf("%d passed, %d failed\n", t_tests_passed, t_tests_failed), t_tests_failed ? 1 : 0)

/* POCKETLM_TEST_QUICK=1 (make test-valgrind, where a token through the default
 * model costs seconds): the model tests run fewer prompts and tokens, and skip
 * the checks that only make sense on the full run (perplexity, RSS bounds). */
static inline int t_quick(void) {
    const char *q = getenv("POCKETLM_TEST_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

/* Path of a fixture under tests/data (the tests run from the repository root). */
#define DATA(name) ("tests/data/" name)

#endif
