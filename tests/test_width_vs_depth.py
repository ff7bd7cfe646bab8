"""The width-vs-depth chapter (collapse paper, Table 1): its architectures, runs and claims that can fail."""
import pandas as pd
import pytest

from ssl_src.chapters import resolve_parameters
from ssl_src.chapters import width_vs_depth as chapter

P = resolve_parameters(chapter.PRESETS, "quick")


def _runs(accuracy):
    rows = []
    for s in chapter.settings(P):
        trained = s["part"] == "trained"
        rows.append(dict(s, run_id=f"{s['part']}{s['arch']}{s['seed']}", dim=32,
                         linear_acc=accuracy(s["arch"], s["seed"]) if trained else 0.5, auc=0.8, effective_rank=16.0,
                         effective_rank_fraction=0.5, weighted_knn_acc=0.75 if trained else 0.5))
    return pd.DataFrame(rows)


PAPERLIKE = {"resnet18": 0.70, "resnet34": 0.66, "basic50": 0.66, "bottleneck26": 0.75, "bottleneck26_2x": 0.753,
             "resnet50": 0.77}


def test_the_architectures_have_the_papers_parameter_counts_at_width_64():
    """Table 1 counts the ImageNet nets with their 1000-class classifier; Basic-50 follows the authors' code
    ([5, 6, 9, 4] basic blocks: 30.8M, 3.5 % under the table's 31.9M)."""
    from ssl_src.models import build_backbone, count_parameters

    for arch, (_, _, _, dim, millions, _) in chapter.PAPER.items():
        net = build_backbone(arch, 64, 3, "imagenet", 224)
        assert net.num_features == dim
        assert (count_parameters(net) + 1001 * dim) / 1e6 == pytest.approx(millions, rel=0.04 if arch == "basic50" else 0.005)


def test_resnet18_and_resnet34_are_the_capacity_chapters_and_the_searchs_runs():
    from ssl_src.chapters import capacity_vs_data, choosing_a_scale
    from ssl_src.store import run_id
    from ssl_src.sweep import resolve

    ids = lambda module: {run_id(c.to_dict()): c for c in resolve(module.configs(resolve_parameters(module.PRESETS, "quick")))}
    ours, shared = ids(chapter), set(ids(capacity_vs_data)) | set(ids(choosing_a_scale))
    assert {i for i, c in ours.items() if c.arch in ("resnet18", "resnet34")} <= shared
    new = [c for i, c in ours.items() if i not in shared]
    assert len(new) == 24 and {c.arch for c in new} == {"basic50", "bottleneck26", "bottleneck26_2x", "resnet50"}
    assert {(c.base_lr, c.weight_decay, c.width, c.subset) for c in new if c.steps} == {(0.5, 1e-5, 4, 1.0)}


def test_claims_reproduce_when_width_beats_depth_and_parameters():
    verdicts = {c["id"]: c for c in chapter.claims(_runs(lambda a, s: PAPERLIKE[a] + 0.002 * s - 0.001 * (s == 1) * (a == "bottleneck26_2x")), P)}
    assert {c["verdict"] for c in verdicts.values()} == {"reproduced"}
    assert verdicts["wider_beats_deeper"]["statistic"]["mean_difference"] == pytest.approx(9.0)
    assert verdicts["width_at_equal_depth"]["statistic"]["effect_fraction"] == pytest.approx(11.0 / 50.6)


def test_claims_fail_when_depth_and_parameters_win():
    accuracy = lambda a, s: {"resnet18": 0.60, "resnet34": 0.70, "basic50": 0.80, "bottleneck26": 0.62,
                             "bottleneck26_2x": 0.72, "resnet50": 0.70}[a] + 0.003 * s
    verdicts = {c["id"]: c["verdict"] for c in chapter.claims(_runs(accuracy), P)}
    assert verdicts["wider_beats_deeper"] == verdicts["width_at_equal_depth"] == "not reproduced"
    assert verdicts["depth_hurts_at_equal_width"] == verdicts["parameters_buy_little"] == "not reproduced"


def test_the_table_sets_table_1_beside_ours():
    table = chapter.table(_runs(lambda a, s: PAPERLIKE[a] + 0.01 * s), P)
    assert list(table.index) == list(chapter.PAPER)
    assert table.loc["resnet34", "linear acc, paper (%)"] == 16.8 and table.loc["resnet34", "linear acc, ours (%)"] == "67.0 ± 1.0"
    assert table.loc["resnet50", "params, ours (k)"] == pytest.approx(94.9, abs=0.1)


def test_an_unknown_architecture_is_refused():
    from ssl_src.chapters import check_parameters
    from ssl_src.errors import UserError

    with pytest.raises(UserError, match="unknown architecture"):
        check_parameters("width_vs_depth", "smoke", {"archs": ["resnet101"]})
