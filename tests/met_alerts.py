"""CAP alerts built as MET Norway's metalerts 2.0 service writes them: a Norwegian and an
English info block, ``awareness_level`` / ``awareness_type`` parameters, polygons with
geocodes beside them, ``expires``; an Update names what it updates in ``references`` and
ends a warning with ``responseType`` AllClear."""

from __future__ import annotations

from collections.abc import Sequence

SENDER = "noreply@met.no"
#: Around Froland in Agder: Agder fengsel avdeling Froland (58.5296 N, 8.651 E) and no other unit.
FROLAND = "58.38,8.42 58.45,8.95 58.70,8.98 58.74,8.55 58.55,8.33 58.38,8.42"

_LEVELS = {  # level → (awareness_level, CAP severity, Norwegian, English)
    "yellow": ("2; yellow; Moderate", "Moderate", "gult nivå", "yellow level"),
    "orange": ("3; orange; Severe", "Severe", "oransje nivå", "orange level"),
    "red": ("4; red; Extreme", "Extreme", "rødt nivå", "red level"),
}


def reference(identifier: str, sent: str) -> str:
    return f"{SENDER},{identifier},{sent}"


def _info(
    language: str,
    *,
    level: str,
    response_type: str,
    area_desc: str,
    polygon: str | None,
    geocodes: Sequence[tuple[str, str]],
    sent: str,
    expires: str,
) -> str:
    awareness, severity, nb, en = _LEVELS[level]
    norwegian = language == "no"
    headline = f"Kraftige vindkast, {nb}, {area_desc}."
    if not norwegian:
        headline = f"Strong gusts, {en}, {area_desc}."
    description = (
        "Sørvestlig storm i kastene, 25-35 m/s."
        if norwegian
        else "South-westerly storm-force gusts, 25-35 m/s."
    )
    shape = f"<polygon>{polygon}</polygon>" if polygon else ""
    codes = "".join(
        f"<geocode><valueName>{name}</valueName><value>{value}</value></geocode>"
        for name, value in geocodes
    )
    return f"""
  <info>
    <language>{language}</language>
    <category>Met</category>
    <event>wind</event>
    <responseType>{response_type}</responseType>
    <urgency>Future</urgency>
    <severity>{severity}</severity>
    <certainty>Likely</certainty>
    <eventCode><valueName>eventType</valueName><value>wind</value></eventCode>
    <effective>{sent}</effective>
    <onset>{sent}</onset>
    <expires>{expires}</expires>
    <senderName>{"Meteorologisk institutt" if norwegian else "MET Norway"}</senderName>
    <headline>{headline}</headline>
    <description>{description}</description>
    <instruction>{"Sikre løse gjenstander." if norwegian else "Secure loose objects."}</instruction>
    <web>https://www.met.no/vaer-og-klima/ekstremvaervarsler-og-andre-farevarsler</web>
    <contact>https://www.met.no/kontakt-oss</contact>
    <parameter><valueName>awareness_level</valueName><value>{awareness}</value></parameter>
    <parameter><valueName>awareness_type</valueName><value>1; wind</value></parameter>
    <parameter><valueName>consequences</valueName><value>Strømbrudd.</value></parameter>
    <area>
      <areaDesc>{area_desc}</areaDesc>{shape}{codes}
      <altitude>0</altitude>
      <ceiling>274</ceiling>
    </area>
  </info>"""


def met_alert(
    identifier: str,
    *,
    msg_type: str = "Alert",
    sent: str = "2026-11-22T07:30:15+00:00",
    references: Sequence[str] = (),
    level: str = "yellow",
    response_type: str = "Monitor",
    area_desc: str = "Indre Agder",
    polygon: str | None = FROLAND,
    geocodes: Sequence[tuple[str, str]] = (("EMMA_ID", "NO013"),),
    expires: str = "2036-11-23T06:00:00+00:00",
    status: str = "Actual",
) -> bytes:
    """One alert; ``polygon=None`` leaves only the geocodes to place it."""
    refs = f"\n  <references>{' '.join(references)}</references>" if references else ""
    infos = "".join(
        _info(
            language,
            level=level,
            response_type=response_type,
            area_desc=area_desc,
            polygon=polygon,
            geocodes=geocodes,
            sent=sent,
            expires=expires,
        )
        for language in ("no", "en-GB")
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>{SENDER}</sender>
  <sent>{sent}</sent>
  <status>{status}</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>
  <code>system_version 2.1.0</code>{refs}{infos}
</alert>""".encode()
