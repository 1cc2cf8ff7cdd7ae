# splitmx - plain Makefile, pkg-config for the libraries.
#   make          build splitmxd (optimized, hardened)
#   make check    install missing deps, build with ASan+UBSan, run all tests
#   make run      install missing deps, build, run on etc/splitmx.conf
#   make bench    receive/delivery benchmark against Postfix (../shared/bench)

PREFIX	?= /usr/local
DESTDIR	?=
CC	?= cc

PKGS	= libevent libevent_openssl libevent_pthreads libcares openssl opendkim
CSTD	= -std=c11 -D_GNU_SOURCE
WARN	= -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wstrict-prototypes \
	  -Wmissing-prototypes -Wmissing-declarations -Wold-style-definition \
	  -Wpointer-arith -Wcast-qual -Wwrite-strings -Wundef \
	  -Wvla -Wimplicit-fallthrough -Wredundant-decls -Wnull-dereference \
	  -fno-common
GCCWARN	= $(shell $(CC) --version 2>/dev/null | grep -q 'Free Software' && echo -Wlogical-op -Wduplicated-cond)
HARDEN	= -O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
SAN	= -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	  -fno-sanitize-recover=all
PKGCFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKGLIBS	= $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS_BASE = $(CSTD) $(WARN) $(GCCWARN) -Iinclude $(PKGCFLAGS)
LIBS	= -Wl,--as-needed $(PKGLIBS) -lspf2 -llmdb -pthread

SRCS	= $(filter-out src/splitmxd.c src/splitmxctl.c,$(wildcard src/*.c))
OBJS	= $(SRCS:src/%.c=build/%.o)
SOBJS	= $(SRCS:src/%.c=build/san/%.o)
UNIT	= $(wildcard tests/unit/check_*.c)
UNITBIN	= $(UNIT:tests/unit/%.c=build/san/%)

all: splitmxd

build/%.o: src/%.c $(wildcard include/*.h src/*.h) | build
	$(CC) $(CFLAGS_BASE) $(HARDEN) $(CFLAGS) -c -o $@ $<

build/san/%.o: src/%.c $(wildcard include/*.h src/*.h) | build/san
	$(CC) $(CFLAGS_BASE) $(SAN) -c -o $@ $<

build build/san:
	mkdir -p $@

splitmxd: $(OBJS) build/splitmxd.o
	$(CC) $(HARDEN) -pie -o $@ $^ $(LIBS) $(LDFLAGS)

build/san/splitmxd: $(SOBJS) build/san/splitmxd.o
	$(CC) $(SAN) -o $@ $^ $(LIBS)

build/san/check_%: tests/unit/check_%.c tests/unit/testpeer.c tests/unit/testpeer.h $(SOBJS)
	$(CC) $(CFLAGS_BASE) $(SAN) -Wno-missing-prototypes -Wno-missing-declarations \
	    -Itests/unit $(shell pkg-config --cflags check) -o $@ $< \
	    tests/unit/testpeer.c $(SOBJS) \
	    $(shell pkg-config --libs check) $(LIBS)

deps:
	@sh scripts/deps.sh

# Unit tests, then the integration tests against a sanitizer build.
check: deps
	@$(MAKE) --no-print-directory test-build
	@sh tests/run.sh

test-build: $(UNITBIN) build/san/splitmxd splitmxd

run: deps
	@$(MAKE) --no-print-directory splitmxd
	./splitmxd -d -f etc/splitmx.conf

bench: deps
	@$(MAKE) --no-print-directory splitmxd
	@bash tests/bench/receive.sh --no-peer
	@bash tests/bench/dual.sh

install: splitmxd
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man5 \
	    $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/etc/splitmx
	install -m 755 splitmxd $(DESTDIR)$(PREFIX)/sbin/splitmxd
	install -m 644 man/splitmx.conf.5 man/splitmx-spool.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 644 man/splitmxd.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 644 etc/splitmx.conf $(DESTDIR)$(PREFIX)/etc/splitmx/splitmx.conf.example

clean:
	rm -rf build splitmxd splitmxctl

.PHONY: all deps check test-build run bench install clean
