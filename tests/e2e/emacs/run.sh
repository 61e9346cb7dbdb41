#!/bin/bash
# e2e.emacs: the eglot configuration documented in docs/editors.md, loaded
# verbatim into Emacs in batch mode (Debian's emacs-nox + elpa-eglot in CI),
# against the real daemon. Usage: run.sh GHOSTD_BINARY SOURCE_DIR WORK_DIR
set -euo pipefail
daemon=$1 src=$2 work=$3
if ! command -v emacs >/dev/null 2>&1; then
  echo "SKIP: emacs not found (apt-get install emacs-nox elpa-eglot)"
  exit 77
fi
rm -rf "$work" && mkdir -p "$work/bin" "$work/project"
# `ghostd` on PATH, as the documented setup expects, pinned to the bundled model.
cat >"$work/bin/ghostd" <<WRAP
#!/bin/sh
exec "$daemon" serve --model "$src/models/qwen2-code-small" --threads 2 --log-level warn "\$@" 2>>"$work/ghostd.log"
WRAP
chmod +x "$work/bin/ghostd"
# The elisp block that follows the e2e.emacs marker in docs/editors.md.
awk '/<!-- e2e.emacs/ {found=1; next}
     found && /^```elisp/ {inblock=1; next}
     inblock && /^```/ {exit}
     inblock {print}' "$src/docs/editors.md" >"$work/ghostd-eglot.el"
if [ ! -s "$work/ghostd-eglot.el" ]; then
  echo "FAIL: no elisp block after the e2e.emacs marker in docs/editors.md"
  exit 1
fi
printf 'def fib(n):\n    if n < 2:\n        return n\n    return fib(' >"$work/project/sample.py"
git -C "$work/project" init -q 2>/dev/null || true
export PATH="$work/bin:$PATH" HOME="$work"
emacs --version | head -1
status=0
timeout 240 emacs --batch -l "$src/tests/e2e/emacs/e2e.el" "$work/ghostd-eglot.el" "$work/project/sample.py" \
  </dev/null || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- ghostd-eglot.el"; cat "$work/ghostd-eglot.el"
  echo "--- ghostd.log"; tail -n 40 "$work/ghostd.log" || true
fi
exit "$status"
