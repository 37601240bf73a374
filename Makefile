# relay -- webhook event relay.
#   make            build build/relay
#   make SANITIZE=1 build with ASan + UBSan (into build-san/)
#   make test       unit tests, codec tests, system tests against real Redis and Kafka
#                   (the fault tests in their short form)
#   make faults     the fault tests in their long form (20 crashes, 60 s outages)
#   make run        install what is missing, start Redis + Kafka + relay in the foreground
#   make fuzz       build the libFuzzer targets (clang) and run each FUZZ_RUNS times
#   make install    binary, systemd unit, config (PREFIX=/usr/local, DESTDIR, SYSCONFDIR,
#                   UNITDIR); make uninstall; make install-test; make docker-test

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
SYSCONFDIR ?= $(PREFIX)/etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
CONFDIR := $(SYSCONFDIR)/relay
CC      ?= cc
PKGS    := libmicrohttpd rdkafka hiredis jansson openssl inih libsystemd libisal
# The project's flags live in RELAY_CFLAGS; a user's CFLAGS / LDFLAGS are added
# to them (`make CFLAGS=-O0` builds without optimisation), as Redis's FINAL_CFLAGS.
OPT     ?= -O2
DEBUG   ?= -g
SUBDIRS := common config http ingest dedup event wal sink replay admin state
INCS    := $(addprefix -Irelay/,$(SUBDIRS)) -Icodecs
# -Wno-format-truncation: snprintf truncating an error message is the intent.
RELAY_CFLAGS := -std=c11 -Wall -Wextra -Werror -Wno-format-truncation -D_GNU_SOURCE -pthread \
                $(INCS) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
RELAY_LDLIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -pthread -lz
ifeq ($(SANITIZE),1)
BUILD   ?= build-san
RELAY_CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
RELAY_LDFLAGS += -fsanitize=address,undefined
else
BUILD   ?= build
# jemalloc, as Redis does: jansson allocates per JSON node and glibc's malloc
# was a quarter of relay's instructions (callgrind). Not with ASan, which
# brings its own allocator.
RELAY_LDLIBS += $(shell pkg-config --libs jemalloc 2>/dev/null)
endif

FINAL_CFLAGS  := $(RELAY_CFLAGS) $(OPT) $(DEBUG) $(CFLAGS)
FINAL_LDFLAGS := $(RELAY_LDFLAGS) $(LDFLAGS)
FINAL_LIBS    := $(RELAY_LDLIBS) $(LDLIBS)

LIB_SRC   := $(wildcard $(addprefix relay/,$(addsuffix /*.c,$(SUBDIRS)))) $(wildcard codecs/*.c)
ALL_C     := relay/*.c relay/*/*.[ch] codecs/*.[ch] fuzz/*.[ch] bench/*.c tests/unit/*.c \
             tests/system/*.[ch] tests/common/*.[ch] examples/consumers/c/*.c
LIB_OBJ   := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC))
MAIN_OBJ  := $(BUILD)/obj/relay/main.o
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
SYS_SRC   := $(wildcard tests/system/test_*.c)
SYS_BIN   := $(patsubst tests/system/%.c,$(BUILD)/tests/%,$(SYS_SRC))
FAULT_BIN := $(filter $(BUILD)/tests/test_fault%,$(SYS_BIN))
TEST_LIBS := $(shell pkg-config --libs criterion libcurl 2>/dev/null)
# What the test binaries share, compiled once: the temporary-directory helper (unit and
# system tests) and the system tests' harness. An archive, so that a binary takes only
# the members it uses (test_fault_kafka_fatal: tmpdir.o alone, not the harness and its
# Criterion report hook).
TEST_INCS := -Itests/common
TEST_HELP := $(BUILD)/obj/tests/common/tmpdir.o $(BUILD)/obj/tests/system/harness.o \
             $(BUILD)/obj/tests/system/events.o
SHELL_SCRIPTS := $(wildcard tools/*.sh bench/*.sh docker/*.sh examples/consumers/*.sh) .ci/run

.PHONY: bench-callgrind all test unit-test system-test faults run install uninstall install-test docker-test \
        clean deps format check-format docs check-docs bench fuzz fuzz-build shellcheck lint FORCE

all: $(BUILD)/relay

# Header dependencies are generated (-MMD -MP) and included at the end.
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/librelay.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) $(TEST_INCS) -Itests/system -MMD -MP -c -o $@ $<

$(BUILD)/libtests.a: $(TEST_HELP)
	$(AR) rcs $@ $^

$(BUILD)/relay: $(MAIN_OBJ) $(BUILD)/librelay.a
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

# A test binary: its one .c compiled and linked with librelay.a and, for a unit test,
# tmpdir.o alone (a harness change does not rebuild the unit tests), for a system test
# libtests.a. The headers it includes are in its generated $(BUILD)/tests/test_x.d.
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/obj/tests/common/tmpdir.o $(BUILD)/librelay.a
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) $(TEST_INCS) -MMD -MP $(FINAL_LDFLAGS) -o $@ $< \
	    $(BUILD)/obj/tests/common/tmpdir.o $(BUILD)/librelay.a $(FINAL_LIBS) $(TEST_LIBS)

$(BUILD)/tests/%: tests/system/%.c $(BUILD)/libtests.a $(BUILD)/librelay.a
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) $(TEST_INCS) -Itests/system -MMD -MP $(FINAL_LDFLAGS) -o $@ $< \
	    $(BUILD)/libtests.a $(BUILD)/librelay.a $(FINAL_LIBS) $(TEST_LIBS)

deps:
	@tools/deps.sh

unit-test: $(BUILD)/relay $(UNIT_BIN)
	@tools/run-tests.sh unit $(UNIT_BIN)

system-test: $(BUILD)/relay $(SYS_BIN)
	@tools/run-tests.sh system $(SYS_BIN)

# The whole suite: unit and codec tests, then system tests that start their own
# Redis and Kafka on ports of their own (no clash with a running `make run`).
test: deps
	@$(MAKE) --no-print-directory $(BUILD)/relay $(UNIT_BIN) $(SYS_BIN)
	@tools/docs.sh check $(BUILD)/relay
	@$(MAKE) -s --no-print-directory check-format
	@$(MAKE) -s --no-print-directory shellcheck
	@$(MAKE) -s --no-print-directory lint
	@$(MAKE) -s --no-print-directory install-test
	@tools/run-tests.sh all $(UNIT_BIN) -- $(SYS_BIN)

# The fault tests in their long form: kill -9 twenty times, Kafka and Redis down for
# 60 s each, under load (RELAY_FAULTS_LONG=1 is read by the same binaries).
faults: deps
	@$(MAKE) --no-print-directory $(BUILD)/relay $(FAULT_BIN)
	@RELAY_FAULTS_LONG=1 tools/run-tests.sh system $(FAULT_BIN)

run: deps
	@$(MAKE) --no-print-directory $(BUILD)/relay
	@tools/run.sh $(BUILD)/relay

# ---- installing (docs/deployment.md). The installed binary reads
# $(CONFDIR)/relay.conf when started without -c: it is $(BUILD)/installed/relay,
# main.c compiled again with RL_DEFAULT_CONFIG and linked with the same library.
# build/relay keeps ./relay.conf (make run and the tests pass -c anyway).
# The stamp holds the path, so that another PREFIX or SYSCONFDIR rebuilds it.
FORCE:
$(BUILD)/installed/config-path: FORCE
	@mkdir -p $(dir $@)
	@echo '$(CONFDIR)/relay.conf' | cmp -s - $@ || echo '$(CONFDIR)/relay.conf' >$@

$(BUILD)/installed/main.o: relay/main.c $(BUILD)/installed/config-path
	$(CC) $(FINAL_CFLAGS) -DRL_DEFAULT_CONFIG='"$(CONFDIR)/relay.conf"' -MMD -MP -c -o $@ $<

$(BUILD)/installed/relay: $(BUILD)/installed/main.o $(BUILD)/librelay.a
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

# The shipped relay.conf with the WAL under the unit's StateDirectory. The
# config is installed only when there is none: an edited one is never replaced.
INSTALL_CONF_SED := -e 's|^dir = \./data/wal$$|dir = /var/lib/relay/wal|'
install: $(BUILD)/installed/relay
	install -D -m 0755 $(BUILD)/installed/relay $(DESTDIR)$(BINDIR)/relay
	install -d -m 0755 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(CONFDIR)
	sed -e 's|^ExecStart=/usr/local/bin/relay|ExecStart=$(BINDIR)/relay|' \
	    -e 's|/usr/local/etc/relay|$(CONFDIR)|g' systemd/relay.service \
	    >$(DESTDIR)$(UNITDIR)/relay.service.tmp
	chmod 0644 $(DESTDIR)$(UNITDIR)/relay.service.tmp
	mv -f $(DESTDIR)$(UNITDIR)/relay.service.tmp $(DESTDIR)$(UNITDIR)/relay.service
	sed $(INSTALL_CONF_SED) relay.conf >$(DESTDIR)$(CONFDIR)/relay.conf.example
	grep -qx 'dir = /var/lib/relay/wal' $(DESTDIR)$(CONFDIR)/relay.conf.example
	chmod 0644 $(DESTDIR)$(CONFDIR)/relay.conf.example
	@if [ -e $(DESTDIR)$(CONFDIR)/relay.conf ]; then \
	    echo "$(DESTDIR)$(CONFDIR)/relay.conf exists: kept (the new one is relay.conf.example)"; \
	else \
	    echo "install -m 0644 relay.conf.example $(DESTDIR)$(CONFDIR)/relay.conf"; \
	    install -m 0644 $(DESTDIR)$(CONFDIR)/relay.conf.example $(DESTDIR)$(CONFDIR)/relay.conf; \
	fi

# Leaves $(CONFDIR)/relay.conf (it may hold secrets and edits) and the WAL in
# /var/lib/relay: remove them by hand.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/relay $(DESTDIR)$(UNITDIR)/relay.service \
	      $(DESTDIR)$(CONFDIR)/relay.conf.example
	@if [ -e $(DESTDIR)$(CONFDIR)/relay.conf ]; then echo "kept $(DESTDIR)$(CONFDIR)/relay.conf"; fi

# make install into a temporary DESTDIR, the installed binary's default config,
# systemd-analyze verify on the unit. Seconds; part of make test.
install-test:
	@tools/install-test.sh

# The container image, built on a local debootstrap base, against a Kafka and
# Redis of its own on free ports (docs/testing.md). Minutes; CI runs it.
docker-test:
	@tools/docker-test.sh

format:
	clang-format -i $(ALL_C)

check-format:
	clang-format --dry-run --Werror $(ALL_C)

# The shell scripts: tools/, bench/ and CI's entry point (make test runs it).
shellcheck:
	shellcheck $(SHELL_SCRIPTS)

# Every clock and timed wait goes through relay/common/clock.c (clock.h says why): no
# pthread_cond_timedwait, pthread_cond_init( or CLOCK_REALTIME elsewhere in relay/ or
# codecs/. Wall time is rl_clock_wall_ms. clock.h is excluded too: it names them in the
# comments that state this rule.
LINT_CLOCK := pthread_cond_timedwait|pthread_cond_init\(|CLOCK_REALTIME
lint:
	@if grep -rnE '$(LINT_CLOCK)' --include='*.[ch]' relay codecs \
	        | grep -vE '^relay/common/clock\.[ch]:'; then \
	    echo "lint: use clock.h (rl_clock_*, rl_cond_init, rl_cond_wait_*) instead" >&2; \
	    exit 1; \
	fi

clean:
	rm -rf build build-san build-fuzz

# ---- fuzzing: one libFuzzer target per fuzz/fuzz_*.c, the library built again
# with clang and the fuzzer's coverage instrumentation, ASan and UBSan.
#   make fuzz                    each target FUZZ_RUNS (100000) executions
#   make fuzz FUZZ_RUNS=10000000 FUZZ_JOBS=1 FUZZ_NICE=19
#   make fuzz FUZZ_TIME=30       each target for 30 s (CI smoke)
#   make fuzz FUZZ_TARGETS=request
FUZZ_CC     ?= clang
FUZZ_BUILD  := build-fuzz
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -g -O1 $(INCS) -Ifuzz \
               $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(FUZZ_SAN)
FUZZ_OBJ    := $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(LIB_SRC))
FUZZ_BIN    := $(patsubst fuzz/%.c,$(FUZZ_BUILD)/%,$(wildcard fuzz/fuzz_*.c))

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/librelay.a: $(FUZZ_OBJ)
	$(AR) rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(wildcard fuzz/*.h) $(FUZZ_BUILD)/librelay.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/librelay.a $(RELAY_LDLIBS)

fuzz-build: $(FUZZ_BIN)

fuzz: fuzz-build
	@tools/fuzz.sh $(FUZZ_BUILD) $(if $(FUZZ_TARGETS),$(FUZZ_TARGETS),$(patsubst $(FUZZ_BUILD)/fuzz_%,%,$(FUZZ_BIN)))

# The config reference in docs/configuration.md comes from the key table (relay --config-reference).
docs: $(BUILD)/relay
	@tools/docs.sh update $(BUILD)/relay

check-docs: $(BUILD)/relay
	@tools/docs.sh check $(BUILD)/relay

# The benchmark (issue: performance): relay vs a minimal libmicrohttpd server,
# real Redis and Kafka, wrk with bench/mix.lua. Prints a table of medians.
BENCH_BIN := $(BUILD)/bench/ceiling $(BUILD)/bench/e2e $(BUILD)/bench/walgen $(BUILD)/bench/post

$(BUILD)/bench/%: bench/%.c $(BUILD)/librelay.a
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) -MMD -MP $(FINAL_LDFLAGS) -o $@ $< $(BUILD)/librelay.a $(FINAL_LIBS)

bench: deps
	@$(MAKE) --no-print-directory $(BUILD)/relay $(BENCH_BIN)
	@bench/run.sh

# relay's instructions per request on a fixed input (bench/callgrind.sh); also
# part of `make bench`'s table.
bench-callgrind: deps
	@$(MAKE) --no-print-directory $(BUILD)/relay $(BENCH_BIN)
	@bench/callgrind.sh

-include $(wildcard $(BUILD)/obj/*/*.d $(BUILD)/obj/*/*/*.d $(BUILD)/tests/*.d $(BUILD)/bench/*.d \
           $(BUILD)/installed/*.d \
           $(FUZZ_BUILD)/obj/*/*.d $(FUZZ_BUILD)/obj/*/*/*.d $(FUZZ_BUILD)/*.d)
