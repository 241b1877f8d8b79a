"""Keys from the user: one keypress at a time on a terminal, lines otherwise.

On a TTY the terminal is put in non-canonical mode without echo (termios; signals stay on, so
Ctrl-C still interrupts) for the whole session and restored on exit, so a key typed ahead while
a segment is drawn is not lost. When stdin is not a TTY (a pipe, a file, a test), each line is
one key: its first character, or a word such as ``yes``, ``undo``, ``quit``.
"""

from __future__ import annotations

import os
import select
import sys
from types import TracebackType
from typing import TextIO

WORDS = {
    "yes": "y",
    "no": "n",
    "unsure": "u",
    "replay": "r",
    "skip": "s",
    "back": "b",
    "undo": "b",
    "quit": "q",
    "exit": "q",
    "help": "?",
}
QUIT = "q"


class KeyReader:
    """Context manager yielding keys (``read()`` -> one-character string, ``"q"`` at end of
    input or Ctrl-D, ``"esc"`` for escape sequences such as arrow keys, ``""`` for an empty
    line)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdin
        self.tty = self.stream.isatty()
        self._saved: list | None = None

    def __enter__(self) -> KeyReader:
        if self.tty:
            import termios

            fd = self.stream.fileno()
            self._saved = termios.tcgetattr(fd)
            mode = termios.tcgetattr(fd)
            mode[3] &= ~(termios.ICANON | termios.ECHO)  # lflags: keys one by one, no echo
            mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
            # TCSANOW, not TCSAFLUSH: keys typed before the reviewer started are kept
            termios.tcsetattr(fd, termios.TCSANOW, mode)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None

    @property
    def mode(self) -> str:
        """``keypress`` on a terminal, ``line`` otherwise."""
        return "keypress" if self.tty else "line"

    def read(self) -> str:
        """The next key (module docstring)."""
        return self._read_key() if self.tty else self._read_line()

    def _read_key(self) -> str:
        fd = self.stream.fileno()
        b = os.read(fd, 1)
        if not b or b == b"\x04":  # end of input, Ctrl-D
            return QUIT
        if b == b"\x1b" or b[0] >= 0x80:
            # an escape sequence (arrow keys) or a multi-byte character arrives at once: drain
            # it, so that its bytes are not read as keys
            while select.select([fd], [], [], 0.05)[0]:
                if not os.read(fd, 16):
                    break
            return "esc"
        return b.decode("ascii").lower()

    def _read_line(self) -> str:
        line = self.stream.readline()
        if not line:
            return QUIT
        text = line.strip().lower()
        return WORDS.get(text, text[:1])
