"""`python -m ssl_src`: train, data, chapter and book commands.

Bad input is one line on stderr and exit code 2; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from .errors import UserError

SCALES = ("smoke", "quick", "paper")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line (the usage is one `--help` away)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _finite(value):
    """JSON has no NaN: a metric that does not exist is null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def cmd_train(args) -> int:
    from .train import TrainConfig, train

    cfg = TrainConfig(
        method=args.method, arch=args.arch, width=args.width, stem=args.stem, dataset=args.dataset,
        image_size=args.image_size, subset=args.subset, data_seed=args.data_seed, steps=args.steps,
        batch_size=args.batch_size, seed=args.seed, base_lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, fix_pred_lr=not args.decay_pred_lr,
        proj_dim=args.proj_dim, pred_dim=args.pred_dim, proj_layers=args.proj_layers, precision=args.precision,
        eval_train_images=args.eval_train_images, eval_test_images=args.eval_test_images,
    )
    summary = train(cfg, evaluate=not args.no_eval, force=args.force, progress=not args.no_progress)
    print(json.dumps({k: _finite(v) for k, v in summary.items() if k != "singular_values"}))
    return 0


def cmd_data(args) -> int:
    from . import data

    if args.action == "fetch":
        data.fetch(args.name, log=lambda msg: print(msg, file=sys.stderr))
        return 0
    ok, lines = data.verify(args.name)
    for line in lines:
        print(line)
    if not ok:
        print(f"{args.name}: no verified copy; run `python -m ssl_src data fetch {args.name}`", file=sys.stderr)
    return 0 if ok else 1


def cmd_chapter(args) -> int:
    from .book import parse_parameters, run_chapter

    result = run_chapter(args.name, args.scale, parse_parameters(args.param))
    print(result.describe())
    return 0 if result.ok else 1


def cmd_book(args) -> int:
    from .book import build_book

    return 0 if build_book(args.scale) else 1


def build_parser() -> argparse.ArgumentParser:
    from .data import dataset_names
    from .train import PRECISIONS, TrainConfig

    defaults = TrainConfig()
    parser = OneLineParser(prog="python -m ssl_src", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    train = sub.add_parser("train", help="train (or re-use) one run, evaluate it, print a JSON summary")
    train.add_argument("--method", default=defaults.method, help="self-supervised method (default %(default)s)")
    train.add_argument("--arch", default=defaults.arch, help="backbone: resnet18, resnet34, basic50, resnet50, bottleneck26, bottleneck26_2x")
    train.add_argument("--width", type=int, default=defaults.width, help="base width; 64 = the paper's nets (default %(default)s)")
    train.add_argument("--stem", default=defaults.stem, help="cifar (3x3, stride 1, no max-pool) or imagenet")
    train.add_argument("--dataset", default=defaults.dataset, help=f"one of {', '.join(dataset_names())}")
    train.add_argument("--image-size", type=int, default=defaults.image_size)
    train.add_argument("--subset", type=float, default=defaults.subset, help="fraction of the training set in (0, 1]")
    train.add_argument("--data-seed", type=int, default=defaults.data_seed, help="seed of the fixed data permutation")
    train.add_argument("--steps", type=int, default=defaults.steps)
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--lr", type=float, default=defaults.base_lr, help="base lr; lr = base * batch / 256")
    train.add_argument("--momentum", type=float, default=defaults.momentum)
    train.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    train.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    train.add_argument("--decay-pred-lr", action="store_true", help="decay the predictor's lr too (default: fixed)")
    train.add_argument("--proj-dim", type=int, default=defaults.proj_dim, help="0 = 32 * width")
    train.add_argument("--pred-dim", type=int, default=defaults.pred_dim, help="0 = 8 * width")
    train.add_argument("--proj-layers", type=int, default=defaults.proj_layers)
    train.add_argument("--precision", default=defaults.precision, choices=PRECISIONS)
    train.add_argument("--eval-train-images", type=int, default=0, help="evaluate on this many training images (0 = all)")
    train.add_argument("--eval-test-images", type=int, default=0, help="evaluate on this many test images (0 = all)")
    train.add_argument("--no-eval", action="store_true", help="skip kNN / linear probe / collapse metrics")
    train.add_argument("--force", action="store_true", help="train again even if the run is stored")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    data = sub.add_parser("data", help="fetch or verify a data set described in data_manifest/")
    data.add_argument("action", choices=("fetch", "verify"))
    data.add_argument("name", nargs="?", default="fashion_mnist", help="data set (default %(default)s)")
    data.set_defaults(func=cmd_data)

    chapter = sub.add_parser("chapter", help="execute one book chapter with papermill")
    chapter.add_argument("name", help="chapter notebook name (book/NAME.ipynb)")
    chapter.add_argument("--scale", default="quick", help=f"one of {', '.join(SCALES)} (default %(default)s)")
    chapter.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                         help="override a notebook parameter (VALUE is YAML: 3, [0, 1], 'text')")
    chapter.set_defaults(func=cmd_chapter)

    book = sub.add_parser("book", help="execute every chapter and build the HTML book")
    book.add_argument("--scale", default="quick", help=f"one of {', '.join(SCALES)} (default %(default)s)")
    book.set_defaults(func=cmd_book)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
