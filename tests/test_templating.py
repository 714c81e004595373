"""The sandbox's environments in-process: what the API may do with a template without
running it (parse it, list its variables), and where a syntax error is."""

import pytest

from service.templating import HTML, TEXT, Source, SyntaxProblem, check, variables


@pytest.mark.parametrize(
    ("source", "result"),
    [
        ('{{ "ab"|replace("a", "c") }}', "cb"),
        ('{{ ["p", "q"]|join("+") }}', "p+q"),
        ('{{ "z" * 3 }}', "zzz"),
        ('{{ "w"|center(5) }}', "  w  "),
        ("{{ 6 ** 2 }}", "36"),
    ],
)
def test_nothing_is_run_at_compile_time(source, result):
    """Jinja folds constant expressions while compiling (and so while listing variables): a
    `{{ "x"|replace("", "y" * 30000) }}` would run in the API. Here it runs only when rendered."""
    for environment in (TEXT, HTML):
        assert result not in environment.compile(source, raw=True)
        assert environment.from_string(source).render() == result


def test_filters_keep_what_they_ask_for():
    assert HTML.from_string('{{ ["<a>", "b"]|join("<br>") }}').render() == "&lt;a&gt;&lt;br&gt;b"
    assert TEXT.from_string('{{ ["<a>", "b"]|join("<br>") }}').render() == "<a><br>b"
    assert TEXT.from_string("{{ d|dictsort|first|first }}").render(d={"b": 1, "a": 2}) == "a"


def test_variables_are_what_the_template_reads_from_its_data():
    source = Source(
        "{{ order.id }} for {{ name }}",
        "{% set total = items|length %}{% for item in items %}{{ loop.index }} {{ item }}{% endfor %}{{ total }}",
        "{{ range(3)|list }}{{ cycler(1, 2).next() }}",
    )
    assert variables(source) == {"order", "name", "items"}


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("Hello {{ name", 1, 10),
        ("a\nb\n  {% for x in %}", 3, 15),
        ("{% if x %}\n{% endfor %}", 2, 4),
        ("{{ x | }}", 1, 8),
    ],
)
def test_a_syntax_error_names_its_line_and_column(text, line, column):
    with pytest.raises(SyntaxProblem) as caught:
        check(Source(None, text, None))
    assert (caught.value.field, caught.value.line, caught.value.column) == ("text", line, column)
    assert caught.value.message.startswith(f"line {line}, column {column}: ")
