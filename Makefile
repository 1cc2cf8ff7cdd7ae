# splitmx - plain Makefile, pkg-config for the libraries.
#   make          build splitmxd and splitmxctl (optimized, hardened)
#   make check    install missing deps, build with ASan+UBSan, run all tests
#   make run      install missing deps, build, run on etc/splitmx.conf
#   make bench    receive rate, then one table of splitmx beside Postfix
#                 (../shared/bench, same run; REPS=N, ROWS=...) into docs/bench.md
#   make bench-c10k, make bench-bigmsg   idle sessions, one big message
#   make bench-startup   start-up time with a long history
#                 (tests/bench/c10k.py, bigmsg.py) into docs/bench.md
#   make crashtest CYCLES=N   kill -9 campaign with two real targets and
#                 target faults (docs/crashtest.md); SEED=S repeats a run
#   make format-check   clang-format (.clang-format) finds nothing to change
#   make fuzz     build the libFuzzer harnesses and run each FUZZ_SECONDS
#
# Tiers (docs/layout.md): src/util < src/global < src/splitmxd, src/splitmxctl.
# Each tier is compiled with the include path of its own and lower tiers
# only, so a global/ file that includes a daemon header does not compile,
# and splitmxctl links util and global alone (no libevent, no threads).

PREFIX	?= /usr/local
DESTDIR	?=
CC	?= cc

PKGS	= libevent libevent_openssl libevent_pthreads libcares openssl opendkim
CSTD	= -std=c11 -D_GNU_SOURCE
WARN	= -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wstrict-prototypes \
	  -Wmissing-prototypes -Wmissing-declarations -Wold-style-definition \
	  -Wpointer-arith -Wcast-qual -Wcast-align -Wwrite-strings -Wundef \
	  -Wvla -Wimplicit-fallthrough -Wredundant-decls -Wnull-dereference \
	  -fno-common
GCCWARN	= $(shell $(CC) --version 2>/dev/null | grep -q 'Free Software' && echo -Wlogical-op -Wduplicated-cond)
HARDEN	= -O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
SAN	= -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	  -fno-sanitize-recover=all
PKGCFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKGLIBS	= $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# Include path per tier: its own headers and the tiers below.
INC_util	= -Iinclude/util
INC_global	= $(INC_util) -Iinclude/global
INC_splitmxd	= $(INC_global) -Iinclude/splitmxd
INC_splitmxctl	= $(INC_global) -Iinclude/splitmxctl
tier		= $(word 2,$(subst /, ,$(1)))

CFLAGS_BASE = $(CSTD) $(WARN) $(GCCWARN) $(PKGCFLAGS) $(CPPFLAGS)
LIBS	= -Wl,--as-needed $(PKGLIBS) -lspf2 -llmdb -pthread
CTLLIBS	= -Wl,--as-needed $(shell pkg-config --libs libcrypto 2>/dev/null) -llmdb

UTIL_SRCS	= $(wildcard src/util/*.c)
GLOBAL_SRCS	= $(wildcard src/global/*.c)
DAEMON_SRCS	= $(filter-out src/splitmxd/splitmxd.c,$(wildcard src/splitmxd/*.c))
CTL_SRCS	= $(filter-out src/splitmxctl/splitmxctl.c,$(wildcard src/splitmxctl/*.c))
LOWER_SRCS	= $(UTIL_SRCS) $(GLOBAL_SRCS)
ALL_SRCS	= $(LOWER_SRCS) $(DAEMON_SRCS) $(CTL_SRCS) \
		  src/splitmxd/splitmxd.c src/splitmxctl/splitmxctl.c
HDRS		= $(wildcard include/*/*.h src/*/*.h)

obj	= $(patsubst src/%.c,build/obj/%.o,$(1))
sanobj	= $(patsubst src/%.c,build/san/obj/%.o,$(1))

UNIT	= $(wildcard tests/unit/check_*.c)
UNITBIN	= $(UNIT:tests/unit/%.c=build/san/%)
UNITINC	= $(INC_splitmxd) -Itests/unit

all: splitmxd splitmxctl

# make V=1 shows the whole command lines.
Q	= $(if $(V),,@)

build/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(@D)
	@$(if $(V),:,echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_BASE) $(INC_$(call tier,$<)) $(HARDEN) $(CFLAGS) -c -o $@ $<

build/san/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(@D)
	@$(if $(V),:,echo "  CC san  $<")
	$(Q)$(CC) $(CFLAGS_BASE) $(INC_$(call tier,$<)) $(SAN) -c -o $@ $<

splitmxd: $(call obj,$(LOWER_SRCS) $(DAEMON_SRCS) src/splitmxd/splitmxd.c)
	@$(if $(V),:,echo "  LD      $@")
	$(Q)$(CC) $(HARDEN) -pie -Wl,-z,relro,-z,now -o $@ $^ $(LIBS) $(LDFLAGS)

splitmxctl: $(call obj,$(LOWER_SRCS) $(CTL_SRCS) src/splitmxctl/splitmxctl.c)
	@$(if $(V),:,echo "  LD      $@")
	$(Q)$(CC) $(HARDEN) -pie -Wl,-z,relro,-z,now -o $@ $^ $(CTLLIBS) $(LDFLAGS)

build/san/splitmxd: $(call sanobj,$(LOWER_SRCS) $(DAEMON_SRCS) src/splitmxd/splitmxd.c)
	@$(if $(V),:,echo "  LD      $@")
	$(Q)$(CC) $(SAN) -o $@ $^ $(LIBS)

build/san/splitmxctl: $(call sanobj,$(LOWER_SRCS) $(CTL_SRCS) src/splitmxctl/splitmxctl.c)
	@$(if $(V),:,echo "  LD      $@")
	$(Q)$(CC) $(SAN) -o $@ $^ $(CTLLIBS)

build/san/check_%: tests/unit/check_%.c tests/unit/testpeer.c tests/unit/testpeer.h \
    $(call sanobj,$(LOWER_SRCS) $(DAEMON_SRCS))
	@$(if $(V),:,echo "  CCLD    $@")
	$(Q)$(CC) $(CFLAGS_BASE) $(UNITINC) $(SAN) -Wno-missing-prototypes \
	    -Wno-missing-declarations $(shell pkg-config --cflags check) -o $@ $< \
	    tests/unit/testpeer.c $(call sanobj,$(LOWER_SRCS) $(DAEMON_SRCS)) \
	    $(shell pkg-config --libs check) $(LIBS)

# libFuzzer harnesses (tests/fuzz, docs/fuzzing.md): util and global
# rebuilt with clang's coverage and sanitizers, one binary per harness.
#   make fuzz [FUZZ_SECONDS=60]         each harness for that long
#   make fuzz-smoke [FUZZ_SMOKE_SECONDS=8]   short runs; fails on a crash
FUZZCC	= clang
FUZZCFLAGS = $(CSTD) $(WARN) $(CPPFLAGS) -O1 -g -fno-omit-frame-pointer \
	  -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ	= $(wildcard tests/fuzz/fuzz_*.c)
FUZZBIN	= $(FUZZ:tests/fuzz/%.c=build/fuzz/%)
fuzzobj	= $(patsubst src/%.c,build/fuzz/obj/%.o,$(1))
FUZZ_SECONDS	?= 60
FUZZ_SMOKE_SECONDS ?= 8

build/fuzz/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(@D)
	@$(if $(V),:,echo "  CC fuzz $<")
	$(Q)$(FUZZCC) $(FUZZCFLAGS) $(INC_$(call tier,$<)) \
	    -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(call fuzzobj,$(LOWER_SRCS))
	@$(if $(V),:,echo "  CCLD    $@")
	$(Q)$(FUZZCC) $(FUZZCFLAGS) $(INC_global) -fsanitize=fuzzer -o $@ $< \
	    $(call fuzzobj,$(LOWER_SRCS)) $(CTLLIBS)

fuzz-build: $(FUZZBIN)
# Objects reached through the pattern rule only: keep them between builds.
.SECONDARY: $(call fuzzobj,$(LOWER_SRCS))

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZBIN)

fuzz-smoke: fuzz-build
	@sh tests/fuzz/run.sh --smoke $(FUZZ_SMOKE_SECONDS) $(FUZZBIN)

deps:
	@sh scripts/deps.sh

# Layout and format checks, short fuzzer runs, unit tests, then the
# integration tests against a sanitizer build.
check: deps
	@$(MAKE) --no-print-directory test-build
	@$(MAKE) --no-print-directory tier-check format-check
	@$(MAKE) --no-print-directory fuzz-smoke
	@sh tests/run.sh

# The tiers hold: no cycle, no include of a higher tier, and a global/
# file that includes a daemon header does not even compile.
tier-check:
	@python3 scripts/modgraph.py
	@echo '#include "conf.h"' | $(CC) $(CSTD) $(INC_global) -fsyntax-only -x c -
	@if echo '#include "queue.h"' | $(CC) $(CSTD) $(INC_global) \
	    -fsyntax-only -x c - 2>/dev/null; then \
	    echo "tier-check: a global/ file could include queue.h"; exit 1; fi
	@if echo '#include "spool_read.h"' | $(CC) $(CSTD) $(INC_util) \
	    -fsyntax-only -x c - 2>/dev/null; then \
	    echo "tier-check: a util/ file could include spool_read.h"; exit 1; fi
	@echo "tier-check: global/ cannot see daemon headers, util/ cannot see global/"

test-build: $(UNITBIN) build/san/splitmxd build/san/splitmxctl splitmxd splitmxctl

# The crash campaign (docs/crashtest.md); make check runs 3 cycles of it
# (tests/integration/test_crashtest.py).
CYCLES	?= 10
crashtest: test-build
	@rm -rf build/crashtest-logs
	@SPLITMX_TEST_LOGDIR=build/crashtest-logs PYTHONDONTWRITEBYTECODE=1 \
	    /usr/bin/python3 tests/crash/crashtest.py --cycles $(CYCLES) \
	    $(if $(SEED),--seed $(SEED))

run: deps
	@$(MAKE) --no-print-directory splitmxd
	./splitmxd -d -f etc/splitmx.conf

bench: deps
	@$(MAKE) --no-print-directory splitmxd
	@bash tests/bench/receive.sh --no-peer
	@OUT=$${OUT-docs/bench.md} bash tests/bench/table.sh

# Issue 9 targets; each exits 1 when its target is missed and puts its
# table into a section of docs/bench.md (OUT=, empty: nowhere).
#   bench-c10k    10,000 idle sessions: RSS < 200 MB, a new 220 < 1 s
#                 (IDLE=N, NEW=N; STRESS=1: stress mode on, no table)
#   bench-bigmsg  one 100 MB message to two smtp-sinks: RSS growth < 5 MB
#                 (SIZE_MB=N)
#   bench-startup start-up with 1,000,000 finished and 10,000 live
#                 messages, journal segments against one long journal
#                 (HISTORY=N, LIVE=N)
bench-c10k: deps
	@$(MAKE) --no-print-directory splitmxd
	@/usr/bin/python3 tests/bench/c10k.py $(if $(STRESS),--stress) \
	    $(if $(OUT),--out $(OUT),$(if $(filter undefined,$(origin OUT)),--out docs/bench.md))

bench-bigmsg: deps
	@$(MAKE) --no-print-directory splitmxd
	@/usr/bin/python3 tests/bench/bigmsg.py \
	    $(if $(OUT),--out $(OUT),$(if $(filter undefined,$(origin OUT)),--out docs/bench.md))

bench-startup: deps
	@$(MAKE) --no-print-directory splitmxd
	@/usr/bin/python3 tests/bench/startup.py $(if $(HISTORY),--history $(HISTORY)) \
	    $(if $(LIVE),--live $(LIVE)) \
	    $(if $(OUT),--out $(OUT),$(if $(filter undefined,$(origin OUT)),--out docs/bench.md))

FORMAT_FILES = $(ALL_SRCS) $(wildcard include/*/*.h src/*/*.h tests/unit/*.[ch] \
		  tests/fuzz/*.[ch])
format-check:
	@out=$$(for f in $(FORMAT_FILES); do \
	    clang-format --style=file $$f | diff -q $$f - >/dev/null || echo $$f; done); \
	if [ -n "$$out" ]; then echo "clang-format would change:"; echo "$$out"; exit 1; fi; \
	echo "format-check: $(words $(FORMAT_FILES)) files clean"

format:
	clang-format --style=file -i $(FORMAT_FILES)

install: splitmxd splitmxctl
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man5 \
	    $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/etc/splitmx
	install -m 755 splitmxd $(DESTDIR)$(PREFIX)/sbin/splitmxd
	install -m 755 splitmxctl $(DESTDIR)$(PREFIX)/sbin/splitmxctl
	install -m 644 man/splitmx.conf.5 man/splitmx-spool.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 644 man/splitmxd.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 644 etc/splitmx.conf $(DESTDIR)$(PREFIX)/etc/splitmx/splitmx.conf.example

clean:
	rm -rf build splitmxd splitmxctl

.PHONY: all deps check test-build tier-check run bench bench-c10k bench-bigmsg bench-startup install clean format format-check \
	fuzz fuzz-build fuzz-smoke crashtest
