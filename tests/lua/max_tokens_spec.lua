-- max_tokens <= 0 means "until the context is full", as in C, Python and both command lines.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helper.lua")

local PROMPT = "The capital of France is"

describe("max_tokens", function()
    local m
    lazy_setup(function() m = H.model() end)

    it("<= 0 generates until the context is full", function()
        local ctx = m:context({n_ctx = 40})
        local texts = {}
        for _, mt in ipairs({0, -1, -2147483648}) do
            local text, reason = ctx:generate(PROMPT, {max_tokens = mt, ignore_eos = true, temperature = 0})
            assert.are.equal("context_full", reason, tostring(mt))
            assert.are.equal(40, ctx:kv_used(), tostring(mt))   -- every cell holds a token
            texts[#texts + 1] = text
        end
        assert.are.equal(texts[1], texts[2])
        assert.are.equal(texts[1], texts[3])
        local short, reason = ctx:generate(PROMPT, {max_tokens = 3, ignore_eos = true, temperature = 0})
        assert.are.equal("length", reason)
        assert.are.equal(short, texts[1]:sub(1, #short))
        assert.is_true(#texts[1] > #short)
        ctx:close()
    end)

    it("outside int32 or not an integer is an error naming it", function()
        for _, bad in ipairs({2147483648, -2147483649, 2 ^ 62, 2.5, "8", true}) do
            local ok, err = pcall(m.generate, m, PROMPT, {max_tokens = bad})
            assert.is_false(ok)
            assert.is_truthy(tostring(err):find("max_tokens", 1, true), tostring(err))
        end
    end)
end)
