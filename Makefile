# deploy-agent build. `make`, `make test`, `make install DESTDIR=... PREFIX=...`,
# `make demo`, `make bench`, `make soak`, `make asan-test`, `make analyze`, `make fuzz`, `make fuzz-regress`.
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
LIBEXECDIR ?= $(PREFIX)/libexec/deploy-agent
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
PYTHON     ?= /usr/bin/python3

CC      ?= cc
PKG_CONFIG ?= pkg-config
PKGS    := libcurl libarchive libsystemd jansson libsodium expat
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wmissing-declarations -Wcast-qual -Wpointer-arith -Wformat=2 \
           -Wno-unused-parameter
HARDEN  := -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
OPT     ?= -O2 -g
CFLAGS  ?=
CFLAGS  += -std=gnu17 $(OPT) $(WARN) $(HARDEN) -Iagent -I. \
           $(shell $(PKG_CONFIG) --cflags $(PKGS))
# --as-needed: each binary records only the libraries it uses, so the
# supervisor maps neither libcurl nor libarchive (nor OpenSSL behind them).
LDFLAGS += -pie -Wl,-z,relro,-z,now -Wl,--as-needed
LDLIBS  += $(shell $(PKG_CONFIG) --libs $(PKGS))

BUILD   ?= build
MAIN_SRCS := agent/supervisor/main.c agent/ctl/deployctl.c agent/worker/main.c
LIB_SRCS := $(filter-out $(MAIN_SRCS), $(wildcard agent/*/*.c)) \
            $(wildcard config/*.c)
LIB_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRCS))
UNIT_SRCS := $(wildcard tests/unit/*/test-*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

all: $(BUILD)/deploy-agent $(BUILD)/deploy-agent-worker $(BUILD)/deployctl

# The project version (VERSION) and the git SHA of HEAD are compiled in:
# "0.3.0 (<sha>)", "-dirty" marking a tree with uncommitted changes, "DEV"
# a build outside git (a tarball). `make deb` exports the tree and passes
# GIT_SHA. version.h is only rewritten when the value changes, so an
# unchanged tree does not relink.
PROJECT_VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_SHA ?= $(if $(wildcard .git),$(shell git describe --always --abbrev=40 --dirty --match=NONE 2>/dev/null),)
VERSION := $(PROJECT_VERSION) ($(or $(GIT_SHA),DEV))
$(BUILD)/version.h: FORCE
	@mkdir -p $(@D)
	@echo '#define DEPLOY_AGENT_VERSION "$(VERSION)"' > $@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
# Where the installed agent finds deploy-agent-worker; rewritten (and
# worker.o rebuilt) whenever LIBEXECDIR changes, e.g. by `make install PREFIX=/usr`.
$(BUILD)/paths.h: FORCE
	@mkdir -p $(@D)
	@echo '#define LIBEXECDIR "$(LIBEXECDIR)"' > $@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
FORCE:

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -I$(BUILD) -MMD -MP -c -o $@ $<

$(BUILD)/agent/supervisor/main.o $(BUILD)/agent/ctl/deployctl.o $(BUILD)/agent/supervisor/control-commands.o: $(BUILD)/version.h
$(BUILD)/agent/supervisor/worker-pool.o: $(BUILD)/paths.h

$(BUILD)/libdeploy.a: $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/deploy-agent: $(BUILD)/agent/supervisor/main.o $(BUILD)/libdeploy.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Only the worker confines itself: the supervisor must not map libseccomp.
$(BUILD)/deploy-agent-worker: $(BUILD)/agent/worker/main.o $(BUILD)/libdeploy.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs libseccomp)

$(BUILD)/deployctl: $(BUILD)/agent/ctl/deployctl.o $(BUILD)/libdeploy.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libdeploy.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -I$(BUILD) -MMD -MP -o $@ $< $(BUILD)/libdeploy.a $(LDLIBS) $(shell $(PKG_CONFIG) --libs cmocka)

unit-test: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

unit-test-build: $(UNIT_BINS)

# TEST_JOBS pytest-xdist workers (tests/integration/conftest.py says what
# may not run side by side); 0 runs the tests one by one, as does a machine
# without pytest-xdist (scripts/deps.sh installs it). Most of a test's time is
# waiting on daemons, so two workers help even on two cores.
TEST_JOBS ?= 2
integration-test: all debug
	$(PYTHON) -m pytest -v -ra $$(if [ "$(TEST_JOBS)" != 0 ] && $(PYTHON) -c 'import xdist' 2>/dev/null; \
	  then echo "-n $(TEST_JOBS) --dist loadgroup"; fi) tests/integration $(PYTEST_ARGS)

# First what is missing of the dependencies (scripts/deps.sh: a fast check
# when nothing is, apt-get as root when something is), so `make test` works
# as the first command on a fresh machine; then make again, so that the
# pkg-config flags are read with the libraries in place.
test:
	@bash scripts/deps.sh
	$(MAKE) unit-test integration-test

# Unit tests again, built with AddressSanitizer and UndefinedBehaviorSanitizer.
asan-test:
	$(MAKE) BUILD=build-asan CC=clang \
	  OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  HARDEN="-fstack-protector-strong" LDFLAGS="-fsanitize=address,undefined" unit-test

# libFuzzer targets (tests/fuzz/fuzz-NAME.c), built with ASan and UBSan in
# their own build directory. `make fuzz` runs each for FUZZ_SECONDS; new
# inputs go to build-fuzz/corpus/NAME, crashes to build-fuzz/crashes/.
# `make fuzz-regress` replays each seed corpus (tests/fuzz/corpus/NAME) and
# every kept crash reproducer (tests/fuzz/regressions/NAME) once.
# FUZZ_ONLY="config state" limits either to those targets.
FUZZ_BUILD   := build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz-%.c,%,$(wildcard tests/fuzz/fuzz-*.c))
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_BINS    := $(patsubst %,$(BUILD)/fuzz/fuzz-%,$(FUZZ_TARGETS))

fuzz-build:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang HARDEN="-fstack-protector-strong" \
	  OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $(FUZZ_SAN)" \
	  LDFLAGS="-fsanitize=fuzzer $(FUZZ_SAN)" fuzz-bins

fuzz-bins: $(FUZZ_BINS)

$(BUILD)/fuzz/fuzz-%: tests/fuzz/fuzz-%.c tests/fuzz/fuzz.h $(BUILD)/libdeploy.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -I$(BUILD) $(LDFLAGS) -o $@ $< $(BUILD)/libdeploy.a $(LDLIBS)

fuzz: fuzz-build
	bash scripts/fuzz.sh run $(FUZZ_SECONDS) $(FUZZ_BUILD) $(FUZZ_ONLY)

fuzz-regress: fuzz-build
	bash scripts/fuzz.sh regress $(FUZZ_BUILD) $(FUZZ_ONLY)

# Static analysis; any finding fails. clang's analyzer (scan-build) over a
# fresh build of the programs and the unit tests, its reports filtered only
# for one false positive of clang 14 (scripts/scan-build-check.py says
# which); cppcheck; the include graph (scripts/include-graph.py).
# cppcheck suppressions, each for a reason that holds everywhere:
#  memleak, resourceLeak: cppcheck does not run __attribute__((cleanup)), so
#    every _cleanup_ variable looks leaked (leaks are checked by scan-build
#    and by LeakSanitizer in asan-test);
#  internalAstError: cppcheck 2.10 cannot parse a GNU statement expression
#    (TAKE_PTR) inside a compound literal; clang's analyzer reads those files;
#  varFuncNullUB: NULL is ((void *) 0) in glibc, the only C library we build
#    for, so a NULL sentinel of a variadic call is a pointer;
#  missingIncludeSystem: system headers are not analyzed (jansson.h is
#    included so that its foreach macros parse).
ANALYZE_BUILD := build-analyze
CPPCHECK_FLAGS := -q --std=c11 --enable=warning,portability,performance --inline-suppr \
	--error-exitcode=1 -D__GNUC__ -Iagent -I. --include=/usr/include/jansson.h \
	--suppress=missingIncludeSystem --suppress=memleak --suppress=resourceLeak \
	--suppress=internalAstError --suppress=varFuncNullUB
analyze:
	rm -rf $(ANALYZE_BUILD)
	scan-build -plist -o $(ANALYZE_BUILD)/reports --use-cc=clang \
	  $(MAKE) BUILD=$(ANALYZE_BUILD) CC=clang all unit-test-build
	$(PYTHON) scripts/scan-build-check.py $(ANALYZE_BUILD)/reports
	cppcheck $(CPPCHECK_FLAGS) -j2 agent config tests/unit
	$(PYTHON) scripts/include-graph.py

# The agent with debug-only hooks (SIGUSR2 stalls the event loop, for the
# watchdog test). Never installed.
debug:
	$(MAKE) BUILD=build-debug OPT="-O1 -g -DDEPLOY_AGENT_DEBUG" all

# No cycle among the modules of agent/ and config/, from the #include lines.
include-graph:
	$(PYTHON) scripts/include-graph.py

demo:
	bash scripts/demo.sh

bench: all
	nice $(PYTHON) bench/shapes.py
	$(PYTHON) bench/daemon.py
	$(PYTHON) bench/control.py

# The daemon under its shipped unit for SOAK_SECONDS (default an hour): 20
# services, a build every few seconds, worker kills and S3 faults; fails on a
# restart, a service left behind, or growth of RSS, fds or CPU
# (tests/soak/soak.py says how each is measured). Not part of `make test`.
SOAK_SECONDS ?= 3600
soak: all
	SOAK_SECONDS=$(SOAK_SECONDS) $(PYTHON) tests/soak/soak.py

# The three artifact shapes, prune and rollback alone (BENCH_QUICK=1: one run, smaller).
bench-shapes: all
	nice $(PYTHON) bench/shapes.py

# The control socket alone: latency, requests per second, RSS (a few seconds).
bench-control: all
	$(PYTHON) bench/control.py

install: all
	install -D -m 0755 $(BUILD)/deploy-agent $(DESTDIR)$(SBINDIR)/deploy-agent
	install -D -m 0755 $(BUILD)/deployctl $(DESTDIR)$(BINDIR)/deployctl
	install -D -m 0755 $(BUILD)/deploy-agent-worker $(DESTDIR)$(LIBEXECDIR)/deploy-agent-worker
	install -D -m 0644 deploy.ini.example $(DESTDIR)$(SYSCONFDIR)/deploy-agent/deploy.ini.example
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|@SBINDIR@|$(SBINDIR)|g' systemd/deploy-agent.service > $(DESTDIR)$(UNITDIR)/deploy-agent.service
	install -m 0644 systemd/deploy-agent.socket $(DESTDIR)$(UNITDIR)/deploy-agent.socket
	install -D -m 0644 systemd/deploy-agent.sysusers $(DESTDIR)$(SYSUSERSDIR)/deploy-agent.conf
	install -D -m 0644 systemd/deploy-agent.tmpfiles $(DESTDIR)$(TMPFILESDIR)/deploy-agent.conf
	for m in docs/*.[158]; do [ -e "$$m" ] || continue; \
	  s=$${m##*.}; install -D -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/$${m##*/}; done

# Debian packages (scripts/deb.sh): dist/deploy-agent_<version>_$(ARCH).deb.
# ARCH=arm64 cross-builds (`scripts/deps.sh --arm64` installs what it needs).
ARCH ?= $(shell dpkg --print-architecture)
deb:
	bash scripts/deb.sh $(ARCH) dist

# Both .debs of this commit with their .sha256, in dist/<git sha>/ (what CI
# publishes: examples/ci/publish-agent.sh).
dist:
	bash scripts/dist.sh

lintian:
	lintian --fail-on error dist/deploy-agent_*_$(ARCH).deb

# The cmocka unit tests cross-built for arm64, run under qemu-user; the
# :arm64 libraries installed through multiarch are the sysroot.
unit-test-arm64:
	$(MAKE) BUILD=build-arm64 CC=aarch64-linux-gnu-gcc AR=aarch64-linux-gnu-ar \
	  PKG_CONFIG=aarch64-linux-gnu-pkg-config $(patsubst build/%,build-arm64/%,$(UNIT_BINS))
	@set -e; for t in $(patsubst build/%,build-arm64/%,$(UNIT_BINS)); do \
	  echo "== $$t (qemu-aarch64)"; qemu-aarch64 -L /usr/aarch64-linux-gnu $$t; done

# Two builds of HEAD, in other directories at other times, give identical .debs.
repro-test:
	$(PYTHON) -m pytest -v tests/package/test_reproducible.py

# The amd64 .deb installed, upgraded, removed and purged under a real systemd.
package-test:
	$(PYTHON) -m pytest -v tests/package/test_package.py

clean:
	rm -rf build build-asan build-debug build-analyze build-arm64 dist $(FUZZ_BUILD)

.PHONY: debug all test unit-test unit-test-build integration-test asan-test analyze include-graph demo bench bench-shapes bench-control soak install clean FORCE \
        deb dist lintian unit-test-arm64 repro-test package-test fuzz fuzz-build fuzz-bins fuzz-regress
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
