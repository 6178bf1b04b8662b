-- LÖVE 11 configuration of the NPC example (see main.lua).
function love.conf(t)
    t.identity = "pocketlm-npc"
    t.version = "11.0"
    t.window.title = "pocketlm: an NPC that talks while the scene animates"
    t.window.width = 800
    t.window.height = 600
    t.window.vsync = 0 -- main.lua paces frames at 60 per second itself (vsync does nothing under xvfb)
    t.modules.audio = false
    t.modules.sound = false
    t.modules.joystick = false
    t.modules.physics = false
    t.modules.video = false
end
