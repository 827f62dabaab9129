"""The OpenAPI document the node serves is the API the app really has.

Given the REST app over a real ``NodeService`` (memory store), expect: the document is served
at ``/api/v1/openapi.json`` and is a valid OpenAPI 3.1 document (openapi-spec-validator);
it names exactly the routes the app routes; every body field it documents is accepted and a
field it does not document is refused; and real answers match its response schemas.
"""

from __future__ import annotations

from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec
from starlette.routing import Route

from taskd.node.api.http import openapi
from tests.http.conftest import Api, make_api

Doc = dict[str, Any]


@pytest.fixture
async def doc(api: Api) -> Doc:
    reply = await api.get("/api/v1/openapi.json")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/json")
    served: Doc = reply.json
    return served


def schema_of(doc: Doc, schema: Doc) -> OAS31Validator:
    """A validator for ``schema`` whose ``$ref``s resolve inside ``doc``'s components."""
    return OAS31Validator({**schema, "components": doc["components"]})


def check(doc: Doc, schema: Doc, instance: Any) -> None:
    errors = [e.message for e in schema_of(doc, schema).iter_errors(instance)]
    assert not errors, (errors, instance)


def response_schema(doc: Doc, path: str, method: str, status: int) -> Doc:
    response = doc["paths"][path][method]["responses"][str(status)]
    schema: Doc = response["content"]["application/json"]["schema"]
    return schema


def app_routes(api: Api) -> set[tuple[str, str]]:
    routes = [r for r in api.app.routes if isinstance(r, Route)]
    return {(r.path, m.lower()) for r in routes for m in r.methods or () if m != "HEAD"}


async def test_the_served_document_is_valid_openapi_3_1(doc: Doc) -> None:
    # Given the served document / When validated / Expect no error
    validate_spec(doc)
    assert doc["openapi"].startswith("3.1")
    assert doc == openapi.document(doc["info"]["version"])


async def test_every_route_of_the_app_is_documented_and_nothing_else(api: Api, doc: Doc) -> None:
    # Given the app's routing table and the document
    served = app_routes(api)
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}

    # Expect the same (path, method) pairs, and every path parameter declared
    assert served == documented
    for path, ops in doc["paths"].items():
        names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        for op in ops.values():
            declared = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
            assert declared == names, path


# (path, method) -> a body the handler accepts with only the required fields
MINIMAL: dict[tuple[str, str], Doc] = {
    ("/api/v1/tasks", "post"): {},
    ("/api/v1/tasks/batch", "post"): {"tasks": [{}]},
    ("/api/v1/queues/{name}/lease", "post"): {"worker": "w1"},
    ("/api/v1/tasks/{id}/heartbeat", "post"): {"lease": 1},
    ("/api/v1/tasks/{id}/complete", "post"): {"lease": 1},
    ("/api/v1/tasks/{id}/fail", "post"): {"lease": 1, "error": "boom"},
    ("/api/v1/cluster/members", "post"): {"address": "127.0.0.1:1"},
    ("/api/v1/cluster/transfer", "post"): {},
}
# a valid value for each documented optional field
SAMPLE: dict[str, Any] = {
    "queue": "q",
    "name": "n",
    "priority": "high",
    "payload": {"a": 1},
    "timeout": "5m",
    "max_retries": 2,
    "delay": 1,
    "run_at": None,
    "depends_on": [],
    "idempotency_key": "k",
    "labels": {"a": "b"},
    "ref": "r",
    "max": 2,
    "wait": 0,
    "result": {"ok": True},
    "retryable": False,
    "address": None,
}


def properties(doc: Doc, schema: Doc) -> Doc:
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    props: Doc = schema["properties"]
    return props


def is_unknown_field(reply: Any) -> bool:
    return reply.status == 400 and "unknown field" in reply.error["message"]


def concrete(path: str) -> str:
    return path.replace("{name}", "q").replace("{id}", "01NOSUCHTASK")


@pytest.mark.parametrize("route", sorted(MINIMAL))
async def test_documented_body_fields_are_accepted_and_others_refused(
    api: Api, doc: Doc, route: tuple[str, str]
) -> None:
    path, method = route
    body_schema = doc["paths"][path][method]["requestBody"]["content"]["application/json"]
    props = properties(doc, body_schema["schema"])
    assert set(MINIMAL[route]) <= set(props)
    url = concrete(path)

    def with_field(name: str, value: Any) -> Doc:
        if path == "/api/v1/tasks/batch":
            if name == "tasks":
                return MINIMAL[route]
            return {"tasks": [{name: value}]}
        return {**MINIMAL[route], name: value}

    inner = props
    if path == "/api/v1/tasks/batch":
        inner = properties(doc, props["tasks"]["items"])

    # When each documented field is sent / Expect it is not refused as unknown
    for name in inner:
        if name in ("tasks",):
            continue
        value = MINIMAL[route].get(name, SAMPLE.get(name))
        reply = await api.post(url, with_field(name, value))
        assert not is_unknown_field(reply), (name, reply.json)

    # When a field the document does not name is sent / Expect 400 naming it
    reply = await api.post(url, with_field("bogus", 1))
    assert is_unknown_field(reply), reply.json
    assert reply.error["field"].endswith("bogus")
    check(doc, {"$ref": "#/components/schemas/Error"}, reply.json)


async def test_real_answers_match_the_documented_schemas(doc: Doc) -> None:
    # Given a fresh app
    api = make_api()

    # When tasks are submitted, listed, leased and completed
    first = await api.post("/api/v1/tasks", {"queue": "q", "payload": {"n": 1}, "labels": {}})
    again = await api.post("/api/v1/tasks", {"queue": "q", "idempotency_key": "k"})
    repeat = await api.post("/api/v1/tasks", {"queue": "q", "idempotency_key": "k"})
    batch = await api.post(
        "/api/v1/tasks/batch",
        {"tasks": [{"ref": "a", "queue": "b"}, {"queue": "b", "depends_on": ["a"]}]},
    )
    lease = await api.post("/api/v1/queues/q/lease", {"worker": "w", "max": 1})
    item = lease.json["tasks"][0]
    beat = await api.post(f"/api/v1/tasks/{item['id']}/heartbeat", {"lease": item["lease"]})
    done = await api.post(
        f"/api/v1/tasks/{item['id']}/complete", {"lease": item["lease"], "result": [1]}
    )
    stale = await api.post(f"/api/v1/tasks/{item['id']}/complete", {"lease": item["lease"]})

    # Expect each answer to match its documented schema and status
    answers = [
        ("/api/v1/tasks", "post", first, 201),
        ("/api/v1/tasks", "post", again, 201),
        ("/api/v1/tasks", "post", repeat, 200),
        ("/api/v1/tasks/batch", "post", batch, 201),
        ("/api/v1/queues/{name}/lease", "post", lease, 200),
        ("/api/v1/tasks/{id}/heartbeat", "post", beat, 200),
        ("/api/v1/tasks/{id}/complete", "post", done, 200),
        ("/api/v1/tasks/{id}/complete", "post", stale, 409),
        ("/api/v1/tasks", "get", await api.get("/api/v1/tasks?limit=2"), 200),
        ("/api/v1/tasks/{id}", "get", await api.get(f"/api/v1/tasks/{item['id']}"), 200),
        ("/api/v1/tasks/{id}", "get", await api.get("/api/v1/tasks/nope"), 404),
        ("/api/v1/queues", "get", await api.get("/api/v1/queues"), 200),
        ("/api/v1/queues/{name}/pause", "post", await api.post("/api/v1/queues/q/pause"), 200),
        ("/api/v1/workers", "get", await api.get("/api/v1/workers"), 200),
        ("/api/v1/cluster", "get", await api.get("/api/v1/cluster"), 200),
        ("/healthz", "get", await api.get("/healthz"), 200),
        ("/readyz", "get", await api.get("/readyz"), 200),
    ]
    for path, method, reply, status in answers:
        assert reply.status == status, (path, reply.body)
        check(doc, response_schema(doc, path, method, status), reply.json)
    assert repeat.json["duplicate"] is True
    assert done.json["result"] == [1] and done.json["state"] == "succeeded"
