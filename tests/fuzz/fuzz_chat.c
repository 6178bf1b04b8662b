/*
 * fuzz_chat.c — libFuzzer harness for chat-template detection and rendering
 * (csrc/chat.c) on arbitrary bytes.
 *
 * Input: one flags byte, then segments separated by 0xFF (a byte that never
 * occurs in UTF-8, so no valid text is cut):
 *   flags  bit 0: add_generation_prompt; bit 1: render in the detected format,
 *          else in family (flags >> 2) & 7 (4..7 are not families: an error),
 *          with the template segment as default system message if bit 5.
 *   segment 0: a chat template; segments 1..: messages, each a role byte
 *          (r % 4: 0 system, 1 user, 2 assistant, 3 a role of its own: the
 *          bytes up to the first NUL) and the content.
 * Checks: detection succeeds exactly when the template is valid UTF-8, with a
 * family in range and a default system message inside the template; rendering
 * succeeds exactly when every role is known and all text is valid UTF-8 (judged
 * here independently), gives valid UTF-8 of the same size whether asked first
 * or not, reports PLM_ERR_BUFFER for a buffer one byte short (which ASan sees
 * if it is written past), and for ChatML and Phi-3 (which copy contents
 * verbatim) has exactly the length the turns add up to.
 */
#include "pocketlm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSGS 64

static int valid_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k = c < 0x80 ? 1 : (c >= 0xC2 && c < 0xE0) ? 2 : (c >= 0xE0 && c < 0xF0) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (!k || i + k > n) return 0;
        for (size_t j = 1; j < k; j++) if ((s[i + j] & 0xC0) != 0x80) return 0;
        if (k == 3 && ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0))) return 0;
        if (k == 4 && ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90))) return 0;
        i += k;
    }
    return 1;
}

static int known_role(const char *r, size_t n) {
    return (n == 6 && !memcmp(r, "system", 6)) || (n == 4 && !memcmp(r, "user", 4)) ||
           (n == 9 && !memcmp(r, "assistant", 9));
}

/* Length of a ChatML or Phi-3 rendering, which copy roles and contents as given. */
static size_t verbatim_length(plm_chat_family fam, const plm_chat_format *f, const plm_chat_message *m, int32_t n,
                              int gen) {
    size_t per = fam == PLM_CHAT_CHATML ? strlen("<|im_start|>\n<|im_end|>\n") : strlen("<||>\n<|end|>\n");
    size_t len = 0;
    if (f->default_system && (n == 0 || !(m[0].role_len == 6 && !memcmp(m[0].role, "system", 6))))
        len += per + 6 + f->default_system_len;
    for (int32_t i = 0; i < n; i++) len += per + m[i].role_len + m[i].content_len;
    if (gen) len += fam == PLM_CHAT_CHATML ? strlen("<|im_start|>assistant\n") : strlen("<|assistant|>\n");
    return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const uint8_t flags = data[0];
    const char *p = (const char *)data + 1, *end = (const char *)data + size;

    /* segments */
    const char *seg[MAX_MSGS + 1];
    size_t seg_len[MAX_MSGS + 1];
    int n_seg = 0;
    while (n_seg < MAX_MSGS + 1) {
        const char *sep = memchr(p, 0xFF, (size_t)(end - p));
        seg[n_seg] = p;
        seg_len[n_seg] = (size_t)((sep ? sep : end) - p);
        n_seg++;
        if (!sep) break;
        p = sep + 1;
    }

    /* detection */
    plm_chat_format det;
    plm_status st = plm_chat_detect(seg[0], seg_len[0], &det);
    int tmpl_ok = valid_utf8((const uint8_t *)seg[0], seg_len[0]);
    if (st != (tmpl_ok ? PLM_OK : PLM_ERR_ARG)) abort();
    if ((int)det.family < 0 || (int)det.family >= PLM_CHAT_N_FAMILIES) abort();
    if (!plm_chat_family_name(det.family) || !plm_chat_stop(det.family, 0)) abort();
    if (det.default_system) {
        if (det.default_system < seg[0] || det.default_system_len > seg_len[0] ||
            det.default_system + det.default_system_len > seg[0] + seg_len[0])
            abort();
        if (!valid_utf8((const uint8_t *)det.default_system, det.default_system_len)) abort();
        if (det.family != PLM_CHAT_CHATML) abort();
    }
    plm_chat_family named;
    if (plm_chat_family_from_name(seg[0], seg_len[0], &named) == PLM_OK && strlen(plm_chat_family_name(named)) != seg_len[0])
        abort();
    if (plm_chat_stop((plm_chat_family)(flags >> 2), 0) && (flags >> 2) >= PLM_CHAT_N_FAMILIES) abort();
    if (plm_chat_stop(det.family, (int32_t)flags - 128) && flags != 128) abort(); /* one marker per family */

    /* messages */
    plm_chat_message msgs[MAX_MSGS];
    int32_t n = 0;
    int expect_ok = 1;
    static const char *const roles[] = {"system", "user", "assistant"};
    for (int i = 1; i < n_seg; i++) {
        plm_chat_message *m = &msgs[n++];
        const char *s = seg[i];
        size_t k = seg_len[i];
        uint8_t r = k ? (uint8_t)s[0] : 1;
        if (k) s++, k--;
        if (r % 4 < 3) {
            *m = (plm_chat_message){roles[r % 4], strlen(roles[r % 4]), s, k};
        } else {
            const char *nul = memchr(s, 0, k);
            size_t rl = nul ? (size_t)(nul - s) : k;
            *m = (plm_chat_message){s, rl, nul ? nul + 1 : s + k, nul ? k - rl - 1 : 0};
        }
        expect_ok &= known_role(m->role, m->role_len) && valid_utf8((const uint8_t *)m->content, m->content_len);
    }

    plm_chat_format fmt = det;
    if (!(flags & 2)) {
        fmt.family = (plm_chat_family)((flags >> 2) & 7);
        fmt.default_system = (flags & 32) ? seg[0] : NULL;
        fmt.default_system_len = (flags & 32) ? seg_len[0] : 0;
        expect_ok &= (int)fmt.family < PLM_CHAT_N_FAMILIES;
        if (fmt.default_system) expect_ok &= tmpl_ok;
    }
    const int gen = flags & 1;

    /* rendering: ask the size, render into exactly that much, then one byte short */
    size_t need = 0;
    st = plm_chat_render(&fmt, msgs, n, gen, NULL, 0, &need);
    if (!expect_ok) {
        if (st != PLM_ERR_ARG || need != 0) abort();
        return 0;
    }
    if (st != (need ? PLM_ERR_BUFFER : PLM_OK)) abort();
    char *buf = malloc(need ? need : 1);
    size_t got = 0;
    if (plm_chat_render(&fmt, msgs, n, gen, buf, need, &got) != PLM_OK || got != need) abort();
    if (!valid_utf8((const uint8_t *)buf, got)) abort();
    if ((fmt.family == PLM_CHAT_CHATML || fmt.family == PLM_CHAT_PHI3) &&
        got != verbatim_length(fmt.family, &fmt, msgs, n, gen))
        abort();
    if (need > 0) {
        char *shortbuf = malloc(need - 1 ? need - 1 : 1);
        size_t n2 = 0;
        if (plm_chat_render(&fmt, msgs, n, gen, shortbuf, need - 1, &n2) != PLM_ERR_BUFFER || n2 != need) abort();
        free(shortbuf);
    }
    free(buf);
    return 0;
}
