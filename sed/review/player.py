"""Play a segment with whatever command-line player the machine has, in the background.

SoX's ``play`` first (any format), then ALSA's ``aplay`` (WAV only: a FLAC segment is decoded to
a temporary WAV first), then macOS's ``afplay``. Playback never blocks the reviewer: a key
pressed while a segment plays stops it and moves on.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import soundfile as sf

PLAYERS = ("play", "aplay", "afplay")
# quiet flags: the player must not write over the reviewer's screen
_ARGS = {"play": ["-q"], "aplay": ["-q"], "afplay": []}


def find_player(choice: str = "auto") -> str | None:
    """The player command to use: ``choice`` itself if it is on PATH, the first of
    :data:`PLAYERS` found for ``auto``, None for ``none`` or when none is found."""
    if choice == "none":
        return None
    names = PLAYERS if choice == "auto" else (choice,)
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


class Player:
    """Plays one file at a time; :meth:`play` stops what was playing first.

    Args:
        command: full path of ``play``, ``aplay`` or ``afplay`` (:func:`find_player`); None
            makes every call a no-op.
    """

    def __init__(self, command: str | None) -> None:
        self.command = command
        self.kind = Path(command).name if command else None
        self._proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    def play(self, path: str | Path) -> None:
        """Start playing ``path`` and return at once."""
        self.stop()
        if self.command is None:
            return
        target = Path(path)
        if self.kind == "aplay" and target.suffix.lower() != ".wav":
            target = self._as_wav(target)
        self._proc = subprocess.Popen(
            [self.command, *_ARGS.get(self.kind or "", []), str(target)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _as_wav(self, path: Path) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sed-review-")
        wav = Path(self._tmp.name) / f"{path.stem}.wav"
        if not wav.exists():
            wave, sr = sf.read(str(path), dtype="int16", always_2d=True)
            sf.write(str(wav), wave, sr, subtype="PCM_16")
        return wav

    def stop(self) -> None:
        """Stop the current playback, if any."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def close(self) -> None:
        """Stop playback and remove temporary files."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
