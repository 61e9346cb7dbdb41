#!/usr/bin/env bash
# The .deb end to end: builds it with cpack in BUILD_DIR (configured with the
# "package" preset: prefix /usr), checks its contents and dependencies,
# installs it into a scratch root with dpkg (maintainer scripts run
# chrootless with DPKG_ROOT set, so the host's users and services are left
# alone), runs the installed ghostd --version and one completion through the
# installed binary, bundled model and ghostd-replay, then purges it and
# checks that nothing is left behind.
#   deb_test.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -euo pipefail
src=$(cd "${1:?usage: deb_test.sh SOURCE_DIR BUILD_DIR WORK_DIR}" && pwd)
build=$(cd "${2:?missing BUILD_DIR}" && pwd)
mkdir -p "${3:?missing WORK_DIR}"
work=$(cd "$3" && pwd)  # absolute: dpkg runs the maintainer scripts by path
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }

command -v dpkg-deb >/dev/null || { echo "SKIP: dpkg is needed"; exit 77; }
[[ $(id -u) -eq 0 ]] || { echo "SKIP: installing into a scratch root needs root"; exit 77; }

(cd "$build" && cpack -G DEB >"$build/cpack.log" 2>&1) || { cat "$build/cpack.log"; exit 1; }
version=$(grep -m1 '^CMAKE_PROJECT_VERSION:' "$build/CMakeCache.txt" | cut -d= -f2)
deb=$build/ghostd_${version}_$(dpkg --print-architecture).deb
[[ -f $deb ]] && ok "cpack made $(basename "$deb") ($(du -h "$deb" | cut -f1))" || { bad "no $deb"; exit 1; }

contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/ghostd ./usr/bin/ghostd-replay ./usr/share/ghostd/models/qwen2-code-small/config.json \
         ./usr/share/ghostd/models/qwen2-code-draft/config.json ./usr/share/ghostd/nvim/lua/ghostd/init.lua \
         ./usr/share/man/man1/ghostd.1.gz ./usr/lib/systemd/system/ghostd.service ./etc/ghostd/ghostd.conf; do
  grep -q " $f\$" <<<"$contents" && ok "contains $f" || bad "missing $f"
done
depends=$(dpkg-deb -f "$deb" Depends)
for lib in libspdlog libpcre2-8 libutf8proc libstdc++6 adduser; do
  grep -q "$lib" <<<"$depends" && ok "Depends names $lib" || bad "Depends lacks $lib: $depends"
done
[[ $(dpkg-deb -f "$deb" Conffiles 2>/dev/null; dpkg-deb -I "$deb" conffiles) == *"/etc/ghostd/ghostd.conf"* ]] &&
  ok "ghostd.conf is a conffile" || bad "ghostd.conf is not a conffile"
zcat "$build/ghostd.1.gz" | grep -q '^\\fB\\-\\-listen' && ok "man page lists --listen (from serve --help)" ||
  bad "man page lacks --listen"

# A fresh root: an empty dpkg database and nothing else.
root=$work/root
rm -rf "$root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
: >"$root/var/lib/dpkg/status"
dpkg=(dpkg --root="$root" --force-script-chrootless --force-depends --log=/dev/null)
"${dpkg[@]}" -i "$deb" >"$work/install.log" 2>&1 && ok "dpkg -i into $root" || { cat "$work/install.log"; bad "dpkg -i"; }
"${dpkg[@]}" -s ghostd 2>/dev/null | grep -q '^Status: install ok installed' && ok "dpkg lists it installed" ||
  bad "not installed: $("${dpkg[@]}" -s ghostd 2>&1)"

out=$("$root/usr/bin/ghostd" --version) && [[ $out == "ghostd $version"* ]] && ok "installed ghostd --version: ${out%%$'\n'*}" ||
  bad "installed ghostd --version: $out"
# No --model: the installed daemon finds its bundled model under its own share/.
if python3 "$root/usr/bin/ghostd-replay" --session "$src/tests/lsp/real/completion.jsonl" --timeout-ms 60000 -- \
  "$root/usr/bin/ghostd" serve --log-level warn --threads 2 >"$work/replay.log" 2>&1; then
  ok "one completion through the installed ghostd, bundled model and ghostd-replay"
else
  cat "$work/replay.log"
  bad "completion through the installed ghostd"
fi

"${dpkg[@]}" --purge ghostd >"$work/purge.log" 2>&1 && ok "dpkg --purge" || { cat "$work/purge.log"; bad "dpkg --purge"; }
left=$(cd "$root" && find . -mindepth 1 \( -type f -o -type l \) -not -path './var/lib/dpkg/*')
[[ -z $left ]] && ok "nothing left behind" || bad "left behind: $left"
leftdirs=$(cd "$root" && find . -mindepth 1 -type d -not -path './var/lib/dpkg*' -not -path './var/lib' -not -path './var')
[[ -z $leftdirs ]] && ok "no directories left behind" || bad "directories left behind: $leftdirs"

[[ $fails -eq 0 ]] && echo "deb_test: PASS" || echo "deb_test: $fails failure(s)"
[[ $fails -eq 0 ]]
