"""The distillation chapter (collapse paper, supplement Table 1): its runs, their order, the compute and the
claims that can fail."""
import pandas as pd
import pytest

from ssl_src.chapters import distillation as chapter
from ssl_src.chapters import resolve_parameters

P = resolve_parameters(chapter.PRESETS, "quick")


def _runs(accuracy):
    """One row per setting; `accuracy(role, method, arch, seed)` gives its linear probe."""
    rows = [dict(s, run_id=f"{s['role']}{s['method']}{s['arch']}{s['seed']}",
                 linear_acc=accuracy(s["role"], s["method"], s["arch"], s["seed"]),
                 weighted_knn_acc=0.5 if s["role"] == "random init" else 0.75) for s in chapter.settings(P)]
    return pd.DataFrame(rows)


PAPERLIKE = {("teacher", "simsiam"): 0.82, ("teacher", "mocov3"): 0.81, ("distilled", "simsiam"): 0.80,
             ("distilled", "mocov3"): 0.79, ("direct", "simsiam"): 0.76, ("random init", "simsiam"): 0.6}


def paperlike(role, method, arch, seed):
    return PAPERLIKE[(role, method)] + 0.002 * seed * (role != "direct") - 0.01 * (arch == "resnet34")


def test_only_the_distilled_students_are_new_runs():
    """Teachers are the other-methods chapter's large nets, the SimSiam students the capacity chapter's and the
    search's: a change to one builder that the other does not follow would split the published runs."""
    from ssl_src.chapters import capacity_vs_data, choosing_a_scale, other_methods
    from ssl_src.store import run_id
    from ssl_src.sweep import resolve

    ids = lambda module: {run_id(c.to_dict()): c for c in resolve(module.configs(resolve_parameters(module.PRESETS, "quick")))}
    ours = ids(chapter)
    shared = set(ids(other_methods)) | set(ids(capacity_vs_data)) | set(ids(choosing_a_scale))
    new = [c for i, c in ours.items() if i not in shared]
    assert len(ours) == 30 and len(new) == 12
    assert {(c.method, c.width, c.base_lr, c.steps) for c in new} == {("distill", 4, 0.5, 2344)}
    teachers = {c.teacher for c in new}
    assert len(teachers) == 6 and teachers <= set(ids(other_methods))
    assert {ours_cfg.seed for i, ours_cfg in ours.items() if i in teachers} == {0, 1, 2}
    for c in new:  # a student distills the teacher of its own seed
        assert next(t for i, t in ours.items() if i == c.teacher).seed == c.seed


def test_every_teacher_trains_before_its_students():
    first, second = chapter.stages(P)
    from ssl_src.store import run_id
    from ssl_src.sweep import resolve

    assert {c.method for c in second} == {"distill"} and "distill" not in {c.method for c in first}
    assert {c.teacher for c in second} <= {run_id(c.to_dict()) for c in resolve(first)}


def test_the_runs_command_trains_a_chapters_stages_in_order(monkeypatch):
    from ssl_src import chapters, sweep

    calls = []
    monkeypatch.setattr(sweep, "run_summaries", lambda cfgs, scale, **kw: calls.append([c.method for c in cfgs]) or [{}] * len(cfgs))
    chapters.chapter_runs("distillation", "smoke", {})
    assert len(calls) == 2 and "distill" not in calls[0] and set(calls[1]) == {"distill"}


def test_claims_reproduce_when_students_beat_simsiam_and_stay_below_their_teacher():
    claims = chapter.claims(_runs(paperlike), P)
    verdicts = {c["id"]: c for c in claims}
    assert sorted(verdicts) == sorted(chapter.claim_ids(P))
    assert {c["verdict"] for c in claims} == {"reproduced"}
    assert verdicts["simsiam_student_resnet18_beats_simsiam"]["statistic"]["mean_difference"] == pytest.approx(4.2)
    assert verdicts["mocov3_student_resnet34_below_teacher"]["statistic"]["effect_fraction"] == pytest.approx(3.0 / 8.9)  # the teacher is no ResNet-34


def test_claims_fail_when_distillation_does_not_help():
    worse = lambda role, method, arch, seed: paperlike(role, method, arch, seed) - 0.08 * (role == "distilled")
    verdicts = {c["id"]: c["verdict"] for c in chapter.claims(_runs(worse), P)}
    assert verdicts["simsiam_student_resnet18_beats_simsiam"] == verdicts["mocov3_student_resnet34_beats_simsiam"] == "not reproduced"
    better = lambda role, method, arch, seed: paperlike(role, method, arch, seed) + 0.05 * (role == "distilled")
    verdicts = {c["id"]: c["verdict"] for c in chapter.claims(_runs(better), P)}
    assert verdicts["simsiam_student_resnet18_below_teacher"] == "not reproduced"


def test_the_compute_adds_the_teacher_to_the_distillation_and_divides_by_the_direct_run(monkeypatch):
    hours = {"teacher": 3.0, "distilled": 1.0, "direct": 2.0, "random init": 0.1}
    runs = _runs(paperlike)
    monkeypatch.setattr(chapter, "find_run", lambda run_id, scale: run_id)
    role_of = dict(zip(runs.run_id, runs.role))
    monkeypatch.setattr(chapter, "core_hours", lambda stored: hours[role_of[stored[0]]])
    cost = chapter.compute(runs, "quick")
    assert len(cost) == 4 and (cost["teacher + distillation (h)"] == 4.0).all() and (cost["x SimSiam directly"] == 2.0).all()
    assert chapter.headline(runs, cost, P)["cost_resnet34"] == 2.0


def test_the_table_sets_supplement_table_1_beside_ours():
    table = chapter.table(_runs(paperlike))
    assert table.loc["distilled from the MoCo-v3 teacher", "ResNet-34, paper"] == 57.5
    assert table.loc["distilled from the SimSiam teacher", "teacher, ours"] == "82.2 ± 0.2"
    assert table.loc["distilled from the SimSiam teacher", "ResNet-18, ours"] == "80.2 ± 0.2"  # not the random inits
    assert table.loc["SimSiam directly (no teacher)", "ResNet-18, ours"] == "76.0 ± 0.0"


def test_an_unknown_teacher_is_refused():
    from ssl_src.chapters import check_parameters
    from ssl_src.errors import UserError

    with pytest.raises(UserError, match="unknown teacher"):
        check_parameters("distillation", "smoke", {"teachers": ["dino"]})
