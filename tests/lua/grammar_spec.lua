-- Structured output from Lua: json_schema, grammar, regex and choices in the options table; loud errors.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helper.lua")
local plm = H.plm

describe("structured output", function()
    local m
    lazy_setup(function() m = H.model() end)

    it("keeps to a list of choices, greedy and sampled", function()
        local choices = {" sunny", " rainy", " cloudy and cold"}
        for seed = 0, 2 do
            local opts = {choices = choices, temperature = seed == 0 and 0 or 1.0, seed = seed}
            local text, reason = m:generate("The weather today is", opts)
            assert.are.equal("eog", reason)
            local found = false
            for _, c in ipairs(choices) do found = found or c == text end
            assert.is_true(found, text)
        end
    end)

    it("matches a regular expression", function()
        local text, reason = m:generate("Call us at", {regex = "\\(\\d{3}\\) \\d{3}-\\d{4}", temperature = 0,
                                                       max_tokens = 40})
        assert.are.equal("eog", reason)
        assert.truthy(text:match("^%(%d%d%d%) %d%d%d%-%d%d%d%d$"), text)
    end)

    it("follows a JSON Schema given as JSON text", function()
        local schema = '{"type":"object","properties":{"name":{"type":"string","maxLength":12},' ..
                       '"legs":{"type":"integer","minimum":0,"maximum":8}},"required":["name","legs"]}'
        local text, reason = m:generate("A JSON object describing a spider:", {json_schema = schema, temperature = 0,
                                                                                max_tokens = 60})
        assert.are.equal("eog", reason)
        local name, legs = text:match('^{"name":%s?"([^"]*)",%s?"legs":%s?(%d)}$')
        assert.truthy(name, text)
        assert.is_true(#name <= 12 and tonumber(legs) <= 8)
    end)

    it("holds a grammar per request in generate_many", function()
        local schema = '{"type":"object","properties":{"n":{"type":"integer","minimum":0,"maximum":9}},"required":["n"]}'
        local prompts = {"A JSON object with one digit:", "Some JSON:", "Pick a number from 0 to 9 as JSON:"}
        collectgarbage()
        local texts, reasons = m:generate_many(prompts, {json_schema = schema, temperature = 0, max_tokens = 20})
        for i, p in ipairs(prompts) do
            local one, why = m:generate(p, {json_schema = schema, temperature = 0, max_tokens = 20})
            assert.are.equal(one, texts[i])
            assert.are.equal(why, reasons[i])
            assert.truthy(texts[i]:match('^{%s?"n":%s?%d%s?}$'), texts[i])
        end
        local mixed = m:generate_many({{prompt = "Review: loved it. Sentiment:", choices = {" positive", " negative"}},
                                       {prompt = "Call us at", regex = "\\(\\d{3}\\) \\d{3}-\\d{4}"}},
                                      {temperature = 0, max_tokens = 24})
        assert.is_true(mixed[1] == " positive" or mixed[1] == " negative", mixed[1])
        assert.truthy(mixed[2]:match("^%(%d%d%d%) %d%d%d%-%d%d%d%d$"), mixed[2])
    end)

    it("follows a GBNF grammar and streams it", function()
        local g = 'root ::= "The answer is " ("yes" | "no") "."\n'
        local parts = {}
        for piece in m:stream("Is fire hot?", {grammar = g, temperature = 0}) do parts[#parts + 1] = piece end
        local text = table.concat(parts)
        assert.truthy(text == "The answer is yes." or text == "The answer is no.", text)
    end)

    it("reports a cut structure as length", function()
        local text, reason = m:generate("Numbers:", {json_schema = '{"type":"array","items":{"type":"integer"},"minItems":40}',
                                                      max_tokens = 4, temperature = 0})
        assert.are.equal("length", reason)
        assert.are.equal("[", text:sub(1, 1))
    end)

    it("raises errors that name line:column", function()
        local ok, err = pcall(m.generate, m, "x", {grammar = 'root ::= "a" (\n'})
        assert.is_false(ok)
        assert.truthy(tostring(err):find("line 2:1", 1, true), err)
        ok, err = pcall(m.generate, m, "x", {json_schema = '{"type":"integer","multipleOf":2}'})
        assert.is_false(ok)
        assert.truthy(tostring(err):find("unsupported keyword 'multipleOf'", 1, true), err)
        ok, err = pcall(m.generate, m, "x", {regex = "a(b"})
        assert.is_false(ok)
        assert.truthy(tostring(err):find("regex line 1:2", 1, true), err)
        ok, err = pcall(m.generate, m, "x", {regex = "a", choices = {"b"}})
        assert.is_false(ok)
        assert.truthy(tostring(err):find("give one of", 1, true), err)
        ok, err = pcall(m.generate, m, "x", {json_schema = {type = "object"}})
        assert.is_false(ok)
        assert.truthy(tostring(err):find("json_schema must be a string", 1, true), err)
    end)
end)
