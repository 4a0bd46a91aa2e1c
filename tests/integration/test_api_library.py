"""The library API over real HTTP on SQLite and PostgreSQL: streaming uploads (raw and
multipart), refusals that say why and keep nothing, list/search/filter with pages, metadata,
thumbnails with cache headers, rename/move/tag, delete (409 while in use), auth and audit.
"""

import asyncio
import hashlib
import logging
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bambufarm.auth.roles import Role
from bambufarm.jobs.library import Library
from bambufarm.jobs.model import JobSpec
from bambufarm.storage.audit import list_actions
from tests.support.api import RunningApi
from tests.support.queue_api import P1S, X1C, sliced, upload, uploaded
from tests.support.threemf_factory import PlateSpec, build_gcode_3mf, build_hostile_3mf

pytest_plugins = ["tests.support.postgres", "tests.support.api_fixtures"]

PROBLEM = "urn:bambufarm:problem:"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
async def operator(api: RunningApi) -> httpx.AsyncClient:
    """A client with an operator's queue-scoped API key."""
    await api.add_user("olga", Role.OPERATOR)
    return api.key_client(await api.add_key("olga", ["queue"]))


def library_files(api: RunningApi) -> list[Path]:
    """Every file under the library's directory (stored contents and temporary uploads)."""
    root = api.services.library.root
    return sorted(p for p in root.rglob("*") if p.is_file())


def multipart(boundary: str, parts: list[tuple[str, str | None, bytes]]) -> bytes:
    """A multipart/form-data body: (field name, filename or None, content) per part."""
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename:
            body += b"Content-Type: application/octet-stream\r\n"
        body += b"\r\n" + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


async def test_raw_upload_stores_the_file_with_its_metadata(
    api: RunningApi, operator: httpx.AsyncClient
) -> None:
    data = build_gcode_3mf(printer_model_id=X1C)
    response = await upload(
        operator, data, "bracket.gcode.3mf", folder="clients/acme", tag=["rush"]
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "bracket.gcode.3mf"
    assert body["folder"] == "clients/acme"
    assert body["tags"] == ["rush"]
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["size"] == len(data)
    assert (body["model"], body["model_name"]) == (X1C, "X1C")
    assert body["nozzle_diameter"] == pytest.approx(0.4)
    assert body["plate_count"] == 1
    (plate,) = body["plates"]
    assert plate["index"] == 1
    assert plate["has_thumbnail"] is True
    assert plate["objects"] == ["Part A.stl"]
    (filament,) = plate["filaments"]
    assert filament["type"] == "PLA"
    assert filament["color"] == "#000000"
    assert filament["grams"] == pytest.approx(17.32)

    # The same answer from the file's own URL and by its content.
    again = await operator.get(f"/api/v1/library/files/{body['id']}")
    assert again.json() == body
    content = await operator.get(f"/api/v1/library/contents/{body['sha256']}")
    assert content.status_code == 200
    assert content.json()["plates"] == body["plates"]
    async with api.services.database.session(readonly=True) as session:
        audit = await list_actions(session, action="library.add")
    (entry,) = audit.items
    assert entry.actor.startswith("olga")
    assert entry.details["sha256"] == body["sha256"]


async def test_the_same_file_twice_is_stored_once(
    api: RunningApi, operator: httpx.AsyncClient
) -> None:
    data = sliced()
    first = await uploaded(operator, data, "a.gcode.3mf")
    repeat = await uploaded(operator, data, "a.gcode.3mf")
    other_name = await uploaded(operator, data, "b.gcode.3mf")
    assert repeat["id"] == first["id"]
    assert other_name["id"] != first["id"]
    assert other_name["sha256"] == first["sha256"]
    assert len(library_files(api)) == 1
    # Another content under a taken name is refused, not overwritten.
    taken = await upload(operator, sliced(color="#FF0000"), "a.gcode.3mf")
    assert taken.status_code == 409
    assert taken.json()["type"] == PROBLEM + "duplicate-file-name"


async def test_multipart_upload_with_fields_before_the_file(
    api: RunningApi, operator: httpx.AsyncClient
) -> None:
    data = sliced()
    boundary = "bf-test-boundary-1234"
    body = multipart(
        boundary,
        [
            ("folder", None, b"shelf"),
            ("tag", None, b"pla"),
            ("tag", None, b"white"),
            ("file", "C:\\Users\\ann\\Desktop\\hook.gcode.3mf", data),
        ],
    )
    response = await operator.post(
        "/api/v1/library/files",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 201, response.text
    stored = response.json()
    # The browser's path is dropped: only the file's own name is kept.
    assert stored["name"] == "hook.gcode.3mf"
    assert stored["folder"] == "shelf"
    assert stored["tags"] == ["pla", "white"]
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()

    # httpx's own multipart encoding (a form as browsers send it) works as well.
    form = await operator.post(
        "/api/v1/library/files",
        data={"name": "hook copy.gcode.3mf"},
        files={"file": ("x.gcode.3mf", data, "application/octet-stream")},
    )
    assert form.status_code == 201, form.text
    assert form.json()["name"] == "hook copy.gcode.3mf"


@pytest.mark.parametrize(
    ("parts", "says"),
    [
        ([("file", "a.gcode.3mf", b"DATA"), ("folder", None, b"late")], "before the file part"),
        ([("folder", None, b"x")], "no file part"),
        ([("colour", None, b"red"), ("file", "a.gcode.3mf", b"DATA")], "unknown form field"),
        (
            [("file", "a.gcode.3mf", b"DATA"), ("file", "b.gcode.3mf", b"DATA")],
            "one file per upload",
        ),
    ],
)
async def test_malformed_forms_are_refused_and_leave_nothing(
    api: RunningApi,
    operator: httpx.AsyncClient,
    parts: list[tuple[str, str | None, bytes]],
    says: str,
) -> None:
    data = sliced()
    boundary = "bf-boundary"
    real = [(n, f, data if c == b"DATA" else c) for n, f, c in parts]
    response = await operator.post(
        "/api/v1/library/files",
        content=multipart(boundary, real),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400, response.text
    assert says in response.json()["detail"]
    assert library_files(api) == []
    assert (await operator.get("/api/v1/library/files")).json()["total"] == 0


async def test_a_truncated_multipart_body_is_refused(
    api: RunningApi, operator: httpx.AsyncClient
) -> None:
    boundary = "bf-boundary"
    body = multipart(boundary, [("file", "a.gcode.3mf", sliced())])
    response = await operator.post(
        "/api/v1/library/files",
        content=body[: -len(f"--{boundary}--\r\n")],
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400, response.text
    assert "ended before the end" in response.json()["detail"]
    assert library_files(api) == []


@pytest.mark.parametrize(
    ("data", "slug", "says"),
    [
        (build_gcode_3mf(sliced=False), "not-sliced", "slice"),
        (b"PK\x03\x04 this is not really a zip archive", "invalid-3mf", ""),
        (b"", "invalid-3mf", "empty"),
        (build_hostile_3mf("dotdot"), "unsafe-3mf", ""),
        (build_hostile_3mf("ratio_bomb"), "unsafe-3mf", ""),
        (build_hostile_3mf("external_entity"), "unsafe-3mf", ""),
        (build_gcode_3mf(printer_model_id="ZZ9"), "invalid-protocol-value", "'ZZ9'"),
    ],
    ids=["unsliced", "corrupt", "empty", "dotdot", "ratio-bomb", "xxe", "unknown-model"],
)
async def test_refused_files_say_why_and_leave_nothing(
    api: RunningApi, operator: httpx.AsyncClient, data: bytes, slug: str, says: str
) -> None:
    response = await upload(operator, data, "refused.gcode.3mf")
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == PROBLEM + slug, problem
    assert says in problem["detail"]
    assert library_files(api) == []
    assert (await operator.get("/api/v1/library/files")).json()["total"] == 0


async def test_a_file_over_the_cap_is_413_and_the_client_reads_it(
    api: RunningApi, operator: httpx.AsyncClient
) -> None:
    services = api.services
    services.library = Library(services.library.root, services.database, max_bytes=1024**2)
    # The cap is 1 MiB; the client goes on sending ~2 MB after it is passed.
    too_big = sliced(padding=9 * 1024**2)
    assert 2 * 1024**2 < len(too_big) < 4 * 1024**2
    response = await upload(operator, too_big, "big.gcode.3mf")
    assert response.status_code == 413, response.text
    assert response.json()["type"] == PROBLEM + "upload-too-large"
    assert "1 MiB" in response.json()["detail"]
    assert library_files(api) == []
    assert (await operator.get("/api/v1/library/files")).json()["total"] == 0


async def test_uploads_stream_without_holding_the_file_in_memory(
    api: RunningApi, operator: httpx.AsyncClient
) -> None:
    # Warm up first: the first request of a process fills caches (SQL, validators) for good.
    await uploaded(operator, sliced(color="#123456"), "warm.gcode.3mf")
    # ~10 MB, ten times the app's 1 MiB limit for JSON bodies.
    data = sliced(padding=30 * 1024**2)
    assert len(data) > 8 * 1024**2

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]

    # Chunked transfer encoding (no Content-Length): the server cannot know the size upfront.
    tracemalloc.start()
    try:
        response = await operator.post(
            "/api/v1/library/files",
            params={"name": "long.gcode.3mf"},
            content=chunks(),
            headers={"Content-Type": "application/octet-stream"},
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 201, response.text
    assert response.json()["size"] == len(data)
    # Client and server share this process: together they held a small part of the file
    # (measured: ~1.6 MB of buffers and chunks in flight, whatever the file's size).
    assert peak < len(data) // 4, f"peak {peak} bytes while uploading {len(data)}"


async def test_bodies_that_are_not_files_and_nameless_files(
    api: RunningApi, operator: httpx.AsyncClient
) -> None:
    as_json = await operator.post("/api/v1/library/files", json={"file": "x"})
    assert as_json.status_code == 415
    assert as_json.json()["type"] == PROBLEM + "unsupported-media-type"
    nameless = await operator.post(
        "/api/v1/library/files",
        content=sliced(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert nameless.status_code == 400
    assert "?name=" in nameless.json()["detail"]
    named_by_header = await operator.post(
        "/api/v1/library/files",
        content=sliced(),
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": 'attachment; filename="from-header.gcode.3mf"',
        },
    )
    assert named_by_header.status_code == 201, named_by_header.text
    assert named_by_header.json()["name"] == "from-header.gcode.3mf"
    bad_name = await upload(operator, sliced(), "a/b.gcode.3mf")
    assert bad_name.status_code == 422
    assert library_files(api) == [api.services.library.path_of(named_by_header.json()["sha256"])]


async def test_list_search_filter_and_pages(api: RunningApi, operator: httpx.AsyncClient) -> None:
    await uploaded(operator, sliced(color="#111111"), "clip.gcode.3mf", folder="parts")
    await uploaded(operator, sliced(color="#222222"), "hook.gcode.3mf", folder="parts/hooks")
    await uploaded(operator, sliced(model=X1C), "lid.gcode.3mf", tag=["rush"])
    await uploaded(operator, sliced(color="#333333"), "big hook.gcode.3mf", tag=["rush", "pla"])

    async def names(**params: Any) -> list[str]:
        response = await operator.get("/api/v1/library/files", params=params)
        assert response.status_code == 200, response.text
        return [f["name"] for f in response.json()["items"]]

    assert await names() == [
        "big hook.gcode.3mf", "lid.gcode.3mf", "clip.gcode.3mf", "hook.gcode.3mf",
    ]  # fmt: skip
    assert await names(folder="parts") == ["clip.gcode.3mf"]
    assert await names(folder="") == ["big hook.gcode.3mf", "lid.gcode.3mf"]
    assert await names(search="HOOK") == ["big hook.gcode.3mf", "hook.gcode.3mf"]
    assert await names(tag="rush") == ["big hook.gcode.3mf", "lid.gcode.3mf"]
    assert await names(model="X1C") == ["lid.gcode.3mf"]
    assert await names(model=P1S, tag="rush") == ["big hook.gcode.3mf"]
    page = (await operator.get("/api/v1/library/files", params={"offset": 1, "limit": 2})).json()
    assert (page["total"], page["offset"], page["limit"]) == (4, 1, 2)
    assert [f["name"] for f in page["items"]] == ["lid.gcode.3mf", "clip.gcode.3mf"]
    unknown = await operator.get("/api/v1/library/files", params={"model": "Z9000"})
    assert unknown.status_code == 422
    folders = await operator.get("/api/v1/library/folders")
    assert folders.json() == {"folders": ["parts", "parts/hooks"]}


async def test_thumbnails_are_pngs_with_cache_headers(
    api: RunningApi, operator: httpx.AsyncClient
) -> None:
    data = build_gcode_3mf(plates=[PlateSpec(thumbnail=True), PlateSpec(thumbnail=False)])
    stored = await uploaded(operator, data, "two.gcode.3mf")
    url = f"/api/v1/library/files/{stored['id']}/plates/1/thumbnail"
    response = await operator.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(PNG_SIGNATURE)
    assert "max-age" in response.headers["cache-control"]
    etag = response.headers["etag"]
    cached = await operator.get(url, headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""
    by_content = await operator.get(
        f"/api/v1/library/contents/{stored['sha256']}/plates/1/thumbnail"
    )
    assert by_content.content == response.content
    assert "immutable" in by_content.headers["cache-control"]

    no_thumbnail = await operator.get(f"/api/v1/library/files/{stored['id']}/plates/2/thumbnail")
    assert no_thumbnail.status_code == 404
    assert "no thumbnail" in no_thumbnail.json()["detail"]
    no_plate = await operator.get(f"/api/v1/library/files/{stored['id']}/plates/7/thumbnail")
    assert no_plate.status_code == 404
    assert "plates are: 1, 2" in no_plate.json()["detail"]
    no_file = await operator.get("/api/v1/library/files/999999/plates/1/thumbnail")
    assert no_file.status_code == 404


async def test_rename_move_and_tag_in_one_audited_change(
    api: RunningApi, operator: httpx.AsyncClient
) -> None:
    first = await uploaded(operator, sliced(), "a.gcode.3mf")
    await uploaded(operator, sliced(color="#00FF00"), "b.gcode.3mf", folder="done")
    url = f"/api/v1/library/files/{first['id']}"
    changed = await operator.patch(
        url, json={"name": "bracket v2.gcode.3mf", "folder": "done", "tags": ["v2", "pla", "v2"]}
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["name"], body["folder"], body["tags"]) == (
        "bracket v2.gcode.3mf", "done", ["pla", "v2"],
    )  # fmt: skip
    assert body["sha256"] == first["sha256"]
    # Into a folder where the name is taken: refused, nothing changed.
    clash = await operator.patch(url, json={"name": "b.gcode.3mf"})
    assert clash.status_code == 409
    assert clash.json()["type"] == PROBLEM + "duplicate-file-name"
    assert (await operator.get(url)).json()["name"] == "bracket v2.gcode.3mf"
    invalid = await operator.patch(url, json={"folder": "../up"})
    assert invalid.status_code == 422
    unknown_field = await operator.patch(url, json={"sha256": "0" * 64})
    assert unknown_field.status_code == 422
    async with api.services.database.session(readonly=True) as session:
        audit = await list_actions(session, action="library.update")
    (entry,) = audit.items
    assert entry.details["changed"] == ["folder", "name", "tags"]


async def test_delete_is_refused_while_a_job_needs_the_file(
    api: RunningApi, operator: httpx.AsyncClient
) -> None:
    stored = await uploaded(operator, sliced(), "busy.gcode.3mf")
    (job,) = await api.services.queue.add(JobSpec(stored["sha256"], "busy"))
    url = f"/api/v1/library/files/{stored['id']}"
    refused = await operator.delete(url)
    assert refused.status_code == 409
    assert refused.json()["type"] == PROBLEM + "file-in-use"
    assert str(job.id) in refused.json()["detail"]
    assert len(library_files(api)) == 1

    await api.services.queue.cancel(job.id, by="test")
    deleted = await operator.delete(url)
    assert deleted.status_code == 204
    assert (await operator.get(url)).status_code == 404
    assert library_files(api) == []
    async with api.services.database.session(readonly=True) as session:
        audit = await list_actions(session, action="library.delete")
    assert [e.details["name"] for e in audit.items] == ["busy.gcode.3mf"]


async def test_who_may_read_and_who_may_change_the_library(
    api: RunningApi, operator: httpx.AsyncClient
) -> None:
    stored = await uploaded(operator, sliced(), "mine.gcode.3mf")
    await api.add_user("vic", Role.VIEWER)
    viewer = api.key_client(await api.add_key("vic", ["read"]))
    read_key = api.key_client(await api.add_key("olga", ["read"]))
    control_key = api.key_client(await api.add_key("olga", ["control"]))
    for client in (viewer, read_key, control_key):
        assert (await client.get("/api/v1/library/files")).status_code == 200
        assert (await client.get(f"/api/v1/library/files/{stored['id']}")).status_code == 200
        refused = [
            await upload(client, sliced(color="#ABCDEF"), "x.gcode.3mf"),
            await client.patch(f"/api/v1/library/files/{stored['id']}", json={"name": "y"}),
            await client.delete(f"/api/v1/library/files/{stored['id']}"),
        ]
        assert [r.status_code for r in refused] == [403, 403, 403]
    # A browser session needs its CSRF token to upload.
    session = await api.user_session("opal", Role.OPERATOR)
    no_token = await upload(session.client, sliced(), "s.gcode.3mf")
    assert no_token.status_code == 403
    with_token = await session.client.post(
        "/api/v1/library/files",
        params={"name": "s.gcode.3mf"},
        content=sliced(),
        headers={"Content-Type": "application/octet-stream", **session.csrf_header},
    )
    assert with_token.status_code == 201, with_token.text
    expected = {stored["sha256"], with_token.json()["sha256"]}
    assert library_files(api) == sorted(api.services.library.path_of(s) for s in expected)


async def test_a_file_lost_from_disk_is_a_storage_problem_without_paths(
    api: RunningApi, operator: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    stored = await uploaded(operator, sliced(), "lost.gcode.3mf")
    path = api.services.library.path_of(stored["sha256"])
    path.unlink()
    response = await operator.get(f"/api/v1/library/files/{stored['id']}/plates/1/thumbnail")
    assert response.status_code == 507
    assert response.json()["type"] == PROBLEM + "library-storage"
    assert str(path) not in response.text
    # ... but the operator finds it in the log, and adding the file again restores it.
    assert str(path) in caplog.text
    await uploaded(operator, sliced(), "lost.gcode.3mf")
    restored = await operator.get(f"/api/v1/library/files/{stored['id']}/plates/1/thumbnail")
    assert restored.status_code == 200


async def test_a_client_gone_mid_upload_leaves_nothing_and_logs_no_error(
    api: RunningApi, operator: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    key = operator.headers["Authorization"]
    host, port = api.url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    head = (
        "POST /api/v1/library/files?name=cut.gcode.3mf HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: {key}\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 10000000\r\n\r\n"
    )
    writer.write(head.encode() + b"\0" * 1_000_000)
    await writer.drain()
    tmp = api.services.library.root / "tmp"

    def staging() -> list[Path]:
        return sorted(tmp.glob("*")) if tmp.exists() else []

    async with asyncio.timeout(10):
        # The upload's temporary file appears once the server has read into it.
        while not staging():  # noqa: ASYNC110 - no signal for a file appearing
            await asyncio.sleep(0.02)
    writer.close()
    await writer.wait_closed()
    async with asyncio.timeout(10):
        while staging():  # noqa: ASYNC110 - no signal for a file going away
            await asyncio.sleep(0.02)
    assert (await operator.get("/api/v1/library/files")).json()["total"] == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
