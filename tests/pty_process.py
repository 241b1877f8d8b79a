"""A command on a real pseudo-terminal, for tests of interactive tools (the reviewer of
``sed.bin.review``, stage 8 of the detector recipe)."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class PtyProcess:
    """A command on a real pseudo-terminal (``cols`` wide) whose output is matched as it
    comes."""

    def __init__(
        self, argv: list[str], env: dict[str, str], cols: int = 60, cwd: Path = ROOT
    ) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True
        )
        os.close(slave)
        self.master = master
        self.raw = b""
        self.pos = 0  # matched up to here

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")

    def _read(self, timeout: float) -> bool:
        if not select.select([self.master], [], [], timeout)[0]:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.raw += chunk
        return bool(chunk)

    def expect(self, pattern: str, timeout: float = 15.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            m = re.compile(pattern).search(self.text, self.pos)
            if m:
                self.pos = m.end()
                return m
            if time.monotonic() > deadline or (
                not self._read(0.2) and self.proc.poll() is not None
            ):
                raise AssertionError(f"{pattern!r} not seen; output:\n{self.text[self.pos :]}")

    def send(self, key: str) -> None:
        os.write(self.master, key.encode())

    def finish(self, timeout: float = 15.0) -> int:
        rc = self.proc.wait(timeout=timeout)
        while self._read(0.05):
            pass
        os.close(self.master)
        return rc
