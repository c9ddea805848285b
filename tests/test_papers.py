"""The papers gallery: the `# expected:` grammar, every entry's quick check, FAIL and a missing name."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dlx.config.catalogue import parse_example
from dlx.config.measures import MEASURES, parse_expected
from dlx.many.papers import check_example, paper_examples

PAPERS = paper_examples()


def dlx_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "dlx", *args], capture_output=True, text=True, cwd=cwd, env=env)


@pytest.mark.parametrize(
    "line, measure, vs, op, value, tol",
    [
        ("act_var_gain <= 0.5", "act_var_gain", False, "<=", 0.5, 0.0),
        ("act_var_gain = 0.33 +- 0.04", "act_var_gain", False, "=", 0.33, 0.04),
        ("act_var_gain = 0.33 ± 4e-2", "act_var_gain", False, "=", 0.33, 0.04),
        ("final_train_loss / vs < .8", "final_train_loss", True, "<", 0.8, 0.0),
        ("time_grad_rate>1e-3", "time_grad_rate", False, ">", 1e-3, 0.0),
        ("vs.final_test_acc <= 0.2", "final_test_acc", False, "<=", 0.2, 0.0),
    ],
)
def test_an_expected_line_is_a_measure_a_comparison_and_a_number(line, measure, vs, op, value, tol):
    e = parse_expected(line)
    assert (e.measure, e.vs, e.op, e.value, e.tol) == (measure, vs, op, value, tol)


def test_an_expected_line_holds_by_its_comparison_or_within_its_tolerance():
    assert parse_expected("act_var_gain = 1 +- 0.1").holds(0.95)
    assert not parse_expected("act_var_gain = 1 +- 0.1").holds(0.85)
    assert parse_expected("act_var_gain <= 1").holds(1.0) and not parse_expected("act_var_gain < 1").holds(1.0)
    assert not parse_expected("act_var_gain >= 0").holds(float("nan"))


@pytest.mark.parametrize(
    "line, says",
    [
        ("act_var_gain 0.5", "is not 'MEASURE OP NUMBER'"),
        ("act_var_gain == 0.5", "is not 'MEASURE OP NUMBER'"),
        ("act_var_gain = 0.5", "is not 'MEASURE OP NUMBER'"),
        ("act_var_gain <= half", "is not 'MEASURE OP NUMBER'"),
        ("act_var_gian <= 0.5", "did you mean 'act_var_gain'?"),
        ("vs.final_test_acc / vs <= 1", "takes no '/ vs'"),
    ],
)
def test_a_malformed_expected_line_or_unknown_measure_is_refused_with_the_grammar(line, says):
    with pytest.raises(ValueError, match="expected") as e:
        parse_expected(line)
    assert says in str(e.value)


def test_every_measure_says_what_it_measures_in_one_line():
    for m in MEASURES.values():
        assert m.description and "\n" not in m.description, m.name


HEADER = "# mine: a claim.\n#   dlx train mine.yaml\n# concept: c\n# expect: healthy\n# test: --set train.steps=2\n"


@pytest.mark.parametrize(
    "lines, problem",
    [
        ("# paper: A, 2000, T\n# claim: c\n# expected: no_such_measure <= 1\n", "measure 'no_such_measure' is unknown"),
        ("# paper: A, 2000, T\n# claim: c\n# expected: act_var_gain about 1\n", "is not 'MEASURE OP NUMBER'"),
        ("# paper: A, 2000, T\n# expected: act_var_gain <= 1\n", "no '# claim:"),
        ("# paper: A, 2000, T\n# claim: c\n", "no '# expected:"),
        ("# paper: A, 2000, T\n# claim: c\n# expected: act_var_gain / vs <= 1\n", "needs a '# vs:"),
        ("# paper: A, 2000, T\n# claim: c\n# expected: act_var_gain <= 1\n# vs: --set init=zeros\n", "no '# expected"),
        ("# paper: A, 2000, T\n# claim: c\n# expected: vs.final_test_acc <= 1\n", "needs a '# vs:"),
        ("# paper: A, 2000, T\n# claim: c\n# expected: smallest_that_fits <= 8\n", "needs an '# over: KEY=V1"),
        (
            "# paper: A, 2000, T\n# claim: c\n# expected: final_train_acc >= 1\n# over: model.width=1,2\n",
            "no '# expected:' line reads",
        ),
        (
            "# paper: A, 2000, T\n# claim: c\n# expected: smallest_that_fits <= 8\n# over: model.width=4\n",
            "two values at least",
        ),
    ],
)
def test_a_papers_header_that_lacks_a_line_or_gets_one_wrong_is_a_header_problem(tmp_path, lines, problem):
    path = tmp_path / "mine.yaml"
    path.write_text(HEADER + lines + "name: mine\n", encoding="utf-8")
    ex = parse_example(path)
    assert any(problem in p for p in ex.problems), ex.problems


def test_the_papers_section_holds_the_shipped_papers_examples_and_each_header_is_whole():
    assert len(PAPERS) >= 3
    for ex in PAPERS:
        assert ex.is_paper and ex.expected and not ex.problems, (ex.name, ex.problems)


# Each quick check trains in seconds, but grokking takes its thousands of steps (two runs
# of ~20 s), the Boolean capacity and double descent families of 10-12 runs, and the two
# that take 8-10 s (random labels: two runs; the edge of stability: its Hessians): with the slow tests.
SLOW_CHECKS = {
    "paper_power_grokking",
    "paper_boolean_capacity",
    "paper_nakkiran_double_descent",
    "paper_zhang_random_labels",
    "paper_edge_of_stability",
}


@pytest.mark.parametrize(
    "ex",
    [pytest.param(e, marks=pytest.mark.slow) if e.name in SLOW_CHECKS else e for e in PAPERS],
    ids=lambda e: e.name,
)
def test_every_papers_example_passes_its_quick_check(ex, tmp_path):
    check = check_example(ex.name, quick=True, runs_dir=tmp_path)
    assert check.passed, [(line.expected.text, line.measured, line.note) for line in check.lines]
    assert check.picture is not None and check.picture.is_file()


def test_a_check_that_misses_its_number_prints_fail_and_exits_1(tmp_path):
    src = next(ex for ex in PAPERS if ex.name == "paper_pascanu_rnn").path
    impossible = src.read_text(encoding="utf-8").replace(
        "# expected: time_grad_rate <= 0.8\n", "# expected: time_grad_rate >= 2\n"
    )
    assert impossible != src.read_text(encoding="utf-8")
    (tmp_path / "ex").mkdir()
    (tmp_path / "ex" / src.name).write_text(impossible, encoding="utf-8")
    r = dlx_cli("examples", "check", "paper_pascanu_rnn", "--quick", "--dir", "ex", "--runs-dir", "runs", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "expected: time_grad_rate >= 2" in r.stdout and "FAIL" in r.stdout
    assert "picture:" in r.stdout and "claim:" in r.stdout


def test_checking_a_missing_example_says_so_with_the_closest_name_and_exits_2(tmp_path):
    r = dlx_cli("examples", "check", "paper_pascanu", cwd=tmp_path)
    assert r.returncode == 2
    assert "no example called 'paper_pascanu'" in r.stderr and "paper_pascanu_rnn" in r.stderr


def test_checking_an_example_that_is_not_a_paper_names_the_papers_and_exits_2(tmp_path):
    r = dlx_cli("examples", "check", "quickstart", cwd=tmp_path)
    assert r.returncode == 2
    assert "not a papers example" in r.stderr and "paper_he_relu_depth" in r.stderr


def test_dlx_examples_lists_the_papers_section(tmp_path):
    r = dlx_cli("examples", cwd=tmp_path)
    assert r.returncode == 0
    listing = r.stdout[r.stdout.index("papers") :]
    assert all(ex.name in listing for ex in PAPERS)


class Records:
    """A run as the measures read it: its summary's final numbers and its metrics."""

    def __init__(self, final: dict, metrics: list[dict] | None = None):
        self.summary, self.metrics, self.instruments, self.probes = {"final": final}, metrics or [], [], []


def test_steps_to_fit_and_the_generalisation_delay_read_the_first_logged_steps_past_099():
    from dlx.config.measures import generalisation_delay, steps_to_fit

    metrics = [
        {"step": 100, "train_acc": 0.9, "test_acc": 0.0},
        {"step": 200, "train_acc": 0.995, "test_acc": 0.1},
        {"step": 300, "train_acc": 1.0, "test_acc": None},  # no evaluation this interval
        {"step": 4000, "train_acc": 1.0, "test_acc": 0.992},
    ]
    run = Records({}, metrics)
    assert steps_to_fit(run) == 200 and generalisation_delay(run) == 3800
    assert generalisation_delay(Records({}, metrics[:3])) == float("inf")  # never generalised


def test_the_smallest_value_that_fits_is_the_first_whose_run_gets_every_training_pattern_right():
    from dlx.config.measures import smallest_that_fits

    runs = [Records({"train_acc": a}) for a in (0.69, 0.94, 1.0, 0.99, 1.0)]
    assert smallest_that_fits(["1", "2", "4", "6", "8"], runs) == 4.0
    assert smallest_that_fits(["1", "2"], runs[:2]) == float("inf")


def test_the_mode_time_exponent_is_the_log_log_slope_of_half_strength_times_against_strength():
    from dlx.config.measures import mode_time_exponent

    s = [4.0, 2.0, 1.0]
    run = Records({})
    # Strengths reaching half of s at steps 10/s exactly: a pure 1/s law, slope -1.
    run.instruments = [
        {"step": t, "modes": {"teacher": s, "strength": [si if t >= 10 / si else 0.0 for si in s]}}
        for t in (2.5, 5, 10, 20)
    ]
    assert mode_time_exponent(run) == pytest.approx(-1.0)
