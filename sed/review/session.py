"""The state of a review: which segment is shown, what was decided, and saving every change.

No terminal here (:mod:`sed.review.reviewer` draws and reads keys), so the rules are tested
directly: a decision is written to ``decisions.csv`` (atomically) before the next segment shows;
a restart continues at the first undecided segment; undo goes back to the segment decided last
in this session (before that, the one before the current) and removes its decision.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timezone
from pathlib import Path

from sed.review.tables import DECISIONS, Decision, ReviewRow, read_decisions, write_decisions


def now_iso() -> str:
    """The current time, ISO 8601 with the UTC offset, to the second."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


class ReviewSession:
    """Decisions over the rows of one ``review.csv``.

    Args:
        rows: the segments, in review order.
        decisions_path: ``decisions.csv`` (read if present, rewritten after every change).
        reviewer: name recorded with each decision.
        revisit: decisions that count as undecided (e.g. ``{"unsure", "skip"}`` for a second
            pass over the hard ones); their old decision stays until replaced.
        clock: returns the date recorded with a decision (tests fix it).
    """

    def __init__(
        self,
        rows: Sequence[ReviewRow],
        decisions_path: str | Path,
        reviewer: str,
        revisit: Collection[str] = (),
        clock: Callable[[], str] = now_iso,
    ) -> None:
        bad = set(revisit) - set(DECISIONS)
        if bad:
            raise ValueError(f"revisit: unknown decision(s) {sorted(bad)}; use {DECISIONS}")
        self.rows = list(rows)
        self.path = Path(decisions_path)
        self.reviewer = reviewer
        self.revisit = set(revisit)
        self.clock = clock
        self.decisions = read_decisions(self.path)
        self.history: list[int] = []  # indices decided in this session, for undo
        self.index: int | None = self._next_pending(0)

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self.rows)

    def pending(self, i: int) -> bool:
        """Whether segment ``i`` still needs a decision."""
        d = self.decisions.get(self.rows[i].segment)
        return d is None or d.decision in self.revisit

    @property
    def n_decided(self) -> int:
        """Segments of this review with a decision that is not to be revisited."""
        return sum(not self.pending(i) for i in range(len(self.rows)))

    @property
    def done(self) -> bool:
        return self.index is None

    @property
    def current(self) -> ReviewRow:
        if self.index is None:
            raise IndexError("the review is finished")
        return self.rows[self.index]

    def counts(self) -> dict[str, int]:
        """``{decision: segments}`` over this review's rows, plus ``undecided``."""
        out = dict.fromkeys((*DECISIONS, "undecided"), 0)
        for r in self.rows:
            d = self.decisions.get(r.segment)
            out[d.decision if d else "undecided"] += 1
        return out

    # ------------------------------------------------------------------ changes

    def decide(self, decision: str) -> None:
        """Record ``decision`` for the current segment, save, and move to the next pending one
        (after it, else the first pending before it; none: the review is done)."""
        if decision not in DECISIONS:
            raise ValueError(f"decision {decision!r}: expected one of {DECISIONS}")
        i = self.index
        if i is None:
            raise IndexError("the review is finished")
        seg = self.rows[i].segment
        self.decisions[seg] = Decision(seg, decision, self.reviewer, self.clock())
        self._save()
        self.history.append(i)
        nxt = self._next_pending(i + 1)
        self.index = nxt if nxt is not None else self._next_pending(0)

    def undo(self) -> tuple[ReviewRow, Decision | None] | None:
        """Go back one segment and remove its decision (saved).

        Returns:
            ``(the segment now current, the decision removed or None)``; None when there is no
            segment before.
        """
        if self.history:
            i = self.history.pop()
        elif self.index is not None and self.index > 0:
            i = self.index - 1
        else:
            return None
        self.index = i
        removed = self.decisions.pop(self.rows[i].segment, None)
        if removed is not None:
            self._save()
        return self.rows[i], removed

    def _next_pending(self, start: int) -> int | None:
        return next((i for i in range(start, len(self.rows)) if self.pending(i)), None)

    def _save(self) -> None:
        write_decisions(self.path, self.decisions, [r.segment for r in self.rows])
