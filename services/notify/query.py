"""The subscription query language: words, "phrases", AND / OR / NOT, ``-word``, parentheses.

In the spirit of Google Alerts and Lucene's query syntax, small enough to explain in a page
(docs/notify-matching.md):

* ``patriot``                      a word, matched as a whole token, case- and accent-insensitive
* ``"air defence"``                a phrase: the words in this order, next to each other
* ``S-400``                        a word with punctuation inside is the phrase of its parts
                                   (``"s 400"``), exactly as the article text is tokenised, so it
                                   matches "S-400", "s 400" and "S–400"; a hyphenated (or
                                   slashed) word also matches its solid spelling "S400", and
                                   ``S400`` matches "S-400" (see :func:`joined_words`)
* ``a b``                          implicit AND (both must occur)
* ``a AND b``, ``a OR b``          explicit operators, upper case only (``and`` is a word)
* ``NOT a``, ``-a``, ``-"a b"``    negation; ``+a`` is accepted and means ``a``
* ``( ... )``                      grouping

Precedence, tightest first: NOT / ``-``, then explicit ``AND``, then ``OR``, then the implicit
AND between juxtaposed terms. The last rule is Google's (``S-400 OR S-500 Turkey`` means
"(S-400 or S-500) and Turkey", which is what people who write alert queries mean), while
explicit operators keep the usual boolean order (``a AND b OR c`` is ``(a AND b) OR c``).
:meth:`Query.canonical` renders the parsed query fully parenthesised, so an API can show the
user how their query was read.

A query made only of negations (``-exercise``) is allowed: it matches every article without
those words, which is useful together with a topic filter.

Text and queries go through the same :func:`tokenize` (NFKC, case folding, accents removed,
split on anything that is not a letter or digit), which is what makes the language tolerant of
punctuation and hyphens in a consistent way: the query and the text see the same tokens.
Phrases match consecutive tokens within the title or within the body (never across the two);
punctuation between words does not break a phrase ("air-defence" matches ``"air defence"``).

Errors raise :class:`QueryError`, whose message names the problem and shows the query with a
caret under the offending position, because "invalid query" alone does not help anyone fix a
40-character boolean expression.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from sys import intern
from typing import Literal, Protocol

#: Longest accepted query, in characters; alert queries are sentences, not documents.
MAX_QUERY_LENGTH = 2_000
#: Deepest parenthesis / NOT nesting accepted (keeps recursion bounded for hostile input).
MAX_DEPTH = 32
#: Most words (counting each word of a phrase) in one query.
MAX_TERMS = 200

_TOKEN_RE = re.compile(r"[^\W_]+")
_OPEN_QUOTES = frozenset('"“„”')
_CLOSE_QUOTES = frozenset('"”“')
_SPECIAL = frozenset("()") | _OPEN_QUOTES


# --- tokenisation -------------------------------------------------------------------------------


def fold(text: str) -> str:
    """Case-fold and strip accents so that "Çavuşoğlu", "CAVUSOGLU" and "cavusoglu" are equal.

    ASCII text (the common case) skips the Unicode normalisations entirely, which matters when
    every article body goes through here.
    """
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


#: ASCII fast path of the tokeniser: every ASCII character that is not a letter or digit
#: becomes a space, then ``split()``; the same tokens as the regex, several times faster.
_ASCII_SEPARATORS = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalnum()})


def tokenize(text: str) -> list[str]:
    """Split folded text into runs of letters and digits; everything else separates tokens."""
    if text.isascii():
        return text.lower().translate(_ASCII_SEPARATORS).split()
    return _TOKEN_RE.findall(fold(text))


#: Hyphens (ASCII and Unicode) and the slash: what joins the parts of a designation.
_JOINERS = "-/\u2010\u2011\u2012\u2013\u2014"
_JOINED_RE = re.compile(rf"[^\W_]+(?:[{_JOINERS}][^\W_]+)+")
_DROP_JOINERS = str.maketrans("", "", _JOINERS)


def joined_words(text: str) -> list[str]:
    """Hyphenated or slashed words, folded and written solid: "S-400" -> "s400".

    Designations are spelled both ways ("S-400"/"S400", "F-35"/"F35"): documents carry the
    solid form of their hyphenated words as an extra key, and a hyphenated query word also
    accepts the solid spelling, so either spelling in the query finds either in the text.
    ASCII text (the common case) only runs the pattern over the few whitespace-separated
    chunks that contain a joiner, not over the whole body.
    """
    if text.isascii():
        low = text.lower()
        if "-" not in low and "/" not in low:
            return []
        chunks = [c for c in low.split() if "-" in c or "/" in c]
        found = [word for chunk in chunks for word in _JOINED_RE.findall(chunk)]
    else:
        found = _JOINED_RE.findall(fold(text))
    return [word.translate(_DROP_JOINERS) for word in found]


@dataclass(slots=True)
class Document:
    """An article as the query language sees it: its keys, and its text for long phrases.

    ``terms`` holds the tokens and the adjacent token pairs ("air defence", with a space,
    which no token contains): a word is one set lookup, a two-word phrase too, and the pairs
    are what the presearcher indexes phrases by (far more selective than either word). Longer
    phrases end with a substring search over the space-joined tokens. Title and body are
    joined with a newline, and pairs are taken within each, so no phrase spans the two.
    """

    terms: frozenset[str]
    joined: str

    @classmethod
    def from_text(cls, title: str, body: str = "", extra_keys: Iterable[str] = ()) -> Document:
        """``extra_keys`` (e.g. the percolator's namespaced "t:<topic>") join ``terms``; they
        contain ":" which no token does, so no query word can ever match one."""
        title_tokens = tokenize(title)
        body_tokens = tokenize(body)
        joined = " " + " ".join(title_tokens) + " \n " + " ".join(body_tokens) + " "
        # Words interned, like the queries' words: a set lookup then compares pointers instead
        # of reading two strings, which with 100,000 stored queries is mostly cache misses.
        # The few hundred pairs are not: interning them costs more than it saves (measured).
        keys = set(map(intern, title_tokens))
        keys.update(map(intern, body_tokens))
        keys.update(map(" ".join, pairwise(title_tokens)))
        keys.update(map(" ".join, pairwise(body_tokens)))
        keys.update(map(intern, joined_words(title)))
        keys.update(map(intern, joined_words(body)))
        keys.update(map(intern, extra_keys))
        return cls(terms=frozenset(keys), joined=joined)


class Searchable(Protocol):
    """What a compiled query reads: :class:`Document`, or anything carrying the same two."""

    @property
    def terms(self) -> frozenset[str]: ...

    @property
    def joined(self) -> str: ...


# --- shared key sets ------------------------------------------------------------------------------

#: Equal key sets are one object. 100,000 stored queries repeat the same few thousand words,
#: pairs and alternatives, and every frozenset costs 200 bytes or more (an empty one too: it is
#: no singleton), so sharing them is a large part of what keeps the index small.
_KEYSETS: dict[frozenset[str], frozenset[str]] = {}
#: Above this many distinct sets the table starts again: sharing is an optimisation, and a
#: table that only grows (subscriptions come and go) would be a leak.
KEYSETS_MAX = 500_000


def keyset(keys: Iterable[str] = ()) -> frozenset[str]:
    """``frozenset(keys)`` of interned keys, the same object for equal sets."""
    fresh = frozenset(map(intern, keys))
    shared = _KEYSETS.get(fresh)
    if shared is None:
        if len(_KEYSETS) >= KEYSETS_MAX:
            _KEYSETS.clear()
        shared = _KEYSETS[fresh] = fresh
    return shared


# --- syntax tree --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """One token."""

    word: str

    def matches(self, doc: Document) -> bool:
        return self.word in doc.terms


@dataclass(frozen=True, slots=True)
class Phrase:
    """Two or more tokens, consecutive and in order."""

    words: tuple[str, ...]
    _needle: str = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_needle", " " + " ".join(self.words) + " ")

    def matches(self, doc: Document) -> bool:
        # The token-set test rejects most documents before the substring search.
        terms = doc.terms
        return all(w in terms for w in self.words) and self._needle in doc.joined


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]

    def matches(self, doc: Document) -> bool:
        return all(child.matches(doc) for child in self.children)


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]

    def matches(self, doc: Document) -> bool:
        return any(child.matches(doc) for child in self.children)


@dataclass(frozen=True, slots=True)
class Not:
    child: Node

    def matches(self, doc: Document) -> bool:
        return not self.child.matches(doc)


Node = Term | Phrase | And | Or | Not


def _word_node(words: Sequence[str], text: str = "") -> Term | Phrase | Or:
    """A word or a phrase; a bare hyphenated word also matches its solid spelling.

    ``S-400`` becomes ``"s 400" OR s400``; in quotes (``"S-400"``) it stays the exact phrase.
    """
    words = [intern(w) for w in words]  # shared with every other query and document
    if len(words) == 1:
        return Term(words[0])
    phrase = Phrase(tuple(words))
    solid = joined_words(text) if text else []
    if len(solid) == 1 and solid[0] == "".join(words):
        return Or((phrase, Term(intern(solid[0]))))
    return phrase


def _flatten(kind: type[And] | type[Or], items: Iterable[Node]) -> Node:
    flat: list[Node] = []
    for item in items:
        if isinstance(item, kind):
            flat.extend(item.children)
        else:
            flat.append(item)
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


_PRECEDENCE = {Or: 1, And: 2, Not: 3, Term: 4, Phrase: 4}


def render(node: Node) -> str:
    """Canonical text of a tree: explicit operators, parentheses wherever precedence applies.

    ``parse(render(tree))`` gives ``tree`` back, which the tests rely on.
    """
    if isinstance(node, Term):
        return node.word
    if isinstance(node, Phrase):
        return '"' + " ".join(node.words) + '"'
    if isinstance(node, Not):
        inner = render(node.child)
        return "NOT " + (inner if isinstance(node.child, Term | Phrase | Not) else f"({inner})")
    op = " AND " if isinstance(node, And) else " OR "
    parts = []
    for child in node.children:
        text = render(child)
        if isinstance(child, And | Or):  # always parenthesise a nested group: reads unambiguously
            text = f"({text})"
        parts.append(text)
    return op.join(parts)


# --- compiled evaluation ------------------------------------------------------------------------

#: A compiled query: document -> matches?
Matcher = Callable[[Searchable], bool]


def compile_node(node: Node) -> Matcher:
    """One closure per node, specialised by shape: the percolator runs thousands per article.

    Within an AND, plain words become one subset test, negated words one ``isdisjoint`` test
    and ORs of words one ``isdisjoint`` test each, all in C and in a single Python frame; a
    two-word phrase is one lookup among the document's adjacent pairs, a longer one checks
    its pairs before the substring search. Equivalent to ``node.matches`` (a property test
    holds them equal).
    """
    if isinstance(node, Term):
        word = node.word
        return lambda doc: word in doc.terms
    if isinstance(node, Phrase):
        pairs = keyset(map(" ".join, pairwise(node.words)))
        if len(node.words) == 2:
            (pair,) = pairs
            return lambda doc: pair in doc.terms
        needle = node._needle
        return lambda doc: pairs <= doc.terms and needle in doc.joined
    if isinstance(node, Not):
        if isinstance(node.child, Term):
            negated = node.child.word
            return lambda doc: negated not in doc.terms
        inner = compile_node(node.child)
        return lambda doc: not inner(doc)
    words = keyset(c.word for c in node.children if isinstance(c, Term))
    if isinstance(node, Or):
        others = tuple(compile_node(c) for c in node.children if not isinstance(c, Term))

        def any_of(doc: Searchable) -> bool:
            if not words.isdisjoint(doc.terms):
                return True
            return any(f(doc) for f in others)

        return (lambda doc: not words.isdisjoint(doc.terms)) if not others else any_of
    negated_words = keyset(
        c.child.word for c in node.children if isinstance(c, Not) and isinstance(c.child, Term)
    )
    alternatives = tuple(
        keyset(w.word for w in c.children if isinstance(w, Term))
        for c in node.children
        if isinstance(c, Or) and all(isinstance(w, Term) for w in c.children)
    )
    rest = tuple(
        compile_node(c)
        for c in node.children
        if not isinstance(c, Term)
        and not (isinstance(c, Not) and isinstance(c.child, Term))
        and not (isinstance(c, Or) and all(isinstance(w, Term) for w in c.children))
    )

    def all_of(doc: Searchable) -> bool:
        terms = doc.terms
        if not words <= terms or not negated_words.isdisjoint(terms):
            return False
        for alternative in alternatives:
            if alternative.isdisjoint(terms):
                return False
        for f in rest:
            if not f(doc):
                return False
        return True

    return all_of


# --- clauses for the presearcher -----------------------------------------------------------------


#: Words so common in news text that a clause made of them selects nearly every article.
COMMON_WORDS = frozenset(
    """a about after all also an and are as at be been but by can could did do for from had has
    have he her his i if in into is it its more new no not of on one or our out over said says
    she so than that the their them there they this to two up was we were what when which who
    will with would year years you""".split()
)


@lru_cache(maxsize=100_000)
def term_probability(word: str) -> float:
    """Rough chance that a news article contains ``word``: the presearcher's selectivity guess.

    Lucene Monitor weighs terms by length for the same reason: without corpus statistics,
    longer words are rarer. Common words and one-letter tokens ("s" from "Turkey's") are
    treated as near-certain so that a query is never indexed by them when it has a better term.
    """
    if " " in word:  # a bigram: rarer than its rarer word
        first, second = word.split(" ", 1)
        return 0.3 * min(term_probability(first), term_probability(second))
    if len(word) <= 1 or word in COMMON_WORDS:
        return 0.9
    if word.isdigit():
        return 0.2 if len(word) <= 2 else 0.05
    return max(0.005, 0.5 * 0.8 ** len(word))


def clause_probability(clause: Iterable[str]) -> float:
    """Chance that a document contains at least one token of ``clause`` (union bound)."""
    return min(1.0, sum(term_probability(w) for w in clause))


def required_clauses(node: Node) -> list[frozenset[str]]:
    """What any matching document must contain, as a conjunction of disjunctions of tokens.

    Each returned set is a clause: a document that matches the query contains at least one
    key of every clause, a key being a token or, for phrases, a pair of adjacent tokens
    (both in :attr:`Document.terms`). An empty list means "no constraint" (e.g. ``NOT x`` matches
    documents that share no token with the query). This is the term extraction of Lucene
    Monitor's presearcher: it may over-approximate (a candidate can still fail the real
    query) but never under-approximates, so indexing a query under a clause loses nothing.
    """
    if isinstance(node, Term):
        return [keyset((node.word,))]
    if isinstance(node, Phrase):
        pairs = map(intern, map(" ".join, pairwise(node.words)))
        return list(dict.fromkeys(keyset((pair,)) for pair in pairs))
    if isinstance(node, Not):
        return []
    if isinstance(node, And):
        clauses: list[frozenset[str]] = []
        for child in node.children:
            for clause in required_clauses(child):
                if clause not in clauses:
                    clauses.append(clause)
        return clauses
    # Or: every alternative must be constrained; then the most selective clause of each
    # alternative, united, is a clause of the whole disjunction.
    union: set[str] = set()
    for child in node.children:
        child_clauses = required_clauses(child)
        if not child_clauses:
            return []
        union |= min(child_clauses, key=lambda c: (clause_probability(c), sorted(c)))
    return [keyset(union)]


def _key_of(node: Node) -> str | None:
    """The single document key that decides ``node``: a word, or a two-word phrase's pair."""
    if isinstance(node, Term):
        return node.word
    if isinstance(node, Phrase) and len(node.words) == 2:
        return intern(" ".join(node.words))
    return None


def flat_form(node: Node) -> tuple[tuple[frozenset[str], ...], frozenset[str]] | None:
    """The query as pure key-set tests, when it is that simple; else None.

    Returns ``(clauses, absent)``: the query matches exactly the documents holding a key of
    every clause and none of the ``absent`` keys. Words, two-word phrases, ORs of those,
    their negations, and ANDs of all these qualify: the bulk of alert queries. The
    percolator then checks a candidate with a couple of C-level set operations instead of
    running the compiled query (and skips even that for what the presearch already proved).
    """
    key = _key_of(node)
    if key is not None:
        return (keyset((key,)),), keyset()
    if isinstance(node, Not):
        negated = _key_of(node.child)
        return None if negated is None else ((), keyset((negated,)))
    if isinstance(node, Or):
        keys = [_key_of(child) for child in node.children]
        if any(k is None for k in keys):
            return None
        return (keyset(k for k in keys if k is not None),), keyset()
    if isinstance(node, And):
        clauses: list[frozenset[str]] = []
        absent: set[str] = set()
        for child in node.children:
            part = flat_form(child)
            if part is None:
                return None
            clauses.extend(c for c in part[0] if c not in clauses)
            absent |= part[1]
        return tuple(clauses), keyset(absent)
    return None


# --- errors -------------------------------------------------------------------------------------


class QueryError(ValueError):
    """A query that cannot be parsed; ``str()`` shows where, with a caret line."""

    def __init__(self, message: str, query: str, position: int) -> None:
        self.message = message
        self.query = query
        self.position = max(0, min(position, len(query)))
        shown = "".join(" " if ch in "\t\r\n" else ch for ch in query)
        super().__init__(
            f"{message} (at position {self.position + 1})\n  {shown}\n  {' ' * self.position}^"
        )


# --- lexer --------------------------------------------------------------------------------------

TokenKind = Literal[
    "WORD", "PHRASE", "AND", "OR", "NOT", "MINUS", "PLUS", "LPAREN", "RPAREN", "EOF"
]


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: TokenKind
    pos: int
    text: str = ""
    words: tuple[str, ...] = ()


#: Search-engine operators people type out of habit; refused rather than silently read as words.
_FIELD_OPERATOR = re.compile(
    r"^(title|body|text|source|site|url|inurl|intitle|intext|author|lang|language):", re.I
)


def _refuse_unsupported(text: str, query: str, pos: int) -> None:
    """``tur*`` would otherwise match only the word "tur", ``title:x`` the phrase "title x"."""
    for wildcard in "*?":
        if wildcard in text:
            raise QueryError(
                f"wildcards ({wildcard}) are not supported: write the words out, joined by OR",
                query,
                pos + text.index(wildcard),
            )
    if _FIELD_OPERATOR.match(text):
        raise QueryError(
            "field searches (title:, site:, ...) are not supported: a query looks at the "
            "title and body; use the sources and languages filters for the rest",
            query,
            pos,
        )


def _lex(query: str) -> Iterator[_Tok]:
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
        elif ch == "(":
            yield _Tok("LPAREN", i, ch)
            i += 1
        elif ch == ")":
            yield _Tok("RPAREN", i, ch)
            i += 1
        elif ch in _OPEN_QUOTES:
            end = i + 1
            while end < n and query[end] not in _CLOSE_QUOTES:
                end += 1
            if end >= n:
                raise QueryError("unclosed quote", query, i)
            words = tuple(tokenize(query[i + 1 : end]))
            if not words:
                raise QueryError("empty phrase: put words between the quotes", query, i)
            yield _Tok("PHRASE", i, query[i : end + 1], words)
            i = end + 1
        elif ch in "-+" and i + 1 < n and not query[i + 1].isspace() and query[i + 1] != ")":
            yield _Tok("MINUS" if ch == "-" else "PLUS", i, ch)
            i += 1
        else:
            end = i
            while end < n and not query[end].isspace() and query[end] not in _SPECIAL:
                end += 1
            text = query[i:end]
            _refuse_unsupported(text, query, i)
            if text in ("AND", "OR", "NOT"):
                yield _Tok(text, i, text)  # type: ignore[arg-type]
            else:
                words = tuple(tokenize(text))
                # A word made only of punctuation ("&", "–") separates like it does in text.
                if words:
                    yield _Tok("WORD", i, text, words)
            i = end
    yield _Tok("EOF", n)


# --- parser -------------------------------------------------------------------------------------

_STARTS_TERM = frozenset(("WORD", "PHRASE", "NOT", "MINUS", "PLUS", "LPAREN"))


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.toks = list(_lex(query))
        self.i = 0
        self.depth = 0
        self.terms = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def error(self, message: str, pos: int) -> QueryError:
        return QueryError(message, self.query, pos)

    def expect_term_after(self, op: _Tok) -> None:
        nxt = self.peek()
        if nxt.kind in _STARTS_TERM:
            return
        what = "the end of the query" if nxt.kind == "EOF" else repr(nxt.text)
        raise self.error(f"expected a word, phrase or '(' after {op.text!r}, found {what}", nxt.pos)

    def parse(self) -> Node:
        if self.peek().kind == "EOF":
            raise self.error("query has no words to search for", 0)
        node = self.sequence()
        tok = self.peek()
        if tok.kind == "RPAREN":
            raise self.error("unmatched ')'", tok.pos)
        return node

    def sequence(self) -> Node:
        """Juxtaposed terms: the loosest binding, an implicit AND."""
        items = [self.disjunction()]
        while self.peek().kind not in ("EOF", "RPAREN"):
            items.append(self.disjunction())
        return _flatten(And, items)

    def disjunction(self) -> Node:
        items = [self.conjunction()]
        while self.peek().kind == "OR":
            self.expect_term_after(self.take())
            items.append(self.conjunction())
        return _flatten(Or, items)

    def conjunction(self) -> Node:
        items = [self.unary()]
        while self.peek().kind == "AND":
            self.expect_term_after(self.take())
            items.append(self.unary())
        return _flatten(And, items)

    def unary(self) -> Node:
        tok = self.peek()
        if tok.kind == "NOT":
            self.take()
            self.expect_term_after(tok)
            with self.nested(tok):
                return Not(self.unary())
        if tok.kind in ("MINUS", "PLUS"):
            self.take()
            nxt = self.peek()
            if nxt.kind not in ("WORD", "PHRASE", "LPAREN"):
                raise self.error(
                    f"expected a word, phrase or '(' right after {tok.text!r}", nxt.pos
                )
            atom = self.atom()
            return Not(atom) if tok.kind == "MINUS" else atom
        return self.atom()

    def atom(self) -> Node:
        tok = self.take()
        if tok.kind in ("WORD", "PHRASE"):
            self.terms += len(tok.words)
            if self.terms > MAX_TERMS:
                raise self.error(f"too many words (more than {MAX_TERMS})", tok.pos)
            return _word_node(tok.words, tok.text if tok.kind == "WORD" else "")
        if tok.kind == "LPAREN":
            if self.peek().kind == "RPAREN":
                raise self.error("empty parentheses", tok.pos)
            with self.nested(tok):
                inner = self.sequence()
            if self.peek().kind != "RPAREN":
                raise self.error("missing ')' to close this '('", tok.pos)
            self.take()
            return inner
        if tok.kind == "RPAREN":
            raise self.error("unmatched ')'", tok.pos)
        if tok.kind in ("AND", "OR"):
            raise self.error(f"{tok.text!r} needs a word, phrase or '(' before it", tok.pos)
        raise self.error("expected a word, phrase or '('", tok.pos)

    def nested(self, tok: _Tok) -> _Depth:
        return _Depth(self, tok)


class _Depth:
    def __init__(self, parser: _Parser, tok: _Tok) -> None:
        self.parser = parser
        self.tok = tok

    def __enter__(self) -> None:
        self.parser.depth += 1
        if self.parser.depth > MAX_DEPTH:
            raise self.parser.error(f"nested more than {MAX_DEPTH} levels deep", self.tok.pos)

    def __exit__(self, *exc: object) -> None:
        self.parser.depth -= 1


# --- public API ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: its source text, tree, compiled matcher, and presearch clauses."""

    text: str
    root: Node
    clauses: tuple[frozenset[str], ...]
    matcher: Matcher = field(repr=False, compare=False)
    #: (clauses, absent keys) when the query is that simple (see :func:`flat_form`).
    flat: tuple[tuple[frozenset[str], ...], frozenset[str]] | None = None

    def matches(self, doc: Searchable) -> bool:
        return self.matcher(doc)

    def matches_text(self, title: str, body: str = "") -> bool:
        """Convenience for one-off checks; hot paths build the :class:`Document` once."""
        return self.matches(Document.from_text(title, body))

    def canonical(self) -> str:
        """The query as it was understood: explicit operators, parentheses where they apply."""
        return render(self.root)

    def __str__(self) -> str:
        return self.canonical()


@lru_cache(maxsize=100_000)
def parse(text: str) -> Query:
    """Parse a query, or raise :class:`QueryError` pointing at the problem.

    Cached: queries are immutable, and many subscriptions share the same text ("S-400").
    """
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(
            f"query is longer than {MAX_QUERY_LENGTH} characters", text, MAX_QUERY_LENGTH
        )
    if not text.strip():
        raise QueryError("empty query", text, 0)
    root = _Parser(text).parse()
    return Query(
        text=text,
        root=root,
        clauses=tuple(required_clauses(root)),
        matcher=compile_node(root),
        flat=flat_form(root),
    )
