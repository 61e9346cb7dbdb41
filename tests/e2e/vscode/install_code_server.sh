#!/usr/bin/env bash
# Installs code-server 4.100.3 (VS Code 1.100.3) offline-capable on Node 20 into
# $1 (a cache folder), following shared/notes/real-vscode.md. Idempotent: a
# completed install leaves a stamp file and a rerun returns at once.
set -euo pipefail

cache=${1:?usage: install_code_server.sh CACHE_DIR}
version=4.100.3
root=$cache/code-server-$version
stamp=$root/.installed
vscode=$root/node_modules/code-server/lib/vscode

# VS Code's file logs (user-data/logs: the extension host's, each output
# channel's, e.g. "ghostd" with the daemon's stderr) need @vscode/spdlog's
# native module; without it nothing is written there. Built on its own so that
# caches installed before it was added get it too.
build_spdlog() {
  [[ -f $vscode/node_modules/@vscode/spdlog/build/Release/spdlog.node ]] ||
    (cd "$vscode" && npm_config_yes=true npm rebuild @vscode/spdlog >/dev/null)
}

if [[ -f $stamp ]]; then
  build_spdlog
  exit 0
fi

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "install_code_server: missing Debian packages ${missing[*]} (run as root or install them)" >&2
    return 1
  fi
  # Another apt user (a parallel test) may hold the lock: wait for it.
  local apt=(apt-get -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends)
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" >/dev/null ||
    { "${apt[@]}" update >/dev/null && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" >/dev/null; }
}

# Native modules build against these; ripgrep replaces @vscode/ripgrep's download.
apt_install libkrb5-dev libsecret-1-dev libxkbfile-dev libx11-dev ripgrep make g++ python3

mkdir -p "$root"
cd "$root"
[[ -f package.json ]] || echo '{"name":"ghostd-e2e-code-server","private":true}' >package.json
npm install --no-audit --no-fund --ignore-scripts "code-server@$version" >/dev/null

cd node_modules/code-server/lib/vscode
npm install --no-audit --no-fund --omit=dev --ignore-scripts >/dev/null
npm_config_yes=true npm rebuild kerberos node-pty @parcel/watcher >/dev/null
build_spdlog
mkdir -p node_modules/@vscode/ripgrep/bin
cp "$(command -v rg)" node_modules/@vscode/ripgrep/bin/rg
ln -sfn node_modules node_modules.asar
(cd bin/remote-cli && ln -sfn code-linux.sh code-server)
(cd bin/helpers && ln -sfn browser-linux.sh browser.sh)
(cd extensions && npm_config_yes=true npm install --no-audit --no-fund --omit=dev >/dev/null)

cd "$root"
npm rebuild argon2 >/dev/null
node node_modules/code-server/out/node/entry.js --version
touch "$stamp"
