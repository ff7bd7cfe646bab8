"""Why doesn't it collapse? Tian et al.'s Figs. 2-5 as simulations of the two-layer linear model.

Simulations are seconds on a CPU, so the scales differ only in step size and length; `paper` is `quick`.
"""
from __future__ import annotations

import numpy as np

from ..claims import deterministic_check
from ..errors import UserError
from ..metrics import asymmetry
from ..theory import collapse_threshold, fixed_points, simulate_matrix, simulate_modes

_QUICK = dict(sigma2=0.0, portrait_etas=[0.0, 0.01, 1.0], portrait_dt=0.05, portrait_t_end=1000.0, dt=0.01,
              fig5_etas=[0.0, 0.04, 0.1, 0.2], fig5_betas=[0.1, 0.4, 1.0, 4.0], fig5_beta=0.4, fig5_eta=0.04,
              fig5_sigma2=0.5, fig5_t_end=150.0, matrix_d_in=32, matrix_d_out=16, matrix_sigma2=0.5, matrix_eta=0.01,
              matrix_beta=0.4, matrix_t_end=150.0, seed=0)
PRESETS = {
    "smoke": dict(_QUICK, dt=0.05, fig5_t_end=60.0, matrix_d_in=12, matrix_d_out=6, matrix_t_end=60.0),
    "quick": _QUICK,
    "paper": _QUICK,
}

SEED_FIGURES = {
    "fig2": "Fig. 2 (BYOL on STL-10): eigenvalues of F and W_p split into growing and vanishing ones, and the "
            "eigenspaces of F and W_p align (cos(u_j, W_p u_j) -> 1); W_p becomes symmetric.",
    "fig3": "Fig. 3: flows on invariant parabolas; eta = 0: the origin is a saddle; eta = 0.01: a stable origin and "
            "an unstable basin edge near it; eta = 1: every trajectory collapses.",
    "fig4": "Fig. 4: dp/dt = -p (p - p*-)(p - p*+): with eta > 0 the origin is stable and p must start above p*- "
            "to reach the non-collapsed p*+.",
    "fig5": "Fig. 5 (alpha = 0.01, beta = 0.4, eta = 0.04): a large eta lowers the final eigenvalues or drags them to "
            "zero; a small beta makes training converge much slower.",
    "thm2": "Theorem 2: without the stop-gradient every mode collapses.",
}


def check(p: dict) -> None:
    for name in ("dt", "portrait_dt", "portrait_t_end", "fig5_t_end", "matrix_t_end"):
        if p[name] <= 0:
            raise UserError(f"parameter {name} must be > 0, got {p[name]}")
    if max(p["dt"], p["portrait_dt"]) > 0.1:
        raise UserError("parameters dt and portrait_dt must be <= 0.1 for a stable RK4 integration")
    if p["matrix_d_out"] < 2 or p["matrix_d_in"] < p["matrix_d_out"]:
        raise UserError("need 2 <= matrix_d_out <= matrix_d_in")
    if min(p["portrait_etas"] + p["fig5_etas"]) < 0 or min(p["fig5_betas"]) <= 0:
        raise UserError("weight decays must be >= 0 and EMA rates > 0")


def vector_field(p_grid, s_grid, *, tau=1.0, alpha_p=1.0, eta=0.0, sigma2=0.0):
    """(dp/dt, ds/dt) of the SimSiam eigenmode dynamics on a grid (Fig. 3's flow lines)."""
    residual = tau - (1 + sigma2) * p_grid
    return alpha_p * s_grid * residual - eta * p_grid, 2 * s_grid * (p_grid * residual - eta)


def fixed_point_check(p: dict) -> list[dict]:
    """Per weight decay of Fig. 3: modes started on the parabola s = p^2 just below and above the basin edge
    p*- and far above it; each should end where the analysis says (p*+ above the edge, 0 below it)."""
    rows = []
    for eta in p["portrait_etas"]:
        points = fixed_points(1.0, p["sigma2"], eta)
        edge, stable = (points[1], points[2]) if len(points) == 3 else (0.0, points[-1])
        starts = [0.5, 2.0] + ([0.8 * edge, 1.25 * edge] if edge > 0 else [0.05])
        _, traj, _, _ = simulate_modes(np.array(starts), np.array(starts) ** 2, eta=eta, sigma2=p["sigma2"],
                                       t_end=p["portrait_t_end"], dt=p["portrait_dt"], record_every=10**9)
        for start, end in zip(starts, traj[-1]):
            expected = stable if start > edge else 0.0
            rows.append({"eta": eta, "basin_edge": float(edge), "p_start": start, "p_end": float(end),
                         "analytic_end": float(expected), "distance": float(abs(end - expected))})
    return rows


def weight_decay_and_ema(p: dict) -> dict:
    """Fig. 5: BYOL modes (several initial sizes) under a sweep of eta at fixed beta and of beta at fixed eta."""
    p0 = np.linspace(0.06, 0.3, 5)
    common = dict(sigma2=p["fig5_sigma2"], t_end=p["fig5_t_end"], dt=p["dt"], record_every=10)
    runs = {"eta": {}, "beta": {}}
    for eta in sorted(p["fig5_etas"]):
        runs["eta"][eta] = simulate_modes(p0, p0**2, eta=eta, beta=p["fig5_beta"], **common)
    for beta in sorted(p["fig5_betas"]):
        runs["beta"][beta] = simulate_modes(p0, p0**2, eta=p["fig5_eta"], beta=beta, **common)
    return runs


def threshold_check(p: dict) -> dict:
    """SimSiam modes (tau = 1, the setting of the threshold) at 0.9x and 1.1x the collapse threshold: the
    largest final p of modes started anywhere on the parabola up to 3."""
    threshold = collapse_threshold(1.0, p["fig5_sigma2"])
    p0 = np.linspace(0.05, 3.0, 12)
    return {factor: float(simulate_modes(p0, p0**2, eta=factor * threshold, sigma2=p["fig5_sigma2"],
                                         t_end=p["portrait_t_end"], dt=p["portrait_dt"], record_every=10**9)[1][-1].max())
            for factor in (0.9, 1.1)}


def time_to_converge(t: np.ndarray, p: np.ndarray, fraction: float = 0.9) -> float:
    """First time the largest mode has covered `fraction` of its way from start to end (inf if it collapsed)."""
    largest = p[:, -1]
    if largest[-1] < 1e-3:
        return float("inf")
    covered = (largest - largest[0]) / (largest[-1] - largest[0])
    return float(t[np.nonzero(covered >= fraction)[0][0]])


def matrix_flows(p: dict) -> dict:
    """The full matrix flow from one random start: SimSiam, BYOL (EMA) and SimSiam without stop-gradient."""
    rng = np.random.default_rng(p["seed"])
    d_in, d_out = p["matrix_d_in"], p["matrix_d_out"]
    W0 = rng.normal(size=(d_out, d_in)) / np.sqrt(d_in)
    W_p0 = rng.normal(size=(d_out, d_out)) / np.sqrt(d_out)
    common = dict(X=np.eye(d_in), X_aug=p["matrix_sigma2"] * np.eye(d_in), t_end=p["matrix_t_end"], dt=p["dt"],
                  record_every=max(1, int(round(p["matrix_t_end"] / p["dt"] / 100))))
    return {
        "SimSiam": simulate_matrix(W0, W_p0, eta=p["matrix_eta"], **common),
        "BYOL (EMA)": simulate_matrix(W0, W_p0, eta=p["matrix_eta"], beta=p["matrix_beta"], **common),
        "SimSiam, no stop-gradient": simulate_matrix(W0, W_p0, eta=0.0, stop_grad=False, **common),
    }


def spectra(flow) -> dict:
    """Per recorded time: eigenvalues of F, real parts of W_p's eigenvalues, alignment and asymmetry of W_p."""
    out = {"t": flow.t, "F": [], "W_p": [], "alignment": [], "asymmetry": []}
    for i in range(len(flow.t)):
        s, cos = flow.alignment(i)
        out["F"].append(s)
        out["W_p"].append(np.sort(np.linalg.eigvals(flow.W_p[i]).real)[::-1])
        out["alignment"].append(cos)
        out["asymmetry"].append(asymmetry(flow.W_p[i]))
    return {k: np.array(v) for k, v in out.items()}


def claims(p: dict, fixed_rows: list[dict], fig5: dict, flows: dict, threshold: dict) -> list[dict]:
    worst = max(r["distance"] for r in fixed_rows)
    eta_final = [float(run[1][-1].max()) for run in fig5["eta"].values()]
    times = [time_to_converge(run[0], run[1]) for run in fig5["beta"].values()]
    alive = {}
    for name in ("SimSiam", "BYOL (EMA)"):
        s, cos = flows[name].alignment(-1)
        alive[name] = (s > 1e-3 * s.max(), cos)
    min_cos = min(float(cos[mask].min()) for mask, cos in alive.values())
    asymmetry = {name: spectra(flows[name])["asymmetry"] for name in ("SimSiam", "BYOL (EMA)")}
    no_sg = float(np.linalg.eigvalsh(flows["SimSiam, no stop-gradient"].F(-1)).max())
    no_sg_start = float(np.linalg.eigvalsh(flows["SimSiam, no stop-gradient"].F(0)).max())
    return [
        deterministic_check("fixed_points", "Simulated modes end on the analytic fixed points (Figs. 3-4).", SEED_FIGURES["fig4"],
                       worst, worst < 1e-3, f"largest |p_end - analytic end| = {worst:.2g}"),
        deterministic_check("predictor_becomes_symmetric", "W_p becomes (nearly) symmetric during training (Fig. 2).",
                       SEED_FIGURES["fig2"], max(a[-1] for a in asymmetry.values()),
                       all(a[-1] < 0.5 * a[0] for a in asymmetry.values()),
                       "||W_p - W_p^T|| / ||W_p||: " + ", ".join(f"{n} {a[0]:.2f} -> {a[-1]:.2f}" for n, a in asymmetry.items())),
        deterministic_check("weight_decay_lowers_eigenvalues", "A larger weight decay lowers the final eigenvalues (Fig. 5, top).",
                       SEED_FIGURES["fig5"], eta_final[-1], all(np.diff(eta_final) <= 1e-9) and eta_final[0] > eta_final[-1],
                       "final largest p for eta = " + ", ".join(f"{e:g}: {v:.3f}" for e, v in zip(fig5["eta"], eta_final))),
        deterministic_check("large_weight_decay_collapses", "Weight decay above tau^2 / (4 (1 + sigma^2)) collapses every "
                       "mode; just below it the large modes survive (SimSiam, tau = 1).", SEED_FIGURES["fig3"],
                       threshold[1.1], threshold[1.1] < 1e-3 and threshold[0.9] > 0.1,
                       f"largest final p at 0.9x / 1.1x the threshold {collapse_threshold(1.0, p['fig5_sigma2']):.3f}: "
                       f"{threshold[0.9]:.3f} / {threshold[1.1]:.2g}"),
        deterministic_check("small_ema_rate_is_slower", "A smaller EMA rate beta makes training converge more slowly (Fig. 5, bottom).",
                       SEED_FIGURES["fig5"], times[0], all(np.diff(times) <= 0) and times[0] > times[-1],
                       "time to 90 % of the final largest p for beta = "
                       + ", ".join(f"{b:g}: {t:.1f}" for b, t in zip(fig5["beta"], times))),
        deterministic_check("eigenspaces_align", "The eigenspaces of W_p and F = W W^T align (Theorem 3, Fig. 2).",
                       SEED_FIGURES["fig2"], min_cos, min_cos > 0.99,
                       f"smallest cos(u_j, W_p u_j) over non-collapsed modes = {min_cos:.4f}"),
        deterministic_check("no_stop_gradient_collapses", "Without the stop-gradient every mode collapses (Theorem 2).",
                       SEED_FIGURES["thm2"], no_sg, no_sg < 1e-3 * no_sg_start,
                       f"largest eigenvalue of F: {no_sg_start:.3g} at t = 0 -> {no_sg:.3g}"),
    ]
