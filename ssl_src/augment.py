"""Batched augmentation: one call transforms a whole uint8 batch with per-sample random parameters.

The MoCo-v2 / SimSiam recipe (random resized crop, flip, colour jitter, grayscale, blur), written as
tensor ops so it runs on the device that trains (no per-image PIL loop). The crop and the flip are one
affine resampling (affine_grid + grid_sample). A recipe is data (`AugmentConfig`), not code.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4  # no effect on 1-channel images
    hue: float = 0.1  # no effect on 1-channel images
    grayscale_p: float = 0.2  # no effect on 1-channel images
    blur_p: float = 0.0  # the ImageNet recipe uses 0.5; a 28 px image has little to blur
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    erase_p: float = 0.0
    erase_scale: tuple[float, float] = (0.02, 0.33)

    def to_dict(self) -> dict:
        return asdict(self)


# The 28 px grey recipe used at smoke/quick scale; the paper scale uses `AugmentConfig(blur_p=0.5)`.
GREY_SMALL = AugmentConfig()
IMAGENET = AugmentConfig(blur_p=0.5)


def _uniform(n: int, low: float, high: float, generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def _crop_flip_grid(n: int, size: int, cfg: AugmentConfig, generator, device) -> torch.Tensor:
    """Sampling grids for random resized crops (area fraction and aspect ratio as torchvision) and flips."""
    area = _uniform(n, *cfg.crop_scale, generator, device)
    log_ratio = _uniform(n, math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]), generator, device)
    ratio = torch.exp(log_ratio)
    # Crop width and height as fractions of the image side; clamped where torchvision would re-sample.
    crop_w = torch.sqrt(area * ratio).clamp(max=1.0)
    crop_h = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = (torch.rand(n, generator=generator, device=device) * 2 - 1) * (1 - crop_w)
    centre_y = (torch.rand(n, generator=generator, device=device) * 2 - 1) * (1 - crop_h)
    flip = torch.where(torch.rand(n, generator=generator, device=device) < cfg.flip_p, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = crop_w * flip
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = crop_h
    theta[:, 1, 2] = centre_y
    return F.affine_grid(theta, [n, 1, size, size], align_corners=False)


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _hue_rotation(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate chroma in YIQ space by `angle` (radians): a per-sample 3x3 matrix, close to an HSV hue shift."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=x.device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(len(angle), 3, 3, device=x.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    matrix = torch.linalg.inv(to_yiq) @ rot @ to_yiq
    return torch.einsum("nij,njhw->nihw", matrix, x)


def _colour_jitter(x: torch.Tensor, cfg: AugmentConfig, generator) -> torch.Tensor:
    n, device = x.shape[0], x.device
    apply = _per_sample(torch.rand(n, generator=generator, device=device) < cfg.jitter_p)
    out = x * _per_sample(_uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, generator, device))
    mean = _grey(out).mean(dim=(1, 2, 3), keepdim=True)
    out = mean + (out - mean) * _per_sample(_uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, generator, device))
    if x.shape[1] == 3:
        grey = _grey(out)
        out = grey + (out - grey) * _per_sample(_uniform(n, 1 - cfg.saturation, 1 + cfg.saturation, generator, device))
        out = _hue_rotation(out, _uniform(n, -cfg.hue, cfg.hue, generator, device) * 2 * math.pi)
    return torch.where(apply, out.clamp(0, 1), x)


def _gaussian_blur(x: torch.Tensor, cfg: AugmentConfig, generator) -> torch.Tensor:
    """Separable blur with a per-sample sigma: one grouped conv per axis over (sample x channel)."""
    n, c, h, w = x.shape
    sigma = _uniform(n, *cfg.blur_sigma, generator, x.device)
    radius = max(1, int(math.ceil(2 * cfg.blur_sigma[1])))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n*c, k)
    flat = x.reshape(1, n * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel[:, None, :, None], groups=n * c)
    apply = _per_sample(torch.rand(n, generator=generator, device=x.device) < cfg.blur_p)
    return torch.where(apply, flat.reshape(n, c, h, w), x)


def _random_erase(x: torch.Tensor, cfg: AugmentConfig, generator) -> torch.Tensor:
    """Zero a random rectangle (area fraction in erase_scale, aspect 0.3-3.3) with probability erase_p."""
    n, _, h, w = x.shape
    device = x.device
    area = _uniform(n, *cfg.erase_scale, generator, device)
    ratio = torch.exp(_uniform(n, math.log(0.3), math.log(3.3), generator, device))
    eh = (torch.sqrt(area / ratio) * h).clamp(1, h)
    ew = (torch.sqrt(area * ratio) * w).clamp(1, w)
    top = torch.rand(n, generator=generator, device=device) * (h - eh)
    left = torch.rand(n, generator=generator, device=device) * (w - ew)
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    in_rows = (rows >= top.view(-1, 1, 1)) & (rows < (top + eh).view(-1, 1, 1))
    inside = in_rows & (cols >= left.view(-1, 1, 1)) & (cols < (left + ew).view(-1, 1, 1))
    apply = torch.rand(n, generator=generator, device=device) < cfg.erase_p
    return x.masked_fill((inside & apply.view(-1, 1, 1)).unsqueeze(1), 0.0)


def augment(
    images: torch.Tensor,
    cfg: AugmentConfig,
    out_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    generator: torch.Generator | None = None,
    cropped: bool = False,
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> one normalised float view (N, C, out_size, out_size), channels_last. `cropped`: the
    images are views already cropped and flipped (`streaming`: from the full image), at out_size."""
    x = images.float().div_(255)
    if not cropped:
        x = F.grid_sample(x, _crop_flip_grid(len(x), out_size, cfg, generator, x.device), mode="bilinear",
                          padding_mode="reflection", align_corners=False)
    if cfg.jitter_p > 0:
        x = _colour_jitter(x, cfg, generator)
    if cfg.grayscale_p > 0 and x.shape[1] == 3:
        to_grey = _per_sample(torch.rand(len(x), generator=generator, device=x.device) < cfg.grayscale_p)
        x = torch.where(to_grey, _grey(x).expand_as(x), x)
    if cfg.blur_p > 0:
        x = _gaussian_blur(x, cfg, generator)
    x = normalise(x, mean, std)
    if cfg.erase_p > 0:
        x = _random_erase(x, cfg, generator)
    return x.contiguous(memory_format=torch.channels_last)


def normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def centre_view(images: torch.Tensor, out_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """The un-augmented view evaluation uses: resize to out_size (a no-op at the native size), normalise."""
    x = images.float().div_(255)
    if x.shape[-1] != out_size:
        x = F.interpolate(x, size=(out_size, out_size), mode="bilinear", antialias=True, align_corners=False)
    return normalise(x, mean, std).contiguous(memory_format=torch.channels_last)
