"""Tenants' own templates: Jinja's immutable sandbox, judged when stored, rendered bounded.

The sandbox refuses attributes that lead to Python's internals (`__class__`, `__globals__`,
`mro`, …) and has no imports, files or settings to reach. What it cannot bound by itself
(a loop that never ends, a string of a billion characters) is bounded by rendering in a
child process (`service.templating.sandbox`) with a memory limit and a deadline; each part's output
is counted as it is produced and stops at MAX_OUTPUT characters.

Jinja folds constant expressions and filters while compiling, which would run a
template's `{{ 'x' * 10**9 }}` wherever it is merely inspected: every operator is
intercepted and every filter passes the context, so nothing is folded and the API may
parse a template and list its variables without running any of it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.lexer import TokenStream
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from service.errors import PermanentError

MAX_SOURCE = 64 * 1024  # characters of one part's source
MAX_OUTPUT = 100_000  # characters one rendered part may have
PARTS = ("subject", "text", "html")
CONTEXT = getattr(jinja2.pass_context(lambda context: None), "jinja_pass_arg", None)  # what Jinja never folds


class SyntaxProblem(PermanentError):
    """A part refused when stored, with where (1-based): not valid Jinja, or (`template_unsafe`)
    naming an internal."""

    def __init__(self, part: str, message: str, line: int, column: int, *, type: str = "template_syntax") -> None:
        super().__init__(f"line {line}, column {column}: {message}", type=type, field=part)
        self.line = line
        self.column = column


def _unfoldable(filter: Callable) -> Callable:
    """`filter` asking for the context, so Jinja never runs it at compile time; what the
    filter itself asks for (the eval context, the environment) it is still given."""
    wants = getattr(filter, "jinja_pass_arg", None)

    @jinja2.pass_context
    @functools.wraps(filter)
    def call(context: jinja2.runtime.Context, *args: Any, **kwargs: Any) -> Any:
        if wants is not None:
            args = ({"eval_context": context.eval_ctx, "environment": context.environment}[wants.name], *args)
        return filter(*args, **kwargs)

    return call


class Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["+", "-", "*", "/", "//", "%", "**"])
    intercepted_unops = frozenset(["+", "-"])

    def __init__(self, *, html: bool) -> None:
        super().__init__(
            autoescape=html,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.filters = {
            name: filter if getattr(filter, "jinja_pass_arg", None) is CONTEXT else _unfoldable(filter)
            for name, filter in self.filters.items()
        }


TEXT = Sandbox(html=False)
HTML = Sandbox(html=True)


def environment(part: str) -> Sandbox:
    return HTML if part == "html" else TEXT


@dataclass(frozen=True)
class Source:
    """A template's parts (None: absent) as a tenant wrote them."""

    subject: str | None
    text: str
    html: str | None

    def parts(self) -> dict[str, str]:
        return {
            part: value
            for part, value in zip(PARTS, (self.subject, self.text, self.html), strict=True)
            if value is not None
        }


def parse(part: str, source: str) -> nodes.Template:
    """The parsed part, or SyntaxProblem naming its line and column (or an internal it reaches for)."""
    env = environment(part)
    if len(source) > MAX_SOURCE:
        raise PermanentError(f"longer than {MAX_SOURCE} characters", type="invalid_field", field=part)
    try:
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError as error:
        line = error.lineno
        raise SyntaxProblem(part, error.message or "invalid syntax", line, _column(env, source, line)) from None
    except RecursionError:
        raise SyntaxProblem(part, "nested too deeply", 1, 1) from None
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else getattr(getattr(node, "arg", None), "value", None)
        if isinstance(name, str) and name.startswith("_"):
            raise SyntaxProblem(part, f"{name!r} is not available in templates", node.lineno, 1, type="template_unsafe")
    return tree


def _column(env: Sandbox, source: str, line: int) -> int:
    """Where on `line` the parser stood when it gave up: the start of the last token it read
    (parsed again with the lexer's raw tokens placed in `source`, which Jinja does not keep)."""
    starts: list[int] = []

    def located() -> Iterator[tuple[int, str, str]]:
        position = 0
        for lineno, kind, value in env.lexer.tokeniter(source, None):
            found = source.find(value, position) if value else position
            position = found if found >= 0 else position
            starts.append(position)
            position += len(value)
            yield lineno, kind, value

    try:
        parser = Parser(env, "")
        parser.stream = TokenStream(env.lexer.wrap(located()), None, None)
        parser.parse()
    except (jinja2.TemplateSyntaxError, RecursionError):
        pass
    if not starts:
        return 1
    line_start = source.rfind("\n", 0, starts[-1]) + 1
    if source.count("\n", 0, line_start) + 1 != line:
        return 1
    return starts[-1] - line_start + 1


def check(source: Source) -> None:
    """Every part parses (SyntaxProblem otherwise)."""
    for part, text in source.parts().items():
        parse(part, text)


def variables(source: Source) -> set[str]:
    """The names the template reads from its data (the sandbox's own globals aside)."""
    names: set[str] = set()
    for part, text in source.parts().items():
        names |= meta.find_undeclared_variables(parse(part, text))
    return names - set(TEXT.globals)


class RenderProblem(Exception):
    """A template that failed while rendering: `kind` says why, for the caller's error type."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def render_part(part: str, text: str, data: Mapping[str, Any]) -> str:
    """One part rendered in this process, its output counted as it is produced. Run by the
    sandbox's child, which bounds memory and time; RenderProblem on failure."""
    try:
        template = environment(part).from_string(text)
        pieces, size = [], 0
        for piece in template.generate(dict(data)):
            size += len(piece)
            if size > MAX_OUTPUT:
                raise RenderProblem("template_too_large", f"{part}: the output exceeds {MAX_OUTPUT} characters")
            pieces.append(piece)
    except jinja2.UndefinedError as error:
        raise RenderProblem("invalid_template_data", f"{part}: {error.message}") from None
    except jinja2.exceptions.SecurityError as error:
        raise RenderProblem("template_unsafe", f"{part}: {error}") from None
    except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as error:
        raise RenderProblem("template_error", f"{part}: {error}") from None
    rendered = "".join(pieces)
    return _one_line(rendered) if part == "subject" else rendered
