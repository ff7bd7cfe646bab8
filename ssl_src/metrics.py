"""Collapse metrics of a representation matrix (N samples x d dims), as the authors compute them."""
from __future__ import annotations

import numpy as np
import torch


def singular_values(features: torch.Tensor) -> torch.Tensor:
    """The d singular values of the column-centred N x d matrix, descending (float64 for a stable tail);
    with N < d the missing ones are zeros, so the AUC still averages over d."""
    x = features.double()
    sigma = torch.linalg.svdvals(x - x.mean(dim=0, keepdim=True))
    return torch.nn.functional.pad(sigma, (0, x.shape[1] - len(sigma)))


def cumulative_spectrum(sigma: torch.Tensor) -> torch.Tensor:
    """C_j = (sigma_1 + ... + sigma_j) / sum(sigma): the singular values themselves, not their squares.

    A zero spectrum (every sample identical) counts as rank one: C_j = 1 for every j."""
    if sigma.sum() <= 0:
        return torch.ones_like(sigma)
    return torch.cumsum(sigma, 0) / sigma.sum()


def collapse_auc(sigma: torch.Tensor) -> float:
    """AUC = (1/d) sum_j C_j: about 0.5 for a flat spectrum, 1 for rank one (higher = more collapsed)."""
    return float(cumulative_spectrum(sigma).mean())


def effective_rank(sigma: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe: exp of the entropy of p_k = sigma_k / sum(sigma) (+eps, as in Garrido et al.).

    A zero spectrum (every sample identical) has no dimension left: 0."""
    if sigma.sum() <= 0:
        return 0.0
    p = sigma / sigma.sum() + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))


def normalised_std(outputs: torch.Tensor) -> float:
    """Mean per-dimension std of the L2-normalised outputs: ~1/sqrt(d) when healthy, 0 when collapsed."""
    z = torch.nn.functional.normalize(outputs.double(), dim=1)
    return float(z.std(dim=0).mean())


def collapse_metrics(features: torch.Tensor) -> dict:
    """Every collapse signal of one feature matrix, plus its spectrum for plots."""
    sigma = singular_values(features)
    max_rank = min(features.shape[0] - 1, features.shape[1])
    rank = effective_rank(sigma)
    return {
        "auc": collapse_auc(sigma),
        "effective_rank": rank,
        "effective_rank_fraction": rank / max_rank,
        "normalised_std": normalised_std(features),
        "dim": int(features.shape[1]),
        "singular_values": sigma.tolist(),
    }


def eigenspace_alignment(F, W_p) -> tuple[np.ndarray, np.ndarray]:
    """Tian et al.'s alignment of a predictor with the correlation of its input: the eigenvalues s_j of the
    symmetric F (descending) and, per eigenvector u_j, cos(u_j, W_p u_j) (1 = u_j is an eigenvector of W_p
    with a positive eigenvalue)."""
    s, u = np.linalg.eigh(np.asarray(F, dtype=float))
    s, u = s[::-1], u[:, ::-1]
    wu = np.asarray(W_p, dtype=float) @ u
    return s, np.sum(u * wu, axis=0) / np.maximum(np.linalg.norm(wu, axis=0), 1e-300)


def asymmetry(W) -> float:
    """||W - W^T|| / ||W||: 0 for a symmetric matrix."""
    W = np.asarray(W, dtype=float)
    return float(np.linalg.norm(W - W.T) / max(np.linalg.norm(W), 1e-300))
