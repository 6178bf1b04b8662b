/*
 * unicode.h — the Unicode facts the tokenizers need (internal).
 *
 * unicode.c owns UTF-8 decoding and encoding, the general-category and
 * White_Space tables (generated into unicode_data.h by
 * tools/gen_unicode_tables.py), and GPT-2's byte <-> code point mapping used by
 * byte-level BPE vocabularies. It knows nothing about vocabularies.
 */
#ifndef PLM_UNICODE_H
#define PLM_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* General-category classes, one bit each (a code point has exactly one), plus
 * PLM_UCAT_SPACE for White_Space (\s), which may accompany SEPARATOR or CONTROL. */
enum {
    PLM_UCAT_UNDEFINED = 0x01, /* unassigned (Cn) */
    PLM_UCAT_NUMBER = 0x02,    /* \p{N} */
    PLM_UCAT_LETTER = 0x04,    /* \p{L} */
    PLM_UCAT_SEPARATOR = 0x08, /* \p{Z} */
    PLM_UCAT_MARK = 0x10,      /* \p{M} */
    PLM_UCAT_PUNCT = 0x20,     /* \p{P} */
    PLM_UCAT_SYMBOL = 0x40,    /* \p{S} */
    PLM_UCAT_CONTROL = 0x80,   /* \p{C} other than Cn */
    PLM_UCAT_SPACE = 0x100     /* White_Space */
};

/* Marks a byte that does not start a valid UTF-8 sequence. */
#define PLM_CP_INVALID 0xFFFFFFFFu

/* Decodes one UTF-8 sequence at s (n > 0 bytes available) into *cp and returns
 * its length (1 to 4). A byte that does not begin a well-formed sequence
 * (stray continuation byte, truncated sequence, overlong form, surrogate,
 * value above U+10FFFF, 0xF8..0xFF) gives *cp = PLM_CP_INVALID and length 1. */
size_t plm_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
/* Writes cp (<= U+10FFFF) as UTF-8 into out and returns the length (1 to 4);
 * returns 0 for values above U+10FFFF. */
size_t plm_utf8_encode(uint32_t cp, char out[4]);
/* True when s[0..n) is well-formed UTF-8. */
bool plm_utf8_valid(const char *s, size_t n);

/* Category flags of cp (PLM_UCAT_* bits, SPACE included). PLM_CP_INVALID is
 * classed as U+FFFD REPLACEMENT CHARACTER (a symbol), which is what llama.cpp
 * substitutes for invalid bytes before splitting. */
uint16_t plm_unicode_flags(uint32_t cp);
/* The Unicode version of the tables. */
const char *plm_unicode_version(void);

/* GPT-2 byte-level mapping: each byte value is shown as a printable code point
 * (printable Latin-1 bytes as themselves, the others as U+0100 + k). */
uint32_t plm_byte_to_cp(uint8_t byte);
/* The inverse: the byte shown by cp, or -1 if cp is not one of the 256. */
int plm_cp_to_byte(uint32_t cp);

#endif
