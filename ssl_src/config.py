"""What a run is: `TrainConfig`, every field with its help (the CLI's flags are generated from it).

The fields every run has are written here; each method's own hyper-parameters (BYOL's `ema`, MoCo-v3's
`temperature`, ...) are declared with the method (`Method.options`) and added to the config as fields, so a
new method is one new file plus its registration. A config's hash is its run id (`store.run_id`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields

from . import data as datasets
from .augment import AugmentConfig
from .errors import UserError, matches_type
from .methods import METHODS, method_names, method_options
from .models import STEMS, arch_names
from .orderings import ORDERINGS

PRECISIONS = ("auto", "bf16", "fp32")
OPTIMIZERS = ("sgd", "lars", "adamw")
BN_VIEWS = ("joint", "per_view")


def field_help(help_text: str, **more) -> dict:
    """A config field's metadata: its help line (shown by `python -m ssl_src train --help`)."""
    return dict(help=help_text, **more)


@dataclass(frozen=True)
class CoreConfig:
    """The fields every run has, whatever its method."""

    method: str = field(default="simsiam", metadata=field_help("self-supervised method"))
    arch: str = field(default="resnet18", metadata=field_help("backbone"))
    width: int = field(default=16, metadata=field_help("base width; 64 = the paper's nets"))
    stem: str = field(default="cifar", metadata=field_help("ResNet stem: cifar (3x3, stride 1, no max-pool) or imagenet"))
    dataset: str = field(default="fashion_mnist", metadata=field_help("data set (data_manifest/)"))
    image_size: int = field(default=28, metadata=field_help("training and evaluation image size in pixels"))
    subset: float = field(default=1.0, metadata=field_help("fraction of the training set in (0, 1]"))
    data_seed: int = field(default=0, metadata=field_help("seed of the fixed data permutation"))
    ordering: str = field(default="iid", metadata=field_help("data ordering"))
    chunks: int = field(default=0, metadata=field_help("chunks of the permutation for single/cumulative/hybrid (0 = one per epoch)"))
    switch: float = field(default=0.4, metadata=field_help("hybrid: fraction of the steps trained single-pass"))
    steps: int = field(default=1000, metadata=field_help("optimizer steps (0 = the network at initialisation)"))
    batch_size: int = field(default=256, metadata=field_help("global batch size (split over data-parallel processes)"))
    seed: int = field(default=0, metadata=field_help("seed of the initial network and the augmentations"))
    optimizer: str = field(default="sgd", metadata=field_help("optimizer"))
    base_lr: float = field(default=0.05, metadata=field_help("base lr; lr = base * batch / 256", flag="--lr"))
    momentum: float = field(default=0.9, metadata=field_help("optimizer momentum"))
    weight_decay: float = field(default=1e-4, metadata=field_help("weight decay"))
    warmup_steps: int = field(default=0, metadata=field_help("linear lr warmup, in steps"))
    warmup_epochs: float = field(default=0.0, metadata=field_help(
        "linear lr warmup, in epochs of the full set (len // batch steps), added to --warmup-steps"))
    bn_views: str = field(default="joint", metadata=field_help(
        "BN over both views in one pass (joint) or per view (the authors' code)"))
    proj_hidden_dim: int = field(default=0, metadata=field_help("projector hidden width; 0 = the method's default"))
    proj_dim: int = field(default=0, metadata=field_help("projector output width; 0 = the method's default"))
    pred_dim: int = field(default=0, metadata=field_help("predictor hidden width; 0 = the method's default"))
    proj_layers: int = field(default=0, metadata=field_help("projector layers; 0 = the method's default"))
    freeze_patch_embed: bool = field(default=True, metadata=field_help(
        "train the ViT patch projection", flag="--no-freeze-patch-embed"))
    sync_bn: bool = field(default=False, metadata=field_help("SyncBatchNorm across data-parallel processes"))
    monitor_every: int = field(default=100, metadata=field_help("steps between live collapse measurements (0 = off)"))
    precision: str = field(default="auto", metadata=field_help("autocast precision (auto: bf16 where the hardware has it)"))
    eval_train_images: int = field(default=0, metadata=field_help("evaluate on this many training images (0 = all)"))
    eval_test_images: int = field(default=0, metadata=field_help("evaluate on this many test images (0 = all)"))
    augment: AugmentConfig = field(default_factory=AugmentConfig, metadata=field_help("the augmentation recipe"))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        return d

    @property
    def lr(self) -> float:
        return self.base_lr * self.batch_size / 256

    def validate(self) -> None:
        """Types, names, ranges; then the method's own checks (its options, and how they combine)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "augment" and not matches_type(value, type(f.default)):
                raise UserError(f"{f.name} must be {type(f.default).__name__}, got {value!r}")
        for name, valid in field_choices().items():
            if getattr(self, name) not in valid:
                raise UserError(f"unknown {name} {getattr(self, name)!r}; valid: {', '.join(valid)}")
        for name in ("width", "batch_size", "image_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("steps", "chunks", "proj_hidden_dim", "proj_dim", "pred_dim", "proj_layers", "warmup_steps",
                     "warmup_epochs", "monitor_every", "eval_train_images", "eval_test_images"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.subset <= 1:
            raise UserError(f"subset must be in (0, 1], got {self.subset}")
        declared = METHODS[self.method].options
        for name, option in method_options().items():
            if name not in declared and getattr(self, name) != option.default:
                flag, methods = option.flag or f"--{name.replace('_', '-')}", list(option.methods)
                names = ", ".join(methods[:-1]) + " and " + methods[-1] if len(methods) > 1 else methods[0]
                raise UserError(f"{flag} applies to {names} only, not {self.method}")
            option.check(name, getattr(self, name))
        METHODS[self.method].check_config(self)


def field_choices() -> dict[str, list[str]]:
    """The valid values of every TrainConfig field that is a name (CLI choices and validation)."""
    choices = {"method": method_names(), "arch": arch_names(), "dataset": datasets.dataset_names(),
               "stem": list(STEMS), "precision": list(PRECISIONS), "optimizer": list(OPTIMIZERS),
               "bn_views": list(BN_VIEWS), "ordering": list(ORDERINGS)}
    return choices | {name: list(o.choices) for name, o in method_options().items() if o.choices}


# The methods' options become fields after the core ones (a run id hashes the sorted dict, not the order).
TrainConfig = dataclasses.make_dataclass(
    "TrainConfig",
    [(name, type(o.default), field(default=o.default, metadata=field_help(o.help, flag=o.flag, methods=o.methods)))
     for name, o in method_options().items()],
    bases=(CoreConfig,), frozen=True)
TrainConfig.__module__ = __name__  # pickled by name, as any class of this module
TrainConfig.__doc__ = "Everything that determines a run's result (its hash is the run id)."
