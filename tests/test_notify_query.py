"""The subscription query language: parsing, errors that point at the problem, evaluation."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import services.notify.query as query_module
from services.notify.query import (
    _DROP_JOINERS,
    _JOINED_RE,
    _TOKEN_RE,
    MAX_DEPTH,
    MAX_QUERY_LENGTH,
    And,
    Document,
    Node,
    Not,
    Or,
    Phrase,
    QueryError,
    Term,
    compile_node,
    flat_form,
    fold,
    joined_words,
    keyset,
    parse,
    render,
    required_clauses,
    tokenize,
)

SEED_TITLE = "Russian-Made S-400 Systems Vital for Turkish Defence Capabilities – Ankara"
SEED_BODY = (
    "MOSCOW (Sputnik) - Ankara will continue to negotiate with Washington, but will not bow to "
    "the United States' pressure over the use of Russian-made S-400 air defence systems which "
    "are vital for Turkish defence capabilities, Foreign Minister Mevlüt Çavuşoğlu said."
)


def hit(query: str, title: str = SEED_TITLE, body: str = SEED_BODY) -> bool:
    return parse(query).matches_text(title, body)


# --- tokenisation -------------------------------------------------------------------------------


def test_tokenize_folds_case_accents_and_splits_on_punctuation() -> None:
    expected = ["cavusoglu", "s", "s", "400", "air", "defence"]
    assert tokenize("Çavuşoğlu's S-400, AIR-defence!") == expected
    assert tokenize("Straße") == ["strasse"]
    assert tokenize("ﬁre") == ["fire"]  # NFKC ligature
    assert tokenize("snake_case") == ["snake", "case"]
    assert tokenize("—  …") == []


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60))
def test_ascii_fast_path_tokenises_like_the_regex(text: str) -> None:
    assert tokenize(text) == _TOKEN_RE.findall(fold(text))


# --- words, phrases, operators ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ankara", True),
        ("ANKARA", True),
        ("Ankara's", False),  # "ankara s" is not in the text
        ("moscow", True),
        ("beijing", False),
        ("cavusoglu", True),  # accents folded in the text
        ("Çavuşoğlu", True),  # and in the query
        ("mevlut cavusoglu", True),
        ('"mevlut cavusoglu"', True),
        ('"cavusoglu mevlut"', False),  # order matters in a phrase
        ("S-400", True),
        ("s400", True),  # the solid spelling finds the hyphenated one...
        ("Turkeys", False),  # ...but an apostrophe does not join words
        ('"S 400"', True),
        ('"air defence systems"', True),
        ('"defence systems air"', False),
        ("air-defence", True),  # hyphenated word == phrase of its parts
        ('"Russian made"', True),  # the hyphen in the text separates like a space
        ("defence AND missile", False),
        ("defence AND ankara", True),
        ("defence ankara", True),  # implicit AND
        ("missile OR ankara", True),
        ("missile OR drone", False),
        ("NOT missile", True),
        ("-missile", True),
        ("-ankara", False),
        ("ankara -missile", True),
        ("ankara NOT washington", False),
        ('-"air defence"', False),
        ("-(washington OR beijing)", False),
        ("-(beijing OR tehran) ankara", True),
        ("+ankara", True),
        ("ankara AND (missile OR S-400)", True),
        ("((ankara))", True),
        ("and", False),  # lower-case operators are words: "and" is not in this text
        ('"AND"', False),
        ("but AND will", True),  # "but" and "will" are in the body
    ],
)
def test_evaluation(query: str, expected: bool) -> None:
    assert hit(query) is expected


def test_lowercase_operator_words_are_searched_as_words() -> None:
    q = parse("rock and roll")
    assert q.root == And((Term("rock"), Term("and"), Term("roll")))
    assert q.matches_text("Rock and roll", "")
    assert not q.matches_text("Rock roll", "")
    assert parse("NOT or").matches_text("this and that", "")
    assert parse('"AND"').root == Term("and")


def test_phrase_does_not_span_title_and_body() -> None:
    q = parse('"ankara moscow"')  # title ends with Ankara, body starts with MOSCOW
    assert not q.matches_text("... Ankara", "MOSCOW (Sputnik) ...")
    assert q.matches_text("Ankara Moscow talks", "")


def test_phrase_across_punctuation_and_line_breaks() -> None:
    body = "procurement of air-\ndefence; systems. Air. Defence"
    assert parse('"air defence systems"').matches_text("", body)
    assert parse('"air defence"').matches_text("", "AIR/DEFENCE")
    assert not parse('"air defence"').matches_text("", "air and defence")


def test_phrase_matches_whole_tokens_only() -> None:
    assert not parse('"air def"').matches_text("", "air defence")
    assert not parse("fence").matches_text("", "defence")
    assert parse('"s 400"').matches_text("", "the S-400.")


@pytest.mark.parametrize(
    ("query", "text", "expected"),
    [
        ("S-400", "the S400 battery", True),
        ("S400", "the S-400 battery", True),
        ("S-400", "the S 400 battery", True),
        ("S400", "the S 400 battery", False),  # only a hyphen or slash joins
        ('"S-400"', "the S400 battery", False),  # quotes: exactly the phrase
        ("F-35", "F35A jets", False),  # whole tokens only
        ("SAMP/T", "the SAMPT system", True),
        ("IRIS-T", "IRIS‑T SLM (non-breaking hyphen)", True),
        ("irist", "IRIS–T SLM (en dash)", True),
        ("25", "2.5 billion", False),  # a period does not join
    ],
)
def test_hyphenated_and_solid_spellings(query: str, text: str, expected: bool) -> None:
    assert parse(query).matches_text("", text) is expected


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab1 -/,.(x)\t–é")), max_size=40))
def test_joined_words_fast_path_equals_the_pattern(text: str) -> None:
    slow = [w.translate(_DROP_JOINERS) for w in _JOINED_RE.findall(fold(text))]
    assert joined_words(text) == slow


def test_joined_words() -> None:
    assert joined_words("The S-400 and F-35/B, IRIS‑T; Turkey's U.S.") == ["s400", "f35b", "irist"]
    assert joined_words("Çavuş-oğlu") == ["cavusoglu"]


def test_typographic_quotes_make_phrases() -> None:
    assert parse("“air defence”").root == Phrase(("air", "defence"))


def test_unicode_text_and_queries() -> None:
    assert parse("Zürich").matches_text("Talks in ZURICH", "")
    assert parse('"ракетный комплекс"').matches_text("", "Ракетный комплекс С-400")
    assert parse("С-400").matches_text("", "комплекс С-400")  # Cyrillic Es
    assert not parse("С-400").matches_text("", "S-400")  # different letters, no transliteration


# --- precedence and canonical form --------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "canonical"),
    [
        ("a b c", "a AND b AND c"),
        ("a OR b c", "(a OR b) AND c"),  # juxtaposition is loosest (Google style)
        ("S-400 OR S-500 Turkey", '("s 400" OR s400 OR "s 500" OR s500) AND turkey'),
        ('"S-400" Turkey', '"s 400" AND turkey'),  # quoted: the exact phrase only
        ("a AND b OR c", "(a AND b) OR c"),  # explicit operators: AND before OR
        ("a OR b AND c", "a OR (b AND c)"),
        ("NOT a OR b", "NOT a OR b"),
        ("NOT (a OR b)", "NOT (a OR b)"),
        ("-a -b", "NOT a AND NOT b"),
        ("a (b OR c) -d", "a AND (b OR c) AND NOT d"),
        ("((a OR (b OR c)))", "a OR b OR c"),  # nested same operators flatten
        ("NOT NOT a", "NOT NOT a"),
        ('"one" "two words"', 'one AND "two words"'),
        ("a - b", "a AND b"),  # a lone '-' is punctuation, as in text
        ("a & b", "a AND b"),
        ("a -(b c)", "a AND NOT (b AND c)"),
    ],
)
def test_precedence(query: str, canonical: str) -> None:
    assert parse(query).canonical() == canonical
    # The canonical form parses back to the same tree.
    assert parse(canonical).root == parse(query).root


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message", "position"),
    [
        ("", "empty query", 0),
        ("   ", "empty query", 0),
        ("& / –", "no words", 0),
        ("(a OR b", "missing ')'", 0),
        ("a AND (b OR (c d)", "missing ')'", 6),
        ("a OR b)", "unmatched ')'", 6),
        (")", "unmatched ')'", 0),
        ("()", "empty parentheses", 0),
        ("a ( ) b", "empty parentheses", 2),
        ('"air defence', "unclosed quote", 0),
        ('a "b" "c', "unclosed quote", 6),
        ('""', "empty phrase", 0),
        ('a "!!"', "empty phrase", 2),
        ("a AND", "after 'AND'", 5),
        ("a OR", "after 'OR'", 4),
        ("a NOT", "after 'NOT'", 5),
        ("NOT", "after 'NOT'", 3),
        ("a AND OR b", "after 'AND'", 6),
        ("a OR OR b", "after 'OR'", 5),
        ("OR a", "'OR' needs a word", 0),
        ("AND a", "'AND' needs a word", 0),
        ("(OR a)", "'OR' needs a word", 1),
        ("a AND )", "after 'AND'", 6),
        ("a --b", "right after '-'", 3),
        ("-NOT a", "right after '-'", 1),
    ],
)
def test_errors_point_at_the_problem(query: str, message: str, position: int) -> None:
    with pytest.raises(QueryError) as info:
        parse(query)
    err = info.value
    assert message in err.message
    assert err.position == position
    text = str(err)
    assert f"(at position {position + 1})" in text
    lines = text.splitlines()
    # Line 2 shows the query, line 3 a caret under the offending character.
    assert lines[1] == "  " + query.replace("\t", " ")
    assert lines[2] == "  " + " " * position + "^"


def test_error_caret_aligns_with_tabs_and_newlines() -> None:
    with pytest.raises(QueryError) as info:
        parse("a\tAND\n(b")
    lines = str(info.value).splitlines()
    assert lines[1] == "  a AND (b"
    assert lines[2].index("^") == lines[1].index("(")


def test_limits() -> None:
    with pytest.raises(QueryError, match="longer than"):
        parse("a " * MAX_QUERY_LENGTH)
    deep = "(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(QueryError, match="nested more than"):
        parse(deep)
    ok = "(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH
    assert parse(ok).root == Term("a")
    with pytest.raises(QueryError, match="nested more than"):
        parse("NOT " * (MAX_DEPTH + 1) + "a")
    with pytest.raises(QueryError, match="too many words"):
        parse(" ".join(f"w{i}" for i in range(250)))


def test_query_error_is_a_value_error() -> None:
    # pydantic turns ValueError from validators into field errors: the model relies on it.
    assert issubclass(QueryError, ValueError)


# --- presearch clauses --------------------------------------------------------------------------


def test_required_clauses() -> None:
    assert parse("patriot").clauses == (frozenset({"patriot"}),)
    # Phrases are indexed by their adjacent pairs, far rarer than either word.
    assert parse('"air defence"').clauses == (frozenset({"air defence"}),)
    assert parse('"air defence systems"').clauses == (
        frozenset({"air defence"}),
        frozenset({"defence systems"}),
    )
    assert parse("patriot OR iris").clauses == (frozenset({"patriot", "iris"}),)
    assert parse("-patriot").clauses == ()
    assert parse("patriot OR -iris").clauses == ()  # one alternative is unconstrained
    assert parse("poland (patriot OR iris) -drill").clauses == (
        frozenset({"poland"}),
        frozenset({"patriot", "iris"}),
    )
    assert parse("S-400 OR S-500").clauses == (frozenset({"s 400", "s400", "s 500", "s500"}),)


# --- properties -----------------------------------------------------------------------------

WORDS = ["air", "defence", "s", "400", "patriot", "and", "iris", "t", "poland"]


def _nodes() -> st.SearchStrategy[Node]:
    leaf = st.one_of(
        st.sampled_from(WORDS).map(Term),
        st.lists(st.sampled_from(WORDS), min_size=2, max_size=3).map(lambda w: Phrase(tuple(w))),
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            inner.map(Not),
            st.lists(inner, min_size=2, max_size=3).map(lambda c: And(tuple(c))),
            st.lists(inner, min_size=2, max_size=3).map(lambda c: Or(tuple(c))),
        ),
        max_leaves=8,
    )


texts = st.lists(st.sampled_from([*WORDS, "-", ",", "AIR", "Défence", "x"]), max_size=12).map(
    " ".join
)


def _reference(node: Node, title: list[str], body: list[str]) -> bool:
    """Slow, obvious evaluation over token lists: the oracle for the fast one."""
    if isinstance(node, Term):
        return node.word in title or node.word in body
    if isinstance(node, Phrase):
        n = len(node.words)
        return any(
            tuple(tokens[i : i + n]) == node.words
            for tokens in (title, body)
            for i in range(len(tokens) - n + 1)
        )
    if isinstance(node, Not):
        return not _reference(node.child, title, body)
    if isinstance(node, And):
        return all(_reference(c, title, body) for c in node.children)
    return any(_reference(c, title, body) for c in node.children)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_nodes(), texts, texts)
def test_render_parse_round_trip_preserves_meaning(node: Node, title: str, body: str) -> None:
    query = parse(render(node))
    reparsed = query.root
    assert parse(render(reparsed)).root == reparsed  # canonical form is a fixed point
    doc = Document.from_text(title, body)
    expected = _reference(node, tokenize(title), tokenize(body))
    assert node.matches(doc) is expected
    assert reparsed.matches(doc) is expected
    assert compile_node(node)(doc) is expected  # the fast path agrees
    assert query.matches(doc) is expected


@settings(max_examples=300, deadline=None)
@given(_nodes(), texts, texts)
def test_clauses_never_exclude_a_matching_document(node: Node, title: str, body: str) -> None:
    doc = Document.from_text(title, body)
    if node.matches(doc):
        for clause in required_clauses(node):
            assert not clause.isdisjoint(doc.terms)


@settings(max_examples=300, deadline=None)
@given(_nodes(), texts, texts)
def test_flat_form_is_exact_when_given(node: Node, title: str, body: str) -> None:
    flat = flat_form(node)
    if flat is None:
        return
    clauses, absent = flat
    doc = Document.from_text(title, body)
    by_keys = all(not c.isdisjoint(doc.terms) for c in clauses) and absent.isdisjoint(doc.terms)
    assert by_keys is node.matches(doc)


def test_flat_forms() -> None:
    assert parse('nato (deal OR "air defence") -drill').flat == (
        (frozenset({"nato"}), frozenset({"deal", "air defence"})),
        frozenset({"drill"}),
    )
    assert parse("-(a OR b)").flat is None  # a negated group is not a key test
    assert parse('"air defence systems"').flat is None  # three words: pairs are not enough
    assert parse("a OR (b c)").flat is None


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab "()-+ANDORT\t“”é&')), max_size=30))
def test_any_input_parses_or_raises_query_error(text: str) -> None:
    try:
        query = parse(text)
    except QueryError as err:
        assert 0 <= err.position <= len(text)
        assert "^" in str(err)
    else:
        assert parse(query.canonical()).root == query.root


@pytest.mark.parametrize(
    ("query", "column", "says"),
    [
        ("tur*", 3, "wildcards"),
        ('"S-400" Turk?y', 12, "wildcards"),
        ("title:turkey", 0, "field searches"),
        ("S-400 site:reuters.com", 6, "field searches"),
    ],
)
def test_search_engine_habits_are_refused_not_reinterpreted(
    query: str, column: int, says: str
) -> None:
    with pytest.raises(QueryError) as caught:
        parse(query)
    assert says in str(caught.value)
    assert caught.value.position == column


def test_colons_and_times_inside_words_are_still_words() -> None:
    assert parse("10:30 briefing").matches_text("", "At 10:30 the briefing began")


def test_equal_key_sets_are_one_object_and_the_table_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """100,000 stored queries repeat the same words; each frozenset costs 200+ bytes, so
    equal sets are shared (parse("Patriot Poland") and parse("Patriot -drill") hold one
    {"patriot"}), and the sharing table starts again past its cap instead of growing."""
    first = parse("Patriot Poland").clauses
    second = parse("Patriot -drill").clauses
    assert any(a is b for a in first for b in second)
    assert keyset(["b", "a"]) is keyset(("a", "b")) and keyset() is keyset([])
    monkeypatch.setattr(query_module, "_KEYSETS", {})
    monkeypatch.setattr(query_module, "KEYSETS_MAX", 3)
    for n in range(10):
        keyset([f"w{n}"])
    assert len(query_module._KEYSETS) <= 3
