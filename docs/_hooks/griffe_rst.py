"""Griffe extension: render heatbath's docstrings (Google sections, reST math) as Markdown.

heatbath's docstrings are Google style (``Args:``/``Returns:``/``Raises:``) with a little reST
that reads well in ``help()``: ``:math:`x```, ``.. math::`` blocks, ``:class:`~a.B``` roles,
underlined section titles and simple ``====`` tables. mkdocstrings renders docstrings as
Markdown, so before parsing this extension rewrites those constructs:

- ``:math:`x``` becomes ``$x$`` and a ``.. math::`` block becomes ``$$ ... $$`` (one block per
  blank-line-separated equation; multi-line equations go into ``aligned``), rendered by
  ``pymdownx.arithmatex``;
- ``:class:`~a.b.C``` (and ``:func:``, ``:meth:``, ``:attr:``, ``:mod:``, ...) becomes the code
  span ``C`` (``a.b.C`` without the ``~``);
- a title underlined with ``---`` or ``===`` becomes a bold line (no headings inside API
  entries);
- a simple reST table (``====  ====`` borders) becomes a Markdown table;
- the literal-block marker ``text::`` becomes ``text:`` (the indented block after it is
  already a Markdown code block).

Loaded by mkdocs.yml (``plugins.mkdocstrings.handlers.python.options.extensions``); it is not
part of the package.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_UNDERLINE = re.compile(r"^(-{3,}|={3,}|~{3,})\s*$")
_TABLE_BORDER = re.compile(r"^\s*=+(?: +=+)+\s*$")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _inline_math(match: re.Match[str]) -> str:
    return f"${match.group(1).strip()}$"


def _display(lines: list[str]) -> list[str]:
    """``$$`` blocks for the equations of one ``.. math::`` body (already dedented)."""
    out: list[str] = []
    chunks: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            chunks[-1].append(line.rstrip())
        elif chunks[-1]:
            chunks.append([])
    for chunk in chunks:
        if not chunk:
            continue
        body = "\n".join(chunk)
        if "\\\\" in body or "&" in body:
            body = "\\begin{aligned}\n" + body + "\n\\end{aligned}"
        out += ["", "$$", *body.split("\n"), "$$", ""]
    return out


def _table(lines: list[str]) -> list[str]:
    """A Markdown table for a simple reST table given with its three border lines."""
    border = lines[0]
    starts = [m.start() for m in re.finditer(r"=+", border)]
    rows: list[list[str]] = []
    for line in lines[1:]:
        if _TABLE_BORDER.match(line):
            continue
        cells = []
        for k, start in enumerate(starts):
            stop = starts[k + 1] if k + 1 < len(starts) else len(line)
            cells.append(line[start:stop].strip() if len(line) > start else "")
        rows.append(cells)
    if not rows:
        return lines
    md = ["", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(starts)]
    md += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows[1:]]
    return [*md, ""]


def rst_to_markdown(text: str) -> str:
    """Rewrite the reST constructs heatbath's docstrings use into Markdown (see module doc)."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence = not in_fence
            out.append(line)
            i += 1
            continue
        if in_fence:
            out.append(line)
            i += 1
            continue
        if stripped.startswith(".. math::"):
            indent = len(line) - len(line.lstrip())
            body = [stripped[len(".. math::"):].strip()]
            i += 1
            block_indent: int | None = None
            while i < len(lines):
                nxt = lines[i]
                if nxt.strip():
                    this = len(nxt) - len(nxt.lstrip())
                    if this <= indent:
                        break
                    block_indent = this if block_indent is None else min(block_indent, this)
                body.append(nxt)
                i += 1
            body = [b[block_indent:] if block_indent and len(b) >= block_indent else b.strip()
                    for b in body]
            out += [" " * indent + b if b else "" for b in _display(body)]
            continue
        if _TABLE_BORDER.match(line):
            j = i + 1
            borders = 1
            while j < len(lines) and borders < 3 and lines[j].strip():
                if _TABLE_BORDER.match(lines[j]):
                    borders += 1
                j += 1
            if borders == 3:
                out += _table(lines[i:j])
                i = j
                continue
        underlined = i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1])
        if (stripped and underlined and not stripped.startswith("-")
                and len(lines[i + 1].strip()) >= len(stripped) - 2):
            out += [f"**{stripped}**", ""]
            i += 2
            continue
        if stripped.endswith("::") and not stripped.startswith(".."):
            # reST literal-block marker: "text::" reads "text:", a bare "::" disappears; the
            # indented block after it is a Markdown code block already
            line = line.rstrip()[:-1] if stripped != "::" else ""
        out.append(line)
        i += 1
    text = "\n".join(out)
    text = _MATH_ROLE.sub(_inline_math, text)
    return _ROLE.sub(_role, text)


class RstToMarkdown(griffe.Extension):
    """Rewrite every docstring with :func:`rst_to_markdown` before it is parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:  # noqa: D102
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
