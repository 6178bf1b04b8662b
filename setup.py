"""Build of the pocketlm Python package: the C core and its SWIG module ``pocketlm._core``.

pyproject.toml holds the metadata; this file holds what setuptools cannot say
declaratively:

* SWIG runs here (the ``swig`` package from the registry is a build
  requirement, so no system SWIG is needed): ``bindings/pocketlm.i`` becomes a C
  wrapper, compiled into the extension ``pocketlm._core_c``, and the module
  ``pocketlm._core`` (Python) over it, which is placed beside the extension.
* The C sources under csrc/ are compiled by build_ext itself, because they need
  per-file flags: each kernel file csrc/kernels/<isa>.c gets the instruction-set
  flags the Makefile gives it (``ISA_<isa> := ...``) and everything else stays
  baseline (x86-64, armv8-a), so one wheel runs on any CPU of its architecture
  and picks its kernels at run time. Which kernel files are compiled depends on
  the architecture the compiler targets (its ``-dumpmachine``; the Makefile's
  ``KERNELS_<arch> := ...`` lines), so an aarch64 build never sees an x86 flag
  and a cross compiler (``CC=aarch64-linux-gnu-gcc``) gets its own target's.
* build_py runs build_ext first, so the generated ``_core.py`` exists before
  packages are collected.
* ``POCKETLM_SANITIZE=1`` builds the extension with AddressSanitizer and
  UndefinedBehaviorSanitizer (``make python-test-asan``), in a build directory
  of its own; the interpreter then needs the ASan runtime preloaded.
"""

import concurrent.futures
import glob
import os
import re
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.join("python", "pocketlm")

# The Makefile's flags, minus warnings and -fPIC (setuptools adds it).
BASE_CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-fvisibility=hidden", "-pthread", "-O2"]
# POCKETLM_SANITIZE=1: ASan + UBSan, with the debug info and frame pointers that readable reports need.
SANITIZE = os.environ.get("POCKETLM_SANITIZE") == "1"
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g"]
# The kernel tables (csrc/kernels/) get UBSan only in that build: under ASan their inner loops are 70% of a
# generated token's time (7x slower tokens), while what the Python tests are there to catch (lifetimes, buffers
# shared with Python, error paths) lies outside them. ASan checks every kernel entry in the C tests
# (`make test-asan`: test_quant runs each table's entries over many shapes, test_model/test_batch the models).
SANITIZE_KERNEL_FLAGS = ["-fsanitize=undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g"]
# Used when the Makefile is absent; the Makefile is the source of truth.
FALLBACK_ISA = {
    "avx2": ["-mavx2", "-mfma", "-mf16c", "-O3"],
    "avx512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni", "-mavx2", "-mfma", "-mf16c", "-O3"],
    "neon": ["-O3"],
    "neon_dotprod": ["-march=armv8.2-a+dotprod", "-O3"],
}
FALLBACK_KERNELS = {"x86_64": ["avx2", "avx512"], "i686": ["avx2", "avx512"], "aarch64": ["neon", "neon_dotprod"]}
# Other spellings of an architecture (macOS's clang says arm64).
ARCH_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "i386": "i686", "i586": "i686"}


def read_version():
    with open(os.path.join(HERE, "csrc", "include", "pocketlm.h"), encoding="utf-8") as f:
        m = re.search(r'#define\s+PLM_VERSION\s+"([^"]+)"', f.read())
    if not m:
        raise RuntimeError("PLM_VERSION not found in csrc/include/pocketlm.h")
    return m.group(1)


def makefile_vars(prefix, fallback):
    """{name: words} of the Makefile's ``<prefix>_<name> := words`` lines (the fallback without a Makefile)."""
    path = os.path.join(HERE, "Makefile")
    if not os.path.exists(path):
        return dict(fallback)
    found = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^" + prefix + r"_(\w+)\s*:?=\s*(.*)$", line)
            if m:
                found[m.group(1)] = m.group(2).split()
    return found


def target_arch(compiler):
    """The architecture a compiler command (a list, as distutils keeps it) builds for: "x86_64", "aarch64"..."""
    try:
        out = subprocess.run([compiler[0], "-dumpmachine"], capture_output=True, text=True, check=True).stdout
        arch = out.strip().split("-")[0]
    except (OSError, IndexError, subprocess.CalledProcessError):
        import platform

        arch = platform.machine()
    return ARCH_ALIASES.get(arch, arch)


def library_sources(arch):
    """(source, extra flags) for every C file of the library for architecture arch, in a stable order: the kernel
    files are dispatch.c and the tables KERNELS_<arch> names (none but the scalar reference elsewhere)."""
    isa = makefile_vars("ISA", FALLBACK_ISA)
    kernels = ["dispatch"] + makefile_vars("KERNELS", FALLBACK_KERNELS).get(arch, [])
    out = []
    for pattern in ("csrc/*.c", "csrc/tokenizer/*.c", "csrc/models/*.c", "csrc/grammar/*.c"):
        out += [(src, []) for src in sorted(glob.glob(pattern))]
    out += [(f"csrc/kernels/{name}.c", isa.get(name, [])) for name in kernels]
    return out


def find_swig():
    """The swig executable: the registry package's if installed, else one on PATH."""
    try:
        import swig  # sets SWIG_LIB in os.environ for its own binary

        exe = os.path.join(swig.BIN_DIR, "swig")
        if os.path.exists(exe):
            return exe
    except ImportError:
        pass
    for name in ("swig", "swig4.0"):
        exe = shutil.which(name)
        if exe:
            return exe
    raise RuntimeError("SWIG not found: `pip install swig` (it is a build requirement in pyproject.toml)")


class BuildExt(build_ext):
    """Runs SWIG, then compiles csrc/ with per-file flags and links it into pocketlm._core."""

    def run(self):
        self._swig()
        super().run()

    def _proxy_dest(self):
        if self.inplace:
            return os.path.join(HERE, PACKAGE_DIR, "_core.py")
        return os.path.join(self.build_lib, "pocketlm", "_core.py")

    def _swig(self):
        out_dir = os.path.join(self.build_temp, "swig")
        os.makedirs(out_dir, exist_ok=True)
        wrapper = os.path.join(out_dir, "pocketlm_wrap.c")
        cmd = [find_swig(), "-python", "-O", "-interface", "_core_c", "-Icsrc/include", "-Ibindings",
               "-outdir", out_dir, "-o", wrapper, "bindings/pocketlm.i"]
        self.announce(" ".join(cmd), level=2)
        subprocess.check_call(cmd)
        dest = self._proxy_dest()
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(os.path.join(out_dir, "_core.py"), dest)
        for ext in self.extensions:
            if ext.name == "pocketlm._core_c":
                ext.sources = [wrapper]

    def build_extension(self, ext):
        if ext.name == "pocketlm._core_c":
            # Every C file (the library's and SWIG's wrapper) is compiled here, on all cores at once; then
            # build_ext only links. One file per compiler call, each with its own flags.
            jobs = [(src, ["csrc/include", "csrc"], BASE_CFLAGS + extra + self._debug_flags(src))
                    for src, extra in library_sources(target_arch(self.compiler.compiler_so))]
            jobs += [(src, ext.include_dirs, ext.extra_compile_args + self._debug_flags()) for src in ext.sources]
            for src, _, _ in jobs:
                obj = self.compiler.object_filenames([src], output_dir=self.build_temp)[0]
                os.makedirs(os.path.dirname(obj) or ".", exist_ok=True)

            def compile_one(job):
                src, include_dirs, flags = job
                return self.compiler.compile([src], output_dir=self.build_temp, include_dirs=include_dirs,
                                             extra_postargs=flags, debug=self.debug)

            with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                ext.extra_objects = [obj for objs in pool.map(compile_one, jobs) for obj in objs]
            ext.sources = []
        super().build_extension(ext)

    def _debug_flags(self, src=""):
        if SANITIZE:
            kernel = os.path.normpath(src).startswith(os.path.join("csrc", "kernels") + os.sep)
            return SANITIZE_KERNEL_FLAGS if kernel else SANITIZE_FLAGS
        # Python's own CFLAGS carry -g; a release wheel does not need the debug info (it triples the size).
        return [] if self.debug else ["-g0"]

    def get_outputs(self):
        return super().get_outputs() + [self._proxy_dest()]


class BuildPy(build_py):
    """build_ext first: the SWIG proxy _core.py must exist before modules are collected."""

    def run(self):
        self.run_command("build_ext")
        super().run()


core = Extension(
    "pocketlm._core_c",
    sources=["bindings/pocketlm.i"],  # replaced by the generated wrapper in BuildExt._swig
    include_dirs=["csrc/include", "bindings"],
    extra_compile_args=["-fvisibility=hidden", "-O2"],
    extra_link_args=["-pthread"] + (["-fsanitize=address,undefined"] if SANITIZE else []),
    libraries=["m"],
    depends=glob.glob("csrc/**/*.[ch]", recursive=True) + glob.glob("bindings/*"),
)

if sys.platform == "win32":
    raise SystemExit("pocketlm builds with GCC or Clang (Linux, macOS); Windows is not supported yet")

setup(
    version=read_version(),
    # build/ belongs to the Makefile; setuptools works in a directory of its own inside it.
    options={"build": {"build_base": os.path.join("build-asan" if SANITIZE else "build", "python")}},
    ext_modules=[core],
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy},
)
