"""Model-agnostic training: optimizers, schedulers, checkpoints, the step-based trainer."""
