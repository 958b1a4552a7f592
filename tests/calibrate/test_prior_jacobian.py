"""The prior block of the Gauss-Newton system (issue #19 groups x issue #17 priors): with material groups there
are fewer parameters than prior rows (one row per object), and the Jacobian is taken by columns; it must equal
the row-by-row Jacobian and finite differences."""
import numpy as np
import pytest
import torch

from rftwin.calibrate.bayes import ObjectPriors, prior_stats
from rftwin.calibrate.jacobians import prior_block, trainable_params
from rftwin.calibrate.loop import CalibrationConfig
from rftwin.materials.class_prior import itu_table
from rftwin.materials.groups import GroupedMaterials

F = 3.5e9
LABELS = ["brick", "brick", "brick", "wood", "wood", "concrete", "glass", "glass", "brick"]
INDEX = np.array([0, 0, 0, 1, 1, 2, 3, 3, 0])  # four groups of nine objects


def _setup(shrinkage: float, per_start: bool):
    names = [f"o{k}" for k in range(len(LABELS))]
    op = ObjectPriors(names, list(LABELS), itu_table(F), F, shrinkage=shrinkage)
    op.group_sizes = np.bincount(INDEX)[INDEX].astype(np.float64)
    op.group_index, op.group_names = INDEX, ["a", "b", "c", "d"]
    rng = np.random.default_rng(3)
    B = 3
    model = GroupedMaterials(rng.uniform(2.0, 6.0, (B, 4)), 10 ** rng.uniform(-3, -1, (B, 4)), [0.1] * 9, INDEX)
    classes = [list(LABELS), ["metal"] * 3 + LABELS[3:], LABELS[:5] + ["marble"] * 4] if per_start else None
    return model, prior_stats(op, ("eps_r", "sigma"), per_start=classes)


@pytest.mark.parametrize("shrinkage,per_start", [(0.0, False), (0.0, True), (0.5, False)])
def test_prior_jacobian_by_columns_equals_rows_and_finite_differences(shrinkage, per_start):
    model, st = _setup(shrinkage, per_start)
    cfg = CalibrationConfig(prior_weight=18.0)
    rp, J = prior_block(model, st, cfg)  # 8 parameters < 18 rows: by columns
    params = trainable_params(model)
    assert sum(p.shape[1] for p in params) == 8 and rp.shape == (3, 18) and J.shape == (3, 18, 8)
    with torch.enable_grad():  # the rows: one backward pass per residual (every start at once)
        r = st.residuals(model)
        ref = torch.stack([torch.cat(torch.autograd.grad(r[:, i].sum(), params, retain_graph=True), 1)
                           for i in range(r.shape[1])], 1)
    torch.testing.assert_close(rp, r.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(J, ref, rtol=1e-12, atol=1e-12)
    # central differences in each parameter, all starts at once
    h = 1e-6
    col = 0
    for p in params:
        for j in range(p.shape[1]):
            with torch.no_grad():
                p[:, j] += h
                up = st.residuals(model)
                p[:, j] -= 2 * h
                dn = st.residuals(model)
                p[:, j] += h
            torch.testing.assert_close(J[:, :, col], (up - dn) / (2 * h), rtol=1e-6, atol=1e-6)
            col += 1
    assert float(J.abs().sum()) > 0
