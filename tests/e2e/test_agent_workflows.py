"""Agent-workflow definitions (`start_step` + `steps`) on /api/v1/workflows, next
to FlowCtl workflows on the same paths, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flowctl.config import Settings
from flowctl.domain.graph import WorkflowGraph
from flowctl.engine.definitions import (
    DefinitionChanges,
    DefinitionService,
    LinkedStep,
    NotExecutable,
    StepsData,
)
from flowctl.engine.errors import InvalidInput, NotFound
from flowctl.executors.registry import default_registry
from flowctl.store import agents as agent_store
from flowctl.store.database import Database

WORKFLOW_KEYS = {
    "id",
    "name",
    "description",
    "version",
    "workflow_data",
    "status",
    "created_at",
    "updated_at",
}


def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def agents(api) -> dict[str, str]:
    """Two active agents and an inactive one, registered once per server."""
    names = {"extract": f"Extractor-{uid()}", "load": f"Loader-{uid()}", "off": f"Off-{uid()}"}
    ids = {}
    for role, name in names.items():
        resp = api.http.post(
            "/api/v1/agents", json={"name": name, "url": "http://127.0.0.1:9/agent"}
        )
        assert resp.status_code == 201, resp.text
        ids[role] = resp.json()["id"]
    resp = api.http.put(f"/api/v1/agents/{ids['off']}", json={"status": "inactive"})
    assert resp.status_code == 200, resp.text
    return names


def body(agents: dict[str, str], name: str | None = None, **overrides) -> dict:
    """The spec's create example, two steps, with this server's agents."""
    return {
        "name": name or f"pipeline-{uid()}",
        "description": "ETL pipeline for data processing",
        "start_step": "extract",
        "steps": {
            "extract": {
                "id": "extract",
                "agent_name": agents["extract"],
                "next_step": "load",
                "input_mapping": {
                    "source_url": "${workflow.input.data_source}",
                    "format": "csv",
                    "limit": 10,
                },
            },
            "load": {
                "id": "load",
                "agent_name": agents["load"],
                "next_step": None,
                "input_mapping": {"raw_data": "${extract.output.data}"},
            },
        },
        **overrides,
    }


def create(api, payload: dict) -> dict:
    resp = api.http.post("/api/v1/workflows", json=payload)
    assert resp.status_code == 201, resp.text
    return resp.json()


def listing(api, **params) -> dict:
    resp = api.http.get("/api/v1/workflows", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def fields(resp) -> list[str]:
    return [e["field"] for e in resp.json()["errors"]]


def assert_error(resp, status: int, field: str, text: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    err = resp.json()
    assert err["status_code"] == status
    assert isinstance(err["error"], str) and err["detail"] == err["error"]
    assert err["request_id"] == resp.headers["x-request-id"]
    assert field in fields(resp), err
    if text is not None:
        assert text in err["detail"], err


# --- create and get ---------------------------------------------------------------


def test_create_answers_201_in_the_spec_shape_and_get_agrees(api, agents):
    payload = body(agents)
    created = create(api, payload)
    assert set(created) == WORKFLOW_KEYS
    assert created["name"] == payload["name"]
    assert created["description"] == payload["description"]
    assert created["version"] == 1
    assert created["status"] == "active"
    assert created["workflow_data"] == {
        "start_step": "extract",
        "steps": payload["steps"],
    }
    # steps in the order written, on PostgreSQL too (jsonb would sort them)
    assert list(created["workflow_data"]["steps"]) == ["extract", "load"]
    assert created["created_at"] == created["updated_at"]
    assert created["created_at"].endswith("Z")
    got = api.http.get(f"/api/v1/workflows/{created['id']}")
    assert got.status_code == 200
    assert got.json() == created
    assert list(got.json()["workflow_data"]["steps"]) == ["extract", "load"]


def test_a_definition_is_not_a_flowctl_run(api, agents):
    created = create(api, body(agents))
    # FlowCtl's run-only endpoints do not know it
    assert api.http.get(f"/api/v1/workflows/{created['id']}/tasks").status_code == 404
    assert api.http.put(f"/api/v1/workflows/{created['id']}/cancel").status_code == 404


def test_next_step_may_be_left_out_and_description_is_optional(api, agents):
    payload = body(agents)
    del payload["description"]
    del payload["steps"]["load"]["next_step"]
    created = create(api, payload)
    assert created["description"] is None
    assert created["workflow_data"]["steps"]["load"]["next_step"] is None


# --- validation: 400 with the field named -----------------------------------------


def _unknown_agent(b, agents):
    b["steps"]["load"]["agent_name"] = "NoSuchAgent"
    return "steps.load.agent_name", "Agent 'NoSuchAgent' not found or inactive"


def _inactive_agent(b, agents):
    b["steps"]["extract"]["agent_name"] = agents["off"]
    return "steps.extract.agent_name", f"Agent '{agents['off']}' not found or inactive"


def _cycle(b, agents):
    b["steps"]["load"]["next_step"] = "extract"
    b["steps"]["mid"] = {
        "id": "mid",
        "agent_name": agents["load"],
        "next_step": "extract",
        "input_mapping": {},
    }
    return "steps.load.next_step", "next_step cycle"


def _self_loop(b, agents):
    b["steps"]["load"]["next_step"] = "load"
    return "steps.load.next_step", "points to itself"


def _unreachable(b, agents):
    b["steps"]["orphan"] = {"id": "orphan", "agent_name": agents["load"], "input_mapping": {}}
    return "steps.orphan", "step 'orphan' is not reachable from 'extract'"


def _unknown_start(b, agents):
    b["start_step"] = "nowhere"
    return "start_step", "unknown start step 'nowhere'"


def _unknown_next(b, agents):
    b["steps"]["load"]["next_step"] = "ghost"
    return "steps.load.next_step", "unknown step 'ghost'"


def _later_step_reference(b, agents):
    b["steps"]["extract"]["input_mapping"]["x"] = "${load.output.data}"
    return "steps.extract.input_mapping", "does not run before 'extract'"


def _unknown_step_reference(b, agents):
    b["steps"]["load"]["input_mapping"]["x"] = "${ghost.output.data}"
    return "steps.load.input_mapping", "unknown step 'ghost'"


def _bad_workflow_reference(b, agents):
    b["steps"]["load"]["input_mapping"]["x"] = "${workflow.output.data}"
    return "steps.load.input_mapping", "workflow.input"


def _id_mismatch(b, agents):
    b["steps"]["load"]["id"] = "loader"
    return "steps.load.id", "differs from its key"


@pytest.mark.parametrize(
    "breaks",
    [
        _unknown_agent,
        _inactive_agent,
        _cycle,
        _self_loop,
        _unreachable,
        _unknown_start,
        _unknown_next,
        _later_step_reference,
        _unknown_step_reference,
        _bad_workflow_reference,
        _id_mismatch,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_invalid_definitions_are_400_naming_the_field(api, agents, breaks):
    payload = body(agents)
    field, text = breaks(payload, agents)
    resp = api.http.post("/api/v1/workflows", json=payload)
    assert_error(resp, 400, field, text)
    assert resp.json()["path"] == "/api/v1/workflows"
    assert listing(api, name=payload["name"], status="active")["total"] == 0


def test_all_problems_are_reported_at_once(api, agents):
    payload = body(agents)
    payload["steps"]["load"]["agent_name"] = "NoSuchAgent"
    payload["steps"]["orphan"] = {"id": "orphan", "agent_name": agents["load"], "input_mapping": {}}
    resp = api.http.post("/api/v1/workflows", json=payload)
    assert resp.status_code == 400
    assert {"steps.load.agent_name", "steps.orphan"} <= set(fields(resp))


def test_duplicate_name_is_400_and_a_deleted_name_is_free(api, agents):
    name = f"unique-{uid()}"
    first = create(api, body(agents, name))
    resp = api.http.post("/api/v1/workflows", json=body(agents, name))
    assert_error(resp, 400, "name", f"Workflow name '{name}' already exists")
    # FlowCtl workflows do not take names
    flowctl = api.submit({"name": name, "tasks": [{"name": "a", "type": "noop"}]})
    assert flowctl["name"] == name
    assert api.http.delete(f"/api/v1/workflows/{first['id']}").status_code == 200
    second = create(api, body(agents, name))
    assert second["id"] != first["id"]


def test_racing_creates_of_one_name_make_one_definition(api, agents):
    name = f"race-{uid()}"
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda _: api.http.post("/api/v1/workflows", json=body(agents, name)).status_code,
                range(8),
            )
        )
    assert sorted(codes) == [201] + [400] * 7
    assert listing(api, name=name)["total"] == 1


# --- validation: 422 field errors -------------------------------------------------


def _without(key):
    def change(b):
        del b[key]

    change.__name__ = f"without_{key}"
    return change


def _set(path, value, name):
    def change(b):
        target = b
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    change.__name__ = name
    return change


def _drop_step_field(key):
    def change(b):
        del b["steps"]["load"][key]

    change.__name__ = f"step_without_{key}"
    return change


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_without("name"), "name"),
        (_set(["name"], "", "empty_name"), "name"),
        (_set(["name"], "x" * 256, "long_name"), "name"),
        (_set(["name"], 7, "number_name"), "name"),
        (_set(["description"], 5, "number_description"), "description"),
        (_without("start_step"), "start_step"),
        (_without("steps"), "steps"),
        (_set(["steps"], {}, "no_steps"), "steps"),
        (_set(["steps"], [], "steps_list"), "steps"),
        (_set(["start_step"], "", "empty_start"), "start_step"),
        (_drop_step_field("agent_name"), "steps.load.agent_name"),
        (_drop_step_field("input_mapping"), "steps.load.input_mapping"),
        (_drop_step_field("id"), "steps.load.id"),
        (
            _set(["steps", "load", "input_mapping"], ["x"], "mapping_list"),
            "steps.load.input_mapping",
        ),
        (_set(["steps", "load", "next_step"], 3, "number_next"), "steps.load.next_step"),
        (_set(["steps", "load", "agent_name"], "", "empty_agent"), "steps.load.agent_name"),
        (_set(["steps", "load", "retries"], 3, "unknown_step_field"), "steps.load.retries"),
        (_set(["owner"], "me", "unknown_field"), "owner"),
    ],
    ids=lambda v: getattr(v, "__name__", None) or str(v),
)
def test_field_errors_are_422_naming_the_field(api, agents, change, field):
    payload = body(agents)
    change(payload)
    resp = api.http.post("/api/v1/workflows", json=payload)
    assert_error(resp, 422, field)


def test_step_ids_follow_the_step_name_rule(api, agents):
    payload = body(agents)
    payload["steps"]["bad id!"] = {
        "id": "bad id!",
        "agent_name": agents["load"],
        "input_mapping": {},
    }
    resp = api.http.post("/api/v1/workflows", json=payload)
    assert_error(resp, 422, "steps.bad id!")


@pytest.mark.parametrize(
    ("payload", "fields_named", "text"),
    [
        (
            {"name": "both", "tasks": [{"name": "a", "type": "noop"}], "start_step": "a"},
            ["tasks", "steps"],
            "has both",
        ),
        ({"name": "neither"}, ["tasks", "steps"], "has neither"),
        ([1, 2], ["body"], "JSON object"),
    ],
    ids=["both", "neither", "not-an-object"],
)
def test_a_body_must_be_one_of_the_two_shapes(api, payload, fields_named, text):
    resp = api.http.post("/api/v1/workflows", json=payload)
    assert resp.status_code == 422, resp.text
    assert fields(resp) == fields_named
    assert text in resp.json()["detail"]
    assert "start_step" in resp.json()["detail"] and "tasks" in resp.json()["detail"]


# --- list -------------------------------------------------------------------------


def test_list_filters_by_status_vocabulary_and_renders_each_shape(api, agents):
    active = create(api, body(agents))
    inactive = create(api, body(agents))
    resp = api.http.put(f"/api/v1/workflows/{inactive['id']}", json={"status": "inactive"})
    assert resp.status_code == 200 and resp.json()["status"] == "inactive"
    deleted = create(api, body(agents))
    api.http.delete(f"/api/v1/workflows/{deleted['id']}")
    run = api.submit({"name": f"run-{uid()}", "tasks": [{"name": "a", "type": "noop"}]})
    api.wait(run["id"])

    def ids(**params) -> set[str]:
        page = listing(api, page_size=100, **params)
        assert page["items"] == page["workflows"]
        assert page["page_size"] == page["limit"] == 100
        return {w["id"] for w in page["items"]}

    assert active["id"] in ids(status="active")
    assert not {inactive["id"], deleted["id"], run["id"]} & ids(status="active")
    assert ids(status="inactive") >= {inactive["id"]}
    assert ids(status="deleted") >= {deleted["id"]}
    assert not {active["id"], inactive["id"]} & ids(status="deleted")
    completed = listing(api, status="completed", limit=100)["workflows"]
    assert run["id"] in {w["id"] for w in completed}
    assert all("tasks" in w and w["status"] == "completed" for w in completed)
    # without a status: both kinds, each in its own shape, deleted left out
    both = listing(api, page_size=100)["items"]
    by_id = {w["id"]: w for w in both}
    assert {active["id"], inactive["id"], run["id"]} <= set(by_id)
    assert deleted["id"] not in by_id
    assert set(by_id[active["id"]]) == WORKFLOW_KEYS
    assert "tasks" in by_id[run["id"]] and "workflow_data" not in by_id[run["id"]]
    created = [w["created_at"] for w in both]
    assert created == sorted(created, reverse=True)  # newest first by default


def test_list_paginates_with_both_vocabularies(api, agents):
    name = f"paged-{uid()}"
    create(api, body(agents, name))
    first = listing(api, page=1, page_size=1)
    assert first["page"] == 1 and first["page_size"] == first["limit"] == 1
    assert len(first["items"]) == 1
    assert first["total_pages"] == first["total"] >= 2
    second = listing(api, page=2, limit=1)
    assert second["items"][0]["id"] != first["items"][0]["id"]
    default = listing(api)
    assert default["page_size"] == 20
    assert listing(api, status="completed")["limit"] == 10  # FlowCtl's default
    exact = listing(api, name=name)
    assert exact["total"] == 1 and exact["items"][0]["name"] == name
    assert listing(api, name=name[:-1])["total"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"page": 0},
        {"page_size": 0},
        {"page_size": 101},
        {"limit": 101},
        {"page_size": 5, "limit": 6},
        {"status": "bogus"},
        {"status": "ACTIVE"},
        {"sort_by": "id"},
        {"sort_order": "up"},
        {"name": ""},
    ],
    ids=str,
)
def test_invalid_list_parameters_are_422(api, params):
    resp = api.http.get("/api/v1/workflows", params=params)
    assert resp.status_code == 422, resp.text
    assert next(iter(params)) in fields(resp)


def test_list_sorts_by_each_field_in_both_orders(api, agents):
    tag = uid()
    # created in the order c, a, b; updated in the order a, c, b; versions a=3, b=1, c=2
    made = {}
    for letter in "cab":
        made[letter] = create(api, body(agents, f"sort-{tag}-{letter}"))
        time.sleep(0.01)
    for letter, bumps in (("a", 2), ("c", 1)):
        for i in range(bumps):
            changed = body(agents)["steps"]
            changed["load"]["input_mapping"]["n"] = i
            resp = api.http.put(f"/api/v1/workflows/{made[letter]['id']}", json={"steps": changed})
            assert resp.status_code == 200, resp.text
            time.sleep(0.01)
    resp = api.http.put(f"/api/v1/workflows/{made['b']['id']}", json={"description": "later"})
    assert resp.status_code == 200
    expected = {
        "name": "abc",
        "created_at": "cab",
        "updated_at": "acb",
        "version": "bca",
    }
    ids = {made[letter]["id"]: letter for letter in made}
    for sort_by, ascending in expected.items():
        for order in ("asc", "desc"):
            page = listing(api, status="active", sort_by=sort_by, sort_order=order, page_size=100)
            got = "".join(ids[w["id"]] for w in page["items"] if w["id"] in ids)
            want = ascending if order == "asc" else ascending[::-1]
            assert got == want, (sort_by, order, got)


# --- update, versions, delete -----------------------------------------------------


def test_update_without_structural_change_keeps_the_version(api, agents):
    payload = body(agents)
    created = create(api, payload)
    time.sleep(0.01)
    # the same steps, written in another order: no structural change
    same_steps = dict(reversed(list(payload["steps"].items())))
    resp = api.http.put(
        f"/api/v1/workflows/{created['id']}",
        json={
            "description": "Updated ETL pipeline with validation",
            "status": "active",
            "steps": same_steps,
            "start_step": "extract",
        },
    )
    assert resp.status_code == 200, resp.text
    updated = resp.json()
    assert updated["version"] == 1
    assert updated["description"] == "Updated ETL pipeline with validation"
    assert updated["created_at"] == created["created_at"]
    assert updated["updated_at"] > created["updated_at"]
    assert updated["workflow_data"] == created["workflow_data"]
    versions = api.http.get(f"/api/v1/workflows/{created['id']}/versions").json()
    assert versions["total"] == 1 and versions["items"][0]["version"] == 1
    # nothing changed: nothing written
    again = api.http.put(f"/api/v1/workflows/{created['id']}", json={}).json()
    assert again == updated
    # status and name change without a new version; description may be cleared
    resp = api.http.put(
        f"/api/v1/workflows/{created['id']}",
        json={"status": "inactive", "name": f"renamed-{uid()}", "description": None},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "inactive" and resp.json()["version"] == 1
    assert resp.json()["description"] is None


def test_structural_change_bumps_the_version_and_keeps_the_old_one(api, agents):
    payload = body(agents)
    created = create(api, payload)
    wf_id = created["id"]
    steps = payload["steps"]
    steps["load"]["input_mapping"]["destination"] = "${workflow.input.destination}"
    resp = api.http.put(f"/api/v1/workflows/{wf_id}", json={"steps": steps})
    assert resp.status_code == 200, resp.text
    v2 = resp.json()
    assert v2["version"] == 2
    assert v2["workflow_data"]["steps"]["load"]["input_mapping"]["destination"]
    # start_step alone is structural too: a new first step in front
    steps3 = {
        "prep": {
            "id": "prep",
            "agent_name": agents["extract"],
            "next_step": "extract",
            "input_mapping": {},
        },
        **steps,
    }
    resp = api.http.put(f"/api/v1/workflows/{wf_id}", json={"steps": steps3, "start_step": "prep"})
    assert resp.status_code == 200, resp.text
    v3 = resp.json()
    assert v3["version"] == 3 and v3["workflow_data"]["start_step"] == "prep"
    assert list(v3["workflow_data"]["steps"]) == ["prep", "extract", "load"]
    assert api.http.get(f"/api/v1/workflows/{wf_id}").json() == v3

    versions = api.http.get(f"/api/v1/workflows/{wf_id}/versions").json()
    assert versions["total"] == 3 and versions["page"] == 1 and versions["page_size"] == 20
    items = versions["items"]
    assert [v["version"] for v in items] == [3, 2, 1]
    assert items[0]["id"] == wf_id and items[0]["status"] == "active"
    assert items[0]["workflow_data"] == v3["workflow_data"]
    assert items[1]["workflow_data"] == v2["workflow_data"]
    assert items[2]["workflow_data"] == created["workflow_data"]
    assert all(v["status"] == "inactive" for v in items[1:])  # superseded
    assert len({v["id"] for v in items}) == 3
    assert items[2]["created_at"] == created["created_at"]
    # each version began when the one before it was superseded
    assert items[1]["created_at"] == items[2]["updated_at"]
    assert items[0]["created_at"] == items[1]["updated_at"]
    # paginated, newest first; an earlier version's id names the same history
    page2 = api.http.get(
        f"/api/v1/workflows/{items[2]['id']}/versions", params={"page": 2, "page_size": 2}
    ).json()
    assert [v["version"] for v in page2["items"]] == [1]
    assert page2["total"] == 3 and page2["total_pages"] == 2
    page1 = api.http.get(
        f"/api/v1/workflows/{wf_id}/versions", params={"page": 1, "page_size": 2}
    ).json()
    assert [v["version"] for v in page1["items"]] == [3, 2]
    bad = api.http.get(f"/api/v1/workflows/{wf_id}/versions", params={"page_size": 101})
    assert bad.status_code == 422


def test_structural_update_is_revalidated(api, agents):
    payload = body(agents)
    created = create(api, payload)
    steps = payload["steps"]
    steps["load"]["next_step"] = "extract"
    resp = api.http.put(f"/api/v1/workflows/{created['id']}", json={"steps": steps})
    assert_error(resp, 400, "steps.load.next_step", "cycle")
    resp = api.http.put(f"/api/v1/workflows/{created['id']}", json={"start_step": "load"})
    assert_error(resp, 400, "steps.extract", "not reachable")
    steps["load"]["next_step"] = None
    steps["load"]["agent_name"] = agents["off"]
    resp = api.http.put(f"/api/v1/workflows/{created['id']}", json={"steps": steps})
    assert_error(resp, 400, "steps.load.agent_name", "not found or inactive")
    for bad, field in (
        ({"status": "deleted"}, "status"),
        ({"status": None}, "status"),
        ({"steps": None}, "steps"),
        ({"name": ""}, "name"),
        ({"version": 9}, "version"),
    ):
        resp = api.http.put(f"/api/v1/workflows/{created['id']}", json=bad)
        assert_error(resp, 422, field)
    other = create(api, body(agents))
    resp = api.http.put(f"/api/v1/workflows/{created['id']}", json={"name": other["name"]})
    assert_error(resp, 400, "name", "already exists")
    assert api.http.get(f"/api/v1/workflows/{created['id']}").json() == created


def test_delete_is_soft(api, agents):
    created = create(api, body(agents))
    wf_id = created["id"]
    resp = api.http.delete(f"/api/v1/workflows/{wf_id}")
    assert resp.status_code == 200
    assert resp.json() == {"message": f"Workflow '{wf_id}' deleted successfully"}
    got = api.http.get(f"/api/v1/workflows/{wf_id}").json()
    assert got["status"] == "deleted" and got["version"] == 1
    assert got["workflow_data"] == created["workflow_data"]
    assert wf_id not in {w["id"] for w in listing(api, page_size=100)["items"]}
    assert listing(api, name=created["name"], status="deleted")["total"] == 1
    resp = api.http.put(f"/api/v1/workflows/{wf_id}", json={"status": "active"})
    assert resp.status_code == 400 and "deleted" in resp.json()["detail"]
    assert api.http.delete(f"/api/v1/workflows/{wf_id}").status_code == 200  # idempotent
    assert api.http.get(f"/api/v1/workflows/{wf_id}/versions").json()["total"] == 1


def test_unknown_ids_are_404(api):
    missing = str(uuid.uuid4())
    for method, path, kwargs in (
        ("GET", f"/api/v1/workflows/{missing}", {}),
        ("PUT", f"/api/v1/workflows/{missing}", {"json": {"description": "x"}}),
        ("DELETE", f"/api/v1/workflows/{missing}", {}),
        ("GET", f"/api/v1/workflows/{missing}/versions", {}),
    ):
        resp = api.http.request(method, path, **kwargs)
        assert resp.status_code == 404, (method, path, resp.text)
        assert missing in resp.json()["detail"]


def test_flowctl_workflows_keep_their_shape_and_cannot_be_edited(api):
    run = api.submit({"name": f"flowctl-{uid()}", "tasks": [{"name": "a", "type": "noop"}]})
    got = api.workflow(run["id"])
    assert "tasks" in got and "workflow_data" not in got
    for method, path, kwargs in (
        ("PUT", f"/api/v1/workflows/{run['id']}", {"json": {"description": "x"}}),
        ("DELETE", f"/api/v1/workflows/{run['id']}", {}),
        ("GET", f"/api/v1/workflows/{run['id']}/versions", {}),
    ):
        resp = api.http.request(method, path, **kwargs)
        assert resp.status_code == 400, (method, resp.text)
        assert "FlowCtl workflow" in resp.json()["detail"]
    assert api.workflow(run["id"])["name"] == run["name"]


# --- the service: what execute will ask -------------------------------------------


def test_get_executable_refuses_inactive_and_deleted(tmp_path: Path):
    async def scenario() -> None:
        db = Database(f"sqlite:///{tmp_path / 'flowctl.db'}")
        db.open()
        try:
            await db.migrate()
            now = 0.0
            await db.write(
                agent_store.create_agent,
                {
                    "id": "agent-1",
                    "name": "Worker",
                    "url": "http://127.0.0.1:9/agent",
                    "description": None,
                    "auth_type": "none",
                    "auth_config_encrypted": None,
                    "auth_config_keys": None,
                    "timeout_ms": 1000,
                    "retry_config": {},
                    "status": "active",
                    "created_at": now,
                    "updated_at": now,
                },
            )
            service = DefinitionService(db, default_registry(), Settings())
            data = StepsData(
                "a",
                {
                    "a": LinkedStep("a", "Worker", {"q": "${workflow.input.q}"}, "b"),
                    "b": LinkedStep("b", "Worker", {"r": "${a.output.r}"}),
                },
            )
            row = await service.create("exec", None, data)
            ready = await service.get_executable(row["id"])
            assert ready["id"] == row["id"] and ready["kind"] == "steps"
            assert ready["version"] == 1
            graph = WorkflowGraph.from_list(ready["graph"])
            assert graph.order == ("a", "b")
            assert graph.step("b").type == "agent"
            assert graph.step("b").agent == "Worker"
            assert graph.step("b").payload == {"r": "${a.output.r}"}
            assert graph.step("b").dependencies == ("a",)
            await service.update(row["id"], DefinitionChanges(status="inactive"))
            with pytest.raises(NotExecutable, match="inactive"):
                await service.get_executable(row["id"])
            await service.delete(row["id"])
            with pytest.raises(NotExecutable, match="deleted") as exc:
                await service.get_executable(row["id"])
            assert exc.value.status_code == 400
            with pytest.raises(NotFound):
                await service.get_executable("nope")
            with pytest.raises(InvalidInput) as invalid:
                await service.create("exec2", None, StepsData("a", {"a": LinkedStep("a", "X", {})}))
            assert invalid.value.status_code == 400
        finally:
            await db.close()

    asyncio.run(scenario())
