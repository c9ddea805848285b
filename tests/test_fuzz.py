"""Fuzzed configs: whatever a config file or a --set holds, dlx answers with a ConfigError
listing problems (or a UsageError), or a valid Config; never a traceback, never a hang.

Hypothesis mutates the example configs in configs/ (the training configs: not the
sweep_* specs, not broken.yaml) three ways: as data (drop keys, wrong types,
out-of-range and non-finite numbers, unknown names and keys, lists where mappings
belong, deep nesting, long strings), as bytes (YAML tags, anchors and aliases,
duplicate keys, extra documents, non-UTF-8 bytes, truncation), and as --set
overrides. Each case goes through the real entry points: load_config on a file,
load_config with --set strings, and, for a smaller subset, dlx.check (which also
loads the data and builds the model). 1,980 cases in all, the same ones every run
(derandomized), ~13 s on two cores; DLX_FUZZ_SCALE=N runs N times as many, fresh.

The regression tests at the end pin each bug the fuzzing found.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dlx
from dlx.config.loader import Config, dump_yaml, load_config, load_config_text, parse_yaml
from dlx.core.errors import ConfigError, DlxError, Problem, UsageError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

EXAMPLES = {
    p.name: p for p in sorted(CONFIGS.glob("*.yaml")) if not p.name.startswith("sweep_") and p.name != "broken.yaml"
}
BASES = {name: yaml.safe_load(p.read_text(encoding="utf-8")) for name, p in EXAMPLES.items()}


def _name(cfg: dict, section: str) -> str:
    value = cfg[section]
    return value if isinstance(value, str) else value["name"]


# dlx.check loads the data: MNIST examples would read 60k images (or try a download) per case.
BUILDABLE = sorted(n for n, cfg in BASES.items() if "mnist" not in _name(cfg, "data"))

# No case is timed: a hang (an alias bomb, an exponential walk) is stopped by pytest-timeout,
# and the loader's bounds that prevent one (MAX_DEPTH, MAX_NODES) are pinned below, each by
# where it refuses (while composing, before anything is built).
# A problem is a sentence for a person: a 1 MB value must not be echoed back whole.
MAX_MESSAGE = 2000

# DLX_FUZZ_SCALE=20 runs 20x the cases, freshly random each time: for hunting bugs
# locally. Unset, every run (CI's included) checks the same cases.
SCALE = float(os.environ.get("DLX_FUZZ_SCALE", "1"))
_FUZZ = settings(
    deadline=None,
    derandomize=SCALE == 1,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


def fuzz(cases: int) -> settings:
    """Settings for `cases` examples (times DLX_FUZZ_SCALE)."""
    return settings(_FUZZ, max_examples=max(1, round(cases * SCALE)))


def outcome(load, allowed: tuple[type[Exception], ...] = (ConfigError, UsageError)) -> str:
    """'valid' or 'error' for one attempt; any other exception fails the test (the property)."""
    try:
        cfg = load()
    except allowed as e:
        text = str(e)
        assert text.strip()
        if isinstance(e, ConfigError):
            assert e.problems, "a ConfigError must list at least one problem"
            for p in e.problems:
                assert isinstance(p, Problem)
                assert isinstance(p.message, str) and p.message.strip(), p
                assert len(p.message) <= MAX_MESSAGE, f"{len(p.message)}-character message: {p.message[:200]}..."
                str(p)
        result = "error"
    else:
        assert isinstance(cfg, Config)
        # A valid config's resolved form (what a run folder keeps) loads back to the same config.
        assert load_config_text(dump_yaml(cfg.resolved()), "resolved.yaml", None) == cfg
        result = "valid"
    return result


def write(folder: Path, data: bytes, name: str = "fuzz.yaml") -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- value pools

LONG = "x" * 10_000
UNKNOWN_NAMES = [
    "relu6",
    "Relu",
    "RELU",
    "adamw",
    "sgdd",
    "spiral",
    "mlpp",
    "transformer",
    "cuda:0",
    "",
    " ",
    "none",
    "null",
    "~",
    "0",
    "名前",
    "na\u0000me",
    "a" * 300,
    "../../etc/passwd",
    "{name: mlp}",
    "[mlp]",
    "mlp\n",
]
UNKNOWN_KEYS = [
    "nam",
    "Name",
    "depth",
    "lr",
    "widths",
    "conv",
    "pool",
    "momentum",
    "betas",
    "epoch",
    "",
    "1",
    "a.b",
    "<<",
    "__class__",
    "model_config",
    "_located",
    "名前",
    "x" * 1000,
]
# Values that sit outside every bound the schema has, or have the wrong type: safe to
# hand to dlx.check, which then builds nothing big.
NASTY = [
    None,
    True,
    False,
    "yes",
    "off",
    "",
    " ",
    "nan",
    "1e3",
    "0x10",
    LONG,
    "名前",
    "\t",
    0,
    -1,
    1,
    -0.0,
    0.5,
    -2.5,
    10**12,
    2**63,
    -(2**63),
    10**400,
    1e308,
    -1e308,
    5e-324,
    math.nan,
    math.inf,
    -math.inf,
    [],
    [1, 2],
    [None],
    [[[]]],
    {},
    {"a": 1},
    {"name": None},
    {"name": {"name": "relu"}},
    b"\xff\xfe",
    {"name": "mlp", "depth": 2},
]


def numbers_near(value) -> list:
    """Out-of-range and wrong-type variants of a number from an example."""
    out = [
        0,
        -value,
        -1,
        value + 0.5,
        str(value),
        [value],
        {"value": value},
        10**12,
        2**63,
        1e308,
        -1e308,
        math.nan,
        math.inf,
        -math.inf,
        bool(value),
    ]
    if isinstance(value, float):
        out += [value * 1e300, -value, 0.0]
    return out


def nested(value, depth: int, kind: str):
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


any_value = st.one_of(
    st.sampled_from(NASTY),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=8),
    st.recursive(
        st.none() | st.integers() | st.text(max_size=5),
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
        max_leaves=8,
    ),
)


# ---------------------------------------------------------------- mutations as data


def key_paths(node, prefix=()) -> list[tuple]:
    """Every path to a value inside a config tree (keys and list indices)."""
    out = []
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return out
    for k, v in items:
        out.append(prefix + (k,))
        out += key_paths(v, prefix + (k,))
    return out


def get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def put(tree, path, value):
    if not path:
        return value
    get(tree, path[:-1])[path[-1]] = value
    return tree


@st.composite
def mutated_config(draw, names=tuple(EXAMPLES), values=any_value, max_nesting: int = 60) -> tuple[str, object]:
    """An example config with 1-3 mutations applied: (example name, data)."""
    name = draw(st.sampled_from(names))
    tree = copy.deepcopy(BASES[name])
    for _ in range(draw(st.integers(1, 3))):
        paths = key_paths(tree) if isinstance(tree, (dict, list)) else []
        op = draw(
            st.sampled_from(["drop", "replace", "number", "rename", "add_key", "wrap_list", "as_items", "nest", "top"])
        )
        if op == "top" or not paths:
            # The whole document replaced: a list, a scalar, nothing.
            tree = draw(st.sampled_from([None, [], [tree], "data", 42, {}, {"data": tree}]))
            continue
        path = draw(st.sampled_from(paths))
        value = get(tree, path)
        parent = get(tree, path[:-1])
        if op == "drop":
            del parent[path[-1]]
        elif op == "replace":
            # A copy: the pool's lists and dicts are shared, and later mutations edit in place.
            put(tree, path, copy.deepcopy(draw(values)))
        elif op == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            put(tree, path, draw(st.sampled_from(numbers_near(value))))
        elif op == "rename" and isinstance(value, str):
            put(tree, path, draw(st.sampled_from(UNKNOWN_NAMES + [value.upper(), value[:-1], value + "s"])))
        elif op == "add_key" and isinstance(parent, dict):
            parent[draw(st.sampled_from(UNKNOWN_KEYS))] = copy.deepcopy(draw(values))
        elif op == "wrap_list":
            put(tree, path, [value])
        elif op == "as_items" and isinstance(value, dict):
            put(tree, path, [list(kv) for kv in value.items()])
        elif op == "nest":
            put(tree, path, nested(value, draw(st.integers(1, max_nesting)), draw(st.sampled_from(["list", "map"]))))
        else:
            put(tree, path, copy.deepcopy(draw(values)))
    return name, tree


def as_yaml(tree, flow: bool) -> bytes:
    return yaml.safe_dump(tree, sort_keys=False, default_flow_style=flow, allow_unicode=True, width=10**6).encode(
        "utf-8"
    )


@fuzz(300)
@given(case=mutated_config(), flow=st.booleans())
def test_mutated_example_configs_load_or_fail_with_a_config_error(tmp_path_factory, case, flow):
    _, tree = case
    path = write(tmp_path_factory.mktemp("fuzz"), as_yaml(tree, flow))
    outcome(lambda: load_config(path))


# ---------------------------------------------------------------- mutations as bytes

SNIPPETS = [
    "seed: !!python/object/apply:os.system ['touch PWNED']",
    "seed: !!python/object/new:os.system ['touch PWNED']",
    "seed: !!python/name:os.system",
    "activation: !!binary cmVsdQ==",
    "activation: !!set {relu, tanh}",
    "activation: !!omap [{name: relu}]",
    "seed: !!timestamp 2001-12-14",
    "seed: !!float 1",
    "seed: !!str 1",
    "seed: !!null ''",
    "activation: !relu relu",
    "activation: !<tag:example.com,2000:x> relu",
    "base: &b {name: adam, lr: 0.1}\noptimizer: *b",
    "base: &b {name: adam}\noptimizer: {<<: *b, lr: 0.1}",
    "optimizer: *undefined",
    "x: &a [*a]",
    "data: &a {name: spirals, self: *a}",
    "l0: &l0 [a, a, a, a, a, a, a, a, a, a]\nl1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]\n"
    "l2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]\nl3: &l3 [*l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2]\n"
    "l4: &l4 [*l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3]\nl5: &l5 [*l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4]\n"
    "l6: &l6 [*l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5]\nl7: &l7 [*l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6]\n"
    "seed: *l7",
    "---",
    "--- !!map",
    "...",
    "%YAML 1.1\n---",
    "%TAG !e! tag:example.com,2000:\n---",
    "%FOO bar",
    "? [a, b]\n: 1",
    "? {a: 1}\n: 1",
    "~: 1",
    "1.5: 1",
    "yes: 1",
    "null: x",
    '"": 1',
    "\tseed: 1",
    "seed: 1\n\tseed: 2",
    "seed:\n  - 1\n - 2",
    "seed: [1, 2",
    "seed: {a: 1",
    "seed: 'abc",
    'seed: "\\xff\\u0000"',
    "seed: |\n  block\n  text",
    "seed: >-\n  folded",
    "seed: " + "[" * 3000 + "]" * 3000,
    "seed: " + "{a: " * 2000 + "1" + "}" * 2000,
    "seed: " + "- " * 500 + "1",
    "name: " + "x" * 20_000,
    "x" * 20_000 + ": 1",
    "seed: 1" + " # comment" * 1000,
    "seed: 123456789012345678901234567890123456789012345678901234567890",
    "seed: .nan",
    "seed: -.inf",
    "seed: 0o17",
    "seed: 0x_1f",
    "seed: 1_000",
    "seed: 1:20",
]
BAD_BYTES = [
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"\x00",
    b"\x1b[31m",
    b"\xef\xbb\xbf",
    b"\r",
    b"\r\n",
    b"\x85",
    b"\xe2\x80\xa8",
    b"\x7f",
    b"\xf4\x90\x80\x80",
]


@st.composite
def mangled_bytes(draw) -> bytes:
    """An example file's bytes with 1-3 edits: snippets, duplicated lines, bad bytes, cuts."""
    name = draw(st.sampled_from(list(EXAMPLES)))
    text = EXAMPLES[name].read_bytes()
    for _ in range(draw(st.integers(1, 3))):
        lines = text.split(b"\n")
        i = draw(st.integers(0, len(lines)))
        op = draw(
            st.sampled_from(
                [
                    "snippet",
                    "snippet",
                    "duplicate",
                    "tagged_value",
                    "bytes",
                    "random_bytes",
                    "truncate",
                    "delete_line",
                    "indent",
                    "empty",
                ]
            )
        )
        if op == "snippet":
            lines.insert(i, draw(st.sampled_from(SNIPPETS)).encode())
        elif op == "duplicate" and lines:
            j = min(i, len(lines) - 1)
            lines.insert(j, lines[j])
        elif op == "tagged_value":
            # A tag, an anchor or an alias in front of one of the file's own values.
            j = min(i, len(lines) - 1)
            key, colon, value = lines[j].partition(b":")
            if colon:
                prefix = draw(
                    st.sampled_from(
                        [
                            b"!!python/object/apply:os.system",
                            b"!!str",
                            b"!!int",
                            b"!!float",
                            b"!!binary",
                            b"!!map",
                            b"!!seq",
                            b"!x",
                            b"&anchor",
                            b"*anchor",
                            b"&a *a",
                            b"!!set",
                        ]
                    )
                )
                lines[j] = key + b": " + prefix + b" " + value.strip()
        elif op == "bytes":
            j = min(i, len(lines) - 1)
            at = draw(st.integers(0, len(lines[j])))
            lines[j] = lines[j][:at] + draw(st.sampled_from(BAD_BYTES)) + lines[j][at:]
        elif op == "random_bytes":
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.binary(min_size=1, max_size=6)) + text[at:]
            continue
        elif op == "truncate":
            text = text[: draw(st.integers(0, len(text)))]
            continue
        elif op == "delete_line" and i < len(lines):
            del lines[i]
        elif op == "indent" and i < len(lines):
            lines[i] = draw(st.sampled_from([b" ", b"  ", b"\t", b"    "])) + lines[i]
        elif op == "empty":
            text = draw(
                st.sampled_from(
                    [b"", b"\n", b"---\n", b"---\n...\n", b"# only a comment\n", b"~\n", b"\xef\xbb\xbf", b"\x00"]
                )
            )
            continue
        text = b"\n".join(lines)
    return text


@fuzz(300)
@given(data=mangled_bytes())
def test_mangled_config_bytes_load_or_fail_with_a_config_error(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz")
    path = write(folder, data)
    cwd = os.getcwd()
    os.chdir(folder)  # a python tag that ran would leave PWNED here
    try:
        result = outcome(lambda: load_config(path))
        # parse_yaml alone (sweeps read their specs with it): a mapping, or a ConfigError.
        try:
            parsed = parse_yaml(data, "fuzz.yaml")
        except ConfigError as e:
            assert e.problems and str(e)
            assert result == "error"
        else:
            assert isinstance(parsed.data, dict)
    finally:
        os.chdir(cwd)
    assert not (folder / "PWNED").exists()


# ---------------------------------------------------------------- --set overrides


def _set_keys() -> list[str]:
    keys = set()
    for tree in BASES.values():
        for path in key_paths(tree):
            keys.add(".".join(map(str, path)))
    return sorted(keys)


SET_KEYS = _set_keys() + [
    "",
    ".",
    "..",
    "a..b",
    "model.",
    ".model",
    "0",
    "0.0",
    "model.layers.999",
    "model.layers.-1",
    "train.batch_size.x",
    "seed.x.y",
    "data.name.name",
    "optimizer.schedule",
    "optimizer.schedule.name",
    "x" * 1000,
    "名前",
    "a b",
    "model.layers.0.conv",
    "model.widths.0",
    "regularization.early_stopping.patience",
    "__class__",
    "model.__dict__",
    "data.n_train",
]
SET_VALUES = [
    "",
    " ",
    "1",
    "-1",
    "0",
    "1e308",
    "-1e308",
    "1e-400",
    ".nan",
    ".inf",
    "-.inf",
    "nan",
    "inf",
    "yes",
    "no",
    "on",
    "null",
    "~",
    "[",
    "]",
    "{",
    "{a: 1",
    "[1, 2]",
    "{}",
    "[]",
    "{name: relu}",
    "relu",
    "sigmod",
    "adam",
    "mlp",
    "'quoted",
    '"x"',
    "*alias",
    "&a [*a]",
    "&a x",
    "!!binary AAAA",
    "!!python/object/apply:os.system ['touch PWNED']",
    "!!set {a}",
    "!x y",
    "a: b",
    "- 1",
    "a=b",
    "==",
    "#comment",
    "1 # two",
    "---",
    "...",
    "%YAML 1.1",
    "\t",
    "\x00",
    "\ud800",
    "[" * 3000 + "]" * 3000,
    "{a: " * 2000 + "1" + "}" * 2000,
    "x" * 20_000,
    "1_000",
    "0x1f",
    "123456789012345678901234567890",
    "2001-12-14",
    "full",
    "epoch",
    "cuda:99999999999999999999",
]


@st.composite
def set_strings(draw) -> list[str]:
    out = []
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(SET_KEYS) | st.text(max_size=12))
        value = draw(st.sampled_from(SET_VALUES) | st.text(max_size=20))
        out.append(
            draw(
                st.sampled_from(
                    [f"{key}={value}", f"{key}={value}", key, f"{key} = {value}", f"={value}", f"{key}=={value}"]
                )
            )
        )
    return out


@fuzz(200)
@given(name=st.sampled_from(list(EXAMPLES)), sets=set_strings())
def test_fuzzed_set_overrides_load_or_fail_with_a_config_error(tmp_path_factory, name, sets):
    folder = tmp_path_factory.mktemp("fuzz")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        outcome(lambda: load_config(EXAMPLES[name], sets))
    finally:
        os.chdir(cwd)
    assert not (folder / "PWNED").exists()


# ---------------------------------------------------------------- the build step


@pytest.fixture
def restore_torch_threads():
    # A config's train.threads sets torch's thread count for the whole process.
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@fuzz(60)
@given(
    case=mutated_config(names=tuple(BUILDABLE), values=st.sampled_from(NASTY), max_nesting=5),
    sets=st.lists(
        st.sampled_from(["train.epochs=1", "train.threads=1", "data.n_train=200", "data.n_test=50", "train.steps=3"]),
        max_size=2,
    ),
)
def test_mutated_configs_pass_check_or_fail_with_a_dlx_error(tmp_path_factory, restore_torch_threads, case, sets):
    """dlx.check loads the data and builds model, init and optimizer: still only DlxErrors."""
    _, tree = case
    path = write(tmp_path_factory.mktemp("fuzz"), as_yaml(tree, flow=True))
    n = torch.get_num_threads()
    try:
        outcome(lambda: dlx.check(path, sets), allowed=(DlxError,))
    finally:
        torch.set_num_threads(n)


# ---------------------------------------------------------------- valid mutations are valid


@st.composite
def in_range_change(draw) -> tuple[str, list[str]]:
    """An example with sizes and rates changed within their documented ranges."""
    name = draw(
        st.sampled_from(
            [
                n
                for n in BUILDABLE
                if _name(BASES[n], "model") in ("mlp", "resnet")
                and "widths" not in BASES[n]["model"]
                # the modes instrument measures a linear net only: another activation is out of range
                and not (BASES[n].get("instruments") or {}).get("modes")
            ]
        )
    )
    sets = [f"optimizer.lr={draw(st.floats(1e-6, 10.0))!r}", f"seed={draw(st.integers(0, 2**32 - 1))}"]
    if _name(BASES[name], "model") == "mlp":
        # a norm layer needs a hidden layer to act on (depth 0 with one is refused, rightly)
        normed = (BASES[name].get("regularization") or {}).get("norm", "none") != "none"
        sets += [f"model.width={draw(st.integers(1, 256))}", f"model.depth={draw(st.integers(int(normed), 12))}"]
    else:
        sets += [f"model.width={draw(st.integers(1, 64))}", f"model.blocks={draw(st.integers(0, 12))}"]
    sets.append(f"activation={draw(st.sampled_from(['relu', 'tanh', 'sigmoid', 'gelu', 'elu', 'leaky_relu']))}")
    return name, sets


@fuzz(30)
@given(change=in_range_change())
def test_in_range_changes_to_an_example_validate(change):
    name, sets = change
    assert outcome(lambda: load_config(EXAMPLES[name], sets)) == "valid"


def test_the_generators_produce_both_outcomes(tmp_path):
    """Guards the fuzzing itself: the mutations reach valid configs as well as errors."""
    seen = {"valid": 0, "error": 0}

    @fuzz(200)
    @given(case=mutated_config())
    def sample(case):
        path = write(tmp_path, as_yaml(case[1], flow=True))
        seen[outcome(lambda: load_config(path))] += 1

    sample()
    assert seen["valid"] >= 10 and seen["error"] >= 100, seen


# ---------------------------------------------------------------- what the fuzzing found
# Each test pins one input that used to end in a traceback (or a hang) instead of a
# ConfigError. TINY is a small valid config; `check` goes through dlx.check, the
# build step `dlx validate` and `dlx train` run.

TINY = (
    "seed: 0\ndata: {name: spirals, n_train: 256, n_test: 128}\nmodel: {name: mlp, depth: 2, width: 16}\n"
    "train: {epochs: 1, batch_size: 32, log_every: 4}\n"
)


def only_problem(path: Path, sets=()) -> Problem:
    from unittest import mock

    from dlx.run.trainer import Trainer

    # "Refused at once": from the config text alone, before any data is made or model built.
    with mock.patch.object(Trainer, "__init__", side_effect=AssertionError("a bad config reached the build")) as built:
        with pytest.raises(ConfigError) as info:
            dlx.check(path, list(sets))
    assert not built.called, "a bad config must be refused before the data and the model are built"
    assert len(info.value.problems) == 1, [str(p) for p in info.value.problems]
    return info.value.problems[0]


@pytest.mark.parametrize(
    "value, line",
    [
        ("[" * 5000 + "]" * 5000, 5),
        ("{a: " * 3000 + "1" + "}" * 3000, 5),
        # Block style: the line where the nesting passes 64 levels.
        ("\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 400)) + "  " * 400 + "1", 68),
    ],
    ids=["flow_lists", "flow_mappings", "block_mappings"],
)
def test_nesting_deeper_than_any_config_is_a_problem_not_a_recursion_error(tmp_path, value, line):
    # Was: RecursionError from PyYAML's composer.
    p = only_problem(write(tmp_path, f"{TINY}seed: {value}\n".encode()))
    assert "nested more than 64 levels" in p.message
    assert p.line == line


def test_nesting_deeper_than_any_config_in_a_set_value_cites_the_set(tmp_path):
    p = only_problem(write(tmp_path, TINY.encode()), ["seed=" + "[" * 5000])
    assert p.source and p.source.startswith("--set seed=[[[")
    assert "not valid YAML" in p.message and "nested" in p.message


@pytest.mark.parametrize(
    "text", ["x: &a [1, *a]", "data: &a {name: spirals, n_train: 256, again: *a}"], ids=["list", "mapping"]
)
def test_an_alias_inside_its_own_anchor_is_a_problem_not_a_recursion_error(tmp_path, text):
    # Was: RecursionError walking the (cyclic) tree for key lines.
    p = only_problem(write(tmp_path, f"{TINY}{text}\n".encode()))
    assert "alias *a refers to the collection it is inside" in p.message
    assert p.line == 5


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    # Ten lines of [*a, *a, ...] expand to 10^9 values; was: minutes walking them.
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 9)]
    text = TINY + "\n".join(lines) + "\nseed: *l8\n"
    from unittest import mock

    import yaml

    # At once: refused while composing the nodes, before a single value is built from them.
    with mock.patch.object(yaml.constructor.BaseConstructor, "construct_document") as constructed:
        p = only_problem(write(tmp_path, text.encode()))
    assert not constructed.called
    assert "aliases expanded" in p.message and "100000" in p.message


def test_ordinary_anchors_aliases_and_merge_keys_still_work(tmp_path):
    text = (
        "data: {name: teacher, n_train: 64, n_test: 32, hidden: &w [8, 8]}\n"
        "model: {name: mlp, widths: *w}\n"
        "optimizer: &opt {name: adam, lr: 0.01}\n"
        "train: {<<: {epochs: 1, batch_size: 8}, loss: mse}\n"
    )
    cfg = dlx.check(write(tmp_path, text.encode()))
    assert cfg.model.widths == [8, 8] and cfg.data.hidden == [8, 8]
    assert cfg.train.epochs == 1 and cfg.train.loss == "mse"


@pytest.mark.parametrize("char, line", [(b"\x00", 1), (b"\x1b", 3), (b"\x7f", 5)])
def test_a_control_character_is_a_problem_with_its_line(tmp_path, char, line):
    # Was: yaml.reader.ReaderError raised before parse_yaml's error handling.
    lines = TINY.encode().split(b"\n")
    lines[line - 1] = char + lines[line - 1]
    p = only_problem(write(tmp_path, b"\n".join(lines)))
    assert f"U+{ord(char):04X}" in p.message and "remove it" in p.message
    assert p.line == line


@pytest.mark.parametrize(
    "tagged", ["!!int leaky_relu", "!!float x", "!!bool maybe", "!!timestamp 1", "!!timestamp 2001-13-45"]
)
def test_a_tag_that_does_not_fit_its_value_is_a_problem_not_a_value_error(tmp_path, tagged):
    # Was: ValueError / KeyError / AttributeError from PyYAML's constructors.
    p = only_problem(write(tmp_path, f"{TINY}activation: {tagged}\n".encode()))
    assert f"the tag {tagged.split()[0]} does not fit" in p.message and "remove the tag" in p.message
    assert p.line == 5


def test_a_huge_value_is_quoted_short(tmp_path):
    p = only_problem(write(tmp_path, f"{TINY}name: {'x' * 100_000}\n".encode()))
    assert p.path == "name" and len(p.message) < 300
    assert "is not a valid name" in p.message


def test_a_validator_message_quoting_a_huge_value_is_clipped(tmp_path):
    text = TINY.replace("log_every: 4", f"log_every: 4, device: {'x' * 100_000}")
    p = only_problem(write(tmp_path, text.encode()))
    assert p.path == "train.device" and len(p.message) < 600
    assert "characters left out" in p.message and p.message.endswith("mps)")


@pytest.mark.parametrize(
    "sets, path, says",
    [
        # Each was an exception from numpy or torch while dlx.check built the run.
        (["data.n_train=1000000000000"], "data", "numbers, more than the"),
        (["data.name=teacher", "data.hidden=[1000000000000]", "train.loss=mse"], "data", "numbers, more than the"),
        (["data.name=blobs", "data.dim=1000000000"], "data", "numbers, more than the"),
        (
            [
                "data.name=copy",
                "data.length=10000",
                "data.delay=10000",
                "data.symbols=1000",
                "model={name: gru, head: many_to_many}",
            ],
            "data",
            "numbers, more than the",
        ),
        (["train.threads=2147483648"], "train.threads", "less than or equal to 1024"),
        (["train.log_every=1000000000000"], "train.log_every", "less than or equal to 10000"),
        (["train.device=cuda:99999999999999999999"], "train.device", "not a valid device"),
        (
            ["model.depth=null", "model.width=null", "model.widths=[1000000000000]"],
            "model.widths.0",
            "less than or equal to 1000000",
        ),
        (["model.width=1000000"], "model", "weights in the hidden layers"),
    ],
)
def test_a_size_no_machine_can_build_is_a_problem_not_an_allocator_error(tmp_path, sets, path, says):
    n = torch.get_num_threads()
    try:
        p = only_problem(write(tmp_path, TINY.encode()), sets)
    finally:
        torch.set_num_threads(n)
    assert p.path == path and says in p.message, str(p)


def test_a_cnn_head_wider_than_any_machine_is_a_problem(tmp_path):
    text = (
        "data: {name: blobs, n_train: 64, n_test: 32}\nmodel: {name: cnn, layers: [{conv: 2}], head: [1000000000000]}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text.encode()))
    assert "model.head.0" in [p.path for p in info.value.problems]


def test_sizes_at_their_documented_limits_still_validate(tmp_path):
    cfg = load_config(
        write(tmp_path, TINY.encode()),
        [
            "train.threads=1024",
            "train.log_every=10000",
            "train.device=cuda:7",
            "data.n_train=1000000",
            "model.width=4096",
            "model.depth=20",
        ],
    )
    assert cfg.train.threads == 1024 and cfg.data.n_train == 1_000_000 and cfg.model.width == 4096


@pytest.mark.parametrize(
    "value", ["!!python/object/apply:os.system ['touch PWNED']", "!!python/name:os.system", "&a [*a]", "*nowhere"]
)
def test_a_set_value_with_a_tag_or_alias_is_a_problem_citing_the_set_and_never_runs(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    p = only_problem(write(tmp_path, TINY.encode()), [f"seed={value}"])
    assert p.source == f"--set seed={value}"
    assert not (tmp_path / "PWNED").exists()


# ---------------------------------------------------------------- the real command

NASTY_FILES = {
    "deep.yaml": f"{TINY}seed: {'[' * 5000}{']' * 5000}\n".encode(),
    "bomb.yaml": (
        TINY
        + "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    ).encode(),
    "tag.yaml": f"{TINY}activation: !!int leaky_relu\n".encode(),
    "huge.yaml": TINY.replace("n_train: 256", "n_train: 1000000000000").encode(),
}


def test_dlx_validate_on_nasty_files_exits_2_without_a_traceback(tmp_path):
    for name, data in NASTY_FILES.items():
        write(tmp_path, data, name)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Started together: each `dlx validate` imports torch (~3 s).
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "dlx", "validate", name],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in NASTY_FILES
    }
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 2, (name, proc.returncode, out, err)
            assert "Traceback" not in err + out, (name, err)
            assert name in err and "problem" in err, (name, err)
    finally:
        for proc in procs.values():  # a hung one (an alias bomb, before the fix) must not outlive the test
            proc.kill()
            proc.wait()
