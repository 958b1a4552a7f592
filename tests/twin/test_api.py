"""The estimator API: CalibrationSpec (validation, files, JSON), Calibrator / CalibratedTwin, the CLI built on them
(options = spec fields, --spec reruns), field models end to end, text prior and MCMC posterior."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rftwin.calibrate.spec import CalibrationSpec, SpecError, leaf_options
from rftwin.cli.calibrate_cmd import NOT_SPEC
from rftwin.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
MEAS = ROOT / "examples" / "measurements_v1.csv"
LINKS = ROOT / "examples" / "links.csv"
SMALL = ["--max-depth", "2", "--samples-per-src", "20000", "--retrace", "0", "--starts", "4", "--sweeps", "0"]


def _cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res


# ---- spec -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("parts, option", [
    ({"prior": {"noise_db": 0.0}}, "--noise-db"),
    ({"model": {"kind": "voxels"}}, "--model"),
    ({"model": {"fit": ("eps_r", "mu")}}, "--fit"),
    ({"model": {"kind": "groups"}}, "--groups"),
    ({"optimiser": {"optimizer": "adam"}}, "--optimizer"),  # the posterior is fitted by LM
    ({"prior": {"posterior": "mcmc"}, "model": {"groups": "label"}}, "--posterior mcmc"),
    ({"prior": {"folds": 1}}, "--folds"),
    ({"supervision": {"terms": "path_gain,cfr:nmse:1"}}, "--wideband"),
    ({"solver": {"memory_budget": "lots"}}, "--memory-budget"),
    ({"prior": {"images": ("a.png",)}}, "--images"),
])
def test_spec_errors_name_the_option(parts, option):
    with pytest.raises(SpecError, match=option.replace("-", r"\-")):
        CalibrationSpec().replace(**parts)


def test_spec_round_trip_and_relative_files(tmp_path):
    (tmp_path / "sub").mkdir()
    doc = {"format": 1, "prior": {"labels": "labels.yaml", "noise_db": 1.5}, "model": {"fit": ["eps_r"]},
           "solver": {"max_depth": 2}}
    (tmp_path / "sub" / "spec.json").write_text(json.dumps(doc))
    spec = CalibrationSpec.read(tmp_path / "sub" / "spec.json")
    assert spec.path(spec.prior.labels) == tmp_path.resolve() / "sub" / "labels.yaml"  # against the spec's folder
    assert spec.model.fit == ("eps_r",) and spec.solver.max_depth == 2 and spec.prior.noise_db == 1.5
    spec.write(tmp_path / "again.json")
    back = CalibrationSpec.read(tmp_path / "again.json")
    assert back.to_dict() == spec.to_dict()  # files stored absolute: the same wherever the copy lives
    assert back.path(back.prior.labels) == tmp_path.resolve() / "sub" / "labels.yaml"


@pytest.mark.parametrize("doc, message", [
    ({"prior": {"nosie_db": 1.0}}, r"prior: unknown keys \['nosie_db'\]"),
    ({"model": {"starts": "many"}}, r"model.starts: expected a number"),
    ({"solver": {"los": 1}}, r"solver.los: expected true or false"),
    ({"format": 9}, "format 9"),
    ([], "expected a JSON object"),
])
def test_spec_file_errors_name_file_and_key(tmp_path, doc, message):
    p = tmp_path / "spec.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(SpecError, match=message) as exc:
        CalibrationSpec.read(p)
    assert str(p) in str(exc.value)


def test_cli_options_are_the_spec_fields():
    """Every leaf of the spec is an option of ``rftwin calibrate`` and every option is a leaf (or NOT_SPEC)."""
    import typer.main

    cmd = typer.main.get_command(app).commands["calibrate"]
    params = {p.name for p in cmd.params}
    leaves = {o[2:].replace("-", "_") for o in leaf_options()}
    assert leaves <= params, sorted(leaves - params)
    assert params - leaves <= set(NOT_SPEC), sorted(params - leaves - set(NOT_SPEC))


def test_bad_spec_option_writes_nothing(tmp_path):
    res = _cli("calibrate", "room", MEAS, "--out", tmp_path / "o", "--prior", "labels", "--optimizer", "adam")
    assert res.exit_code == 2 and "--optimizer" in res.output
    assert not (tmp_path / "o").exists()


# ---- API and CLI agree; --spec reruns --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def per_object(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    res = _cli("calibrate", "room", MEAS, "--out", d / "cli", *SMALL)
    assert res.exit_code == 0, res.output
    return d


def test_calibrator_api_equals_cli(per_object):
    from rftwin.twin import CalibratedTwin, Calibrator, Twin

    spec = CalibrationSpec.read(per_object / "cli" / "spec.json")
    cal = Calibrator(spec).fit(Twin.load("room"), MEAS, progress=False)
    assert set(cal.materials_) == set(cal.names)
    assert cal.heldout_ is not None and "path_gain" in cal.heldout_["features"]
    assert cal.history_
    cal.save(per_object / "api")
    a = json.loads((per_object / "api" / "materials.json").read_text())
    b = json.loads((per_object / "cli" / "materials.json").read_text())
    for n in cal.names:
        assert a["objects"][n]["relative_permittivity"] == pytest.approx(b["objects"][n]["relative_permittivity"],
                                                                         rel=1e-9)
        assert a["objects"][n]["conductivity"] == pytest.approx(b["objects"][n]["conductivity"], rel=1e-9)
    back = CalibratedTwin.load(per_object / "api")
    assert back.spec.to_dict() == spec.to_dict()
    assert back.materials_ == cal.materials_
    pred = back.predict(LINKS, progress=False)
    res = _cli("predict", per_object / "api", LINKS, "--out", per_object / "p.csv", "--max-depth", "2",
               "--samples-per-src", "20000")
    assert res.exit_code == 0, res.output
    ref = pd.read_csv(per_object / "p.csv", comment="#")
    np.testing.assert_allclose(pred["path_gain_db"], ref["path_gain_db"], atol=1e-9)


def test_spec_rerun_reproduces_and_options_override(per_object):
    out = per_object / "rerun"
    res = _cli("calibrate", "room", MEAS, "--out", out, "--spec", per_object / "cli" / "spec.json", "--prior-strength",
               "4")
    assert res.exit_code == 0, res.output
    spec = json.loads((out / "spec.json").read_text())
    assert spec["solver"]["max_depth"] == 2 and spec["optimiser"]["retrace"] == 0  # from the file
    assert spec["prior"]["strength"] == 4.0  # from the command line
    inf = json.loads((out / "calibration.json").read_text())["inference"]
    assert inf["prior_strength"] == 4.0


# ---- field models end to end ----------------------------------------------------------------------------------
def test_untrained_field_twin_predicts_like_the_labels(tmp_path):
    """A field with no training equals the per-object label prior everywhere: its twin predicts what the label
    scene predicts (through the field folder ``rftwin predict`` reads)."""
    out = tmp_path / "f0"
    res = _cli("calibrate", "room", MEAS, "--out", out, "--model", "fourier", "--field-iterations", "0",
               "--field-lbfgs", "0", "--max-depth", "2", "--samples-per-src", "20000", "--map-spacing", "0.5")
    assert res.exit_code == 0, res.output
    common = ["--max-depth", "2", "--samples-per-src", "20000"]
    assert _cli("predict", out, LINKS, "--out", tmp_path / "f.csv", *common).exit_code == 0
    assert _cli("predict", "room", LINKS, "--out", tmp_path / "l.csv", *common).exit_code == 0
    f, lab = (pd.read_csv(tmp_path / n, comment="#")["path_gain_db"] for n in ("f.csv", "l.csv"))
    np.testing.assert_allclose(f, lab, atol=1e-6)


def test_hashgrid_model_trains_and_writes_maps(tmp_path):
    out = tmp_path / "hg"
    res = _cli("calibrate", "room", MEAS, "--out", out, "--model", "hashgrid", "--field-iterations", "150",
               "--field-lbfgs", "10", "--max-depth", "2", "--samples-per-src", "20000", "--map-spacing", "0.5",
               "--prior", "none")
    assert res.exit_code == 0, res.output
    assert (out / "field.json").is_file() and (out / "field.pt").is_file() and (out / "spec.json").is_file()
    for obj in ("floor", "wall_east", "box_wood"):
        for f in ("eps_r.png", "sigma.png", "material_map.csv"):
            assert (out / "maps" / obj / f).is_file()
    fit = pd.read_csv(out / "fit.csv", comment="#")
    hist = pd.read_csv(out / "history.csv")
    assert np.sqrt(np.mean(fit["residual_db"] ** 2)) < hist["rmse_db"].iloc[0]  # training reduced the error
    summary = json.loads((out / "calibration.json").read_text())
    assert summary["model"] == "hashgrid" and set(summary["objects"]) <= set(json.loads(
        (out / "field.json").read_text())["object_names"])


def test_field_under_the_labels_prior_has_the_heldout_proof(tmp_path):
    """A field trained as inference: prior strength by K-fold CV over the grid, held-out error of the label twin
    and of the field, and the field kept at the labels when it predicts held-out links worse."""
    from rftwin.fields.prior import STRENGTHS

    out = tmp_path / "fp"
    res = _cli("calibrate", "room", MEAS, "--out", out, "--model", "fourier", "--field-iterations", "60",
               "--field-lbfgs", "5", "--max-depth", "2", "--samples-per-src", "20000", "--map-spacing", "0.5",
               "--folds", "3")
    assert res.exit_code == 0, res.output
    inf = json.loads((out / "calibration.json").read_text())["inference"]
    ho = inf["heldout"]
    assert ho["folds"] == 3 and set(ho["strengths"]) == {str(x) for x in STRENGTHS}
    assert inf["prior_strength"] in STRENGTHS
    pg = ho["features"]["path_gain"]
    assert pg["calibrated_rmse"] == pytest.approx(min(ho["strengths"].values()))
    assert inf["verdict"] in ("improves", "no_difference", "worse") and "held-out path_gain" in res.output
    # the paired test: worse (and reverted) only beyond 2 standard errors of the paired difference
    assert inf["reverted_to_labels"] == (inf["verdict"] == "worse")
    assert (inf["verdict"] == "worse") == (pg["mse_difference"] > 2 * pg["mse_difference_se"])


# ---- priors from text, MCMC posterior ---------------------------------------------------------------------------
def test_text_prior_and_mcmc_posterior(tmp_path):
    out = tmp_path / "t"
    res = _cli("calibrate", "room", MEAS, "--out", out, *SMALL, "--prior", "text", "--posterior", "mcmc",
               "--posterior-samples", "100")
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "calibration.json").read_text())
    classes = summary["prior_classes"]
    assert classes["box_concrete"]["class"] == "concrete" and classes["box_wood"]["class"] == "wood"
    post = json.loads((out / "posterior.json").read_text())
    assert post["samples_per_chain"] == 100 and all(np.isfinite(p["rhat"]) for p in post["parameters"])
    assert {m["object"] for m in post["materials"]} == set(summary["objects"])


def test_downstream_uses_start_from_the_calibrated_twin(per_object, tmp_path):
    """CalibratedTwin.beam_gains equals the library call on the twin folder's scene and materials; a field twin
    refuses per-object uses with a clear message."""
    from rftwin.physics.arrays import ArraySpec
    from rftwin.predict.beams import CodebookSpec, beam_pair_gains
    from rftwin.twin import CalibratedTwin
    from rftwin.twin_io import load_twin

    cal = CalibratedTwin.load(per_object / "cli")
    tx = np.array([[0.0, 0.0, 2.5], [0.0, 0.0, 2.5]])
    rx = np.array([[2.0, -1.0, 1.5], [-3.0, 2.0, 1.2]])
    f = np.full(2, 3.5e9)
    args = (ArraySpec(2, 2), ArraySpec(1, 2), CodebookSpec("dft"), CodebookSpec("dft"))
    got = cal.beam_gains(tx, rx, f, *args, progress=False)
    scene, doc = load_twin(per_object / "cli")
    ref = beam_pair_gains(scene, doc, tx, rx, f, *args, settings=cal.spec.solver.settings(), progress=False)
    np.testing.assert_allclose(got.gain_db, ref.gain_db, atol=1e-9)
    res = _cli("calibrate", "room", MEAS, "--out", tmp_path / "f", "--model", "fourier", "--field-iterations", "0",
               "--field-lbfgs", "0", "--max-depth", "2", "--samples-per-src", "20000", "--map-spacing", "0.5",
               "--prior", "none")
    assert res.exit_code == 0, res.output
    fld = CalibratedTwin.load(tmp_path / "f")
    with pytest.raises(ValueError, match="per-object materials"):
        fld.beam_gains(tx, rx, f, *args)
    with pytest.raises(ValueError, match="per-object materials"):
        fld.radio_map([0.0, 0.0, 2.5])
