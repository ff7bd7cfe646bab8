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
