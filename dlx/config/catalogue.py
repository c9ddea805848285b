"""The example configs: one per concept, each explained by its own header comment.

They ship inside the package, in dlx/example_configs/ (the clone's top-level
configs/ is a symlink to it, so `dlx train configs/NAME.yaml` works there), and
every command that takes a config also takes an example's bare name
(`dlx train quickstart`): resolve_config() is the one place that decides.
`dlx examples` lists them as a course, in the order of COURSE.

Every example opens with a comment block that a person reads first and
that `dlx examples` (and tests/test_examples.py) read as data:

    # NAME: the claim, in one or two lines (the first line is the summary).
    #
    #   dlx train configs/NAME.yaml              <- the commands to run (indented)
    #
    # What to look at, with measured numbers ...
    # concept: vanishing gradients              <- the CONCEPTS.md row it shows
    # expect: vanishing                         <- verdict kinds the run must show
    # test: --set train.epochs=2                <- the scaled-down run the test does
    #        (or `# test: skip <why>` for an example too slow or with nothing to run)
    # look: boundary, units                     <- the panels that show it (dlx plot --panels),
    #                                              optional; the examples on init, activations,
    #                                              depth and regularization all name theirs

A papers example (COURSE's "papers" section) reproduces a published result and says
so in three or more lines, which `dlx examples check NAME` reads:

    # paper: Glorot & Bengio, 2010, Understanding the difficulty of training deep ...
    # claim: one sentence: what the paper found that this run shows
    # expected: act_var_gain = 0.33 +- 0.04   <- one or more lines, all must hold
    # vs: --set init=xavier_uniform            <- optional: a run trained beside it, for
    #                                             an `expected: MEASURE / vs ...` line
    #                                             (or `vs.MEASURE ...`: the control's own)
    # over: model.width=1,2,4,8                <- optional: one run per value, for a measure
    #                                             of the family (smallest_that_fits)
    # procedure: ticket rounds=8 rate=0.2      <- optional: many trainings instead of one (a
    #                                             lottery ticket, a coordinate check), for
    #                                             the measures of its record

The `# expected:` grammar (a measure name, a comparison, a number) and the measures
are dlx.config.measures': a malformed line or an unknown measure is a header problem.

`expect` lists every verdict kind the run shows (summary.json "verdicts"), or
"invalid" for a config made to be refused by `dlx validate`; for a sweep spec it
is the best trial's verdict. Sweep specs need no `# test:` line.

The block ends at the first line that is not a comment. Parsing is plain text
plus one yaml.safe_load (to tell sweep specs from training configs), so listing
the examples never imports torch.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dlx.config.measures import MEASURES, Expected, parse_expected, parse_procedure
from dlx.core.errors import DlxError, UsageError
from dlx.diagnosis.engine import KINDS

# The verdict kinds dlx/diagnose.py can give (summary.json "verdicts"), plus
# "invalid" for a config made to be refused by `dlx validate` (broken.yaml).
VERDICT_KINDS = KINDS  # the engine owns its kinds
EXPECT_KINDS = VERDICT_KINDS + ("invalid",)

_FIELD = re.compile(r"^(concept|expect|test|look|paper|claim|vs|over|procedure)\s*:\s*(.*)$")
# Not in _FIELD: an example may have several, and "expect" must not swallow it.
_EXPECTED_FIELD = re.compile(r"^expected\s*:\s*(.*)$")
PAPERS = "papers"  # the COURSE section whose examples `dlx examples check` checks


@dataclass
class Example:
    """One example config, as its header comment describes it."""

    name: str  # the file's stem: configs/NAME.yaml
    path: Path
    header: str  # the comment block without its "# " prefixes
    claim: str = ""  # the first line, without a leading "NAME:"
    concept: str = ""
    commands: list[str] = field(default_factory=list)  # the `dlx ...` lines, in order
    expect: list[str] = field(default_factory=list)
    # --set overrides for the scaled-down test run; None when the test skips it.
    test_overrides: list[str] | None = None
    test_skip: str | None = None  # why the test does not run it (from `# test: skip ...`)
    look: list[str] = field(default_factory=list)  # the panels to look at (dlx plot --panels)
    sweep: bool = False  # a `dlx sweep` spec (base: + space:), not a training config
    problems: list[str] = field(default_factory=list)  # what the header lacks or gets wrong
    # A papers example's (empty otherwise): the paper, its claim, what must hold, and
    # the --set overrides of the run trained beside it for `MEASURE / vs` lines.
    paper: str = ""
    paper_claim: str = ""
    expected: list[Expected] = field(default_factory=list)
    vs_overrides: list[str] | None = None
    # `# over: KEY=V1,V2,...`: a papers example whose claim is about a family of runs (the
    # smallest width that fits): one run per value, read by the measures made for it.
    over: tuple[str, list[str]] | None = None
    # `# procedure: NAME KEY=VALUE ...`: many trainings instead of one (measures.PROCEDURES):
    # its name and every argument (given, or its default).
    procedure: tuple[str, dict] | None = None

    @property
    def is_paper(self) -> bool:
        """Whether it reproduces a paper's result (a `# paper:` line): `dlx examples check` runs it."""
        return bool(self.paper)

    @property
    def runnable(self) -> bool:
        """Whether the test trains it (a training config with `# test:` overrides)."""
        return self.test_overrides is not None and not self.sweep and self.expect != ["invalid"]


# The course `dlx examples` walks through: sections in teaching order, each example
# once, in the order to read them. The one place that orders the examples (a test
# holds every shipped example to exactly one section); examples that are in no
# section (a --dir folder of one's own) are listed last, under "other".
COURSE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("basics", ("quickstart", "backprop_by_hand", "mnist_mlp", "teacher_regression", "mse_vs_cross_entropy", "broken")),
    (
        "initialization",
        (
            "zero_init",
            "init_boundaries",
            "exploding",
            "tanh_normal_saturation",
            "vanishing_sigmoid",
            "layerwise_pretraining",
            "relu_he",
            "xavier_deep_relu",
        ),
    ),
    ("activations", ("activations_side_by_side", "dead_relu_high_lr")),
    ("normalization", ("unnormalized_inputs", "batchnorm", "residual_depth")),
    (
        "optimizers",
        (
            "batch_size_gd_vs_sgd",
            "edge_of_stability",
            "saddle_points",
            "lr_too_low",
            "lr_too_high",
            "momentum_nesterov",
            "adaptive_optimizers",
            "lr_schedules",
            "gradient_clipping",
            "sweep_optimizers",
            "sweep_mnist_tpe",
        ),
    ),
    (
        "regularization",
        (
            "small_data_overfits",
            "class_imbalance",
            "mnist_augmentation",
            "l1_vs_l2",
            "dropout",
            "ensembles",
            "early_stopping",
        ),
    ),
    ("CNN", ("cnn_mnist", "cnn_pooling", "two_3x3_vs_5x5", "conv_1x1_groups", "dilated_receptive_field")),
    (
        "RNN",
        (
            "gradients_through_time",
            "rnn_vs_lstm_adding",
            "seq_mnist_rnn_vs_lstm",
            "lstm_gru_parameters",
            "exploding_rnn",
            "truncated_bptt",
            "copy_memory",
            "bidirectional_rnn",
        ),
    ),
    ("attention", ("attention_scoring", "self_attention")),
    (
        PAPERS,
        (
            "paper_glorot_bengio",
            "paper_he_relu_depth",
            "paper_pascanu_rnn",
            "paper_pascanu_clipping",
            "paper_saxe_modes",
            "paper_edge_of_stability",
            "paper_boolean_capacity",
            "paper_parity_depth",
            "paper_zhang_random_labels",
            "paper_nakkiran_double_descent",
            "paper_power_grokking",
            "paper_liu_omnigrok",
            "paper_frankle_lottery_ticket",
            "paper_yang_hu_mup",
        ),
    ),
)
OTHER = "other"


def default_dir() -> Path:
    """The examples shipped in the package: dlx/example_configs/ (the clone's configs/ links here)."""
    return Path(__file__).resolve().parent.parent / "example_configs"


def _header_lines(text: str) -> list[str]:
    """The leading comment block, each line without '#' and one following space."""
    out = []
    for line in text.splitlines():
        s = line.strip()
        if not s.startswith("#"):
            break
        body = s[1:]
        out.append(body[1:] if body.startswith(" ") else body)
    return out


def _parse_test(value: str, problems: list[str]) -> tuple[list[str] | None, str | None]:
    """`--set a=1 --set b=2` -> (["a=1", "b=2"], None); `skip why` -> (None, "why")."""
    if value == "skip" or value.startswith("skip "):
        return None, value[4:].strip() or "no reason given"
    try:
        words = shlex.split(value)
    except ValueError as e:
        problems.append(f"'# test:' line is not shell words ({e}); quote values with spaces")
        return None, None
    sets, i = [], 0
    while i < len(words):
        w = words[i]
        if w in ("--set", "-s") and i + 1 < len(words):
            sets.append(words[i + 1])
            i += 2
        elif w.startswith("--set="):
            sets.append(w[len("--set=") :])
            i += 1
        else:
            problems.append(f"'# test:' expects '--set KEY=VALUE' words (or 'skip REASON'), found {w!r}")
            return None, None
    bad = [s for s in sets if "=" not in s]
    if bad:
        problems.append(f"'# test:' overrides need KEY=VALUE, found {', '.join(bad)}")
        return None, None
    return sets, None


def parse_example(path: str | Path) -> Example:
    """An Example from one config file; what its header lacks goes into .problems."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    lines = _header_lines(text)
    ex = Example(name=path.stem, path=path, header="\n".join(lines).strip("\n"))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None  # `dlx validate` says what is wrong; the header can still be listed
    ex.sweep = isinstance(data, dict) and "base" in data and "space" in data
    seen: set[str] = set()
    for line in lines:
        s = line.strip()
        if e := _EXPECTED_FIELD.match(s):
            try:
                ex.expected.append(parse_expected(e.group(1)))
            except ValueError as err:
                ex.problems.append(str(err))
            seen.add("expected")
            continue
        m = _FIELD.match(s)
        if m and m.group(1) not in seen:
            key, value = m.group(1), m.group(2).strip()
            seen.add(key)
            if key == "concept":
                ex.concept = value
            elif key == "expect":
                ex.expect = [k.strip() for k in value.split(",") if k.strip()]
            elif key == "look":
                ex.look = [k.strip() for k in value.split(",") if k.strip()]
            elif key == "paper":
                ex.paper = value
            elif key == "claim":
                ex.paper_claim = value
            elif key == "vs":
                ex.vs_overrides, _ = _parse_test(value, ex.problems)
            elif key == "over":
                ex.over = _parse_over(value, ex.problems)
            elif key == "procedure":
                try:
                    ex.procedure = parse_procedure(value)
                except ValueError as err:
                    ex.problems.append(str(err))
            else:
                ex.test_overrides, ex.test_skip = _parse_test(value, ex.problems)
        elif line[:1].isspace() and s.startswith("dlx "):
            # Commands are indented (as in a terminal transcript); prose that starts
            # with "dlx" at the margin is not one.
            ex.commands.append(s)
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    ex.claim = first[len(ex.name) + 1 :].strip() if first.startswith(ex.name + ":") else first
    ex.problems += _header_problems(ex, seen)
    return ex


def _parse_over(value: str, problems: list[str]) -> tuple[str, list[str]] | None:
    """`KEY=V1,V2,...` as (KEY, [V1, V2, ...]); None with a problem when it is not that."""
    key, eq, values = value.partition("=")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not eq or not key.strip() or len(items) < 2:
        problems.append(f"'# over: {value}' is not 'KEY=V1,V2,...' (two values at least: one run each)")
        return None
    return key.strip(), items


def _header_problems(ex: Example, seen: set[str]) -> list[str]:
    problems = []
    if not ex.header:
        return [
            "no header comment: start the file with '# NAME: the claim', the command, "
            "'# concept:', '# expect:' and '# test:' lines"
        ]
    if not ex.claim or _FIELD.match(ex.claim):
        problems.append("the first comment line should state the claim ('# NAME: what it shows')")
    if not ex.commands:
        problems.append("no command: add a comment line '#   dlx train configs/%s.yaml'" % ex.name)
    if not ex.concept:
        problems.append("no '# concept: NAME' line (the CONCEPTS.md row it shows)")
    if not ex.expect:
        problems.append("no '# expect: KIND[, KIND]' line (valid kinds: %s)" % ", ".join(EXPECT_KINDS))
    for k in ex.expect:
        if k not in EXPECT_KINDS:
            near = difflib.get_close_matches(k, EXPECT_KINDS, n=1, cutoff=0.5)
            problems.append(
                f"'# expect:' kind {k!r} is not a verdict kind"
                + (f"; did you mean {near[0]!r}?" if near else "")
                + f" (valid: {', '.join(EXPECT_KINDS)})"
            )
    if "healthy" in ex.expect and len(ex.expect) > 1:
        problems.append("'# expect:' healthy cannot go with other kinds")
    if "test" not in seen and not ex.sweep and ex.expect != ["invalid"]:
        problems.append(
            "no '# test:' line: give the scaled-down overrides "
            "('# test: --set train.epochs=1') or '# test: skip REASON'"
        )
    return problems + _paper_problems(ex, seen)


def _paper_problems(ex: Example, seen: set[str]) -> list[str]:
    """What a papers example's header lacks: its paper, claim, expected lines, vs run."""
    paper_lines = seen & {"paper", "claim", "expected", "vs", "over", "procedure"}
    if not paper_lines:
        return []
    problems = []
    if not ex.paper:
        problems.append("no '# paper: AUTHORS, YEAR, TITLE' line (the result it reproduces)")
    if not ex.paper_claim:
        problems.append("no '# claim: ...' line (the paper's finding, in one sentence)")
    if "expected" not in seen:
        problems.append("no '# expected: MEASURE OP NUMBER' line (what `dlx examples check` holds it to)")
    if any(e.needs_vs for e in ex.expected) and ex.vs_overrides is None:
        problems.append("'# expected: ... / vs' needs a '# vs: --set KEY=VALUE' line (the run to divide by)")
    over_lines = [e for e in ex.expected if MEASURES[e.measure].over]
    if over_lines and ex.over is None:
        problems.append(
            f"'# expected: {over_lines[0].text}' reads a family of runs: it needs an "
            "'# over: KEY=V1,V2,...' line (one run per value)"
        )
    if ex.over is not None and not over_lines:
        problems.append("'# over:' trains one run per value that no '# expected:' line reads (a measure of the family)")
    procedure = ex.procedure[0] if ex.procedure else None
    for e in ex.expected:
        reads = MEASURES[e.measure].reads
        if reads not in ("run", "family") and reads != procedure:
            problems.append(
                f"'# expected: {e.text}' reads a {reads} record: it needs a '# procedure: {reads} ...' line"
            )
        elif procedure and reads != procedure:
            problems.append(
                f"'# expected: {e.text}' reads a {'family of runs' if reads == 'family' else 'run'}, "
                f"but '# procedure: {procedure}' gives its own record (measures of it: "
                + ", ".join(m.name for m in MEASURES.values() if m.reads == procedure)
                + ")"
            )
    if ex.procedure is not None and ex.over is not None:
        problems.append("'# over:' and '# procedure:' cannot go together: the procedure says what trains")
    if ex.vs_overrides is not None and not any(e.needs_vs for e in ex.expected):
        problems.append("'# vs:' trains a second run that no '# expected: MEASURE / vs ...' line reads")
    if ex.test_overrides is None:
        problems.append("a papers example needs '# test:' overrides (its quick check), not 'skip'")
    return problems


def load_examples(folder: str | Path | None = None) -> list[Example]:
    """Every *.yaml (and .yml) in `folder` (default: the shipped examples), by name."""
    folder = Path(folder) if folder is not None else default_dir()
    if not folder.is_dir():
        raise UsageError(
            f"no example folder at {folder}: pass --dir a folder of example YAML files "
            f"(without --dir: the examples that ship with dlx)"
        )
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")], key=lambda p: p.name)
    return [parse_example(p) for p in files]


def find_example(name: str, folder: str | Path | None = None) -> Example:
    """The example called `name` (a stem, a file name or a path); UsageError with the closest."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return parse_example(name)
    examples = load_examples(folder)
    stem = Path(name).stem if name.endswith((".yaml", ".yml")) else name
    for ex in examples:
        if ex.name == stem:
            return ex
    near = difflib.get_close_matches(stem, [e.name for e in examples], n=1, cutoff=0.5)
    raise UsageError(
        f"no example called {name!r}"
        + (f" (did you mean {near[0]!r}?)" if near else "")
        + "; `dlx examples` lists them all"
    )


def course(examples: list[Example]) -> list[tuple[str, list[Example]]]:
    """The examples grouped and ordered as COURSE says; the rest, by name, under "other"."""
    by_name = {e.name: e for e in examples}
    out = []
    for title, names in COURSE:
        group = [by_name.pop(n) for n in names if n in by_name]
        if group:
            out.append((title, group))
    if by_name:
        out.append((OTHER, sorted(by_name.values(), key=lambda e: e.name)))
    return out


# ---------------------------------------------------------------- a config named by its example


def _bare_name(source: str) -> str | None:
    """ "quickstart" or "quickstart.yaml" -> "quickstart"; a path with a folder in it -> None."""
    if not source or "/" in source or "\\" in source or source in (".", ".."):
        return None
    for ext in (".yaml", ".yml"):
        if source.endswith(ext):
            return source[: -len(ext)]
    return source


def shipped(name: str) -> Path | None:
    """The shipped example a bare name means (quickstart, quickstart.yaml), or None."""
    stem = _bare_name(name)
    if not stem:
        return None
    folder = default_dir()
    for ext in (".yaml", ".yml"):
        if (folder / (stem + ext)).is_file():
            return folder / (stem + ext)
    return None


def resolve_config(source: str | Path, kind: str = "config file") -> Path:
    """The file a command's CONFIG (or sweep SPEC) means; the one rule for every command.

    A path that exists wins; otherwise a bare name (no folder, .yaml optional) of a
    shipped example is that example; otherwise a UsageError that says "not found"
    with the closest example names. kind ("config file" or "sweep spec") words the
    message and picks which examples to suggest.
    """
    path = Path(source)
    if path.exists():
        if path.is_dir():
            raise UsageError(
                f"{kind} {path} is a folder, not a {kind}; give the path of a YAML file "
                f"or an example's name (`dlx examples` lists them)"
            )
        return path
    found = shipped(str(source))
    if found is not None:
        return found
    raise UsageError(f"{kind} {path} not found" + _did_you_mean(path, sweep=kind == "sweep spec"))


def _did_you_mean(path: Path, sweep: bool) -> str:
    """The rest of a "not found" message: the example meant, or the closest names."""
    stem = path.stem if path.suffix in (".yaml", ".yml") else path.name
    try:
        names = [e.name for e in load_examples() if e.sweep == sweep]
    except DlxError:  # no shipped examples (a broken install): say what we can
        names = []
    if stem in names:
        # configs/quickstart.yaml outside the clone: the README's path, the shipped example.
        return (
            f"; the example {stem!r} ships with dlx: give its name ({stem}), "
            f"or `dlx examples copy {stem}` for a copy to edit"
        )
    near = difflib.get_close_matches(stem, names, n=3, cutoff=0.6)
    hint = f" (did you mean the example {' or '.join(repr(n) for n in near)}?)" if near else ""
    return (
        f"{hint}; give the path of a YAML file or an example's name "
        f"(`dlx examples` lists them, e.g. {'sweep_optimizers' if sweep else 'quickstart'})"
    )


# ---------------------------------------------------------------- dlx examples copy


def _needs(ex: Example) -> list[Path]:
    """The other files an example reads, beside it: a sweep spec's base config."""
    if not ex.sweep:
        return []
    base = (yaml.safe_load(ex.path.read_text(encoding="utf-8")) or {}).get("base")
    if isinstance(base, str) and (ex.path.parent / base).is_file():
        return [ex.path.parent / base]
    return []


def run_command(ex: Example, path: Path) -> str:
    """The command that runs an example kept at `path`."""
    verb = "sweep" if ex.sweep else "validate" if ex.expect == ["invalid"] else "train"
    return f"dlx {verb} {shlex.quote(str(path))}"


def copy_example(
    name: str, dest: str | Path = ".", force: bool = False, folder: str | Path | None = None
) -> tuple[Example, list[Path]]:
    """Write an example (and the files it needs) into `dest`: (the example, the paths written).

    The header's commands are rewritten from configs/NAME.yaml to NAME.yaml, so they
    run from `dest` on the copy. An existing file is a UsageError unless force.
    """
    ex = find_example(name, folder)
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} is a file, not a folder to copy {ex.name} into")
    sources = [ex.path, *_needs(ex)]
    targets = [dest / p.name for p in sources]
    there = [t for t in targets if t.exists()]
    if there and not force:
        one = len(there) == 1
        raise UsageError(
            f"{', '.join(str(t) for t in there)} already {'exists' if one else 'exist'}; "
            f"pass --force to overwrite {'it' if one else 'them'}, or copy into another "
            f"folder: dlx examples copy {ex.name} DIR"
        )
    dest.mkdir(parents=True, exist_ok=True)
    for src, target in zip(sources, targets):
        target.write_text(_local_commands(src.read_text(encoding="utf-8")), encoding="utf-8")
    return ex, targets


_CONFIGS_PATH = re.compile(r"(?<![\w/.])configs/(?=[\w.-]+\.ya?ml\b)")


def _local_commands(text: str) -> str:
    """Header comments' configs/NAME.yaml -> NAME.yaml (the copy's folder); YAML lines unchanged."""
    lines = text.splitlines(keepends=True)
    return "".join(_CONFIGS_PATH.sub("", ln) if ln.lstrip().startswith("#") else ln for ln in lines)
