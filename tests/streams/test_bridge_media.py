"""The media bridge: RSS and JSON feeds from a real local HTTP server → media.article events."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from crisis.domain.organisation import load_organisation
from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker
from crisis.kafka.producer import EventProducer
from crisis.log.append import open_incident
from crisis.log.models import IncidentCreate
from crisis.settings import Settings
from crisis.store.db import make_engine, make_sessionmaker, migrate
from streams.bridges import lexicon
from streams.bridges.media import (
    FeedError,
    FeedState,
    UnitMatcher,
    feed_sentiment,
    open_incidents,
    parse_feed,
    poll_once,
    run_bridge,
)
from tests.ingest_support import partitions, read_topic

DATA = Path(__file__).resolve().parents[1] / "data" / "media"
T = TypeVar("T")
ORG = load_organisation(None)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def feed_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on a free port serving a copy of the feed files."""
    root = tmp_path / "www"
    root.mkdir()
    for f in DATA.iterdir():
        (root / f.name).write_bytes(f.read_bytes())
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_lexicon_and_feed_sentiment() -> None:
    assert lexicon.sentiment("Innsatt rømte – kritikk mot sikkerheten") == "negative"
    assert lexicon.sentiment("Fengselet får ros for godt samarbeid") == "positive"
    assert lexicon.sentiment("Fengselet fikk ikke kritikk") == "positive"  # negation flips
    assert lexicon.sentiment("Nytt program lanseres i høst") == "neutral"
    assert feed_sentiment(-0.7) == "negative" and feed_sentiment("Positiv") == "positive"
    assert feed_sentiment("nøytral") == "neutral" and feed_sentiment("maybe") is None


def test_units_are_found_by_their_press_names() -> None:
    m = UnitMatcher(ORG.units.values())
    assert m.find("Innsatt rømte fra Froland fengsel") == ["agder-froland"]
    assert m.find("Agder fengsel, avdeling Froland stengt") == ["agder-froland"]
    assert set(m.find("Uro i Agder fengsel")) == {"agder-froland", "agder-mandal"}
    assert m.find("Friomsorgen i Oslo og Ila fengsel") == ["oslo-friomsorg", "ila"]
    assert m.find("Strømbrudd i Kristiansand") == []
    assert m.find("Hildenfengselet") == []


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        yield running


@pytest.fixture
async def producer(tmp_path: Path, kafka: EmbeddedBroker) -> AsyncIterator[EventProducer]:
    p = EventProducer(
        bootstrap=kafka.bootstrap,
        outbox_path=tmp_path / "outbox-bridge-media.db",
        topic_partitions=partitions(),
        send_timeout=2.0,
    )
    await p.start()
    yield p
    await p.stop()


@pytest.mark.broker
async def test_feeds_become_articles_naming_units_and_open_incidents(
    feed_server: tuple[str, Path],
    kafka: EmbeddedBroker,
    producer: EventProducer,
    database_url: str,
) -> None:
    base, root = feed_server
    engine = make_engine(database_url)
    await migrate(engine)
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        incident, _ = await open_incident(
            session,
            incident=IncidentCreate(
                type="violence", title="Vold mot ansatt", unit="ringerike", severity=3
            ),
            actor="user:test",
        )
        drill, _ = await open_incident(
            session,
            incident=IncidentCreate(
                type="escape", title="Øvelse rømning", unit="halden", severity=3, exercise="ov-1"
            ),
            actor="user:test",
        )
        await session.commit()
    monitor = root / "monitor.json"
    monitor.write_text(monitor.read_text().replace("__INCIDENT__", incident.id))
    incidents = await open_incidents(sessions)
    await engine.dispose()
    assert [i.id for i in incidents] == [incident.id]  # the exercise incident is never linked

    matcher, units = UnitMatcher(ORG.units.values()), set(ORG.units)
    async with httpx.AsyncClient(timeout=10) as client:
        rss_state, json_state = FeedState(), FeedState()
        rss = await poll_once(
            client, f"{base}/nyheter.rss", producer=producer, matcher=matcher,
            incidents=incidents, known_units=units, state=rss_state,
        )  # fmt: skip
        assert rss.produced == ["fvn-2026-11-22-0001", "nrk-2026-11-22-0002"]
        assert rss.skipped == 1  # the power cut names no unit
        js = await poll_once(
            client, f"{base}/monitor.json", producer=producer, matcher=matcher,
            incidents=incidents, known_units=units, state=json_state,
        )  # fmt: skip
        assert js.produced == ["mw-881", "mw-882"]
        again = await poll_once(
            client, f"{base}/nyheter.rss", producer=producer, matcher=matcher,
            incidents=incidents, known_units=units, state=rss_state,
        )  # fmt: skip
        assert again.produced == []  # 304 Not Modified (If-Modified-Since)
        rss_state.etag = rss_state.modified = None
        again = await poll_once(
            client, f"{base}/nyheter.rss", producer=producer, matcher=matcher,
            incidents=incidents, known_units=units, state=rss_state,
        )  # fmt: skip
        assert again.produced == [] and again.already_seen == 2

    got = {v["id"]: (k, v) for k, v in await read_topic(kafka.bootstrap, topics.EVENTS, count=4)}
    assert len(got) == 4
    key, escape = got["fvn-2026-11-22-0001"]
    assert key == b"agder-froland" and escape["type"] == "no.kriminalomsorgen.media.article"
    assert escape["source"] == "/media/127.0.0.1:" + base.rsplit(":", 1)[1]
    assert escape["data"]["mentions_units"] == ["agder-froland"]
    assert escape["data"]["sentiment"] == "negative"  # lexicon: rømte, kritikk, bekymret
    assert escape["data"]["outlet"] == "Medieovervåking – Kriminalomsorgen"
    assert escape["data"]["published"] == "2026-11-22T06:15:00Z"
    _, halden = got["nrk-2026-11-22-0002"]
    assert halden["data"]["sentiment"] == "negative"  # the feed's word wins over the lexicon
    assert halden["data"]["key_media"] is True
    key, vg = got["mw-881"]
    assert key == b"ringerike"
    assert vg["data"]["mentions_incidents"] == [incident.id]
    assert vg["data"]["sentiment"] == "negative" and vg["data"]["outlet"] == "VG"
    assert got["mw-882"][1]["unit"] == "oslo-friomsorg"
    assert got["mw-882"][1]["data"]["sentiment"] == "neutral"
    assert drill.id not in str(got)


def test_parse_feed_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_feed(b'{"items": 2}')
    with pytest.raises(ValueError):
        parse_feed(b"\x00\x01 not a feed <<<")


@pytest.mark.broker
@pytest.mark.slow
async def test_crisis_bridge_media_command_once(
    feed_server: tuple[str, Path], kafka: EmbeddedBroker, tmp_path: Path
) -> None:
    base, _ = feed_server
    settings = Settings(data_dir=tmp_path / "cli")
    settings.data_dir.mkdir()
    engine = make_engine(settings.effective_database_url)
    await migrate(engine)
    await engine.dispose()
    env = dict(
        os.environ,
        CRISIS_KAFKA_BOOTSTRAP=kafka.bootstrap,
        CRISIS_DATA_DIR=str(tmp_path / "cli"),
    )
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "crisis"),
        "bridge", "media", "--feed", f"{base}/nyheter.rss", "--once",
        env=env,
    )  # fmt: skip
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    got = await read_topic(kafka.bootstrap, topics.EVENTS, count=2)
    assert sorted(v["id"] for _, v in got) == ["fvn-2026-11-22-0001", "nrk-2026-11-22-0002"]


# --- heavy and hostile feeds (issue 15) -------------------------------------------------------


def _big_feed(items: int, every: int = 1) -> bytes:
    """An RSS feed of ``items`` articles (about 1 kB each), every ``every``th about Froland
    fengsel, the others naming no unit."""
    body = "".join(
        f"<item><title>Sak {i}: {'uro ved Froland fengsel' if i % every == 0 else 'ras'}</title>"
        f"<link>https://www.fvn.example.invalid/sak-{i}</link><guid>stor-{i}</guid>"
        f"<description>{'Lang tekst om fengselet. ' * 30}</description>"
        "<pubDate>Sun, 22 Nov 2026 06:15:00 +0000</pubDate></item>"
        for i in range(items)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Stor</title>'
        f"{body}</channel></rss>"
    ).encode()


async def _held_during(work: Awaitable[T]) -> tuple[T, float]:
    """(what ``work`` returns, the longest the event loop was held while it ran)."""
    done = asyncio.Event()
    gaps: list[float] = [0.0]

    async def tick() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            gaps.append(time.perf_counter() - start - 0.01)

    ticker = asyncio.create_task(tick())
    try:
        result = await work
    finally:
        done.set()
        await ticker
    return result, max(gaps)


async def _bridge_once(url: str, settings: Settings, producer: EventProducer) -> None:
    await run_bridge([url], settings=settings, producer=producer, interval=60, once=True)


@pytest.mark.broker
async def test_a_big_feed_is_parsed_and_matched_off_the_loop(
    feed_server: tuple[str, Path], producer: EventProducer
) -> None:
    base, root = feed_server
    (root / "stor.rss").write_bytes(_big_feed(1500, every=10))  # what is sent is not measured
    matcher = UnitMatcher(ORG.units.values())
    async with httpx.AsyncClient(timeout=30) as client:
        poll = poll_once(
            client, f"{base}/stor.rss", producer=producer, matcher=matcher,
            incidents=[], known_units=set(ORG.units), state=FeedState(),
        )  # fmt: skip
        result, held = await _held_during(poll)
    print(f"\nmedia bridge: 1,500-item feed, event loop held at most {held * 1000:.0f} ms")
    assert held < 0.5, "parsing and matching (seconds of CPU) ran in the loop"
    assert result.not_read == 1000  # the default item limit: 500
    assert len(result.produced) == 50 and result.skipped == 450


@pytest.mark.broker
async def test_the_item_limit_is_a_setting(
    feed_server: tuple[str, Path],
    kafka: EmbeddedBroker,
    producer: EventProducer,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    base, root = feed_server
    (root / "stor.rss").write_bytes(_big_feed(1500))
    limited = settings.model_copy(update={"media_feed_max_items": 100})
    with caplog.at_level(logging.INFO, logger="crisis.bridge.media"):
        await _bridge_once(f"{base}/stor.rss", limited, producer)
    assert "1500 items, the first 100 read (CRISIS_MEDIA_FEED_MAX_ITEMS)" in caplog.text
    got = await read_topic(kafka.bootstrap, topics.EVENTS, count=101, within=5)
    assert sorted(v["id"] for _, v in got) == sorted(f"stor-{i}" for i in range(100))


@pytest.mark.broker
async def test_a_feed_past_the_size_limit_is_not_parsed_and_nothing_sent(
    feed_server: tuple[str, Path],
    kafka: EmbeddedBroker,
    producer: EventProducer,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    base, root = feed_server
    (root / "stor.rss").write_bytes(_big_feed(1500))  # about 1.4 MB
    small = settings.model_copy(update={"media_feed_max_bytes": 1_048_576})
    with caplog.at_level(logging.INFO, logger="crisis.bridge.media"):
        await _bridge_once(f"{base}/stor.rss", small, producer)
    assert "larger than the limit of 1048576 bytes (CRISIS_MEDIA_FEED_MAX_BYTES)" in caplog.text
    assert await read_topic(kafka.bootstrap, topics.EVENTS, count=1, within=3) == []


def test_feeds_expand_no_entities_and_deep_json_is_refused() -> None:
    lol = "".join(f'<!ENTITY l{i} "{(f"&l{i - 1};" if i else "lol") * 10}">' for i in range(10))
    bomb = (
        f'<?xml version="1.0"?><!DOCTYPE rss [{lol}'
        '<!ENTITY x SYSTEM "file:///etc/passwd">]><rss version="2.0"><channel><title>t</title>'
        "<item><title>&l9; &x; Froland fengsel</title><link>https://x.invalid/1</link></item>"
        "</channel></rss>"
    ).encode()
    with pytest.raises(FeedError, match="well-formed"):  # refused whole, nothing expanded
        parse_feed(bomb)
    with pytest.raises(ValueError, match="deeper than the limit"):
        parse_feed(b'{"items": ' + b"[" * 5000 + b"]" * 5000 + b"}")


# --- names, not places; feeds that fail loudly (issue 20) -------------------------------------


def _rss(items: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>NRK</title>'
        f"{items}</channel></rss>"
    ).encode()


def _item(guid: str, title: str, description: str = "") -> str:
    return (
        f"<item><title>{title}</title><link>https://www.nrk.example.invalid/{guid}</link>"
        f"<guid>{guid}</guid><description>{description}</description>"
        "<pubDate>Thu, 03 Dec 2026 06:15:00 +0000</pubDate></item>"
    )


def test_units_are_matched_by_name_and_alias_never_by_a_bare_place_name() -> None:
    m = UnitMatcher(ORG.units.values())
    assert m.find("Kraftig snøfall i Bergen i helgen") == []
    assert m.find("Rømning fra Bergen fengsel") == ["bergen"]
    assert m.find("Uro i fengselet i Bergen") == ["bergen"]
    assert m.find("Ny leder ved Bergen kretsfengsel") == ["bergen"]  # alias in the demo file
    assert m.find("Trafikkaos i Trondheim, Stavanger og Froland") == []
    assert m.find("Innsatt rømte fra fengselet på Froland") == ["agder-froland"]
    # an alias without an institution word still names the unit: a person chose it
    bergen = ORG.units["bergen"].model_copy(update={"aliases": ("Bergensfengselet",)})
    assert UnitMatcher([bergen]).find("Bråk på Bergensfengselet i natt") == ["bergen"]


@pytest.mark.parametrize("unit_id", sorted(ORG.units))
def test_no_unit_is_named_by_its_place_or_its_id_alone(unit_id: str) -> None:
    unit = ORG.units[unit_id]
    m = UnitMatcher(ORG.units.values())
    place = unit.name.split(",")[0].split()[0]
    assert m.find(f"Snøfall i {place} i helgen, stengte veier rundt {unit.id}") == []
    assert unit_id in m.find(f"Nyheter: {unit.name} melder rolig natt")


def test_summaries_are_plain_text_with_entities_decoded() -> None:
    rss = _rss(
        _item(
            "nrk-1",
            "Rømning fra Bergen fengsel",
            "&lt;p&gt;Politiet &amp;amp; &lt;b&gt;kriminalomsorgen&lt;/b&gt; leter.&lt;/p&gt;"
            "&lt;script&gt;alert(1)&lt;/script&gt;"
            "&lt;p&gt;Mer i &amp;laquo;NRK&amp;raquo;&lt;/p&gt;",
        )
    )
    (item,) = parse_feed(rss)
    assert item.summary == "Politiet & kriminalomsorgen leter. Mer i «NRK»"
    (js,) = parse_feed(
        b'[{"id": "vg-1", "url": "https://vg.example.invalid/1", "title": "Bergen fengsel",'
        b' "summary": "<p>Bl&aring;lys &amp; <i>sirener</i></p>"}]'
    )
    assert js.summary == "Blålys & sirener"


@pytest.mark.parametrize(
    "body",
    [
        _rss(_item("a", "Rømning fra Bergen fengsel"))[:130],  # cut inside the first item
        _rss(_item("a", "Rømning fra Bergen fengsel") + _item("b", "Bergen fengsel"))[:-40],
        b"",
        b"  \n",
        b"<html><body><h1>Siden finnes ikke</h1></body></html>",
        b"Service Unavailable",
    ],
    ids=["cut-in-first-item", "cut-at-end", "empty", "blank", "html-page", "text"],
)
def test_a_broken_empty_or_non_feed_body_is_refused_whole(body: bytes) -> None:
    with pytest.raises(FeedError):
        parse_feed(body)


def test_a_feed_with_no_items_is_not_an_error() -> None:
    assert parse_feed(_rss("")) == []


@pytest.mark.broker
async def test_failing_feeds_are_logged_errors_and_add_no_phantom_article(
    feed_server: tuple[str, Path],
    kafka: EmbeddedBroker,
    producer: EventProducer,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    base, root = feed_server
    (root / "cut.rss").write_bytes(_rss(_item("cut-1", "Storm: Bergen fengsel stengt"))[:150])
    (root / "empty.rss").write_bytes(b"")
    (root / "side.html").write_bytes(b"<html><body><p>Velkommen</p></body></html>")
    (root / "ok.rss").write_bytes(
        _rss(
            _item("nrk-sno", "Kraftig snøfall i Bergen i helgen")
            + _item("nrk-romning", "Rømning fra Bergen fengsel", "&lt;b&gt;Politiet&lt;/b&gt;")
        )
    )
    feeds = [f"{base}/{name}" for name in ("cut.rss", "missing.rss", "empty.rss", "side.html")]
    with caplog.at_level(logging.INFO, logger="crisis.bridge.media"):
        failed = await run_bridge(
            [*feeds, f"{base}/ok.rss"], settings=settings, producer=producer, interval=60,
            once=True,
        )  # fmt: skip
    assert failed == 4
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert sorted(r.args[0] for r in errors) == sorted(feeds)  # type: ignore[index]
    assert "404" in caplog.text and "well-formed" in caplog.text and "empty" in caplog.text
    assert "skipped (names no unit or open incident): Kraftig snøfall i Bergen" in caplog.text
    got = await read_topic(kafka.bootstrap, topics.EVENTS, count=3, within=5)
    assert [v["id"] for _, v in got] == ["nrk-romning"]
    ((_, article),) = got
    assert article["unit"] == "bergen" and article["data"]["summary"] == "Politiet"


@pytest.mark.broker
@pytest.mark.slow
async def test_crisis_bridge_media_once_exits_1_on_a_truncated_feed(
    feed_server: tuple[str, Path], kafka: EmbeddedBroker, tmp_path: Path
) -> None:
    base, root = feed_server
    (root / "cut.rss").write_bytes(_rss(_item("cut-1", "Bergen fengsel"))[:150])
    env = dict(
        os.environ,
        CRISIS_KAFKA_BOOTSTRAP=kafka.bootstrap,
        CRISIS_DATA_DIR=str(tmp_path / "cli"),
    )
    (tmp_path / "cli").mkdir()
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "crisis"),
        "bridge", "media", "--feed", f"{base}/cut.rss", "--feed", f"{base}/nyheter.rss", "--once",
        env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, stderr.decode()
    assert f"ERROR crisis.bridge.media feed {base}/cut.rss: not a well-formed" in stderr.decode()
    got = await read_topic(kafka.bootstrap, topics.EVENTS, count=3, within=5)
    assert sorted(v["id"] for _, v in got) == ["fvn-2026-11-22-0001", "nrk-2026-11-22-0002"]
