import pytest
import timm
import torch

from ssl_src.errors import UserError
from ssl_src.models import build_backbone, count_parameters, mlp, register_with_timm

# Seed 000, Table 1: representation dim and parameters (the table counts the 1000-way classifier too).
TABLE_1 = {
    "resnet18": (512, 11.7), "resnet34": (512, 21.8), "resnet50": (2048, 25.6),
    "bottleneck26": (2048, 16.0), "bottleneck26_2x": (2048, 39.6), "basic50": (512, 31.9),
}


@pytest.mark.parametrize("arch", sorted(TABLE_1))
def test_paper_width_matches_table_1(arch):
    dim, params_m = TABLE_1[arch]
    net = build_backbone(arch, 64, 3, stem="imagenet")
    classifier = dim * 1000 + 1000
    assert net.num_features == dim
    # within 4 %: Basic-50 [5,6,9,4] counts 30.8M here against the table's 31.9M
    assert (count_parameters(net) + classifier) / 1e6 == pytest.approx(params_m, rel=0.04)


@pytest.mark.parametrize("arch", sorted(TABLE_1))
def test_cpu_scale_nets_run_on_grey_images(arch):
    net = build_backbone(arch, 4, 1, stem="cifar")
    out = net(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, net.num_features)
    assert net.num_features == TABLE_1[arch][0] * 4 // 64  # every width scaled by the same factor


@pytest.mark.parametrize("arch, depth", [("vit_small", 12), ("vit_small_d6", 6), ("vit_small_d3", 3)])
def test_vits_have_the_paper_dims_and_a_frozen_patch_projection(arch, depth):
    net = build_backbone(arch, 64, 3, image_size=224)
    assert net.num_features == 384 and len(net.blocks) == depth and net.blocks[0].attn.num_heads == 6
    assert not net.patch_embed.proj.weight.requires_grad
    assert net.patch_embed.patch_size == (16, 16)
    small = build_backbone(arch, 4, 1, image_size=28, freeze_patch_embed=False)
    assert small(torch.randn(2, 1, 28, 28)).shape == (2, 24) and small.patch_embed.proj.weight.requires_grad


def test_registered_with_timm():
    register_with_timm()
    net = timm.create_model("scaled_resnet18", width=8, stem="cifar", in_chans=1)
    assert net.num_features == 64 and isinstance(net.maxpool, torch.nn.Identity)


def test_bad_arch_and_width_are_refused():
    with pytest.raises(UserError, match="valid: .*resnet18"):
        build_backbone("resnet19", 8, 1)
    with pytest.raises(UserError, match="positive"):
        build_backbone("resnet18", 0, 1)


def test_mlp_layout():
    head = mlp([8, 8, 16], last_bn_affine=False)
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert head[0].bias is None and head[3].bias is None and not head[4].affine
