#!/bin/sh
# Runs each C test binary, prints its summary and a total line; fails if any failed.
dir=$1; shift
passed=0; failed=0; status=0
for t in "$@"; do
    echo "== $(basename "$t")"
    out=$("$t" 2>&1); rc=$?
    echo "$out" | grep -E "FAIL|passed|ERROR|runtime error|Sanitizer" || true
    line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    if [ -z "$line" ] || [ $rc -ne 0 ]; then
        echo "$out" | tail -n 30
        status=1
    fi
    p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p'); f=$(echo "$line" | sed -n 's/.*passed, \([0-9]*\) failed/\1/p')
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-1}))
done
echo "C tests: $passed passed, $failed failed"
[ $failed -eq 0 ] && [ $status -eq 0 ]
