"""Canonical article URLs: one spelling per page, so one id per story.

The same article reaches us as ``HTTPS://Example.com:443/story/?utm_source=x#comments`` from a
newsletter, ``https://example.com/story`` from a feed and ``...?fbclid=...`` from social media.
The article id is a hash of the canonical URL, so all of these must come out identical, while two
genuinely different pages must never collapse into one (that would silently drop an article as a
"duplicate").  Hence the tracking-parameter list below is explicit: only parameters known to
carry attribution are dropped, never anything that could select content (``id``, ``cid``,
``page``, ``source``...).  Percent-encoding, dot segments, IDNA hosts and query ordering are
w3lib's ``canonicalize_url`` (Scrapy's, well tested against real-world URLs).

Shared (``services/common``) because ingest derives article ids from it and ``topicwatch
classify`` derives the same ids for files it reads.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from w3lib.url import canonicalize_url as _w3lib_canonicalize

#: Exact query parameter names (lower-cased) that only carry click/campaign attribution.
TRACKING_PARAMS: frozenset[str] = frozenset(
    {
        "fbclid",  # Facebook
        "gclid",  # Google Ads
        "gclsrc",
        "dclid",  # DoubleClick
        "gbraid",
        "wbraid",
        "msclkid",  # Microsoft Ads
        "yclid",  # Yandex
        "ysclid",
        "twclid",  # X/Twitter
        "ttclid",  # TikTok
        "li_fat_id",  # LinkedIn
        "igshid",  # Instagram
        "igsh",
        "mc_cid",  # Mailchimp
        "mc_eid",
        "_ga",  # Google Analytics cross-domain
        "_gl",
        "_hsenc",  # HubSpot
        "_hsmi",
        "mkt_tok",  # Marketo
        "oly_anon_id",  # Omeda
        "oly_enc_id",
        "vero_id",
        "vero_conv",
        "rb_clickid",
        "s_cid",  # Adobe
        "cmpid",
        "ncid",
        "ocid",
        "smid",  # NYT share
        "sr_share",
        "ref_src",  # Twitter embeds
        "ref_url",
        "at_medium",  # AT Internet
        "at_campaign",
        "xtor",
        "wt.mc_id",  # Webtrends
        "spm",
        "cmp",
        "__twitter_impression",
    }
)

#: Parameter-name prefixes that only carry attribution (``utm_source``, ``pk_campaign``...).
TRACKING_PREFIXES: tuple[str, ...] = ("utm_", "pk_", "mtm_", "hsa_", "itm_", "stm_")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_WHITESPACE = re.compile(r"\s")


class InvalidURL(ValueError):
    """The value cannot be an article's address (message is meant for the producer)."""


def is_tracking_param(name: str) -> bool:
    """Whether a query parameter only carries attribution and can be dropped safely."""
    lowered = name.strip().lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def _netloc(parts: SplitResult) -> str:
    """Host and non-default port; user info is dropped (never part of a page's identity,
    and a credential must not end up in an event)."""
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"invalid port in {parts.netloc!r}") from exc
    if port is not None and _DEFAULT_PORTS.get(parts.scheme) != port:
        host = f"{host}:{port}"
    return host


def canonical_url(url: str) -> str:
    """The canonical spelling of an absolute http(s) URL.

    Lower-cased scheme and host, IDNA host, default port dropped, fragment dropped, tracking
    parameters dropped, remaining query sorted (blank values kept: they can select content),
    dot segments resolved, user info dropped, trailing slash dropped (except the root ``/``).

    Raises ``InvalidURL`` for anything that is not an absolute http(s) URL.
    """
    text = url.strip()
    if not text:
        raise InvalidURL("empty URL")
    if _WHITESPACE.search(text):
        raise InvalidURL("URL contains whitespace")
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # e.g. unbalanced brackets in an IPv6 host
        raise InvalidURL(str(exc)) from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidURL("must be an absolute http:// or https:// URL")
    if not parts.hostname:
        raise InvalidURL("URL has no host")
    query = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if not is_tracking_param(name)
    ]
    stripped = parts._replace(scheme=scheme, query=urlencode(query), fragment="")
    try:
        canonical = _w3lib_canonicalize(urlunsplit(stripped), keep_blank_values=True)
        parts = urlsplit(canonical)
        netloc = _netloc(parts)
    except (ValueError, UnicodeError) as exc:
        raise InvalidURL(str(exc)) from exc
    path = parts.path or "/"
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    return urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def canonical_url_or_none(url: str | None) -> str | None:
    """``canonical_url`` for optional input; ``None`` for no URL (invalid ones still raise)."""
    if url is None or not url.strip():
        return None
    return canonical_url(url)
