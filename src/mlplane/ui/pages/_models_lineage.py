"""A model version's lineage as a graph laid out here, on the server: dataset versions →
training run → the version → the deployments serving it, one column each.

The page draws it as plain SVG from these coordinates (boxes that are links, curved edges),
so it needs no graph library and no script, and it shows with scripts off too.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

BOX_W = 210
BOX_H = 48
COL_GAP = 80
ROW_GAP = 16
TOP = 30
"""Room above the boxes for the column titles."""
PAD = 8
CHARS = 27
"""About as many characters as fit in a box at the page's 12px font."""


@dataclass(frozen=True, slots=True)
class Item:
    """What one box says and links to (``href`` None: a placeholder, e.g. "none recorded")."""

    kind: str
    label: str
    sub: str = ""
    href: str | None = None
    current: bool = False


@dataclass(frozen=True, slots=True)
class Node:
    kind: str
    label: str
    full: str
    """The untruncated label, for the box's tooltip."""
    sub: str
    href: str | None
    current: bool
    x: int
    y: int
    w: int = BOX_W
    h: int = BOX_H

    @property
    def text_x(self) -> int:
        return self.x + 10

    @property
    def label_y(self) -> int:
        return self.y + 20

    @property
    def sub_y(self) -> int:
        return self.y + 37


@dataclass(frozen=True, slots=True)
class Graph:
    width: int
    height: int
    titles: list[tuple[int, str]]
    """(x of the column's centre, title)."""
    nodes: list[Node] = field(default_factory=list)
    edges: list[str] = field(default_factory=list)
    """SVG path data, one curve an edge."""


def _clip(text: str, limit: int = CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _edge(a: Node, b: Node) -> str:
    """A horizontal S-curve from the right side of ``a`` to the left side of ``b``."""
    x1, y1 = a.x + a.w, a.y + a.h // 2
    x2, y2 = b.x, b.y + b.h // 2
    mid = (x1 + x2) // 2
    return f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"


def layout(columns: list[tuple[str, list[Item]]]) -> Graph:
    """Boxes in columns left to right, each column centred vertically on the tallest;
    every linked box is joined to every linked box of the next column (the lineage is a
    chain of stages, so that is exactly who fed whom)."""
    rows = max((len(items) for _, items in columns), default=1) or 1
    inner = rows * BOX_H + (rows - 1) * ROW_GAP
    placed: list[list[Node]] = []
    titles = []
    for c, (title, items) in enumerate(columns):
        x = PAD + c * (BOX_W + COL_GAP)
        titles.append((x + BOX_W // 2, title))
        span = len(items) * BOX_H + max(len(items) - 1, 0) * ROW_GAP
        y0 = TOP + (inner - span) // 2
        placed.append(
            [
                Node(
                    kind=it.kind,
                    label=_clip(it.label),
                    full=it.label,
                    sub=_clip(it.sub, CHARS + 4),
                    href=it.href,
                    current=it.current,
                    x=x,
                    y=y0 + i * (BOX_H + ROW_GAP),
                )
                for i, it in enumerate(items)
            ]
        )
    edges = [
        _edge(a, b)
        for left, right in itertools.pairwise(placed)
        for a in left
        if a.href is not None
        for b in right
        if b.href is not None
    ]
    width = 2 * PAD + len(columns) * BOX_W + max(len(columns) - 1, 0) * COL_GAP
    return Graph(
        width=width,
        height=TOP + inner + PAD,
        titles=titles,
        nodes=[n for col in placed for n in col],
        edges=edges,
    )
