#!/bin/sh
# fuzz.sh — builds the libFuzzer harnesses in tests/fuzz/ into build/fuzz/
# (clang, ASan + UBSan) and runs each for FUZZ_SECONDS (default 10) on a
# copy of its seed corpus, so the repository is never modified. Harness NAME
# is tests/fuzz/fuzz_NAME.c with seeds in tests/fuzz/corpus/NAME/. Prints
# "fuzz NAME: ok (N runs)" or "fuzz NAME: FAILED" per harness and exits
# non-zero when any harness fails to build or finds a bug. Logs and crashing
# inputs stay in build/fuzz/ (fuzz_NAME.log, NAME-crash-*).
#
#   sh tools/fuzz.sh                 10 s per harness
#   FUZZ_SECONDS=0 sh tools/fuzz.sh  only replay the seed corpora
#   FUZZ_CC=clang-14 sh tools/fuzz.sh
set -e
cd "$(dirname "$0")/.."

SECONDS_EACH=${FUZZ_SECONDS:-10}
OUT=build/fuzz
CC=${FUZZ_CC:-}
if [ -z "$CC" ]; then
    if command -v clang >/dev/null 2>&1; then CC=clang; else CC=clang-14; fi
fi
CFLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -Isrc"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pobox-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT"
failures=0

# build NAME SOURCES_AND_LIBS...: compiles tests/fuzz/fuzz_NAME.c.
build() {
    name=$1; shift
    # shellcheck disable=SC2086 # CFLAGS is a word list
    $CC $CFLAGS -o "$OUT/fuzz_$name" "tests/fuzz/fuzz_$name.c" "$@" \
        >"$OUT/fuzz_$name.build.log" 2>&1
}

# run NAME MAX_LEN: fuzzes a temporary copy of the seed corpus.
run() {
    name=$1 max_len=$2
    corpus="$WORK/$name"
    mkdir -p "$corpus"
    if [ -d "tests/fuzz/corpus/$name" ]; then
        cp tests/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
    fi
    if [ "$SECONDS_EACH" -gt 0 ]; then
        limit="-max_total_time=$SECONDS_EACH"
    else
        limit="-runs=0"
    fi
    "$OUT/fuzz_$name" "$limit" -max_len="$max_len" -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix="$OUT/$name-" "$corpus" \
        >"$OUT/fuzz_$name.log" 2>&1
}

# report NAME STATUS: prints the one result line, and the log on failure.
report() {
    name=$1 status=$2
    if [ "$status" -eq 0 ]; then
        runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$OUT/fuzz_$name.log" |
               tail -1)
        echo "fuzz $name: ok (${runs:-0} runs)"
        return
    fi
    echo "fuzz $name: FAILED"
    for log in "$OUT/fuzz_$name.build.log" "$OUT/fuzz_$name.log"; do
        if [ -s "$log" ]; then
            sed 's/^/    /' "$log" | tail -40 >&2
        fi
    done
    failures=$((failures + 1))
}

# fuzz NAME MAX_LEN SOURCES...: build, run, report; never stops the script.
fuzz() {
    name=$1 max_len=$2; shift 2
    rm -f "$OUT/fuzz_$name.log"
    status=0
    if build "$name" "$@"; then
        run "$name" "$max_len" || status=$?
    else
        status=$?
    fi
    report "$name" "$status"
}

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz: FAILED (no $CC; install clang and libclang-rt-14-dev)"
    exit 1
fi
if ! LIBEVENT=$(pkg-config --cflags --libs libevent); then
    echo "fuzz: FAILED (pkg-config libevent; install libevent-dev)"
    exit 1
fi

fuzz pop3_parse 300 src/pop3/parse.c
fuzz smtp_parse 1100 src/smtp/parse.c
# shellcheck disable=SC2086 # LIBEVENT is a word list
fuzz mailstream 4096 src/core/mailstream.c $LIBEVENT
# shellcheck disable=SC2046 # pkg-config prints a word list
fuzz bearer 4096 src/auth/bearer.c src/auth/oauth.c \
    $(pkg-config --cflags --libs libjwt jansson openssl) -pthread
fuzz relay_reply 10000 src/relay/reply.c

[ "$failures" -eq 0 ]
