-- LoRA adapters from Lua: m:load_adapter, m:context({adapters = ...}), m:generate(..., {adapters = ...}).
-- References: transformers + PEFT (tests/data/tiny/llama_lora.txt, tools/make_tiny_lora.py) and the toy adapter
-- trained by tools/train_lora.py on the default model (tests/data/lora/lora_smollm2.*).
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helper.lua")
local plm = H.plm

local TINY = H.root .. "tests/data/tiny/"
local TOL = 0.15 -- as tests/c/test_lora.c (8-bit A and B: about 1% of the random adapters' effect)

-- cols, and for each case its sequences {ids, rows}
local function read_ref()
    local cols, cases, case, seq = nil, {}, nil, nil
    for line in io.lines(TINY .. "llama_lora.txt") do
        local w = {}
        for x in line:gmatch("%S+") do w[#w + 1] = x end
        if w[1] == "cols" then
            cols = {}
            for i = 2, #w do cols[#cols + 1] = tonumber(w[i]) end
        elseif w[1] == "case" then
            case = {seqs = {}}
            cases[w[2]] = case
        elseif w[1] == "seq" then
            seq = {rows = {}}
            case.seqs[#case.seqs + 1] = seq
        elseif w[1] == "ids" then
            seq.ids = {}
            for i = 2, #w do seq.ids[#seq.ids + 1] = tonumber(w[i]) end
        elseif w[1] == "pos" then
            local row = {}
            for i = 3, #w do row[#row + 1] = tonumber(w[i]) end
            seq.rows[#seq.rows + 1] = row
        end
    end
    return cols, cases
end

local function worst(ctx, cols, seqs)
    local err = 0
    for _, s in ipairs(seqs) do
        ctx:kv_clear()
        ctx:decode(s.ids, {logits_all = true})
        for i, row in ipairs(s.rows) do
            local l = ctx:logits(i - 1)
            for k, c in ipairs(cols) do err = math.max(err, math.abs(l[c + 1] - row[k])) end
        end
    end
    return err
end

describe("LoRA adapters", function()
    local m = plm.load(TINY .. "llama.gguf", {n_threads = 2, n_ctx = 64})
    local a1 = m:load_adapter(TINY .. "llama_lora.gguf")
    local a2 = m:load_adapter(TINY .. "llama_lora_q8.gguf")
    local cols, cases = read_ref()

    it("match transformers + PEFT on the tiny llama, one or two at once", function()
        assert.are.equal(4, a1:rank())
        assert.are.equal(8.0, a1:alpha())
        assert.are.equal(14, a1:n_targets())
        for name, list in pairs({a1 = {a1}, a2 = {{a2, 1.0}}, both = {{a1, 1.0}, {a2, 0.5}}}) do
            -- closed by hand, not with <close>: this file runs under LuaJIT too
            local ctx = m:context({adapters = list})
            local e = worst(ctx, cols, cases[name].seqs)
            assert.is_true(e <= TOL, name .. ": " .. e)
            ctx:set_adapters(nil)
            assert.is_true(worst(ctx, cols, cases[name].seqs) > 1.0)
            ctx:close()
        end
    end)

    it("refuse what does not fit", function()
        assert.has_error(function() m:load_adapter(TINY .. "llama.gguf") end)
        local other = plm.load(TINY .. "mistral.gguf", {n_ctx = 32})
        local ok, err = pcall(other.load_adapter, other, TINY .. "llama_lora.gguf")
        assert.is_false(ok)
        assert.truthy(tostring(err):find("shapes", 1, true))
        assert.has_error(function() other:context({adapters = {a1}}) end)
        local ctx = m:context({adapters = {a1}})
        assert.has_error(function() ctx:set_adapters({{a1, 0 / 0}}) end)
        assert.has_error(function() ctx:set_adapters({"x"}) end)
        assert.are.equal(1, #ctx:adapters())
        ctx:close()
        other:close()
    end)

    it("change the default model's answers as trained (tools/train_lora.py)", function()
        local dm = H.model()
        local robot = dm:load_adapter(H.root .. "tests/data/lora/lora_smollm2.gguf")
        local tuned = dm:chat("Who invented basketball?", {adapters = {robot}, max_tokens = 12, temperature = 0})
        local plain = dm:chat("Who invented basketball?", {max_tokens = 12, temperature = 0})
        assert.truthy(tuned:find("^BEEP BOOP"), tuned)
        assert.falsy(plain:find("BEEP", 1, true), plain)
    end)
end)
