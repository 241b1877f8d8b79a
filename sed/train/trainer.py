"""A step-based, model-agnostic trainer.

The trainer knows only the model contract (DESIGN §5): a model maps ``feats`` to a dict of
outputs and declares ``time_reduction``; a loss maps (outputs, batch) to (total, terms). It never
branches on the model's type.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from sed.config import Config, TrainConf, to_dict
from sed.datasets.targets import reduce_frame_targets
from sed.infer.sliding import autocast_context
from sed.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from sed.utils.progress import progress_bar

log = logging.getLogger(__name__)

Evaluator = Callable[[nn.Module], dict[str, float]]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: ``auto`` is bf16 on CUDA (fp16 on GPUs without bf16) and off on CPU."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode in ("bf16", "fp16"):
        return torch.bfloat16 if mode == "bf16" else torch.float16
    raise ValueError(f"train.amp must be auto, off, bf16 or fp16, got '{mode}'")


def move(batch: dict, device: torch.device) -> dict:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }


class Trainer:
    """Trains one fold.

    Args:
        model: the SED model (moved to ``device`` here).
        loss_fn: registry loss.
        optimizer: optimizer over the model's parameters.
        scheduler: per-step learning-rate scheduler.
        loader: training batches (dicts with ``feats``, ``clip_target``, ``frame_target``).
        evaluator: ``model -> {"lwlrap": ..., ...}`` on whole validation recordings.
        conf: the ``train`` section.
        outdir: the fold folder (``checkpoints/`` and ``tb/`` go there).
        config: the whole resolved config, stored in every checkpoint.
        extra_state: stored in checkpoints too (classes, n_mels ...) so a fold folder is enough to
            rebuild the model.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        loader: DataLoader,
        evaluator: Evaluator,
        conf: TrainConf,
        outdir: str | Path,
        config: Config,
        extra_state: dict[str, Any] | None = None,
    ) -> None:
        self.device = resolve_device(conf.device)
        self.amp_dtype = resolve_amp(conf.amp, self.device)
        self.model = model.to(self.device)
        self.loss_fn = loss_fn.to(self.device)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loader = loader
        self.evaluator = evaluator
        self.conf = conf
        self.outdir = Path(outdir)
        self.ckpt_dir = self.outdir / "checkpoints"
        self.config = config
        self.extra_state = extra_state or {}
        # fp16 needs loss scaling; bf16 and fp32 do not
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self.step = 0
        self.epoch = 0
        self.best = -math.inf
        self.best_step = -1
        self.n_nonfinite = 0
        self.history: list[dict[str, float]] = []

    # ---------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            # losses with parameters (center-loss centers) resume with the optimizer state
            "loss": self.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "best": self.best,
            "best_step": self.best_step,
            "n_nonfinite": self.n_nonfinite,
            "rng": rng_state(),
            "config": to_dict(self.config),
            **self.extra_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if "loss" in state:
            self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.best, self.best_step = state["best"], state["best_step"]
        self.n_nonfinite = state.get("n_nonfinite", 0)
        set_rng_state(state["rng"])

    def resume_if_possible(self) -> bool:
        """Continue from ``checkpoints/last.pt`` when it exists."""
        last = self.ckpt_dir / "last.pt"
        if not last.exists():
            return False
        self.load_state_dict(load_checkpoint(last, self.device))
        log.info("resumed from %s at step %d", last, self.step)
        return True

    # ---------------------------------------------------------------------------------- loop
    def _batches(self) -> Iterator[dict]:
        while True:
            ds = self.loader.dataset
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(self.epoch)
            sampler = getattr(self.loader, "sampler", None)
            if hasattr(sampler, "generator") and sampler.generator is not None:
                sampler.generator.manual_seed(self.config.seed * 1000003 + self.epoch)
            yield from self.loader
            self.epoch += 1

    def _train_step(self, micro_batches: list[dict]) -> dict[str, float] | None:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms_sum: dict[str, float] = {}
        n = len(micro_batches)
        for batch in micro_batches:
            batch = move(batch, self.device)
            with autocast_context(self.device, self.amp_dtype):
                out = self.model(batch["feats"])
            n_out = out["frame_logits"].shape[1]
            r = self.model.time_reduction
            batch["frame_target"] = reduce_frame_targets(batch["frame_target"], r, n_out)
            if "frame_mask" in batch:
                # an output frame counts only if every input frame it pools counts
                batch["frame_mask"] = 1 - reduce_frame_targets(1 - batch["frame_mask"], r, n_out)
            total, terms = self.loss_fn(out, batch)
            if not torch.isfinite(total):
                return None
            self.scaler.scale(total / n).backward()
            for k, v in {"loss": total, **terms}.items():
                terms_sum[k] = terms_sum.get(k, 0.0) + float(v.detach()) / n
        self.scaler.unscale_(self.optimizer)
        max_norm = self.conf.grad_clip if self.conf.grad_clip is not None else math.inf
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        terms_sum["grad_norm"] = float(grad_norm)
        return terms_sum

    def evaluate(self, writer: SummaryWriter) -> dict[str, float]:
        self.model.eval()
        t0 = time.time()
        metrics = self.evaluator(self.model)
        for k, v in metrics.items():
            writer.add_scalar(f"valid/{k}", v, self.step)
        score = metrics[self.conf.best_metric]
        improved = score > self.best
        if improved:
            self.best, self.best_step = score, self.step
        self.history.append({"step": self.step, **metrics})
        save_checkpoint(self.ckpt_dir / "last.pt", self.state_dict())
        if improved:
            save_checkpoint(self.ckpt_dir / "best.pt", self.state_dict())
        if self.conf.save_every_steps and self.step % self.conf.save_every_steps == 0:
            save_checkpoint(self.ckpt_dir / f"step{self.step}.pt", self.state_dict())
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        log.info(
            "step %d valid %s (%.1fs)%s",
            self.step,
            shown,
            time.time() - t0,
            " *best*" if improved else "",
        )
        return metrics

    def fit(self, progress: bool = True) -> dict[str, Any]:
        """Train to ``max_steps``, evaluating every ``eval_every_steps`` and at the end.

        Returns:
            ``{"best": best metric, "best_step": step, "steps": steps, "history": [...]}``.
        """
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(str(self.outdir / "tb"))
        self.resume_if_possible()
        batches = self._batches()
        bar = progress_bar(
            total=self.conf.max_steps,
            initial=self.step,
            desc=f"train {self.outdir.name}",
            disable=not progress,
            dynamic_ncols=True,
        )
        t_last, samples = time.time(), 0
        try:
            while self.step < self.conf.max_steps:
                micro = [next(batches) for _ in range(self.conf.accum_grad)]
                terms = self._train_step(micro)
                if terms is None:
                    self.n_nonfinite += 1
                    log.warning("non-finite loss at step %d: step skipped", self.step)
                    writer.add_scalar("train/nonfinite_steps", self.n_nonfinite, self.step)
                    continue
                self.step += 1
                samples += sum(len(m["feats"]) for m in micro)
                bar.update()
                if self.step % self.conf.log_every_steps == 0 or self.step == 1:
                    dt = time.time() - t_last
                    for k, v in terms.items():
                        tag = f"train/{k}" if k in ("loss", "grad_norm") else f"train/loss_{k}"
                        writer.add_scalar(tag, v, self.step)
                    writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.step)
                    writer.add_scalar("train/samples_per_sec", samples / max(dt, 1e-9), self.step)
                    bar.set_postfix(loss=f"{terms['loss']:.4f}", refresh=False)
                    t_last, samples = time.time(), 0
                if self.step % self.conf.eval_every_steps == 0 or self.step == self.conf.max_steps:
                    self.evaluate(writer)
        finally:
            bar.close()
            writer.flush()
            writer.close()
        return {
            "best": self.best,
            "best_step": self.best_step,
            "steps": self.step,
            "history": self.history,
        }
