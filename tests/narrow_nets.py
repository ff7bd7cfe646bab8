"""Run in a subprocess by test_kernels.py (a failing kernel hangs or kills its process, not pytest's).

For each TrainConfig given as JSON on the command line: build the backbone as training does (layout
included), compare its gradients with a float64 copy's (ATen's own convolutions, not oneDNN), then train
the whole method a few steps where its data set is present. Prints one line per net and stage, so the
test can say which net was running when a kernel hung or crashed.
"""
import copy
import json
import sys
from dataclasses import replace

import torch

from ssl_src import data as datasets
from ssl_src.augment import AugmentConfig
from ssl_src.errors import UserError
from ssl_src.models import build_backbone, to_device_layout
from ssl_src.config import TrainConfig
from ssl_src.train import train

# |grad - float64 grad| / |float64 grad| (L2 norms), per parameter. The norm, not the largest entry: a
# pre-activation within rounding of 0 takes the other side of a ReLU in float32, and the gradient entries behind
# it differ by their whole size, in NCHW as in channels_last (Bottleneck-26 at 224 px: 24 % in the largest entry
# of an activation's gradient, 1e-4 in the norms). The paper's 224-px nets have ~100x more activations, so a
# few such flips are expected there (Bottleneck-26 2x: 4.6e-3 in channels_last, whose forward rounds ~4x more
# than NCHW's); a faulty kernel errs on every entry it computes (the AVX2 bug unrouted: 1.03).
TOLERANCE = {"up to 64 px": 1e-3, "larger": 1e-2}


def gradients(net, x):
    net.zero_grad(set_to_none=True)
    out = net(x)
    out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape))
    return {name: p.grad for name, p in net.named_parameters() if p.grad is not None}


def check_gradients(cfg: TrainConfig, name: str) -> None:
    channels = datasets.manifest(cfg.dataset)["channels"]
    torch.manual_seed(0)
    backbone = build_backbone(cfg.arch, cfg.width, channels, cfg.stem, cfg.image_size).train()
    reference = copy.deepcopy(backbone).double()
    net = to_device_layout(backbone, torch.device("cpu"))
    x = torch.randn(4 if cfg.image_size <= 64 else 2, channels, cfg.image_size, cfg.image_size)
    expected = gradients(reference, x.double())
    for _ in range(2):
        got = gradients(net, x.contiguous(memory_format=torch.channels_last))
    worst = max(float((got[k].double() - v).norm() / v.norm().clamp_min(1e-12)) for k, v in expected.items())
    if worst > TOLERANCE["up to 64 px" if cfg.image_size <= 64 else "larger"]:
        print(f"WRONG gradients {name}: relative error {worst:.3g}", flush=True)
        sys.exit(1)
    print(f"gradients ok {name} (relative error {worst:.2g})", flush=True)


def main(entries: list[dict]) -> None:
    """`entries`: {"name": where the net comes from, "config": TrainConfig.to_dict()}."""
    for entry in entries:
        config = entry["config"]
        cfg = TrainConfig(**dict(config, augment=AugmentConfig(**config["augment"])))
        name = f"{entry['name']}: {cfg.arch} w{cfg.width} {cfg.stem} stem {cfg.image_size} px"
        print(f"start {name}", flush=True)
        check_gradients(cfg, name)
        few_steps = replace(cfg, steps=3, batch_size=32, subset=1.0, warmup_steps=0, warmup_epochs=0, monitor_every=0)
        try:
            summary = train(few_steps, evaluate=False, progress=False, checkpoint_every=0)
        except UserError as exc:  # the paper scale's data sets are not on this machine
            print(f"not trained {name}: {exc}", flush=True)
            continue
        print(f"trained ok {name}: loss {summary['loss']:.4f}", flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
