#!/bin/sh
# test.sh — `make test`: unit tests (cmocka), protocol and interop tests
# (pytest against a real `pobox serve`), and a short fuzz run; ends with one
# line "N passed, N failed[, N skipped]" and exits non-zero on any failure.
# TEST_SUITES narrows the pytest part (make check-asan: the protocol suites,
# which drive every server code path; the interop suites repeat them with
# real clients).
BUILD=${BUILD:-build}
export POBOX_BIN="$PWD/$BUILD/pobox"
passed=0 failed=0 skipped=0
results=$(mktemp)

echo "== unit tests"
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    out=$("$t" 2>&1); rc=$?
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    p=${p:-0}; f=${f:-0}
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    [ "$f" -ne 0 ] && printf '%s\n' "$out" | grep -E 'FAILED|ERROR|Sanitizer|runtime error' | head -20
    echo "$(basename "$t"): $p passed, $f failed"
    passed=$((passed + p)); failed=$((failed + f))
done

echo "== protocol and interop tests"
xml="$BUILD/pytest.xml"
/usr/bin/python3 -m pytest -q -p no:cacheprovider --junitxml="$xml" \
    ${TEST_SUITES:-tests/protocol tests/interop}
if [ -f "$xml" ]; then
    /usr/bin/python3 - "$xml" >"$results" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
s = sum(int(x.get("skipped", 0)) for x in suites)
print(t - f - s, f, s)
PY
    read -r p f s <"$results"
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    rm -f "$xml"
else
    failed=$((failed + 1))
fi

echo "== fuzz (short run)"
if FUZZ_SECONDS=${FUZZ_SECONDS:-10} sh tools/fuzz.sh; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi
rm -f "$results"

if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
