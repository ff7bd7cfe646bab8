"""The smoke-scale chapter and book: executed for real, failures never published, HTML offline."""
import json
import re

import nbformat
import pytest
import yaml

from ssl_src.book import build_book, parse_parameters, run_chapter, stage_dir, staged_config
from ssl_src.claims import VERDICTS
from ssl_src.store import REPO_ROOT


def test_parameters_are_read_as_yaml():
    assert parse_parameters([["seeds", "[0, 1]"], ["steps", "5"], ["dataset", "fashion_mnist"]]) == {
        "seeds": [0, 1], "steps": 5, "dataset": "fashion_mnist"}


@pytest.mark.slow
def test_smoke_chapter_writes_claims_and_hides_injected_parameters(results_dir):
    result = run_chapter("capacity_vs_data", "smoke", {"seeds": [0, 1]})
    assert result.ok, result.error
    claims = json.loads((results_dir / "smoke" / "chapters" / "capacity_vs_data.json").read_text())
    assert claims["scale"] == "smoke" and claims["provenance"]["run_ids"]
    for claim in claims["claims"]:
        assert set(claim) >= {"id", "kind", "statement", "paper", "statistic", "verdict"}
        assert claim["verdict"] in VERDICTS and claim["statistic"]["n_seeds"] == 2
        assert claim["verdict"] == "inconclusive" and "at least 3 are needed" in claim["statistic"]["reason"]
    nb = nbformat.read(result.notebook, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "hide-cell" in injected[0].metadata["tags"]
    assert "seeds = [0, 1]" in injected[0].source


@pytest.mark.slow
def test_failed_chapter_is_reported_with_its_cell_and_never_staged(results_dir):
    """Valid parameters, but the run store cannot be written (a file where its directory should be):
    the error surfaces in a cell, inside the kernel."""
    results_dir.parent.mkdir(parents=True, exist_ok=True)
    results_dir.write_text("not a directory")
    staged = stage_dir("smoke") / "book" / "capacity_vs_data.ipynb"
    result = run_chapter("capacity_vs_data", "smoke")
    assert not result.ok
    assert re.search(r"cell \d+ raised (NotADirectoryError|FileExistsError)", result.error), result.error
    assert not staged.exists() and result.notebook.exists()


@pytest.mark.slow
def test_a_cell_past_the_time_limit_fails_its_chapter_in_one_line(results_dir):
    """A hung kernel is stopped at the limit, never waited on; the line names the chapter and the limit."""
    result = run_chapter("learning_dynamics", "smoke", cell_time_limit=1)
    assert not result.ok and result.seconds < 120
    line = result.describe()
    assert "chapter learning_dynamics (smoke) FAILED" in line and "ran past the time limit of 1 s" in line
    assert "\n" not in line


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """The smoke book, built once for the tests that read it: every chapter executed into a fresh run store.
    Returns (the HTML directory, the run store)."""
    import shutil

    results_dir = tmp_path_factory.mktemp("smoke_book") / "results"
    shutil.rmtree(REPO_ROOT / "_build" / "smoke" / "_build", ignore_errors=True)  # no page of an earlier build
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SSL_RESULTS", str(results_dir))
        assert build_book("smoke")
    return REPO_ROOT / "_build" / "smoke" / "_build" / "html", results_dir


@pytest.mark.slow
@pytest.mark.timeout(1800)  # every smoke chapter, the benchmark and the convolution probe included
def test_smoke_book_builds_offline_html(smoke_book):
    html_dir, results_dir = smoke_book
    page = (html_dir / "book" / "capacity_vs_data.html").read_text()
    external = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', page)
    assert external == []
    assert re.search(r'<script[^>]+src="[^"]*_static/mathjax/[^"]*"', page)  # MathJax served locally
    # Each verdict the chapter computed is the one its page shows (glued into the verdict paragraph).
    claims = {c["id"]: c["verdict"] for c in json.loads((results_dir / "smoke" / "chapters" / "capacity_vs_data.json").read_text())["claims"]}
    for claim_id, glued in (("auc_rises_with_data", "verdict_auc"), ("accuracy_drops_with_data", "verdict_acc")):
        assert claims[claim_id] in VERDICTS
        assert f'<strong><span class="pasted-text">{claims[claim_id]}</span></strong>' in page, (claim_id, claims[claim_id])
    assert "Where these numbers come from." in page and "re-computed here" in page
    assert "check the pipeline, not the papers" in page  # a smoke page says what its verdicts mean
    assert 'href="bibliography.html#' in page  # its {cite} links resolve to the bibliography page
    assert 'href="../_sources/book/capacity_vs_data.ipynb"' in page  # the notebook's download button
    assert "mybinder.org" not in page  # no launch button while _config.yml names no repository
    summary = (html_dir / "book" / "summary_of_claims.html").read_text()
    assert "check the pipeline, not the papers" in summary and '<a href="capacity_vs_data.html">' in summary
    assert "Understanding collapse in non-contrastive Siamese representation learning" in (
        html_dir / "book" / "bibliography.html").read_text()
    checks = json.loads((results_dir / "smoke" / "chapters" / "learning_dynamics.json").read_text())["claims"]
    assert checks and all(c["kind"] == "check" and c["verdict"] in ("holds", "fails") for c in checks)
    assert json.loads((results_dir / "smoke" / "chapters" / "build_times.json").read_text())["chapters"]["capacity_vs_data"] > 0


def test_without_a_repository_url_no_button_links_into_the_repository():
    config = yaml.safe_load((REPO_ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] == ""  # the repository is not public yet: nothing to link to
    staged = staged_config(config)
    assert not any(staged["html"][b] for b in ("use_repository_button", "use_issues_button", "use_edit_page_button"))
    assert not staged["launch_buttons"]["binderhub_url"] and not staged["launch_buttons"]["colab_url"]
    assert staged["html"]["use_download_button"] and not staged["launch_buttons"]["thebe"]
    public = {**config, "repository": {**config["repository"], "url": "https://github.com/example-org/ssl-book"}}
    assert staged_config(public) == public


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_once_the_repository_is_public_its_pages_launch_on_binder_and_colab(tmp_path):
    """The settings of _config.yml, given a URL, build a page whose buttons point at its notebook in the repository."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    config = yaml.safe_load((REPO_ROOT / "_config.yml").read_text())
    config["repository"]["url"] = "https://github.com/example-org/ssl-book"
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(staged_config(config)))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/page\n")
    (tmp_path / "book").mkdir()
    shutil.copy2(REPO_ROOT / "book" / "references.bib", tmp_path / "book")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A page"), nbformat.v4.new_code_cell("1 + 1")],
                                        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                                                  "language_info": {"name": "python"}})
    nbformat.write(notebook, tmp_path / "book" / "page.ipynb")
    build = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(tmp_path), "-W", "-n"],
                           capture_output=True, text=True, timeout=240)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    page = (tmp_path / "_build" / "html" / "book" / "page.html").read_text()
    assert "https://mybinder.org/v2/gh/example-org/ssl-book/main?urlpath=lab/tree/book/page.ipynb" in page
    assert "https://colab.research.google.com/github/example-org/ssl-book/blob/main/book/page.ipynb" in page
    assert 'href="https://github.com/example-org/ssl-book"' in page and "/issues/new" in page
    assert not re.findall(r'<script[^>]+src="(https?://[^"]+)"', page)  # buttons are links: still offline


def test_a_second_book_build_of_a_scale_waits_for_the_first(monkeypatch, capsys):
    import threading
    import time

    import ssl_src.book as book
    from ssl_src.store import exclusive

    events = []
    monkeypatch.setattr(book, "_build_book", lambda scale, limit, jobs, retrain: events.append(f"build {scale}") or True)
    with exclusive(REPO_ROOT / "_build" / "smoke.lock", "held", log=events.append):
        thread = threading.Thread(target=build_book, args=("smoke",))
        thread.start()
        time.sleep(0.3)
        events.append("first build ends")
    thread.join(5)
    assert events == ["first build ends", "build smoke"]
    assert "another book build of the smoke scale is running here; waiting" in capsys.readouterr().err


def test_every_citation_has_its_reference():
    """`{cite}` keys of every page are entries of book/references.bib (an unknown key would only warn in a build
    without -W), and the references the book promises are there."""
    bib = (REPO_ROOT / "book" / "references.bib").read_text()
    entries = set(re.findall(r"^@\w+\{([^,]+),", bib, flags=re.M))
    pages = [p.read_text() for p in (REPO_ROOT / "book").glob("*.md")]
    pages += ["".join(c.source) for p in (REPO_ROOT / "book").glob("*.ipynb") for c in nbformat.read(p, 4).cells
              if c.cell_type == "markdown"]
    cited = {key.strip() for page in pages for keys in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", page)
             for key in keys.split(",")}
    assert cited <= entries, cited - entries
    assert {"li2022collapse", "tian2021directpred", "chen2021simsiam", "grill2020byol", "chen2021mocov3",
            "dwibedi2021nnclr", "garrido2023rankme", "wu2018instance"} <= cited
    assert "book/bibliography" in (REPO_ROOT / "_toc.yml").read_text()


def test_every_chapter_ends_with_exercises_whose_solutions_are_folded():
    from ssl_src.book import chapter_names

    for name in chapter_names():
        cells = nbformat.read(REPO_ROOT / "book" / f"{name}.ipynb", 4).cells
        (exercises,) = [c.source for c in cells if c.cell_type == "markdown" and c.source.startswith("## Exercises")]
        questions = re.findall(r"^\d+\. ", exercises, flags=re.M)
        assert questions and exercises.count("```{admonition} Solution\n:class: dropdown") == len(questions), name


def test_no_notebook_has_tex_eaten_by_a_python_escape():
    """"\\times" written in a Python string without r"" becomes a tab and "imes", "\\frac" a form feed and "rac"."""
    damaged = []
    for path in sorted((REPO_ROOT / "book").glob("*.ipynb")):
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type == "markdown" and re.search(r"[\x07\x08\x0b\x0c\r]|\t[a-z]", cell.source):
                damaged.append(f"{path.name} cell {i}")
    assert damaged == []


def test_every_parameter_of_every_notebook_parses_with_its_help():
    """papermill reads a parameter's help from its comment (`--help-notebook`) and gives up on a line whose
    comment holds an "=": every assignment of every parameters cell must come back as a parameter."""
    from papermill.translators import PythonTranslator

    unparsed = []
    for path in sorted((REPO_ROOT / "book").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if "parameters" in cell.metadata.get("tags", []):
                assigned = [line.split("=")[0].strip() for line in cell.source.splitlines() if re.match(r"\w+ = ", line)]
                parsed = [p.name for p in PythonTranslator.inspect(cell)]
                unparsed += [f"{path.name}: {name}" for name in assigned if name not in parsed]
    assert unparsed == []


def chromium() -> str:
    """Debian's headless Chromium (`make browser` installs it); CI must have it, elsewhere the page test skips."""
    import os
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make browser` (Debian's chromium) must run before the tests in CI")
        pytest.skip("chromium is not installed (make browser)")
    return path


def browse(page, screenshot=None) -> str:
    """The page's DOM after Chromium ran its scripts (MathJax, the theme), and optionally its screenshot."""
    import subprocess

    flags = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,2000",
             "--virtual-time-budget=10000", "--disable-dev-shm-usage",
             "--host-resolver-rules=MAP * ~NOTFOUND"]  # nothing from the network, and no waiting for it
    if screenshot:
        subprocess.run(flags + [f"--screenshot={screenshot}", page.resolve().as_uri()], capture_output=True, timeout=120, check=True)
    return subprocess.run(flags + ["--dump-dom", page.resolve().as_uri()], capture_output=True, text=True, timeout=120,
                          check=True).stdout


def blank(image_path) -> bool:
    """An image of one colour (an empty figure, a page that did not paint)."""
    from PIL import Image

    with Image.open(image_path) as image:
        low_high = image.convert("L").getextrema()
    return low_high[0] == low_high[1]


def page_problems(page, screenshot) -> list[str]:
    """What a reader of `page` would see go wrong (the page rendered by Chromium, its screenshot saved)."""
    html = page.read_text()
    dom = browse(page, screenshot)
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S))
    problems = [f"loads {url} from the network"
                for url in re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', html)]
    if "Traceback (most recent call last)" in text or "output traceback" in dom:
        problems.append("a Python traceback")
    if "{glue" in text or "glue:text" in text:
        problems.append("a glue key left unresolved")
    eaten = re.search(r"\bimes\b|\brac\{|\bheta\b|\x0c|\t\w", text)
    if eaten:
        problems.append(f"TeX eaten by an escape: {text[max(0, eaten.start() - 30):eaten.end() + 30]!r}")
    if blank(screenshot):
        problems.append("a blank page")
    for src in re.findall(r'<img[^>]+src="([^"]+)"', html):
        image = (page.parent / src).resolve()
        if image.suffix == ".png" and "_static" not in src and (not image.exists() or blank(image)):
            problems.append(f"an empty figure {src}")
    return problems


@pytest.mark.slow
def test_the_page_check_sees_what_a_reader_would(tmp_path):
    """A page with every fault the browser test looks for, and a clean one."""
    from PIL import Image

    Image.new("RGB", (200, 100), "white").save(tmp_path / "empty.png")
    broken = tmp_path / "broken.html"
    broken.write_text('<html><body><h1>Chapter</h1><p>an N imes d matrix, {glue:text}`acc`</p>'
                      '<div class="output traceback"><pre>Traceback (most recent call last):\n  ValueError</pre></div>'
                      '<img src="empty.png"><script src="https://cdn.example.org/x.js"></script></body></html>')
    problems = page_problems(broken, tmp_path / "broken.png")
    assert [p.split(" ")[0] + " " + p.split(" ")[1] for p in problems] == [
        "loads https://cdn.example.org/x.js", "a Python", "a glue", "TeX eaten", "an empty"]
    clean = tmp_path / "clean.html"
    clean.write_text("<html><body><h1>Chapter</h1><p>an N x d matrix</p></body></html>")
    assert page_problems(clean, tmp_path / "clean.png") == []


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_every_page_reads_in_a_browser(smoke_book, tmp_path):
    """Each page of the smoke book as a reader sees it in headless Chromium: no Python traceback, no glue key
    left unresolved, no TeX eaten by an escape, no empty figure, nothing from the network, not blank."""
    html_dir, _ = smoke_book
    pages = sorted((html_dir / "book").glob("*.html"))
    assert {p.stem for p in pages} >= {"intro", "capacity_vs_data", "summary_of_claims", "bibliography"}
    problems = {page.name: page_problems(page, tmp_path / f"{page.stem}.png") for page in pages}
    assert {name: found for name, found in problems.items() if found} == {}
