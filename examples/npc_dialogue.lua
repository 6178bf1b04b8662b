--- npc_dialogue.lua — an NPC answers the player inside a game loop, a few tokens per 16 ms frame.
--
--   lua5.4 examples/npc_dialogue.lua                      (from the repository root, after `make lua`)
--   luajit examples/npc_dialogue.lua                      (after `make lua LUA=luajit`)
--   lua5.4 examples/npc_dialogue.lua --frames 40 --max-tokens 8 --budget-ms 8
--
-- Each frame the game updates, then gives the NPC a time budget: the generator
-- decodes as many tokens as fit (its per-token cost is measured as it goes, the
-- prompt's batched tokens apart from generated ones), and the frame waits out the
-- rest of its 16 ms. Nothing blocks for a whole answer: the prompt itself is
-- evaluated over the first frames. Every frame prints its timings; a summary
-- follows.

local here = (arg and arg[0] or ""):match("^(.-)[^/]*$")
package.path = here .. "../lua/?.lua;" .. package.path
package.cpath = here .. (jit and "../lua/luajit/?.so;" or "../lua/?.so;") .. package.cpath

local plm = require "pocketlm"

local function toint(v)
    v = tonumber(v)
    return v and v == math.floor(v) and v or nil
end

local opts = {frames = math.huge, max_tokens = 40, budget_ms = 10, frame_ms = 16, threads = 2, quiet = false}
local i = 1
while arg and arg[i] do
    local a, v = arg[i], arg[i + 1]
    if a == "--frames" then opts.frames = assert(toint(v), "--frames takes an integer")
    elseif a == "--max-tokens" then opts.max_tokens = assert(toint(v), "--max-tokens takes an integer")
    elseif a == "--budget-ms" then opts.budget_ms = assert(tonumber(v), "--budget-ms takes a number")
    elseif a == "--threads" then opts.threads = assert(toint(v), "--threads takes an integer")
    elseif a == "--quiet" then opts.quiet, i = true, i - 1
    else
        io.stderr:write("usage: lua5.4 examples/npc_dialogue.lua [--frames N] [--max-tokens N] [--budget-ms MS]",
            " [--threads N] [--quiet]\n")
        os.exit(2)
    end
    i = i + 2
end

local FRAME = opts.frame_ms / 1000
local BUDGET = opts.budget_ms / 1000

local model = plm.load(nil, {n_threads = opts.threads, n_ctx = 1024})
local npc = model:context() -- the NPC's own context: its conversation stays cached between turns

local conversation = {
    {role = "system", content = "You are Brom, the gruff blacksmith of Oakvale. Answer in one or two short sentences."},
}
local player_lines = {"Can you repair my sword before nightfall?", "What happened to the old mine?"}

-- The simulated rest of the game: physics, AI, rendering... here, a little arithmetic.
local world = {x = 0.0, v = 1.0}
local function update_game(dt)
    for _ = 1, 2000 do
        world.v = world.v - world.x * dt
        world.x = world.x + world.v * dt
    end
end

local stats = {frames = 0, npc = {}, frame = {}, tokens = 0, over = 0}
local function percentile(t, p)
    local s = {}
    for k, v in ipairs(t) do s[k] = v end
    table.sort(s)
    return s[math.max(1, math.ceil(p * #s))] or 0
end

local cost = {prefill = 0.004, speak = 0.010} -- seconds per token, measured as the frames go
local frame_no = 0
local start = plm.clock()

for _, line in ipairs(player_lines) do
    if frame_no >= opts.frames then break end
    print(("\nPLAYER: %s"):format(line))
    conversation[#conversation + 1] = {role = "user", content = line}
    local g = npc:start_chat(conversation, {max_tokens = opts.max_tokens, temperature = 0})
    local first_text_frame, first_text_s
    local turn_start = plm.clock()
    while not g.done and frame_no < opts.frames do
        frame_no = frame_no + 1
        local t0 = plm.clock()
        update_game(FRAME)
        local phase = g:prompt_pending() > 0 and "prefill" or "speak"
        local n = math.max(1, math.floor((BUDGET - (plm.clock() - t0)) / cost[phase]))
        if phase == "prefill" then n = math.min(n, g:prompt_pending()) end
        local ts = plm.clock()
        local text, done, used = g:step(n)
        local npc_s = plm.clock() - ts
        if used > 0 then cost[phase] = 0.5 * cost[phase] + 0.5 * npc_s / used end
        if text ~= "" and not first_text_frame then first_text_frame, first_text_s = frame_no, plm.clock() - turn_start end
        local busy = plm.clock() - t0
        while plm.clock() - t0 < FRAME do end -- wait for the next frame (a real engine waits for vsync)
        local frame_s = plm.clock() - t0
        stats.frames = stats.frames + 1
        stats.npc[#stats.npc + 1] = npc_s * 1000
        stats.frame[#stats.frame + 1] = frame_s * 1000
        stats.tokens = stats.tokens + used
        if busy > FRAME then stats.over = stats.over + 1 end
        if not opts.quiet then
            print(("frame %4d  %-7s %2d tok  npc %6.2f ms  frame %6.2f ms  %s"):format(frame_no, phase, used,
                npc_s * 1000, frame_s * 1000, text ~= "" and ("%q"):format(text):gsub("\\\n", "\\n") or ""))
        end
        if done then break end
    end
    local reply = g:text()
    print(("BROM: %s%s"):format(reply, g.done and "" or " [...]"))
    print(("(%d generated tokens, stop: %s, first words at frame %s, %.2f s into the turn)"):format(g.n_generated,
        g.reason or "not yet", tostring(first_text_frame), first_text_s or 0))
    conversation[#conversation + 1] = {role = "assistant", content = reply}
    g:close()
end
npc:close()
model:close()

local function mean(t)
    local s = 0
    for _, v in ipairs(t) do s = s + v end
    return #t > 0 and s / #t or 0
end
print(("\n%d frames in %.2f s: npc per frame mean %.2f ms, p95 %.2f ms, max %.2f ms; frame mean %.2f ms, " ..
    "max %.2f ms; %.2f tokens per frame; %d frames over %d ms"):format(stats.frames, plm.clock() - start,
    mean(stats.npc), percentile(stats.npc, 0.95), percentile(stats.npc, 1), mean(stats.frame),
    percentile(stats.frame, 1), stats.frames > 0 and stats.tokens / stats.frames or 0, stats.over, opts.frame_ms))
