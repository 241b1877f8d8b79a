"""The augmentation pipeline the trainer runs, and its builder from the YAML ``augment:`` list.

Stages and who calls them (``sed.train.trainer.Trainer.forward``):

- waveform models: ``wave`` (B, N) -> ``mix`` -> front end -> ``spec`` (B, F, T);
- feature models: ``spec`` (B, F, T) -> ``mix``.

``time_shift`` may act on either input and runs exactly once per batch: in ``wave`` when the
pipeline has waveform augmentations (the trainer then has waveforms, and the shift keeps its
place in the list, e.g. before noise so the vacated part gets noise too), otherwise in ``spec``.

Each entry applies to each sample independently with probability ``p``; the draws, like every
other random number, come from one CPU generator seeded with ``seed``, so a run gives the same
augmentations on CPU and CUDA and resumes exactly from :meth:`AugmentPipeline.state_dict`.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sed.augment.base import AUGMENTATIONS, Augmentation, Context
from sed.config import CLI, ConfigError, closest
from sed.frames import FrameGrid


@dataclass(frozen=True)
class Entry:
    """One configured augmentation.

    Attributes:
        key: its name in :meth:`AugmentPipeline.applied_fraction` (``name``, or ``name_<i>``
            with its list index when the list holds the name more than once).
        aug: the augmentation.
        p: probability that a sample gets it.
        stage: where it runs: wave | spec | mix.
    """

    key: str
    aug: Augmentation
    p: float
    stage: str


class AugmentPipeline:
    """Configured augmentations in list order, grouped by the stage that runs them.

    Args:
        augs: ``(augmentation, p)`` pairs in config order.
        sample_rate: audio sample rate in Hz.
        hop_length: feature hop in samples (frame targets are on this grid).
        seed: seed of the pipeline's CPU generator.
    """

    def __init__(
        self,
        augs: Sequence[tuple[Augmentation, float]],
        sample_rate: int,
        hop_length: int,
        seed: int = 0,
    ) -> None:
        has_wave = any(a.stage == "wave" for a, _ in augs)
        counts = Counter(a.name for a, _ in augs)
        self.entries: list[Entry] = []
        for i, (aug, p) in enumerate(augs):
            stage = aug.stage if aug.stage != "time" else ("wave" if has_wave else "spec")
            # a repeated name gets its list index (no brackets: TensorBoard tags drop them)
            key = aug.name if counts[aug.name] == 1 else f"{aug.name}_{i}"
            self.entries.append(Entry(key, aug, float(p), stage))
        self.generator = torch.Generator().manual_seed(seed)
        self.ctx = Context(FrameGrid(sample_rate, hop_length), self.generator)
        self._seen = dict.fromkeys((e.key for e in self.entries), 0)
        self._applied = dict(self._seen)
        self._wave_calls = 0

    @property
    def needs_wave(self) -> bool:
        """True when some augmentation runs on waveforms: the model must take waveforms."""
        return any(e.stage == "wave" for e in self.entries)

    def wave(self, x: torch.Tensor, batch: dict) -> torch.Tensor:
        """Waveform augmentations, in list order.

        Args:
            x: waveforms (B, N), any float dtype and device.
            batch: targets, updated in place by augmentations that move audio in time.

        Returns:
            Augmented waveforms (B, N), same dtype and device; ``x`` itself is not modified.
        """
        if x.dim() != 2:
            raise ValueError(f"wave() takes waveforms (B, N), got shape {tuple(x.shape)}")
        self._wave_calls += 1
        return self._run("wave", x, batch)

    def spec(self, x: torch.Tensor, batch: dict) -> torch.Tensor:
        """Spectrogram augmentations (and ``time_shift`` without waveform ones), in list order.

        Args:
            x: log-mel features (B, F, T).
            batch: targets, updated in place by augmentations that move audio in time.

        Returns:
            Augmented features (B, F, T), same dtype and device.

        Raises:
            RuntimeError: when waveform augmentations are configured and :meth:`wave` has never
                run: the model takes features, and they would silently never apply.
        """
        if x.dim() != 3:
            raise ValueError(f"spec() takes features (B, F, T), got shape {tuple(x.shape)}")
        if self.needs_wave and self._wave_calls == 0:
            names = ", ".join(e.key for e in self.entries if e.stage == "wave")
            raise RuntimeError(
                f"waveform augmentations ({names}) are configured but the model takes features; "
                "give it waveforms (model.params.frontend: true) or remove them"
            )
        return self._run("spec", x, batch)

    def mix(self, x: torch.Tensor, batch: dict) -> torch.Tensor:
        """Batch augmentations (mixup ...), in list order.

        Args:
            x: waveforms (B, N) or features (B, F, T).
            batch: targets, replaced by the mixed ones.

        Returns:
            The mixed batch, same shape, dtype and device.
        """
        if x.dim() not in (2, 3):
            raise ValueError(f"mix() takes (B, N) or (B, F, T), got shape {tuple(x.shape)}")
        return self._run("mix", x, batch)

    def _run(self, stage: str, x: torch.Tensor, batch: dict) -> torch.Tensor:
        entries = [e for e in self.entries if e.stage == stage]
        if not entries:
            return x
        n = x.shape[0]
        y = x.float()  # FFTs and resampling want float32 (dumps may be float16)
        # augmentations are data preparation: no gradients, and no autocast from the training
        # step, which would run the resampling convolutions in bf16
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            for e in entries:
                selected = torch.rand(n, generator=self.generator) < e.p
                if e.stage == "mix" and n < 2:
                    selected[:] = False  # nothing to mix with
                idx = selected.nonzero().squeeze(1)
                self._seen[e.key] += n
                self._applied[e.key] += len(idx)
                if len(idx):
                    y = e.aug.apply(y, idx, batch, self.ctx)
        return y.to(x.dtype)

    def applied_fraction(self) -> dict[str, float]:
        """Per entry, the fraction of samples it was applied to since the last call (then reset).

        An entry that saw no samples reports 0.0 (a stage the trainer never ran shows up).
        """
        out = {k: self._applied[k] / self._seen[k] if self._seen[k] else 0.0 for k in self._seen}
        self._seen = dict.fromkeys(self._seen, 0)
        self._applied = dict(self._seen)
        return out

    def state_dict(self) -> dict[str, Any]:
        """The random state, for an exact resume."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        lines = [f"  {e.key} ({e.stage}, p={e.p:g}): {e.aug!r}" for e in self.entries]
        return "AugmentPipeline(\n" + "\n".join(lines) + "\n)"


# likely spellings of the common keys that difflib finds too far from the real ones
_HINTS = {"prob": "p", "proba": "p", "probability": "p", "type": "name"}


def _accepted(cls: type) -> list[str]:
    params = inspect.signature(cls).parameters
    return [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def build_augment(
    items: Sequence[Mapping[str, Any]],
    sample_rate: int,
    hop_length: int,
    seed: int = 0,
    sources: Mapping[str, str] | None = None,
) -> AugmentPipeline:
    """Build the pipeline from the YAML ``augment:`` list.

    Args:
        items: ``[{name: <registered>, p: probability (default 1), <constructor args>}, ...]``.
        sample_rate: audio sample rate in Hz.
        hop_length: feature hop in samples.
        seed: seed of the pipeline's random generator.
        sources: config provenance; ``sources["augment"]`` names the file of the list.

    Raises:
        ConfigError: an entry that is not a mapping, an unknown name or key (naming
            ``augment[<i>].<key>``, the file and the closest valid name), ``p`` outside [0, 1],
            or a bad parameter value.
    """
    where = (sources or {}).get("augment", CLI)
    if isinstance(items, (str, Mapping)) or not isinstance(items, Sequence):
        raise ConfigError(
            f"{where}: 'augment' must be a list of {{name: ..., p: ...}} entries, got {items!r}"
        )
    augs: list[tuple[Augmentation, float]] = []
    for i, item in enumerate(items):
        at = f"augment[{i}]"
        if not isinstance(item, Mapping) or "name" not in item:
            raise ConfigError(f"{where}: '{at}' must be a mapping with a 'name', got {item!r}")
        name = item["name"]
        cls = AUGMENTATIONS.get(name, where, key=f"{at}.name")
        accepted = ["name", "p", *_accepted(cls)]
        for key in item:
            if key not in accepted:
                hint = _HINTS.get(str(key)) or closest(str(key), accepted)
                raise ConfigError(
                    f"{where}: unknown key '{at}.{key}' for augmentation '{name}'"
                    + (f" (did you mean '{at}.{hint}'?)" if hint else "")
                    + f"; accepted: {', '.join(accepted)}"
                )
        p = item.get("p", 1.0)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ConfigError(f"{where}: '{at}.p' must be a probability in [0, 1], got {p!r}")
        params = {k: v for k, v in item.items() if k not in ("name", "p")}
        try:
            aug = cls(**params)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{where}: {at} ({name}): {e}") from None
        augs.append((aug, p))
    return AugmentPipeline(augs, sample_rate, hop_length, seed)
