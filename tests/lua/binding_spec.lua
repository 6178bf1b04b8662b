-- What crosses the binding: zero-copy views that pin their owners, integers, NUL bytes, errors, lifetimes.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helper.lua")
local plm = H.plm
local core = require "pocketlm.core"

local PROMPT = "The capital of France is"

-- A context that has decoded PROMPT (so its logits are those of the prompt's last token).
local function decoded(m, n_ctx)
    local ctx = m:context({n_ctx = n_ctx or 128})
    ctx:decode(m:tokenize(PROMPT))
    return ctx
end

local function argmax(v)
    local best, bi = -math.huge, 0
    for i = 1, #v do
        if v[i] > best then best, bi = v[i], i end
    end
    return bi, best
end

describe("views", function()
    local m
    lazy_setup(function() m = H.model() end)

    it("tokenize gives an int32 view of integers that ipairs and # understand", function()
        local t = m:tokenize("Hello world")
        assert.are.equal("userdata", type(t))
        assert.are.equal(2, #t)
        assert.are.same({19556, 905}, t:totable())
        assert.is_true(H.is_integer(t[1]))
        assert.is_nil(t[0])
        assert.is_nil(t[3])
        local seen = {}
        if H.lua54 then -- LuaJIT's ipairs takes tables only (for i = 1, #v there)
            for i, tok in ipairs(t) do seen[i] = tok end
        else
            for i = 1, #t do seen[i] = t[i] end
        end
        assert.are.same({19556, 905}, seen)
        assert.are.equal("Hello world", m:detokenize(t))
        assert.is_truthy(tostring(t):find("pocketlm.view(int32, 2)", 1, true))
    end)

    it("logits are a zero-copy view: C reads what Lua writes, Lua sees what C writes", function()
        local ctx = decoded(m)
        local v = ctx:logits()
        assert.are.equal(m.info.n_vocab, #v)
        assert.are.equal("float32", v:type())
        assert.are.equal("number", type(v[1]))
        local paris = argmax(v) - 1 -- token ids are 0-based, views 1-based
        assert.are.equal(" Paris", m:token_to_piece(paris))
        -- Lua writes, C's sampler (reading the context's buffer) picks the token written.
        local smp = core.sampler_create(core.sampler_default_params(), nil, m.info.n_vocab)
        local params = core.sampler_default_params()
        params.temperature = 0
        local greedy = core.sampler_create(params, nil, m.info.n_vocab)
        assert.are.equal(paris, core.sampler_sample(greedy, ctx._h, -1))
        v[42 + 1] = 1e6
        assert.are.equal(42, core.sampler_sample(greedy, ctx._h, -1))
        assert.are.equal(1e6, v[43])
        core.close(smp)
        -- C writes (the next decode), the same view shows the new logits.
        local before = v[1]
        ctx:decode({paris})
        assert.are_not.equal(before, v[1])
        local fresh = ctx:logits()
        for i = 1, #v, 997 do assert.are.equal(fresh[i], v[i]) end
        assert.are.equal(".", m:token_to_piece(argmax(v) - 1))
        ctx:close()
    end)

    it("C fills a view Lua made (embed writes into it)", function()
        local out = plm.view("float32", 2 * m.info.n_embd)
        core.embed(m:_task_context()._h, m:tokenize("a cat"), {#m:tokenize("a cat")}, core.POOL_MEAN, true, out)
        local e = m:embed("a cat")
        for i = 1, m.info.n_embd, 37 do assert.is_true(math.abs(out[i] - e[i]) < 1e-6) end
        assert.are.equal(0, out[m.info.n_embd + 1]) -- the second row was not asked for
    end)

    it("keeps its owner alive through collectgarbage()", function()
        local function logits_only()
            local model = plm.load(nil, {n_threads = H.threads})
            local ctx = model:context({n_ctx = 64})
            ctx:decode(model:tokenize(PROMPT))
            return ctx:logits(), ctx:logits():totable()
        end
        local v, copy = logits_only()
        for _ = 1, 3 do collectgarbage("collect") end
        assert.are.equal(#copy, #v)
        for i = 1, #v, 101 do assert.are.equal(copy[i], v[i]) end
        local s = v:slice(10, 20)
        v = nil
        for _ = 1, 3 do collectgarbage("collect") end
        assert.are.equal(11, #s)
        assert.are.equal(copy[10], s[1])
        assert.are.equal(copy[20], s[11])
    end)

    it("of a closed context raise an error instead of reading freed memory", function()
        local ctx = decoded(m)
        local v = ctx:logits()
        ctx:close()
        assert.has_error(function() return v[1] end, "the Context of this logits view is closed")
        assert.are.equal(m.info.n_vocab, #v)
    end)

    it("check their indices and values", function()
        local v = plm.view("int32", {1, 2, 3})
        assert.are.equal(3, #v)
        v[2] = 7
        assert.are.same({1, 7, 3}, v:totable())
        assert.has_error(function() v[4] = 1 end)
        assert.has_error(function() v[1] = 2.5 end)
        assert.has_error(function() v[1] = 2 ^ 40 end)
        assert.has_error(function() return v[1.5] end)
        assert.are.equal(7, v[2.0])
        local b = plm.view("byte", 3)
        assert.are.equal("\0\0\0", b:bytes())
        assert.has_error(function() b[1] = 256 end)
    end)
end)

describe("integers", function()
    local m
    lazy_setup(function() m = H.model() end)

    it("stay integers on the way out", function()
        for _, k in ipairs({"n_vocab", "n_embd", "n_layer", "n_ctx_train", "n_params", "bos", "eos"}) do
            assert.is_true(H.is_integer(m.info[k]), k)
        end
        local ctx = decoded(m)
        assert.is_true(H.is_integer(ctx:kv_used()))
        assert.is_true(H.is_integer(ctx:n_ctx()))
        assert.is_true(H.is_integer(core.STOP_LENGTH))
        ctx:close()
    end)

    it("2.7 for an integer is an error, not 2 (2.0 is 2)", function()
        assert.has_error(function() m:generate(PROMPT, {max_tokens = 2.7}) end,
            "max_tokens must be an integer, got 2.7")
        assert.are.equal(" Paris.", m:generate(PROMPT, {max_tokens = 2.0, temperature = 0}))
        local ctx = decoded(m)
        local ok, err = pcall(core.kv_seq_rm, ctx._h, 0, 1.5, -1)
        assert.is_false(ok)
        assert.is_truthy(err:find("number 1.5 has no integer representation", 1, true))
        ok, err = pcall(core.kv_seq_rm, ctx._h, 0, math.floor(2 ^ 40), -1)
        assert.is_false(ok)
        assert.is_truthy(err:find("outside", 1, true))
        ok, err = pcall(core.decode, ctx._h, {1, 2.5}, 0, false)
        assert.is_false(ok)
        assert.is_truthy(err:find("item 2 (2.5) is not an integer", 1, true))
        local p = core.sampler_default_params()
        assert.has_error(function() p.top_k = 2.7 end)
        p.seed = H.MAXINT
        assert.are.equal(H.MAXINT, p.seed)
        if not H.lua54 then assert.has_error(function() p.seed = 2 ^ 60 end) end -- not exact as a double
        p.top_k = 7.0
        assert.is_true(H.is_integer(p.top_k))
        assert.has_error(function() m:tokenize(PROMPT):slice(1.5) end)
        local g = ctx:start(PROMPT)
        assert.has_error(function() g:step(1.5) end, "step budget must be an integer, got 1.5")
        g:close()
        ctx:close()
    end)
end)

describe("NUL bytes", function()
    local m
    lazy_setup(function() m = H.model() end)

    it("survive the way in and the way out", function()
        local text = "a\0b\0\0c"
        local toks = m:tokenize(text)
        assert.are.equal(text, m:detokenize(toks))
        assert.is_true(#toks >= 4)
        local ctx = decoded(m)
        local state = ctx:save_state()
        assert.is_truthy(state:find("\0", 1, true))
        local other = m:context({n_ctx = 128})
        other:load_state(state)
        assert.are.same(ctx:kv_seq_tokens():totable(), other:kv_seq_tokens():totable())
        assert.are.equal(ctx:logits()[5], other:logits()[5])
        other:close()
        ctx:close()
    end)

    it("are refused where C needs a C string", function()
        assert.has_error(function() plm.load("/tmp/no\0such.gguf") end)
        assert.has_error(function() m:generate(PROMPT, {stop = {"a\0b"}, max_tokens = 1}) end)
    end)
end)

describe("errors", function()
    local m
    lazy_setup(function() m = H.model() end)

    it("carry the C library's message", function()
        local ok, err = pcall(plm.load, "/nonexistent/model.gguf")
        assert.is_false(ok)
        assert.is_truthy(err:find("^PLM_ERR_IO: /nonexistent/model.gguf"))
        local ctx = m:context({n_ctx = 64})
        ok, err = pcall(ctx.decode, ctx, {m.info.n_vocab + 5})
        assert.is_false(ok)
        assert.is_truthy(err:find("^PLM_ERR_ARG"))
        ok, err = pcall(ctx.load_state, ctx, "not a state")
        assert.is_false(ok)
        assert.is_truthy(err:find("^PLM_ERR_FORMAT"))
        local long = ("word "):rep(200)
        ok, err = pcall(ctx.generate, ctx, long, {max_tokens = 1})
        assert.is_false(ok)
        assert.is_truthy(err:find("PLM_ERR_CONTEXT_FULL", 1, true))
        ctx:close()
    end)

    it("a memory budget refuses an oversized context before allocating it", function()
        -- SmolLM2's KV cache is 23,040 bytes a cell: 4096 cells need more than 90 MiB.
        local ok, err = pcall(m.context, m, {n_ctx = 4096, memory_budget = 64 * 1024 * 1024})
        assert.is_false(ok)
        assert.is_truthy(err:find("^PLM_ERR_OOM: context needs [%d.]+ MiB %(KV cache [%d.]+ MiB for n_ctx=4096%) " ..
            "but the memory budget is 64%.0 MiB %(plm_context_params%.memory_budget%)"), err)
        local small = m:context({n_ctx = 64, memory_budget = 64 * 1024 * 1024})
        small:decode(m:tokenize(PROMPT))
        assert.are.equal(7043, argmax(small:logits())) -- " Paris" (1-based)
        ok, err = pcall(m.context, m, {n_ctx = 2 ^ 24})
        assert.is_false(ok)
        assert.is_truthy(err:find("the machine's memory", 1, true), err)
        assert.has_error(function() m:context({memory_budget = -1}) end)
        assert.has_error(function() m:context({memory_budget = 1.5}) end)
        small:close()
    end)

    it("point at the caller for bad arguments", function()
        local ok, err = pcall(function() m:generate(PROMPT, {max_token = 4}) end)
        assert.is_false(ok)
        assert.is_truthy(err:find("binding_spec.lua:%d+: generate: unknown option \"max_token\""))
        assert.has_error(function() m:generate(42) end)
        assert.has_error(function() m:classify("text", "not a list") end)
        assert.has_error(function() m:embed("x", {pooling = "max"}) end)
        assert.has_error(function() core.tokenize(m._h, 42, true, false) end,
            "bad argument #2 to 'tokenize' (string expected, got number)")
        assert.has_error(function() core.kv_clear(m._h) end,
            "bad argument #1 to 'kv_clear' (Context expected, got another userdata)")
        assert.has_error(function() core.kv_clear(io.stdout) end)
        assert.has_error(function() core.kv_clear(nil) end)
    end)

    it("an abort callback cancels a decode, leaving the cache as it was; its own errors propagate", function()
        local ctx = m:context({n_ctx = 128})
        ctx:decode(m:tokenize(PROMPT))
        local used = ctx:kv_used()
        local calls = 0
        ctx:set_abort(function() calls = calls + 1; return calls > 3 end)
        local ok, err = pcall(ctx.decode, ctx, m:tokenize(" Paris is a city"))
        assert.is_false(ok)
        assert.is_truthy(err:find("^PLM_ERR_CANCELLED"))
        assert.are.equal(used, ctx:kv_used())
        ctx:set_abort(function() error("stop right there") end)
        ok, err = pcall(ctx.decode, ctx, {1})
        assert.is_false(ok)
        assert.is_truthy(err:find("stop right there", 1, true))
        ctx:set_abort(function() core.kv_clear(ctx._h) end)
        ok, err = pcall(ctx.decode, ctx, {1})
        assert.is_false(ok)
        assert.is_truthy(err:find("cannot be called from an abort callback", 1, true))
        ctx:set_abort(nil)
        ctx:decode({1})
        assert.are.equal(used + 1, ctx:kv_used())
        -- a generator whose step fails ends with reason "error" and frees the context
        ctx:set_abort(function() return true end)
        local g = ctx:start(PROMPT, {max_tokens = 4})
        assert.has_error(function() g:step(100) end)
        assert.are.equal("error", g.reason)
        ctx:set_abort(nil)
        assert.are.equal(" Paris", (ctx:generate(PROMPT, {max_tokens = 1, temperature = 0})))
        ctx:close()
    end)
end)

-- Threads of this process: each context owns a worker thread (n_threads = 2), so a context that is
-- really freed shows as a thread gone.
local function n_threads()
    local f = assert(io.open("/proc/self/stat"))
    local stat = f:read("*a")
    f:close()
    return tonumber(stat:match("^%d+ %b() (.*)$"):match("^" .. ("%S+ "):rep(17) .. "(%d+)"))
end

describe("lifetimes", function()
    it("close() frees a model and its contexts at once and is idempotent", function()
        local model = plm.load(nil, {n_threads = H.threads})
        local before = n_threads()
        local ctx = model:context({n_ctx = 64})
        local g = ctx:start(PROMPT, {max_tokens = 4})
        g:step(2)
        assert.are.equal(before + 1, n_threads())
        collectgarbage("stop") -- what frees it is close(), not the collector
        model:close()
        assert.are.equal(before, n_threads())
        collectgarbage("restart")
        assert.is_true(model:closed())
        assert.is_true(ctx:closed())
        assert.is_true(g.done)
        model:close()
        ctx:close()
        assert.has_error(function() model:generate(PROMPT) end, "the Model is closed")
        assert.has_error(function() ctx:decode({1}) end, "the Context is closed")
        assert.is_truthy(tostring(model):find("closed", 1, true))
    end)

    -- Lua 5.4 syntax: compiled from a string, so that LuaJIT can parse this file.
    local scope = H.lua54 and assert(load([[
        local plm, H, PROMPT, n_threads = ...
        local model <close> = plm.load(nil, {n_threads = H.threads})
        local ctx <close> = model:context({n_ctx = 64})
        local g <close> = ctx:start(PROMPT, {max_tokens = 4, temperature = 0})
        g:step(3)
        assert(not model:closed())
        return model, ctx, g, n_threads()
    ]]))
    local it54 = H.lua54 and it or pending
    it54("<close> variables free at the end of their scope", function()
        local model_ref, ctx_ref, gen_ref, before = scope(plm, H, PROMPT, n_threads)
        assert.are.equal(before - 1, n_threads())
        assert.is_true(gen_ref.done)
        assert.is_true(ctx_ref:closed())
        assert.is_true(model_ref:closed())
    end)

    it("finalizers free what was never closed, children first", function()
        collectgarbage("collect")
        local before = n_threads()
        for _ = 1, 3 do
            local model = plm.load(nil, {n_threads = H.threads})
            local ctx = model:context({n_ctx = 64})
            local g = ctx:start(PROMPT, {max_tokens = 4})
            g:step(2)
            assert.are.equal(before + 1, n_threads())
            model, ctx, g = nil, nil, nil
            collectgarbage("collect")
            collectgarbage("collect")
            assert.are.equal(before, n_threads())
        end
        -- handles alone, dropped in the order that would be wrong if they did not pin their parents
        local mh = core.model_load(nil, nil)
        local ch = core.context_create(mh, nil)
        mh = nil
        collectgarbage("collect")
        core.decode(ch, {1, 2, 3}, 0, false)
        assert.are.equal(3, core.kv_used(ch))
        ch = nil
        collectgarbage("collect")
    end)
end)

describe("repack", function()
    it("load{repack = false} keeps the file's layout and gives the same logits, bit for bit", function()
        local m = H.model()
        local plain = plm.load(nil, {repack = false, n_threads = 2})
        assert.are.equal(0, plain.info.n_repacked)
        if plm.kernels == "avx512" then
            assert.is_true(m.info.n_repacked > m.info.n_bytes * 0.99 and m.info.n_repacked < m.info.n_bytes)
        else
            assert.are.equal(0, m.info.n_repacked)
        end
        local a, b = decoded(m), decoded(plain)
        local va, vb = a:logits(), b:logits()
        local differ = 0
        for i = 1, #va do
            if va[i] ~= vb[i] then differ = differ + 1 end
        end
        assert.are.equal(0, differ)
        assert.has_error(function() plm.load(nil, {repack = "no"}) end)
    end)
end)
