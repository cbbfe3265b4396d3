"""ArticleSubmission -> Article: the one place where producer input becomes a clean article.

Every ingest path (HTTP API, stream entry, feed item, file) goes through
``normalize_submission``, so an article gets the same id, text and metadata whichever way it
arrived — which is what makes de-duplication across paths work.  Problems are collected per
field and raised together as ``NormalizationError``, whose ``errors`` name the fields, so a
producer can fix everything in one round trip and nothing is ever dropped without a reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Literal

from services.common.html import HtmlArticle, NoArticleText, extract_article
from services.common.models import (
    Article,
    ArticleSubmission,
    Dateline,
    FieldError,
    article_id_for,
    content_hash_for,
    utcnow,
)
from services.common.submission import (
    NO_PAGE_TITLE,
    TEXT_REQUIRED,
    TITLE_REQUIRED,
    SubmissionError,
)
from services.common.urls import InvalidURL, canonical_url_or_none
from services.ingest.chrome import StrippedBody, strip_chrome
from services.ingest.dates import DateParseError, parse_published_at, zone_for_place
from services.ingest.language import (
    InvalidLanguage,
    detect_language,
    detect_languages,
    normalize_language_tag,
)
from services.ingest.text import clean_line, clean_text

ReceivedVia = Literal["api", "stream", "feed", "file"]

__all__ = [
    "NormalizationError",
    "ReceivedVia",
    "clean_line",
    "clean_text",
    "normalize_submission",
    "normalize_submissions",
    "strip_chrome",
]


class NormalizationError(SubmissionError):
    """The submission cannot become an article; ``errors`` name each offending field.

    A :class:`SubmissionError` found later, by normalising rather than by validating: the
    same ``errors`` and ``reason``, kept a class of its own so callers can tell the stages.
    """

    @property
    def field(self) -> str:
        """The first offending field (callers that report one field at a time)."""
        return self.errors[0].field if self.errors else "(article)"

    @property
    def message(self) -> str:
        return self.reason


def _optional_line(value: str | None) -> str | None:
    if value is None:
        return None
    return clean_line(value) or None


def _publication_time(
    submission: ArticleSubmission,
    stripped: StrippedBody,
    page: HtmlArticle | None,
    local_tz: tzinfo,
    errors: list[FieldError],
) -> datetime | None:
    """The producer's date if given (an error when unreadable), else the page's own."""
    given = submission.published_at
    if given is not None and not (isinstance(given, str) and not given.strip()):
        try:
            return parse_published_at(given, default_tz=local_tz)
        except DateParseError as exc:
            errors.append(FieldError(field="published_at", message=str(exc)))
            return None
    # Found on the page by us: a best effort, never a reason to reject the article.
    for candidate in (stripped.page_date, page.date if page else None):
        if candidate:
            try:
                return parse_published_at(candidate, default_tz=local_tz)
            except DateParseError:
                continue
    return None


def _title(
    submission: ArticleSubmission, page: HtmlArticle | None, errors: list[FieldError]
) -> str:
    """The producer's title; else the page's own (og:title, <title>, first <h1>); else an error."""
    title = clean_line(submission.title or "")
    if title:
        return title
    if page is not None and page.title:
        title = clean_line(page.title)
        if title:
            return title
    if page is not None:
        message = NO_PAGE_TITLE
    elif submission.html and submission.html.strip():
        message = "not given, and the html could not be read for one: send a title"
    elif submission.title is not None:
        message = "is empty after whitespace normalisation"
    else:
        message = TITLE_REQUIRED
    errors.insert(0, FieldError(field="title", message=message))  # first, as in the article
    return ""


@dataclass(slots=True)
class _Draft:
    """A submission normalised up to its language (which may be detected for many at once)."""

    submission: ArticleSubmission
    title: str
    source: str | None
    canonical: str | None
    page: HtmlArticle | None
    stripped: StrippedBody
    published_at: datetime | None
    language: str | None
    received_via: ReceivedVia
    now: datetime | None

    @property
    def language_sample(self) -> str:
        return f"{self.title}\n{self.stripped.text}"


def normalize_submission(
    submission: ArticleSubmission,
    *,
    received_via: ReceivedVia = "api",
    now: datetime | None = None,
) -> Article:
    """Clean, de-chrome and identify one submission; raises ``NormalizationError``.

    - title/source/author: Unicode- and whitespace-normalised single lines; without a title,
      an HTML page's own (og:title, <title>, the first <h1>) is used;
    - body: ``body`` if given, else the main text extracted from ``html``; normalised, with
      page chrome cut (kept in ``removed``) and the dateline read (``dateline``);
    - ``source``/``author``/``published_at`` fall back to what the page itself shows (site
      name line, byline, printed date; an HTML page's metadata), and a naive time is read in
      the dateline city's time zone when it has one (else UTC);
    - ``language``: the given tag normalised, else detected;
    - ``canonical_url``, ``content_hash`` and the deterministic ``id``.
    """
    draft = _draft(submission, received_via, now)
    language = draft.language
    if language is None:
        language = detect_language(draft.language_sample)
    return _article(draft, language)


def normalize_submissions(
    submissions: Sequence[ArticleSubmission],
    *,
    received_via: ReceivedVia = "api",
    now: datetime | None = None,
) -> list[Article | Exception]:
    """``normalize_submission`` of each, in order; what one of them raised takes its place.

    The same articles as one call each, for less CPU: the languages still to be detected are
    detected in one run of the model (see ``language.detect_languages``).
    """
    drafts: list[_Draft | Exception] = []
    for submission in submissions:
        try:
            drafts.append(_draft(submission, received_via, now))
        except Exception as exc:  # NormalizationError, or a bug the caller reports per article
            drafts.append(exc)
    unknown = [
        i for i, draft in enumerate(drafts) if isinstance(draft, _Draft) and draft.language is None
    ]
    samples = [_sample(drafts[i]) for i in unknown]
    try:
        detected = dict(zip(unknown, detect_languages(samples), strict=True))
    except Exception:  # a bug in the batch path: each article on its own then
        detected = {}
        for i, sample in zip(unknown, samples, strict=True):
            try:
                detected[i] = detect_language(sample)
            except Exception as exc:
                drafts[i] = exc
    results: list[Article | Exception] = []
    for i, draft in enumerate(drafts):
        if isinstance(draft, Exception):
            results.append(draft)
            continue
        try:
            results.append(_article(draft, draft.language or detected.get(i)))
        except Exception as exc:
            results.append(exc)
    return results


def _sample(draft: _Draft | Exception) -> str:
    assert isinstance(draft, _Draft)
    return draft.language_sample


def _draft(
    submission: ArticleSubmission, received_via: ReceivedVia, now: datetime | None
) -> _Draft:
    """Everything of ``normalize_submission`` but detecting the language and building the
    article; raises ``NormalizationError``."""
    errors: list[FieldError] = []

    canonical: str | None = None
    try:
        canonical = canonical_url_or_none(submission.url)
    except InvalidURL as exc:
        errors.append(FieldError(field="url", message=str(exc)))

    source = _optional_line(submission.source)
    page: HtmlArticle | None = None
    raw_body = submission.body if submission.body and submission.body.strip() else None
    if raw_body is None and submission.html and submission.html.strip():
        try:
            page = extract_article(submission.html, url=submission.url)
            raw_body = page.text
        except NoArticleText as exc:
            errors.append(FieldError(field="html", message=str(exc)))
    elif raw_body is None:
        errors.append(FieldError(field="body", message=TEXT_REQUIRED))
    elif submission.html and submission.html.strip():
        # Both given: the producer's text is the body; the page still lends its metadata.
        try:
            page = extract_article(submission.html, url=submission.url)
        except NoArticleText:
            page = None

    title = _title(submission, page, errors)

    stripped = StrippedBody(text="")
    if raw_body is not None:
        stripped = strip_chrome(clean_text(raw_body), title=title, source=source)
        if not stripped.text:
            field = "body" if submission.body else "html"
            errors.append(
                FieldError(
                    field=field,
                    message=f"no article text left after removing page chrome "
                    f"({len(stripped.removed)} line(s) removed)",
                )
            )

    dateline = stripped.dateline
    local_tz = (zone_for_place(dateline.place) if dateline else None) or UTC
    published_at = _publication_time(submission, stripped, page, local_tz, errors)

    language: str | None = None
    if submission.language and submission.language.strip():
        try:
            language = normalize_language_tag(submission.language)
        except InvalidLanguage as exc:
            errors.append(FieldError(field="language", message=str(exc)))

    if errors:
        raise NormalizationError(errors)

    return _Draft(
        submission=submission,
        title=title,
        source=source,
        canonical=canonical,
        page=page,
        stripped=stripped,
        published_at=published_at,
        language=language,
        received_via=received_via,
        now=now,
    )


def _article(draft: _Draft, language: str | None) -> Article:
    submission, stripped, page = draft.submission, draft.stripped, draft.page
    title, source, canonical = draft.title, draft.source, draft.canonical
    dateline = stripped.dateline
    body = stripped.text
    content_hash = content_hash_for(title, body)
    return Article(
        id=article_id_for(canonical, content_hash),
        external_id=submission.id,
        title=title,
        body=body,
        url=submission.url or None,
        canonical_url=canonical,
        source=source
        or _optional_line(stripped.page_source)
        or _optional_line(page.sitename if page else None)
        or (dateline.agency if dateline else None),
        author=_optional_line(stripped.author) or _optional_line(page.author if page else None),
        published_at=draft.published_at,
        language=language,
        metadata=dict(submission.metadata),
        content_hash=content_hash,
        dateline=Dateline(place=dateline.place, agency=dateline.agency) if dateline else None,
        removed=stripped.removed,
        received_via=draft.received_via,
        ingested_at=draft.now or utcnow(),
    )
