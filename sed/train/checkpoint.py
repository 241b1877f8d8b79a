"""Checkpoints: model, optimizer, scheduler, scaler, step and RNG states in one file.

A checkpoint holds only tensors and plain values, so that :func:`load_checkpoint` can read it
with torch's restricted unpickler (:mod:`sed.safe_load`): a checkpoint from a shared folder can
never run code on the reader's machine.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sed.fileio import atomic_path
from sed.safe_load import safe_torch_load


def _numpy_state() -> dict[str, Any]:
    """numpy's global RNG state in plain types: the MT19937 key as an int64 tensor (624,)."""
    state = np.random.get_state(legacy=False)
    key, pos = state["state"]["key"], int(state["state"]["pos"])
    return state | {"state": {"key": torch.from_numpy(key.astype(np.int64)), "pos": pos}}


def _set_numpy_state(state: dict[str, Any] | tuple) -> None:
    if isinstance(state, tuple):  # checkpoints written before the state was stored as a tensor
        np.random.set_state(state)
        return
    key = np.asarray(state["state"]["key"], dtype=np.int64).astype(np.uint32)
    np.random.set_state(state | {"state": {"key": key, "pos": int(state["state"]["pos"])}})


def rng_state() -> dict[str, Any]:
    """Python's, numpy's, torch's (and CUDA's) global RNG states, in plain types and tensors."""
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (also from checkpoints of older sed versions)."""
    random.setstate(state["python"])
    _set_numpy_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically: a crash while saving never leaves a truncated checkpoint.

    The data reach the disk before the rename, so a node that loses power just after the save
    still holds either the old file or the whole new one (a rename may otherwise be persisted
    before the data it names).
    """
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without running code stored in it.

    Raises:
        FileNotFoundError: no such file.
        sed.safe_load.UnsafeCheckpointError: the file holds objects that are not plain data.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    return safe_torch_load(path, map_location=map_location)
