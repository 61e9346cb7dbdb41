#!/usr/bin/env bash
# ghostd quick start on Debian 12 (as root, or with sudo for the install step).
#
#   tools/quickstart.sh demo   install what is missing, build, run the demo on the bundled model
#   tools/quickstart.sh test   install what is missing, build, run the whole test suite (ctest)
#
# Environment: BUILD_DIR (default build), GHOSTD_CUDA (AUTO|ON|OFF, default AUTO),
# JOBS (default: number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-demo}
build=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}

# Build and test dependencies, all from Debian 12.
pkgs=(build-essential cmake ninja-build pkg-config git python3
      nlohmann-json3-dev libasio-dev libspdlog-dev doctest-dev libpcre2-dev libutf8proc-dev libssl-dev)
if [ "$mode" = test ]; then
  # PyTorch reference oracle (libopenblas0-pthread: torch is ~20x slower on reference BLAS).
  pkgs+=(python3 python3-torch python3-numpy python3-regex libopenblas0-pthread)
  # libFuzzer targets (clang) and the real-editor tests.
  pkgs+=(clang libclang-rt-14-dev neovim emacs-nox elpa-eglot)
  # The .deb (tests/package/deb_test.sh).
  pkgs+=(dpkg-dev file)
  # TLS tests make certificates with the openssl CLI; the load-balancer test runs HAProxy.
  pkgs+=(openssl haproxy)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "quickstart: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

werror=OFF
[ "$mode" = test ] && werror=ON  # warnings are errors in CI, not in a user's build
cmake --preset default -B "$build" -DGHOSTD_CUDA="${GHOSTD_CUDA:-AUTO}" -DGHOSTD_WERROR=$werror
cmake --build "$build" -j "$jobs"

# Sanitizer runs (test mode; CMakePresets.json: asan, tsan). A report fails
# the run: ASan and TSan halt on the first one, UBSan does not recover.
export ASAN_OPTIONS=detect_stack_use_after_return=1:detect_leaks=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

case "$mode" in
  demo)
    exec tools/demo.sh "$build"
    ;;
  test)
    ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 1500
    # Release (-O3: where optimisation-only warnings and undefined behaviour
    # show), the unit tests in it, and the .deb made from it, installed into
    # a scratch root, used and purged (tests/package/deb_test.sh).
    cmake --preset package -B "$build-release" -DGHOSTD_TESTS=ON -DGHOSTD_WERROR=ON
    cmake --build "$build-release" -j "$jobs"
    ctest --test-dir "$build-release" --output-on-failure -j "$jobs" --timeout 1500 -L unit -LE gpu
    bash tests/package/deb_test.sh . "$build-release" "$build-release/deb-test" || [ $? -eq 77 ]  # 77: skipped (not root)
    # AddressSanitizer + UndefinedBehaviorSanitizer (clang), with the libFuzzer
    # targets in the same build: unit, LSP transcript, multi-session and CLI
    # tests, then each fuzz target for a bounded time.
    cmake --preset fuzz -B "$build-asan" -DGHOSTD_FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
    cmake --build "$build-asan" -j "$jobs" --target ghostd ghostd_unit ghostd_lsp_fake fuzzers
    ctest --test-dir "$build-asan" --output-on-failure -j "$jobs" --timeout 1500 -L 'unit|lsp|cli' -LE gpu
    ctest --test-dir "$build-asan" --output-on-failure -L fuzz
    # ThreadSanitizer (clang): the engine, scheduler and CPU pool, the
    # tensor-parallel rank threads and collectives, the server, and every LSP
    # test (event loop, engine thread, metrics writer, loader and sessions
    # share state there).
    cmake --preset tsan -B "$build-tsan"
    cmake --build "$build-tsan" -j "$jobs" --target ghostd ghostd_unit ghostd_lsp_fake
    ctest --test-dir "$build-tsan" --output-on-failure -j "$jobs" --timeout 1500 \
      -LE gpu -R '^(unit\.runtime\.(engine|cpu|parallel)\..*|unit\.server\..*|lsp\..*)$'
    ;;
  *)
    echo "usage: $0 demo|test" >&2
    exit 2
    ;;
esac
