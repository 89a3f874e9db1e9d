"""Workflow definitions compiled into one validated DAG.

Three syntaxes describe the same thing and compile to a `WorkflowGraph`:

- FlowCtl / PyTaskFlow: a `tasks` list whose items name their `dependencies`;
- agent workflows: `start_step` plus a `steps` map linked by `next_step`;
- FlowRunner YAML: `nodes` linked by `next` (a name, a list, or a map of names).

Validation collects every problem with the location of the field that causes
it (`tasks[2].dependencies[0]`, `steps.load.next_step`), so an API can answer
with all of them at once.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from flowctl.domain.templates import TemplateError, iter_references

STEP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,127}")
STEP_NAME_RULE = "1-128 letters, digits, '_' or '-', not starting with '-'"


@dataclass(frozen=True, slots=True)
class FieldError:
    loc: str
    message: str
    type: str = "value_error"

    def __str__(self) -> str:
        return f"{self.loc}: {self.message}" if self.loc else self.message


class DefinitionInvalid(ValueError):
    """A definition that cannot become a DAG; carries every problem found."""

    def __init__(self, errors: Sequence[FieldError]):
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One step of a definition, whatever syntax it was written in."""

    name: str
    type: str
    payload: Any = field(default_factory=dict)
    dependencies: tuple[str, ...] = ()
    priority: int = 1
    max_retries: int | None = None  # None: from the definition's retry policy
    timeout: float | None = None  # seconds
    agent: str | None = None  # agent name, for `agent` steps
    loc: str = ""  # where the step was written, for error messages

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "payload": self.payload,
            "dependencies": list(self.dependencies),
            "priority": self.priority,
            "max_retries": self.max_retries,
            "timeout": self.timeout,
            "agent": self.agent,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepSpec:
        return cls(
            name=data["name"],
            type=data["type"],
            payload=data.get("payload") or {},
            dependencies=tuple(data.get("dependencies") or ()),
            priority=int(data.get("priority", 1)),
            max_retries=data.get("max_retries"),
            timeout=data.get("timeout"),
            agent=data.get("agent"),
        )


@dataclass(frozen=True, slots=True)
class WorkflowGraph:
    """A validated DAG: steps in definition order, plus derived edges."""

    steps: tuple[StepSpec, ...]
    dependents: Mapping[str, tuple[str, ...]]
    order: tuple[str, ...]  # a topological order, stable w.r.t. definition order

    def step(self, name: str) -> StepSpec:
        for spec in self.steps:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)

    def roots(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps if not s.dependencies)

    def ancestors(self, name: str) -> set[str]:
        by_name = {s.name: s for s in self.steps}
        seen: set[str] = set()
        stack = list(by_name[name].dependencies)
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(by_name[current].dependencies)
        return seen

    def to_list(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.steps]

    @classmethod
    def from_list(cls, data: Iterable[Mapping[str, Any]]) -> WorkflowGraph:
        return build_graph([StepSpec.from_dict(d) for d in data])


def build_graph(
    specs: Sequence[StepSpec],
    *,
    known_types: Collection[str] | None = None,
    start: str | None = None,
    start_loc: str = "start_step",
    check_templates: bool = True,
) -> WorkflowGraph:
    """Validate `specs` as a DAG; raise DefinitionInvalid listing every problem."""
    errors: list[FieldError] = []
    if not specs:
        raise DefinitionInvalid([FieldError("", "a workflow needs at least one step", "too_short")])

    by_name: dict[str, StepSpec] = {}
    for spec in specs:
        if not STEP_NAME.fullmatch(spec.name):
            errors.append(
                FieldError(f"{spec.loc}.name", f"invalid step name {spec.name!r}: {STEP_NAME_RULE}")
            )
        if spec.name in by_name:
            first = by_name[spec.name].loc
            errors.append(
                FieldError(f"{spec.loc}.name", f"duplicate step name '{spec.name}' (also {first})")
            )
        else:
            by_name[spec.name] = spec
        if known_types is not None and spec.type not in known_types:
            known = ", ".join(sorted(known_types))
            errors.append(
                FieldError(f"{spec.loc}.type", f"unknown step type '{spec.type}' (known: {known})")
            )

    for spec in specs:
        seen_deps: set[str] = set()
        for i, dep in enumerate(spec.dependencies):
            where = f"{spec.loc}.dependencies[{i}]"
            if dep == spec.name:
                errors.append(FieldError(where, f"step '{spec.name}' depends on itself"))
            elif dep not in by_name:
                errors.append(FieldError(where, f"unknown dependency '{dep}'"))
            elif dep in seen_deps:
                errors.append(FieldError(where, f"dependency '{dep}' is listed twice"))
            seen_deps.add(dep)
    if errors:
        raise DefinitionInvalid(errors)

    order, cycle = _topological_order(specs)
    if cycle:
        path = " -> ".join(cycle)
        raise DefinitionInvalid([FieldError(by_name[cycle[0]].loc, f"dependency cycle: {path}")])

    dependents: dict[str, list[str]] = {s.name: [] for s in specs}
    for spec in specs:
        for dep in spec.dependencies:
            dependents[dep].append(spec.name)
    graph = WorkflowGraph(
        steps=tuple(specs),
        dependents={k: tuple(v) for k, v in dependents.items()},
        order=tuple(order),
    )

    if start is not None:
        if start not in by_name:
            raise DefinitionInvalid([FieldError(start_loc, f"unknown start step '{start}'")])
        reachable = _reachable(start, graph.dependents)
        for spec in specs:
            if spec.name not in reachable:
                errors.append(
                    FieldError(spec.loc, f"step '{spec.name}' is not reachable from '{start}'")
                )
    if check_templates:
        errors.extend(_template_errors(graph))
    if errors:
        raise DefinitionInvalid(errors)
    return graph


def _topological_order(specs: Sequence[StepSpec]) -> tuple[list[str], list[str]]:
    """Kahn's algorithm in definition order; on a cycle, return one cycle's path."""
    indegree = {s.name: len(s.dependencies) for s in specs}
    dependents: dict[str, list[str]] = {s.name: [] for s in specs}
    for spec in specs:
        for dep in spec.dependencies:
            dependents[dep].append(spec.name)
    ready = [s.name for s in specs if indegree[s.name] == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for child in dependents[name]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if len(order) == len(specs):
        return order, []
    # Every leftover node lies on or downstream of a cycle; walk dependencies
    # from one of them until a node repeats.
    leftover = {s.name: s for s in specs if s.name not in set(order)}
    current = next(iter(leftover))
    path: list[str] = []
    index: dict[str, int] = {}
    while current not in index:
        index[current] = len(path)
        path.append(current)
        current = next(d for d in leftover[current].dependencies if d in leftover)
    cycle = path[index[current] :]
    # Report it in execution direction: a -> b means b depends on a.
    cycle.reverse()
    return order, [*cycle, cycle[0]]


def _reachable(start: str, dependents: Mapping[str, Sequence[str]]) -> set[str]:
    seen = {start}
    stack = [start]
    while stack:
        for child in dependents[stack.pop()]:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def _template_errors(graph: WorkflowGraph) -> list[FieldError]:
    errors: list[FieldError] = []
    names = set(graph.names)
    for spec in graph.steps:
        where = f"{spec.loc}.{'input_mapping' if spec.type == 'agent' else 'payload'}"
        try:
            refs = list(iter_references(spec.payload))
        except TemplateError as exc:
            errors.append(FieldError(where, str(exc)))
            continue
        ancestors: set[str] | None = None
        for ref in refs:
            if ref.step is None:
                continue
            if ref.step not in names:
                errors.append(
                    FieldError(where, f"'${{{ref.text}}}' references unknown step '{ref.step}'")
                )
                continue
            if ancestors is None:
                ancestors = graph.ancestors(spec.name)
            if ref.step not in ancestors:
                errors.append(
                    FieldError(
                        where,
                        f"'${{{ref.text}}}' references step '{ref.step}', which does not run "
                        f"before '{spec.name}'",
                    )
                )
    return errors


# --- the three syntaxes -------------------------------------------------------


def compile_tasks(
    tasks: Sequence[StepSpec], *, known_types: Collection[str] | None = None
) -> WorkflowGraph:
    """FlowCtl / PyTaskFlow: `tasks[i]` with explicit `dependencies`."""
    located = [s if s.loc else replace(s, loc=f"tasks[{i}]") for i, s in enumerate(tasks)]
    return build_graph(located, known_types=known_types)


def compile_linked_steps(
    start_step: str,
    steps: Mapping[str, StepSpec],
    next_steps: Mapping[str, str | None],
    *,
    known_types: Collection[str] | None = None,
) -> WorkflowGraph:
    """Agent workflows: `steps.<id>` chained by `next_step`, entered at `start_step`.

    `steps` holds each step (its dependencies are ignored and derived here);
    `next_steps` maps a step id to the id of the step that follows it.
    """
    errors: list[FieldError] = []
    predecessors: dict[str, list[str]] = {name: [] for name in steps}
    for name, nxt in next_steps.items():
        if nxt is None:
            continue
        if nxt == name:
            errors.append(FieldError(f"steps.{name}.next_step", f"step '{name}' points to itself"))
        elif nxt not in steps:
            errors.append(FieldError(f"steps.{name}.next_step", f"unknown step '{nxt}'"))
        else:
            predecessors[nxt].append(name)
    if start_step not in steps:
        errors.append(FieldError("start_step", f"unknown start step '{start_step}'"))
    if errors:
        raise DefinitionInvalid(errors)
    specs = [
        replace(spec, dependencies=tuple(predecessors[name]), loc=f"steps.{name}")
        for name, spec in steps.items()
    ]
    try:
        return build_graph(specs, known_types=known_types, start=start_step)
    except DefinitionInvalid as exc:
        # A cycle in this syntax is a loop of next_step links.
        for err in exc.errors:
            if err.message.startswith("dependency cycle"):
                err_index = exc.errors.index(err)
                exc.errors[err_index] = FieldError(
                    err.loc + ".next_step",
                    err.message.replace("dependency cycle", "next_step cycle"),
                )
        raise DefinitionInvalid(exc.errors) from None


def compile_nodes(
    nodes: Mapping[str, StepSpec],
    next_nodes: Mapping[str, Sequence[str]],
    *,
    known_types: Collection[str] | None = None,
) -> WorkflowGraph:
    """FlowRunner YAML: `nodes.<id>` with `next`, entered at the first node listed."""
    if not nodes:
        raise DefinitionInvalid(
            [FieldError("nodes", "a flow needs at least one node", "too_short")]
        )
    errors: list[FieldError] = []
    predecessors: dict[str, list[str]] = {name: [] for name in nodes}
    for name, targets in next_nodes.items():
        for target in targets:
            if target == name:
                errors.append(FieldError(f"nodes.{name}.next", f"node '{name}' points to itself"))
            elif target not in nodes:
                errors.append(FieldError(f"nodes.{name}.next", f"unknown node '{target}'"))
            elif name not in predecessors[target]:
                predecessors[target].append(name)
    if errors:
        raise DefinitionInvalid(errors)
    specs = [
        replace(spec, dependencies=tuple(predecessors[name]), loc=f"nodes.{name}")
        for name, spec in nodes.items()
    ]
    entry = next(iter(nodes))
    return build_graph(specs, known_types=known_types, start=entry, start_loc=f"nodes.{entry}")
