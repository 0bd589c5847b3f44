"""docs/: the generated pages match the code, every config key is described, links resolve."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from imgbench import stores
from imgbench.pipeline import docs

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted(p for p in (REPO / "docs").rglob("*.md") if "results" not in p.parts)


def test_generated_pages_match_the_code() -> None:
    """Regenerating docs/configuration.md and the blocks of docs/formats.md changes nothing."""
    assert docs.stale(REPO) == []


def test_every_schema_property_has_a_description() -> None:
    props = yaml.safe_load((REPO / docs.SCHEMA).read_text())["properties"]
    missing = [k for k, v in props.items() if not str(v.get("description", "")).strip()]
    assert missing == [], f"schema properties without a description: {missing}"


def test_configuration_lists_every_key_once_in_a_group() -> None:
    """Every schema key is in exactly one of config.yaml's groups, with its default."""
    props = yaml.safe_load((REPO / docs.SCHEMA).read_text())["properties"]
    groups = docs.config_groups((REPO / docs.CONFIG).read_text())
    listed = [k for _, keys in groups for k in keys]
    assert sorted(listed) == sorted(props)
    page = (REPO / docs.CONFIGURATION).read_text()
    for key in props:
        assert page.count(f"- **`{key}`**") == 1, key
    cutoffs = yaml.safe_load((REPO / docs.CONFIG).read_text())["cutoffs"]
    assert f"default `{docs.scalar(cutoffs)}`" in " ".join(page.split())  # from config.yaml
    assert "NO DESCRIPTION" not in page


def test_a_changed_description_makes_the_page_stale(tmp_path: Path) -> None:
    """The check can fail: edit one schema description in a copy and the page differs."""
    for rel in (docs.CONFIG, docs.SCHEMA, docs.CONFIGURATION, docs.FORMATS):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    schema = tmp_path / docs.SCHEMA
    text = schema.read_text()
    old = "description: untimed epochs before them"
    assert old in text
    schema.write_text(text.replace(old, "description: something else"))
    assert [str(docs.CONFIGURATION) in line for line in docs.stale(tmp_path)] == [True]
    docs.main(["--write", "--repo", str(tmp_path)])
    assert docs.stale(tmp_path) == []
    assert "something else" in (tmp_path / docs.CONFIGURATION).read_text()


def test_formats_page_has_a_block_per_registered_format() -> None:
    text = (REPO / docs.FORMATS).read_text()
    for fmt in stores.FORMATS:
        assert docs._begin(fmt) in text and docs._end(fmt) in text, fmt
        for opt in stores.FORMATS[fmt].options:
            assert f"`{opt.name}`" in text
    with pytest.raises(ValueError, match="no generated block for format 'dummy'"):
        docs.formats_md(text, ["dummy"])


def test_scalars_read_back_as_yaml() -> None:
    for value in [None, True, 6, 1.5, "2.0", "png", [1, 2], ["a", None]]:
        assert yaml.safe_load(docs.scalar(value)) == value


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_page_lines_and_links(page: Path) -> None:
    """Lines within 100 characters (outside code blocks and tables) and every relative link
    pointing at a file that exists."""
    fence, prose = False, []
    for n, line in enumerate(page.read_text().splitlines(), 1):
        if line.strip().startswith("```"):
            fence = not fence
        elif not fence:
            prose.append(line)
            if not line.startswith(("|", "<!--")):
                assert len(line) <= 100, f"{page.name}:{n} is {len(line)} characters"
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", "\n".join(prose)):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name}: link to missing {target}"
