"""What a simulated fleet consists of: printers, models, names, access codes and quirks.

A fleet comes from `mixed_fleet()` (the demo and `bambufarm sim --printers N`) or from a
scenario file (TOML) that sets the fleet size, the models and per-printer overrides:

    [fleet]
    printers = 20
    models = ["X1C", "P1S", "A1"]
    time_scale = 60

    [defaults.quirks]
    max_mqtt_clients = 4

    [[printer]]
    index = 2
    name = "Shop P1S"
    quirks = { secured = true, hms = ["0700_2000_0002_0001"] }

Access codes are derived from a per-data-directory secret, so restarting the simulator on the
same directory keeps every printer's code (and the manifest a server imported stays valid).
"""

import hashlib
import secrets
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bambufarm.protocol.errors import ModelError
from bambufarm.protocol.models import PrinterModel, model_by_name

from .identity import PrinterIdentity, default_ams, make_serial
from .quirks import Quirks, ScenarioError

# The demo's mix: every camera kind, report mode, AMS generation and a dual-nozzle printer.
DEMO_MODELS = ("X1C", "P1S", "P1P", "A1", "A1 mini", "H2D")
_CODES_KEY_FILE = "access-code.key"
_FLEET_KEYS = frozenset({"printers", "models", "time_scale"})
_PRINTER_KEYS = frozenset({"index", "name", "model", "quirks"})


@dataclass(frozen=True, slots=True)
class PrinterSpec:
    """One printer to simulate."""

    identity: PrinterIdentity
    quirks: Quirks


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """A whole simulated fleet."""

    printers: tuple[PrinterSpec, ...]
    time_scale: float = 1.0


def fleet_secret(data_dir: Path) -> bytes:
    """The secret access codes are derived from, created once per data directory (mode 0600)."""
    path = data_dir / _CODES_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_bytes().strip()


def access_code_for(secret: bytes, serial: str) -> str:
    """An 8-digit access code for a serial, stable for a given secret (like a printer's)."""
    digest = hashlib.blake2b(serial.encode(), key=secret[:64], digest_size=8).digest()
    return f"{int.from_bytes(digest, 'big') % 100_000_000:08d}"


def mixed_fleet(
    count: int,
    *,
    secret: bytes,
    hosts: Sequence[str],
    models: Sequence[str] = DEMO_MODELS,
    time_scale: float = 1.0,
    default_quirks: Mapping[str, Any] | None = None,
    overrides: Mapping[int, Mapping[str, Any]] | None = None,
) -> FleetSpec:
    """`count` printers cycling through `models`, printer i reporting address hosts[i]."""
    if count < 1:
        raise ScenarioError(f"a fleet needs at least one printer, got {count}")
    if len(hosts) < count:
        raise ScenarioError(f"{count} printers need {count} addresses, got {len(hosts)}")
    resolved = [_model(name) for name in models]
    if not resolved:
        raise ScenarioError("a fleet needs at least one model")
    overrides = overrides or {}
    unknown = sorted(i for i in overrides if not 0 <= i < count)
    if unknown:
        raise ScenarioError(f"printer overrides for index {unknown} but the fleet has {count}")
    base_quirks = dict(default_quirks or {})
    per_model: dict[str, int] = {}
    printers = []
    for index in range(count):
        override = overrides.get(index, {})
        model = (
            _model(override["model"]) if "model" in override else resolved[index % len(resolved)]
        )
        number = per_model.get(model.name, 0)
        per_model[model.name] = number + 1
        serial = make_serial(model, index)
        identity = PrinterIdentity(
            serial=serial,
            model=model,
            name=str(override.get("name") or f"{model.name} #{number + 1}"),
            access_code=access_code_for(secret, serial),
            ams=default_ams(model),
            ip=hosts[index],
        )
        quirks = Quirks.from_dict(
            {"time_scale": time_scale, **base_quirks, **dict(override.get("quirks", {}))}
        )
        printers.append(PrinterSpec(identity, quirks))
    return FleetSpec(tuple(printers), time_scale)


def load_scenario(
    path: Path, *, secret: bytes, hosts_for: Callable[[int], Sequence[str]]
) -> FleetSpec:
    """Read a TOML scenario file; unknown keys and bad values are refused with their place."""
    try:
        body = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ScenarioError(f"cannot read scenario {path}: {err.strerror}") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ScenarioError(f"scenario {path} is not valid TOML: {err}") from err
    return scenario_from_dict(body, secret=secret, hosts_for=hosts_for)


def scenario_from_dict(
    body: Mapping[str, Any], *, secret: bytes, hosts_for: Callable[[int], Sequence[str]]
) -> FleetSpec:
    """Build a fleet from a parsed scenario document; `hosts_for(n)` gives n addresses."""
    unknown = sorted(set(body) - {"fleet", "defaults", "printer"})
    if unknown:
        raise ScenarioError(f"unknown scenario section(s): {', '.join(unknown)}")
    fleet = _table(body.get("fleet", {}), "[fleet]")
    bad = sorted(set(fleet) - _FLEET_KEYS)
    if bad:
        raise ScenarioError(f"unknown [fleet] key(s): {', '.join(bad)}")
    defaults = _table(body.get("defaults", {}), "[defaults]")
    if set(defaults) - {"quirks"}:
        raise ScenarioError("[defaults] may only hold a 'quirks' table")
    overrides: dict[int, Mapping[str, Any]] = {}
    printers = body.get("printer", [])
    if not isinstance(printers, list):
        raise ScenarioError("[[printer]] entries must be an array of tables")
    for position, raw in enumerate(printers):
        entry = _table(raw, f"[[printer]] #{position + 1}")
        bad = sorted(set(entry) - _PRINTER_KEYS)
        if bad:
            raise ScenarioError(f"[[printer]] #{position + 1}: unknown key(s) {', '.join(bad)}")
        index = entry.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            raise ScenarioError(f"[[printer]] #{position + 1} needs an integer 'index'")
        overrides[index] = entry
    count = fleet.get("printers", 6)
    models = fleet.get("models", list(DEMO_MODELS))
    scale = fleet.get("time_scale", 1.0)
    if not isinstance(count, int) or isinstance(count, bool):
        raise ScenarioError("[fleet] printers must be an integer")
    if count < 1:
        raise ScenarioError(f"[fleet] printers must be at least 1, got {count}")
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ScenarioError('[fleet] models must be a list of model names such as ["P1S"]')
    if not isinstance(scale, int | float) or isinstance(scale, bool):
        raise ScenarioError("[fleet] time_scale must be a number")
    return mixed_fleet(
        count,
        secret=secret,
        hosts=hosts_for(count),
        models=models,
        time_scale=float(scale),
        default_quirks=_table(defaults.get("quirks", {}), "[defaults.quirks]"),
        overrides=overrides,
    )


def _table(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{where} must be a table")
    return value


def _model(name: object) -> PrinterModel:
    if not isinstance(name, str):
        raise ScenarioError(f"model {name!r} must be a model name such as 'P1S'")
    try:
        return model_by_name(name)
    except ModelError as err:
        raise ScenarioError(str(err)) from err
