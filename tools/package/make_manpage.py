#!/usr/bin/env python3
"""Writes ghostd(1) from the binary's own --help texts, so the man page and
--help cannot drift apart.

    make_manpage.py GHOSTD_BINARY OUT.1
"""
import datetime
import re
import subprocess
import sys


def run(binary, *args):
    return subprocess.run([binary, *args], check=True, capture_output=True, text=True).stdout


def roff(text):
    text = text.replace("\\", "\\e")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.splitlines())


def options(help_text):
    """The '  --flag ARG   description' lines of a help text as .TP items; other
    lines as paragraphs."""
    out = []
    for line in help_text.splitlines():
        m = re.match(r"^  (-\S+(?:, -\S+)?)((?: [A-Z][A-Z_|]*)*)\s{2,}(.*)$", line)
        if m:
            flags = m.group(1).replace("-", "\\-")
            arg = m.group(2).strip()
            out.append(".TP\n\\fB%s\\fR%s\n%s" % (flags, (" \\fI%s\\fR" % arg) if arg else "", roff(m.group(3))))
        elif line.strip() and not line.startswith("usage:") and not line.startswith("ghostd ["):
            out.append(".PP\n" + roff(line.strip()))
    return "\n".join(out)


def main():
    binary, out_path = sys.argv[1], sys.argv[2]
    top = run(binary, "--help")
    version = run(binary, "--version").splitlines()[0].split()[-1]
    summary = top.splitlines()[0].split(": ", 1)[-1]
    date = datetime.date.today().strftime("%Y-%m")
    page = [
        '.TH GHOSTD 1 "%s" "ghostd %s" "User Commands"' % (date, version),
        ".SH NAME",
        "ghostd \\- %s" % roff(summary),
        ".SH SYNOPSIS",
        ".B ghostd\n[\\fBserve\\fR] [\\fIoptions\\fR]",
        ".br\n.B ghostd generate\n\\fB\\-\\-model\\fR \\fIPATH\\fR \\fB\\-\\-prompt\\fR \\fITEXT\\fR [\\fIoptions\\fR]",
        ".br\n.B ghostd tokenize\n\\fB\\-\\-model\\fR \\fIPATH\\fR [\\fB\\-\\-decode\\fR] [\\fB\\-\\-no\\-special\\fR]",
        ".br\n.B ghostd\n\\fB\\-\\-version\\fR | \\fB\\-\\-help\\fR",
        ".SH DESCRIPTION",
        "ghostd is a language server: editors spawn it and speak LSP over stdio, or connect to one "
        "shared daemon over TCP or a Unix socket (\\fB\\-\\-listen\\fR). It serves inline completions "
        "(\\fBtextDocument/inlineCompletion\\fR) and completion items from its own inference runtime.",
        ".SH SERVE OPTIONS",
        options(run(binary, "serve", "--help")),
        ".SH GENERATE",
        options(run(binary, "generate", "--help")),
        ".SH TOKENIZE",
        options(run(binary, "tokenize", "--help")),
        ".SH SIGNALS",
        "SIGTERM or SIGINT ends the daemon cleanly: pending requests are answered, queued replies "
        "written, connections closed, the metrics log flushed; the exit status is 0.",
        ".SH EXIT STATUS",
        "0 after \\fBshutdown\\fR then \\fBexit\\fR, or after SIGTERM/SIGINT; 1 on \\fBexit\\fR without "
        "\\fBshutdown\\fR, when the client closes the input, or on a runtime error; 2 for a command line "
        "that cannot be run (unknown flag, missing value).",
        ".SH ENVIRONMENT",
        ".TP\n\\fBGHOSTD_LOG\\fR\ntrace, debug, info, warn or error: the log level (logs go to stderr).",
        ".TP\n\\fBGHOSTD_CPU_ISA\\fR\ngeneric, avx2 or avx512: the CPU kernels to use instead of the best "
        "this machine runs.",
        ".SH FILES",
        ".TP\n\\fI/usr/share/ghostd/models\\fR\nThe bundled models; served when no \\fB\\-\\-model\\fR is given.",
        ".TP\n\\fI/etc/ghostd/ghostd.conf\\fR\nThe flags of the ghostd.service unit (\\fBGHOSTD_ARGS\\fR).",
        ".TP\n\\fI/usr/share/ghostd/nvim\\fR\nThe Neovim plugin; add it to \\fB'runtimepath'\\fR.",
        ".SH SEE ALSO",
        "\\fBghostd\\-replay\\fR (the stdio harness installed with ghostd), docs/configuration.md and "
        "docs/editors.md in the source tree.",
    ]
    with open(out_path, "w") as f:
        f.write("\n".join(page) + "\n")


if __name__ == "__main__":
    main()
