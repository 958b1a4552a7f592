"""The one-pass path-gain Jacobian (per-interaction reverse mode) equals forward-mode AD and finite differences."""
import numpy as np
import pytest
import torch

import _floor_wall as fw
from rftwin.calibrate import CalibrationConfig, Targets
from rftwin.calibrate.jacobians import flat_params, forward_columns, jacobian, trainable_params
from rftwin.calibrate.objectives import residuals
from rftwin.calibrate.path_jacobian import supports
from rftwin.materials import PerObjectMaterials
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace


@pytest.fixture(scope="module")
def problem():
    twin = load("floor_wall")
    tx, rx = fw.links(6, seed=11)
    ps = trace(twin, tx, rx, SolverSettings(max_depth=3, samples_per_src=100_000), cache_dir=False, progress=False)
    L = len(tx)
    freqs = np.repeat([3.5e9, 5.2e9], L)  # two carriers: rows at both frequencies
    meas = np.concatenate([fw.sionna_gain_db(ps)] * 2) + np.random.default_rng(0).normal(0, 1, 2 * L)
    meas[3] = np.nan  # a missing row
    t = Targets.build(np.tile(np.arange(L), 2), freqs, meas)
    return twin, ps.to(dtype=torch.float64), t


def _model(twin, B, **kw):
    e0, s0 = fw.itu_materials(twin)
    rng = np.random.default_rng(B)
    return PerObjectMaterials(e0 * rng.uniform(0.8, 1.2, (B, len(e0))), s0 * rng.uniform(0.5, 2, (B, len(e0))),
                              [o.thickness_m for o in twin.objects], **kw)


@pytest.mark.parametrize("offset", ["none", "closed_form", "ema"])
@pytest.mark.parametrize("kind", ["constant", "power_law", "scattering"])
def test_one_pass_jacobian_matches_forward_mode(problem, offset, kind):
    twin, ps, t = problem
    kw = {"constant": {}, "power_law": {"power_law": True},
          "scattering": {"fit": ("eps_r", "sigma", "scattering"), "scattering": np.full(2, 0.3)}}[kind]
    model = _model(twin, 3, **kw)
    cfg = CalibrationConfig(offset="closed_form" if offset == "closed_form" else "none")
    state = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64) if offset == "ema" else None
    assert supports(cfg, model)
    params = trainable_params(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    r1, J1 = jacobian(ps, model, t, cfg, state)
    r2, cols = forward_columns(ps, model, t, cfg, state, None, names, [p.shape[1] for p in params], flat_params(params))
    J2 = cols.permute(1, 2, 0)
    assert J1.shape == J2.shape == (3, t.num, flat_params(params).shape[1])
    assert float((J1 - J2).abs().max()) <= 1e-9 * float(J2.abs().max())
    torch.testing.assert_close(r1, r2, rtol=1e-12, atol=1e-12)
    # and central finite differences of the residuals for every parameter of start 0
    theta = flat_params(params)
    h = 1e-6
    for p in range(theta.shape[1]):
        cols_fd = []
        for sgn in (1, -1):
            th = theta.clone()
            th[:, p] += sgn * h
            i = 0
            with torch.no_grad():
                for q in params:
                    q.copy_(th[:, i:i + q.shape[1]])
                    i += q.shape[1]
                cols_fd.append(residuals(ps, model, t, cfg, state))
        fd = (cols_fd[0] - cols_fd[1]) / (2 * h)
        np.testing.assert_allclose(J1[0, :, p].numpy(), fd[0].numpy(), rtol=1e-5, atol=1e-7)
        with torch.no_grad():
            i = 0
            for q in params:
                q.copy_(theta[:, i:i + q.shape[1]])
                i += q.shape[1]


def test_other_loss_terms_use_forward_mode(problem):
    twin, ps, t = problem
    from rftwin.calibrate.losses import LossTerm

    cfg = CalibrationConfig(terms=(LossTerm("path_gain", "mse_db"), LossTerm("path_gain", "mse_db", 0.5)))
    assert not supports(cfg, _model(twin, 1))


@pytest.mark.parametrize("offset", ["none", "closed_form"])
def test_lm_trial_pass_is_the_next_linearisation(problem, offset):
    """A Levenberg-Marquardt trial evaluated with ``trial_pass`` gives the objective's loss and offset bit for bit,
    and the linearisation ``lm_step`` hands to the next step (the trial's where accepted, the old one where
    rejected) equals a fresh Jacobian at the parameters the step leaves, with the prior's rows."""
    from rftwin.calibrate.bayes import ObjectPriors, prior_stats
    from rftwin.calibrate.jacobians import trial_pass
    from rftwin.calibrate.objectives import objective
    from rftwin.calibrate.optimizers import lm_step
    from rftwin.materials.class_prior import itu_table

    twin, ps, t = problem
    model = _model(twin, 4)
    cfg = CalibrationConfig(offset=offset, prior_weight=2.0)
    pst = prior_stats(ObjectPriors(twin.names, ["concrete", "brick"], itu_table(3.5e9), 3.5e9), ("eps_r", "sigma"))
    parts = {}
    loss, off, lin = trial_pass(ps, model, t, cfg, None, pst, parts)
    with torch.no_grad():
        ref_parts = {}
        ref_loss, ref_off, _ = objective(ps, model, t, cfg, None, pst, parts=ref_parts)
    assert torch.equal(loss, ref_loss) and torch.equal(off, ref_off)
    assert parts.keys() == ref_parts.keys() and all(torch.equal(parts[k], ref_parts[k]) for k in parts)
    r0, J0 = jacobian(ps, model, t, cfg, None, pst)
    r1, J1 = lin()
    assert torch.equal(r0, r1) and torch.equal(J0, J1)

    params = trainable_params(model)
    mu = torch.tensor([1e-9, 1e-3, 1.0, 1e3], dtype=torch.float64)  # bold to careful steps: some are rejected

    def evaluate(state):
        return objective(ps, model, t, cfg, state, pst)

    def trial(state):
        return trial_pass(ps, model, t, cfg, state, pst)

    current, num_res, patterns = (loss, off, lin), None, set()
    for _ in range(8):
        before = flat_params(params)
        loss, off, mu, num_res, lin = lm_step(ps, model, t, cfg, params, mu, None, pst, num_res, None, evaluate,
                                              None, current, trial)
        moved = (flat_params(params) != before).any(1)
        patterns.add(tuple(moved.tolist()))
        r_ref, J_ref = jacobian(ps, model, t, cfg, None, pst)
        r_new, J_new = lin()
        assert torch.equal(r_new, r_ref) and torch.equal(J_new, J_ref)
        with torch.no_grad():
            ref_loss, ref_off, _ = objective(ps, model, t, cfg, None, pst)
        assert torch.equal(loss, ref_loss)
        current = (loss, off, lin)
    assert any(0 < sum(p) < len(p) for p in patterns), patterns  # the merge of accepted and rejected starts ran


def test_readout_jacobian_by_copies_equals_the_batched_pass(problem, monkeypatch):
    """The material read-out Jacobian by one scalar pass over copies of the starts (small problems) equals the
    batched pass with one-hot cotangents (scenes with many objects: ``READOUT_LANES`` 0 here) bit for bit (power
    law: two frequencies); so does the Laplace delta method's read-out gradient by scalar passes."""
    import numpy as np

    from rftwin.calibrate import path_jacobian, uncertainty

    twin, ps, t = problem
    model = _model(twin, 3, power_law=True)
    cfg = CalibrationConfig(offset="closed_form")
    r1, J1 = jacobian(ps, model, t, cfg)
    single = _model(twin, 1, power_law=True)
    P = flat_params(trainable_params(single)).shape[1]
    a = torch.tensor(np.random.default_rng(1).normal(size=(P, P)))
    u1 = uncertainty.uncertainty_from_cov(single, a @ a.T / P, {"path_gain": 1.0})
    monkeypatch.setattr(path_jacobian, "READOUT_LANES", 0)
    monkeypatch.setattr(uncertainty, "SCALAR_PASSES", 0)
    r2, J2 = jacobian(ps, model, t, cfg)
    u2 = uncertainty.uncertainty_from_cov(single, a @ a.T / P, {"path_gain": 1.0})
    assert torch.equal(r1, r2) and torch.equal(J1, J2) and float(J1.abs().max()) > 0
    assert np.array_equal(u1.eps_std, u2.eps_std) and np.array_equal(u1.sigma_std, u2.sigma_std)
    assert np.all(u1.eps_std > 0)
