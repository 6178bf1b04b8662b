#!/bin/sh
# bench/love_frames.sh [FRAMES] — frame times of the LÖVE example (examples/love) headless, without and with
# generation: the NPC's model on one worker thread (one compute thread), asked again as soon as a reply ends, so
# it generates through every frame. Prints, per run, frame time (start to start, paced at 60 per second, as the
# player sees it) and work time (events, update, draw, present) as median / p99 / max in ms, and the replies'
# tokens per second. Needs `make model`, `make lua LUA=luajit`, and Debian's love, xvfb, xauth.
# FRAMES defaults to 1200 (20 s a run).
set -eu
frames=${1:-1200}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { # name, npc
    mkdir -p "$tmp/$1"
    POCKETLM_LOVE_NPC=$2 POCKETLM_LOVE_REPEAT=1 POCKETLM_LOVE_FRAMES=$frames POCKETLM_LOVE_OUT="$tmp/$1" \
        xvfb-run -a -s "-screen 0 800x600x24" love "$root/examples/love" >/dev/null 2>&1
    [ -f "$tmp/$1/status.txt" ] || { echo "bench: the $1 run failed"; cat "$tmp/$1/error.txt" 2>/dev/null; exit 1; }
    get() { sed -n "s/^$1: //p" "$tmp/$name/status.txt"; }
    name=$1
    printf '%-18s frame %s | work %s | replies %s, %s tokens/s\n' "$1" "$(get frame_ms)" "$(get work_ms)" \
        "$(get asked)" "$(get tokens_per_s)"
}
echo "$(date -u +%Y-%m-%d) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
run "no generation" 0
run "generating" 1
