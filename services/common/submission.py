"""A producer's article as sent -> an ``ArticleSubmission``, with *every* problem named at once.

Pydantic stops at the fields it checks: ``{"title": 5}`` failed on ``title`` alone, and the
producer learnt only after fixing it that ``body`` (or ``html``) was missing too.  The rules
that span fields are checked here as well, so one answer lists them all:

- the text: ``body`` or ``html`` (a non-empty string) is required;
- the title: ``title``, or else ``html`` whose page has one (``og:title``, ``<title>``, the
  first ``<h1>``, as trafilatura's metadata finds it).  Whether the page has one is known only
  once it is parsed, so that last check belongs to whoever extracts the page
  (:data:`NO_PAGE_TITLE` is its message).

Ingest (every path: HTTP, stream entry, feed, file) and ``topicwatch classify`` both read
articles through :func:`validate_submission`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from services.common.models import ArticleSubmission, FieldError, field_errors

#: What a submission without a title is told when its page has no title either.
NO_PAGE_TITLE = (
    "not given, and the page has none (no og:title, <title> or <h1> found): send a title"
)
#: ... and when there is no page to take one from.
TITLE_REQUIRED = "required (or send html: the page's own title is then used)"
TEXT_REQUIRED = "either body or html is required"


class SubmissionError(ValueError):
    """The input cannot be an article; ``errors`` name every offending field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        return "; ".join(f"{error.field}: {error.message}" for error in self.errors)


def _given(payload: dict[str, Any], field: str) -> bool:
    value = payload.get(field)
    return isinstance(value, str) and bool(value.strip())


def _top_field(error: FieldError) -> str:
    """``metadata`` for ``metadata.region``, ``title`` for ``title``."""
    return error.field.split(".", 1)[0].split("[", 1)[0]


def presence_errors(payload: dict[str, Any], reported: set[str]) -> list[FieldError]:
    """The cross-field rules, for fields not already ``reported`` by type checks."""
    errors = []
    if not _given(payload, "title") and not _given(payload, "html") and "title" not in reported:
        errors.append(FieldError(field="title", message=TITLE_REQUIRED))
    if (
        not _given(payload, "body")
        and not _given(payload, "html")
        and not {"body", "html"} & reported
    ):
        errors.append(FieldError(field="body", message=TEXT_REQUIRED))
    return errors


def validate_submission(payload: Any) -> ArticleSubmission:
    """The submission, or ``SubmissionError`` naming every structural problem of ``payload``."""
    if not isinstance(payload, dict):
        raise SubmissionError(
            [FieldError(field="(body)", message=f"expected a JSON object, not {_kind(payload)}")]
        )
    try:
        submission = ArticleSubmission.model_validate(payload)
    except ValidationError as exc:
        errors = field_errors(exc)
        reported = {_top_field(error) for error in errors}
        raise SubmissionError(errors + presence_errors(payload, reported)) from None
    missing = presence_errors(payload, set())
    if missing:
        raise SubmissionError(missing)
    return submission


def without_bad_fields(payload: dict[str, Any], errors: list[FieldError]) -> ArticleSubmission:
    """``payload`` minus the fields named in ``errors``, as a submission (no presence rules).

    What is left can still be checked further (dates, URL, language, the page itself), so that
    a refusal lists those problems too rather than only the first round's.  Raises
    ``ValidationError`` if what is left is still not a submission.
    """
    bad = {_top_field(error) for error in errors}
    return ArticleSubmission.model_validate({k: v for k, v in payload.items() if k not in bad})


def merge_errors(first: list[FieldError], more: list[FieldError]) -> list[FieldError]:
    """``first`` plus those of ``more`` about fields ``first`` does not already name."""
    named = {_top_field(error) for error in first}
    seen = {(e.field, e.message) for e in first}
    out = list(first)
    for error in more:
        if _top_field(error) in named or (error.field, error.message) in seen:
            continue
        seen.add((error.field, error.message))
        out.append(error)
    return out


@dataclass(frozen=True, slots=True)
class ReadArticle:
    """The title and text a classifier reads from a submission."""

    title: str
    body: str
    from_html: bool = False


def read_article(submission: ArticleSubmission) -> ReadArticle:
    """``body`` (else the page's main text) and ``title`` (else the page's own title).

    For the classifier's dry runs (``topicwatch classify``, ``POST /v1/classify``), which
    read an article as ingest would without ingest's normalisation.  Raises
    ``SubmissionError`` naming every problem.  The page is parsed only when needed.
    """
    from services.common.html import NoArticleText, extract_article

    errors: list[FieldError] = []
    body = submission.body if submission.body and submission.body.strip() else ""
    title = (submission.title or "").strip()
    html = submission.html if submission.html and submission.html.strip() else ""
    page = None
    if html and (not body or not title):
        try:
            page = extract_article(html, url=submission.url)
        except NoArticleText as exc:
            errors.append(FieldError(field="html", message=str(exc)))
    if not title:
        title = (page.title or "") if page else ""
        if not title:
            message = NO_PAGE_TITLE if page else TITLE_REQUIRED
            if html and page is None:
                message = "not given, and the html could not be read for one: send a title"
            errors.append(FieldError(field="title", message=message))
    from_html = False
    if not body and page is not None:
        body, from_html = page.text, True
    elif not body and not html:
        errors.append(FieldError(field="body", message=TEXT_REQUIRED))
    if errors:
        raise SubmissionError(errors)
    return ReadArticle(title=title, body=body, from_html=from_html)


def read_submission(payload: Any) -> tuple[ArticleSubmission, ReadArticle]:
    """:func:`validate_submission` then :func:`read_article`, every problem of both named."""
    try:
        submission = validate_submission(payload)
    except SubmissionError as exc:
        if isinstance(payload, dict):
            try:
                read_article(without_bad_fields(payload, exc.errors))
            except SubmissionError as more:
                raise SubmissionError(merge_errors(exc.errors, more.errors)) from None
            except ValidationError:
                pass
        raise
    return submission, read_article(submission)


def _kind(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if isinstance(value, float) else type(value).__name__)
