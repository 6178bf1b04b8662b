/*
 * test_grammar.c — the constraint engine: GBNF reading (accepted sentences,
 * refused ones, errors with line:column), the byte matcher (UTF-8, partial
 * characters), token masks against a brute force over the default model's
 * whole vocabulary, the sampler's constraint stage and constrained generation.
 *
 * POCKETLM_GBNF_DIR=<llama.cpp>/grammars also loads every *.gbnf there and
 * checks the masks on states drawn from each (the compatibility corpus).
 * POCKETLM_MASK_STATES=N sets how many random states the exactness test draws
 * per grammar (default 400; 0 with POCKETLM_TEST_QUICK).
 */
#include "grammar/grammar.h"
#include "pocketlm.h"
#include "test.h"

#include <dirent.h>
#include <time.h>

static plm_grammar *parse(const char *text) {
    plm_grammar *g = NULL;
    if (plm_grammar_parse(text, strlen(text), NULL, &g)) fprintf(stderr, "  %s\n", plm_last_error());
    return g;
}

/* Does g accept exactly the bytes s (as a whole sentence)? 1 yes, 0 no, -1 a prefix only. */
static int matches(const plm_grammar *g, const char *s, size_t n) {
    plm_gmatch_universe *u;
    if (plm_gmu_create(g, &u)) return -2;
    int32_t st = plm_gmu_walk(u, plm_gmu_start(u), s, n);
    int r = st < 0 ? 0 : plm_gmu_accepts(u, st) ? 1 : -1;
    plm_gmu_free(u);
    return r;
}
#define M(g, s) matches(g, s, strlen(s))

/* Grammars in the style of llama.cpp's grammars/ (json, list, arithmetic, chess, english, japanese, c). */
static const char *JSONG =
    "# JSON, with optional space\n"
    "root   ::= object\n"
    "value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
    "\n"
    "object ::=\n"
    "  \"{\" ws (\n"
    "            string \":\" ws value\n"
    "    (\",\" ws string \":\" ws value)*\n"
    "  )? \"}\" ws\n"
    "array  ::= \"[\" ws ( value (\",\" ws value)* )? \"]\" ws\n"
    "string ::=\n"
    "  \"\\\"\" (\n"
    "    [^\"\\\\\\x7F\\x00-\\x1F] |\n"
    "    \"\\\\\" ([\"\\\\bfnrt] | \"u\" [0-9a-fA-F]{4}) # escapes\n"
    "  )* \"\\\"\" ws\n"
    "number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws\n"
    "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n";
static const char *LISTG = "root ::= item+\n# no line breaks inside an item\nitem ::= \"- \" [^\\r\\n\\x0b\\x0c\\x85\\u2028\\u2029]+ \"\\n\"\n";
static const char *ARITHG =
    "root  ::= (expr \"=\" ws term \"\\n\")+\nexpr  ::= term ([-+*/] term)*\n"
    "term  ::= ident | num | \"(\" ws expr \")\" ws\nident ::= [a-z] [a-z0-9_]* ws\nnum   ::= [0-9]+ ws\nws    ::= [ \\t\\n]*\n";
static const char *CHESSG =
    "root    ::= \"1. \" move \" \" move \"\\n\" ([1-9] [0-9]? \". \" move \" \" move \"\\n\")+\n"
    "move    ::= (pawn | nonpawn | castle) [+#]?\nnonpawn ::= [NBKQR] [a-h]? [1-8]? \"x\"? [a-h] [1-8]\n"
    "pawn    ::= ([a-h] \"x\")? [a-h] [1-8] (\"=\" [NBKQR])?\ncastle  ::= \"O-O\" \"-O\"?\n";
static const char *ENGLISHG =
    "root ::= en-char+ ([ \\t\\n] en-char+)*\nen-char ::= letter | digit | punct\nletter ::= [a-zA-Z]\n"
    "digit ::= [0-9]\npunct ::= [!\"#$%&'()*+,-./:;<=>?@[\\\\\\]^_`{|}~]\n";
static const char *JAPANESEG =
    "root ::= jp-char+ ([ \\t\\n] jp-char+)*\njp-char ::= hiragana | katakana | punct | cjk\n"
    "hiragana ::= [ぁ-ゟ]\nkatakana ::= [ァ-ヿ]\npunct ::= [、-〾]\ncjk ::= [一-鿿]\n";
static const char *CG =
    "root ::= (decl)*\ndecl ::= type ident \"(\" param? \")\" \"{\" stmt* \"}\"\n"
    "type ::= \"int\" ws | \"float\" ws | \"char\" ws\nident ::= [a-zA-Z_] [a-zA-Z_0-9]*\nparam ::= type ident\n"
    "stmt ::=\n    ( type ident ws \"=\" ws expr \";\" ) |\n    ( \"return\" ws expr \";\" ) |\n"
    "    ( \"while\" \"(\" expr \")\" \"{\" stmt* \"}\" ) |\n    ( \"/*\" ( [^*] | (\"*\" [^/]) )* \"*/\" )\n"
    "expr ::= term ((\"+\" | \"-\") term)*\nterm ::= factor((\"*\" | \"/\") factor)*\n"
    "factor ::= ident | [0-9]+ | \"-\" factor | \"(\" ws expr ws \")\"\nws ::= ([ \\t\\n]+)\n";

static void test_sentences(void) {
    plm_grammar *g = parse(JSONG);
    REQUIRE(g);
    CHECK(M(g, "{}") == 1);
    CHECK(M(g, "{\"a\": [1, -2.5e3, true, null, \"x\\u00e9\\n\"]}") == 1);
    CHECK(M(g, "{\"caf\xc3\xa9\":\"\xe2\x82\xac\xf0\x9f\x98\x80\"}") == 1);
    CHECK(M(g, "{\"a\":") == -1);
    CHECK(M(g, "{\"a\":01}") == 0);
    CHECK(M(g, "[]") == 0);
    CHECK(M(g, "{\"a\":\"\x01\"}") == 0);      /* control character in a string */
    CHECK(M(g, "{\"a\":\"\xc3\"}") == 0);       /* a lone lead byte */
    CHECK(M(g, "{\"a\":\"\xed\xa0\x80\"}") == 0); /* an encoded surrogate */
    CHECK(M(g, "{\"a\":\"\xc0\xaf\"}") == 0);   /* overlong */
    CHECK(M(g, "{\"a\":\"\\u12G4\"}") == 0);
    CHECK(M(g, "{\"a\":\"\\u12") == -1);
    plm_grammar_free(g);

    g = parse(LISTG);
    REQUIRE(g);
    CHECK(M(g, "- one\n- two\n") == 1);
    CHECK(M(g, "- one\n") == 1);
    CHECK(M(g, "- \n") == 0);
    CHECK(M(g, "- a\xe2\x80\xa8z\n") == 0); /* U+2028 excluded */
    CHECK(M(g, "- a\xe2\x80\xa9") == 0);
    CHECK(M(g, "- a\xe2\x80") == -1);       /* U+2000..U+203F minus two: still possible */
    plm_grammar_free(g);

    g = parse(ARITHG);
    REQUIRE(g);
    CHECK(M(g, "a+b*(c -2)= 4\n") == 1);
    CHECK(M(g, "x1 +22=y\n") == 1);
    CHECK(M(g, "x1 + 22=y\n") == 0); /* a term cannot start with a space */
    CHECK(M(g, "(a)=b\n(c+d)=e\n") == 1);
    CHECK(M(g, "1x=2\n") == 0);
    plm_grammar_free(g);

    g = parse(CHESSG);
    REQUIRE(g);
    CHECK(M(g, "1. e4 e5\n2. Nf3 Nc6\n") == 1);
    CHECK(M(g, "1. O-O-O Qxd8#\n2. exd8=Q+ Ka1\n") == 1);
    CHECK(M(g, "1. e9 e5\n") == 0);
    plm_grammar_free(g);

    g = parse(ENGLISHG);
    REQUIRE(g);
    CHECK(M(g, "Hello, world! [x] a\\b") == 1);
    CHECK(M(g, "caf\xc3\xa9") == 0);
    plm_grammar_free(g);

    g = parse(JAPANESEG);
    REQUIRE(g);
    CHECK(M(g, "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf \xe4\xb8\x96\xe7\x95\x8c") == 1);
    CHECK(M(g, "abc") == 0);
    CHECK(M(g, "\xe3") == -1);
    CHECK(M(g, "\xe2") == 0); /* no class holds U+2000..U+2FFF */
    plm_grammar_free(g);

    g = parse(CG);
    REQUIRE(g);
    CHECK(M(g, "int main(){int x = 1+2*3;return x;}") == 1);
    CHECK(M(g, "int f(char c){/* hi * there */while(c){}}") == 1);
    CHECK(M(g, "int main(){x = 1;}") == 0);
    plm_grammar_free(g);
}

static void test_repetitions(void) {
    plm_grammar *g = parse("root ::= \"a\"{2,4} \"b\"{3} (\"c\" \"d\"){1,} \"e\"{0,2} [x-z]?\n");
    REQUIRE(g);
    CHECK(M(g, "aabbbcd") == 1);
    CHECK(M(g, "aaaabbbcdcdeez") == 1);
    CHECK(M(g, "abbbcd") == 0);
    CHECK(M(g, "aaaaabbbcd") == 0);
    CHECK(M(g, "aabbbcdeee") == 0);
    CHECK(M(g, "aabbb") == -1);
    plm_grammar_free(g);
    g = parse("root ::= \"\"\n"); /* only the empty sentence (found by fuzz_grammar) */
    REQUIRE(g);
    CHECK(M(g, "") == 1 && M(g, "a") == 0);
    plm_grammar_free(g);
    g = parse("root ::= \"\" | x*\nx ::= \"q\" . \"\\U0001F600\" [^a-c\\-]\n");
    REQUIRE(g);
    CHECK(M(g, "") == 1);
    CHECK(M(g, "q\xe2\x82\xac\xf0\x9f\x98\x80-") == 0);
    CHECK(M(g, "q\xe2\x82\xac\xf0\x9f\x98\x80" "d") == 1);
    CHECK(M(g, "qa\xf0\x9f\x98\x80\xc3\xa9qb\xf0\x9f\x98\x80z") == 1);
    plm_grammar_free(g);
}

/* A malformed grammar: the status and that the message holds each of want[]. */
static void bad(const char *text, const char *root, const char *want1, const char *want2) {
    plm_grammar *g = NULL;
    plm_status st = plm_grammar_parse(text, strlen(text), root, &g);
    CHECKF(st == PLM_ERR_ARG && !g, "grammar %s was accepted", text);
    const char *m = plm_last_error();
    CHECKF(!want1 || strstr(m, want1), "'%s' not in: %s", want1, m);
    CHECKF(!want2 || strstr(m, want2), "'%s' not in: %s", want2, m);
    plm_grammar_free(g);
}

static void test_errors(void) {
    bad("root ::= \"a\n", NULL, "line 1:10", "not closed");
    bad("root ::= [ab\n", NULL, "line 1:10", "not closed");
    bad("root ::= x\n", NULL, "line 1:10", "'x' is used but not defined");
    bad("\n\nroot := \"a\"\n", NULL, "line 3:6", "expected '::='");
    bad("root ::= (\"a\" | \"b\"\n", NULL, "line 2:1", "expected ')'");
    bad("root ::= \"a\" )\n", NULL, "line 1:14", "no group is open");
    bad("root ::= * \"a\"\n", NULL, "line 1:10", "repeats nothing");
    bad("root ::= \"a\"{3,2}\n", NULL, "line 1:13", "below the minimum");
    bad("root ::= \"a\"{x}\n", NULL, "line 1:14", "expected a number");
    bad("root ::= \"\\q\"\n", NULL, "line 1:11", "unknown escape");
    bad("root ::= \"\\x4\"\n", NULL, "line 1:", "hex digits");
    bad("root ::= [z-a]\n", NULL, "line 1:12", "below its start");
    bad("root ::= expr\nexpr ::= expr \"+\" \"1\" | \"1\"\n", NULL, "left-recursive", "expr -> expr");
    bad("root ::= a\na ::= b? a \"x\" | \"y\"\nb ::= \"z\"\n", NULL, "left-recursive", NULL);
    bad("root ::= a\na ::= \"x\" a\n", NULL, "can never finish", NULL);
    bad("root ::= \"a\"\nroot ::= \"b\"\n", NULL, "line 2:1", "defined twice");
    bad("start ::= \"a\"\n", NULL, "no rule named 'root'", NULL);
    bad("root ::= \"a\"\n", "main", "no rule named 'main'", NULL);
    bad("root ::= <think>\n", NULL, "line 1:10", "token references");
    bad("", NULL, "defines no rule", NULL);
    bad("root ::= \"\xff\"\n", NULL, "invalid UTF-8", NULL);
    bad("root ::= x{900000} x{900000} x{900000} x{900000} x{900000}\nx ::= \"a\"\n", NULL, "too large", NULL);
    bad("root ::= \"a\"{2}{3}\n", NULL, "line 1:16", "repeats nothing");
    /* an alternative that can never finish is dropped, the rest works */
    plm_grammar *g = parse("root ::= \"a\" | loop\nloop ::= \"b\" loop\n");
    REQUIRE(g);
    CHECK(M(g, "a") == 1);
    CHECK(M(g, "b") == 0);
    plm_grammar_free(g);
}

/* ----------------------------------------------------------- schema, regex, choices */

static plm_grammar *schema(const char *text) {
    plm_grammar *g = NULL;
    if (plm_grammar_from_json_schema(text, strlen(text), &g)) fprintf(stderr, "  %s\n", plm_last_error());
    return g;
}

/* Integer bounds against arithmetic: every integer near the bounds, and non-canonical forms. */
static void test_schema_integers(void) {
    int64_t cases[][2] = {{0, 0}, {18, 120}, {-5, 5}, {-120, -18}, {7, 7}, {0, 9}, {1, 10}, {99, 1000}, {-1000, -99},
                          {123, 4567}, {-4567, 123}, {10, 99}, {100, 199}, {5, 50005}};
    for (int u = 0; u < 4; u++)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            int64_t lo = cases[k][0], hi = cases[k][1];
            bool has_lo = u != 1 && u != 3, has_hi = u != 2 && u != 3;
            char text[200];
            snprintf(text, sizeof text, "{\"type\":\"integer\"%s%.0lld%s%.0lld}", has_lo ? ",\"minimum\":" : "",
                     has_lo ? (long long)lo : 0LL, has_hi ? ",\"maximum\":" : "", has_hi ? (long long)hi : 0LL);
            if (has_lo && lo == 0) snprintf(text, sizeof text, "{\"type\":\"integer\",\"minimum\":0%s%.0lld}",
                                            has_hi ? ",\"maximum\":" : "", has_hi ? (long long)hi : 0LL);
            if (has_hi && hi == 0 && !(has_lo && lo == 0))
                snprintf(text, sizeof text, "{\"type\":\"integer\"%s%.0lld,\"maximum\":0}", has_lo ? ",\"minimum\":" : "",
                         has_lo ? (long long)lo : 0LL);
            if (has_hi && hi == 0 && has_lo && lo == 0) snprintf(text, sizeof text, "{\"type\":\"integer\",\"minimum\":0,\"maximum\":0}");
            plm_grammar *g = schema(text);
            CHECKF(g, "%s", text);
            if (!g) continue;
            for (int64_t x = lo - 1100; x <= hi + 1100; x++) {
                char num[32];
                snprintf(num, sizeof num, "%lld", (long long)x);
                bool want = (!has_lo || x >= lo) && (!has_hi || x <= hi);
                int m = M(g, num);
                CHECKF((m == 1) == want, "%s: %s gives %d", text, num, m);
            }
            CHECK(M(g, "-0") != 1);
            CHECK(M(g, "007") != 1);
            plm_grammar_free(g);
        }
    plm_grammar *g = schema("{\"type\":\"integer\",\"exclusiveMinimum\":2.5,\"exclusiveMaximum\":6}");
    REQUIRE(g);
    CHECK(M(g, "2") == 0 && M(g, "3") == 1 && M(g, "5") == 1 && M(g, "6") == 0);
    plm_grammar_free(g);
}

static void test_schema_keywords(void) {
    plm_grammar *g = schema("{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
                            "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\"]}},"
                            "\"$ref\":\"#/$defs/node\"}");
    REQUIRE(g);
    CHECK(M(g, "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[]}]}") == 1);
    CHECK(M(g, "{\"kids\":[]}") == 0);
    plm_grammar_free(g);
    g = schema("{\"anyOf\":[{\"type\":\"null\"},{\"type\":\"string\",\"format\":\"date\"}]}");
    REQUIRE(g);
    CHECK(M(g, "null") == 1 && M(g, "\"2024-02-29\"") == 1 && M(g, "\"2024-13-01\"") == 0);
    plm_grammar_free(g);
    g = schema("{\"type\":\"array\",\"prefixItems\":[{\"type\":\"boolean\"},{\"const\":\"x\"}],\"items\":{\"type\":\"number\"},\"maxItems\":3}");
    REQUIRE(g);
    CHECK(M(g, "[true,\"x\"]") == 1 && M(g, "[false, \"x\", -1.5e3]") == 1 && M(g, "[true,\"x\",1,2]") == 0);
    plm_grammar_free(g);
    g = schema("{\"allOf\":[{\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"]},"
               "{\"properties\":{\"b\":{\"type\":\"boolean\"}},\"required\":[\"b\"]}]}");
    REQUIRE(g);
    CHECK(M(g, "{\"a\":1,\"b\":true}") == 1 && M(g, "{\"a\":1}") == 0);
    plm_grammar_free(g);
    g = schema("{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-\\\\d{3}(x|\\\"q\\\")?$\"}");
    REQUIRE(g);
    CHECK(M(g, "\"AB-123\"") == 1 && M(g, "\"AB-123x\"") == 1 && M(g, "\"AB-123\\\"q\\\"\"") == 1 && M(g, "\"A-123\"") == 0);
    plm_grammar_free(g);
    g = schema("{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
               "\"at\":{\"type\":\"string\",\"format\":\"date-time\"},\"mail\":{\"type\":\"string\",\"format\":\"email\"}},"
               "\"additionalProperties\":{\"type\":\"integer\"}}");
    REQUIRE(g);
    CHECK(M(g, "{\"id\":\"123e4567-e89b-12d3-a456-426614174000\",\"at\":\"2024-01-02T03:04:05Z\",\"mail\":\"a.b@c.org\",\"n\":5}") == 1);
    CHECK(M(g, "{\"x\":\"no\"}") == 0);
    plm_grammar_free(g);
}

static void bad_schema(const char *text, const char *want1, const char *want2) {
    plm_grammar *g = NULL;
    plm_status st = plm_grammar_from_json_schema(text, strlen(text), &g);
    CHECKF(st == PLM_ERR_ARG && !g, "schema %s was accepted", text);
    const char *m = plm_last_error();
    CHECKF(!want1 || strstr(m, want1), "'%s' not in: %s", want1, m);
    CHECKF(!want2 || strstr(m, want2), "'%s' not in: %s", want2, m);
    plm_grammar_free(g);
}

static void bad_regex(const char *text, const char *want1, const char *want2) {
    plm_grammar *g = NULL;
    plm_status st = plm_grammar_from_regex(text, strlen(text), &g);
    CHECKF(st == PLM_ERR_ARG && !g, "regex %s was accepted", text);
    const char *m = plm_last_error();
    CHECKF(!want1 || strstr(m, want1), "'%s' not in: %s", want1, m);
    CHECKF(!want2 || strstr(m, want2), "'%s' not in: %s", want2, m);
    plm_grammar_free(g);
}

static void test_schema_errors(void) {
    bad_schema("{\"type\":\"object\",\n \"properties\":{\"a\":{\"type\":\"integer\",\"multipleOf\":3}}}", "line 2:51", "unsupported keyword 'multipleOf'");
    bad_schema("{\"type\":\"strin\"}", "line 1:1", "unknown type 'strin'");
    bad_schema("{\"type\":\"object\",}", "line 1:18", "property name");
    bad_schema("{\"$ref\":\"#/$defs/nope\"}", "line 1:9", "points to no definition");
    bad_schema("{\"$ref\":\"http://x/y.json\"}", "unsupported $ref", NULL);
    bad_schema("{\"type\":\"string\",\"format\":\"ipv4\"}", "line 1:27", "unsupported format 'ipv4'");
    bad_schema("{\"type\":\"number\",\"minimum\":1.5}", "integers only", NULL);
    bad_schema("{\"type\":\"string\",\"pattern\":\"a(b\"}", "pattern line 1:2", "not closed");
    bad_schema("{\"enum\":[]}", "empty", NULL);
    bad_schema("[1,2", "line 1:5", "expected ',' or ']'");
    bad_schema("{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#\"}},\"required\":[\"a\"]}", "never finish", NULL);
    bad_schema("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "no integer", NULL);
    bad_regex("a(b", "regex line 1:2", "not closed");
    bad_regex("a+?", "line 1:3", "lazy");
    bad_regex("(a)\\1", "line 1:4", "backreferences");
    bad_regex("(?=a)", "line 1:1", "groups");
    bad_regex("a^b", "line 1:2", "only at the start");
    bad_regex("[b-a]", "line 1:1", "out of order");
    bad_regex("*a", "line 1:1", "repeats nothing");
    plm_grammar *g = NULL;
    CHECK(plm_grammar_from_choices(NULL, NULL, 0, &g) == PLM_ERR_ARG && strstr(plm_last_error(), "at least one"));
}

static void test_regex_choices(void) {
    plm_grammar *g = NULL;
    const char *re = "^(\\d{3}-\\d{4}|[A-Fa-f]+\\.?|caf\xc3\xa9|\\(x\\)|[^\\sa-z]{2})$";
    REQUIRE(plm_grammar_from_regex(re, strlen(re), &g) == PLM_OK);
    CHECK(M(g, "555-1234") == 1 && M(g, "abC.") == 1 && M(g, "caf\xc3\xa9") == 1 && M(g, "(x)") == 1);
    CHECK(M(g, "Q!") == 1 && M(g, "q!") == 0 && M(g, "55-1234") == 0 && M(g, "G") == -1 && M(g, "\t!") == 0 && M(g, "GG.") == 0);
    plm_grammar_free(g);
    const char *choices[] = {"red", "green", "blue \"sky\"", ""};
    size_t lens[] = {3, 5, 10, 0};
    REQUIRE(plm_grammar_from_choices(choices, lens, 4, &g) == PLM_OK);
    CHECK(M(g, "red") == 1 && M(g, "blue \"sky\"") == 1 && M(g, "") == 1 && M(g, "gree") == -1 && M(g, "redd") == 0);
    plm_grammar_free(g);
}

/* ----------------------------------------------------------- masks */

static plm_model *model;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Draws random states of g by random walks over allowed tokens and checks at
 * each that plm_token_mask equals the brute force: every token's bytes walked
 * one by one from the same bytes of history in a universe of its own (no
 * cache shared with the mask's). Returns the number of states checked. */
static int check_masks(const char *name, const plm_grammar *g, int n_states) {
    const plm_token_trie *trie;
    if (plm_model_token_trie(model, &trie)) return 0;
    int32_t nv = plm_token_trie_n_vocab(trie), words = (nv + 63) / 64;
    plm_gmatch_universe *u, *ub;
    if (plm_gmu_create(g, &u) || plm_gmu_create(g, &ub)) return 0;
    plm_gmu_set_reference(ub); /* the brute force steps byte by byte, none of the mask's shortcuts */
    uint64_t *mask = malloc((size_t)words * 8);
    int32_t *allowed = malloc((size_t)nv * sizeof(int32_t));
    char *hist = malloc(1 << 16);
    size_t nh = 0;
    int checked = 0, bad_states = 0;
    int32_t s = plm_gmu_start(u);
    for (int k = 0; k < n_states; k++) {
        if (plm_token_mask(u, trie, s, mask)) break;
        int32_t sb = plm_gmu_walk(ub, plm_gmu_start(ub), hist, nh);
        int32_t n_allowed = 0, mismatches = 0;
        for (int32_t t = 0; t < nv; t++) {
            size_t len;
            const char *b = plm_token_trie_bytes(trie, t, &len);
            bool want;
            if (plm_token_trie_is_eog(trie, t)) want = plm_gmu_accepts(ub, sb);
            else {
                int32_t x = sb;
                for (size_t i = 0; i < len && x >= 0; i++) x = plm_gmu_step(ub, x, (uint8_t)b[i]);
                want = len > 0 && x >= 0;
            }
            bool got = (mask[t >> 6] >> (t & 63)) & 1;
            if (want != got && mismatches++ < 3)
                fprintf(stderr, "  %s state %d: token %d '%.*s' brute force %d, mask %d\n", name, k, t, (int)len, b, want, got);
            if (got) allowed[n_allowed++] = t;
        }
        checked++;
        if (mismatches) bad_states++;
        if (n_allowed == 0) break;
        /* next: a random allowed token, preferring non-EOG; restart when finished or long */
        plm_token t = allowed[rnd() % (uint64_t)n_allowed];
        size_t len;
        const char *b = plm_token_trie_bytes(trie, t, &len);
        if (plm_token_trie_is_eog(trie, t) || nh + len > 2000 || rnd() % 97 == 0) {
            nh = 0;
            s = plm_gmu_start(u);
            continue;
        }
        memcpy(hist + nh, b, len);
        nh += len;
        s = plm_gmu_walk(u, s, b, len);
        if (s < 0) {
            fprintf(stderr, "  %s: an allowed token led to a dead state\n", name);
            bad_states++;
            break;
        }
    }
    CHECKF(bad_states == 0, "%s: %d of %d states have a wrong mask", name, bad_states, checked);
    free(mask);
    free(allowed);
    free(hist);
    plm_gmu_free(u);
    plm_gmu_free(ub);
    return checked;
}

static int n_mask_states(void) {
    const char *e = getenv("POCKETLM_MASK_STATES");
    if (e && *e) return atoi(e);
    return t_quick() ? 20 : 400;
}

static void test_mask_exact(void) {
    REQUIRE(model);
    const char *names[] = {"json", "list", "arithmetic", "chess", "english", "japanese", "c"};
    const char *texts[] = {JSONG, LISTG, ARITHG, CHESSG, ENGLISHG, JAPANESEG, CG};
    int total = 0;
    clock_t t0 = clock();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        plm_grammar *g = parse(texts[i]);
        CHECK(g);
        if (g) total += check_masks(names[i], g, n_mask_states());
        plm_grammar_free(g);
    }
    const char *dir = getenv("POCKETLM_GBNF_DIR");
    DIR *d = dir ? opendir(dir) : NULL;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t L = strlen(e->d_name);
        if (L < 6 || strcmp(e->d_name + L - 5, ".gbnf")) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        char *buf = malloc(1 << 20);
        size_t n = fread(buf, 1, (1 << 20) - 1, f);
        fclose(f);
        plm_grammar *g = NULL;
        plm_status st = plm_grammar_parse(buf, n, NULL, &g);
        CHECKF(st == PLM_OK, "%s: %s", e->d_name, plm_last_error());
        if (g) total += check_masks(e->d_name, g, n_mask_states());
        plm_grammar_free(g);
        free(buf);
    }
    if (d) closedir(d);
    fprintf(stderr, "  %d states checked against the brute force (%.1f s)\n", total,
            (double)(clock() - t0) / CLOCKS_PER_SEC);
}

/* The same on grammars compiled from JSON Schema and GBNF with bounded, counted and non-ASCII character
 * runs: where the mask takes whole subtrees of the trie without walking them. */
static void test_mask_exact_runs(void) {
    REQUIRE(model);
    static const char *schemas[] = {
        "{\"type\": \"string\", \"minLength\": 3, \"maxLength\": 10}",
        "{\"type\": \"array\", \"items\": {\"type\": \"string\"}}",
        "{\"type\": \"object\", \"properties\": {\"title\": {\"type\": \"string\", \"maxLength\": 40}, \"tags\": "
        "{\"type\": \"array\", \"items\": {\"type\": \"string\", \"maxLength\": 6}, \"maxItems\": 3}}, "
        "\"required\": [\"title\"]}",
        "{\"type\": \"string\", \"format\": \"email\"}",
        "{\"type\": \"string\", \"format\": \"date-time\"}",
        "{\"enum\": [\"na\u00efve\", \"caf\u00e9\", \"\u65e5\u672c\", \"plain\"]}",
        "{\"type\": \"string\", \"pattern\": \"^[a-z]{2,5}-[0-9]+$\"}",
    };
    static const char *gbnfs[] = {
        /* a class that holds part of the code points of a lead byte (U+00C0-U+00DF of C3's U+00C0-U+00FF) */
        "root ::= [a-zA-Z\u00c0-\u00df ]{1,12} \".\"\n",
        /* letters one way, accented letters another (so their lead bytes do not take the letters' step) */
        "root ::= ([a-z] | [\u00c0-\u00ff] \"!\" | \" \")* \".\"\n",
        /* any character but a quote, counted, then anything */
        "root ::= [^\"]{0,7} \"\\\"\" [^\\x00]*\n",
    };
    int total = 0;
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
        plm_grammar *g = NULL;
        plm_status st = plm_grammar_from_json_schema(schemas[i], strlen(schemas[i]), &g);
        CHECKF(st == PLM_OK, "schema %zu: %s", i, plm_last_error());
        char name[32];
        snprintf(name, sizeof name, "schema %zu", i);
        if (g) total += check_masks(name, g, n_mask_states());
        plm_grammar_free(g);
    }
    for (size_t i = 0; i < sizeof gbnfs / sizeof gbnfs[0]; i++) {
        plm_grammar *g = parse(gbnfs[i]);
        CHECKF(g != NULL, "gbnf %zu: %s", i, plm_last_error());
        char name[32];
        snprintf(name, sizeof name, "gbnf %zu", i);
        if (g) total += check_masks(name, g, n_mask_states());
        plm_grammar_free(g);
    }
    fprintf(stderr, "  %d states checked against the brute force\n", total);
}

/* The sampler with a grammar on made-up logits that favour forbidden tokens. */
static void test_sampler_stage(void) {
    REQUIRE(model);
    plm_grammar *g = parse("root ::= \"yes\" | \"no\"\n");
    REQUIRE(g);
    plm_model_info info;
    REQUIRE(plm_model_get_info(model, &info) == PLM_OK);
    int32_t nv = info.n_vocab;
    float *logits = malloc((size_t)nv * sizeof(float));
    for (int greedy = 0; greedy < 2; greedy++) {
        plm_sampler_params p = plm_sampler_default_params();
        p.temperature = greedy ? 0.0f : 1.0f;
        plm_sampler *smp;
        REQUIRE(plm_sampler_create(&p, nv, &smp) == PLM_OK);
        REQUIRE(plm_sampler_set_grammar(smp, model, g) == PLM_OK);
        char out[64];
        size_t n_out = 0;
        for (int step = 0; step < 10; step++) {
            for (int32_t i = 0; i < nv; i++) logits[i] = (float)(rnd() % 1000) / 100.0f;
            plm_token t;
            REQUIRE(plm_sampler_sample_logits(smp, logits, &t) == PLM_OK);
            if (plm_token_is_eog(model, t)) break;
            size_t k = 0;
            plm_token_to_piece(model, t, false, out + n_out, sizeof out - n_out, &k);
            n_out += k;
            plm_sampler_accept(smp, t);
        }
        out[n_out] = 0;
        CHECKF(!strcmp(out, "yes") || !strcmp(out, "no"), "got '%s'", out);
        CHECK(plm_sampler_grammar_accepts(smp));
        /* a refused token accepted by the caller makes the next sample fail loudly */
        plm_sampler_reset(smp);
        plm_token x = -1;
        plm_tokenize(model, "maybe", 5, false, false, &x, 1, &(int32_t){0});
        plm_sampler_accept(smp, x);
        plm_token t;
        CHECK(plm_sampler_sample_logits(smp, logits, &t) == PLM_ERR_ARG && strstr(plm_last_error(), "grammar"));
        plm_sampler_free(smp);
    }
    free(logits);
    plm_grammar_free(g);
}

/* Constrained generation on the default model: the text is a sentence of the grammar. */
static void test_generate(void) {
    REQUIRE(model);
    plm_context *ctx;
    plm_context_params cp = plm_context_default_params();
    cp.n_ctx = 512;
    REQUIRE(plm_context_create(model, &cp, &ctx) == PLM_OK);
    const char *texts[] = {JSONG, CHESSG, ARITHG, "root ::= \"The answer is \" (\"yes\" | \"no\") \".\"\n"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        plm_grammar *g = parse(texts[i]);
        CHECK(g);
        if (!g) continue;
        for (int seed = 0; seed < 2; seed++) {
            plm_generate_params p = plm_generate_default_params();
            p.grammar = g;
            p.max_tokens = 96;
            p.sampling.temperature = seed ? 0.9f : 0.0f;
            p.sampling.seed = (uint64_t)seed;
            char *out = NULL;
            plm_stop_reason why;
            const char *prompt = i == 1 ? "A chess game:\n" : "Here is a JSON object describing a cat:\n";
            plm_status st = plm_generate(ctx, prompt, strlen(prompt), &p, NULL, NULL, &out, &why);
            CHECKF(st == PLM_OK, "%s", plm_last_error());
            if (st) continue;
            int m = matches(g, out, strlen(out));
            if (why == PLM_STOP_EOG) CHECKF(m == 1, "grammar %zu seed %d: '%s' is not a sentence", i, seed, out);
            else CHECKF(why == PLM_STOP_LENGTH && m != 0, "grammar %zu: reason %d, '%s'", i, (int)why, out);
            plm_free(out);
        }
        plm_grammar_free(g); /* the generators held their own references */
    }
    plm_context_free(ctx);
}

int main(void) {
    RUN(test_sentences);
    RUN(test_repetitions);
    RUN(test_errors);
    RUN(test_schema_integers);
    RUN(test_schema_keywords);
    RUN(test_schema_errors);
    RUN(test_regex_choices);
    char path[4096];
    if (plm_default_model_path(path, sizeof path) == PLM_OK && plm_model_load(path, NULL, &model) == PLM_OK) {
        RUN(test_mask_exact);
        RUN(test_mask_exact_runs);
        RUN(test_sampler_stage);
        RUN(test_generate);
        plm_model_free(model);
    } else {
        fprintf(stderr, "the default model is missing (make model): %s\n", plm_last_error());
        t_tests_failed++;
    }
    return TEST_SUMMARY();
}
