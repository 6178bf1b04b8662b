#!/bin/sh
# Runs each C test binary, prints its summary and a total line; fails if any failed.
# $RUNNER, if set, prefixes each run (make test-valgrind sets it to valgrind and its options).
dir=$1; shift
passed=0; failed=0; status=0
for t in "$@"; do
    echo "== $(basename "$t")"
    start=$(date +%s)
    out=$($RUNNER "$t" 2>&1); rc=$?
    echo "$out" | grep -E "FAIL|passed|ERROR|runtime error|Sanitizer|^==[0-9]+== " || true
    echo "   ($(( $(date +%s) - start )) s)"
    line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    if [ -z "$line" ] || [ $rc -ne 0 ]; then
        echo "$out" | tail -n 30
        status=1
    fi
    p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p'); f=$(echo "$line" | sed -n 's/.*passed, \([0-9]*\) failed/\1/p')
    # a nonzero exit after a clean summary (a leak or memory error reported at exit) is a failure too
    [ $rc -ne 0 ] && [ "${f:-1}" = 0 ] && f=1
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-1}))
done
echo "C tests: $passed passed, $failed failed"
[ $failed -eq 0 ] && [ $status -eq 0 ]
