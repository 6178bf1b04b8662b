#!/bin/sh
# Runs the model fidelity tests once per kernel table: tests/c/run_tables.sh "TABLES" PROBE TEST...
# For each table in TABLES (POCKETLM_KERNELS values: avx2 avx512 scalar) it asks PROBE (build/tests/test_quant,
# which prints "kernels in use: NAME") which table the library really picks under that setting; a table this CPU
# cannot run is reported as "skipped: TABLE ..." (never run under another table's name), the others run every
# TEST through run_all.sh. Fails if any run table fails. $RUNNER, if set, prefixes the probe and each run
# (make test-arm sets it to qemu-aarch64 with an emulated CPU).
tables=$1; probe=$2; shift 2
status=0
for k in $tables; do
    out=$(POCKETLM_KERNELS=$k $RUNNER "$probe" 2>&1)
    used=$(echo "$out" | sed -n 's/^ *kernels in use: *//p' | tail -n 1)
    if [ "$used" != "$k" ]; then
        why=$(echo "$out" | sed -n 's/^pocketlm: //p' | head -n 1)
        echo "== kernels $k: skipped: ${why:-the library chose ${used:-nothing}}"
        continue
    fi
    echo "== kernels $k"
    start=$(date +%s)
    POCKETLM_KERNELS=$k sh "$(dirname "$0")/run_all.sh" "" "$@" || status=1
    echo "   (kernels $k: $(( $(date +%s) - start )) s)"
done
exit $status
