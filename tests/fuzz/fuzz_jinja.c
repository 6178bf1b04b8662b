/*
 * fuzz_jinja.c — libFuzzer harness for the chat-template interpreter
 * (plm_chat_template_render): templates come from model files, so any bytes
 * must give either a rendering or a status with a message, never a crash, a
 * leak or runaway time or memory. The input is a template, optionally followed
 * by a NUL byte and the variables as JSON; without one, a conversation with a
 * system prompt, two turns and a tool is used.
 */
#include "pocketlm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char VARS[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi \\u00e9\"},"
    " {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\","
    " \"arguments\": {\"x\": 1}}}]}, {\"role\": \"tool\", \"content\": \"42\"}, {\"role\": \"user\", \"content\": \"ok\"}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\"}}}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"enable_thinking\": false}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *tmpl = (const char *)data, *vars = VARS;
    size_t tlen = size, vlen = sizeof VARS - 1;
    const uint8_t *nul = memchr(data, 0, size);
    if (nul) {
        tlen = (size_t)(nul - data);
        vars = (const char *)nul + 1;
        vlen = size - tlen - 1;
    }
    char *out = (char *)1;
    size_t len = 7;
    plm_status st = plm_chat_template_render(tmpl, tlen, vars, vlen, &out, &len);
    if (st == PLM_OK) {
        if (!out || out[len] != 0) abort();
    } else {
        if (out != NULL || len != 0) abort();
        if (!plm_last_error()[0]) abort(); /* every failure says what was wrong */
    }
    plm_free(out);
    return 0;
}
