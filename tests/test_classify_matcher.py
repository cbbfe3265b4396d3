"""Text normalisation and the one-automaton matcher: tolerance and word boundaries."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.classify.classifier import _Spans
from services.classify.matcher import PatternMatcher, fold, normalise, pattern_keys
from services.classify.segment import dateline_length, is_prose_line, layout


def matches(patterns: list[str], text: str) -> list[tuple[str, str]]:
    """(pattern label, original text) for every hit, in order."""
    m = PatternMatcher()
    for p in patterns:
        m.add(p)
    _, hits = m.scan(text)
    return [(m.atom_labels[h.atom], text[h.start : h.end]) for h in hits]


def test_designations_match_with_hyphen_space_or_joined() -> None:
    text = "The S-400, an S400 and an S 400; also the s-400 and S–400 and PAC3 and PAC-3 MSE."
    found = matches(["S-400", "PAC-3"], text)
    assert [t for label, t in found if label == "s 400"] == [
        "S-400",
        "S400",
        "S 400",
        "s-400",
        "S–400",
    ]
    assert [t for label, t in found if label == "pac 3"] == ["PAC3", "PAC-3"]


def test_a_designation_in_the_plural_is_the_designation() -> None:
    text = "Turkey's S-400s, two S400s, the F-35s and PAC-3s; not 400s alone."
    found = matches(["S-400", "F-35", "PAC-3"], text)
    assert found == [
        ("s 400", "S-400s"),
        ("s 400", "S400s"),
        ("f 35", "F-35s"),
        ("pac 3", "PAC-3s"),
    ]
    assert matches(["Patriot", "Arrow"], "Patriots and arrows") == []  # words stay words


def test_possessive_s_is_not_a_token() -> None:
    """'Turkey's 400 troops' must not read as 'S 400'."""
    assert matches(["S-400"], "Turkey's 400 troops and Iran’s 400 drones") == []
    assert matches(["David's Sling"], "Israel's David’s Sling and Davids Sling") == [
        ("david sling", "David’s Sling")
    ]


def test_defence_defense_and_other_spelling_variants() -> None:
    # "systems" is another word than "system": patterns match whole words.
    found = matches(
        ["air defence system", "manoeuvres", "modernisation", "counter-terrorism"],
        "Air-Defense System; AIR DEFENCE systems; maneuvers; modernization; counterterrorism",
    )
    assert [t for _, t in found] == [
        "Air-Defense System",
        "maneuvers",
        "modernization",
        "counterterrorism",
    ]


def test_word_boundaries() -> None:
    text = "Arrowhead torpedo Patriots hawkish Torrance Buko"
    assert matches(["Arrow", "Tor", "Patriot", "hawk", "Buk"], text) == []
    assert matches(["Arrow"], "the Arrow, fired") == [("arrow", "Arrow")]


def test_prefix_patterns_match_word_starts_only() -> None:
    found = matches(["procur*"], "procure procured procurement reprocured procuring")
    assert [t for _, t in found] == ["procure", "procured", "procurement", "procuring"]


def test_spans_survive_space_runs_and_unicode() -> None:
    text = "«Türkiye»  —  bought\n\n  the   S‑400 “Triumf”…  from İstanbul   Rosoboronexport"
    found = matches(["Türkiye", "S-400", "Triumf", "Rosoboronexport", "bought"], text)
    assert [t for _, t in found] == ["Türkiye", "bought", "S‑400", "Triumf", "Rosoboronexport"]


def test_equivalent_patterns_share_one_atom() -> None:
    m = PatternMatcher()
    assert m.add("air-defence") == m.add("Air Defense") == m.add("AIR  DEFENCE")
    assert m.add("air defence*") != m.add("air defence")


def test_keys_are_whole_words() -> None:
    assert pattern_keys("S-400") == [" s 400 ", " s 400s ", " s400 ", " s400s "]
    assert all(k.startswith(" ") and not k.endswith(" ") for k in pattern_keys("procur*"))


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("ab -.,'’\n\t—é")), max_size=30),
    st.text(alphabet=st.sampled_from(list("ab -.,'’\n\t—é")), max_size=30),
    st.sampled_from(["S-400", "air defence", "Iron Dome", "PAC-3"]),
)
def test_a_pattern_between_any_separators_is_found_with_its_exact_span(
    before: str, after: str, pattern: str
) -> None:
    """Whatever surrounds a pattern (spaces, punctuation, unicode), the hit maps back to it."""
    text = f"{before} {pattern} {after}"
    m = PatternMatcher()
    atom = m.add(pattern)
    _, hits = m.scan(text)
    spans = {text[h.start : h.end] for h in hits if h.atom == atom}
    assert pattern in spans


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_normalised_offsets_map_back_to_the_same_characters(text: str) -> None:
    norm = normalise(text)
    folded = fold(text)
    assert len(folded) == len(text)
    for i, ch in enumerate(norm.text[1:-1], start=1):
        if ch != " ":
            assert folded[norm.original_offset(i)] == ch
            assert norm.normalised_offset(norm.original_offset(i)) == i


def test_chrome_lines_and_datelines() -> None:
    assert not is_prose_line("The Largest Security-Cleared Career Network for Defense - JOIN NOW")
    assert not is_prose_line("Weapons of Mass Destruction (WMD)")
    assert not is_prose_line("Join the mailing list")
    assert not is_prose_line("Related: NATO summit | S-400 deliveries | Sanctions news")
    assert not is_prose_line("(c) 2024 Riverside Sports Daily. All rights reserved.")
    assert is_prose_line("Russia and Turkey signed a $2.5 billion deal in December 2017.")
    assert is_prose_line('"We have different opinions," he said.')
    assert dateline_length("MOSCOW (Sputnik) - Ankara will continue") == len("MOSCOW (Sputnik) - ")
    assert dateline_length("NYON, Switzerland, July 4 (Football Review) - UEFA fined") > 0
    assert dateline_length("Russia - the largest supplier - said") == 0


def test_sentences_ignore_abbreviations() -> None:
    text = "Title\nGen. Smith met U.S. officials on Sept. 1 in Washington. Then he left."
    lay = layout(text, 6)
    sentence = {lay.sentence_of(text.index(w)) for w in ("Gen", "Smith", "officials", "Washington")}
    assert len(sentence) == 1
    assert lay.sentence_of(text.index("Then")) == sentence.pop() + 1


def test_sentence_ends_on_every_mark_and_only_before_a_new_sentence() -> None:
    text = (
        "T\nBuk fired! Tor fired? Pantsir… Then “Quoted.” Él dijo. él no. v2.5 and 3. 4 end.\nNext"
    )
    lay = layout(text, 2)

    def sentence(word: str) -> int:
        return lay.sentence_of(text.index(word))

    starts = ["Buk", "Tor", "Pantsir", "Then", "Él", "Next"]
    assert [sentence(w) for w in starts] == sorted({sentence(w) for w in starts})
    assert sentence("él") == sentence("Él")  # a lower-case letter opens no sentence
    assert sentence("Quoted") == sentence("Then")  # an opening quote mid-sentence
    assert sentence("2.5") == sentence("él")  # a decimal point ends nothing
    assert sentence("4 end") == sentence("2.5") + 1  # a digit can open a sentence


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=" a-,.é\n", max_size=120),
    st.lists(st.integers(min_value=0, max_value=130), min_size=1, max_size=30),
)
def test_word_index_counts_the_words_before_an_offset(text: str, positions: list[int]) -> None:
    """The first lookups count, later ones bisect a list of word starts built once (a long
    article asks thousands of times: counting each time was quadratic); both give the
    number of words starting before the offset, in any order of asking."""
    norm = normalise(text)
    folded = norm.text
    for pos in positions:
        before = folded[:pos]
        expected = sum(1 for i in range(len(before) - 1) if before[i] == " " != before[i + 1])
        assert norm.word_index(pos) == expected, (folded, pos)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 60), st.integers(1, 15)), max_size=12),
    st.lists(st.tuples(st.integers(0, 70), st.integers(1, 10)), min_size=1, max_size=12),
)
def test_span_overlap_by_bisect_equals_testing_every_span(
    spans: list[tuple[int, int]], hits: list[tuple[int, int]]
) -> None:
    """Exclusion phrases shadow the hits they overlap: asked once per hit, answered by a
    bisect over the spans sorted by start with their running maximum end (testing every
    span per hit was quadratic in a long article)."""
    index = _Spans([(s, s + n) for s, n in spans])
    for start, length in hits:
        end = start + length
        expected = any(s < end and start < s + n for s, n in spans)
        assert index.overlaps(start, end) is expected


def test_a_period_after_a_long_token_ends_a_sentence() -> None:
    """Finding the word before a period looked back 12 characters; without a space there,
    the "word" was the whole text before it (lower-cased for each such period)."""
    text = "Title\nSee https://example.org/a-very-long-path. Then more. Gen. Smith spoke."
    ends = layout(text, 6).sentence_ends
    period = text.index("path.") + len("path.")
    assert period + 1 in ends or period in ends
    assert text.index("Gen.") + 4 not in ends and text.index("Gen.") + 5 not in ends
