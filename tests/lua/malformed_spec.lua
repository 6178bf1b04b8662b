-- Malformed model files never crash the host: every case of the malformed-GGUF generator (tests/c/malformed_gguf.c,
-- the files the C and Python tests load too) raises a Lua error "<status>: <message>" naming the file and what is
-- wrong; the valid base model loads and generates, also after all the errors.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helper.lua")
local plm = H.plm

local CATEGORIES = {"valid", "truncation", "header", "counts", "lengths", "overflow", "alignment", "types",
                    "duplicates", "size-mismatch", "missing", "nan-inf", "metadata"}

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Runs the generator (POCKETLM_MALFORMED, else build/plm-malformed made by make) into a new directory; returns it
-- and the manifest's rows by category.
local function generate()
    local exe = os.getenv("POCKETLM_MALFORMED")
    if not exe or exe == "" then
        local out, ok = H.run("make -s --no-print-directory -C " .. shell_quote(H.root) .. " build/plm-malformed 2>&1")
        assert(ok, "make build/plm-malformed failed:\n" .. out)
        exe = H.root .. "build/plm-malformed"
    end
    local dir = assert(H.run("mktemp -d /tmp/plm_malformed_lua_XXXXXX")):gsub("%s+$", "")
    local out, ok = H.run(shell_quote(exe) .. " " .. shell_quote(dir) .. " 2>&1")
    assert(ok, "the generator failed:\n" .. out)
    local by_cat, n = {}, 0
    local first = true
    for line in io.lines(dir .. "/manifest.tsv") do
        if first then
            first = false
        else
            local file, status, needles, category, defect = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$")
            assert(file, "bad manifest line: " .. line)
            by_cat[category] = by_cat[category] or {}
            table.insert(by_cat[category], {file = file, path = dir .. "/" .. file, status = status, needles = needles,
                                            defect = defect})
            n = n + 1
        end
    end
    return dir, by_cat, n
end

local function run_base(path)
    local m = plm.load(path, {n_threads = 1, n_ctx = 32})
    assert.are.equal("llama", m.info.arch)
    assert.are.equal(8, m.info.n_vocab)
    local t = m:tokenize("ab a")
    assert.are.equal(1, t[1])
    assert.is_true(#t >= 2)
    assert.are.equal("string", type(m:generate("ab", {max_tokens = 4, temperature = 0})))
    m:close()
end

-- nil if loading the case behaves as its row says, else what went wrong.
local function check(row, use_mmap)
    local ok, res = pcall(plm.load, row.path, {n_threads = 1, use_mmap = use_mmap})
    if ok then
        res:close()
        if row.status ~= "PLM_OK" then return "loaded, want " .. row.status end
        local fine, err = pcall(run_base, row.path)
        return not fine and ("the valid model does not run: " .. tostring(err)) or nil
    end
    if row.status == "PLM_OK" then return "raised " .. tostring(res) end
    if type(res) ~= "string" then return "raised a " .. type(res) .. ", not a message" end
    if res:sub(1, #row.status + 2) ~= row.status .. ": " then return "message does not start with " .. row.status .. ": " .. res end
    if not res:find(row.path, 1, true) then return "message does not name the file: " .. res end
    for needle in (row.needles .. "|"):gmatch("([^|]*)|") do
        if not res:find(needle, 1, true) then return ("message lacks %q: %s"):format(needle, res) end
    end
    return nil
end

describe("malformed GGUF files", function()
    local dir, cases, total

    lazy_setup(function() dir, cases, total = generate() end)
    lazy_teardown(function() if dir then os.execute("rm -rf " .. shell_quote(dir)) end end)

    it("cover every category", function()
        for _, cat in ipairs(CATEGORIES) do assert.is_truthy(cases[cat], "no " .. cat .. " case") end
        local n = 0
        for _ in pairs(cases) do n = n + 1 end
        assert.are.equal(#CATEGORIES, n)
        assert.is_true(total >= 500)
    end)

    for _, cat in ipairs(CATEGORIES) do
        it("raise the error their status says: " .. cat, function()
            local failures, loads = {}, 0
            for _, row in ipairs(cases[cat]) do
                for _, use_mmap in ipairs({true, false}) do
                    loads = loads + 1
                    local problem = check(row, use_mmap)
                    if problem then
                        failures[#failures + 1] = ("%s (%s; mmap=%s): %s"):format(row.file, row.defect, use_mmap, problem)
                    end
                end
            end
            assert(#failures == 0, ("%d of %d loads:\n"):format(#failures, loads) .. table.concat(failures, "\n", 1, math.min(#failures, 20)))
            collectgarbage()
            run_base(cases.valid[1].path) -- the host lives on, the library still works
        end)
    end
end)
