"""Pages: a JSON:API body parsed into records, and the walk of a chain of pages.

Two formats, fixed per stream (`PageFormat`):

- **parsed**: `parse_page`, records as dicts, for streams whose records are changed here (hooks,
  details, parents, reports);
- **raw**: `raw_page_parser(lifted)`, records as `RawRecord`s, the bytes Klaviyo sent with the
  lifted cursor spliced in, for a sink that writes JSON as it is (`RawSink`).

`chain_pages` follows `links.next` until there is none, refusing a link it has already followed.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

import msgspec

from . import json_codec
from .chains import Chain, build_chain, partitions_of
from .contracts import JSON, Client, JSONObject
from .datetimes import parse_datetime
from .errors import SourceError
from .streams import STREAMS_BY_NAME, Stream

if TYPE_CHECKING:
    from .config import Config

# A record on the raw path: its JSON object (lifted cursor spliced in) and the cursor's JSON text.
RawRecord = tuple[bytes, bytes | msgspec.Raw]
# A record of a page: a `Record` (parsed) or a `RawRecord` (raw). Which one is fixed per stream by its
# `PageFormat` and checked once per page in `chain_pages`; a union would need a check or a cast per
# record on the hot path, hence Any.
AnyRecord = Any
# One page of a chain: its records and the whole parsed page (`links`, `included`).
Page = tuple[list[AnyRecord], JSONObject]


def parse_page(body: bytes) -> JSONObject:
    """A JSON:API page as Python objects (integers of any width kept exact, see `json_codec`)."""
    try:
        page = json_codec.loads(body)
    except json_codec.DecodeError as exc:
        raise SourceError("Klaviyo returned a page that is not valid JSON", str(exc)) from None
    if not isinstance(page, dict):
        raise SourceError("Klaviyo returned a page that is not a JSON object")
    return page


class _RawLinks(msgspec.Struct):
    next: JSON = None


class _RawPage(msgspec.Struct):
    data: list[msgspec.Raw]
    links: _RawLinks | None = None


_RAW_PAGE = msgspec.json.Decoder(_RawPage)
_NULL = msgspec.Raw(b"null")


class _Resource(Protocol):
    """What `raw_page_parser` decodes of a record (its Struct type is built at run time)."""

    id: str
    attributes: object | None


@functools.cache
def _resource_decoder(lifted: str | None) -> Callable[[msgspec.Raw], _Resource]:
    """What the raw path decodes of a record: `id`, and the lifted cursor's JSON text."""
    # gc=False: read once and dropped, never in a cycle (the garbage collector's tracking is not free)
    attributes = msgspec.defstruct("Attributes", [(lifted, msgspec.Raw, _NULL)] if lifted else [], gc=False)
    record = msgspec.defstruct("Resource", [("id", str), ("attributes", attributes | None, None)], gc=False)
    decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(record)
    return cast("Callable[[msgspec.Raw], _Resource]", decoder.decode)


def _lifted_key(lifted: str) -> bytes:
    """`"<lifted>":`, spliced with the cursor's text before a record's own keys."""
    return json_codec.dumps(lifted)[:-1] + b'":'


@functools.cache
def raw_page_parser(lifted: str | None) -> Callable[[bytes], JSONObject]:
    """A parser for streams whose records are passed on unparsed (`Sink.raw_records`): the page is
    split into its records' raw JSON and only `id` and the lifted cursor of each are decoded, so
    integers beyond 64 bits and every string pass through byte for byte. `data` holds `RawRecord`s:
    `{"<lifted>":<cursor>,` spliced before the record's own keys. A page msgspec will not take
    (a record without a string id, a lone surrogate, …) goes through `parse_page` and is re-encoded,
    so odd answers fail or pass exactly as on the parsed path. The bytes are not re-validated as
    UTF-8 (that alone would cost ~1.5 µs per 1 KB event)."""
    decode_record = _resource_decoder(lifted)
    head = _lifted_key(lifted) if lifted else b""

    def parse(body: bytes) -> JSONObject:
        try:
            page = _RAW_PAGE.decode(body)
            data: list[RawRecord] = []
            append = data.append
            for raw in page.data:
                if lifted:
                    found = decode_record(raw).attributes
                    cursor: msgspec.Raw = _NULL if found is None else getattr(found, lifted)
                    append((b"".join((b"{", head, cursor, b",", memoryview(raw)[1:])), cursor))
                else:
                    decode_record(raw)
                    append((bytes(raw), b"null"))
        except (msgspec.DecodeError, RecursionError):
            return _reencoded(parse_page(body), lifted)
        links = page.links
        return {"data": data, "links": None if links is None else {"next": links.next}}

    return parse


# A record of a page read for a sink that knows the stream's record shape (`ShapedSink`): a `RawRecord`
# and its primary key, or None where the sink is to look at the record itself.
ShapedRecord = tuple[bytes, bytes | msgspec.Raw, str | None]


@functools.cache
def shaped_format(lifted: str, decode: Callable[[msgspec.Raw], Any], key: str, cursor: tuple[str, ...],
                  ) -> PageFormat:
    """The raw format for a sink that decodes each record against its shape anyway (the DuckDB sync:
    `Batch`): the page parser decodes the record once with the sink's `decode`, for the cursor at the
    attributes `cursor` and the primary key at attribute `key`, where the raw parser decodes it for its
    cursor and the sink decodes it again. A record `decode` refuses (another shape) is parsed as on
    the raw path, its key left to the sink (None); a page the raw path re-encodes (an id that is not
    a string, ...) is re-encoded here too, every key left to the sink."""
    plain = raw_page_parser(lifted)
    outer, inner = cursor
    decode_record = _resource_decoder(lifted)
    head = _lifted_key(lifted)

    def parse(body: bytes) -> JSONObject:
        try:
            page = _RAW_PAGE.decode(body)
            data: list[ShapedRecord] = []
            append = data.append
            for raw in page.data:
                key_value: Any
                try:
                    record = decode(raw)
                except msgspec.ValidationError:
                    found = decode_record(raw).attributes
                    value = None if found is None else getattr(found, lifted)
                    key_value = None
                else:
                    found = getattr(record, outer)
                    value = None if found is None else getattr(found, inner)
                    key_value = getattr(record, key)
                    if key_value.__class__ is not str:  # the raw path re-encodes such a page: so here
                        raise msgspec.ValidationError("an id that is not a string")
                text: msgspec.Raw = _NULL if value is None else value
                append((b"".join((b"{", head, text, b",", memoryview(raw)[1:])), text, key_value))
        except (msgspec.DecodeError, RecursionError):
            reparsed = plain(body)  # takes the parsed path's way with what msgspec refuses
            reparsed["data"] = [(*record, None) if type(record) is tuple else record
                                for record in reparsed.get("data") or []]
            return reparsed
        links = page.links
        return {"data": data, "links": None if links is None else {"next": links.next}}

    return PageFormat(parse, tuple)


def _reencoded(page: JSONObject, lifted: str | None) -> JSONObject:
    data = page.get("data") if isinstance(page, dict) else None
    if not isinstance(data, list):
        return page
    records: list[JSON] = []
    for record in data:
        if type(record) is not dict:
            records.append(record)  # refused by `chain_pages`, as on the parsed path
            continue
        if lifted:
            attributes = record.get("attributes")
            record[lifted] = attributes.get(lifted) if isinstance(attributes, dict) else None
        records.append((json_codec.dumps(record), json_codec.dumps(record.get(lifted))))
    page["data"] = records
    return page


_decode_rfc3339 = msgspec.json.Decoder(datetime).decode


def raw_cursor_value(text: bytes | msgspec.Raw) -> datetime | None:
    """`cursor_value` of a raw cursor's JSON text. Klaviyo's RFC 3339 strings are decoded by msgspec
    (0.2 µs; the general path costs 2.5, and a page cut at a window's edge is checked record by
    record); anything else (epoch numbers, a date alone, null) takes the general path."""
    try:
        moment = _decode_rfc3339(text)
    except msgspec.DecodeError:
        return cursor_value(raw_cursor(text))
    if moment.tzinfo is UTC:
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def raw_cursor(text: bytes | msgspec.Raw) -> JSON:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None


def cursor_value(value: object) -> datetime | None:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def has_next(page: JSONObject) -> bool:
    links = page.get("links")
    return isinstance(links, dict) and bool(links.get("next"))


@dataclass(frozen=True)
class PageFormat:
    """How a stream's pages are parsed, and the type every record of a page must have."""

    parse: Callable[[bytes], JSONObject]
    record_type: type  # dict (parsed) or tuple (RawRecord)


PARSED = PageFormat(parse_page, dict)


@functools.cache
def raw_format(lifted: str | None) -> PageFormat:
    return PageFormat(raw_page_parser(lifted), tuple)


async def chain_pages(client: Client, chain: Chain, page_format: PageFormat = PARSED,
                      ) -> AsyncGenerator[Page, None]:
    """Every page of a chain, parsed inside the client's retries (a 200 whose JSON was cut short is
    fetched again). Refuses a page without a list of records of the format's type, and a
    `links.next` it has already followed (a server loop)."""
    url: str | None = chain.path
    params: list[tuple[str, str]] | None = chain.params
    seen: set[str] = set()
    kind = page_format.record_type
    while url is not None:
        page = await client.get(url, params, bucket=chain.bucket, tier=chain.tier, parse=page_format.parse)
        data = page.get("data")
        if not isinstance(data, list) or not all(type(record) is kind for record in data):
            raise SourceError(f"Klaviyo answered {chain.path} without a data list of resource objects")
        yield data, page
        links = page.get("links")
        next_url = links.get("next") if isinstance(links, dict) else None
        if next_url is not None:
            if not isinstance(next_url, str):
                raise SourceError(f"Klaviyo answered {chain.path} with a links.next that is not a URL")
            if next_url in seen:
                raise SourceError(f"Klaviyo returned the same next page twice for {chain.path}",
                                  "pagination loop detected; refusing to follow it again")
            seen.add(next_url)
        url, params = next_url, None
        del page, data, links  # not held while the next page is fetched: 4 MB per events page


async def ids_of(client: Client, stream: Stream, config: Config) -> AsyncIterator[str]:
    """Every id of a (parent) stream, read in full whether or not it is selected."""
    if stream.parent is not None:
        parent = stream.parent
        parent_ids = [pid async for pid in ids_of(client, STREAMS_BY_NAME[parent.stream], config)]
        for pid in parent_ids:
            chain = build_chain(stream, config, parent_id=pid)
            async for data, _page in chain_pages(client, chain):
                for record in data:
                    yield record["id"]
        return
    for partition in partitions_of(stream):
        async for data, _page in chain_pages(client, build_chain(stream, config, partition=partition)):
            for record in data:
                yield record["id"]
