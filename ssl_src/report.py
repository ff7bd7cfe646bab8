"""What every chapter shows the same way: where its numbers come from, its baselines, its claims table and
its provenance (the notebooks call these; they read runs through the store, never by path)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .claims import describe
from .store import find_run
from .sweep import describe_source

def _show_whole_cells_in_notebooks() -> None:
    """A chapter's tables hold sentences (claims, settings): in a notebook they are shown whole, never cut to
    pandas' 50 characters with "..." (other importers keep pandas' settings)."""
    from .sweep import in_notebook

    if in_notebook():
        pd.set_option("display.max_colwidth", None)


_show_whole_cells_in_notebooks()

NOT_MEASURED = "not measured (left out by the parameters)"
# The accuracies a trained chapter reports, and how each is computed (the tables say which one they show).
ACCURACIES = {
    "weighted_knn_acc": "weighted kNN (Wu et al.: k = 200, T = 0.1, cosine)",
    "knn_acc": "majority kNN (k chosen on a held-out split)",
    "linear_acc": "linear probe (L-BFGS, weight decay chosen on a held-out split)",
}


def parameters(presets: dict, names: dict, scale: str | None = None) -> dict:
    """A chapter's parameters from the notebook's own names (its `globals()`, where papermill wrote them):
    every preset key the notebook defines, None meaning the preset's value, at `scale` (default: the
    notebook's `scale`)."""
    from .chapters import resolve_parameters

    keys = next(iter(presets.values())).keys()
    return resolve_parameters(presets, scale or names["scale"], **{k: names[k] for k in keys if k in names})


def parameter_table(p: dict) -> pd.DataFrame:
    """The parameters a chapter ran with, one row each."""
    return pd.Series({k: str(v) for k, v in p.items()}, name="value").to_frame()


def glue_verdicts(claims: list[dict], expected: Sequence[str] = ()) -> None:
    """Each claim's verdict as `verdict_<id>`, for the chapter's prose; an `expected` id without a claim (its
    conditions left out of the parameters) reads "not measured", so the prose still renders."""
    from myst_nb import glue

    verdicts = {c["id"]: c["verdict"] for c in claims}
    for claim_id in dict.fromkeys([*verdicts, *expected]):
        glue(f"verdict_{claim_id}", verdicts.get(claim_id, NOT_MEASURED), display=False)


def source_line(cfgs: list, scale: str):
    """The chapter's first output: whether its numbers were re-computed here or read from published runs."""
    from IPython.display import Markdown

    return Markdown(f"**Where these numbers come from.** {describe_source(cfgs, scale)}")


def baselines(runs: pd.DataFrame, raw: dict, by: list[str], metrics=("weighted_knn_acc", "knn_acc", "linear_acc", "auc",
                                                                          "effective_rank")) -> pd.DataFrame:
    """Mean +- sd over seeds of each trained condition (`by`), beside the random-init network (rows of kind
    "random init") and the raw pixels: what a learned representation must beat."""
    rows = []
    trained, random_init = runs[runs.kind == "trained"], runs[runs.kind == "random init"]
    for key, group in trained.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({"condition": ", ".join(f"{k} {v}" for k, v in zip(by, key)), **_mean_sd(group, metrics)})
    rows.append({"condition": "random-init network", **_mean_sd(random_init, metrics)})
    rows.append({"condition": "raw pixels", **{m: f"{raw[m]:.4f}" for m in metrics if m in raw}})
    table = pd.DataFrame(rows).set_index("condition")
    return table.rename(columns={m: ACCURACIES.get(m, m) for m in metrics})


def _mean_sd(group: pd.DataFrame, metrics) -> dict:
    return {m: f"{group[m].mean():.4f} ± {group[m].std(ddof=1):.4f} (n={len(group)})" if len(group) > 1
            else f"{group[m].mean():.4f}" for m in metrics if m in group}


def claims_table(claims: list[dict], scale: float = 1.0, unit: str = ""):
    """One row per claim or check: the statement, the paper's (or the reference's) number, ours with its 95 %
    interval, p and n, and the verdict."""
    table = pd.DataFrame([{"claim" if c["kind"] == "claim" else "check": c["statement"], "paper": c["paper"],
                           "ours": describe(c, scale, unit), "verdict": c["verdict"]} for c in claims])
    return table.style.set_properties(**{"text-align": "left", "white-space": "pre-wrap"})


def book_claims(scale: str) -> pd.DataFrame:
    """Every claim and check of the book's chapters (`_toc.yml` order) as their last render at `scale` judged
    them: one row each, with the numbers the verdict rests on. Chapters not rendered at `scale` are absent."""
    from .book import chapter_names
    from .chapters import chapter_module, chapter_results

    rows = []
    for chapter in chapter_names():
        results = chapter_results(scale, chapter)
        study = getattr(chapter_module(chapter), "STUDY", False)
        for c in (results or {}).get("claims", []):
            s = c["statistic"]
            rows.append({"chapter": chapter, "study": study, "id": c["id"], "kind": c["kind"], "statement": c["statement"],
                         "paper": c["paper"], "ours": describe(c), "verdict": c["verdict"],
                         "mean_difference": s.get("mean_difference"), "p_value": s.get("p_value"),
                         "n_seeds": s.get("n_seeds"), "effect_fraction": s.get("effect_fraction")})
    columns = ["chapter", "study", "id", "kind", "statement", "paper", "ours", "verdict", "mean_difference", "p_value",
               "n_seeds", "effect_fraction"]
    return pd.DataFrame(rows, columns=columns)


# Every verdict in the order the tables and figures show them (claims', then checks'), with its colour.
VERDICT_COLOURS = {"reproduced": "tab:green", "not reproduced": "tab:red", "inconclusive": "tab:grey",
                   "holds": "tab:blue", "fails": "tab:orange", "not measured": "white"}


def verdict_tally(claims: pd.DataFrame) -> pd.DataFrame:
    """Verdicts counted per chapter (claims and checks apart), with the book's total last: without the studies
    (the search for a scale judges signatures that the chapters judge again on the same runs)."""
    counts = pd.crosstab([claims.chapter, claims.kind], claims.verdict)
    chapters = list(dict.fromkeys(claims.chapter))  # the book's order, as the claims were read
    counts = counts.reindex(sorted(counts.index, key=lambda key: (chapters.index(key[0]), key[1])))
    book = claims[~claims.study.astype(bool)]
    for kind in sorted(set(book.kind)):
        counts.loc[("whole book (without studies)", kind), :] = book[book.kind == kind].verdict.value_counts()
    order = [v for v in VERDICT_COLOURS if v in counts] + [v for v in counts if v not in VERDICT_COLOURS]
    return counts[order].fillna(0).astype(int)


def claims_summary(claims: pd.DataFrame):
    """The summary page's table: every claim and check, the chapter's title (linked to its page) on its first
    row, the paper's number, ours, the effect as a fraction of the paper's and the verdict (`book_claims` rows)."""
    from matplotlib.colors import to_rgba

    from .book import page_title

    def effect(row) -> str:
        fraction = row.effect_fraction
        return "" if fraction is None or pd.isna(fraction) else f"{100 * fraction:.0f} %"

    first = ~claims.chapter.duplicated()
    table = pd.DataFrame({
        "chapter": [f'<a href="{c}.html">{page_title(c)}</a>' + (" (study)" if study else "") if shown else ""
                    for c, study, shown in zip(claims.chapter, claims.study, first)],
        "claim or check": claims.statement, "paper": claims.paper, "ours": claims.ours,
        "effect, fraction of the paper's": [effect(r) for r in claims.itertuples()], "verdict": claims.verdict})
    tint = lambda verdict: "background-color: rgba({:.0f}, {:.0f}, {:.0f}, 0.25)".format(
        *(255 * c for c in to_rgba(VERDICT_COLOURS.get(verdict, "white"))[:3]))
    return (table.style.hide(axis="index").map(tint, subset=["verdict"])
            .set_properties(**{"text-align": "left", "white-space": "pre-wrap", "vertical-align": "top"}))


def verdicts_figure(claims: pd.DataFrame):
    """Verdicts per chapter as stacked bars (claims and checks apart), the book's chapters top to bottom."""
    import matplotlib.pyplot as plt

    from .book import page_title

    counts = pd.crosstab(claims.chapter, claims.verdict).reindex(list(dict.fromkeys(claims.chapter)))
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(counts) + 1.2))
    left = pd.Series(0, index=counts.index)
    for verdict in [v for v in VERDICT_COLOURS if v in counts]:
        ax.barh([page_title(c) for c in counts.index], counts[verdict], left=left, color=VERDICT_COLOURS[verdict], label=verdict)
        left += counts[verdict]
    ax.invert_yaxis()
    ax.set_xlabel("claims and checks")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


SMOKE_NOTE = ("**This page was rendered at the smoke scale: its verdicts check the pipeline, not the papers** (a few "
              "steps of tiny networks, too few seeds for a test). The book's numbers are its quick scale.")


def run_yourself(chapter: str, scale: str, cores: int = 2):
    """How to run this chapter at each scale, and what a re-train at the quick scale costs: the wall times its
    published quick runs took (core-hours / `cores`); at the smoke scale, first that its verdicts mean nothing."""
    from IPython.display import Markdown

    from .book import notebook_parameters
    from .chapters import chapter_ids, core_hours
    from .store import published_run

    command = f"python -m ssl_src chapter {chapter}"
    ids = chapter_ids(chapter, "quick")
    if ids is None:
        smoke, quick, retrain = "seconds", f"`{command}` runs the quick scale (the default).", ""
    else:
        published = [run for run in (published_run(i, "quick") for i in ids) if run.finished()]
        smoke = "seconds to minutes (tiny nets, a few steps: it proves the pipeline, not the paper)"
        quick = (f"`{command}` renders the quick scale from its {len(ids)} published runs in about a minute."
                 if len(published) == len(ids) else
                 f"`{command}` renders the quick scale: {len(published)} of its {len(ids)} runs are published, the "
                 "others train first.")
        retrain = (f" Add `--retrain` to train its {len(ids)} quick runs again: about "
                   f"{core_hours(published) / cores:.1f} h on {cores} cores, from the wall times of the "
                   f"{len(published)} published ones." if published else "")
    example = next((f' -p {name} "{value}"' for name, value in (("seeds", "[0, 1, 2]"), ("steps", "100"))
                    if name in notebook_parameters(chapter)), "")
    return Markdown((SMOKE_NOTE + "\n\n" if scale == "smoke" else "") +
        f"**Run this chapter yourself** (from a clone, after `make setup data`): `{command} --scale smoke` takes "
        f"{smoke}; {quick}{retrain} `{command} --scale paper` is the paper's recipe, for GPUs (README, *Paper scale "
        f"on GPUs*). Any parameter of the table changes with `-p NAME VALUE`"
        f"{f' (e.g. `{command}{example}`)' if example else ''}, or with papermill itself: "
        f"`papermill book/{chapter}.ipynb out.ipynb -p scale quick`.")


def provenance(results_path: Path, run_ids: list[str], scale: str) -> pd.DataFrame:
    """Where and how the chapter's runs were trained (every distinct machine, precision and torch), and its
    results file."""
    prov = json.loads(results_path.read_text())["provenance"]
    runs = [find_run(r, scale).provenance() for r in dict.fromkeys(run_ids)]
    distinct = lambda key: "; ".join(sorted({str(r.get(key, "unknown")) for r in runs}))
    return pd.Series({
        "results file": str(results_path), "rendered at commit": prov["git_commit"], "package": prov["package_version"],
        "runs": len(runs), "trained on": distinct("hardware"), "instruction sets": "; ".join(sorted(
            {r.get("machine", {}).get("instruction_sets", "unknown") for r in runs})),
        "precision": distinct("precision"), "torch": distinct("torch_version"), "trained at commit(s)": distinct("git_commit"),
        "training wall time, sum (h)": round(sum(r["wall_seconds"] for r in runs) / 3600, 2),
        "chapter wall time (s)": round(prov["wall_seconds"], 1)}, name="").to_frame()


def spectrum_figure(curves: list[tuple[str, "pd.Series"]], dashed: tuple[str, ...] = ("random init",),
                    title: str | None = None):
    """The collapse paper's two views of a representation's singular values, one curve per (label, run row):
    log(sigma_i / sigma_1) against i / d (a collapsed representation falls off a cliff) and the cumulative
    curve C_j whose mean is the AUC (Fig. 11). Runs of different d share the normalised index."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, row in curves:
        sigma = np.asarray(row["singular_values"])
        index = np.arange(1, len(sigma) + 1) / len(sigma)
        style = dict(ls="--", c="grey") if label in dashed else {}
        axes[0].plot(index, np.log(np.maximum(sigma / sigma[0], 1e-12)), label=f"{label} (AUC {row['auc']:.3f})", **style)
        axes[1].plot(index, np.cumsum(sigma) / sigma.sum(), label=label, **style)
    axes[0].set_xlabel("i / d"); axes[0].set_ylabel("log σ_i / σ_1"); axes[0].set_ylim(bottom=-12)
    axes[1].set_xlabel("j / d"); axes[1].set_ylabel("cumulative C_j")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


MONITOR_METRICS = {"auc": "AUC (higher = more collapsed)", "effective_rank_fraction": "effective rank / d",
                   "monitor_knn": "monitor weighted kNN (k = 20)"}


def curves_figure(curves: pd.DataFrame, group: str, metrics: tuple[str, ...] = ("auc", "monitor_knn")):
    """Collapse over training (`chapters.monitor_curves`): one panel per metric, one line per value of `group`
    (the mean over its seeds, with their range shaded where there are several)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.6), sharex=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for name, g in curves.groupby(group, sort=False):
            per_step = g.groupby("step")[metric]
            mean = per_step.mean()
            (line,) = ax.plot(mean.index, mean.values, label=name)
            if per_step.count().max() > 1:
                ax.fill_between(mean.index, per_step.min(), per_step.max(), color=line.get_color(), alpha=0.15, lw=0)
        ax.set_xlabel("step"); ax.set_ylabel(MONITOR_METRICS.get(metric, metric))
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig
