"""Keys Klaviyo itself defines inside objects that are otherwise free-form, promoted to typed columns.

`event_properties` is whatever the integration or the API caller sent, so it stays one `JSON` column.
A few of its keys are Klaviyo's own, with a fixed meaning across every account: the order value and
its currency, the caller's deduplication id, the flow and message that sent a message event, and
the campaign or flow a conversion is attributed to. Analysts sum and join on those, so each gets a
column of its own next to the object, which keeps them too, byte for byte.

A promoted column is not "checked": a value its type cannot hold (a 23-digit `$value`, text in a
number) lands as NULL or rounded there without keeping the record in `_raw`, because the object it
came from is stored whole.

Adding a key here adds its column to existing tables at the next sync (older rows stay NULL);
it does not change any table's schema fingerprint, so nothing is reset.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KlaviyoKey:
    keys: tuple[str, ...]  # inside the free-form object
    column: str
    sql_type: str


# The free-form object's path in the record -> its promoted keys, in column order.
KLAVIYO_KEYS: dict[tuple[str, ...], tuple[KlaviyoKey, ...]] = {
    ("attributes", "event_properties"): (
        KlaviyoKey(("$value",), "value", "DOUBLE"),
        KlaviyoKey(("$value_currency",), "value_currency", "VARCHAR"),
        KlaviyoKey(("$event_id",), "event_id", "VARCHAR"),
        # Message events (Received Email, Clicked SMS, ...): what sent the message.
        KlaviyoKey(("$flow",), "flow_id", "VARCHAR"),
        KlaviyoKey(("$message",), "message_id", "VARCHAR"),
        # Conversions (Placed Order, ...): the send they are attributed to. `$message` is the campaign
        # (or its message) for a campaign, the flow message for a flow.
        KlaviyoKey(("$attribution", "$flow"), "attributed_flow_id", "VARCHAR"),
        KlaviyoKey(("$attribution", "$message"), "attributed_message_id", "VARCHAR"),
        KlaviyoKey(("$attribution", "$variation"), "attributed_variation_id", "VARCHAR"),
        KlaviyoKey(("$attribution", "$attributed_channel"), "attributed_channel", "VARCHAR"),
        KlaviyoKey(("$attribution", "$attributed_event_id"), "attributed_event_id", "VARCHAR"),
    ),
}
