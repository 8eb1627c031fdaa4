"""Built-in mappings from common event-log shapes to the ubap event schema (Dagster-free).

Each mapping is plain data in the same shape as a user's mapping file (JSON or TOML, see
docs/ingest.md): ``columns`` maps a target field to a source column, a list of candidate columns
(the first non-empty one per row wins; names match case- and separator-insensitively, so
``context.page.url`` also finds ``context_page_url``), ``{"concat": [...], "sep": "-"}`` or
``{"value": "constant"}``. ``event_types`` maps source values (matched case-insensitively, spaces
and dashes read as ``_``) to an event type, or to ``null`` to ignore such rows (counted, never
rejected). Values already named like an event type pass through unchanged.
"""

from typing import Any

NATIVE: dict[str, Any] = {
    "name": "native",
    "description": "The documented ubap event schema (docs/ingest.md).",
    "columns": {
        "event_id": "event_id",
        "user_id": "user_id",
        "session_id": "session_id",
        "event_ts": ["event_ts", "timestamp"],
        "event_type": "event_type",
        "page_id": "page_id",
        "device": "device",
        "traffic_source": "traffic_source",
        "revenue": "revenue",
        "country": "country",
        "signup_date": "signup_date",
        "page_url": ["url", "page_url"],
        "page_title": ["title", "page_title"],
        "page_description": ["description", "page_description"],
        "page_category": ["category", "page_category"],
        "page_type": "page_type",
        "page_price": ["price", "page_price"],
        "page_brand": ["brand", "page_brand"],
    },
    "event_types": {
        "pageview": "page_view",
        "view": "page_view",
        "add_to_basket": "add_to_cart",
        "checkout": "checkout_start",
        "order": "purchase",
    },
    "unmapped_event_types": "reject",
}

# Segment track/page calls (the Spec's e-commerce events), as JSON Lines or a flattened CSV.
SEGMENT: dict[str, Any] = {
    "name": "segment",
    "description": "Segment-style track log: userId/anonymousId, event, timestamp, properties.*",
    "columns": {
        "event_id": ["messageId", "message_id"],
        "user_id": ["userId", "anonymousId"],
        "session_id": ["context.sessionId", "properties.session_id"],
        "event_ts": ["timestamp", "originalTimestamp", "receivedAt", "sentAt"],
        "event_type": ["event", "type"],
        "page_id": [
            "properties.product_id",
            "properties.sku",
            "properties.path",
            "context.page.path",
            "properties.url",
            "context.page.url",
        ],
        "device": ["context.device.type", "properties.device"],
        "traffic_source": [
            "context.campaign.source",
            "context.campaign.medium",
            "properties.utm_source",
            "context.referrer.type",
        ],
        "revenue": ["properties.revenue", "properties.total", "properties.value"],
        "country": ["context.location.country", "properties.country"],
        "page_url": ["properties.url", "context.page.url", "properties.path", "context.page.path"],
        "page_title": ["properties.name", "properties.title", "context.page.title", "name"],
        "page_category": ["properties.category"],
        "page_price": ["properties.price"],
        "page_brand": ["properties.brand"],
    },
    "event_types": {
        "page": "page_view",
        "screen": "page_view",
        "page_viewed": "page_view",
        "product_viewed": "page_view",
        "product_list_viewed": "page_view",
        "product_category_viewed": "page_view",
        "cart_viewed": "page_view",
        "promotion_viewed": "page_view",
        "product_clicked": "click",
        "promotion_clicked": "click",
        "link_clicked": "click",
        "button_clicked": "click",
        "product_list_filtered": "click",
        "page_scrolled": "scroll",
        "products_searched": "search",
        "product_searched": "search",
        "searched": "search",
        "product_added": "add_to_cart",
        "checkout_started": "checkout_start",
        "order_completed": "purchase",
        "identify": None,
        "group": None,
        "alias": None,
        "product_removed": None,
        "checkout_step_viewed": None,
        "checkout_step_completed": None,
        "payment_info_entered": None,
        "coupon_applied": None,
        "order_refunded": None,
    },
    "unmapped_event_types": "reject",
}

# The public multi-category store log: event_time, event_type (view/cart/remove_from_cart/purchase),
# product_id, category_id, category_code, brand, price, user_id, user_session.
ECOMMERCE: dict[str, Any] = {
    "name": "ecommerce",
    "description": "E-commerce log: event_time, event_type, product_id, category_code, brand, "
    "price, user_id, user_session",
    "columns": {
        "user_id": "user_id",
        "session_id": "user_session",
        "event_ts": "event_time",
        "event_type": "event_type",
        "page_id": "product_id",
        "revenue": "price",
        "page_category": "category_code",
        "page_brand": "brand",
        "page_price": "price",
        "page_type": {"value": "product"},
    },
    "event_types": {
        "view": "page_view",
        "cart": "add_to_cart",
        "purchase": "purchase",
        "remove_from_cart": None,
    },
    "unmapped_event_types": "reject",
}

# GA4 BigQuery export with event_params/device/geo/traffic_source flattened to columns.
GA4: dict[str, Any] = {
    "name": "ga4",
    "description": "GA4-style flattened export: event_timestamp (microseconds), event_name, "
    "user_pseudo_id, ga_session_id, page_location, page_title, device.category, ...",
    "columns": {
        "event_id": ["event_id"],
        "user_id": ["user_pseudo_id", "user_id"],
        "session_id": {
            "concat": [
                ["user_pseudo_id", "user_id"],
                ["ga_session_id", "event_params.ga_session_id", "param_ga_session_id"],
            ],
            "sep": "-",
        },
        "event_ts": ["event_timestamp"],
        "event_type": ["event_name"],
        "page_id": ["item_id", "items.item_id"],
        "device": ["device.category", "device_category"],
        "traffic_source": [
            "traffic_source.source",
            "collected_traffic_source.manual_source",
            "traffic_source.medium",
            "source",
        ],
        # US dollars first (one currency across properties), then the property's currency.
        "revenue": [
            "ecommerce.purchase_revenue_in_usd",
            "purchase_revenue_in_usd",
            "event_value_in_usd",
            "ecommerce.purchase_revenue",
            "purchase_revenue",
            "event_params.value",
            "value",
        ],
        "country": ["geo.country", "country"],
        "page_url": ["page_location", "event_params.page_location", "param_page_location"],
        "page_title": [
            "item_name",
            "items.item_name",
            "page_title",
            "event_params.page_title",
            "param_page_title",
        ],
        "page_category": ["item_category", "items.item_category"],
        "page_price": ["item_price", "items.price", "price"],
        "page_brand": ["item_brand", "items.item_brand"],
    },
    "event_types": {
        "page_view": "page_view",
        "screen_view": "page_view",
        "view_item": "page_view",
        "view_item_list": "page_view",
        "view_cart": "page_view",
        "view_promotion": "page_view",
        "select_item": "click",
        "select_promotion": "click",
        "click": "click",
        "file_download": "click",
        "scroll": "scroll",
        "search": "search",
        "view_search_results": "search",
        "add_to_cart": "add_to_cart",
        "begin_checkout": "checkout_start",
        "purchase": "purchase",
        "session_start": None,
        "first_visit": None,
        "first_open": None,
        "user_engagement": None,
        "add_shipping_info": None,
        "add_payment_info": None,
        "remove_from_cart": None,
        "add_to_wishlist": None,
        "refund": None,
        "login": None,
        "sign_up": None,
        "video_start": None,
        "video_progress": None,
        "video_complete": None,
    },
    "unmapped_event_types": "reject",
}

BUILTIN_MAPPINGS: dict[str, dict[str, Any]] = {
    "native": NATIVE,
    "segment": SEGMENT,
    "ecommerce": ECOMMERCE,
    "ga4": GA4,
}
