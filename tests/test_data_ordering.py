"""The data-ordering chapter (collapse paper, Table 2, Fig. 14, Fig. 16): its runs, its table and claims that can fail."""
import numpy as np
import pandas as pd
import pytest

from ssl_src.chapters import data_ordering as chapter
from ssl_src.chapters import resolve_parameters

P = resolve_parameters(chapter.PRESETS, "quick")


def _runs(accuracy, auc=lambda net, ordering, seed: 0.8):
    """A synthetic run table in `run_table`'s columns: every net, ordering and seed of the quick preset."""
    rows = []
    for s in chapter.settings(P):
        net, ordering, seed = s["net"], s["ordering"], s["seed"]
        trained = s["part"] != "random init"
        rows.append({"part": s["part"], "net": net, "width": s["width"], "ordering": ordering, "switch": s["switch"],
                     "seed": seed, "run_id": f"{s['part']}{net}{ordering}{seed}{s['switch']}",
                     "linear_acc": accuracy(net, ordering, seed, s["switch"]) if trained else 0.5,
                     "weighted_knn_acc": 0.78 if trained else 0.5, "auc": auc(net, ordering, seed)})
    return pd.DataFrame(rows)


PAPERLIKE = {"iid": 0.70, "cumulative": 0.72, "single": 0.80, "hybrid": 0.83}


def test_the_quick_runs_share_the_capacity_chapters_multiple_pass_runs():
    from ssl_src.chapters import capacity_vs_data
    from ssl_src.store import run_id
    from ssl_src.sweep import resolve

    ours = {run_id(c.to_dict()): c for c in resolve(chapter.configs(P))}
    capacity = {run_id(c.to_dict()) for c in resolve(capacity_vs_data.configs(resolve_parameters(capacity_vs_data.PRESETS, "quick")))}
    iid = {i for i, c in ours.items() if c.ordering == "iid"}
    assert iid <= capacity and len(iid) == 6 + 6  # the trained nets and their random-init networks, 3 seeds
    assert {c.switch for c in ours.values() if c.ordering != "hybrid"} == {0.4}  # the switch is the hybrid's alone
    chunked = [c for c in ours.values() if c.ordering != "iid"]
    assert {c.chunks for c in chunked} == {100} and {c.steps for c in chunked} == {2344}
    assert sorted(c.switch for c in chunked if c.ordering == "hybrid" and c.seed == 0) == [0.2, 0.4, 0.6, 0.8]


def test_claims_reproduce_table_2_when_single_pass_helps_the_small_net_and_hurts_the_large_one():
    def accuracy(net, ordering, seed, switch):
        small = PAPERLIKE[ordering] + 0.003 * seed
        return small if net == "narrow" else {"iid": 0.82, "single": 0.74}[ordering] + 0.002 * seed
    auc = lambda net, ordering, seed: 0.80 if ordering == "single" else 0.82 + 0.001 * seed
    verdicts = {c["id"]: c for c in chapter.claims(_runs(accuracy, auc), P)}
    assert {c["verdict"] for c in verdicts.values()} == {"reproduced"}
    assert verdicts["single_beats_multiple"]["statistic"]["mean_difference"] == pytest.approx(10.0)
    assert verdicts["single_beats_multiple"]["statistic"]["effect_fraction"] == pytest.approx(10.0 / 14.5)
    assert verdicts["single_hurts_the_large_net"]["statistic"]["mean_difference"] == pytest.approx(-8.0)


def test_claims_fail_when_every_ordering_is_as_good_as_multiple_pass():
    accuracy = lambda net, ordering, seed, switch: 0.78 + 0.01 * seed + (0.002 if ordering == "iid" else 0.0)
    verdicts = {c["id"]: c["verdict"] for c in chapter.claims(_runs(accuracy), P)}
    assert verdicts["single_beats_multiple"] == verdicts["hybrid_beats_multiple"] == "not reproduced"
    assert verdicts["single_less_collapsed"] == "inconclusive"  # no spread, no difference


def test_table_2_puts_the_papers_numbers_beside_mean_and_sd_over_seeds():
    accuracy = lambda net, ordering, seed, switch: PAPERLIKE[ordering] + 0.01 * seed
    table = chapter.table2(_runs(accuracy), P)
    assert list(table.index) == ["multiple pass", "cumulative", "single pass", "hybrid"]
    assert table.loc["single pass", "paper ResNet-18"] == 44.5 and table.loc["single pass", "paper ResNet-50"] == 55.9
    assert list(table.columns) == ["paper ResNet-18", "ours, resnet18 w4", "ours, resnet18 w8", "paper ResNet-50"]
    assert table.loc["single pass", "ours, resnet18 w4"] == "81.0 ± 1.0"
    assert pd.isna(table.loc["cumulative", "ours, resnet18 w8"])  # not trained


def test_the_switch_sweep_runs_from_multiple_to_single_pass():
    accuracy = lambda net, ordering, seed, switch: {"iid": 0.7, "single": 0.8}.get(ordering, 0.8 + switch / 10)
    sweep = chapter.switch_sweep(_runs(accuracy), P)
    assert list(sweep.index) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert sweep.linear_acc.tolist() == pytest.approx([70, 82, 84, 86, 88, 80])


@pytest.mark.parametrize("params, message", [
    ({"orderings": ["iid", "shuffled"]}, "unknown ordering(s) shuffled"),
    ({"switches": [0.0, 0.5]}, "switch points must lie in (0, 1)"),
])
def test_bad_orderings_and_switch_points_are_refused(params, message):
    from ssl_src.chapters import check_parameters
    from ssl_src.errors import UserError

    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_parameters("data_ordering", "smoke", params)
