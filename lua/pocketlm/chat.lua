--- pocketlm.chat — turning a list of messages into the prompt text a model was trained on.
--
-- GGUF files store a Jinja chat template. m:apply_chat_template and m:chat run
-- it with pocketlm's Jinja interpreter in C (plm_chat_apply, shared with the
-- Python package; M.apply below): messages may carry tool_calls and the role
-- "tool", and tools and chat_template_kwargs (enable_thinking, ...) reach the
-- template. A template the interpreter cannot render is an error naming the
-- construct and its line, never a different prompt. A file without a template
-- is rendered as ChatML; a caller may name a family instead.
--
-- This module also holds those families, rendered by the C core directly and
-- recognized in a template by their markers (which gives a chat its stop
-- strings):
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

-- ------------------------------------------------------------------ JSON

--- A value that encodes as JSON null (Lua's nil cannot sit in a table).
M.null = setmetatable({}, {__tostring = function() return "pocketlm.chat.null" end})

local ESCAPES = {['"'] = '\\"', ["\\"] = "\\\\"}
local function quote(s)
    return '"' .. s:gsub('[%c"\\]', function(c)
        return ESCAPES[c] or ("\\u%04x"):format(c:byte())
    end) .. '"'
end

local function is_integer(v)
    if math.type then return math.type(v) == "integer" end
    return v == math.floor(v) and math.abs(v) < 2 ^ 53 -- LuaJIT: numbers are doubles
end

-- Lua values as JSON: strings (bytes; C checks they are UTF-8), numbers, booleans, M.null, and tables: a
-- sequence 1..n is an array (an empty table too), other tables objects with string keys.
local function encode(v, out, what, depth)
    local t = type(v)
    if t == "string" then
        out[#out + 1] = quote(v)
    elseif t == "number" then
        if v ~= v or v == math.huge or v == -math.huge then error(("%s: %s is not a JSON number"):format(what, tostring(v)), 0) end
        if is_integer(v) then
            out[#out + 1] = ("%d"):format(v)
        else
            local s = ("%.17g"):format(v)
            out[#out + 1] = s:find("[.eE]") and s or s .. ".0"
        end
    elseif t == "boolean" then
        out[#out + 1] = tostring(v)
    elseif v == M.null then
        out[#out + 1] = "null"
    elseif t == "table" then
        if depth > 100 then error(what .. ": nested too deeply (a cycle?)", 0) end
        local n, count = #v, 0
        for _ in pairs(v) do count = count + 1 end
        if count == n then
            out[#out + 1] = "["
            for i = 1, n do
                if i > 1 then out[#out + 1] = ", " end
                encode(v[i], out, what, depth + 1)
            end
            out[#out + 1] = "]"
        else
            local keys = {}
            for k in pairs(v) do
                if type(k) ~= "string" then
                    error(("%s: a table mixes a list and %s keys (JSON objects have string keys)"):format(what, type(k)), 0)
                end
                keys[#keys + 1] = k
            end
            table.sort(keys)
            out[#out + 1] = "{"
            for i, k in ipairs(keys) do
                if i > 1 then out[#out + 1] = ", " end
                out[#out + 1] = quote(k) .. ": "
                encode(v[k], out, what, depth + 1)
            end
            out[#out + 1] = "}"
        end
    else
        error(("%s: a %s is not JSON"):format(what, t), 0)
    end
end

--- chat.json(value) -> JSON text of a Lua value (tables: a sequence is a list, an empty table too; otherwise an
-- object with string keys, written in key order; chat.null is null).
function M.json(v, what)
    local out = {}
    encode(v, out, what or "value", 0)
    return table.concat(out)
end

-- The messages as the JSON array plm_chat_apply takes (a string is one user message).
local function messages_json(messages)
    if type(messages) == "string" then messages = {{role = "user", content = messages}} end
    if type(messages) ~= "table" then
        error("messages must be a string or a list of {role = ..., content = ...}, got " .. type(messages), 0)
    end
    for i, m in ipairs(messages) do
        if type(m) ~= "table" then error(("message %d is a %s, not a table"):format(i, type(m)), 0) end
        local c = m.content
        if type(m.role) ~= "string" or not (type(c) == "string" or type(c) == "table" or
                (c == nil and m.tool_calls ~= nil)) then
            error(("message %d: role and content must be strings (content may be a list of parts, or nil beside " ..
                "tool_calls)"):format(i), 0)
        end
    end
    return M.json(messages, "messages")
end

-- The template variables beyond messages, add_generation_prompt, bos_token and eos_token (JSON text or nil):
-- tools (a list, or JSON text) and chat_template_kwargs (a table of variables).
local function vars_json(tools, kwargs)
    local parts = {}
    if tools ~= nil then
        parts[1] = '"tools": ' .. (type(tools) == "string" and tools or M.json(tools, "tools"))
    end
    if kwargs ~= nil then
        if type(kwargs) ~= "table" then error("chat_template_kwargs must be a table, got " .. type(kwargs), 0) end
        if next(kwargs) ~= nil then
            local obj = M.json(kwargs, "chat_template_kwargs")
            if obj:sub(1, 1) ~= "{" then error("chat_template_kwargs must be a table with string keys", 0) end
            parts[#parts + 1] = obj:sub(2, -2)
        end
    end
    return #parts > 0 and "{" .. table.concat(parts, ", ") .. "}" or nil
end

-- What renders instead of the model's template: a family name, or Jinja source (second value true).
local function override(opts)
    if opts.template ~= nil and opts.chat_template ~= nil then
        error("give template (a chat format's name) or chat_template (Jinja source), not both", 0)
    end
    if opts.template ~= nil then
        if families[opts.template] == nil then
            error(("unknown chat format %s; known: %s"):format(type(opts.template) == "string" and ("%q"):format(opts.template)
                or tostring(opts.template), table.concat(M.names, ", ")), 0)
        end
        return opts.template, false
    end
    if opts.chat_template ~= nil and type(opts.chat_template) ~= "string" then
        error("chat_template must be a string (Jinja source), got " .. type(opts.chat_template), 0)
    end
    return opts.chat_template, opts.chat_template ~= nil
end

--- chat.apply(h, messages, opts) -> prompt, stop strings: the chat of a model handle rendered by its own template
-- (plm_chat_apply). opts: add_generation_prompt (true), template (a family name instead), chat_template (Jinja
-- source instead), tools, chat_template_kwargs. Used by m:apply_chat_template.
function M.apply(h, messages, opts)
    local over, is_template = override(opts)
    local msgs, vars = messages_json(messages), vars_json(opts.tools, opts.chat_template_kwargs)
    local gen = opts.add_generation_prompt
    if gen == nil then gen = true end
    local ok, text = pcall(core.chat_apply, h, msgs, vars, over, is_template, gen)
    if not ok then
        -- The C library counts messages from 0; Lua lists start at 1.
        error((tostring(text):gsub("^(PLM_ERR_%u+: message )(%d+)", function(head, i)
            return head .. (tonumber(i) + 1)
        end)), 0)
    end
    local list = {}
    while true do
        local s = core.chat_model_stop(h, over, is_template, #list)
        if s == nil then break end
        list[#list + 1] = s
    end
    return text, list
end

--- The format of a stored chat template, recognized by its markers (ChatML when none match).
function M.detect(template)
    local family, default_system = core.chat_detect(template or "")
    return M.format(core.chat_family_name(family), default_system)
end

return M
