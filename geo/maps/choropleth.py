"""The ward dashboard's classes, palettes and legend rows: pure functions, no database.

Classes come from mapclassify (quantiles or Fisher–Jenks, the reader's choice). Each
measure has one colour-blind-safe matplotlib colour map, named here so that the dashboard
and notebook 03 draw the same ramp:

* counts (``count``) rise on viridis, light to dark;
* median hours to resolve rise on cividis, light to dark (longer is darker);
* the share resolved within SLA runs on ColorBrewer's PiYG from 0 to 1: a low share is
  magenta, a high share is green, so good is visibly good. PiYG is a diverging ramp that
  ColorBrewer lists as safe for colour-blind readers, unlike red-yellow-green.

A share or a median over a handful of resolved reports means little, so a ward with fewer
than ``MIN_RESOLVED`` resolved reports is not classed or coloured by its value: it is drawn
grey with a dashed outline and listed in the legend as "too few reports".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_hex

CLASS_METHODS = ("quantiles", "fisher_jenks")
"""How the dashboard can cut a measure into classes; ``quantiles`` is the default."""

K_MIN = 2
K_MAX = 7
K_DEFAULT = 5
"""How many classes a reader may ask for, and the default."""

MIN_RESOLVED = 5
"""Fewest resolved reports behind a share within SLA or a median time to resolve before a
ward is coloured by it; below this it is marked "too few reports"."""

SLA_SHARE_CMAP = "PiYG"
"""The ramp for the share resolved within SLA, over 0 to 1 (dashboard and notebook 03)."""

MEASURE_CMAPS = {"count": "viridis_r", "sla": SLA_SHARE_CMAP, "median_hours": "cividis_r"}
"""The matplotlib colour map of each dashboard measure."""

NEEDS_RESOLVED = frozenset({"sla", "median_hours"})
"""Measures computed over resolved reports, which need ``MIN_RESOLVED`` of them."""

TOO_FEW_COLOUR = "#bdbdbd"
"""The fill of a ward with too few reports (drawn with a dashed outline too)."""

TOO_FEW_DASH = "4 4"
"""The dashed outline of a ward with too few reports: the mark is a shape, not only grey."""


@dataclass(frozen=True, slots=True)
class LegendClass:
    """One class of the legend: its value range, colour and the counts behind it."""

    low: float
    high: float
    colour: str
    wards: int
    reports: int
    resolved: int


@dataclass(frozen=True, slots=True)
class Classification:
    """Each ward's colour (``None``: too few reports), the legend's classes, the too-few tally."""

    colours: list[str | None]
    classes: list[LegendClass]
    too_few_wards: int
    too_few_reports: int
    too_few_resolved: int


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(float(value))


def class_bins(values: Sequence[float], *, method: str, k: int) -> tuple[list[float], list[int]]:
    """Upper class edges and each value's class index, from mapclassify.

    With no more distinct values than ``k``, each distinct value is a class of its own
    (mapclassify cannot make more classes than there are values); one value is one class.
    """
    if method not in CLASS_METHODS:
        raise ValueError(f"method must be one of {', '.join(CLASS_METHODS)}")
    if not K_MIN <= k <= K_MAX:
        raise ValueError(f"k must be from {K_MIN} to {K_MAX}")
    if not values:
        return [], []
    array = np.asarray(values, dtype=float)
    distinct = np.unique(array)
    if len(distinct) <= k:
        # No more values than classes: each value is its own class (quantiles would merge
        # tied values into fewer classes than there are values, and Fisher–Jenks refuses).
        return [float(v) for v in distinct], [int(i) for i in np.searchsorted(distinct, array)]
    # Imported here: mapclassify brings scipy, scikit-learn and pyplot, about 2.5 s of every
    # server's and command's start, and only the ward dashboard classes values.
    import mapclassify

    with warnings.catch_warnings():
        # Ties can still leave fewer quantile edges than k; mapclassify says so and merges.
        warnings.simplefilter("ignore", UserWarning)
        if method == "quantiles":
            classes = mapclassify.Quantiles(array, k=k)
        else:
            classes = mapclassify.FisherJenks(array, k=k)
    return [float(edge) for edge in classes.bins], [int(c) for c in classes.yb]


def class_colours(measure: str, lows: Sequence[float], highs: Sequence[float]) -> list[str]:
    """One colour per class.

    A share's class takes the ramp's colour at the middle of its range on the fixed 0 to 1
    scale (notebook 03 maps shares with ``vmin=0, vmax=1``), so 90% is always green and 20%
    always magenta. Other measures spread their classes evenly from light to dark.
    """
    cmap = colormaps[MEASURE_CMAPS[measure]]
    n = len(highs)
    if measure == "sla":
        spots = [min(max((lo + hi) / 2, 0.0), 1.0) for lo, hi in zip(lows, highs, strict=True)]
    elif n == 1:
        spots = [0.5]
    else:
        # Keep off the palest end so the lightest class still shows against the tiles.
        spots = [0.1 + 0.9 * i / (n - 1) for i in range(n)]
    return [to_hex(cmap(spot)) for spot in spots]


def classify(
    measure: str,
    values: Sequence[float | None],
    reports: Sequence[int],
    resolved: Sequence[int],
    *,
    method: str = "quantiles",
    k: int = K_DEFAULT,
) -> Classification:
    """Class the wards' ``values`` of ``measure`` and colour each ward by its class.

    ``reports`` and ``resolved`` are each ward's counts behind its value. A ward whose value
    is missing, or (for a share or a median) rests on fewer than ``MIN_RESOLVED`` resolved
    reports, gets no colour and is counted among the too-few wards.
    """
    usable = [
        not _missing(v) and (measure not in NEEDS_RESOLVED or n >= MIN_RESOLVED)
        for v, n in zip(values, resolved, strict=True)
    ]
    kept = [float(v) for v, ok in zip(values, usable, strict=True) if ok and v is not None]
    highs, members = class_bins(kept, method=method, k=k)
    lows = [min(kept), *highs[:-1]] if highs else []
    palette = class_colours(measure, lows, highs) if highs else []
    colours: list[str | None] = []
    wards = [0] * len(highs)
    class_reports = [0] * len(highs)
    class_resolved = [0] * len(highs)
    member = iter(members)
    for ok, n_reports, n_resolved in zip(usable, reports, resolved, strict=True):
        if not ok:
            colours.append(None)
            continue
        index = next(member)
        colours.append(palette[index])
        wards[index] += 1
        class_reports[index] += int(n_reports)
        class_resolved[index] += int(n_resolved)
    return Classification(
        colours=colours,
        classes=[
            LegendClass(lo, hi, colour, w, r, s)
            for lo, hi, colour, w, r, s in zip(
                lows, highs, palette, wards, class_reports, class_resolved, strict=True
            )
        ],
        too_few_wards=usable.count(False),
        too_few_reports=sum(int(r) for r, ok in zip(reports, usable, strict=True) if not ok),
        too_few_resolved=sum(int(r) for r, ok in zip(resolved, usable, strict=True) if not ok),
    )
