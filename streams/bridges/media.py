"""Media monitoring → ``media.article`` events naming the units and open incidents mentioned.

Feeds are RSS/Atom (feedparser) or JSON (a list of items, or ``{"items": [...]}`` as in JSON
Feed). Units are found by their names and aliases from the organisation file (and the press's
'X fengsel' / 'friomsorgen i X' forms), never by a bare place name; incidents by
id or title among the open, real (non-exercise) incidents in the database. Sentiment comes from
the feed (``sentiment``: positive/neutral/negative, Norwegian words, or a number in [-1, 1]),
else from the bokmål lexicon. An article that names no unit and no open incident is skipped
(logged): there is nobody to tell. Ids are the feed's guid/id/link, so re-polling the same feed
re-sends nothing the bridge has sent (and the worker dedupes by source+id across restarts).

A feed is read up to ``CRISIS_MEDIA_FEED_MAX_BYTES`` (past it the feed is skipped this poll,
logged), then parsed and matched in a worker thread, so the bridge's loop goes on meanwhile; of
its items the first ``CRISIS_MEDIA_FEED_MAX_ITEMS`` are read (the rest logged).
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import hashlib
import html
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import feedparser
import httpx
from sqlmodel import select

from crisis.domain.organisation import Unit, load_organisation
from crisis.domain.vocabulary import Status
from crisis.kafka.producer import EventProducer
from crisis.log.models import Incident
from crisis.settings import Settings
from crisis.sources import jsonlimits, media
from crisis.sources.events import Envelope, EventError, validate_event
from crisis.store.db import make_engine, make_sessionmaker
from streams.bridges import lexicon
from streams.bridges.common import bridge_producer, serve, setup_logging

log = logging.getLogger("crisis.bridge.media")

ARTICLE_TYPE = media.ARTICLE_TYPE


@dataclass
class Item:
    id: str
    url: str
    title: str
    summary: str = ""
    published: datetime | None = None
    outlet: str | None = None
    sentiment: str | None = None
    key_media: bool | None = None


@dataclass(frozen=True)
class OpenIncident:
    id: str
    title: str
    unit: str


@dataclass
class PollResult:
    produced: list[str] = field(default_factory=list)
    skipped: int = 0
    rejected: int = 0
    already_seen: int = 0
    not_read: int = 0  # items past FeedLimits.max_items


@dataclass(frozen=True)
class FeedLimits:
    """What one poll of one feed reads (the settings ``CRISIS_MEDIA_FEED_MAX_*``)."""

    max_bytes: int = 4 * 1_048_576
    max_items: int = 500

    @classmethod
    def of(cls, settings: Settings) -> FeedLimits:
        return cls(settings.media_feed_max_bytes, settings.media_feed_max_items)


class FeedTooLarge(ValueError):
    """A feed body past ``FeedLimits.max_bytes``: not parsed."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"feeden er for stor / the feed is larger than the limit of {limit} bytes "
            "(CRISIS_MEDIA_FEED_MAX_BYTES)"
        )


# --- sentiment ----------------------------------------------------------------------------

_WORDS = {
    "positive": "positive",
    "positiv": "positive",
    "pos": "positive",
    "negative": "negative",
    "negativ": "negative",
    "neg": "negative",
    "neutral": "neutral",
    "nøytral": "neutral",
    "noytral": "neutral",
}


def feed_sentiment(value: Any) -> str | None:
    """The feed's own sentiment, normalised; None when absent or unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return "positive" if value > 0.2 else "negative" if value < -0.2 else "neutral"
    text = str(value).strip().lower()
    if text in _WORDS:
        return _WORDS[text]
    try:
        return feed_sentiment(float(text))
    except ValueError:
        return None


# --- units and incidents ------------------------------------------------------------------


_INSTITUTION = re.compile(r"fengsel|friomsorg|anstalt", re.IGNORECASE)


def unit_terms(unit: Unit) -> set[str]:
    """How the press names a unit: its name, its aliases in the organisation model, 'X
    fengsel', 'fengselet på X', 'friomsorgen i X'. Never a bare place or id: 'snøfall i
    Bergen' is not about Bergen fengsel."""
    name = unit.name
    base = name.split(",")[0].strip()
    terms = {name, name.replace(",", ""), *unit.aliases}
    if _INSTITUTION.search(base):
        terms.add(base)  # 'Agder fengsel' names every department of it
    places = [base.split()[0]]
    if " og " in base:
        places.append(base.split(" og ")[0])
    if unit.kind == "prison":
        match = re.search(r"avdeling (\w+)", name)
        if match:
            places.append(match.group(1))
        for place in places:
            terms |= {f"{place} fengsel", f"fengselet i {place}", f"fengselet på {place}"}
    else:
        for place in places:
            terms |= {f"friomsorgen i {place}", f"{place} friomsorgskontor"}
    return {t for t in terms if _INSTITUTION.search(t)} | set(unit.aliases)


class UnitMatcher:
    """Finds units in text; a specific name beats a general one inside it ('Agder fengsel,
    avdeling Froland' names Froland only, 'Agder fengsel' alone names both departments)."""

    def __init__(self, units: Iterable[Unit]) -> None:
        self._patterns: list[tuple[str, re.Pattern[str]]] = []
        for unit in units:
            for term in sorted(unit_terms(unit), key=len, reverse=True):
                pattern = re.compile(r"(?<!\w)" + re.escape(term) + r"(?!\w)", re.IGNORECASE)
                self._patterns.append((unit.id, pattern))

    def find(self, text: str) -> list[str]:
        hits: list[tuple[int, int, str]] = []
        for unit_id, pattern in self._patterns:
            hits += [(m.start(), m.end(), unit_id) for m in pattern.finditer(text)]
        kept: dict[str, int] = {}
        for start, end, unit_id in hits:
            inside_longer = any(
                s <= start and end <= e and (e - s) > (end - start) and u != unit_id
                for s, e, u in hits
            )
            if not inside_longer:
                kept[unit_id] = min(kept.get(unit_id, start), start)
        return sorted(kept, key=lambda u: kept[u])


def incidents_in(text: str, incidents: Sequence[OpenIncident]) -> list[OpenIncident]:
    lowered = text.lower()
    return [
        inc
        for inc in incidents
        if inc.id.lower() in lowered or (len(inc.title) >= 8 and inc.title.lower() in lowered)
    ]


async def open_incidents(sessions: Any) -> list[OpenIncident]:
    """Open, real incidents (an article is never linked to an exercise)."""
    async with sessions() as session:
        rows = await session.exec(
            select(Incident).where(Incident.status == Status.OPEN.value, Incident.exercise == None)  # noqa: E711
        )
        return [OpenIncident(i.id, i.title, i.unit) for i in rows.all()]


# --- feeds --------------------------------------------------------------------------------


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, str) and value:
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


class FeedError(ValueError):
    """A response that is not a readable feed: empty, not RSS/Atom/JSON, or cut off."""


def html_text(value: str) -> str:
    """A summary as plain text: tags (and script/style content) removed, entities decoded."""
    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", value)
    text = html.unescape(re.sub(r"<[^>]*>", " ", text))
    return re.sub(r"\s+", " ", text).strip()


def _json_items(data: Any) -> list[Item]:
    if isinstance(data, dict):
        data = data.get("items", data.get("articles", []))
    if not isinstance(data, list):
        raise ValueError("a JSON feed is a list of items or an object with 'items'")
    items = []
    for raw in data:
        if not isinstance(raw, dict):
            continue
        url = str(raw.get("url") or raw.get("link") or "")
        items.append(
            Item(
                id=str(raw.get("id") or raw.get("guid") or url),
                url=url,
                title=str(raw.get("title") or ""),
                summary=html_text(
                    str(
                        raw.get("summary")
                        or raw.get("description")
                        or raw.get("content_text")
                        or raw.get("content_html")
                        or ""
                    )
                ),
                published=_as_datetime(
                    raw.get("published") or raw.get("date_published") or raw.get("pubDate")
                ),
                outlet=raw.get("outlet") or raw.get("source"),
                sentiment=feed_sentiment(raw.get("sentiment")),
                key_media=raw.get("key_media") if isinstance(raw.get("key_media"), bool) else None,
            )
        )
    return items


def _feed_items(body: bytes) -> list[Item]:
    parsed = feedparser.parse(body)
    problem = parsed.get("bozo_exception")
    if parsed.bozo and not isinstance(problem, feedparser.CharacterEncodingOverride):
        # A feed cut off or malformed is refused whole: the loose parser would make up
        # items from its pieces (a title as id, the feed's own URL as link).
        raise FeedError(f"not a well-formed RSS/Atom feed: {problem!r}")
    if not parsed.version:
        raise FeedError("not an RSS/Atom feed (no rss, feed or RDF root)")
    outlet = parsed.feed.get("title")
    items = []
    for entry in parsed.entries:
        if not (entry.get("id") or entry.get("link")):
            log.warning("feed item without guid or link left out: %.120s", entry.get("title"))
            continue
        published = None
        stamp = entry.get("published_parsed") or entry.get("updated_parsed")
        if stamp:
            published = datetime.fromtimestamp(calendar.timegm(stamp), UTC)
        sentiment = next(
            (feed_sentiment(v) for k, v in entry.items() if k.endswith("sentiment")), None
        )
        key_media = next(
            (str(v).lower() == "true" for k, v in entry.items() if k.endswith("key_media")), None
        )
        source = entry.get("source") or {}
        items.append(
            Item(
                id=str(entry.get("id") or entry.get("link")),
                url=str(entry.get("link") or ""),
                title=str(entry.get("title") or ""),
                summary=html_text(str(entry.get("summary") or "")),
                published=published,
                outlet=(source.get("title") if isinstance(source, dict) else None) or outlet,
                sentiment=sentiment,
                key_media=key_media,
            )
        )
    return items


def parse_feed(body: bytes, content_type: str = "") -> list[Item]:
    """Items of an RSS/Atom or JSON feed; :class:`FeedError` when the body is none of them."""
    if not body.strip():
        raise FeedError("the response is empty")
    head = body.lstrip()[:1]
    if "json" in content_type or head in (b"[", b"{"):
        return _json_items(jsonlimits.loads(body))
    return _feed_items(body)


def article_event(
    item: Item,
    *,
    feed_url: str,
    matcher: UnitMatcher,
    incidents: Sequence[OpenIncident],
) -> dict[str, Any] | None:
    """The raw ``media.article`` event, or None when it names no unit and no open incident."""
    text = f"{item.title}\n{item.summary}"
    units = matcher.find(text)
    mentioned = incidents_in(text, incidents)
    for inc in mentioned:
        if inc.unit not in units:
            units.append(inc.unit)
    if not units:
        return None
    event_id = item.id or item.url or item.title
    if len(event_id) > 200:
        event_id = "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()
    host = urlsplit(feed_url).netloc or "feed"
    data: dict[str, Any] = {
        "url": item.url or feed_url,
        "title": item.title[:500] or "(uten tittel)",
        "summary": item.summary[:10_000] or None,
        "outlet": item.outlet,
        "published": item.published.isoformat() if item.published else None,
        "sentiment": item.sentiment or lexicon.sentiment(text),
        "mentions_units": units,
        "mentions_incidents": [inc.id for inc in mentioned],
    }
    if item.key_media is not None:
        data["key_media"] = item.key_media
    return media.article_event(
        data,
        event_id=event_id,
        source=f"/media/{host}",
        time=(item.published or datetime.now(UTC)).isoformat(),
        unit=units[0],
    )


def _articles(
    body: bytes,
    content_type: str,
    feed_url: str,
    matcher: UnitMatcher,
    incidents: Sequence[OpenIncident],
    max_items: int,
) -> tuple[int, list[tuple[Item, dict[str, Any] | None]]]:
    """(items in the feed, the first ``max_items`` with their raw events): parsing and
    matching, the bridge's CPU work, run in a worker thread."""
    items = parse_feed(body, content_type)
    return len(items), [
        (item, article_event(item, feed_url=feed_url, matcher=matcher, incidents=incidents))
        for item in items[:max_items]
    ]


@dataclass
class FeedState:
    """What the bridge remembers about one feed between polls."""

    etag: str | None = None
    modified: str | None = None
    seen: dict[str, None] = field(default_factory=dict)  # ordered set, bounded

    def remember(self, event_id: str) -> None:
        self.seen[event_id] = None
        while len(self.seen) > 20_000:
            self.seen.pop(next(iter(self.seen)))


async def poll_once(
    client: httpx.AsyncClient,
    feed_url: str,
    *,
    producer: EventProducer,
    matcher: UnitMatcher,
    incidents: Sequence[OpenIncident],
    known_units: set[str],
    state: FeedState,
    limits: FeedLimits = FeedLimits(),
) -> PollResult:
    """Fetch one feed and produce its new articles (durable on return); FeedTooLarge past
    ``limits.max_bytes``, and only the first ``limits.max_items`` items are read."""
    headers = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.modified:
        headers["If-Modified-Since"] = state.modified
    result = PollResult()
    async with client.stream("GET", feed_url, headers=headers) as response:
        if response.status_code == 304:
            return result
        response.raise_for_status()
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_bytes:
            raise FeedTooLarge(limits.max_bytes)
        body = bytearray()
        async for chunk in response.aiter_bytes():  # decoded: a gzip bomb counts in full
            body += chunk
            if len(body) > limits.max_bytes:
                raise FeedTooLarge(limits.max_bytes)
    content_type = response.headers.get("content-type", "")
    found, articles = await asyncio.to_thread(
        _articles, bytes(body), content_type, feed_url, matcher, incidents, limits.max_items
    )
    state.etag = response.headers.get("etag")
    state.modified = response.headers.get("last-modified")
    if found > limits.max_items:
        result.not_read = found - limits.max_items
        log.warning(
            "feed %s: %d items, the first %d read (CRISIS_MEDIA_FEED_MAX_ITEMS)",
            feed_url,
            found,
            limits.max_items,
        )
    accepted: list[Envelope] = []
    for item, raw in articles:
        if raw is None:
            result.skipped += 1
            log.info("skipped (names no unit or open incident): %s", item.title[:120])
            continue
        if raw["id"] in state.seen:
            result.already_seen += 1
            continue
        try:
            accepted.append(validate_event(raw, known_units=known_units))
        except EventError as exc:
            result.rejected += 1
            await producer.dead_letter(
                raw, reason=str(exc), errors=exc.errors, origin="bridge:media"
            )
    if accepted:
        await producer.accept(accepted)
    for env in accepted:
        state.remember(env.id)
        result.produced.append(env.id)
    return result


async def run_bridge(
    feeds: Sequence[str],
    *,
    settings: Settings,
    producer: EventProducer,
    interval: float,
    once: bool = False,
    stop: asyncio.Event | None = None,
) -> int:
    """Poll ``feeds`` every ``interval`` seconds until ``stop``; returns how many feeds failed
    in the last pass (unreachable, an HTTP error, not a feed), each logged as an error."""
    stop = stop or asyncio.Event()
    failed = 0
    org = await asyncio.to_thread(load_organisation, settings.organisation)
    matcher = await asyncio.to_thread(UnitMatcher, org.units.values())
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    states = {url: FeedState() for url in feeds}
    try:
        async with httpx.AsyncClient(timeout=20.0, follow_redirects=True) as client:
            while not stop.is_set():
                try:
                    incidents = await open_incidents(sessions)
                except Exception as exc:  # no schema yet, database down: match units only
                    log.warning("could not read open incidents: %r", exc)
                    incidents = []
                failed = 0
                for url in feeds:
                    try:
                        res = await poll_once(
                            client,
                            url,
                            producer=producer,
                            matcher=matcher,
                            incidents=incidents,
                            known_units=set(org.units),
                            state=states[url],
                            limits=FeedLimits.of(settings),
                        )
                    except (httpx.HTTPError, ValueError) as exc:
                        failed += 1
                        log.error("feed %s: %s", url, exc)
                        continue
                    log.info(
                        "feed %s: %d new, %d seen, %d skipped, %d rejected",
                        url,
                        len(res.produced),
                        res.already_seen,
                        res.skipped,
                        res.rejected,
                    )
                if once:
                    return failed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
    finally:
        await engine.dispose()
    return failed


async def _main(args: argparse.Namespace) -> int:
    settings = Settings()
    feeds = args.feed or settings.media_feeds
    if not feeds:
        raise SystemExit("crisis bridge media: give --feed URL or set CRISIS_MEDIA_FEEDS")
    producer = bridge_producer(settings, "media")
    failed = 0

    async def run(stop: asyncio.Event) -> None:
        nonlocal failed
        failed = await run_bridge(
            feeds,
            settings=settings,
            producer=producer,
            interval=args.interval,
            once=args.once,
            stop=stop,
        )

    code = await serve(producer, run)
    return 1 if code == 0 and args.once and failed else code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crisis bridge media")
    parser.add_argument(
        "--feed", action="append", help="feed URL (repeatable; default CRISIS_MEDIA_FEEDS)"
    )
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between polls")
    parser.add_argument("--once", action="store_true", help="poll every feed once, then exit")
    args = parser.parse_args(argv)
    setup_logging()
    return asyncio.run(_main(args))


if __name__ == "__main__":
    raise SystemExit(main())
