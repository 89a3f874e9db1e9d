"""Definitions compiled into one DAG, and every way a definition is rejected."""

from __future__ import annotations

import itertools

import pytest

from flowctl.domain.graph import (
    DefinitionInvalid,
    FieldError,
    StepSpec,
    WorkflowGraph,
    build_graph,
    compile_linked_steps,
    compile_nodes,
    compile_tasks,
)

KNOWN = {"noop", "http.request", "agent", "sleep"}


def task(name: str, *deps: str, type: str = "noop", payload=None, **kw) -> StepSpec:
    return StepSpec(name=name, type=type, payload=payload or {}, dependencies=deps, **kw)


def errors_of(exc: pytest.ExceptionInfo[DefinitionInvalid]) -> list[tuple[str, str]]:
    return [(e.loc, e.message) for e in exc.value.errors]


def only_error(exc: pytest.ExceptionInfo[DefinitionInvalid]) -> FieldError:
    assert len(exc.value.errors) == 1, exc.value.errors
    return exc.value.errors[0]


def assert_cycle_path_is_real(path: str, deps: dict[str, tuple[str, ...]]) -> None:
    """`a -> b` in a cycle path means b depends on a; the path closes on itself."""
    names = path.split(" -> ")
    assert len(names) >= 3
    assert names[0] == names[-1]
    assert len(set(names[:-1])) == len(names) - 1
    for before, after in itertools.pairwise(names):
        assert before in deps[after], (before, after)


# --- a valid graph ---------------------------------------------------------------


def test_valid_tasks_compile_with_order_dependents_and_roots() -> None:
    graph = compile_tasks(
        [task("extract"), task("transform", "extract"), task("load", "transform")],
        known_types=KNOWN,
    )
    assert graph.names == ("extract", "transform", "load")
    assert graph.order == ("extract", "transform", "load")
    assert graph.roots() == ("extract",)
    assert graph.dependents == {
        "extract": ("transform",),
        "transform": ("load",),
        "load": (),
    }
    assert graph.ancestors("load") == {"extract", "transform"}
    assert graph.ancestors("extract") == set()
    assert graph.step("transform").dependencies == ("extract",)
    assert graph.step("load").loc == "tasks[2]"


def test_order_is_topological_and_stable_with_definition_order() -> None:
    graph = compile_tasks([task("c", "a"), task("a"), task("b"), task("d", "c", "b")])
    assert graph.order == ("a", "b", "c", "d")
    position = {name: i for i, name in enumerate(graph.order)}
    for spec in graph.steps:
        for dep in spec.dependencies:
            assert position[dep] < position[spec.name]
    # steps keep definition order even though order is topological
    assert graph.names == ("c", "a", "b", "d")
    assert graph.roots() == ("a", "b")


def test_step_lookup_of_unknown_name_is_a_key_error() -> None:
    graph = compile_tasks([task("a")])
    with pytest.raises(KeyError):
        graph.step("nope")


def test_to_list_from_list_round_trip() -> None:
    graph = compile_tasks(
        [
            task("a", priority=5, max_retries=2, timeout=1.5),
            task("b", "a", type="agent", payload={"q": "${a.output.x}"}, agent="bot"),
        ]
    )
    data = graph.to_list()
    assert data[1] == {
        "name": "b",
        "type": "agent",
        "payload": {"q": "${a.output.x}"},
        "dependencies": ["a"],
        "priority": 1,
        "max_retries": None,
        "timeout": None,
        "agent": "bot",
    }
    again = WorkflowGraph.from_list(data)
    assert again.to_list() == data
    assert again.order == graph.order
    assert again.dependents == graph.dependents


def test_step_spec_from_dict_defaults() -> None:
    spec = StepSpec.from_dict({"name": "a", "type": "noop", "payload": None})
    assert spec.payload == {}
    assert spec.dependencies == ()
    assert spec.priority == 1
    assert spec.max_retries is None
    assert spec.timeout is None


@pytest.mark.parametrize("name", ["a", "A9", "_x", "step-1", "s_2-b", "x" * 128, "9lives"])
def test_valid_step_names(name: str) -> None:
    assert compile_tasks([task(name)]).names == (name,)


@pytest.mark.parametrize("name", ["", "-a", "a b", "a.b", "a/b", "é", "x" * 129, "a\n"])
def test_invalid_step_names(name: str) -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks([task(name)])
    err = only_error(exc)
    assert err.loc == "tasks[0].name"
    assert err.message.startswith(f"invalid step name {name!r}")
    assert "1-128" in err.message


# --- rejected definitions --------------------------------------------------------


def test_no_steps() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks([])
    err = only_error(exc)
    assert (err.loc, err.type) == ("", "too_short")
    assert "at least one step" in err.message
    assert str(err) == err.message  # no dangling ": " for an empty location


def test_duplicate_names() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks([task("a"), task("b"), task("a")])
    assert errors_of(exc) == [("tasks[2].name", "duplicate step name 'a' (also tasks[0])")]


def test_unknown_step_type() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks([task("a"), task("b", type="bogus")], known_types={"noop", "sleep"})
    err = only_error(exc)
    assert err.loc == "tasks[1].type"
    assert err.message == "unknown step type 'bogus' (known: noop, sleep)"


def test_step_types_are_not_checked_without_a_registry() -> None:
    assert compile_tasks([task("a", type="anything")]).step("a").type == "anything"


def test_unknown_dependency() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks([task("a"), task("b", "a", "ghost")])
    assert errors_of(exc) == [("tasks[1].dependencies[1]", "unknown dependency 'ghost'")]


def test_self_dependency() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks([task("a"), task("b", "b")])
    assert errors_of(exc) == [("tasks[1].dependencies[0]", "step 'b' depends on itself")]


def test_duplicate_dependency() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks([task("a"), task("b", "a", "a")])
    assert errors_of(exc) == [("tasks[1].dependencies[1]", "dependency 'a' is listed twice")]


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks(
            [task("a"), task("a", "ghost"), task("-x", type="bogus"), task("c", "c")],
            known_types=KNOWN,
        )
    locs = [e.loc for e in exc.value.errors]
    assert locs == [
        "tasks[1].name",
        "tasks[2].name",
        "tasks[2].type",
        "tasks[1].dependencies[0]",
        "tasks[3].dependencies[0]",
    ]
    # the exception text carries every error with its location
    text = str(exc.value)
    assert text.count("; ") == 4
    assert "tasks[1].dependencies[0]: unknown dependency 'ghost'" in text
    assert isinstance(exc.value, ValueError)


def test_two_step_cycle() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks([task("a", "b"), task("b", "a")])
    err = only_error(exc)
    assert err.message.startswith("dependency cycle: ")
    path = err.message.removeprefix("dependency cycle: ")
    assert path == "b -> a -> b"
    assert err.loc == "tasks[1]"


def test_three_step_cycle_path_is_reported_in_execution_direction() -> None:
    specs = [task("a", "c"), task("b", "a"), task("c", "b")]
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks(specs)
    err = only_error(exc)
    assert err.message == "dependency cycle: b -> c -> a -> b"
    assert_cycle_path_is_real(
        err.message.removeprefix("dependency cycle: "), {s.name: s.dependencies for s in specs}
    )


def test_cycle_behind_valid_steps_names_only_the_loop() -> None:
    specs = [
        task("start"),
        task("x", "start", "z"),
        task("y", "x"),
        task("z", "y"),
        task("after", "z"),
    ]
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks(specs)
    path = only_error(exc).message.removeprefix("dependency cycle: ")
    assert set(path.split(" -> ")) == {"x", "y", "z"}
    assert_cycle_path_is_real(path, {s.name: s.dependencies for s in specs})


def test_template_referencing_a_sibling_is_rejected() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks([task("a"), task("b", payload={"x": "${a.output.value}"})])
    assert errors_of(exc) == [
        (
            "tasks[1].payload",
            "'${a.output.value}' references step 'a', which does not run before 'b'",
        )
    ]


def test_template_referencing_a_downstream_step_is_rejected() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks([task("a", payload=["${b.output}"]), task("b", "a")])
    err = only_error(exc)
    assert err.loc == "tasks[0].payload"
    assert "which does not run before 'a'" in err.message


def test_template_referencing_itself_is_rejected() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks([task("a", payload={"x": "${a.output.y}"})])
    assert "does not run before 'a'" in only_error(exc).message


def test_template_referencing_an_unknown_step() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks([task("a", payload={"deep": {"list": ["x ${ghost.output.v} y"]}})])
    assert errors_of(exc) == [
        ("tasks[0].payload", "'${ghost.output.v}' references unknown step 'ghost'")
    ]


def test_invalid_template_syntax_is_a_payload_error() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks([task("a", payload={"x": "${__import__('os')}"})])
    err = only_error(exc)
    assert err.loc == "tasks[0].payload"
    assert "invalid reference" in err.message


def test_agent_step_templates_are_located_in_input_mapping() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        compile_tasks([task("a"), task("b", type="agent", payload={"q": "${a.output.v}"})])
    assert only_error(exc).loc == "tasks[1].input_mapping"


def test_template_referencing_a_transitive_ancestor_is_accepted() -> None:
    graph = compile_tasks(
        [
            task("a"),
            task("b", "a"),
            task(
                "c",
                "b",
                payload={
                    "x": "${a.output.v}",
                    "y": "${workflow.input.q}",
                    "z": "${secrets.TOKEN}",
                    "lit": "$${nowhere.output.v}",
                },
            ),
        ]
    )
    assert graph.order == ("a", "b", "c")


def test_template_checks_can_be_turned_off() -> None:
    graph = build_graph(
        [task("a", payload="${ghost.output.v}", loc="tasks[0]")], check_templates=False
    )
    assert graph.names == ("a",)


def test_build_graph_with_unknown_start() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        build_graph([task("a", loc="x")], start="zzz", start_loc="entry")
    assert errors_of(exc) == [("entry", "unknown start step 'zzz'")]


# --- agent workflows: start_step + steps + next_step -----------------------------


def linked(start: str, links: dict[str, str | None], **types: str):
    steps = {name: StepSpec(name=name, type=types.get(name, "noop")) for name in links}
    return compile_linked_steps(start, steps, links, known_types=KNOWN)


def test_linked_steps_compile_to_a_chain() -> None:
    graph = linked("a", {"b": "c", "a": "b", "c": None})
    assert graph.order == ("a", "b", "c")
    assert graph.step("b").dependencies == ("a",)
    assert graph.step("a").loc == "steps.a"
    # step dependencies given by the caller are ignored and derived from next_step
    spec = StepSpec(name="b", type="noop", dependencies=("zzz",))
    graph = compile_linked_steps("a", {"a": StepSpec("a", "noop"), "b": spec}, {"a": "b"})
    assert graph.step("b").dependencies == ("a",)


def test_linked_unreachable_step() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        linked("a", {"a": "b", "b": None, "orphan": None})
    assert errors_of(exc) == [("steps.orphan", "step 'orphan' is not reachable from 'a'")]


def test_linked_step_pointing_into_the_chain_is_still_unreachable() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        linked("a", {"a": "b", "b": None, "side": "b"})
    assert errors_of(exc) == [("steps.side", "step 'side' is not reachable from 'a'")]


def test_linked_start_that_is_not_the_head_leaves_the_head_unreachable() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        linked("b", {"a": "b", "b": None})
    assert errors_of(exc) == [("steps.a", "step 'a' is not reachable from 'b'")]


def test_linked_unknown_next_step_self_link_and_unknown_start() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        linked("nope", {"a": "ghost", "b": "b"})
    assert errors_of(exc) == [
        ("steps.a.next_step", "unknown step 'ghost'"),
        ("steps.b.next_step", "step 'b' points to itself"),
        ("start_step", "unknown start step 'nope'"),
    ]


def test_linked_cycle_is_a_next_step_cycle() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        linked("a", {"a": "b", "b": "c", "c": "b"})
    err = only_error(exc)
    assert err.message == "next_step cycle: c -> b -> c"
    # the field that closes the loop: c.next_step points back to b
    assert err.loc == "steps.c.next_step"


def test_linked_unknown_step_type() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        linked("a", {"a": None}, a="bogus")
    err = only_error(exc)
    assert err.loc == "steps.a.type"
    assert "unknown step type 'bogus'" in err.message


def test_linked_template_error_uses_the_step_location() -> None:
    steps = {
        "a": StepSpec("a", "agent", payload={"q": "${b.output.x}"}),
        "b": StepSpec("b", "noop"),
    }
    with pytest.raises(DefinitionInvalid) as exc:
        compile_linked_steps("a", steps, {"a": "b"}, known_types=KNOWN)
    assert errors_of(exc) == [
        (
            "steps.a.input_mapping",
            "'${b.output.x}' references step 'b', which does not run before 'a'",
        )
    ]


# --- FlowRunner YAML: nodes + next ------------------------------------------------


def nodes(links: dict[str, list[str]], **types: str):
    specs = {name: StepSpec(name=name, type=types.get(name, "noop")) for name in links}
    return compile_nodes(specs, links, known_types=KNOWN)


def test_nodes_fan_out_and_join() -> None:
    graph = nodes({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []})
    assert graph.order == ("a", "b", "c", "d")
    assert graph.step("d").dependencies == ("b", "c")
    assert graph.dependents["a"] == ("b", "c")
    assert graph.step("c").loc == "nodes.c"


def test_nodes_repeated_next_target_is_one_edge() -> None:
    graph = nodes({"a": ["b", "b"], "b": []})
    assert graph.step("b").dependencies == ("a",)


def test_nodes_entry_is_the_first_node_listed() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        nodes({"b": [], "a": ["b"]})
    assert errors_of(exc) == [("nodes.a", "step 'a' is not reachable from 'b'")]


def test_nodes_unreachable() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        nodes({"a": ["b"], "b": [], "lost": [], "lost2": ["b"]})
    assert errors_of(exc) == [
        ("nodes.lost", "step 'lost' is not reachable from 'a'"),
        ("nodes.lost2", "step 'lost2' is not reachable from 'a'"),
    ]


def test_nodes_unknown_and_self_next() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        nodes({"a": ["a", "ghost"]})
    assert errors_of(exc) == [
        ("nodes.a.next", "node 'a' points to itself"),
        ("nodes.a.next", "unknown node 'ghost'"),
    ]


def test_nodes_cycle() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        nodes({"a": ["b"], "b": ["c"], "c": ["b"]})
    err = only_error(exc)
    assert err.message == "dependency cycle: c -> b -> c"
    assert err.loc == "nodes.c"


def test_nodes_unknown_type() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        nodes({"a": ["b"], "b": []}, b="shell")
    err = only_error(exc)
    assert err.loc == "nodes.b.type"
    assert err.message.startswith("unknown step type 'shell'")


def test_no_nodes() -> None:
    with pytest.raises(DefinitionInvalid) as exc:
        compile_nodes({}, {})
    err = only_error(exc)
    assert (err.loc, err.type) == ("nodes", "too_short")


# --- the three syntaxes agree -------------------------------------------------------


def _shape(graph: WorkflowGraph):
    return graph.to_list(), graph.order, dict(graph.dependents)


def test_three_syntaxes_compile_to_the_same_chain() -> None:
    payloads = {
        "fetch": {"url": "${workflow.input.url}"},
        "parse": {"body": "${fetch.output.body}"},
        "store": {"rows": "${parse.output.rows}", "n": 3},
    }

    def spec(name: str, *deps: str) -> StepSpec:
        return StepSpec(name=name, type="noop", payload=payloads[name], dependencies=deps)

    from_tasks = compile_tasks(
        [spec("fetch"), spec("parse", "fetch"), spec("store", "parse")], known_types=KNOWN
    )
    from_linked = compile_linked_steps(
        "fetch",
        {n: spec(n) for n in ("fetch", "parse", "store")},
        {"fetch": "parse", "parse": "store", "store": None},
        known_types=KNOWN,
    )
    from_nodes = compile_nodes(
        {n: spec(n) for n in ("fetch", "parse", "store")},
        {"fetch": ["parse"], "parse": ["store"]},
        known_types=KNOWN,
    )
    assert _shape(from_tasks) == _shape(from_linked) == _shape(from_nodes)
    assert from_tasks.order == ("fetch", "parse", "store")


def test_tasks_and_nodes_compile_to_the_same_diamond() -> None:
    from_tasks = compile_tasks(
        [task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c")], known_types=KNOWN
    )
    from_nodes = nodes({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []})
    assert _shape(from_tasks) == _shape(from_nodes)
    assert from_tasks.ancestors("d") == from_nodes.ancestors("d") == {"a", "b", "c"}
