"""``CalibratedTwin``: the result of a calibration and the object every use of the twin starts from.

Attributes (scikit-learn style, trailing underscore = learnt): ``materials_`` (per object: eps_r, sigma [S/m],
S, K_xpd), ``uncertainty_`` (per object: posterior stds, or MCMC summaries with ``--posterior mcmc``),
``history_`` (optimiser history), ``heldout_`` (the held-out check of calibration as inference). Methods:
``predict(links)``, ``radio_map(tx)``, the downstream uses ``beam_gains``, ``update`` (dynamic scenes),
``export_dataset`` and ``ris``, ``save(dir)`` (all outputs through a staging folder, with ``spec.json`` beside
them) and ``CalibratedTwin.load(dir)``.

Folder layout: per-object models write ``scene.xml`` (+ meshes) with the calibrated materials, ``materials.json``,
``calibration.json``, ``report.md``, ``fit.csv``, ``history.csv``, ``convergence.png`` (+ ``library.json`` for
inference, ``mpc_matches.csv`` with MPCs, ``posterior.json`` with MCMC); field models write ``field.json`` /
``field.pt`` (a field folder that ``rftwin predict`` and ``rftwin materials-map`` read), ``scene.xml`` with the
prior materials, ``calibration.json``, ``fit.csv``, ``history.csv`` and ``maps/<object>/`` (eps_r, sigma and |R|
maps of every object's largest face).

The scene is never changed: a fitted twin keeps the scene it was given and traces at ``trace_materials`` (the
calibrated values; for a field the label materials it was trained on), passed to the tracer as an argument or
applied only for the duration of a downstream call (:mod:`rftwin.scene.scene_materials`). A loaded twin's
``scene.xml`` holds those values already.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from rftwin.calibrate.spec import CalibrationSpec
from rftwin.scene.load import TwinScene

SPEC_FILE = "spec.json"
SUMMARY_FILE = "calibration.json"
LIBRARY_FILE = "library.json"
MPC_MATCHES = "mpc_matches.csv"
POSTERIOR_FILE = "posterior.json"
MAPS_DIR = "maps"


def calibration_summary(res, names: list[str]) -> dict:
    """What a run fitted and how: loss terms, gain offset (never absorbed by the materials), traced mechanisms,
    and per object the calibrated values with their Laplace std (None where not computed)."""
    u = res.uncertainty

    def std(attr: str, i: int):
        v = None if u is None else getattr(u, attr)
        return None if v is None else float(v[i])

    objs = {}
    for i, n in enumerate(names):
        rec = {"relative_permittivity": float(res.eps_r[i]), "relative_permittivity_std": std("eps_std", i),
               "conductivity": float(res.sigma[i]), "conductivity_std": std("sigma_std", i)}
        if res.scattering is not None:
            rec.update(scattering_coefficient=float(res.scattering[i]),
                       scattering_coefficient_std=std("scattering_std", i))
        if res.xpd is not None:
            rec.update(xpd_coefficient=float(res.xpd[i]), xpd_coefficient_std=std("xpd_std", i))
        objs[n] = rec
    return {"model": "per-object", "fit": list(res.fit), "loss_terms": res.terms, "loss": res.loss,
            "offset_mode": res.offset_mode, "offset_db": res.offset_db, "iterations": res.iterations,
            "seconds": res.seconds, "converged": res.converged, "resumed_at_iteration": res.resumed_at,
            "traced_mechanisms": res.mechanisms, "path_changes": res.path_changes,
            "noise": None if u is None else u.noise,
            "inference": res.inference, "objects": objs}


@dataclass
class CalibratedTwin:
    """A calibrated twin (see the module docstring). Built by :class:`rftwin.twin.Calibrator` (then the fit's
    internals - result, paths, targets - are kept for :meth:`save`) or by :meth:`load`."""

    spec: CalibrationSpec
    scene: TwinScene
    result: Any = None  # CalibrationResult (per-object / groups) or FieldTrainResult (fields)
    pathset: Any = None
    targets: Any = None
    measurements: Any = None
    labels: list[str | None] = dc_field(default_factory=list)
    frequency_hz: float = 3.5e9
    power_law: bool = False
    config: Any = None
    groups: Any = None
    setup: Any = None
    mpc: Any = None
    classes: Any = None
    samples: Any = None  # PosteriorSamples of --posterior mcmc
    field: Any = None  # MaterialField of --model fourier / hashgrid
    field_heldout: dict | None = None  # held-out check and prior strength of a field trained under the labels' prior
    document: dict | None = None  # materials.json of a loaded per-object twin
    summary_: dict | None = None
    history_: list[dict] = dc_field(default_factory=list)
    source: Path | None = None  # folder of a loaded twin
    trace_materials: Any = None  # SceneMaterials to trace the scene at (None: the scene's own, e.g. a loaded twin)

    def __post_init__(self):
        if self.result is not None:
            self.history_ = list(self.result.history)
            self.summary_ = self._summary()

    # ---- learnt values ------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return self.scene.names

    @property
    def materials_(self) -> dict[str, dict[str, float]]:
        """Per object: relative_permittivity, conductivity [S/m] (at ``frequency_hz``), scattering / xpd
        coefficients where the model has them. For a field: the mean over the object's interaction points."""
        objs = (self.summary_ or {}).get("objects", {})
        keys = ("relative_permittivity", "conductivity", "scattering_coefficient", "xpd_coefficient")
        return {n: {k: v for k, v in rec.items() if k in keys and v is not None} for n, rec in objs.items()}

    @property
    def uncertainty_(self) -> dict[str, dict[str, float]] | None:
        """Per object: posterior stds (``*_std``; Laplace), or with MCMC the draws' summary per quantity."""
        if self.samples is not None:
            out: dict[str, dict[str, float]] = {}
            for row in self.samples.summary():
                out.setdefault(row["object"], {}).update(
                    {f"{row['quantity']}_{k}": v for k, v in row.items() if k not in ("object", "quantity")})
            return out
        objs = (self.summary_ or {}).get("objects", {})
        stds = {n: {k: v for k, v in rec.items() if k.endswith("_std") and v is not None} for n, rec in objs.items()}
        return stds if any(stds.values()) else None

    @property
    def heldout_(self) -> dict | None:
        """Held-out error of the label twin and of the calibrated twin per term, and the verdict."""
        inf = (self.summary_ or {}).get("inference") or {}
        return inf.get("heldout")

    def materials_document(self) -> dict | None:
        """The ``materials.json`` document of a per-object twin (None for a field)."""
        if self.field is not None:
            return None
        if self.document is not None:
            return self.document
        from rftwin.twin_io import materials_document  # noqa: PLC0415

        res, u = self.result, self.result.uncertainty
        return materials_document(self.scene, res.eps_r, res.sigma, self.frequency_hz,
                                  res.power_law if self.power_law else None, u.eps_std if u else None,
                                  u.sigma_std if u else None, self.labels,
                                  scattering_std=u.scattering_std if u else None, xpd_std=u.xpd_std if u else None,
                                  scattering=res.scattering, xpd=res.xpd)

    def _summary(self) -> dict:
        if self.field is None:
            s = calibration_summary(self.result, self.names)
            if self.groups is not None:
                s["groups"] = self.groups.table(self.names)
            if self.classes is not None and self.spec.prior.kind in ("text", "vlm"):
                s["prior_classes"] = {n: {"class": c, "source": src} for n, c, src in
                                      zip(self.names, self.classes.classes, self.classes.source)}
                s["prior_notes"] = self.classes.notes
            if self.samples is not None:
                s["posterior"] = {"method": "mcmc", "converged": self.samples.converged}
            return s
        from rftwin.fields.evaluate import field_values, interaction_points  # noqa: PLC0415

        res = self.result
        pts, obj = interaction_points(self.pathset)
        objs = {}
        if len(pts):
            e, s = field_values(self.field, pts, obj, [self.frequency_hz])
            o = obj.numpy()
            for k, n in enumerate(self.names):
                m = o == k
                if m.any():
                    objs[n] = {"relative_permittivity": float(e[0][m].mean()), "conductivity": float(s[0][m].mean()),
                               "relative_permittivity_range": [float(e[0][m].min()), float(e[0][m].max())],
                               "conductivity_range": [float(s[0][m].min()), float(s[0][m].max())],
                               "interaction_points": int(m.sum())}
        inference = None
        if self.field_heldout is not None:
            inference = {"heldout": self.field_heldout, "verdict": self.field_heldout.get("verdict"),
                         "prior_strength": self.field_heldout.get("prior_strength"),
                         "reverted_to_labels": self.field_heldout["reverted_to_labels"]}
        return {"model": self.spec.model.kind, "loss": res.loss, "rmse_db": res.rmse_db, "offset_db": res.offset_db,
                "inference": inference,
                "adam_iterations": res.adam_iterations, "lbfgs_iterations": res.lbfgs_iterations,
                "seconds": res.seconds, "interrupted": res.interrupted, "objects": objs,
                "note": "field values per object: mean (and range) over the object's interaction points at "
                        f"{self.frequency_hz / 1e9:g} GHz"}

    # ---- uses ------------------------------------------------------------------------------------------------
    def predict(self, links, *, progress: bool = True, cache_dir=None, **kw) -> pd.DataFrame:
        """Per-link features (path gain [dB], delays [s], delay spread, K-factor, angular spreads) of ``links``:
        a links file (CSV / Parquet: link_id, tx_x..rx_z, frequency_hz) or a DataFrame with those columns.
        Further keywords go to :func:`rftwin.predict.predict.predict_channels` (wideband, arrays, workers ...)."""
        import pandas as pd  # noqa: PLC0415 - pandas only where a table is made (0.4 s to import)

        from rftwin.data import read_links  # noqa: PLC0415
        from rftwin.predict.predict import predict_channels  # noqa: PLC0415

        if isinstance(links, pd.DataFrame):
            tx = links[["tx_x", "tx_y", "tx_z"]].to_numpy(np.float64)
            rx = links[["rx_x", "rx_y", "rx_z"]].to_numpy(np.float64)
            f = links["frequency_hz"].to_numpy(np.float64)
            df = links.reset_index(drop=True).copy()
        else:
            lk = read_links(links, self.scene)
            tx, rx, f, df = lk.tx_pos, lk.rx_pos, lk.frequency_hz, lk.df.copy()
        kw.setdefault("memory_budget", self.spec.solver.budget_bytes())
        kw.setdefault("materials", self.trace_materials)
        pred = predict_channels(self.scene, self.materials_document(), tx, rx, f, self.spec.solver.settings(),
                                progress=progress, cache_dir=cache_dir, field=self.field, **kw)
        for c in pred.table.columns:
            df[c] = pred.table[c].to_numpy()
        return df

    def radio_map(self, tx_pos, *, frequency_hz: float | None = None, **kw):
        """Radio map (:func:`rftwin.evaluate.radiomap.compute_radio_map`) of transmitter(s) ``tx_pos`` [3] or
        [T, 3] at the calibrated materials. Per-object models only: Sionna's radio-map solver takes one material
        per object, which a field is not."""
        if self.field is not None:
            raise ValueError(f"radio maps need per-object materials; this twin is a {self.spec.model.kind} field "
                             "(predict links on a grid instead)")
        from rftwin.evaluate.radiomap import compute_radio_map  # noqa: PLC0415

        return compute_radio_map(self.scene, self.materials_document(), tx_pos,
                                 frequency_hz or self.frequency_hz, **kw)

    def _at_materials(self):
        """Context in which the scene has ``trace_materials`` (restored on exit), for the downstream uses that
        trace the scene themselves."""
        from rftwin.scene.scene_materials import applied_materials  # noqa: PLC0415

        return applied_materials(self.scene, self.trace_materials)

    def _per_object(self, use: str) -> dict | None:
        """The materials document for a use that needs one material per object (refused for a field)."""
        if self.field is not None:
            raise ValueError(f"{use} needs per-object materials; this twin is a {self.spec.model.kind} field")
        return self.materials_document()

    def beam_gains(self, tx_pos, rx_pos, frequency_hz, tx_array, rx_array, tx_codebook, rx_codebook, **kw):
        """Every beam pair's gain per link (:func:`rftwin.predict.beams.beam_pair_gains`) at the calibrated
        materials; pick beams and throughput with :func:`rftwin.predict.beams.select_beams`."""
        from rftwin.predict.beams import beam_pair_gains  # noqa: PLC0415

        kw.setdefault("settings", self.spec.solver.settings())
        doc = self._per_object("beam selection")
        with self._at_materials():
            return beam_pair_gains(self.scene, doc, np.asarray(tx_pos), np.asarray(rx_pos),
                                   np.asarray(frequency_hz), tx_array, rx_array, tx_codebook, rx_codebook, **kw)

    def update(self, tx_pos, rx_pos, frequency_hz, proxy, times_s, positions, **kw):
        """Move a proxy mesh through the twin and track links (:func:`rftwin.dynamic.update.run_update`; by default
        the exact image-method update, ``method="region"`` with diffraction)."""
        from rftwin.dynamic.update import run_update  # noqa: PLC0415

        kw.setdefault("settings", self.spec.solver.settings())
        doc = self._per_object("a dynamic update")
        with self._at_materials():
            return run_update(self.scene, doc, np.asarray(tx_pos), np.asarray(rx_pos), np.asarray(frequency_hz),
                              proxy, np.asarray(times_s), np.asarray(positions), **kw)

    def export_dataset(self, spec, out: str | os.PathLike, **kw):
        """A synthetic dataset from the twin (:func:`rftwin.dataset.export.export_dataset`)."""
        from rftwin.dataset.export import export_dataset  # noqa: PLC0415

        kw.setdefault("twin_ref", str(self.source or ""))
        doc = self._per_object("dataset export")
        with self._at_materials():
            return export_dataset(self.scene, doc, spec, out, **kw)

    def ris(self, tx, ids, poses, points, ris_spec, frequency_hz: float | None = None, **kw):
        """Rank RIS candidates focused on a target area (:func:`rftwin.ris.workflow.run_ris`)."""
        from rftwin.ris.workflow import run_ris  # noqa: PLC0415

        doc = self._per_object("RIS planning")
        with self._at_materials():
            return run_ris(self.scene, doc, np.asarray(tx), ids, poses, points, ris_spec,
                           frequency_hz or self.frequency_hz, kw.pop("settings", self.spec.solver.settings()), **kw)

    # ---- files -----------------------------------------------------------------------------------------------
    def save(self, out: str | os.PathLike) -> Path:
        """Write every output into ``out`` through a staging folder (all files appear together, or none)."""
        from rftwin.io import staged_dir  # noqa: PLC0415

        out = Path(out)
        with staged_dir(out) as stage:
            if self.result is None:  # a loaded twin: copy its folder
                shutil.copytree(self.source, stage, dirs_exist_ok=True)
                return out
            self.spec.write(stage / SPEC_FILE)
            if self.field is not None:
                self._save_field(stage)
            else:
                self._save_materials(stage)
        return out

    def _save_materials(self, stage: Path) -> None:
        from rftwin.calibrate.inference import material_library  # noqa: PLC0415
        from rftwin.io import write_json, write_table  # noqa: PLC0415
        from rftwin.report import write_calibration_outputs  # noqa: PLC0415

        write_calibration_outputs(stage, self.scene, self.result, self.pathset, self.targets, self.measurements,
                                  self.labels, self.frequency_hz, self.power_law, self.config)
        if self.mpc is not None:
            table, self.summary_["mpc"] = self.mpc.outputs(self.pathset, self.result)
            write_table(stage / MPC_MATCHES, table)
        write_json(stage / SUMMARY_FILE, self.summary_)
        if self.setup is not None:
            write_json(stage / LIBRARY_FILE, material_library(self.result, self.setup, self.frequency_hz))
        if self.samples is not None:
            write_json(stage / POSTERIOR_FILE, self.samples.to_dict())

    def _save_field(self, stage: Path) -> None:
        import pandas as pd  # noqa: PLC0415
        import torch  # noqa: PLC0415

        from rftwin.fields.evaluate import field_values  # noqa: PLC0415
        from rftwin.fields.io import save_field  # noqa: PLC0415
        from rftwin.fields.maps import build_map, object_mesh, write_map  # noqa: PLC0415
        from rftwin.fields.surface import surface_grid  # noqa: PLC0415
        from rftwin.io import write_json, write_table  # noqa: PLC0415
        from rftwin.physics.channel import path_gain, to_db  # noqa: PLC0415
        from rftwin.physics.engine import path_coefficients  # noqa: PLC0415
        from rftwin.scene.export import export_scene  # noqa: PLC0415
        from rftwin.scene.scene_materials import resolve_materials  # noqa: PLC0415

        sc = self.scene
        tm = resolve_materials(sc, self.trace_materials)  # [K, 5] thickness, eps_r, sigma, S, K_xpd (traced at)
        export_scene(sc, stage, {o.name: {"relative_permittivity": float(v[1]), "conductivity": float(v[2]),
                                          "thickness": float(v[0]), "scattering_coefficient": float(v[3]),
                                          "xpd_coefficient": float(v[4])} for o, v in zip(sc.objects, tm)})
        save_field(stage, self.field, self.names, scene=str(stage / "scene.xml"),
                   extra={"train": {k: v for k, v in self.summary_.items() if k != "objects"}})
        meshes = sc.meshes()
        for k, name in enumerate(self.names):
            v, fc = object_mesh(meshes, sc.names, name)
            grid = surface_grid(v, fc, self.spec.model.map_spacing)
            e, s = field_values(self.field, grid.points, torch.full((len(grid.points),), k, dtype=torch.long),
                                [self.frequency_hz])
            m = build_map(name, grid, e[0], s[0], self.frequency_hz, float(self.field.thickness[k]), 0.0)
            write_map(m, stage / MAPS_DIR / _safe(name))
        t, ps = self.targets, self.pathset
        with torch.no_grad():
            f = t.frequencies_hz
            a = path_coefficients(ps, self.field(ps, f), f, check=False)
            g = to_db(path_gain(a, ps.link, ps.num_links))[0][t.freq_index, t.link].numpy()
        fit = self.measurements.to_frame().copy()
        fit["fitted_path_gain_db"] = g + self.result.offset_db
        fit["residual_db"] = fit["fitted_path_gain_db"] - self.measurements.path_gain_db
        write_table(stage / "fit.csv", fit)
        write_table(stage / "history.csv", pd.DataFrame(self.history_))
        if self.history_:
            _loss_png(self.history_, stage / "convergence.png")
        write_json(stage / SUMMARY_FILE, self.summary_)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> CalibratedTwin:
        """A twin written by :meth:`save` (``spec.json`` beside the outputs; without one, the default spec)."""
        import pandas as pd  # noqa: PLC0415

        from rftwin.fields.io import is_field_folder, load_field  # noqa: PLC0415
        from rftwin.twin_io import load_twin  # noqa: PLC0415

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such twin folder")
        spec = CalibrationSpec.read(folder / SPEC_FILE) if (folder / SPEC_FILE).is_file() else CalibrationSpec()
        summary = None
        if (folder / SUMMARY_FILE).is_file():
            try:
                summary = json.loads((folder / SUMMARY_FILE).read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{folder / SUMMARY_FILE}: invalid JSON: {exc}") from None
        hist: list[dict] = []
        if (folder / "history.csv").is_file():
            try:
                hist = pd.read_csv(folder / "history.csv").to_dict("records")
            except pd.errors.EmptyDataError:  # no iteration (e.g. an untrained field)
                hist = []
        scene, doc = load_twin(folder)
        fld = None
        f_ref = float((doc or {}).get("reference_frequency_hz", 3.5e9))
        if is_field_folder(folder):
            fld, _ = load_field(folder)
            f_ref = fld.reference_frequency_hz
        scene.set_frequency(f_ref)
        return cls(spec=spec, scene=scene, frequency_hz=f_ref, field=fld, document=doc, summary_=summary,
                   history_=hist, source=folder)


def _loss_png(history: list[dict], path: Path) -> None:
    """Training curve of a field: path-gain RMSE [dB] per iteration."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.semilogy([r["iteration"] for r in history], [max(r["rmse_db"], 1e-6) for r in history])
    ax.set_xlabel("iteration")
    ax.set_ylabel("path-gain RMSE [dB]")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _safe(name: str) -> str:
    """A folder name for an object name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "object"
