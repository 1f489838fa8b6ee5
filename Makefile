# Makefile — builds pobox, its tests, fuzzers and benchmarks.
#
#   make            build/pobox
#   make run        install missing build deps, build, serve conf/dev.conf in ./var
#   make test       unit + protocol + interop tests + a short fuzz run
#   make check-asan the same suites under AddressSanitizer and UBSan
#   make fuzz       run the fuzzers longer (FUZZ_SECONDS, default 60)
#   make bench      pobox vs Dovecot and Postfix side by side (QUICK=1: 1 minute)
#   make install    PREFIX=/usr/local

CC      ?= cc
PREFIX  ?= /usr/local
BUILD   ?= build
VERSION := $(shell cat VERSION)
PKGS    := libevent_openssl libevent_pthreads libevent inih libargon2 openssl \
           krb5-gssapi libgsasl libjwt jansson gmime-3.0 libcares

# CFLAGS/LDFLAGS are the user's (optimisation, sanitizers); the project's
# own flags are in POBOX_CFLAGS so a command-line CFLAGS cannot drop them.
CFLAGS  ?= -O2 -g
POBOX_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wformat=2 \
           -Wno-unused-parameter -fno-strict-aliasing -pthread \
           -DPOBOX_VERSION='"$(VERSION)"' -Isrc
# The packages' include dirs (GMime's pull in GLib's) as system dirs, so
# -Werror never trips on warnings inside a library's headers.
PKG_CFLAGS := $(patsubst -I%,-isystem %,$(shell pkg-config --cflags $(PKGS) 2>/dev/null))
ALL_CFLAGS = $(POBOX_CFLAGS) $(PKG_CFLAGS) $(CFLAGS)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcrypt -pthread

SRCS     := $(sort $(wildcard src/*/*.c))
OBJS     := $(SRCS:src/%.c=$(BUILD)/obj/%.o)
MAIN_OBJ := $(BUILD)/obj/main.o
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps run test unit protocol interop fuzz-smoke fuzz check-asan \
        install clean bench

all: $(BUILD)/pobox

deps:
	@sh tools/deps.sh

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/libpobox.a: $(OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/pobox: $(MAIN_OBJ) $(BUILD)/libpobox.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/main.o: src/main.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libpobox.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libpobox.a $(LDLIBS) -lcmocka

run: deps all
	@sh tools/run-dev.sh

unit: $(UNIT_BINS)
	@rc=0; for t in $(UNIT_BINS); do \
	    if $$t >/dev/null 2>&1; then echo "$$t: ok"; else echo "$$t: FAILED"; rc=1; fi; \
	done; exit $$rc

test: deps all $(UNIT_BINS) $(BUILD)/bench/pobox-loadgen
	@BUILD=$(BUILD) sh tools/test.sh

check-asan:
	TEST_SUITES=tests/protocol FUZZ_SECONDS=0 $(MAKE) BUILD=build-asan CC=clang \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
	  LDFLAGS="-fsanitize=address,undefined" test

fuzz: deps
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-60} sh tools/fuzz.sh

# pobox side by side with Dovecot (POP3) and Postfix (submission) on this
# machine (bench/README.md); QUICK=1 runs the short subset. Without root
# the peers may be missing: pobox is then measured alone.
bench: deps all $(BUILD)/bench/pobox-loadgen
	-@sh tools/deps.sh dovecot-core dovecot-pop3d postfix
	/usr/bin/python3 bench/run.py --pobox $(BUILD)/pobox \
	    --loadgen $(BUILD)/bench/pobox-loadgen $(if $(QUICK),--quick)

# The benchmark load generator: C11, epoll and OpenSSL only.
LOADGEN_SRCS := $(sort $(wildcard bench/loadgen/*.c))
LOADGEN_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -pthread

.PHONY: loadgen
loadgen: $(BUILD)/bench/pobox-loadgen

$(BUILD)/bench/pobox-loadgen: $(LOADGEN_SRCS) $(wildcard bench/loadgen/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(LOADGEN_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $(LOADGEN_SRCS) -lssl -lcrypto -lpthread

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/doc/pobox
	install -m 755 $(BUILD)/pobox $(DESTDIR)$(PREFIX)/bin/pobox
	install -m 644 conf/pobox.conf.example README.md $(DESTDIR)$(PREFIX)/share/doc/pobox/

clean:
	rm -rf build build-asan

-include $(OBJS:.o=.d) $(MAIN_OBJ:.o=.d)
