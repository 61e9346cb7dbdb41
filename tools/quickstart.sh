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
      nlohmann-json3-dev libasio-dev libspdlog-dev doctest-dev libpcre2-dev libutf8proc-dev)
if [ "$mode" = test ]; then
  # PyTorch reference oracle (libopenblas0-pthread: torch is ~20x slower on reference BLAS).
  pkgs+=(python3 python3-torch python3-numpy python3-regex libopenblas0-pthread)
  # libFuzzer targets (clang) and the real-editor tests.
  pkgs+=(clang libclang-rt-14-dev neovim emacs-nox elpa-eglot)
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

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGHOSTD_CUDA="${GHOSTD_CUDA:-AUTO}"
cmake --build "$build" -j "$jobs"

case "$mode" in
  demo)
    exec tools/demo.sh "$build"
    ;;
  test)
    ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 1500
    # Fuzz targets over framing/dispatch and model files, for a bounded time.
    CC=clang CXX=clang++ cmake -S . -B "$build-fuzz" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DGHOSTD_FUZZ=ON -DGHOSTD_CUDA=OFF -DGHOSTD_BENCH=OFF -DGHOSTD_FUZZ_SECONDS="${FUZZ_SECONDS:-20}" \
      -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined"
    cmake --build "$build-fuzz" -j "$jobs" --target fuzzers
    ctest --test-dir "$build-fuzz" -L fuzz --output-on-failure
    ;;
  *)
    echo "usage: $0 demo|test" >&2
    exit 2
    ;;
esac
