-- plm.load(path, {vocab_only = true}): the vocabulary and metadata alone, on the real default model.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helper.lua")
local plm = H.plm

describe("vocab_only", function()
    local full, voc
    lazy_setup(function()
        full = H.model()
        voc = plm.load(nil, {vocab_only = true})
    end)
    lazy_teardown(function() voc:close() end)

    it("tokenizes exactly as the whole model", function()
        for _, text in ipairs({"Hello world", "  runs  of spaces\n\n12345", "caf\xc3\xa9 \xf0\x9f\x98\x80"}) do
            for _, special in ipairs({false, true}) do
                local a, b = full:tokenize(text, {parse_special = special}), voc:tokenize(text, {parse_special = special})
                assert.are.equal(#a, #b)
                for i = 1, #a do assert.are.equal(a[i], b[i]) end
                assert.are.equal(full:detokenize(a), voc:detokenize(b))
            end
        end
        assert.are.equal(full.info.n_vocab, voc.info.n_vocab)
        assert.are.equal(full.info.chat_template, voc.info.chat_template)
        assert.are.equal("none", voc.info.file_type)
    end)

    it("refuses what needs the weights, saying why", function()
        local ok, err = pcall(function() return voc:context() end)
        assert.is_false(ok)
        assert.truthy(tostring(err):find("vocabulary-only", 1, true))
        ok, err = pcall(function() return voc:generate("Hi", {max_tokens = 2}) end)
        assert.is_false(ok)
        assert.truthy(tostring(err):find("vocabulary-only", 1, true))
    end)

    it("checks the option's type", function()
        assert.has_error(function() plm.load(nil, {vocab_only = "yes"}) end)
    end)
end)
