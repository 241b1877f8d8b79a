"""Progress bars that stay readable in job logs."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress_bar(*args: Any, **kwargs: Any) -> tqdm:
    """A tqdm bar; when stderr is not a terminal (a job log) it updates every 30 s instead of
    several times a second, so logs stay short while still showing progress and speed."""
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 30.0)
        kwargs.setdefault("ascii", True)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(*args, **kwargs)
