"""Lay a flow out for SVG: layers left to right by longest path, edges as curves.

Small and deterministic on purpose (no layout library, no JavaScript): nodes go into the layer
after their deepest forward predecessor, are ordered inside a layer by the mean position of
their predecessors (one barycentre pass, enough to untangle typical workflow graphs), and a
loop's `continue` edge is drawn as an arc below the nodes it jumps back over.
"""

from __future__ import annotations

from collections import defaultdict

import msgspec

from flowcraft_arq.dashboard.blueprints import FlowInfo

NODE_W, NODE_H = 168, 52
GAP_X, GAP_Y = 64, 28
PAD = 20


class Box(msgspec.Struct, frozen=True):
    index: int
    id: str
    kind: str
    detail: str
    x: int
    y: int


class Curve(msgspec.Struct, frozen=True):
    path: str
    label: str
    label_x: int
    label_y: int
    back: bool


class Layout(msgspec.Struct, frozen=True):
    width: int
    height: int
    boxes: tuple[Box, ...]
    curves: tuple[Curve, ...]
    node_w: int = NODE_W
    node_h: int = NODE_H


def _layers(flow: FlowInfo) -> dict[int, int]:
    preds: dict[int, list[int]] = defaultdict(list)
    succs: dict[int, list[int]] = defaultdict(list)
    indegree = {n.index: 0 for n in flow.nodes}
    for edge in flow.edges:
        if edge.back or edge.source == edge.target:
            continue
        preds[edge.target].append(edge.source)
        succs[edge.source].append(edge.target)
        indegree[edge.target] += 1
    layer = {n.index: 0 for n in flow.nodes}
    ready = [n for n, d in indegree.items() if d == 0]
    seen = 0
    while ready:
        node = ready.pop(0)
        seen += 1
        for nxt in succs[node]:
            layer[nxt] = max(layer[nxt], layer[node] + 1)
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    # a cycle without a loop controller (not valid, but never hang on it): leave as is
    return layer


def layout(flow: FlowInfo) -> Layout:
    """Positions of every node and the path of every edge."""
    layer = _layers(flow)
    columns: dict[int, list[int]] = defaultdict(list)
    for node in flow.nodes:
        columns[layer[node.index]].append(node.index)
    position: dict[int, float] = {}
    preds: dict[int, list[int]] = defaultdict(list)
    for edge in flow.edges:
        if not edge.back:
            preds[edge.target].append(edge.source)
    for col in sorted(columns):
        members = columns[col]
        if col > 0:
            def centre(n: int) -> float:
                known = [position[p] for p in preds[n] if p in position]
                return sum(known) / len(known) if known else float(n)
            members.sort(key=centre)
        for row, n in enumerate(members):
            position[n] = float(row)
    tallest = max((len(m) for m in columns.values()), default=1)
    height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y
    xy: dict[int, tuple[int, int]] = {}
    for col, members in columns.items():
        block = len(members) * NODE_H + (len(members) - 1) * GAP_Y
        top = PAD + (height - PAD * 2 - block) // 2
        for row, n in enumerate(members):
            xy[n] = (PAD + col * (NODE_W + GAP_X), top + row * (NODE_H + GAP_Y))
    has_back = any(e.back for e in flow.edges)
    arc_room = 48 if has_back else 0
    boxes = tuple(Box(n.index, n.id, n.kind, n.detail, *xy[n.index]) for n in flow.nodes)
    curves = []
    for edge in flow.edges:
        sx, sy = xy[edge.source]
        tx, ty = xy[edge.target]
        if edge.back:
            x1, y1 = sx + NODE_W // 2, sy + NODE_H
            x2, y2 = tx + NODE_W // 2, ty + NODE_H
            low = height + arc_room // 2
            path = f"M{x1},{y1} C{x1},{low} {x2},{low} {x2},{y2}"
            lx, ly = (x1 + x2) // 2, low - 4
        else:
            x1, y1 = sx + NODE_W, sy + NODE_H // 2
            x2, y2 = tx, ty + NODE_H // 2
            mid = (x1 + x2) // 2
            path = f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"
            lx, ly = mid, (y1 + y2) // 2 - 6
        label = edge.label if len(edge.label) <= 28 else edge.label[:27] + "\u2026"
        curves.append(Curve(path, label, lx, ly, edge.back))
    width = PAD * 2 + (max(columns, default=0) + 1) * (NODE_W + GAP_X) - GAP_X
    return Layout(width, height + arc_room, boxes, tuple(curves))


__all__ = ["Box", "Curve", "Layout", "layout"]
