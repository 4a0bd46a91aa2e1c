"""The simulator manifest: where each simulated printer listens and how to log in.

`bambufarm sim --manifest sim.json` writes it; the server (`bambufarm printers import`) and the
tests read it. It holds access codes, so it is written with mode 0600.
"""

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

MANIFEST_VERSION = 1


class ManifestError(ValueError):
    """A manifest file that cannot be read."""


@dataclass(frozen=True, slots=True)
class PrinterPorts:
    """The TCP/UDP ports one simulated printer listens on (None: that service is off)."""

    mqtt: int
    ftps: int
    bind: int
    bind_tls: int
    ssdp: int
    camera: int | None


@dataclass(frozen=True, slots=True)
class ManifestPrinter:
    """One simulated printer as a client needs to know it."""

    serial: str
    model: str  # model code, e.g. "C12"
    model_name: str  # e.g. "P1S"
    name: str
    host: str
    access_code: str
    ports: PrinterPorts


@dataclass(frozen=True, slots=True)
class Manifest:
    """Every printer of a running simulator plus the CA that signed their certificates."""

    ca_cert: str
    printers: tuple[ManifestPrinter, ...]

    def to_json(self) -> bytes:
        """Serialise as indented JSON."""
        body = {
            "version": MANIFEST_VERSION,
            "ca_cert": self.ca_cert,
            "printers": [asdict(p) for p in self.printers],
        }
        return orjson.dumps(body, option=orjson.OPT_INDENT_2)

    def write(self, path: Path) -> None:
        """Write atomically with mode 0600 (the file holds access codes)."""
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(self.to_json())
        tmp.replace(path)

    @classmethod
    def from_json(cls, data: bytes) -> "Manifest":
        """Parse a manifest, saying which field is wrong when it does not fit."""
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError as err:
            raise ManifestError(f"manifest is not JSON: {err}") from err
        if not isinstance(body, Mapping):
            raise ManifestError("manifest must be a JSON object")
        if body.get("version") != MANIFEST_VERSION:
            raise ManifestError(
                f"manifest version {body.get('version')!r} is not {MANIFEST_VERSION}"
            )
        printers = body.get("printers")
        if not isinstance(printers, Sequence) or isinstance(printers, str | bytes):
            raise ManifestError("manifest 'printers' must be a list")
        return cls(
            ca_cert=_text(body, "ca_cert"),
            printers=tuple(_printer(p, i) for i, p in enumerate(printers)),
        )

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        """Read a manifest file."""
        try:
            return cls.from_json(path.read_bytes())
        except OSError as err:
            raise ManifestError(f"cannot read manifest {path}: {err.strerror}") from err


def _text(obj: Mapping[str, Any], key: str, where: str = "manifest") -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{where}: '{key}' must be a non-empty string")
    return value


def _port(obj: Mapping[str, Any], key: str, where: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise ManifestError(f"{where}: port '{key}' must be an integer 1-65535")
    return value


def _printer(raw: object, index: int) -> ManifestPrinter:
    where = f"printer #{index}"
    if not isinstance(raw, Mapping):
        raise ManifestError(f"{where} must be an object")
    ports = raw.get("ports")
    if not isinstance(ports, Mapping):
        raise ManifestError(f"{where}: 'ports' must be an object")
    return ManifestPrinter(
        serial=_text(raw, "serial", where),
        model=_text(raw, "model", where),
        model_name=_text(raw, "model_name", where),
        name=_text(raw, "name", where),
        host=_text(raw, "host", where),
        access_code=_text(raw, "access_code", where),
        ports=PrinterPorts(
            mqtt=_port(ports, "mqtt", where),
            ftps=_port(ports, "ftps", where),
            bind=_port(ports, "bind", where),
            bind_tls=_port(ports, "bind_tls", where),
            ssdp=_port(ports, "ssdp", where),
            camera=None if ports.get("camera") is None else _port(ports, "camera", where),
        ),
    )
