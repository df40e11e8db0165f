"""Folium map builders: pure functions from plain data to a ``folium.Map``."""

from __future__ import annotations

import folium
import geopandas as gpd
from folium.plugins import HeatMap


def city_overview_map(
    *,
    wards: gpd.GeoDataFrame,
    zones: gpd.GeoDataFrame,
    heat: list[tuple[float, float, float]],
    tiles: str | None = "OpenStreetMap",
) -> folium.Map:
    """Wards, field-team zones and a heat layer of open reports.

    ``wards`` and ``zones`` have ``code``, ``name`` and ``geometry`` (zones also ``team``);
    ``heat`` holds (lat, lon, weight) cells.
    """
    fmap = folium.Map(tiles=tiles, control_scale=True)
    if len(wards):
        minx, miny, maxx, maxy = wards.total_bounds
        fmap.fit_bounds([[miny, minx], [maxy, maxx]])
        folium.GeoJson(
            wards[["code", "name", wards.geometry.name]],
            name="Wards",
            style_function=lambda _: {"color": "#444", "weight": 1, "fillOpacity": 0.03},
            tooltip=folium.GeoJsonTooltip(fields=["code", "name"], aliases=["Ward", "Name"]),
        ).add_to(fmap)
    if len(zones):
        folium.GeoJson(
            zones[["code", "name", "team", zones.geometry.name]],
            name="Team zones",
            style_function=lambda _: {
                "color": "#1f6feb",
                "weight": 3,
                "dashArray": "6 4",
                "fillOpacity": 0,
            },
            tooltip=folium.GeoJsonTooltip(fields=["name", "team"], aliases=["Zone", "Team"]),
        ).add_to(fmap)
    if heat:
        HeatMap([list(cell) for cell in heat], name="Open reports", radius=14).add_to(fmap)  # type: ignore[no-untyped-call]
    folium.LayerControl().add_to(fmap)
    return fmap
