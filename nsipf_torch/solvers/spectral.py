"""Fast field solves in the Neumann box: the cosine transform diagonalises the discrete Laplacian.

On the cell-centred grid with no-flux walls the second-order Laplacian (the stencil of
:mod:`nsipf_torch.solvers.finite_volume`, ghost cells mirrored at the walls) has the cosine modes
cos(pi m (i + 1/2) / N), m = 0 ... N-1, as exact eigenvectors, with eigenvalue

    -k_h^2 = -(4 / h^2) sum_i sin^2(pi m_i / (2N)),

so the DCT-II of every axis turns Delta_h into a division. Both c-equations of the Keller-Segel family
(issue 20, ``eps c_t = D Delta c - alpha c + beta rho``) are then one transform, a multiplication and the
inverse, O(N^d log N), on every device torch.fft runs on:

- elliptic (eps = 0): c^ = beta rho^ / lambda with lambda = alpha + D k_h^2; with alpha = 0 the walls leave
  the mean undetermined (the m = 0 mode has lambda = 0), and c is the mean-free solution of
  -D Delta c = beta (rho - mean rho);
- parabolic, rho frozen over tau = dt / eps: the exact step
  c^ <- e^{-lambda tau} c^ + (1 - e^{-lambda tau}) beta rho^ / lambda (lambda = 0: c^ + tau beta rho^),
  stable for every dt; tau -> infinity is the elliptic solve.

The DCT-II is computed by Makhoul's N-point reordering and one real FFT per axis, with scipy's
unnormalised convention X_k = 2 sum_n x_n cos(pi k (2n + 1) / (2N)) (``scipy.fft.dct(type=2)``).
"""
from __future__ import annotations

import functools
import math

import torch

__all__ = ["dct", "idct", "dctn", "idctn", "symbol", "elliptic_solve", "parabolic_step", "heat_step"]


def _cached(function):
    """An lru_cache outside compiled code; inside, the plain (pure) function, which dynamo traces as such."""
    cached = functools.lru_cache(maxsize=32)(function)

    @functools.wraps(function)
    def call(*args):
        return function(*args) if torch.compiler.is_compiling() else cached(*args)
    return call


@_cached
def _twiddle(N: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """W_k = e^{-i pi k / (2N)} for k = 0 ... N/2 (what the real FFT returns)."""
    k = torch.arange(N // 2 + 1, device=device, dtype=torch.float64)
    w = torch.exp(-1j * math.pi * k / (2 * N))
    return w.to(torch.complex128 if dtype == torch.float64 else torch.complex64)


@_cached
def _orders(N: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Makhoul's order (the even samples, then the odd ones reversed) and its inverse."""
    order = torch.tensor([*range(0, N, 2), *range(N - 1 - N % 2, 0, -2)], dtype=torch.long)
    return order.to(device), torch.argsort(order).to(device)


def _along(t: torch.Tensor, dim: int, ndim: int) -> torch.Tensor:
    """A 1-D tensor shaped to broadcast along axis ``dim`` of an ``ndim``-axis array."""
    shape = [1] * ndim
    shape[dim] = -1
    return t.reshape(shape)


def _reorder(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Makhoul's order along ``dim``. On the last axis strided slices and a flip (a gather of single
    elements there costs 2-3x as much, measured); elsewhere index_select copies whole rows."""
    if dim == x.ndim - 1:
        return torch.cat([x[..., ::2], x[..., 1::2].flip(-1)], dim=-1)
    return x.index_select(dim, _orders(x.shape[dim], x.device)[0])


def _unorder(v: torch.Tensor, dim: int) -> torch.Tensor:
    """The inverse of :func:`_reorder`."""
    N = v.shape[dim]
    if dim == v.ndim - 1:
        x = torch.empty_like(v)
        x[..., ::2] = v[..., :(N + 1) // 2]
        x[..., 1::2] = v[..., (N + 1) // 2:].flip(-1)
        return x
    return v.index_select(dim, _orders(N, v.device)[1])


def dct(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """DCT-II along ``dim``, scipy's unnormalised convention (module docstring).

    One real FFT of the reordered samples: with Z_k = W_k V_k (k = 0 ... N/2), X_k = 2 Re Z_k and
    X_{N-k} = -2 Im Z_k, since V_{N-k} is the conjugate of V_k for real input.
    """
    dim = dim % x.ndim
    N, half = x.shape[dim], x.shape[dim] // 2 + 1
    Z = torch.fft.rfft(_reorder(x, dim), dim=dim).mul_(_along(2.0 * _twiddle(N, x.device, x.dtype), dim, x.ndim))
    # X_{N-1} ... X_{N//2+1} from Z_1 ... Z_{(N-1)//2}
    return torch.cat([Z.real, Z.imag.narrow(dim, 1, N - half).flip(dim).neg()], dim=dim)


def idct(X: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The inverse of :func:`dct` (scipy's ``idct(type=2)``: a DCT-III divided by 2N).

    V_k = (X_k - i X_{N-k}) / (2 W_k) for k = 0 ... N/2 (X_N = 0), then the inverse real FFT.
    """
    dim = dim % X.ndim
    N, half = X.shape[dim], X.shape[dim] // 2 + 1
    # X_{N-k} for k = 0 ... N/2: zero at k = 0, then X_{N-1} ... X_{N - N//2}
    mirrored = torch.cat([torch.zeros_like(X.narrow(dim, 0, 1)), X.narrow(dim, N - half + 1, half - 1).flip(dim)],
                         dim=dim)
    V = torch.complex(X.narrow(dim, 0, half), mirrored.neg_())
    V.mul_(_along(0.5 * _twiddle(N, X.device, X.dtype).conj(), dim, X.ndim))
    return _unorder(torch.fft.irfft(V, n=N, dim=dim), dim)


def dctn(x: torch.Tensor, dim: int) -> torch.Tensor:
    """DCT-II over the last ``dim`` axes (the cells of a batched field (B, N, ..., N))."""
    for axis in range(-dim, 0):
        x = dct(x, axis)
    return x


def idctn(X: torch.Tensor, dim: int) -> torch.Tensor:
    """The inverse of :func:`dctn`."""
    for axis in range(-dim, 0):
        X = idct(X, axis)
    return X


@_cached
def symbol(N: int, dim: int, h: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """k_h^2 = (4 / h^2) sum_i sin^2(pi m_i / (2N)) on the (N,)*dim modes: minus the eigenvalues of Delta_h."""
    m = torch.arange(N, device=device, dtype=torch.float64)
    s = (4.0 / h**2) * torch.sin(math.pi * m / (2 * N)) ** 2
    k2 = torch.zeros((N,) * dim, device=device, dtype=torch.float64)
    for axis in range(dim):
        shape = [1] * dim
        shape[axis] = N
        k2 = k2 + s.reshape(shape)
    return k2.to(dtype)


@_cached
def _solve_factor(N: int, dim: int, h: float, D: float, alpha: float, beta: float, device: torch.device,
                  dtype: torch.dtype) -> torch.Tensor:
    """beta / lambda on the modes, lambda = alpha + D k_h^2, and 0 where lambda = 0 (the mean mode at alpha = 0)."""
    lam = alpha + D * symbol(N, dim, h, device, torch.float64)
    zero = lam == 0
    return torch.where(zero, 0.0, beta / torch.where(zero, 1.0, lam)).to(dtype)


def _exact_factors(N: int, dim: int, h: float, D: float, alpha: float, beta: float, tau, device: torch.device,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """e^{-lambda tau} and beta (1 - e^{-lambda tau}) / lambda, with its limit beta tau at lambda = 0; expm1
    keeps the small-lambda modes accurate. tau a number or a 0-d tensor (a compiled FD sub-step's size)."""
    lam = alpha + D * symbol(N, dim, h, device, torch.float64)
    positive = lam > 0
    tau = torch.as_tensor(tau, dtype=torch.float64, device=device)
    gain = torch.where(positive, -torch.expm1(-lam * tau) / torch.where(positive, lam, 1.0), tau)
    return torch.exp(-lam * tau).to(dtype), (beta * gain).to(dtype)


_cached_exact_factors = _cached(_exact_factors)


def _step_factors(N, dim, h, D, alpha, beta, tau, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_exact_factors`, cached per step size when tau is a number."""
    if isinstance(tau, torch.Tensor):
        return _exact_factors(N, dim, float(h), float(D), float(alpha), float(beta), tau, device, dtype)
    return _cached_exact_factors(N, dim, float(h), float(D), float(alpha), float(beta), float(tau), device, dtype)


def elliptic_solve(rho: torch.Tensor, dim: int, h: float, D: float, alpha: float, beta: float) -> torch.Tensor:
    """c with (alpha - D Delta_h) c = beta rho; with alpha = 0, the mean-free c of -D Delta_h c = beta (rho - mean)."""
    factor = _solve_factor(rho.shape[-1], dim, float(h), float(D), float(alpha), float(beta), rho.device, rho.dtype)
    return idctn(dctn(rho, dim).mul_(factor), dim)


def parabolic_step(c: torch.Tensor, rho: torch.Tensor, tau: float, dim: int, h: float, D: float, alpha: float,
                   beta: float) -> torch.Tensor:
    """c after time tau of c_t = D Delta_h c - alpha c + beta rho with rho frozen, exactly (module docstring)."""
    decay, gain = _step_factors(c.shape[-1], dim, h, D, alpha, beta, tau, c.device, c.dtype)
    return idctn(dctn(c, dim).mul_(decay).add_(dctn(rho, dim).mul_(gain)), dim)


def heat_step(c: torch.Tensor, tau: float, dim: int, h: float, D: float) -> torch.Tensor:
    """c after time tau of c_t = D Delta_h c, exactly (the diffusing nutrient of the consumption equation)."""
    decay, _ = _step_factors(c.shape[-1], dim, h, D, 0.0, 0.0, tau, c.device, c.dtype)
    return idctn(dctn(c, dim).mul_(decay), dim)
