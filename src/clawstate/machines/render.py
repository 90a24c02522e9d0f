"""Pictures of a machine: Mermaid ``stateDiagram-v2`` and Graphviz ``dot`` text.

States are drawn under generated ids (``s0``, ``s1``…) with their names as labels,
so a state called ``"on hold"`` or ``"a-->b"`` cannot break the diagram's syntax;
labels are escaped for each language.  With counts, each state's label carries how
many instances are in it now (``paid (12)``), which makes the picture a dashboard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .definition import Definition

__all__ = ["render"]


def _mermaid_text(text: str) -> str:
    # Mermaid labels: quotes and the characters its parser reads as syntax become
    # HTML entities, which it renders as themselves.
    out = []
    for ch in text:
        if ch.isalnum() or ch in " _.-/()+*?!,'":
            out.append(ch)
        else:
            out.append(f"#{ord(ch)};")
    return "".join(out)


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _after(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def render(name: str, defn: Definition, counts: dict[str, int] | None, fmt: str) -> str:
    """The diagram text of machine ``name`` (``fmt``: ``"mermaid"`` or ``"dot"``)."""
    states = list(defn.states)
    extra = [s for s in (counts or {}) if s not in defn.states]  # removed, still occupied
    ids = {s: f"s{i}" for i, s in enumerate(states + extra)}

    def label(s: str) -> str:
        if counts is None:
            return s
        return f"{s} ({counts.get(s, 0)})"

    edges: list[tuple[str, str, str]] = []
    for t in defn.transitions:
        for src in t.sources:
            text = t.event + (" [guard]" if t.guard is not None else "")
            edges.append((src, t.target, text))
    for to in defn.timeouts:
        tr = defn.transition(to.event, to.state)
        if tr is not None:
            edges.append((to.state, tr.target, f"after {_after(to.after)}: {to.event}"))
    for old in extra:
        new = defn.migrate.get(old)
        if new is not None:
            edges.append((old, new, "migrate"))

    if fmt == "dot":
        lines = [
            f'digraph "{_dot_text(name)}" {{',
            "  rankdir=LR;",
            "  node [shape=box, style=rounded];",
        ]
        lines.append('  start [shape=point, label=""];')
        for s in states + extra:
            attrs = f'label="{_dot_text(label(s))}"'
            if s in defn.final:
                attrs += ", peripheries=2"
            if s in extra:
                attrs += ", style=dashed"
            lines.append(f"  {ids[s]} [{attrs}];")
        lines.append(f"  start -> {ids[defn.initial]};")
        for src, dst, text in edges:
            lines.append(f'  {ids[src]} -> {ids[dst]} [label="{_dot_text(text)}"];')
        lines.append("}")
        return "\n".join(lines) + "\n"

    lines = ["stateDiagram-v2", f"    %% machine {_mermaid_text(name)}"]
    for s in states + extra:
        lines.append(f'    state "{_mermaid_text(label(s))}" as {ids[s]}')
    lines.append(f"    [*] --> {ids[defn.initial]}")
    for src, dst, text in edges:
        lines.append(f"    {ids[src]} --> {ids[dst]}: {_mermaid_text(text)}")
    for s in states:
        if s in defn.final:
            lines.append(f"    {ids[s]} --> [*]")
    return "\n".join(lines) + "\n"
