"""The chapters' own computations on hand-made inputs (the smoke book runs them end to end)."""
import numpy as np
import pandas as pd
import pytest

from ssl_src.chapters import check_parameters, directpred, eigenspace_alignment, learning_dynamics, performance
from ssl_src.errors import UserError
from ssl_src.theory import fixed_points


def test_the_vector_field_vanishes_at_the_fixed_points_on_the_parabola():
    for eta in (0.0, 0.01, 0.1):
        points = fixed_points(1.0, 0.5, eta)
        dp, ds = learning_dynamics.vector_field(points, points**2, eta=eta, sigma2=0.5)
        np.testing.assert_allclose(dp, 0, atol=1e-12)
        np.testing.assert_allclose(ds, 0, atol=1e-12)


def test_time_to_converge():
    t = np.arange(5.0)
    p = np.array([[0.0], [0.5], [0.85], [0.95], [1.0]])
    assert learning_dynamics.time_to_converge(t, p) == 3.0  # first time 90 % of the way from 0 to 1 is covered
    assert learning_dynamics.time_to_converge(t, np.zeros((5, 1))) == float("inf")  # a collapsed mode


def test_trajectory_summary_of_monitor_records():
    records = pd.DataFrame([
        {"step": 0, "F_eigenvalues": [1.0, 0.0, 0.0, 0.0], "alignment": [0.0] * 4, "predictor_asymmetry": 2.0},
        {"step": 5, "F_eigenvalues": [4.0, 2.0, 1.0, 1.0], "alignment": [0.2, 0.0, 1.0, 1.0], "predictor_asymmetry": 1.0},
        {"step": 10, "F_eigenvalues": [100.0, 1.0, 1.0, 0.01], "alignment": [1.0, 0.8, 0.0, 0.0], "predictor_asymmetry": 0.2},
    ])
    s = eigenspace_alignment.trajectory_summary(records)
    assert s.alignment_top_half.tolist()[1:] == pytest.approx([0.1, 0.9])  # the leading half: the first two
    assert s.F_spread.tolist()[1:] == pytest.approx([np.log10(4 / 1.5), 2.0])
    # Changes run from the first measurement after initialisation (step 5) to the last.
    seeds = {0: s, 1: s.assign(alignment_top_half=[0.0, 0.1, 0.95]), 2: s.assign(alignment_top_half=[0.0, 0.1, 0.87])}
    runs = pd.DataFrame([{"kind": kind, "seed": seed, "weighted_knn_acc": acc} for seed in seeds
                         for kind, acc in (("random init", 0.55 + 0.01 * seed), ("trained", 0.60 + 0.02 * seed))])
    claims = {c["id"]: c for c in eigenspace_alignment.claims(runs, seeds)}
    # Learned features: 5, 6 and 7 points above each seed's random init, less the 3-point margin.
    assert claims["beats_random_init"]["statistic"]["per_seed"] == pytest.approx([2.0, 3.0, 4.0])
    assert claims["beats_random_init"]["verdict"] == "reproduced"
    assert claims["alignment_rises"]["statistic"]["per_seed"] == pytest.approx([0.8, 0.85, 0.77])
    assert claims["alignment_rises"]["verdict"] == "reproduced"
    assert claims["predictor_becomes_symmetric"]["statistic"]["mean_difference"] == pytest.approx(-0.8)


def directpred_rows(random_init_gap: float) -> pd.DataFrame:
    """Linear-probe accuracies, and a weighted kNN accuracy 5 points below each (the random init's: the gap)."""
    rows = []
    for seed, base in enumerate([0.70, 0.72, 0.71, 0.705, 0.715]):
        rows += [{"variant": "DirectPred", "seed": seed, "linear_acc": base + 0.002 - 0.0005 * seed},
                 {"variant": "DirectCopy", "seed": seed, "linear_acc": base + 0.001},
                 {"variant": "2-layer BN (SGD)", "seed": seed, "linear_acc": base},
                 {"variant": "linear (SGD)", "seed": seed, "linear_acc": base - 0.04 - 0.001 * seed},
                 {"variant": directpred.RANDOM_INIT, "seed": seed, "linear_acc": base - random_init_gap + 0.001 * seed}]
    return pd.DataFrame(rows).assign(weighted_knn_acc=lambda df: df.linear_acc - 0.05)


def test_directpred_claims_pair_variants_by_seed():
    rows = directpred_rows(random_init_gap=0.1)
    claims = {c["id"]: c for c in directpred.claims(rows, {"variants": list(directpred.VARIANTS)})}
    assert claims["comparable_to_two_layer"]["verdict"] == "reproduced"
    assert claims["beats_linear"]["verdict"] == "reproduced"
    assert claims["beats_linear"]["statistic"]["per_seed"] == pytest.approx([0.042, 0.0425, 0.043, 0.0435, 0.044])
    assert claims["beats_linear"]["statistic"]["effect_fraction"] == pytest.approx(0.043 / 0.025)
    # Learned features: the least accurate net of each seed is the linear predictor's, 0.04 + 0.001 seed below
    # the 2-layer one; the random init is 0.1 - 0.001 seed below: 6 - 0.2 seed points above it, less 3.
    assert claims["beats_random_init"]["statistic"]["per_seed"] == pytest.approx([3.0, 2.8, 2.6, 2.4, 2.2])
    only = directpred.claims(rows, {"variants": ["DirectPred"]})
    assert [c["id"] for c in only] == ["beats_random_init"]  # no other predictor to compare with


def test_comparable_needs_both_nets_clearly_above_random_init():
    """Two nets no better than their initialisation are "comparable" too: that says nothing."""
    c = {c["id"]: c for c in directpred.claims(directpred_rows(random_init_gap=0.0), {"variants": list(directpred.VARIANTS)})}
    assert c["comparable_to_two_layer"]["verdict"] == "inconclusive"
    assert "not clearly above the random-init network" in c["comparable_to_two_layer"]["statistic"]["reason"]


def test_performance_check_fails_when_a_failing_convolution_is_not_routed():
    results = {"widths": {"8": {"ratio": 2.0, "flops_fraction_of_peak": 0.5}}, "precision": "fp32",
               "evaluation": {"total_s": 10.0}}
    case = dict(in_channels=4, out_channels=8, kernel=1, stride=2, channels_last=True, threads=2, precision="fp32",
                batch=32, size=28, repeats=3, isa="AVX2")
    routed_failure = dict(case, outcome="hang")
    check = lambda records: {c["id"]: c for c in performance.claims(results, {"widths": [8]}, records)}["failing_convolutions_routed"]
    assert check([routed_failure, dict(case, in_channels=8, outcome="ok")])["verdict"] == "holds"
    for unrouted in (dict(case, channels_last=False, outcome="crash (SIGBUS)"), dict(case, in_channels=8, outcome="wrong"),
                     dict(case, kernel=3, outcome="error (exit 4)")):
        verdict = check([routed_failure, unrouted])
        assert verdict["verdict"] == "fails" and verdict["statistic"]["value"] == 1


@pytest.mark.parametrize("chapter, params, message", [
    ("directpred", {"variants": ["MLP"]}, "unknown variant(s) MLP; valid: DirectPred"),
    ("eigenspace_alignment", {"monitor_every": 0}, "parameter monitor_every must be between 1 and steps / 2"),
    ("learning_dynamics", {"dt": 0.5}, "must be <= 0.1 for a stable RK4 integration"),
    ("learning_dynamics", {"portrait_etas": [-1.0]}, "weight decays must be >= 0"),
    ("learning_dynamics", {"fig5_betas": "fast"}, "parameter fig5_betas must be a non-empty list"),
    ("predicting_accuracy", {"accuracy": "top1"}, "parameter accuracy must be one of linear_acc"),
    ("predicting_accuracy", {"early_fractions": [0.5, 1.0]}, "every fraction must lie in (0, 1)"),
    ("predicting_accuracy", {"chapters": ["tables"]}, "parameter chapters: no chapter module tables"),
    ("predicting_accuracy", {"chapters": ["learning_dynamics"]}, "chapter learning_dynamics trains no runs"),
])
def test_chapter_parameters_are_checked_before_any_work(chapter, params, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_parameters(chapter, "smoke", params)


def test_a_probe_budget_is_epochs_of_its_pool_and_every_net_gets_its_random_init():
    from ssl_src.chapters import choosing_a_scale as scale_search
    from ssl_src.chapters import resolve_parameters

    setting = dict(scale_search.RECIPE_V0, pool=0.1, fraction=0.01, epochs=50.0, batch_size=128)
    assert scale_search.steps_of(setting) == round(50 * 6000 / 128)  # the pool's epochs, whatever the fraction
    p = resolve_parameters(scale_search.PRESETS, "quick")
    cfg = scale_search.config(setting, p)
    assert (cfg.subset, cfg.steps) == (pytest.approx(0.001), 2344)
    grid = scale_search.grid(scale_search.RECIPE_V0, width=[2, 4], fraction=[0.01, 1.0])
    assert [(s["width"], s["fraction"]) for s in grid] == [(2, 0.01), (2, 1.0), (4, 0.01), (4, 1.0)]
    settings = scale_search.settings(p)
    trained = [s for s in settings if s["probe"] != "random init"]
    nets = {(s["arch"], s["width"], s["image_size"], s["seed"]) for s in trained}
    random_init = [s for s in settings if s["probe"] == "random init"]
    assert {(s["arch"], s["width"], s["image_size"], s["seed"]) for s in random_init} == nets
    assert all(scale_search.config(s, p).steps == 0 for s in random_init)


def test_the_smoke_preset_shrinks_every_probe_run():
    from ssl_src.chapters import choosing_a_scale as scale_search
    from ssl_src.chapters import resolve_parameters

    p = resolve_parameters(scale_search.PRESETS, "smoke")
    cfgs = scale_search.configs(p)
    assert {(c.image_size, c.batch_size) for c in cfgs} == {(16, 32)}
    assert {c.width for c in cfgs} == {2, 4, 8}  # the probes' own widths: narrow and wide stay apart
    assert max(c.steps for c in cfgs) == 4 and min(c.steps for c in cfgs) == 0
    with pytest.raises(UserError, match="unknown probe"):
        check_parameters("choosing_a_scale", "smoke", {"probes": ["no_such_probe"]})


def _probe_rows(scale_search, rows):
    """A probe table of hand-made runs from (setting overrides, seed, auc, weighted kNN points); the kNN is
    80 points for the raw pixels and 60 for every random-init net."""
    base = dict(scale_search.REGIME["recipe"], probe="p")
    out = []
    for i, (values, seed, auc, knn) in enumerate(rows):
        out.append(dict(base, **values, seed=seed, auc=auc, weighted_knn_points=knn, run_id=f"r{i}",
                        above_raw_pixels=knn - 80.0, above_random_init=knn - 60.0))
    return pd.DataFrame(out)


def test_signature_claims_read_paired_seeds_from_the_probe_table():
    from ssl_src.chapters import choosing_a_scale as scale_search
    from ssl_src.chapters import resolve_parameters

    regime = scale_search.REGIME
    narrow, wide = regime["narrow"], regime["wide"]
    rows = []
    for seed, noise in enumerate([0.0, 0.004, -0.003]):
        rows += [(dict(width=narrow, fraction=0.01), seed, 0.80 + noise, 86.0),
                 (dict(width=narrow, fraction=0.1), seed, 0.81 + noise, 87.0 + noise),
                 (dict(width=narrow, fraction=1.0), seed, 0.85 + noise + noise, 85.0),  # rises by 0.05 + noise
                 (dict(width=wide, fraction=0.01), seed, 0.80, 88.0),
                 (dict(width=wide, fraction=1.0), seed, 0.80 + noise, 88.0),  # does not rise
                 (dict(width=narrow, fraction=1.0, arch=regime["deep"]), seed, 0.84 + noise, 84.0)]  # less collapsed
    table = _probe_rows(scale_search, rows)
    claims = {c["id"]: c for c in scale_search.signature_claims(table, regime, resolve_parameters(scale_search.PRESETS, "quick"))}
    rise = claims["a_narrow_auc_rises_with_data"]["statistic"]
    assert rise["per_seed"] == pytest.approx([0.05, 0.054, 0.047])
    assert claims["a_narrow_auc_rises_with_data"]["verdict"] == "reproduced"
    assert rise["effect_fraction"] == pytest.approx(np.mean([0.05, 0.054, 0.047]) / 0.25)
    assert claims["a_narrow_rises_more_than_wide"]["verdict"] == "reproduced"
    assert claims["b_narrow_accuracy_drops_with_data"]["statistic"]["per_seed"] == pytest.approx([-2.0, -2.004, -1.997])
    assert claims["c_deeper_collapses_more"]["verdict"] == "not reproduced"  # 0.01 less collapsed on every seed
    assert claims["beats_raw_pixels"]["statistic"]["per_seed"] == pytest.approx([2.0] * 3)  # 5 points above, minus 3
    assert claims["beats_raw_pixels"]["verdict"] == "reproduced"
    assert claims["d_single_pass_less_collapsed"]["verdict"] == "inconclusive"  # no single-pass runs yet
    assert claims["d_single_pass_less_collapsed"]["statistic"]["n_seeds"] == 0
    # a wide seed missing: the contrast pairs seed by seed (never seed 1 of one net with seed 2 of the other)
    without = table[~((table.width == wide) & (table.seed == 1))]
    contrast = {c["id"]: c for c in scale_search.signature_claims(without, regime, resolve_parameters(
        scale_search.PRESETS, "quick"))}["a_narrow_rises_more_than_wide"]["statistic"]["per_seed"]
    assert contrast == pytest.approx([0.05 - 0.0, 0.047 - (-0.003)])  # seeds 0 and 2


def test_paired_by_seed_refuses_a_seed_measured_twice():
    from ssl_src.claims import paired_by_seed

    left, right = pd.Series([1.0, 2.0, np.nan], index=[0, 1, 2]), pd.Series([0.5, 0.5, 0.5, 9.0], index=[0, 1, 2, 3])
    assert paired_by_seed(left, right).to_dict() == {0: 0.5, 1: 1.5}  # seed 2 has no value, seed 3 no partner
    with pytest.raises(ValueError, match="seed appears twice"):
        paired_by_seed(pd.Series([1.0, 2.0], index=[0, 0]), right)


def test_retrain_budget_sums_the_published_runs_core_time(results_dir):
    import json

    from ssl_src.chapters import capacity_vs_data, chapter_run_ids, resolve_parameters, retrain_budget
    from ssl_src.store import Run
    from ssl_src.sweep import resolve

    empty = retrain_budget("smoke")
    assert (empty.published == 0).all() and (empty.core_hours == 0).all()
    first = Run(next(cfg for cfg in resolve(capacity_vs_data.configs(resolve_parameters(capacity_vs_data.PRESETS, "smoke")))
                     if cfg.steps > 0).to_dict()).id
    run_dir = results_dir / "smoke" / "runs" / first
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps({"run_id": first}))
    (run_dir / "provenance.json").write_text(json.dumps({"wall_seconds": 1800, "machine": {"torch_threads": 2}}))
    budget = retrain_budget("smoke", cores=2)
    assert budget.loc["capacity_vs_data", "published"] == 1
    assert budget.loc["capacity_vs_data", "core_hours"] == pytest.approx(1.0)  # half an hour on 2 threads
    assert budget.loc["capacity_vs_data", "hours_on_2_cores"] == pytest.approx(0.5)
    # the fit of accuracy on collapse re-uses the capacity chapter's runs: the whole book trains them once
    assert budget.loc["predicting_accuracy", "of earlier chapters"] == budget.loc["predicting_accuracy", "runs"] > 0
    assert budget.loc["predicting_accuracy", "core_hours"] == pytest.approx(1.0)
    book = budget.loc["whole book (without studies)"]
    assert book.core_hours == pytest.approx(1.0)
    assert not budget.over_budget.any() and book["budget (h)"] == 16.0
    assert pd.isna(budget.loc["choosing_a_scale", "budget (h)"])  # a study: its probes have no budget
    (run_dir / "provenance.json").write_text(json.dumps({"wall_seconds": 5 * 3600, "machine": {"torch_threads": 2}}))
    over = retrain_budget("smoke", cores=2).over_budget
    assert over["capacity_vs_data"] and not over["choosing_a_scale"]
    # the fit adds no run of its own: no budget of its own, though its row says what re-training it alone takes
    assert not over["predicting_accuracy"] and pd.isna(budget.loc["predicting_accuracy", "budget (h)"])
    used = chapter_run_ids("smoke")
    assert book.runs == len(set().union(*(ids for name, ids in used.items() if name != "choosing_a_scale")))
    assert book.runs < len(set().union(*used.values()))  # the search's own probes are not in the book's budget


def test_data_trends_of_a_capacity_map():
    from ssl_src.chapters import choosing_a_scale as scale_search

    table = pd.DataFrame([dict(probe="m", width=w, fraction=f, seed=s, auc=auc + 0.01 * s, effective_rank_fraction=0.4,
                               weighted_knn_points=knn)
                          for w, f, auc, knn in [(2, 0.01, 0.80, 70.0), (2, 1.0, 0.85, 68.0), (8, 0.01, 0.80, 75.0),
                                                 (8, 1.0, 0.80, 76.0)] for s in (0, 1)])
    trends = scale_search.data_trends(table.assign(run_id=range(len(table))))
    assert trends.loc[2, "AUC change"] == pytest.approx(0.05) and trends.loc[8, "AUC change"] == pytest.approx(0.0)
    assert trends.loc[2, "kNN change"] == pytest.approx(-2.0) and trends.loc[2, "seeds"] == 2
    assert trends.loc[2, "AUC small"] == pytest.approx(0.805)  # the mean over seeds


def test_budget_to_beat_raw_pixels_extends_the_trend_in_log_epochs():
    from ssl_src.chapters import choosing_a_scale as scale_search
    from ssl_src.chapters import resolve_parameters

    regime, p = scale_search.REGIME, resolve_parameters(scale_search.PRESETS, "quick")
    narrow = dict(width=regime["narrow"], fraction=regime["large"])
    # raw pixels at 80 points: the narrow net is 4 below at 5 epochs and 2 below at 25 (the mean of 2 seeds)
    rows = [(dict(narrow, epochs=5.0), 0, 0.8, 76.0), (dict(narrow, epochs=5.0), 1, 0.8, 76.0),
            (dict(narrow, epochs=25.0), 0, 0.8, 77.0), (dict(narrow, epochs=25.0), 1, 0.8, 79.0),
            (dict(narrow, epochs=25.0, width=regime["wide"]), 0, 0.8, 90.0),  # another net: not counted
            (dict(narrow, epochs=25.0, image_size=16), 0, 0.8, 90.0)]
    table = _probe_rows(scale_search, rows).assign(train_seconds=lambda t: 720.0 * t.epochs)  # 12 min an epoch
    found = scale_search.budget_to_beat_raw_pixels(table, regime, p)
    assert found["points_above_raw_by_epochs"] == {5.0: -4.0, 25.0: -2.0}
    # +2 points per factor of 5 in epochs; 3 points above needs 5 more points: 5^2.5 times 25 epochs
    assert found["how"] == "extrapolated" and found["epochs_needed"] == pytest.approx(25 * 5 ** 2.5)
    assert found["hours_per_run"] == pytest.approx(25 * 5 ** 2.5 / 5)
    beaten = _probe_rows(scale_search, rows[:2] + [(dict(narrow, epochs=25.0), 0, 0.8, 84.0)]).assign(train_seconds=1.0)
    assert scale_search.budget_to_beat_raw_pixels(beaten, regime, p)["epochs_needed"] == 25.0
    flat = _probe_rows(scale_search, rows[:2] + [(dict(narrow, epochs=25.0), 0, 0.8, 75.0)]).assign(train_seconds=1.0)
    assert scale_search.budget_to_beat_raw_pixels(flat, regime, p)["epochs_needed"] == float("inf")


def test_published_orphans_are_runs_no_chapter_uses(results_dir):
    from ssl_src.chapters import chapter_run_ids, published_orphans

    used = chapter_run_ids("smoke")["capacity_vs_data"][0]
    for run_id in (used, "0123456789ab"):
        (results_dir / "smoke" / "runs" / run_id).mkdir(parents=True)
    assert published_orphans("smoke") == ["0123456789ab"]


def test_the_quick_book_renders_from_published_runs_only():
    """Every run a chapter uses at the quick preset is published (so `make book` trains nothing), and every
    published quick run is used by a chapter (a changed preset leaves no stale runs behind)."""
    from ssl_src.chapters import published_orphans, retrain_budget

    budget = retrain_budget("quick")
    missing = budget[budget.published < budget.runs]
    assert missing.empty, f"runs not published: {missing[['runs', 'published']].to_dict('index')}"
    assert published_orphans("quick") == []


def test_a_probe_figure_shows_its_runs_beside_their_counterparts():
    from ssl_src.chapters import choosing_a_scale as scale_search
    from ssl_src.chapters import resolve_parameters

    p = resolve_parameters(scale_search.PRESETS, "quick")
    rows = [dict(s, probe=name, run_id=f"{name}{i}") for name in ("depth", "seeds", "capacity_map", "ordering")
            for i, s in enumerate(scale_search.PROBES[name].settings)]
    table = pd.DataFrame(rows)
    depth = scale_search.figure_rows(table, "depth", p)
    # ResNet-34 at width 4 on the whole pool, beside ResNet-18 at width 4 on the whole pool (every seed)
    assert set(zip(depth.arch, depth.seed)) == {("resnet34", s) for s in (0, 1, 2)} | {("resnet18", s) for s in (0, 1, 2)}
    assert set(depth.fraction) == {1.0} and set(depth.width) == {4} and set(depth.ordering) == {"iid"}
    ordering = scale_search.figure_rows(table, "ordering", p)
    assert set(zip(ordering.ordering, ordering.arch)) == {("single", "resnet18"), ("iid", "resnet18")}
    capacity = scale_search.figure_rows(table, "capacity_map", p)
    assert len(capacity) == 9 + 6 and set(capacity.arch) == {"resnet18"}  # the map's seed 0 and seeds 1, 2


def test_every_chapter_that_trains_nets_runs_at_the_chosen_regime():
    """Every chapter but a demonstration (the opening one breaks SimSiam for a short budget)."""
    from ssl_src.chapters import chapter_module
    from ssl_src.chapters import choosing_a_scale as scale_search

    regime, presets = scale_search.REGIME, scale_search.chosen_presets()
    presets = presets.drop(index=[name for name in presets.index if getattr(chapter_module(name), "DEMONSTRATION", False)])
    assert "capacity_vs_data" in presets.index
    budget = str(scale_search.steps_of(regime["recipe"]))
    assert (presets.steps == budget).all() and (presets["epochs of 60k"] == regime["recipe"]["epochs"]).all()
    assert presets.loc["capacity_vs_data", "width"] == f"{regime['narrow']}, {regime['wide']}"
    assert presets.loc["capacity_vs_data", "base lr"] == f"{regime['recipe']['base_lr']:g}"


def test_the_capacity_chapters_quick_runs_are_the_searchs_but_the_deeper_nets_subsets():
    """Two builders make the same runs (capacity_vs_data.config and choosing_a_scale.config): a change to
    one that the other does not follow would split the published runs."""
    from ssl_src.chapters import capacity_vs_data, resolve_parameters
    from ssl_src.chapters import choosing_a_scale as scale_search
    from ssl_src.store import Run
    from ssl_src.sweep import resolve

    cfgs = lambda module: resolve(module.configs(resolve_parameters(module.PRESETS, "quick")))
    search = {Run(c.to_dict()).id for c in cfgs(scale_search)}
    capacity = {Run(c.to_dict()).id: c for c in cfgs(capacity_vs_data)}
    own = [c for run_id, c in capacity.items() if run_id not in search]
    # only the deeper net's smaller subsets are the chapter's own (the search trained ResNet-34 on the whole pool)
    assert len(capacity) == 36 and len(own) == 6
    assert {(c.arch, c.width, c.subset) for c in own} == {("resnet34", 4, 0.01), ("resnet34", 4, 0.1)}
