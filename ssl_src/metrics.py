"""Collapse metrics of a representation matrix (N samples x d dims), as the authors compute them."""
from __future__ import annotations

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
