"""The terminal reviewer: show a segment (its facts, a text spectrogram, its sound), read one
key, save the decision, show the next.

Keys (:data:`HELP`): y yes, n no, u unsure, s skip, r replay, b undo, q quit, ? help. Every
decision is in ``decisions.csv`` before the next segment shows, so quitting, Ctrl-C or a closed
terminal lose nothing and the next run continues at the first undecided segment.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import soundfile as sf

from sed.review.keys import KeyReader
from sed.review.player import PLAYERS, Player, find_player
from sed.review.session import ReviewSession, now_iso
from sed.review.spectrogram import log_mel, render_text, write_png
from sed.review.tables import ReviewRow, read_review

DECISION_KEYS = {"y": "yes", "n": "no", "u": "unsure", "s": "skip"}
HELP = """\
  y  yes: the detection is right (the clip joins clips/<label>/)
  n  no: a false detection (the clip joins clips/negative/)
  u  unsure: not merged; revisit with --revisit unsure
  s  skip: not merged; decide later with --revisit skip
  r  replay the segment
  b  undo: back one segment, its decision removed
  q  quit (decisions are saved after every key; run again to continue)
  ?  this help"""
PROMPT = "decision [y n u s | r b q ?]: "


def hms(seconds: float) -> str:
    """``HH:MM:SS.s``: a time in a long recording, to a tenth of a second."""
    tenths = int(round(seconds * 10))
    h, rest = divmod(tenths, 36000)
    m, rest = divmod(rest, 600)
    return f"{h:02d}:{m:02d}:{rest // 10:02d}.{rest % 10}"


@dataclass
class ReviewOptions:
    """How the reviewer looks and sounds (``review`` subcommand options)."""

    player: str = "auto"  # auto | play | aplay | afplay | none
    rows: int = 16  # spectrogram height in lines, >= 2
    width: int | None = None  # characters, >= 20; None: the terminal's width
    ascii_only: bool | None = None  # None: unicode when the output encoding is UTF-8
    png: bool = False  # also write <review dir>/png/<segment>.png
    open_png: bool = False  # and open it with xdg-open / open


def _opener() -> str | None:
    return shutil.which("xdg-open") or shutil.which("open")


class Reviewer:
    """One review session on a terminal (or piped input).

    Args:
        review_csv: the ``review.csv`` written by ``cut``.
        reviewer: name recorded with each decision.
        options: display and playback.
        revisit: decisions to review again.
        decisions: ``decisions.csv`` (default: beside ``review.csv``).
        stdin, stdout: streams (tests pass others).
        clock: date of a decision (tests fix it).
    """

    def __init__(
        self,
        review_csv: str | Path,
        reviewer: str,
        options: ReviewOptions | None = None,
        revisit: Collection[str] = (),
        decisions: str | Path | None = None,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        clock: Callable[[], str] = now_iso,
    ) -> None:
        self.review_csv = Path(review_csv)
        self.folder = self.review_csv.parent
        self.options = options or ReviewOptions()
        if self.options.rows < 2 or (self.options.width is not None and self.options.width < 20):
            raise ValueError("the spectrogram needs rows >= 2 and width >= 20")
        rows = read_review(self.review_csv)
        path = Path(decisions) if decisions else self.folder / "decisions.csv"
        self.session = ReviewSession(rows, path, reviewer, revisit, clock)
        self.stdin = stdin if stdin is not None else sys.stdin
        self.out = stdout if stdout is not None else sys.stdout
        ascii_only = self.options.ascii_only
        if ascii_only is None:
            ascii_only = "utf" not in (getattr(self.out, "encoding", "") or "").lower()
        self.ascii_only = ascii_only

    def say(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def run(self) -> dict[str, int]:
        """Review until every segment is decided or the user quits.

        Returns:
            ``{decision: count}`` over the review's segments, plus ``undecided``.
        """
        s = self.session
        n = len(s)
        if n == 0:
            self.say(f"{self.review_csv}: no segments to review")
            return s.counts()
        start = (
            f"starting at {s.index + 1} of {n}"
            if not s.done
            else "nothing left to review (--revisit to change decisions)"
        )
        self.say(f"{self.review_csv}: {n} segments, {s.n_decided} already decided; {start}")
        if s.done:
            return self._finish()
        player = Player(find_player(self.options.player))
        if player.command is None and self.options.player != "none":
            tried = ", ".join(PLAYERS) if self.options.player == "auto" else self.options.player
            self.say(f"no audio player found (tried {tried}): reviewing without sound")
        try:
            with KeyReader(self.stdin) as keys:
                if keys.mode == "line":
                    self.say("(input is not a terminal: one key per line)")
                self._loop(keys, player)
        except KeyboardInterrupt:
            self.say("\ninterrupted")
        finally:
            player.close()
        return self._finish()

    def _loop(self, keys: KeyReader, player: Player) -> None:
        s = self.session
        shown: int | None = None
        while not s.done:
            if shown != s.index:
                self._show(s.current, player)
                shown = s.index
            self.say(PROMPT, end="")
            key = keys.read()
            if key in DECISION_KEYS:
                self.say(DECISION_KEYS[key])
                s.decide(DECISION_KEYS[key])
            elif key == "r":
                self.say("replay" if player.command else "replay: no audio player")
                self._play(player, self.folder / s.current.segment)
            elif key == "b":
                back = s.undo()
                if back is None:
                    self.say("undo: nothing before this segment")
                else:
                    removed = f", '{back[1].decision}' removed" if back[1] else ""
                    self.say(f"undo: back to {s.index + 1} of {len(s)}{removed}")
                    shown = None
            elif key == "q":
                self.say("quit")
                return
            elif key == "?":
                self.say("?\n" + HELP)
            elif key:
                self.say(f"{key!r}: unknown key (? for help)")

    def _show(self, row: ReviewRow, player: Player) -> None:
        s = self.session
        assert s.index is not None
        n = len(s)
        width = self.options.width or max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        dur = row.offset - row.onset
        self.say("")
        self.say(
            f"[{s.index + 1} of {n}]  {s.n_decided} decided  label {row.label}  "
            f"score {row.score:.3f}"
        )
        self.say(
            f"{row.source}  {hms(row.onset)} - {hms(row.offset)} ({dur:.1f} s; context "
            f"{row.pad_before:.1f} s before, {row.pad_after:.1f} s after)"
        )
        if row.checkpoint:
            self.say(f"model {row.checkpoint}")
        path = self.folder / row.segment
        try:
            wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as e:  # soundfile raises several types
            self.say(f"cannot read segment {path}: {e}")
            return
        mono = wave.mean(axis=1)
        spec, centres, _ = log_mel(mono, sr, n_mels=self.options.rows)
        total = len(mono) / sr
        # the picture is scaled to the segment's own range; the peak tells how loud it is
        peak = float(np.abs(wave).max()) if wave.size else 0.0
        self.say(f"peak {20 * np.log10(max(peak, 1e-10)):.0f} dBFS, {sr} Hz")
        span = (row.pad_before / total, 1.0 - row.pad_after / total) if total > 0 else None
        for line in render_text(spec, centres, width, span, self.ascii_only):
            self.say(line)
        if self.options.png:
            png = self.folder / "png" / f"{Path(row.segment).stem}.png"
            title = f"{row.label} {row.score:.3f}  {row.source} {hms(row.onset)}"
            write_png(png, mono, sr, title, (row.pad_before, total - row.pad_after))
            self.say(f"png {png}")
            opener = _opener() if self.options.open_png else None
            if opener:
                subprocess.Popen(
                    [opener, str(png)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
        self._play(player, path)

    def _play(self, player: Player, path: Path) -> None:
        try:
            player.play(path)
        except (OSError, RuntimeError) as e:  # a broken player must not end the review
            self.say(f"cannot play with {player.command}: {e}; going on without sound")
            player.command = None

    def _finish(self) -> dict[str, int]:
        counts = self.session.counts()
        n = len(self.session)
        detail = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        self.say(f"{n - counts['undecided']} of {n} decided ({detail}); {self.session.path}")
        if counts["undecided"]:
            self.say("run the same command again to continue")
        return counts
