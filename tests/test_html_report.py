"""dlx report: one self-contained HTML page per run or sweep, checked as a file and in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY

import dlx
from dlx.core.errors import DlxError
from dlx.many.executors import TrialResult
from dlx.views.html_report import resolve, write_report

SECTIONS_RUN = ("verdicts", "metrics", "figures", "pictures", "layers", "config", "meta")
SECTIONS_SWEEP = (
    "trials",
    "params",
    "best-verdicts",
    "best-metrics",
    "best-figures",
    "best-pictures",
    "best-layers",
    "best-config",
    "spec",
    "meta",
)
FAST = dict(TINY, train={"steps": 16, "batch_size": 32, "log_every": 4})


class InProcess:
    """An executor that trains each trial right here: real run folders, no worker start-up cost."""

    def run(self, trials, on_result=None):
        out = []
        for t in trials:
            r = dlx.train(t.config, runs_dir=t.runs_dir)
            tr = TrialResult(
                id=t.id, status=r.status, run_path=r.path, summary=r.summary, metrics=r.metrics, attempts=1, error=None
            )
            out.append(tr)
            on_result(tr)
        return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """One runs folder holding a tiny run, then a 3-trial sweep (the newest)."""
    runs = tmp_path_factory.mktemp("report") / "runs"
    dlx.train(dict(FAST, name="tiny"), runs_dir=runs)
    spec_dir = runs.parent
    (spec_dir / "base.yaml").write_text(yaml.safe_dump(FAST))
    (spec_dir / "grid.yaml").write_text(
        yaml.safe_dump(
            {
                "base": "base.yaml",
                "strategy": "grid",
                "metric": "test_acc",
                "space": {"optimizer.lr": [0.001, 0.03, 0.1]},
            }
        )
    )
    dlx.sweep(spec_dir / "grid.yaml", runs_dir=runs, executor=InProcess())
    return runs


@pytest.fixture(scope="module")
def run_dir(runs) -> Path:
    return next(d for d in runs.iterdir() if (d / "meta.json").is_file())


@pytest.fixture(scope="module")
def sweep_dir(runs) -> Path:
    return next(d for d in runs.iterdir() if (d / "sweep.json").is_file())


@pytest.fixture(scope="module")
def run_html(run_dir) -> Path:
    return write_report(run_dir)


@pytest.fixture(scope="module")
def sweep_html(sweep_dir) -> Path:
    return write_report(sweep_dir)


def section(page: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    assert m, f"no section {sid}"
    return m.group(1)


def images(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


# ---------------------------------------------------------------- the page as a file


def test_a_run_report_has_every_section_with_the_runs_numbers(run_dir, run_html):
    page = run_html.read_text()
    assert run_html == run_dir / "report.html"  # the default place: beside the run's files
    for sid in SECTIONS_RUN:
        section(page, sid)
    summary = json.loads((run_dir / "summary.json").read_text())
    layers = section(page, "layers")
    names = [l["name"] for l in summary["layers"]]
    assert all(f">{n}<" in layers for n in names)
    assert [layers.index(f">{n}<") for n in names] == sorted(layers.index(f">{n}<") for n in names)  # input first
    assert summary["verdicts"][0]["message"] in section(page, "verdicts")
    assert f"{summary['final']['test_acc']:.4g}" in section(page, "metrics")
    assert "name: tiny" in section(page, "config")
    meta = section(page, "meta")
    assert "cpu" in meta and json.loads((run_dir / "meta.json").read_text())["versions"]["torch"] in meta


@pytest.mark.parametrize("which", ["run_html", "sweep_html"])
def test_the_page_fetches_nothing_from_anywhere(which, request):
    page = request.getfixturevalue(which).read_text()
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "@import" not in page and "url(" not in page  # CSS pulls nothing either
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


@pytest.mark.parametrize("which", ["run_html", "sweep_html"])
def test_every_embedded_figure_decodes_to_a_png_with_content(which, request):
    import matplotlib.image

    pngs = images(request.getfixturevalue(which).read_text())
    assert len(pngs) >= (1 if which == "run_html" else 2)  # a sweep: the params figure and the best trial's
    for png in pngs:
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        img = matplotlib.image.imread(io.BytesIO(png), format="png")
        assert img.ndim == 3 and img.shape[0] > 150 and img.shape[1] > 300
        assert img[..., :3].std() > 0.05  # drawn on, not a blank canvas


def test_a_sweep_report_lists_every_trial_best_first(sweep_dir, sweep_html):
    page = sweep_html.read_text()
    for sid in SECTIONS_SWEEP:
        section(page, sid)
    results = json.loads((sweep_dir / "results.json").read_text())
    rows = re.findall(r"<tr[^>]*><td class=\"l\">(\d{4})</td>(.*?)</tr>", section(page, "trials"))
    assert sorted(int(t) for t, _ in rows) == sorted(r["trial"] for r in results["rows"]) == [0, 1, 2]
    by_trial = {r["trial"]: r["value"] for r in results["rows"]}
    shown = [by_trial[int(t)] for t, _ in rows]
    assert shown == sorted(shown, reverse=True)  # test_acc: higher is better
    lrs = {r["trial"]: r["params"]["optimizer.lr"] for r in results["rows"]}
    assert all(f">{lrs[int(t)]:.4g}<" in cells for t, cells in rows)
    best = results["best"]
    assert re.search(rf'<tr class="best"><td class="l">{best["trial"]:04d}<', page)
    assert f"trials/trial-{best['trial']:04d}" in section(page, "best-verdicts")
    assert "optimizer.lr" in section(page, "spec")


def test_trials_without_a_value_are_listed_last_with_their_error(sweep_dir, tmp_path):
    folder = tmp_path / sweep_dir.name
    shutil.copytree(sweep_dir, folder)
    results = json.loads((folder / "results.json").read_text())
    bad = {
        "trial": 3,
        "status": "config_error",
        "value": None,
        "params": {"optimizer.lr": -1.0},
        "run": None,
        "seconds": None,
        "verdict": None,
        "error": "optimizer.lr: must be > 0 <here>\nsecond line",
    }
    results["rows"].insert(0, bad)  # even written first, it is shown last
    (folder / "results.json").write_text(json.dumps(results))
    trials = section(write_report(folder).read_text(), "trials")
    rows = re.findall(r'<tr[^>]*><td class="l">(\d{4})</td>(.*?)</tr>', trials)
    assert [int(t) for t, _ in rows][-1] == 3 and len(rows) == 4
    assert "st-config_error" in rows[-1][1] and "must be &gt; 0 &lt;here&gt;" in rows[-1][1]
    assert "second line" not in trials  # the note is the error's first line


def write_doctored_run(src: Path, dest: Path, **summary_fields) -> Path:
    shutil.copytree(src, dest)
    summary = json.loads((dest / "summary.json").read_text())
    summary.update(summary_fields)
    (dest / "summary.json").write_text(json.dumps(summary))
    return dest


def test_cause_and_remedy_are_shown_and_file_text_is_escaped(run_dir, tmp_path):
    verdicts = [
        {
            "kind": "vanishing",
            "layers": ["fc1"],
            "evidence": {"ratio": 3e-7},
            "message": "vanishing gradients: <script>alert(1)</script>",
            "cause": "sigmoid & depth > 8",
            "remedy": "relu + kaiming_normal",
        },
        {
            "kind": "dead_units",
            "layers": ["fc2"],
            "evidence": {},
            "message": "dead units in fc2",
            "cause": None,
            "remedy": None,
        },
    ]
    folder = write_doctored_run(run_dir, tmp_path / "doctored", verdicts=verdicts)
    (folder / "config.yaml").write_text("# a <b>bold</b> comment\n" + (folder / "config.yaml").read_text())
    page = write_report(folder).read_text()
    assert "<script" not in page and "<b>bold" not in page
    v = section(page, "verdicts")
    assert "vanishing gradients: &lt;script&gt;alert(1)&lt;/script&gt;" in v
    assert "Likely cause:</span> sigmoid &amp; depth &gt; 8" in v and "Try:</span> relu + kaiming_normal" in v
    cards = v.split('<div class="verdict ')[1:]
    assert [c.split('"')[0] for c in cards] == ["warn", "warn"]
    assert [re.search(r'data-kind="(\w+)"', c).group(1) for c in cards] == ["vanishing", "dead_units"]
    assert "Likely cause" not in cards[1] and "Try:" not in cards[1]  # absent cause/remedy: no empty label
    assert "# a &lt;b&gt;bold&lt;/b&gt; comment" in section(page, "config")


def test_a_run_without_a_summary_yet_still_gets_a_page(run_dir, tmp_path):
    folder = tmp_path / "running"
    shutil.copytree(run_dir, folder)
    (folder / "summary.json").unlink()
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps(dict(meta, status="running")))
    import fcntl
    import os

    fd = os.open(folder, os.O_RDONLY)  # a live writer holds the run folder's lock (folders.RunFolder.lock)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        page = write_report(folder, tmp_path / "out" / "r.html").read_text()
    finally:
        os.close(fd)
    assert "no summary yet" in section(page, "verdicts") and "running" in section(page, "verdicts")
    assert images(page)  # the curves logged so far are drawn
    assert '<section id="layers">' not in page


def test_run_and_sweep_resolve_by_folder_id_part_and_last(runs, run_dir, sweep_dir):
    assert resolve(run_dir, runs) == run_dir
    assert resolve(run_dir.name, runs) == run_dir
    assert resolve(sweep_dir.name, runs) == sweep_dir
    assert resolve("grid", runs) == sweep_dir  # a unique part of the sweep's id
    assert resolve("last", runs) == sweep_dir  # the newest of runs and sweeps
    assert resolve(f"{sweep_dir.name}/trial-0001", runs) == sweep_dir / "trials" / "trial-0001"
    with pytest.raises(DlxError, match="no run or sweep 'nothing-like-it'.*dlx runs"):
        resolve("nothing-like-it", runs)


@pytest.mark.slow
def test_dlx_report_writes_the_page_and_explains_a_bad_reference(runs, sweep_dir, tmp_path):
    def dlx_cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "dlx", "report", *map(str, args), "--runs-dir", str(runs)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    out = tmp_path / "sweep report.html"
    p = dlx_cli(sweep_dir.name, "-o", out)
    assert p.returncode == 0, p.stderr
    assert str(out) in p.stdout and "<h2>Trials" in out.read_text()
    p = dlx_cli("no-such-run")
    assert p.returncode == 1 and "no run or sweep 'no-such-run'" in p.stderr and "Traceback" not in p.stderr


# ---------------------------------------------------------------- the page in a browser

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]


def chromium() -> str:
    """Debian's chromium (CI installs it); skipped where there is none unless DLX_REQUIRE_CHROMIUM=1."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("DLX_REQUIRE_CHROMIUM") == "1":
        pytest.fail("DLX_REQUIRE_CHROMIUM=1 but no chromium binary on PATH; apt-get install -y chromium")
    pytest.skip("no chromium binary on PATH (Debian: apt-get install -y chromium)")


def browse(page: Path, tmp_path: Path, *mode: str) -> tuple[str, list[str]]:
    """Run headless chromium on a file; its stdout, and every console message the page produced."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"  # a fresh, empty one each time
    p = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *mode, page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    # Console messages (script errors, blocked loads, CSP violations) are logged as ...:CONSOLE:<line>] "...".
    return p.stdout, [line for line in p.stderr.splitlines() if ":CONSOLE" in line]


def screenshot(page: Path, tmp_path: Path, height: int) -> tuple[np.ndarray, list[str]]:
    import matplotlib.image

    png = tmp_path / f"{page.stem}.png"
    _, console = browse(page, tmp_path, f"--screenshot={png}", f"--window-size=1280,{height}")
    return matplotlib.image.imread(png)[..., :3], console


def test_the_console_check_catches_a_page_that_loads_or_runs_anything(tmp_path):
    """Guards the browser test itself: a page breaking the report's policy must be caught."""
    from dlx.views.html_report import CSP

    bad = tmp_path / "bad.html"
    bad.write_text(
        f'<!doctype html><html><head><meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '</head><body><img src="http://127.0.0.1:9/x.png"><script>nope()</script></body></html>'
    )
    _, console = browse(bad, tmp_path, "--dump-dom")
    assert len(console) >= 2 and any("x.png" in line for line in console)


@pytest.mark.parametrize(
    "which,sections,height", [("run_html", SECTIONS_RUN, 2400), ("sweep_html", SECTIONS_SWEEP, 3400)]
)
def test_the_page_renders_in_headless_chromium_without_console_errors(which, sections, height, request, tmp_path):
    page = request.getfixturevalue(which)
    dom, console = browse(page, tmp_path, "--dump-dom")
    assert console == []
    for sid in sections:  # the browser parsed every section (an error page would have none)
        assert f'<section id="{sid}">' in dom
    img, console = screenshot(page, tmp_path, height)
    assert console == []
    assert img.shape[:2] == (height, 1280)
    ink = (img.min(axis=2) < 0.9).mean()  # share of pixels that are not (near) white
    assert 0.03 < ink < 0.6 and img.std() > 0.05


def test_the_embedded_figures_decode_in_chromium(sweep_html, tmp_path):
    """The figures alone on a white page: drawn, they cover it; broken, only an icon would show."""
    tags = re.findall(r'<img [^>]*src="data:image/png;base64,[^"]+">', sweep_html.read_text())
    alone = tmp_path / "figures.html"
    alone.write_text(
        "<!doctype html><html><body style='margin:0;background:#fff'>"
        + "".join("<div>" + t.replace("<img ", '<img style="width:1280px" ') + "</div>" for t in tags)
        + "</body></html>"
    )
    img, console = screenshot(alone, tmp_path, 1200)
    assert console == []
    ink = img.min(axis=2) < 0.9
    assert ink.mean() > 0.02 and ink.any(axis=1).mean() > 0.3  # axes, lines and labels all the way down


def test_leaky_units_below_zero_are_shown_negative_not_dead(run_dir, tmp_path):
    acts = [{"name": "act1", "mean": -1.0, "std": 0.01, "saturated": 0.0, "dead": None, "negative": 1.0}]
    page = write_report(write_doctored_run(run_dir, tmp_path / "leaky", activations=acts)).read_text()
    table = section(page, "layers").split("Activations at the last log step")[1]
    assert ">negative<" in table and ">dead<" not in table and ">100%<" in table


def test_a_run_report_shows_what_the_network_computes_boundary_filmstrip_units_histograms(run_dir, run_html):
    pics = section(run_html.read_text(), "pictures")
    for caption in (
        "the decision boundary from init to the end",
        "every hidden unit",
        "activations and back-propagated gradients",
    ):
        assert caption in pics
    shots = images(pics)
    assert len(shots) == 3
    from PIL import Image

    strip = Image.open(io.BytesIO(shots[0]))
    assert strip.size[0] > 4 * strip.size[1]  # six boundaries in a row


def test_a_compare_report_puts_variants_curves_verdicts_and_boundaries_side_by_side(tmp_path):
    runs = tmp_path / "runs"
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(dict(FAST, name="cmp")))
    cmp = dlx.compare(base, over=["init=zeros,kaiming_normal"], seeds=1, runs_dir=runs, quiet=True, max_parallel=1)
    assert cmp.record_path.is_file() and cmp.record_path.parent == runs
    out = write_report("last-compare", runs_dir=runs)
    assert out == cmp.record_path.with_suffix(".html")
    page = out.read_text()
    variants = section(page, "variants")
    assert "init=zeros" in variants and "init=kaiming_normal" in variants
    assert "symmetric units" in variants.lower() or "symmetry" in variants.lower()
    assert len(images(section(page, "curves"))) == 1
    assert len(images(section(page, "boundaries"))) == 1
    verdicts = section(page, "verdicts")
    assert verdicts.index("init=zeros") < verdicts.index("init=kaiming_normal")
    for rs in cmp.runs.values():
        assert Path(rs[0].path).name in section(page, "runs")
    dom, console = browse(out, tmp_path, "--dump-dom")
    assert console == [] and '<section id="boundaries">' in dom


def test_a_compare_page_says_what_the_seeds_show_and_draws_every_seeds_final_metric(tmp_path):
    from dlx.core.stats import welch

    runs = tmp_path / "runs"
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(dict(FAST, name="seeds")))
    cmp = dlx.compare(base, over=["optimizer.lr=0.001,0.1"], seeds=3, runs_dir=runs, quiet=True, figure=False)
    page = write_report("last-compare", runs_dir=runs).read_text()
    said = section(page, "seeds")
    finals = {
        label: [r.summary["final"]["test_acc"] for r in rs] for label, rs in cmp.runs.items()
    }  # the oracle: each run's own summary
    best, other = sorted(finals, key=lambda k: -sum(finals[k]))
    d = welch(finals[best], finals[other])
    assert f"{best} vs {other}: test_acc" in said and f"p {'< 0.001' if d.p < 0.001 else f'= {d.p:.2g}'}" in said
    assert "over 3 seeds" in said and len(images(said)) == 1
    # The stored record keeps every seed's value, in seed order.
    rec = json.loads(cmp.record_path.read_text())
    for v in rec["variants"]:
        assert v["test_acc"]["values"] == finals[v["variant"]] and v["test_acc"]["n"] == 3


def test_run_plot_draws_picture_panels_of_a_saved_run_and_says_why_not_for_an_unsaved_one(tmp_path):
    from dlx.core.errors import UsageError

    run = dlx.train(FAST, runs_dir=tmp_path / "runs", quiet=True)
    fig = run.plot(panels=["boundary", "units", "loss"], step=0)
    titles = [ax.get_xlabel() for ax in fig.axes]
    assert any(t.startswith("step 0") for t in titles)  # the init's boundary
    unsaved = dlx.train(FAST, save=False, quiet=True)
    with pytest.raises(UsageError, match="not saved"):
        unsaved.plot(panels=["boundary"])


def test_a_run_with_instruments_gets_their_words_and_panels_on_its_page(tmp_path):
    c = dict(FAST, instruments={"sharpness": True, "noise": True, "spectra": True, "every": 4})
    run = dlx.train(c, runs_dir=tmp_path / "runs", quiet=True)
    page = write_report(run.path).read_text()
    inst = section(page, "instruments")
    assert "sharpness:" in inst and "gradient noise scale" in inst and "stable rank" in inst
    assert len(images(inst)) == 2  # the panels, and the landscape


LONG = "optimizer.betas=[0.9, 0.999], optimizer.lr=0.0003, optimizer.weight_decay=0.0001, model=lstm, model.hidden=64"


def _compare_record(tmp_path: Path) -> Path:
    """A compare record of three variants with long labels (no run folders: the page's table alone)."""
    stat = {"mean": 0.8123, "sd": 0.0123}
    verdicts = ("healthy", "dead_units (2/3)", "lr_too_high")
    variants = [
        {"variant": f"{LONG}, seed_set={i}", "runs": 3, "verdict": v, "run_paths": []}
        | {k: stat for k in ("test_acc", "test_loss", "train_loss", "train_seconds")}
        for i, v in enumerate(verdicts)
    ]
    path = tmp_path / "compare-long.json"
    path.write_text(json.dumps({"config": "long.yaml", "seeds": 3, "variants": variants}))
    return path


def test_the_compare_pages_verdict_cells_hold_the_whole_verdict_words(tmp_path):
    from dlx.views.html_report import compare_page

    table = section(compare_page(_compare_record(tmp_path)), "variants")
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<tr>(?:<td[^>]*>.*?</td>){2}<td[^>]*>(.*?)</td>", table)]
    # Before: the kind's first word looked up, "(2/3)" dropped, and healthy read "health".
    assert cells == ["healthy", "dead units (2/3)", "too-high learning rate"]
    assert table.count(f"{LONG}, seed_set=") == 3  # each variant's label whole


def test_the_compare_pages_verdict_column_stays_in_view_at_1400_px(tmp_path):
    """In headless Chromium at 1400 x 900: every verdict cell lies inside the window, its text on
    view (not scrolled off to the right of a table of long labels); a screenshot for the eye."""
    sync_api = pytest.importorskip("playwright.sync_api")
    page_file = tmp_path / "compare.html"
    from dlx.views.html_report import compare_page

    page_file.write_text(compare_page(_compare_record(tmp_path)))
    artifacts = Path(os.environ.get("DLX_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(page_file.resolve().as_uri())
            boxes = page.eval_on_selector_all(
                "#variants tbody tr td:nth-child(3)",
                "cells => cells.map(c => { const r = c.getBoundingClientRect(); const s = c.closest('.scroll');"
                " const v = s.getBoundingClientRect(); return [r.left, r.right, v.left, v.right, c.innerText]; })",
            )
            page.screenshot(path=str(artifacts / "compare-verdicts-1400.png"))
        finally:
            browser.close()
    assert [b[4] for b in boxes] == ["healthy", "dead units (2/3)", "too-high learning rate"]
    for left, right, view_left, view_right, _ in boxes:
        assert view_left <= left and right <= min(view_right, 1400)
