"""Ingest normalisation: text cleaning, chrome removal, datelines, submission -> Article.

Pure functions, no broker.  Beyond the seed article, each page below is written the way a
scraper really delivers text from a different kind of site, so the rules are checked on
chrome they were not tuned on.
"""

# ruff: noqa: E501  (page and feed texts keep paragraphs on one line, as scrapers deliver them)

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.files import read_all
from services.common.models import ArticleSubmission, article_id_for, content_hash_for
from services.ingest.chrome import chrome_kind, find_dateline, strip_chrome
from services.ingest.language import detect_language, normalize_language_tag
from services.ingest.normalize import NormalizationError, normalize_submission
from services.ingest.text import clean_line, clean_text

from .conftest import EXAMPLES, SEED_TEXT

# --- pages written for these tests -------------------------------------------------------

WIRE_PAGE = """Skip to main content
World | Business | Markets | Breakingviews | Technology | Investigations
Europe

Poland signs deal for second phase of Wisla air defence programme

By Anna Kowalska and Tom Baker

4 min read

WARSAW, Sept 19 (Reuters) - Poland on Tuesday signed a deal worth about $10 billion for the second phase of its Wisla air and missile defence programme, the defence ministry said, adding 48 Patriot launchers to its arsenal.

Advertisement · Scroll to continue

The agreement also covers 12 radars and more than 600 interceptor missiles, deputy defence minister Marek Wolny told reporters at the signing ceremony in Warsaw.

"Every battery we add closes a gap in the shield over our cities," Wolny said.

Reporting by Anna Kowalska; Editing by Tom Baker

Sign up here.
Our Standards: The Thomson Reuters Trust Principles.
"""

BLOG_PAGE = """We use cookies to improve your experience on our site.
Home » News » Air Defence

Finland picks David's Sling for high-altitude air defence

Posted on 9 November 2023

Share this: Facebook | Twitter | LinkedIn

HELSINKI, Nov 9 (Nordic Security Review) - Finland has chosen the Israeli-made David's Sling system to give its armed forces a high-altitude air defence capability, the defence ministry said on Thursday, in a deal worth about 317 million euros.

The system will be able to intercept aircraft, cruise missiles and ballistic missiles at altitudes above 15 kilometres, officials said, filling a gap left by Finland's existing NASAMS batteries.

Tags: Finland, David's Sling, NASAMS
Leave a comment
Subscribe to our newsletter for weekly defence analysis
Buy the book: Missile Defence in the Nordic Age - available at all good bookshops
"""

TASS_PAGE = """TASS Russian News Agency
Military & Defense

Russia to deliver second S-400 regiment to Turkey, says Rosoboronexport

MOSCOW, November 27. /TASS/. Russia and Turkey expect to sign a contract for a second regiment of S-400 air defence systems in the first half of 2020, Rosoboronexport Director General Alexander Mikheev told reporters on Wednesday.

Read also
Turkey to start using S-400 systems in April 2020, Erdogan says

The first deliveries under the $2.5 billion contract signed in 2017 were completed in September, Mikheev said, adding that Ankara was interested in joint production of some components.
"""

AP_PAGE = """KYIV, Ukraine (AP) — Ukraine received the first NASAMS and Aspide surface-to-air missile systems on Monday, Defence Minister Oleksii Reznikov said, calling them a significant boost to the country's air defences against Russian missile and drone strikes.

"These weapons will significantly strengthen the Ukrainian army and will make our skies safer," Reznikov wrote on Twitter, thanking Norway, Spain and the United States.

ADVERTISEMENT

NASAMS, developed by Norway's Kongsberg and Raytheon, was promised by Washington in July.

Follow AP's coverage of the war in Ukraine
"""

PLAIN_PAGE = """The ministry said its newsletter subscribers would receive the full report next week, alongside an analysis of the tender results and the timeline for deliveries to the air force.

Officials said the decision would be reviewed in the spring after parliament debates the defence budget for the coming year.
"""


# --- text cleaning -------------------------------------------------------------------------


def test_clean_text_normalises_unicode_and_whitespace():
    raw = (
        "\ufeffTurkey\u00a0says \u201cno\u201d to \u2018pressure\u2019\r\n\r\n\r\n"
        "\u200bS\u2011400\tdeal  \x00ok \uff21"
    )
    assert clean_text(raw) == "Turkey says \"no\" to 'pressure'\n\nS-400 deal ok A"


def test_clean_line_folds_all_whitespace():
    assert clean_line("  Russian-Made\nS-400 \u2003 Systems  ") == "Russian-Made S-400 Systems"


def test_clean_text_replaces_lone_surrogates():
    assert clean_text("broken \udcff byte") == "broken \ufffd byte"
    clean_text("broken \udcff byte").encode("utf-8")  # always encodable


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_clean_text_is_idempotent_and_encodable(text):
    once = clean_text(text)
    assert clean_text(once) == once
    once.encode("utf-8")
    assert "\n\n\n" not in once


# --- chrome removal ------------------------------------------------------------------------


def test_seed_page_text_loses_its_chrome_and_keeps_the_article():
    title = "Second S-400 Regiment Arrives in Turkey Despite US Warnings – Ankara"
    result = strip_chrome(clean_text(SEED_TEXT), title=title)
    assert result.removed == [
        "Defence Careers Hub - Jobs for Cleared Professionals - APPLY TODAY",
        "Air and Missile Defence",
        title,
        "Black Sea Wire",
        "11:20 14.09.2021",
        "Sign up for the morning briefing",
        "Ten Books Every Strategist Should Read This Year - by Jane Example",
    ]
    assert result.text.startswith("MOSCOW (Black Sea Wire) - Russia has completed the delivery")
    assert result.text.endswith("according to Turkish President Recep Tayyip Erdogan.")
    assert result.text.count("\n\n") == 6  # the article's seven paragraphs survive as such
    assert result.page_date == "11:20 14.09.2021"
    assert result.page_source == "Black Sea Wire"
    assert result.dateline is not None
    assert (result.dateline.place, result.dateline.agency) == ("Moscow", "Black Sea Wire")


def test_wire_page():
    title = "Poland signs deal for second phase of Wisla air defence programme"
    result = strip_chrome(clean_text(WIRE_PAGE), title=title)
    assert result.text.startswith("WARSAW, Sept 19 (Reuters) - Poland on Tuesday")
    for gone in (
        "Skip to main content",
        "World | Business | Markets | Breakingviews | Technology | Investigations",
        "Europe",
        title,
        "By Anna Kowalska and Tom Baker",
        "4 min read",
        "Advertisement · Scroll to continue",
        "Sign up here.",
        "Our Standards: The Thomson Reuters Trust Principles.",
    ):
        assert gone in result.removed
        assert gone not in result.text
    assert result.author == "Anna Kowalska and Tom Baker"
    assert "Reporting by Anna Kowalska; Editing by Tom Baker" in result.text
    assert '"Every battery we add closes a gap' in result.text
    assert (result.dateline.place, result.dateline.agency) == ("Warsaw", "Reuters")


def test_blog_page():
    title = "Finland picks David's Sling for high-altitude air defence"
    result = strip_chrome(clean_text(BLOG_PAGE), title=title)
    assert result.text.startswith("HELSINKI, Nov 9 (Nordic Security Review) - Finland has chosen")
    assert result.text.endswith("existing NASAMS batteries.")
    assert result.page_date == "Posted on 9 November 2023"
    assert "Buy the book: Missile Defence in the Nordic Age - available at all good bookshops" in (
        result.removed
    )
    assert "Home » News » Air Defence" in result.removed
    assert "Share this: Facebook | Twitter | LinkedIn" in result.removed
    assert len(result.removed) == 9


def test_tass_page_dateline_and_read_also_block():
    title = "Russia to deliver second S-400 regiment to Turkey, says Rosoboronexport"
    result = strip_chrome(clean_text(TASS_PAGE), title=title, source="TASS")
    assert (result.dateline.place, result.dateline.agency) == ("Moscow", "TASS")
    assert result.removed[:3] == ["TASS Russian News Agency", "Military & Defense", title]
    assert "Read also" in result.removed
    assert result.text.startswith("MOSCOW, November 27. /TASS/. Russia and Turkey")
    # The headline under "Read also" is a link, but nothing marks it as one on its own line:
    # it is kept rather than guessed away (only chrome that is recognisable is cut).
    assert "The first deliveries under the $2.5 billion contract" in result.text


def test_ap_page_mid_article_advert_and_mixed_case_dateline():
    result = strip_chrome(clean_text(AP_PAGE), title="Ukraine receives NASAMS")
    assert result.removed == ["ADVERTISEMENT"]
    assert (result.dateline.place, result.dateline.agency) == ("Kyiv, Ukraine", "AP")
    assert "NASAMS, developed by Norway's Kongsberg" in result.text


MENU_PAGE = """Defence News Today - Subscribe Now
Home
World News and Analysis
Land Forces and Army Programmes
Air Forces and Air Defence
Naval Forces and Shipbuilding
Space and Missile Defence
Cyber and Electronic Warfare
Industry, Contracts and Exports
Opinion and Commentary Pieces
Events, Conferences and Shows
Podcasts and Video Reports

India orders more Akash regiments

NEW DELHI, March 30 (Asia Pacific Defence Review) - India's defence ministry on Thursday signed a contract with Bharat Dynamics for two more regiments of the Akash surface-to-air missile system for the army.
"""


RUSSIAN_PAGE = """ТАСС | Новости | Армия и ОПК | Политика | Экономика
Реклама

МОСКВА, 27 ноября. /ТАСС/. Россия и Турция рассчитывают подписать контракт на поставку второго полка зенитных ракетных систем С-400 в первой половине 2020 года, сообщил генеральный директор Рособоронэкспорта Александр Михеев.

Читайте также
Подписывайтесь на наш канал в Telegram
"""

BBC_STYLE_PAGE = """Image source, Getty Images
Image caption, Patriot launchers on display in Warsaw in 2023

Poland has signed a deal worth about $10bn for the second phase of its Wisla air and missile defence programme, the defence ministry said on Tuesday.

Media caption, Watch: what the Patriot system does

The agreement covers 48 launchers and more than 600 interceptor missiles, officials said.

More on this story
Poland buys more tanks from South Korea
"""


def test_russian_page():
    result = strip_chrome(clean_text(RUSSIAN_PAGE), title="С-400")
    assert result.text.startswith("МОСКВА, 27 ноября. /ТАСС/. Россия и Турция")
    assert (result.dateline.place, result.dateline.agency) == ("Москва", "ТАСС")
    assert result.removed == [
        "ТАСС | Новости | Армия и ОПК | Политика | Экономика",
        "Реклама",
        "Читайте также",
        "Подписывайтесь на наш канал в Telegram",
    ]
    assert detect_language(result.text) == "ru"


def test_image_and_media_captions_and_more_on_this_story():
    result = strip_chrome(clean_text(BBC_STYLE_PAGE), title="Poland Wisla deal")
    assert result.text.startswith("Poland has signed a deal")
    assert result.text.endswith("more than 600 interceptor missiles, officials said.")
    assert "Media caption, Watch: what the Patriot system does" in result.removed
    assert "Poland buys more tanks from South Korea" in result.removed  # after the marker
    assert len(result.removed) == 5


def test_a_vertical_menu_above_the_article_is_cut():
    """Eleven short menu lines hold more words than a sentence, but no line is prose."""
    result = strip_chrome(clean_text(MENU_PAGE), title="India orders more Akash regiments")
    assert result.text.startswith("NEW DELHI, March 30")
    assert len(result.removed) == 13
    assert result.removed[0] == "Defence News Today - Subscribe Now"


def test_hard_wrapped_prose_is_still_prose():
    wrapped = (
        "Poland signed agreements with the United States on Tuesday for the\n"
        "second phase of its Wisla air and missile defence programme, adding 48\n"
        "Patriot launchers, the defence ministry said in a statement on Tuesday."
    )
    text = clean_text("Related: more stories\n\n" + wrapped)
    result = strip_chrome(text, title="Wisla")
    assert result.text == wrapped
    assert result.removed == ["Related: more stories"]


def test_an_advert_before_a_short_last_paragraph_takes_only_itself():
    text = clean_text(
        "ANKARA (Reuters) - Turkey will not bow to US pressure over the S-400 systems, "
        "the foreign minister said on Wednesday, adding that talks would go on.\n\n"
        "ADVERTISEMENT\n\n"
        '"We will continue to talk," he said.\n\n'
        "Join the mailing list\n\n"
        "Thinking Bigger - by A. Author"
    )
    result = strip_chrome(text, title="Turkey")
    assert result.text.endswith('"We will continue to talk," he said.')
    assert result.removed == [
        "ADVERTISEMENT",
        "Join the mailing list",
        "Thinking Bigger - by A. Author",
    ]


def test_prose_that_mentions_chrome_words_is_kept():
    text = clean_text(PLAIN_PAGE)
    result = strip_chrome(text, title="Tender results")
    assert result.removed == []
    assert result.text == text
    assert result.dateline is None


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("JOIN NOW", "call-to-action"),
        ("Cyber careers for cleared professionals - Join Now!", "call-to-action"),
        ("Related: A | B | C", "related"),
        ("Read more: Turkey tests S-400 radar", "related"),
        ("Sign up for our daily briefing", "newsletter"),
        ("© 2024 Example Media Ltd", "copyright"),
        ("Sponsored: Save big on shipping", "advert"),
        ("Home | World | UK | Business | Politics", "navigation"),
        ("Share | Tweet | Email", "share"),
        ("Photo: Reuters/File", "credit"),
        ("Poland signed the deal on Tuesday.", None),
        ("Ad hoc committees met on Tuesday to review the deal.", None),
        ("Related reports said the launchers would arrive in 2027 and be based near Warsaw.", None),
    ],
)
def test_chrome_kind(line, kind):
    assert chrome_kind(line) == kind


@pytest.mark.parametrize(
    ("text", "place", "agency"),
    [
        ("MOSCOW (Sputnik) - Ankara will", "Moscow", "Sputnik"),
        ("WARSAW, Sept 19 (Reuters) - Poland", "Warsaw", "Reuters"),
        (
            "KOBLENZ, Germany, Feb 12 (Continental Newswire) - X",
            "Koblenz, Germany",
            "Continental Newswire",
        ),
        (
            "VANDENBERG SPACE FORCE BASE, Calif., Sept 10 (Orbital) - X",
            "Vandenberg Space Force Base, Calif.",
            "Orbital",
        ),
        ("THE HAGUE, Feb 6 (X) - Y", "The Hague", "X"),
        ("BEIJING, Nov. 27 (Xinhua) -- China", "Beijing", "Xinhua"),
        ("PARIS, 5 March 2024 (AFP) - France", "Paris", "AFP"),
        ("WASHINGTON — The Pentagon said", "Washington", None),
        ("MOSCOW, November 27. /TASS/. Russia", "Moscow", "TASS"),
        ("Kyiv, Ukraine (AP) — Ukraine", "Kyiv, Ukraine", "AP"),
    ],
)
def test_find_dateline(text, place, agency):
    match = find_dateline(text)
    assert match is not None
    assert (match.place, match.agency) == (place, agency)


@pytest.mark.parametrize(
    "text",
    [
        "The ministry said on Tuesday",
        "NATO said on Tuesday that",
        "US Secretary of State",
        "US - China talks resumed on Monday",
        "NATO — the alliance — met on Monday",
        "",
    ],
)
def test_no_dateline_in_ordinary_sentences(text):
    assert find_dateline(text) is None


lines = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=60
)
pages = st.lists(
    st.one_of(
        lines,
        st.sampled_from(
            ["JOIN NOW", "Related: x | y", "16:02 27.11.2019", "MOSCOW (Sputnik) - It said.", ""]
        ),
    ),
    max_size=30,
).map("\n".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages, st.one_of(st.none(), lines))
def test_strip_chrome_loses_no_line(page, title):
    """Every input line is either kept or listed in ``removed``: nothing vanishes unseen."""
    text = clean_text(page)
    result = strip_chrome(text, title=title)
    before = Counter(line for line in text.split("\n") if line.strip())
    after = Counter(line for line in result.text.split("\n") if line.strip())
    assert after + Counter(result.removed) == before


# --- language ------------------------------------------------------------------------------


def test_language_detection_and_tags():
    assert detect_language(SEED_TEXT) == "en"
    assert detect_language("Россия и Турция подписали контракт на поставку систем С-400.") == "ru"
    assert detect_language("OK") is None
    assert normalize_language_tag("EN") == "en"
    assert normalize_language_tag("pt_br") == "pt-BR"
    with pytest.raises(ValueError, match="not a language tag"):
        normalize_language_tag("english!")


# --- submission -> Article -----------------------------------------------------------------


def test_seed_article_json_normalises(seed_article):
    article = normalize_submission(ArticleSubmission.model_validate(seed_article))
    assert article.external_id == "example-s400"
    assert article.source == "Black Sea Wire"
    assert article.published_at == datetime(2021, 9, 14, 8, 20, tzinfo=UTC)
    assert article.dateline is not None
    assert (article.dateline.place, article.dateline.agency) == ("Moscow", "Black Sea Wire")
    assert "APPLY TODAY" not in article.body and "morning briefing" not in article.body
    assert len(article.removed) == 7
    assert article.language == "en"
    assert article.canonical_url == seed_article["url"]
    assert article.content_hash == content_hash_for(article.title, article.body)
    assert article.id == article_id_for(article.canonical_url, article.content_hash)


def test_seed_raw_page_text_alone_yields_source_date_and_dateline(seed_article):
    """Only title + the page text: source and date come from the page, the time zone from
    the dateline city (11:20 in Moscow is 08:20 UTC, as the sample's own +03:00 says)."""
    submission = ArticleSubmission(title=seed_article["title"], body=SEED_TEXT)
    article = normalize_submission(submission, received_via="file")
    assert article.source == "Black Sea Wire"
    assert article.published_at == datetime.fromisoformat(seed_article["published_at"])
    assert article.dateline is not None and article.dateline.place == "Moscow"
    assert article.body.startswith("MOSCOW (Black Sea Wire) -")
    assert article.received_via == "file"
    assert article.url is None and article.canonical_url is None
    assert article.id == article_id_for(None, article.content_hash)


def test_same_story_same_id_whatever_the_spelling(seed_article):
    a = normalize_submission(ArticleSubmission.model_validate(seed_article))
    variant = dict(seed_article)
    variant["url"] = (
        seed_article["url"].replace("https://www.", "HTTPS://WWW.") + "?utm_source=tw#x"
    )
    variant["body"] = seed_article["body"].replace("'", "\u2019").replace(" ", "\u00a0")
    b = normalize_submission(ArticleSubmission.model_validate(variant), received_via="stream")
    assert (b.id, b.canonical_url, b.content_hash) == (a.id, a.canonical_url, a.content_hash)


def test_dev_articles_normalise_and_keep_metadata(dev_articles):
    for raw in dev_articles:
        raw = {**raw, "metadata": {"labelled": True, "batch": 7}}
        article = normalize_submission(ArticleSubmission.model_validate(raw))
        assert article.metadata == {"labelled": True, "batch": 7}
        assert article.language == "en"
        if "published_at" in raw:  # the shared samples are dated wire copy with datelines
            assert article.dateline is not None, raw["id"]
            assert article.published_at == datetime.fromisoformat(raw["published_at"])


def test_example_articles_keep_their_dates():
    """The repository's own examples carry their publication times; they survive ingest."""
    for item in read_all([EXAMPLES]):
        article = normalize_submission(ArticleSubmission.model_validate(item.value))
        assert article.published_at == datetime.fromisoformat(item.value["published_at"])
        assert article.external_id == item.value["id"]


def test_html_submission_uses_extracted_text_and_page_metadata():
    html = """<html><head><title>Poland buys Patriots | Defence Wire</title>
    <meta name="author" content="Jan Kowalski">
    <meta property="article:published_time" content="2023-09-19T14:20:00+02:00">
    <meta property="og:site_name" content="Defence Wire"></head>
    <body><nav><a href="/">Home</a> | <a href="/w">World</a></nav>
    <article><h1>Poland buys Patriots</h1>
    <p>WARSAW, Sept 19 (Defence Wire) - Poland signed agreements with the United States on
    Tuesday for the second phase of its Wisla air and missile defense programme.</p>
    <p>The package is valued at roughly $10 billion, officials said, one of the largest
    procurement contracts in the country's history.</p>
    <p>Related: Other story | Another story</p></article>
    <footer>(c) 2023 Defence Wire</footer></body></html>"""
    article = normalize_submission(
        ArticleSubmission(
            title="Poland buys Patriots", html=html, url="https://dw.example/a/?fbclid=1"
        )
    )
    assert article.body.startswith("WARSAW, Sept 19 (Defence Wire) - Poland signed")
    assert "Home" not in article.body and "Related:" not in article.body
    assert article.source == "Defence Wire"
    assert article.author == "Jan Kowalski"
    assert article.published_at == datetime(2023, 9, 19, 12, 20, tzinfo=UTC)
    assert article.canonical_url == "https://dw.example/a"


def test_errors_name_every_bad_field():
    submission = ArticleSubmission(
        title="\u200b", url="ftp://example.com/x", published_at="whenever", language="english!"
    )
    with pytest.raises(NormalizationError) as caught:
        normalize_submission(submission)
    fields = [error.field for error in caught.value.errors]
    assert fields == ["title", "url", "body", "published_at", "language"]
    assert "published_at" in caught.value.reason


def test_body_of_nothing_but_chrome_is_rejected():
    with pytest.raises(NormalizationError, match="no article text left"):
        normalize_submission(ArticleSubmission(title="x", body="JOIN NOW\nAdvertisement"))


def test_a_producer_date_in_page_format_is_read_in_the_dateline_zone():
    submission = ArticleSubmission(
        title="Talks",
        body="WARSAW (PAP) - Talks resumed on Monday.",
        published_at="16:02 27.11.2019",
    )
    article = normalize_submission(submission)
    assert article.published_at == datetime(2019, 11, 27, 15, 2, tzinfo=UTC)  # CET, UTC+1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    title=st.text(min_size=1, max_size=200),
    body=st.one_of(st.none(), st.text(max_size=2000), pages),
    url=st.one_of(
        st.none(), st.text(max_size=80), st.sampled_from(["https://x.org/a?utm_source=1"])
    ),
    published_at=st.one_of(st.none(), st.text(max_size=40)),
    language=st.one_of(st.none(), st.text(max_size=10)),
)
def test_normalize_never_crashes(title, body, url, published_at, language):
    """Any strings: either an Article that serialises, or a NormalizationError naming fields."""
    try:
        submission = ArticleSubmission(
            title=title, body=body, url=url, published_at=published_at, language=language
        )
    except ValueError:
        return  # the model's own validation (e.g. whitespace-only title): the API's 422 path
    try:
        article = normalize_submission(submission)
    except NormalizationError as exc:
        assert exc.errors and all(error.field for error in exc.errors)
        return
    json.loads(article.model_dump_json())
    assert article.body and article.title


def test_body_and_html_together_take_the_text_from_body_and_metadata_from_the_page():
    html = (
        '<html><head><meta name="author" content="Jan Kowalski">'
        '<meta property="og:site_name" content="Defence Wire"></head><body><article>'
        "<p>The page version of the story, which differs from the body sent alongside it "
        "by the producer, and which is long enough for extraction to take it.</p>"
        "</article></body></html>"
    )
    submission = ArticleSubmission(title="Patriots", body="The producer's own text.", html=html)
    article = normalize_submission(submission)
    assert article.body == "The producer's own text."
    assert (article.author, article.source) == ("Jan Kowalski", "Defence Wire")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=500),
        st.lists(
            st.sampled_from(
                ["<p>", "</p>", "<div>", "<script>", "<!--", "&amp;", "<br/>", "x y z"]
            ),
            max_size=40,
        ).map("".join),
    )
)
def test_html_extraction_never_crashes(html):
    from services.common.html import NoArticleText, extract_article

    try:
        page = extract_article(html)
    except NoArticleText:
        return
    assert page.text.strip()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_line_level_functions_never_crash(text):
    assert chrome_kind(text) in (
        None,
        "advert",
        "related",
        "newsletter",
        "call-to-action",
        "copyright",
        "share",
        "site",
        "credit",
        "navigation",
    )
    match = find_dateline(text)
    assert match is None or (match.place and 0 < match.end <= len(text))
    language = detect_language(text)
    assert language is None or language.isalpha()
    try:
        tag = normalize_language_tag(text)
    except ValueError:
        return
    assert tag == normalize_language_tag(tag)
