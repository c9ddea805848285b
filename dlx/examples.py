"""The example configs: one per concept, each explained by its own header comment.

Every YAML in configs/ opens with a comment block that a person reads first and
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

from .errors import UsageError

# The verdict kinds dlx/diagnose.py can give (summary.json "verdicts"), plus
# "invalid" for a config made to be refused by `dlx validate` (broken.yaml).
VERDICT_KINDS = ("symmetry", "init_scale", "lr_too_high", "exploding", "vanishing", "vanishing_through_time",
                 "dead_units", "saturation", "diverged", "lr_too_low", "not_learning", "slow", "overfitting",
                 "healthy")
EXPECT_KINDS = VERDICT_KINDS + ("invalid",)

_FIELD = re.compile(r"^(concept|expect|test)\s*:\s*(.*)$")


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
    sweep: bool = False  # a `dlx sweep` spec (base: + space:), not a training config
    problems: list[str] = field(default_factory=list)  # what the header lacks or gets wrong

    @property
    def runnable(self) -> bool:
        """Whether the test trains it (a training config with `# test:` overrides)."""
        return self.test_overrides is not None and not self.sweep and self.expect != ["invalid"]


def default_dir() -> Path:
    """The repository's configs/ folder, beside the dlx package (an editable or source install)."""
    import dlx

    return Path(dlx.__file__).resolve().parents[1] / "configs"


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
            sets.append(w[len("--set="):])
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
        m = _FIELD.match(s)
        if m and m.group(1) not in seen:
            key, value = m.group(1), m.group(2).strip()
            seen.add(key)
            if key == "concept":
                ex.concept = value
            elif key == "expect":
                ex.expect = [k.strip() for k in value.split(",") if k.strip()]
            else:
                ex.test_overrides, ex.test_skip = _parse_test(value, ex.problems)
        elif line[:1].isspace() and s.startswith("dlx "):
            # Commands are indented (as in a terminal transcript); prose that starts
            # with "dlx" at the margin is not one.
            ex.commands.append(s)
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    ex.claim = first[len(ex.name) + 1:].strip() if first.startswith(ex.name + ":") else first
    ex.problems += _header_problems(ex, seen)
    return ex


def _header_problems(ex: Example, seen: set[str]) -> list[str]:
    problems = []
    if not ex.header:
        return ["no header comment: start the file with '# NAME: the claim', the command, "
                "'# concept:', '# expect:' and '# test:' lines"]
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
            problems.append(f"'# expect:' kind {k!r} is not a verdict kind"
                            + (f"; did you mean {near[0]!r}?" if near else "")
                            + f" (valid: {', '.join(EXPECT_KINDS)})")
    if "healthy" in ex.expect and len(ex.expect) > 1:
        problems.append("'# expect:' healthy cannot go with other kinds")
    if "test" not in seen and not ex.sweep and ex.expect != ["invalid"]:
        problems.append("no '# test:' line: give the scaled-down overrides "
                        "('# test: --set train.epochs=1') or '# test: skip REASON'")
    return problems


def load_examples(folder: str | Path | None = None) -> list[Example]:
    """Every configs/*.yaml (and .yml) in `folder` (default: the repository's configs/), by name."""
    folder = Path(folder) if folder is not None else default_dir()
    if not folder.is_dir():
        raise UsageError(f"no example folder at {folder}: the examples live in the dlx repository's "
                         f"configs/; pass --dir PATH/TO/configs")
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
    raise UsageError(f"no example called {name!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
                     + "; `dlx examples` lists them all")
