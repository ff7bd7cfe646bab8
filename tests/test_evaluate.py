"""Evaluation: the weighted kNN against a hand-computed vote, fp32 features inside an autocast region."""
import math

import pytest
import torch

from ssl_src.evaluate import extract_features, weighted_knn_accuracy
from ssl_src.data import ImageData


def test_weighted_knn_votes_with_exp_similarity_over_temperature():
    """Query q = (1, 0); bank: two class-0 features at 60 degrees (cos 0.5) and one class-1 feature at cos 0.9.
    k = 3, T = 0.1: class 0 scores 2 e^5 = 296.8, class 1 e^9 = 8103: class 1 wins, though the majority says 0.
    With T = 10 the weights are nearly equal and the majority (class 0) wins."""
    bank = torch.tensor([[0.5, math.sqrt(0.75)], [0.5, -math.sqrt(0.75)], [0.9, math.sqrt(1 - 0.81)]])
    labels = torch.tensor([0, 0, 1])
    query = torch.tensor([[2.0, 0.0]])  # cosine: the norm does not matter
    assert weighted_knn_accuracy(bank, labels, query, torch.tensor([1]), 2, k=3, temperature=0.1) == 1.0
    assert weighted_knn_accuracy(bank, labels, query, torch.tensor([0]), 2, k=3, temperature=10.0) == 1.0
    assert weighted_knn_accuracy(bank, labels, query, torch.tensor([0]), 2, k=1, temperature=0.1) == 0.0  # nearest: class 1


def test_weighted_knn_caps_k_at_the_bank_size_and_chunks_queries():
    torch.manual_seed(0)
    bank, labels = torch.randn(50, 8), torch.randint(0, 3, (50,))
    queries = bank[:20] + 1e-3 * torch.randn(20, 8)
    whole = weighted_knn_accuracy(bank, labels, queries, labels[:20], 3, k=200, temperature=0.01)
    chunked = weighted_knn_accuracy(bank, labels, queries, labels[:20], 3, k=200, temperature=0.01, chunk=7)
    assert whole == chunked == 1.0  # T = 0.01: the nearest neighbour (itself) dominates every vote


def test_features_are_fp32_even_inside_a_bf16_autocast_region():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5))
    images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    data = ImageData(name="tiny", train_images=images, train_labels=torch.zeros(16, dtype=torch.long), test_images=images,
                     test_labels=torch.zeros(16, dtype=torch.long), mean=(0.5,), std=(0.25,), num_classes=1)
    cpu = torch.device("cpu")
    plain = extract_features(net, images, data, 8, cpu)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = extract_features(net, images, data, 8, cpu)
        assert net(torch.randn(2, 1, 8, 8)).dtype == torch.bfloat16  # the region is really bf16
    assert inside.dtype == torch.float32 and torch.equal(plain, inside)
