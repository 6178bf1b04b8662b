#!/bin/sh
# tests/love/run_example.sh OUTDIR — runs examples/love headless (LÖVE 11 under xvfb-run) for a fixed number of
# frames and checks what it wrote into OUTDIR: no Lua error (error.txt, exit status), the NPC's reply arrived
# (status.txt: reply_done, a non-empty reply), and the screenshot (shot.png) shows it: bubble_ink counts the
# dark pixels inside the speech bubble, and an empty bubble (its "..." while waiting) has under 150.
# Debian: love xvfb xauth; the module built for LuaJIT (make lua LUA=luajit) and the default model (make model).
set -u
out=${1:?usage: tests/love/run_example.sh OUTDIR}
frames=${LOVE_FRAMES:-420}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
rm -f "$out/status.txt" "$out/shot.png" "$out/error.txt" "$out/rc"
command -v xvfb-run >/dev/null && command -v love >/dev/null || { echo "love-test: needs love and xvfb-run (Debian: love xvfb xauth)"; exit 1; }
start=$(date +%s)
# The ALSA lines LÖVE prints without a sound card are harmless: dropped.
example=${LOVE_EXAMPLE:-$root/examples/love}
(POCKETLM_LOVE_FRAMES=$frames POCKETLM_LOVE_OUT=$(cd "$out" && pwd) timeout 90 \
    xvfb-run -a -s "-screen 0 800x600x24" love "$example" 2>&1; echo $? >"$out/rc") |
    grep -v -e '^ALSA lib' -e '^AL lib' -e '^Could not open device'
rc=$(cat "$out/rc")
fail() { echo "love-test: FAIL: $*"; [ -f "$out/status.txt" ] && cat "$out/status.txt"; exit 1; }
[ -f "$out/error.txt" ] && { cat "$out/error.txt"; fail "a Lua error"; }
[ "$rc" = 0 ] || fail "love exited with status $rc"
[ -f "$out/status.txt" ] || fail "no status.txt: the example did not reach frame $frames"
get() { sed -n "s/^$1: //p" "$out/status.txt"; }
[ "$(get frames)" = "$frames" ] || fail "frames: $(get frames), expected $frames"
[ "$(get reply_done)" = "true" ] || fail "the reply did not end within $frames frames"
reply=$(get reply)
[ -n "$reply" ] || fail "empty reply"
[ -s "$out/shot.png" ] || fail "no screenshot"
[ "$(head -c 8 "$out/shot.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "shot.png is not a PNG"
ink=$(get bubble_ink)
[ "${ink:-0}" -ge 1000 ] || fail "the speech bubble in the screenshot has $ink dark pixels: no reply text shown"
echo "love-test: ok in $(( $(date +%s) - start )) s: $frames frames, reply ($(get tokens) tokens, $(get reason)): $reply"
echo "love-test: frame times while generating (ms): $(get generating_frame_ms); screenshot $out/shot.png"
