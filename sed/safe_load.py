"""Loading ``torch.save`` files without letting them run code.

``torch.load(weights_only=False)`` unpickles arbitrary objects, and unpickling can call any
function: a checkpoint in a shared experiment folder could run commands on the reader's machine.
Every load in sed goes through :func:`safe_torch_load`, which uses torch's restricted unpickler
(``weights_only=True``: tensors, plain containers, numbers, strings) and allows, for this call
only, the one other thing a sed checkpoint ever held: the numpy RNG state of checkpoints written
before sed stored it as a tensor (a ``uint32`` array; its pickled state is checked by stand-ins
for numpy's constructors and the array made from its bytes, so numpy never sees forged state).

What a sed checkpoint holds (``sed.train.trainer.Trainer.state_dict``): model, loss, EMA and
optimizer state dicts, scheduler and GradScaler states (numbers and lists), step counters, the
history (dicts of floats), the config (a plain dict), the classes (strings) and the RNG states:
python's ``random.getstate()`` (a tuple of ints), numpy's (a dict with the key as an int64 tensor,
see :mod:`sed.train.checkpoint`) and torch's generator states (uint8 tensors).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

# numpy 1.x pickles arrays through numpy.core, numpy 2.x through numpy._core
_RECONSTRUCT_NAMES = ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct")
# the legacy MT19937 key of np.random.get_state() is the only array sed ever pickled
_ARRAY_TYPECODES = ("u4",)
# BUILD (__setstate__) is allowed by type, and the allow-list is keyed by name: a name with a
# newline can never be spelt by the GLOBAL opcode, so these types can be built but never called
_BUILD_ONLY = "\n(sed.safe_load: build only)"


class UnsafeCheckpointError(ValueError):
    """A ``torch.save`` file holds objects other than plain data; it was not loaded."""


# No numpy object is ever made from a file's pickle: numpy's dtype and array states can be
# forged (a dtype's flags set to "holds objects" makes numpy treat integers as pointers). The
# names numpy's pickles use resolve to stand-ins that only record a checked state; the arrays are
# made afterwards by np.frombuffer with a fixed integer dtype (_restore_arrays).


class _NdarrayName:
    """What ``numpy.ndarray`` names in a checkpoint: an argument of _reconstruct, not a class."""

    def __call__(self, *args: Any) -> None:
        raise pickle.UnpicklingError("numpy.ndarray cannot be called")


_NDARRAY = _NdarrayName()


class _DtypeStub:
    """Stands in for a numpy dtype of :data:`_ARRAY_TYPECODES`; keeps only its byte order."""

    def __init__(self, typecode: str) -> None:
        self.typecode, self.byteorder = typecode, "="

    def __setstate__(self, state: Any) -> None:
        # numpy's dtype state: (version, byteorder, subarray, names, fields, elsize, alignment,
        # flags); for a plain integer type only the byte order matters, the rest is ignored
        if not isinstance(state, tuple) or len(state) != 8 or state[1] not in ("<", ">", "=", "|"):
            raise pickle.UnpicklingError(f"numpy dtype state {state!r:.80} is not allowed")
        if state[2:5] != (None, None, None):
            raise pickle.UnpicklingError("numpy dtypes with fields or subarrays are not allowed")
        self.byteorder = state[1] if state[1] in "<>" else "="

    def dtype(self) -> np.dtype:
        return np.dtype(self.typecode).newbyteorder(self.byteorder)


class _ArrayStub:
    """Stands in for a numpy array while unpickling; :meth:`__setstate__` checks its state."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        # numpy's array state: (version, shape, dtype, is_fortran, raw bytes)
        if not isinstance(state, tuple) or len(state) != 5:
            raise pickle.UnpicklingError("numpy array state is not allowed")
        _, shape, dtype, fortran, raw = state
        ok_shape = isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)
        if not (ok_shape and isinstance(dtype, _DtypeStub) and isinstance(raw, bytes)):
            raise pickle.UnpicklingError("numpy array state is not allowed")
        dt = dtype.dtype()
        if len(raw) != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
            raise pickle.UnpicklingError("numpy array data does not match its shape")
        order = "F" if fortran else "C"
        self.array = np.frombuffer(raw, dtype=dt).reshape(shape, order=order).copy()


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> _ArrayStub:
    """``numpy.core.multiarray._reconstruct`` for plain ndarrays: an :class:`_ArrayStub`."""
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError(f"numpy array of type {subtype!r:.80} is not allowed")
    return _ArrayStub()


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> _DtypeStub:
    """``numpy.dtype``, for the type codes in :data:`_ARRAY_TYPECODES` only."""
    if spec not in _ARRAY_TYPECODES:
        raise pickle.UnpicklingError(f"numpy dtype {spec!r:.40} is not allowed")
    return _DtypeStub(spec)


def _allowed_globals() -> list[Any]:
    """The non-tensor globals a sed checkpoint may name, as torch's safe_globals list."""
    allowed: list[Any] = [(_reconstruct, name) for name in _RECONSTRUCT_NAMES]
    allowed += [(_NDARRAY, "numpy.ndarray"), (_dtype, "numpy.dtype")]
    allowed += [(t, f"{t.__qualname__}{_BUILD_ONLY}") for t in (_ArrayStub, _DtypeStub)]
    return allowed


def _restore_arrays(obj: Any) -> Any:
    """``obj`` with every :class:`_ArrayStub` replaced by its array (dicts and lists in place)."""
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise pickle.UnpicklingError("a numpy array without data")
        return obj.array
    if isinstance(obj, _DtypeStub):
        return obj.dtype()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if (new := _restore_arrays(v)) is not v:
                obj[k] = new
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            if (new := _restore_arrays(v)) is not v:
                obj[i] = new
    elif isinstance(obj, tuple):
        items = [_restore_arrays(v) for v in obj]
        if any(a is not b for a, b in zip(items, obj, strict=True)):
            return tuple(items)
    return obj


def _unsafe_globals(path: Path) -> list[str]:
    """The globals the file names that are not allowed (read without unpickling), or []."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # a file this scan cannot read is still refused below, with torch's reason
        return []
    allowed = {*_RECONSTRUCT_NAMES, "numpy.ndarray", "numpy.dtype"}
    return [n for n in names if n not in allowed]


def _reason(message: str) -> str:
    """The unpickler's own reason from torch's long message (the text after its error tag)."""
    tail = message.split("WeightsUnpickler error:", 1)[-1]
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    return lines[0] if lines else "refused by torch's weights_only unpickler"


def safe_torch_load(
    path: str | Path, map_location: str | torch.device | None = None
) -> dict[str, Any]:
    """Load a ``torch.save`` file holding a dict, without running any code stored in it.

    Args:
        path: the file (a sed checkpoint, or a state dict such as a pretrained model's).
        map_location: as for ``torch.load`` (e.g. ``"cpu"``).

    Returns:
        The saved dict.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file holds objects that are not plain data (its unpickling
            could run code); nothing in it was run and it was not loaded.
        ValueError: the file holds something other than a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            obj = _restore_arrays(torch.load(path, map_location=map_location, weights_only=True))
    except pickle.UnpicklingError as e:
        names = _unsafe_globals(path)
        detail = f"it names {', '.join(names)}" if names else _reason(str(e))
        raise UnsafeCheckpointError(
            f"{path}: holds objects that are not plain data ({detail}) and was not loaded: "
            "unpickling it could run code. sed reads only tensors, numbers, strings and "
            "containers of them; if you made this file yourself and trust it, load it with "
            "torch.load(weights_only=False) and save its tensors and plain values again"
        ) from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a dict of saved state")
    return obj
