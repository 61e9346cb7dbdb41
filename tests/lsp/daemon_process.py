"""A ghostd daemon under test, as the socket harnesses start it: stderr is
kept for reports and scanned for the listening address and model readiness."""

import os
import re
import signal
import subprocess
import threading


class Daemon:
    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.port = None  # TCP port once listening (None for a Unix socket)
        self.ready = threading.Event()  # the model loaded, or failed to
        self.listening = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())
            m = re.search(r"listening on (?:[\d.]+:(\d+)|unix:)", line)
            if m:
                self.port = int(m.group(1)) if m.group(1) else None
                self.listening.set()
            if re.search(r"model .* ready in", line) or "failed" in line and "model" in line:
                self.ready.set()

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        self.proc.wait(30)

    def tail(self):
        return "\n".join(self.lines[-30:])
