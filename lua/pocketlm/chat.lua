--- pocketlm.chat — turning a list of messages into the prompt text a model was trained on.
--
-- GGUF files store a Jinja chat template. Rather than run Jinja, pocketlm
-- recognizes the family of the stored template by its markers and renders that
-- family's format in its C core (csrc/chat.c, shared with the Python package);
-- this module is a thin layer over it:
--
--   chatml  <|im_start|>              <|im_start|>user\nHi<|im_end|>\n
--   llama3  <|start_header_id|>       <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>
--   gemma   <start_of_turn>           <start_of_turn>user\nHi<end_of_turn>\n
--   phi3    <|user|> and <|end|>      <|user|>\nHi<|end|>\n
--
-- A template that matches none is rendered as ChatML. Llama 3 and Gemma strip
-- the whitespace around each message, as their templates do; Gemma has no
-- system role, so a leading system message opens the first user turn. The BOS
-- token is not part of the text: tokenization adds it when the model asks for
-- it. A ChatML template that writes a default system message when the
-- conversation has none (as SmolLM2's does) gets the same default here.
--
-- Roles are "system", "user" and "assistant"; another role, or content that is
-- not valid UTF-8, is an error naming the message ("PLM_ERR_ARG: message 2: ...").
-- Contents may hold any UTF-8 text, NUL bytes included.
--
--   local chat = require "pocketlm.chat"
--   local fmt = chat.detect(template)
--   local prompt = fmt:render({{role = "user", content = "Hi"}})

local core = require "pocketlm.core"

local M = {}

local function normalize(messages)
    if type(messages) == "string" then return {"user", messages} end
    if type(messages) ~= "table" then
        error("messages must be a string or a list of {role = ..., content = ...}, got " .. type(messages), 0)
    end
    local flat = {}
    for i, m in ipairs(messages) do
        if type(m) ~= "table" then error(("message %d is a %s, not a table"):format(i, type(m)), 0) end
        if type(m.role) ~= "string" or type(m.content) ~= "string" then
            error(("message %d: role and content must be strings"):format(i), 0)
        end
        flat[2 * i - 1], flat[2 * i] = m.role, m.content
    end
    return flat
end

--- The names of the known formats.
M.names = {}
local families, stops = {}, {}
for f = 0, core.CHAT_N_FAMILIES - 1 do
    local name = core.chat_family_name(f)
    M.names[#M.names + 1], families[name] = name, f
    -- End-of-turn markers, used as stop strings in case the vocabulary does not
    -- mark them as end-of-generation tokens.
    local list = {}
    while true do
        local s = core.chat_stop(f, #list)
        if s == nil then break end
        list[#list + 1] = s
    end
    stops[name] = list
end

local Format = {}
Format.__index = Format

--- fmt:render(messages [, add_generation_prompt = true]) -> prompt text.
-- messages: a list of {role = "system" | "user" | "assistant", content = "..."}, or a string (one user message).
function Format:render(messages, add_generation_prompt)
    local flat = normalize(messages)
    local ds = self.default_system
    local ok, text = pcall(core.chat_render, families[self.name], ds or "", ds ~= nil, flat,
        add_generation_prompt ~= false)
    if ok then return text end
    -- The C library counts messages from 0; Lua lists start at 1.
    error((tostring(text):gsub("^(PLM_ERR_%u+: message )(%d+)", function(head, i)
        return head .. (tonumber(i) + 1)
    end)), 0)
end

function Format:__tostring() return "pocketlm.chat format " .. self.name end

--- The format named name ("chatml", "llama3", "gemma", "phi3"), with no default system message.
function M.format(name, default_system)
    if families[name] == nil then
        error(("unknown chat format %q; known: %s"):format(tostring(name), table.concat(M.names, ", ")), 2)
    end
    return setmetatable({name = name, stop = stops[name], default_system = default_system}, Format)
end

--- The format of a stored chat template, recognized by its markers (ChatML when none match).
function M.detect(template)
    local family, default_system = core.chat_detect(template or "")
    return M.format(core.chat_family_name(family), default_system)
end

return M
