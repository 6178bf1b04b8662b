/*
 * lua.i — the Lua side of pocketlm.i: typemaps, the view type, and a few
 * Lua-only helpers, for Lua 5.4 and for LuaJIT 2.1 (the Lua 5.1 API, see the
 * compatibility block below). The idiomatic API (lua/pocketlm.lua) is written
 * over the module this makes (pocketlm.core).
 *
 * - A plm_status other than PLM_OK raises a Lua error whose message is
 *   "PLM_ERR_<NAME>: <what was wrong>" (the C library's message).
 * - Integers cross as Lua integers both ways. An integer parameter takes an
 *   integer, or a float with an exact integer value (as Lua's own library
 *   does): 2.7 is an error, never 2; out-of-range values are errors, not
 *   wrapped. uint64_t (the seed) takes any integer, negative ones as their
 *   two's complement.
 * - Text crosses with its length (lua_tolstring / lua_pushlstring), so NUL
 *   bytes survive both ways (chat messages too). Paths, keys and stop strings
 *   are C strings: a NUL byte in them is an error.
 * - Views (pocketlm.view): a full userdata over float32, int32 or byte memory
 *   with #v, 1-based v[i] (nil past the end, so 5.4's ipairs works) and, where the
 *   memory may be written, v[i] = x. Its owner is kept in its user value, so
 *   it lives as long as the view: C-allocated arrays are freed by the view's
 *   finalizer; a logits view pins its context handle and looks its row up
 *   again on every access (the row of the last decode, wherever the context
 *   keeps it now), so it never reads freed memory, and a closed context gives
 *   an error, not a crash. Token, float and output-buffer arguments take views
 *   in place (no copy); tables are copied into memory Lua collects.
 * - Handles: a context pins its model, a generator its context (user value),
 *   so finalizers free children first. close() frees a handle at once; a
 *   closed handle passed to any function is an error.
 * - Nothing an argument typemap allocates is malloc'd: scratch copies are Lua
 *   userdata, so a Lua error (a longjmp) anywhere leaks nothing.
 * - The abort callback is a Lua function run through lua_pcall on the Lua
 *   thread that made the call; if it raises, the computation is cancelled and
 *   its error is re-raised when the C call returns. pocketlm functions may not
 *   be called from inside it.
 */

%{
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <time.h>

/* Lua 5.1 (LuaJIT 2.1, what LÖVE and Defold embed) next to Lua 5.4: the
 * few 5.2+ calls this file makes, written over the 5.1 API, so the code
 * below reads the same for both. What differs for users:
 * - 5.1 numbers are doubles: an integer parameter takes a number with an
 *   integer value in [-2^53, 2^53] (each one exact), so 2.7 is still an
 *   error and 2^60 is one too (its neighbours have the same double); the
 *   64-bit seed takes the same range. Integers come back as numbers.
 * - A userdata's user value is kept in its environment table (under a
 *   private key), which 5.1 gives every userdata.
 * - "%I" in messages is formatted here (5.1's lua_pushfstring lacks it). */
#if LUA_VERSION_NUM >= 504
#define plmlua_tointegerx lua_tointegerx
#elif LUA_VERSION_NUM == 501
#undef lua_rawsetp
#undef lua_rawgetp
#undef LUA_MININTEGER
#undef LUA_MAXINTEGER
#define LUA_MAXINTEGER ((lua_Integer)9007199254740992LL) /* 2^53 */
#define LUA_MININTEGER (-LUA_MAXINTEGER)

static lua_Integer plmlua_tointegerx(lua_State *L, int idx, int *isnum) {
    lua_Number n = lua_tonumber(L, idx);
    int ok = lua_type(L, idx) == LUA_TNUMBER && n == floor(n) && n >= (lua_Number)LUA_MININTEGER &&
             n <= (lua_Number)LUA_MAXINTEGER;
    if (isnum) *isnum = ok;
    return ok ? (lua_Integer)n : 0;
}

static int plmlua_absindex(lua_State *L, int idx) {
    return idx > 0 || idx <= LUA_REGISTRYINDEX ? idx : lua_gettop(L) + idx + 1;
}

static int lua_rawgetp(lua_State *L, int idx, const void *p) {
    idx = plmlua_absindex(L, idx);
    lua_pushlightuserdata(L, (void *)(uintptr_t)p);
    lua_rawget(L, idx);
    return lua_type(L, -1);
}

static void lua_rawsetp(lua_State *L, int idx, const void *p) {
    idx = plmlua_absindex(L, idx);
    lua_pushlightuserdata(L, (void *)(uintptr_t)p);
    lua_insert(L, -2);
    lua_rawset(L, idx);
}

static int lua_geti(lua_State *L, int idx, lua_Integer i) {
    idx = plmlua_absindex(L, idx);
    lua_pushnumber(L, (lua_Number)i);
    lua_gettable(L, idx);
    return lua_type(L, -1);
}

static lua_Integer luaL_len(lua_State *L, int idx) { return (lua_Integer)lua_objlen(L, idx); }

/* The user value: a private key in the userdata's environment table (a
 * userdata made by lua_newuserdata has its creator's environment, which
 * lacks the key: nil, as a 5.4 user value starts). */
static char plmlua_uv_key;

static void *lua_newuserdatauv(lua_State *L, size_t size, int nuv) {
    (void)nuv;
    return lua_newuserdata(L, size);
}

static int lua_getiuservalue(lua_State *L, int idx, int n) {
    (void)n;
    lua_getfenv(L, idx);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_pushnil(L);
        return LUA_TNIL;
    }
    lua_pushlightuserdata(L, &plmlua_uv_key);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    return lua_type(L, -1);
}

/* Pops the value on top into user value n of the userdata at idx. */
static int lua_setiuservalue(lua_State *L, int idx, int n) {
    (void)n;
    idx = plmlua_absindex(L, idx);
    lua_createtable(L, 0, 1);
    lua_pushlightuserdata(L, &plmlua_uv_key);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_setfenv(L, idx);
    lua_pop(L, 1);
    return 1;
}

static const char *luaL_tolstring(lua_State *L, int idx, size_t *len) {
    idx = plmlua_absindex(L, idx);
    if (!luaL_callmeta(L, idx, "__tostring")) {
        switch (lua_type(L, idx)) {
        case LUA_TNUMBER:
        case LUA_TSTRING: lua_pushvalue(L, idx); break;
        case LUA_TBOOLEAN: lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false"); break;
        case LUA_TNIL: lua_pushliteral(L, "nil"); break;
        default: lua_pushfstring(L, "%s: %p", luaL_typename(L, idx), lua_topointer(L, idx)); break;
        }
    }
    return lua_tolstring(L, -1, len);
}

/* lua_pushvfstring with 5.4's %I (a lua_Integer): each directive is pushed
 * on its own, then all are concatenated. */
static const char *plmlua_pushvfstring(lua_State *L, const char *fmt, va_list ap) {
    int n = 0;
    const char *p;
    while ((p = strchr(fmt, '%')) != NULL) {
        lua_pushlstring(L, fmt, (size_t)(p - fmt));
        n++;
        switch (p[1]) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            lua_pushstring(L, s ? s : "(null)");
            break;
        }
        case 'd': lua_pushfstring(L, "%d", va_arg(ap, int)); break;
        case 'c': lua_pushfstring(L, "%c", va_arg(ap, int)); break;
        case 'f': lua_pushnumber(L, va_arg(ap, lua_Number)); lua_tostring(L, -1); break;
        case 'p': lua_pushfstring(L, "%p", va_arg(ap, void *)); break;
        case 'I': {
            char buf[32];
            snprintf(buf, sizeof buf, "%lld", (long long)va_arg(ap, lua_Integer));
            lua_pushstring(L, buf);
            break;
        }
        default: lua_pushlstring(L, p + 1, p[1] ? 1 : 0); break;
        }
        n++;
        fmt = p[1] ? p + 2 : p + 1;
    }
    lua_pushstring(L, fmt);
    lua_concat(L, n + 1);
    return lua_tostring(L, -1);
}

static const char *plmlua_pushfstring(lua_State *L, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const char *s = plmlua_pushvfstring(L, fmt, ap);
    va_end(ap);
    return s;
}

static int plmlua_error(lua_State *L, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    luaL_where(L, 1);
    plmlua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    return lua_error(L);
}

static lua_Integer plmlua_checkinteger(lua_State *L, int idx) {
    int isnum = 0;
    lua_Integer v = plmlua_tointegerx(L, idx, &isnum);
    if (!isnum) luaL_argerror(L, idx, lua_type(L, idx) == LUA_TNUMBER ? "number has no integer representation"
                                                                       : "integer expected");
    return v;
}

static lua_Integer plmlua_optinteger(lua_State *L, int idx, lua_Integer def) {
    return lua_isnoneornil(L, idx) ? def : plmlua_checkinteger(L, idx);
}

#define lua_pushfstring plmlua_pushfstring
#define lua_pushvfstring plmlua_pushvfstring
#define luaL_error plmlua_error
#define luaL_checkinteger plmlua_checkinteger
#define luaL_optinteger plmlua_optinteger
#else
#error "pocketlm's Lua binding is for Lua 5.4 or Lua 5.1 (LuaJIT 2.1)"
#endif

/* The Lua thread running the current wrapped call (the abort callback runs
 * Lua code on it), and whether an abort callback is running now. */
static _Thread_local lua_State *plmlua_L;
static _Thread_local int plmlua_in_callback;
static _Thread_local int plmlua_pending; /* an abort callback raised during the current call */

/* Registry keys (their addresses). */
static char plmlua_pending_key; /* the error an abort callback raised, re-raised after the C call */
static char plmlua_abort_key;   /* weak-valued table: light userdata (plm_context *) -> abort function */

#define PLMLUA_VIEW "pocketlm.view"

/* ------------------------------------------------------------- errors */

/* Pushes "bad argument #i to 'fn' (...)", as luaL_argerror words it (without
 * raising: the wrapper's fail path frees what it must, then raises). */
static void plmlua_push_argerror(lua_State *L, int arg, const char *fn, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lua_pushfstring(L, "bad argument #%d to '%s' (", arg, fn);
    lua_pushvfstring(L, fmt, ap);
    lua_pushliteral(L, ")");
    lua_concat(L, 3);
    va_end(ap);
}

/* Pushes the error of a failed status: the abort callback's own error if it
 * raised one, else "PLM_ERR_<NAME>: message". */
static void plmlua_push_status_error(lua_State *L, plm_status st) {
    const char *msg = plmb_error_message();
    if (plmlua_pending) {
        plmlua_pending = 0;
        lua_rawgetp(L, LUA_REGISTRYINDEX, &plmlua_pending_key);
        lua_pushnil(L);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &plmlua_pending_key);
        return;
    }
    if (msg && *msg)
        lua_pushfstring(L, "%s: %s", plm_status_str(st), msg);
    else
        lua_pushstring(L, plm_status_str(st));
}

/* ----------------------------------------------------------- integers */

/* Reads an integer argument in [lo, hi]; pushes the error and returns 0 if it is not one. */
static int plmlua_int_arg(lua_State *L, int idx, const char *fn, lua_Integer lo, lua_Integer hi, lua_Integer *out) {
    int isnum = 0;
    lua_Integer v = 0;
    if (lua_type(L, idx) == LUA_TNUMBER) v = plmlua_tointegerx(L, idx, &isnum);
    if (!isnum) {
        if (lua_type(L, idx) == LUA_TNUMBER)
            plmlua_push_argerror(L, idx, fn, "number %f has no integer representation", lua_tonumber(L, idx));
        else
            plmlua_push_argerror(L, idx, fn, "integer expected, got %s", luaL_typename(L, idx));
        return 0;
    }
    if (v < lo || v > hi) {
        plmlua_push_argerror(L, idx, fn, "%I is outside [%I, %I]", v, lo, hi);
        return 0;
    }
    *out = v;
    return 1;
}

/* ---------------------------------------------------------------- views */

enum { PLMLUA_OWN_INLINE, PLMLUA_OWN_MALLOC, PLMLUA_SLICE, PLMLUA_LOGITS };

typedef struct plmlua_view {
    void *not_swig; /* NULL: where SWIG reads a type pointer, it finds none of its own */
    void *data;
    int32_t n;      /* items */
    int32_t offset; /* PLMLUA_SLICE: first item in the parent view */
    int32_t row;    /* PLMLUA_LOGITS: the batch entry (-1: last) */
    char type;      /* 'f' float32, 'i' int32, 'B' byte */
    char kind;
    char writable;
} plmlua_view;

static size_t plmlua_item_size(char type) { return type == 'B' ? 1 : 4; }

static const char *plmlua_type_name(char type) {
    return type == 'f' ? "float32" : type == 'i' ? "int32" : "byte";
}

/* A new view (user value 1: its owner) on the stack. PLMLUA_OWN_INLINE views
 * get n zeroed items of storage of their own after the header. */
static plmlua_view *plmlua_view_push(lua_State *L, char type, char kind, int32_t n) {
    size_t extra = kind == PLMLUA_OWN_INLINE ? (size_t)(n > 0 ? n : 0) * plmlua_item_size(type) : 0;
    size_t head = (sizeof(plmlua_view) + 15) & ~(size_t)15;
    plmlua_view *v = lua_newuserdatauv(L, head + extra, 1);
    memset(v, 0, head + extra);
    v->type = type;
    v->kind = kind;
    v->n = n;
    v->row = -1;
    v->writable = 1;
    if (kind == PLMLUA_OWN_INLINE) v->data = (char *)v + head;
    luaL_setmetatable(L, PLMLUA_VIEW);
    return v;
}

static plmlua_view *plmlua_toview(lua_State *L, int idx) { return luaL_testudata(L, idx, PLMLUA_VIEW); }

/* The memory of a view now, or NULL with the error pushed (its context is
 * closed, or has no such logits row since its last decode). */
static void *plmlua_view_data(lua_State *L, int idx, plmlua_view *v) {
    if (v->kind == PLMLUA_SLICE) {
        lua_getiuservalue(L, idx, 1);
        plmlua_view *parent = plmlua_toview(L, -1);
        void *p = parent ? plmlua_view_data(L, lua_gettop(L), parent) : NULL;
        lua_remove(L, p ? -1 : -2);
        return p ? (char *)p + (size_t)v->offset * plmlua_item_size(v->type) : NULL;
    }
    if (v->kind == PLMLUA_LOGITS) {
        lua_getiuservalue(L, idx, 1);
        swig_lua_userdata *h = lua_touserdata(L, -1);
        lua_pop(L, 1);
        if (!h || !h->ptr) {
            lua_pushliteral(L, "the Context of this logits view is closed");
            return NULL;
        }
        float *p = plm_context_logits((plm_context *)h->ptr, v->row);
        if (!p) {
            lua_pushfstring(L, "logits view: %s", plm_last_error());
            return NULL;
        }
        v->data = p;
    }
    return v->data;
}

static int plmlua_view_error(lua_State *L) { return lua_error(L); }

static int plmlua_view_index(lua_State *L) {
    plmlua_view *v = luaL_checkudata(L, 1, PLMLUA_VIEW);
    if (lua_type(L, 2) != LUA_TNUMBER) {
        /* methods */
        lua_getmetatable(L, 1);
        lua_getfield(L, -1, "__methods");
        lua_pushvalue(L, 2);
        lua_rawget(L, -2);
        return 1;
    }
    int isint = 0;
    lua_Integer i = plmlua_tointegerx(L, 2, &isint);
    if (!isint) return luaL_error(L, "view index %f is not an integer", lua_tonumber(L, 2));
    if (i < 1 || i > v->n) {
        lua_pushnil(L);
        return 1;
    }
    void *p = plmlua_view_data(L, 1, v);
    if (!p) return plmlua_view_error(L);
    switch (v->type) {
    case 'f': lua_pushnumber(L, (lua_Number)((float *)p)[i - 1]); break;
    case 'i': lua_pushinteger(L, ((int32_t *)p)[i - 1]); break;
    default: lua_pushinteger(L, ((unsigned char *)p)[i - 1]); break;
    }
    return 1;
}

static int plmlua_view_newindex(lua_State *L) {
    plmlua_view *v = luaL_checkudata(L, 1, PLMLUA_VIEW);
    int isint = 0;
    lua_Integer i = plmlua_tointegerx(L, 2, &isint);
    if (!isint) return luaL_error(L, "view index must be an integer, got %s", luaL_typename(L, 2));
    if (i < 1 || i > v->n) return luaL_error(L, "view index %I outside [1, %d]", i, (int)v->n);
    if (!v->writable) return luaL_error(L, "this view is read-only");
    void *p = plmlua_view_data(L, 1, v);
    if (!p) return plmlua_view_error(L);
    if (v->type == 'f') {
        if (lua_type(L, 3) != LUA_TNUMBER) return luaL_error(L, "view item %I: number expected, got %s", i, luaL_typename(L, 3));
        ((float *)p)[i - 1] = (float)lua_tonumber(L, 3);
    } else {
        int isnum = 0;
        lua_Integer x = lua_type(L, 3) == LUA_TNUMBER ? plmlua_tointegerx(L, 3, &isnum) : 0;
        if (!isnum) return luaL_error(L, "view item %I: integer expected, got %s", i, luaL_tolstring(L, 3, NULL));
        lua_Integer lo = v->type == 'i' ? INT32_MIN : 0, hi = v->type == 'i' ? INT32_MAX : 255;
        if (x < lo || x > hi) return luaL_error(L, "%I does not fit in a %s view", x, plmlua_type_name(v->type));
        if (v->type == 'i') ((int32_t *)p)[i - 1] = (int32_t)x;
        else ((unsigned char *)p)[i - 1] = (unsigned char)x;
    }
    return 0;
}

static int plmlua_view_len(lua_State *L) {
    plmlua_view *v = luaL_checkudata(L, 1, PLMLUA_VIEW);
    lua_pushinteger(L, v->n);
    return 1;
}

static int plmlua_view_tostring(lua_State *L) {
    plmlua_view *v = luaL_checkudata(L, 1, PLMLUA_VIEW);
    lua_pushfstring(L, "pocketlm.view(%s, %d): %p", plmlua_type_name(v->type), (int)v->n, (void *)v);
    return 1;
}

static int plmlua_view_gc(lua_State *L) {
    plmlua_view *v = luaL_checkudata(L, 1, PLMLUA_VIEW);
    if (v->kind == PLMLUA_OWN_MALLOC) free(v->data);
    v->data = NULL;
    v->n = 0;
    return 0;
}

/* v:totable() -> a Lua table with a copy of the items. */
static int plmlua_view_totable(lua_State *L) {
    plmlua_view *v = luaL_checkudata(L, 1, PLMLUA_VIEW);
    void *p = plmlua_view_data(L, 1, v);
    if (!p) return plmlua_view_error(L);
    lua_createtable(L, v->n, 0);
    for (int32_t i = 0; i < v->n; i++) {
        if (v->type == 'f') lua_pushnumber(L, (lua_Number)((float *)p)[i]);
        else if (v->type == 'i') lua_pushinteger(L, ((int32_t *)p)[i]);
        else lua_pushinteger(L, ((unsigned char *)p)[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* v:bytes() -> the raw memory of the items as a string (a copy). */
static int plmlua_view_bytes(lua_State *L) {
    plmlua_view *v = luaL_checkudata(L, 1, PLMLUA_VIEW);
    void *p = plmlua_view_data(L, 1, v);
    if (!p) return plmlua_view_error(L);
    lua_pushlstring(L, p, (size_t)v->n * plmlua_item_size(v->type));
    return 1;
}

/* v:slice(i, j) -> a view of items i..j (inclusive, 1-based) sharing v's memory and keeping v alive. */
static int plmlua_view_slice(lua_State *L) {
    plmlua_view *v = luaL_checkudata(L, 1, PLMLUA_VIEW);
    lua_Integer i = luaL_checkinteger(L, 2), j = luaL_optinteger(L, 3, v->n);
    if (i < 1 || j > v->n || j < i - 1)
        return luaL_error(L, "slice [%I, %I] outside the view's items [1, %d]", i, j, (int)v->n);
    plmlua_view *s = plmlua_view_push(L, v->type, PLMLUA_SLICE, (int32_t)(j - i + 1));
    s->offset = (int32_t)(i - 1);
    s->writable = v->writable;
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

/* v:type() -> "float32", "int32" or "byte". */
static int plmlua_view_type(lua_State *L) {
    plmlua_view *v = luaL_checkudata(L, 1, PLMLUA_VIEW);
    lua_pushstring(L, plmlua_type_name(v->type));
    return 1;
}

static void plmlua_view_register(lua_State *L) {
    static const luaL_Reg meta[] = {
        {"__index", plmlua_view_index}, {"__newindex", plmlua_view_newindex}, {"__len", plmlua_view_len},
        {"__tostring", plmlua_view_tostring}, {"__gc", plmlua_view_gc}, {NULL, NULL}};
    static const luaL_Reg methods[] = {{"totable", plmlua_view_totable}, {"bytes", plmlua_view_bytes},
                                       {"slice", plmlua_view_slice}, {"type", plmlua_view_type}, {NULL, NULL}};
    luaL_newmetatable(L, PLMLUA_VIEW);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__methods");
    lua_pushliteral(L, "pocketlm.view");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
}

/* --------------------------------------------------------- array inputs */

/* An array argument of 4-byte items of the given type ('i' or 'f'): a view
 * of that type is used in place; a table (or anything with # and [i]) is
 * copied into a scratch userdata left on the stack. Pushes the error and
 * returns 0 on a bad argument. */
static int plmlua_array_arg(lua_State *L, int idx, const char *fn, char type, void **out, int32_t *n) {
    plmlua_view *v = plmlua_toview(L, idx);
    if (v) {
        if (v->type != type) {
            plmlua_push_argerror(L, idx, fn, "%s view expected, got a %s view", plmlua_type_name(type),
                                 plmlua_type_name(v->type));
            return 0;
        }
        void *p = plmlua_view_data(L, idx, v);
        if (!p) return 0;
        *out = p;
        *n = v->n;
        return 1;
    }
    if (!lua_istable(L, idx)) {
        plmlua_push_argerror(L, idx, fn, "table or %s view expected, got %s", plmlua_type_name(type),
                             luaL_typename(L, idx));
        return 0;
    }
    lua_Integer len = luaL_len(L, idx);
    if (len < 0 || len > INT32_MAX / 4) {
        plmlua_push_argerror(L, idx, fn, "bad length %I", len);
        return 0;
    }
    void *buf = lua_newuserdatauv(L, (size_t)(len > 0 ? len : 1) * 4, 0);
    for (lua_Integer i = 1; i <= len; i++) {
        int t = lua_geti(L, idx, i);
        if (type == 'f') {
            if (t != LUA_TNUMBER) {
                plmlua_push_argerror(L, idx, fn, "item %I is %s, not a number", i, luaL_typename(L, -1));
                return 0;
            }
            ((float *)buf)[i - 1] = (float)lua_tonumber(L, -1);
        } else {
            int isint = 0;
            lua_Integer x = t == LUA_TNUMBER ? plmlua_tointegerx(L, -1, &isint) : 0;
            if (!isint) {
                if (t == LUA_TNUMBER)
                    plmlua_push_argerror(L, idx, fn, "item %I (%f) is not an integer", i, lua_tonumber(L, -1));
                else
                    plmlua_push_argerror(L, idx, fn, "item %I is %s, not an integer", i, luaL_typename(L, -1));
                return 0;
            }
            if (x < INT32_MIN || x > INT32_MAX) {
                plmlua_push_argerror(L, idx, fn, "item %I (%I) does not fit in int32", i, x);
                return 0;
            }
            ((int32_t *)buf)[i - 1] = (int32_t)x;
        }
        lua_pop(L, 1);
    }
    *out = buf;
    *n = (int32_t)len;
    return 1;
}

/* A writable view of the given type for C to fill. */
static int plmlua_out_view_arg(lua_State *L, int idx, const char *fn, char type, void **out, int32_t *n) {
    plmlua_view *v = plmlua_toview(L, idx);
    if (!v || v->type != type || !v->writable) {
        plmlua_push_argerror(L, idx, fn, "writable %s view expected (pocketlm.core.view_new), got %s",
                             plmlua_type_name(type), v ? plmlua_type_name(v->type) : luaL_typename(L, idx));
        return 0;
    }
    void *p = plmlua_view_data(L, idx, v);
    if (!p) return 0;
    *out = p;
    *n = v->n;
    return 1;
}

/* A list of strings (nil: none), as C strings. The strings are kept in an
 * anchor table and the pointer array in a scratch userdata, both left on the
 * stack for the call. */
static int plmlua_strs_arg(lua_State *L, int idx, const char *fn, const char ***out, int32_t *n) {
    *out = NULL;
    *n = 0;
    if (lua_isnoneornil(L, idx)) return 1;
    if (!lua_istable(L, idx)) {
        plmlua_push_argerror(L, idx, fn, "table of strings expected, got %s", luaL_typename(L, idx));
        return 0;
    }
    lua_Integer len = luaL_len(L, idx);
    if (len < 0 || len > INT32_MAX / 8) {
        plmlua_push_argerror(L, idx, fn, "bad length %I", len);
        return 0;
    }
    lua_createtable(L, (int)len, 0);
    int anchor = lua_gettop(L);
    const char **ptrs = lua_newuserdatauv(L, (size_t)(len > 0 ? len : 1) * sizeof(char *), 0);
    for (lua_Integer i = 1; i <= len; i++) {
        if (lua_geti(L, idx, i) != LUA_TSTRING) {
            plmlua_push_argerror(L, idx, fn, "item %I is %s, not a string", i, luaL_typename(L, -1));
            return 0;
        }
        size_t k;
        const char *s = lua_tolstring(L, -1, &k);
        if (strlen(s) != k) {
            plmlua_push_argerror(L, idx, fn, "string %I contains a NUL byte", i);
            return 0;
        }
        ptrs[i - 1] = s;
        lua_rawseti(L, anchor, i);
    }
    *out = ptrs;
    *n = (int32_t)len;
    return 1;
}

/* A table of strings with their lengths (chat messages; NUL bytes kept): the
 * strings are anchored in a table left on the stack for the call, the
 * pointers and lengths kept in a scratch userdata. */
static int plmlua_texts_arg(lua_State *L, int idx, const char *fn, const char ***out, size_t **lens, int32_t *n) {
    *out = NULL;
    *lens = NULL;
    *n = 0;
    if (!lua_istable(L, idx)) {
        plmlua_push_argerror(L, idx, fn, "table of strings expected, got %s", luaL_typename(L, idx));
        return 0;
    }
    lua_Integer len = luaL_len(L, idx);
    if (len < 0 || len > INT32_MAX / 16) {
        plmlua_push_argerror(L, idx, fn, "bad length %I", len);
        return 0;
    }
    lua_createtable(L, (int)len, 0);
    int anchor = lua_gettop(L);
    size_t count = (size_t)(len > 0 ? len : 1);
    char *scratch = lua_newuserdatauv(L, count * (sizeof(char *) + sizeof(size_t)), 0);
    const char **ptrs = (const char **)(void *)scratch;
    size_t *sizes = (size_t *)(void *)(scratch + count * sizeof(char *));
    for (lua_Integer i = 1; i <= len; i++) {
        if (lua_geti(L, idx, i) != LUA_TSTRING) {
            plmlua_push_argerror(L, idx, fn, "item %I is %s, not a string", i, luaL_typename(L, -1));
            return 0;
        }
        ptrs[i - 1] = lua_tolstring(L, -1, &sizes[i - 1]);
        lua_rawseti(L, anchor, i);
    }
    *out = ptrs;
    *lens = sizes;
    *n = (int32_t)len;
    return 1;
}

/* A logit bias table {[token] = bias} (nil: none), in a scratch userdata. */
static int plmlua_bias_arg(lua_State *L, int idx, const char *fn, plm_logit_bias **out, int32_t *n) {
    *out = NULL;
    *n = 0;
    if (lua_isnoneornil(L, idx)) return 1;
    if (!lua_istable(L, idx)) {
        plmlua_push_argerror(L, idx, fn, "table {[token] = bias} expected, got %s", luaL_typename(L, idx));
        return 0;
    }
    int32_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (count == INT32_MAX / (int32_t)sizeof(plm_logit_bias)) break;
        count++;
    }
    plm_logit_bias *b = lua_newuserdatauv(L, (size_t)(count > 0 ? count : 1) * sizeof(*b), 0);
    int32_t k = 0;
    lua_pushnil(L);
    while (k < count && lua_next(L, idx)) {
        int isint = 0;
        lua_Integer t = lua_type(L, -2) == LUA_TNUMBER ? plmlua_tointegerx(L, -2, &isint) : 0;
        if (!isint || t < INT32_MIN || t > INT32_MAX) {
            plmlua_push_argerror(L, idx, fn, "logit bias keys must be int32 tokens, got %s", luaL_typename(L, -2));
            return 0;
        }
        if (lua_type(L, -1) != LUA_TNUMBER) {
            plmlua_push_argerror(L, idx, fn, "the bias of token %I is %s, not a number", t, luaL_typename(L, -1));
            return 0;
        }
        b[k].token = (plm_token)t;
        b[k].bias = (float)lua_tonumber(L, -1);
        k++;
        lua_pop(L, 1);
    }
    *out = b;
    *n = k;
    return 1;
}

/* -------------------------------------------------------------- handles */

/* A handle argument: a SWIG object of exactly this type (checked without
 * trusting foreign userdata), not closed. */
static int plmlua_handle_arg(lua_State *L, int idx, swig_type_info *ty, const char *what, const char *fn, void **out) {
    if (lua_type(L, idx) != LUA_TUSERDATA || lua_rawlen(L, idx) < sizeof(swig_lua_userdata) ||
        ((swig_lua_userdata *)lua_touserdata(L, idx))->type != ty) {
        plmlua_push_argerror(L, idx, fn, "%s expected, got %s", what,
                             lua_type(L, idx) == LUA_TUSERDATA ? "another userdata" : luaL_typename(L, idx));
        return 0;
    }
    swig_lua_userdata *u = lua_touserdata(L, idx);
    if (!u->ptr) {
        plmlua_push_argerror(L, idx, fn, "the %s is closed", what);
        return 0;
    }
    *out = u->ptr;
    return 1;
}

/* Pins the object at index owner in the user value of the object on top. */
static void plmlua_pin(lua_State *L, int owner) {
    lua_pushvalue(L, owner);
    lua_setiuservalue(L, -2, 1);
}

/* -------------------------------------------------------- abort callback */

static int plmlua_abort_cb(void *user) {
    lua_State *L = plmlua_L;
    if (!L || !lua_checkstack(L, 4)) return 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &plmlua_abort_key);
    lua_rawgetp(L, -1, user);
    lua_remove(L, -2);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    plmlua_in_callback = 1;
    int st = lua_pcall(L, 0, 1, 0);
    plmlua_in_callback = 0;
    if (st != LUA_OK) {
        lua_rawsetp(L, LUA_REGISTRYINDEX, &plmlua_pending_key); /* the error object */
        plmlua_pending = 1;
        return 1;
    }
    int stop = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return stop;
}
%}

%init %{
    plmlua_view_register(L);
    /* Loading the module again (a test runner resetting package.loaded) keeps the registry's table. */
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &plmlua_abort_key) != LUA_TTABLE) {
        lua_newtable(L);
        lua_newtable(L);
        lua_pushliteral(L, "v");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &plmlua_abort_key);
    }
    lua_pop(L, 1);
    /* SWIG also puts swig_type and swig_equals in the global table: take them out again. */
    {
        static const char *const names[] = {"swig_type", "swig_equals"};
        for (int k = 0; k < 2; k++) {
            lua_getglobal(L, names[k]);
            lua_CFunction f = lua_tocfunction(L, -1);
            lua_pop(L, 1);
            if (f == SWIG_Lua_type || f == SWIG_Lua_class_equal) {
                lua_pushnil(L);
                lua_setglobal(L, names[k]);
            }
        }
    }
%}

/* Every wrapped call records the Lua thread it runs on (for the abort
 * callback) and refuses to run inside an abort callback. */
%exception {
    if (plmlua_in_callback) {
        lua_pushliteral(L, "pocketlm functions cannot be called from an abort callback");
        SWIG_fail;
    }
    lua_State *plmlua_saved_L = plmlua_L;
    plmlua_L = L;
    plmlua_pending = 0;
    $action
    plmlua_L = plmlua_saved_L;
}

/* Replaced by context_logits below (a view, not a raw pointer). */
%ignore plm_context_logits;

/* ------------------------------------------------------------ integers */

%define PLMLUA_INT(TYPE, LO, HI)
%typemap(in) TYPE {
    lua_Integer v_$argnum;
    if (!plmlua_int_arg(L, $input, "$symname", LO, HI, &v_$argnum)) SWIG_fail;
    $1 = ($1_ltype)v_$argnum;
}
%typemap(out) TYPE %{ lua_pushinteger(L, (lua_Integer)$1); SWIG_arg++; %}
%enddef

PLMLUA_INT(signed char, SCHAR_MIN, SCHAR_MAX)
PLMLUA_INT(unsigned char, 0, UCHAR_MAX)
PLMLUA_INT(short, SHRT_MIN, SHRT_MAX)
PLMLUA_INT(unsigned short, 0, USHRT_MAX)
PLMLUA_INT(int, INT_MIN, INT_MAX)
PLMLUA_INT(unsigned int, 0, UINT_MAX)
PLMLUA_INT(long, LUA_MININTEGER, LUA_MAXINTEGER)
PLMLUA_INT(long long, LUA_MININTEGER, LUA_MAXINTEGER)
/* 64-bit unsigned: any Lua integer, negative ones as two's complement. */
PLMLUA_INT(unsigned long, LUA_MININTEGER, LUA_MAXINTEGER)
PLMLUA_INT(unsigned long long, LUA_MININTEGER, LUA_MAXINTEGER)
/* Sizes (plm_context_params.memory_budget): non-negative integers. */
PLMLUA_INT(size_t, 0, LUA_MAXINTEGER)

%typemap(in) enum SWIGTYPE {
    lua_Integer v_$argnum;
    if (!plmlua_int_arg(L, $input, "$symname", INT_MIN, INT_MAX, &v_$argnum)) SWIG_fail;
    $1 = ($1_ltype)(int)v_$argnum;
}
%typemap(out) enum SWIGTYPE %{ lua_pushinteger(L, (lua_Integer)$1); SWIG_arg++; %}

/* -------------------------------------------------------------- status */

%typemap(out) plm_status {
    if ($1 != PLM_OK) {
        plmlua_push_status_error(L, $1);
        SWIG_fail;
    }
}

/* -------------------------------------------------------------- inputs */

%typemap(in) bool {
    if (!lua_isboolean(L, $input)) {
        plmlua_push_argerror(L, $input, "$symname", "boolean expected, got %s", luaL_typename(L, $input));
        SWIG_fail;
    }
    $1 = lua_toboolean(L, $input) != 0;
}

/* C strings: a string without NUL bytes. */
%typemap(in) const char *key {
    size_t k_$argnum = 0;
    if (lua_type(L, $input) != LUA_TSTRING) {
        plmlua_push_argerror(L, $input, "$symname", "string expected, got %s", luaL_typename(L, $input));
        SWIG_fail;
    }
    $1 = ($1_ltype)lua_tolstring(L, $input, &k_$argnum);
    if (strlen($1) != k_$argnum) {
        plmlua_push_argerror(L, $input, "$symname", "a key cannot contain a NUL byte");
        SWIG_fail;
    }
}
/* A path may also be nil: the default model. */
%typemap(in) const char *path {
    size_t k_$argnum = 0;
    if (lua_isnoneornil(L, $input)) {
        $1 = NULL;
    } else if (lua_type(L, $input) != LUA_TSTRING) {
        plmlua_push_argerror(L, $input, "$symname", "path (a string) or nil expected, got %s", luaL_typename(L, $input));
        SWIG_fail;
    } else {
        $1 = ($1_ltype)lua_tolstring(L, $input, &k_$argnum);
        if (strlen($1) != k_$argnum) {
            plmlua_push_argerror(L, $input, "$symname", "a path cannot contain a NUL byte");
            SWIG_fail;
        }
    }
}

/* Text: any bytes, NUL included. */
%typemap(in) (const char *text, size_t len) {
    if (lua_type(L, $input) != LUA_TSTRING) {
        plmlua_push_argerror(L, $input, "$symname", "string expected, got %s", luaL_typename(L, $input));
        SWIG_fail;
    }
    $1 = ($1_ltype)lua_tolstring(L, $input, &$2);
}
/* The same, or nil: NULL. */
%typemap(in) (const char *opt_text, size_t opt_len) {
    $1 = NULL;
    $2 = 0;
    if (!lua_isnil(L, $input)) {
        if (lua_type(L, $input) != LUA_TSTRING) {
            plmlua_push_argerror(L, $input, "$symname", "string or nil expected, got %s", luaL_typename(L, $input));
            SWIG_fail;
        }
        $1 = ($1_ltype)lua_tolstring(L, $input, &$2);
    }
}

%typemap(in) (const void *data, size_t size) {
    if (lua_type(L, $input) != LUA_TSTRING) {
        plmlua_push_argerror(L, $input, "$symname", "string expected, got %s", luaL_typename(L, $input));
        SWIG_fail;
    }
    $1 = ($1_ltype)lua_tolstring(L, $input, &$2);
}

%typemap(in) (const plm_token *tokens, int32_t n_tokens) {
    void *p_$argnum = NULL;
    if (!plmlua_array_arg(L, $input, "$symname", 'i', &p_$argnum, &$2)) SWIG_fail;
    $1 = ($1_ltype)p_$argnum;
}
%apply (const plm_token *tokens, int32_t n_tokens) { (const plm_token *flat, int32_t n_flat) };
%apply (const plm_token *tokens, int32_t n_tokens) { (const int32_t *lens, int32_t n_lens) };

%typemap(in) (const float *values, int32_t n_values) {
    void *p_$argnum = NULL;
    if (!plmlua_array_arg(L, $input, "$symname", 'f', &p_$argnum, &$2)) SWIG_fail;
    $1 = ($1_ltype)p_$argnum;
}

%typemap(in) (const char *const *strs, int32_t n_strs) {
    const char **p_$argnum = NULL;
    if (!plmlua_strs_arg(L, $input, "$symname", &p_$argnum, &$2)) SWIG_fail;
    $1 = ($1_ltype)p_$argnum;
}

%typemap(in) (const char *const *texts, const size_t *text_lens, int32_t n_texts) {
    const char **p_$argnum = NULL;
    size_t *l_$argnum = NULL;
    if (!plmlua_texts_arg(L, $input, "$symname", &p_$argnum, &l_$argnum, &$3)) SWIG_fail;
    $1 = ($1_ltype)p_$argnum;
    $2 = l_$argnum;
}

%typemap(in) (const plm_logit_bias *bias, int32_t n_bias) {
    plm_logit_bias *p_$argnum = NULL;
    if (!plmlua_bias_arg(L, $input, "$symname", &p_$argnum, &$2)) SWIG_fail;
    $1 = p_$argnum;
}

%typemap(in) (float *out_floats, int32_t n_out_floats) {
    void *p_$argnum = NULL;
    if (!plmlua_out_view_arg(L, $input, "$symname", 'f', &p_$argnum, &$2)) SWIG_fail;
    $1 = ($1_ltype)p_$argnum;
}

%typemap(in) (void *out_data, size_t out_size) {
    void *p_$argnum = NULL;
    int32_t n_$argnum = 0;
    if (!plmlua_out_view_arg(L, $input, "$symname", 'B', &p_$argnum, &n_$argnum)) SWIG_fail;
    $1 = p_$argnum;
    $2 = (size_t)n_$argnum;
}

/* Parameter structs: a struct, or nil for the defaults. */
%typemap(in) const plm_sampler_params *params, const plm_generate_params *params,
             const plm_context_params *params, const plm_model_params *params,
             const plm_classify_params *params {
    if (lua_isnoneornil(L, $input)) {
        $1 = NULL;
    } else if (!SWIG_IsOK(SWIG_ConvertPtr(L, $input, (void **)&$1, $1_descriptor, 0))) {
        plmlua_push_argerror(L, $input, "$symname", "parameter struct or nil expected, got %s", luaL_typename(L, $input));
        SWIG_fail;
    }
}

/* Handles, checked strictly (SWIG's own check reads foreign userdata as its own). */
%define PLMLUA_HANDLE_IN(TYPE, WHAT)
%typemap(in) TYPE *, const TYPE * {
    void *p_$argnum = NULL;
    if (!plmlua_handle_arg(L, $input, $descriptor, WHAT, "$symname", &p_$argnum)) SWIG_fail;
    $1 = ($1_ltype)p_$argnum;
}
%enddef
PLMLUA_HANDLE_IN(plm_model, "Model")
PLMLUA_HANDLE_IN(plm_context, "Context")
PLMLUA_HANDLE_IN(plm_sampler, "Sampler")
PLMLUA_HANDLE_IN(plm_generator, "Generator")
PLMLUA_HANDLE_IN(plm_batch_gen, "BatchGen")
PLMLUA_HANDLE_IN(plm_grammar, "Grammar")
PLMLUA_HANDLE_IN(plm_jobs, "Jobs")
PLMLUA_HANDLE_IN(plm_job, "Job")
PLMLUA_HANDLE_IN(plm_adapter, "Adapter")

/* ------------------------------------------------------------- outputs */

/* A new handle, owned by Lua. A context pins its model and a generator its
 * context: both are argument 1 of the calls that make them. */
%define PLMLUA_HANDLE_OUT(TYPE, PIN)
%typemap(in, numinputs=0) TYPE **out (TYPE *tmp = NULL) { $1 = &tmp; }
%typemap(argout) TYPE **out {
    SWIG_NewPointerObj(L, *$1, $*1_descriptor, 1);
    if (PIN) plmlua_pin(L, 1);
    SWIG_arg++;
}
%enddef
PLMLUA_HANDLE_OUT(plm_model, 0)
PLMLUA_HANDLE_OUT(plm_context, 1)
PLMLUA_HANDLE_OUT(plm_sampler, 0)
PLMLUA_HANDLE_OUT(plm_generator, 1)
PLMLUA_HANDLE_OUT(plm_batch_gen, 1)
PLMLUA_HANDLE_OUT(plm_grammar, 0)
PLMLUA_HANDLE_OUT(plm_jobs, 1) /* pins its model */
PLMLUA_HANDLE_OUT(plm_job, 1)  /* pins its runner */
PLMLUA_HANDLE_OUT(plm_adapter, 1)

/* A malloc'd token array becomes an int32 view that owns it (no copy). The
 * view is made before the call (in "check": after SWIG has counted the
 * arguments), so that nothing can fail after it. */
%typemap(in, numinputs=0) (plm_token **out_tokens, int32_t *out_n) (plm_token *toks = NULL, int32_t n = 0, int vidx = 0) {
    $1 = &toks;
    $2 = &n;
}
%typemap(check) (plm_token **out_tokens, int32_t *out_n) {
    plmlua_view_push(L, 'i', PLMLUA_OWN_MALLOC, 0);
    vidx$argnum = lua_gettop(L);
}
%typemap(argout) (plm_token **out_tokens, int32_t *out_n) {
    plmlua_view *v_$argnum = lua_touserdata(L, vidx$argnum);
    v_$argnum->data = *$1;
    v_$argnum->n = *$2;
    toks$argnum = NULL;
    lua_pushvalue(L, vidx$argnum);
    SWIG_arg++;
}
%typemap(freearg) (plm_token **out_tokens, int32_t *out_n) { free(toks$argnum); }

%typemap(in, numinputs=0) (char **out_bytes, size_t *out_len) (char *bytes = NULL, size_t n = 0) {
    $1 = &bytes;
    $2 = &n;
}
%typemap(argout) (char **out_bytes, size_t *out_len) {
    lua_pushlstring(L, *$1 ? *$1 : "", *$2);
    SWIG_arg++;
}
%typemap(freearg) (char **out_bytes, size_t *out_len) { free(bytes$argnum); }

%typemap(in, numinputs=0) (const char **piece, size_t *piece_len) (const char *p = NULL, size_t n = 0) {
    $1 = ($1_ltype)&p;
    $2 = &n;
}
%typemap(argout) (const char **piece, size_t *piece_len) {
    lua_pushlstring(L, *$1 ? *$1 : "", *$2);
    SWIG_arg++;
}

/* Borrowed bytes, or nil when the pointer is NULL. */
%typemap(in, numinputs=0) (const char **opt_bytes, size_t *opt_len) (const char *p = NULL, size_t n = 0) {
    $1 = ($1_ltype)&p;
    $2 = &n;
}
%typemap(argout) (const char **opt_bytes, size_t *opt_len) {
    if (*$1) lua_pushlstring(L, *$1, *$2);
    else lua_pushnil(L);
    SWIG_arg++;
}

%typemap(in, numinputs=0) plm_token *out_token (plm_token t = 0) { $1 = &t; }
%typemap(argout) plm_token *out_token { lua_pushinteger(L, *$1); SWIG_arg++; }

%typemap(in, numinputs=0) plm_stop_reason *out_reason (plm_stop_reason r = PLM_STOP_NONE) { $1 = &r; }
%typemap(argout) plm_stop_reason *out_reason { lua_pushinteger(L, (lua_Integer)*$1); SWIG_arg++; }

%typemap(in, numinputs=0) plm_model_info *out_info (plm_model_info info) { $1 = &info; }
%typemap(argout) plm_model_info *out_info {
    lua_createtable(L, 0, 21);
    lua_pushstring(L, $1->arch); lua_setfield(L, -2, "arch");
    lua_pushstring(L, $1->name); lua_setfield(L, -2, "name");
    lua_pushstring(L, $1->file_type); lua_setfield(L, -2, "file_type");
    lua_pushstring(L, $1->chat_template); lua_setfield(L, -2, "chat_template");
    lua_pushstring(L, $1->path); lua_setfield(L, -2, "path");
    lua_pushinteger(L, $1->n_vocab); lua_setfield(L, -2, "n_vocab");
    lua_pushinteger(L, $1->n_ctx_train); lua_setfield(L, -2, "n_ctx_train");
    lua_pushinteger(L, $1->n_embd); lua_setfield(L, -2, "n_embd");
    lua_pushinteger(L, $1->n_layer); lua_setfield(L, -2, "n_layer");
    lua_pushinteger(L, $1->n_head); lua_setfield(L, -2, "n_head");
    lua_pushinteger(L, $1->n_head_kv); lua_setfield(L, -2, "n_head_kv");
    lua_pushinteger(L, $1->n_ff); lua_setfield(L, -2, "n_ff");
    lua_pushinteger(L, $1->head_dim); lua_setfield(L, -2, "head_dim");
    lua_pushinteger(L, (lua_Integer)$1->n_params); lua_setfield(L, -2, "n_params");
    lua_pushinteger(L, (lua_Integer)$1->n_bytes); lua_setfield(L, -2, "n_bytes");
    lua_pushinteger(L, $1->bos); lua_setfield(L, -2, "bos");
    lua_pushinteger(L, $1->eos); lua_setfield(L, -2, "eos");
    lua_pushinteger(L, $1->eot); lua_setfield(L, -2, "eot");
    lua_pushboolean(L, $1->add_bos); lua_setfield(L, -2, "add_bos");
    lua_pushinteger(L, $1->n_cls_out); lua_setfield(L, -2, "n_cls_out");
    lua_pushinteger(L, (lua_Integer)$1->n_repacked); lua_setfield(L, -2, "n_repacked");
    SWIG_arg++;
}

/* -------------------------------------------------- Lua-only functions */

%native(view_new) int plmlua_view_new(lua_State *L);
%native(context_logits) int plmlua_context_logits(lua_State *L);
%native(context_set_abort) int plmlua_context_set_abort(lua_State *L);
%native(close) int plmlua_close(lua_State *L);
%native(is_closed) int plmlua_is_closed(lua_State *L);
%native(clock) int plmlua_clock(lua_State *L);

%{
/* view_new(type, n | table) -> a writable view of n zeroed items, or of a
 * table's items; type is "float32", "int32" or "byte". */
static int plmlua_view_new(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    char type = !strcmp(name, "float32") ? 'f' : !strcmp(name, "int32") ? 'i' : !strcmp(name, "byte") ? 'B' : 0;
    if (!type) return luaL_argerror(L, 1, "\"float32\", \"int32\" or \"byte\" expected");
    if (lua_istable(L, 2)) {
        lua_Integer len = luaL_len(L, 2);
        luaL_argcheck(L, len >= 0 && len <= INT32_MAX / 4, 2, "too many items");
        plmlua_view *v = plmlua_view_push(L, type, PLMLUA_OWN_INLINE, (int32_t)len);
        int vi = lua_gettop(L);
        for (lua_Integer i = 1; i <= len; i++) {
            lua_pushvalue(L, vi);
            lua_pushinteger(L, i);
            lua_geti(L, 2, i);
            lua_settable(L, -3); /* __newindex checks each item */
            lua_pop(L, 1);
        }
        (void)v;
        return 1;
    }
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0 && n <= INT32_MAX / 4, 2, "item count outside [0, 2^29]");
    plmlua_view_push(L, type, PLMLUA_OWN_INLINE, (int32_t)n);
    return 1;
}

/* context_logits(ctx, i) -> a writable float32 view of the logits of batch
 * entry i (-1: the last with logits) of the context's last decode; it keeps
 * the context handle alive. */
static int plmlua_context_logits(lua_State *L) {
    void *p = NULL;
    lua_Integer i = -1;
    if (!plmlua_handle_arg(L, 1, SWIGTYPE_p_plm_context, "Context", "context_logits", &p)) return lua_error(L);
    if (!lua_isnoneornil(L, 2) && !plmlua_int_arg(L, 2, "context_logits", INT32_MIN, INT32_MAX, &i))
        return lua_error(L);
    plm_context *ctx = p;
    if (!plm_context_logits(ctx, (int32_t)i)) {
        plmlua_push_status_error(L, PLM_ERR_ARG);
        return lua_error(L);
    }
    plm_model_info info;
    plm_status st = plm_model_get_info(plm_context_model(ctx), &info);
    if (st) {
        plmlua_push_status_error(L, st);
        return lua_error(L);
    }
    plmlua_view *v = plmlua_view_push(L, 'f', PLMLUA_LOGITS, info.n_vocab);
    v->row = (int32_t)i;
    plmlua_pin(L, 1);
    return 1;
}

/* context_set_abort(ctx, fn | nil): fn() is called between layers of every
 * decode on ctx (and between tokens of a generation); a true result cancels
 * it (PLM_ERR_CANCELLED), an error cancels it and is re-raised. */
static int plmlua_context_set_abort(lua_State *L) {
    void *p = NULL;
    if (plmlua_in_callback) return luaL_error(L, "pocketlm functions cannot be called from an abort callback");
    if (!plmlua_handle_arg(L, 1, SWIGTYPE_p_plm_context, "Context", "context_set_abort", &p)) return lua_error(L);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
    /* The handle's user value (a table made here if needed) holds the
     * function strongly; the registry maps the C pointer to it weakly. */
    lua_getiuservalue(L, 1, 1);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_createtable(L, 2, 1);
        lua_getiuservalue(L, 1, 1); /* the model it pinned */
        lua_rawseti(L, -2, 1);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, 1, 1);
    }
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "abort");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &plmlua_abort_key);
    lua_pushvalue(L, 2);
    lua_rawsetp(L, -2, p);
    plm_context_set_abort_callback(p, lua_isnoneornil(L, 2) ? NULL : plmlua_abort_cb, p);
    return 0;
}

/* close(handle): frees a Model, Context, Sampler, Generator or Grammar now (a closed or
 * nil handle is a no-op). Free children first: the library does not check. */
static int plmlua_close(lua_State *L) {
    if (plmlua_in_callback) return luaL_error(L, "pocketlm functions cannot be called from an abort callback");
    if (lua_isnoneornil(L, 1)) return 0;
    swig_lua_userdata *u = NULL;
    if (lua_type(L, 1) == LUA_TUSERDATA && lua_rawlen(L, 1) >= sizeof(swig_lua_userdata)) u = lua_touserdata(L, 1);
    if (!u || !(u->type == SWIGTYPE_p_plm_model || u->type == SWIGTYPE_p_plm_context ||
                u->type == SWIGTYPE_p_plm_sampler || u->type == SWIGTYPE_p_plm_generator ||
                u->type == SWIGTYPE_p_plm_batch_gen || u->type == SWIGTYPE_p_plm_grammar ||
                u->type == SWIGTYPE_p_plm_jobs || u->type == SWIGTYPE_p_plm_job))
        return luaL_argerror(L, 1, "Model, Context, Sampler, Generator, BatchGen, Grammar, Jobs or Job handle expected");
    void *p = u->ptr;
    int own = u->own;
    u->ptr = NULL;
    u->own = 0;
    if (!p || !own) return 0;
    if (u->type == SWIGTYPE_p_plm_model) {
        plm_model_free(p);
    } else if (u->type == SWIGTYPE_p_plm_context) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &plmlua_abort_key);
        lua_pushnil(L);
        lua_rawsetp(L, -2, p);
        plm_context_free(p);
    } else if (u->type == SWIGTYPE_p_plm_sampler) {
        plm_sampler_free(p);
    } else if (u->type == SWIGTYPE_p_plm_batch_gen) {
        plm_batch_gen_free(p);
    } else if (u->type == SWIGTYPE_p_plm_grammar) {
        plm_grammar_free(p);
    } else if (u->type == SWIGTYPE_p_plm_jobs) {
        plm_jobs_free(p); /* joins its workers: jobs still held end as cancelled */
    } else if (u->type == SWIGTYPE_p_plm_job) {
        plm_job_free(p);
    } else {
        plm_generator_free(p);
    }
    return 0;
}

/* clock() -> seconds of a monotonic wall clock (Lua's os.clock is CPU time,
 * summed over threads): what a frame budget is measured in. */
static int plmlua_clock(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + 1e-9 * (lua_Number)ts.tv_nsec);
    return 1;
}

/* is_closed(handle) -> true once close() has freed it. */
static int plmlua_is_closed(lua_State *L) {
    swig_lua_userdata *u = NULL;
    if (lua_type(L, 1) == LUA_TUSERDATA && lua_rawlen(L, 1) >= sizeof(swig_lua_userdata)) u = lua_touserdata(L, 1);
    luaL_argcheck(L, u != NULL, 1, "handle expected");
    lua_pushboolean(L, u->ptr == NULL);
    return 1;
}
%}

/* ------------------------------------------------------ background jobs */

/* A job runner pins its model and a job its runner (user values), so a
 * collected runner has no job left that needs it; a job collected while it
 * runs is cancelled (its worker drops it), a runner collected joins its
 * threads. Worker threads never touch a lua_State: the Lua side only polls. */
%rename(Jobs) plm_jobs;
%rename(Job) plm_job;
%nodefaultctor plm_jobs;
%nodefaultctor plm_job;
struct plm_jobs {};
struct plm_job {};
%extend plm_jobs { ~plm_jobs() { plm_jobs_free($self); } }
%extend plm_job { ~plm_job() { plm_job_free($self); } }
%apply (const char *text, size_t len) { (const char *job_prompt, size_t job_len) };

%inline %{
/* A runner over model (see plm_jobs_params; 0 means the default, and a negative nice). */
plm_status plmb_jobs_create(plm_model *model, int32_t n_workers, int32_t n_threads, int32_t n_ctx, int32_t n_parallel,
                            int32_t nice, plm_jobs **out) {
    plm_jobs_params p = plm_jobs_default_params();
    if (n_workers) p.n_workers = n_workers;
    if (n_threads) p.n_threads = n_threads;
    p.n_ctx = n_ctx;
    if (n_parallel) p.n_parallel = n_parallel;
    if (nice >= 0) p.nice = nice;
    return plm_jobs_create(model, &p, out);
}

/* Queues a job of prompt text, with stop strings and a logit bias (copied). */
plm_status plmb_jobs_submit(plm_jobs *jobs, const char *job_prompt, size_t job_len, const plm_generate_params *params,
                            const char *const *strs, int32_t n_strs, const plm_logit_bias *bias, int32_t n_bias,
                            plm_job **out) {
    plm_generate_params p = params ? *params : plm_generate_default_params();
    p.stop = strs;
    p.n_stop = n_strs;
    p.sampling.logit_bias = bias;
    p.sampling.n_logit_bias = n_bias;
    return plm_jobs_submit(jobs, job_prompt, job_len, &p, out);
}

/* The job's text since the last poll and its stop reason (0 while it runs); a failed job raises its error. */
plm_status plmb_job_poll(plm_job *job, char **out_bytes, size_t *out_len, plm_stop_reason *out_reason) {
    return plm_job_poll(job, out_bytes, out_len, out_reason);
}
bool plmb_job_done(plm_job *job) { return plm_job_done(job); }
int32_t plmb_job_n_generated(plm_job *job) { return plm_job_n_generated(job); }
void plmb_job_cancel(plm_job *job) { plm_job_cancel(job); }
void plmb_job_wait(plm_job *job) { plm_job_wait(job); }
%}
