"""The live collapse monitor: collapse metrics and a small kNN of a fixed probe set while a run trains."""
from __future__ import annotations

import sys
import time

import numpy as np
import torch

from . import data as datasets
from .evaluate import extract_features, weighted_knn_accuracy
from .metrics import asymmetry, collapse_metrics, eigenspace_alignment

MONITOR_PROBE_IMAGES = 2048
MONITOR_TEST_IMAGES = 1024  # queries of the monitor's kNN, against the probe set's features as the bank
MONITOR_KNN_K = 20  # weighted kNN on a 2048-image bank: k = 200 would vote with a tenth of the bank
COLLAPSE_WARNING_RANK = 2.0  # effective rank below this = complete collapse


class CollapseMonitor:
    """Collapse metrics of the fp32 backbone features of a fixed probe set, every `monitor_every` steps, and
    a small weighted kNN (fixed test images against the probe set): the learning curve of a run."""

    def __init__(self, run, data: datasets.ImageData, cfg, device):
        idx = torch.from_numpy(datasets.data_permutation(len(data.train_images), cfg.data_seed + 1)[:MONITOR_PROBE_IMAGES])
        test_idx = torch.from_numpy(datasets.data_permutation(len(data.test_images), cfg.data_seed + 1)[:MONITOR_TEST_IMAGES])
        self.images, self.labels = data.train_images[idx], data.train_labels[idx]
        self.test_images, self.test_labels = data.test_images[test_idx], data.test_labels[test_idx]
        self.data, self.cfg, self.device, self.run = data, cfg, device, run
        self.seconds = 0.0
        self.warned = False

    def __call__(self, method, step: int) -> None:
        started = time.perf_counter()
        features = extract_features(method.backbone, self.images, self.data, self.cfg.image_size, self.device)
        test_features = extract_features(method.backbone, self.test_images, self.data, self.cfg.image_size, self.device)
        metrics = collapse_metrics(features)
        metrics["weighted_knn20_acc"] = weighted_knn_accuracy(features, self.labels, test_features, self.test_labels,
                                                              self.data.num_classes, k=MONITOR_KNN_K)
        self.run.log_monitor(dict(metrics, step=step, **predictor_spectra(method, features, self.device)))
        if metrics["effective_rank"] < COLLAPSE_WARNING_RANK and not self.warned:
            print(f"warning: run {self.run.id} step {step}: effective rank {metrics['effective_rank']:.2f} "
                  f"< {COLLAPSE_WARNING_RANK}: the representation has collapsed completely", file=sys.stderr, flush=True)
            self.warned = True
        self.seconds += time.perf_counter() - started

    def state_dict(self) -> dict:
        return {"monitor_seconds": self.seconds, "warned": self.warned}

    def load_state_dict(self, state: dict) -> None:
        self.seconds, self.warned = state["monitor_seconds"], state["warned"]


def predictor_spectra(method, features: torch.Tensor, device) -> dict:
    """For a linear predictor W_p (Tian et al.'s setting): the eigenvalues of F = E[f f^T] over the probe
    set's projector outputs f (eval mode), the real parts of W_p's eigenvalues, cos(u_j, W_p u_j) per
    eigenvector of F, and W_p's asymmetry. Empty for other predictors."""
    predictor = getattr(method, "predictor", None)
    if not isinstance(predictor, torch.nn.Linear):
        return {}
    was_training = method.projector.training
    with torch.no_grad():
        f = method.projector.eval()(features.to(device)).double().cpu()
    method.projector.train(was_training)
    W_p = predictor.weight.detach().double().cpu().numpy()
    s, cos = eigenspace_alignment((f.T @ f / len(f)).numpy(), W_p)
    return {"F_eigenvalues": s.tolist(), "predictor_eigenvalues": sorted(np.linalg.eigvals(W_p).real.tolist(), reverse=True),
            "alignment": cos.tolist(), "predictor_asymmetry": asymmetry(W_p)}
