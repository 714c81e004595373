"""A workflow's steps laid out as a graph for the dashboard's server-rendered SVG: in
layers left to right (a step one column right of the furthest step it comes after), in
the order given within a column, its `after` edges as curves from parent to child. No
layout library, in Python or in the browser."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

NODE_WIDTH, NODE_HEIGHT = 168, 46
COLUMN_GAP, ROW_GAP = 56, 14
MARGIN = 4


@dataclass(frozen=True)
class Node:
    name: str
    x: int
    y: int


@dataclass(frozen=True)
class Edge:
    parent: str
    child: str
    path: str  # an SVG path: a cubic curve from the parent's right side to the child's left


@dataclass(frozen=True)
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def columns(after: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each step's column: 0 for a step after none, else one more than its furthest parent's
    (the graph has no cycle: the API refused any)."""
    found: dict[str, int] = {}

    def column(name: str) -> int:
        if name not in found:
            found[name] = 1 + max((column(parent) for parent in after.get(name, ())), default=-1)
        return found[name]

    for name in after:
        column(name)
    return found


def layout(after: Mapping[str, Sequence[str]]) -> Graph:
    """Where each step goes (`after` by step, in the order the steps were given) and its edges."""
    placed: dict[str, Node] = {}
    rows: dict[int, int] = {}
    for name, column in columns(after).items():
        row = rows.get(column, 0)
        rows[column] = row + 1
        placed[name] = Node(name, MARGIN + column * (NODE_WIDTH + COLUMN_GAP), MARGIN + row * (NODE_HEIGHT + ROW_GAP))
    nodes = [placed[name] for name in after]
    edges = [_edge(placed[parent], placed[name]) for name in after for parent in after[name] if parent in placed]
    width = max((node.x for node in nodes), default=0) + NODE_WIDTH + MARGIN
    height = max((node.y for node in nodes), default=0) + NODE_HEIGHT + MARGIN
    return Graph(nodes, edges, width, height)


def _edge(parent: Node, child: Node) -> Edge:
    x1, y1 = parent.x + NODE_WIDTH, parent.y + NODE_HEIGHT // 2
    x2, y2 = child.x, child.y + NODE_HEIGHT // 2
    bend = COLUMN_GAP // 2
    return Edge(parent.name, child.name, f"M{x1} {y1} C{x1 + bend} {y1} {x2 - bend} {y2} {x2} {y2}")
