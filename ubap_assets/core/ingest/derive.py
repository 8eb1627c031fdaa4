"""What files often lack: sessions, users and the page catalogue, derived from the events."""

import polars as pl

from ubap_assets.core.schema import PAGE_TYPES, PAGES_SCHEMA, USERS_SCHEMA

UNKNOWN = "unknown"


def url_to_page_id(url: pl.Expr) -> pl.Expr:
    """A URL's path without scheme, host, query, fragment and trailing slash ("/" for the root)."""
    path = (
        url.str.replace(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*", "")
        .str.replace(r"[?#].*$", "")
        .str.replace(r"(.)/+$", "$1")
    )
    return pl.when(url.is_null()).then(None).when(path == "").then(pl.lit("/")).otherwise(path)


def slug(text: pl.Expr) -> pl.Expr:
    return text.str.to_lowercase().str.replace_all(r"[^a-z0-9]+", "-").str.strip_chars("-")


def derive_sessions(events: pl.DataFrame, gap_minutes: int) -> pl.DataFrame:
    """Rows without a session id get ``<user_id>-<session start, yyyymmddThhmmss>``.

    A session ends after ``gap_minutes`` without an event of the same user. Rows keep their order.
    """
    need = events["session_id"].is_null()
    if not need.any():
        return events
    ts, user = pl.col("event_ts"), pl.col("user_id")
    opens = (user != user.shift(1)).fill_null(True) | (
        (ts - ts.shift(1)) > pl.duration(minutes=gap_minutes)
    )
    derived = (
        events.with_row_index("__i")
        .filter(need)
        .select("__i", "user_id", "event_ts")
        .sort("user_id", "event_ts")
        .with_columns(__start=pl.when(opens).then(ts).forward_fill())
        .select(
            "__i",
            __sid=pl.concat_str(user, pl.lit("-"), pl.col("__start").dt.strftime("%Y%m%dT%H%M%S")),
        )
        .sort("__i")
    )
    sid = events["session_id"].scatter(need.arg_true(), derived["__sid"])
    return events.with_columns(session_id=sid)


def derive_users(events: pl.LazyFrame) -> pl.DataFrame:
    """One row per user: signup date (given, else first day seen), first device and source."""
    first_seen = pl.col("event_ts").min().dt.date()
    # The events come sorted by event_ts, and group_by keeps that order inside each group.
    return (
        events.group_by("user_id")
        .agg(
            signup_date=pl.min_horizontal(pl.col("signup_date").min(), first_seen),
            country=pl.col("country").drop_nulls().first(),
            device=pl.col("device").first(),
            traffic_source=pl.col("traffic_source").first(),
        )
        .with_columns(pl.col("country").fill_null(UNKNOWN))
        .select([pl.col(c).cast(t) for c, t in USERS_SCHEMA.items()])
        .sort("user_id")
        .collect()
    )


_PAGE_TYPE_RULES: tuple[tuple[str, str], ...] = (
    (r"checkout|payment", "checkout"),
    (r"cart|basket|bag", "cart"),
    (r"search|[?&]q=", "search"),
    (r"blog|article|news|stories|post", "blog"),
    (r"help|faq|support|contact|returns|shipping", "help"),
    (r"pricing|plans|membership", "pricing"),
    (r"deal|sale|offer|promo|outlet", "deals"),
    (r"about|company|careers", "about"),
    (r"stores?(/|$)|locat", "stores"),
    (r"product|/p/|/dp/|item|sku", "product"),
    (r"categor|/c/[^/]+$|collections?|shop/[^/]+$", "category"),
)


def _infer_page_type(url: pl.Expr, price: pl.Expr) -> pl.Expr:
    # Rules read the path and query, never the host ("shop.example" is no shop page).
    text = url.str.replace(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*", "").str.to_lowercase()
    expr = pl.when(url_to_page_id(url) == "/").then(pl.lit("home"))
    for pattern, kind in _PAGE_TYPE_RULES:
        expr = expr.when(text.str.contains(pattern)).then(pl.lit(kind))
    return expr.when(price.is_not_null()).then(pl.lit("product")).otherwise(pl.lit("other"))


def _words(text: pl.Expr) -> pl.Expr:
    """Slugs and codes as words: "sewing_machine" -> "Sewing Machine"; "TV & Audio" stays."""
    words = text.str.replace_all(r"[-_.+]+", " ").str.strip_chars()
    return (
        pl.when(words == words.str.to_lowercase()).then(words.str.to_titlecase()).otherwise(words)
    )


def derive_pages(events: pl.LazyFrame) -> pl.DataFrame:
    """One row per page id of the events, with text for the embeddings from whatever is present."""
    first = {
        c: pl.col(c).drop_nulls().first()
        for c in ("page_url", "page_title", "page_description", "page_category", "page_type")
    }
    pages = (
        events.group_by("page_id")
        .agg(
            **first,
            page_brand=pl.col("page_brand").drop_nulls().mode().sort().first(),
            page_price=pl.col("page_price").filter(pl.col("page_price").is_finite()).median(),
        )
        .collect()
    )
    return complete_pages(pages)


def complete_pages(pages: pl.DataFrame) -> pl.DataFrame:
    """Fill url, title, description, category, page type of page rows from what is known."""
    pid = pl.col("page_id")
    url = pl.coalesce(
        pl.col("page_url"),
        pl.when(pid.str.starts_with("/") | pid.str.contains("://")).then(pid),
    )
    # "electronics.audio.headphone" / "Home > Audio" -> parts of a category path.
    path = pl.col("page_category").str.split(r".").list.eval(pl.element().str.strip_chars())
    path = (
        pl.when(pl.col("page_category").str.contains(r"[>/|]"))
        .then(pl.col("page_category").str.replace_all(r"\s*[>/|]\s*", ".").str.split("."))
        .otherwise(path)
    )
    url_part = (
        url_to_page_id(pl.col("url"))
        .str.split("/")
        .list.eval(pl.element().filter(pl.element().str.len_chars() > 2))
    )
    leaf = path.list.last()
    category = pl.coalesce(
        _words(path.list.first()),
        _words(pl.col("__url_parts").list.first()),
        pl.lit("Other"),
    )
    title = pl.coalesce(
        pl.col("page_title"),
        pl.when(pl.col("page_brand").is_not_null() | leaf.is_not_null()).then(
            pl.concat_str(
                _words(pl.col("page_brand")), _words(leaf), separator=" ", ignore_nulls=True
            )
        ),
        _words(pl.col("__url_parts").list.last()),
        pid,
    )
    price_text = pl.col("page_price").round(2).cast(pl.String)
    description = pl.coalesce(
        pl.col("page_description"),
        pl.concat_str(
            pl.col("title"),
            pl.lit(". Category: ") + path.list.eval(_words(pl.element())).list.join(" > "),
            pl.lit(". Brand: ") + _words(pl.col("page_brand")),
            pl.lit(". Price: ") + price_text,
            separator="",
            ignore_nulls=True,
        ),
    )
    given_type = pl.col("page_type").str.to_lowercase().str.strip_chars()
    page_type = (
        pl.when(given_type.is_in(list(PAGE_TYPES)))
        .then(given_type)
        .otherwise(_infer_page_type(pl.col("url"), pl.col("page_price")))
    )
    out = (
        pages.with_columns(url=url)
        .with_columns(__url_parts=url_part)
        .with_columns(title=title, category=category, page_type=page_type)
        .with_columns(
            description=description,
            url=pl.coalesce(
                pl.col("url"), pl.concat_str(pl.lit("/"), pl.col("page_type"), pl.lit("/"), pid)
            ),
            price=pl.col("page_price"),
        )
    )
    return out.select([pl.col(c).cast(t) for c, t in PAGES_SCHEMA.items()]).sort("page_id")
