"""Firmware version and product name from `info.get_version` replies (protocol.md §1.6)."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bambufarm.protocol.coerce import to_str

PRODUCT_PREFIX = "Bambu Lab"


@dataclass(frozen=True, slots=True)
class FirmwareModule:
    """One module of an `info.get_version` reply."""

    name: str
    sw_ver: str = ""
    hw_ver: str = ""
    product_name: str = ""
    project_name: str = ""
    sn: str = ""


@dataclass(frozen=True, slots=True)
class Firmware:
    """Firmware version and product name from `info.get_version` (protocol.md §1.6)."""

    version: str | None = None  # sw_ver of module `ota`
    product_name: str | None = None  # e.g. "Bambu Lab P1S"
    modules: tuple[FirmwareModule, ...] = ()


def firmware_from_version(body: Mapping[str, Any], previous: Firmware) -> Firmware | None:
    """Firmware details from an `info` section, or None when it is not a get_version reply."""
    if body.get("command") != "get_version":
        return None
    value = body.get("module")
    if not isinstance(value, list):
        return None
    modules: list[FirmwareModule] = []
    for item in value:
        if not isinstance(item, dict):
            continue
        name = item.get("name")
        if not isinstance(name, str):
            continue
        modules.append(
            FirmwareModule(
                name,
                to_str(item.get("sw_ver"), ""),
                to_str(item.get("hw_ver"), ""),
                to_str(item.get("product_name"), ""),
                to_str(item.get("project_name"), ""),
                to_str(item.get("sn"), ""),
            )
        )
    version = previous.version
    for module in modules:
        if module.name == "ota" and module.sw_ver:
            version = module.sw_ver
    # The printer's own product name is "Bambu Lab <model>" (HA utils.get_printer_type); AMS
    # modules carry product names too ("AMS (1)"), so ota's wins, then any "Bambu Lab" one.
    product = previous.product_name
    for module in sorted(modules, key=lambda module: module.name != "ota"):
        if module.product_name.startswith(PRODUCT_PREFIX):
            product = module.product_name
            break
    return Firmware(version, product, tuple(modules))
