"""Builds the body of each Klaviyo API response from the world (pure: no HTTP, no rate limits)."""

from __future__ import annotations

import hashlib
import uuid

from .endpoints import Endpoint
from .errors import ApiError, invalid
from .filters import Condition
from .jsontext import JSONObject, dumps
from .members import MemberView
from .pagination import decode_cursor_and_held, encode_cursor, next_link, query_digest, self_link
from .query import Query, parse_query, select
from .quirks import (
    decode_klaviyo_cursor,
    encode_klaviyo_cursor,
    python_repr_prev_link,
    reencoded_next_link,
    serves_unsorted,
    unsorted_page,
)
from .render import Renderer
from .reports import BUILDERS
from .store import World
from .table import SortKey, Table

COLLECTIONS = {
    "/api/profiles",
    "/api/events",
    "/api/metrics",
    "/api/campaigns",
    "/api/templates",
    "/api/flows",
    "/api/lists",
    "/api/segments",
    "/api/tags",
    "/api/coupons",
    "/api/accounts",
    "/api/catalog-items",
    "/api/catalog-variants",
    "/api/catalog-categories",
    "/api/coupon-codes",
    "/api/forms",
    "/api/images",
    "/api/reviews",
    "/api/tag-groups",
    "/api/template-universal-content",
    "/api/push-tokens",
    "/api/web-feeds",
    "/api/custom-metrics",
    "/api/mapped-metrics",
    "/api/data-sources",
}
CHILDREN = {  # route -> (parent table, key on the child naming the parent)
    "/api/campaigns/{id}/campaign-messages": ("campaigns", "campaign_id"),
    "/api/flows/{id}/flow-actions": ("flows", "flow_id"),
    "/api/flow-actions/{id}/flow-messages": ("flow-actions", "flow_action_id"),
}
SINGLES = {"/api/campaigns/{id}", "/api/campaign-messages/{id}", "/api/lists/{id}", "/api/segments/{id}"}
MEMBERS = {"/api/lists/{id}/profiles": "lists", "/api/segments/{id}/profiles": "segments"}


class Request:
    """The parts of an HTTP request the builders need."""

    def __init__(
        self, base: str, path: str, raw_query: str, params: list[tuple[str, str]], match: dict[str, str]
    ) -> None:
        self.base = base
        self.path = path
        self.raw_query = raw_query
        self.params = params
        self.match = match


class Api:
    def __init__(self, world: World, unsorted_archived_campaigns: bool = True) -> None:
        self.world = world
        self.quirks = world.quirks  # Klaviyo's observed shapes (quirks.py); False: `--spec-strict`
        self.unsorted_archived_campaigns = unsorted_archived_campaigns  # quirks.py
        self._member_views: dict[tuple[str, str], tuple[int, MemberView]] = {}

    def get(self, endpoint: Endpoint, req: Request) -> bytes:
        query = parse_query(endpoint, req.params)
        route = endpoint.route
        if route in COLLECTIONS:
            table = self.world.table(endpoint.resource or "")
            if not endpoint.paged:  # the account, custom and mapped metrics: all in one answer
                return self._unpaged(req, query, table)
            return self._collection(endpoint, req, query, table)
        if route in CHILDREN:
            parent_resource, key = CHILDREN[route]
            parent_id = self._require(parent_resource, req.match["id"])
            table = self.world.table(endpoint.resource or "")
            query.conditions = [*query.conditions, Condition("equals", key, parent_id)]
            if not endpoint.paged:
                return self._unpaged(req, query, table)
            return self._collection(endpoint, req, query, table)
        if route in SINGLES:
            return self._single(endpoint, req, query)
        if route in MEMBERS:
            kind = MEMBERS[route]
            group_id = self._require(kind, req.match["id"])
            return self._collection(endpoint, req, query, self._members(kind, group_id))
        if route == "/api/campaigns/{id}/relationships/campaign-messages":
            campaigns = self.world.table("campaigns")
            self._require("campaigns", req.match["id"])
            index = campaigns.index_of(req.match["id"])
            assert index is not None
            refs = campaigns.relationships(index)["campaign-messages"] or []
            doc = {
                "data": [{"type": t, "id": i} for t, i in refs],  # type: ignore[str-unpack]  # to-many: a list
                "links": {"self": self_link(req.base, req.path, req.raw_query)},
            }
            return dumps(doc)
        raise ApiError(404, f"No route for {route}")

    def post(self, endpoint: Endpoint, req: Request, body: bytes) -> bytes:
        parse_query(endpoint, [(k, v) for k, v in req.params if k != "page_cursor"])
        cursor = dict(req.params).get("page_cursor")
        if cursor is not None and cursor != "":
            raise invalid("Invalid page_cursor", parameter="page_cursor")
        doc = BUILDERS[endpoint.operation](self.world, body)
        doc["links"] = {"self": self_link(req.base, req.path, req.raw_query)}
        if self.quirks:  # `extra_fields`: an id (a UUID) and next/prev the spec does not name
            h = hashlib.blake2b(body + req.path.encode(), digest_size=16).hexdigest()
            doc["data"] = {"type": doc["data"]["type"], "id": str(uuid.UUID(h)), **doc["data"]}
            doc["links"] |= {"next": None, "prev": None}
        return dumps(doc)

    # ---------------------------------------------------------------------------------------------

    def _require(self, resource: str, record_id: str) -> str:
        if self.world.table(resource).index_of(record_id) is None:
            type_ = self.world.table(resource).type
            raise ApiError(404, f"A {type_} with id {record_id} does not exist.")
        return record_id

    def _members(self, kind: str, group_id: str) -> MemberView:
        cached = self._member_views.get((kind, group_id))
        if cached and cached[0] == self.world.generation:
            return cached[1]
        members = self.world.members(kind, group_id)
        assert members is not None, "callers _require the group first"
        view = MemberView(self.world.profiles, kind, group_id, members)
        if len(self._member_views) > 64:
            self._member_views.clear()
        self._member_views[(kind, group_id)] = (self.world.generation, view)
        return view

    def _collection(self, endpoint: Endpoint, req: Request, query: Query, table: Table) -> bytes:
        conditions = list(query.conditions)
        order = None
        range_fields: frozenset[str] = frozenset()
        if endpoint.route == "/api/campaigns" and not any(c.field == "archived" for c in conditions):
            # Klaviyo leaves archived campaigns out unless asked with equals(archived,true)
            conditions.append(Condition("equals", "archived", False))
        if self.quirks and endpoint.route == "/api/segments":
            conditions = [c for c in conditions if c.field != "is_starred"]  # `is_starred_filter_ignored`
        if table is self.world.events:
            range_fields = frozenset({"datetime", "timestamp"})
            metric = [c for c in conditions if c.field == "metric_id"]
            if metric:
                order = self.world.events.by_metric(metric[0].value)
                conditions = [c for c in conditions if c is not metric[0]]
        digest = query_digest([*req.params, ("@path", req.path)])
        after: SortKey | None = None
        held: list[SortKey] = []
        if query.cursor is not None and self.quirks:  # `cursor_per_endpoint`
            after, held = decode_klaviyo_cursor(endpoint.route, table, query.sort, query.cursor)
        elif query.cursor is not None:
            after, held = decode_cursor_and_held(query.cursor, digest)
        if self.unsorted_archived_campaigns and serves_unsorted(endpoint.route, conditions, query.sort):
            unsorted = unsorted_page(
                table, conditions, query.sort, query.descending, after, held, query.page_size, self.world.seed
            )
            picked, held = unsorted.selection, unsorted.held
        else:
            picked = select(
                table, conditions, query.sort, query.descending, after, query.page_size, order, range_fields
            )
            held = []
        renderer = Renderer(req.base, query.fields, query.additional, self.quirks)
        events = self.world.events
        fast = table is events and "event" not in query.fields
        data = [] if fast else [renderer.resource(table, i, query.includes) for i in picked.indices]
        links: JSONObject = {"self": self_link(req.base, req.path, req.raw_query)}
        if self.quirks:  # `null_next_prev`, and a first page of lists `lists_prev_python_repr`
            first_list_page = endpoint.route == "/api/lists" and query.cursor is None
            links["next"] = None
            links["prev"] = python_repr_prev_link(req.base, req.path, req.params) if first_list_page else None
        if picked.more and picked.last_key is not None:
            if self.quirks:  # `cursor_per_endpoint`, `next_link_reencoded`
                token = encode_klaviyo_cursor(endpoint.route, table, query.sort, picked.last_key, held)
                links["next"] = reencoded_next_link(req.base, req.path, req.params, token)
            else:
                token = encode_cursor(picked.last_key, digest, held)
                links["next"] = next_link(req.base, req.path, req.raw_query, token)
        doc: JSONObject = {"data": data, "links": links}
        if query.includes:
            doc["included"] = renderer.included(
                self.world.tables, [(table, i) for i in picked.indices], query.includes
            )
        if fast:
            # events are spliced from text templates (data/events.py), the same bytes `dumps` would make,
            # or sliced from the store `serve --prerender-events` rendered at start-up for this base
            base = dumps(req.base).decode()[1:-1]  # the Host header is the client's: escape it
            attributions_data = "attributions" in query.includes and not self.quirks  # `attributions_absent`
            objects = events.render_bytes(picked.indices, base, attributions_data)
            rest = dumps(doc)[len(b'{"data":[]') :]
            return b"".join((b'{"data":[', objects, b"]", rest))
        return dumps(doc)

    def _unpaged(self, req: Request, query: Query, table: Table) -> bytes:
        picked = select(table, query.conditions, "id", False, None, 10**9)
        renderer = Renderer(req.base, query.fields, query.additional, self.quirks)
        doc: JSONObject = {
            "data": [renderer.resource(table, i, query.includes) for i in picked.indices],
            "links": {"self": self_link(req.base, req.path, req.raw_query)},
        }
        if query.includes:
            doc["included"] = renderer.included(
                self.world.tables, [(table, i) for i in picked.indices], query.includes
            )
        return dumps(doc)

    def _single(self, endpoint: Endpoint, req: Request, query: Query) -> bytes:
        resource = endpoint.resource or ""
        table = self.world.table(resource)
        self._require(resource, req.match["id"])
        index = table.index_of(req.match["id"])
        assert index is not None
        extra = None
        if "profile_count" in query.additional.get(table.type, frozenset()):
            extra = {"profile_count": self.world.profile_count(resource, req.match["id"])}
        renderer = Renderer(req.base, query.fields, query.additional, self.quirks)
        doc: JSONObject = {
            "data": renderer.resource(table, index, query.includes, extra),
            "links": {"self": self_link(req.base, req.path, req.raw_query)},
        }
        if query.includes:
            doc["included"] = renderer.included(self.world.tables, [(table, index)], query.includes)
        return dumps(doc)
