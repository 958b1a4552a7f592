"""Hierarchical label prior (--shrinkage): objects of one class share a class value and deviate from it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rftwin.calibrate.objectives import PriorStats
from rftwin.cli.main import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("rho", [0.3, 0.9])
def test_whitening_gives_the_mahalanobis_distance(rho):
    """|w|^2 = z^T Sigma^-1 z with Sigma = (1 - rho) I + rho 1 1^T inside every class block (per start)."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 7, generator=g, dtype=torch.float64)
    classes = torch.tensor([[0, 0, 1, 2, 1, 0, 3], [1, 1, 1, 0, 0, 2, 2], [0, 1, 2, 3, 4, 5, 6]])
    st = PriorStats({}, {}, 3.5e9, shrinkage=rho)
    w = st.whiten(z, classes)
    for b in range(3):
        same = (classes[b][:, None] == classes[b][None, :]).to(torch.float64)
        sigma = (1 - rho) * torch.eye(7, dtype=torch.float64) + rho * same
        maha = z[b] @ torch.linalg.solve(sigma, z[b])
        torch.testing.assert_close((w[b] ** 2).sum(), maha)
    torch.testing.assert_close(w[2], z[2])  # every object its own class: nothing changes


def test_shrinkage_pools_the_objects_of_a_class(tmp_path):
    """The room's five brick surfaces from six links: with a strong within-class correlation their calibrated
    values lie closer together than with independent label priors (real Sionna paths)."""
    spread = {}
    for rho in ("0", "0.9"):
        out = tmp_path / f"r{rho}"
        res = CliRunner().invoke(app, ["calibrate", "room", str(ROOT / "examples" / "measurements_v1.csv"), "--out",
                                       str(out), "--max-depth", "2", "--samples-per-src", "20000", "--retrace", "0",
                                       "--starts", "4", "--sweeps", "0", "--shrinkage", rho, "--no-label-correction",
                                       "--prior-strength", "1", "--folds", "0"])
        assert res.exit_code == 0, res.output
        objs = json.loads((out / "materials.json").read_text())["objects"]
        brick = [v for v in objs.values() if v["label"] == "brick"]
        assert len(brick) == 5
        spread[rho] = (np.std(np.log([v["relative_permittivity"] - 1 for v in brick])),
                       np.std(np.log([v["conductivity"] for v in brick])))
    assert spread["0.9"][0] < 0.6 * spread["0"][0] and spread["0.9"][1] < 0.6 * spread["0"][1], spread


def test_shrinkage_option_errors(tmp_path):
    for args, word in ((["--shrinkage", "1"], "--shrinkage"), (["--shrinkage", "0.5", "--prior", "none"], "--prior"),
                       (["--shrinkage", "0.5", "--groups", "label"], "--groups")):
        res = CliRunner().invoke(app, ["calibrate", "room", str(ROOT / "examples" / "measurements_v1.csv"), "--out",
                                       str(tmp_path / "x"), *args])
        assert res.exit_code == 2 and word in res.output, res.output
        assert not (tmp_path / "x").exists()
