"""Per-object material parameterisation (torch.nn.Module) with positivity by construction.

Constant model: eps_r = 1 + exp(u), sigma = exp(v) per object.
Power-law model (ITU-R P.2040 form): eps_r = a f_GHz^b with a = exp(alpha) (floored at 1),
sigma = c f_GHz^d with c = exp(gamma). Optional diffuse-reflection parameters (seed 003 eq. 22):
scattering coefficient S = sigmoid(w_s) and cross-polarisation K_xpd = sigmoid(w_x), frequency independent.
A leading batch dimension B holds independent starts.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from rftwin.materials.itu import itu_eps_sigma, itu_mean, itu_power_law
from rftwin.materials.roughness import scattering_prior
from rftwin.physics.engine import MaterialValues

INIT_STRATEGIES = ("label", "uniform", "random")
FIT_QUANTITIES = ("eps_r", "sigma", "scattering", "xpd")
DEFAULT_SCATTERING = 0.2  # S start when S is fitted without a prior value (mid of seed 002's Table 2)
DEFAULT_XPD = 0.1  # K_xpd start when K_xpd is fitted without a prior value
_UNIT_EPS = 1e-6  # S and K_xpd are kept inside [_UNIT_EPS, 1 - _UNIT_EPS] when inverting the sigmoid


def logit(x: np.ndarray) -> np.ndarray:
    """Inverse of the sigmoid read-out, with x clipped to [1e-6, 1 - 1e-6]."""
    x = np.clip(np.asarray(x, dtype=np.float64), _UNIT_EPS, 1.0 - _UNIT_EPS)
    return np.log(x) - np.log1p(-x)


def unit_range(value: np.ndarray, half_width: float = 2.0) -> np.ndarray:
    """Default prior range [K, 2] of a quantity in (0, 1): logit(value) -+ ``half_width``, back through the
    sigmoid (0.2 -> [0.033, 0.65])."""
    w = logit(value)
    return np.stack([1.0 / (1.0 + np.exp(-(w - half_width))), 1.0 / (1.0 + np.exp(-(w + half_width)))], -1)


@dataclass
class MaterialPrior:
    """Initial per-object values at ``frequency_hz`` and the prior range used for multi-start draws."""

    eps_r: np.ndarray  # [K]
    sigma: np.ndarray  # [K] S/m
    eps_range: np.ndarray  # [K, 2]
    sigma_range: np.ndarray  # [K, 2]
    power_law: np.ndarray | None = None  # [K, 4] (a, b, c, d) when known
    frequency_hz: float = 3.5e9
    scattering: np.ndarray | None = None  # [K] scattering coefficient S in [0, 1] (None: not part of the prior)
    scattering_range: np.ndarray | None = None  # [K, 2]
    xpd: np.ndarray | None = None  # [K] cross-polarisation coefficient K_xpd in [0, 1]
    xpd_range: np.ndarray | None = None  # [K, 2]
    roughness: list[str | None] | None = None  # roughness class per object the S prior came from (provenance)

    @property
    def num_objects(self) -> int:
        return len(self.eps_r)


def with_scattering(prior: MaterialPrior, scattering: Sequence[float] | float | None = None,
                    xpd: Sequence[float] | float | None = None, scattering_range: np.ndarray | None = None,
                    xpd_range: np.ndarray | None = None) -> MaterialPrior:
    """A copy of ``prior`` with S and/or K_xpd values per object (scalars broadcast) and their ranges
    (default :func:`unit_range`). Arguments left None keep the prior's entry."""
    K = prior.num_objects
    kw = {}
    for name, val, rng in (("scattering", scattering, scattering_range), ("xpd", xpd, xpd_range)):
        if val is None:
            continue
        v = np.broadcast_to(np.asarray(val, dtype=np.float64), (K,)).copy()
        if np.any(~np.isfinite(v)) or np.any(v < 0) or np.any(v > 1):
            raise ValueError(f"{name} values must lie in [0, 1], got {v.tolist()}")
        r = unit_range(v) if rng is None else np.asarray(rng, dtype=np.float64).reshape(K, 2)
        kw[name], kw[f"{name}_range"] = v, r
    return replace(prior, **kw)


def with_roughness(prior: MaterialPrior, classes: Sequence[str | int | float | None],
                   default: float | None = None) -> MaterialPrior:
    """S prior per object from its surface-roughness class (seed 002 Table 2, :mod:`rftwin.materials.roughness`):
    a class name (``"rough"``), level (1-5), example surface (``"brick"``) or an Ra value in micrometres (float).

    The prior value is the interval midpoint and the prior range the interval itself. Objects whose class is
    None keep the prior's S (or get ``default``, else :data:`DEFAULT_SCATTERING`, with :func:`unit_range`).
    """
    K = prior.num_objects
    if len(classes) != K:
        raise ValueError(f"{len(classes)} roughness classes given for {K} objects")
    s0 = np.full(K, DEFAULT_SCATTERING if default is None else float(default)) if prior.scattering is None \
        else np.asarray(prior.scattering, dtype=np.float64).copy()
    r0 = unit_range(s0) if prior.scattering_range is None else np.asarray(prior.scattering_range).copy()
    names: list[str | None] = []
    for i, c in enumerate(classes):
        if c is None:
            names.append(None)
            continue
        mean, (lo, hi) = scattering_prior(c)
        s0[i], r0[i] = mean, (lo, hi)
        names.append(str(c))
    return replace(prior, scattering=s0, scattering_range=r0, roughness=names)


def prior_from_labels(labels: Sequence[str | None], frequency_hz: float, fallback_eps: Sequence[float] | None = None,
                      fallback_sigma: Sequence[float] | None = None, strategy: str = "label",
                      seed: int = 0) -> MaterialPrior:
    """Initial values per object.

    ``label``: the ITU value of each object's label (objects without a label use the fallback, i.e. the
    scene's own values); ``uniform``: the mean over ITU dielectrics for every object; ``random``: sigma ~
    U[0.01, 0.06] S/m (seed 004) and eps_r ~ U[1.5, 8]. Prior ranges: eps_r in [max(1, eps/2), 2 eps],
    sigma in [sigma/10, 10 sigma].
    """
    if strategy not in INIT_STRATEGIES:
        raise ValueError(f"unknown initialisation '{strategy}', expected one of {INIT_STRATEGIES}")
    K = len(labels)
    eps = np.empty(K)
    sig = np.empty(K)
    pl = np.full((K, 4), np.nan)
    for i, lab in enumerate(labels):
        if lab is not None:
            eps[i], sig[i] = itu_eps_sigma(lab, frequency_hz)
            p = itu_power_law(lab, frequency_hz)
            pl[i] = (p.a, p.b, p.c, p.d)
        elif fallback_eps is not None and fallback_sigma is not None:
            eps[i], sig[i] = fallback_eps[i], fallback_sigma[i]
        else:
            eps[i], sig[i] = itu_mean(frequency_hz)
    if strategy == "uniform":
        e0, s0 = itu_mean(frequency_hz)
        eps[:], sig[:] = e0, s0
        pl[:] = np.nan
    elif strategy == "random":
        rng = np.random.default_rng(seed)
        sig = rng.uniform(0.01, 0.06, K)
        eps = rng.uniform(1.5, 8.0, K)
        pl[:] = np.nan
    sig = np.maximum(sig, 1e-6)
    eps = np.maximum(eps, 1.0 + 1e-6)
    eps_range = np.stack([np.maximum(1.0 + 1e-3, eps / 2), eps * 2], 1)
    sigma_range = np.stack([sig / 10, sig * 10], 1)
    return MaterialPrior(eps, sig, eps_range, sigma_range, pl, frequency_hz)


def with_relative_ranges(prior: MaterialPrior, spread: float, sigma_spread: float | None = None) -> MaterialPrior:
    """A copy of ``prior`` whose ranges are its values x [1 - spread, 1 + spread] (eps_r) and
    x [1 - sigma_spread, 1 + sigma_spread] (sigma; default ``spread``); eps_r stays above 1."""
    ss = spread if sigma_spread is None else sigma_spread
    for name, v in (("spread", spread), ("sigma_spread", ss)):
        if not 0.0 < v < 1.0:
            raise ValueError(f"{name} must lie in (0, 1), got {v}")
    eps = np.asarray(prior.eps_r, dtype=np.float64)
    sig = np.asarray(prior.sigma, dtype=np.float64)
    eps_range = np.stack([np.maximum(1.0 + 1e-3, eps * (1.0 - spread)),
                          np.maximum(1.0 + 2e-3, eps * (1.0 + spread))], 1)
    return replace(prior, eps_range=eps_range, sigma_range=np.stack([sig * (1.0 - ss), sig * (1.0 + ss)], 1))


def with_label_box(prior: MaterialPrior, label_prior: MaterialPrior, spread: float, seed: int = 0,
                   redraw: bool = False) -> MaterialPrior:
    """``prior`` with the box label x [1 - spread, 1 + spread] of ``label_prior`` (whatever ``prior``'s values
    are) and values inside that box: drawn uniformly in it when ``redraw`` (random initialisation, seeded),
    otherwise clipped into it."""
    box = with_relative_ranges(label_prior, spread)
    er, sr = box.eps_range, box.sigma_range
    if redraw:
        u = np.random.default_rng(seed).uniform(size=(2, len(er)))
        eps = er[:, 0] + u[0] * (er[:, 1] - er[:, 0])
        sig = sr[:, 0] + u[1] * (sr[:, 1] - sr[:, 0])
    else:
        eps = np.clip(np.asarray(prior.eps_r, dtype=np.float64), er[:, 0], er[:, 1])
        sig = np.clip(np.asarray(prior.sigma, dtype=np.float64), sr[:, 0], sr[:, 1])
    return replace(prior, eps_r=eps, sigma=sig, eps_range=er, sigma_range=sr)


def draw_starts(prior: MaterialPrior, num_starts: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[B, K] starts: the prior itself first, then log-uniform draws inside the prior ranges."""
    v = draw_start_values(prior, num_starts, seed)
    return v["eps_r"], v["sigma"]


def draw_start_values(prior: MaterialPrior, num_starts: int, seed: int = 0,
                      fit: Sequence[str] = ("eps_r", "sigma")) -> dict[str, np.ndarray | None]:
    """Starts [B, K] of every quantity: the prior first, then draws inside the prior ranges (eps_r - 1 and sigma
    log-uniform, S and K_xpd uniform in logit space). Quantities not in ``fit`` keep the prior value in all starts;
    S / K_xpd are None when neither the prior has them nor they are fitted (then they are left out of the model).
    The eps_r / sigma draws do not depend on ``fit`` (same seed, same draws as :func:`draw_starts`)."""
    rng = np.random.default_rng(seed)
    K = len(prior.eps_r)
    eps = np.empty((num_starts, K))
    sig = np.empty((num_starts, K))
    eps[0], sig[0] = prior.eps_r, prior.sigma
    if num_starts > 1:
        lo, hi = np.log(prior.eps_range[:, 0] - 1), np.log(prior.eps_range[:, 1] - 1)
        eps[1:] = 1 + np.exp(rng.uniform(lo, hi, (num_starts - 1, K)))
        lo, hi = np.log(prior.sigma_range[:, 0]), np.log(prior.sigma_range[:, 1])
        sig[1:] = np.exp(rng.uniform(lo, hi, (num_starts - 1, K)))
    if "eps_r" not in fit:
        eps[1:] = eps[0]
    if "sigma" not in fit:
        sig[1:] = sig[0]
    out: dict[str, np.ndarray | None] = {"eps_r": eps, "sigma": sig}
    for name, default in (("scattering", DEFAULT_SCATTERING), ("xpd", DEFAULT_XPD)):
        val = getattr(prior, name)
        if val is None and name not in fit:
            out[name] = None
            continue
        v0 = np.full(K, default) if val is None else np.asarray(val, dtype=np.float64)
        rg = getattr(prior, f"{name}_range")
        rg = unit_range(v0) if rg is None else np.asarray(rg, dtype=np.float64)
        x = np.repeat(v0[None], num_starts, 0)
        if num_starts > 1 and name in fit:
            w = rng.uniform(logit(rg[:, 0]), logit(rg[:, 1]), (num_starts - 1, K))
            x[1:] = 1.0 / (1.0 + np.exp(-w))
        out[name] = x
    return out


def _check_bounds(name: str, bounds: np.ndarray | None, K: int, minimum: float) -> np.ndarray | None:
    """Validated [K, 2] box (lower, upper) of a read-out, or None."""
    if bounds is None:
        return None
    b = np.broadcast_to(np.asarray(bounds, dtype=np.float64), (K, 2)).copy()
    if not np.all(np.isfinite(b)) or np.any(b[:, 0] <= minimum) or np.any(b[:, 1] < b[:, 0]):
        raise ValueError(f"{name} must be finite [K, 2] (lower, upper) pairs with {minimum} < lower <= upper, "
                         f"got {b.tolist()}")
    return b


class PerObjectMaterials(nn.Module):
    """Per-object eps_r and sigma (optionally as frequency power laws), and optionally the scattering coefficient S
    and cross-polarisation K_xpd; [B, F, K] values from ``forward``.

    ``fit`` selects which quantities are free (subset of :data:`FIT_QUANTITIES`); the others stay at their
    initial values. ``scattering`` / ``xpd`` ([B, K] or [K]) are the initial (or fixed) S and K_xpd; None leaves
    them out of the model (the engine then uses S = 0, K_xpd = 0), unless they are fitted (start
    :data:`DEFAULT_SCATTERING` / :data:`DEFAULT_XPD`). ``thickness`` [K] (m) is fixed.

    Free parameters (names used in checkpoints and the uncertainty report): ``u`` = log(eps_r - 1), ``v`` =
    log(sigma) (constant model) or ``alpha``, ``b``, ``gamma``, ``d`` (power law); ``w_s`` = logit(S), ``w_x`` =
    logit(K_xpd).

    ``eps_bounds`` / ``sigma_bounds`` ([K, 2] or [2], optional): a box on eps_r / sigma at the reference frequency,
    enforced by projection (:meth:`project_`) after every optimiser step.

    ``free_objects`` (indices, optional; constant model only): only these objects' fitted quantities are
    parameters ([B, len(free_objects)] each); the others keep their initial values (per-start buffers
    ``<name>_fixed`` [B, K] hold every object's value). A posterior fit leaves the objects no measured path meets
    at their prior centre this way (:mod:`rftwin.calibrate.inference`), so its parameters, Jacobian and normal
    equations grow with what the data see, not with the scene.
    """

    def __init__(self, eps_r: np.ndarray, sigma: np.ndarray, thickness: Sequence[float], *,
                 power_law: bool = False, reference_frequency_hz: float = 3.5e9,
                 b: np.ndarray | None = None, d: np.ndarray | None = None,
                 fit: Sequence[str] = ("eps_r", "sigma"), dtype: torch.dtype = torch.float64,
                 scattering: np.ndarray | None = None, xpd: np.ndarray | None = None,
                 eps_bounds: np.ndarray | None = None, sigma_bounds: np.ndarray | None = None,
                 free_objects: Sequence[int] | None = None):
        super().__init__()
        eps_r = np.atleast_2d(np.asarray(eps_r, dtype=np.float64))
        sigma = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
        B, K = eps_r.shape
        self.free_objects = None if free_objects is None else np.asarray(free_objects, dtype=np.int64).reshape(-1)
        if self.free_objects is not None:
            if power_law:
                raise ValueError("free_objects applies to the constant model only")
            if len(np.unique(self.free_objects)) != len(self.free_objects) or np.any(self.free_objects < 0) \
                    or np.any(self.free_objects >= K):
                raise ValueError(f"free_objects must be distinct object indices in [0, {K})")
            self._free = torch.as_tensor(self.free_objects)
        self.power_law = power_law
        self.f_ref_ghz = reference_frequency_hz / 1e9
        self.fit = tuple(fit)
        unknown = set(self.fit) - set(FIT_QUANTITIES)
        if unknown:
            raise ValueError(f"cannot fit {sorted(unknown)}; choose from {', '.join(FIT_QUANTITIES)}")

        def make(name: str, value: np.ndarray, free: bool) -> None:
            t = torch.as_tensor(value, dtype=dtype)
            if free and self.free_objects is not None:
                self.register_buffer(f"{name}_fixed", t.clone())
                setattr(self, name, nn.Parameter(t[:, self._free].clone()))
            elif free:
                setattr(self, name, nn.Parameter(t))
            else:
                self.register_buffer(name, t)

        fe, fs = "eps_r" in self.fit, "sigma" in self.fit
        if not power_law:
            make("u", np.log(np.maximum(eps_r - 1.0, 1e-12)), fe)
            make("v", np.log(np.maximum(sigma, 1e-30)), fs)
        else:
            b = np.zeros((B, K)) if b is None else np.broadcast_to(np.asarray(b, dtype=np.float64), (B, K)).copy()
            d = np.zeros((B, K)) if d is None else np.broadcast_to(np.asarray(d, dtype=np.float64), (B, K)).copy()
            # a f_ref^b = eps_ref  =>  alpha = log(eps_ref) - b log f_ref
            make("alpha", np.log(eps_r) - b * math.log(self.f_ref_ghz), fe)
            make("b", b, fe)
            make("gamma", np.log(np.maximum(sigma, 1e-30)) - d * math.log(self.f_ref_ghz), fs)
            make("d", d, fs)
        for q, pname, default, value in (("scattering", "w_s", DEFAULT_SCATTERING, scattering),
                                         ("xpd", "w_x", DEFAULT_XPD, xpd)):
            if value is None and q not in self.fit:
                setattr(self, pname, None)
                continue
            v = np.full((B, K), default) if value is None else \
                np.broadcast_to(np.asarray(value, dtype=np.float64), (B, K)).copy()
            if np.any(~np.isfinite(v)) or np.any(v < 0) or np.any(v > 1):
                raise ValueError(f"{q} values must lie in [0, 1]")
            make(pname, logit(v), q in self.fit)
        self.register_buffer("thickness", torch.as_tensor(np.asarray(thickness, dtype=np.float64), dtype=dtype))
        self.eps_bounds = _check_bounds("eps_bounds", eps_bounds, K, 1.0)
        self.sigma_bounds = _check_bounds("sigma_bounds", sigma_bounds, K, 0.0)
        self.project_()

    @property
    def bounded(self) -> bool:
        return self.eps_bounds is not None or self.sigma_bounds is not None

    def project_(self) -> None:
        """Clip the free eps_r / sigma parameters in place so that the read-outs at the reference frequency lie in
        ``eps_bounds`` / ``sigma_bounds`` (a box constraint; projected steps keep every start feasible)."""
        lf = math.log(self.f_ref_ghz)
        with torch.no_grad():
            if self.eps_bounds is not None and "eps_r" in self.fit:
                lo, hi = (torch.as_tensor(np.log(self.eps_bounds[:, i] - (0.0 if self.power_law else 1.0)),
                                          dtype=self.thickness.dtype, device=self.thickness.device) for i in (0, 1))
                if self.power_law:
                    shift = self.b * lf
                    self.alpha.copy_(torch.minimum(torch.maximum(self.alpha, lo - shift), hi - shift))
                else:
                    self.u.copy_(torch.minimum(torch.maximum(self.u, self._at_free(lo)), self._at_free(hi)))
            if self.sigma_bounds is not None and "sigma" in self.fit:
                lo, hi = (torch.as_tensor(np.log(self.sigma_bounds[:, i]), dtype=self.thickness.dtype,
                                          device=self.thickness.device) for i in (0, 1))
                if self.power_law:
                    shift = self.d * lf
                    self.gamma.copy_(torch.minimum(torch.maximum(self.gamma, lo - shift), hi - shift))
                else:
                    self.v.copy_(torch.minimum(torch.maximum(self.v, self._at_free(lo)), self._at_free(hi)))

    def _at_free(self, x: torch.Tensor) -> torch.Tensor:
        """[K] per-object values -> those of the parameters' objects."""
        return x if self.free_objects is None else x[self._free.to(x.device)]

    def full(self, name: str) -> torch.Tensor | None:
        """Parameter or buffer ``name`` over all K objects [B, K] (with ``free_objects``: the parameter's columns
        put into the fixed values, differentiably)."""
        t = getattr(self, name)
        if t is None or self.free_objects is None or not hasattr(self, f"{name}_fixed"):
            return t  # (not isinstance(t, nn.Parameter): torch.func.functional_call passes plain tensors)
        return getattr(self, f"{name}_fixed").index_copy(1, self._free.to(t.device), t)

    @property
    def num_starts(self) -> int:
        return int((self.u if not self.power_law else self.alpha).shape[0])

    @property
    def has_scattering(self) -> bool:
        return self.w_s is not None

    @property
    def has_xpd(self) -> bool:
        return self.w_x is not None

    def eps_sigma(self, frequency_hz: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """eps_r and sigma [B, F, K] at the given frequencies [F] (Hz)."""
        ref = self.u if not self.power_law else self.alpha
        f = torch.as_tensor(frequency_hz, dtype=ref.dtype, device=ref.device).reshape(1, -1, 1)
        if not self.power_law:
            eps = 1.0 + torch.exp(self.full("u"))[:, None, :]
            sig = torch.exp(self.full("v"))[:, None, :]
            return eps.expand(-1, f.shape[1], -1), sig.expand(-1, f.shape[1], -1)
        lf = torch.log(f / 1e9)
        eps = torch.exp(self.alpha[:, None, :] + self.b[:, None, :] * lf)
        eps = torch.clamp(eps, min=1.0)
        sig = torch.exp(self.gamma[:, None, :] + self.d[:, None, :] * lf)
        return eps, sig

    def scattering_xpd(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """S and K_xpd [B, K] (sigmoid read-outs), None where the model has no such quantity."""
        return (None if self.w_s is None else torch.sigmoid(self.full("w_s")),
                None if self.w_x is None else torch.sigmoid(self.full("w_x")))

    def forward(self, ps_or_frequency, frequency_hz: torch.Tensor | float | None = None) -> MaterialValues:
        """Per-object MaterialValues [B, F, K] at ``frequency_hz`` [F] (Hz). The material-model protocol
        (:mod:`rftwin.materials.protocol`) calls ``model(pathset, frequency_hz)``; per-object values do not depend
        on the paths, so ``model(frequency_hz)`` is the same."""
        if frequency_hz is None:
            frequency_hz = ps_or_frequency
        eps, sig = self.eps_sigma(frequency_hz)
        s, k = self.scattering_xpd()
        return MaterialValues(eps, sig, self.thickness.reshape(1, 1, -1),
                              scattering=None if s is None else s[:, None, :],
                              xpd=None if k is None else k[:, None, :])

    def readout(self) -> dict[str, torch.Tensor]:
        """Physical values [B, K] at the reference frequency: eps_r, sigma and (when present) scattering, xpd."""
        e, s = self.eps_sigma(self.f_ref_ghz * 1e9)
        out = {"eps_r": e[:, 0], "sigma": s[:, 0]}
        sc, kx = self.scattering_xpd()
        if sc is not None:
            out["scattering"] = sc
        if kx is not None:
            out["xpd"] = kx
        return out

    def values(self) -> dict[str, np.ndarray]:
        """:meth:`readout` as numpy arrays [B, K]."""
        with torch.no_grad():
            return {k: v.detach().cpu().numpy() for k, v in self.readout().items()}

    def power_law_coefficients(self) -> np.ndarray:
        """[B, K, 4] (a, b, c, d) with f in GHz (for the constant model b = d = 0)."""
        with torch.no_grad():
            if not self.power_law:
                e, s = self.eps_sigma(self.f_ref_ghz * 1e9)
                z = torch.zeros_like(e[:, 0])
                return torch.stack([e[:, 0], z, s[:, 0], z], -1).cpu().numpy()
            return torch.stack([torch.exp(self.alpha), self.b, torch.exp(self.gamma), self.d], -1).cpu().numpy()

    def select(self, index: int) -> PerObjectMaterials:
        """A single-start copy of start ``index``."""
        v = self.values()
        pl = self.power_law_coefficients()[index]
        sl = slice(index, index + 1)
        return PerObjectMaterials(v["eps_r"][sl], v["sigma"][sl], self.thickness.cpu().numpy(),
                                  power_law=self.power_law, reference_frequency_hz=self.f_ref_ghz * 1e9,
                                  b=pl[:, 1] if self.power_law else None, d=pl[:, 3] if self.power_law else None,
                                  fit=self.fit, dtype=self.thickness.dtype,
                                  scattering=v["scattering"][sl] if "scattering" in v else None,
                                  xpd=v["xpd"][sl] if "xpd" in v else None, eps_bounds=self.eps_bounds,
                                  sigma_bounds=self.sigma_bounds, free_objects=self.free_objects)

    def with_free_objects(self, free_objects: Sequence[int] | None) -> PerObjectMaterials:
        """A copy with every start's values whose parameters are those of ``free_objects`` (None: all objects;
        constant model)."""
        v = self.values()
        return PerObjectMaterials(v["eps_r"], v["sigma"], self.thickness.cpu().numpy(),
                                  reference_frequency_hz=self.f_ref_ghz * 1e9, fit=self.fit,
                                  dtype=self.thickness.dtype, scattering=v.get("scattering"), xpd=v.get("xpd"),
                                  eps_bounds=self.eps_bounds, sigma_bounds=self.sigma_bounds,
                                  free_objects=free_objects)

    def reorder_starts(self, order: Sequence[int]) -> None:
        """Keep the starts ``order`` (in that order): every parameter and per-start buffer is re-indexed."""
        idx = torch.as_tensor(list(order), dtype=torch.long)
        with torch.no_grad():
            for name, t in list(self.named_parameters()) + list(self.named_buffers()):
                if name != "thickness":
                    t.data = t.data[idx].clone()
