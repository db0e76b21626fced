"""The documentation holds together: every relative link resolves, and README stays one screen."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = sorted([REPO / "README.md", REPO / "bench/README.md", *(REPO / "docs").glob("*.md")])

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_INLINE = re.compile(r"\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.MULTILINE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def links(text: str) -> list[str]:
    """Every link target of a Markdown text, outside code blocks and code spans."""
    prose = _CODE.sub("", _FENCE.sub("", text))
    return _INLINE.findall(prose) + _REFERENCE.findall(prose)


def anchors(text: str) -> set[str]:
    """The fragment ids GitHub gives the headings of a Markdown text (duplicates get -1, -2)."""
    seen: dict[str, int] = {}
    found = set()
    for _level, title in _HEADING.findall(_FENCE.sub("", text)):
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "").lower()
        slug = "".join(
            char
            for char in plain
            if char in " -_" or unicodedata.category(char)[0] in "LN"  # letters and digits
        ).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken(page: Path, base: Path = REPO) -> list[str]:
    """The relative links of `page` whose file, or whose heading in that file, does not exist
    (each named relative to `base`)."""
    problems = []
    for target in links(page.read_text()):
        if _SCHEME.match(target) or target.startswith("//"):
            continue  # a URL (https:, mailto:): not this repository's to check
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            problems.append(f"{page.relative_to(base)}: {target}: no such file")
        elif (
            fragment and resolved.suffix == ".md" and fragment not in anchors(resolved.read_text())
        ):
            problems.append(f"{page.relative_to(base)}: {target}: no such heading")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(REPO)) for page in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken(page) == []


def test_every_docs_page_is_linked_from_readme() -> None:
    readme = links((REPO / "README.md").read_text())
    linked = {(REPO / target.partition("#")[0]).resolve() for target in readme}
    pages = set((REPO / "docs").glob("*.md"))
    assert pages, "docs/ has no pages"
    assert sorted(str(page.relative_to(REPO)) for page in pages - linked) == []


def test_readme_fits_one_screen_and_keeps_the_test_command() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 80
    # .ci/run takes the test command from README with this pattern: exactly one such line.
    pattern = re.compile(r"^    (.*install\.sh --test.*)$")
    commands = [match[1] for line in lines if (match := pattern.match(line))]
    assert commands == ["./install.sh --test && .venv/bin/pytest"]


def test_the_checker_finds_what_is_broken(tmp_path: Path) -> None:
    """The checks above are only as good as this: made-up pages with each kind of link."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/there.md").write_text(
        "# Exit codes\n\n## Package listing (`scan-root packages`)\n\n## Notes\n\n## Notes\n"
    )
    page = tmp_path / "page.md"
    page.write_text(
        "See [there](sub/there.md), [codes](sub/there.md#exit-codes),\n"
        "[listing](sub/there.md#package-listing-scan-root-packages), [again](sub/there.md#notes-1),\n"
        "[self](#a-heading), [web](https://example.com/x.md), <!-- --> `[code](nowhere.md)`\n\n"
        "# A heading\n\n```\n[fenced](nowhere-either.md)\n```\n\n"
        "[gone](missing.md) and [bad anchor](sub/there.md#no-such-part)\n\n"
        "[ref]: sub/missing-too.md\n"
    )
    assert broken(page, base=tmp_path) == [
        "page.md: missing.md: no such file",
        "page.md: sub/there.md#no-such-part: no such heading",
        "page.md: sub/missing-too.md: no such file",
    ]
