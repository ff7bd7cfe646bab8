import torch

from ssl_src.augment import AugmentConfig, augment, centre_view

MEAN, STD = (0.5,), (0.25,)


def images(n=8, c=1, size=28, seed=0):
    return torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


IDENTITY = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0)


def test_full_crop_without_jitter_is_the_normalised_image():
    x = images()
    out = augment(x, IDENTITY, 28, MEAN, STD, torch.Generator().manual_seed(0))
    assert torch.allclose(out, centre_view(x, 28, MEAN, STD), atol=1e-5)


def test_flip_probability_one_mirrors_every_image():
    x = images()
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=1.0, jitter_p=0.0)
    out = augment(x, cfg, 28, MEAN, STD, torch.Generator().manual_seed(0))
    assert torch.allclose(out, centre_view(x, 28, MEAN, STD).flip(-1), atol=1e-5)


def test_views_differ_per_sample_and_repeat_with_the_same_seed():
    x = images(n=4).repeat(2, 1, 1, 1)  # the same 4 images twice
    a = augment(x, AugmentConfig(), 20, MEAN, STD, torch.Generator().manual_seed(1))
    b = augment(x, AugmentConfig(), 20, MEAN, STD, torch.Generator().manual_seed(1))
    assert a.shape == (8, 1, 20, 20) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.allclose(a[:4], a[4:])  # per-sample parameters, not one per batch


def test_brightness_jitter_scales_within_its_range():
    x = torch.full((256, 1, 8, 8), 100, dtype=torch.uint8)
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0, jitter_p=1.0, brightness=0.4, contrast=0.0)
    out = augment(x, cfg, 8, (0.0,), (1.0,), torch.Generator().manual_seed(0))
    factors = out.mean(dim=(1, 2, 3)) / (100 / 255)
    assert factors.min() >= 0.6 - 1e-4 and factors.max() <= 1.4 + 1e-4
    assert factors.std() > 0.1  # spread over the range, not constant


def test_rgb_recipe_runs_with_blur_greyscale_and_erasing():
    x = images(n=6, c=3, size=32)
    cfg = AugmentConfig(blur_p=1.0, grayscale_p=1.0, erase_p=1.0)
    out = augment(x, cfg, 24, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), torch.Generator().manual_seed(0))
    assert out.shape == (6, 3, 24, 24) and torch.isfinite(out).all()
    assert (out == 0).any()  # erased rectangles
