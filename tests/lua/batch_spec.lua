-- Many prompts at once (m:generate_many, m:start_many / b:step) on the default model: each text equals
-- m:generate for that prompt alone (greedy and seeded), step budgets, per-item options, a prompt that cannot
-- fit fails alone, cancelling.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helper.lua")

local TOPICS = {"the sea", "a red bicycle", "bread", "the moon", "winter", "a small dog", "chess", "coffee",
                "mountains", "a train journey", "music", "a lost key"}

local function prompts()
    local ps = {}
    for i, t in ipairs(TOPICS) do
        ps[i] = (i % 2 == 0 and "Write one sentence about %s." or "Here is a story about %s. Once upon a time,"):format(t)
            .. (" Be precise."):rep(i % 4)
    end
    return ps
end

describe("generate_many", function()
    local m
    lazy_setup(function() m = H.model() end)

    it("gives each prompt what generate gives it alone (greedy)", function()
        local ps = prompts()
        local texts, reasons = m:generate_many(ps, {max_tokens = 10, temperature = 0, parallel = 6})
        assert.are.equal(#ps, #texts)
        for i, p in ipairs(ps) do
            local text, reason = m:generate(p, {max_tokens = 10, temperature = 0})
            assert.are.equal(text, texts[i])
            assert.are.equal(reason, reasons[i])
        end
    end)

    it("and with a fixed seed at temperature 0.8", function()
        local ps = prompts()
        local texts = m:generate_many(ps, {max_tokens = 8, temperature = 0.8, seed = 11, parallel = 6})
        for i, p in ipairs(ps) do
            assert.are.equal(m:generate(p, {max_tokens = 8, temperature = 0.8, seed = 11}), texts[i])
        end
    end)

    it("takes options per item", function()
        local texts, reasons = m:generate_many({
            {prompt = "The capital of France is", max_tokens = 1},
            {prompt = "The capital of France is", stop = "."},
            "The capital of Italy is",
        }, {temperature = 0, max_tokens = 4})
        assert.are.same({" Paris", " Paris", " Rome.\n\n"}, texts)
        assert.are.same({"length", "stop", "length"}, reasons)
    end)

    it("fails a prompt that cannot fit alone, naming it", function()
        local ps = {"The capital of France is", ("word "):rep(5000), "The capital of Italy is"}
        local ok, err = pcall(m.generate_many, m, ps, {max_tokens = 2, temperature = 0})
        assert.is_false(ok)
        assert.truthy(tostring(err):find("item 2: PLM_ERR_CONTEXT_FULL", 1, true))
        local texts, reasons, errs = m:generate_many(ps, {max_tokens = 2, temperature = 0, errors = "return"})
        assert.are.same({" Paris.", false, " Rome."}, texts)
        assert.are.equal("error", reasons[2])
        assert.truthy(errs[2]:find("request 1", 1, true))
    end)

    it("rejects bad options", function()
        assert.has_error(function() m:generate_many({"a"}, {temprature = 0}) end)
        assert.has_error(function() m:generate_many({"a"}, {parallel = 0}) end)
        assert.has_error(function() m:generate_many({{prompt = "a", bogus = 1}}) end)
        assert.has_error(function() m:generate_many("a") end)
    end)
end)

describe("start_many", function()
    local m
    lazy_setup(function() m = H.model() end)

    it("advances every prompt a few steps per call and returns the new text per index", function()
        local ps = prompts()
        local b = m:start_many(ps, {max_tokens = 6, temperature = 0, parallel = 4})
        local got, calls = {}, 0
        repeat
            local new, done = b:step(2)
            calls = calls + 1
            for i, piece in pairs(new) do
                assert.is_true(i >= 1 and i <= #ps)
                got[i] = (got[i] or "") .. piece
            end
        until done
        assert.is_true(calls > 2)
        for i, p in ipairs(ps) do
            local text, reason = b:result(i)
            assert.are.equal(text, got[i] or "")
            local alone, why = m:generate(p, {max_tokens = 6, temperature = 0})
            assert.are.equal(alone, text)
            assert.are.equal(why, reason)
        end
        b:close()
    end)

    it("cancels one prompt or all", function()
        local b = m:start_many({"Once upon a time", "The capital of France is", "Hello"}, {max_tokens = 0, parallel = 2})
        b:step(1)
        b:cancel(2)
        local _, reason = b:result(2)
        assert.are.equal("caller", reason)
        b:cancel()
        assert.is_true(b.done)
        local _, r3 = b:result(3)
        assert.are.equal("caller", r3)
        b:close()
        assert.has_error(function() b:step() end)
    end)
end)
