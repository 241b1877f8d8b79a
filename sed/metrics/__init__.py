"""Evaluation metrics."""

from sed.metrics.lwlrap import lwlrap, lwlrap_per_class

__all__ = ["lwlrap", "lwlrap_per_class"]
