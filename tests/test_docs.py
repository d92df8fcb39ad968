"""The documentation stays inside the repository and in step with the code.

- No docstring or comment in ``src/`` cites notes outside the repository ("spec §4",
  "spec/...", "../shared"): they must cite a page of ``docs/`` instead.
- Every ``docs/<page>.md`` named in ``src/`` exists, and a "section 'Title'" named with it is a
  heading of that page.
- Every bare decision label (``D5``, ``S4``) in a docstring or comment is defined in some docs
  page, so a reader can look it up.
- Every page in the site's navigation exists, and every example script is shown on the
  Examples page (which is how the docs include them).

The strict site build itself (``mkdocs build --strict``: broken links, anchors, docstring
warnings) runs in CI through ``make docs``.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DOCS = ROOT / "docs"

# references to the design notes that live outside the repository (as the before-stop hook
# checks them, plus the notes' folder names)
OUTSIDE = re.compile(
    r"spec (§|S[0-9]|D[0-9]|decision|README|``[a-z_-]+\.md``)|spec/|\.\./shared|shared/(spec|seeds)"
)
DOC_REF = re.compile(
    r"docs/([A-Za-z0-9_./-]+\.md)(?:[,;:]?\s+sections?\s+['\"‘“]([^'\"’”]+)['\"’”])?"
)
LABEL = re.compile(r"(?<![A-Za-z0-9_])([SD][0-9]{1,2})(?![0-9A-Za-z_])")


def _source_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every comment and docstring of a Python file."""
    text = path.read_text(encoding="utf-8")
    out: list[tuple[int, str]] = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            out.append((tok.start[0], tok.string))
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                out.append((body[0].lineno, body[0].value.value))
    return out


def _all_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _headings(page: Path) -> set[str]:
    """Headings of a Markdown page, normalised (no '#', no backticks, lower case)."""
    heads = set()
    in_fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            heads.add(_norm(line.lstrip("#")))
    return heads


def _norm(title: str) -> str:
    return " ".join(title.replace("`", "").strip().rstrip(".").lower().split())


def test_no_reference_to_notes_outside_the_repository() -> None:
    bad = []
    for path in _source_files():
        for lineno, line in enumerate(_all_text(path).splitlines(), 1):
            if OUTSIDE.search(line):
                bad.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not bad, "cite a docs/ page instead of the notes outside the repository:\n" + \
        "\n".join(bad)


def test_docs_pages_named_in_docstrings_exist() -> None:
    missing = []
    for path in _source_files():
        # join wrapped lines so that "docs/x.md, section\n'Title'" is one reference, and string
        # literals continued on the next line ("... section 'Long "\n "title'") into one
        text = " ".join(re.sub(r"[\"']\s*\n\s*[\"']", "", _all_text(path)).split())
        for m in DOC_REF.finditer(text):
            page, section = DOCS / m.group(1), m.group(2)
            where = f"{path.relative_to(ROOT)}: docs/{m.group(1)}"
            if not page.is_file():
                missing.append(f"{where} does not exist")
            elif section is not None and _norm(section) not in _headings(page):
                missing.append(f"{where} has no section '{section}'")
    assert not missing, "\n".join(missing)


def test_decision_labels_are_defined_in_the_docs() -> None:
    docs_text = " ".join(p.read_text(encoding="utf-8") for p in DOCS.rglob("*.md"))
    defined = set(LABEL.findall(docs_text))
    undefined = []
    for path in _source_files():
        for lineno, text in _prose(path):
            for label in LABEL.findall(text):
                if label not in defined:
                    undefined.append(f"{path.relative_to(ROOT)}:{lineno}: {label}")
    assert not undefined, "decision labels that no docs page defines:\n" + "\n".join(undefined)


def _nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav] if nav.endswith(".md") else []
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_pages(item)]
    if isinstance(nav, dict):
        return [p for v in nav.values() for p in _nav_pages(v)]
    return []


def test_every_nav_page_exists() -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    pages = _nav_pages(config["nav"])
    assert len(pages) >= 20
    missing = [p for p in pages if not (DOCS / p).is_file()]
    assert not missing, f"pages in the mkdocs.yml nav that do not exist: {missing}"


def test_every_example_is_on_the_examples_page() -> None:
    page = (DOCS / "examples.md").read_text(encoding="utf-8")
    scripts = sorted(p.name for p in (ROOT / "examples").glob("*.py"))
    assert scripts
    absent = [s for s in scripts if f'--8<-- "examples/{s}"' not in page]
    assert not absent, f"examples not included in docs/examples.md: {absent}"


def _slug(title: str) -> str:
    """The anchor MkDocs (and GitHub) give a simple heading."""
    return re.sub(r"[^\w\- ]", "", _norm(title)).replace(" ", "-")


def test_readme_links_into_the_docs_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#\s]*)(?:#([^)\s]+))?\)", readme)
    assert len(links) >= 10
    broken = []
    for target, anchor in links:
        path = ROOT / target
        if not path.exists():
            broken.append(target)
        elif anchor and anchor not in {_slug(h) for h in _headings(path)}:
            broken.append(f"{target}#{anchor}")
    assert not broken, f"README links that do not resolve: {broken}"


def test_the_checks_can_fail() -> None:
    # the patterns above must match what they are meant to catch
    assert OUTSIDE.search("see spec §4") and OUTSIDE.search("(spec ``ctld.md`` §8)")
    assert OUTSIDE.search("in ../shared/spec/x.md") and not OUTSIDE.search("CTLD paper §5.1")
    m = DOC_REF.search("see docs/ctld.md, section 'Tempering at scale'")
    assert m and m.group(1) == "ctld.md" and m.group(2) == "Tempering at scale"
    assert LABEL.findall("the choice D5 (and S12), not 0xD2511F53 or ED25") == ["D5", "S12"]
    assert _slug("Reading `diagnostics()`") == "reading-diagnostics"
    assert _slug("h is not a learning rate") == "h-is-not-a-learning-rate"


def test_docstring_rest_becomes_markdown_for_the_site() -> None:
    pytest.importorskip("griffe")
    import importlib.util

    spec = importlib.util.spec_from_file_location("griffe_rst", DOCS / "_hooks" / "griffe_rst.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = "\n".join([
        "Step :math:`\\theta \\leftarrow \\theta + h p` of :class:`~heatbath.optim.Langevin`.",
        "",
        "Why",
        "---",
        "",
        ".. math::",
        "",
        "    a = b \\\\",
        "    c = d",
        "",
        "    e = f",
        "",
        "====  =======",
        "name  meaning",
        "====  =======",
        "A     drift",
        "====  =======",
        "",
        "Layout::",
        "",
        "    steps = 10",
        "",
        "Args:",
        "    h: the step, :func:`heatbath.optim.posterior_tau`.",
    ])
    md = mod.rst_to_markdown(text)
    assert "$\\theta \\leftarrow \\theta + h p$ of `Langevin`." in md
    assert "**Why**" in md and "\n---" not in md
    assert "$$\n\\begin{aligned}\na = b \\\\\nc = d\n\\end{aligned}\n$$" in md
    assert "$$\ne = f\n$$" in md
    assert "| name | meaning |" in md and "| A | drift |" in md
    assert "    h: the step, `heatbath.optim.posterior_tau`." in md
    assert "Layout:\n\n    steps = 10" in md
