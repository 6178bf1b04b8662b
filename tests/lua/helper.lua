-- Shared by the Lua specs: finds the module (lua/ of this checkout) and loads the default model once per file.
-- Run from the repository root: lua5.4 /usr/bin/busted tests/lua (make lua-test), or the same under luajit
-- (make lua-test-luajit), which loads the LuaJIT build of the module (lua/luajit/pocketlm/core.so).
local root = debug.getinfo(1, "S").source:match("^@(.-)tests/lua/helper%.lua$") or "./"
if root == "" then root = "./" end
package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path
package.cpath = root .. (jit and "lua/luajit/?.so;" or "lua/?.so;") .. package.cpath

local H = {root = root, plm = require "pocketlm", threads = 2}

-- Integers: Lua 5.4 has them; on LuaJIT numbers are doubles, and what is checked is an integer value
-- (exact up to 2^53, the binding's range there).
H.lua54 = math.type ~= nil
H.MAXINT = math.maxinteger or 2 ^ 53
function H.is_integer(v)
    if H.lua54 then return math.type(v) == "integer" end
    return type(v) == "number" and v == math.floor(v)
end
function H.toint(v)
    v = tonumber(v)
    if H.lua54 then return math.tointeger(v) end
    return v and v == math.floor(v) and v or nil
end

-- The default model, loaded on first use (nil path: the C library finds it in the cache).
function H.model()
    if not H._model or H._model:closed() then H._model = H.plm.load(nil, {n_threads = H.threads, n_ctx = 1024}) end
    return H._model
end

-- Output of a shell command, whether it succeeded, and its exit status (read from the output: LuaJIT's
-- popen close() does not return it).
function H.run(cmd)
    local f = assert(io.popen(cmd .. "\necho \"<exit $?>\"", "r"))
    local out = f:read("*a")
    f:close()
    local code = tonumber(out:match("<exit (%d+)>\n?$"))
    out = out:gsub("<exit %d+>\n?$", "")
    return out, code == 0, code
end

return H
