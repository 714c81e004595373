"""The pure side of workflows: a step's REFs, JSON Pointers into results, the graph its
`after` lists make (cycles, what lies upstream of a step), and whether what a `for_each`
names can fan out.

A REF is `{"$from": STEP, "pointer": "/a/0/b"}`, anywhere in a step's input or as its
`for_each`: replaced, when the step starts, by what the pointer (RFC 6901) designates in
STEP's result, or by the whole result without a pointer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

FROM = "$from"
POINTER = "pointer"

Path = tuple[str | int, ...]


class Unresolved(ValueError):
    """A pointer that designates nothing in the result it points into."""


def is_ref(value: Any) -> bool:
    return isinstance(value, dict) and FROM in value


def refs(value: Any, path: Path = ()) -> Iterator[tuple[Path, dict]]:
    """Every REF in `value`, with where it lies."""
    if is_ref(value):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from refs(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from refs(item, (*path, index))


def malformed(ref: dict) -> str | None:
    """What is wrong with a REF's shape, or None."""
    if set(ref) - {FROM, POINTER}:
        return f"a REF has only {FROM!r} and {POINTER!r}"
    if not isinstance(ref[FROM], str):
        return f"{FROM} must name a step"
    pointer = ref.get(POINTER, "")
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        return "pointer must be a JSON Pointer: empty or starting with /"
    return None


def point(document: Any, pointer: str) -> Any:
    """What `pointer` designates in `document` (RFC 6901); `Unresolved` if nothing."""
    if not pointer:
        return document
    here = document
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(here, dict) and token in here:
            here = here[token]
        elif isinstance(here, list) and token.isdigit() and (token == "0" or not token.startswith("0")):
            if int(token) >= len(here):
                raise Unresolved(f"{pointer}: index {token} is past the end of a list of {len(here)}")
            here = here[int(token)]
        else:
            raise Unresolved(f"{pointer}: nothing at {token!r}")
    return here


def resolve(value: Any, results: Mapping[str, Any]) -> Any:
    """`value` with each REF replaced by what it points at in `results` (by step name)."""
    if is_ref(value):
        return point(results[value[FROM]], value.get(POINTER, ""))
    if isinstance(value, dict):
        return {key: resolve(item, results) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, results) for item in value]
    return value


def cycle(after: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle of the graph (its steps in order, the first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for parent in after.get(name, ()):
            if state.get(parent) == 1:
                return [*path[path.index(parent) :], parent]
            if parent not in state and (found := visit(parent)):
                return found
        path.pop()
        state[name] = 2
        return None

    for name in after:
        if name not in state and (found := visit(name)):
            return list(reversed(found))
    return None


def upstream(after: Mapping[str, Sequence[str]], name: str) -> set[str]:
    """The steps `name` comes after, directly or through other steps (the graph has no cycle)."""
    seen: set[str] = set()
    todo = list(after.get(name, ()))
    while todo:
        parent = todo.pop()
        if parent not in seen:
            seen.add(parent)
            todo.extend(after.get(parent, ()))
    return seen


def fanout_error(items: Any, max_fanout: int) -> dict | None:
    """Why a step's resolved `for_each` cannot fan out (not a list, or a list too long), or None."""
    if items is not None and not isinstance(items, list):
        return {"type": "invalid_for_each", "message": f"for_each must name a list, not {type(items).__name__}"}
    if items is not None and len(items) > max_fanout:
        message = f"for_each names a list of {len(items):,} items; a step runs at most {max_fanout:,} jobs"
        return {"type": "fanout_too_large", "message": message + " (WORKFLOW_MAX_FANOUT)"}
    return None
