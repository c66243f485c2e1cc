"""The 3D Keller-Segel blob (issue 20 §6, docs/MODEL.md §7): the derived contraction mass M* against FD's
measured initial second-moment rate, and the collapse above it against the Jensen bound."""
import math

import numpy as np
import pytest

import nsipf_torch as nt
from nsipf_torch.problems.keller_segel import blowup_time_3d, contraction_mass_3d, second_moment_rate_3d

GAMMA, SIGMA = 0.05, 0.1
PKS3 = dict(dim=3, gamma=GAMMA, c_equation="elliptic", dtype="float64", device="cpu")


def test_contraction_mass_is_the_root_of_the_second_moment_rate():
    """M* zeroes the Gaussian's dM2/dt at M2 = 3 sigma^2 M, in the box and in the whole space, and the
    Jensen bound is finite only above sqrt(6 / pi) M* (whole space: the bound's closing condition)."""
    for L in (1.0, math.inf):
        m_star = contraction_mass_3d(SIGMA, GAMMA, 1.0, L=L)
        assert second_moment_rate_3d(m_star, 3 * SIGMA**2 * m_star, SIGMA, GAMMA, 1.0, L=L) == pytest.approx(
            0.0, abs=1e-14)
    m_star = contraction_mass_3d(SIGMA, GAMMA, 1.0)
    assert m_star == pytest.approx(24 * math.pi**1.5 * GAMMA * SIGMA)
    jensen = math.sqrt(6 / math.pi) * m_star
    assert math.isinf(blowup_time_3d(0.99 * jensen, 3 * SIGMA**2 * 0.99 * jensen, GAMMA, 1.0))
    assert math.isfinite(blowup_time_3d(1.01 * jensen, 3 * SIGMA**2 * 1.01 * jensen, GAMMA, 1.0))


def test_fd_initial_second_moment_rate_follows_the_3d_law():
    """pks_blob at 64^3 (sigma = 3.2 cells), 0.5 M* and 1.5 M*: dM2/dt at t = 0 (a quadratic fitted to M2
    over 5 steps of 1e-3) has the law's sign on either side of M*, and the measured interaction term
    6 gamma M + sink - dM2/dt is within 10 % of the Gaussian's chi beta M^2 / (4 pi^{3/2} D sigma). The
    deficit is the grid's: measured 15-16 %, 7-8 %, 4-5 % at 32^3, 48^3, 64^3 (docs/VALIDATION.md), so
    10 % is a margin of 2x at 64^3; a factor-2 slip in M* (e.g. chi beta / (8 pi D) for the kernel's
    1 / (4 pi D)) would put the ratio at 0.5 or 2."""
    m_star = contraction_mass_3d(SIGMA, GAMMA, 1.0, L=1.0)
    masses = (0.5 * m_star, 1.5 * m_star)
    r = nt.simulate("pks_blob", "fdm", N=64, T=0.005, dt=1e-3, diag_every=1, snapshots=1,
                    sweep="M0=" + ",".join(f"{m:.8g}" for m in masses), **PKS3)
    t, r2 = r.series("mean_r2")
    for b, M in enumerate(masses):
        m2 = M * r2[:, b].numpy()
        slope = np.polyfit(np.asarray(t), m2, 2)[1]
        law = second_moment_rate_3d(M, float(m2[0]), SIGMA, GAMMA, 1.0, L=1.0)
        assert np.sign(slope) == np.sign(law) == (1 if M < m_star else -1)
        interaction = M * M / (4 * math.pi**1.5 * SIGMA)
        assert (law + interaction - slope) / interaction == pytest.approx(1.0, abs=0.10), (M, slope, law)


def test_blob_spreads_well_below_and_collapses_above_before_the_jensen_bound():
    """32^3 (coarse: the 3 M* start is beyond the grid, so its limit is 1.5 Pe_h(0)), one batch: 0.5 M*
    runs to T = 0.1 with M2 growing; 3 M* collapses at the centre (within a cell) before the Jensen bound
    (0.048); mass conserved to round-off in both members, rho >= 0."""
    m_star = contraction_mass_3d(SIGMA, GAMMA, 1.0, L=1.0)
    masses = (0.5 * m_star, 3.0 * m_star)
    with pytest.warns(UserWarning, match="beyond the grid"):
        r = nt.simulate("pks_blob", "fdm", N=32, T=0.1, dt=1e-3, diag_every=2, snapshots=1,
                        sweep="M0=" + ",".join(f"{m:.8g}" for m in masses), **PKS3)
    below, above = r.collapses
    _, r2 = r.series("mean_r2")
    assert below is None and r.t_end == pytest.approx(0.1) and float(r2[-1, 0]) > 1.1 * float(r2[0, 0])
    t_jensen = blowup_time_3d(masses[1], masses[1] * float(r2[0, 1]), GAMMA, 1.0, L=1.0)
    assert 0.04 < t_jensen < 0.06
    assert above is not None and above["t"] < t_jensen and max(abs(x) for x in above["x"]) <= 1 / 16
    _, mass = r.series("mass")
    assert float((mass - mass[0]).abs().max()) < 1e-12 and float(r.rho.min()) >= 0.0
