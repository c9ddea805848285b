"""The example configs: every one explains itself, `dlx examples` lists them, and each
small one, run scaled down, shows the verdict its header promises (and no other)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CONFIGS, MNIST_DIR
from typer.testing import CliRunner

from dlx.cli.app import app
from dlx.config.catalogue import (
    COURSE,
    VERDICT_KINDS,
    course,
    default_dir,
    find_example,
    load_examples,
    parse_example,
    resolve_config,
)
from dlx.core.errors import ConfigError, UsageError

EXAMPLES = load_examples(CONFIGS)
RUNNABLE = [e for e in EXAMPLES if e.runnable]
FILE_DATA = ("mnist", "seq_mnist")  # examples that need real files (DLX_DATA_DIR)


def _data_name(ex) -> str | None:
    data = yaml.safe_load(ex.path.read_text()).get("data")
    return data.get("name") if isinstance(data, dict) else data


def test_the_configs_folder_holds_the_examples():
    assert len(EXAMPLES) >= 30
    assert {e.path.name for e in EXAMPLES} == {p.name for p in CONFIGS.glob("*.yaml")}


@pytest.mark.parametrize("ex", EXAMPLES, ids=lambda e: e.path.name)
def test_every_config_has_a_claim_command_concept_expected_verdict_and_test_line(ex):
    assert not ex.problems, f"{ex.path.name}: " + "; ".join(ex.problems)


@pytest.mark.parametrize(
    "ex", [e for e in EXAMPLES if not e.sweep and e.expect != ["invalid"]], ids=lambda e: e.path.name
)
def test_every_training_example_validates_as_written_and_with_its_test_overrides(ex):
    from dlx.config.loader import load_config

    load_config(ex.path)
    if ex.test_overrides is not None:
        load_config(ex.path, ex.test_overrides)


_WITH_VALUE = {"--seeds", "--target", "--runs-dir", "--max-parallel", "--retries", "--dir", "--out", "-o"}
_WITH_VALUE |= {"--rounds", "--rate", "--control-seed", "--widths", "--steps"}  # dlx ticket, dlx coordcheck


def _config_commands(ex):
    """(command, config path, [override lists]) for each `dlx train|summary|validate|compare|
    ticket|coordcheck` line of a header: one override list per variant that the command would run."""
    import shlex

    from dlx.many.variants import make_variants

    out = []
    for cmd in ex.commands:
        words = shlex.split(cmd, comments=True)
        if len(words) < 3 or words[1] not in ("train", "summary", "validate", "compare", "ticket", "coordcheck"):
            continue
        config, sets, over, optimizers = None, [], [], None
        i = 2
        while i < len(words):
            w = words[i]
            if w in ("--set", "-s"):
                sets.append(words[i + 1])
            elif w == "--over":
                over.append(words[i + 1])
            elif w == "--optimizers":
                optimizers = words[i + 1].split(",")
            elif w in _WITH_VALUE:
                pass
            elif w.startswith("-"):
                i += 1
                continue  # a flag: --init-check, -q, --json
            else:
                config = w
                i += 1
                continue
            i += 2
        variants = [v.sets for v in make_variants(optimizers, over)] if (over or optimizers) else [[]]
        out.append((cmd, config, [sets + v for v in variants]))
    return out


@pytest.mark.parametrize(
    "ex", [e for e in EXAMPLES if not e.sweep and e.expect != ["invalid"]], ids=lambda e: e.path.name
)
def test_every_command_in_a_header_names_a_config_and_overrides_that_validate(ex):
    """The commands are what a reader copies: each one must run as printed (from the repo root)."""
    from dlx.config.loader import load_config

    commands = _config_commands(ex)
    assert commands, f"{ex.path.name}: no dlx train/summary/compare command"
    for cmd, config, variants in commands:
        assert config and (CONFIGS.parent / config).is_file(), f"{ex.path.name}: {cmd!r} names no config file"
        for sets in variants:
            try:
                load_config(CONFIGS.parent / config, sets)
            except ConfigError as e:
                pytest.fail(f"{ex.path.name}: {cmd!r} does not validate:\n{e}")


def test_an_example_that_expects_invalid_is_refused_by_validation():
    invalid = [e for e in EXAMPLES if e.expect == ["invalid"]]
    assert invalid, "broken.yaml shows what dlx says about a bad config"
    from dlx.config.loader import load_config

    for ex in invalid:
        with pytest.raises(ConfigError) as err:
            load_config(ex.path)
        assert len(err.value.problems) >= 3  # every mistake at once, not the first one


def test_the_header_is_read_into_claim_commands_concept_expect_and_test_overrides(tmp_path):
    p = tmp_path / "demo.yaml"
    p.write_text(
        "# demo: sigmoid nets stop learning.\n"
        "#\n"
        "#   dlx train configs/demo.yaml\n"
        "#   dlx train configs/demo.yaml --set activation=relu\n"
        "# Expect: the first layer's gradient 1e-6 of the last's.\n"
        "# concept: vanishing gradients\n"
        "# expect: vanishing, not_learning\n"
        "# test: --set train.epochs=1 --set 'model.widths=[8, 8]'\n"
        "name: demo\n"
        "# dlx train later.yaml   <- below the header: not a command of this example\n"
        "data: spirals\nmodel: {name: mlp, depth: 2, width: 8}\n"
    )
    ex = parse_example(p)
    assert ex.problems == []
    assert ex.claim == "sigmoid nets stop learning."
    assert ex.commands == ["dlx train configs/demo.yaml", "dlx train configs/demo.yaml --set activation=relu"]
    assert ex.concept == "vanishing gradients"
    assert ex.expect == ["vanishing", "not_learning"]
    assert ex.test_overrides == ["train.epochs=1", "model.widths=[8, 8]"]
    assert ex.runnable and not ex.sweep
    assert ex.header.startswith("demo: sigmoid") and "name: demo" not in ex.header


def test_a_header_without_fields_or_with_a_misspelt_kind_is_reported_with_the_fix(tmp_path):
    bare = tmp_path / "bare.yaml"
    bare.write_text("# bare: a claim and nothing else.\nname: bare\ndata: spirals\nmodel: mlp\n")
    problems = " | ".join(parse_example(bare).problems)
    for what in ("no command", "# concept:", "# expect:", "# test:"):
        assert what in problems

    typo = tmp_path / "typo.yaml"
    typo.write_text(
        "# typo: x.\n#   dlx train typo.yaml\n# concept: c\n# expect: vanishng\n# test: train.epochs=1\nname: typo\n"
    )
    problems = " | ".join(parse_example(typo).problems)
    assert "did you mean 'vanishing'" in problems
    assert "'--set KEY=VALUE'" in problems  # the test line's words must be --set options

    none = tmp_path / "none.yaml"
    none.write_text("name: none\ndata: spirals\nmodel: mlp\n")
    assert "no header comment" in parse_example(none).problems[0]


def test_a_test_skip_line_keeps_an_example_out_of_the_run_test(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text(
        "# big: a long run.\n#   dlx train big.yaml\n# concept: c\n# expect: healthy\n"
        "# test: skip needs an hour\nname: big\n"
    )
    ex = parse_example(p)
    assert ex.problems == [] and ex.test_skip == "needs an hour" and not ex.runnable


def test_expected_kinds_are_the_engines_kinds():
    from dlx.diagnosis.engine import KINDS

    assert set(VERDICT_KINDS) == set(KINDS)


def test_every_shipped_example_has_one_place_in_the_course():
    placed = [n for _, names in COURSE for n in names]
    assert len(placed) == len(set(placed)), "an example is in two sections"
    assert set(placed) == {e.name for e in EXAMPLES}, "every example in a section, every section name an example"
    assert [t for t, _ in course(EXAMPLES)] == [t for t, _ in COURSE]  # nothing left over for "other"


def test_examples_that_are_in_no_section_come_last_by_name(tmp_path):
    (tmp_path / "zeta.yaml").write_text("# zeta: z.\nname: zeta\n")
    (tmp_path / "alpha.yaml").write_text("# alpha: a.\nname: alpha\n")
    (tmp_path / "quickstart.yaml").write_text("# quickstart: mine.\nname: quickstart\n")
    got = [(title, [e.name for e in group]) for title, group in course(load_examples(tmp_path))]
    assert got == [("basics", ["quickstart"]), ("other", ["alpha", "zeta"])]


def _listing(columns: int) -> list[str]:
    env = {**os.environ, "COLUMNS": str(columns)}
    p = subprocess.run([sys.executable, "-m", "dlx", "examples"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert f"{len(EXAMPLES)} examples" in p.stdout
    return p.stdout.splitlines()


@pytest.mark.parametrize("columns", [80, 120])
def test_dlx_examples_reads_as_a_course_one_whole_line_per_example_at_80_and_120_columns(columns):
    lines = _listing(columns)
    assert max(len(ln) for ln in lines) <= columns
    assert not any("…" in ln for ln in lines), "nothing is cut"
    rows = {}
    for ex in EXAMPLES:
        found = [i for i, ln in enumerate(lines) if ln.split()[:1] == [ex.name]]
        assert len(found) == 1, f"{ex.name}: {len(found)} rows"
        rows[ex.name] = found[0]
        assert ex.concept in lines[found[0]]
        if columns >= 120:
            assert ", ".join(ex.expect) in lines[found[0]]
    # Section titles between the groups, in the course's order, each above its examples.
    titles = [next(i for i, ln in enumerate(lines) if ln.strip() == title) for title, _ in COURSE]
    assert titles == sorted(titles)
    order = [n for _, names in COURSE for n in names]
    assert [rows[n] for n in order] == sorted(rows.values())
    for (_, names), at in zip(COURSE, titles):
        assert all(rows[n] > at for n in names)
    # Where the verdicts do not fit, the listing says how wide a terminal shows them.
    assert any("shows the verdict" in ln for ln in lines) == (columns == 80)


def test_dlx_examples_name_prints_the_whole_story_and_a_typo_gets_the_closest_name():
    runner = CliRunner()
    r = runner.invoke(app, ["examples", "vanishing_sigmoid"])
    assert r.exit_code == 0
    assert "dlx train configs/vanishing_sigmoid.yaml" in r.stdout and "expect: vanishing" in r.stdout
    assert "from any folder: dlx train vanishing_sigmoid;" in r.stdout  # the header's paths need a clone
    r = runner.invoke(app, ["examples", "vanishing_sigmod"])
    assert r.exit_code == 2
    assert "did you mean 'vanishing_sigmoid'" in r.output


def test_dlx_examples_dir_reads_another_folder_and_a_missing_one_says_how_to_point_at_it(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "# mine: my own example.\n#   dlx train mine.yaml\n# concept: c\n# expect: healthy\n# test:\nname: mine\n"
    )
    runner = CliRunner()
    r = runner.invoke(app, ["examples", "--dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "mine" in r.stdout and "1 examples" in r.stdout
    r = runner.invoke(app, ["examples", "--dir", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "--dir" in r.output
    with pytest.raises(UsageError):
        find_example("quickstart", tmp_path / "nope")


# ---------------------------------------------------------------- an example by its name


def test_the_examples_ship_inside_the_package_and_the_clones_configs_is_the_same_folder():
    import dlx

    assert default_dir() == Path(dlx.__file__).resolve().parent / "example_configs"
    assert CONFIGS.resolve() == default_dir()


def test_a_bare_example_name_is_the_shipped_example_and_an_existing_path_wins(tmp_path, monkeypatch):
    from dlx.config.loader import load_config

    monkeypatch.chdir(tmp_path)
    assert resolve_config("quickstart") == resolve_config("quickstart.yaml") == default_dir() / "quickstart.yaml"
    assert load_config("quickstart").name == "quickstart"
    (tmp_path / "quickstart.yaml").write_text("name: mine\ndata: spirals\nmodel: mlp\n")
    assert resolve_config("quickstart.yaml") == Path("quickstart.yaml")  # the file here wins
    assert load_config("quickstart.yaml").name == "mine"
    assert resolve_config("quickstart") == default_dir() / "quickstart.yaml"  # no file called quickstart


def test_a_missing_config_says_not_found_with_the_example_it_may_mean(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="quickstat not found") as e:
        resolve_config("quickstat")
    assert "did you mean the example 'quickstart'?" in str(e.value)
    # A path is never an example's name; but the README's path outside the clone says which one it is.
    with pytest.raises(UsageError) as e:
        resolve_config("configs/quickstart.yaml")
    assert "not found" in str(e.value) and "give its name (quickstart)" in str(e.value)
    assert "examples copy quickstart" in str(e.value)
    with pytest.raises(UsageError, match="sweep spec sweep_optimzers not found") as e:
        resolve_config("sweep_optimzers", "sweep spec")
    assert "'sweep_optimizers'" in str(e.value)
    with pytest.raises(UsageError, match="is a folder"):
        resolve_config(tmp_path)


def test_every_config_command_and_the_sweep_take_an_example_name(tmp_path, monkeypatch):
    from dlx.many.sweeper import plan

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for args in (["validate", "quickstart"], ["summary", "quickstart.yaml"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["validate", "quickstat"])
    assert r.exit_code == 2 and "did you mean the example 'quickstart'?" in r.output
    p = plan("sweep_optimizers")
    assert p.base_path == default_dir() / "quickstart.yaml" and p.total == 15
    # A spec of one's own may name an example as its base.
    (tmp_path / "mine.yaml").write_text(
        "base: quickstart\nmetric: {name: test_acc, goal: max}\nstrategy: grid\nspace: {optimizer.lr: [0.1, 0.01]}\n"
    )
    assert plan(tmp_path / "mine.yaml").base_path == default_dir() / "quickstart.yaml"


def test_examples_copy_writes_the_file_and_what_it_needs_and_says_how_to_run_it(tmp_path):
    from dlx.config.loader import load_config
    from dlx.many.sweeper import plan

    runner = CliRunner()
    r = runner.invoke(app, ["examples", "copy", "sweep_optimizers", str(tmp_path / "mine")])
    assert r.exit_code == 0, r.output
    spec, base = tmp_path / "mine" / "sweep_optimizers.yaml", tmp_path / "mine" / "quickstart.yaml"
    assert f"wrote {spec}" in r.output and f"wrote {base}" in r.output
    assert f"dlx sweep {spec}" in r.output
    assert plan(spec).base_path == base.resolve()  # the spec finds its copied base beside it
    # The header's commands now run from the copy's folder; the YAML itself is unchanged.
    text = spec.read_text()
    assert "#   dlx sweep sweep_optimizers.yaml\n" in text and "configs/" not in text
    assert load_config(base) == load_config("quickstart")

    r = runner.invoke(app, ["examples", "copy", "broken", str(tmp_path)])
    assert r.exit_code == 0 and f"dlx validate {tmp_path / 'broken.yaml'}" in r.output


def test_examples_copy_refuses_to_overwrite_without_force(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "zero_init.yaml").write_text("mine\n")
    runner = CliRunner()
    r = runner.invoke(app, ["examples", "copy", "zero_init"])
    assert r.exit_code == 2
    assert "zero_init.yaml already exists" in r.output and "--force" in r.output
    assert (tmp_path / "zero_init.yaml").read_text() == "mine\n"
    r = runner.invoke(app, ["examples", "copy", "zero_init", "--force"])
    assert r.exit_code == 0 and "dlx train zero_init.yaml" in r.output
    assert (tmp_path / "zero_init.yaml").read_text().startswith("# zero_init:")
    for args in (["examples", "copy"], ["examples", "copy", "zero_initt"], ["examples", "zero_init", "x"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, args
    assert "did you mean 'zero_init'" in runner.invoke(app, ["examples", "copy", "zero_initt"]).output


def _has_mnist() -> bool:
    return (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file()


def _selected_examples(session) -> set[str]:
    """The examples whose scaled-down test this session runs (after -k / node ids), so that
    `pytest tests/test_examples.py -k zero_init` trains one example, not all fifty."""
    name = "test_each_example_scaled_down_shows_exactly_the_verdicts_its_header_expects"
    return {
        item.callspec.params["ex"].name
        for item in session.items
        if getattr(item, "originalname", None) == name and hasattr(item, "callspec")
    }


@pytest.fixture(scope="module")
def example_summaries(request, tmp_path_factory):
    """Every selected runnable example scaled down by its `# test:` line, trained once, a run per core."""
    from conftest import train_in_parallel

    env = {"DLX_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}
    selected = _selected_examples(request.session)
    jobs = {}
    for ex in RUNNABLE:
        if ex.name not in selected:
            continue
        if _data_name(ex) in FILE_DATA:
            if not _has_mnist():
                continue
            jobs[ex.name] = (str(ex.path), tuple(ex.test_overrides), {**env, "DLX_DATA_DIR": str(MNIST_DIR)})
        else:
            jobs[ex.name] = (str(ex.path), tuple(ex.test_overrides), env)
    return train_in_parallel(jobs)


@pytest.mark.slow
@pytest.mark.parametrize("ex", RUNNABLE, ids=lambda e: e.name)
def test_each_example_scaled_down_shows_exactly_the_verdicts_its_header_expects(ex, example_summaries):
    if ex.name not in example_summaries:
        pytest.skip(f"real MNIST not found at {MNIST_DIR}")
    status, summary = example_summaries[ex.name]
    assert status == "ok", f"{ex.name} failed to train:\n{summary}"
    verdicts = summary["verdicts"]
    kinds = [v["kind"] for v in verdicts]
    detail = f"{ex.name} with {' '.join(ex.test_overrides) or 'no overrides'}:\n" + "\n".join(
        f"  {v['kind']}: {v['message']}" for v in verdicts
    )
    missing = [k for k in ex.expect if k not in kinds]
    unexpected = [k for k in kinds if k not in ex.expect]
    assert not missing, f"expected {missing} but did not see it; {detail}"
    assert not unexpected, f"unexpected {unexpected}; {detail}"


LOOKED_AT = ("initialization", "activations", "normalization", "regularization")


def test_the_examples_on_init_activations_depth_and_regularization_name_the_panels_to_look_at():
    from dlx.views.pictures import PICTURES
    from dlx.views.plots import USER_PANELS

    sections = dict(COURSE)
    for section in LOOKED_AT:
        for name in sections[section]:
            ex = find_example(name, CONFIGS)
            if ex.sweep:
                continue
            assert ex.look, f"{name}: no '# look:' line naming the panels that show it"
    for ex in EXAMPLES:
        unknown = [p for p in ex.look if p not in PICTURES + USER_PANELS]
        assert not unknown, f"{ex.name}: '# look:' names no panel {unknown}"
        if ex.look:
            shown = [c for c in ex.commands if c.startswith("dlx plot") and "--panels" in c]
            assert shown and shown[0].split("--panels ")[1].split()[0] == ",".join(ex.look), ex.name


# A training and a figure for each of ~50 examples (a minute of the suite's 8 on two cores):
# with the slow tests; the panels themselves are tested one by one in test_owners_panels.py.
@pytest.mark.slow
@pytest.mark.parametrize("ex", [e for e in EXAMPLES if e.look], ids=lambda e: e.name)
def test_each_examples_look_panels_draw_from_a_short_run_of_it(ex, tmp_path, monkeypatch):
    import dlx
    from dlx.views.plots import plot_runs

    if _data_name(ex) in FILE_DATA:
        if not _has_mnist():
            pytest.skip(f"real MNIST not found at {MNIST_DIR}")
        monkeypatch.setenv("DLX_DATA_DIR", str(MNIST_DIR))
    monkeypatch.setenv("DLX_CACHE_DIR", str(tmp_path / "cache"))
    sets = [*(ex.test_overrides or []), "train.epochs=null", "train.steps=4", "train.log_every=2"]
    run = dlx.train(ex.path, sets, runs_dir=tmp_path / "runs", quiet=True)
    out = plot_runs([run.path], tmp_path / "look.png", panels=ex.look)
    assert out.stat().st_size > 10_000
