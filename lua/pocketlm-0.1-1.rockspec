-- pocketlm's Lua module, for Lua 5.4 or LuaJIT 2.1. From the repository root, without network:
--   luarocks --lua-version=5.4 make --local lua/pocketlm-0.1-1.rockspec        (into ~/.luarocks)
--   luarocks --lua-version=5.4 make --tree /some/dir lua/pocketlm-0.1-1.rockspec
--   luarocks --lua-version=5.1 make --local lua/pocketlm-0.1-1.rockspec        (a luarocks set up for LuaJIT:
--                                                  LUA_INCDIR is LuaJIT's; PUC Lua 5.1-5.3 stop with an #error)
-- `luarocks make` builds the checkout it runs in (source.url is not fetched): lua/Makefile
-- runs the system SWIG (4.1) over bindings/pocketlm.i and links the C core statically.
rockspec_format = "3.0"
package = "pocketlm"
version = "0.1-1"
source = {
   url = "git+file://.",
}
description = {
   summary = "Small language models on the CPU, in-process, from GGUF files",
   detailed = [[
      A C core (quantized kernels chosen at run time, tokenizer, sampler, KV cache, the token loop)
      bound to Lua 5.4 and LuaJIT 2.1 with SWIG: generation, streaming, step-wise generation with a token budget
      per call (for game loops), chat templates, zero-shot classification and embeddings, and
      zero-copy views of logits and tokens that keep their owner alive.
   ]],
}
supported_platforms = { "linux" }
dependencies = {
   "lua >= 5.1", -- 5.4, or LuaJIT 2.1 (the 5.1 API)
}
build = {
   type = "make",
   makefile = "lua/Makefile",
   build_target = "all",
   build_variables = {
      CC = "$(CC)",
      CFLAGS = "$(CFLAGS)",
      LIBFLAG = "$(LIBFLAG)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      CORE = "build/rock/pocketlm/core.so", -- apart from the checkout's own builds (make lua)
   },
   install_pass = false,
   install = {
      lua = {
         ["pocketlm"] = "lua/pocketlm.lua",
         ["pocketlm.chat"] = "lua/pocketlm/chat.lua",
      },
      lib = {
         ["pocketlm.core"] = "build/rock/pocketlm/core.so",
      },
   },
}
