"""A main loss plus weighted auxiliary losses (built by :func:`sed.losses.build_loss`)."""

from __future__ import annotations

import torch
from torch import nn


class CombinedLoss(nn.Module):
    """``total = main + sum_i weight_i * aux_i``.

    The main and auxiliary losses are submodules (parameter names ``main.*``, ``aux.<i>.*``), so
    moving or optimising this module covers theirs. Logged terms: the main loss's terms as they
    are, then each auxiliary loss's unweighted total under its name (``activity``, ``center``
    ...) and, when it has several terms, ``<name>_<term>``; a name already taken gets ``_<i>``.

    Args:
        main: the ``loss.name`` loss.
        aux: ``(name, weight, loss)`` for every ``loss.aux`` item.
    """

    def __init__(self, main: nn.Module, aux: list[tuple[str, float, nn.Module]]) -> None:
        super().__init__()
        self.main = main
        self.aux = nn.ModuleList(m for _, _, m in aux)
        self.names = [n for n, _, _ in aux]
        self.weights = [float(w) for _, w, _ in aux]

    def forward(self, outputs: dict, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Args:
            outputs: model outputs (see the model contract).
            batch: targets and optional masks.

        Returns:
            ``(total, terms)``.
        """
        total, main_terms = self.main(outputs, batch)
        terms = dict(main_terms)

        def unique(key: str, i: int) -> str:
            return key if key not in terms else f"{key}_{i}"

        for i, (name, weight, loss) in enumerate(
            zip(self.names, self.weights, self.aux, strict=True)
        ):
            value, sub = loss(outputs, batch)
            total = total + weight * value
            key = unique(name, i)
            terms[key] = value.detach()
            if len(sub) > 1:
                for k, v in sub.items():
                    terms[unique(f"{key}_{k}", i)] = v
        return total, terms
