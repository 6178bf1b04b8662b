--- pocketlm — small language models on the CPU, in-process, from GGUF files.
--
--   local plm = require "pocketlm"
--   local m <close> = plm.load(nil, {n_threads = 2})      -- nil: the default model (SmolLM2-135M-Instruct Q4_1)
--   print(m:generate("The capital of France is", {max_tokens = 16, temperature = 0}))
--   for piece in m:stream("Once upon a time", {max_tokens = 32}) do io.write(piece) end
--   print(m:chat({{role = "user", content = "Say hello to a traveller."}}, {max_tokens = 32}))
--
--   -- a game frame: a fixed budget of tokens, never a whole generation
--   local g = m:start_chat({{role = "user", content = "Who are you?"}}, {max_tokens = 48})
--   local text, done = g:step(2)                             -- at most 2 tokens decoded
--
-- This file is the idiomatic API over pocketlm.core, the SWIG module built from
-- bindings/pocketlm.i and bindings/lua.i (see there for how values cross).
-- Options are tables; integer options must be integers (2.7 is an error);
-- errors are raised with error(), with the C library's message for C failures
-- ("PLM_ERR_IO: ..."). Models, contexts and generators are freed by close()
-- (or a Lua 5.4 <close> variable) at once, or by the garbage collector.
--
-- The same file runs on Lua 5.4 and on LuaJIT 2.1 (the Lua 5.1 API: LÖVE,
-- Defold), so it uses no 5.4-only syntax. On LuaJIT numbers are doubles: an
-- integer option is a number with an integer value within +-2^53.
--
-- Logits, tokens and embeddings are pocketlm.view userdata: #v, v[i] (1-based;
-- nil past the end, so ipairs works), v[i] = x where writable, v:totable(),
-- v:slice(i, j), v:bytes(). They show C memory without copying and keep its
-- owner alive.

local core = require "pocketlm.core"
local chat = require "pocketlm.chat"

-- Lua 5.4 has integers; LuaJIT's numbers are doubles, exact as integers up to 2^53.
local tointeger = math.tointeger or function(v)
    if type(v) == "number" and v == math.floor(v) and v >= -2 ^ 53 and v <= 2 ^ 53 then return v end
    return nil
end
local MAXINT = math.maxinteger or 2 ^ 53
local unpack = table.unpack or unpack
local function pack(...) return {n = select("#", ...), ...} end

local M = {
    _VERSION = "pocketlm " .. core.version(),
    version = core.version(),
    --- Name of the kernel set chosen for this CPU ("avx2", "scalar").
    kernels = core.kernels_name(),
    --- Seconds of a monotonic wall clock (os.clock is CPU time): for frame budgets.
    clock = core.clock,
    chat = chat,
    --- A writable view of n zeroed items (or a table's items): type "float32", "int32" or "byte".
    view = core.view_new,
}

-- -------------------------------------------------------------------- errors

local SOURCE = debug.getinfo(1, "S").source

-- Raises msg at the first caller outside this module, so the position points at the user's code.
local function fail(msg)
    local level = 2
    while true do
        local info = debug.getinfo(level, "S")
        if not info then
            level = 0
            break
        end
        if info.source ~= SOURCE and info.what ~= "C" then break end
        level = level + 1
    end
    error(msg, level)
end

-- Returns f()'s results after closing obj, or closes obj and passes f's error on (what a Lua 5.4 <close>
-- variable does, written for LuaJIT too).
local function closing(obj, f)
    local res = pack(pcall(f))
    obj:close()
    if not res[1] then error(res[2], 0) end
    return unpack(res, 2, res.n)
end

-- A fresh sampler seed. Lua 5.4 seeds math.random randomly at start-up; LuaJIT's starts from the same
-- state in every process, so the clock's nanoseconds are mixed in (53 bits).
local seed_count = 0
local function fresh_seed()
    if math.mininteger then return math.random(math.mininteger, math.maxinteger) end
    seed_count = seed_count + 1
    local ns = math.floor((core.clock() * 1e9) % 2 ^ 31)
    return (math.random(0, 2 ^ 22 - 1) * 2 ^ 31 + (ns + seed_count * 7919) % 2 ^ 31)
end

local function describe(v)
    if type(v) == "string" then return ("%q"):format(v) end
    return tostring(v)
end

local function check_keys(opts, allowed, what)
    if opts == nil then return {} end
    if type(opts) ~= "table" then fail(("%s: options must be a table, got %s"):format(what, type(opts))) end
    for k in pairs(opts) do
        if not allowed[k] then fail(("%s: unknown option %s"):format(what, describe(k))) end
    end
    return opts
end

local function keyset(...)
    local s = {}
    for _, list in ipairs({...}) do
        for _, k in ipairs(list) do s[k] = true end
    end
    return s
end

-- An integer (or a float with an integer value, as Lua's own library takes them) in [lo, hi].
local function to_int(v, name, lo, hi)
    local i = type(v) == "number" and tointeger(v)
    if not i then fail(("%s must be an integer, got %s"):format(name, describe(v))) end
    if (lo and i < lo) or (hi and i > hi) then
        fail(("%s must be in [%s, %s], got %d"):format(name, lo or "-inf", hi or "inf", i))
    end
    return i
end

local INT32_MAX = 0x7fffffff

local function opt_int(opts, key, default, lo, hi)
    local v = opts[key]
    if v == nil then return default end
    return to_int(v, key, lo, hi)
end

local function opt_num(opts, key, default)
    local v = opts[key]
    if v == nil then return default end
    if type(v) ~= "number" then fail(("%s must be a number, got %s"):format(key, describe(v))) end
    return v
end

local function opt_bool(opts, key, default)
    local v = opts[key]
    if v == nil then return default end
    if type(v) ~= "boolean" then fail(("%s must be true or false, got %s"):format(key, describe(v))) end
    return v
end

local function opt_choice(opts, key, default, choices)
    local v = opts[key]
    if v == nil then v = default end
    local id = choices[v]
    if id == nil then
        local names = {}
        for k in pairs(choices) do names[#names + 1] = ("%q"):format(k) end
        table.sort(names)
        fail(("%s must be one of %s, got %s"):format(key, table.concat(names, ", "), describe(v)))
    end
    return id
end

local function check_text(text, what)
    if type(text) ~= "string" then fail(("%s must be a string, got %s"):format(what, type(text))) end
    return text
end

-- A list of strings from a string, a list, or nil.
local function string_list(v, what)
    if v == nil then return {} end
    if type(v) == "string" then return {v} end
    if type(v) ~= "table" then fail(("%s must be a string or a list of strings, got %s"):format(what, type(v))) end
    local out = {}
    for i, s in ipairs(v) do
        if type(s) ~= "string" then fail(("%s[%d] must be a string, got %s"):format(what, i, type(s))) end
        out[i] = s
    end
    return out
end

-- --------------------------------------------------------------- parameters

local SAMPLING_KEYS = {"temperature", "top_k", "top_p", "min_p", "repeat_penalty", "frequency_penalty",
                       "presence_penalty", "penalty_last_n", "seed", "logit_bias"}
local GENERATE_KEYS = {"max_tokens", "stop", "ignore_eos", "add_special", "parse_special", "seq_id",
                       "json_schema", "grammar", "regex", "choices"}
local GEN_ALLOWED = keyset(SAMPLING_KEYS, GENERATE_KEYS)
local CHAT_TEMPLATE_KEYS = {"template", "chat_template", "tools", "chat_template_kwargs"}
local CHAT_TEMPLATE_SET = keyset(CHAT_TEMPLATE_KEYS)
local CHAT_ALLOWED = keyset(SAMPLING_KEYS, GENERATE_KEYS, {"stream"}, CHAT_TEMPLATE_KEYS)

-- The constraint an options table asks for (json_schema: JSON text; grammar: GBNF text; regex: a pattern;
-- choices: a list of strings; at most one of them), compiled in C, or nil.
local function constraint(opts)
    local given, grammar = nil, nil
    for _, key in ipairs({"json_schema", "grammar", "regex", "choices"}) do
        local v = opts[key]
        if v ~= nil then
            if given then fail(("give one of json_schema, grammar, regex and choices, not both %s and %s"):format(given, key)) end
            given = key
            if key == "choices" then
                local list = string_list(v, "choices")
                if #list == 0 then fail("choices must list at least one string") end
                grammar = core.grammar_from_choices(list)
            else
                check_text(v, key)
                if key == "json_schema" then grammar = core.grammar_from_json_schema(v)
                elseif key == "grammar" then grammar = core.grammar_parse(v, "root")
                else grammar = core.grammar_from_regex(v) end
            end
        end
    end
    return grammar
end
M.compile_constraint = constraint

-- Fills the C generation parameters from an options table (the C defaults for what is absent). The
-- grammar, when one is asked for, must stay referenced until the C generator is created.
local function generate_params(opts, n_seq_max)
    local gp = core.generate_default_params()
    gp.max_tokens = opt_int(opts, "max_tokens", 256, -INT32_MAX - 1, INT32_MAX)   -- <= 0: until the context is full
    gp.ignore_eos = opt_bool(opts, "ignore_eos", false)
    gp.add_special = opt_bool(opts, "add_special", true)
    gp.parse_special = opt_bool(opts, "parse_special", true)
    gp.seq_id = opt_int(opts, "seq_id", 0, 0, n_seq_max - 1)
    gp.keep_cache = true
    local s = gp.sampling
    s.temperature = opt_num(opts, "temperature", s.temperature)
    s.top_k = opt_int(opts, "top_k", s.top_k, -INT32_MAX, INT32_MAX)
    s.top_p = opt_num(opts, "top_p", s.top_p)
    s.min_p = opt_num(opts, "min_p", s.min_p)
    s.repeat_penalty = opt_num(opts, "repeat_penalty", s.repeat_penalty)
    s.frequency_penalty = opt_num(opts, "frequency_penalty", s.frequency_penalty)
    s.presence_penalty = opt_num(opts, "presence_penalty", s.presence_penalty)
    s.penalty_last_n = opt_int(opts, "penalty_last_n", s.penalty_last_n, -1, INT32_MAX)
    s.seed = opt_int(opts, "seed", nil) or fresh_seed()
    local bias = opts.logit_bias
    if bias ~= nil and type(bias) ~= "table" then
        fail(("logit_bias must be a table {[token] = bias}, got %s"):format(type(bias)))
    end
    local grammar = constraint(opts)
    if grammar then core.generate_params_set_grammar(gp, grammar) end
    return gp, string_list(opts.stop, "stop"), bias, grammar
end

local STOP_REASONS = {"length", "eog", "stop", "caller", "context_full"}

-- ---------------------------------------------------------------- Generator

--- A generation in progress: made by start() (step-wise) or stream().
local Generator = {}
Generator.__index = Generator
M.Generator = Generator

local function new_generator(ctx, tokens, gp, stop, bias)
    return setmetatable({
        ctx = ctx,            -- the Context it runs on
        done = false,
        reason = nil,         -- why it ended: "length", "eog", "stop", "context_full", "cancelled", "error"
        n_prompt = #tokens,   -- prompt tokens
        n_generated = 0,      -- tokens generated so far
        _tokens = tokens,
        _keep = 0,            -- prompt tokens already in the cache
        _gp = gp,
        _stop = stop,
        _bias = bias,
        _parts = {},
    }, Generator)
end

-- Ends the generation: frees the C generator (keeping its tokens) and releases the context.
function Generator:_finish(reason)
    if self.done then return end
    self.done = true
    self.reason = reason
    if self._h then
        if not core.is_closed(self._h) and not core.is_closed(self.ctx._h) then
            self._generated = core.generator_tokens(self._h)
        end
        core.close(self._h)
        self._h = nil
    end
    if self.ctx._active[1] == self then self.ctx._active[1] = nil end
end

-- Runs f(...) and, if it raises, ends the generation before passing the error on.
function Generator:_guard(f, ...)
    local ok, a, b = pcall(f, self, ...)
    if not ok then
        self:_finish("error")
        error(a, 0)
    end
    return a, b
end

-- Evaluates up to budget prompt tokens (the last one by creating the C
-- generator, which needs its logits); returns the budget left.
function Generator:_prefill(budget)
    local ctx_h, tokens, seq = self.ctx._h, self._tokens, self._gp.seq_id
    while budget > 0 and not self._h do
        local rest = #tokens - self._keep
        if rest > 1 then
            local k = math.min(budget, rest - 1)
            core.decode(ctx_h, tokens:slice(self._keep + 1, self._keep + k), seq, false)
            self._keep = self._keep + k
            budget = budget - k
        else
            self._h = core.generator_create(ctx_h, tokens, self._gp, self._stop, self._bias)
            self._keep = #tokens
            budget = budget - 1
        end
    end
    return budget
end

-- One token: the next piece of text (possibly "") and whether it ended.
function Generator:_next()
    local piece, reason = core.generator_next(self._h)
    -- Every call samples a token, kept unless it ends the turn (and decoded unless generation ends).
    if reason ~= core.STOP_EOG then self.n_generated = self.n_generated + 1 end
    if #piece > 0 then self._parts[#self._parts + 1] = piece end
    if reason ~= 0 then self:_finish(STOP_REASONS[reason] or "stop") end
    return piece
end

local function step(self, n)
    local budget = self:_prefill(n)
    local out = {}
    while budget > 0 and not self.done do
        local piece = self:_next()
        if #piece > 0 then out[#out + 1] = piece end
        budget = budget - 1
    end
    return table.concat(out), n - budget
end

--- g:step([n = 1]) -> text, done, used
-- Decodes at most n tokens (prompt tokens first, batched, then one per
-- generated token) and returns the text that became ready, whether the
-- generation has ended (g.reason says why) and how much of the budget it
-- used. A game spends a fixed budget per frame this way; the prompt is
-- evaluated by the first steps, so start() itself does no model work.
function Generator:step(n)
    n = n == nil and 1 or to_int(n, "step budget", 1, INT32_MAX)
    if self.done then return "", true, 0 end
    local text, used = self:_guard(step, n)
    return text, self.done, used
end

--- g:prompt_pending() -> prompt tokens not evaluated yet (steps evaluate them first).
function Generator:prompt_pending() return self.done and 0 or #self._tokens - self._keep end

--- g:cancel(): ends the generation now (g.reason = "cancelled") and frees it. Idempotent.
function Generator:cancel() self:_finish("cancelled") end

Generator.close = Generator.cancel
Generator.__close = Generator.cancel

--- g:text() -> all the text generated so far.
function Generator:text() return table.concat(self._parts) end

--- g:tokens() -> the generated tokens (an int32 view).
function Generator:tokens()
    if self._h then return core.generator_tokens(self._h) end
    return self._generated or core.view_new("int32", 0)
end

function Generator:__tostring()
    return ("pocketlm.Generator(%d prompt tokens, %d generated, %s)"):format(self.n_prompt, self.n_generated,
        self.done and ("done: " .. self.reason) or "running")
end

-- ------------------------------------------------------------------ Context

--- A KV cache, buffers and threads over a model: generation, decoding, logits.
local Context = {}
Context.__index = Context
M.Context = Context

local CONTEXT_ALLOWED = keyset({"n_ctx", "n_threads", "n_batch", "n_seq_max", "memory_budget", "adapters"})

local function default_threads()
    local env = tonumber(os.getenv("POCKETLM_THREADS") or "")
    return env and tointeger(env) or 0
end

local function new_context(model, opts, what)
    opts = check_keys(opts, CONTEXT_ALLOWED, what)
    local cp = core.context_default_params()
    cp.n_ctx = opt_int(opts, "n_ctx", model.n_ctx or 0, 0, INT32_MAX)
    cp.n_threads = opt_int(opts, "n_threads", model.n_threads or default_threads(), 0, 1024)
    cp.n_batch = opt_int(opts, "n_batch", cp.n_batch, 1, INT32_MAX)
    cp.n_seq_max = opt_int(opts, "n_seq_max", cp.n_seq_max, 1, 64)
    cp.memory_budget = opt_int(opts, "memory_budget", 0, 0, MAXINT)
    local ctx = setmetatable({
        model = model,
        n_seq_max = cp.n_seq_max,
        _h = core.context_create(model:_handle(), cp),
        _active = setmetatable({}, {__mode = "v"}), -- the running generator, if any
    }, Context)
    model._contexts[ctx] = true
    if opts.adapters ~= nil then ctx:set_adapters(opts.adapters) end
    return ctx
end

function Context:_handle()
    if core.is_closed(self._h) then fail("the Context is closed") end
    return self._h
end

-- Checks the context is open and not running a generation.
function Context:_idle()
    local h = self:_handle()
    local g = self._active[1]
    if g and not g.done then
        fail("the context is busy with an unfinished generation: finish it, g:cancel() it, " ..
             "or use another context (m:context())")
    end
    return h
end

function Context:_tokens(prompt, add_special, parse_special, what)
    if type(prompt) == "string" then
        return core.tokenize(self.model:_handle(), prompt, add_special, parse_special)
    elseif type(prompt) == "table" or (type(prompt) == "userdata" and getmetatable(prompt) and
            getmetatable(prompt).__name == "pocketlm.view") then
        return prompt
    end
    fail(("%s must be a string or tokens, got %s"):format(what, type(prompt)))
end

-- A generator claiming this context, with its prompt tokens and parameters.
function Context:_generator(prompt, opts, what, extra_allowed)
    opts = check_keys(opts, extra_allowed or GEN_ALLOWED, what)
    self:_idle()
    local gp, stop, bias, grammar = generate_params(opts, self.n_seq_max)
    local tokens = self:_tokens(prompt, gp.add_special, gp.parse_special, "prompt")
    if type(tokens) == "table" then
        local v = core.view_new("int32", #tokens)
        for i = 1, #tokens do v[i] = to_int(tokens[i], ("prompt token %d"):format(i), -INT32_MAX - 1, INT32_MAX) end
        tokens = v
    end
    if #tokens == 0 then fail("the prompt is empty: nothing to generate from") end
    if #tokens >= core.context_n_ctx(self._h) then
        fail(("PLM_ERR_CONTEXT_FULL: the prompt has %d tokens but the context holds %d"):format(
            #tokens, core.context_n_ctx(self._h)))
    end
    local g = new_generator(self, tokens, gp, stop, bias)
    g._grammar = grammar   -- gp points to it until the C generator takes its own reference
    self._active[1] = g
    return g
end

-- Starts the C generator at once (the whole prompt in one batch).
local function begin(g)
    g:_guard(function(self)
        self._h = core.generator_create(self.ctx._h, self._tokens, self._gp, self._stop, self._bias)
        self._keep = #self._tokens
    end)
    return g
end

--- ctx:start(prompt, opts) -> Generator, for step-wise generation (see Generator:step).
-- prompt: text, or tokens (a table or an int32 view). opts: max_tokens (256; <= 0, -1 say: until the context is
-- full), temperature (0.8; 0 is greedy),
-- top_k (40), top_p (0.95), min_p (0.05), repeat_penalty, frequency_penalty, presence_penalty, penalty_last_n,
-- seed (an integer; default random), stop (a string or list: generation ends before it, never emitting it),
-- logit_bias ({[token] = bias}), ignore_eos, add_special (true), parse_special (true), seq_id (0).
-- Structured output (at most one): json_schema (a JSON Schema as JSON text), grammar (GBNF text), regex (a
-- pattern the whole output matches), choices (a list of strings, one of which is the output); the output is
-- then constrained token by token and ends where the structure is complete (reason "eog"; "length" when
-- max_tokens cut it short). A malformed one raises an error naming line:column.
-- The part of the prompt the cache already holds (a conversation so far) is not evaluated again.
function Context:start(prompt, opts)
    local g = self:_generator(prompt, opts, "start")
    -- Keep the cached prefix of the prompt; the rest is evaluated by steps.
    g:_guard(function()
        local seq = g._gp.seq_id
        local cached = core.kv_seq_tokens(self._h, seq)
        local keep, limit = 0, math.min(#cached, #g._tokens - 1)
        while keep < limit and cached[keep + 1] == g._tokens[keep + 1] do keep = keep + 1 end
        core.kv_seq_rm(self._h, seq, keep, -1)
        g._keep = keep
    end)
    return g
end

--- for piece in ctx:stream(prompt, opts) do ... end — the continuation piece by piece (see start for opts).
-- Breaking out of the loop ends the generation (Lua 5.4 closes the loop's generator).
function Context:stream(prompt, opts)
    local g = begin(self:_generator(prompt, opts, "stream"))
    local function iter()
        while not g.done do
            local piece = g:_guard(g._next)
            if #piece > 0 then return piece end
        end
        return nil
    end
    return iter, nil, nil, g
end

--- ctx:generate(prompt, opts) -> text, reason — the whole continuation (see start for opts).
function Context:generate(prompt, opts)
    local g = begin(self:_generator(prompt, opts, "generate"))
    return closing(g, function()
        while not g.done do g:_guard(g._next) end
        return g:text(), g.reason
    end)
end

--- ctx:chat(messages, opts) -> reply, reason (opts.stream = true: an iterator of pieces instead).
-- messages: a list of {role = "system" | "user" | "assistant" | "tool", content = ..., tool_calls = ...}, or a
-- string (one user turn), rendered by the model's own chat template (see m:apply_chat_template for opts.tools,
-- opts.chat_template_kwargs, opts.chat_template, and opts.template: "chatml", "llama3", "gemma" or "phi3" instead).
function Context:chat(messages, opts)
    opts = check_keys(opts, CHAT_ALLOWED, "chat")
    local prompt, o = self.model:_chat_prompt(messages, opts)
    if opts.stream then return self:stream(prompt, o) end
    return self:generate(prompt, o)
end

--- ctx:start_chat(messages, opts) -> Generator: chat, step-wise.
function Context:start_chat(messages, opts)
    opts = check_keys(opts, CHAT_ALLOWED, "start_chat")
    local prompt, o = self.model:_chat_prompt(messages, opts)
    return self:start(prompt, o)
end

--- ctx:decode(tokens [, {seq_id = 0, logits_all = false}]) — evaluates tokens (a table or an int32 view),
-- continuing sequence seq_id. Logits of the last token (of every token with logits_all) are then in ctx:logits.
function Context:decode(tokens, opts)
    opts = check_keys(opts, keyset({"seq_id", "logits_all"}), "decode")
    local h = self:_idle()
    if type(tokens) == "string" then fail("decode takes tokens, not text: ctx:decode(m:tokenize(text))") end
    core.decode(h, self:_tokens(tokens, true, false, "tokens"), opt_int(opts, "seq_id", 0, 0, self.n_seq_max - 1),
        opt_bool(opts, "logits_all", false))
end

--- ctx:logits([i = -1]) -> a writable float32 view (n_vocab items) of the logits of batch entry i of the last
-- decode (-1: the last entry that has logits). Zero-copy: it reads the context's buffer on each access (so
-- after another decode it shows the new logits), writes go to C, and it keeps the context alive.
function Context:logits(i)
    return core.context_logits(self:_handle(), i == nil and -1 or to_int(i, "logits row", -1, INT32_MAX))
end

function Context:n_ctx() return core.context_n_ctx(self:_handle()) end
function Context:kv_used() return core.kv_used(self:_handle()) end

--- ctx:kv_clear(): empties the cache.
function Context:kv_clear() core.kv_clear(self:_idle()) end

--- ctx:kv_seq_rm(seq, p0 [, p1 = -1]): removes positions [p0, p1) of a sequence (p1 < 0: to the end).
function Context:kv_seq_rm(seq, p0, p1)
    core.kv_seq_rm(self:_idle(), to_int(seq, "seq", -1, 63), to_int(p0, "p0", -1, INT32_MAX),
        p1 == nil and -1 or to_int(p1, "p1", -INT32_MAX, INT32_MAX))
end

--- ctx:kv_seq_tokens([seq = 0]) -> the tokens the cache holds for a sequence, in order (an int32 view).
function Context:kv_seq_tokens(seq)
    return core.kv_seq_tokens(self:_handle(), seq == nil and 0 or to_int(seq, "seq", 0, 63))
end

--- ctx:save_state() -> a string: the KV cache and the last logits, for ctx:load_state.
function Context:save_state()
    local h = self:_idle()
    local buf = core.view_new("byte", core.context_state_size(h))
    core.context_state_save(h, buf)
    return buf:bytes()
end

--- ctx:load_state(s): restores a saved state (from any context of the same model that it fits).
function Context:load_state(s)
    core.context_state_load(self:_idle(), check_text(s, "state"))
end

--- ctx:set_threads(n): changes the number of threads (0: physical cores).
function Context:set_threads(n) core.context_set_threads(self:_idle(), to_int(n, "n_threads", 0, 1024)) end
function Context:n_threads() return core.context_n_threads(self:_handle()) end

--- ctx:set_abort(fn | nil): fn() is called between layers of each decode and between generated tokens; if it
-- returns true the computation stops with a PLM_ERR_CANCELLED error (the cache is left as it was); if it raises,
-- the computation stops and its error propagates. It must not call pocketlm.
function Context:set_abort(fn)
    if fn ~= nil and type(fn) ~= "function" then fail("set_abort: expected a function or nil, got " .. type(fn)) end
    core.context_set_abort(self:_handle(), fn)
end

--- ctx:classify(text, labels, opts) and ctx:embed(texts, opts): see Model.
function Context:classify(text, labels, opts) return self.model:classify(text, labels, opts, self) end
function Context:embed(texts, opts) return self.model:embed(texts, opts, self) end

--- ctx:close(): frees the context now (ending its generation, if any). Idempotent.
--- ctx:set_adapters(list) — the LoRA adapters applied from now on: a list of adapters (m:load_adapter) or
-- {adapter, scale} pairs (scale 1 by default); nil or {} for none. When the set changes the cache is emptied
-- (it was computed with the former set). An adapter of another model, a scale that is not a finite number or
-- more than 16 adapters raise an error and leave the set as it was.
function Context:set_adapters(list)
    if list ~= nil and type(list) ~= "table" then fail("adapters must be a list, got " .. type(list)) end
    if getmetatable(list) == M.Adapter then list = {list} end
    local pairs_ = {}
    for i, item in ipairs(list or {}) do
        local a, scale = item, 1.0
        if getmetatable(item) ~= M.Adapter then
            if type(item) ~= "table" or getmetatable(item[1]) ~= M.Adapter then
                fail(("adapters[%d]: expected an adapter or {adapter, scale}, got %s"):format(i, describe(item)))
            end
            a, scale = item[1], item[2] == nil and 1.0 or item[2]
        end
        if type(scale) ~= "number" or scale ~= scale or scale == math.huge or scale == -math.huge then
            fail(("adapters[%d]: the scale must be a finite number, got %s"):format(i, describe(scale)))
        end
        if a.model ~= self.model then fail(("adapters[%d] was loaded for another model"):format(i)) end
        pairs_[i] = {a, scale + 0.0}
    end
    if #pairs_ > 16 then fail(("%d adapters given; a context applies at most 16"):format(#pairs_)) end
    local old = self._adapters or {}
    local same = #old == #pairs_
    for i = 1, #pairs_ do same = same and old[i][1] == pairs_[i][1] and old[i][2] == pairs_[i][2] end
    if same then return end
    local h = self:_idle()
    core.context_clear_adapters(h)
    for _, p in ipairs(pairs_) do core.context_add_adapter(h, p[1]:_handle(), p[2]) end
    self._adapters = pairs_   -- keeps the adapters alive while the C context uses them
    core.kv_clear(h)
end

--- ctx:adapters() -> a list of {adapter, scale}.
function Context:adapters()
    local out = {}
    for i, p in ipairs(self._adapters or {}) do out[i] = {p[1], p[2]} end
    return out
end

function Context:close()
    local g = self._active[1]
    if g then g:_finish("cancelled") end
    core.close(self._h)
    self.model._contexts[self] = nil
end

Context.__close = Context.close

function Context:closed() return core.is_closed(self._h) end

function Context:__tostring()
    if core.is_closed(self._h) then return "pocketlm.Context (closed)" end
    return ("pocketlm.Context(n_ctx %d, %d used)"):format(core.context_n_ctx(self._h), core.kv_used(self._h))
end

-- -------------------------------------------------------------------- Model

--- A GGUF model, loaded (memory-mapped) once; contexts are made from it.
local Model = {}
Model.__index = Model
M.Model = Model

--- plm.default_model_path() -> where the default model is looked for ($POCKETLM_MODEL, else
-- <cache>/SmolLM2-135M-Instruct.Q4_1.gguf; cache: $POCKETLM_CACHE, $XDG_CACHE_HOME/pocketlm or
-- ~/.cache/pocketlm). Raises PLM_ERR_IO naming the paths tried if there is no file; `python -m pocketlm download`
-- (or `make model` in a checkout) puts it there.
function M.default_model_path() return core.default_model_path() end

--- plm.load(path | nil, opts) -> Model. path nil: the default model.
-- opts: n_threads (default $POCKETLM_THREADS, else the physical cores) and n_ctx (default: the model's context
-- length, at most 4096) for the contexts made from it; use_mmap (true); vocab_only (false): the vocabulary and
-- metadata alone (any architecture, no tensors read): tokenize, detokenize, info and chat templates work, and
-- anything that runs the model raises an error saying it was loaded vocabulary-only; repack (true): the weights of
-- the types the CPU's kernels multiply faster in their own layout rearranged once at load (same results, faster
-- prompts and batches; they then live in this process's memory, not in the file's shared pages; info.n_repacked
-- says how many bytes).
function M.load(path, opts)
    opts = check_keys(opts, keyset({"n_threads", "n_ctx", "use_mmap", "vocab_only", "repack"}), "load")
    if path ~= nil and type(path) ~= "string" then fail("load: path must be a string or nil, got " .. type(path)) end
    local n_threads = opt_int(opts, "n_threads", nil, 0, 1024)
    local n_ctx = opt_int(opts, "n_ctx", nil, 0, INT32_MAX)
    local mp = core.model_default_params()
    mp.use_mmap = opt_bool(opts, "use_mmap", true)
    mp.vocab_only = opt_bool(opts, "vocab_only", false)
    mp.repack = opt_bool(opts, "repack", true)
    local h = core.model_load(path, mp)
    return setmetatable({
        info = core.model_get_info(h),
        n_threads = n_threads,
        n_ctx = n_ctx,
        _h = h,
        _contexts = setmetatable({}, {__mode = "k"}),
        _runners = setmetatable({}, {__mode = "k"}), -- job runners (C handles): closed before the model
    }, Model)
end

function Model:_handle()
    if core.is_closed(self._h) then fail("the Model is closed") end
    return self._h
end

--- A LoRA adapter loaded for one model (m:load_adapter); contexts apply it (opts.adapters, ctx:set_adapters).
local Adapter = {}
Adapter.__index = Adapter
M.Adapter = Adapter

--- m:load_adapter(path) -> Adapter: a GGUF LoRA adapter (llama.cpp's layout; `python -m pocketlm.convert --lora`
-- makes one from a PEFT directory) for this model. A file that does not fit the model (architecture, tensor
-- names or shapes) raises an error naming what differs.
function Model:load_adapter(path)
    if type(path) ~= "string" then fail("load_adapter: path must be a string, got " .. type(path)) end
    return setmetatable({model = self, path = path, _h = core.adapter_load(self:_handle(), path)}, Adapter)
end

function Adapter:_handle()
    if core.is_closed(self._h) then fail("the Adapter is closed") end
    return self._h
end
--- a:rank(), a:alpha() (0 when the file has none), a:n_targets() (matrices it changes)
function Adapter:rank() return core.adapter_rank(self:_handle()) end
function Adapter:alpha() return core.adapter_alpha(self:_handle()) end
function Adapter:n_targets() return core.adapter_n_targets(self:_handle()) end
function Adapter:__tostring() return ("pocketlm.Adapter(%s)"):format(self.path) end

--- m:context(opts) -> a new Context. opts: n_ctx, n_threads (defaults from load), n_batch (512),
-- n_seq_max (8: how many sequences it holds at once), memory_budget (bytes the context may allocate,
-- checked before allocating: a larger one is a PLM_ERR_OOM error naming both figures; 0, the default:
-- the machine's memory), adapters (LoRA adapters it applies: see Context:set_adapters).
function Model:context(opts)
    self:_handle()
    return new_context(self, opts, "context")
end

-- The context of generate, stream, start and chat (made on first use; consecutive prompts reuse its cache).
function Model:_gen_context()
    if not self._gen_ctx or self._gen_ctx:closed() then self._gen_ctx = self:context() end
    return self._gen_ctx
end

-- The context of classify and embed: apart from generation's; 16 sequences, so up to 15 labels share a decode.
function Model:_task_context()
    if not self._task_ctx or self._task_ctx:closed() then self._task_ctx = self:context({n_seq_max = 16}) end
    return self._task_ctx
end

--- m:tokenize(text, {add_special = true, parse_special = false}) -> an int32 view of the tokens (zero-copy:
-- it owns the array C wrote). add_special: BOS/EOS as the model asks; parse_special: "<|im_start|>" and the
-- like become their special tokens. Text may hold any bytes, NUL included.
function Model:tokenize(text, opts)
    opts = check_keys(opts, keyset({"add_special", "parse_special"}), "tokenize")
    return core.tokenize(self:_handle(), check_text(text, "text"), opt_bool(opts, "add_special", true),
        opt_bool(opts, "parse_special", false))
end

--- m:detokenize(tokens, {special = false}) -> the text of tokens (a table or an int32 view), as bytes.
function Model:detokenize(tokens, opts)
    opts = check_keys(opts, keyset({"special"}), "detokenize")
    return core.detokenize(self:_handle(), tokens, opt_bool(opts, "special", false))
end

--- m:token_to_piece(token, {special = false}) -> the bytes of one token.
function Model:token_to_piece(token, opts)
    opts = check_keys(opts, keyset({"special"}), "token_to_piece")
    return core.token_to_piece(self:_handle(), to_int(token, "token", -INT32_MAX - 1, INT32_MAX),
        opt_bool(opts, "special", false))
end

--- m:is_eog(token) -> true for tokens that end a generation (EOS, <|im_end|>, ...).
function Model:is_eog(token) return core.token_is_eog(self:_handle(), to_int(token, "token", -INT32_MAX - 1, INT32_MAX)) end

--- m:metadata() -> the GGUF metadata {key = value as text}.
function Model:metadata()
    local h, out = self:_handle(), {}
    for i = 0, core.model_meta_count(h) - 1 do
        local k = core.model_meta_key(h, i)
        out[k] = core.model_meta_str(h, k)
    end
    return out
end

--- m:chat_format([name]) -> the chat format of the model's template (or the one named).
function Model:chat_format(name)
    if name ~= nil then
        for _, known in ipairs(chat.names) do
            if name == known then return chat.format(name) end
        end
        fail(("unknown chat format %s; known: %s"):format(describe(name), table.concat(chat.names, ", ")))
    end
    return chat.detect(self.info.chat_template)
end

--- m:apply_chat_template(messages [, opts]) -> prompt, stop strings: the chat rendered by the model's own Jinja
-- template (in C; without a BOS text at the very start, which tokenization adds). messages: a list of
-- {role = "system" | "user" | "assistant" | "tool", content = ..., tool_calls = ...}, or a string (one user turn).
-- opts: add_generation_prompt (true), tools (a list of function definitions, or JSON text), chat_template_kwargs
-- (a table of further template variables, e.g. {enable_thinking = false}), template (a format's name: "chatml",
-- "llama3", "gemma", "phi3", instead), chat_template (Jinja source instead). A file without a template is rendered
-- as ChatML. Stops: the end-of-turn markers of the family recognized in the template (none for another template:
-- the end-of-generation tokens end a reply). Errors name the message (from 1), or the template's construct and line.
function Model:apply_chat_template(messages, opts)
    opts = check_keys(opts, keyset({"add_generation_prompt"}, CHAT_TEMPLATE_KEYS), "apply_chat_template")
    opt_bool(opts, "add_generation_prompt", true)
    local ok, prompt, stops = pcall(chat.apply, self:_handle(), messages, opts)
    if not ok then fail(prompt) end
    return prompt, stops
end

-- The prompt of a chat and the generation options (the template's end-of-turn marker added to stop).
function Model:_chat_prompt(messages, opts)
    local prompt, stops = self:apply_chat_template(messages, {template = opts.template, chat_template = opts.chat_template,
        tools = opts.tools, chat_template_kwargs = opts.chat_template_kwargs})
    local o = {}
    for k, v in pairs(opts) do
        if k ~= "stream" and not CHAT_TEMPLATE_SET[k] then o[k] = v end
    end
    local all = {}
    for _, s in ipairs(stops) do all[#all + 1] = s end
    for _, s in ipairs(string_list(opts.stop, "stop")) do all[#all + 1] = s end
    o.stop = all
    return prompt, o
end

--- m:generate(prompt, opts) -> text, reason — see Context:start for opts (runs on the model's own context).
-- The generation context with opts.adapters applied (none when absent), and opts without that key.
function Model:_gen_with(opts)
    local ctx = self:_gen_context()
    if type(opts) ~= "table" or opts.adapters == nil then
        ctx:set_adapters(nil)
        return ctx, opts
    end
    local rest = {}
    for k, v in pairs(opts) do if k ~= "adapters" then rest[k] = v end end
    ctx:set_adapters(opts.adapters)
    return ctx, rest
end

--- The calls below take opts.adapters too: LoRA adapters applied for this call (see Context:set_adapters).
function Model:generate(prompt, opts) local c, o = self:_gen_with(opts); return c:generate(prompt, o) end
--- for piece in m:stream(prompt, opts) do ... end
function Model:stream(prompt, opts) local c, o = self:_gen_with(opts); return c:stream(prompt, o) end
--- m:start(prompt, opts) -> Generator (step-wise; see Generator:step)
function Model:start(prompt, opts) local c, o = self:_gen_with(opts); return c:start(prompt, o) end
--- m:chat(messages, opts) -> reply, reason
function Model:chat(messages, opts) local c, o = self:_gen_with(opts); return c:chat(messages, o) end
--- m:start_chat(messages, opts) -> Generator
function Model:start_chat(messages, opts) local c, o = self:_gen_with(opts); return c:start_chat(messages, o) end

-- ------------------------------------------------------------------- Batch

--- Many generations at once on a context of their own (continuous batching): made by m:start_many.
-- Each b:step() is one batched decode holding the next token of every running prompt plus a chunk of newly
-- admitted ones; a prompt is admitted as soon as another ends. With temperature 0 or a fixed seed, each text
-- equals m:generate(prompt, opts) for that prompt alone.
local Batch = {}
Batch.__index = Batch
M.Batch = Batch

local CONSTRAINT_KEYS = {"json_schema", "grammar", "regex", "choices"}
local BATCH_ITEM_ALLOWED = keyset(SAMPLING_KEYS, {"max_tokens", "stop", "ignore_eos", "add_special", "parse_special"},
                                  CONSTRAINT_KEYS)
local BATCH_ALLOWED = keyset(SAMPLING_KEYS, {"max_tokens", "stop", "ignore_eos", "add_special", "parse_special",
                                             "parallel", "prefill_chunk"}, CONSTRAINT_KEYS)
local BATCH_MAX_CELLS = 32768

-- The n_ctx of the model's own contexts: what m:generate runs on, and so the most cells of one request.
local function context_length(model)
    if model.n_ctx and model.n_ctx > 0 then return model.n_ctx end
    local n = model.info.n_ctx_train
    return (n > 0 and n < 4096) and n or 4096
end

--- m:start_many(prompts, opts) -> Batch. prompts: a list whose items are a text, tokens (a table or an int32
-- view), or a table {prompt = text or tokens, <options for this item>}. opts: the options of Context:start
-- (but seq_id) for every item, and parallel (most prompts running at once; default min(16, #prompts), at
-- most 64) and prefill_chunk (most prompt tokens evaluated per step; 128).
function Model:start_many(prompts, opts)
    opts = check_keys(opts, BATCH_ALLOWED, "start_many")
    if type(prompts) ~= "table" then fail("start_many: prompts must be a list, got " .. type(prompts)) end
    local h = self:_handle()
    local n = #prompts
    local parallel = opt_int(opts, "parallel", math.max(1, math.min(16, n)), 1, 64)
    local chunk = opt_int(opts, "prefill_chunk", 128, 1, INT32_MAX)
    local seq_len = context_length(self)
    local items, needs = {}, {}
    for i = 1, n do
        local item, o = prompts[i], {}
        for k, v in pairs(opts) do
            if k ~= "parallel" and k ~= "prefill_chunk" then o[k] = v end
        end
        local prompt = item
        if type(item) == "table" and (item.prompt ~= nil or #item == 0) then
            if item.prompt == nil then fail(("start_many: item %d needs a prompt"):format(i)) end
            for k, v in pairs(item) do
                if k ~= "prompt" then
                    if not BATCH_ITEM_ALLOWED[k] then fail(("start_many: item %d: unknown option %s"):format(i, describe(k))) end
                    o[k] = v
                end
            end
            prompt = item.prompt
        end
        local gp, stop, bias, grammar = generate_params(o, 1)
        local tokens
        if type(prompt) == "string" then
            tokens = core.tokenize(h, prompt, gp.add_special, gp.parse_special)
        elseif type(prompt) == "table" or type(prompt) == "userdata" then
            tokens = prompt
        else
            fail(("start_many: item %d must be a string, tokens or a table with a prompt, got %s"):format(i, type(prompt)))
        end
        if #tokens == 0 then fail(("start_many: item %d: the prompt is empty"):format(i)) end
        -- the grammar stays referenced until its request is submitted (the request then holds its own)
        items[i] = {tokens = tokens, gp = gp, stop = stop, bias = bias, grammar = grammar}
        needs[i] = math.min(gp.max_tokens > 0 and #tokens + gp.max_tokens or seq_len, seq_len)
    end
    table.sort(needs, function(a, b) return a > b end)
    local sum = 8
    for i = 1, math.min(parallel, #needs) do sum = sum + needs[i] end
    local ctx = self:context({n_ctx = math.max(needs[1] or 16, math.min(sum, BATCH_MAX_CELLS)), n_seq_max = parallel})
    local b = setmetatable({
        model = self,
        ctx = ctx,
        n = n,
        done = n == 0,
        _texts = {},
    }, Batch)
    b._h = core.batch_gen_create(ctx._h, parallel, chunk, math.min(seq_len, ctx:n_ctx()), true)
    for i = 1, n do
        local it = items[i]
        core.batch_gen_submit(b._h, it.tokens, it.gp, it.stop, it.bias)
        b._texts[i] = {}
    end
    b.done = core.batch_gen_n_left(b._h) == 0
    return b
end

function Batch:_handle()
    if not self._h or core.is_closed(self._h) then fail("the Batch is closed") end
    return self._h
end

--- b:step(budget) -> new, done. Runs up to budget steps (batched decodes; default 1) and returns a table
-- {[index] = new text} of the prompts that produced text (whole UTF-8 characters, never part of a stop string),
-- and whether every prompt has ended.
function Batch:step(budget)
    local h = self:_handle()
    budget = budget == nil and 1 or to_int(budget, "budget", 0, INT32_MAX)
    local new = {}
    for _ = 1, budget do
        if self.done then break end
        local left = core.batch_gen_step(h)
        local ids = core.batch_gen_updated(h)
        for k = 1, #ids do
            local i = ids[k] + 1
            local piece = core.batch_gen_take(h, ids[k])
            if #piece > 0 then
                new[i] = (new[i] or "") .. piece
                local t = self._texts[i]
                t[#t + 1] = piece
            end
        end
        self.done = left == 0
    end
    return new, self.done
end

--- b:result(i) -> text, reason, err: the text of prompt i so far; reason nil while it runs, else "length",
-- "eog", "stop", "caller" (cancelled) or "context_full"; err: the message of a prompt that could not run.
function Batch:result(i)
    local h = self:_handle()
    i = to_int(i, "index", 1, self.n)
    local r = core.batch_gen_result(h, i - 1)
    local err = nil
    if r[2] ~= 0 then
        err = ("%s: %s"):format(core.status_str(r[2]), core.batch_gen_error(h, i - 1))
    end
    return core.batch_gen_text(h, i - 1), r[1] ~= 0 and STOP_REASONS[r[1]] or nil, err
end

--- b:cancel(i): ends prompt i (nil: every prompt not ended yet).
function Batch:cancel(i)
    local h = self:_handle()
    core.batch_gen_cancel(h, i == nil and -1 or to_int(i, "index", 1, self.n) - 1)
    self.done = core.batch_gen_n_left(h) == 0
end

--- b:close(): cancels what runs and frees the batch and its context now. Idempotent.
function Batch:close()
    if self._h then
        core.close(self._h)
        self._h = nil
        self.ctx:close()
    end
end

Batch.__close = Batch.close

function Batch:__tostring()
    return ("pocketlm.Batch(%d prompts, %s)"):format(self.n, self.done and "done" or "running")
end

--- m:generate_many(prompts, opts) -> texts, reasons: every prompt's continuation, in order (see start_many
-- for prompts and opts). A prompt that cannot run (longer than the context) does not stop the others; once
-- they are done, its error is raised (naming it), unless opts.errors = "return": then its text is false and
-- its reason "error", and a third result maps its index to the message.
function Model:generate_many(prompts, opts)
    opts = opts or {}
    local mode = opts.errors or "raise"
    if mode ~= "raise" and mode ~= "return" then fail(("errors must be \"raise\" or \"return\", got %s"):format(describe(mode))) end
    local o = {}
    for k, v in pairs(opts) do
        if k ~= "errors" then o[k] = v end
    end
    local b = self:start_many(prompts, o)
    return closing(b, function()
        while not b.done do b:step(1) end
        local texts, reasons, errs = {}, {}, {}
        for i = 1, b.n do
            local text, reason, err = b:result(i)
            if err then
                if mode == "raise" then fail(("generate_many: item %d: %s"):format(i, err)) end
                texts[i], reasons[i], errs[i] = false, "error", err
            else
                texts[i], reasons[i] = text, reason
            end
        end
        return texts, reasons, errs
    end)
end

-- -------------------------------------------------------------------- Jobs

--- A generation running on a worker thread (made by m:spawn / m:spawn_chat): the frame loop polls it and
-- never waits for the model. The worker threads (C, in csrc/jobs.c) never touch the Lua state.
local Job = {}
Job.__index = Job
M.Job = Job

local JOB_REASONS = {"length", "eog", "stop", "cancelled", "context_full"}
local JOBS_ALLOWED = keyset({"workers", "n_threads", "n_parallel", "n_ctx", "nice"})

--- m:configure_jobs(opts): the worker threads later spawns run on. opts: workers (1: worker threads, each with a
-- context of its own; the cap that leaves a game its other cores), n_threads (1: compute threads per worker),
-- n_parallel (4: jobs decoded together on one worker, sharing each step), n_ctx (cells per worker; default the
-- model's n_ctx), nice (10: how much lower than the game's the workers' priority is, 0..19; Linux). Jobs
-- already running keep their runner.
function Model:configure_jobs(opts)
    opts = check_keys(opts, JOBS_ALLOWED, "configure_jobs")
    self._jobs_opts = {
        workers = opt_int(opts, "workers", 1, 1, 64),
        n_threads = opt_int(opts, "n_threads", 1, 1, 512),
        n_parallel = opt_int(opts, "n_parallel", 4, 1, 64),
        n_ctx = opt_int(opts, "n_ctx", self.n_ctx or 0, 0, INT32_MAX),
        nice = opt_int(opts, "nice", -1, 0, 19),
    }
    self._jobs = nil
end

function Model:_job_runner()
    if not self._jobs or core.is_closed(self._jobs) then
        if not self._jobs_opts then self:configure_jobs() end
        local o = self._jobs_opts
        self._jobs = core.jobs_create(self:_handle(), o.workers, o.n_threads, o.n_ctx, o.n_parallel, o.nice)
        self._runners[self._jobs] = true
    end
    return self._jobs
end

--- m:spawn(prompt, opts) -> Job: generates prompt (text) in the background; returns at once. opts: those of
-- m:generate (max_tokens, temperature, stop, seed, ...; no constraints). Several jobs run at once, sharing the
-- model (and each decode, on one worker). See Job:poll.
function Model:spawn(prompt, opts)
    opts = check_keys(opts, GEN_ALLOWED, "spawn")
    check_text(prompt, "prompt")
    if #prompt == 0 then fail("the prompt is empty: nothing to generate from") end
    for _, key in ipairs({"json_schema", "grammar", "regex", "choices"}) do
        if opts[key] ~= nil then fail(("spawn: %s is not supported in a background job"):format(key)) end
    end
    local gp, stop, bias = generate_params(opts, 1)
    local runner = self:_job_runner()
    local h = core.jobs_submit(runner, prompt, gp, stop, bias)
    return setmetatable({_h = h, _parts = {}, done = false, reason = nil, model = self}, Job)
end

--- m:spawn_chat(messages, opts) -> Job: m:spawn over the model's chat template (see m:chat).
function Model:spawn_chat(messages, opts)
    opts = check_keys(opts, CHAT_ALLOWED, "spawn_chat")
    local prompt, o = self:_chat_prompt(messages, opts)
    return self:spawn(prompt, o)
end

--- job:poll() -> text, done, reason: the text produced since the last poll (maybe ""), whether the job has ended
-- and why ("length", "eog", "stop", "cancelled", "context_full"). Never waits for the model. An error of the
-- job (a prompt longer than the context, ...) is raised here.
function Job:poll()
    if not self._h then return "", true, self.reason end
    local ok, text, reason = pcall(core.job_poll, self._h)
    if not ok then
        self.done, self.reason, self.error = true, "error", text
        core.close(self._h)
        self._h = nil
        fail(text)
    end
    if #text > 0 then self._parts[#self._parts + 1] = text end
    if reason ~= 0 then
        self.done, self.reason = true, JOB_REASONS[reason]
        self.n_generated = core.job_n_generated(self._h)
        core.close(self._h)
        self._h = nil
    end
    return text, self.done, self.reason
end

--- job:wait() -> text, done, reason: blocks until the job has ended; the text not polled before.
function Job:wait()
    if self._h then core.job_wait(self._h) end
    local parts = {}
    while true do -- a poll may find a worker holding the lock for a moment: it then returns nothing yet
        local text, done, reason = self:poll()
        parts[#parts + 1] = text
        if done then return table.concat(parts), done, reason end
    end
end

--- job:cancel(): asks the job to end; returns at once (it ends, "cancelled", at its worker's next step).
function Job:cancel()
    if self._h then core.job_cancel(self._h) end
end

--- job:close(): cancels a running job and frees it now (the garbage collector does the same).
function Job:close()
    if self._h then
        core.close(self._h)
        self._h = nil
        if not self.done then self.done, self.reason = true, "cancelled" end
    end
end
Job.__close = Job.close

--- job:text() -> all the text polled so far.
function Job:text() return table.concat(self._parts) end

--- job:generated() -> tokens generated so far (as of its worker's last step).
function Job:generated()
    if self._h then return core.job_n_generated(self._h) end
    return self.n_generated or 0
end

function Job:__tostring()
    return ("pocketlm.Job(%s)"):format(self.done and ("done: " .. tostring(self.reason)) or "running")
end

-- ------------------------------------------------------- classification

--- The default instruction (a user turn of the model's chat format); the text comes after the fixed part.
M.INSTRUCTION = core.CLASSIFY_INSTRUCTION
--- The default multi-label question: everything from {label} on is appended per label.
M.MULTI_LABEL_INSTRUCTION = core.CLASSIFY_MULTI_LABEL_INSTRUCTION
--- The start of the assistant's turn in the default templates; labels (or " yes"/" no") follow it.
M.ANSWER = core.CLASSIFY_ANSWER

local SCORE_MODES = {sum = core.SCORE_SUM, mean = core.SCORE_MEAN}
local POOLINGS = {mean = core.POOL_MEAN, last = core.POOL_LAST, cls = core.POOL_CLS}

-- What zero-shot classification scores: the prompt's tokens (an int32 view), the labels' tokens one after the
-- other, and how many each label has. C builds them (plm_classify_prompt), as for the Python package, so both
-- score the same tokens; template nil is the default (M.INSTRUCTION in the model's chat format, then M.ANSWER).
local function classify_prompt(model, template, labels, multi_label, text)
    return core.classify_prompt(model:_handle(), template, text, labels, multi_label)
end

--- m:classification_prompt(text, labels, {template =, multi_label =}) -> prompt, label_tokens: what m:classify
-- scores: the prompt's tokens (an int32 view) and a list of each label's tokens after it (its continuation, or
-- in multi-label mode its suffix, after which " yes" and " no" are compared), as lists of integers.
function Model:classification_prompt(text, labels, opts)
    opts = check_keys(opts, keyset({"multi_label", "template"}), "classification_prompt")
    check_text(text, "text")
    if opts.template ~= nil then check_text(opts.template, "template") end
    local prompt, flat, lens = classify_prompt(self, opts.template, labels, opt_bool(opts, "multi_label", false), text)
    local out, k = {}, 0
    for j = 1, #lens do
        local toks = {}
        for i = 1, lens[j] do toks[i] = flat[k + i] end
        out[j] = toks
        k = k + lens[j]
    end
    return prompt, out
end

--- m:has_classifier_head() -> true when the file carries a sequence-classification head (llama.cpp's cls.*
-- tensors), which m:classify then uses.
function Model:has_classifier_head() return self.info.n_cls_out > 0 end

--- m:classifier_labels() -> the labels of the classification head in output order (from
-- <arch>.classifier.output_labels, else "LABEL_0", ...); an empty list without a head.
function Model:classifier_labels()
    local h, out = self:_handle(), {}
    for i = 1, self.info.n_cls_out do out[i] = core.model_cls_label(h, i - 1) end
    return out
end

--- m:classifier_pooling() -> "mean", "last" or "cls" (the first token): how the head pools a text's hidden
-- states (a file's "rank" or missing pooling type means the last token); nil without a head.
function Model:classifier_pooling()
    if not self:has_classifier_head() then return nil end
    local p = core.model_cls_pooling(self:_handle())
    for name, id in pairs(POOLINGS) do
        if id == p then return name end
    end
end

local function sigmoid(x)
    if x >= 0 then return 1 / (1 + math.exp(-x)) end
    local e = math.exp(x)
    return e / (1 + e)
end

-- classify through the model's head: the text evaluated once, its pooled final hidden state put through the head.
function Model:_classify_head(text, labels, multi, ctx)
    local head = self:classifier_labels()
    local index = {}
    for j, lab in ipairs(head) do index[lab] = j end
    if labels == nil then
        labels = head
    else
        for _, lab in ipairs(labels) do
            if not index[lab] then
                fail(("label %q is not an output of the model's classification head (%s): pass those labels or "
                    .. "a subset of them, nil for all, or use_head = false for zero-shot classification")
                    :format(lab, table.concat(head, ", ")))
            end
        end
    end
    multi = multi or #head == 1 -- one output is a yes/no judgement: its sigmoid
    ctx = ctx or self:_task_context()
    local h = ctx:_idle()
    local toks = core.tokenize(self._h, text, true, false)
    local k = #head
    local out = core.view_new("float32", 2 * k)
    core.classify_head(h, toks, {#toks}, out)
    local z = {}
    for j, lab in ipairs(labels) do z[j] = out[index[lab]] end
    local p = {}
    if multi then
        for j = 1, #z do p[j] = sigmoid(z[j]) end
    else
        local mx, sum = -math.huge, 0
        for j = 1, #z do mx = math.max(mx, z[j]) end
        for j = 1, #z do p[j] = math.exp(z[j] - mx); sum = sum + p[j] end
        for j = 1, #z do p[j] = p[j] / sum end
    end
    local result = {probs = {}, logprobs = {}, logits = {}, ranked = {}, labels = labels}
    for j, lab in ipairs(labels) do
        result.logits[lab] = z[j]
        result.probs[lab] = p[j]
        result.logprobs[lab] = p[j] > 0 and math.log(p[j]) or -math.huge
        result.ranked[j] = {label = lab, score = p[j]}
    end
    table.sort(result.ranked, function(a, b) return a.score > b.score end)
    result.label, result.score = result.ranked[1].label, result.ranked[1].score
    return result
end

--- m:classify(text, labels, opts) -> result
-- Zero-shot classification of text into labels (a list of strings) by the likelihood the model gives each label
-- as the answer: the prompt is evaluated once and every label scored in one batched decode.
-- result: {label = best label, score = its probability, probs = {[label] = p}, logprobs = {[label] = score},
-- ranked = {{label =, score =}, ...} best first}. opts: mode ("sum" or "mean" of the label tokens'
-- log-probabilities), multi_label (each label judged alone, yes/no), template (the whole prompt with {text},
-- {labels} and, multi-label, {label}; default: M.INSTRUCTION in the model's chat format, then M.ANSWER),
-- use_head (see below). The C library builds the prompt, as for the Python package (same tokens, same scores): a
-- label follows it after a space unless it ends in Unicode whitespace; m:classification_prompt shows it.
-- A model whose file carries a classification head (m:has_classifier_head()) uses it when no template is given:
-- one pass over the text; labels may be nil (the head's labels) or a subset of them, whose probabilities are
-- the softmax of their scores (with multi_label, or a one-output head, each score's sigmoid); result.logits
-- holds the raw scores. use_head = true insists on the head, false asks for zero-shot scoring.
function Model:classify(text, labels, opts, ctx)
    opts = check_keys(opts, keyset({"mode", "multi_label", "template", "use_head"}), "classify")
    check_text(text, "text")
    if not text:find("%S") then fail("the text is empty") end
    local use_head = opts.use_head
    if use_head ~= nil and type(use_head) ~= "boolean" then fail("classify: use_head must be a boolean or nil") end
    if use_head == nil then use_head = self:has_classifier_head() and opts.template == nil end
    if use_head and not self:has_classifier_head() then
        fail(self.info.path .. ": the model has no classification head (no cls.weight or cls.output.weight tensor); "
            .. "use zero-shot classification (use_head = false)")
    end
    if use_head and opts.template ~= nil then
        fail("a template is for zero-shot classification; the classification head takes the text alone")
    end
    if labels ~= nil or not use_head then
        if type(labels) ~= "table" or #labels == 0 then fail("labels must be a non-empty list of strings") end
        local seen = {}
        for i, lab in ipairs(labels) do
            if type(lab) ~= "string" or not lab:find("%S") then fail(("label %d must be a non-empty string"):format(i)) end
            if seen[lab] then fail(("label %q appears twice"):format(lab)) end
            seen[lab] = true
        end
    end
    local multi = opt_bool(opts, "multi_label", false)
    local mode = opt_choice(opts, "mode", "sum", SCORE_MODES)
    if use_head then return self:_classify_head(text, labels, multi, ctx) end
    local params = core.classify_default_params()
    params.mode = mode
    params.multi_label = multi
    params.keep_cache = true
    if opts.template ~= nil then check_text(opts.template, "template") end
    ctx = ctx or self:_task_context()
    local h = ctx:_idle()
    local prompt, flat, lens = classify_prompt(self, opts.template, labels, multi, text)
    local n = #labels
    local out = core.view_new("float32", 2 * n)
    core.classify(h, prompt, flat, lens, params, out)
    local result = {probs = {}, logprobs = {}, ranked = {}, labels = labels}
    for j, lab in ipairs(labels) do
        result.logprobs[lab] = out[j]
        result.probs[lab] = out[n + j]
        result.ranked[j] = {label = lab, score = out[n + j]}
    end
    table.sort(result.ranked, function(a, b) return a.score > b.score end)
    result.label, result.score = result.ranked[1].label, result.ranked[1].score
    return result
end

--- m:embed_pooling() -> "mean", "cls" or "last": the pooling m:embed uses by default (the file's pooling type,
-- as a sentence-transformers model was trained; "mean" when the file names none).
function Model:embed_pooling()
    local p = core.model_embed_pooling(self:_handle())
    for name, id in pairs(POOLINGS) do
        if id == p then return name end
    end
    return "mean"
end

--- m:is_encoder() -> true for an encoder (a BERT sentence embedder): it embeds; generate and chat raise errors.
function Model:is_encoder() return core.model_is_encoder(self:_handle()) end

-- The special tokens the tokenizer puts after a text ([SEP] for BERT), which a cut text keeps.
local function closing_specials(model)
    local full, bare = core.tokenize(model._h, "a", true, false), core.tokenize(model._h, "a", false, false)
    for h = 1, #full - #bare + 1 do
        local same = true
        for k = 1, #bare do
            if full[h + k - 1] ~= bare[k] then same = false; break end
        end
        if same then
            local tail = {}
            for k = h + #bare, #full do tail[#tail + 1] = full[k] end
            return tail
        end
    end
    return {}
end

--- m:embed(text | texts, {pooling = m:embed_pooling(), normalize = true, truncate = false}) -> a float32 view of
-- n_embd items for a string, or a list of them for a list of strings (rows of one buffer that C wrote in place).
-- pooling: "mean" of the token states, the "last" token's, or the first ("cls"); normalize: unit length. Items may
-- also be tokens. A text longer than the model takes (512 positions for MiniLM) raises an error unless truncate
-- cuts it: true to the model's trained length, an integer to that many tokens (the closing [SEP] is kept).
function Model:embed(texts, opts, ctx)
    opts = check_keys(opts, keyset({"pooling", "normalize", "truncate"}), "embed")
    local single = type(texts) == "string"
    local items = single and {texts} or texts
    if type(items) ~= "table" then fail("embed: expected a string or a list of strings, got " .. type(texts)) end
    local pooling = opt_choice(opts, "pooling", self:embed_pooling(), POOLINGS)
    local normalize = opt_bool(opts, "normalize", true)
    local limit
    if opts.truncate == true then
        limit = self.info.n_ctx_train
    elseif opts.truncate ~= nil and opts.truncate ~= false then
        if type(opts.truncate) ~= "number" then
            fail(("truncate must be true, false or a number of tokens, got %s"):format(describe(opts.truncate)))
        end
        limit = opt_int(opts, "truncate", nil, 2, INT32_MAX)
    end
    local tail = limit and closing_specials(self) or {}
    ctx = ctx or self:_task_context()
    local h = ctx:_idle()
    local flat, lens = {}, {}
    for i, t in ipairs(items) do
        local toks
        if type(t) == "string" then
            if not t:find("%S") then fail(("text %d is empty"):format(i)) end
            toks = core.tokenize(self._h, t, true, false)
            if limit and #toks > limit then -- cut the text, keep the closing [SEP]
                local cut = {}
                for k = 1, limit - #tail do cut[k] = toks[k] end
                for k = 1, #tail do cut[#cut + 1] = tail[k] end
                toks = cut
            end
        else
            toks = t
            if limit and #toks > limit then
                local cut = {}
                for k = 1, limit do cut[k] = toks[k] end
                toks = cut
            end
        end
        if #toks == 0 then fail(("text %d has no tokens"):format(i)) end
        lens[i] = #toks
        for k = 1, #toks do flat[#flat + 1] = toks[k] end
    end
    local d = self.info.n_embd
    local out = core.view_new("float32", #items * d)
    core.embed(h, flat, lens, pooling, normalize, out)
    if single then return out end
    local rows = {}
    for i = 1, #items do rows[i] = out:slice((i - 1) * d + 1, i * d) end
    return rows
end

--- m:close(): frees the model now, and every context made from it. Idempotent.
function Model:close()
    for runner in pairs(self._runners) do core.close(runner) end -- joins their worker threads
    for ctx in pairs(self._contexts) do ctx:close() end
    core.close(self._h)
end

Model.__close = Model.close

function Model:closed() return core.is_closed(self._h) end

function Model:__tostring()
    if core.is_closed(self._h) then return "pocketlm.Model (closed)" end
    local i = self.info
    return ("pocketlm.Model(%s, %s %.0fM %s)"):format(i.name ~= "" and i.name or i.arch, i.arch, i.n_params / 1e6,
        i.file_type)
end

return M
