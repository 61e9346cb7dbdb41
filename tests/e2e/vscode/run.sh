#!/usr/bin/env bash
# End-to-end test of the VS Code extension in a real VS Code: code-server
# 4.100.3 (VS Code 1.100.3) with the .vsix installed, driven in Debian's
# Chromium by playwright-core. Types into a Python file, waits for ghostd's
# ghost text, accepts it with Tab and checks the saved file.
#
# usage: run.sh SOURCE_DIR GHOSTD_BIN WORK_DIR
# env:   GHOSTD_E2E_CACHE (default SOURCE_DIR/build/e2e-cache): code-server,
#        the extension's node_modules and playwright-core, kept across runs.
# exit:  0 pass, 1 fail, 77 skip (no node/npm).
set -euo pipefail

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIP e2e.vscode: node and npm are needed (Node 20 for code-server 4.100.3)"
  exit 77
fi

src=$(cd "${1:?usage: run.sh SOURCE_DIR GHOSTD_BIN WORK_DIR}" && pwd)
ghostd=$(realpath "${2:?missing GHOSTD_BIN}")
mkdir -p "${3:?missing WORK_DIR}"
work=$(cd "$3" && pwd)
cache=${GHOSTD_E2E_CACHE:-$src/build/e2e-cache}
here=$src/tests/e2e/vscode
kPlaywrightVersion=1.65.1

[[ -x $ghostd ]] || { echo "e2e.vscode: no daemon at $ghostd" >&2; exit 1; }

t_start=$SECONDS
step() { echo "[e2e.vscode +$((SECONDS - t_start))s] $*"; }

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
rm -rf "$work/ws" "$work/user-data" "$work/extensions" "$work"/*.png "$work"/*.log "$work/metrics.jsonl"

if ! command -v chromium >/dev/null; then
  step "installing Debian's chromium"
  [[ $(id -u) -eq 0 ]] || { echo "e2e.vscode: chromium is missing (apt-get install chromium)" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium >/dev/null ||
    { apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium >/dev/null; }
fi

step "code-server 4.100.3 (cache $cache)"
"$here/install_code_server.sh" "$cache"
cs_entry=$cache/code-server-4.100.3/node_modules/code-server/out/node/entry.js

step "playwright-core $kPlaywrightVersion"
driver=$cache/driver
if [[ ! -f $driver/node_modules/playwright-core/package.json ]] ||
  [[ $(node -p "require('$driver/node_modules/playwright-core/package.json').version") != "$kPlaywrightVersion" ]]; then
  mkdir -p "$driver"
  [[ -f $driver/package.json ]] || echo '{"name":"ghostd-e2e-driver","private":true}' >"$driver/package.json"
  (cd "$driver" && npm install --no-audit --no-fund "playwright-core@$kPlaywrightVersion" >/dev/null)
fi

step "building the .vsix"
ext=$("$here/prepare_extension.sh" "$src" "$cache")
(cd "$ext" && npm run --silent package >/dev/null)

step "installing the .vsix into code-server"
node "$cs_entry" --user-data-dir "$work/user-data" --extensions-dir "$work/extensions" \
  --install-extension "$ext/ghostd.vsix" >"$work/install-extension.log" 2>&1 || true
ls "$work/extensions" | grep -q '^ghostd\.ghostd-' ||
  { cat "$work/install-extension.log" >&2; echo "e2e.vscode: the .vsix did not install" >&2; exit 1; }

# A workspace with one Python file, and user settings pointing the extension
# at the built daemon and the bundled model; the rest keeps the workbench quiet.
mkdir -p "$work/ws" "$work/user-data/User"
cp "$here/sample.py" "$work/ws/main.py"
cat >"$work/user-data/User/settings.json" <<JSON
{
  "ghostd.path": "$ghostd",
  "ghostd.model": "$src/models/qwen2-code-small",
  "ghostd.maxTokens": 24,
  "ghostd.maxLines": 2,
  "ghostd.deadlineMs": 10000,
  "ghostd.metricsLog": "$work/metrics.jsonl",
  "editor.inlineSuggest.enabled": true,
  "editor.quickSuggestions": { "other": "off", "comments": "off", "strings": "off" },
  "editor.suggestOnTriggerCharacters": false,
  "editor.acceptSuggestionOnEnter": "off",
  "editor.minimap.enabled": false,
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "workbench.enableExperiments": false,
  "security.workspace.trust.enabled": false,
  "extensions.ignoreRecommendations": true,
  "extensions.autoCheckUpdates": false,
  "extensions.autoUpdate": false,
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "window.restoreWindows": "none",
  "files.autoSave": "off",
  "git.enabled": false,
  "git.openRepositoryInParentFolders": "never"
}
JSON
# VS Code 1.100 binds no key to "Trigger Inline Suggestion"; e2e.js asks
# again with Alt+\ when no ghost text shows.
cat >"$work/user-data/User/keybindings.json" <<'JSON'
[{ "key": "alt+\\", "command": "editor.action.inlineSuggest.trigger", "when": "editorTextFocus && !editorReadonly" }]
JSON

port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
step "starting code-server on 127.0.0.1:$port"
node "$cs_entry" --auth none --bind-addr "127.0.0.1:$port" --disable-telemetry --disable-update-check \
  --disable-workspace-trust --disable-getting-started-override \
  --user-data-dir "$work/user-data" --extensions-dir "$work/extensions" "$work/ws" >"$work/code-server.log" 2>&1 &
cs_pid=$!
trap 'kill $cs_pid 2>/dev/null || true; wait $cs_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  node -e "fetch('http://127.0.0.1:$port/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))" && break
  kill -0 $cs_pid 2>/dev/null || { cat "$work/code-server.log" >&2; exit 1; }
  sleep 0.5
done

step "driving the workbench in chromium"
status=0
NODE_PATH=$driver/node_modules node "$here/e2e.js" --url "http://127.0.0.1:$port/?folder=$work/ws" \
  --file "$work/ws/main.py" --out "$work" --metrics "$work/metrics.jsonl" --chromium "$(command -v chromium)" || status=$?
if [[ $status -ne 0 ]]; then
  echo "--- code-server log (tail)" >&2
  tail -40 "$work/code-server.log" >&2
  # The extension's output channel: its own lines, the client's and the daemon's stderr.
  find "$work/user-data/logs" -type f -path '*/ghostd.ghostd/*' -exec tail -n 80 {} + >&2 2>/dev/null || true
  [[ -f $work/metrics.jsonl ]] && { echo "--- metrics log (tail)" >&2; tail -n 20 "$work/metrics.jsonl" >&2; }
fi
[[ -f $work/metrics.jsonl ]] && step "metrics: $(wc -l <"$work/metrics.jsonl") line(s), last: $(tail -1 "$work/metrics.jsonl")"
step "done (exit $status); screenshots in $work"
exit $status
