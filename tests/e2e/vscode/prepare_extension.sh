#!/usr/bin/env bash
# Copies editors/vscode's sources into CACHE/vscode-ext and installs its npm
# dependencies there (again only when package-lock.json changes), so tests
# never write into the source tree. Prints the folder.
# usage: prepare_extension.sh SOURCE_DIR CACHE_DIR
set -euo pipefail
src=${1:?usage: prepare_extension.sh SOURCE_DIR CACHE_DIR}
ext=${2:?missing CACHE_DIR}/vscode-ext
mkdir -p "$ext"
rm -rf "$ext/src" "$ext/test" "$ext/out" "$ext/ghostd.vsix"
cp -r "$src/editors/vscode/src" "$src/editors/vscode/test" "$ext/"
for f in package.json package-lock.json tsconfig.json esbuild.mjs .vscodeignore README.md LICENSE.txt; do
  cp "$src/editors/vscode/$f" "$ext/"
done
lock_sum=$(sha256sum "$ext/package-lock.json" | cut -d' ' -f1)
if [[ ! -d $ext/node_modules || $(cat "$ext/.lock-sum" 2>/dev/null) != "$lock_sum" ]]; then
  (cd "$ext" && npm ci --no-audit --no-fund >&2)
  echo "$lock_sum" >"$ext/.lock-sum"
fi
echo "$ext"
