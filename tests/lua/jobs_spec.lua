-- Background jobs (m:spawn): text polled from a worker thread equals generate's, polls never wait for the model,
-- several jobs at once, cancel, wait, errors at poll, jobs and runners dropped while they run.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helper.lua")
local plm = H.plm

local PROMPT = "The capital of France is"
local GREEDY = {max_tokens = 12, temperature = 0}

local function sleep_ms(ms)
    local t = plm.clock() + ms / 1000
    while plm.clock() < t do end
end

-- Polls until done; the text, the reason, the number of polls and the median poll (seconds). (The median:
-- on a machine shared with other work a single poll may be preempted; a poll that waited for a decode
-- would show in most of them.)
local function drain(job)
    local parts, times = {}, {}
    while true do
        local t0 = plm.clock()
        local text, done, reason = job:poll()
        times[#times + 1] = plm.clock() - t0
        parts[#parts + 1] = text
        if done then
            table.sort(times)
            return table.concat(parts), reason, #times, times[math.ceil(#times / 2)]
        end
        sleep_ms(2)
    end
end

describe("jobs", function()
    local m
    lazy_setup(function() m = H.model() end)

    it("generate in the background what generate gives, polled in pieces without waiting", function()
        local want, want_reason = m:generate(PROMPT, GREEDY)
        local job = m:spawn(PROMPT, GREEDY)
        assert.is_false(job.done)
        local text, reason, polls, median = drain(job)
        assert.are.equal(want, text)
        assert.are.equal(want_reason, reason)
        assert.are.equal(want, job:text())
        assert.is_true(polls > 2, "the text came at once")
        assert.is_true(median < 0.001, ("the median poll took %.2f ms"):format(median * 1000))
        assert.are.equal(12, job:generated())
        assert.are.same({"", true, "length"}, {job:poll()})
    end)

    it("run several at once on the shared model, chat too", function()
        local prompts = {PROMPT, "Once upon a time, in a village by the sea,", "The largest planet is"}
        local want, jobs = {}, {}
        for i, p in ipairs(prompts) do want[i] = m:generate(p, GREEDY) end
        for i, p in ipairs(prompts) do jobs[i] = m:spawn(p, GREEDY) end
        for i = #jobs, 1, -1 do
            local text = drain(jobs[i])
            assert.are.equal(want[i], text)
        end
        local messages = {{role = "user", content = "Say hello."}}
        local reply = m:chat(messages, {max_tokens = 8, temperature = 0})
        local job = m:spawn_chat(messages, {max_tokens = 8, temperature = 0})
        assert.are.equal(reply, (job:wait()) and job:text())
    end)

    it("cancel and wait", function()
        local job = m:spawn(PROMPT, {max_tokens = 300, ignore_eos = true, temperature = 0})
        while job:generated() < 2 do sleep_ms(2) end
        job:cancel()
        local _, done, reason = job:wait()
        assert.is_true(done)
        assert.are.equal("cancelled", reason)
        assert.is_true(job:generated() < 100)
        job:close()
        assert.are.equal("cancelled", job.reason)
    end)

    it("raise a job's error at poll, naming it; the others go on", function()
        local model = plm.load(nil, {n_threads = 1})
        model:configure_jobs({n_ctx = 64, n_parallel = 2})
        local long = model:spawn(("word "):rep(100), {max_tokens = 4})
        local ok_job = model:spawn(PROMPT, {max_tokens = 4, temperature = 0})
        local ok, err = pcall(long.wait, long)
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find("PLM_ERR_", 1, true), err)
        assert.are.equal("error", long.reason)
        assert.are.equal(m:generate(PROMPT, {max_tokens = 4, temperature = 0}), (drain(ok_job)))
        model:close()
    end)

    it("refuse bad arguments", function()
        assert.has_error(function() m:spawn(42) end)
        assert.has_error(function() m:spawn("") end)
        assert.has_error(function() m:spawn(PROMPT, {max_token = 3}) end)
        assert.has_error(function() m:spawn(PROMPT, {choices = {"a", "b"}}) end,
            "spawn: choices is not supported in a background job")
        assert.has_error(function() m:configure_jobs({workers = 0}) end)
        assert.has_error(function() m:configure_jobs({n_threads = 1.5}) end)
        assert.has_error(function() m:configure_jobs({nice = 20}) end)
    end)

    it("dropped while running are cancelled; a closed model ends its jobs", function()
        local model = plm.load(nil, {n_threads = 1})
        model:configure_jobs({workers = 2, n_ctx = 256})
        for _ = 1, 3 do model:spawn(PROMPT, {max_tokens = 200, ignore_eos = true}) end
        collectgarbage()
        collectgarbage()
        local job = model:spawn(PROMPT, GREEDY)
        assert.are.equal(m:generate(PROMPT, GREEDY), (drain(job)))
        local running = model:spawn(PROMPT, {max_tokens = 300, ignore_eos = true})
        while running:generated() < 1 do sleep_ms(2) end
        local t0 = plm.clock()
        model:close() -- joins the workers
        assert.is_true(plm.clock() - t0 < 1)
        local _, done, reason = running:poll()
        assert.is_true(done)
        assert.are.equal("cancelled", reason)
    end)
end)
