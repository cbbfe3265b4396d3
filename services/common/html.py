"""Raw HTML -> the article's main text, title, author, date and site name (trafilatura).

Scrapers that send whole pages would otherwise have their menus, cookie banners and footers
classified as news.  trafilatura is the maintained, benchmarked choice for main-content
extraction (and its htmldate finds publication dates in meta tags, JSON-LD and the page text).
Its paragraphs come back one per line; they are re-joined with blank lines so that the plain
text chrome pass (``chrome.strip_chrome``) sees the same structure as a scraped text body.

It lives in ``services/common`` because two services need it: ingest normalises submitted
pages, and classify's dry-run API and ``topicwatch classify`` take raw HTML too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Ask htmldate for the original publication time, with the time of day when the page has it.
_DATE_PARAMS: dict[str, Any] = {
    "extensive_search": True,
    "original_date": True,
    "outputformat": "%Y-%m-%dT%H:%M:%S%z",
}


#: Below this size an HTML input with no "main content" is taken whole (a snippet, not a page).
MAX_FRAGMENT_CHARS = 20_000


class NoArticleText(ValueError):
    """The page held no extractable article text."""


@dataclass(frozen=True, slots=True)
class HtmlArticle:
    text: str
    title: str | None = None
    author: str | None = None
    date: str | None = None
    sitename: str | None = None
    language: str | None = None


def _optional(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def extract_article(html: str, *, url: str | None = None) -> HtmlArticle:
    """Extract the main article from a page; raises ``NoArticleText`` when there is none."""
    if not html.strip():
        raise NoArticleText("html is empty")
    import trafilatura  # lazy: a large import, needed only by producers that send pages

    try:
        document = trafilatura.bare_extraction(
            html,
            url=url,
            with_metadata=True,
            include_comments=False,
            include_tables=True,
            date_extraction_params=_DATE_PARAMS,
        )
    except (ValueError, TypeError, LookupError, RecursionError) as exc:
        # lxml refuses some malformed documents outright; the producer gets a reason.
        raise NoArticleText(f"html could not be parsed: {exc}") from exc
    text = _optional(getattr(document, "text", None)) if document is not None else None
    if text is None and len(html) <= MAX_FRAGMENT_CHARS:
        # trafilatura wants a page-sized text; a short snippet is all article.
        text = _optional(fragment_to_text(html))
    if text is None:
        raise NoArticleText("html holds no article text that could be extracted")
    paragraphs = [line.strip() for line in text.split("\n") if line.strip()]
    if document is None:
        return HtmlArticle(text="\n\n".join(paragraphs))
    return HtmlArticle(
        text="\n\n".join(paragraphs),
        title=_optional(getattr(document, "title", None)),
        author=_optional(getattr(document, "author", None)),
        date=_optional(getattr(document, "date", None)),
        sitename=_optional(getattr(document, "sitename", None)),
        language=_optional(getattr(document, "language", None)),
    )


def fragment_to_text(html: str) -> str:
    """Text of an HTML fragment (a feed item's summary), block elements as paragraphs.

    Feed summaries are short fragments on which main-content extraction finds nothing; all of
    their text is the article text, so it is taken whole.
    """
    if "<" not in html:
        return html
    from lxml import etree
    from lxml import html as lxml_html

    try:
        root = lxml_html.fragment_fromstring(html, create_parent="div")
    except (etree.ParserError, ValueError):
        return ""
    for bad in root.xpath("//script|//style|//noscript"):
        bad.drop_tree()
    for block in root.xpath("//p|//div|//br|//li|//h1|//h2|//h3|//h4|//blockquote|//tr"):
        block.tail = "\n\n" + (block.tail or "")
    return str(root.text_content())
