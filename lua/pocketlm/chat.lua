--- pocketlm.chat — turning a list of messages into the prompt text a model was trained on.
--
-- GGUF files store a Jinja chat template. Rather than run Jinja, pocketlm
-- recognizes the family of the stored template by its markers and renders that
-- family's format (the same four as the Python package's pocketlm/chat.py):
--
--   chatml  <|im_start|>              <|im_start|>user\nHi<|im_end|>\n
--   llama3  <|start_header_id|>       <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>
--   gemma   <start_of_turn>           <start_of_turn>user\nHi<end_of_turn>\n
--   phi3    <|user|> and <|end|>      <|user|>\nHi<|end|>\n
--
-- A template that matches none is rendered as ChatML. The BOS token is not part
-- of the text: tokenization adds it when the model asks for it. A ChatML
-- template that writes a default system message when the conversation has none
-- (as SmolLM2's does) gets the same default here.
--
--   local chat = require "pocketlm.chat"
--   local fmt = chat.detect(template)
--   local prompt = fmt:render({{role = "user", content = "Hi"}})

local M = {}

local function normalize(messages)
    if type(messages) == "string" then return {{"user", messages}} end
    if type(messages) ~= "table" then
        error("messages must be a string or a list of {role = ..., content = ...}, got " .. type(messages), 0)
    end
    local out = {}
    for i, m in ipairs(messages) do
        if type(m) ~= "table" then error(("message %d is a %s, not a table"):format(i, type(m)), 0) end
        if type(m.role) ~= "string" or type(m.content) ~= "string" then
            error(("message %d: role and content must be strings"):format(i), 0)
        end
        out[i] = {m.role, m.content}
    end
    return out
end

local function strip(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local renderers = {}

function renderers.chatml(msgs, gen)
    local parts = {}
    for i, m in ipairs(msgs) do parts[i] = "<|im_start|>" .. m[1] .. "\n" .. m[2] .. "<|im_end|>\n" end
    return table.concat(parts) .. (gen and "<|im_start|>assistant\n" or "")
end

function renderers.llama3(msgs, gen)
    local parts = {}
    for i, m in ipairs(msgs) do
        parts[i] = "<|start_header_id|>" .. m[1] .. "<|end_header_id|>\n\n" .. strip(m[2]) .. "<|eot_id|>"
    end
    return table.concat(parts) .. (gen and "<|start_header_id|>assistant<|end_header_id|>\n\n" or "")
end

-- Gemma has no system role: a system message goes at the start of the first user turn.
function renderers.gemma(msgs, gen)
    local prefix, first = "", 1
    if msgs[1] and msgs[1][1] == "system" then
        prefix, first = strip(msgs[1][2]) .. "\n\n", 2
    end
    local parts = {}
    for i = first, #msgs do
        local role = msgs[i][1] == "assistant" and "model" or msgs[i][1]
        parts[#parts + 1] = "<start_of_turn>" .. role .. "\n" .. prefix .. strip(msgs[i][2]) .. "<end_of_turn>\n"
        prefix = ""
    end
    if prefix ~= "" then -- a system message and no turn to attach it to
        parts[#parts + 1] = "<start_of_turn>user\n" .. prefix:gsub("%s+$", "") .. "<end_of_turn>\n"
    end
    return table.concat(parts) .. (gen and "<start_of_turn>model\n" or "")
end

function renderers.phi3(msgs, gen)
    local parts = {}
    for i, m in ipairs(msgs) do parts[i] = "<|" .. m[1] .. "|>\n" .. m[2] .. "<|end|>\n" end
    return table.concat(parts) .. (gen and "<|assistant|>\n" or "")
end

-- End-of-turn markers, used as stop strings in case the vocabulary does not
-- mark them as end-of-generation tokens.
local stops = {
    chatml = {"<|im_end|>"}, llama3 = {"<|eot_id|>"}, gemma = {"<end_of_turn>"}, phi3 = {"<|end|>"},
}

--- The names of the known formats.
M.names = {"chatml", "llama3", "gemma", "phi3"}

local Format = {}
Format.__index = Format

--- fmt:render(messages [, add_generation_prompt = true]) -> prompt text.
-- messages: a list of {role = "system" | "user" | "assistant", content = "..."}, or a string (one user message).
function Format:render(messages, add_generation_prompt)
    local msgs = normalize(messages)
    if self.default_system and (not msgs[1] or msgs[1][1] ~= "system") then
        table.insert(msgs, 1, {"system", self.default_system})
    end
    return renderers[self.name](msgs, add_generation_prompt ~= false)
end

function Format:__tostring() return "pocketlm.chat format " .. self.name end

--- The format named name ("chatml", "llama3", "gemma", "phi3"), with no default system message.
function M.format(name, default_system)
    if not renderers[name] then
        error(("unknown chat format %q; known: chatml, llama3, gemma, phi3"):format(tostring(name)), 2)
    end
    return setmetatable({name = name, stop = stops[name], default_system = default_system}, Format)
end

--- The format of a stored chat template, recognized by its markers (ChatML when none match).
function M.detect(template)
    local t = template or ""
    local function has(s) return t:find(s, 1, true) ~= nil end
    if has("<|start_header_id|>") then return M.format("llama3") end
    if has("<start_of_turn>") then return M.format("gemma") end
    if has("<|user|>") and has("<|end|>") then return M.format("phi3") end
    local default_system
    if has("<|im_start|>") and t:gsub('"', "'"):find("messages[0]['role'] != 'system'", 1, true) then
        default_system = t:match("<|im_start|>system%s*\n(.-)<|im_end|>")
    end
    return M.format("chatml", default_system)
end

return M
