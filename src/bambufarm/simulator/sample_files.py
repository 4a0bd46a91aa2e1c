"""Realistic Bambu `.gcode.3mf` archives built in memory: demo jobs and test fixtures.

`build_gcode_3mf` lays out an archive as Bambu Studio's "Export plate sliced file" does
(protocol.md §7.2): OPC boilerplate, a small model, settings, `slice_info.config`, and per
plate the G-code (header, config and executable blocks, `M73` progress), its `.md5`, a
`plate_N.json` and a real PNG thumbnail. Output is deterministic (fixed timestamps and seed).
"""

import hashlib
import io
import json
import math
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from PIL import Image

from bambufarm.protocol.errors import ModelError
from bambufarm.protocol.models import model_by_code

CLIENT_VERSION = "02.01.01.52"
APPLICATION = f"BambuStudio-{CLIENT_VERSION}"
_DATE = (2024, 5, 1, 12, 0, 0)
_LAYER_HEIGHT = 0.2


@dataclass(frozen=True)
class FilamentSpec:
    """One filament a plate uses (slot is the 1-based project filament id)."""

    slot: int = 1
    type: str = "PLA"
    color: str = "#000000"
    used_g: float = 17.32
    used_m: float = 5.45
    tray_info_idx: str = "GFA01"


@dataclass(frozen=True)
class PlateSpec:
    """One sliced plate; `index` defaults to its position (1-based) in the plates given."""

    index: int | None = None
    prediction_s: int = 5935
    weight_g: float = 20.91
    layers: int = 150
    filaments: tuple[FilamentSpec, ...] = (FilamentSpec(),)
    objects: tuple[tuple[int, str], ...] = ((123, "Part A.stl"),)
    bed_type: str = "textured_plate"
    thumbnail: bool = True
    md5: bool = True


@dataclass(frozen=True)
class _Numbered:
    index: int
    spec: PlateSpec = field(default_factory=PlateSpec)


def build_gcode_3mf(
    *,
    plates: Sequence[PlateSpec] = (PlateSpec(),),
    printer_model_id: str | None = "C12",
    nozzle_diameter: float = 0.4,
    gcode_padding_bytes: int = 0,
    sliced: bool = True,
    printer_model: str | None = None,
) -> bytes:
    """A Bambu-layout 3MF in memory: sliced (`.gcode.3mf`) or, with sliced=False, a project.

    `printer_model_id=None` leaves the model out of slice_info, so readers must fall back to
    project_settings' `printer_model` (default: the product name for the id, else P1S).
    `gcode_padding_bytes` adds that many bytes of varied G-code moves to *each* plate; they
    deflate about 3:1 (real G-code 5-10:1), so ~60 MB of padding makes a ~20 MB archive.
    """
    numbered = [_Numbered(p.index or i, p) for i, p in enumerate(plates, start=1)]
    product = printer_model or _product_name(printer_model_id)
    files: list[tuple[str, bytes]] = [
        ("[Content_Types].xml", _content_types()),
        ("_rels/.rels", _rels()),
        ("3D/3dmodel.model", _model(numbered)),
        ("Metadata/model_settings.config", _model_settings(numbered, sliced)),
        ("Metadata/project_settings.config", _project_settings(numbered, product, nozzle_diameter)),
        ("Metadata/slice_info.config",
         _slice_info(numbered, printer_model_id, nozzle_diameter, sliced)),
    ]  # fmt: skip
    for plate in numbered:
        n, spec = plate.index, plate.spec
        if sliced:
            gcode = plate_gcode(spec, padding_bytes=gcode_padding_bytes, printer_model=product)
            files.append((f"Metadata/plate_{n}.gcode", gcode))
            if spec.md5:
                digest = hashlib.md5(gcode).hexdigest().upper().encode()  # noqa: S324 - Bambu's format
                files.append((f"Metadata/plate_{n}.gcode.md5", digest))
            files.append((f"Metadata/plate_{n}.json", _plate_json(spec, nozzle_diameter)))
        if spec.thumbnail:
            files.append((f"Metadata/plate_{n}.png", tiny_png(n)))
    return _zip(files)


def plate_gcode(spec: PlateSpec, *, padding_bytes: int = 0, printer_model: str = "") -> bytes:
    """Plate G-code with Bambu's header, config and executable blocks and M73 progress."""
    total_s = spec.prediction_s
    model_s = max(0, total_s - 400)  # ~7 min of heating, homing and levelling
    used_g = sum(f.used_g for f in spec.filaments)
    used_m = sum(f.used_m for f in spec.filaments)
    count = max(1, len(spec.filaments))
    lines = [
        "; HEADER_BLOCK_START",
        f"; BambuStudio {CLIENT_VERSION}",
        f"; model printing time: {_hms(model_s)}; total estimated time: {_hms(total_s)}",
        f"; total layer number: {spec.layers}",
        f"; total filament length [mm] : {used_m * 1000:.2f}",
        f"; total filament volume [cm^3] : {used_g / 1.26 * 1000:.2f}",
        f"; total filament weight [g] : {used_g:.2f}",
        "; filament_density: " + ",".join(["1.26"] * count),
        "; filament_diameter: " + ",".join(["1.75"] * count),
        f"; max_z_height: {spec.layers * _LAYER_HEIGHT:.2f}",
        "; HEADER_BLOCK_END",
        "",
        "; CONFIG_BLOCK_START",
        f"; printer_model = {printer_model}",
        f"; layer_height = {_LAYER_HEIGHT}",
        "; filament_type = " + ";".join(f.type for f in spec.filaments),
        "; filament_colour = " + ";".join(f.color for f in spec.filaments),
        f"; curr_bed_type = {spec.bed_type}",
        "; CONFIG_BLOCK_END",
        "",
        "; EXECUTABLE_BLOCK_START",
        f"M73 P0 R{total_s // 60}",
        "M201 X20000 Y20000 Z500 E5000",
        "G28",
        "M190 S55",
        "M109 S220",
    ]
    padding = _padding_lines(padding_bytes)
    per_layer = len(padding) // max(1, spec.layers)
    for layer in range(1, spec.layers + 1):
        if len(spec.filaments) > 1 and layer % 10 == 0:
            nxt = spec.filaments[(layer // 10) % len(spec.filaments)].slot - 1
            lines += [f"M620 S{nxt}A", f"T{nxt}", f"M621 S{nxt}A"]
        done = layer / spec.layers
        lines += [
            "; CHANGE_LAYER",
            f"; Z_HEIGHT: {layer * _LAYER_HEIGHT:.2f}",
            f"M73 L{layer}",
            f"G1 Z{layer * _LAYER_HEIGHT:.2f} F1200",
            "G1 X128.0 Y128.0 E0.4 F3000",
            f"M73 P{int(done * 100)} R{int(total_s * (1 - done)) // 60}",
        ]
        lines += padding[(layer - 1) * per_layer : layer * per_layer]
    lines += padding[spec.layers * per_layer :]
    lines += ["M73 P100 R0", "M104 S0", "M140 S0", "; EXECUTABLE_BLOCK_END", ""]
    return "\n".join(lines).encode()


def tiny_png(seed: int = 1) -> bytes:
    """A real 32x32 PNG, coloured by `seed`."""
    image = Image.new("RGB", (32, 32), ((seed * 70) % 256, 120, 200))
    image.putpixel((seed % 32, seed % 32), (255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _padding_lines(size: int) -> list[str]:
    """`size` bytes of extrusion moves; a 1 MiB block repeats, too far apart for deflate."""
    if size <= 0:
        return []
    # Seeded for reproducible files; not security relevant.
    block = _move_block(min(size, 1024 * 1024), random.Random(size))  # noqa: S311
    lines: list[str] = []
    length = 0
    while length < size:
        for line in block:
            lines.append(line)
            length += len(line) + 1
            if length >= size:
                break
    return lines


def _move_block(size: int, rng: random.Random) -> list[str]:
    """A random walk of short extrusions with the odd feature change and retraction."""
    features = ("Outer wall", "Inner wall", "Sparse infill", "Internal solid infill")
    lines: list[str] = []
    length = 0
    x = y = 128.0
    while length < size:
        if rng.random() < 0.02:
            step = [f"; FEATURE: {rng.choice(features)}", "; LINE_WIDTH: 0.42", "G1 E-.8 F1800",
                    f"G1 X{x:.3f} Y{y:.3f} F30000", "G1 E.8 F1800", "G1 F6000"]  # fmt: skip
        else:
            dx, dy = rng.uniform(-4, 4), rng.uniform(-4, 4)
            x, y = min(246.0, max(10.0, x + dx)), min(246.0, max(10.0, y + dy))
            step = [f"G1 X{x:.3f} Y{y:.3f} E{math.hypot(dx, dy) * 0.0333:.5f}"]
        lines += step
        length += sum(len(line) + 1 for line in step)
    return lines


def _hms(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return " ".join(p for p in (f"{h}h" if h else "", f"{m}m" if h or m else "", f"{s}s") if p)


def _product_name(code: str | None) -> str:
    try:
        return model_by_code(code or "C12").product_name
    except ModelError:
        return "Bambu Lab P1S"


def _project_filaments(plates: Sequence[_Numbered]) -> list[FilamentSpec]:
    by_slot = {f.slot: f for p in plates for f in p.spec.filaments}
    slots = max(by_slot, default=1)
    unused = FilamentSpec(color="#FFFFFF")
    return [by_slot.get(slot, replace(unused, slot=slot)) for slot in range(1, slots + 1)]


def _content_types() -> bytes:
    types = {
        "rels": "application/vnd.openxmlformats-package.relationships+xml",
        "model": "application/vnd.ms-package.3dmanufacturing-3dmodel+xml",
        "png": "image/png",
        "gcode": "text/x.gcode",
    }
    defaults = "".join(f' <Default Extension="{e}" ContentType="{t}"/>\n' for e, t in types.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">\n'
        f"{defaults}</Types>\n"
    ).encode()


def _rels() -> bytes:
    model = "http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"
    thumbnail = "http://schemas.openxmlformats.org/package/2006/relationships/metadata/thumbnail"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">\n'
        f' <Relationship Target="/3D/3dmodel.model" Id="rel-1" Type="{model}"/>\n'
        f' <Relationship Target="/Metadata/plate_1.png" Id="rel-2" Type="{thumbnail}"/>\n'
        "</Relationships>\n"
    ).encode()


def _model(plates: Sequence[_Numbered]) -> bytes:
    """A 3MF model with one 20 mm cube per plate object."""
    cube_vertices = [(x, y, z) for z in (0, 20) for y in (0, 20) for x in (0, 20)]
    faces = [(0, 2, 1), (1, 2, 3), (4, 5, 6), (5, 7, 6), (0, 1, 4), (1, 5, 4),
             (2, 6, 3), (3, 6, 7), (0, 4, 2), (2, 4, 6), (1, 3, 5), (3, 7, 5)]  # fmt: skip
    vertices = "".join(f'<vertex x="{x}" y="{y}" z="{z}"/>' for x, y, z in cube_vertices)
    triangles = "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in faces)
    objects, items = [], []
    ids = [oid for p in plates for oid, _ in p.spec.objects] or [1]
    for n, _ in enumerate(ids, start=1):
        objects.append(
            f'<object id="{n}" type="model"><mesh><vertices>{vertices}</vertices>'
            f"<triangles>{triangles}</triangles></mesh></object>"
        )
        transform = f"1 0 0 0 1 0 0 0 1 {n * 30} 100 0"
        items.append(f'<item objectid="{n}" transform="{transform}" printable="1"/>')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<model unit="millimeter" xml:lang="en-US" xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02"'
        ' xmlns:BambuStudio="http://schemas.bambulab.com/package/2021">\n'
        f' <metadata name="Application">{APPLICATION}</metadata>\n'
        ' <metadata name="BambuStudio:3mfVersion">1</metadata>\n'
        ' <metadata name="Title">Factory cube</metadata>\n'
        f" <resources>{''.join(objects)}</resources>\n"
        f" <build>{''.join(items)}</build>\n"
        "</model>\n"
    ).encode()  # fmt: skip


def _model_settings(plates: Sequence[_Numbered], sliced: bool) -> bytes:
    parts = ['<?xml version="1.0" encoding="UTF-8"?>', "<config>"]
    for p in plates:
        for oid, name in p.spec.objects:
            parts += [f'  <object id="{oid}">', f'    <metadata key="name" value="{name}"/>',
                      '    <metadata key="extruder" value="1"/>', "  </object>"]  # fmt: skip
    for p in plates:
        n = p.index
        gcode = f"Metadata/plate_{n}.gcode"
        parts += [
            "  <plate>",
            f'    <metadata key="plater_id" value="{n}"/>',
            '    <metadata key="plater_name" value=""/>',
            '    <metadata key="locked" value="false"/>',
            f'    <metadata key="gcode_file" value="{gcode if sliced else ""}"/>',
            f'    <metadata key="thumbnail_file" value="Metadata/plate_{n}.png"/>',
            "  </plate>",
        ]  # fmt: skip
    parts.append("</config>")
    return "\n".join(parts).encode()


def _project_settings(plates: Sequence[_Numbered], product: str, nozzle: float) -> bytes:
    filaments = _project_filaments(plates)
    settings = {
        "printer_model": product,
        "printer_settings_id": f"{product} {nozzle} nozzle",
        "nozzle_diameter": [str(nozzle)],
        "layer_height": str(_LAYER_HEIGHT),
        "curr_bed_type": "Textured PEI Plate",
        "filament_type": [f.type for f in filaments],
        "filament_colour": [f.color for f in filaments],
        "filament_ids": [f.tray_info_idx for f in filaments],
        "filament_settings_id": [f"Bambu {f.type} Basic @BBL P1P" for f in filaments],
        "version": CLIENT_VERSION,
    }
    return json.dumps(settings, indent=4).encode()


def _slice_info(
    plates: Sequence[_Numbered], model_id: str | None, nozzle: float, sliced: bool
) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<config>",
        "  <header>",
        '    <header_item key="X-BBL-Client-Type" value="slicer"/>',
        f'    <header_item key="X-BBL-Client-Version" value="{CLIENT_VERSION}"/>',
        "  </header>",
    ]
    for p in plates if sliced else ():
        spec = p.spec
        meta = {
            "index": str(p.index),
            "extruder_type": "0",
            "nozzle_volume_type": "0",
            "printer_model_id": model_id,
            "nozzle_diameters": str(nozzle),
            "timelapse_type": "0",
            "prediction": str(spec.prediction_s),
            "weight": f"{spec.weight_g:.2f}",
            "outside": "false",
            "support_used": "false",
            "label_object_enabled": "true",
        }
        parts.append("  <plate>")
        parts += [
            f'    <metadata key="{k}" value="{v}"/>' for k, v in meta.items() if v is not None
        ]
        parts += [
            f'    <object identify_id="{i}" name="{name}" skipped="false"/>'
            for i, name in spec.objects
        ]
        parts += [
            f'    <filament id="{f.slot}" tray_info_idx="{f.tray_info_idx}" type="{f.type}"'
            f' color="{f.color}" used_m="{f.used_m:.2f}" used_g="{f.used_g:.2f}"/>'
            for f in spec.filaments
        ]
        parts.append("  </plate>")
    parts.append("</config>")
    return "\n".join(parts).encode()


def _plate_json(spec: PlateSpec, nozzle: float) -> bytes:
    plate = {
        "bbox_all": [108.0, 108.0, 148.0, 148.0],
        "bbox_objects": [
            {
                "area": 400.0,
                "bbox": [108.0, 108.0, 128.0, 128.0],
                "id": oid,
                "layer_height": 0.2,
                "name": name,
            }
            for oid, name in spec.objects
        ],
        "bed_type": spec.bed_type,
        "filament_colors": [f.color for f in spec.filaments],
        "filament_ids": [f.slot - 1 for f in spec.filaments],
        "first_extruder": 0,
        "first_layer_time": 96.5,
        "is_seq_print": False,
        "nozzle_diameter": nozzle,
        "version": 2,
    }
    return json.dumps(plate).encode()


def _zip(files: Sequence[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            archive.writestr(zipfile.ZipInfo(name, _DATE), data, zipfile.ZIP_DEFLATED)
    return out.getvalue()
