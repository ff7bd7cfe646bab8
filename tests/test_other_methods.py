"""The other-methods chapter (collapse paper, Fig. 1b and Fig. 15): its runs and claims that can fail."""
import pandas as pd
import pytest

from ssl_src.chapters import other_methods as chapter
from ssl_src.chapters import resolve_parameters

P = resolve_parameters(chapter.PRESETS, "quick")


def _runs(accuracy):
    rows = []
    for s in chapter.settings(P):
        trained = s["part"] == "trained"
        rows.append(dict(s, run_id=f"{s['part']}{s['method']}{s['ordering']}{s['net']}{s['seed']}",
                         linear_acc=accuracy(s["method"], s["ordering"] if s["net"] == "small" else "large", s["seed"])
                         if trained else 0.5,
                         weighted_knn_acc=0.75 if trained else 0.5,
                         auc=(0.85 if s["method"] == "simsiam" else 0.80) + 0.001 * s["seed"] + 0.002 * (s["seed"] == 1)))
    return pd.DataFrame(rows)


PAPERLIKE = {("simsiam", "iid"): 0.70, ("byol", "iid"): 0.78, ("mocov3", "iid"): 0.80,
             ("simsiam", "single"): 0.76, ("byol", "single"): 0.76, ("mocov3", "single"): 0.77,
             ("simsiam", "large"): 0.85, ("byol", "large"): 0.81, ("mocov3", "large"): 0.82}


def test_the_simsiam_runs_are_the_capacity_and_ordering_chapters_own():
    from ssl_src.chapters import capacity_vs_data, data_ordering
    from ssl_src.store import run_id
    from ssl_src.sweep import resolve

    ids = lambda module: {run_id(c.to_dict()): c for c in resolve(module.configs(resolve_parameters(module.PRESETS, "quick")))}
    ours, shared = ids(chapter), set(ids(capacity_vs_data)) | set(ids(data_ordering))
    simsiam = {i for i, c in ours.items() if c.method == "simsiam"}
    assert len(simsiam) == 12 and simsiam <= shared  # random init, small net multiple and single pass, large net, 3 seeds
    others = [c for i, c in ours.items() if c.method != "simsiam"]
    assert len(others) == 18 and {(c.base_lr, c.weight_decay, c.steps) for c in others} == {(0.5, 1e-5, 2344)}
    assert {(c.width, c.ordering) for c in others} == {(4, "iid"), (4, "single"), (8, "iid")}
    assert {c.temperature for c in others if c.method == "mocov3"} == {0.2} and {c.ema for c in others} == {0.99}


def test_claims_reproduce_when_the_momentum_methods_learn_and_single_pass_costs_them():
    verdicts = {c["id"]: c for c in chapter.claims(_runs(lambda m, o, s: PAPERLIKE[(m, o)] + 0.002 * s), P)}
    assert {c["verdict"] for c in verdicts.values()} == {"reproduced"}
    assert verdicts["byol_beats_simsiam"]["statistic"]["mean_difference"] == pytest.approx(8.0)
    assert verdicts["single_does_not_help_mocov3"]["statistic"]["effect_fraction"] == pytest.approx(3.0 / 4.9)
    assert verdicts["small_net_hurts_simsiam_more_than_mocov3"]["statistic"]["mean_difference"] == pytest.approx(13.0)


def test_claims_fail_when_simsiam_is_the_best_method():
    accuracy = lambda m, o, s: ({"simsiam": 0.80, "byol": 0.75, "mocov3": 0.74}[m] + (0.01 if o == "single" else 0)
                                + (0.05 if o == "large" and m != "simsiam" else 0) + 0.003 * s * (m != "byol"))
    verdicts = {c["id"]: c["verdict"] for c in chapter.claims(_runs(accuracy), P)}
    assert verdicts["byol_beats_simsiam"] == verdicts["mocov3_beats_simsiam"] == "not reproduced"
    assert verdicts["single_does_not_help_byol"] == "not reproduced"
    with_simsiam_least_collapsed = _runs(accuracy).assign(auc=lambda r: 0.9 - 0.1 * (r.method == "simsiam") + 0.001 * r.seed)
    verdicts = {c["id"]: c["verdict"] for c in chapter.claims(with_simsiam_least_collapsed, P)}
    assert verdicts["simsiam_more_collapsed_than_byol"] == verdicts["simsiam_more_collapsed_than_mocov3"] == "not reproduced"
    assert verdicts["small_net_hurts_simsiam_more_than_byol"] == "not reproduced"


def test_the_table_sets_the_papers_numbers_beside_ours():
    table = chapter.table(_runs(lambda m, o, s: PAPERLIKE[(m, o)] + 0.01 * s))
    assert list(table.index) == ["SimSiam", "BYOL", "MoCo-v3"]
    assert table.loc["BYOL", "paper, small net, multiple pass"] == 47.6
    assert table.loc["BYOL", "ours, small net, multiple pass"] == "79.0 ± 1.0"
    assert table.loc["MoCo-v3", "paper, small net, single pass"] == 48.9
    assert table.loc["SimSiam", "paper, large net, multiple pass"] == 68.1
    assert pd.isna(table.loc["BYOL", "paper, large net, multiple pass"])
    assert table.loc["MoCo-v3", "ours, large net, multiple pass"] == "83.0 ± 1.0"


def test_an_unknown_method_is_refused():
    from ssl_src.chapters import check_parameters
    from ssl_src.errors import UserError

    with pytest.raises(UserError, match="unknown method"):
        check_parameters("other_methods", "smoke", {"methods": ["simclr"]})


def test_every_claim_id_is_made_when_nothing_is_left_out():
    claims = chapter.claims(_runs(lambda m, o, s: PAPERLIKE[(m, o)] + 0.002 * s), P)
    assert sorted(c["id"] for c in claims) == sorted(chapter.CLAIM_IDS)


def test_the_figure_draws_one_bar_per_method_and_condition():
    fig = chapter.accuracy_figure(_runs(lambda m, o, s: PAPERLIKE[(m, o)] + 0.01 * s))
    paper_ax, ours_ax = fig.axes
    assert len(ours_ax.patches) == 9 and len(paper_ax.patches) == 9  # 3 methods x 3 conditions (paper: NaN bars too)
    assert sorted(round(b.get_height(), 1) for b in ours_ax.patches)[-1] == 86.0  # SimSiam large net, mean of 3 seeds
