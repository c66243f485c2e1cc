"""Validation of the batched radial solver (docs/MODEL.md §1 radial form)."""
import math

import numpy as np
import pytest
import torch

from nsipf_torch.solvers.radial import (RadialGrid, gaussian_shell_averages, radial_advance, radial_mass,
                                solve_radial, substeps_needed)


def _coarsen(rho, fine: RadialGrid, Nr: int):
    """Shell averages of a fine radial solution on Nr coarse shells (exact unions of fine shells)."""
    k = fine.Nr // Nr
    mass = (rho * fine.shell_volumes).reshape(*rho.shape[:-1], Nr, k).sum(-1)
    return mass / fine.shell_volumes.reshape(Nr, k).sum(-1)


def _rel_l2_radial(a, b, rgrid):
    """Relative L2 error in the radial measure (the L2 norm over the ball)."""
    w = rgrid.shell_volumes
    return float(torch.sqrt(((a - b) ** 2 * w).sum() / (b**2 * w).sum()))


def _problem(rgrid, sigma_rho=0.2, amp=1.0, sigma_c=0.3):
    rho0 = gaussian_shell_averages(rgrid, sigma_rho)
    c0 = amp * torch.exp(-rgrid.r**2 / (2 * sigma_c**2))[None]
    return rho0, c0


@pytest.mark.parametrize("dim", [2, 3])
def test_geometry_against_independent_formulas(dim):
    # Exact to round-off: shell volumes sum to the ball volume, areas are omega_d r^{d-1}; the positivity
    # factors are the closed forms derived in the module docstring.
    g = RadialGrid(50, 1.3, dim)
    ball = math.pi * 1.3**2 if dim == 2 else 4.0 / 3.0 * math.pi * 1.3**3
    assert abs(float(g.shell_volumes.sum()) - ball) < 1e-12 * ball
    edges = np.linspace(0.0, 1.3, 51)
    omega = 2 * np.pi if dim == 2 else 4 * np.pi
    np.testing.assert_allclose(g.face_areas.numpy(), omega * edges ** (dim - 1), rtol=1e-13, atol=0)
    np.testing.assert_allclose(g.r.numpy(), 0.5 * (edges[1:] + edges[:-1]), rtol=1e-13)
    assert g.face_areas[0] == 0
    kd, ka = (1.0, 4.0 / 3.0) if dim == 2 else (1.5, 12.0 / 7.0)
    assert g.kappa_D == pytest.approx(kd, rel=1e-12) and g.kappa_A == pytest.approx(ka, rel=1e-12)


@pytest.mark.parametrize("dim", [2, 3])
def test_gaussian_shell_averages_are_exact(dim):
    # Independent check: scipy quadrature of omega_d r^{d-1} G over each shell (tolerance: quad's 1e-10).
    from scipy.integrate import quad
    g = RadialGrid(16, 1.0, dim)
    rho = gaussian_shell_averages(g, 0.3, M0=2.0)[0]
    omega = 2 * np.pi if dim == 2 else 4 * np.pi
    f = lambda r: omega * r ** (dim - 1) * np.exp(-r**2 / (2 * 0.09))  # noqa: E731
    e = g.edges.numpy()
    shells = np.array([quad(f, e[i], e[i + 1], epsabs=0, epsrel=1e-12)[0] for i in range(16)])
    expected = 2.0 * shells / shells.sum() / g.shell_volumes.numpy()
    np.testing.assert_allclose(rho.numpy(), expected, rtol=1e-10)
    assert float(radial_mass(rho, g)) == pytest.approx(2.0, rel=1e-14)
    # Far tail (r up to 16 sigma): strictly positive, no cancellation to zero.
    tail = gaussian_shell_averages(RadialGrid(64, 1.6, dim), 0.1)
    assert float(tail.min()) > 0


@pytest.mark.parametrize("dim", [2, 3])
def test_mass_conserved_and_signs_over_1000_steps(dim):
    # Mass: the fluxes telescope, so only round-off remains (bound 1e-12 in float64).
    # Signs: the sub-step bound keeps every explicit stage positivity-preserving (module docstring).
    # A stiff member (amplitude 10, narrow rho) and a mild one, checked at every outer step.
    g = RadialGrid(48, 1.5, dim)
    rho0 = gaussian_shell_averages(g, torch.tensor([0.1, 0.25]))
    c0 = torch.tensor([[10.0], [1.0]], dtype=torch.float64) * torch.exp(-g.r**2 / (2 * 0.3**2))
    times = [k * 1e-4 for k in range(1, 1001)]
    rho, c, counts = solve_radial(rho0, c0, 0.01, torch.tensor([1.0, 2.0]), g, times, 1e-4,
                                  return_substeps=True)
    assert len(counts) == 1000
    m0 = radial_mass(rho0, g)
    drift = ((radial_mass(rho, g) - m0[:, None]).abs() / m0[:, None]).max()
    print(f"\n[radial d={dim}] float64 mass drift over 1000 steps: {float(drift):.2e}; "
          f"sub-steps {sum(counts)}; min rho {float(rho.min()):.2e}, min c {float(c.min()):.2e}")
    assert drift < 1e-12, drift
    assert float(rho.min()) >= 0.0 and float(c.min()) >= 0.0


def test_mass_drift_float32():
    # float32: round-off of ~1e-7 per step accumulates; 1e-4 over 200 steps is a measured margin (~1e-6).
    g = RadialGrid(64, 1.5, 3, dtype=torch.float32)
    rho0, c0 = _problem(g.to(dtype=torch.float64), 0.15, 5.0)
    rho, c = solve_radial(rho0.float(), c0.float(), 0.01, 1.0, g, [0.2], 1e-3)
    m0 = radial_mass(rho0, g.to(dtype=torch.float64))
    assert rho.dtype == torch.float32
    drift = float((radial_mass(rho.double(), g.to(dtype=torch.float64)) - m0).abs().max() / m0)
    print(f"\n[radial] float32 mass drift over 200 steps: {drift:.2e}")
    assert drift < 1e-4, drift
    assert float(rho.min()) >= 0.0


@pytest.mark.parametrize("dim", [2, 3])
def test_pure_diffusion_matches_gaussian_heat_solution(dim):
    # chi = 0: a Gaussian of variance s^2 spreads to s^2 + 2 gamma t (walls at R = 1.5 are > 10 s away,
    # so the free-space solution is exact to ~1e-20). Exact shell averages on both sides. Measured errors
    # 1.4e-2 / 3.5e-3 / 8.9e-4 (d = 3) at Nr = 32/64/128, orders 1.94 / 1.98 (theory: 2); tolerances:
    # 1e-3 at Nr = 128 and orders in (1.8, 2.3).
    sigma, gamma, T = 0.1, 0.01, 0.2
    s_T = math.sqrt(sigma**2 + 2 * gamma * T)
    errs = []
    for Nr in (32, 64, 128):
        g = RadialGrid(Nr, 1.5, dim)
        rho0 = gaussian_shell_averages(g, sigma)
        rho, _ = solve_radial(rho0, torch.ones_like(rho0), gamma, 0.0, g, [T], 1e-3)
        errs.append(_rel_l2_radial(rho[0, -1], gaussian_shell_averages(g, s_T)[0], g))
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    print(f"\n[radial d={dim}] heat kernel errors Nr=32/64/128: {errs}, orders {orders}")
    assert errs[-1] < 1e-3, errs
    assert all(1.8 < p < 2.3 for p in orders), (errs, orders)


def test_convergence_in_Nr_with_chemotaxis():
    # Self-convergence against Nr = 512 on a resolved problem (widths >= 0.2, as the validation asks for the
    # radial-vs-3D test). Measured orders 1.5 and 1.8 (the minmod limiter clips extrema on the coarsest
    # grid); we require >= 1.6 on the finest pair and an error below 0.5% at Nr = 128.
    T, gamma = 0.1, 0.02
    fine = RadialGrid(512, 1.5, 3)
    rho_f, _ = solve_radial(*_problem(fine), gamma, 1.0, fine, [T], 1e-3)
    errs = []
    for Nr in (32, 64, 128):
        g = RadialGrid(Nr, 1.5, 3)
        rho, _ = solve_radial(*_problem(g), gamma, 1.0, g, [T], 1e-3)
        errs.append(_rel_l2_radial(rho[0, -1], _coarsen(rho_f[0, -1], fine, Nr), g))
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    print(f"\n[radial] chemotaxis errors vs Nr=512, Nr=32/64/128: {errs}, orders {orders}")
    assert errs[-1] < 5e-3 and orders[-1] > 1.6 and orders[0] > 1.2, (errs, orders)


def test_batched_equals_single_bitwise():
    # Elementwise ops only inside a sub-step, so with the same forced sub-step count each batch row is
    # computed exactly as alone (bitwise, on the CPU).
    g = RadialGrid(48, 1.5, 3)
    sig = torch.tensor([0.1, 0.15, 0.2, 0.25])
    rho0 = gaussian_shell_averages(g, sig)
    c0 = torch.tensor([[1.0], [10.0], [3.0], [0.5]], dtype=torch.float64) * torch.exp(-g.r**2 / 0.18)
    gamma = torch.tensor([0.005, 0.01, 0.015, 0.02])
    chi = torch.tensor([0.5, 1.0, 1.5, 2.0])
    times = [0.0, 0.01, 0.03]
    _, _, counts = solve_radial(rho0, c0, gamma, chi, g, times, 1e-3, return_substeps=True)
    n = max(counts)
    rho_b, c_b = solve_radial(rho0, c0, gamma, chi, g, times, 1e-3, n_sub=n)
    for b in range(4):
        rho_s, c_s = solve_radial(rho0[b:b + 1], c0[b:b + 1], float(gamma[b]), float(chi[b]), g, times, 1e-3,
                                  n_sub=n)
        assert torch.equal(rho_b[b:b + 1], rho_s) and torch.equal(c_b[b:b + 1], c_s)
    # Snapshot at t = 0 is the initial state.
    assert torch.equal(rho_b[:, 0], rho0)


def test_substep_count_is_batch_max_and_reaches_the_bound():
    # The batch takes the largest member count; each count is the smallest satisfying the 0.4 bound.
    g = RadialGrid(64, 1.5, 3)
    rho0 = gaussian_shell_averages(g, torch.tensor([0.1, 0.2]))
    c0 = torch.tensor([[10.0], [0.1]], dtype=torch.float64) * torch.exp(-g.r**2 / 0.18)
    n_both = substeps_needed(rho0, c0, 1e-3, 0.01, 1.0, g)
    n0 = substeps_needed(rho0[:1], c0[:1], 1e-3, 0.01, 1.0, g)
    n1 = substeps_needed(rho0[1:], c0[1:], 1e-3, 0.01, 1.0, g)
    assert n_both == max(n0, n1) and n0 > n1
    _, _, used = radial_advance(rho0, c0, 1e-3, 0.01, 1.0, g)
    assert used == n_both


@pytest.mark.parametrize("kwargs, match", [
    (dict(Nr=3), "Nr"), (dict(R=0.0), "R"), (dict(R=float("nan")), "R"), (dict(dim=4), "dim"),
])
def test_bad_grid(kwargs, match):
    args = dict(Nr=16, R=1.0, dim=3) | kwargs
    with pytest.raises(ValueError, match=match):
        RadialGrid(**args)


@pytest.mark.parametrize("change, match", [
    (dict(dt=0.0), "dt"), (dict(dt=-1e-3), "dt"), (dict(gamma=-0.1), "gamma"), (dict(chi=-1.0), "chi"),
    (dict(gamma=float("nan")), "gamma"), (dict(times=[0.1, 0.05]), "ascending"), (dict(times=[]), "times"),
    (dict(times=[-0.1]), "times"), (dict(limiter="superbee"), "limiter"), (dict(c_update="rk4"), "c-update"),
    (dict(chi=torch.ones(3)), "chi"), (dict(n_sub=0), "n_sub"),
])
def test_bad_solver_inputs(change, match):
    g = RadialGrid(16, 1.0, 3)
    rho0, c0 = _problem(g)
    args = dict(rho0=rho0, c0=c0, gamma=0.01, chi=1.0, rgrid=g, times=[0.01], dt=1e-3) | change
    with pytest.raises(ValueError, match=match):
        solve_radial(**args)


def test_bad_fields():
    g = RadialGrid(16, 1.0, 3)
    rho0, c0 = _problem(g)
    with pytest.raises(ValueError, match="rho0"):
        solve_radial(rho0[0], c0, 0.01, 1.0, g, [0.01], 1e-3)  # (Nr,) instead of (B, Nr)
    with pytest.raises(ValueError, match="c0"):
        solve_radial(rho0, c0[:, :8], 0.01, 1.0, g, [0.01], 1e-3)
    bad = rho0.clone()
    bad[0, 3] = float("nan")
    with pytest.raises(ValueError, match="rho0"):
        solve_radial(bad, c0, 0.01, 1.0, g, [0.01], 1e-3)
    with pytest.raises(ValueError, match="rho0"):
        solve_radial(-rho0, c0, 0.01, 1.0, g, [0.01], 1e-3)


# ---- Radial solver against the 3D FD solver , on a radially symmetric problem with
# widths >= 0.2: rho0 a Gaussian of width 0.2 and mass 1, c0 = exp(-r^2 / (2 0.3^2)), gamma = 0.01, chi = 1,
# T = 0.05. The radial reference (Nr = 512 on R = 1.75 >= sqrt(3), so it covers the box corners; its own
# error is ~1e-4) is interpolated linearly in r at the radii of the 3D cell centres, and the relative L2
# difference is taken over all 3D cells (no block averaging: stricter than rel_l2's 16^3 blocks).
_CMP = dict(sigma_rho=0.2, sigma_c=0.3, gamma=0.01, chi=1.0, T=0.05)


@pytest.fixture(scope="module")
def radial_reference():
    rg = RadialGrid(512, 1.75, 3)
    rho0 = gaussian_shell_averages(rg, _CMP["sigma_rho"])
    c0 = torch.exp(-rg.r**2 / (2 * _CMP["sigma_c"] ** 2))[None]
    rho, _ = solve_radial(rho0, c0, _CMP["gamma"], _CMP["chi"], rg, [_CMP["T"]], 1e-3)
    return rg, rho[0, -1]


def _fd_vs_radial(N, radial_reference):
    from nsipf_torch.solvers.fd import fd_solve
    from nsipf_torch.problems.grid import Grid
    from nsipf_torch.problems.initial import GaussianComponent, GaussianMixtureIC
    rg, rho_r = radial_reference
    sc = _CMP["sigma_c"]
    ic = GaussianMixtureIC("radial_check", [GaussianComponent(1.0, (0.0, 0.0, 0.0), _CMP["sigma_rho"])],
                           lambda mesh: torch.exp(-sum(x**2 for x in mesh) / (2 * sc**2)))
    grid = Grid(N, 3)
    rho, _, _ = fd_solve(ic.rho0(grid)[None], ic.c0(grid)[None], _CMP["T"], 1e-3, _CMP["gamma"], _CMP["chi"], grid)
    radii = torch.sqrt(grid.r2()).numpy().ravel()
    ref = torch.from_numpy(np.interp(radii, rg.r.numpy(), rho_r.numpy()).reshape(grid.shape))
    return float(torch.linalg.vector_norm(rho[0] - ref) / torch.linalg.vector_norm(ref))


def test_radial_against_3d_fd_32(radial_reference):
    # Measured: 9.4% at 16^3, 2.9% at 32^3 (order 1.7); tolerances: 4% at 32^3 and order > 1.4.
    e16, e32 = _fd_vs_radial(16, radial_reference), _fd_vs_radial(32, radial_reference)
    print(f"\n[radial vs 3D FD] 16^3: {e16:.4f}, 32^3: {e32:.4f}, order {math.log2(e16 / e32):.2f}")
    assert e32 < 0.04 and math.log2(e16 / e32) > 1.4, (e16, e32)


@pytest.mark.slow
def test_radial_against_3d_fd_64(radial_reference):
    # Target: under 1% at 64^3, shrinking at about second order. Measured 2.9% (32^3) -> 0.79% (64^3),
    # order 1.86; tolerances 1% and order > 1.6.
    e32, e64 = _fd_vs_radial(32, radial_reference), _fd_vs_radial(64, radial_reference)
    print(f"\n[radial vs 3D FD] 32^3: {e32:.4f}, 64^3: {e64:.4f}, order {math.log2(e32 / e64):.2f}")
    assert e64 < 0.01 and math.log2(e32 / e64) > 1.6, (e32, e64)


@pytest.mark.slow
def test_compiled_substep_matches_eager():
    # torch.compile fuses the same arithmetic; it may contract or reorder float operations, so we allow
    # round-off (1e-12 relative in float64), not bitwise equality. Slow: compiling takes ~15-40 s.
    g = RadialGrid(64, 1.5, 3)
    rho0 = gaussian_shell_averages(g, torch.tensor([0.1, 0.2]))
    c0 = torch.tensor([[10.0], [1.0]], dtype=torch.float64) * torch.exp(-g.r**2 / 0.18)
    args = (rho0, c0, 0.01, torch.tensor([1.0, 2.0]), g, [0.01, 0.02], 1e-3)
    rho_e, c_e = solve_radial(*args)
    rho_c, c_c = solve_radial(*args, compile=True)
    assert float((rho_c - rho_e).abs().max() / rho_e.abs().max()) < 1e-12
    assert float((c_c - c_e).abs().max() / c_e.abs().max()) < 1e-12
