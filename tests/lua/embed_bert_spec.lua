-- A BERT sentence embedder (all-MiniLM-L6-v2, F16) through m:embed, against sentence-transformers' embeddings
-- in tests/data/embed_minilm.tsv (tools/make_bert_fixtures.py). The GGUF is converted into the cache by the
-- Python tests (tests/python/test_bert.py) or `python -m pocketlm download all-minilm-l6-v2`.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helper.lua")
local plm = H.plm

local function cache_dir()
    local c, x, h = os.getenv("POCKETLM_CACHE"), os.getenv("XDG_CACHE_HOME"), os.getenv("HOME")
    if c and c ~= "" then return c end
    if x and x ~= "" then return x .. "/pocketlm" end
    return (h or ".") .. "/.cache/pocketlm"
end

local PATH = cache_dir() .. "/all-MiniLM-L6-v2.F16.gguf"

-- A little-endian float16 at s[i] (the fixture stores the vectors as float16), by arithmetic: LuaJIT has no
-- string.unpack and no bit operators.
local function f16(s, i)
    local lo, hi = s:byte(i, i + 1)
    local sign = hi >= 128 and -1 or 1
    local exp = math.floor((hi % 128) / 4)
    local mant = (hi % 4) * 256 + lo
    if exp == 0 then return sign * mant * 2 ^ -24 end
    if exp == 31 then return mant == 0 and sign * math.huge or 0 / 0 end
    return sign * (1 + mant / 1024) * 2 ^ (exp - 15)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64decode(s)
    local val = {}
    for i = 1, #B64 do val[B64:sub(i, i)] = i - 1 end
    local out, bits, n = {}, 0, 0
    for c in s:gmatch("[^=]") do
        bits = bits * 64 + val[c] -- arithmetic, not bit operators: LuaJIT has none
        n = n + 6
        if n >= 8 then
            n = n - 8
            out[#out + 1] = string.char(math.floor(bits / 2 ^ n))
            bits = bits % 2 ^ n
        end
    end
    return table.concat(out)
end

-- Every fourth sentence of the fixture (short and long ones; the Python test takes them all).
local function cases()
    local list, n = {}, 0
    for line in io.lines(H.root .. "tests/data/embed_minilm.tsv") do
        if line:sub(1, 1) ~= "#" then n = n + 1 end
        if line:sub(1, 1) ~= "#" and n % 4 == 1 then
            local hex, b64 = line:match("^(%x+)\t(%S+)$")
            local text = hex:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)
            local raw, vec = b64decode(b64), {}
            for i = 1, #raw, 2 do vec[#vec + 1] = f16(raw, i) end
            list[#list + 1] = {text = text, vec = vec}
        end
    end
    return list
end

local have = io.open(PATH, "rb")
if have then have:close() end

describe("bert embedder", function()
    if not have then
        pending("needs " .. PATH .. " (python -m pocketlm download all-minilm-l6-v2)")
        return
    end
    local m
    lazy_setup(function() m = plm.load(PATH, {n_threads = 1}) end)
    lazy_teardown(function() m:close() end)

    it("is an encoder that mean-pools", function()
        assert.is_true(m:is_encoder())
        assert.are.equal("mean", m:embed_pooling())
        assert.are.equal("bert", m.info.arch)
    end)

    it("gives sentence-transformers' embeddings", function()
        local list = cases()
        assert.is_true(#list >= 80)
        local texts = {}
        for i, c in ipairs(list) do texts[i] = c.text end
        local rows = m:embed(texts)
        for i, c in ipairs(list) do
            local dot, na, nb = 0, 0, 0
            for k = 1, #c.vec do
                dot = dot + rows[i][k] * c.vec[k]
                na = na + rows[i][k] ^ 2
                nb = nb + c.vec[k] ^ 2
            end
            local cos = dot / math.sqrt(na * nb)
            assert.is_true(cos >= 0.9999, ("text %d: cosine %.6f"):format(i, cos))
        end
    end)

    it("pools as asked", function()
        local mean, cls = m:embed("The cat sits outside."), m:embed("The cat sits outside.", {pooling = "cls"})
        local dot = 0
        for k = 1, #mean do dot = dot + mean[k] * cls[k] end
        assert.is_true(dot < 0.99)
    end)

    it("truncates only when asked", function()
        local words = {}
        for i = 1, 400 do words[i] = "word" .. i end
        local long = table.concat(words, " ") -- about 1,200 tokens
        local ids = m:tokenize(long)
        assert.is_true(#ids > 512)
        local ok, err = pcall(function() return m:embed(long) end)
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find("tokens"))
        local function first_and_last(n) -- the first n-1 tokens and the closing [SEP], as one token list
            local t = {}
            for k = 1, n - 1 do t[k] = ids[k] end
            t[n] = ids[#ids]
            return t
        end
        local function max_diff(a, b)
            local d = 0
            for k = 1, #a do d = math.max(d, math.abs(a[k] - b[k])) end
            return d
        end
        local cut = m:embed({long, "short"}, {truncate = true})
        assert.is_true(max_diff(cut[1], m:embed({first_and_last(512)})[1]) < 1e-6)
        assert.is_true(max_diff(cut[2], m:embed("short")) < 1e-6) -- short texts are left alone
        local st = m:embed(long, {truncate = 256}) -- sentence-transformers' cut for MiniLM
        assert.is_true(max_diff(st, m:embed({first_and_last(256)})[1]) < 1e-6)
        assert.has_error(function() m:embed("short", {truncate = 1}) end)
        local ok2, err2 = pcall(function() return m:embed("short", {truncate = "yes"}) end)
        assert.is_false(ok2)
        assert.is_truthy(tostring(err2):find("truncate"))
    end)

    it("refuses to generate", function()
        assert.has_error(function() m:generate("Hello", {max_tokens = 2}) end)
        local ok, err = pcall(function() m:generate("Hello", {max_tokens = 2}) end)
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find("encoder"))
    end)
end)
