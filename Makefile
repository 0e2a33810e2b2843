# hark — build, test, serve, bench. Plain make + pkg-config; see README.md.

CC       ?= cc
PKGS     := libuv jansson sqlite3 libjwt libcrypto libcurl pocketsphinx sphinxbase libavformat libavcodec libswresample libavutil opus
BUILD    ?= build
WERROR   ?= -Werror
OPT      ?= -O2
SAN      ?=
VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# FFmpeg is compiled against but loaded at run time (src/audio/decode.c), so that servers and bots
# do not carry its libraries in their memory.
DLOPEN_PKGS := libavformat libavcodec libswresample libavutil
PKG_LIBS   := $(shell pkg-config --libs $(filter-out $(DLOPEN_PKGS),$(PKGS)) 2>/dev/null)

CFLAGS  := -std=c11 -D_GNU_SOURCE $(OPT) -g -Isrc $(PKG_CFLAGS) $(SAN) \
           -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
           -Wno-format-nonliteral $(WERROR) -MMD -MP \
           -DHK_VERSION='"$(VERSION)"' -DHK_GIT_REV='"$(GIT_REV)"'
LDLIBS  := $(PKG_LIBS) -lwslay -lhttp_parser -lpthread -ldl -lm
LDFLAGS := $(SAN)

SRC      := $(sort $(shell find src -name '*.c' ! -path src/main.c))
OBJ      := $(SRC:src/%.c=$(BUILD)/obj/%.o)
WEB      := $(sort $(wildcard web/*))
OBJ      += $(BUILD)/obj/gen/web_assets.o
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# The other files in tests/unit/ are helpers shared by the tests (testnet.c), linked from an archive.
UNIT_OBJ := $(patsubst tests/unit/%.c,$(BUILD)/unit/%.o,\
                $(filter-out $(UNIT_SRC),$(wildcard tests/unit/*.c)))
UNIT_LIB := $(BUILD)/unit/libunit.a
BIN      := $(if $(filter build,$(BUILD)),hark,$(BUILD)/hark)
# bench/pipeline's fan-out load generator: built with everything so that CI compiles it.
FANOUT   := $(BUILD)/bench/fanout

.PHONY: all setup test unit api serve bench sanitize clean format

all: $(BIN) $(FANOUT)

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# The dashboard (web/) is compiled in: scripts/embed-web turns the files into byte arrays.
$(BUILD)/gen/web_assets.c: scripts/embed-web web $(WEB)
	@scripts/embed-web $@ $(WEB)

$(BUILD)/obj/gen/web_assets.o: $(BUILD)/gen/web_assets.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libhark.a: $(OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BIN): $(BUILD)/obj/main.o $(BUILD)/libhark.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/unit/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(UNIT_LIB): $(UNIT_OBJ)
	$(AR) rcs $@ $^

$(BUILD)/tests/%: tests/unit/%.c $(UNIT_LIB) $(BUILD)/libhark.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(UNIT_LIB) $(BUILD)/libhark.a $(LDLIBS) -lcmocka

$(FANOUT): bench/pipeline/fanout.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(shell pkg-config --libs jansson libcrypto) -lm

setup:
	@scripts/setup

# Everything a clean Debian 12 machine needs, then every suite; ends with one summary line.
test: setup
	@$(MAKE) --no-print-directory all $(UNIT_BIN)
	@scripts/run-tests --bin ./$(BIN) --unit-dir $(BUILD)/tests

unit: $(UNIT_BIN)
	@scripts/run-tests --bin ./$(BIN) --unit-dir $(BUILD)/tests --only unit

api: $(BIN)
	@scripts/run-tests --bin ./$(BIN) --unit-dir $(BUILD)/tests --only api

serve: setup
	@$(MAKE) --no-print-directory all
	./$(BIN) serve

bench: setup
	@$(MAKE) --no-print-directory all
	bench/run

# AddressSanitizer + UndefinedBehaviorSanitizer build in build-san/, then every suite on it.
sanitize: setup
	@$(MAKE) --no-print-directory BUILD=build-san OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    build-san/hark $(UNIT_SRC:tests/unit/%.c=build-san/tests/%)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    scripts/run-tests --bin ./build-san/hark --unit-dir build-san/tests --sanitize

format:
	clang-format -i $$(find src tests bench -name '*.[ch]')

clean:
	rm -rf build build-san hark

-include $(OBJ:.o=.d) $(BUILD)/obj/main.d $(UNIT_OBJ:.o=.d) $(UNIT_BIN:=.d) $(FANOUT).d
