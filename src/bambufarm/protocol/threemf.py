"""Metadata of Bambu `.gcode.3mf` files (protocol.md §7.2), read without extracting anything.

`read_3mf` opens the archive through `archive_guard` (every entry name, size and ratio checked),
parses `Metadata/slice_info.config` (XML), falls back to `Metadata/project_settings.config`
(JSON) for the printer model and nozzle, and reads only the first few KiB of each plate's
G-code for its header block. A 20 MB sliced file therefore costs a few reads of the central
directory and small entries, never the G-code body.

XML is parsed with the standard library after refusing any DTD (`<!DOCTYPE`/`<!ENTITY`): the
entity-expansion attacks ("billion laughs") all need one. Absent fields become None; present
but malformed ones raise ThreeMFError naming the entry and field.
"""

import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO, TypeVar
from xml.sax.saxutils import unescape

import orjson

from bambufarm.protocol.archive_guard import (
    DEFAULT_LIMITS,
    ArchiveEntry,
    ArchiveLimits,
    SafeArchive,
    open_archive,
    read_entry,
)
from bambufarm.protocol.errors import ModelError, NotSlicedError, ThreeMFError, UnsafeArchiveError
from bambufarm.protocol.models import model_by_product_name

__all__ = [
    "DEFAULT_LIMITS",
    "GCODE_HEADER_MAX_BYTES",
    "ArchiveEntry",
    "ArchiveLimits",
    "GcodeHeader",
    "Plate",
    "PlateFilament",
    "PlateObject",
    "ThreeMF",
    "parse_gcode_header",
    "read_3mf",
    "read_entry",
    "read_gcode_header",
]

SLICE_INFO = "Metadata/slice_info.config"
PROJECT_SETTINGS = "Metadata/project_settings.config"
MODEL = "3D/3dmodel.model"
# The header block is ~300 bytes at the very start of the G-code; 64 KiB leaves room for
# slicers that put comments first while bounding the work for a file without one.
GCODE_HEADER_MAX_BYTES = 64 * 1024
# A model's <metadata> elements precede its <resources>; 16 KiB holds them many times over.
_MODEL_HEAD_BYTES = 16 * 1024
_MD5_MAX_BYTES = 1024
_NOT_SLICED = "this is a project file; slice it and export the plate sliced file (.gcode.3mf)"

_GCODE_NAME = re.compile(r"Metadata/plate_([1-9][0-9]{0,3})\.gcode")
_MD5 = re.compile(r"[0-9A-Fa-f]{32}")
_HEX_COLOUR = re.compile(r"#?([0-9A-Fa-f]{3}|[0-9A-Fa-f]{6}|[0-9A-Fa-f]{8})")
_DURATION = re.compile(r"(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+(?:\.\d+)?)s)?", re.ASCII)
_APPLICATION = re.compile(rb'<metadata\s+name="Application"\s*>([^<]{1,200})</metadata>')
_HEADER_START = b"; HEADER_BLOCK_START"
_HEADER_END = b"; HEADER_BLOCK_END"

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class PlateFilament:
    """One filament a plate uses, as slice_info lists it."""

    slot: int  # 1-based filament id of the project; ams_mapping[slot - 1] picks its tray
    tray_info_idx: str | None  # filament preset id, e.g. "GFA01"
    type: str | None  # e.g. "PLA"
    color: str | None  # "#RRGGBB"
    used_g: float | None
    used_m: float | None


@dataclass(frozen=True, slots=True)
class PlateObject:
    """One printable object on a plate (ids are what skip_objects takes)."""

    identify_id: int
    name: str


@dataclass(frozen=True, slots=True)
class GcodeHeader:
    """What the `; HEADER_BLOCK_START` … `; HEADER_BLOCK_END` block of a plate states."""

    generator: str | None  # e.g. "BambuStudio 01.09.07.52"
    total_layers: int | None
    estimated_time_s: int | None  # "total estimated time", preparation included
    model_time_s: int | None  # "model printing time"


@dataclass(frozen=True, slots=True)
class Plate:
    """One sliced plate: its G-code entry and what slicing predicted for it."""

    index: int  # 1-based
    gcode_path: str  # "Metadata/plate_N.gcode", the project_file `param`
    gcode_size: int  # uncompressed bytes
    gcode_md5: str | None  # uppercase hex, from "Metadata/plate_N.gcode.md5"
    prediction_s: int | None
    weight_g: float | None
    filaments: tuple[PlateFilament, ...]
    objects: tuple[PlateObject, ...]
    thumbnail_path: str | None  # "Metadata/plate_N.png" when present
    bed_type: str | None  # from "Metadata/plate_N.json", e.g. "textured_plate"
    total_layers: int | None
    estimated_time_s: int | None


@dataclass(frozen=True, slots=True)
class ThreeMF:
    """The metadata of a 3MF: its sliced plates and the printer it was sliced for."""

    plates: tuple[Plate, ...]  # sliced plates only, by index
    sliced: bool  # any Metadata/plate_*.gcode
    printer_model_id: str | None  # e.g. "C12"
    nozzle_diameter: float | None
    application: str | None  # 3dmodel.model "Application", e.g. "BambuStudio-02.01.01.52"
    client_version: str | None  # slice_info X-BBL-Client-Version, e.g. "02.01.01.52"

    def plate(self, index: int) -> Plate:
        """The plate with this 1-based index, or ThreeMFError listing the plates there are."""
        for plate in self.plates:
            if plate.index == index:
                return plate
        if not self.plates:
            raise ThreeMFError(f"no plate {index}: this file has no sliced plates")
        there = ", ".join(str(p.index) for p in self.plates)
        raise ThreeMFError(f"no plate {index} in this file; its plates are: {there}")

    def require_sliced(self) -> "ThreeMF":
        """This file if it holds plate G-code, else NotSlicedError saying what to do."""
        if not self.sliced:
            raise NotSlicedError(_NOT_SLICED)
        return self


@dataclass(frozen=True, slots=True)
class _SlicedPlate:
    metadata: Mapping[str, str]
    filaments: tuple[PlateFilament, ...]
    objects: tuple[PlateObject, ...]


@dataclass(frozen=True, slots=True)
class _SliceInfo:
    client_version: str | None
    plates: Mapping[int, _SlicedPlate]


def read_3mf(
    source: bytes | str | os.PathLike[str] | BinaryIO, *, limits: ArchiveLimits = DEFAULT_LIMITS
) -> ThreeMF:
    """Read a 3MF's metadata without extracting it or reading plate G-code bodies."""
    with open_archive(source, limits) as archive:
        gcode = sorted(
            (int(match.group(1)), name)
            for name in archive.entries
            if (match := _GCODE_NAME.fullmatch(name))
        )
        if not gcode and MODEL not in archive:
            raise ThreeMFError(f"not a 3MF: the archive has neither {MODEL} nor plate G-code")
        info = _slice_info(archive) if SLICE_INFO in archive else None
        if gcode and info is None:
            raise ThreeMFError(f"sliced file has plate G-code but no {SLICE_INFO}")
        plates = tuple(_plate(archive, index, name, info) for index, name in gcode)
        model_id, nozzle = _printer(archive, info)
        return ThreeMF(
            plates=plates,
            sliced=bool(gcode),
            printer_model_id=model_id,
            nozzle_diameter=nozzle,
            application=_application(archive),
            client_version=info.client_version if info else None,
        )


def read_gcode_header(
    source: bytes | str | os.PathLike[str] | BinaryIO,
    plate: int = 1,
    *,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> GcodeHeader:
    """The header block of plate `plate`'s G-code, reading at most its first 64 KiB."""
    with open_archive(source, limits) as archive:
        name = f"Metadata/plate_{plate}.gcode"
        if name not in archive:
            raise ThreeMFError(f"the archive has no {name}")
        header = _gcode_header(archive, name)
    if header is None:
        raise ThreeMFError(
            f"{name} has no '; HEADER_BLOCK_START' block in its first {GCODE_HEADER_MAX_BYTES}"
            " bytes; Bambu printers stall at extraction without it"
        )
    return header


def parse_gcode_header(head: bytes) -> GcodeHeader | None:
    """Parse the header block from the start of a G-code file; None if it has none."""
    start = head.find(_HEADER_START)
    if start < 0:
        return None
    end = head.find(_HEADER_END, start)
    if end < 0:
        raise ThreeMFError(
            f"G-code header block is not closed by '; HEADER_BLOCK_END' within {len(head)} bytes"
        )
    block = head[start + len(_HEADER_START) : end].decode("utf-8", "replace")
    lines = [text for line in block.splitlines() if (text := line.strip().lstrip(";").strip())]
    # The first line names the slicer ("BambuStudio 01.09.07.52"); the rest are "key: value".
    generator = lines.pop(0) if lines and ":" not in lines[0] else None
    layers = estimated = model_time = None
    for text in lines:
        for part in text.split(";"):
            key, _, value = part.partition(":")
            key = key.strip().lower()
            if key == "total layer number":
                layers = _int(value, "G-code header 'total layer number'")
            elif key == "total estimated time":
                estimated = _duration(value, "G-code header 'total estimated time'")
            elif key == "model printing time":
                model_time = _duration(value, "G-code header 'model printing time'")
    return GcodeHeader(generator, layers, estimated, model_time)


def _plate(archive: SafeArchive, index: int, name: str, info: _SliceInfo | None) -> Plate:
    sliced = info.plates.get(index) if info else None
    meta: Mapping[str, str] = sliced.metadata if sliced else {}
    where = f"{SLICE_INFO} plate {index}"
    header = _gcode_header(archive, name)
    thumbnail = f"Metadata/plate_{index}.png"
    return Plate(
        index=index,
        gcode_path=name,
        gcode_size=archive.entries[name].size,
        gcode_md5=_md5(archive, f"{name}.md5"),
        prediction_s=_opt(meta.get("prediction"), _int, f"{where} prediction"),
        weight_g=_opt(meta.get("weight"), _float, f"{where} weight"),
        filaments=sliced.filaments if sliced else (),
        objects=sliced.objects if sliced else (),
        thumbnail_path=thumbnail if thumbnail in archive else None,
        bed_type=_bed_type(archive, f"Metadata/plate_{index}.json"),
        total_layers=header.total_layers if header else None,
        estimated_time_s=header.estimated_time_s if header else None,
    )


def _gcode_header(archive: SafeArchive, name: str) -> GcodeHeader | None:
    head = archive.read_head(name, max_bytes=GCODE_HEADER_MAX_BYTES, stop=_HEADER_END)
    try:
        return parse_gcode_header(head)
    except ThreeMFError as err:
        raise ThreeMFError(f"{name}: {err}") from None


def _md5(archive: SafeArchive, name: str) -> str | None:
    if name not in archive:
        return None
    text = archive.read(name, max_bytes=_MD5_MAX_BYTES).decode("ascii", "replace").strip()
    if not _MD5.fullmatch(text):
        raise ThreeMFError(f"{name} does not hold an MD5 (32 hex digits): {text[:40]!r}")
    return text.upper()


def _bed_type(archive: SafeArchive, name: str) -> str | None:
    if name not in archive:
        return None
    value = _json_object(archive, name).get("bed_type")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ThreeMFError(f"{name} bed_type is not a string: {value!r}")
    return value


def _printer(archive: SafeArchive, info: _SliceInfo | None) -> tuple[str | None, float | None]:
    """The target model code and nozzle: slice_info first, project_settings as fallback."""
    model_id: str | None = None
    nozzle: float | None = None
    for index, plate in sorted(info.plates.items()) if info else ():
        where = f"{SLICE_INFO} plate {index}"
        model_id = model_id or plate.metadata.get("printer_model_id") or None
        if nozzle is None and (text := plate.metadata.get("nozzle_diameters")):
            nozzle = _float(re.split(r"[,; ]", text.strip())[0], f"{where} nozzle_diameters")
    if (model_id is None or nozzle is None) and PROJECT_SETTINGS in archive:
        settings = _json_object(archive, PROJECT_SETTINGS)
        if model_id is None:
            model_id = _model_from_settings(settings.get("printer_model"))
        if nozzle is None:
            nozzle = _settings_nozzle(settings.get("nozzle_diameter"))
    return model_id, nozzle


def _model_from_settings(product: object) -> str | None:
    if not isinstance(product, str) or not product.strip():
        return None
    try:
        return model_by_product_name(product).code
    except ModelError:
        return None  # another vendor's printer or a model newer than our table


def _settings_nozzle(value: object) -> float | None:
    first = value[0] if isinstance(value, list) and value else value
    if isinstance(first, int | float) and not isinstance(first, bool):
        first = str(first)
    if not isinstance(first, str) or not first.strip():
        return None
    return _float(first, f"{PROJECT_SETTINGS} nozzle_diameter")


def _application(archive: SafeArchive) -> str | None:
    if MODEL not in archive:
        return None
    match = _APPLICATION.search(archive.read_head(MODEL, max_bytes=_MODEL_HEAD_BYTES))
    if match is None:
        return None
    return unescape(match.group(1).decode("utf-8", "replace")).strip() or None


def _slice_info(archive: SafeArchive) -> _SliceInfo:
    root = _xml(archive, SLICE_INFO)
    if root.tag != "config":
        raise ThreeMFError(f"{SLICE_INFO} has root <{root.tag}>, expected <config>")
    header = {item.get("key"): item.get("value") for item in root.iter("header_item")}
    plates: dict[int, _SlicedPlate] = {}
    for position, element in enumerate(root.iter("plate"), start=1):
        meta = {
            key: item.get("value") or ""
            for item in element.iter("metadata")
            if (key := item.get("key")) is not None
        }
        index = _int(meta.get("index", str(position)), f"{SLICE_INFO} plate index")
        where = f"{SLICE_INFO} plate {index}"
        if index in plates:
            raise ThreeMFError(f"{where} appears twice")
        plates[index] = _SlicedPlate(
            metadata=meta,
            filaments=tuple(_filament(f.attrib, where) for f in element.iter("filament")),
            objects=tuple(_object(o.attrib, where) for o in element.iter("object")),
        )
    return _SliceInfo(client_version=header.get("X-BBL-Client-Version") or None, plates=plates)


def _filament(attrib: Mapping[str, str], where: str) -> PlateFilament:
    slot = _int(attrib.get("id", ""), f"{where} filament id")
    what = f"{where} filament {slot}"
    return PlateFilament(
        slot=slot,
        tray_info_idx=attrib.get("tray_info_idx") or None,
        type=attrib.get("type") or None,
        color=_opt(attrib.get("color"), _colour, f"{what} color"),
        used_g=_opt(attrib.get("used_g"), _float, f"{what} used_g"),
        used_m=_opt(attrib.get("used_m"), _float, f"{what} used_m"),
    )


def _object(attrib: Mapping[str, str], where: str) -> PlateObject:
    identify_id = _int(attrib.get("identify_id", ""), f"{where} object identify_id")
    return PlateObject(identify_id=identify_id, name=attrib.get("name", ""))


def _xml(archive: SafeArchive, name: str) -> ET.Element:
    data = archive.read(name, max_bytes=archive.limits.max_metadata_size)
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ThreeMFError(f"{name} is not UTF-8 XML ({err.reason} at byte {err.start})") from None
    upper = text.upper()
    if "<!DOCTYPE" in upper or "<!ENTITY" in upper:
        raise UnsafeArchiveError(
            f"{name} declares a DTD or entities (<!DOCTYPE>/<!ENTITY>); refused because"
            " entity expansion can exhaust memory"
        )
    # The encoding is forced: a declared one (e.g. UTF-16) must not reinterpret checked bytes.
    parser = ET.XMLParser(encoding="utf-8")  # noqa: S314 - DTDs were refused just above
    try:
        parser.feed(data)
        return parser.close()
    except ET.ParseError as err:
        raise ThreeMFError(f"{name} is not well-formed XML: {err}") from None


def _json_object(archive: SafeArchive, name: str) -> Mapping[str, object]:
    data = archive.read(name, max_bytes=archive.limits.max_metadata_size)
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise ThreeMFError(f"{name} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise ThreeMFError(f"{name} is JSON but not an object")
    return value


def _opt(text: str | None, convert: Callable[[str, str], _T], what: str) -> _T | None:
    """None for an absent or empty value, else `convert(text, what)`."""
    return None if text is None or not text.strip() else convert(text, what)


def _int(text: str, what: str) -> int:
    text = text.strip()
    if not re.fullmatch(r"[+-]?\d{1,18}", text, re.ASCII):
        raise ThreeMFError(f"{what} is not an integer: {text[:40]!r}")
    return int(text)


def _float(text: str, what: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ThreeMFError(f"{what} is not a number: {text[:40]!r}") from None
    if not math.isfinite(value):
        raise ThreeMFError(f"{what} is not a finite number: {text[:40]!r}")
    return value


def _colour(text: str, what: str) -> str:
    match = _HEX_COLOUR.fullmatch(text.strip())
    if match is None:
        raise ThreeMFError(f"{what} is not a hex colour: {text[:40]!r}")
    digits = match.group(1).upper()
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "#" + digits[:6]  # RGBA: the alpha byte is dropped


def _duration(text: str, what: str) -> int:
    """Seconds in a slicer duration such as '1h 38m 55s' or '2d 3h 4m 5s'."""
    text = text.strip()
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ThreeMFError(f"{what} is not a duration like '1h 38m 55s': {text[:40]!r}")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return round(((days * 24 + hours) * 60 + minutes) * 60 + seconds)
