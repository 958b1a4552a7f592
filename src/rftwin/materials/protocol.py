"""The one material-model protocol that the calibration loop trains.

A material model is a ``torch.nn.Module`` with

- ``forward(pathset, frequency_hz) -> MaterialValues``: the materials the engine uses for the paths of
  ``pathset`` at ``frequency_hz`` [F] (Hz), either per object ([B, F, K], ``per_object=True``; per-object and
  grouped models, which do not depend on the paths and also accept ``model(frequency_hz)``) or per interaction
  ([B, F, N, D]; neural fields, queried at the interaction points);
- ``num_starts``: B, the parameter sets trained side by side (multi-start; 1 for a field);
- ``values() -> dict[str, np.ndarray]``: its per-object read-outs at the reference frequency, [B, K] each
  (eps_r, sigma, and S, K_xpd when modelled); a field returns ``{}`` (its read-outs are maps, not numbers);
- optional ``penalty() -> Tensor [B]``: regularisation that is not a prior (hash-table L2, level-gate L1);
- optional ``param_groups(lr, lr_hash) -> list[dict]``: optimiser groups with their own learning rates;
- optional ``project_()`` with ``bounded = True``: clip parameters to a box after each step.

Its prior is an object with ``penalty_residuals(model, ps, features, rows, weight) -> Tensor [B, P]`` whose
squares sum to the prior's share of the loss (:class:`rftwin.calibrate.objectives.PriorStats` for per-object
and grouped models, :class:`rftwin.fields.prior.FieldPrior` for fields), so every prior is a least-squares block
that Levenberg-Marquardt, the Laplace approximation and the torch optimisers all see the same way.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch

from rftwin.pathset import PathSet
from rftwin.physics.engine import MaterialValues


@runtime_checkable
class MaterialModel(Protocol):
    """Structural type of every material model (see the module docstring)."""

    def forward(self, ps: PathSet | None, frequency_hz: torch.Tensor) -> MaterialValues: ...

    @property
    def num_starts(self) -> int: ...

    def values(self) -> dict[str, np.ndarray]: ...


def penalty(model: MaterialModel, num_starts: int, dtype: torch.dtype) -> torch.Tensor | None:
    """The model's regularisation [B] (None when it has none)."""
    fn = getattr(model, "penalty", None)
    if fn is None:
        return None
    return fn().to(dtype).expand(num_starts)


__all__ = ["MaterialModel", "penalty"]
