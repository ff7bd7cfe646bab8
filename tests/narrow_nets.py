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

TOLERANCE = 1e-3  # max |grad - float64 grad| / max |float64 grad|, per parameter


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
    worst = max(float((got[k].double() - v).abs().max() / v.abs().max().clamp_min(1e-12)) for k, v in expected.items())
    if worst > TOLERANCE:
        print(f"WRONG gradients {name}: max relative error {worst:.3g}", flush=True)
        sys.exit(1)
    print(f"gradients ok {name} (max relative error {worst:.2g})", flush=True)


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
