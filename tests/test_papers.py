"""The papers gallery: the `# expected:` grammar, every entry's quick check, FAIL and a missing name."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import MNIST_DIR

from dlx.config.catalogue import parse_example
from dlx.config.measures import MEASURES, PROCEDURES, READS, parse_expected, parse_procedure
from dlx.many.papers import RUNNERS, check_example, paper_examples

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
        ("# paper: A, 2000, T\n# claim: c\n# expected: ticket_kept <= 0.2\n", "needs a '# procedure: ticket"),
        (
            "# paper: A, 2000, T\n# claim: c\n# expected: final_test_acc >= 0.9\n# procedure: ticket rounds=2\n",
            "gives its own record (measures of it: ticket_kept",
        ),
        (
            "# paper: A, 2000, T\n# claim: c\n# expected: coord_slope_max <= 0.1\n# procedure: coordcheck\n"
            "# over: model.width=1,2\n",
            "cannot go together",
        ),
        ("# paper: A, 2000, T\n# claim: c\n# expected: ticket_kept <= 0.2\n# procedure: tickets\n", "not a procedure"),
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
# that take 8-10 s (random labels: two runs; the edge of stability: its Hessians; the lottery
# ticket's seven MNIST trainings; parity against depth, 16 runs; Omnigrok's two MNIST runs of
# 3000 steps): with the slow tests.
SLOW_CHECKS = {
    "paper_frankle_lottery_ticket",
    "paper_liu_omnigrok",
    "paper_parity_depth",
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
def test_every_papers_example_passes_its_quick_check(ex, tmp_path, monkeypatch):
    if "name: mnist" in ex.path.read_text(encoding="utf-8"):
        if not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
            pytest.skip(f"real MNIST not found at {MNIST_DIR}")
        monkeypatch.setenv("DLX_DATA_DIR", str(MNIST_DIR))
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


def test_steps_to_fit_and_the_generalisation_delay_read_the_first_logged_steps_past_their_marks():
    from dlx.config.measures import generalisation_delay, steps_to_fit

    metrics = [
        {"step": 100, "train_acc": 0.9, "test_acc": 0.0},
        {"step": 200, "train_acc": 0.995, "test_acc": 0.1},
        {"step": 300, "train_acc": 1.0, "test_acc": None},  # no evaluation this interval
        {"step": 3000, "train_acc": 1.0, "test_acc": 0.94},  # not yet 0.95
        {"step": 4000, "train_acc": 1.0, "test_acc": 0.951},
    ]
    run = Records({}, metrics)
    assert steps_to_fit(run) == 200 and generalisation_delay(run) == 3800
    assert generalisation_delay(Records({}, metrics[:4])) == float("inf")  # never generalised


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


@pytest.mark.parametrize(
    "line, name, args",
    [
        ("ticket", "ticket", {"rounds": 3, "rate": 0.2}),
        ("ticket rounds=5 rate=0.3", "ticket", {"rounds": 5, "rate": 0.3}),
        ("coordcheck widths=256,64 steps=3", "coordcheck", {"widths": [64, 256], "steps": 3, "seeds": 2}),
    ],
)
def test_a_procedure_line_is_a_name_and_its_arguments_each_given_or_its_default(line, name, args):
    assert parse_procedure(line) == (name, args)


@pytest.mark.parametrize(
    "line, says",
    [
        ("", "is not a procedure"),
        ("prune rounds=2", "'prune' is not a procedure (procedures: ticket, coordcheck)"),
        ("ticket round=2", "'round=2' is not KEY=VALUE with KEY one of rounds, rate"),
        ("ticket rounds", "'rounds' is not KEY=VALUE"),
        ("ticket rate=1.5", "rate takes fraction of each layer's remaining weights pruned per round; got '1.5'"),
        ("ticket rounds=0", "rounds takes prunings after the dense round 0; got '0'"),
        ("coordcheck widths=64", "widths takes model.width values"),
    ],
)
def test_a_bad_procedure_line_says_what_is_wrong(line, says):
    with pytest.raises(ValueError) as e:
        parse_procedure(line)
    assert says in str(e.value)


def test_every_procedure_has_a_runner_and_measures_that_read_its_record():
    assert set(RUNNERS) == set(PROCEDURES)
    assert set(READS) == {m.reads for m in MEASURES.values()}  # nothing registered that no measure reads


def ticket_record(dense=0.97, ticket=0.975, control=0.96, kept=0.168):
    rows = [
        {"round": 0, "kind": "dense", "kept": 1.0, "test_acc": dense, "status": "completed"},
        {"round": 1, "kind": "ticket", "kept": 0.5, "test_acc": 0.99, "status": "completed"},
        {"round": 2, "kind": "ticket", "kept": kept, "test_acc": ticket, "status": "completed"},
        {"round": 2, "kind": "control", "kept": kept, "test_acc": control, "status": "completed"},
    ]
    return {"rows": rows}


def test_the_ticket_measures_read_the_last_pruned_round_against_the_dense_net_and_the_control():
    from dlx.config.measures import ticket_kept, ticket_test_acc_vs_control, ticket_test_acc_vs_dense

    record = ticket_record()
    assert ticket_kept(record) == 0.168
    assert ticket_test_acc_vs_dense(record) == pytest.approx(0.005)
    assert ticket_test_acc_vs_control(record) == pytest.approx(0.015)


def test_a_ticket_record_without_its_control_or_with_a_diverged_round_has_no_measure():
    from dlx.config.measures import MeasureError, ticket_test_acc_vs_control

    record = ticket_record()
    with pytest.raises(MeasureError, match="lacks its dense round, a pruned round or its control"):
        ticket_test_acc_vs_control({"rows": record["rows"][:3]})
    record["rows"][3].update(test_acc=None, status="diverged")
    with pytest.raises(MeasureError, match="ended diverged"):
        ticket_test_acc_vs_control(record)


def test_the_coordinate_checks_slope_is_the_power_law_of_scale_in_width():
    import numpy as np

    from dlx.config.measures import coord_slope_max
    from dlx.many.coordcheck import CoordCheck

    widths = [64, 128, 256, 512]
    w = np.array(widths, dtype=float)
    # Three layers: flat, growing as width**0.5 and shrinking as width**-0.7, at each of 2 steps.
    law = np.stack([np.ones_like(w), 3 * w**0.5, 2 * w**-0.7], axis=1)
    scales = np.stack([law, law], axis=1)
    check = CoordCheck(widths, ["fc1", "fc2", "out"], scales, "sp", 1)
    assert check.slopes() == pytest.approx([0.0, 0.5, -0.7])
    assert coord_slope_max(check) == pytest.approx(0.7)
    assert check.record()["slopes"] == pytest.approx({"fc1": 0.0, "fc2": 0.5, "out": -0.7})


def test_the_log_log_slope_matches_a_least_squares_fit():
    import numpy as np

    from dlx.core.stats import loglog_slope

    x, y = [1.0, 2.0, 5.0, 9.0], [3.0, 1.0, 4.0, 1.5]
    assert loglog_slope(x, y) == pytest.approx(np.polyfit(np.log(x), np.log(y), 1)[0])


def test_a_procedure_check_prints_what_it_ran_and_kept_and_its_picture(tmp_path):
    src = next(ex for ex in PAPERS if ex.name == "paper_yang_hu_mup").path
    text = src.read_text(encoding="utf-8")
    small = text.replace(
        "# procedure: coordcheck widths=64,128,256,512 steps=5 seeds=2",
        "# procedure: coordcheck widths=64,512 steps=1 seeds=2",
    )
    assert small != text
    (tmp_path / "ex").mkdir()
    (tmp_path / "ex" / src.name).write_text(small, encoding="utf-8")
    r = dlx_cli("examples", "check", "paper_yang_hu_mup", "--quick", "--dir", "ex", "--runs-dir", "runs", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ran:      coordcheck widths=64,512 steps=1 seeds=2" in r.stdout
    kept = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert kept == [
        "coordcheck-paper_yang_hu_mup-mup-sp.png",
        "coordcheck-paper_yang_hu_mup-mup.json",
        "coordcheck-paper_yang_hu_mup-sp.json",
    ]
    assert "picture:" in r.stdout and "PASS" in r.stdout


def test_the_test_accuracy_at_fit_and_the_catch_up_read_the_evaluations_after_the_fit():
    from dlx.config.measures import catch_up_steps, test_acc_at_fit

    metrics = [
        {"step": 100, "train_acc": 0.8, "test_acc": 0.74},
        {"step": 200, "train_acc": 1.0},  # fitted between two evaluations
        {"step": 300, "train_acc": 1.0, "test_acc": 0.76},
        {"step": 900, "train_acc": 1.0, "test_acc": 0.85},
        {"step": 1300, "train_acc": 1.0, "test_acc": 0.90},  # within 0.01 of the final 0.905
        {"step": 4000, "train_acc": 1.0, "test_acc": 0.905},
    ]
    run = Records({}, metrics)
    assert test_acc_at_fit(run) == 0.76 and catch_up_steps(run) == 1100
    # Already at its final test accuracy when it fitted: no delay, never a negative one.
    early = Records(
        {}, [{"step": 100, "train_acc": 0.9, "test_acc": 0.9}, {"step": 200, "train_acc": 1.0, "test_acc": 0.9}]
    )
    assert catch_up_steps(early) == 0


def test_the_final_weight_norm_is_the_norm_of_every_layers_norm_at_the_last_finite_log_step():
    from dlx.config.measures import MeasureError, final_weight_norm

    run = Records({})
    run.probes = [
        {"step": 0, "weight_norm": [3.0, 4.0]},
        {"step": 10, "weight_norm": [6.0, 8.0]},
        {"step": 20, "weight_norm": [1.0, None]},
    ]
    assert final_weight_norm(run) == pytest.approx(10.0)
    run.probes = []
    with pytest.raises(MeasureError, match="no weight norms"):
        final_weight_norm(run)


def test_the_update_bound_of_clipping_reads_each_layers_update_ratio_times_its_weight_norm():
    from dlx.config.measures import MeasureError, max_grad_norm_over_clip, max_update_over_lr_clip

    run = Records({})
    run.config = {"optimizer": {"lr": 0.1}, "regularization": {"clip_norm": 2.0}}
    run.metrics = [{"step": 10, "lr": 0.1}, {"step": 20, "lr": 0.05}]  # a schedule halved it
    run.probes = [
        # |dW| per layer 0.03 and 0.04: a step of 0.05 = 0.25 of lr x clip (0.2)
        {"step": 10, "weight_norm": [3.0, 2.0], "update_ratio": [0.01, 0.02], "grad_norm": [[30.0, 40.0], [1.0, 1.0]]},
        # 0.06 and 0.08: 0.1 against lr 0.05 x 2 = 0.1, the bound itself
        {"step": 20, "weight_norm": [3.0, 4.0], "update_ratio": [0.02, 0.02], "grad_norm": [[3.0, 4.0]]},
    ]
    assert max_update_over_lr_clip(run) == pytest.approx(1.0)
    assert max_grad_norm_over_clip(run) == pytest.approx(25.0)  # |(30, 40)| = 50 over 2
    run.config = {"optimizer": {"lr": 0.1}, "regularization": {"clip_norm": None}}
    with pytest.raises(MeasureError, match="clips no gradient norm"):
        max_update_over_lr_clip(run)


def test_diverged_reads_the_runs_status():
    from dlx.config.measures import diverged

    run = Records({})
    run.summary["status"] = "diverged"
    assert diverged(run) == 1.0
    run.summary["status"] = "completed"
    assert diverged(run) == 0.0


def test_the_gradient_gain_is_the_geometric_mean_of_the_hidden_layers_backward_gains():
    from dlx.config.measures import MeasureError, grad_var_gain

    run = Records({})
    run.summary["init_check"] = [
        {"layer": "fc1", "grad_gain": None},
        {"layer": "fc2", "grad_gain": 0.25},
        {"layer": "fc3", "grad_gain": 0.64},
        {"layer": "out", "grad_gain": 0.005},  # a 3-unit output layer is not the law
    ]
    assert grad_var_gain(run) == pytest.approx(0.4)
    run.summary["init_check"] = [{"layer": "fc1", "measured_gain": 0.3}]  # a summary from before the backward half
    with pytest.raises(MeasureError, match="no gradient gains"):
        grad_var_gain(run)


def test_checking_the_whole_gallery_prints_each_entry_then_a_table_and_exits_1_on_any_fail(tmp_path):
    (tmp_path / "ex").mkdir()
    for name in ("paper_pascanu_rnn", "paper_saxe_modes"):
        text = next(ex for ex in PAPERS if ex.name == name).path.read_text(encoding="utf-8")
        if name == "paper_saxe_modes":  # a bound no run meets: this entry must FAIL
            text = text.replace("# expected: mode_time_exponent <= -0.6\n", "# expected: mode_time_exponent <= -5\n")
        (tmp_path / "ex" / f"{name}.yaml").write_text(text, encoding="utf-8")
    r = dlx_cli("examples", "check", "--all", "--quick", "--dir", "ex", "--runs-dir", "runs", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1/2 paper_pascanu_rnn" in r.stdout and "2/2 paper_saxe_modes" in r.stdout
    table = r.stdout[r.stdout.index("the papers gallery (--quick)") :]
    cells = [[c.strip() for c in line.split("│") if c.strip()] for line in table.splitlines() if "paper_" in line]
    rows = {c[0]: c[1:] for c in cells}
    assert rows["paper_pascanu_rnn"][0] == "2/2" and rows["paper_pascanu_rnn"][-1] == "PASS"
    assert rows["paper_saxe_modes"][0] == "1/2" and rows["paper_saxe_modes"][-1] == "FAIL"
    assert "1 of 2 entries PASS" in r.stdout


@pytest.mark.parametrize(
    "args", [("examples", "check", "--all", "paper_pascanu_rnn"), ("examples", "--all"), ("examples", "check")]
)
def test_check_all_with_a_name_or_all_without_check_is_a_usage_error(tmp_path, args):
    r = dlx_cli(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert "dlx examples check" in r.stderr and "Traceback" not in r.stderr
