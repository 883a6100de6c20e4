"""A small Norwegian (bokmål) sentiment lexicon for news about prisons and probation.

Used only when a media-monitoring feed gives no sentiment of its own. Words of five letters or
more match as stems (``kritikk`` matches ``kritikken``), shorter ones exactly; a negation
(``ikke``, ``aldri``, ``ingen``, ``uten``) up to two words before flips a word's polarity.
Deliberately small and domain-specific: it tells a storm of bad press from routine coverage,
not the nuances of a single article.
"""

from __future__ import annotations

import re
from typing import Literal

Sentiment = Literal["positive", "neutral", "negative"]

NEGATIVE = frozenset(
    """
    rømning rømt rømte rømmer unnvikelse uteblivelse vold voldelig voldsepisode trusler truet
    trussel kritikk kritisk kritiserer kritiseres refser skandale alvorlig alvorlige død døde
    dødsfall omkom selvmord selvmordsforsøk selvskading overdose brann kaos svikt svikter
    sviktet mangel mangler manglende farlig farlige uro opptøyer angrep angrepet skadet skader
    bekymring bekymret bekymringsmelding lekkasje ulovlig ulovlige gisseltaking smitte
    smitteutbrudd narkotika smugling smuglet beslag beslaglagt overbelegg isolasjon isolert
    klage klager granskning granske etterforskning etterforsker anmeldt tiltalt sjokk sjokkert
    frykt frykter nedstengt stengt streik varslet varsling krenkelse krenket brudd
    menneskerettighetsbrudd uforsvarlig uverdig dårlig dårlige feil overgrep knivstukket
    knivstikking rasende sint hardt fluktforsøk savnet
    """.split()
)
POSITIVE = frozenset(
    """
    ros roser rost god gode godt bra suksess forbedring forbedret forbedrer trygg trygt
    trygghet vellykket fornøyd utmerket positiv positivt hjelp hjelper samarbeid nyskapende
    innovativ prisvinnende rehabilitering lykkes lyktes glede takk stolt stolte modell
    forbilde effektiv effektivt rask raskt løst avverget berget reddet beredskap godkjent
    anerkjennelse heder hedret
    """.split()
)
NEGATIONS = frozenset({"ikke", "aldri", "ingen", "uten"})
_WORD = re.compile(r"[a-zæøåäöéü]+")


def _polarity(token: str) -> int:
    for words, value in ((NEGATIVE, -1), (POSITIVE, 1)):
        if token in words:
            return value
        if any(len(w) >= 5 and token.startswith(w) for w in words):
            return value
    return 0


def score(text: str) -> int:
    """Positive minus negative words, negations applied."""
    tokens = _WORD.findall(text.lower())
    total = 0
    for i, token in enumerate(tokens):
        value = _polarity(token)
        if value and any(t in NEGATIONS for t in tokens[max(0, i - 2) : i]):
            value = -value
        total += value
    return total


def sentiment(text: str) -> Sentiment:
    value = score(text)
    if value < 0:
        return "negative"
    if value > 0:
        return "positive"
    return "neutral"
