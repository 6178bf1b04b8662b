/*
 * unicode.c — UTF-8, general categories, White_Space and GPT-2's byte mapping.
 *
 * Owns strict UTF-8 decoding (invalid bytes are reported one at a time, never
 * skipped or read past the end), the category lookup over the two-level table
 * in unicode_data.h, and the byte <-> code point mapping of byte-level BPE.
 * Splitting text into words is pretok.c's business.
 */
#include "unicode.h"

#include "unicode_data.h"

size_t plm_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    size_t len;
    uint32_t v;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2;
        v = b0 & 0x1Fu;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3;
        v = b0 & 0x0Fu;
        if (b0 == 0xE0) lo = 0xA0;      /* no overlong forms */
        else if (b0 == 0xED) hi = 0x9F; /* no surrogates */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4;
        v = b0 & 0x07u;
        if (b0 == 0xF0) lo = 0x90;      /* no overlong forms */
        else if (b0 == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        *cp = PLM_CP_INVALID;
        return 1;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        *cp = PLM_CP_INVALID;
        return 1;
    }
    v = (v << 6) | (s[1] & 0x3Fu);
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = PLM_CP_INVALID;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    *cp = v;
    return len;
}

size_t plm_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp < 0x110000) {
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}

bool plm_utf8_valid(const char *s, size_t n) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        i += plm_utf8_decode(p + i, n - i, &cp);
        if (cp == PLM_CP_INVALID) return false;
    }
    return true;
}

static bool is_white_space(uint32_t cp) {
    for (size_t i = 0; i < sizeof plm_ucd_white_space / sizeof plm_ucd_white_space[0]; i++)
        if (plm_ucd_white_space[i] == cp) return true;
    return false;
}

uint16_t plm_unicode_flags(uint32_t cp) {
    if (cp < 0x80) {
        uint16_t f = plm_ucd_stage2[cp]; /* block 0 holds U+0000..U+007F */
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) f |= PLM_UCAT_SPACE;
        return f;
    }
    if (cp >= PLM_UCD_MAX_CP) return PLM_UCAT_SYMBOL; /* PLM_CP_INVALID reads as U+FFFD */
    uint16_t f = plm_ucd_stage2[(size_t)plm_ucd_stage1[cp >> PLM_UCD_SHIFT] * PLM_UCD_BLOCK + (cp & (PLM_UCD_BLOCK - 1))];
    /* Every non-ASCII White_Space code point is a separator or U+0085 (a control). */
    if ((f & (PLM_UCAT_SEPARATOR | PLM_UCAT_CONTROL)) && is_white_space(cp)) f |= PLM_UCAT_SPACE;
    return f;
}

const char *plm_unicode_version(void) { return PLM_UNICODE_VERSION; }

/* The 188 printable bytes (0x21..0x7E, 0xA1..0xAC, 0xAE..0xFF) stand for
 * themselves; the other 68, in byte order, become U+0100..U+0143. */
uint32_t plm_byte_to_cp(uint8_t b) {
    if (b <= 0x20) return 0x100u + b;
    if (b >= 0x7F && b <= 0xA0) return 0x121u + (uint32_t)(b - 0x7F);
    if (b == 0xAD) return 0x143u;
    return b;
}

int plm_cp_to_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return (int)cp;
    if (cp >= 0x100 && cp <= 0x120) return (int)(cp - 0x100);
    if (cp >= 0x121 && cp <= 0x142) return (int)(cp - 0x121 + 0x7F);
    if (cp == 0x143) return 0xAD;
    return -1;
}
