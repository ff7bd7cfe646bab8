"""The notebook helpers every chapter shares."""
import pytest

from ssl_src import report
from ssl_src.errors import UserError

PRESETS = {"smoke": dict(seeds=[0], steps=4), "quick": dict(seeds=[0, 1, 2], steps=2344)}


def test_parameters_come_from_the_notebooks_own_names():
    names = {"scale": "quick", "seeds": None, "steps": 100, "plt": object(), "started": 1.0}
    assert report.parameters(PRESETS, names) == {"seeds": [0, 1, 2], "steps": 100, "scale": "quick"}
    assert report.parameters(PRESETS, names, scale="smoke")["seeds"] == [0]  # a chapter that maps its scale
    with pytest.raises(UserError, match="steps must be int"):
        report.parameters(PRESETS, dict(names, steps="many"))


def test_parameter_table_has_one_row_per_parameter():
    table = report.parameter_table({"seeds": [0, 1], "scale": "smoke"})
    assert table.loc["seeds", "value"] == "[0, 1]" and len(table) == 2


def test_a_verdict_left_out_by_the_parameters_reads_not_measured(monkeypatch):
    glued = {}
    monkeypatch.setattr("myst_nb.glue", lambda name, value, display=True: glued.__setitem__(name, value))
    report.glue_verdicts([{"id": "a", "verdict": "reproduced"}], expected=("a", "b"))
    assert glued == {"verdict_a": "reproduced", "verdict_b": report.NOT_MEASURED}


def test_the_book_claims_gather_every_rendered_chapter_in_book_order(results_dir, capsys):
    """Two chapters' results files (as write_chapter_results writes them): one row per claim, the tally per
    chapter and kind with the whole book's last; `python -m ssl_src claims` prints both."""
    import json

    from ssl_src.chapters import write_chapter_results
    from ssl_src.claims import claim, deterministic_check
    from ssl_src.cli import main
    from ssl_src.report import book_claims, verdict_tally

    yes = claim("up", "goes up", "+1 in the paper", [1.0, 1.1, 0.9], +1, "up - down", paper_effect=2.0)
    no = claim("down", "goes down", "-1 in the paper", [1.0, 1.1, 0.9], -1, "down - up")
    check = deterministic_check("fixed", "a fixed point", "theory", 0.0, True, "distance")
    write_chapter_results("data_ordering", {"scale": "smoke"}, [no], [], 0.0)
    write_chapter_results("capacity_vs_data", {"scale": "smoke"}, [yes, check], [], 0.0)
    write_chapter_results("choosing_a_scale", {"scale": "smoke"}, [yes], [], 0.0)  # a study
    claims = book_claims("smoke")
    assert list(zip(claims.chapter, claims.id)) == [("choosing_a_scale", "up"), ("capacity_vs_data", "up"),
                                                    ("capacity_vs_data", "fixed"), ("data_ordering", "down")]  # _toc.yml order
    assert claims.loc[1, "effect_fraction"] == pytest.approx(0.5) and claims.loc[1, "n_seeds"] == 3
    tally = verdict_tally(claims)
    book = "whole book (without studies)"
    assert [chapter for chapter, _ in tally.index] == ["choosing_a_scale", "capacity_vs_data", "capacity_vs_data",
                                                       "data_ordering", book, book]  # the book's order, total last
    assert tally.loc[("choosing_a_scale", "claim"), "reproduced"] == 1
    assert tally.loc[(book, "claim"), "reproduced"] == 1  # the study's claim is not counted again
    assert tally.loc[(book, "claim"), "not reproduced"] == 1
    assert tally.loc[(book, "check"), "holds"] == 1 and tally.loc[(book, "check"), "reproduced"] == 0
    assert main(["claims", "--scale", "smoke"]) == 0
    out = capsys.readouterr().out
    assert book in out and "[reproduced] goes up" in out and "[not reproduced] goes down" in out
    assert main(["claims", "--scale", "smoke", "--json"]) == 0
    strict = lambda line: json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    records = [strict(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in records] == ["up", "up", "fixed", "down"]
    assert records[3]["effect_fraction"] is None  # no paper effect: null, not NaN


def test_the_summary_page_links_each_claim_to_its_chapter(results_dir):
    """The summary page's table: one row per claim and check, its chapter's title linked to its page, the effect
    as a percentage of the paper's where the paper has one; the figure stacks the verdicts per chapter."""
    from ssl_src.chapters import write_chapter_results
    from ssl_src.claims import claim, deterministic_check

    yes = claim("up", "goes up", "+1 in the paper", [1.0, 1.1, 0.9], +1, "up - down", paper_effect=2.0)
    no = claim("down", "goes down", "-1 in the paper", [1.0, 1.1, 0.9], -1, "down - up")
    check = deterministic_check("fixed", "a fixed point", "theory", 0.0, True, "distance")
    write_chapter_results("capacity_vs_data", {"scale": "smoke"}, [yes, check], [], 0.0)
    write_chapter_results("data_ordering", {"scale": "smoke"}, [no], [], 0.0)
    table = report.claims_summary(report.book_claims("smoke")).data
    assert list(table["claim or check"]) == ["goes up", "a fixed point", "goes down"]
    assert table.loc[0, "chapter"] == '<a href="capacity_vs_data.html">Capacity vs data: does more data make SimSiam collapse?</a>'
    assert table.loc[1, "chapter"] == ""  # the title once per chapter
    assert list(table["effect, fraction of the paper's"]) == ["50 %", "", ""]
    assert list(table.verdict) == ["reproduced", "holds", "not reproduced"]
    html = report.claims_summary(report.book_claims("smoke")).to_html()
    assert '<a href="data_ordering.html">' in html  # not escaped
    fig = report.verdicts_figure(report.book_claims("smoke"))
    bars = {(round(p.get_x()), round(p.get_width())) for p in fig.axes[0].patches if p.get_width() > 0}
    assert bars == {(0, 1), (1, 1)}  # capacity: 1 reproduced then 1 holds; data ordering: 1 not reproduced at 0


def test_a_page_title_is_its_first_heading():
    from ssl_src.book import page_title

    assert page_title("capacity_vs_data") == "Capacity vs data: does more data make SimSiam collapse?"
    assert page_title("bibliography") == "Bibliography"  # a Markdown page
    assert page_title("no_such_page") == "no_such_page"


def test_each_chapter_says_how_to_run_it_and_what_a_retrain_costs():
    import re

    from ssl_src.chapters import retrain_budget

    text = report.run_yourself("capacity_vs_data", "quick").data
    assert "`python -m ssl_src chapter capacity_vs_data --scale smoke`" in text and "--scale paper" in text
    assert '-p seeds "[0, 1, 2]"' in text and "papermill book/capacity_vs_data.ipynb" in text
    found = re.search(r"train its (\d+) quick runs again: about ([\d.]+) h on 2 cores, from the wall times of the "
                      r"(\d+) published ones", text)
    row = retrain_budget("quick").loc["capacity_vs_data"]
    assert int(found[1]) == row.runs and int(found[3]) == row.published
    assert float(found[2]) == pytest.approx(row.hours_on_2_cores, abs=0.05)
    assert "check the pipeline" not in text
    prose = report.run_yourself("learning_dynamics", "smoke").data  # trains no runs
    assert "--retrain" not in prose and "runs the quick scale (the default)" in prose
    assert prose.startswith(report.SMOKE_NOTE)


def test_a_claim_too_few_seeds_could_test_reads_back_from_its_file(results_dir):
    """Its interval and p are NaN, which the claims file holds as null: the summary still describes it."""
    from ssl_src.chapters import write_chapter_results
    from ssl_src.claims import claim

    few = claim("few", "too few seeds", "the paper", [0.1, 0.2], +1, "what", paper_effect=0.5)
    write_chapter_results("capacity_vs_data", {"scale": "smoke"}, [few], [], 0.0)
    row = report.book_claims("smoke").iloc[0]
    assert row.verdict == "inconclusive" and "n = 2" in row.ours and "nan" in row.ours
