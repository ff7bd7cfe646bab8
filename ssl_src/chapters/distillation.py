"""Distillation (collapse paper, supplement Table 1): a large net trained by SimSiam or MoCo-v3 taught to the
small nets that SimSiam collapses, and what that costs.

The teachers are the other-methods chapter's large nets (SimSiam's is the capacity chapter's wide net), the
students train the capacity chapter's recipe with the `distill` method (the student regresses the teacher's
standardised features from one view), and the students trained directly by SimSiam are the capacity chapter's
narrow net and the search's depth probe: every run but the distillations is another chapter's.
"""
from __future__ import annotations

import pandas as pd

from ..claims import claim, condition_by_seed, mean_sd, paired_conditions
from ..config import TrainConfig
from ..errors import UserError
from ..store import Run, find_run
from ..sweep import resolve
from . import core_hours, learned_features, staged_summaries
from . import capacity_vs_data as capacity
from . import data_ordering, other_methods

# Supplement Table 1 (ImageNet linear probe, %, 100 epochs): the ResNet-50 teachers and their students; and
# the students trained by SimSiam directly (Table 2, multiple pass).
PAPER = {
    "simsiam": {"teacher": 68.1, "resnet18": 58.9, "resnet34": 62.5},
    "mocov3": {"teacher": 66.4, "resnet18": 56.4, "resnet34": 57.5},
    "direct": {"resnet18": 30.0, "resnet34": 16.8},
    "source": "supplement Table 1 (students of ResNet-50 teachers) and Table 2 (SimSiam multiple pass), "
              "ImageNet linear probe, 100 epochs",
}
# "Training and distilling ResNet-50 into ResNet-18 takes as much as 4x the compute as directly training the
# ResNet-18" (supplement section 2).
PAPER_COMPUTE_RATIO = 4.0
NAMES = dict(other_methods.NAMES, resnet18="ResNet-18", resnet34="ResNet-34")
TEACHERS, STUDENTS = ("simsiam", "mocov3"), ("resnet18", "resnet34")  # the paper's

PRESETS = {
    name: dict({k: other_methods.PRESETS[name][k] for k in (*data_ordering.RECIPE, "ema", "temperature")},
               teachers=list(TEACHERS), teacher_arch=other_methods.PRESETS[name]["wide_arch"],
               teacher_width=other_methods.PRESETS[name]["wide"], students=list(STUDENTS),
               student_width=other_methods.PRESETS[name]["width"], seeds=[0, 1, 2])
    for name in ("smoke", "quick", "paper")
}


def teacher_setting(p: dict, method: str, seed: int) -> dict:
    """The other-methods chapter's large net trained by `method`: the teacher of the students of its seed."""
    return dict(net="large", arch=p["teacher_arch"], width=p["teacher_width"], method=method, ordering="iid",
                seed=seed, part="trained")


def teacher_config(p: dict, method: str, seed: int) -> TrainConfig:
    return other_methods.config(dict(p, wide=p["teacher_width"]), teacher_setting(p, method, seed))


def teacher_id(p: dict, method: str, seed: int) -> str:
    """The run id of a teacher (what a student's config names): the hash of its resolved config."""
    return Run(resolve([teacher_config(p, method, seed)])[0].to_dict()).id


def settings(p: dict) -> list[dict]:
    """Per seed: each teacher, each student trained directly by SimSiam and at initialisation, and each
    student distilled from each teacher of the same seed."""
    out = []
    for s in p["seeds"]:
        out += [dict(role="teacher", method=m, arch=p["teacher_arch"], seed=s) for m in p["teachers"]]
        out += [dict(role=role, method="simsiam", arch=a, seed=s) for a in p["students"] for role in ("random init", "direct")]
        out += [dict(role="distilled", method=m, arch=a, seed=s) for m in p["teachers"] for a in p["students"]]
    return out


def config(p: dict, s: dict) -> TrainConfig:
    if s["role"] == "teacher":
        return teacher_config(p, s["method"], s["seed"])
    steps = 0 if s["role"] == "random init" else p["steps"]
    distill = dict(method="distill", teacher=teacher_id(p, s["method"], s["seed"])) if s["role"] == "distilled" else {}
    return capacity.config(p, s["arch"], p["student_width"], 1.0, s["seed"], steps, **distill)


def configs(p: dict) -> list[TrainConfig]:
    return [config(p, s) for s in settings(p)]


def staged_settings(p: dict) -> list[list[tuple[dict, TrainConfig]]]:
    """(setting, config) in the order they can train: a student reads its teacher's weights, so the teachers
    (and the directly trained students) come first."""
    pairs = list(zip(settings(p), configs(p)))
    return [[(s, c) for s, c in pairs if s["role"] != "distilled"], [(s, c) for s, c in pairs if s["role"] == "distilled"]]


def stages(p: dict) -> list[list[TrainConfig]]:
    return [[c for _, c in stage] for stage in staged_settings(p)]


def check(p: dict) -> None:
    unknown = sorted(set(p["teachers"]) - set(other_methods.NAMES)) + sorted(set(p["students"]) - set(STUDENTS))
    if unknown:
        raise UserError(f"unknown teacher method(s) or student(s) {', '.join(unknown)}; teachers: "
                        f"{', '.join(other_methods.NAMES)}, students: resnet18, resnet34")
    resolve(configs(p))


def run_table(p: dict, progress: bool = True) -> pd.DataFrame:
    staged = staged_settings(p)
    summaries = staged_summaries([[c for _, c in stage] for stage in staged], p["scale"], progress=progress)
    return pd.DataFrame([dict(summary, **s) for stage, done in zip(staged, summaries)
                         for (s, _), summary in zip(stage, done)])


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Supplement Table 1 with ours beside it: linear-probe accuracy (%) of each teacher and of each student
    distilled from it, and of the students trained by SimSiam directly (mean +- sd over seeds)."""
    students = [a for a in NAMES if a in set(runs[runs.role == "distilled"].arch) | set(runs[runs.role == "direct"].arch)]
    rows = {}
    for source in [*dict.fromkeys(runs[runs.role == "teacher"].method), "direct"]:
        trained = runs[runs.role == "direct"] if source == "direct" else runs[(runs.method == source) & (runs.role != "direct")]
        row = {}
        if source != "direct":
            row["teacher, paper"] = PAPER[source]["teacher"]
            row["teacher, ours"] = mean_sd(trained[trained.role == "teacher"].linear_acc)
        for a in students:
            row[f"{NAMES[a]}, paper"] = PAPER[source][a]
            student = "direct" if source == "direct" else "distilled"  # never the random-init nets
            row[f"{NAMES[a]}, ours"] = mean_sd(trained[(trained.arch == a) & (trained.role == student)].linear_acc)
        label = "SimSiam directly (no teacher)" if source == "direct" else f"distilled from the {NAMES[source]} teacher"
        rows[label] = row
    return pd.DataFrame(rows).T.rename_axis("pre-training")


def compute(runs: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Core-hours of each way to a small net, from the runs' provenance: training it by SimSiam directly, and
    training the teacher then distilling (the paper: up to 4x the direct cost). Mean over seeds."""
    hours = runs.assign(core_hours=[core_hours([find_run(i, scale)]) for i in runs.run_id])
    rows = []
    for a in dict.fromkeys(runs[runs.role == "distilled"].arch):
        direct = condition_by_seed(hours, "core_hours", dict(role="direct", arch=a))
        for m in dict.fromkeys(runs[runs.role == "distilled"].method):
            teacher = condition_by_seed(hours, "core_hours", dict(role="teacher", method=m))
            student = condition_by_seed(hours, "core_hours", dict(role="distilled", method=m, arch=a))
            total = (teacher + student).dropna()
            rows.append({"student": NAMES[a], "teacher": NAMES[m], "SimSiam directly (h)": direct.mean(),
                         "teacher (h)": teacher.mean(), "distillation (h)": student.mean(),
                         "teacher + distillation (h)": total.mean(), "x SimSiam directly": (total / direct).dropna().mean()})
    return pd.DataFrame(rows).round(3)


def claims(runs: pd.DataFrame, p: dict) -> list[dict]:
    """Each distilled student beats the same net trained by SimSiam directly (whichever algorithm trained the
    teacher), and stays below its teacher. Linear probe in points, paired by seed."""
    points = lambda a, b: [100 * d for d in paired_conditions(runs, "linear_acc", a, b)]
    out = []
    for a in p["students"]:
        first = p["teachers"][0]
        learned = paired_conditions(runs, "weighted_knn_acc", dict(role="distilled", arch=a, method=first),
                                    dict(role="random init", arch=a))
        out.append(learned_features(f"{NAMES[a]} distilled from the {NAMES[first]} teacher", f"random_init_{a}",
                                    f"the {NAMES[a]} at initialisation", [100 * d for d in learned]))
        for m in p["teachers"]:
            student = dict(role="distilled", arch=a, method=m)
            out.append(claim(f"{m}_student_{a}_beats_simsiam", f"{NAMES[a]} distilled from the {NAMES[m]} teacher is "
                             f"more accurate than {NAMES[a]} trained by SimSiam.",
                             f"{PAPER[m][a]} against {PAPER['direct'][a]} % ({PAPER['source']})",
                             points(student, dict(role="direct", arch=a)), +1, paper_effect=PAPER[m][a] - PAPER["direct"][a],
                             what=f"linear probe, distilled - SimSiam {NAMES[a]} (points)"))
            out.append(claim(f"{m}_student_{a}_below_teacher", f"{NAMES[a]} distilled from the {NAMES[m]} teacher is "
                             "less accurate than its teacher.", f"{PAPER[m][a]} against the teacher's {PAPER[m]['teacher']} %",
                             points(student, dict(role="teacher", method=m)), -1,
                             paper_effect=PAPER[m]["teacher"] - PAPER[m][a],
                             what=f"linear probe, distilled {NAMES[a]} - its teacher (points)"))
    return out


def claim_ids(p: dict) -> list[str]:
    """The id of every claim `claims` makes for the parameters' teachers and students."""
    return [i for a in p["students"] for i in [f"beats_random_init_{a}"] + [
        f"{m}_student_{a}_{kind}" for m in p["teachers"] for kind in ("beats_simsiam", "below_teacher")]]


def headline(runs: pd.DataFrame, cost: pd.DataFrame, p: dict) -> dict:
    """The numbers the verdict quotes, by glue name: mean linear probe (%) of each teacher, distilled student
    and directly trained student, and the compute of teacher + distillation as a multiple of the direct run's
    (nan for a teacher or student left out of the parameters)."""
    means = runs.groupby(["role", "method", "arch"]).linear_acc.mean() * 100
    acc = lambda *key: float(means.get(key, float("nan")))
    out = {}
    for m in TEACHERS:
        out[f"acc_{m}_teacher"] = acc("teacher", m, p["teacher_arch"])
        out.update({f"acc_{m}_{a}": acc("distilled", m, a) for a in STUDENTS})
    for a in STUDENTS:
        out[f"acc_direct_{a}"] = acc("direct", "simsiam", a)
        ratios = cost[cost.student == NAMES[a]]["x SimSiam directly"] if len(cost) else pd.Series(dtype=float)
        out[f"cost_{a}"] = float(ratios.mean()) if len(ratios) else float("nan")
    return out
