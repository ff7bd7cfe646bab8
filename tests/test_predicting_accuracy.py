"""The fit of accuracy on collapse and loss (collapse paper, Fig. 12): the least-squares numbers against hand
and brute-force values, the early measurements, and claims that can fail."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ssl_src.chapters import predicting_accuracy as chapter


def test_ols_recovers_an_exact_line_and_its_leave_one_out_is_perfect():
    x = np.array([0.1, 0.4, 0.5, 0.9, 1.3])
    fit = chapter.ols(x, 2.0 + 3.0 * x)
    assert fit["intercept"] == pytest.approx(2.0) and fit["coefficients"] == pytest.approx([3.0])
    assert fit["r2"] == pytest.approx(1.0) and fit["loo_r2"] == pytest.approx(1.0) and fit["n"] == 5


def test_ols_leave_one_out_r2_is_the_refit_without_each_run():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 2))
    y = 1.0 - 2.0 * x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.8, size=9)
    fit = chapter.ols(x, y)
    design = np.column_stack([np.ones(9), x])
    held_out = []
    for i in range(9):
        keep = np.arange(9) != i
        beta = np.linalg.lstsq(design[keep], y[keep], rcond=None)[0]
        held_out.append(y[i] - design[i] @ beta)
    assert fit["loo_r2"] == pytest.approx(1 - np.sum(np.square(held_out)) / np.sum((y - y.mean()) ** 2))
    assert fit["loo_r2"] < fit["r2"]
    # with one feature, Pearson's r of fitted against measured is the size of the feature's correlation
    one = chapter.ols(x[:, 0], y)
    assert one["pearson"] == pytest.approx(abs(stats.pearsonr(x[:, 0], y).statistic))
    assert one["r2"] == pytest.approx(one["pearson"] ** 2)


def test_ols_refuses_too_few_runs_and_a_run_that_alone_decides_a_coefficient():
    with pytest.raises(ValueError, match="3 runs cannot fit 2 feature"):
        chapter.ols(np.ones((3, 2)), np.arange(3.0))
    # the last run is the only one with a non-zero second feature: nothing else can predict it
    x = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [1.0, 1.0]])
    assert np.isnan(chapter.ols(x, np.array([0.0, 1.0, 2.1, 2.9, 5.0]))["loo_r2"])


def test_early_measurements_read_the_last_record_at_or_before_each_fraction():
    monitor = [{"step": 0, "auc": 0.95}, {"step": 100, "auc": 0.90}, {"step": 200, "auc": 0.85}]
    metrics = [{"step": 20 * k, "loss": -k / 10} for k in range(1, 11)]
    out = chapter.early_measurements(monitor, metrics, steps=200, fractions=[0.05, 0.5, 0.99])
    assert out["auc_at_0.05"] == 0.95 and np.isnan(out["loss_at_0.05"])  # step 10: no loss logged yet
    assert out["auc_at_0.5"] == 0.90 and out["loss_at_0.5"] == -0.5
    assert out["auc_at_0.99"] == 0.90 and out["loss_at_0.99"] == -0.9


def _study(accuracy, seeds=(0, 1, 2), conditions=8, extra=()):
    """A synthetic pool: per seed the same conditions, AUC and loss drawn independently, the accuracy a
    function of them; `extra` adds (seed, condition) runs only some seeds have."""
    rng = np.random.default_rng(1)
    rows = []
    for seed in seeds:
        for c in list(range(conditions)) + [e for s, e in extra if s == seed]:
            auc, loss = rng.uniform(0.75, 0.9), rng.uniform(-0.95, -0.8)
            rows.append({"seed": seed, "condition": json.dumps({"c": c}), "auc": auc, "loss": loss,
                         "accuracy": accuracy(auc, loss, rng)})
    return pd.DataFrame(rows)


def test_claims_reproduce_when_collapse_and_loss_both_predict_accuracy():
    df = _study(lambda auc, loss, rng: 150 - 80 * auc - 100 * loss + rng.normal(scale=0.3))
    verdicts = {c["id"]: c for c in chapter.claims(df)}
    assert {c["verdict"] for c in verdicts.values()} == {"reproduced"}
    assert verdicts["more_collapse_less_accuracy"]["statistic"]["mean_difference"] == pytest.approx(-80, abs=5)
    assert verdicts["lower_loss_more_accuracy"]["statistic"]["n_seeds"] == 3


def test_claims_fail_when_accuracy_rises_with_collapse_and_ignores_the_loss():
    df = _study(lambda auc, loss, rng: 10 + 80 * auc + rng.normal(scale=0.3))
    verdicts = {c["id"]: c for c in chapter.claims(df)}
    assert verdicts["more_collapse_less_accuracy"]["verdict"] == "not reproduced"
    gain = verdicts["both_beat_auc"]["statistic"]  # the loss adds nothing out of sample: a loss, not a gain
    assert gain["mean_difference"] < 0 and verdicts["both_beat_auc"]["verdict"] in ("not reproduced", "inconclusive")
    assert verdicts["both_beat_loss"]["verdict"] == "reproduced"


def test_a_seed_whose_leave_one_out_r2_is_undefined_is_left_out_of_the_r2_claims(monkeypatch):
    df = _study(lambda auc, loss, rng: 150 - 80 * auc - 100 * loss + rng.normal(scale=0.3))
    real = chapter.ols
    undefined_for_seed_0 = lambda x, y: dict(real(x, y), loo_r2=np.nan) if y[0] == df.accuracy.iloc[0] else real(x, y)
    monkeypatch.setattr(chapter, "ols", undefined_for_seed_0)
    verdicts = {c["id"]: c for c in chapter.claims(df)}
    assert verdicts["both_beat_auc"]["statistic"]["n_seeds"] == 2  # so inconclusive, with its reason
    assert verdicts["more_collapse_less_accuracy"]["statistic"]["n_seeds"] == 3


def test_claims_fit_each_seed_on_the_conditions_every_seed_has():
    df = _study(lambda auc, loss, rng: 150 - 80 * auc - 100 * loss, extra=[(0, 100), (0, 101), (1, 100)])
    assert len(chapter.replicates(df)) == 3 * 8
    fits = chapter.per_seed_fits(df)
    assert sorted(fits) == [0, 1, 2] and {f["both"]["n"] for f in fits.values()} == {8}
    few = _study(lambda auc, loss, rng: 150 - 80 * auc - 100 * loss, conditions=3)
    claim = chapter.claims(few)[0]
    assert claim["verdict"] == "inconclusive" and "(0 have)" in claim["statistic"]["reason"]


def test_the_paper_table_layout_puts_the_papers_numbers_beside_ours():
    df = _study(lambda auc, loss, rng: 150 - 80 * auc - 100 * loss + rng.normal(scale=0.3))
    table = chapter.fit_table(df)
    assert list(table.index) == chapter.ROWS
    assert table.loc["R²", ("both", "paper")] == 0.95 and table.loc["runs", ("both", "ours")] == 24
    assert table.loc["AUC coeff.", ("both", "ours")] == pytest.approx(-80, abs=3)
    assert np.isnan(table.loc["Train loss coeff.", ("AUC only", "ours")])
    early = chapter.early_warning(df.assign(**{"auc_at_0.5": df.auc, "loss_at_0.5": np.nan}), [0.5])
    assert early.loc["50 % of the steps", "runs"] == 0 and np.isnan(early.loc["50 % of the steps", "R²"])
    assert early.loc["end of training", "R²"] == pytest.approx(table.loc["R²", ("both", "ours")])


def test_the_fit_gathers_every_trained_simsiam_run_of_its_chapters_once():
    from ssl_src.chapters import capacity_vs_data, chapter_module, resolve_parameters
    from ssl_src.sweep import resolve

    key = lambda cfg: json.dumps(cfg.to_dict(), sort_keys=True)
    simsiam_of = lambda module: {key(c) for c in resolve(module.configs(resolve_parameters(module.PRESETS, "smoke")))
                                 if c.steps > 0 and c.method == "simsiam"}
    # the book's chapters that train runs (_toc.yml), not the search (a study), a demonstration nor the fit itself
    assert {"capacity_vs_data", "data_ordering", "other_methods", "distillation"} <= set(chapter.BOOK_CHAPTERS)
    assert not {"choosing_a_scale", "predicting_accuracy", "learning_dynamics", "what_is_collapse"} & set(chapter.BOOK_CHAPTERS)
    by_default = [key(c) for c in chapter.configs(resolve_parameters(chapter.PRESETS, "smoke"))]
    assert len(by_default) == len(set(by_default))
    # every trained SimSiam run of those chapters (the random-init networks, 0 steps, are no SimSiam runs)
    assert set(by_default) == set().union(*(simsiam_of(chapter_module(name)) for name in chapter.BOOK_CHAPTERS))
    capacity = simsiam_of(capacity_vs_data)
    with_search = chapter.configs(resolve_parameters(chapter.PRESETS, "smoke", chapters=["choosing_a_scale", "capacity_vs_data"]))
    keys = [key(c) for c in with_search]
    assert len(keys) == len(set(keys)) and all(c.method == "simsiam" and c.steps > 0 for c in with_search)
    assert capacity < set(keys)  # the search's probes join the capacity chapter's runs, each once
