"""Every ```python block of docs/constructs.md and README.md runs (issue 3 item 9)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS = [REPO_ROOT / "docs" / "constructs.md", REPO_ROOT / "README.md"]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
CONSTRUCTS = ("loop", "batch", "subflow", "sleep", "wait", "replay", "stepper", "cli")


def python_blocks(path: Path) -> list[str]:
    return FENCE.findall(path.read_text(encoding="utf-8"))


def sections(path: Path) -> dict[str, str]:
    """`## Heading` -> the text up to the next `## ` heading."""
    found: dict[str, str] = {}
    parts = re.split(r"^## +(.+)$", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        found[title.strip()] = body
    return found


BLOCKS = [
    pytest.param(path, index, code, id=f"{path.name}#{index}")
    for path in DOCS
    for index, code in enumerate(python_blocks(path))
]


def test_docs_exist_and_have_examples() -> None:
    for path in DOCS:
        assert path.is_file(), path
        assert python_blocks(path), f"{path.name} has no python example"


def test_constructs_page_has_a_section_with_an_example_per_construct() -> None:
    page = sections(DOCS[0])
    for construct in CONSTRUCTS:
        matching = [title for title in page if construct in title.lower()]
        assert matching, f"no section for {construct!r} in docs/constructs.md"
        body = page[matching[0]]
        assert FENCE.search(body), f"section {matching[0]!r} has no python example"


def test_constructs_examples_assert_their_results() -> None:
    """The CLI example shells out to `flowcraft`; every other example runs its flow in-process."""
    runners: dict[str, tuple[bool, bool]] = {}
    for title, body in sections(DOCS[0]).items():
        for code in FENCE.findall(body):
            assert "assert" in code, title
            runners[title] = ("asyncio.run" in code, "subprocess" in code)
    assert len(runners) == len(python_blocks(DOCS[0])) == len(CONSTRUCTS)
    for title, (in_process, shells_out) in runners.items():
        expected = (False, True) if title == "CLI" else (True, False)
        assert (in_process, shells_out) == expected, title


LINK = re.compile(r"\]\(([^)\s]+)\)")
LINKED_PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", LINKED_PAGES, ids=lambda page: page.name)
def test_relative_links_resolve_inside_the_repo(page: Path) -> None:
    """A user's checkout holds only this repository: no link may leave it or point at nothing."""
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        resolved = (page.parent / target.split("#", 1)[0]).resolve()
        assert resolved.is_relative_to(REPO_ROOT), f"{page.name}: {target} leaves the repository"
        assert resolved.exists(), f"{page.name}: {target} does not exist"


def test_contract_snapshot_is_linked_and_labelled() -> None:
    contract = REPO_ROOT / "docs" / "contract.md"
    first, rest = contract.read_text(encoding="utf-8").split("\n", 1)
    assert "Snapshot of the binding specification" in first
    assert rest.lstrip("\n").startswith("# flowcraft — public contract\n")
    assert LINK.findall(DOCS[1].read_text(encoding="utf-8")).count("docs/contract.md") == 1


@pytest.mark.parametrize(("path", "index", "code"), BLOCKS)
def test_python_block_runs(path: Path, index: int, code: str,
                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem.lower()}_{index}"}
    exec(compile(code, f"{path.name}[python block {index}]", "exec"), namespace)
