--- examples/love — a LÖVE 11 scene in which an NPC's reply streams into a speech bubble while everything keeps
-- animating: the model generates on a worker thread (m:spawn_chat) and each frame only polls for new text.
--
--   make model && make lua LUA=luajit      (LÖVE 11 embeds LuaJIT: it loads lua/luajit/pocketlm/core.so)
--   love examples/love                     (from the repository root; space or a click asks the next question)
--
-- The module is looked for in the checkout this example sits in (lua/pocketlm.lua, lua/luajit/pocketlm/core.so),
-- then on the usual package paths (a `luarocks --lua-version=5.1` install); the model is the default one
-- (plm.load(nil): ~/.cache/pocketlm, where `make model` puts it, or $POCKETLM_MODEL).
--
-- For tests and benchmarks (make love-test, bench/love_frames.sh), environment variables:
--   POCKETLM_LOVE_FRAMES=N   quit after N frames (with a screenshot of the last one)
--   POCKETLM_LOVE_OUT=DIR    write DIR/status.txt (the reply, frame times) and DIR/shot.png; DIR/error.txt on a
--                            Lua error, which also ends the run with exit status 1
--   POCKETLM_LOVE_NPC=0      no generation at all (the benchmark's baseline)
--   POCKETLM_LOVE_REPEAT=1   ask the next question as soon as a reply ends (generation all the time)
--   POCKETLM_LOVE_NICE=N     the worker thread's priority below the game's (0..19, default 10)

local OUT = os.getenv("POCKETLM_LOVE_OUT")
local MAX_FRAMES = tonumber(os.getenv("POCKETLM_LOVE_FRAMES") or "")
local NPC_ON = os.getenv("POCKETLM_LOVE_NPC") ~= "0"
local REPEAT = os.getenv("POCKETLM_LOVE_REPEAT") == "1"
local FRAME = 1 / 60

local function write_file(name, text)
    if not OUT then return end
    local f = assert(io.open(OUT .. "/" .. name, "wb"))
    f:write(text)
    f:close()
end

-- A Lua error anywhere: recorded, and the run ends with status 1 (LÖVE's own handler would wait for a key).
function love.errorhandler(msg)
    local text = debug.traceback("Error: " .. tostring(msg), 3)
    io.stderr:write(text, "\n")
    write_file("error.txt", text .. "\n")
    return function() return 1 end
end

-- The module: this checkout's build first, then the usual paths.
local root = (love.filesystem.getSource():gsub("/+$", "")):match("^(.*)/examples/love$")
if root then
    package.path = root .. "/lua/?.lua;" .. package.path
    package.cpath = root .. "/lua/luajit/?.so;" .. package.cpath
end
local plm = require "pocketlm"

local SYSTEM = "You are Brom, the gruff blacksmith of Oakvale. Answer in one or two short sentences."
local QUESTIONS = {
    "Good day! Can you repair my sword before nightfall?",
    "What happened to the old mine north of the village?",
    "Which road leads to the capital?",
}

local model, job
local npc = {question = "", reply = "", asked = 0, t_asked = 0, tokens = 0, reason = nil, gen_s = nil}
local scene = {t = 0, frame = 0}
local stats = {dt = {}, work = {}, gen_dt = {}, gen_work = {}, tps = {}}

local function ask()
    npc.asked = npc.asked + 1
    npc.question = QUESTIONS[(npc.asked - 1) % #QUESTIONS + 1]
    npc.reply, npc.reason, npc.gen_s = "", nil, nil
    npc.t_asked = love.timer.getTime()
    job = model:spawn_chat({{role = "system", content = SYSTEM}, {role = "user", content = npc.question}},
        {max_tokens = 48, temperature = 0})
end

function love.load()
    love.graphics.setBackgroundColor(0.53, 0.76, 0.92)
    scene.font = love.graphics.newFont(16)
    if NPC_ON then
        -- One worker thread with one compute thread: the frame loop keeps the other core.
        model = plm.load(nil, {n_ctx = 1024})
        model:configure_jobs({workers = 1, n_threads = 1, nice = tonumber(os.getenv("POCKETLM_LOVE_NICE") or "10")})
        ask()
    end
end

function love.keypressed(key)
    if key == "escape" then love.event.quit(0) end
    if key == "space" and NPC_ON and (not job or job.done) then ask() end
end

function love.mousepressed()
    if NPC_ON and (not job or job.done) then ask() end
end

function love.update(dt)
    scene.t = scene.t + dt
    if job and not job.done then
        local tp = love.timer.getTime()
        local text, done, reason = job:poll() -- never waits for the model
        stats.poll_max = math.max(stats.poll_max or 0, love.timer.getTime() - tp)
        npc.reply = npc.reply .. text
        if done then
            npc.reason = reason
            npc.tokens = job:generated()
            npc.gen_s = love.timer.getTime() - npc.t_asked
            stats.tps[#stats.tps + 1] = npc.tokens / npc.gen_s
            if REPEAT then ask() end
        end
    end
end

-- ------------------------------------------------------------------ drawing

local BUBBLE = {x = 330, y = 90, w = 420, h = 170}

local function draw_bubble()
    local g = love.graphics
    g.setColor(1, 1, 1)
    g.rectangle("fill", BUBBLE.x, BUBBLE.y, BUBBLE.w, BUBBLE.h, 14, 14)
    g.polygon("fill", BUBBLE.x + 60, BUBBLE.y + BUBBLE.h, BUBBLE.x + 100, BUBBLE.y + BUBBLE.h, BUBBLE.x + 40,
        BUBBLE.y + BUBBLE.h + 40)
    g.setColor(0, 0, 0)
    local dots = ("."):rep(math.floor(scene.t * 3) % 3 + 1)
    local text = npc.reply ~= "" and npc.reply or (job and dots or "")
    g.printf(text, BUBBLE.x + 14, BUBBLE.y + 12, BUBBLE.w - 28)
end

function love.draw()
    local g, t = love.graphics, scene.t
    g.setFont(scene.font)
    -- the sun goes round, clouds drift, the ground
    g.setColor(1, 0.85, 0.2)
    g.circle("fill", 400 + 330 * math.cos(t * 0.5), 300 - 230 * math.abs(math.sin(t * 0.5)), 30)
    g.setColor(1, 1, 1, 0.9)
    for i = 0, 3 do
        local x = (i * 230 + t * 40) % 1000 - 100
        g.ellipse("fill", x, 60 + 25 * i, 60, 18)
    end
    g.setColor(0.3, 0.62, 0.25)
    g.rectangle("fill", 0, 470, 800, 130)
    -- the player walks to and fro, bobbing
    local px = 150 + 110 * math.sin(t * 1.3)
    local bob = 4 * math.abs(math.sin(t * 8))
    g.setColor(0.2, 0.3, 0.8)
    g.rectangle("fill", px - 15, 410 - bob, 30, 60)
    g.setColor(0.96, 0.8, 0.65)
    g.circle("fill", px, 395 - bob, 15)
    -- the NPC, breathing, by his anvil
    local breathe = 2 * math.sin(t * 2)
    g.setColor(0.45, 0.3, 0.2)
    g.rectangle("fill", 335, 380 - breathe, 46, 90 + breathe)
    g.setColor(0.92, 0.75, 0.6)
    g.circle("fill", 358, 360 - breathe, 20)
    g.setColor(0.25, 0.25, 0.28)
    g.rectangle("fill", 410, 440, 60, 30)
    if NPC_ON then
        g.setColor(0, 0, 0)
        g.printf("You: " .. npc.question, 20, 20, 290)
        draw_bubble()
    end
    g.setColor(0, 0, 0)
    g.print(("frame %d   %.1f ms"):format(scene.frame, (stats.dt[#stats.dt] or 0) * 1000), 20, 570)
end

-- ----------------------------------------------------------- measuring

local function summary(t)
    local s = {}
    for i, v in ipairs(t) do s[i] = v end
    table.sort(s)
    local function q(p) return #s > 0 and s[math.max(1, math.ceil(p * #s))] * 1000 or 0 end
    return ("n %d median %.2f p99 %.2f max %.2f"):format(#s, q(0.5), q(0.99), q(1))
end

-- Dark pixels inside the bubble: the reply's text as drawn (what the screenshot shows).
local function bubble_ink(img)
    local n = 0
    for y = BUBBLE.y + 4, BUBBLE.y + BUBBLE.h - 4 do
        for x = BUBBLE.x + 4, BUBBLE.x + BUBBLE.w - 4 do
            local r, gr, b = img:getPixel(x, y)
            if r + gr + b < 1.2 then n = n + 1 end
        end
    end
    return n
end

local function finish(img)
    local lines = {
        ("frames: %d"):format(scene.frame),
        ("npc: %s"):format(tostring(NPC_ON)),
        ("asked: %d"):format(npc.asked),
        ("reply_done: %s"):format(tostring(npc.reason ~= nil)),
        ("reason: %s"):format(tostring(npc.reason)),
        ("tokens: %d"):format(npc.tokens),
        ("reply: %s"):format((npc.reply:gsub("\n", "\\n"))),
        ("frame_ms: %s"):format(summary(stats.dt)),
        ("work_ms: %s"):format(summary(stats.work)),
        ("generating_frame_ms: %s"):format(summary(stats.gen_dt)),
        ("generating_work_ms: %s"):format(summary(stats.gen_work)),
    }
    local tps = 0
    for _, v in ipairs(stats.tps) do tps = tps + v / #stats.tps end
    lines[#lines + 1] = ("tokens_per_s: %.1f"):format(tps)
    lines[#lines + 1] = ("poll_max_ms: %.3f"):format((stats.poll_max or 0) * 1000)
    if img then
        lines[#lines + 1] = ("bubble_ink: %d"):format(NPC_ON and bubble_ink(img) or 0)
        if OUT then write_file("shot.png", img:encode("png"):getString()) end
    end
    write_file("status.txt", table.concat(lines, "\n") .. "\n")
end

-- The main loop: LÖVE's own, paced at 60 frames per second (as vsync would), measuring each frame: dt (start
-- to start, what the player sees) and work (events, update, draw, present).
function love.run()
    love.load(love.arg and love.arg.parseGameArguments and love.arg.parseGameArguments(arg) or arg, arg)
    love.timer.step()
    return function()
        local t0 = love.timer.getTime()
        love.event.pump()
        for name, a, b, c, d, e, f in love.event.poll() do
            if name == "quit" then
                if job then job:close() end
                if model then model:close() end
                return a or 0
            end
            love.handlers[name](a, b, c, d, e, f)
        end
        local dt = love.timer.step()
        local generating = job ~= nil and not job.done
        scene.frame = scene.frame + 1
        love.update(dt)
        love.graphics.origin()
        love.graphics.clear(love.graphics.getBackgroundColor())
        love.draw()
        if MAX_FRAMES and scene.frame == MAX_FRAMES then
            love.graphics.captureScreenshot(function(img)
                finish(img)
                love.event.quit(0)
            end)
        end
        love.graphics.present()
        local work = love.timer.getTime() - t0
        if scene.frame > 2 then -- the first two frames include start-up (fonts, shaders)
            stats.dt[#stats.dt + 1] = dt
            stats.work[#stats.work + 1] = work
            if generating then
                stats.gen_dt[#stats.gen_dt + 1] = dt
                stats.gen_work[#stats.gen_work + 1] = work
            end
        end
        local rest = FRAME - (love.timer.getTime() - t0)
        if rest > 0 then love.timer.sleep(rest) end
    end
end
