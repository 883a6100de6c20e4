"""The overview map: Norway's outline (shipped, offline) and unit dots, as inline SVG.

Web Mercator is used so that, when a tile server is configured (``CRISIS_MAP_TILE_URL``,
e.g. ``https://tiles.example/{z}/{x}/{y}.png``), tiles at zoom 5 line up under the dots. With
no tile server the outline in ``static/norway.geojson`` is drawn; nothing is downloaded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from crisis.domain.organisation import Organisation

STATIC = Path(__file__).parent / "static"
ZOOM = 5
TILE = 256
# The frame: lon 3.5..32, lat 57.5..71.6, in Web Mercator pixels at ZOOM.
WEST, EAST, SOUTH, NORTH = 3.5, 32.0, 57.5, 71.6


def _px(lon: float, lat: float) -> tuple[float, float]:
    n = TILE * 2**ZOOM
    x = (lon + 180.0) / 360.0 * n
    y = 1 - math.log(math.tan(math.radians(lat)) + 1 / math.cos(math.radians(lat))) / math.pi
    return x, y / 2 * n


_X0, _Y0 = _px(WEST, NORTH)
_X1, _Y1 = _px(EAST, SOUTH)
WIDTH, HEIGHT = round(_X1 - _X0), round(_Y1 - _Y0)


def project(lon: float, lat: float) -> tuple[float, float]:
    x, y = _px(lon, lat)
    return round(x - _X0, 1), round(y - _Y0, 1)


@cache
def outline_paths() -> tuple[str, ...]:
    data = json.loads((STATIC / "norway.geojson").read_text())
    paths = []
    for feature in data["features"]:
        for polygon in feature["geometry"]["coordinates"]:
            for ring in polygon:
                pts = [project(lon, lat) for lon, lat in ring]
                paths.append("M" + " L".join(f"{x},{y}" for x, y in pts) + " Z")
    return tuple(paths)


@dataclass(frozen=True)
class Tile:
    href: str
    x: float
    y: float


def tiles(url: str | None) -> list[Tile]:
    if not url:
        return []
    out = []
    tx0, ty0 = int(_X0 // TILE), int(_Y0 // TILE)
    tx1, ty1 = int(_X1 // TILE), int(_Y1 // TILE)
    for tx in range(tx0, tx1 + 1):
        for ty in range(ty0, ty1 + 1):
            href = url.replace("{z}", str(ZOOM)).replace("{x}", str(tx)).replace("{y}", str(ty))
            out.append(Tile(href, tx * TILE - _X0, ty * TILE - _Y0))
    return out


@dataclass(frozen=True)
class Dot:
    unit: str
    name: str
    x: float
    y: float
    severity: int  # 0 = no open incident
    exercise_only: bool
    count: int


def dots(org: Organisation, worst: dict[str, tuple[int, bool, int]]) -> list[Dot]:
    """One dot per unit; ``worst[unit] = (max severity, only exercises?, open count)``."""
    out = []
    for unit in org.units.values():
        sev, exercise_only, count = worst.get(unit.id, (0, False, 0))
        x, y = project(unit.lon, unit.lat)
        out.append(Dot(unit.id, unit.name, x, y, sev, exercise_only, count))
    # Worst last, so it is drawn on top.
    return sorted(out, key=lambda d: (d.severity, not d.exercise_only))
