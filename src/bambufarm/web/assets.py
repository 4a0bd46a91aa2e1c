"""The UI's static files, read once into memory and served under a content digest.

Every file is served at `/static/<digest>/<name>` where the digest covers all of them: the
URLs change whenever any file changes, so browsers may cache them for a year
(`immutable`) and still never mix an old module with a new one. The modules import each
other with relative URLs, which keeps the digest without a build step rewriting imports.

Content types come from our own table, not `mimetypes`: that module reads the host's
`/etc/mime.types`, and a host that maps `.js` to `text/plain` would make browsers refuse
every module (they require a JavaScript MIME type for `type="module"`).
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"

CONTENT_TYPES: Final = MappingProxyType(
    {
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".svg": "image/svg+xml",
        ".png": "image/png",
        ".json": "application/json",
    }
)
# The digest only has to tell versions apart; 16 hex digits (64 bits) keep URLs short.
DIGEST_CHARS: Final = 16


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file: its bytes, content type and strong ETag."""

    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True, slots=True)
class AssetTable:
    """Every static file by name, and the digest of them all."""

    files: MappingProxyType[str, Asset]
    digest: str

    def get(self, name: str) -> Asset | None:
        """The file called `name` (a plain name from the table), or None."""
        return self.files.get(name)

    def url(self, name: str) -> str:
        """The cacheable URL of a file of the table."""
        if name not in self.files:
            raise KeyError(f"no static file {name!r}")
        return f"/static/{self.digest}/{name}"


def load_assets(directory: Path = STATIC_DIR) -> AssetTable:
    """Read every servable file of `directory` (flat; unknown extensions are left out)."""
    files: dict[str, Asset] = {}
    whole = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        one = hashlib.sha256(body).hexdigest()
        whole.update(path.name.encode() + b"\0" + one.encode())
        files[path.name] = Asset(body, content_type, f'"{one[:DIGEST_CHARS]}"')
    return AssetTable(MappingProxyType(files), whole.hexdigest()[:DIGEST_CHARS])
