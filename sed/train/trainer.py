"""A step-based, model-agnostic trainer.

The trainer knows only the model contract (DESIGN §5): a model maps ``feats`` to a dict of
outputs and declares ``time_reduction``; a loss maps (outputs, batch) to (total, terms). It never
branches on the model's type.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from sed.config import Config, TrainConf, to_dict
from sed.datasets.targets import reduce_frame_targets
from sed.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from sed.train.distributed import (
    DistInfo,
    any_rank,
    barrier,
    broadcast,
    local_device,
    mean_over_ranks,
)
from sed.utils.device import autocast_context, resolve_amp, resolve_device
from sed.utils.progress import progress_bar

log = logging.getLogger(__name__)

Evaluator = Callable[[nn.Module], dict[str, float]]

# exit status of a run stopped by SIGTERM/SIGINT after writing last.pt (EX_TEMPFAIL: "try again");
# job backends requeue on it and the next run resumes
EXIT_PREEMPTED = 75


class Preempted(Exception):
    """Training stopped on a signal after saving ``last.pt``; rerunning resumes."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; last.pt saved")
        self.signum, self.step = signum, step


class NonFiniteLoss(RuntimeError):
    """Too many non-finite losses in a row: the run diverged."""


def move(batch: dict, device: torch.device) -> dict:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }


class _TrainForward(nn.Module):
    """The training forward pass as one module, so DistributedDataParallel can wrap all of it.

    Waveform models: waveform augmentations -> batch (mixup) augmentations -> front end ->
    spectrogram augmentations -> body. Feature models: spectrogram -> batch augmentations ->
    model. Augmentations that move or mix audio update the targets in ``batch``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, batch: dict, pipe: Any | None) -> dict[str, torch.Tensor]:
        frontend = getattr(self.model, "frontend", None)
        if frontend is None:
            if pipe is not None:
                x = pipe.mix(pipe.spec(x, batch), batch)
            return self.model(x)
        if pipe is not None:
            x = pipe.mix(pipe.wave(x, batch), batch)
        x = frontend(x)
        if pipe is not None:
            x = pipe.spec(x, batch)
        return self.model.body(x)


class _NullWriter:
    """Stands in for SummaryWriter on ranks other than 0."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class Trainer:
    """Trains one fold.

    Args:
        model: the SED model (moved to ``device`` here). A waveform model (``frontend`` and
            ``body`` attributes, see :class:`sed.models.frontend.WaveformSED`) is run in two parts
            so that augmentations can act on the waveform and on the features.
        loss_fn: registry loss.
        optimizer: optimizer over the model's (and the loss's) parameters.
        scheduler: per-step learning-rate scheduler.
        loader: training batches (dicts with ``feats``, ``clip_target``, ``frame_target``); its
            batch sampler must offer ``set_epoch`` and ``skip`` (``sed.datasets.samplers``) so
            that a resumed run continues mid-epoch with the very batches it would have seen.
        evaluator: ``model -> {"lwlrap": ..., ...}`` on whole validation recordings.
        conf: the ``train`` section.
        outdir: the fold folder (``checkpoints/`` and ``tb/`` go there).
        config: the whole resolved config, stored in every checkpoint.
        extra_state: stored in checkpoints too (classes, fold ...) so a fold folder is enough to
            rebuild the model.
        augment: batch augmentations (``sed.augment``); off in phase 2.
        log_embeddings: write validation embeddings to the TensorBoard projector at the end
            (useful with a center loss).
        dist_info: this process's rank when trained with torchrun (DistributedDataParallel);
            only rank 0 evaluates and writes.
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
        augment: Any | None = None,
        log_embeddings: bool = False,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.dist = dist_info or DistInfo()
        self.device = local_device(resolve_device(conf.device), self.dist)
        self.amp_dtype = resolve_amp(conf.amp, self.device)
        if self.dist.enabled and self.device.type == "cuda" and conf.sync_batchnorm:
            # batch statistics over the global batch, as one GPU would compute them; the
            # converted layers keep the same Parameters, so the optimizer still holds them
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device)
        self.net: nn.Module = _TrainForward(self.model)
        if self.dist.enabled:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.net,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )
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
        self.augment = augment
        self.log_embeddings = log_embeddings
        # fp16 needs loss scaling; bf16 and fp32 do not
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self.ema = (
            AveragedModel(
                self.model, multi_avg_fn=get_ema_multi_avg_fn(conf.ema_decay), use_buffers=True
            )
            if conf.ema_decay
            else None
        )
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0  # batches of the current epoch already consumed (for resume)
        self.phase = 1
        self.phase_end = conf.max_steps
        self.best = -math.inf
        self.best_step = -1
        self.evals_since_best = 0
        self.n_nonfinite = 0
        self.nonfinite_run = 0
        self.history: list[dict[str, float]] = []
        self._signal: int | None = None

    # ---------------------------------------------------------------------------------- state
    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and used for inference: the EMA ones when enabled."""
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            # losses with parameters (center-loss centers) resume with the optimizer state
            "loss": self.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "phase": self.phase,
            "phase_end": self.phase_end,
            "best": self.best,
            "best_step": self.best_step,
            "evals_since_best": self.evals_since_best,
            "n_nonfinite": self.n_nonfinite,
            "history": self.history,
            "rng": rng_state(),
            "config": to_dict(self.config),
            **self.extra_state,
        }
        if self.ema is not None:
            # inference loads "ema_model" when present: those are the evaluated weights
            state["ema_model"] = self.ema.module.state_dict()
            state["ema_n_averaged"] = int(self.ema.n_averaged)
        if self.augment is not None:
            state["augment"] = self.augment.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if "loss" in state:
            self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch = state.get("batch_in_epoch", 0)
        self.phase = state.get("phase", 1)
        self.phase_end = state.get("phase_end", self.conf.max_steps)
        self.best, self.best_step = state["best"], state["best_step"]
        self.evals_since_best = state.get("evals_since_best", 0)
        self.n_nonfinite = state.get("n_nonfinite", 0)
        self.history = list(state.get("history", []))
        if self.ema is not None and "ema_model" in state:
            self.ema.module.load_state_dict(state["ema_model"])
            self.ema.n_averaged.fill_(state["ema_n_averaged"])
        if self.augment is not None and "augment" in state:
            self.augment.load_state_dict(state["augment"])
        set_rng_state(state["rng"])

    def resume_if_possible(self) -> bool:
        """Continue from ``checkpoints/last.pt`` when it exists."""
        last = self.ckpt_dir / "last.pt"
        if not last.exists():
            return False
        self.load_state_dict(load_checkpoint(last, self.device))
        log.info(
            "resumed from %s at step %d (epoch %d, batch %d, phase %d)",
            last,
            self.step,
            self.epoch,
            self.batch_in_epoch,
            self.phase,
        )
        return True

    # ---------------------------------------------------------------------------------- signals
    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self._signal = signum
        log.warning(
            "%s received: stopping after this step and saving last.pt",
            signal.Signals(signum).name,
        )

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}  # signal handlers can only be set from the main thread
        return {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    # ---------------------------------------------------------------------------------- loop
    def _batches(self) -> Iterator[dict]:
        sampler = self.loader.batch_sampler
        while True:
            sampler.set_epoch(self.epoch)
            if self.batch_in_epoch:
                sampler.skip(self.batch_in_epoch)
            if self.loader.generator is not None:
                # worker seeds come from this generator: a function of (seed, epoch) only
                self.loader.generator.manual_seed(self.config.seed * 1000003 + self.epoch)
            for batch in self.loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    def _train_step(self, micro_batches: list[dict]) -> dict[str, float] | None:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms_sum: dict[str, float] = {}
        n = len(micro_batches)
        for batch in micro_batches:
            batch = move(batch, self.device)
            pipe = self.augment if self.phase == 1 else None
            with autocast_context(self.device, self.amp_dtype):
                out = self.net(batch["feats"], batch, pipe)
            if "frame_target" in batch:  # triplet batches have none (sed.datasets.triplets)
                n_out = out["frame_logits"].shape[1]
                r = self.model.time_reduction
                batch["frame_target"] = reduce_frame_targets(batch["frame_target"], r, n_out)
            if "frame_mask" in batch:
                # an output frame counts only if every input frame it pools counts
                batch["frame_mask"] = 1 - reduce_frame_targets(1 - batch["frame_mask"], r, n_out)
            total, terms = self.loss_fn(out, batch)
            if "pseudo" in batch:  # labelled and pseudo-labelled items' losses, logged apart
                terms = {**terms, **self._part_losses(out, batch)}
            # every rank skips together, or DDP's gradient all-reduce would wait forever
            if any_rank(not bool(torch.isfinite(total)), self.dist):
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
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        terms_sum = mean_over_ranks(terms_sum, self.dist)
        terms_sum["grad_norm"] = float(grad_norm)
        return terms_sum

    @torch.no_grad()
    def _part_losses(self, out: dict, batch: dict) -> dict[str, torch.Tensor]:
        """The loss of the labelled rows and of the pseudo-labelled rows of a batch (``batch
        ["pseudo"]`` (B,) 0/1; a mixed row counts as its own item's kind), for TensorBoard."""
        flag = torch.as_tensor(batch["pseudo"], device=out["clip_logits"].device) > 0.5
        n = flag.shape[0]
        parts = {}
        for name, rows in (("labelled", ~flag), ("pseudo", flag)):
            if not bool(rows.any()):
                continue

            def take(d: dict, rows: torch.Tensor = rows) -> dict:
                return {
                    k: v[rows] if torch.is_tensor(v) and v.dim() and v.shape[0] == n else v
                    for k, v in d.items()
                }

            parts[name] = self.loss_fn(take(out), take(batch))[0]
        return parts

    def evaluate(self, writer: SummaryWriter) -> dict[str, float]:
        """Rank 0 evaluates and saves; the others wait and take its early-stopping state."""
        metrics: dict[str, float] = {}
        if self.dist.is_main:
            metrics = self._evaluate(writer)
        shared = (self.best, self.best_step, self.evals_since_best, self.history)
        self.best, self.best_step, self.evals_since_best, self.history = broadcast(
            shared, self.dist
        )
        barrier(self.dist)  # best.pt is written before any rank may read it (phase 2)
        return metrics

    def _evaluate(self, writer: SummaryWriter) -> dict[str, float]:
        model = self.eval_model
        model.eval()
        t0 = time.time()
        metrics = self.evaluator(model)
        for k, v in metrics.items():
            writer.add_scalar(f"valid/{k}", v, self.step)
        for tag, values in getattr(self.evaluator, "per_class", lambda: {})().items():
            for name, v in values.items():
                writer.add_scalar(f"{tag}/{name}", v, self.step)
        if self.conf.figures and hasattr(self.evaluator, "figures"):
            for tag, fig in self.evaluator.figures(model).items():
                writer.add_figure(tag, fig, self.step, close=True)
        score = metrics[self.conf.best_metric]
        improved = score > self.best
        if improved:
            self.best, self.best_step = score, self.step
            self.evals_since_best = 0
        else:
            self.evals_since_best += 1
        self.history.append({"step": self.step, "phase": self.phase, **metrics})
        # last.pt (the resume point) goes last: a kill between the writes resumes from the
        # previous last.pt and writes best.pt / step<N>.pt again, instead of resuming with
        # self.best already raised while best.pt still holds an older model (or is absent)
        if improved:
            save_checkpoint(self.ckpt_dir / "best.pt", self.state_dict())
        if self.conf.save_every_steps and self.step % self.conf.save_every_steps == 0:
            save_checkpoint(self.ckpt_dir / f"step{self.step}.pt", self.state_dict())
        save_checkpoint(self.ckpt_dir / "last.pt", self.state_dict())
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        log.info(
            "step %d valid %s (%.1fs)%s",
            self.step,
            shown,
            time.time() - t0,
            " *best*" if improved else "",
        )
        return metrics

    def _phase_done(self) -> bool:
        patience = self.conf.early_stopping
        if patience and self.evals_since_best >= patience:
            log.info(
                "early stopping at step %d: %d evaluations without improvement of %s",
                self.step,
                self.evals_since_best,
                self.conf.best_metric,
            )
            return True
        return self.step >= self.phase_end

    def _start_phase2(self) -> None:
        """Phase 2 (seed 001): continue from best.pt for ``additional_steps`` without augmentation.

        Only this trainer's own objects change (weights, optimizer, counters); the config is never
        modified, so nothing of phase 2 can leak into the next fold.
        """
        best = self.ckpt_dir / "best.pt"
        state = load_checkpoint(best, self.device) if best.exists() else None
        keep = {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "history": self.history,
            "n_nonfinite": self.n_nonfinite,
        }
        if state is not None:
            self.load_state_dict(state)
            for k, v in keep.items():  # the run goes on: counters and the data stream continue
                setattr(self, k, v)
        self.phase = 2
        self.phase_end = self.step + self.conf.additional_steps
        self.evals_since_best = 0
        log.info(
            "phase 2: %d steps from best.pt (step %d) without augmentation",
            self.conf.additional_steps,
            self.best_step,
        )

    def fit(self, progress: bool = True) -> dict[str, Any]:
        """Train to ``max_steps`` (then ``additional_steps`` of phase 2), evaluating every
        ``eval_every_steps`` and at the end of each phase.

        Raises:
            Preempted: on SIGTERM/SIGINT, after writing ``last.pt``.
            NonFiniteLoss: after ``max_nonfinite`` non-finite losses in a row.

        Returns:
            ``{"best": best metric, "best_step": step, "steps": steps, "history": [...]}``.
        """
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.resume_if_possible()
        # events a killed run logged past last.pt (or before any checkpoint) are marked stale
        # (purge_step), so TensorBoard does not show those steps twice
        writer = (
            SummaryWriter(str(self.outdir / "tb"), purge_step=self.step)
            if self.dist.is_main
            else _NullWriter()
        )
        if self.dist.enabled:
            log.info(
                "rank %d of %d: %d samples per step in all",
                self.dist.rank,
                self.dist.world_size,
                self.conf.batch_size * self.conf.accum_grad,
            )
        batches = self._batches()
        total = self.conf.max_steps + self.conf.additional_steps
        bar = progress_bar(
            total=total,
            initial=self.step,
            desc=f"train {self.outdir.name}",
            disable=not progress or not self.dist.is_main,
            dynamic_ncols=True,
        )
        handlers = self._install_signal_handlers()
        t_last, samples = time.time(), 0
        try:
            while True:
                if self._phase_done():
                    if self.phase == 2 or self.conf.additional_steps <= 0:
                        break
                    self._start_phase2()
                    bar.total = self.phase_end
                micro = [next(batches) for _ in range(self.conf.accum_grad)]
                terms = self._train_step(micro)
                if terms is None:
                    self._skip_nonfinite(writer)
                    continue
                self.nonfinite_run = 0
                self.step += 1
                samples += sum(len(m["feats"]) for m in micro)
                bar.update()
                if self.step % self.conf.log_every_steps == 0 or self.step == 1:
                    dt = time.time() - t_last
                    self._log_train(writer, terms, samples / max(dt, 1e-9))
                    bar.set_postfix(loss=f"{terms['loss']:.4f}", refresh=False)
                    t_last, samples = time.time(), 0
                if self.step % self.conf.eval_every_steps == 0 or self.step == self.phase_end:
                    self.evaluate(writer)
                if any_rank(self._signal is not None, self.dist):
                    if self.dist.is_main:
                        save_checkpoint(self.ckpt_dir / "last.pt", self.state_dict())
                    barrier(self.dist)
                    raise Preempted(self._signal or signal.SIGTERM, self.step)
            self._log_end(writer)
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            bar.close()
            writer.flush()
            writer.close()
        return {
            "best": self.best,
            "best_step": self.best_step,
            "steps": self.step,
            "history": self.history,
        }

    def _skip_nonfinite(self, writer: SummaryWriter) -> None:
        self.n_nonfinite += 1
        self.nonfinite_run += 1
        log.warning("non-finite loss at step %d: step skipped", self.step)
        writer.add_scalar("train/nonfinite_steps", self.n_nonfinite, self.step)
        if self.nonfinite_run >= self.conf.max_nonfinite:
            raise NonFiniteLoss(
                f"{self.nonfinite_run} non-finite losses in a row at step {self.step} "
                f"(train.max_nonfinite={self.conf.max_nonfinite}): the run diverged; lower the "
                f"learning rate or check the data. last.pt holds the last evaluated state."
            )

    def _log_train(self, writer: SummaryWriter, terms: dict[str, float], rate: float) -> None:
        for k, v in terms.items():
            tag = f"train/{k}" if k in ("loss", "grad_norm") else f"train/loss_{k}"
            writer.add_scalar(tag, v, self.step)
        for i, g in enumerate(self.optimizer.param_groups):
            writer.add_scalar("train/lr" if i == 0 else f"train/lr_group{i}", g["lr"], self.step)
        writer.add_scalar("train/samples_per_sec", rate * self.dist.world_size, self.step)
        # the effective batch: all ranks and accumulated micro-batches together
        writer.add_scalar(
            "train/batch_size", self.conf.batch_size * self.conf.accum_grad, self.step
        )
        if self.augment is not None and self.phase == 1:
            for name, frac in self.augment.applied_fraction().items():
                writer.add_scalar(f"augment/{name}", frac, self.step)

    def _log_end(self, writer: SummaryWriter) -> None:
        """hparams with the final metrics, and the embedding projector when asked."""
        if not self.dist.is_main:
            return
        final = self.history[-1] if self.history else {}
        metrics = {f"hparam/best_{self.conf.best_metric}": self.best}
        metrics |= {f"hparam/final_{k}": v for k, v in final.items() if k not in ("step", "phase")}
        writer.add_hparams(hparams(self.config), metrics, run_name=".")
        if self.log_embeddings and hasattr(self.evaluator, "embeddings"):
            self.eval_model.eval()
            emb, labels = self.evaluator.embeddings(self.eval_model)
            if len(emb):
                writer.add_embedding(emb, metadata=labels, global_step=self.step, tag="embedding")


def hparams(cfg: Config) -> dict[str, Any]:
    """A flat view of the config keys worth comparing across runs in TensorBoard's HPARAMS tab."""
    flat: dict[str, Any] = {
        "model": cfg.model.name,
        "loss": cfg.loss.name,
        "aux": ",".join(a.get("name", "?") for a in cfg.loss.aux) or "-",
        "augment": ",".join(a.get("name", "?") for a in cfg.augment) or "-",
        "optim": cfg.optim.name,
        "lr": cfg.optim.lr,
        "scheduler": cfg.scheduler.name,
        "batch_size": cfg.train.batch_size * cfg.train.accum_grad,
        "max_steps": cfg.train.max_steps,
        "crop_seconds": cfg.data.crop_seconds,
        "sampler": cfg.data.sampler,
        "n_mels": cfg.features.n_mels,
        "seed": cfg.seed,
        "pseudo_teachers": ",".join(cfg.pseudo.teachers) or "-",
        "pseudo_ratio": cfg.pseudo.ratio if cfg.pseudo.teachers else 0.0,
    }
    for k, v in cfg.model.params.items():
        if isinstance(v, int | float | str | bool):
            flat[f"model.{k}"] = v
    return flat
