"""The config contract: every mistake a user can make is reported at once, located, never a traceback.

Each test is one behaviour of `dlx.config.loader.load_config` on YAML written to tmp_path
(or on a dict). Problems must carry the key path, the YAML line (or the --set that
introduced them) and, for names, the valid choices and the closest one.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import dlx
from dlx.components.activations import ACTIVATIONS
from dlx.components.data import DATASETS
from dlx.components.init import INITS
from dlx.components.optim import OPTIMIZERS, SCHEDULES
from dlx.config.loader import Config, load_config
from dlx.core.errors import ConfigError, Problem, UsageError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

HEAD = "data: {name: spirals, n_train: 256, n_test: 64}\nmodel: {name: mlp, depth: 2, width: 8}\n"


# ---------------------------------------------------------------- helpers


def write(folder: Path, text: str | bytes, name: str = "c.yaml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def problems(source, overrides=()) -> list[Problem]:
    """The problems load_config reports; fails the test if it raises anything else or nothing."""
    with pytest.raises(ConfigError) as info:
        load_config(source, list(overrides))
    probs = info.value.problems
    assert probs, "a ConfigError must list at least one problem"
    for p in probs:
        assert isinstance(p, Problem)
        assert p.message.strip()
    return probs


def only(source, overrides=()) -> Problem:
    probs = problems(source, overrides)
    assert len(probs) == 1, [str(p) for p in probs]
    return probs[0]


def by_path(probs: list[Problem]) -> dict[str, Problem]:
    return {p.path: p for p in probs}


def line_of(text: str, fragment: str) -> int:
    """1-based number of the only line of `text` containing `fragment`."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if fragment in line]
    assert len(hits) == 1, (fragment, hits)
    return hits[0]


def base(**sections) -> dict:
    cfg = {"data": {"name": "spirals", "n_train": 256, "n_test": 64}, "model": {"name": "mlp", "depth": 2, "width": 8}}
    cfg.update(sections)
    return cfg


@pytest.fixture
def weights(tmp_path) -> Path:
    import torch

    path = tmp_path / "w.pt"
    torch.save({"fc1.weight": torch.zeros(8, 2)}, path)
    return path


@pytest.fixture
def arrays(tmp_path) -> Path:
    path = tmp_path / "xy.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.normal(size=(40, 3)),
        y_train=rng.integers(0, 2, 40),
        x_test=rng.normal(size=(10, 3)),
        y_test=rng.integers(0, 2, 10),
    )
    return path


# ---------------------------------------------------------------- valid configs


def test_minimal_config_resolves_with_defaults_filled_in(tmp_path):
    cfg = load_config(write(tmp_path, "data: spirals\nmodel: mlp\n"))
    r = cfg.resolved()
    assert r["train"]["epochs"] == 5 and r["train"]["steps"] is None
    assert r["train"]["batch_size"] == 64
    assert r["train"]["loss"] == "cross_entropy"
    assert r["activation"] == {"name": "relu"}
    assert r["init"]["name"] == "default"
    assert r["optimizer"]["name"] == "sgd" and r["optimizer"]["lr"] == 0.01
    assert r["optimizer"]["schedule"] == {"name": "constant"}
    assert r["regularization"]["norm"] == "none" and r["regularization"]["dropout"] == 0.0
    assert r["data"] == {
        "name": "spirals",
        "n_train": 1000,
        "n_test": 500,
        "normalize": True,
        "imbalance": None,
        "label_noise": 0.0,
        "noise": 0.05,
        "classes": 3,
        "turns": 1.0,
    }


def test_string_shorthand_becomes_a_mapping_with_name(tmp_path):
    cfg = load_config(write(tmp_path, HEAD + "activation: tanh\ninit: xavier_normal\noptimizer: adam\n"))
    r = cfg.resolved()
    assert r["activation"] == {"name": "tanh"}
    assert r["init"]["name"] == "xavier_normal" and r["init"]["gain"] == 1.0
    assert r["optimizer"]["name"] == "adam" and r["optimizer"]["lr"] == 0.001


@pytest.mark.parametrize(
    "section, alias, canonical",
    [
        ("init", "he_normal", "kaiming_normal"),
        ("init", "he_uniform", "kaiming_uniform"),
        ("init", "glorot_uniform", "xavier_uniform"),
        ("init", "glorot_normal", "xavier_normal"),
        ("activation", "swish", "silu"),
        ("activation", "linear", "identity"),
    ],
)
def test_alias_is_accepted_as_its_canonical_component(section, alias, canonical):
    cfg = load_config(base(**{section: alias}))
    assert type(getattr(cfg, section)).registry_name == canonical


def test_yaml_file_and_equivalent_dict_give_the_same_config(tmp_path, tiny):
    import yaml

    from_file = load_config(write(tmp_path, yaml.safe_dump(tiny)))
    assert from_file == load_config(tiny)


def test_resolved_config_loads_back_to_the_same_config(tiny):
    cfg = load_config(tiny)
    assert load_config(cfg.resolved()) == cfg


def test_loading_a_dict_does_not_change_the_callers_dict(tiny):
    import copy

    before = copy.deepcopy(tiny)
    load_config(
        tiny,
        [
            "optimizer.lr=0.5",
            "activation=leaky_relu",
            "activation.negative_slope=0.1",
            "train.loss=mse",
            "data.n_train=300",
        ],
    )
    assert tiny == before


def test_a_config_object_is_accepted_and_overrides_apply_to_it(tiny):
    cfg = load_config(tiny)
    assert load_config(cfg) is cfg
    assert load_config(cfg, ["optimizer.lr=0.5"]).optimizer.lr == 0.5
    assert cfg.optimizer.lr == 0.01  # the original is untouched (frozen)


def _registry_cases():
    cases = []
    for a in [
        "identity",
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu",
        "prelu",
        "elu",
        "selu",
        "gelu",
        "silu",
        "softplus",
        "softsign",
    ]:
        cases.append(pytest.param("activation", a, {"activation": a}, id=f"activation-{a}"))
    for i in [
        "zeros",
        "constant",
        "normal",
        "uniform",
        "xavier_uniform",
        "xavier_normal",
        "kaiming_uniform",
        "kaiming_normal",
        "he_uniform",
        "he_normal",
        "lecun_normal",
        "orthogonal",
        "default",
    ]:
        cases.append(pytest.param("init", i, {"init": i}, id=f"init-{i}"))
    cases.append(
        pytest.param("init", "from_file", {"init": {"name": "from_file", "path": "WEIGHTS"}}, id="init-from_file-pt")
    )
    cases.append(
        pytest.param("init", "from_file", {"init": {"name": "from_file", "path": "ARRAYS"}}, id="init-from_file-npz")
    )
    for o in ["sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamw"]:
        cases.append(pytest.param("optimizer", o, {"optimizer": o}, id=f"optimizer-{o}"))
    for s in ["constant", "step", "exponential", "cosine", "warmup"]:
        cases.append(
            pytest.param("optimizer.schedule", s, {"optimizer": {"name": "sgd", "schedule": s}}, id=f"schedule-{s}")
        )
    for n in ["none", "batch", "layer"]:
        cases.append(pytest.param("regularization.norm", n, {"regularization": {"norm": n}}, id=f"norm-{n}"))
    for d in ["spirals", "moons", "circles", "xor", "blobs"]:
        cases.append(pytest.param("data", d, {"data": {"name": d, "n_train": 256}}, id=f"data-{d}"))
    cases.append(pytest.param("data", "teacher", {"data": "teacher", "train": {"loss": "mse"}}, id="data-teacher"))
    cases.append(pytest.param("data", "arrays", {"data": {"name": "arrays", "path": "ARRAYS"}}, id="data-arrays"))
    for loss in ["cross_entropy", "mse"]:
        cases.append(pytest.param("train.loss", loss, {"train": {"loss": loss}}, id=f"loss-{loss}"))
    cases.append(pytest.param("train.batch_size", "full", {"train": {"batch_size": "full"}}, id="batch-full"))
    cases.append(pytest.param("train.batch_size", 1, {"train": {"batch_size": 1}}, id="batch-1"))
    cases.append(pytest.param("train.steps", 50, {"train": {"steps": 50}}, id="train-steps"))
    return cases


def _fill_paths(obj, weights: Path, arrays: Path):
    if isinstance(obj, dict):
        return {k: _fill_paths(v, weights, arrays) for k, v in obj.items()}
    return {"WEIGHTS": str(weights), "ARRAYS": str(arrays)}.get(obj, obj) if isinstance(obj, str) else obj


@pytest.mark.parametrize("where, value, sections", _registry_cases())
def test_every_documented_name_and_setting_validates(where, value, sections, weights, arrays):
    cfg = load_config(base(**_fill_paths(sections, weights, arrays)))
    node = cfg.resolved()
    for part in where.split("."):
        node = node[part]
    got = node["name"] if isinstance(node, dict) else node
    assert got == value
    if where == "train.steps":
        assert cfg.train.epochs is None  # steps replaces the default of 5 epochs


def test_documented_names_are_all_registered():
    assert {
        "identity",
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu",
        "prelu",
        "elu",
        "selu",
        "gelu",
        "silu",
        "softplus",
        "softsign",
    } <= set(ACTIVATIONS.names())
    assert {
        "zeros",
        "constant",
        "normal",
        "uniform",
        "xavier_uniform",
        "xavier_normal",
        "kaiming_uniform",
        "kaiming_normal",
        "lecun_normal",
        "orthogonal",
        "default",
        "from_file",
    } <= set(INITS.names())
    assert {"he_uniform", "he_normal"} <= set(INITS.names(aliases=True))
    assert {"sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamw"} <= set(OPTIMIZERS.names())
    assert {"constant", "step", "cosine", "warmup"} <= set(SCHEDULES.names())
    assert {"spirals", "moons", "circles", "xor", "blobs", "teacher", "arrays"} <= set(DATASETS.names())


# ---------------------------------------------------------------- malformed YAML


def test_malformed_yaml_reports_the_line_of_the_error(tmp_path):
    text = "name: x\nseed: 0\ndata: spirals\noptimizer: {name: adam, lr: 0.1]\nmodel: mlp\n"
    assert line_of(text, "optimizer:") == 4
    path = write(tmp_path, text)
    p = only(path)
    assert p.line == 4
    assert p.path == ""
    assert "malformed YAML" in p.message
    assert p.source == str(path)
    assert str(p).startswith(f"{path}:4: ")


def test_tab_indentation_reports_its_line(tmp_path):
    p = only(write(tmp_path, HEAD + "seed: 1\n\tactivation: relu\n"))
    assert p.line == 4
    assert "malformed YAML" in p.message and "\\t" in p.message


def test_unterminated_quote_is_a_config_error_with_a_line(tmp_path):
    p = only(write(tmp_path, HEAD + "name: 'abc\n"))
    assert "malformed YAML" in p.message
    assert p.line in (3, 4)  # the quote opens on line 3; the parser hits the end of the file on line 4


def test_unclosed_bracket_points_at_the_line_where_it_was_opened(tmp_path):
    text = "name: x\nseed: 0\ndata: spirals\nmodel: {name: mlp, depth: 2\nactivation: relu\n"
    assert line_of(text, "model: {") == 4
    p = only(write(tmp_path, text))
    assert p.line == 4 or "line 4" in p.message


def test_several_yaml_documents_are_rejected(tmp_path):
    p = only(write(tmp_path, HEAD + "---\nseed: 1\n"))
    assert "malformed YAML" in p.message and p.line == 3


# ---------------------------------------------------------------- unknown keys


def test_unknown_nested_key_suggests_the_closest_key_and_gives_its_line(tmp_path):
    text = "data: spirals\nmodel:\n  name: mlp\n  depth: 2\n  widht: 16\n"
    p = only(write(tmp_path, text))
    assert p.path == "model.widht"
    assert p.line == 5
    assert "did you mean 'width'?" in p.message
    assert "depth" in p.message and "widths" in p.message  # the keys valid here


@pytest.mark.parametrize(
    "typo, meant", [("optimiser", "optimizer"), ("regularisation", "regularization"), ("activaton", "activation")]
)
def test_unknown_top_level_key_suggests_the_closest_key_and_gives_its_line(tmp_path, typo, meant):
    text = HEAD + "seed: 3\n" + f"{typo}: {{}}\n"
    p = only(write(tmp_path, text))
    assert p.path == typo
    assert p.line == 4
    assert f"did you mean '{meant}'?" in p.message


def test_unknown_key_without_a_close_match_still_lists_the_valid_keys(tmp_path):
    p = only(write(tmp_path, HEAD + "banana: 1\n"))
    assert p.path == "banana" and p.line == 3
    assert "did you mean" not in p.message
    for key in Config.model_fields:
        assert key in p.message


def test_unknown_parameter_of_a_component_suggests_that_components_parameter(tmp_path):
    p = only(write(tmp_path, HEAD + "activation: {name: leaky_relu, slope: 0.2}\n"))
    assert p.path == "activation.slope" and p.line == 3
    assert "did you mean 'negative_slope'?" in p.message


def test_parameter_of_another_component_is_an_unknown_key(tmp_path):
    # betas belong to adam, not sgd: no silent ignoring of a key the chosen component does not take.
    p = only(write(tmp_path, HEAD + "optimizer: {name: sgd, betas: [0.9, 0.9]}\n"))
    assert p.path == "optimizer.betas" and p.line == 3
    assert "unknown key 'betas'" in p.message
    assert "momentum" in p.message and "amsgrad" not in p.message  # sgd's keys, not adam's


# ---------------------------------------------------------------- unknown names

NORMS = ["none", "batch", "layer"]
LOSSES = ["cross_entropy", "mse"]


@pytest.mark.parametrize(
    "yaml_line, path, meant, valid",
    [
        ("activation: sigmod", "activation", "sigmoid", ACTIVATIONS.names(aliases=True)),
        ("activation: {name: sigmod}", "activation", "sigmoid", ACTIVATIONS.names(aliases=True)),
        ("optimizer: adma", "optimizer", "adam", OPTIMIZERS.names()),
        ("optimizer: {name: rmsporp, lr: 0.1}", "optimizer", "rmsprop", OPTIMIZERS.names()),
        ("init: xavier_unifrom", "init", "xavier_uniform", INITS.names(aliases=True)),
        ("init: {name: he_normall}", "init", "he_normal", INITS.names(aliases=True)),
        ("optimizer: {name: adam, schedule: cosin}", "optimizer.schedule", "cosine", SCHEDULES.names()),
        ("regularization: {norm: btach}", "regularization.norm", "batch", NORMS),
        ("train: {loss: crossentropy}", "train.loss", "cross_entropy", LOSSES),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_unknown_name_suggests_the_closest_and_lists_all_valid_names(tmp_path, yaml_line, path, meant, valid):
    p = only(write(tmp_path, HEAD + yaml_line + "\n"))
    assert p.path == path
    assert p.line == 3
    assert f"did you mean '{meant}'?" in p.message
    listed = re.search(r"\(valid: ([^)]*)\)", p.message)
    assert listed, p.message
    assert set(valid) <= {n.strip() for n in listed.group(1).split(",")}


def test_unknown_data_name_suggests_the_closest_and_lists_all_datasets(tmp_path):
    p = only(write(tmp_path, "seed: 0\ndata: {name: spirls, n_train: 100}\nmodel: mlp\n"))
    assert p.path == "data" and p.line == 2
    assert "did you mean 'spirals'?" in p.message
    for name in DATASETS.names():
        assert name in p.message


def test_component_mapping_without_a_name_asks_for_one(tmp_path):
    p = only(write(tmp_path, HEAD + "activation: {negative_slope: 0.1}\n"))
    assert p.path == "activation" and p.line == 3
    assert "needs a name" in p.message


# ---------------------------------------------------------------- wrong types and ranges


@pytest.mark.parametrize(
    "yaml_line, path, says",
    [
        ("optimizer: {name: adam, lr: abc}", "optimizer.lr", "abc"),
        ("train: {epochs: ten}", "train.epochs", "ten"),
        ("train: {epochs: 2.5}", "train.epochs", "2.5"),
        ("seed: one", "seed", "one"),
        ("regularization: {dropout: 1.5}", "regularization.dropout", "1.5"),
        ("optimizer: {name: sgd, lr: -1}", "optimizer.lr", "-1"),
        ("seed: -1", "seed", "-1"),
        ("init: {name: normal, std: 0}", "init.std", "0"),
        ("train: {epochs: 0}", "train.epochs", "0"),
        ("train: {batch_size: 0}", "train.batch_size", "full"),
        ("train: {batch_size: fulll}", "train.batch_size", "full"),
        ("regularization: {l2: -0.1}", "regularization.l2", "-0.1"),
        ("activation: {name: leaky_relu, negative_slope: 1.5}", "activation.negative_slope", "1.5"),
        ("train: {checkpoint: maybe}", "train.checkpoint", "maybe"),
        ("train: 5", "train", "mapping"),
        ("regularization: [0.1]", "regularization", "mapping"),
        ("name: 'my run!'", "name", "my run!"),
    ],
    ids=lambda v: v if isinstance(v, str) and ":" in v else None,
)
def test_wrong_type_or_out_of_range_value_is_reported_with_path_and_line(tmp_path, yaml_line, path, says):
    text = "# a comment first\n" + HEAD + yaml_line + "\n"
    p = only(write(tmp_path, text))
    assert p.path == path
    assert p.line == 4
    assert says in p.message


def test_several_problems_in_block_style_yaml_each_get_their_own_line(tmp_path):
    text = (
        "data:\n  name: spirals\n  n_train: 256\n"
        "model:\n  name: mlp\n  depth: 2\n"
        "optimizer:\n  name: adam\n  lr: abc\n"
        "regularization:\n  dropout: 1.5\n  norm: btach\n"
        "train:\n  epochs: ten\n"
    )
    got = {(p.path, p.line) for p in problems(write(tmp_path, text))}
    assert got == {
        ("optimizer.lr", 9),
        ("regularization.dropout", 11),
        ("regularization.norm", 12),
        ("train.epochs", 14),
    }


@pytest.mark.parametrize(
    "yaml_line, path",
    [
        ("train: {epochs: yes}", "train.epochs"),
        ("optimizer: {name: sgd, lr: true}", "optimizer.lr"),
        ("model: {name: mlp, depth: on}", "model.depth"),
    ],
)
def test_boolean_for_a_number_is_rejected(tmp_path, yaml_line, path):
    text = "data: spirals\n" + ("" if yaml_line.startswith("model") else "model: mlp\n") + yaml_line + "\n"
    p = only(write(tmp_path, text))
    assert p.path == path


def test_infinite_learning_rate_is_rejected(tmp_path):
    p = only(write(tmp_path, HEAD + "optimizer: {name: sgd, lr: .inf}\n"))
    assert p.path == "optimizer.lr" and p.line == 3


def test_nan_count_is_rejected(tmp_path):
    p = only(write(tmp_path, HEAD + "train: {epochs: .nan}\n"))
    assert p.path == "train.epochs" and p.line == 3


# ---------------------------------------------------------------- all problems at once

BROKEN_PATHS = {
    "data",
    "model.widht",
    "activation",
    "init.std",
    "optimizer.betas",
    "regularization.dropout",
    "regularization.norm",
    "train.epochs",
    "train.loss",
}


def test_broken_yaml_reports_every_problem_at_once_each_with_path_and_line():
    path = CONFIGS / "broken.yaml"
    text = path.read_text()
    probs = problems(path)
    assert len(probs) >= 8
    paths = [p.path for p in probs]
    assert len(paths) == len(set(paths)), paths
    assert BROKEN_PATHS <= set(paths)
    for p in probs:
        top = p.path.split(".")[0]
        section_line = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(f"{top}:"))
        assert p.line == section_line, str(p)
        assert p.source == str(path)
    lines = [p.line for p in probs]
    assert lines == sorted(lines)  # listed in file order


def test_broken_yaml_name_problems_say_did_you_mean():
    got = by_path(problems(CONFIGS / "broken.yaml"))
    assert "did you mean 'spirals'?" in got["data"].message
    assert "did you mean 'width'?" in got["model.widht"].message
    assert "did you mean 'sigmoid'?" in got["activation"].message
    assert "did you mean 'batch'?" in got["regularization.norm"].message
    assert "did you mean 'cross_entropy'?" in got["train.loss"].message


def test_config_error_text_lists_every_problem(tmp_path):
    path = CONFIGS / "broken.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert f"{len(info.value.problems)} problems" in text
    for p in info.value.problems:
        assert f"{path}:{p.line}: {p.path}: " in text


# ---------------------------------------------------------------- files named in the config


def test_init_from_file_with_a_missing_file_names_the_file(tmp_path):
    text = HEAD + "init:\n  name: from_file\n  path: no_such_weights.pt\n"
    p = only(write(tmp_path / "cfg", text))
    assert p.path == "init.path"
    assert p.line == 5
    assert "not found" in p.message and "no_such_weights.pt" in p.message


def test_data_arrays_with_a_missing_file_names_the_file(tmp_path):
    text = "data: {name: arrays, path: no_such_data.npz}\nmodel: mlp\n"
    p = only(write(tmp_path / "cfg", text))
    assert p.path == "data.path"
    assert p.line == 1
    assert "not found" in p.message and "no_such_data.npz" in p.message


def test_missing_file_message_names_both_places_looked(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    p = only(write(tmp_path / "cfg", HEAD + "init: {name: from_file, path: gone.pt}\n"))
    assert str(work / "gone.pt") in p.message
    assert str(tmp_path / "cfg" / "gone.pt") in p.message


def test_missing_file_message_does_not_repeat_the_same_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = only(write(tmp_path, HEAD + "init: {name: from_file, path: gone.pt}\n"))
    assert p.message.count(str(tmp_path / "gone.pt")) == 1


def test_init_from_file_with_a_wrong_suffix_says_which_are_accepted(tmp_path):
    (tmp_path / "w.txt").write_text("not weights")
    p = only(write(tmp_path, HEAD + f"init: {{name: from_file, path: {tmp_path / 'w.txt'}}}\n"))
    assert p.path == "init.path" and p.line == 3
    assert ".pt" in p.message and ".npz" in p.message


def test_relative_file_path_resolves_against_the_config_folder(tmp_path, monkeypatch, weights):
    cfg_dir = tmp_path / "experiments"
    cfg_dir.mkdir()
    weights.rename(cfg_dir / "w.pt")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = load_config(write(cfg_dir, HEAD + "init: {name: from_file, path: w.pt}\n"))
    assert cfg.init.path == (cfg_dir / "w.pt").resolve()


def test_relative_file_path_prefers_the_working_directory(tmp_path, monkeypatch, arrays):
    cfg_dir = tmp_path / "experiments"
    cfg_dir.mkdir()
    import shutil

    shutil.copy(arrays, cfg_dir / "xy.npz")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(write(cfg_dir, "data: {name: arrays, path: xy.npz}\nmodel: mlp\n"))
    assert cfg.data.path == (tmp_path / "xy.npz").resolve()


# ---------------------------------------------------------------- rules across keys


def test_epochs_and_steps_together_are_an_error(tmp_path):
    p = only(write(tmp_path, HEAD + "seed: 0\ntrain:\n  epochs: 2\n  steps: 30\n"))
    assert p.path == "train" and p.line == 4
    assert "epochs" in p.message and "steps" in p.message


def test_widths_and_depth_together_are_an_error(tmp_path):
    p = only(write(tmp_path, "data: spirals\nmodel: {name: mlp, depth: 2, widths: [8, 8]}\n"))
    assert p.path == "model" and p.line == 2
    assert "widths" in p.message and "depth" in p.message


def test_batch_larger_than_the_training_set_suggests_full(tmp_path):
    text = "data: {name: moons, n_train: 50}\nmodel: mlp\ntrain: {batch_size: 64}\n"
    p = only(write(tmp_path, text))
    assert p.path == "train.batch_size" and p.line == 3
    assert "full" in p.message and "50" in p.message


def test_batch_equal_to_the_training_set_is_fine():
    assert load_config(base(data={"name": "moons", "n_train": 64}, train={"batch_size": 64})).train.batch_size == 64


def test_batch_norm_with_batch_size_one_is_an_error(tmp_path):
    text = HEAD + "regularization: {norm: batch}\ntrain: {batch_size: 1}\n"
    p = only(write(tmp_path, text))
    assert p.path == "regularization.norm" and p.line == 3
    assert "batch_size" in p.message


# ---------------------------------------------------------------- keys a model ignores
# (tests/test_model_key_contract.py trains every model under every such key.)

SEQUENCE = "data: {name: parity, length: 8}\n"


@pytest.mark.parametrize(
    "text, path, says",
    [
        (
            SEQUENCE + "model: lstm\nregularization: {dropconnect: 0.2}\n",
            "regularization.dropconnect",
            ["lstm ignores it", "honoured by mlp", "use regularization.dropout"],
        ),
        (
            SEQUENCE + "model: gru\nregularization: {norm: layer}\n",
            "regularization.norm",
            ["gru ignores it", "honoured by mlp, cnn, resnet", "remove it"],
        ),
        (
            "data: spirals\nmodel: mlp\ntrain: {tbptt: 5}\n",
            "train.tbptt",
            ["mlp ignores it", "honoured by rnn, lstm, gru"],
        ),
        (
            SEQUENCE + "model: {name: attention, blocks: 1}\nregularization: {norm: layer}\n",
            "regularization.norm",
            ["attention ignores it", "own LayerNorm"],
        ),
        (
            SEQUENCE + "model: {name: attention, blocks: 0}\nregularization: {dropout: 0.1}\n",
            "regularization.dropout",
            ["attention ignores it here", "blocks is 0", "blocks >= 1"],
        ),
        (
            "data: spirals\nmodel: {name: mlp, depth: 0}\nregularization: {dropout: 0.1}\n",
            "regularization.dropout",
            ["mlp ignores it here", "hidden layer"],
        ),
        (
            SEQUENCE + "model: rnn\ntrain: {tbptt: 8}\n",
            "train.tbptt",
            ["not shorter than the 8 time steps", "truncates nothing"],
        ),
    ],
    ids=[
        "lstm-dropconnect",
        "gru-norm",
        "mlp-tbptt",
        "attention-norm",
        "attention-no-blocks-dropout",
        "mlp-no-hidden-dropout",
        "rnn-tbptt-not-below-T",
    ],
)
def test_a_key_the_model_ignores_is_refused_at_its_line_saying_who_honours_it(tmp_path, text, path, says):
    p = only(write(tmp_path, text))
    assert (p.path, p.line) == (path, line_of(text, path.split(".")[0] + ":"))
    for phrase in says:
        assert phrase in p.message, p.message


def test_a_model_dependent_key_at_its_default_is_no_problem_for_any_model(tmp_path):
    text = SEQUENCE + "model: lstm\nregularization: {dropconnect: 0.0, norm: none}\ntrain: {tbptt: null}\n"
    assert load_config(write(tmp_path, text)).model.name == "lstm"


def test_a_key_the_new_model_ignores_is_refused_when_set_changes_the_model(tmp_path):
    text = SEQUENCE + "model: {name: gru}\nregularization: {dropout: 0.2}\ntrain: {tbptt: 4}\n"
    assert load_config(write(tmp_path, text)).train.tbptt == 4
    p = only(write(tmp_path, text), ["model.name=mlp"])
    assert p.path == "train.tbptt" and p.line == 4 and "mlp ignores it" in p.message


def test_regression_data_with_cross_entropy_suggests_mse(tmp_path):
    text = "data: teacher\nmodel: mlp\ntrain: {epochs: 2, loss: cross_entropy}\n"
    p = only(write(tmp_path, text))
    assert p.path == "train.loss" and p.line == 3
    assert "mse" in p.message and "regression" in p.message


def test_regression_data_with_default_loss_points_at_the_data_line(tmp_path):
    text = "# regression\nseed: 0\ndata: teacher\nmodel: mlp\n"
    p = only(write(tmp_path, text))
    assert p.path == "train.loss"
    assert p.line == 3


# ---------------------------------------------------------------- YAML oddities


def test_duplicate_key_names_both_lines(tmp_path):
    text = "data: spirals\nmodel: mlp\nseed: 1\nactivation: relu\nseed: 2\n"
    p = only(write(tmp_path, text))
    assert p.path == "seed"
    assert p.line == 5
    assert "duplicate" in p.message and "line 3" in p.message


def test_duplicate_nested_key_names_both_lines(tmp_path):
    text = HEAD + "train:\n  epochs: 2\n  batch_size: 8\n  epochs: 3\n"
    p = only(write(tmp_path, text))
    assert p.path == "train.epochs"
    assert p.line == 6 and "line 4" in p.message


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing but a comment\n"], ids=["empty", "blank", "comment"])
def test_empty_file_is_a_config_error(tmp_path, text):
    p = only(write(tmp_path, text))
    assert "empty" in p.message
    assert "data" in p.message and "model" in p.message


@pytest.mark.parametrize(
    "text, kind", [("- data: spirals\n- model: mlp\n", "list"), ("just words\n", "str"), ("42\n", "int")]
)
def test_top_level_that_is_not_a_mapping_is_a_config_error(tmp_path, text, kind):
    p = only(write(tmp_path, text))
    assert "mapping" in p.message and kind in p.message


def test_non_utf8_bytes_give_a_config_error_with_their_line(tmp_path):
    p = only(write(tmp_path, b"data: spirals\nmodel: mlp\nname: caf\xe9\n"))
    assert "UTF-8" in p.message
    assert p.line == 3


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbf" + HEAD.encode())
    assert load_config(path).data.name == "spirals"


def test_windows_line_endings_keep_line_numbers(tmp_path):
    p = only(write(tmp_path, (HEAD + "seed: 1\nactivation: sigmod\n").replace("\n", "\r\n").encode()))
    assert p.path == "activation" and p.line == 4


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['touch PWNED']",
        "!!python/object:os.system {}",
        "!!python/name:os.system",
        "!custom relu",
    ],
)
def test_yaml_tags_are_rejected_cleanly_and_never_run(tmp_path, monkeypatch, tag):
    monkeypatch.chdir(tmp_path)
    p = only(write(tmp_path, HEAD + f"activation: {tag}\n"))
    assert p.line == 3
    assert "tag" in p.message
    assert not (tmp_path / "PWNED").exists()


def test_non_string_key_is_reported_not_crashed(tmp_path):
    probs = problems(write(tmp_path, HEAD + "1: x\n"))
    assert [p.path for p in probs] == ["1"]


def test_non_string_key_gets_its_own_line(tmp_path):
    p = only(write(tmp_path, HEAD + "1: x\n"))
    assert p.line == 3


# ---------------------------------------------------------------- --set overrides


@pytest.fixture
def leaky(tmp_path) -> Path:
    return write(tmp_path, HEAD + "activation: leaky_relu\noptimizer: {name: adam, lr: 0.01, betas: [0.9, 0.999]}\n")


def test_override_changes_a_value_parsed_as_a_yaml_number(leaky):
    cfg = load_config(leaky, ["optimizer.lr=0.05"])
    assert cfg.optimizer.lr == 0.05 and isinstance(cfg.resolved()["optimizer"]["lr"], float)


def test_override_with_exponent_notation_is_a_float(leaky):
    assert load_config(leaky, ["optimizer.lr=1e-3"]).optimizer.lr == pytest.approx(0.001)


def test_override_replaces_a_component_by_name(leaky):
    cfg = load_config(leaky, ["activation=tanh"])
    assert cfg.resolved()["activation"] == {"name": "tanh"}


def test_override_sets_a_parameter_of_a_shorthand_component(leaky):
    cfg = load_config(leaky, ["activation.negative_slope=0.2"])
    assert cfg.resolved()["activation"] == {"name": "leaky_relu", "negative_slope": 0.2}


def test_override_sets_a_list_value(leaky):
    cfg = load_config(leaky, ["model.widths=[8,8]", "model.depth=null", "model.width=null"])
    assert cfg.model.hidden_widths() == [8, 8]


def test_override_of_widths_while_the_file_gives_depth_is_an_error(leaky):
    p = only(leaky, ["model.widths=[8,8]"])
    assert p.path == "model" and "widths" in p.message


def test_override_indexes_into_a_list(leaky):
    cfg = load_config(leaky, ["optimizer.betas.1=0.99"])
    assert tuple(cfg.optimizer.betas) == (0.9, 0.99)


def test_override_creates_a_missing_section(leaky):
    cfg = load_config(leaky, ["train.steps=7"])
    assert cfg.train.steps == 7 and cfg.train.epochs is None


def test_override_of_steps_replaces_epochs_from_the_file(tmp_path):
    path = write(tmp_path, HEAD + "train: {epochs: 30, batch_size: 16}\n")
    cfg = load_config(path, ["train.steps=5"])
    assert (cfg.train.steps, cfg.train.epochs, cfg.train.batch_size) == (5, None, 16)
    cfg = load_config(write(tmp_path, HEAD + "train: {steps: 30}\n", "s.yaml"), ["train.epochs=2"])
    assert (cfg.train.epochs, cfg.train.steps) == (2, None)


def test_override_can_fix_a_problem_in_the_file(tmp_path):
    path = write(tmp_path, HEAD + "train: {epochs: ten}\n")
    assert load_config(path, ["train.epochs=3"]).train.epochs == 3


def test_override_with_spaces_around_key_and_value_is_accepted(leaky):
    assert load_config(leaky, [" optimizer.lr = 0.5 "]).optimizer.lr == 0.5


def test_later_override_of_the_same_key_wins(leaky):
    assert load_config(leaky, ["optimizer.lr=0.5", "optimizer.lr=0.25"]).optimizer.lr == 0.25


def test_bad_override_value_cites_the_set(leaky):
    p = only(leaky, ["optimizer.lr=abc"])
    assert p.path == "optimizer.lr"
    assert p.source.startswith("--set")
    assert p.source == "--set optimizer.lr=abc"
    assert p.line is None
    assert str(p).startswith("--set optimizer.lr=abc: optimizer.lr: ")


def test_unknown_key_in_an_override_suggests_and_cites_the_set(leaky):
    p = only(leaky, ["optimizer.lrr=0.1"])
    assert p.path == "optimizer.lrr"
    assert "did you mean 'lr'?" in p.message
    assert p.source == "--set optimizer.lrr=0.1"


def test_unknown_name_in_an_override_suggests_and_cites_the_set(leaky):
    p = only(leaky, ["activation=sigmod"])
    assert "did you mean 'sigmoid'?" in p.message
    assert p.source == "--set activation=sigmod"


@pytest.mark.parametrize("item", ["optimizer.lr", "optimizer.lr:0.1", "=0.1", "a..b=1", "optimizer.l-r=1"])
def test_malformed_override_is_a_problem_citing_it(leaky, item):
    p = only(leaky, [item])
    assert p.source == f"--set {item}"
    assert "key.path=value" in p.message


def test_override_value_that_is_not_yaml_is_a_problem(leaky):
    p = only(leaky, ["optimizer.lr=[1"])
    assert p.source == "--set optimizer.lr=[1"
    assert "YAML" in p.message


def test_override_into_a_scalar_is_a_problem(leaky):
    p = only(leaky, ["optimizer.lr.x=1"])
    assert p.source == "--set optimizer.lr.x=1"
    assert "float" in p.message


def test_override_past_the_end_of_a_list_is_a_problem(leaky):
    p = only(leaky, ["optimizer.betas.5=0.5"])
    assert p.source == "--set optimizer.betas.5=0.5"


def test_override_problem_and_file_problem_are_reported_together(tmp_path):
    path = write(tmp_path, HEAD + "activation: sigmod\ntrain: {epochs: ten}\noptimizer: adam\n")
    got = by_path(problems(path, ["optimizer.lr=abc", "seed"]))
    assert set(got) == {"activation", "train.epochs", "optimizer.lr", "seed"}
    assert got["activation"].line == 3 and got["activation"].source == str(path)
    assert got["train.epochs"].line == 4
    assert got["optimizer.lr"].source == "--set optimizer.lr=abc"
    assert got["seed"].source == "--set seed"


def test_override_on_a_dict_config_cites_the_set(tiny):
    p = only(tiny, ["train.epochs=ten"])
    assert p.path == "train.epochs" and p.source == "--set train.epochs=ten"


@pytest.mark.parametrize(
    "item, section, attr, value",
    [
        ("optimizer.lr=0.5", "optimizer", "lr", 0.5),
        ("init.bias=0.1", "init", "bias", 0.1),
    ],
    ids=["optimizer.lr", "init.bias"],
)
def test_override_tunes_a_parameter_of_a_defaulted_component(tmp_path, item, section, attr, value):
    cfg = load_config(write(tmp_path, HEAD), [item])  # HEAD has no optimizer: or init: section
    assert getattr(getattr(cfg, section), attr) == value


@pytest.mark.parametrize(
    "sets",
    [
        ["data.name=spirls"],
        ["activation.name=sigmod"],
        ["train.epochs=3", "train.steps=4"],
        ["optimizer.betas.1=1.5"],
    ],
    ids=lambda s: " ".join(s),
)
def test_problem_caused_by_an_override_below_the_reported_key_cites_the_set(leaky, sets):
    p = only(leaky, sets)
    assert p.source is not None and p.source.startswith("--set"), str(p)


# ---------------------------------------------------------------- the config file itself


def test_missing_config_file_is_a_usage_error_naming_it(tmp_path):
    with pytest.raises(UsageError, match="nope.yaml not found") as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.exit_code == 2


def test_config_path_that_is_a_folder_says_so(tmp_path):
    with pytest.raises(UsageError, match="is a folder"):
        load_config(tmp_path)


def test_error_from_a_file_names_the_file_in_its_text(tmp_path):
    path = write(tmp_path, HEAD + "activation: sigmod\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    assert str(info.value).startswith(f"{path}: 1 problem in the config:")


# ---------------------------------------------------------------- problems found by building


def test_check_reports_a_weights_file_that_does_not_fit_the_model_with_its_line(tmp_path):
    import torch

    torch.save({"fc1.weight": torch.zeros(3, 3)}, tmp_path / "w.pt")
    path = write(tmp_path, HEAD + "init: {name: from_file, path: w.pt}\n")
    with pytest.raises(ConfigError) as info:
        dlx.check(path)
    (p,) = info.value.problems
    assert p.path == "init.path" and p.line == 3
    assert "fc1.weight" in p.message and "missing" in p.message


def test_check_reports_an_npz_without_y_test_with_its_line(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((4, 2)), y_train=np.zeros(4, dtype=int), x_test=np.zeros((2, 2)))
    path = write(tmp_path, "seed: 0\nmodel: mlp\ndata: {name: arrays, path: d.npz}\n")
    with pytest.raises(ConfigError) as info:
        dlx.check(path)
    (p,) = info.value.problems
    assert p.path == "data.path" and p.line == 3 and "y_test" in p.message


def test_validate_and_train_exit_2_for_a_problem_found_by_building(tmp_path):
    import subprocess
    import sys

    np.savez(tmp_path / "d.npz", x_train=np.zeros((4, 2)), y_train=np.zeros(4, dtype=int), x_test=np.zeros((2, 2)))
    path = write(tmp_path, "seed: 0\nmodel: mlp\ndata: {name: arrays, path: d.npz}\n")
    for cmd in ("validate", "train"):
        p = subprocess.run(
            [sys.executable, "-m", "dlx", cmd, str(path), "--runs-dir", str(tmp_path / "runs")]
            if cmd == "train"
            else [sys.executable, "-m", "dlx", cmd, str(path)],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 2, (cmd, p.stderr)
        assert f"{path}:3: data.path" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_train_prune_on_written_as_documented_in_plain_yaml_is_a_key(tmp_path):
    """YAML 1.1 reads a bare `on` as true; configs read it as the key train.prune documents."""
    cfg = load_config(write(tmp_path, "data: spirals\nmodel: mlp\ntrain:\n  prune: {on: [symmetry]}\n"))
    assert cfg.train.prune.on == ["symmetry"]
    block = write(tmp_path, "data: spirals\nmodel: mlp\ntrain:\n  prune:\n    on:\n      - dead_units\n", "b.yaml")
    assert load_config(block).train.prune.on == ["dead_units"]
    assert load_config(
        write(tmp_path, "data: spirals\nmodel: mlp\n", "s.yaml"), ["train.prune.on=[symmetry]"]
    ).train.prune.on == ["symmetry"]
    assert load_config(
        write(tmp_path, "data: spirals\nmodel: mlp\n", "t.yaml"), ["train.prune={on: [symmetry]}"]
    ).train.prune.on == ["symmetry"]


def test_true_and_false_stay_booleans_and_yes_no_on_off_still_set_a_boolean(tmp_path):
    from dlx.config.loader import safe_load

    assert safe_load("a: true\nb: False\nc: TRUE\nd: yes\ne: off\nf: 'true'") == {
        "a": True,
        "b": False,
        "c": True,
        "d": "yes",
        "e": "off",
        "f": "true",
    }
    # A boolean field still takes yes/no/on/off, as it did when YAML made them booleans.
    assert load_config(write(tmp_path, "data: {name: spirals, normalize: no}\nmodel: mlp\n")).data.normalize is False
    assert load_config(write(tmp_path, "data: {name: spirals, normalize: on}\nmodel: mlp\n", "o.yaml")).data.normalize
