"""JSON:API documents: resource objects with sparse fieldsets, relationships, `included`, and a bounded
cache of rendered bodies so repeated reads serve bytes without rebuilding records."""

from __future__ import annotations

from collections import OrderedDict

from .jsontext import JSON, JSONObject
from .table import Rel, Table

# JSON:API `type` -> API path segment
PATHS = {
    "profile": "profiles",
    "event": "events",
    "metric": "metrics",
    "campaign": "campaigns",
    "campaign-message": "campaign-messages",
    "template": "templates",
    "flow": "flows",
    "flow-action": "flow-actions",
    "flow-message": "flow-messages",
    "list": "lists",
    "segment": "segments",
    "tag": "tags",
    "tag-group": "tag-groups",
    "coupon": "coupons",
    "attribution": "attributions",
    "account": "accounts",
    "catalog-item": "catalog-items",
    "catalog-variant": "catalog-variants",
    "catalog-category": "catalog-categories",
    "coupon-code": "coupon-codes",
    "form": "forms",
    "image": "images",
    "review": "reviews",
    "template-universal-content": "template-universal-content",
    "push-token": "push-tokens",
    "web-feed": "web-feeds",
    "custom-metric": "custom-metrics",
    "mapped-metric": "mapped-metrics",
    "data-source": "data-sources",
}


def _pick(attributes: JSONObject, wanted: frozenset[str]) -> JSONObject:
    """Sparse fieldset, including dotted sub-paths such as `subscriptions.email.marketing.consent`."""
    out: JSONObject = {}
    for name in wanted:
        parts = name.split(".")
        if parts[0] not in attributes:
            continue
        src: JSON = attributes
        dst = out
        for depth, part in enumerate(parts):
            if not isinstance(src, dict) or part not in src:
                break
            if depth == len(parts) - 1:
                dst[part] = src[part]
            else:
                src = src[part]
                dst = dst.setdefault(part, {})
    return out


# quirks.py: to-many relationships whose linkage Klaviyo gives without `include`
# (`campaign_messages_linkage`), and to-one relationships whose missing target it writes as
# `"data": null` when included (`null_relationship_data`)
ALWAYS_LINKED = frozenset({("campaign", "campaign-messages")})
NULL_WHEN_INCLUDED = frozenset({"template", "image"})


class Renderer:
    def __init__(
        self,
        base: str,
        fields: dict[str, frozenset[str]],
        additional: dict[str, frozenset[str]],
        quirks: bool = False,
    ) -> None:
        self.base = base
        self.fields = fields
        self.additional = additional
        self.quirks = quirks  # Klaviyo's observed shapes (quirks.py); False: the spec's
        self.slash = "/" if quirks else ""  # `resource_links_trailing_slash`

    def resource(
        self,
        table: Table,
        index: int,
        includes: frozenset[str] = frozenset(),
        extra: JSONObject | None = None,
    ) -> JSONObject:
        type_ = table.type
        record_id = table.id(index)
        attributes = table.attributes(index, self.additional.get(type_, frozenset()))
        if extra:
            attributes.update(extra)
        wanted = self.fields.get(type_)
        if wanted is not None:
            attributes = _pick(attributes, wanted)
        own = f"{self.base}/api/{PATHS[type_]}/{record_id}"
        obj: JSONObject = {"type": type_, "id": record_id, "attributes": attributes}
        rels = table.relationships(index)
        if rels:
            obj["relationships"] = {
                name: self._relationship(
                    own, name, rel, name in includes or (self.quirks and (type_, name) in ALWAYS_LINKED)
                )
                for name, rel in rels.items()
            }
        obj["links"] = {"self": own + self.slash}
        return obj

    def _relationship(self, own: str, name: str, rel: Rel, included: bool) -> JSONObject:
        out: JSONObject = {}
        if isinstance(rel, tuple):
            out["data"] = {
                "type": rel[0],
                "id": rel[1],
            }  # to-one ids are always given, as Klaviyo does for events
        elif isinstance(rel, list) and included:
            out["data"] = [{"type": t, "id": i} for t, i in rel]
        elif rel is None and included and self.quirks and name in NULL_WHEN_INCLUDED:
            out["data"] = None
        slash = self.slash
        out["links"] = {"self": f"{own}/relationships/{name}{slash}", "related": f"{own}/{name}{slash}"}
        return out

    def included(
        self, tables: dict[str, Table], primary: list[tuple[Table, int]], includes: frozenset[str]
    ) -> list[JSONObject]:
        """Related resources of the page, de-duplicated, in first-seen order."""
        seen: dict[tuple[str, str], JSONObject] = {}
        for table, index in primary:
            rels = table.relationships(index)
            for name in includes:
                rel = rels.get(name)
                refs = [rel] if isinstance(rel, tuple) else (rel or [])
                for type_, record_id in refs:
                    if (type_, record_id) in seen:
                        continue
                    target = tables.get(PATHS.get(type_, ""))
                    target_index = None if target is None else target.index_of(record_id)
                    if target is not None and target_index is not None:
                        seen[(type_, record_id)] = self._related(target, target_index)
        return list(seen.values())

    def _related(self, table: Table, index: int) -> JSONObject:
        obj = self.resource(table, index)
        rels = obj.get("relationships")
        if self.quirks and table.type == "profile" and rels and "conversations" in rels:
            # `profile_conversation_name`: `conversations` on /api/profiles, `conversation` elsewhere
            renamed = {"conversation" if name == "conversations" else name: rel for name, rel in rels.items()}
            renamed["conversation"]["links"] = {
                key: link.replace("/conversations", "/conversation")
                for key, link in renamed["conversation"]["links"].items()
            }
            obj["relationships"] = renamed
        return obj


class PageCache:
    """LRU of rendered bodies, bounded in bytes so memory does not grow with pages served. A page's gzip
    body is kept with it (`put_gzip`), counted in the same bound and evicted with it."""

    def __init__(self, max_bytes: int = 96 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.entries: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self.gzipped: dict[tuple[object, ...], bytes] = {}
        self.hits = 0
        self.misses = 0
        self.gzip_hits = 0
        self.gzip_misses = 0

    def get(self, key: tuple[object, ...]) -> bytes | None:
        body = self.entries.get(key)
        if body is None:
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return body

    def put(self, key: tuple[object, ...], body: bytes) -> None:
        if len(body) > self.max_bytes // 4:
            return
        old = self.entries.pop(key, None)
        if old is not None:
            self.size -= len(old) + len(self.gzipped.pop(key, b""))
        self.entries[key] = body
        self.size += len(body)
        self._evict()

    def get_gzip(self, key: tuple[object, ...], body: bytes) -> bytes | None:
        """The gzip body kept with the page `key` if the cache holds that very `body` (a gzip hit or miss)."""
        compressed = self.gzipped.get(key) if self.entries.get(key) is body else None
        if compressed is None:
            self.gzip_misses += 1
        else:
            self.gzip_hits += 1
        return compressed

    def put_gzip(self, key: tuple[object, ...], body: bytes, compressed: bytes) -> None:
        """Keep `compressed` with the page `key` if the cache still holds that very `body`."""
        if self.entries.get(key) is not body or key in self.gzipped:
            return
        self.gzipped[key] = compressed
        self.size += len(compressed)
        self._evict()

    def _evict(self) -> None:
        while self.size > self.max_bytes:
            key, evicted = self.entries.popitem(last=False)
            self.size -= len(evicted) + len(self.gzipped.pop(key, b""))

    def clear(self) -> None:
        self.entries.clear()
        self.gzipped.clear()
        self.size = 0

    def reset(self) -> None:
        """Empty, with its counters at zero, as at start-up."""
        self.clear()
        self.hits = self.misses = self.gzip_hits = self.gzip_misses = 0
