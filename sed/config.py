"""Experiment configs: YAML with ``base:`` inheritance, dotted overrides and a strict schema.

A config file may name a ``base:`` file (or a list of them); bases are merged first, then the file
itself on top (dicts merge key by key, everything else is replaced). Command-line overrides
(``train.max_steps=200 optim.lr=1e-3``) are applied last. The result is validated against the
schema below: a key the schema does not know stops the run with an error that names the key, the
file it came from and the closest valid key, so a typo can never be silently ignored.

Sections whose keys depend on a registry choice (``model.params``, ``loss.params`` ...) are free
dicts here; the registry that builds the object checks them against its constructor
(:func:`check_params`), with the same kind of error.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CLI = "command line"


class ConfigError(ValueError):
    """An invalid config: the message names the key, where it came from and what was expected."""


# --------------------------------------------------------------------------------------------------
# Schema. Every key a shipped config may use is declared here with its type and default.
# --------------------------------------------------------------------------------------------------


@dataclass
class EmbeddingConf:
    """Stage-1 embeddings of a pretrained or trained model (``features.kind: embedding``).

    Embedding frame ``i`` is the extractor's window centred at ``i * hop_seconds`` (zero-padded
    before the start and past the end of the recording), the log-mel frame convention of
    :mod:`sed.frames`; ``features.hop_length`` is derived: ``hop_seconds * sample_rate``.
    """

    name: str = "birdnet"  # sed.embeddings extractor: birdnet | experiment
    params: dict = field(default_factory=dict)  # its constructor arguments (num_threads ...)
    hop_seconds: float = 1.0  # seconds between frames (windows overlap when below the window)
    logits: bool = False  # also dump the extractor's class logits (<feat_dir>/logits/)


@dataclass
class FeaturesConf:
    """Stage-1 features: log-mel (stage 1 dumps and on-the-fly extraction share it), the
    embeddings of a pretrained model (``kind: embedding``, see :class:`EmbeddingConf`), or the
    waveform framed on the feature grid for waveform encoders (``kind: wave``,
    :class:`sed.features.frontend.WaveFrames`)."""

    # logmel | embedding | wave; with embedding, sample_rate is the extractor's input rate, n_mels
    # the embedding size D (the models' input channels), hop_length is derived from
    # embedding.hop_seconds and the other log-mel keys do not apply; with wave, n_mels is derived
    # (= hop_length: the samples of a frame) and the other log-mel keys do not apply
    kind: str = "logmel"
    embedding: EmbeddingConf = field(default_factory=EmbeddingConf)
    sample_rate: int = 32000  # audio is resampled to this rate
    n_fft: int = 1024
    win_length: int | None = None  # None: n_fft
    hop_length: int = 320
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float | None = None  # None: sample_rate / 2
    power: float = 2.0  # 2: power mel spectrogram, 1: magnitude
    log_offset: float = 1.0e-6  # log(mel + log_offset)
    dtype: str = "float16"  # storage type of the HDF5 dumps
    speed_perturb: list[float] = field(default_factory=list)  # extra dumps, e.g. [0.9, 1.1]


@dataclass
class DataConf:
    """What the training dataset crops and how recordings are split."""

    folds: int = 5  # number of cross-validation folds (folds.csv of stage 0 must match)
    crop_seconds: float = 5.0
    crop: str = "positive_centered"  # positive_centered | random
    min_overlap_seconds: float = (
        0.1  # an event counts for a crop's clip label if it overlaps this much
    )
    speed_perturb_prob: float = 0.0  # probability of drawing a sample from a speed-perturbed dump
    # crops per "epoch" of the sampler; None: number of train events (+ weak crops, see below)
    epoch_size: int | None = None
    random_crop_prob: float = 0.0  # positive_centered: share of crops placed at random instead
    sampler: str = "random"  # batch sampler (sed.datasets.samplers): random | balanced | oversample
    sampler_params: dict = field(default_factory=dict)  # e.g. {min_count: 50} for oversample
    noise_class: bool = False  # extra output trained on crops without a call; dropped from outputs
    # target values (seed 003 smooths to negative 0.0025, secondary 0.3, primary 0.995)
    label_negative: float = 0.0
    label_positive: float = 1.0
    # recordings' secondary labels (clips.csv): "ignore" (negative), "value" (label_secondary),
    # or "mask" (left out of the loss, seed 004)
    secondary: str = "ignore"
    label_secondary: float = 0.3
    # recordings with a clip label (clips.csv primary) and no events (BirdCLEF focal recordings):
    # crops per recording and epoch, and where they lie: "first" (crop j starts at j *
    # crop_seconds, seeds 003/004; at random where the recording is too short), "head" (anywhere
    # in the first weak_head_seconds, seed 004) or "random"; their frame targets are masked out
    # of the loss (the call's time is unknown)
    weak_crop: str = "first"  # first | head | random | motif (on stage 1's mined motifs)
    weak_crops_per_file: int = 1
    weak_head_seconds: float = 6.0


@dataclass
class ModelConf:
    """Model registry choice (``sed.models``) and its constructor arguments."""

    name: str = "cnn14_att"
    params: dict = field(default_factory=dict)


@dataclass
class LossConf:
    """Loss registry choice (``sed.losses``), its constructor arguments and auxiliary losses.

    ``aux`` items are ``{name: <registered loss>, weight: float (default 1), params: {...}}``;
    the total is ``main + sum(weight * aux)`` (see :func:`sed.losses.build_loss`).
    """

    name: str = "frame_clip"
    params: dict = field(default_factory=dict)
    aux: list[dict] = field(default_factory=list)


@dataclass
class OptimConf:
    """Optimizer over the model's and the loss's trainable parameters.

    ``groups`` items are ``{pattern: regex, lr: float, weight_decay: float}`` (lr and weight_decay
    default to the values above); a parameter named ``model.<name>`` or ``loss.<name>`` goes to
    the first group whose pattern it matches (``re.search``), else to the default group.
    """

    name: str = "adam"  # adam | adamw | sgd
    lr: float = 1.0e-3
    weight_decay: float = 0.0
    params: dict = field(default_factory=dict)  # extra optimizer arguments (betas, momentum ...)
    groups: list[dict] = field(default_factory=list)  # per-parameter-name lr / weight decay


@dataclass
class SchedulerConf:
    """Per-optimizer-step learning-rate schedule (see :func:`sed.train.optim.build_scheduler`)."""

    name: str = "none"  # none | step | cosine | warmup_cosine | noam | onecycle
    params: dict = field(default_factory=dict)


#: ``train.best_metric`` names computed on the clip scores of ``train.selection.positive``
SELECTION_METRICS = ("fbeta", "precision_at_recall", "ap")


@dataclass
class SelectionConf:
    """Precision-first model selection on one class (a detector's target species):
    ``train.best_metric: fbeta | precision_at_recall | ap`` picks best.pt by that class's
    validation clip scores (:mod:`sed.metrics.selection`); the tuned thresholds are logged."""

    positive: str | None = None  # the class (a name in classes.txt); needed by those metrics
    beta: float = 0.5  # fbeta: F-beta at the best threshold (0.5: precision weighs twice)
    recall: float = 0.9  # precision_at_recall: the best precision with recall >= this


@dataclass
class TrainConf:
    max_steps: int = 1000
    batch_size: int = 32
    accum_grad: int = 1
    eval_every_steps: int = 200
    log_every_steps: int = 20
    grad_clip: float | None = 10.0  # max gradient norm; None: no clipping
    num_workers: int = 0  # data-loader worker processes
    device: str = "auto"  # auto | cpu | cuda | cuda:1 ...
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | off | bf16 | fp16
    num_threads: int | None = None  # torch CPU threads; None: torch's default
    best_metric: str = "lwlrap"  # valid metric that selects best.pt (higher is better)
    save_every_steps: int | None = None  # also keep step<N>.pt every N steps
    max_nonfinite: int = 20  # stop after this many non-finite losses in a row
    ema_decay: float | None = None  # weight EMA (e.g. 0.999); evaluated and saved when set
    early_stopping: int | None = None  # stop after this many evaluations without improvement
    # phase 2 (seed 001): fine-tune this many more steps from best.pt without augmentation
    additional_steps: int = 0
    figures: bool = True  # TensorBoard figures at each evaluation
    sync_batchnorm: bool = True  # DDP on CUDA: BatchNorm statistics over the global batch
    selection: SelectionConf = field(default_factory=SelectionConf)


@dataclass
class InferConf:
    window_seconds: float | None = None  # None: data.crop_seconds
    hop_seconds: float | None = None  # None: half a window
    batch_size: int = 16  # windows per forward on CUDA
    # windows per forward on CPU: small batches keep a CNN's activations in cache (EfficientNet-b0,
    # 128 mels, 10 s windows: 1.3-2x faster end to end at 1-4 than at 16; bench/infer_speed.py)
    cpu_batch_size: int = 4
    checkpoint: str = "best"  # stage 3's and sedkit infer's default: best | last | step<N>
    frame_combine: str = "max"  # how overlapping windows combine frame scores: max | mean
    clip_score: str = "clip"  # recording score: clip (max over windows) | frame_max (max over time)
    gate_activity: bool = False  # multiply frame scores by the activity head's probability
    # test-time augmentation views besides the original, averaged: [{speed: 0.9}, {speed: 1.1},
    # {shift_seconds: 2.5}, {speed: 0.9, shift_seconds: 2.5}]; speeds need stage-1 dumps
    tta: list[dict] = field(default_factory=list)
    # stage 4 event outputs (score TSVs, Raven tables, detections.csv) from the frame scores
    events: bool = True
    median_frames: int | None = None  # median filter length in output frames (odd), None: off
    smooth_kernel: list[float] = field(default_factory=list)  # e.g. [0.1, 0.2, 0.4, 0.2, 0.1]
    event_score: str = "max"  # an event's score: max | mean of its frames
    min_event_seconds: float = 0.0  # shorter detections are dropped
    merge_gap_seconds: float = 0.0  # detections of a class closer than this are merged
    threshold_beta: float = 1.0  # per-class thresholds maximise F-beta on out-of-fold scores
    # stage 4 also writes <expdir>+meta: a LightGBM prior per species from latitude, longitude,
    # day of year (and site) blended into the predictions (seed 003), its own RESULTS.md row
    metadata_blend: bool = False
    metadata_weight: float | None = None  # the prior's weight; None: searched (seed 003: 0.14)


@dataclass
class MotifsConf:
    """Motif mining in stage 1 (seed 000): the recurring calls of the training recordings, found
    by a matrix profile over chroma CENS (:mod:`sed.motifs`), written beside the feature dumps."""

    enabled: bool = False  # also on when data.weak_crop is motif
    ab_join: bool = False  # also join each recording with another of its species
    # sed.motifs.mining.MotifConfig fields: frame_rate (10), subsequence_seconds (5), top_k (3),
    # fmin, smooth_seconds ...; sample_rate defaults to features.sample_rate
    params: dict = field(default_factory=dict)


@dataclass
class TripletConf:
    """A tile2vec triplet embedding (seed 000) instead of a classifier: batches of anchor and
    positive crops, negatives taken in the batch from other species (:mod:`sed.datasets.triplets`),
    the ``tile2vec`` loss on the model's ``embedding``, selection on nearest-neighbour accuracy."""

    enabled: bool = False
    # where an anchor and its positive come from: motif (a mined motif and its partner, from
    # stage 1's motif tables; crops of one recording where it has none) | recording (two crops)
    pairs: str = "motif"
    neighbour_prob: float = 0.25  # positive from another recording of the anchor's species instead
    eval_windows: int = 4  # validation windows per recording for the nearest-neighbour accuracy


@dataclass
class PseudoConf:
    """Pseudo-labelled windows of unlabelled recordings, scored by teacher experiments (seed 004).

    Student fold k learns only from teacher fold k's predictions: a teacher's fold j != k was
    trained on fold k's validation recordings, and its knowledge of them would leak into fold k's
    score. Teachers must therefore be trained on the student's manifests (same folds).
    """

    # experiments whose folds label the windows: exp/<recipe>/-relative (cnn/birdclef_demo) or
    # absolute folders; several = an ensemble (distillation); empty: no pseudo-labels
    teachers: list[str] = field(default_factory=list)
    checkpoint: str = "best"  # the teachers' checkpoint
    splits: list[str] = field(default_factory=lambda: ["unlabeled"])  # recordings to label
    # windows of data.crop_seconds (the student's crops) starting every hop_seconds
    hop_seconds: float | None = None  # None: a crop (consecutive windows)
    ratio: float = 0.5  # share of every training batch taken from pseudo-labelled windows
    combine: str = "logit"  # teachers averaged as logits (seed 004) | as probabilities (prob)
    temperature: float = 1.0  # logits / T before the sigmoid; T < 1 sharpens
    confidence: str = "soft"  # soft: the probability | hard: >= threshold -> 1 | mask (see below)
    threshold: float = 0.5  # confidence: hard
    mask_band: list[float] = field(default_factory=lambda: [0.1, 0.9])  # mask: unsure -> no loss
    min_top: float = 0.0  # drop windows whose most likely class is below this probability
    weight: float = 1.0  # loss weight of pseudo-labelled windows (labelled: 1)


@dataclass
class Config:
    """A whole experiment; ``version_note`` is the one-line comment saying what it tries."""

    seed: int = 0
    features: FeaturesConf = field(default_factory=FeaturesConf)
    data: DataConf = field(default_factory=DataConf)
    model: ModelConf = field(default_factory=ModelConf)
    loss: LossConf = field(default_factory=LossConf)
    optim: OptimConf = field(default_factory=OptimConf)
    scheduler: SchedulerConf = field(default_factory=SchedulerConf)
    train: TrainConf = field(default_factory=TrainConf)
    infer: InferConf = field(default_factory=InferConf)
    pseudo: PseudoConf = field(default_factory=PseudoConf)
    motifs: MotifsConf = field(default_factory=MotifsConf)
    triplet: TripletConf = field(default_factory=TripletConf)
    # augmentations in order: [{name: <sed.augment name>, p: probability, ...params}]
    augment: list[dict] = field(default_factory=list)
    version_note: str = ""


# values some keys may take (registries check model, loss and augmentation names themselves)
CHOICES: dict[str, tuple[str, ...]] = {
    "features.kind": ("logmel", "embedding", "wave"),
    "features.dtype": ("float16", "float32"),
    "data.crop": ("positive_centered", "random"),
    "data.secondary": ("ignore", "value", "mask"),
    "data.weak_crop": ("first", "head", "random", "motif"),
    "optim.name": ("adam", "adamw", "sgd"),
    "scheduler.name": ("none", "step", "cosine", "warmup_cosine", "noam", "onecycle"),
    "train.amp": ("auto", "off", "bf16", "fp16"),
    "infer.frame_combine": ("max", "mean"),
    "infer.clip_score": ("clip", "frame_max"),
    "infer.event_score": ("max", "mean"),
    "pseudo.combine": ("logit", "prob"),
    "pseudo.confidence": ("soft", "hard", "mask"),
    "triplet.pairs": ("motif", "recording"),
}


def _check_choices(cfg: Config, sources: Mapping[str, str]) -> None:
    for dotted, allowed in CHOICES.items():
        section, key = dotted.split(".")
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            hint = closest(str(value), allowed)
            raise ConfigError(
                f"{_where(dotted, sources)}: '{dotted}' is '{value}', expected one of "
                f"{', '.join(allowed)}" + (f" (did you mean '{hint}'?)" if hint else "")
            )


def _check_pseudo(p: PseudoConf, sources: Mapping[str, str]) -> None:
    """Ranges of the ``pseudo`` keys (types and choices are checked already)."""

    def bad(key: str, expected: str, value: Any) -> ConfigError:
        dotted = f"pseudo.{key}"
        return ConfigError(
            f"{_where(dotted, sources)}: '{dotted}' must be {expected}, got {value!r}"
        )

    if not 0.0 <= p.ratio < 1.0:
        raise bad(
            "ratio", "in [0, 1) (the share of each batch; labelled crops fill the rest)", p.ratio
        )
    if p.temperature <= 0:
        raise bad("temperature", "> 0", p.temperature)
    if not 0.0 < p.threshold < 1.0:
        raise bad("threshold", "in (0, 1)", p.threshold)
    if len(p.mask_band) != 2 or not 0.0 <= p.mask_band[0] < p.mask_band[1] <= 1.0:
        raise bad("mask_band", "[low, high] with 0 <= low < high <= 1", p.mask_band)
    if not 0.0 <= p.min_top < 1.0:
        raise bad("min_top", "in [0, 1)", p.min_top)
    if p.weight <= 0:
        raise bad("weight", "> 0", p.weight)
    if p.hop_seconds is not None and p.hop_seconds <= 0:
        raise bad("hop_seconds", "> 0 (or null)", p.hop_seconds)
    if not p.splits:
        raise bad("splits", "a non-empty list of recording splits", p.splits)
    if "train" in p.splits:
        raise bad(
            "splits", "splits without labels ('train' recordings have labels and folds)", p.splits
        )
    if len(set(p.teachers)) != len(p.teachers):
        raise bad("teachers", "a list without repeats", p.teachers)


def _check_train(t: TrainConf, sources: Mapping[str, str]) -> None:
    """``train.selection`` ranges, and a class for the selection metrics (that the class is one
    of classes.txt is checked where the classes are known: the validation evaluator)."""
    s = t.selection
    if t.best_metric in SELECTION_METRICS and not s.positive:
        raise ConfigError(
            f"{_where('train.best_metric', sources)}: train.best_metric '{t.best_metric}' "
            "scores one class: set train.selection.positive to its name (in classes.txt)"
        )
    if not s.beta > 0:
        raise ConfigError(
            f"{_where('train.selection.beta', sources)}: 'train.selection.beta' must be > 0, "
            f"got {s.beta!r}"
        )
    if not 0.0 < s.recall <= 1.0:
        raise ConfigError(
            f"{_where('train.selection.recall', sources)}: 'train.selection.recall' must be in "
            f"(0, 1], got {s.recall!r}"
        )


def _check_triplet(cfg: Config, sources: Mapping[str, str]) -> None:
    """A triplet experiment trains the ``tile2vec`` loss, and only it does (the loss needs the
    anchor/positive batches; a classifier loss would score their placeholder targets)."""
    t = cfg.triplet
    if t.enabled != (cfg.loss.name == "tile2vec"):
        key = "loss.name" if t.enabled else "triplet.enabled"
        raise ConfigError(
            f"{_where(key, sources)}: triplet.enabled ({t.enabled}) and loss.name "
            f"('{cfg.loss.name}') disagree: a triplet embedding trains loss tile2vec, and "
            "loss tile2vec needs triplet.enabled: true"
        )
    if not t.enabled:
        return
    if not 0.0 <= t.neighbour_prob <= 1.0:
        raise ConfigError(
            f"{_where('triplet.neighbour_prob', sources)}: 'triplet.neighbour_prob' must be in "
            f"[0, 1], got {t.neighbour_prob!r}"
        )
    if t.eval_windows < 1:
        raise ConfigError(
            f"{_where('triplet.eval_windows', sources)}: 'triplet.eval_windows' must be >= 1, "
            f"got {t.eval_windows!r}"
        )
    if cfg.train.best_metric not in ("nn_accuracy", "nn_chance"):
        raise ConfigError(
            f"{_where('train.best_metric', sources)}: a triplet embedding is validated by "
            f"nearest-neighbour accuracy: set train.best_metric: nn_accuracy (got "
            f"'{cfg.train.best_metric}')"
        )
    mixing = [a.get("name") for a in cfg.augment if a.get("name") in ("mixup", "additive_mixup")]
    if mixing:
        raise ConfigError(
            f"{_where('augment', sources)}: {mixing[0]} mixes crops of different species, which "
            "a triplet embedding cannot contrast; remove it"
        )
    if cfg.loss.aux or cfg.pseudo.teachers or cfg.data.noise_class:
        key = (
            "loss.aux"
            if cfg.loss.aux
            else "pseudo.teachers"
            if cfg.pseudo.teachers
            else ("data.noise_class")
        )
        raise ConfigError(
            f"{_where(key, sources)}: '{key}' does not apply to a triplet embedding "
            "(triplet.enabled: true trains the tile2vec loss alone)"
        )


#: log-mel settings that have no meaning for embedding features
LOGMEL_ONLY = ("n_fft", "win_length", "fmin", "fmax", "power", "log_offset")


def _check_features(cfg: Config, sources: Mapping[str, str]) -> None:
    """The ``features`` section of its ``kind``; with ``kind: embedding``, also derives
    ``features.hop_length`` (``embedding.hop_seconds * sample_rate``, whole samples) so that the
    frame grid (:class:`sed.frames.FrameGrid`) of every reader holds for embedding frames.

    Embeddings are computed once at stage 1 from the original audio: what would need the
    waveform at training or inference time (speed-perturbed dumps, waveform models, speed views)
    is refused here; waveform augmentations are refused by stage 1 and by the augmentation
    pipeline (their stages are known to the augmentation registry, not to the schema).
    """
    f = cfg.features
    defaults = FeaturesConf()

    def bad(dotted: str, message: str) -> ConfigError:
        return ConfigError(f"{_where(dotted, sources)}: '{dotted}' {message}")

    if f.kind != "embedding":
        emb = [k for k in sources if k.startswith("features.embedding.")]
        changed = [k for k in emb if k != "features.embedding" and _differs(cfg, k, defaults)]
        if changed:
            raise bad(changed[0], f"applies to features.kind: embedding only (kind is '{f.kind}')")
        if f.kind == "wave":
            _check_wave_features(f, defaults, bad, "features.n_mels" in sources)
        return
    e = f.embedding
    if not e.name:
        raise bad("features.embedding.name", "must name an extractor (birdnet, experiment ...)")
    if e.hop_seconds <= 0:
        raise bad("features.embedding.hop_seconds", f"must be > 0, got {e.hop_seconds!r}")
    for key in LOGMEL_ONLY:
        if getattr(f, key) != getattr(defaults, key):
            raise bad(
                f"features.{key}",
                "is a log-mel setting; it does not apply to features.kind: embedding (remove it)",
            )
    if f.sample_rate <= 0:
        raise bad("features.sample_rate", f"must be > 0, got {f.sample_rate!r}")
    hop = round(e.hop_seconds * f.sample_rate)
    if hop < 1:
        raise bad("features.embedding.hop_seconds", f"is below one sample at {f.sample_rate} Hz")
    if "features.hop_length" in sources and f.hop_length != hop:
        raise bad(
            "features.hop_length",
            f"is {f.hop_length}, but features.embedding.hop_seconds ({e.hop_seconds} s at "
            f"{f.sample_rate} Hz) gives {hop}: leave hop_length out (it is derived)",
        )
    f.hop_length = hop
    if f.speed_perturb:
        raise bad(
            "features.speed_perturb",
            "must be empty with features.kind: embedding (embeddings are dumped at speed 1 only)",
        )
    if cfg.data.speed_perturb_prob > 0:
        raise bad(
            "data.speed_perturb_prob",
            "must be 0 with features.kind: embedding (there are no speed-perturbed dumps)",
        )
    if cfg.model.params.get("frontend"):
        raise bad(
            "model.params.frontend",
            "cannot be true with features.kind: embedding: the embeddings are computed at stage "
            "1, so the model takes them, not waveforms (remove waveform augmentations too)",
        )
    for i, view in enumerate(cfg.infer.tta):
        if isinstance(view, Mapping) and float(view.get("speed", 1.0)) != 1.0:
            raise ConfigError(
                f"{_where('infer.tta', sources)}: 'infer.tta[{i}]' is a speed view, which needs "
                "speed-perturbed dumps: features.kind: embedding has none (shift views work)"
            )


def _check_wave_features(
    f: FeaturesConf,
    defaults: FeaturesConf,
    bad: Callable[[str, str], ConfigError],
    n_mels_set: bool,
) -> None:
    """``features.kind: wave``: the waveform framed into hops (``(hop_length, T)``), so
    ``n_mels`` is derived (= hop_length) and the log-mel settings must be left out."""
    for key in LOGMEL_ONLY:
        if getattr(f, key) != getattr(defaults, key):
            raise bad(
                f"features.{key}",
                "is a log-mel setting; it does not apply to features.kind: wave (remove it)",
            )
    for key in ("sample_rate", "hop_length"):
        if getattr(f, key) <= 0:
            raise bad(f"features.{key}", f"must be > 0, got {getattr(f, key)!r}")
    if n_mels_set and f.n_mels != f.hop_length:
        raise bad(
            "features.n_mels",
            f"is {f.n_mels}, but features.kind: wave frames hold hop_length ({f.hop_length}) "
            "samples: leave n_mels out (it is derived)",
        )
    f.n_mels = f.hop_length


def _differs(cfg: Config, dotted: str, defaults: FeaturesConf) -> bool:
    """Whether ``features.embedding.<key>`` differs from its default (set to the default, e.g. in
    a resolved config.yaml, it is harmless)."""
    key = dotted.split(".")[2]
    return getattr(cfg.features.embedding, key, None) != getattr(defaults.embedding, key, None)


# --------------------------------------------------------------------------------------------------
# Loading and merging
# --------------------------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
    if "version_note" not in data:
        first = text.lstrip().splitlines()[0] if text.strip() else ""
        if first.startswith("#"):
            data["__note__"] = first.lstrip("#").strip()
    return data


def _resolve_base(base: str, including: Path) -> Path:
    """A base path is relative to the current folder, or to the including file's folder or one of
    its ancestors (so ``base: conf/cnn/base.yaml`` works from anywhere inside the repository)."""
    cand = Path(base)
    if cand.is_absolute() or cand.exists():
        return cand
    for folder in [including.parent, *including.resolve().parents]:
        if (folder / base).exists():
            return folder / base
    raise ConfigError(
        f"{including}: base file '{base}' not found (relative to . or {including.parent})"
    )


def _merge(
    dst: dict,
    src: Mapping,
    sources: dict[str, str],
    origin: str | Mapping[str, str],
    prefix: str = "",
) -> None:
    """Deep-merge ``src`` into ``dst``, recording which file set every dotted key.

    ``origin`` is a file name, or the provenance map of ``src`` when ``src`` is a loaded base.
    """
    if "name" in src and "params" in dst and src["name"] != dst.get("name"):
        # a registry choice changed: the old choice's params do not apply to the new one
        del dst["params"]
        for k in [k for k in sources if k == f"{prefix}params" or k.startswith(f"{prefix}params.")]:
            del sources[k]
    for key, value in src.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            _merge(dst[key], value, sources, origin, dotted + ".")
            continue
        dst[key] = copy.deepcopy(dict(value)) if isinstance(value, Mapping) else value
        for k in [k for k in sources if k.startswith(dotted + ".")]:
            del sources[k]
        _record(value, dotted, sources, origin)


def _record(
    value: Any, dotted: str, sources: dict[str, str], origin: str | Mapping[str, str]
) -> None:
    sources[dotted] = origin if isinstance(origin, str) else origin.get(dotted, "defaults")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _record(v, f"{dotted}.{k}", sources, origin)


def _load_tree(path: Path, stack: tuple[Path, ...] = ()) -> tuple[dict, dict[str, str]]:
    """Load ``path`` with its bases merged under it; returns (tree, provenance of every key)."""
    resolved = path.resolve()
    if resolved in stack:
        chain = " -> ".join(str(p) for p in (*stack, resolved))
        raise ConfigError(f"{path}: circular base inheritance: {chain}")
    raw = _read_yaml(path)
    bases = raw.pop("base", None)
    note = raw.pop("__note__", None)
    merged: dict = {}
    sources: dict[str, str] = {}
    if bases is not None:
        if isinstance(bases, str):
            bases = [bases]
        if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
            raise ConfigError(f"{path}: 'base' must be a path or a list of paths")
        for b in bases:
            sub, sub_sources = _load_tree(_resolve_base(b, path), (*stack, resolved))
            _merge(merged, sub, sources, sub_sources)
    # a version's note says what that file tries: never inherit the base's note
    merged.pop("version_note", None)
    sources.pop("version_note", None)
    _merge(merged, raw, sources, str(path))
    if note is not None:
        merged["version_note"] = note
        sources["version_note"] = str(path)
    return merged, sources


def parse_overrides(overrides: str | Iterable[str] | None) -> list[tuple[str, Any]]:
    """Parse ``"a.b=1 c=[1, 2]"`` (or a list of ``key=value`` items) into (dotted key, value)."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        items = _split_overrides(overrides)
    else:
        items = [i for o in overrides for i in _split_overrides(o)]
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{CLI}: override '{item}' must look like key.sub=value")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"{CLI}: override '{item}' has an empty key")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"{CLI}: override '{item}': invalid value: {e}") from None
        out.append((key, value))
    return out


def _split_overrides(text: str) -> list[str]:
    """Split on whitespace outside brackets/quotes so ``a=[1, 2]`` stays one item."""
    items, cur, depth, quote = [], "", 0, ""
    for ch in text:
        if quote:
            cur += ch
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            cur += ch
        elif ch in "[{":
            depth += 1
            cur += ch
        elif ch in "]}":
            depth -= 1
            cur += ch
        elif ch.isspace() and depth == 0:
            if cur:
                items.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        items.append(cur)
    return items


def _apply_override(tree: dict, key: str, value: Any, sources: dict[str, str]) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{CLI}: cannot set '{key}': '{p}' is not a section")
        node = nxt
    _merge(node, {parts[-1]: value}, sources, CLI, ".".join(parts[:-1]) + "." if parts[:-1] else "")


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The most similar candidate to ``name`` (for "did you mean" hints), or None."""
    cands = list(candidates)
    match = difflib.get_close_matches(name, cands, n=1, cutoff=0.5)
    return match[0] if match else None


def _where(dotted: str, sources: Mapping[str, str]) -> str:
    return sources.get(dotted, "defaults")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _check_value(value: Any, tp: Any, dotted: str, sources: Mapping[str, str]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(value, a, dotted, sources)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    expected = origin or tp
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if not ok:
        raise ConfigError(
            f"{_where(dotted, sources)}: key '{dotted}' must be {_type_name(tp)}, "
            f"got {value!r} ({type(value).__name__})"
        )
    if expected is list and args:
        return [_check_value(v, args[0], f"{dotted}[{i}]", sources) for i, v in enumerate(value)]
    return value


def _build(cls: type, data: Mapping, sources: Mapping[str, str], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            hint = closest(key, names)
            msg = f"{_where(dotted, sources)}: unknown config key '{dotted}'"
            if hint:
                msg += f" (did you mean '{prefix}{hint}'?)"
            else:
                msg += f"; valid keys here: {', '.join(names)}"
            raise ConfigError(msg)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{_where(dotted, sources)}: '{dotted}' must be a section (mapping)"
                )
            kwargs[key] = _build(tp, value, sources, dotted + ".")
        else:
            kwargs[key] = _check_value(value, tp, dotted, sources)
    return cls(**kwargs)


def load_config(
    path: str | Path | None = None,
    overrides: str | Iterable[str] | None = None,
) -> tuple[Config, dict[str, str]]:
    """Load, merge, override and validate a config.

    Args:
        path: the experiment YAML; None gives the defaults.
        overrides: dotted ``key=value`` items (a string is split on whitespace).

    Returns:
        The validated :class:`Config` and a map from dotted key to the file (or "command line")
        that set it, for error messages of later checks.

    Raises:
        ConfigError: for a missing file, bad YAML, an unknown key or a value of the wrong type.
    """
    tree, sources = _load_tree(Path(path)) if path is not None else ({}, {})
    for key, value in parse_overrides(overrides):
        _apply_override(tree, key, value, sources)
    cfg = _build(Config, tree, sources)
    _check_choices(cfg, sources)
    _check_pseudo(cfg.pseudo, sources)
    _check_train(cfg.train, sources)
    _check_features(cfg, sources)
    _check_triplet(cfg, sources)
    return cfg, sources


def to_dict(cfg: Config) -> dict:
    """The config as plain dicts (for YAML, checkpoints and TensorBoard hparams)."""
    return dataclasses.asdict(cfg)


def from_dict(data: Mapping) -> Config:
    """Rebuild a :class:`Config` from :func:`to_dict` output (e.g. an experiment's config.yaml)."""
    return _build(Config, data, {})


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def load_resolved(path: str | Path) -> Config:
    """Read a resolved ``config.yaml`` written by :func:`dump_yaml` (no inheritance, strict)."""
    data = _read_yaml(Path(path))
    data.pop("__note__", None)
    return _build(Config, data, {})


def check_params(
    fn: Callable,
    params: Mapping[str, Any],
    section: str,
    sources: Mapping[str, str] | None = None,
    reserved: tuple[str, ...] = (),
) -> None:
    """Check registry ``params`` against the signature of ``fn`` (a class or factory).

    Raises:
        ConfigError: naming the unknown key, its file and the closest accepted argument; or a
            missing required argument.
    """
    sources = sources or {}
    sig = inspect.signature(fn)
    accepted = [
        n
        for n, p in sig.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != "self"
    ]
    for key in params:
        if key in reserved:
            raise ConfigError(
                f"{_where(f'{section}.{key}', sources)}: '{section}.{key}' is set by the framework "
                "(from the data and features), remove it from the config"
            )
        if key not in accepted:
            dotted = f"{section}.{key}"
            hint = closest(key, accepted)
            msg = f"{_where(dotted, sources)}: unknown key '{dotted}' for {fn.__name__}"
            msg += (
                f" (did you mean '{section}.{hint}'?)"
                if hint
                else f"; accepted: {', '.join(accepted)}"
            )
            raise ConfigError(msg)
