-- Generation on the default model: the C CLI's greedy output, streams, chat, step-wise budgets, coroutines.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helper.lua")
local plm = H.plm

local PROMPT = "The capital of France is"
local GREEDY = {max_tokens = 16, temperature = 0}

describe("generation", function()
    local m
    lazy_setup(function() m = H.model() end)

    it("at temperature 0 equals the C CLI's greedy output", function()
        local cli, ok = H.run(("%sbuild/pocketlm generate -t %d -p %q -n 16 2>/dev/null"):format(H.root, H.threads,
            PROMPT))
        assert.is_true(ok)
        assert.are.equal("\n", cli:sub(-1)) -- the CLI ends with a newline of its own
        local text, reason = m:generate(PROMPT, GREEDY)
        assert.are.equal(cli:sub(1, -2), text)
        assert.are.equal("length", reason)
        assert.are.equal(" Paris.", text:sub(1, 7))
    end)

    it("streams the same text piece by piece", function()
        local pieces = {}
        for piece in m:stream(PROMPT, GREEDY) do pieces[#pieces + 1] = piece end
        assert.is_true(#pieces > 1)
        assert.are.equal(m:generate(PROMPT, GREEDY), table.concat(pieces))
    end)

    it("frees the context when a stream loop is left early", function()
        for piece in m:stream(PROMPT, GREEDY) do
            assert.are.equal(" Paris", piece)
            break
        end
        -- Lua 5.4 closes the loop's fourth value at the break; LuaJIT has no such thing: the collector does it.
        if not H.lua54 then
            collectgarbage()
            collectgarbage()
        end
        assert.are.equal(" Paris", m:generate(PROMPT, {max_tokens = 1, temperature = 0}))
    end)

    it("stops before a stop string and never emits it", function()
        local text, reason = m:generate(PROMPT, {max_tokens = 16, temperature = 0, stop = {"."}})
        assert.are.equal(" Paris", text)
        assert.are.equal("stop", reason)
    end)

    it("is reproducible with a seed", function()
        local o = {max_tokens = 12, temperature = 1.0, seed = 1234}
        assert.are.equal(m:generate("Once upon a time", o), m:generate("Once upon a time", o))
    end)

    it("chat applies SmolLM2's ChatML template with its default system prompt", function()
        local prompt, stops = m:apply_chat_template({{role = "user", content = "Hi"}})
        assert.are.equal("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face" ..
            "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", prompt)
        assert.are.same({"<|im_end|>"}, stops)
        local own = m:apply_chat_template({{role = "system", content = "Be brief."}, {role = "user", content = "Hi"}})
        assert.are.equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n" ..
            "<|im_start|>assistant\n", own)
        local reply, reason = m:chat({{role = "user", content = "What is the capital of France?"}},
            {max_tokens = 24, temperature = 0})
        assert.is_true(#reply > 0)
        assert.is_nil(reply:find("<|im_", 1, true))
        local question = m:apply_chat_template({{role = "user", content = "What is the capital of France?"}})
        assert.are.equal(m:generate(question, {max_tokens = 24, temperature = 0, stop = "<|im_end|>"}), reply)
        assert.is_truthy(reason == "eog" or reason == "length")
    end)

    it("step-wise generation equals generate and never exceeds its budget", function()
        local want = m:generate(PROMPT, GREEDY)
        for _, n in ipairs({1, 2, 3, 5}) do
            local ctx = m:context({n_ctx = 256})
            local g = ctx:start(PROMPT, GREEDY)
            assert.are.equal(0, ctx:kv_used()) -- start() does no model work
            local parts, calls = {}, 0
            repeat
                local used0, gen0 = ctx:kv_used(), g.n_generated
                local text, done, used = g:step(n)
                calls = calls + 1
                assert.is_true(ctx:kv_used() - used0 <= n, "decoded more tokens than the budget")
                assert.is_true(g.n_generated - gen0 <= n)
                assert.is_true(used <= n and used >= 1)
                assert.is_true(H.is_integer(used))
                parts[#parts + 1] = text
            until done
            assert.are.equal(want, table.concat(parts))
            assert.are.equal(want, g:text())
            assert.are.equal("length", g.reason)
            assert.are.equal(16, g.n_generated)
            assert.are.equal(16, #g:tokens())
            assert.is_true(calls >= math.ceil((#m:tokenize(PROMPT) + 16) / n))
            assert.are.same({"", true, 0}, {g:step(4)})
            ctx:close()
        end
    end)

    it("reuses the cached prefix of a longer prompt", function()
        local ctx = m:context({n_ctx = 256})
        ctx:generate(PROMPT, {max_tokens = 1, temperature = 0})
        local g = ctx:start(PROMPT .. " Paris, and the capital of Spain is", GREEDY)
        local n_new = #m:tokenize(PROMPT .. " Paris, and the capital of Spain is") - #m:tokenize(PROMPT)
        assert.are.equal(n_new, g:prompt_pending())
        g:cancel()
        ctx:close()
    end)

    it("cancel ends a generation and frees its context", function()
        local g = m:start(PROMPT, GREEDY)
        g:step(8)
        assert.has_error(function() m:generate(PROMPT, GREEDY) end)
        local ok, err = pcall(m.generate, m, PROMPT, GREEDY)
        assert.is_false(ok)
        assert.is_truthy(err:find("busy", 1, true))
        g:cancel()
        assert.is_true(g.done)
        assert.are.equal("cancelled", g.reason)
        assert.are.same({"", true, 0}, {g:step(2)})
        g:cancel()
        assert.are.equal(" Paris", (m:generate(PROMPT, {max_tokens = 1, temperature = 0})))
    end)

    it("runs from coroutines, several generators interleaved on their own contexts", function()
        local prompts = {PROMPT, "The capital of Italy is", "The largest planet is"}
        local want, results, cos = {}, {}, {}
        for i, p in ipairs(prompts) do want[i] = m:generate(p, {max_tokens = 8, temperature = 0}) end
        for i, p in ipairs(prompts) do
            cos[i] = coroutine.create(function()
                local ctx = m:context({n_ctx = 128})
                local g = ctx:start(p, {max_tokens = 8, temperature = 0})
                local parts = {}
                while true do
                    local text, done = g:step(2)
                    parts[#parts + 1] = text
                    if done then break end
                    coroutine.yield()
                end
                results[i] = table.concat(parts)
                g:close()
                ctx:close()
            end)
        end
        local running = #cos
        while running > 0 do
            running = 0
            for _, co in ipairs(cos) do
                if coroutine.status(co) ~= "dead" then
                    assert(coroutine.resume(co))
                    running = running + 1
                end
            end
        end
        assert.are.same(want, results)
    end)

    it("takes tokens as a prompt", function()
        local toks = m:tokenize(PROMPT)
        assert.are.equal(m:generate(PROMPT, GREEDY), m:generate(toks, GREEDY))
        assert.are.equal(m:generate(PROMPT, GREEDY), m:generate(toks:totable(), GREEDY))
    end)
end)

describe("classification and embeddings", function()
    local m
    lazy_setup(function() m = H.model() end)

    it("classify picks the label the model finds likeliest; probabilities sum to 1", function()
        local r = m:classify("The food was cold and the waiter was rude.", {"positive", "negative"})
        assert.are.equal("negative", r.label)
        assert.are.equal(r.probs.negative, r.score)
        assert.are.equal("negative", r.ranked[1].label)
        assert.is_true(math.abs(r.probs.positive + r.probs.negative - 1) < 1e-5)
        assert.is_true(r.logprobs.negative < 0)
        -- multi-label: each label judged alone (yes or no), so the probabilities need not sum to 1
        local multi = m:classify("The striker scored twice in the final.", {"sports", "cooking"}, {multi_label = true})
        for _, p in pairs(multi.probs) do assert.is_true(p > 0 and p < 1) end
        assert.is_true(math.abs(multi.probs.sports + multi.probs.cooking - 1) > 1e-3)
    end)

    it("scores the prompt C builds; a label follows Unicode whitespace without a space", function()
        local core = require "pocketlm.core"
        local function toks(text) return m:tokenize(text, {add_special = false}):totable() end
        local labels = {"positive", "negative"}
        for _, case in ipairs({{"great", " "}, {"great\u{a0}", ""}, {"great\u{3000}", ""}, {"great\t", ""},
                               {"great\n", ""}, {"great\u{200b}", " "}}) do
            local text, sep = case[1], case[2]
            local p, labs = m:classification_prompt(text, labels, {template = "Review: {text}"})
            local want = (m.info.add_bos and m.info.bos >= 0) and {m.info.bos} or {}
            for _, t in ipairs(toks("Review:")) do want[#want + 1] = t end
            for _, t in ipairs(toks(" " .. text)) do want[#want + 1] = t end
            assert.are.same(want, p:totable())
            assert.are.same(toks(sep .. "negative"), labs[2])
            -- classify scores exactly these tokens
            local r = m:classify(text, labels, {template = "Review: {text}"})
            local ctx = m:context({n_ctx = 256})
            local flat, lens = {}, {}
            for j, l in ipairs(labs) do
                lens[j] = #l
                for _, t in ipairs(l) do flat[#flat + 1] = t end
            end
            local out = core.view_new("float32", 4)
            core.classify(ctx._h, p, flat, lens, nil, out)
            assert.are.equal(out[1], r.logprobs.positive)
            assert.are.equal(out[2], r.logprobs.negative)
            ctx:close()
        end
        local ok, err = pcall(m.classify, m, "great", labels, {template = "Review:"})
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find("the template has no {text} placeholder", 1, true))
    end)

    it("embed returns unit-length float32 views, C writing in place", function()
        local e = m:embed("a cat")
        assert.are.equal(m.info.n_embd, #e)
        assert.are.equal("float32", e:type())
        local ss = 0
        for i = 1, #e do ss = ss + e[i] * e[i] end
        assert.is_true(math.abs(ss - 1) < 1e-3)
        local rows = m:embed({"a cat", "a dog"})
        assert.are.equal(2, #rows)
        for k = 1, #e do assert.is_true(math.abs(rows[1][k] - e[k]) < 1e-5) end
        assert.are.equal(m.info.n_embd, #rows[2])
    end)
end)
