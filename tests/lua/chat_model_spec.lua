-- Chats rendered by the model's own template (m:apply_chat_template, m:chat over plm_chat_apply): the default
-- model's template gives what the family renderer (held to jinja2 by chat_spec.lua's fixture) gives, tools,
-- tool calls and template variables reach the template as JSON, named formats, and the errors: messages counted
-- from 1, a construct the interpreter lacks named with its line. (Python's test_chat_model.py holds the same API
-- to jinja2 itself.)
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helper.lua")
local chat = H.plm.chat

describe("m:apply_chat_template", function()
    local m
    setup(function() m = H.plm.load(nil, {vocab_only = true}) end)
    teardown(function() m:close() end)

    it("renders the default model's template as before", function()
        local fmt = m:chat_format()
        local convs = {
            {{role = "user", content = "Hi"}},
            {{role = "system", content = "Be brief."}, {role = "user", content = "Hi"}, {role = "assistant", content = "Hello!"},
                {role = "user", content = " 2+2?\n"}},
            {{role = "user", content = "quotes \" \\ tab\t nul\0 bell\a \xe2\x80\x94 \xf0\x9f\x98\x80"}},
        }
        for i, msgs in ipairs(convs) do
            for _, gen in ipairs({true, false}) do
                local prompt, stops = m:apply_chat_template(msgs, {add_generation_prompt = gen})
                assert.are.equal(fmt:render(msgs, gen), prompt, "conversation " .. i)
                assert.are.same({"<|im_end|>"}, stops)
            end
        end
    end)

    it("renders a named format as its family renderer", function()
        local msgs = {{role = "system", content = " Sys "}, {role = "user", content = "a\0b"}}
        for _, name in ipairs(chat.names) do
            local prompt, stops = m:apply_chat_template(msgs, {template = name})
            assert.are.equal(chat.format(name):render(msgs), prompt)
            assert.are.same(chat.format(name).stop, stops)
        end
    end)

    it("gives tools, tool calls and variables to the template", function()
        local tmpl = "{% for m in messages %}{{ m.role }}:{% if m.tool_calls %}{{ m.tool_calls[0].function.arguments|tojson }}" ..
            "{% else %}{{ m.content }}{% endif %};{% endfor %}{{ tools|tojson }}|{{ x }} {{ n }} {{ f }} {{ ok }} {{ none }}" ..
            "{{ '|' ~ (empty|length) }}"
        local msgs = {{role = "user", content = "Weather?"},
            {role = "assistant", content = chat.null, tool_calls = {{["function"] = {name = "w", arguments = {city = "Paris"}}}}},
            {role = "tool", content = "21"}}
        local prompt, stops = m:apply_chat_template(msgs, {chat_template = tmpl,
            tools = {{type = "function", ["function"] = {name = "w"}}},
            chat_template_kwargs = {x = 1.5, n = 3, f = 2.0, ok = false, none = chat.null, empty = {}}})
        -- Lua 5.1/LuaJIT has no integer subtype: 2.0 is the number 2 there and goes to JSON as 2
        local two = math.type and "2.0" or "2"
        assert.are.equal('user:Weather?;assistant:{"city": "Paris"};tool:21;' ..
            '[{"function": {"name": "w"}, "type": "function"}]|1.5 3 ' .. two .. ' False None|0', prompt)
        assert.are.same({}, stops) -- a template of no known family: the end-of-generation tokens end a reply
        -- tools may also be JSON text
        assert.are.equal("[1, 2]", m:apply_chat_template("Hi", {chat_template = "{{ tools|tojson }}", tools = "[1, 2]"}))
    end)

    it("names an unrenderable construct and its line, and counts messages from 1", function()
        local ok, err = pcall(m.apply_chat_template, m, "Hi", {chat_template = "{{ messages[0].content }}\n\n{{ 'x'|wordwrap(3) }}"})
        assert.is_false(ok)
        assert.matches("PLM_ERR_UNSUPPORTED: chat template line 3", err, 1, true)
        assert.matches("wordwrap", err, 1, true)
        ok, err = pcall(m.apply_chat_template, m, "Hi", {chat_template = "{{ raise_exception('users only') }}"})
        assert.is_false(ok)
        assert.matches("PLM_ERR_ARG: .*users only", err)
        ok, err = pcall(m.apply_chat_template, m, {{role = "user", content = "a"}, {role = "robot", content = "b"}})
        assert.is_false(ok)
        assert.matches('PLM_ERR_ARG: message 2: role "robot" is not one of system, user, assistant, tool', err, 1, true)
        ok, err = pcall(m.apply_chat_template, m, {{role = "tool", content = "b"}}, {template = "chatml"})
        assert.is_false(ok)
        assert.matches('message 1: role "tool" is not one of system, user, assistant$', err)
        ok, err = pcall(m.apply_chat_template, m, {{role = "user", content = "\xff"}})
        assert.is_false(ok)
        assert.matches("invalid UTF%-8", err)
        ok, err = pcall(m.apply_chat_template, m, "Hi", {template = "mistral"})
        assert.is_false(ok)
        assert.matches('unknown chat format "mistral"', err, 1, true)
        ok, err = pcall(m.apply_chat_template, m, "Hi", {template = "chatml", chat_template = "x"})
        assert.is_false(ok)
        assert.matches("not both", err)
        ok, err = pcall(m.apply_chat_template, m, "Hi", {chat_template_kwargs = {1, x = 2}})
        assert.is_false(ok)
        assert.matches("JSON objects have string keys", err)
        ok, err = pcall(m.apply_chat_template, m, "Hi", {chat_template_kwargs = {x = 0 / 0}})
        assert.is_false(ok)
        assert.matches("not a JSON number", err)
        ok, err = pcall(m.apply_chat_template, m, "Hi", {tools = "[1,"})
        assert.is_false(ok)
        assert.matches("invalid JSON", err)
    end)
end)

describe("m:chat", function()
    it("generates from the template's prompt with its stops", function()
        local m = H.model()
        local msgs = {{role = "user", content = "What is 2 + 2?"}}
        local prompt, stops = m:apply_chat_template(msgs)
        local want = m:generate(prompt, {max_tokens = 12, temperature = 0, stop = stops})
        assert.are.equal(want, (m:chat(msgs, {max_tokens = 12, temperature = 0, chat_template_kwargs = {unused = true}})))
        local own = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n"
        assert.are.equal(m:generate(m:apply_chat_template(msgs, {chat_template = own}), {max_tokens = 12, temperature = 0,
            stop = {"<|im_end|>"}}), (m:chat(msgs, {max_tokens = 12, temperature = 0, chat_template = own})))
    end)
end)
