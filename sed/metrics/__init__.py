"""Evaluation metrics; :data:`~sed.metrics.registry.METRICS` maps recipe metric names to them."""

from sed.metrics.lwlrap import lwlrap, lwlrap_per_class
from sed.metrics.registry import METRICS

__all__ = ["METRICS", "lwlrap", "lwlrap_per_class"]
