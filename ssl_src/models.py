"""Backbones (timm ResNets with a scalable base width) and the MLP heads every method builds from.

The residual nets of the collapse paper's Table 1 and the ViTs of its supplement are registered with
timm (on first use, or by `register_with_timm()`: importing timm costs seconds, which a command that
only checks its arguments should not pay), so `timm.create_model("scaled_resnet18", width=16,
stem="cifar", in_chans=1)` builds the CPU-scale net and `width=64, stem="imagenet"` the paper's.
`stem="cifar"` is the 3x3 stride-1 stem with no max-pool used for 28-32 px images.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from .errors import UserError
from .hardware import channels_last_fails

# block, layers, width_per_group multiplier (bottleneck26_2x: width_per_group 128)
RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2), 1),
    "resnet34": ("basic", (3, 4, 6, 3), 1),
    "basic50": ("basic", (5, 6, 9, 4), 1),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 1),
    "bottleneck26": ("bottleneck", (2, 2, 2, 2), 1),
    "bottleneck26_2x": ("bottleneck", (2, 2, 2, 2), 2),
}
STEMS = ("cifar", "imagenet")


def _scaled_resnet(arch: str, width: int = 64, stem: str = "cifar", in_chans: int = 3, **_timm_cfg) -> nn.Module:
    from timm.models.resnet import BasicBlock, Bottleneck, ResNet, make_blocks

    block_name, layers, group_multiplier = RESNETS[arch]
    block = BasicBlock if block_name == "basic" else Bottleneck
    if stem not in STEMS:
        raise UserError(f"unknown stem {stem!r}; valid: {', '.join(STEMS)}")
    channels = (width, 2 * width, 4 * width, 8 * width)
    # Bottleneck inner width = planes * base_width / 64: 64, or 128 for the 2x-group-width net.
    base_width = 64 * group_multiplier
    net = ResNet(block, layers, num_classes=0, in_chans=in_chans, channels=channels, base_width=base_width)
    # timm fixes the stem at 64 channels; scale it with the rest so every width is the same net, thinner.
    if stem == "cifar":
        net.conv1 = nn.Conv2d(in_chans, width, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    else:
        net.conv1 = nn.Conv2d(in_chans, width, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    stages, _ = make_blocks((block,) * 4, channels, layers, inplanes=width, base_width=base_width)
    for name, stage in stages:
        setattr(net, name, stage)
    net.init_weights(zero_init_last=True)  # zero-init residual BN, as the SimSiam code
    return net


def _register(arch: str, make) -> None:
    from timm.models import register_model

    def build(pretrained: bool = False, **kwargs) -> nn.Module:
        if pretrained:
            raise UserError("no pretrained weights: this project trains every network itself")
        return make(arch, **{k: v for k, v in kwargs.items() if not k.startswith("pretrained_cfg")})

    build.__name__ = f"scaled_{arch}"
    build.__module__ = __name__
    register_model(build)


# ViT-Small (patch 16, dim 384, 6 heads) and its shallower variants; width 64 = dim 384 (6 heads of width).
VITS = {"vit_small": 12, "vit_small_d6": 6, "vit_small_d3": 3}


def _scaled_vit(arch: str, width: int = 64, image_size: int = 224, in_chans: int = 3,
                freeze_patch_embed: bool = True, **_timm_cfg) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    depth = VITS[arch]
    patch = 16 if image_size >= 64 else 4  # 7x7 patches on a 28 px image, 14x14 on 224 px
    net = VisionTransformer(img_size=image_size, patch_size=patch, in_chans=in_chans, num_classes=0,
                            embed_dim=6 * width, depth=depth, num_heads=6, global_pool="token")
    if freeze_patch_embed:  # MoCo-v3's trick, used by the collapse paper's ViT runs
        net.patch_embed.proj.requires_grad_(False)
    return net


@functools.cache
def register_with_timm() -> None:
    """Register every scaled net with timm (once per process)."""
    for arch in RESNETS:
        _register(arch, _scaled_resnet)
    for arch in VITS:
        _register(arch, _scaled_vit)


def arch_names() -> list[str]:
    return list(RESNETS) + list(VITS)


def build_backbone(arch: str, width: int, in_chans: int, stem: str = "cifar", image_size: int = 28,
                   freeze_patch_embed: bool = True) -> nn.Module:
    """A backbone whose `num_features` is the pooled representation dim (8w basic, 32w bottleneck, 6w ViT)."""
    if arch not in arch_names():
        raise UserError(f"unknown arch {arch!r}; valid: {', '.join(arch_names())}")
    if width < 1:
        raise UserError(f"width must be a positive integer, got {width}")
    import timm

    register_with_timm()
    if arch in VITS:
        return timm.create_model(f"scaled_{arch}", width=width, image_size=image_size, in_chans=in_chans,
                                 freeze_patch_embed=freeze_patch_embed)
    return timm.create_model(f"scaled_{arch}", width=width, stem=stem, in_chans=in_chans)


def trained_backbone(stored_config: dict, state: dict) -> nn.Module:
    """The backbone of a stored run: built from its config, its weights taken from the method's state dict."""
    from .data import manifest

    backbone = build_backbone(stored_config["arch"], stored_config["width"], manifest(stored_config["dataset"])["channels"],
                              stored_config["stem"], stored_config["image_size"],
                              stored_config.get("freeze_patch_embed", True))
    backbone.load_state_dict({k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")})
    return backbone


def mlp(dims: list[int], *, last_bn: bool = True, last_bn_affine: bool = True, last_bias: bool = False) -> nn.Sequential:
    """Linear-BN-ReLU blocks; the last block has BN (optionally without affine) and no ReLU.

    Hidden linears have no bias because BN follows them (as in the SimSiam code).
    """
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(d_in, d_out, bias=last and last_bias))
        if not last:
            layers += [nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(d_out, affine=last_bn_affine))
    return nn.Sequential(*layers)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def needs_nchw(module: nn.Module, device: torch.device) -> bool:
    """Whether the net, on a CPU, has a convolution whose channels_last kernel fails
    (`hardware.channels_last_fails`: the stride-2 shortcut of a ResNet narrower than width 8)."""
    return device.type == "cpu" and any(isinstance(m, nn.Conv2d) and channels_last_fails(m) for m in module.modules())


def to_device_layout(module: nn.Module, device: torch.device, nchw: bool = False) -> nn.Module:
    """channels_last: the fast layout for convolutions with bf16 CPU kernels, on CUDA, and in fp32 from
    width 8 up. On the CPU a net that `needs_nchw` (or asked with `nchw=True`) runs in NCHW throughout
    instead: every convolution takes its weight and its input in NCHW, whatever layout the data arrive in;
    at such widths NCHW is also the faster layout (the performance appendix)."""
    if not (nchw or needs_nchw(module, device)):
        return module.to(device=device, memory_format=torch.channels_last)
    module = module.to(device=device, memory_format=torch.contiguous_format)  # every 4-d weight NCHW
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):  # oneDNN takes channels_last if the input or the weight looks so
            conv.register_forward_pre_hook(_nchw_input)
    return module


def _nchw_input(conv: nn.Conv2d, args: tuple) -> tuple:
    return (args[0].contiguous(),)  # the augmented batches arrive channels_last
