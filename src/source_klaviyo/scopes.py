"""The read scopes an API key needs: per request path, and per stream from its declaration.

Klaviyo names each read scope after a family of resources (`profiles:read`). A request needs the
scope of every resource its path names (`/api/lists/{id}/profiles`: `lists:read` and
`profiles:read`) and of every resource it includes; a stream needs those of every request it sends.
The 403 message (`http.py`), the docs' scope table (`tools/streams_table.py`) and the spec's list of
scopes (`spec.py`, kept equal by a test) all come from here.
"""

from __future__ import annotations

from .streams import CONVERSION_METRICS_STREAM, STREAMS, STREAMS_BY_NAME, Stream

# Resources read with their family's scope; any other resource `r` is read with `r:read` (coupon codes
# too: `coupon-codes:read`, not `coupons:read`).
_FAMILY = {
    "attributions": "events",  # an event's attributions come with the event
    "campaign-messages": "campaigns",
    "campaign-values-reports": "campaigns",
    "catalog-categories": "catalogs",
    "catalog-items": "catalogs",
    "catalog-variants": "catalogs",
    "custom-metrics": "metrics",
    "data-sources": "custom-objects",  # the sources of an account's custom objects
    "flow-actions": "flows",
    "flow-messages": "flows",
    "flow-series-reports": "flows",
    "flow-values-reports": "flows",
    "form-series-reports": "forms",
    "form-values-reports": "forms",
    "mapped-metrics": "metrics",
    "segment-series-reports": "segments",
    "segment-values-reports": "segments",
    "tag-groups": "tags",
    "template-universal-content": "templates",
}
# Resources whose requests need another family's scope as well: push tokens are read as part of
# their profiles (`profiles:read` and `push-tokens:read`).
_ALSO = {"push-tokens": ("profiles",)}


def resource_scope(resource: str) -> str:
    """The read scope of a resource, named as in a path.

    >>> resource_scope("flow-actions"), resource_scope("profiles")
    ('flows:read', 'profiles:read')
    """
    return f"{_FAMILY.get(resource, resource)}:read"


def path_scopes(path: str) -> tuple[str, ...]:
    """The scopes a request to `path` (a template or a real path) needs, in the path's order.

    >>> path_scopes("/api/lists/L1/profiles"), path_scopes("/api/flows/{id}/flow-actions")
    (('lists:read', 'profiles:read'), ('flows:read',))
    """
    parts = [part for part in path.split("?")[0].strip("/").split("/") if part != "relationships"]
    if parts[:1] == ["api"]:
        parts = parts[1:]
    # Resources and ids alternate: /api/<resource>/<id>/<resource>...
    return tuple(dict.fromkeys(resource_scope(family) for resource in parts[::2]
                               for family in (resource, *_ALSO.get(resource, ()))))


def _included_resource(include: str) -> str:
    # An include names a relationship: singular for one related resource (`metric`), plural for many.
    return include if include.endswith("s") else f"{include}s"


def stream_scopes(stream: Stream) -> dict[str, str]:
    """Every scope reading `stream` needs, with why when it is not for the stream's own endpoint.

    >>> stream_scopes(STREAMS_BY_NAME["events_detailed"])
    {'events:read': '', 'metrics:read': 'include `metric`'}
    """
    needs = dict.fromkeys(path_scopes(stream.path), "")
    for include in stream.include:
        needs.setdefault(resource_scope(_included_resource(include)), f"include `{include}`")
    if stream.parent is not None:  # its parents' ids, where the path does not name the parent
        for scope in stream_scopes(STREAMS_BY_NAME[stream.parent.stream]):
            needs.setdefault(scope, f"reading its parent stream {stream.parent.stream}")
    if stream.detail is not None:
        for scope in path_scopes(stream.detail.path):
            needs.setdefault(scope, f"`{', '.join(stream.detail.fields)}`")
    if stream.report is not None and stream.report.conversion_metric:
        lookup = STREAMS_BY_NAME[CONVERSION_METRICS_STREAM]
        for scope in path_scopes(lookup.path):
            needs.setdefault(scope, "finding the conversion metrics, unless `metric_ids` is set")
    return needs


def read_scopes() -> tuple[str, ...]:
    """Every scope some stream needs, sorted: a key with these reads every stream."""
    return tuple(sorted({scope for stream in STREAMS for scope in stream_scopes(stream)}))
