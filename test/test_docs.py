"""The documentation stays usable: README.md is short, every relative link in README.md and docs/*.md points
at an existing file (and heading, for #anchors), and the README's module map names every module of
attn6d_ros/, derived from the file tree, so that a module added without a map line fails here."""

import re
import unicodedata
from pathlib import Path

import pytest
from conftest import REPO

README = REPO / "README.md"
PACKAGE = REPO / "attn6d_ros"
MAX_README_LINES = 200
MAP_HEADING = "## Module map"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
MAP_ENTRY = re.compile(r"^- `([A-Za-z_][A-Za-z0-9_.]*)`:", re.M)


def markdown_files() -> list[Path]:
    return [README, *sorted((REPO / "docs").glob("*.md"))]


def _prose(text: str) -> str:
    """The text without fenced code blocks (links and headings there are code, not markdown)."""
    return FENCE.sub("", text)


def heading_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in ("L", "N"))
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file (repeated headings get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for match in HEADING.finditer(_prose(path.read_text(encoding="utf-8"))):
        anchor = heading_anchor(match.group(1))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        out.add(anchor if count == 0 else f"{anchor}-{count}")
    return out


def broken_links(path: Path) -> list[str]:
    """Relative links of a markdown file whose file (or #anchor in a markdown file) does not exist."""
    text = INLINE_CODE.sub("", _prose(path.read_text(encoding="utf-8")))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, file: ...
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target} (no file {resolved})")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.name})")
    return broken


def package_modules(package: Path) -> set[str]:
    """Dotted names, relative to the package, of every module and subpackage under it (not its own
    __init__)."""
    names = set()
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            names.add(".".join(parts))
    return names


def module_map(readme_text: str) -> list[str]:
    """The module names listed in the README's module map (lines "- `name`: what it is")."""
    assert MAP_HEADING in readme_text, f"README.md has no '{MAP_HEADING}' section"
    section = readme_text.split(MAP_HEADING, 1)[1].split("\n## ", 1)[0]
    return MAP_ENTRY.findall(section)


def map_problems(listed: list[str], modules: set[str]) -> list[str]:
    problems = [f"not in the module map: {name}" for name in sorted(modules - set(listed))]
    problems += [
        f"in the module map but not a module: {name}" for name in sorted(set(listed) - modules)
    ]
    problems += [
        f"listed more than once: {n}" for n in sorted({n for n in listed if listed.count(n) > 1})
    ]
    return problems


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}); move reference text to docs/"
    )


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


def test_module_map_names_every_module() -> None:
    listed = module_map(README.read_text(encoding="utf-8"))
    assert map_problems(listed, package_modules(PACKAGE)) == []


def test_checks_catch_a_new_module_and_a_broken_link(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    for name in ("__init__.py", "a.py", "sub/__init__.py", "sub/b.py", "new.py"):
        (package / name).write_text('"""x"""\n')
    readme = "# t\n\n## Module map\n\n- `a`: one\n- `sub`: two\n- `sub.b`: three\n\n## Next\n- `new`: no\n"
    assert map_problems(module_map(readme), package_modules(package)) == [
        "not in the module map: new"
    ]
    doc = tmp_path / "doc.md"
    doc.write_text("# Top\n\n[ok](#top) [gone](missing.md) [bad](#nowhere) `[code](x.md)`\n")
    assert broken_links(doc) == [
        f"missing.md (no file {tmp_path / 'missing.md'})",
        "#nowhere (no heading #nowhere in doc.md)",
    ]


def test_heading_anchor_matches_github() -> None:
    assert heading_anchor("Without a system ROS: `make`") == "without-a-system-ros-make"
    assert heading_anchor("The demo object's depth") == "the-demo-objects-depth"
    assert (
        heading_anchor("Network-side checks of 2026-12-06") == "network-side-checks-of-2026-12-06"
    )
