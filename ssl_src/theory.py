"""Tian, Chen & Ganguli's two-layer linear model of BYOL/SimSiam (ICML 2021), simulated on the CPU.

Online network W (d_out x d_in), linear predictor W_p (d_out x d_out), target W_a; loss
1/2 E||W_p W x1 - sg(W_a x2)||^2 for two views x1, x2 of x with E[x x^T] = X and augmentation
covariance X'. Two levels of description, both integrated with classical RK4 at a fixed step:

- `simulate_matrix`: the full matrix gradient flow (ALGORITHMS.md section 7), with the target an EMA of W
  at rate beta (BYOL), W itself behind a stop-gradient (SimSiam), or W itself without stop-gradient;
- `simulate_modes`: the decoupled per-eigenmode dynamics of (p_j, s_j, tau_j) that hold under X = I,
  X' = sigma^2 I once the eigenspaces of W_p and F = W W^T have aligned.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import eigenspace_alignment


def fixed_points(tau: float, sigma2: float, eta: float) -> np.ndarray:
    """Sorted distinct fixed points of p on the parabola s = p^2 / alpha_p: 0 and, where real, the roots of
    (1 + sigma^2) p^2 - tau p + eta = 0 (the smaller is the unstable basin edge, the larger the stable
    non-collapsed solution). alpha_p drops out on that parabola."""
    disc = tau**2 - 4 * eta * (1 + sigma2)
    points = [0.0]
    if disc >= 0:
        root = np.sqrt(disc)
        points += [(tau - root) / (2 * (1 + sigma2)), (tau + root) / (2 * (1 + sigma2))]
    return np.unique(np.round(points, 15))


def collapse_threshold(tau: float, sigma2: float) -> float:
    """Weight decay above which every mode collapses: tau^2 / (4 (1 + sigma^2))."""
    return tau**2 / (4 * (1 + sigma2))


def _rk4(derivative, state: tuple[np.ndarray, ...], dt: float, steps: int, record_every: int):
    """Integrate d(state)/dt = derivative(*state); returns the recorded times and states."""
    times, records = [0.0], [tuple(np.copy(x) for x in state)]
    for i in range(1, steps + 1):
        k1 = derivative(*state)
        k2 = derivative(*(x + dt / 2 * k for x, k in zip(state, k1)))
        k3 = derivative(*(x + dt / 2 * k for x, k in zip(state, k2)))
        k4 = derivative(*(x + dt * k for x, k in zip(state, k3)))
        state = tuple(x + dt / 6 * (a + 2 * b + 2 * c + d) for x, a, b, c, d in zip(state, k1, k2, k3, k4))
        if i % record_every == 0 or i == steps:
            times.append(i * dt)
            records.append(tuple(np.copy(x) for x in state))
    return np.array(times), records


def simulate_modes(p0, s0, *, alpha_p: float = 1.0, eta: float = 0.0, beta: float | None = None,
                   sigma2: float = 0.0, t_end: float, dt: float, record_every: int = 1):
    """Decoupled eigenmode dynamics; p0 and s0 may be arrays (one entry per mode).

    dp/dt = alpha_p s [tau - (1+sigma^2) p] - eta p
    ds/dt = 2 p s [tau - (1+sigma^2) p] - 2 eta s
    dtau/dt = beta (1 - tau) - tau (ds/dt) / (2 s)     (beta None = SimSiam: tau stays 1)

    Returns t (n_times,) and p, s, tau (n_times, n_modes)."""
    p0, s0 = np.atleast_1d(np.asarray(p0, float)), np.atleast_1d(np.asarray(s0, float))
    p0, s0 = np.broadcast_arrays(p0, s0)

    def derivative(p, s, tau):
        gain = p * (tau - (1 + sigma2) * p)  # (ds/dt) / (2 s) + eta, without dividing by s
        dtau = np.zeros_like(tau) if beta is None else beta * (1 - tau) - tau * (gain - eta)
        return alpha_p * s * (tau - (1 + sigma2) * p) - eta * p, 2 * s * (gain - eta), dtau

    steps = int(round(t_end / dt))
    t, records = _rk4(derivative, (p0.copy(), s0.copy(), np.ones_like(p0)), dt, steps, record_every)
    p, s, tau = (np.stack([r[i] for r in records]) for i in range(3))
    return t, p, s, tau


@dataclass
class MatrixFlow:
    """Recorded trajectory of the matrix gradient flow."""

    t: np.ndarray
    W: list[np.ndarray]
    W_p: list[np.ndarray]
    W_a: list[np.ndarray]

    def F(self, i: int = -1) -> np.ndarray:
        """F = W W^T (the output correlation when X = I)."""
        return self.W[i] @ self.W[i].T

    def alignment(self, i: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues s_j of F (descending) and the cosine between each eigenvector u_j and W_p u_j."""
        return eigenspace_alignment(self.F(i), self.W_p[i])

    def invariant(self, i: int, alpha_p: float) -> np.ndarray:
        """alpha_p^-1 W_p^T W_p - W W^T, which decays as exp(-2 eta t)."""
        return self.W_p[i].T @ self.W_p[i] / alpha_p - self.W[i] @ self.W[i].T


def simulate_matrix(W0: np.ndarray, W_p0: np.ndarray, *, X: np.ndarray, X_aug: np.ndarray, alpha_p: float = 1.0,
                    eta: float = 0.0, beta: float | None = None, stop_grad: bool = True, t_end: float, dt: float,
                    record_every: int = 1) -> MatrixFlow:
    """Gradient flow of the two-layer linear model.

    Target: an EMA of W at rate beta (dW_a/dt = beta (W - W_a), BYOL) when beta is given, else W itself
    (SimSiam). With stop_grad=False the target branch carries gradient too (SimSiam without stop-gradient):
    dW/dt = -[W_p^T W_p W (X+X') - (W_p + W_p^T) W X + W (X+X')] - eta W."""
    if not stop_grad and beta is not None:
        raise ValueError("without stop-gradient the target is W itself (beta must be None)")
    views = X + X_aug

    def derivative(W, W_p, W_a):
        target = W if beta is None else W_a
        residual = target @ X - W_p @ W @ views  # E[(target x2 - prediction) x1^T]
        dW_p = alpha_p * residual @ W.T - eta * W_p
        if stop_grad:
            dW = W_p.T @ residual - eta * W
        else:
            dW = -(W_p.T @ W_p @ W @ views - (W_p + W_p.T) @ W @ X + W @ views) - eta * W
        dW_a = np.zeros_like(W_a) if beta is None else beta * (W - W_a)
        return dW, dW_p, dW_a

    steps = int(round(t_end / dt))
    t, records = _rk4(derivative, (W0.copy(), W_p0.copy(), W0.copy()), dt, steps, record_every)
    return MatrixFlow(t, [r[0] for r in records], [r[1] for r in records], [r[2] for r in records])
