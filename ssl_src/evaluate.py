"""Evaluation of a frozen backbone: its pooled features on un-augmented images, kNN and a linear probe.

Three accuracies: the weighted kNN the field reports (Wu et al. 2018, as lightly and solo-learn: k = 200,
temperature 0.1, cosine; `weighted_knn_acc`), a majority-vote kNN whose k is chosen on a held-out split
(`knn_acc`), and a linear probe whose weight decay is chosen on that split (`linear_acc`). The test set
is touched once, with the chosen value. Features are always fp32 (a bf16 feature matrix puts a noise
floor under the tail of the spectrum, which is where collapse shows).
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from .augment import centre_view
from .data import ImageData
from .metrics import collapse_metrics

K_CHOICES = (1, 5, 10, 20, 50, 100, 200)
PROBE_WEIGHT_DECAYS = (0.0, 1e-4, 1e-3, 1e-2)
HELD_OUT_FRACTION = 1 / 12  # 5k of Fashion-MNIST's 60k


WEIGHTED_KNN_K = 200
WEIGHTED_KNN_TEMPERATURE = 0.1


@torch.no_grad()
def extract_features(backbone: torch.nn.Module, images: torch.Tensor, data: ImageData, image_size: int,
                     device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """Pooled backbone output in eval mode, computed in fp32 even inside an autocast region (on the CPU)."""
    was_training = backbone.training
    backbone.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = centre_view(images[start : start + batch_size].to(device), image_size, data.mean, data.std)
        with torch.autocast(device.type, enabled=False):
            out.append(backbone(x.float()).float().cpu())
    backbone.train(was_training)
    return torch.cat(out)


def held_out_split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed + 12345).permutation(n)
    n_val = int(round(n * HELD_OUT_FRACTION))
    return perm[n_val:], perm[:n_val]


def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, ks: tuple[int, ...],
                num_classes: int, chunk: int = 2048) -> dict[int, torch.Tensor]:
    """Cosine-similarity kNN with a majority vote, for several k at once: {k: predicted labels}."""
    bank = F.normalize(bank, dim=1)
    k_max = min(max(ks), len(bank))
    preds = {k: [] for k in ks}
    for start in range(0, len(queries), chunk):
        sim = F.normalize(queries[start : start + chunk], dim=1) @ bank.T
        top_labels = bank_labels[sim.topk(k_max, dim=1).indices]  # (q, k_max), nearest first
        for k in ks:
            votes = F.one_hot(top_labels[:, : min(k, k_max)], num_classes).sum(1)
            preds[k].append(votes.argmax(1))
    return {k: torch.cat(v) for k, v in preds.items()}


def knn_accuracy(train_x, train_y, test_x, test_y, num_classes: int) -> tuple[float, int]:
    """(test accuracy, k chosen on the held-out part of the training set)."""
    fit, val = held_out_split(len(train_x))
    val_preds = knn_predict(train_x[fit], train_y[fit], train_x[val], K_CHOICES, num_classes)
    best_k = max(K_CHOICES, key=lambda k: ((val_preds[k] == train_y[val]).float().mean().item(), -k))
    test_pred = knn_predict(train_x, train_y, test_x, (best_k,), num_classes)[best_k]
    return float((test_pred == test_y).float().mean()), best_k


def weighted_knn_accuracy(train_x, train_y, test_x, test_y, num_classes: int, k: int = WEIGHTED_KNN_K,
                          temperature: float = WEIGHTED_KNN_TEMPERATURE, chunk: int = 2048) -> float:
    """Wu et al.'s weighted kNN: each of the k nearest training features (cosine) votes for its class
    with weight exp(similarity / temperature); the class with the largest total wins."""
    bank = F.normalize(train_x, dim=1)
    k = min(k, len(bank))
    correct = 0
    for start in range(0, len(test_x), chunk):
        sim, idx = (F.normalize(test_x[start : start + chunk], dim=1) @ bank.T).topk(k, dim=1)
        scores = torch.zeros(len(sim), num_classes, dtype=sim.dtype).scatter_add_(1, train_y[idx], (sim / temperature).exp())
        correct += int((scores.argmax(1) == test_y[start : start + chunk]).sum())
    return correct / len(test_x)


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float, iters: int) -> torch.nn.Linear:
    """Multinomial logistic regression by full-batch L-BFGS (deterministic, no learning rate to tune)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], num_classes)
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + 0.5 * weight_decay * model.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return model


def linear_probe_accuracy(train_x, train_y, test_x, test_y, num_classes: int, iters: int = 200) -> tuple[float, float]:
    """(test accuracy, weight decay chosen on the held-out split) of a linear classifier on frozen features."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    fit, val = held_out_split(len(train_x))

    def val_accuracy(wd):
        model = _fit_logistic(train_x[fit], train_y[fit], num_classes, wd, iters)
        with torch.no_grad():
            return (model(train_x[val]).argmax(1) == train_y[val]).float().mean().item()

    best_wd = max(PROBE_WEIGHT_DECAYS, key=lambda wd: (val_accuracy(wd), wd))
    model = _fit_logistic(train_x, train_y, num_classes, best_wd, iters)
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    return float(accuracy), best_wd


def evaluate_features(train_x: torch.Tensor, test_x: torch.Tensor, data: ImageData, linear: bool = True) -> dict:
    """Weighted and majority kNN, the linear probe, and the collapse metrics (on the whole training set, as
    the authors do)."""
    started = time.perf_counter()
    knn, k = knn_accuracy(train_x, data.train_labels, test_x, data.test_labels, data.num_classes)
    result = {"weighted_knn_acc": weighted_knn_accuracy(train_x, data.train_labels, test_x, data.test_labels,
                                                        data.num_classes),
              "knn_acc": knn, "knn_k": k}
    if linear:
        acc, wd = linear_probe_accuracy(train_x, data.train_labels, test_x, data.test_labels, data.num_classes)
        result.update(linear_acc=acc, linear_weight_decay=wd)
    result.update(collapse_metrics(train_x))
    result["eval_seconds"] = time.perf_counter() - started
    return result


def raw_pixel_baseline(data: ImageData, image_size: int) -> dict:
    """The same evaluation on flattened, normalised pixels at the training resolution: what a representation must beat."""
    flat = lambda images: centre_view(images, image_size, data.mean, data.std).reshape(len(images), -1)
    return evaluate_features(flat(data.train_images), flat(data.test_images), data)
