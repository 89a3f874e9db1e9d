"""The `${...}` resolver: references, types, escapes, errors, and no eval."""

from __future__ import annotations

import builtins

import pytest

from flowctl.domain.templates import (
    Reference,
    TemplateContext,
    TemplateError,
    has_references,
    iter_references,
    parse_reference,
    resolve,
)


@pytest.fixture
def ctx() -> TemplateContext:
    return TemplateContext(
        workflow_input={
            "n": 42,
            "ratio": 0.5,
            "flag": False,
            "name": "ada",
            "nothing": None,
            "tags": ["x", "y", {"deep": "z"}],
            "user": {"id": 7, "address": {"city": "Paris"}},
            "0": "key zero",
        },
        step_outputs={
            "fetch": {"status": 200, "body": {"items": [10, 20, 30]}, "ok": True},
            "count": 3,
            "list-step": ["first", "second"],
        },
        secrets={"TOKEN": "s3cr3t", "OTHER": "o"},
    )


# --- parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "root", "path", "step"),
    [
        ("workflow.input", "workflow", (), None),
        ("workflow.input.a", "workflow", ("a",), None),
        ("workflow.input.a.b.c", "workflow", ("a", "b", "c"), None),
        ("workflow.input.items.0", "workflow", ("items", 0), None),
        ("workflow.input.items[1].id", "workflow", ("items", 1, "id"), None),
        ("  workflow.input.a  ", "workflow", ("a",), None),
        ("secrets.API_KEY", "secrets", ("API_KEY",), None),
        ("fetch.output", "fetch", (), "fetch"),
        ("fetch.output.body.items[2]", "fetch", ("body", "items", 2), "fetch"),
        ("step-2.output.x", "step-2", ("x",), "step-2"),
    ],
)
def test_parse_reference(expr: str, root: str, path: tuple, step: str | None) -> None:
    ref = parse_reference(expr)
    assert ref.root == root
    assert ref.path == path
    assert ref.step == step
    assert ref.text == expr.strip()


@pytest.mark.parametrize(
    ("expr", "hint"),
    [
        ("", "empty reference"),
        ("   ", "empty reference"),
        ("workflow", "${workflow.input.<field>}"),
        ("workflow.output.x", "${workflow.input.<field>}"),
        ("secrets", "${secrets.NAME}"),
        ("secrets.A.B", "${secrets.NAME}"),
        ("secrets[0]", "${secrets.NAME}"),
        ("fetch", "${fetch.output.<field>}"),
        ("fetch.input.x", "${fetch.output.<field>}"),
        ("fetch.output..x", "invalid reference"),
        ("fetch.output.x.", "invalid reference"),
        ("[0].output", "invalid reference"),
    ],
)
def test_parse_reference_errors(expr: str, hint: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse_reference(expr)
    assert hint in str(info.value)


# --- resolving -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${workflow.input.n}", 42),
        ("${workflow.input.ratio}", 0.5),
        ("${workflow.input.flag}", False),
        ("${workflow.input.nothing}", None),
        ("${workflow.input.tags}", ["x", "y", {"deep": "z"}]),
        ("${workflow.input.user}", {"id": 7, "address": {"city": "Paris"}}),
        ("${fetch.output.status}", 200),
        ("${fetch.output.ok}", True),
        ("${count.output}", 3),
        ("${fetch.output.body.items}", [10, 20, 30]),
    ],
)
def test_whole_string_reference_keeps_the_json_type(
    ctx: TemplateContext, template: str, expected: object
) -> None:
    result = resolve(template, ctx)
    assert result == expected
    assert type(result) is type(expected)


def test_whole_reference_with_inner_spaces_keeps_its_type(ctx: TemplateContext) -> None:
    assert resolve("${ workflow.input.n }", ctx) == 42


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("n=${workflow.input.n}", "n=42"),
        ("${workflow.input.n} ", "42 "),
        ("${workflow.input.n}${workflow.input.n}", "4242"),
        ("hello ${workflow.input.name}!", "hello ada!"),
        ("flag=${workflow.input.flag}", "flag=false"),
        ("none=${workflow.input.nothing}", "none=null"),
        ("r=${workflow.input.ratio}", "r=0.5"),
        ("user=${workflow.input.user}", 'user={"id":7,"address":{"city":"Paris"}}'),
        ("tags=${workflow.input.tags}", 'tags=["x","y",{"deep":"z"}]'),
        ("${fetch.output.status}/${count.output}", "200/3"),
        ("Bearer ${secrets.TOKEN}", "Bearer s3cr3t"),
    ],
)
def test_embedded_reference_is_rendered_as_text(
    ctx: TemplateContext, template: str, expected: str
) -> None:
    assert resolve(template, ctx) == expected


def test_non_ascii_is_kept_when_rendering() -> None:
    ctx = TemplateContext(workflow_input={"city": {"name": "Zürich"}})
    assert resolve("at ${workflow.input.city}", ctx) == 'at {"name":"Zürich"}'


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${workflow.input.tags.0}", "x"),
        ("${workflow.input.tags[1]}", "y"),
        ("${workflow.input.tags[2].deep}", "z"),
        ("${workflow.input.tags.2.deep}", "z"),
        ("${workflow.input.user.address.city}", "Paris"),
        ("${fetch.output.body.items[2]}", 30),
        ("${list-step.output[1]}", "second"),
        # a digit segment is a key when the value is a mapping
        ("${workflow.input.0}", "key zero"),
    ],
)
def test_paths_walk_keys_and_indexes(ctx: TemplateContext, template: str, expected) -> None:
    assert resolve(template, ctx) == expected


def test_nested_containers_are_resolved(ctx: TemplateContext) -> None:
    payload = {
        "url": "https://x/${workflow.input.user.id}",
        "headers": {"Authorization": "Bearer ${secrets.TOKEN}"},
        "items": ["${fetch.output.body.items[0]}", {"n": "${workflow.input.n}"}, 5, None],
        "tuple": ("${count.output}",),
        "literal": True,
        "number": 1.25,
        "${workflow.input.name}": "keys are not templated",
    }
    assert resolve(payload, ctx) == {
        "url": "https://x/7",
        "headers": {"Authorization": "Bearer s3cr3t"},
        "items": [10, {"n": 42}, 5, None],
        "tuple": [3],
        "literal": True,
        "number": 1.25,
        "${workflow.input.name}": "keys are not templated",
    }


def test_resolve_does_not_mutate_its_input(ctx: TemplateContext) -> None:
    payload = {"a": ["${workflow.input.n}"]}
    resolve(payload, ctx)
    assert payload == {"a": ["${workflow.input.n}"]}


def test_strings_without_templates_are_returned_as_is(ctx: TemplateContext) -> None:
    assert resolve("plain $ text {with} braces", ctx) == "plain $ text {with} braces"
    assert resolve("$HOME and $1", ctx) == "$HOME and $1"
    assert resolve(17, ctx) == 17
    assert resolve(None, ctx) is None


# --- escapes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$${workflow.input.n}", "${workflow.input.n}"),
        ("cost: $${price}", "cost: ${price}"),
        ("$${x} and ${workflow.input.n}", "${x} and 42"),
        ("${workflow.input.n}$${workflow.input.n}", "42${workflow.input.n}"),
        ("$${", "${"),
        ("$${__import__('os')}", "${__import__('os')}"),
    ],
)
def test_double_dollar_escapes(ctx: TemplateContext, template: str, expected: str) -> None:
    assert resolve(template, ctx) == expected


def test_escaped_reference_is_not_a_reference() -> None:
    assert list(iter_references("$${ghost.output.x}")) == []
    assert list(iter_references("$${__import__('os')}")) == []


# --- errors ----------------------------------------------------------------------------


def test_missing_input_key(ctx: TemplateContext) -> None:
    with pytest.raises(TemplateError) as info:
        resolve({"a": "${workflow.input.user.email}"}, ctx)
    message = str(info.value)
    assert "${workflow.input.user.email}" in message
    assert "workflow input has no field 'email' at user" in message


def test_missing_top_level_input_key(ctx: TemplateContext) -> None:
    with pytest.raises(TemplateError, match=r"no field 'missing' at \(top level\)"):
        resolve("x ${workflow.input.missing}", ctx)


def test_missing_step_output(ctx: TemplateContext) -> None:
    with pytest.raises(TemplateError) as info:
        resolve("${later.output.x}", ctx)
    assert "step 'later' has no output" in str(info.value)
    assert "${later.output.x}" in str(info.value)


def test_missing_field_of_step_output(ctx: TemplateContext) -> None:
    with pytest.raises(TemplateError, match="output of step 'fetch' has no field 'nope'"):
        resolve("${fetch.output.body.nope}", ctx)


def test_missing_secret(ctx: TemplateContext) -> None:
    with pytest.raises(TemplateError) as info:
        resolve("${secrets.MISSING}", ctx)
    assert "unknown secret 'MISSING'" in str(info.value)
    # the message names the secret, never another secret's value
    assert "s3cr3t" not in str(info.value)


def test_index_out_of_range(ctx: TemplateContext) -> None:
    with pytest.raises(TemplateError, match="index 3 is out of range at tags"):
        resolve("${workflow.input.tags[3]}", ctx)


def test_walking_into_a_scalar(ctx: TemplateContext) -> None:
    with pytest.raises(TemplateError, match="cannot take 'x' of a int at n"):
        resolve("${workflow.input.n.x}", ctx)
    with pytest.raises(TemplateError, match="cannot take 'a' of a list"):
        resolve("${workflow.input.tags.a}", ctx)


def test_an_error_deep_in_a_structure_is_raised(ctx: TemplateContext) -> None:
    with pytest.raises(TemplateError):
        resolve({"ok": "${workflow.input.n}", "list": [{"bad": "${nope.output}"}]}, ctx)


# --- hostile input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "${__import__('os')}",
        "${__import__('os').system('touch /tmp/pwned')}",
        "x ${__import__('os').output}",
        "${eval('1+1')}",
        "${1+1}",
        "${workflow.input.n + 1}",
        "${workflow.input.__class__.__mro__}",
        "${fetch.output.__class__}",
        "${secrets.__dict__}",
        "${open('/etc/passwd').read()}",
        "${}",
        "${workflow.input[0]['a']}",
    ],
)
def test_hostile_expressions_are_errors_and_never_evaluated(
    ctx: TemplateContext, template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("the resolver must never evaluate code")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "__import__", forbidden)
    with pytest.raises(TemplateError):
        resolve({"field": template}, ctx)


def test_dunder_names_are_plain_keys() -> None:
    ctx = TemplateContext(workflow_input={"__class__": "just data"})
    assert resolve("${workflow.input.__class__}", ctx) == "just data"


def test_nested_braces_are_not_evaluated(ctx: TemplateContext) -> None:
    # Not a reference at all: left as text, and certainly not computed.
    assert resolve("${{7*7}}", ctx) == "${{7*7}}"
    assert "49" not in resolve("a ${{7*7}} b", ctx)


# --- iter_references / has_references ------------------------------------------------------


def test_iter_references_walks_nested_values_in_order() -> None:
    payload = {
        "a": "${workflow.input.x} and ${fetch.output.y[0]}",
        "b": ["${secrets.K}", {"c": "${parse.output}"}, 3, None],
        "d": ("${other.output.z}",),
        "${keyref.output}": "keys are not scanned",
        "e": "$${escaped.output}",
    }
    refs = list(iter_references(payload))
    assert [(r.root, r.path) for r in refs] == [
        ("workflow", ("x",)),
        ("fetch", ("y", 0)),
        ("secrets", ("K",)),
        ("parse", ()),
        ("other", ("z",)),
    ]
    assert [r.step for r in refs] == [None, "fetch", None, "parse", "other"]
    assert refs[0] == Reference("workflow", ("x",), "workflow.input.x")


def test_iter_references_of_plain_values_is_empty() -> None:
    assert list(iter_references({"a": 1, "b": [True, None, "text"]})) == []
    assert list(iter_references(5)) == []


def test_iter_references_raises_on_invalid_reference() -> None:
    with pytest.raises(TemplateError):
        list(iter_references({"a": ["${nonsense}"]}))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${workflow.input.x}", True),
        ("a ${x.output} b", True),
        ({"a": {"b": ["${secrets.K}"]}}, True),
        (("${x.output}",), True),
        # an escape still needs resolving (to unescape it)
        ("$${x}", True),
        ("plain", False),
        ("$ {not} $x {y}", False),
        ({"${keys.output}": "are not templates"}, False),
        ([1, 2.5, None, True], False),
        ({}, False),
        (None, False),
        (42, False),
    ],
)
def test_has_references(value: object, expected: bool) -> None:
    assert has_references(value) is expected


# --- secrets bookkeeping -------------------------------------------------------------------


def test_used_secrets_are_recorded_for_redaction(ctx: TemplateContext) -> None:
    assert ctx.used_secrets == set()
    resolve({"h": "Bearer ${secrets.TOKEN}", "n": "${workflow.input.n}"}, ctx)
    assert ctx.used_secrets == {"s3cr3t"}
    resolve("${secrets.OTHER}", ctx)
    assert ctx.used_secrets == {"s3cr3t", "o"}


def test_default_context_is_empty() -> None:
    ctx = TemplateContext()
    assert resolve("${workflow.input}", ctx) == {}
    with pytest.raises(TemplateError):
        resolve("${secrets.A}", ctx)
    # defaults are not shared between contexts
    other = TemplateContext()
    ctx.used_secrets.add("x")
    assert other.used_secrets == set()
