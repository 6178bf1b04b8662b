#!/usr/bin/env python3
"""Puts llama.cpp's public test corpora into the pocketlm cache.

The llama-cpp-python 0.3.36 sdist on the package registry vendors llama.cpp,
whose models/ folder holds
  - ggml-vocab-*.gguf: vocabulary-only GGUF files, most with golden pairs
    (.gguf.inp: test strings separated by "\\n__ggml_vocab_test__\\n";
    .gguf.out: the token ids llama.cpp gives each string, one line each);
  - templates/*.jinja: real chat templates.
This script downloads the sdist through pip (checked against the SHA-256
below), and extracts those files, nothing else, into
<cache>/llama-cpp-corpus/{vocab,templates}, where <cache> is $POCKETLM_CACHE,
else $XDG_CACHE_HOME/pocketlm, else ~/.cache/pocketlm. It prints the corpus
directory. Nothing is downloaded when a previous run completed (a STAMP file
names the sdist's hash). The corpus is test data, never committed.

    python3 tools/fetch_vocab_suite.py            # fetch (if needed), print the directory
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

VERSION = "0.3.36"
SDIST = "llama_cpp_python-%s.tar.gz" % VERSION
SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
PREFIX = "llama_cpp_python-%s/vendor/llama.cpp/models/" % VERSION


def cache_dir():
    if os.environ.get("POCKETLM_CACHE"):
        return os.environ["POCKETLM_CACHE"]
    if os.environ.get("XDG_CACHE_HOME"):
        return os.path.join(os.environ["XDG_CACHE_HOME"], "pocketlm")
    return os.path.join(os.path.expanduser("~"), ".cache", "pocketlm")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wanted(name):
    """The member's destination relative to the corpus directory, or None."""
    if not name.startswith(PREFIX):
        return None
    rest = name[len(PREFIX):]
    if "/" not in rest and rest.startswith("ggml-vocab-") and rest.endswith((".gguf", ".gguf.inp", ".gguf.out")):
        return os.path.join("vocab", rest)
    if rest.startswith("templates/") and rest.count("/") == 1 and rest.endswith(".jinja"):
        return rest
    return None


def main():
    dest = os.path.join(cache_dir(), "llama-cpp-corpus")
    stamp = os.path.join(dest, "STAMP")
    if os.path.isfile(stamp) and open(stamp).read().strip() == SHA256:
        print(dest)
        return 0
    os.makedirs(cache_dir(), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        print("fetching the llama-cpp-python %s sdist (about 77 MB) from the package registry ..." % VERSION, file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "llama-cpp-python",
             "--no-build-isolation", "--dest", tmp, "llama-cpp-python==%s" % VERSION],
            check=True, stdout=sys.stderr)
        path = os.path.join(tmp, SDIST)
        if not os.path.isfile(path):
            sys.exit("error: pip did not leave %s in %s" % (SDIST, tmp))
        got = sha256(path)
        if got != SHA256:
            sys.exit("error: %s has SHA-256 %s, expected %s" % (SDIST, got, SHA256))
        staging = dest + ".part"
        shutil.rmtree(staging, ignore_errors=True)
        n = 0
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:
                rel = wanted(m.name)
                if rel is None or not m.isfile():
                    continue
                out = os.path.join(staging, rel)
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with tar.extractfile(m) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                n += 1
        if n == 0:
            sys.exit("error: %s holds no vocabulary or template files under %s" % (SDIST, PREFIX))
        with open(os.path.join(staging, "STAMP"), "w") as f:
            f.write(SHA256 + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(staging, dest)
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
