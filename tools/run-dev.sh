#!/bin/sh
# run-dev.sh — `make run`: serves conf/dev.conf with data in ./var.
set -e
mkdir -p var
echo "pobox: serving conf/dev.conf (pop3 127.0.0.1:1110, pop3s 127.0.0.1:1995); Ctrl-C stops" >&2
echo "pobox: add a user with:  printf 'secret\n' | build/pobox -c conf/dev.conf user add alice@localhost" >&2
exec build/pobox serve -c conf/dev.conf
