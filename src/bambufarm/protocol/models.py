"""The printer model table (protocol.md §7.1): codes, names, serial prefixes, capabilities.

A model is identified three ways on the wire: the SSDP/bind model code (`DevModel`, `model`),
the first three characters of the serial, and `product_name` in `get_version`. 3MF files name
the model by the same code in `slice_info.config` (`printer_model_id`).
"""

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from bambufarm.protocol.errors import ModelError

SERIAL_LENGTH = 15


class CameraKind(StrEnum):
    """How the printer serves live video."""

    RTSPS = "rtsps"  # RTSP over TLS on 322 (live555, H.264)
    JPEG = "jpeg"  # proprietary JPEG stream on TLS 6000
    NONE = "none"


class ReportMode(StrEnum):
    """Whether the printer pushes the whole state every tick or only what changed."""

    FULL = "full"  # X1 family: msg 0 every push
    DELTA = "delta"  # P1/A1/P2S/H2: msg 1 deltas, everything only after pushall


@dataclass(frozen=True, slots=True)
class PrinterModel:
    """One printer model and what the protocol needs to know about it."""

    code: str  # SSDP DevModel / bind `model` / 3MF printer_model_id, e.g. "C12"
    name: str  # short product name, e.g. "P1S"
    product_name: str  # get_version `product_name`, e.g. "Bambu Lab P1S"
    serial_prefix: str  # first three characters of the serial
    camera: CameraKind
    report_mode: ReportMode
    nozzles: int
    # HA's LEGACY_SDCARD_PRINTERS: X1/P1/A1 take `file:///sdcard/<name>` in project_file;
    # H2 and newer take `ftp:///<name>` (protocol.md §1.8.2).
    sdcard_url: bool
    aliases: tuple[str, ...] = ()  # older firmware's SSDP DevModel spellings

    @property
    def dual_nozzle(self) -> bool:
        """True for printers with two nozzles (ams_mapping2 uses 254 for the left one)."""
        return self.nozzles == 2


# Short names so that each table row fits on one line.
_RTSPS, _JPEG = CameraKind.RTSPS, CameraKind.JPEG
_FULL, _DELTA = ReportMode.FULL, ReportMode.DELTA

MODELS: tuple[PrinterModel, ...] = (
    PrinterModel(
        "BL-P001", "X1C", "Bambu Lab X1-Carbon", "00M", _RTSPS, _FULL, 1,
        sdcard_url=True, aliases=("3DPrinter-X1-Carbon",),
    ),
    # BS profiles give X1 the same 00M prefix as X1C; clients map 00W to X1 (protocol.md §12.12),
    # so the simulator uses 00W to keep the two apart.
    PrinterModel(
        "BL-P002", "X1", "Bambu Lab X1", "00W", _RTSPS, _FULL, 1,
        sdcard_url=True, aliases=("3DPrinter-X1",),
    ),
    PrinterModel("C13", "X1E", "Bambu Lab X1E", "03W", _RTSPS, _FULL, 1, True),
    PrinterModel("C11", "P1P", "Bambu Lab P1P", "01S", _JPEG, _DELTA, 1, True),
    PrinterModel("C12", "P1S", "Bambu Lab P1S", "01P", _JPEG, _DELTA, 1, True),
    PrinterModel("N7", "P2S", "Bambu Lab P2S", "22E", _RTSPS, _DELTA, 1, False),
    PrinterModel(
        "N1", "A1 mini", "Bambu Lab A1 mini", "030", _JPEG, _DELTA, 1, True
    ),
    PrinterModel("N2S", "A1", "Bambu Lab A1", "039", _JPEG, _DELTA, 1, True),
    PrinterModel("N9", "A2L", "Bambu Lab A2L", "26A", _JPEG, _DELTA, 1, False),
    PrinterModel("O1D", "H2D", "Bambu Lab H2D", "094", _RTSPS, _DELTA, 2, False),
    # H2D Pro has no prefix of its own in the slicer profiles; it shares H2D's (inferred).
    PrinterModel(
        "O1E", "H2D Pro", "Bambu Lab H2D Pro", "094", _RTSPS, _DELTA, 2, False
    ),
    PrinterModel("O1S", "H2S", "Bambu Lab H2S", "093", _RTSPS, _DELTA, 1, False),
    PrinterModel(
        "O1C", "H2C", "Bambu Lab H2C", "31B", _RTSPS, _DELTA, 2, False,
        aliases=("O1C2",),
    ),
    PrinterModel("N6", "X2D", "Bambu Lab X2D", "20P", _RTSPS, _DELTA, 2, False),
)  # fmt: skip

_BY_CODE = MappingProxyType({alias: m for m in MODELS for alias in (m.code, *m.aliases)})
# H2D and H2D Pro share 094: the first entry (H2D) wins, as clients do.
_BY_PREFIX = MappingProxyType({m.serial_prefix: m for m in reversed(MODELS)})
_BY_NAME = MappingProxyType({m.name.lower(): m for m in MODELS})
_BY_PRODUCT = MappingProxyType({m.product_name: m for m in MODELS})


def model_by_code(code: str) -> PrinterModel:
    """The model for an SSDP/bind/3MF model code such as "C12" or "3DPrinter-X1-Carbon"."""
    try:
        return _BY_CODE[code.strip()]
    except KeyError:
        raise ModelError(f"unknown printer model code {code!r}") from None


def model_by_name(name: str) -> PrinterModel:
    """The model for a short product name such as "P1S" or "a1 mini" (case-insensitive)."""
    try:
        return _BY_NAME[name.strip().lower()]
    except KeyError:
        known = ", ".join(m.name for m in MODELS)
        raise ModelError(f"unknown printer model {name!r}; known models: {known}") from None


def model_by_product_name(product_name: str) -> PrinterModel:
    """The model for a get_version `product_name` such as "Bambu Lab X1-Carbon"."""
    try:
        return _BY_PRODUCT[product_name.strip()]
    except KeyError:
        raise ModelError(f"unknown product name {product_name!r}") from None


def model_for_serial(serial: str) -> PrinterModel:
    """The model a serial number belongs to, from its three-character prefix."""
    if len(serial) != SERIAL_LENGTH or not serial.isalnum():
        raise ModelError(
            f"serial {serial!r} is not a Bambu serial ({SERIAL_LENGTH} letters and digits)"
        )
    try:
        return _BY_PREFIX[serial[:3].upper()]
    except KeyError:
        raise ModelError(f"serial {serial!r} has unknown model prefix {serial[:3]!r}") from None
