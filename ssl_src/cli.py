"""`python -m ssl_src`: train, data, chapter, book, runs, claims, diagnose, replay, bench and probe-convs commands.

Bad input is one line on stderr and exit code 2; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import sys

from .chapters import SCALES
from .errors import TrainingStopped, UserError
from .store import json_safe



class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line (the usage is one `--help` away)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (except the augmentation recipe): its help, default and flag name from
    the field's metadata (a bool that defaults to True is switched off by its `--no-...` flag)."""
    from dataclasses import fields

    from .config import TrainConfig, field_choices

    choices = field_choices()
    for f in fields(TrainConfig):
        if f.name == "augment":
            continue
        flag, help_text = f.metadata.get("flag") or f"--{f.name.replace('_', '-')}", f.metadata["help"]
        if f.metadata.get("methods"):
            help_text += f" [{', '.join(f.metadata['methods'])}]"
        if isinstance(f.default, bool):
            action = "store_false" if f.default else "store_true"
            parser.add_argument(flag, dest=f.name, action=action, help=help_text)
        else:
            extra = {"metavar": "{" + ",".join(choices[f.name]) + "}"} if f.name in choices else {}
            parser.add_argument(flag, dest=f.name, type=type(f.default), default=f.default,
                                help=f"{help_text} (default: {f.default!r})", **extra)


def cmd_train(args) -> int:
    from dataclasses import fields

    from .config import TrainConfig
    from .train import train

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name != "augment"})
    summary = train(cfg, evaluate=not args.no_eval, force=args.force, progress=not args.no_progress,
                    checkpoint_every=args.checkpoint_every)
    if summary is not None:  # data-parallel ranks other than 0 print nothing
        print(json.dumps(json_safe({k: v for k, v in summary.items() if k != "singular_values"})))
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

    result = run_chapter(args.name, args.scale, parse_parameters(args.param), args.cell_time_limit, jobs=args.jobs,
                         retrain=args.retrain)
    print(result.describe())
    return 0 if result.ok else 1


def cmd_book(args) -> int:
    from .book import build_book

    return 0 if build_book(args.scale, args.cell_time_limit, jobs=args.jobs, retrain=args.retrain) else 1


def cmd_runs(args) -> int:
    from .book import parse_parameters
    from .chapters import chapter_runs

    summaries = chapter_runs(args.name, args.scale, parse_parameters(args.param), jobs=args.jobs, retrain=args.retrain)
    keys = ("run_id", "method", "arch", "width", "subset", "seed", "steps", "loss", "weighted_knn_acc", "linear_acc", "auc")
    for summary in summaries:
        print(json.dumps(json_safe({k: summary.get(k) for k in keys})))
    return 0


def cmd_bench(args) -> int:
    from .bench import format_table, run_benchmark

    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    if args.device:
        return bench_device(args, log)
    if args.plan:
        from .bench import paper_plan

        plan = paper_plan(log=lambda msg: print(msg, file=sys.stderr))
        print(plan.to_string())
        print(f"GPU-hours at {plan.attrs['basis']}")
        return 0
    results = run_benchmark(widths=tuple(args.widths), rounds=args.rounds, steps=args.steps, log=log)
    print(json.dumps(json_safe(results)) if args.json else format_table(results))
    return 0


def bench_device(args, log) -> int:
    """`bench --device`: the training step of the paper's and the quick presets' nets on that device, published
    for the performance appendix in results/paper/measurements/device-bench-<device>.json."""
    import time

    import torch

    from .bench import device_benchmark, device_table
    from .chapters import measurement_path
    from .hardware import describe
    from .store import write_json_atomic

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    if args.steps < 1:
        raise UserError("--steps must be positive")
    device = torch.device(args.device)
    results = device_benchmark(device, steps=args.steps, log=log)
    path = measurement_path("paper", f"device-bench-{args.device}")
    write_json_atomic(path, {"value": results, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             "machine": describe(device)})
    print(json.dumps(json_safe(results)) if args.json else device_table(results).to_string())
    log(f"written to {path}")
    return 0


def cmd_probe_convs(args) -> int:
    from .kernel_probe import failure_table, grid, probe

    if args.time_limit <= 0 or min([args.batch, args.size] + args.channels + args.threads + args.kernels + args.strides) < 1:
        raise UserError("--time-limit, --batch, --size, --channels, --kernels, --strides and --threads must be positive")
    cases = grid(tuple(args.channels), tuple(args.kernels), tuple(args.strides), tuple(args.threads),
                 tuple(args.precisions), layouts=(True, False), batch=args.batch, size=args.size)
    records = []
    for isa in args.isa:
        records += probe(cases, None if isa == "native" else isa, args.time_limit, progress=not args.json)
    if args.json:
        print(json.dumps(records))
    else:
        import pandas as pd

        with pd.option_context("display.width", 200, "display.max_columns", None):
            print(failure_table(records).to_string(index=False))
    return 0


def add_sweep_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=0, metavar="N",
                        help="runs trained at once, each with its share of the cores (default: by scale and device, "
                             "see ssl_src.sweep.CPU_JOBS)")
    parser.add_argument("--retrain", action="store_true",
                        help="train every run again instead of reading the published results (results/SCALE/runs/)")


def cmd_claims(args) -> int:
    import pandas as pd

    from .report import book_claims, verdict_tally

    if args.scale not in SCALES:
        raise UserError(f"unknown scale {args.scale!r}; valid: {', '.join(SCALES)}")
    claims = book_claims(args.scale)
    if claims.empty:
        raise UserError(f"no chapter has been rendered at scale {args.scale}: python -m ssl_src book --scale {args.scale}")
    if args.json:
        from .store import json_safe

        for record in claims.to_dict("records"):
            print(json.dumps(json_safe(record), allow_nan=False))  # a missing number is null
        return 0
    with pd.option_context("display.width", 200, "display.max_colwidth", 120, "display.max_rows", None):
        print(verdict_tally(claims).to_string(), end="\n\n")
        for chapter, group in claims.groupby("chapter", sort=False):
            print(f"{chapter}:")
            for row in group.itertuples():
                print(f"  [{row.verdict}] {row.statement}\n      ours: {row.ours}\n      paper: {row.paper}")
    return 0


def cmd_diagnose(args) -> int:
    from .diagnose import describe, diagnose, save_plot

    report = diagnose(args.path, args.config, args.images)
    if args.plot:
        save_plot(report, args.plot)
    if args.json:
        print(json.dumps(json_safe(report), allow_nan=False))
    else:
        print(describe(report) + (f"\nspectrum figure: {args.plot}" if args.plot else ""))
    return 0


def cmd_replay(args) -> int:
    import os
    import subprocess
    import sys

    from .replay import make_smoke_reference, published_kernel_caps, replay

    if args.new_reference:
        make_smoke_reference()
        return 0
    caps = published_kernel_caps(args.run)
    if any(os.environ.get(k) != v for k, v in caps.items()):
        print(f"replaying with the kernels that trained the run ({' '.join(f'{k}={v}' for k, v in caps.items())})",
              flush=True)
        return subprocess.run([sys.executable, "-m", "ssl_src", *sys.argv[1:]], env=dict(os.environ, **caps)).returncode
    return 0 if replay(steps=args.steps, run_id=args.run) else 1


def build_parser() -> argparse.ArgumentParser:
    from .book import CELL_TIME_LIMIT
    from .replay import REPLAY_STEPS
    from .kernel_probe import DEFAULT_CHANNELS
    from .train import CHECKPOINT_EVERY

    parser = OneLineParser(prog="python -m ssl_src", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    train = sub.add_parser("train", help="train (or re-use) one run, evaluate it, print a JSON summary")
    add_config_flags(train)
    train.add_argument("--no-eval", action="store_true", help="skip kNN / linear probe / collapse metrics")
    train.add_argument("--force", action="store_true", help="train again even if the run is stored")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--checkpoint-every", type=int, default=CHECKPOINT_EVERY, metavar="K",
                       help="write a resumable checkpoint every K steps; 0 = never (default %(default)s)")
    train.set_defaults(func=cmd_train)

    data = sub.add_parser("data", help="fetch or verify a data set described in data_manifest/")
    data.add_argument("action", choices=("fetch", "verify"))
    data.add_argument("name", nargs="?", default="fashion_mnist", help="data set (default %(default)s)")
    data.set_defaults(func=cmd_data)

    limits = ", ".join(f"{scale} {seconds:g}" for scale, seconds in CELL_TIME_LIMIT.items())
    cell_limit_help = f"fail a chapter whose cell runs longer than this (default by scale: {limits})"
    chapter = sub.add_parser("chapter", help="execute one book chapter with papermill")
    chapter.add_argument("name", help="chapter notebook name (book/NAME.ipynb)")
    chapter.add_argument("--scale", default="quick", help=f"one of {', '.join(SCALES)} (default %(default)s)")
    chapter.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                         help="override a notebook parameter (VALUE is YAML: 3, [0, 1], 'text')")
    chapter.add_argument("--cell-time-limit", type=float, metavar="SECONDS", help=cell_limit_help)
    add_sweep_flags(chapter)
    chapter.set_defaults(func=cmd_chapter)

    book = sub.add_parser("book", help="execute every chapter and build the HTML book")
    book.add_argument("--scale", default="quick", help=f"one of {', '.join(SCALES)} (default %(default)s)")
    book.add_argument("--cell-time-limit", type=float, metavar="SECONDS", help=cell_limit_help)
    add_sweep_flags(book)
    book.set_defaults(func=cmd_book)

    runs = sub.add_parser("runs", help="train (or read) every stored run a chapter uses, without executing it; "
                          "print one JSON line per run")
    runs.add_argument("name", help="chapter name (book/NAME.ipynb)")
    runs.add_argument("--scale", default="quick", help=f"one of {', '.join(SCALES)} (default %(default)s)")
    runs.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                      help="override a chapter parameter (VALUE is YAML)")
    add_sweep_flags(runs)
    runs.set_defaults(func=cmd_runs)

    claims = sub.add_parser("claims", help="every chapter's claims and verdicts as last rendered, and their tally")
    claims.add_argument("--scale", default="quick", help=f"one of {', '.join(SCALES)} (default %(default)s)")
    claims.add_argument("--json", action="store_true", help="print one JSON object per claim instead of the tables")
    claims.set_defaults(func=cmd_claims)

    diagnose = sub.add_parser("diagnose", help="the collapse report (AUC, effective rank, normalised std, a plain "
                              "reading) of a run directory, a model or checkpoint, or an N x d feature matrix")
    diagnose.add_argument("path", help="a run directory, model.pt / checkpoint.pt beside its run's config.json, "
                          "or a feature matrix (.npy, .pt; N samples x d dims)")
    diagnose.add_argument("--config", metavar="FILE", help="the run's config.json, for weights kept elsewhere")
    diagnose.add_argument("--images", type=int, metavar="N",
                          help="training images a model embeds for its report (default: those its run's evaluation "
                               "used, so the numbers agree with it; for a finished run, N embeds its weights again)")
    diagnose.add_argument("--plot", metavar="FILE", help="save the spectrum figure (.png, .pdf, .svg)")
    diagnose.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    diagnose.set_defaults(func=cmd_diagnose)

    replay = sub.add_parser("replay", help="re-train published runs and compare them with what was published")
    replay.add_argument("--steps", type=int, default=REPLAY_STEPS,
                        help="steps of the published quick run to re-train (default %(default)s)")
    replay.add_argument("--run", metavar="RUN_ID", help="the published quick run (default: the first of the capacity chapter)")
    replay.add_argument("--new-reference", action="store_true",
                        help="train the smoke reference run here and commit it as the reference (after a change "
                             "of the training semantics), instead of checking")
    replay.set_defaults(func=cmd_replay)
    bench = sub.add_parser("bench", help="throughput vs a lightly peer pipeline, FLOP/s vs GEMM peak, evaluation cost")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    bench.add_argument("--widths", type=int, nargs="+", default=[8, 16], help="ResNet-18 widths (default 8 16)")
    bench.add_argument("--rounds", type=int, default=3, help="alternating ours/peer rounds (default 3)")
    bench.add_argument("--steps", type=int, default=8, help="training steps per round (default 8; with --device, "
                       "timed steps per net)")
    bench.add_argument("--device", choices=["cpu", "cuda"], help="instead: time the training step of the paper's "
                       "ResNet-18/50 at 224 px (streamed) and of the quick presets on this device: images/s, MFU, "
                       "loader stall, peak memory")
    bench.add_argument("--plan", action="store_true", help="instead: what the paper scale costs per chapter (runs, "
                       "images, training FLOPs, GPU-hours), counted here on the CPU in a minute")
    bench.set_defaults(func=cmd_bench)

    probe = sub.add_parser("probe-convs", help="which convolutions oneDNN's CPU kernels hang, crash or miscompute on "
                           "(each case in its own process)")
    probe.add_argument("--isa", nargs="+", default=["AVX2"], metavar="ISA",
                       help="ONEDNN_MAX_CPU_ISA values to probe under; 'native' = the CPU's best (default AVX2)")
    probe.add_argument("--channels", type=int, nargs="+", default=list(DEFAULT_CHANNELS),
                       help="input and output channel counts (every pair; default %(default)s)")
    probe.add_argument("--kernels", type=int, nargs="+", default=[1, 3], help="kernel sizes (default 1 3)")
    probe.add_argument("--strides", type=int, nargs="+", default=[1, 2], help="strides (default 1 2)")
    probe.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads (default 1 2)")
    probe.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"], help="default fp32")
    probe.add_argument("--batch", type=int, default=32, help="batch size (default %(default)s)")
    probe.add_argument("--size", type=int, default=28, help="input height and width (default %(default)s)")
    probe.add_argument("--time-limit", type=float, default=5.0, metavar="SECONDS",
                       help="a case still running after this is a hang (default %(default)s)")
    probe.add_argument("--json", action="store_true", help="print every case's record as JSON instead of the table")
    probe.set_defaults(func=cmd_probe_convs)
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
    except TrainingStopped as exc:
        if args.debug:
            raise
        print(f"stopped: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
