/*
 * plm_malformed.c — the program build/plm-malformed DIR: writes every case of
 * the malformed-GGUF generator (malformed_gguf.c) into DIR, with DIR/manifest.tsv
 * (file, status, needles, category, defect; needles are '|'-separated substrings
 * the error message must contain). The Python and Lua tests load each file and
 * check the error; test_gguf.c checks the same cases in C.
 */
#include "malformed_gguf.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: %s DIR\nwrites the malformed GGUF cases and DIR/manifest.tsv\n", argv[0]);
        return 2;
    }
    mg_cases c;
    mg_build_all(&c);
    int rc = mg_write_dir(&c, argv[1]);
    if (rc == 0) {
        int n_cat;
        const char *const *cats = mg_categories(&n_cat);
        printf("%d cases in %s:", c.n, argv[1]);
        for (int i = 0; i < n_cat; i++) {
            int k = 0;
            for (int j = 0; j < c.n; j++) k += strcmp(c.v[j].category, cats[i]) == 0;
            printf(" %s %d%s", cats[i], k, i + 1 < n_cat ? "," : "\n");
        }
    }
    mg_cases_free(&c);
    return rc == 0 ? 0 : 1;
}
