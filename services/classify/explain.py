"""Human-readable explanation of a classification (``topicwatch classify --explain``).

Why: an analyst who disagrees with a tag (or a missing one) needs to see which rule fired on
which words, how each piece of evidence moved the score, and what pulled it down, in order
to fix the taxonomy rather than distrust it.
"""

from __future__ import annotations

from services.classify.classifier import Classification, TopicDetail
from services.common.models import Evidence

CONTEXT_CHARS = 50


def _snippet(title: str, body: str, ev: Evidence) -> str:
    source = title if ev.field == "title" else body
    start = max(0, ev.start - CONTEXT_CHARS)
    end = min(len(source), ev.end + CONTEXT_CHARS)
    before = source[start : ev.start].replace("\n", " ")
    after = source[ev.end : end].replace("\n", " ")
    lead = "…" if start > 0 else ""
    tail = "…" if end < len(source) else ""
    return f"{lead}{before}[{source[ev.start : ev.end]}]{after}{tail}"


def _topic_block(detail: TopicDetail, title: str, body: str) -> list[str]:
    mark = "TAGGED " if detail.tagged else "below  "
    lines = [
        f"  {mark} {detail.id:<26} score {detail.score:.2f}  (threshold {detail.threshold:.2f})"
    ]
    for f in detail.firings:
        sign = "+" if f.weight > 0 else "-"
        times = "sentence" if f.count == 1 else "sentences"
        lines.append(
            f"      {sign} rule {f.rule}: weight {f.weight:+.2f}, fired in {f.count} {times}"
            f" -> {f.contribution:.2f}"
        )
        if f.note:
            lines.append(f"          ({f.note})")
        shown: set[tuple[str, int]] = set()
        for ev in f.evidence:
            if (ev.field, ev.start) in shown:
                continue
            shown.add((ev.field, ev.start))
            lines.append(
                f"          {ev.field} {ev.start}-{ev.end} {ev.text!r}: {_snippet(title, body, ev)}"
            )
    for damper, factor in detail.dampers:
        lines.append(f"      x damper {damper}: score multiplied by {factor:.2f}")
    return lines


def render_explanation(
    article_id: str, title: str, body: str, result: Classification, *, entity_limit: int = 12
) -> str:
    """Explain one article: tagged topics first, then topics that scored below threshold."""
    lines = [f"== {article_id}: {title}", f"   taxonomy {result.taxonomy_version}"]
    if not result.details:
        lines.append("   no rule fired: no topics")
    tagged = [d for d in result.details if d.tagged]
    below = [d for d in result.details if not d.tagged]
    if tagged:
        lines.append("   topics:")
        for d in tagged:
            lines += _topic_block(d, title, body)
    elif result.details:
        lines.append("   topics: none reached its threshold")
    if below:
        lines.append("   considered but not tagged:")
        for d in below:
            lines += _topic_block(d, title, body)
    if result.entities:
        shown = ", ".join(
            f"{e.name} ({e.kind}, {e.mentions}x)" for e in result.entities[:entity_limit]
        )
        more = len(result.entities) - entity_limit
        lines.append(f"   entities: {shown}" + (f", and {more} more" if more > 0 else ""))
    return "\n".join(lines)
