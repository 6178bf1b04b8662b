-- examples/npc_dialogue.lua runs: a few frames of the game loop, each printing its timings.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helper.lua")

describe("examples/npc_dialogue.lua", function()
    it("runs a game loop that prints per-frame timings", function()
        local lua = os.getenv("LUA") or "lua5.4"
        local out, ok = H.run(("%s %sexamples/npc_dialogue.lua --frames 12 --max-tokens 4 2>&1"):format(lua, H.root))
        assert.is_true(ok, out)
        local frames = 0
        for used, npc in out:gmatch("frame +%d+ +%a+ +(%d+) tok +npc +([%d.]+) ms") do
            frames = frames + 1
            assert.is_true(tonumber(used) >= 1)
            assert.is_true(tonumber(npc) > 0)
        end
        assert.are.equal(12, frames)
        assert.is_truthy(out:find("PLAYER: ", 1, true))
        assert.is_truthy(out:find("12 frames in [%d.]+ s: npc per frame mean"))
    end)
end)
