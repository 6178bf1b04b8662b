-- Shared by the Lua specs: finds the module (lua/ of this checkout) and loads the default model once per file.
-- Run from the repository root: lua5.4 /usr/bin/busted tests/lua (make lua-test).
local root = debug.getinfo(1, "S").source:match("^@(.-)tests/lua/helper%.lua$") or "./"
if root == "" then root = "./" end
package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path
package.cpath = root .. "lua/?.so;" .. package.cpath

local H = {root = root, plm = require "pocketlm", threads = 2}

-- The default model, loaded on first use (nil path: the C library finds it in the cache).
function H.model()
    if not H._model or H._model:closed() then H._model = H.plm.load(nil, {n_threads = H.threads, n_ctx = 1024}) end
    return H._model
end

-- Output of a shell command, and whether it succeeded.
function H.run(cmd)
    local f = assert(io.popen(cmd, "r"))
    local out = f:read("a")
    local ok, _, code = f:close()
    return out, ok, code
end

return H
