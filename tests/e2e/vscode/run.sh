#!/usr/bin/env bash
# End-to-end test of the VS Code extension in a real VS Code: code-server
# 4.100.3 (VS Code 1.100.3) with the .vsix installed, driven in Debian's
# Chromium by playwright-core. Types into a Python file, waits for ghostd's
# ghost text, accepts it with Tab and checks the saved file.
#
# With `remote` (e2e.vscode.remote) the extension starts no daemon: it
# connects with ghostd.server = tls://localhost:PORT to a shared daemon this
# script starts (self-signed certificate, token file), its token set through
# "ghostd: Set Server Token" after a wrong one was refused; the daemon's log
# and metrics log must show the session's tenant.
#
# usage: run.sh SOURCE_DIR GHOSTD_BIN WORK_DIR [remote]
# env:   GHOSTD_E2E_CACHE (default SOURCE_DIR/build/e2e-cache): code-server,
#        the extension's node_modules and playwright-core, kept across runs.
# exit:  0 pass, 1 fail, 77 skip (no node/npm; with `remote`, no openssl).
set -euo pipefail

remote=${4:-}
[[ -z $remote || $remote == remote ]] || { echo "run.sh: the 4th argument is 'remote' or nothing, got '$remote'" >&2; exit 2; }
name=e2e.vscode${remote:+.remote}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIP $name: node and npm are needed (Node 20 for code-server 4.100.3)"
  exit 77
fi
if [[ -n $remote ]] && ! command -v openssl >/dev/null; then
  echo "SKIP $name: the openssl command is needed for the server's certificate"
  exit 77
fi

src=$(cd "${1:?usage: run.sh SOURCE_DIR GHOSTD_BIN WORK_DIR}" && pwd)
ghostd=$(realpath "${2:?missing GHOSTD_BIN}")
mkdir -p "${3:?missing WORK_DIR}"
work=$(cd "$3" && pwd)
cache=${GHOSTD_E2E_CACHE:-$src/build/e2e-cache}
here=$src/tests/e2e/vscode
kPlaywrightVersion=1.65.1

[[ -x $ghostd ]] || { echo "$name: no daemon at $ghostd" >&2; exit 1; }

t_start=$SECONDS
step() { echo "[$name +$((SECONDS - t_start))s] $*"; }

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
rm -rf "$work/ws" "$work/user-data" "$work/extensions" "$work"/*.png "$work"/*.log "$work/metrics.jsonl" \
  "$work"/*.pem "$work/tokens"

# Processes to end on exit (the shared daemon, code-server), last started first.
pids=()
cleanup() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
}
trap cleanup EXIT

# The shared daemon first: it loads its model while the rest is prepared.
# Its metrics log is the one the extension's "Open Metrics Log" opens, and
# e2e.js counts completions in it.
if [[ -n $remote ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
  token=vscode-e2e-token-0123456789abcdef
  wrong_token=vscode-e2e-token-not-in-the-file
  tenant=vscode-e2e
  echo "$tenant $token" >"$work/tokens"
  "$ghostd" serve --model "$src/models/qwen2-code-small" --threads 2 --listen 127.0.0.1:0 \
    --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" --token-file "$work/tokens" \
    --metrics-log "$work/metrics.jsonl" --log-level info 2>"$work/ghostd.log" &
  daemon_pid=$!
  pids+=("$daemon_pid")
  server_port=
  for _ in $(seq 1 300); do
    server_port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\) (TLS).*/\1/p' "$work/ghostd.log" | head -1)
    [[ -n $server_port ]] && break
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
  done
  [[ -n $server_port ]] || { cat "$work/ghostd.log" >&2; echo "$name: the daemon did not listen with TLS" >&2; exit 1; }
  step "shared daemon listening on 127.0.0.1:$server_port (TLS, tenant $tenant)"
fi

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
# at the built daemon and the bundled model (remote: at the shared daemon,
# and ghostd.path at nothing, so a local daemon could not start); the rest
# keeps the workbench quiet.
mkdir -p "$work/ws" "$work/user-data/User"
cp "$here/sample.py" "$work/ws/main.py"
if [[ -n $remote ]]; then
  daemon_settings="\"ghostd.server\": \"tls://localhost:$server_port\",
  \"ghostd.caFile\": \"$work/cert.pem\",
  \"ghostd.path\": \"$work/no-local-daemon\","
else
  daemon_settings="\"ghostd.path\": \"$ghostd\",
  \"ghostd.model\": \"$src/models/qwen2-code-small\","
fi
cat >"$work/user-data/User/settings.json" <<JSON
{
  $daemon_settings
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
pids+=("$cs_pid")
for _ in $(seq 1 120); do
  node -e "fetch('http://127.0.0.1:$port/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))" && break
  kill -0 $cs_pid 2>/dev/null || { cat "$work/code-server.log" >&2; exit 1; }
  sleep 0.5
done

step "driving the workbench in chromium"
status=0
token_args=()
[[ -n $remote ]] && token_args=(--token "$token" --wrong-token "$wrong_token")
NODE_PATH=$driver/node_modules node "$here/e2e.js" --url "http://127.0.0.1:$port/?folder=$work/ws" \
  --file "$work/ws/main.py" --out "$work" --metrics "$work/metrics.jsonl" --chromium "$(command -v chromium)" \
  "${token_args[@]}" || status=$?

# The daemon's side: the refused token, the sessions that authenticated as
# the tenant over the TLS listener, and every completion logged for one of
# them; and it is still serving.
if [[ -n $remote && $status -eq 0 ]]; then
  step "checking the daemon's log and metrics log"
  node - "$work/ghostd.log" "$work/metrics.jsonl" "$tenant" <<'JS' || status=1
const fs = require('node:fs');
const [logFile, metricsFile, tenant] = process.argv.slice(2);
const log = fs.readFileSync(logFile, 'utf8');
const fail = (msg) => { console.error(`e2e.vscode.remote FAIL: ${msg}`); process.exit(1); };
if (!/listening on 127\.0\.0\.1:\d+ \(TLS\)/.test(log)) fail('the daemon did not listen with TLS');
if (/not TLS/.test(log)) fail('a connection came without TLS');
const refused = (log.match(/authentication failed \(unknown token\)/g) || []).length;
if (refused === 0) fail('the daemon logged no refused token');
const sessions = new Set([...log.matchAll(/session (\d+) from (\S+): tenant (\S+)/g)].map((m) => {
  if (m[3] !== tenant) fail(`session ${m[1]} from ${m[2]} authenticated as ${m[3]}, not ${tenant}`);
  return Number(m[1]);
}));
if (sessions.size === 0) fail(`no session authenticated as ${tenant}`);
const completions = fs.readFileSync(metricsFile, 'utf8').split('\n').filter((l) => l.includes('"type":"completion"')).map((l) => JSON.parse(l));
if (completions.length === 0) fail('the daemon logged no completion');
for (const c of completions) {
  if (c.tenant !== tenant || !sessions.has(c.session)) fail(`a completion of tenant ${c.tenant}, session ${c.session}: ${JSON.stringify(c)}`);
}
const ok = completions.filter((c) => c.outcome === 'ok').length;
console.log(`daemon: ${refused} refused token(s); session(s) ${[...sessions].join(', ')} as ${tenant} over TLS; ` +
  `${completions.length} completion(s) of ${tenant}, ${ok} ok`);
JS
  kill -0 "$daemon_pid" 2>/dev/null || { echo "$name FAIL: the shared daemon is gone" >&2; status=1; }
fi
if [[ $status -ne 0 ]]; then
  echo "--- code-server log (tail)" >&2
  tail -40 "$work/code-server.log" >&2
  # The extension's output channel: its own lines, the client's and the daemon's stderr.
  find "$work/user-data/logs" -type f -path '*/ghostd.ghostd/*' -exec tail -n 80 {} + >&2 2>/dev/null || true
  [[ -f $work/metrics.jsonl ]] && { echo "--- metrics log (tail)" >&2; tail -n 20 "$work/metrics.jsonl" >&2; }
  [[ -n $remote ]] && { echo "--- shared daemon's log (tail)" >&2; tail -n 40 "$work/ghostd.log" >&2; }
fi
[[ -f $work/metrics.jsonl ]] && step "metrics: $(wc -l <"$work/metrics.jsonl") line(s), last: $(tail -1 "$work/metrics.jsonl")"
step "done (exit $status); screenshots in $work"
exit $status
