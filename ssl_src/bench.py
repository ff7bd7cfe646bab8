"""`python -m ssl_src bench`: our SimSiam step against a peer pipeline built from lightly's documented
recipe, on the same backbone, data, batch and cores; achieved FLOP/s against the measured GEMM peak;
the speed-ups we use (bf16, channels_last, joint views), each switched off in turn; the hardware; and
the cost of evaluating one run.

Compared pipelines are timed in alternating rounds, so slow drift of the machine cancels.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from . import data as datasets
from .evaluate import extract_features, knn_accuracy
from .metrics import collapse_metrics
from .hardware import autocast_dtype, describe, pick_device
from .models import needs_nchw, to_device_layout
from .config import TrainConfig
from .streaming import loader_workers
from .train import build_model, new_state, train_step

IMAGE_SIZE = 28
BATCH = 256


def gemm_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 10, device=torch.device("cpu")) -> float:
    """Measured matmul FLOP/s (best of `repeats`) on `device` in `dtype`."""
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def step_config(width: int, **overrides) -> TrainConfig:
    """The configuration of the benchmarked SimSiam step (ResNet-18, `IMAGE_SIZE` px, batch `BATCH`)."""
    return TrainConfig(**{"width": width, "batch_size": BATCH, "image_size": IMAGE_SIZE, "proj_layers": 2, **overrides})


class OurStep:
    """One SimSiam training step of `ssl_src`, augmentation included, data in memory; `overrides` are
    TrainConfig fields (the ablations), `channels_last=False` runs the net in NCHW throughout."""

    def __init__(self, width: int, data: datasets.ImageData, device, channels_last: bool = True, **overrides):
        self.cfg = step_config(width, **overrides)
        self.data, self.device = data, device
        model = build_model(self.cfg, data.channels)
        self.model = to_device_layout(model, device, nchw=not channels_last).train()
        self.layout = "NCHW" if not channels_last or needs_nchw(model, device) else "channels_last"
        self.state = new_state(self.cfg, self.model, data, device, len(data.train_images) // self.batch)
        self.rng = np.random.default_rng(0)

    @property
    def batch(self) -> int:
        return self.cfg.batch_size

    def step(self) -> None:
        """The training loop's own step on a random batch (lr schedule and after-step hook included)."""
        train_step(self.state, self.rng.choice(len(self.data.train_images), self.batch, replace=False))

    def flops_per_step(self) -> int:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            self.step()
        return counter.get_total_flops()


class PeerStep:
    """lightly's documented SimSiam recipe: per-image SimSiamTransform in a 2-worker DataLoader, the
    lightly heads and loss, two forward passes, fp32, on the same backbone."""

    batch = BATCH

    def __init__(self, width: int, data: datasets.ImageData):
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
        from lightly.transforms import SimSiamTransform
        from PIL import Image

        from .models import build_backbone

        torch.manual_seed(0)
        self.backbone = build_backbone("resnet18", width, data.channels)
        d = self.backbone.num_features
        self.projection_head = SimSiamProjectionHead(d, d, 32 * width)
        self.prediction_head = SimSiamPredictionHead(32 * width, 8 * width, 32 * width)
        self.criterion = NegativeCosineSimilarity()
        params = [*self.backbone.parameters(), *self.projection_head.parameters(), *self.prediction_head.parameters()]
        self.optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4)
        transform = SimSiamTransform(input_size=IMAGE_SIZE, gaussian_blur=0.0,
                                     normalize={"mean": list(data.mean), "std": list(data.std)})
        images = data.train_images[:, 0].numpy()

        class PilDataset(torch.utils.data.Dataset):
            def __len__(self):
                return len(images)

            def __getitem__(self, i):
                return transform(Image.fromarray(images[i]))

        self.loader = torch.utils.data.DataLoader(PilDataset(), batch_size=BATCH, shuffle=True, num_workers=2,
                                                  drop_last=True, persistent_workers=True)
        self.batches = iter(self.loader)

    def step(self) -> None:
        try:
            x0, x1 = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            x0, x1 = next(self.batches)
        z0 = self.projection_head(self.backbone(x0))
        z1 = self.projection_head(self.backbone(x1))
        p0, p1 = self.prediction_head(z0), self.prediction_head(z1)
        loss = 0.5 * (self.criterion(p0, z1.detach()) + self.criterion(p1, z0.detach()))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


def pairs_per_second(pipeline, steps: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        pipeline.step()
    return steps * pipeline.batch / (time.perf_counter() - started)


def sweep_config() -> dict:
    """The net of a quick-scale sweep: the capacity chapter's quick preset (width, image size, batch), fp32."""
    from .chapters.capacity_vs_data import PRESETS

    quick = PRESETS["quick"]
    return dict(width=quick["widths"][0], image_size=quick["image_size"], batch_size=quick["batch_size"], precision="fp32")


def _sweep_worker(config: dict, threads: int, steps: int, barrier, results) -> None:
    """One run of a sweep: its share of the cores; all workers start timing together (the barrier)."""
    torch.set_num_threads(threads)
    config = dict(config)
    pipeline = OurStep(config.pop("width"), datasets.load("fashion_mnist"), torch.device("cpu"), **config)
    pairs_per_second(pipeline, 2)
    barrier.wait()
    results.put(pairs_per_second(pipeline, steps))


def sweep_throughput(jobs: int, steps: int, rounds: int, log=print) -> dict:
    """Pairs/s of a sweep of the quick preset's runs on the CPU: one run with every core, against `jobs` runs
    at once with cores / jobs threads each (their pairs/s summed), in alternating rounds."""
    from multiprocessing import get_context

    from .sweep import cpu_cores

    config, cores = sweep_config(), cpu_cores()
    ctx = get_context("spawn")
    single_pipeline = OurStep(config["width"], datasets.load("fashion_mnist"), torch.device("cpu"),
                              **{k: v for k, v in config.items() if k != "width"})
    pairs_per_second(single_pipeline, 2)
    single, parallel = [], []
    for r in range(rounds):
        single.append(pairs_per_second(single_pipeline, steps))
        barrier, queue = ctx.Barrier(jobs), ctx.Queue()
        workers = [ctx.Process(target=_sweep_worker, args=(config, max(1, cores // jobs), steps, barrier, queue))
                   for _ in range(jobs)]
        for w in workers:
            w.start()
        parallel.append(sum(queue.get(timeout=600) for _ in workers))
        for w in workers:
            w.join(timeout=60)
        log(f"sweep round {r + 1}/{rounds}: one run {single[-1]:.0f} pairs/s, {jobs} runs at once {parallel[-1]:.0f} pairs/s")
    one, many = statistics.median(single), statistics.median(parallel)
    return {"config": config, "cores": cores, "jobs": jobs, "single_run_pairs_per_s": one,
            "sweep_pairs_per_s": many, "speed_up": many / one}


def evaluation_cost(data: datasets.ImageData, device) -> dict:
    """Seconds for fp32 features (60k + 10k), the collapse metrics and kNN of one run of the quick scale
    (the capacity chapter's quick preset: its width and image size)."""
    from .chapters.capacity_vs_data import PRESETS

    quick = PRESETS["quick"]
    width, size = quick["widths"][0], quick["image_size"]
    model = to_device_layout(build_model(TrainConfig(width=width, image_size=size, proj_layers=2), data.channels), device)
    started = time.perf_counter()
    train_x = extract_features(model.backbone, data.train_images, data, size, device)
    test_x = extract_features(model.backbone, data.test_images, data, size, device)
    features = time.perf_counter()
    collapse_metrics(train_x)
    metrics = time.perf_counter()
    knn_accuracy(train_x, data.train_labels, test_x, data.test_labels, data.num_classes)
    knn = time.perf_counter()
    return {"width": width, "image_size": size, "features_s": features - started, "metrics_s": metrics - features,
            "knn_s": knn - metrics, "total_s": knn - started}


# What the field uses, each switched off in turn against our default step (see the performance appendix);
# the precision ablation is the other precision: fp32 where ours is bf16, bf16 autocast where it is fp32.
ABLATIONS = {
    "NCHW layout (no channels_last)": dict(channels_last=False),
    "BN per view (two passes, the authors' semantics)": dict(bn_views="per_view"),
}


def ablation(width: int, data: datasets.ImageData, device, rounds: int, steps: int, log=print) -> dict:
    """Pairs/s of each ablation and of our default step, timed in alternating rounds. Emulated bf16 (a CPU
    without native bf16) is about 10x slower than fp32: it is timed on one step a round, not `steps`."""
    native = autocast_dtype("auto", device) is not None
    precision = "bf16 autocast" if native else "fp32: no native bf16 here"
    other = {"fp32 (no bf16 autocast)": dict(precision="fp32")} if native else {
        "bf16 autocast without native bf16": dict(precision="bf16")}
    ours = OurStep(width, data, device)
    pipelines = {f"ours ({precision}, {ours.layout}, joint views)": ours}
    pipelines.update({name: OurStep(width, data, device, **overrides) for name, overrides in (other | ABLATIONS).items()})
    steps_of = {name: 1 if "without native bf16" in name else steps for name in pipelines}
    for name, pipeline in pipelines.items():
        pairs_per_second(pipeline, min(2, steps_of[name]))
    rates = {name: [] for name in pipelines}
    for _ in range(rounds):
        for name, pipeline in pipelines.items():
            rates[name].append(pairs_per_second(pipeline, steps_of[name]))
    result = {name: statistics.median(r) for name, r in rates.items()}
    log("ablation at width %d: %s" % (width, ", ".join(f"{n} {v:.0f}" for n, v in result.items())))
    return result


def lightly_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("lightly") is not None


def stack_seeds(module: torch.nn.Module, seeds: int) -> torch.nn.Module:
    """A copy of a ResNet backbone that holds `seeds` independent nets side by side: every convolution grouped
    by seed (each seed's channels see only its own), every BatchNorm over each seed's own channels and
    batch. Seed s reads input channel s (its own augmented batch of a grey image). Only the backbone: what
    the timing below measures; the heads would be grouped linears the same way."""
    import copy

    stacked = copy.deepcopy(module)
    for name, child in list(stacked.named_modules()):
        for attr, layer in list(child.named_children()):
            if isinstance(layer, torch.nn.Conv2d):
                setattr(child, attr, torch.nn.Conv2d(layer.in_channels * seeds, layer.out_channels * seeds,
                                                     layer.kernel_size, layer.stride, layer.padding,
                                                     groups=layer.groups * seeds, bias=layer.bias is not None))
            elif isinstance(layer, torch.nn.BatchNorm2d):
                setattr(child, attr, torch.nn.BatchNorm2d(layer.num_features * seeds))
    return stacked


def seed_stacking(width: int, seeds: int, steps: int, rounds: int, log=print) -> dict:
    """Backbone forward + backward of `seeds` narrow nets (the quick preset's image size and batch, both views
    at once): one after the other, against one seed-stacked net (`stack_seeds`), in this process, every
    core, NCHW and (unless a net has a convolution whose channels_last kernel fails: `needs_nchw`)
    channels_last; pairs/s summed over the seeds. Beside them, one seed on one thread times the
    cores: what the sweep (one run per core) reaches at best, the bar stacking has to clear to pay."""
    from .models import build_backbone

    config = sweep_config()
    size, batch = config["image_size"], config["batch_size"]
    nets = [build_backbone("resnet18", width, 1).train() for _ in range(seeds)]
    stacked = stack_seeds(nets[0], seeds).train()
    x = torch.randn(2 * batch, 1, size, size)
    xs = torch.randn(2 * batch, seeds, size, size)

    def separate() -> None:
        for net in nets:
            net(x).sum().backward()

    def together() -> None:
        stacked(xs).sum().backward()

    def rate(step, pairs_per_step: int) -> float:
        step()
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(steps):
                step()
            best = min(best, time.perf_counter() - started)
        return steps * pairs_per_step / best

    from .sweep import cpu_cores

    timings, cores, threads = {}, cpu_cores(), torch.get_num_threads()
    layouts = [(torch.contiguous_format, "NCHW")]
    if not any(needs_nchw(net, torch.device("cpu")) for net in nets + [stacked]):
        layouts.append((torch.channels_last, "channels_last"))
    for layout, label in layouts:
        for net in nets + [stacked]:
            net.to(memory_format=layout)
        x, xs = x.contiguous(memory_format=layout), xs.contiguous(memory_format=layout)
        timings[f"separate, {label}"] = rate(separate, seeds * batch)
        timings[f"stacked, {label}"] = rate(together, seeds * batch)
        torch.set_num_threads(1)
        try:  # one seed per process and core, as the sweep trains them: at best cores x this
            timings[f"one seed on 1 thread x {cores} processes (the sweep at perfect scaling), {label}"] = (
                cores * rate(lambda: nets[0](x).sum().backward(), batch))
        finally:
            torch.set_num_threads(threads)
    log(f"seed stacking, {seeds} seeds of width {width}: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) + " pairs/s")
    best = lambda prefix: max(v for k, v in timings.items() if k.startswith(prefix))
    return {"width": width, "seeds": seeds, "image_size": size, "batch_size": batch, "threads": threads,
            "layouts": [label for _, label in layouts], "pairs_per_s": timings, "speed_up": best("stacked") / best("separate"),
            "speed_up_vs_sweep_bound": best("stacked") / best("one seed")}


def run_benchmark(widths=(8, 16), rounds: int = 3, steps: int = 8, sweep_jobs: int = 0, log=print) -> dict:
    """Every measurement of the module docstring; the peer is skipped (NaN) where lightly is not installed.
    The sweep throughput runs `sweep_jobs` runs at once (0 = one per core; on a CPU only)."""
    data = datasets.load("fashion_mnist")
    with_peer = lightly_available()
    if not with_peer:
        log("lightly is not installed (pip install -r requirements-dev.txt): the peer pipeline is not measured")
    device = pick_device()
    precision = "bf16" if autocast_dtype("auto", device) else "fp32"
    # Without native bf16, one 2048^2 bf16 matmul takes minutes (a scalar fallback): not a peak worth measuring.
    peak_bf16 = gemm_peak(torch.bfloat16, device=device) if precision == "bf16" else float("nan")
    peak_fp32 = gemm_peak(torch.float32, device=device)
    peak = peak_bf16 if precision == "bf16" else peak_fp32
    log(f"GEMM peak: bf16 {peak_bf16 / 1e9:.0f} GFLOP/s, fp32 {peak_fp32 / 1e9:.0f} GFLOP/s ({torch.get_num_threads()} threads); "
        f"our step runs in {precision}")
    results = {"hardware": describe(device), "precision": precision, "peak_bf16_gflops": peak_bf16 / 1e9,
               "peak_fp32_gflops": peak_fp32 / 1e9, "peak_gflops": peak / 1e9, "widths": {}}
    for width in widths:
        pipelines = [OurStep(width, data, device)] + ([PeerStep(width, data)] if with_peer else [])
        for pipeline in pipelines:  # warm-up: allocator, oneDNN kernels, worker start
            pairs_per_second(pipeline, 2)
        ours_rates, peer_rates = [], []
        for r in range(rounds):
            ours_rates.append(pairs_per_second(pipelines[0], steps))
            peer_rates.append(pairs_per_second(pipelines[1], steps) if with_peer else float("nan"))
            log(f"width {width} round {r + 1}/{rounds}: ours {ours_rates[-1]:.0f} pairs/s, peer {peer_rates[-1]:.0f} pairs/s")
        flops = pipelines[0].flops_per_step()
        ours_rate = statistics.median(ours_rates)
        peer_rate = statistics.median(peer_rates) if with_peer else float("nan")
        achieved = flops * ours_rate / BATCH
        results["widths"][str(width)] = {
            "ours_pairs_per_s": ours_rate, "peer_pairs_per_s": peer_rate, "ratio": ours_rate / peer_rate,
            "model_gflop_per_pair": flops / BATCH / 1e9, "achieved_gflops": achieved / 1e9,
            "flops_fraction_of_peak": achieved / peak, "flops_fraction_bf16": achieved / peak_bf16,
            "flops_fraction_fp32": achieved / peak_fp32,
            # The peer runs the same model in fp32: its FLOP/s against the fp32 peak bounds any ratio we can reach.
            "peer_flops_fraction_fp32": flops * peer_rate / BATCH / peak_fp32,
            "ratio_at_full_peak": peak / (flops * peer_rate / BATCH),
        }
    results["ablation"] = {"width": max(widths), "pairs_per_s": ablation(max(widths), data, device, rounds, steps, log)}
    results["evaluation"] = evaluation_cost(data, device)
    if device.type == "cpu":
        from .sweep import cpu_cores

        results["sweep"] = sweep_throughput(sweep_jobs or cpu_cores(), steps, rounds, log)
    results["seed_stacking"] = seed_stacking(sweep_config()["width"], 3, max(1, steps // 2), rounds, log)
    return results


def format_table(results: dict) -> str:
    h = results["hardware"]
    lines = [f"{h['cpu']}, {h['logical_cpus']} logical CPUs, {h['torch_threads']} torch threads, "
             f"instruction sets {h['instruction_sets']}, oneDNN ISA {h['onednn_max_isa']}, native bf16 {h['native_bf16']}, "
             f"torch {h['torch']}, accelerator: {h['accelerator']}; our step's precision: {results['precision']}",
             f"{'width':>6}{'ours pairs/s':>14}{'peer pairs/s':>14}{'ratio':>8}{'GFLOP/s':>10}{'of ' + results['precision'] + ' peak':>14}"]
    for width, r in results["widths"].items():
        lines.append(f"{width:>6}{r['ours_pairs_per_s']:>14.0f}{r['peer_pairs_per_s']:>14.0f}{r['ratio']:>8.2f}"
                     f"{r['achieved_gflops']:>10.0f}{100 * r['flops_fraction_of_peak']:>13.1f}%")
    a = results["ablation"]
    lines.append(f"ablation at width {a['width']} (pairs/s): " + ", ".join(f"{n} {v:.0f}" for n, v in a["pairs_per_s"].items()))
    e = results["evaluation"]
    lines.append(f"evaluation (60k/10k, width {e['width']}, {e['image_size']} px): features {e['features_s']:.1f} s, metrics {e['metrics_s']:.1f} s, "
                 f"kNN {e['knn_s']:.1f} s, total {e['total_s']:.1f} s")
    if "sweep" in results:
        w = results["sweep"]
        lines.append(f"sweep (width {w['config']['width']}, {w['config']['image_size']} px, batch {w['config']['batch_size']}, fp32): "
                     f"one run on {w['cores']} cores {w['single_run_pairs_per_s']:.0f} pairs/s, {w['jobs']} runs at once "
                     f"{w['sweep_pairs_per_s']:.0f} pairs/s in all ({w['speed_up']:.2f}x)")
    k = results["seed_stacking"]
    lines.append(f"seed stacking (backbone fwd+bwd, {k['seeds']} seeds of width {k['width']}, {k['threads']} threads, pairs/s): "
                 + ", ".join(f"{n} {v:.0f}" for n, v in k["pairs_per_s"].items())
                 + f" (stacked vs separate {k['speed_up']:.2f}x, vs the sweep's bound {k['speed_up_vs_sweep_bound']:.2f}x)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the training step on a device


def device_nets() -> dict[str, TrainConfig]:
    """The nets `bench --device` times: the paper's ResNet-18 and ResNet-50 SimSiam at 224 px, streamed from an
    ImageFolder, and the quick presets' narrow and wide ResNet-18 on Fashion-MNIST in memory."""
    from .augment import IMAGENET
    from .chapters import capacity_vs_data as capacity
    from .chapters import resolve_parameters

    paper = dict(method="simsiam", dataset="imagenet", stem="imagenet", image_size=224, width=64, batch_size=256,
                 proj_layers=3, augment=IMAGENET, precision="auto")
    quick = resolve_parameters(capacity.PRESETS, "quick")
    return {"ResNet-18, 224 px (paper)": TrainConfig(arch="resnet18", **paper),
            "ResNet-50, 224 px (paper)": TrainConfig(arch="resnet50", **paper),
            **{f"ResNet-18 w{w}, {quick['image_size']} px (quick)": replace(
                capacity.config(quick, "resnet18", w, 1.0, 0, 1), precision="auto") for w in quick["widths"]}}


def write_image_folder(root: Path, files: int, classes: int = 10, size: tuple[int, int] = (500, 375)) -> None:
    """An ImageFolder of `files` JPEGs at ImageNet's typical size (random colour blocks): what the streaming
    loader decodes when no ImageNet is at hand."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", files), ("val", classes)):
        for i in range(n):
            folder = root / split / f"n{i % classes:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            blocks = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            Image.fromarray(blocks).resize(size, Image.BILINEAR).save(folder / f"{i}.JPEG", quality=90)


@contextlib.contextmanager
def data_root(path: Path | None):
    """$SSL_DATA pointed at `path` for the block (None: left as it is)."""
    before = os.environ.get("SSL_DATA")
    if path is not None:
        os.environ["SSL_DATA"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SSL_DATA", None)
        else:
            os.environ["SSL_DATA"] = before


def training_state(cfg: TrainConfig, device: torch.device):
    """The training loop's state at step 0 for `cfg` on `device`, and its batch schedule (what a run starts from)."""
    from .train import prepare

    cfg, data, schedule = prepare(cfg)
    model = to_device_layout(build_model(cfg, data.channels), device).train()
    return new_state(cfg, model, data, device, schedule.steps_per_epoch), schedule


def time_training_steps(cfg: TrainConfig, device: torch.device, steps: int, warmup: int) -> dict:
    """The training loop's own steps (`step_batches`, `train_step`) on `device`: images/s, the share of the time
    spent waiting for the next batch (the loader's stall), FLOPs per step and peak memory."""
    from torch.utils.flop_counter import FlopCounterMode

    from .train import step_batches

    state, schedule = training_state(replace(cfg, steps=steps + warmup + 1, monitor_every=0), device)
    cfg, data = state.cfg, state.data
    synchronise = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    batches = iter(step_batches(state, schedule))
    counter = FlopCounterMode(display=False)
    with counter:
        train_step(state, next(batches))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    waited = total = 0.0
    for k in range(steps + warmup):
        synchronise()
        started = time.perf_counter()
        batch = next(batches)
        fetched = time.perf_counter()
        train_step(state, batch)
        synchronise()
        if k >= warmup:
            waited, total = waited + fetched - started, total + time.perf_counter() - started
    peak_memory = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                   else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"arch": cfg.arch, "width": cfg.width, "image_size": cfg.image_size, "batch_size": cfg.batch_size,
            "precision": cfg.precision, "streamed": isinstance(data.train_images, datasets.FolderImages),
            "images_per_s": steps * cfg.batch_size / total, "step_ms": 1000 * total / steps,
            "loader_stall_fraction": waited / total, "flops_per_step": counter.get_total_flops(),
            "peak_memory_gb": peak_memory / 2**30}


def device_benchmark(device: torch.device, steps: int = 20, warmup: int = 5, nets: dict | None = None,
                     files: int = 2000, log=print) -> dict:
    """`time_training_steps` of every net of `device_nets()` (or `nets`), with model FLOP utilisation against the
    device's measured bf16 matmul peak (fp32 where bf16 is not native). A net the device cannot hold is
    recorded as its error, not a crash."""
    import tempfile

    nets = device_nets() if nets is None else nets
    native_bf16 = autocast_dtype("auto", device) is not None
    peak = gemm_peak(torch.bfloat16 if native_bf16 else torch.float32, size=8192 if device.type == "cuda" else 2048,
                     device=device)
    log(f"{device}: measured matmul peak {peak / 1e12:.1f} TFLOP/s ({'bf16' if native_bf16 else 'fp32'})")
    results = {"device": describe(device), "peak_tflops": peak / 1e12, "peak_dtype": "bf16" if native_bf16 else "fp32",
               "loader_workers": loader_workers(), "steps": steps, "nets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if any(cfg.dataset == "imagenet" for cfg in nets.values()):
            log(f"writing {files} JPEGs (500 x 375) for the streamed nets ...")
            write_image_folder(Path(tmp) / "imagenet", files)
        for name, cfg in nets.items():
            try:
                with data_root(Path(tmp) if cfg.dataset == "imagenet" else None):
                    row = time_training_steps(cfg, device, steps, warmup)
            except torch.OutOfMemoryError as exc:
                row = {"error": f"out of memory: {str(exc).splitlines()[0]}"}
            if "error" not in row:
                row["mfu"] = row["flops_per_step"] / (row["step_ms"] / 1000) / peak
                log(f"{name}: {row['images_per_s']:.0f} images/s, MFU {100 * row['mfu']:.1f} %, loader stall "
                    f"{100 * row['loader_stall_fraction']:.1f} %, peak memory {row['peak_memory_gb']:.1f} GiB")
            results["nets"][name] = row
    return results


def device_table(results: dict) -> "pd.DataFrame":
    import pandas as pd

    rows = {name: {"images/s": round(r["images_per_s"]), "step (ms)": round(r["step_ms"], 1),
                   "MFU (%)": round(100 * r["mfu"], 1), "loader stall (%)": round(100 * r["loader_stall_fraction"], 1),
                   "peak memory (GiB)": round(r["peak_memory_gb"], 2), "batch": r["batch_size"],
                   "precision": r["precision"], "streamed": r["streamed"]} if "error" not in r else {"error": r["error"]}
            for name, r in results["nets"].items()}
    return pd.DataFrame(rows).T


# ----------------------------------------------------------------------------- what the paper scale costs

# Where no `bench --device cuda` is published: an H100 SXM's dense bf16 peak and a model FLOP utilisation typical of
# ResNet training in bf16. Stated beside every estimate made with them.
ASSUMED_PEAK_TFLOPS, ASSUMED_MFU = 989.0, 0.35


def flops_per_pair(cfg: TrainConfig, data_dir: Path) -> float:
    """Training FLOPs per image pair of `cfg`'s step (forward and backward, both views), counted on a 2-image batch
    on the CPU from generated files: the cost scales linearly with the batch."""
    from torch.utils.flop_counter import FlopCounterMode

    from .train import step_batches

    with data_root(data_dir):
        state, schedule = training_state(replace(cfg, batch_size=2, steps=1, monitor_every=0, precision="fp32",
                                                 subset=1.0, ordering="iid", chunks=0), torch.device("cpu"))
    counter = FlopCounterMode(display=False)
    with counter:
        train_step(state, next(iter(step_batches(state, schedule))))
    return counter.get_total_flops() / 2


def paper_plan(log=print) -> "pd.DataFrame":
    """Per chapter at the paper scale: its trained runs, the images they see, their training FLOPs (exaFLOPs), and
    GPU-hours at the published `bench --device cuda` MFU of its nets, or the assumed one. Chapters whose runs are
    listed only from the data (a distilled student names its teacher's run) say so."""
    import tempfile

    import pandas as pd

    from .book import chapter_names
    from .chapters import chapter_module, read_measurement, resolve_parameters
    from .errors import UserError

    measured = read_measurement("paper", "device-bench-cuda")
    if measured is not None:
        value = measured["value"]
        peak, mfus = value["peak_tflops"], [r["mfu"] for r in value["nets"].values() if "mfu" in r and r["streamed"]]
        mfu, basis = min(mfus), f"the lower MFU of `bench --device cuda` on {value['device']['accelerator']}"
    else:
        peak, mfu, basis = ASSUMED_PEAK_TFLOPS, ASSUMED_MFU, (f"an assumed {100 * ASSUMED_MFU:.0f} % MFU of an H100's "
                                                               f"{ASSUMED_PEAK_TFLOPS:.0f} TFLOP/s (bf16, dense)")
    rows, cost, book = {}, {}, {}
    net_of = lambda c: (c.method, c.arch, c.width, c.image_size, c.proj_layers, c.predictor, c.dataset)

    def row(cfgs: list[TrainConfig]) -> dict:
        flops = sum(cost[net_of(c)] * c.steps * c.batch_size for c in cfgs)
        return {"runs": len(cfgs), "images (billions)": round(sum(c.steps * c.batch_size for c in cfgs) / 1e9, 2),
                "training exaFLOPs": round(flops / 1e18, 1), "GPU-hours": round(flops / (mfu * peak * 1e12) / 3600)}

    with tempfile.TemporaryDirectory() as tmp:
        write_image_folder(Path(tmp) / "imagenet", 20, size=(64, 48))
        (Path(tmp) / "stl10" / "stl10_binary").mkdir(parents=True)
        for split, n in (("train", 4), ("test", 2), ("unlabeled", 4)):
            np.zeros((n, 3, 96, 96), dtype=np.uint8).tofile(Path(tmp) / "stl10" / "stl10_binary" / f"{split}_X.bin")
            if split != "unlabeled":
                np.ones(n, dtype=np.uint8).tofile(Path(tmp) / "stl10" / "stl10_binary" / f"{split}_y.bin")
        for name in chapter_names():
            module = chapter_module(name)
            if not hasattr(module, "configs") or getattr(module, "STUDY", False):
                continue
            try:
                trained = [c for c in module.configs(resolve_parameters(module.PRESETS, "paper")) if c.steps > 0]
            except UserError:
                rows[name] = {"runs": "named from the data: not counted"}
                continue
            for cfg in trained:
                if net_of(cfg) not in cost:
                    log(f"counting the FLOPs of {cfg.method} {cfg.arch}-w{cfg.width} ({cfg.predictor} predictor) at "
                        f"{cfg.image_size} px ...")
                    cost[net_of(cfg)] = flops_per_pair(cfg, Path(tmp))
                book[json.dumps(cfg.to_dict(), sort_keys=True)] = cfg
            rows[name] = row(trained)
    rows["book (each run once)"] = row(list(book.values()))
    table = pd.DataFrame.from_dict(rows, orient="index").fillna("")
    table.attrs["basis"] = basis
    return table
