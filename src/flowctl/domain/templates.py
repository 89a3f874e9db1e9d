"""The `${...}` resolver: one safe way to feed values into a step's input.

Three roots exist and nothing else is evaluated:

- `${workflow.input.a.b}`   the run's input
- `${<step>.output.a.b}`    an upstream step's output
- `${secrets.NAME}`         a secret, resolved only inside the worker

A string that is exactly one reference takes the referenced value with its JSON
type (an integer stays an integer); a reference inside a longer string is
rendered as text. `$${` writes a literal `${`. Path segments are keys, or list
indexes written `.0` or `[0]`. A missing reference is a TemplateError that names
what is missing; there is no default and no eval.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

_REFERENCE = re.compile(r"\$\$\{|\$\{([^{}]*)\}")
_SEGMENT = re.compile(r"[^.\[\]]+|\[\d+\]")
WORKFLOW_ROOT = "workflow"
SECRETS_ROOT = "secrets"


class TemplateError(ValueError):
    """A reference that cannot be parsed or resolved."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed `${...}` expression."""

    root: str  # "workflow", "secrets" or a step name
    path: tuple[str | int, ...]
    text: str

    @property
    def step(self) -> str | None:
        return None if self.root in (WORKFLOW_ROOT, SECRETS_ROOT) else self.root


def parse_reference(expr: str) -> Reference:
    text = expr.strip()
    if not text:
        raise TemplateError("empty reference '${}'")
    segments: list[str | int] = []
    pos = 0
    for match in _SEGMENT.finditer(text):
        gap = text[pos : match.start()]
        if gap not in ("", "."):
            raise TemplateError(f"invalid reference '${{{text}}}'")
        token = match.group(0)
        segments.append(int(token[1:-1]) if token.startswith("[") else token)
        pos = match.end()
    if pos != len(text) or not segments or not isinstance(segments[0], str):
        raise TemplateError(f"invalid reference '${{{text}}}'")
    root = segments[0]
    if root == SECRETS_ROOT:
        if len(segments) != 2 or not isinstance(segments[1], str):
            raise TemplateError(f"invalid reference '${{{text}}}': use ${{secrets.NAME}}")
        return Reference(SECRETS_ROOT, (segments[1],), text)
    if root == WORKFLOW_ROOT:
        if len(segments) < 2 or segments[1] != "input":
            raise TemplateError(f"invalid reference '${{{text}}}': use ${{workflow.input.<field>}}")
        return Reference(WORKFLOW_ROOT, tuple(_key(s) for s in segments[2:]), text)
    if len(segments) < 2 or segments[1] != "output":
        raise TemplateError(f"invalid reference '${{{text}}}': use ${{{root}.output.<field>}}")
    return Reference(root, tuple(_key(s) for s in segments[2:]), text)


def _key(segment: str | int) -> str | int:
    if isinstance(segment, str) and segment.isdigit():
        return int(segment)
    return segment


def iter_references(value: Any) -> Iterator[Reference]:
    """Every reference in a JSON-like value (dict keys are not templated)."""
    if isinstance(value, str):
        for match in _REFERENCE.finditer(value):
            if match.group(0) != "$${":
                yield parse_reference(match.group(1))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from iter_references(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from iter_references(item)


def has_references(value: Any) -> bool:
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, Mapping):
        return any(has_references(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_references(v) for v in value)
    return False


@dataclass(slots=True)
class TemplateContext:
    workflow_input: Any = field(default_factory=dict)
    step_outputs: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    # Secret values that were used, so callers can redact them from outputs.
    used_secrets: set[str] = field(default_factory=set)

    def lookup(self, ref: Reference) -> Any:
        if ref.root == SECRETS_ROOT:
            name = ref.path[0]
            if name not in self.secrets:
                raise TemplateError(f"unknown secret '{name}' in '${{{ref.text}}}'")
            value = self.secrets[name]
            self.used_secrets.add(value)
            return value
        if ref.root == WORKFLOW_ROOT:
            return _walk(self.workflow_input, ref.path, ref, "workflow input")
        if ref.root not in self.step_outputs:
            raise TemplateError(
                f"'${{{ref.text}}}': step '{ref.root}' has no output (it has not completed)"
            )
        return _walk(self.step_outputs[ref.root], ref.path, ref, f"output of step '{ref.root}'")


def _walk(value: Any, path: tuple[str | int, ...], ref: Reference, what: str) -> Any:
    for depth, key in enumerate(path):
        where = ".".join(str(p) for p in path[:depth]) or "(top level)"
        if isinstance(value, Mapping):
            if str(key) not in value:
                raise TemplateError(f"'${{{ref.text}}}': {what} has no field '{key}' at {where}")
            value = value[str(key)]
        elif isinstance(value, list) and isinstance(key, int):
            if key >= len(value):
                raise TemplateError(
                    f"'${{{ref.text}}}': index {key} is out of range at {where} of {what}"
                )
            value = value[key]
        else:
            raise TemplateError(
                f"'${{{ref.text}}}': cannot take '{key}' of a {type(value).__name__} "
                f"at {where} of {what}"
            )
    return value


def resolve(value: Any, context: TemplateContext) -> Any:
    """`value` with every reference replaced; raises TemplateError."""
    if isinstance(value, str):
        return _resolve_string(value, context)
    if isinstance(value, Mapping):
        return {k: resolve(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, context) for v in value]
    return value


def _resolve_string(text: str, context: TemplateContext) -> Any:
    if "$" not in text:
        return text
    whole = _REFERENCE.fullmatch(text)
    if whole and whole.group(0) != "$${":
        return context.lookup(parse_reference(whole.group(1)))

    def render(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        found = context.lookup(parse_reference(match.group(1)))
        if isinstance(found, str):
            return found
        return json.dumps(found, separators=(",", ":"), ensure_ascii=False)

    return _REFERENCE.sub(render, text)
