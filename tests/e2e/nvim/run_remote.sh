#!/bin/bash
# e2e.nvim.remote: the Neovim plugin with `server = 'tls://...'` (it runs
# `ghostd connect`) against a TLS daemon with tokens on loopback.
# Usage: run_remote.sh GHOSTD_BINARY SOURCE_DIR WORK_DIR
set -euo pipefail
daemon=$1 src=$2 work=$3
if ! command -v nvim >/dev/null 2>&1; then
  echo "SKIP: nvim not found (apt-get install neovim)"
  exit 77
fi
rm -rf "$work" && mkdir -p "$work/bin"
# `ghostd` on PATH is the binary itself: the plugin runs `ghostd connect ...`.
ln -s "$daemon" "$work/bin/ghostd"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
token=nvim-e2e-token-0123456789abcdef
echo "e2e $token" > "$work/tokens"
echo "$token" > "$work/token"
"$daemon" serve --model "$src/models/qwen2-code-small" --threads 2 --listen 127.0.0.1:0 \
  --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" --token-file "$work/tokens" --log-level info \
  2>"$work/ghostd.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
port=
for _ in $(seq 1 300); do
  port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/ghostd.log" | head -1)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "daemon did not listen"; cat "$work/ghostd.log"; exit 1; }
cat >"$work/sample.py" <<'PY'
def add(a, b):
    return a + b


PY
export PATH="$work/bin:$PATH"
export GHOSTD_E2E_WORK="$work"
export GHOSTD_E2E_SERVER="tls://localhost:$port"
export GHOSTD_E2E_TOKEN_FILE="$work/token"
export GHOSTD_E2E_CA_FILE="$work/cert.pem"
status=0
timeout 240 nvim -n --headless --clean --cmd "set rtp^=$src/editors/nvim" \
  --cmd "let g:loaded_python3_provider = 0 | let g:loaded_node_provider = 0 | let g:loaded_ruby_provider = 0 | let g:loaded_perl_provider = 0" \
  -c "luafile $src/tests/e2e/nvim/e2e.lua" "$work/sample.py" </dev/null || status=$?
if ! grep -q "tenant e2e" "$work/ghostd.log"; then
  echo "FAIL: the daemon never saw the plugin's session authenticate"
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "--- ghostd.log"; tail -n 40 "$work/ghostd.log" || true
fi
exit "$status"
