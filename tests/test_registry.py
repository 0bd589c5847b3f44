"""A format is declared once, in the registry; config.yaml, the schema and the provenance
follow from it, and a test fails when a committed file does not."""

from __future__ import annotations

import re
import shutil

import jsonschema
import pytest
import yaml

from imgbench import stores
from imgbench.report import provenance
from imgbench.stores import Format, Option, config_files
from tests.conftest import REPO

REGEN = "python -m imgbench.stores.config_files --write"


def _schema() -> dict:
    return yaml.safe_load((REPO / config_files.SCHEMA).read_text())


def _config() -> dict:
    return yaml.safe_load((REPO / config_files.CONFIG).read_text())


def test_committed_files_match_the_registry() -> None:
    problems = config_files.stale()
    assert not problems, "\n".join(problems)


def test_schema_declares_every_option_as_the_registry_does() -> None:
    schema = _schema()
    for opt in stores.option_list():
        prop = schema["properties"].get(opt.name)
        assert prop is not None, f"schema lacks {opt.name}; regenerate: {REGEN}"
        assert prop["default"] == opt.default and prop["description"] == opt.description
        declared = list(opt.type) if isinstance(opt.type, tuple) else opt.type
        assert prop["type"] == declared, f"{opt.name}: {prop['type']} vs {declared}"
        assert opt.source in prop["$comment"]
    sourced = {k for k, p in schema["properties"].items() if "source:" in p.get("$comment", "")}
    assert sourced == set(stores.option_defaults()), f"stale store options; regenerate: {REGEN}"
    assert sorted(schema["required"]) == sorted(schema["properties"]), f"regenerate: {REGEN}"


def test_config_yaml_holds_every_key_with_its_default_and_validates() -> None:
    config, schema = _config(), _schema()
    assert set(config) == set(schema["properties"]), "config.yaml and the schema differ"
    for key, default in stores.option_defaults().items():
        assert config[key] == default, f"config.yaml {key}; regenerate: {REGEN}"
    jsonschema.validate(config, schema)


def test_every_default_passes_its_own_limits() -> None:
    for name, prop in config_files.schema_fragment().items():
        jsonschema.validate(prop["default"], prop)  # e.g. a default outside its enum
        assert name.split("_")[0] in stores.FORMATS


def test_the_test_and_full_configs_run_every_format() -> None:
    tiny = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())["formats"]
    full = yaml.safe_load((REPO / "profiles/full/config.yaml").read_text())["config"]
    (line,) = [re.findall(r"[a-z0-9]+", c[8:]) for c in full if c.startswith("formats=")]
    text = (REPO / config_files.CONFIG).read_text()
    comment = text[text.index("# Registered formats:") : text.index("\nformats:")]
    named = re.findall(r"[a-z0-9]+", comment)
    listed_by = (("tests/configs/tiny.yaml", tiny), ("profiles/full", line))
    for where, listed in (*listed_by, ("config.yaml's comment on formats", named)):
        missing = [f for f in stores.FORMATS if f not in listed]
        assert not missing, f"{where}: add {missing} to its formats"


def test_entries_take_keywords_only() -> None:
    with pytest.raises(TypeError):
        Format({"tuned": "x:Y"})  # type: ignore[misc]
    with pytest.raises(TypeError):
        Option("x_level", "integer", 1, "d", "s")  # type: ignore[misc]


@pytest.fixture
def dummy(monkeypatch: pytest.MonkeyPatch) -> Option:
    opt = Option(
        name="dummy_level",
        type="integer",
        default=3,
        limits={"minimum": 1},
        description="levels of the dummy format",
        source="a test",
    )
    entry = Format(classes={"tuned": "dummy:TunedDummy"}, options=(opt,), packages=("dummylib",))
    monkeypatch.setitem(stores.FORMATS, "dummy", entry)
    return opt


def test_a_new_format_shows_up_everywhere(dummy: Option) -> None:
    assert config_files.schema_fragment()["dummy_level"] == {
        "type": "integer",
        "minimum": 1,
        "default": 3,
        "description": "levels of the dummy format",
        "$comment": "source: a test",
    }
    assert dummy in stores.option_list() and stores.options("dummy", "tuned") == {"dummy_level": 3}
    assert "dummylib" in provenance.packages()
    assert provenance._packages()["dummylib"] is None  # recorded, not installed


def test_a_new_format_fails_until_the_files_are_regenerated(dummy: Option, tmp_path) -> None:
    for path in (config_files.CONFIG, config_files.SCHEMA):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / path, tmp_path / path)
    problems = config_files.stale(tmp_path)
    assert len(problems) == 2 and all(REGEN in p for p in problems)
    assert config_files.main(["--repo", str(tmp_path)]) == 1
    assert config_files.main(["--repo", str(tmp_path), "--write"]) == 0
    assert config_files.stale(tmp_path) == []
    config = yaml.safe_load((tmp_path / config_files.CONFIG).read_text())
    schema = yaml.safe_load((tmp_path / config_files.SCHEMA).read_text())
    assert config["dummy_level"] == 3 and "dummy_level" in schema["required"]
    jsonschema.validate(config, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**config, "dummy_level": 0}, schema)


def test_missing_markers_say_where_to_put_them(tmp_path) -> None:
    (tmp_path / "workflow/schemas").mkdir(parents=True)
    (tmp_path / config_files.CONFIG).write_text("a: 1\n")
    shutil.copy(REPO / config_files.SCHEMA, tmp_path / config_files.SCHEMA)
    with pytest.raises(ValueError, match="config.yaml: marker lines missing"):
        config_files.stale(tmp_path)
