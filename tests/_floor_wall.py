"""Shared set-up of the small calibration tests: the built-in ``floor_wall`` scene, two transmitters and random
receivers, and Sionna's own per-link features as measurements."""
import numpy as np

from rftwin.physics.channel import path_gain

TX = np.array([[-1.0, 0.5, 1.0], [0.8, -0.7, 1.5]])


def links(per_tx: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_tx`` receivers per transmitter, uniform in the room (seeded): tx, rx [2 per_tx, 3] (m)."""
    rng = np.random.default_rng(seed)
    n = 2 * per_tx
    tx = np.repeat(TX, per_tx, axis=0)
    rx = np.column_stack([rng.uniform(-1.8, 1.8, n), rng.uniform(-1.8, 1.8, n), rng.uniform(0.3, 2.5, n)])
    return tx, rx


def itu_materials(twin) -> tuple[np.ndarray, np.ndarray]:
    """The scene's (ITU) eps_r and sigma [K] per object."""
    return (np.array([o.relative_permittivity for o in twin.objects]),
            np.array([o.conductivity for o in twin.objects]))


def sionna_gain_db(ps) -> np.ndarray:
    """Path gain [L] (dB) per link from Sionna's coefficients (paths.a) kept in the PathSet."""
    return 10 * np.log10(path_gain(ps.a_ref[None, None], ps.link, ps.num_links)[0, 0].numpy())


def traced_at_truth(links_per_tx: int = 10, seed: int = 3, scale: tuple[float, float] = (1.05, 0.95)):
    """floor_wall with 2 x ``links_per_tx`` links traced once at true materials (ITU eps_r, sigma x ``scale``):
    (PathSet, measured gain [L] dB = Sionna's, ITU eps_r [K], ITU sigma [K], thickness [K])."""
    from rftwin.scene import load
    from rftwin.trace import SolverSettings, trace

    twin = load("floor_wall")
    tx, rx = links(links_per_tx, seed=seed)
    eps0, sig0 = itu_materials(twin)
    twin.set_materials(eps0 * scale[0], sig0 * scale[1])
    ps = trace(twin, tx, rx, SolverSettings(max_depth=2, samples_per_src=100_000), cache_dir=False, progress=False)
    return ps, sionna_gain_db(ps), eps0, sig0, [o.thickness_m for o in twin.objects]
