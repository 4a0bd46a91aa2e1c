"""Which AMS tray or external spool feeds each filament of a plate (protocol.md §1.5.5-1.5.6).

A plate filament (slice_info `type`, `color` "#RRGGBB", `used_g`, §7.2) matches a loaded tray
with the same `tray_type`, case-insensitive (the sub-brand, "PLA Basic", is not compared), and
the same colour: `tray_color` is RRGGBBAA and its alpha byte is ignored. A job may allow a
colour tolerance, a CIE76 ΔE in Lab space (about 2.3 is the smallest difference people notice);
exact matches are still preferred.

Grams left on a tray are `remain` percent x `tray_weight`, known only for RFID spools with
remain estimation on; otherwise (`remain` -1, weight 0) the tray is accepted and the choice is
marked unverified. Two filaments may share one tray, which must then hold both their grams.

Feeds: a single-nozzle printer prints one job from its AMS units or from its external spool,
never both (Bambu Studio refuses the mix: BambuStudio issues #2493, #8797), so the AMS is tried
first and the external spool second. A dual-nozzle printer feeds each nozzle from its own AMS
units and external spool; which filament goes to which nozzle is the slicer's grouping, which
`PlateFilament` does not carry, so every tray is one feed and the firmware checks the rest.

Tray choice per filament, largest need first: exact colour, then trays whose grams are known to
suffice, then the most grams left, then AMS before external, then the lowest tray id.

A `FilamentMatcher` lives for one dispatch round. Which trays hold a plate's filaments is
memoised per (plate, palette): a palette is what is loaded where without the grams, and farms
load many printers alike. A "missing" message depends only on which filaments are absent, so
it is built once per plate and combination, not once per printer.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from bambufarm.protocol.ams import Ams, AmsTray
from bambufarm.protocol.ams_commands import (
    AMS_HT_FIRST,
    AMS_HT_LAST,
    AMS_SLOTS,
    AMS_UNITS,
    EXTERNAL_LEFT,
    EXTERNAL_SPOOL,
)
from bambufarm.protocol.threemf import PlateFilament

__all__ = [
    "FilamentMatcher",
    "FilamentNeed",
    "FilamentPlan",
    "FilamentShortfall",
    "LoadedTray",
    "Loadout",
    "PlateNeeds",
    "PlatePlanner",
    "TrayChoice",
    "delta_e",
    "parse_colour",
]

# sRGB (IEC 61966-2-1) → CIE XYZ under D65 → CIE Lab; constants of the standard.
_D65 = (0.95047, 1.0, 1.08883)
_LAB_EPSILON = (6 / 29) ** 3
_LAB_SLOPE = 3 * (6 / 29) ** 2


@dataclass(frozen=True, slots=True)
class FilamentNeed:
    """One filament of a plate, normalised for matching."""

    slot: int  # 1-based slice_info filament id; ams_mapping[slot - 1] gets its tray
    type_key: str  # casefolded material, "" when the file does not say
    type_label: str  # as written, e.g. "PLA"
    rgb: int | None  # 0xRRGGBB, None when the file does not say
    grams: float | None  # used_g, None when the file does not say
    label: str  # e.g. "PLA #FFFFFF", as operators read it in the slicer
    key: tuple[str, int | None]  # (type_key, rgb), for exact lookups


@dataclass(frozen=True, slots=True)
class PlateNeeds:
    """What a plate asks of a printer's filament: its filaments and the colour tolerance."""

    filaments: tuple[FilamentNeed, ...]  # by slot
    tolerance: float  # CIE76 ΔE; 0 = the same RRGGBB
    width: int  # length of ams_mapping: the highest slot
    exact: bool  # no tolerance and every filament names material and colour
    keys: tuple[tuple[str, int | None], ...]  # (material, colour) per filament


@dataclass(frozen=True, slots=True)
class LoadedTray:
    """A tray with a spool whose material is known, as matching sees it."""

    tray_id: int  # global id as ams_mapping takes it: 0-127 AMS, 128-135 AMS HT, 254/255
    external: bool
    location: str  # "AMS 1 slot 2", "AMS HT 1", "external spool", "left external spool"
    type_key: str
    type_label: str
    rgb: int | None  # None when the tray reports no readable colour
    grams_left: float | None  # None when unknown (non-RFID spool, remain -1)


@dataclass(frozen=True, slots=True)
class Loadout:
    """A printer's loaded trays and whether AMS and external spool are separate feeds."""

    trays: tuple[LoadedTray, ...]  # AMS trays by id, then external spools
    split: bool  # True when AMS and external spool are separate feeds (single nozzle, both)
    # What is loaded where, without the grams: printers loaded alike share it (and its memo),
    # even when every spool has a different amount left.
    palette: tuple[tuple[str, int | None, bool, str], ...] = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TrayChoice:
    """The tray chosen for one filament of a plate."""

    slot: int  # 1-based plate filament id
    tray_id: int  # global tray id for ams_mapping
    location: str
    type: str  # the tray's material, e.g. "PLA"
    color: str  # "#RRGGBB", "" when the tray reports none
    grams_needed: float | None  # this filament's used_g
    grams_left: float | None  # before this job, None when unknown

    @property
    def verified(self) -> bool:
        """True when both the grams needed and the grams on the tray are known."""
        return self.grams_needed is not None and self.grams_left is not None


@dataclass(frozen=True, slots=True)
class FilamentPlan:
    """A tray for every filament of the plate."""

    choices: tuple[TrayChoice, ...]  # by slot


@dataclass(frozen=True, slots=True)
class FilamentShortfall:
    """Why a printer's trays cannot feed the plate: a material/colour missing, or too little."""

    missing: bool  # True: no tray of that material and colour; False: not enough grams
    detail: str


def parse_colour(text: str | None) -> int | None:
    """0xRRGGBB from "#RGB", "#RRGGBB", "RRGGBBAA" (alpha ignored); None for absent or odd text."""
    if not text:
        return None
    digits = text.strip().removeprefix("#")
    if len(digits) == 3:
        digits = "".join(ch * 2 for ch in digits)
    if len(digits) not in (6, 8):
        return None
    try:
        return int(digits[:6], 16)
    except ValueError:
        return None


def _linear(channel: int) -> float:
    """An sRGB channel (0-255) as linear light."""
    value = channel / 255
    return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4


def _lab_f(t: float) -> float:
    return t ** (1 / 3) if t > _LAB_EPSILON else t / _LAB_SLOPE + 4 / 29


def _lab(rgb: int) -> tuple[float, float, float]:
    """CIE Lab (D65) of an sRGB colour."""
    r, g, b = _linear(rgb >> 16 & 0xFF), _linear(rgb >> 8 & 0xFF), _linear(rgb & 0xFF)
    fx = _lab_f((0.4124 * r + 0.3576 * g + 0.1805 * b) / _D65[0])
    fy = _lab_f((0.2126 * r + 0.7152 * g + 0.0722 * b) / _D65[1])
    fz = _lab_f((0.0193 * r + 0.1192 * g + 0.9505 * b) / _D65[2])
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def delta_e(rgb_a: int, rgb_b: int) -> float:
    """CIE76 colour difference of two 0xRRGGBB colours (0 = same; ~2.3 just noticeable)."""
    la, aa, ba = _lab(rgb_a)
    lb, ab, bb = _lab(rgb_b)
    return math.dist((la, aa, ba), (lb, ab, bb))


def _need(filament: PlateFilament) -> FilamentNeed:
    material = (filament.type or "").strip()
    rgb = parse_colour(filament.color)
    colour = "any colour" if rgb is None else f"#{rgb:06X}"
    label = f"{material or 'any material'} {colour}"
    return FilamentNeed(
        filament.slot,
        material.casefold(),
        material,
        rgb,
        filament.used_g,
        label,
        (material.casefold(), rgb),
    )


def _grams(remain: int, weight: int | None) -> float | None:
    """remain % x spool weight, None when either is unknown (remain -1, weight 0 or absent)."""
    if remain < 0 or weight is None or weight <= 0:
        return None
    return remain * weight / 100


def _colour_text(rgb: int | None) -> str:
    return "" if rgb is None else f"#{rgb:06X}"


def _grams_text(grams: float) -> str:
    return f"{grams:.0f} g"


@dataclass(frozen=True, slots=True)
class _Presence:
    """Which trays hold each filament's material and colour, and the feeds that have them all."""

    candidates: tuple[tuple[int, ...], ...]  # per filament: indices into Loadout.trays
    feeds: tuple[bool | None, ...]  # None: every tray; False: AMS only; True: external only


class FilamentMatcher:
    """Builds plate needs and printer loadouts for one dispatch round, sharing their memos."""

    __slots__ = ("_by_type", "_exact", "_labs", "_loadouts", "_palettes", "_planners")

    def __init__(self) -> None:
        # Interned values, so that memos can key on identity (an int hashes fast).
        self._planners: dict[PlateNeeds, PlatePlanner] = {}
        self._loadouts: dict[Loadout, Loadout] = {}
        self._palettes: dict[object, tuple[tuple[str, int | None, bool, str], ...]] = {}
        # palette -> (material, colour) -> tray indices: exact matching is one lookup
        self._exact: dict[int, dict[tuple[str, int | None], tuple[int, ...]]] = {}
        self._by_type: dict[int, dict[str, tuple[int, ...]]] = {}  # palette -> material -> trays
        self._labs: dict[int, tuple[float, float, float]] = {}

    def plate(self, filaments: Sequence[PlateFilament], tolerance: float) -> "PlatePlanner":
        """The planner for a plate's filaments (slots unique, ≥ 1) at this colour tolerance."""
        ordered = tuple(sorted((_need(f) for f in filaments), key=lambda n: n.slot))
        width = ordered[-1].slot if ordered else 0
        exact = tolerance <= 0 and all(n.type_key and n.rgb is not None for n in ordered)
        needs = PlateNeeds(ordered, tolerance, width, exact, tuple(n.key for n in ordered))
        planner = self._planners.get(needs)
        if planner is None:
            planner = self._planners[needs] = PlatePlanner(self, needs)
        return planner

    def loadout(self, ams: Ams, *, dual_nozzle: bool) -> Loadout:
        """The loaded trays of a printer's filament system."""
        trays: list[LoadedTray] = []
        for unit in ams.units:
            ht = AMS_HT_FIRST <= unit.id <= AMS_HT_LAST
            if not (ht or 0 <= unit.id < AMS_UNITS):
                continue  # an id ams_mapping cannot address
            for tray in unit.trays:
                if not tray.type or not 0 <= tray.id < (1 if ht else AMS_SLOTS):
                    continue
                if ht:
                    location = f"AMS HT {unit.id - AMS_HT_FIRST + 1}"
                else:
                    location = f"AMS {unit.id + 1} slot {tray.id + 1}"
                trays.append(_loaded(unit.global_tray_id(tray.id), False, location, tray))
        external = [tray for tray in ams.external if tray.type]
        if dual_nozzle:
            for tray in external:
                if tray.id in (EXTERNAL_SPOOL, EXTERNAL_LEFT):
                    side = "left" if tray.id == EXTERNAL_LEFT else "right"
                    trays.append(_loaded(tray.id, True, f"{side} external spool", tray))
        elif external:
            # One holder, reported as 254 by legacy firmware and 255 by newer (§1.5.6).
            trays.append(_loaded(EXTERNAL_SPOOL, True, "external spool", external[0]))
        trays.sort(key=lambda t: (t.external, t.tray_id))
        split = not dual_nozzle and 0 < sum(t.external for t in trays) < len(trays)
        palette = tuple((t.type_key, t.rgb, t.external, t.location) for t in trays)
        palette = self._palettes.setdefault((palette, split), palette)
        value = Loadout(tuple(trays), split, palette)
        return self._loadouts.setdefault(value, value)

    def exact_index(self, loadout: Loadout) -> dict[tuple[str, int | None], tuple[int, ...]]:
        """Tray indices by (material, colour) for a loadout's palette, memoised."""
        index = self._exact.get(id(loadout.palette))
        if index is None:
            index = self._exact[id(loadout.palette)] = {}
            for i, tray in enumerate(loadout.trays):
                key = (tray.type_key, tray.rgb)
                index[key] = (*index.get(key, ()), i)
        return index

    def type_index(self, loadout: Loadout) -> dict[str, tuple[int, ...]]:
        """Tray indices by material for a loadout's palette, memoised."""
        index = self._by_type.get(id(loadout.palette))
        if index is None:
            index = self._by_type[id(loadout.palette)] = {}
            for i, tray in enumerate(loadout.trays):
                index[tray.type_key] = (*index.get(tray.type_key, ()), i)
        return index

    def lab(self, rgb: int) -> tuple[float, float, float]:
        """CIE Lab of a colour, memoised."""
        lab = self._labs.get(rgb)
        if lab is None:
            lab = self._labs[rgb] = _lab(rgb)
        return lab


class PlatePlanner:
    """Tray choice for one plate's needs on any printer of the round, memoised per palette."""

    __slots__ = ("_matcher", "_missing", "_presence", "needs")

    def __init__(self, matcher: FilamentMatcher, needs: PlateNeeds) -> None:
        self._matcher = matcher
        self.needs = needs
        # Keyed by palette, not loadout: grams differ from printer to printer, what is loaded
        # where much less, and a printer holding every filament usually ends the job's scan.
        self._presence: dict[int, _Presence | FilamentShortfall] = {}
        self._missing: dict[int, FilamentShortfall] = {}  # absent-filament bits -> shortfall

    def plan(self, loadout: Loadout) -> FilamentPlan | FilamentShortfall:
        """A tray per filament on this printer, or why there is none."""
        presence = self._presence.get(id(loadout.palette))
        if presence is None:
            presence = self._presence[id(loadout.palette)] = self._find(loadout)
        if isinstance(presence, FilamentShortfall):
            return presence
        return _fill_feeds(self.needs, loadout.trays, presence)

    def _find(self, loadout: Loadout) -> _Presence | FilamentShortfall:
        """Which trays match each filament; a shortfall when one is nowhere (or feeds split)."""
        needs, trays = self.needs, loadout.trays
        if needs.exact:
            exact = self._matcher.exact_index(loadout)
            candidates = [exact.get(key, ()) for key in needs.keys]
        else:
            by_type = self._matcher.type_index(loadout)
            everything = tuple(range(len(trays)))
            candidates = [
                tuple(
                    i
                    for i in (by_type.get(n.type_key, ()) if n.type_key else everything)
                    if self._colour_fits(n.rgb, trays[i].rgb)
                )
                for n in needs.filaments
            ]
        if not all(candidates):
            return self._absent(candidates)
        if not loadout.split:
            return _Presence(tuple(candidates), (None,))
        feeds: list[bool | None] = []
        lacking: list[list[str]] = []
        for external in (False, True):  # the AMS first, then the external spool
            lacking.append(
                [
                    n.label
                    for n, found in zip(needs.filaments, candidates, strict=True)
                    if not any(trays[i].external is external for i in found)
                ]
            )
            if not lacking[-1]:
                feeds.append(external)
        if feeds:
            return _Presence(tuple(candidates), tuple(feeds))
        # Some filaments are only in the AMS, others only on the external spool.
        return FilamentShortfall(
            True,
            f"the AMS has no {', '.join(lacking[0])} and the external spool has no "
            f"{', '.join(lacking[1])}; a single-nozzle printer feeds one print from the "
            "AMS or from the external spool, not both",
        )

    def _colour_fits(self, wanted: int | None, have: int | None) -> bool:
        if wanted is None or wanted == have:
            return True
        tolerance = self.needs.tolerance
        if tolerance <= 0 or have is None:
            return False
        la, lb = self._matcher.lab(wanted), self._matcher.lab(have)
        dl, da, db = la[0] - lb[0], la[1] - lb[1], la[2] - lb[2]
        return math.sqrt(dl * dl + da * da + db * db) <= tolerance

    def _absent(self, candidates: Sequence[tuple[int, ...]]) -> FilamentShortfall:
        """ "no PLA #FFFFFF loaded (filament 1)", shared by printers missing the same filaments."""
        # Only which filaments are absent shapes the message, so a round with 200k such
        # pairs builds a handful of strings per plate.
        bits = 0
        for k, found in enumerate(candidates):
            if not found:
                bits |= 1 << k
        shortfall = self._missing.get(bits)
        if shortfall is None:
            text = "; ".join(
                f"no {n.label} loaded (filament {n.slot})"
                for n, found in zip(self.needs.filaments, candidates, strict=True)
                if not found
            )
            shortfall = self._missing[bits] = FilamentShortfall(True, text)
        return shortfall


def _loaded(tray_id: int, external: bool, location: str, tray: AmsTray) -> LoadedTray:
    material = tray.type.strip()
    return LoadedTray(
        tray_id,
        external,
        location,
        material.casefold(),
        material,
        parse_colour(tray.color),
        _grams(tray.remain, tray.weight_g),
    )


def _fill_feeds(
    needs: PlateNeeds, trays: tuple[LoadedTray, ...], presence: _Presence
) -> FilamentPlan | FilamentShortfall:
    """The first feed that has the grams for every filament, else the first feed's shortfall."""
    short: FilamentShortfall | None = None
    for external in presence.feeds:
        candidates = [
            tuple(trays[i] for i in found if external is None or trays[i].external is external)
            for found in presence.candidates
        ]
        attempt = _fill(needs, candidates)
        if isinstance(attempt, FilamentPlan):
            return attempt
        short = short or attempt
    assert short is not None  # noqa: S101 - presence.feeds is never empty
    return short


def _fill(
    needs: PlateNeeds, candidates: Sequence[tuple[LoadedTray, ...]]
) -> FilamentPlan | FilamentShortfall:
    """A tray per filament from its matching trays, largest need first so it gets the most."""
    taken: dict[int, float] = {}  # tray id -> grams already promised to larger filaments
    chosen: list[TrayChoice] = []
    order = sorted(
        zip(needs.filaments, candidates, strict=True),
        key=lambda p: (-(p[0].grams or 0.0), p[0].slot),
    )
    for need, found in order:
        wanted = need.grams or 0.0
        best: tuple[tuple[bool, bool, float, bool, int], LoadedTray] | None = None
        short: tuple[float, LoadedTray] | None = None  # the fullest tray that is too small
        for tray in found:
            left = tray.grams_left
            if left is not None:
                left -= taken.get(tray.tray_id, 0.0)
                # Known and too small, or known empty when the need is unknown.
                if left < wanted or left <= 0:
                    if short is None or left > short[0]:
                        short = (left, tray)
                    continue
            rank = (
                need.rgb is not None and need.rgb != tray.rgb,
                left is None,
                -(left or 0.0),
                tray.external,
                tray.tray_id,
            )
            if best is None or rank < best[0]:
                best = (rank, tray)
        if best is None:
            assert short is not None  # noqa: S101 - `found` is never empty
            left, tray = short
            return FilamentShortfall(
                False,
                f"{need.label} (filament {need.slot}): {_grams_text(wanted)} needed, "
                f"~{_grams_text(max(left, 0.0))} left on {tray.location}",
            )
        tray = best[1]
        if tray.grams_left is not None:
            taken[tray.tray_id] = taken.get(tray.tray_id, 0.0) + wanted
        chosen.append(
            TrayChoice(
                need.slot,
                tray.tray_id,
                tray.location,
                tray.type_label,
                _colour_text(tray.rgb),
                need.grams,
                tray.grams_left,
            )
        )
    chosen.sort(key=lambda c: c.slot)
    return FilamentPlan(tuple(chosen))
