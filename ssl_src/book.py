"""Executing chapters with papermill and building the Jupyter Book from the executed copies.

Sources (`_config.yml`, `_toc.yml`, `book/`) are never executed in place: each scale gets a staging
copy under `_build/<scale>/src/`, its notebooks executed there, and the HTML goes to
`_build/<scale>/_build/html/`. A chapter that fails is moved to `_build/<scale>/failed/` so no page
is ever published from it, and the book is not built.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from .chapters import SCALES, check_parameters
from .errors import UserError
from .store import REPO_ROOT, exclusive, results_root, write_json_atomic

BOOK_SOURCES = ("_config.yml", "_toc.yml", "book")
# Seconds one notebook cell may run before its chapter fails (a hung kernel is killed, never waited on):
# smoke chapters take seconds; a quick chapter's longest cell trains its runs (up to ~2 h, see the presets).
CELL_TIME_LIMIT = {"smoke": 600, "quick": 6 * 3600, "paper": 7 * 24 * 3600}


def chapter_names() -> list[str]:
    """Notebook chapters in `_toc.yml` order."""
    toc = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text())
    entries = [toc["root"]]
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        entries += [c["file"] for c in part["chapters"]]
    return [Path(e).name for e in entries if (REPO_ROOT / f"{e}.ipynb").exists()]


def page_title(name: str) -> str:
    """The first heading of a page of the book (`book/NAME.ipynb` or `.md`), or its name."""
    import re

    for suffix in (".ipynb", ".md"):
        path = REPO_ROOT / "book" / f"{name}{suffix}"
        if path.exists():
            match = re.search(r"^# (.+?)\s*$", path.read_text() if suffix == ".md" else _first_markdown(path), flags=re.M)
            if match:
                return match.group(1)
    return name


def _first_markdown(path: Path) -> str:
    import json

    cells = json.loads(path.read_text())["cells"]
    return next(("".join(c["source"]) for c in cells if c["cell_type"] == "markdown"), "")


def parse_parameters(pairs: list[list[str]]) -> dict:
    """`-p NAME VALUE` pairs, each VALUE read as YAML (so 3, 0.5, [0, 1] and text all work)."""
    params = {}
    for name, value in pairs:
        try:
            params[name] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UserError(f"parameter {name}: cannot read value {value!r} (use YAML, e.g. 3, [0, 1], text)") from None
    return params


def notebook_parameters(name: str) -> list[str]:
    import papermill

    return list(papermill.inspect_notebook(str(REPO_ROOT / "book" / f"{name}.ipynb")))


def _check_chapter(name: str, scale: str, params: dict) -> None:
    names = chapter_names()
    if name not in names:
        raise UserError(f"unknown chapter {name!r}; valid: {', '.join(names)}")
    if scale not in SCALES:
        raise UserError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    valid = notebook_parameters(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise UserError(f"chapter {name}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    if "scale" in params:
        raise UserError("pass the scale with --scale, not -p scale")
    check_parameters(name, scale, params)


def stage_dir(scale: str) -> Path:
    return REPO_ROOT / "_build" / scale / "src"


def _stage_sources(scale: str) -> Path:
    """Copy the book's non-notebook sources into the staging directory (notebooks arrive executed)."""
    stage = stage_dir(scale)
    for item in BOOK_SOURCES:
        source = REPO_ROOT / item
        if source.is_dir():
            shutil.copytree(source, stage / item, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
        else:
            stage.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, stage / item)
    config = stage / "_config.yml"
    config.write_text(yaml.safe_dump(staged_config(yaml.safe_load(config.read_text())), sort_keys=False))
    return stage


REPOSITORY_BUTTONS = ("use_repository_button", "use_issues_button", "use_edit_page_button", "use_source_button")
LAUNCH_URLS = ("binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url", "jupyterlite_url")


def staged_config(config: dict) -> dict:
    """`_config.yml` as the build sees it: without a repository URL, no button that links into the repository
    (the theme fails on one with no URL, and a launch button needs somewhere to launch from)."""
    if (config.get("repository") or {}).get("url"):
        return config
    config = dict(config)
    config["html"] = {**config.get("html", {}), **dict.fromkeys(REPOSITORY_BUTTONS, False)}
    config["launch_buttons"] = {**config.get("launch_buttons", {}), **dict.fromkeys(LAUNCH_URLS, "")}
    return config


def _collapse_injected_parameters(path: Path) -> None:
    """Show papermill's injected-parameters cell collapsed (a toggle) rather than as raw code."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            tags.append("hide-cell")
    nbformat.write(nb, path)


@dataclass
class ChapterResult:
    name: str
    scale: str
    ok: bool
    seconds: float
    notebook: Path
    error: str = ""

    def describe(self) -> str:
        if self.ok:
            return f"chapter {self.name} ({self.scale}) executed in {self.seconds:.1f} s: {self.notebook}"
        return f"chapter {self.name} ({self.scale}) FAILED after {self.seconds:.1f} s: {self.error}; notebook kept at {self.notebook}"


def run_chapter(name: str, scale: str, params: dict | None = None, cell_time_limit: float | None = None, *,
                jobs: int = 0, retrain: bool = False) -> ChapterResult:
    """Execute one chapter with papermill into the staging directory of its scale; a cell that runs longer
    than `cell_time_limit` seconds (default: the scale's `CELL_TIME_LIMIT`) fails the chapter. Its runs are
    read from the scale's published set unless `retrain`; missing ones are trained, `jobs` at once (0 = the
    default of `ssl_src.sweep`)."""
    import papermill
    from nbclient.exceptions import CellTimeoutError
    from papermill.exceptions import PapermillExecutionError

    params = dict(params or {})
    _check_chapter(name, scale, params)
    limit = _cell_time_limit(scale, cell_time_limit)
    if jobs < 0:
        raise UserError(f"--jobs must be >= 0 (0 = the default), got {jobs}")
    stage = _stage_sources(scale)
    output = stage / "book" / f"{name}.ipynb"
    failed = REPO_ROOT / "_build" / scale / "failed" / f"{name}.ipynb"
    failed.unlink(missing_ok=True)
    os.environ["SSL_RESULTS"] = str(results_root().resolve())  # the kernel inherits these
    os.environ["SSL_JOBS"] = str(jobs)
    os.environ["SSL_RETRAIN"] = "1" if retrain else "0"
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(REPO_ROOT / "book" / f"{name}.ipynb"), str(output), parameters=dict(params, scale=scale),
            kernel_name="python3", cwd=str(REPO_ROOT), progress_bar=False, request_save_on_cell_execute=False,
            execution_timeout=limit,
        )
    except Exception as exc:  # a cell's error, or the kernel died / timed out / was not found
        failed.parent.mkdir(parents=True, exist_ok=True)
        if output.exists():
            shutil.move(output, failed)
        if isinstance(exc, PapermillExecutionError):
            reason = f"cell {exc.exec_count} raised {exc.ename}: {exc.evalue}"
        elif isinstance(exc, CellTimeoutError):
            reason = f"a cell ran past the time limit of {limit:g} s and its kernel was stopped (--cell-time-limit)"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        return ChapterResult(name, scale, False, time.perf_counter() - started, failed, reason)
    _collapse_injected_parameters(output)
    return ChapterResult(name, scale, True, time.perf_counter() - started, output)


def _cell_time_limit(scale: str, given: float | None) -> float:
    limit = CELL_TIME_LIMIT[scale] if given is None else given
    if not limit > 0:
        raise UserError(f"the cell time limit must be a positive number of seconds, got {limit:g}")
    return limit


def build_book(scale: str, cell_time_limit: float | None = None, *, jobs: int = 0, retrain: bool = False) -> bool:
    """Run every chapter; build the HTML only if all succeeded. Prints a timing table.

    Two builds of the same scale take turns (a lock on `_build/<scale>.lock`); runs they share are
    trained once, the second build re-using them."""
    if scale not in SCALES:
        raise UserError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    _cell_time_limit(scale, cell_time_limit)
    busy = f"another book build of the {scale} scale is running here; waiting for it"
    with exclusive(REPO_ROOT / "_build" / f"{scale}.lock", busy, log=lambda msg: print(msg, file=sys.stderr, flush=True)):
        return _build_book(scale, cell_time_limit, jobs, retrain)


def _build_book(scale: str, cell_time_limit: float | None, jobs: int, retrain: bool) -> bool:
    shutil.rmtree(stage_dir(scale), ignore_errors=True)  # no page survives from an earlier build
    results = []
    for name in chapter_names():
        print(f"executing chapter {name} at {scale} scale ...", file=sys.stderr, flush=True)
        result = run_chapter(name, scale, cell_time_limit=cell_time_limit, jobs=jobs, retrain=retrain)
        print(result.describe(), file=sys.stderr, flush=True)
        results.append(result)
    failed = [r for r in results if not r.ok]
    build_seconds = 0.0
    if not failed:
        started = time.perf_counter()
        stage = stage_dir(scale)
        out = REPO_ROOT / "_build" / scale
        command = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(stage), "--path-output", str(out), "-W", "-n", "--keep-going"]
        if not Path(command[0]).exists():
            raise UserError(f"{command[0]} not found: install requirements.txt (jupyter-book<2) into this environment")
        build = subprocess.run(command, capture_output=True, text=True)
        build_seconds = time.perf_counter() - started
        if build.returncode != 0:
            sys.stderr.write(build.stdout[-4000:] + build.stderr[-4000:])
            print(f"error: jupyter-book build failed (exit {build.returncode})", file=sys.stderr)
            return False
    times = {"scale": scale, "chapters": {r.name: round(r.seconds, 1) for r in results},
             "html_build_seconds": round(build_seconds, 1)}
    write_json_atomic(results_root() / scale / "chapters" / "build_times.json", times)
    print(f"\n{'chapter':<32}{'seconds':>10}{'status':>10}")
    for r in results:
        print(f"{r.name:<32}{r.seconds:>10.1f}{'ok' if r.ok else 'FAILED':>10}")
    print(f"{'html build':<32}{build_seconds:>10.1f}")
    if failed:
        for r in failed:
            print(f"error: {r.describe()}", file=sys.stderr)
        print("error: the book was not built because a chapter failed", file=sys.stderr)
        return False
    print(f"book: {REPO_ROOT / '_build' / scale / '_build' / 'html' / 'index.html'}")
    return True
