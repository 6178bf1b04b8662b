-- Chat formats (pocketlm.chat over the C core): the jinja2 renderings of the real templates in
-- tests/data/chat_templates.txt (made by tools/make_chat_fixtures.py), detection, stops and errors.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helper.lua")
local chat = H.plm.chat

-- The fixture: templates {name = text}, detections {name = {family, default or nil}}, cases.
local function read_fixture()
    local f = assert(io.open(H.root .. "tests/data/chat_templates.txt", "rb"))
    local data = f:read("*a")
    f:close()
    local pos = 1
    local function line()
        local nl = assert(data:find("\n", pos, true))
        local fields = {}
        for w in data:sub(pos, nl - 1):gmatch("%S+") do fields[#fields + 1] = w end
        pos = nl + 1
        return fields
    end
    local function blob(n)
        n = H.toint(n)
        assert(data:sub(pos + n, pos + n) == "\n")
        local s = data:sub(pos, pos + n - 1)
        pos = pos + n + 1
        return s
    end
    local templates, detections, cases = {}, {}, {}
    while pos <= #data do
        local f = line()
        if f[1]:sub(1, 1) == "#" then
            -- comment
        elseif f[1] == "T" then
            templates[f[2]] = blob(f[3])
        elseif f[1] == "D" then
            local default = blob(f[5])
            detections[f[2]] = {f[3], f[4] == "1" and default or nil}
        elseif f[1] == "C" then
            local msgs = {}
            for _ = 1, tonumber(f[4]) do
                local m = line()
                msgs[#msgs + 1] = {role = m[2], content = blob(m[3])}
            end
            local e = line()
            cases[#cases + 1] = {name = f[2], gen = f[3] == "1", msgs = msgs, expected = blob(e[2])}
        else
            error("bad fixture line " .. table.concat(f, " "))
        end
    end
    return templates, detections, cases
end

describe("pocketlm.chat", function()
    local templates, detections, cases = read_fixture()

    it("renders conversations exactly as the real Jinja templates do", function()
        assert.is_true(#cases >= 80)
        local per_family = {}
        for i, c in ipairs(cases) do
            local fmt = chat.detect(templates[c.name])
            local got = fmt:render(c.msgs, c.gen)
            if got ~= c.expected then
                error(("case %d (%s): got %q, want %q"):format(i, c.name, got, c.expected))
            end
            per_family[fmt.name] = (per_family[fmt.name] or 0) + 1
        end
        for _, name in ipairs(chat.names) do assert.is_true(per_family[name] >= 20, name) end
    end)

    it("detects the family and default system message as the rules say", function()
        local n = 0
        for name, want in pairs(detections) do
            local fmt = chat.detect(templates[name])
            assert.are.same(want, {fmt.name, fmt.default_system}, name)
            n = n + 1
        end
        assert.is_true(n >= 20)
        assert.are.equal("chatml", chat.detect(nil).name)
        assert.is_nil(chat.detect(nil).default_system)
    end)

    it("has the four formats and their stop markers", function()
        assert.are.same({"chatml", "llama3", "gemma", "phi3"}, chat.names)
        assert.are.same({"<|im_end|>"}, chat.format("chatml").stop)
        assert.are.same({"<|eot_id|>"}, chat.format("llama3").stop)
        assert.are.same({"<end_of_turn>"}, chat.format("gemma").stop)
        assert.are.same({"<|end|>"}, chat.format("phi3").stop)
        assert.are.equal("pocketlm.chat format gemma", tostring(chat.format("gemma")))
        local ok, err = pcall(chat.format, "nope")
        assert.is_false(ok)
        assert.matches('unknown chat format "nope"; known: chatml, llama3, gemma, phi3', err, 1, true)
        -- a default system message given by hand; "" is one too
        assert.are.equal("<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
            chat.format("chatml", "Be kind."):render("Hi", false))
        assert.are.equal("<|im_start|>system\n<|im_end|>\n", chat.format("chatml", ""):render({}, false))
    end)

    it("keeps NUL bytes and strips Unicode whitespace as Python does", function()
        assert.are.equal("<|im_start|>user\na\0b<|im_end|>\n", chat.format("chatml"):render({{role = "user", content = "a\0b"}}, false))
        -- U+3000 and U+001C are whitespace to Python (and Jinja's trim); U+200B is not
        assert.are.equal("<|start_header_id|>user<|end_header_id|>\n\n\u{200B}Hi<|eot_id|>",
            chat.format("llama3"):render("\u{3000}\x1c\u{200B}Hi\n", false))
    end)

    it("gives errors naming the message (counted from 1)", function()
        local fmt = chat.format("gemma")
        local ok, err = pcall(fmt.render, fmt, {{role = "user", content = "a"}, {role = "tool", content = "b"}})
        assert.is_false(ok)
        assert.matches('^PLM_ERR_ARG: message 2: role "tool" is not one of system, user, assistant', err)
        ok, err = pcall(fmt.render, fmt, {{role = "user", content = "ok"}, {role = "user", content = "\xff"}})
        assert.is_false(ok)
        assert.matches("^PLM_ERR_ARG: message 2: content is not valid UTF%-8", err)
        ok, err = pcall(fmt.render, fmt, {{role = "user\0", content = "a"}})
        assert.is_false(ok)
        assert.matches("message 1", err)
        ok, err = pcall(fmt.render, fmt, {{role = "user", content = 3}})
        assert.is_false(ok)
        assert.matches("message 1: role and content must be strings", err)
        ok, err = pcall(chat.format("chatml", "\xc0").render, chat.format("chatml", "\xc0"), "Hi")
        assert.is_false(ok)
        assert.matches("default system message is not valid UTF%-8", err)
        ok, err = pcall(chat.detect, "<|im_start|>\xfe")
        assert.is_false(ok)
        assert.matches("chat template: invalid UTF%-8 at byte 12", err)
    end)

    it("is what the model's chat uses", function()
        local m = H.model()
        local fmt = m:chat_format()
        assert.are.equal("chatml", fmt.name)
        assert.are.equal("You are a helpful AI assistant named SmolLM, trained by Hugging Face", fmt.default_system)
        assert.are.equal(fmt:render({{role = "user", content = "Hi"}}), m:apply_chat_template({{role = "user", content = "Hi"}}))
        local ok, err = pcall(m.apply_chat_template, m, {{role = "robot", content = "Hi"}})
        assert.is_false(ok)
        assert.matches('message 1: role "robot"', err, 1, true)
    end)
end)
