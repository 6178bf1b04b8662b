-- Classification heads (llama.cpp's cls.* tensors) through m:classify, on the tiny models with heads that
-- tools/make_cls_model.py made (transformers' scores in tests/data/tiny/cls.txt).
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helper.lua")
local plm = H.plm

local TINY = H.root .. "tests/data/tiny/"
-- max |pocketlm - transformers| over the scores (spread 3 to 8); measured 0.0018 (see tests/c/test_cls_head.c)
local TOL_SCORE = 0.02

-- The "qwen3_cls.gguf" block of cls.txt: its sequences' ids and transformers' scores (last-token pooling).
local function reranker_refs()
    local refs, inside, cur = {}, false, nil
    for line in io.lines(TINY .. "cls.txt") do
        local word, rest = line:match("^(%S+)%s*(.*)$")
        if word == "model" then inside = rest:match("^(%S+)") == "qwen3_cls.gguf" end
        if inside and word == "ids" then
            cur = {ids = {}}
            for x in rest:gmatch("%S+") do cur.ids[#cur.ids + 1] = H.toint(x) end
            refs[#refs + 1] = cur
        elseif inside and word == "scores" then
            cur.scores = {}
            for x in rest:gmatch("%-?[%d.]+") do cur.scores[#cur.scores + 1] = tonumber(x) end
        end
    end
    return refs
end

describe("classification head", function()
    local m
    lazy_setup(function() m = plm.load(TINY .. "qwen3_cls.gguf", {n_threads = 1}) end)
    lazy_teardown(function() m:close() end)

    it("is described by the model", function()
        assert.is_true(m:has_classifier_head())
        assert.are.same({"yes", "no"}, m:classifier_labels())
        assert.are.equal("last", m:classifier_pooling())
        assert.are.equal(2, m.info.n_cls_out)
    end)

    it("gives transformers' scores for the fixture's token sequences", function()
        local refs = reranker_refs()
        assert.are.equal(4, #refs)
        local core = require "pocketlm.core"
        local ctx = m:context({n_ctx = 64})
        for _, r in ipairs(refs) do
            local out = core.view_new("float32", 4)
            core.classify_head(ctx._h, r.ids, {#r.ids}, out)
            for o = 1, 2 do assert.is_true(math.abs(out[o] - r.scores[o]) <= TOL_SCORE) end
        end
        ctx:close()
    end)

    it("is what classify uses, with the result shape of zero-shot classification", function()
        local r = m:classify("the parcel never came")
        assert.are.same({"yes", "no"}, r.labels)
        assert.is_true(math.abs(r.probs.yes + r.probs.no - 1) < 1e-6)
        local e = math.exp(r.logits.yes - r.logits.no)
        assert.is_true(math.abs(r.probs.yes - e / (1 + e)) < 1e-6)
        assert.are.equal(r.ranked[1].label, r.label)
        assert.is_true(r.ranked[1].score >= r.ranked[2].score)
        -- a subset: the softmax of one score; multi_label: each score's sigmoid
        assert.are.equal(1, m:classify("the parcel never came", {"no"}).probs.no)
        local multi = m:classify("the parcel never came", nil, {multi_label = true})
        assert.is_true(math.abs(multi.probs.no - 1 / (1 + math.exp(-r.logits.no))) < 1e-6)
        -- zero-shot is still there when asked for
        local zs = m:classify("the parcel never came", {"yes", "no"}, {use_head = false, template = "{text}:"})
        assert.is_nil(zs.logits)
    end)

    it("refuses labels the head does not have, and a model without a head", function()
        local ok, err = pcall(function() m:classify("hello", {"maybe"}) end)
        assert.is_false(ok)
        assert.is_truthy(err:find("label \"maybe\" is not an output of the model's classification head", 1, true))
        local plain = plm.load(TINY .. "qwen3.gguf", {n_threads = 1})
        assert.is_false(plain:has_classifier_head())
        assert.are.same({}, plain:classifier_labels())
        ok, err = pcall(function() plain:classify("hello", nil, {use_head = true}) end)
        assert.is_false(ok)
        assert.is_truthy(err:find("no classification head", 1, true))
        assert.has_error(function() plain:classify("hello") end, "labels must be a non-empty list of strings")
        plain:close()
    end)
end)
