#!/usr/bin/env bash
# The ghostd CLI end to end: tokenize/decode on vocabulary-only GGUFs,
# errors for bad input, and generate on a random-weight model.
#   cli_test.sh GHOSTD_BINARY SOURCE_DIR WORK_DIR
set -uo pipefail
ghostd=$1 src=$2 work=$3
mkdir -p "$work"
fails=0
check() {  # name, expected, actual
  if [ "$2" == "$3" ]; then echo "ok   $1"; else echo "FAIL $1: expected [$2], got [$3]"; fails=$((fails + 1)); fi
}
vocab=$src/tests/data/tokenizer/ggml-vocab-gpt-2.gguf

check "tokenize gpt-2" "15496 995" "$(printf 'Hello world' | "$ghostd" tokenize --model "$vocab" 2>&1)"
check "decode gpt-2" "Hello world" "$(printf '15496 995' | "$ghostd" tokenize --model "$vocab" --decode 2>&1)"
text=$'def f(x):\n    return x  # \xc3\xa9\xf0\x9f\x98\x80'
check "round trip" "$text" "$(printf '%s' "$text" | "$ghostd" tokenize --model "$vocab" | "$ghostd" tokenize --model "$vocab" --decode)"

check "decode a printed list" "Hello world" "$(printf '[15496, 995]\n' | "$ghostd" tokenize --model "$vocab" --decode 2>&1)"
check "decode --no-special leaves <|endoftext|> out" "Hello" \
  "$(printf '50256 15496 50256' | "$ghostd" tokenize --model "$vocab" --decode --no-special 2>&1)"
check "decode keeps <|endoftext|>" "<|endoftext|>Hello" \
  "$(printf '50256 15496' | "$ghostd" tokenize --model "$vocab" --decode 2>&1)"

# SentencePiece (Llama 2): no dummy-prefix space on the way back, byte tokens
# (<0xXX> is id 3 + XX) joined into whole characters, a lone lead byte as is.
spm=$src/tests/data/tokenizer/ggml-vocab-llama-spm.gguf
check "tokenize llama-spm" "15043 3186" "$(printf 'Hello world' | "$ghostd" tokenize --model "$spm" 2>&1)"
check "decode llama-spm has no leading space" "Hello world" \
  "$(printf '15043 3186' | "$ghostd" tokenize --model "$spm" --decode 2>&1)"
check "decode llama-spm with BOS" "<s> Hello world" "$(printf '1 15043 3186' | "$ghostd" tokenize --model "$spm" --decode 2>&1)"
check "decode llama-spm --no-special" "Hello world" \
  "$(printf '1 15043 3186' | "$ghostd" tokenize --model "$spm" --decode --no-special 2>&1)"
check "round trip llama-spm" "$text" "$(printf '%s' "$text" | "$ghostd" tokenize --model "$spm" | "$ghostd" tokenize --model "$spm" --decode)"
check "round trip llama-spm, leading spaces" "  $text" \
  "$(printf '  %s' "$text" | "$ghostd" tokenize --model "$spm" | "$ghostd" tokenize --model "$spm" --decode)"
check "decode byte tokens into one character" "$(printf '\xf0\x9f\x98\x80')" \
  "$(printf '243 162 155 131' | "$ghostd" tokenize --model "$spm" --decode)"
check "decode a lone lead byte as its byte" "c3" \
  "$(printf '198' | "$ghostd" tokenize --model "$spm" --decode | od -An -tx1 | tr -d ' \n')"
check "decode a split character" "c3a9" \
  "$(printf '198 172' | "$ghostd" tokenize --model "$spm" --decode | od -An -tx1 | tr -d ' \n')"
out=$("$ghostd" tokenize --help 2>&1)
case "$out" in *"--decode"*"partial"*|*"--decode"*"incomplete"*) echo "ok   tokenize --help explains --decode";; *) echo "FAIL tokenize --help: $out"; fails=$((fails + 1));; esac

out=$(printf '99999999' | "$ghostd" tokenize --model "$vocab" --decode 2>&1); rc=$?
check "decode bad id exits 1" "1" "$rc"
case "$out" in *"not a token id"*) echo "ok   decode bad id message";; *) echo "FAIL decode bad id message: $out"; fails=$((fails + 1));; esac
out=$("$ghostd" tokenize --model "$work/missing-model" < /dev/null 2>&1); rc=$?
check "missing model exits 1" "1" "$rc"
case "$out" in *missing-model*) echo "ok   missing model message names the path";; *) echo "FAIL missing model message: $out"; fails=$((fails + 1));; esac
out=$("$ghostd" generate --bogus 2>&1); rc=$?
check "unknown flag exits 2" "2" "$rc"
case "$out" in *"unknown flag --bogus"*"usage: ghostd generate"*) echo "ok   unknown flag message names it";; *) echo "FAIL unknown flag message: $out"; fails=$((fails + 1));; esac
out=$("$ghostd" tokenize --model "$vocab" --bogus < /dev/null 2>&1); rc=$?
check "tokenize unknown flag exits 2" "2" "$rc"
out=$("$ghostd" serve --bogus 2>&1); rc=$?
check "serve unknown flag exits 2" "2" "$rc"
case "$out" in *"--bogus"*) echo "ok   serve unknown flag message names it";; *) echo "FAIL serve unknown flag message: $out"; fails=$((fails + 1));; esac
for n in 0 -2 65 1000000; do
  out=$("$ghostd" serve --replicas "$n" 2>&1); rc=$?
  check "serve --replicas $n exits 2" "2" "$rc"
  case "$out" in *"--replicas: expected an integer in [1, 64], got '$n'"*) echo "ok   --replicas $n message names the flag";; *) echo "FAIL --replicas $n message: $out"; fails=$((fails + 1));; esac
done
# Every command answers --help with its own usage, exit 0.
for cmd in generate tokenize serve; do
  out=$("$ghostd" $cmd --help 2>&1); rc=$?
  check "$cmd --help exits 0" "0" "$rc"
  case "$out" in *"--model PATH"*) echo "ok   $cmd --help lists its options";; *) echo "FAIL $cmd --help: $out"; fails=$((fails + 1));; esac
done
out=$("$ghostd" --help 2>&1); rc=$?
check "--help exits 0" "0" "$rc"
out=$("$ghostd" --version 2>&1); rc=$?
check "--version exits 0" "0" "$rc"
case "$out" in "ghostd "*"CUDA backend: "*"NCCL: "*"CPU kernels: "*) echo "ok   --version says what is built";; *) echo "FAIL --version: $out"; fails=$((fails + 1));; esac
out=$("$ghostd" generate --model "$work/missing-model" --device tpu 2>&1); rc=$?
check "bad device exits 1" "1" "$rc"
case "$out" in *"expected cpu, cuda"*) echo "ok   bad device message";; *) echo "FAIL bad device message: $out"; fails=$((fails + 1));; esac

# Tensor parallelism on CPU ranks: the same greedy text as one rank; shapes
# and device lists that do not work are refused with what to change.
bundled=$src/models/qwen2-code-small
a=$("$ghostd" generate --model "$bundled" --prompt 'def fib(n):' -n 16 --threads 2 2>/dev/null)
b=$("$ghostd" generate --model "$bundled" --prompt 'def fib(n):' -n 16 --threads 2 --tensor-parallel 2 2>/dev/null)
check "generate --tensor-parallel 2 gives the text of one rank" "$a" "$b"
out=$("$ghostd" generate --model "$bundled" --prompt x -n 1 --tensor-parallel 4 2>&1); rc=$?
check "heads that do not split exit 1" "1" "$rc"
case "$out" in *"6 attention heads do not split over 4 ranks"*"--tensor-parallel"*) echo "ok   heads message names the flag";; *) echo "FAIL heads message: $out"; fails=$((fails + 1));; esac
out=$("$ghostd" generate --model "$bundled" --prompt x -n 1 --devices cpu,cuda:0 2>&1); rc=$?
check "mixed devices exit 1" "1" "$rc"
case "$out" in *"cannot be mixed"*) echo "ok   mixed devices message";; *) echo "FAIL mixed devices message: $out"; fails=$((fails + 1));; esac
out=$("$ghostd" generate --model "$bundled" --prompt x -n 1 --devices cuda:6,cuda:7 2>&1); rc=$?
check "missing GPUs exit 1" "1" "$rc"
case "$out" in *"cuda:6"*) echo "ok   missing GPU message names the device";; *) echo "FAIL missing GPU message: $out"; fails=$((fails + 1));; esac

# Remote serving: every new flag is in serve --help; unsafe setups are refused with the reason.
out=$("$ghostd" serve --help 2>&1)
for flag in "--model NAME=PATH" --tensor-parallel --devices --tls-cert --tls-key --token-file --insecure --handshake-timeout-ms \
            --idle-timeout-s --max-open-documents --max-document-bytes --max-requests-in-flight --max-requests-per-second --prompt-threads; do
  case "$out" in *"$flag"*) echo "ok   serve --help lists $flag";; *) echo "FAIL serve --help lacks $flag"; fails=$((fails + 1));; esac
done
out=$("$ghostd" connect --help 2>&1); rc=$?
check "connect --help exits 0" "0" "$rc"
case "$out" in *"--token-file"*"--ca-file"*) echo "ok   connect --help lists its options";; *) echo "FAIL connect --help: $out"; fails=$((fails + 1));; esac
out=$("$ghostd" serve --token-file "$work/t" 2>&1); rc=$?
check "--token-file without --listen exits 2" "2" "$rc"
out=$("$ghostd" serve --listen 0.0.0.0:0 --model "$work/missing-model" 2>&1); rc=$?
check "non-loopback without TLS and tokens exits 1" "1" "$rc"
case "$out" in *"refusing a non-loopback address without TLS and tokens"*) echo "ok   non-loopback refusal says why";; *) echo "FAIL non-loopback refusal: $out"; fails=$((fails + 1));; esac
out=$("$ghostd" connect tcp://10.1.2.3:7777 < /dev/null 2>&1); rc=$?
check "connect tcp:// to a remote host exits 2" "2" "$rc"
case "$out" in *"not loopback"*) echo "ok   connect tcp:// refusal says why";; *) echo "FAIL connect tcp:// refusal: $out"; fails=$((fails + 1));; esac
out=$("$ghostd" connect example.com:7777 < /dev/null 2>&1); rc=$?
check "connect without a scheme exits 2" "2" "$rc"

if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  model=$work/random-qwen2
  /usr/bin/python3 "$src/tools/make_random_model.py" --arch qwen2 --out "$model" --hidden 64 --layers 2 \
    --heads 4 --kv-heads 2 --intermediate 128 --vocab 512 --dtype bf16 --tied --seed 3 > /dev/null
  out=$("$ghostd" generate --model "$model" --prompt 'def main():' -n 12 --threads 2 2>&1); rc=$?
  check "generate exits 0" "0" "$rc"
  case "$out" in *"decode: "*"tokens/s"*) echo "ok   generate prints decode tokens/s";; *) echo "FAIL generate output: $out"; fails=$((fails + 1));; esac
  a=$("$ghostd" generate --model "$model" --prompt 'x = 1' -n 8 --temperature 0.8 --seed 5 2>/dev/null)
  b=$("$ghostd" generate --model "$model" --prompt 'x = 1' -n 8 --temperature 0.8 --seed 5 2>/dev/null)
  check "seeded sampling reproduces" "$a" "$b"
  # A truncated weights file is an error naming the file, not a crash.
  cp -r "$model" "$work/truncated"
  head -c 1000 "$model/model.safetensors" > "$work/truncated/model.safetensors"
  out=$("$ghostd" generate --model "$work/truncated" --prompt x -n 1 2>&1); rc=$?
  check "truncated weights exits 1" "1" "$rc"
  case "$out" in *model.safetensors*) echo "ok   truncated weights message names the file";; *) echo "FAIL truncated message: $out"; fails=$((fails + 1));; esac
else
  echo "skip generate checks: /usr/bin/python3 has no torch"
fi
[ "$fails" -eq 0 ] && echo "all CLI checks passed" || { echo "$fails CLI checks failed"; exit 1; }
