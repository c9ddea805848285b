"""`dlx list`: every name and every section key a config can use, readable at 80 columns."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from dlx.cli.app import app
from dlx.config.loader import EarlyStopping, Regularization, Train

# What a Python or pydantic repr would leak: a class call, a typing construct, Python literals.
REPR = re.compile(
    r"\b(EarlyStopping|Regularization|Train|FieldInfo|Annotated|Literal|Optional|"
    r"PydanticUndefined|NoneType)\b|<class|\b(None|True|False)\b|=\s*'"
)


def _list(*kind: str) -> str:
    r = CliRunner().invoke(app, ["list", *kind], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    return r.output


def _flat(text: str) -> str:
    """The table's cells joined across wrapped lines (rows of one column read as one text)."""
    return " ".join(text.split())


@pytest.mark.parametrize("kind,section", [("train", Train), ("regularization", Regularization)])
def test_dlx_list_section_shows_every_key_with_its_type_default_and_description(kind, section):
    out = _list(kind)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert not REPR.search(out), REPR.search(out)
    keys = [*section.model_fields]
    if section is Regularization:
        keys += [f"early_stopping.{k}" for k in EarlyStopping.model_fields]
    rows = {line.split("│")[0].strip() for line in out.splitlines() if "│" in line}
    assert set(keys) <= rows
    cells = _flat(" ".join(re.sub(r"[│┃]", " ", line) for line in out.splitlines()))
    for model in (section, EarlyStopping if section is Regularization else section):
        for info in model.model_fields.values():
            assert info.description, "every key has a description"
            assert _flat(info.description) in cells or all(w in cells for w in info.description.split())


def test_dlx_list_train_says_what_the_keys_people_search_for_take():
    out = _list("train")
    row = {line.split("│")[0].strip(): line for line in out.splitlines() if "│" in line}
    assert "int 1..1024 or null" in row["threads"] and "default: null" in out
    assert "int >= 1 or epoch" in row["eval_every"]
    assert "int >= 1 or full" in row["batch_size"]
    assert "true | false" in row["checkpoint"]
    for key in ("checkpoint_every", "tbptt", "log_every"):
        assert key in row


def test_plain_dlx_list_has_every_kind_and_both_sections_and_no_repr_anywhere():
    out = _list()
    for title in (
        "model",
        "data",
        "activation",
        "init",
        "optimizer",
        "schedule",
        "regularization  (--set regularization.KEY=VALUE)",
        "train  (--set train.KEY=VALUE)",
    ):
        assert re.search(rf"^{re.escape(title)}\s*$", out, re.M), title
    assert not REPR.search(out), REPR.search(out)
    assert max(len(line) for line in out.splitlines()) <= 80
    # A default that is a list of URLs is text, not rich markup to be swallowed.
    assert "mirrors=[https://" in out.replace("\n", "")


def test_dlx_list_of_an_unknown_kind_names_the_sections_too():
    r = CliRunner().invoke(app, ["list", "trian"])
    assert r.exit_code == 2
    assert "did you mean 'train'?" in r.output and "regularization" in r.output
