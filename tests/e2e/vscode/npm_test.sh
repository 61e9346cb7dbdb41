#!/usr/bin/env bash
# `npm test` of the VS Code extension (unit tests and the vscode-jsonrpc
# integration test against GHOSTD_BIN), run from a copy in the e2e cache.
# usage: npm_test.sh SOURCE_DIR GHOSTD_BIN    exit 77: no node/npm
set -euo pipefail

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIP e2e.vscode_extension_npm: node and npm are needed"
  exit 77
fi
src=$(cd "${1:?usage: npm_test.sh SOURCE_DIR GHOSTD_BIN}" && pwd)
bin=$(realpath "${2:?missing GHOSTD_BIN}")
cache=${GHOSTD_E2E_CACHE:-$src/build/e2e-cache}
mkdir -p "$cache"
ext=$("$src/tests/e2e/vscode/prepare_extension.sh" "$src" "$(cd "$cache" && pwd)")
cd "$ext"
GHOSTD_BIN=$bin GHOSTD_MODEL=$src/models/qwen2-code-small npm test
