#!/bin/bash
# e2e.nvim: the Neovim plugin in a real headless Neovim (Debian's 0.7.2 in CI)
# against the real daemon. Usage: run.sh GHOSTD_BINARY SOURCE_DIR WORK_DIR
# The daemon is found as `ghostd` on PATH, as the documented setup expects:
# a wrapper there pins the bundled model and two threads.
set -euo pipefail
daemon=$1 src=$2 work=$3
if ! command -v nvim >/dev/null 2>&1; then
  echo "SKIP: nvim not found (apt-get install neovim)"
  exit 77
fi
rm -rf "$work" && mkdir -p "$work/bin"
cat >"$work/bin/ghostd" <<WRAP
#!/bin/sh
exec "$daemon" serve --model "$src/models/qwen2-code-small" --threads 2 --log-level warn "\$@" 2>>"$work/ghostd.log"
WRAP
chmod +x "$work/bin/ghostd"
cat >"$work/sample.py" <<'PY'
def add(a, b):
    return a + b


PY
export PATH="$work/bin:$PATH"
export GHOSTD_E2E_WORK="$work"
nvim --version | head -1
status=0
# -n: no swap file; the providers are off because probing python3 (the
# Python ftplugin asks) can take seconds and has nothing to do with ghostd.
timeout 240 nvim -n --headless --clean --cmd "set rtp^=$src/editors/nvim" \
  --cmd "let g:loaded_python3_provider = 0 | let g:loaded_node_provider = 0 | let g:loaded_ruby_provider = 0 | let g:loaded_perl_provider = 0" \
  -c "luafile $src/tests/e2e/nvim/e2e.lua" "$work/sample.py" </dev/null || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- ghostd.log"; tail -n 40 "$work/ghostd.log" || true
fi
exit "$status"
