import math

import pytest
import torch

from ssl_src.metrics import (asymmetry, collapse_auc, eigenspace_alignment, collapse_metrics, cumulative_spectrum, effective_rank, normalised_std,
                             singular_values)


def matrix_with_spectrum(sigma, n=64, seed=0):
    """An n x d centred matrix whose singular values are exactly `sigma`."""
    g = torch.Generator().manual_seed(seed)
    d = len(sigma)
    u, _ = torch.linalg.qr(torch.randn(n, d, generator=g, dtype=torch.float64))
    u = u - u.mean(0)  # centre the columns, then re-orthonormalise within the centred subspace
    u, _ = torch.linalg.qr(u)
    v, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(sigma, dtype=torch.float64)) @ v.T


def test_singular_values_recover_a_known_spectrum_in_descending_order():
    sigma = [5.0, 3.0, 2.0, 0.5]
    x = matrix_with_spectrum(sigma) + 7.0  # a constant offset must be removed by centring
    assert torch.allclose(singular_values(x), torch.tensor(sigma, dtype=torch.float64), atol=1e-9)


def test_auc_of_a_hand_computed_spectrum():
    # sigma = (3, 1): C = (3/4, 4/4), AUC = (0.75 + 1) / 2
    assert collapse_auc(torch.tensor([3.0, 1.0])) == pytest.approx(0.875)
    # the authors use sigma itself, not sigma^2 (which would give (0.9 + 1) / 2 = 0.95)
    assert collapse_auc(torch.tensor([3.0, 1.0])) != pytest.approx(0.95)


def test_auc_flat_spectrum_and_rank_one():
    d = 10
    assert collapse_auc(torch.ones(d)) == pytest.approx((d + 1) / (2 * d))  # -> 0.5 for large d
    assert collapse_auc(torch.tensor([2.0] + [0.0] * (d - 1))) == pytest.approx(1.0)


def test_identical_samples_are_completely_collapsed():
    sigma = singular_values(torch.ones(10, 4))
    assert collapse_auc(sigma) == 1.0 and effective_rank(sigma) == 0.0


def test_cumulative_spectrum_ends_at_one():
    c = cumulative_spectrum(torch.tensor([4.0, 2.0, 1.0, 1.0]))
    assert torch.allclose(c, torch.tensor([0.5, 0.75, 0.875, 1.0]))


def test_effective_rank_flat_and_rank_one():
    assert effective_rank(torch.ones(16)) == pytest.approx(16, rel=1e-4)
    assert effective_rank(torch.tensor([1.0, 0.0, 0.0, 0.0])) == pytest.approx(1.0, abs=1e-4)
    # two equal values and two zeros: exp(ln 2) = 2
    assert effective_rank(torch.tensor([1.0, 1.0, 0.0, 0.0])) == pytest.approx(2.0, abs=1e-4)


def test_normalised_std_healthy_and_collapsed():
    d = 64
    healthy = torch.randn(20000, d, generator=torch.Generator().manual_seed(0))
    assert normalised_std(healthy) == pytest.approx(1 / math.sqrt(d), rel=0.02)
    collapsed = torch.ones(100, d) + 1e-9 * torch.randn(100, d)
    assert normalised_std(collapsed) < 1e-6


def test_collapse_metrics_bundle_normalises_rank_by_the_attainable_maximum():
    x = torch.eye(5, 8)  # 5 simplex vertices in 8-d: centred, 4 equal nonzero singular values
    m = collapse_metrics(x)
    assert m["dim"] == 8
    assert m["effective_rank"] == pytest.approx(4, rel=1e-3)
    assert m["effective_rank_fraction"] == pytest.approx(1.0, rel=1e-3)
    assert len(m["singular_values"]) == 8 and m["singular_values"][4:] == pytest.approx([0.0] * 4, abs=1e-9)  # d values
    # flat over the 4 nonzero values of 8: C = (1/4, 2/4, 3/4, 1, 1, 1, 1, 1), AUC = 6.5 / 8
    assert m["auc"] == pytest.approx(6.5 / 8)


def test_eigenspace_alignment_hand_values():
    s, cos = eigenspace_alignment([[1.0, 0.0], [0.0, 3.0]], [[-1.0, 0.0], [0.0, 2.0]])
    assert s.tolist() == [3.0, 1.0]
    assert cos == pytest.approx([1.0, -1.0])  # shared eigenvectors; W_p's eigenvalue signs
    _, cos = eigenspace_alignment([[3.0, 0.0], [0.0, 1.0]], [[0.0, -1.0], [1.0, 0.0]])
    assert cos == pytest.approx([0.0, 0.0])  # a 90-degree rotation turns every eigenvector away


def test_asymmetry_hand_values():
    assert asymmetry([[1.0, 2.0], [2.0, 5.0]]) == 0.0
    assert asymmetry([[0.0, 1.0], [-1.0, 0.0]]) == pytest.approx(2.0)
