"""The engine's slab coefficients (one division per polarisation) against P.2040's textbook form, written
independently in numpy (rftwin.validate.closed_forms), over the materials and angles the engine meets."""
import numpy as np
import pytest
import torch

from rftwin.physics.slab import SPEED_OF_LIGHT, complex_permittivity, slab_coefficients
from rftwin.validate import closed_forms as cf

# (eps_r, sigma S/m, thickness m): glass, wet concrete, thick lossy brick, thin wood, metal (Sionna's 1e7 S/m)
MATERIALS = [(6.31, 0.02, 0.01), (5.24, 0.46, 0.3), (3.91, 0.04, 1.0), (1.99, 0.05, 0.005), (1.0, 1e7, 0.1)]
ANGLES_DEG = [0.0, 30.0, 60.0, 85.0, 89.9]


@pytest.mark.parametrize("frequency_hz", [1e9, 3.5e9, 28e9])
def test_slab_coefficients_match_the_textbook_form(frequency_hz):
    eps, sig, d = (np.array(x)[:, None] for x in zip(*MATERIALS))
    theta = np.radians(ANGLES_DEG)[None, :]
    want = cf.slab_coefficients(eps, sig, d, frequency_hz, theta)
    f = torch.tensor(frequency_hz, dtype=torch.float64)
    eta = complex_permittivity(torch.tensor(eps), torch.tensor(sig), f)
    got = slab_coefficients(torch.tensor(np.cos(theta)), eta, torch.tensor(d), SPEED_OF_LIGHT / f)
    for g, w, name in zip(got, want, ("R_TE", "R_TM", "T_TE", "T_TM")):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-9, atol=1e-12, err_msg=name)
    # energy: a lossless slab neither absorbs nor creates power
    lossless = slab_coefficients(torch.tensor(np.cos(theta)), complex_permittivity(
        torch.tensor([[4.0]], dtype=torch.float64), torch.tensor([[0.0]], dtype=torch.float64), f),
        torch.tensor([[0.2]], dtype=torch.float64), SPEED_OF_LIGHT / f)
    for r, t in ((lossless[0], lossless[2]), (lossless[1], lossless[3])):
        np.testing.assert_allclose((r.abs() ** 2 + t.abs() ** 2).numpy(), 1.0, atol=1e-12)


def test_slab_gradient_matches_finite_differences():
    f = torch.tensor(3.5e9, dtype=torch.float64)
    cos = torch.tensor([1.0, 0.7, 0.2], dtype=torch.float64)
    x = torch.tensor([5.2, 0.3], dtype=torch.float64, requires_grad=True)  # eps_r, sigma

    def power(v):
        out = slab_coefficients(cos, complex_permittivity(v[0], v[1], f), torch.tensor(0.2, dtype=torch.float64),
                                SPEED_OF_LIGHT / f)
        return sum((c.abs() ** 2 * (k + 1)).sum() for k, c in enumerate(out))

    (g,) = torch.autograd.grad(power(x), x)
    h = 1e-6
    fd = [(power(x.detach() + h * e) - power(x.detach() - h * e)) / (2 * h) for e in torch.eye(2, dtype=x.dtype)]
    np.testing.assert_allclose(g.numpy(), torch.stack(fd).numpy(), rtol=1e-6)
