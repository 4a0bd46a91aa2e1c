"""Authentication over real HTTP: sessions with CSRF, API keys with scopes, the first admin,
password changes, users and keys administration, rate limiting, and the audit trail.

Every test runs on SQLite and on PostgreSQL against uvicorn on 127.0.0.1.
"""

import ssl
from datetime import datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest

from bambufarm.auth.ratelimit import MAX_FAILURES, WINDOW_S
from bambufarm.auth.roles import Role
from bambufarm.auth.sessions import SESSION_TTL
from bambufarm.storage.audit import AuditEntry, list_actions
from tests.support.api import PASSWORD, RunningApi, running_api, self_signed_tls

pytest_plugins = ["tests.support.postgres", "tests.support.api_fixtures"]

NEW_PASSWORD = "a brand new passphrase"


def _cookies(response: httpx.Response) -> dict[str, str]:
    """Each Set-Cookie header of a response, by cookie name (attributes included)."""
    found: dict[str, str] = {}
    for header in response.headers.get_list("set-cookie"):
        name = header.split("=", 1)[0]
        found[name] = header
    return found


async def _audit(api: RunningApi, action: str) -> list[AuditEntry]:
    async with api.services.database.session(readonly=True) as session:
        page = await list_actions(session, action=action)
    return list(page.items)


# --- sessions and CSRF ---------------------------------------------------------------------


async def test_login_sets_an_httponly_session_and_a_readable_csrf_cookie(api: RunningApi) -> None:
    await api.add_user("olga", Role.OPERATOR)
    client = api.client()
    response = await client.post(
        "/api/v1/auth/login", json={"username": "Olga", "password": PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "olga"
    assert body["role"] == "operator"
    assert body["must_change_password"] is False
    assert datetime.fromisoformat(body["expires_at"]) == api.clock() + SESSION_TTL
    assert response.headers["cache-control"] == "no-store"
    cookies = _cookies(response)
    session, csrf = cookies["bf_session"], cookies["bf_csrf"]
    assert "HttpOnly" in session
    assert "HttpOnly" not in csrf
    for header in (session, csrf):
        assert "SameSite=lax" in header
        assert "Path=/" in header
        assert f"Max-Age={int(SESSION_TTL.total_seconds())}" in header
        # Plain HTTP here: a Secure cookie would never come back.
        assert "Secure" not in header
    # The readable cookie and the body carry the same CSRF token (double submit).
    assert SimpleCookie(csrf)["bf_csrf"].value == body["csrf_token"]
    me = await client.get("/api/v1/auth/me")
    assert me.status_code == 200
    assert me.json() == {
        "username": "olga",
        "role": "operator",
        "must_change_password": False,
        "auth": "session",
        "api_key_id": None,
        "scopes": None,
        "session_expires_at": body["expires_at"],
    }
    (entry,) = await _audit(api, "auth.login")
    assert entry.actor == "olga"
    assert entry.details == {"address": "127.0.0.1"}


async def test_unsafe_requests_with_a_session_need_the_csrf_header(api: RunningApi) -> None:
    await api.add_user("olga", Role.OPERATOR)
    olga = await api.sign_in("olga")
    new_key = {"name": "script", "scopes": ["read"]}
    missing = await olga.client.post("/api/v1/api-keys", json=new_key)
    assert missing.status_code == 403
    assert missing.json()["type"] == "urn:bambufarm:problem:csrf-rejected"
    assert "X-CSRF-Token" in missing.json()["detail"]
    wrong = await olga.client.post(
        "/api/v1/api-keys", json=new_key, headers={"X-CSRF-Token": "A" * 43}
    )
    assert wrong.status_code == 403
    assert wrong.json()["type"] == "urn:bambufarm:problem:csrf-rejected"
    # The cookie's value sent as the header is what the page does; it works.
    right = await olga.client.post("/api/v1/api-keys", json=new_key, headers=olga.csrf_header)
    assert right.status_code == 201
    # Nothing was created by the refused attempts.
    listed = await olga.client.get("/api/v1/api-keys")
    assert [k["name"] for k in listed.json()["items"]] == ["script"]


async def test_csrf_token_of_another_session_is_refused(api: RunningApi) -> None:
    await api.add_user("olga", Role.OPERATOR)
    first = await api.sign_in("olga")
    second = await api.sign_in("olga")
    response = await first.client.post(
        "/api/v1/api-keys", json={"name": "x", "scopes": ["read"]}, headers=second.csrf_header
    )
    assert response.status_code == 403
    assert response.json()["type"] == "urn:bambufarm:problem:csrf-rejected"


async def test_wrong_password_unknown_user_and_disabled_user_get_the_same_401(
    api: RunningApi,
) -> None:
    await api.add_user("olga", Role.OPERATOR)
    await api.add_user("dora", Role.OPERATOR)
    admin = await api.user_session("root", Role.ADMIN)
    disabled = await admin.client.patch(
        "/api/v1/users/dora", json={"disabled": True}, headers=admin.csrf_header
    )
    assert disabled.status_code == 200
    client = api.client()
    bodies = []
    for username, password in (
        ("olga", "wrong password!"),
        ("nobody", PASSWORD),
        ("dora", PASSWORD),
    ):
        response = await client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 401
        assert "set-cookie" not in response.headers
        body = response.json()
        del body["instance"]
        bodies.append(body)
    # Nothing in the answer tells which of the three it was.
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["detail"] == "invalid credentials"
    assert [e.actor for e in await _audit(api, "auth.login")] == ["root"]


async def test_failed_logins_are_rate_limited_with_retry_after(api: RunningApi) -> None:
    await api.add_user("olga", Role.OPERATOR)
    client = api.client()
    wrong = {"username": "olga", "password": "not her password"}
    for _ in range(MAX_FAILURES):
        assert (await client.post("/api/v1/auth/login", json=wrong)).status_code == 401
    # Now even the right password is refused until the window has passed.
    right = {"username": "olga", "password": PASSWORD}
    limited = await client.post("/api/v1/auth/login", json=right)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == str(int(WINDOW_S))
    body = limited.json()
    assert body["type"] == "urn:bambufarm:problem:rate-limited"
    assert body["retry_after"] == int(WINDOW_S)
    api.limiter_clock.now += WINDOW_S / 2
    half = await client.post("/api/v1/auth/login", json=right)
    assert half.status_code == 429
    assert half.headers["retry-after"] == str(int(WINDOW_S / 2))
    api.limiter_clock.now += WINDOW_S / 2
    assert (await client.post("/api/v1/auth/login", json=right)).status_code == 200


async def test_logout_ends_the_session_and_clears_the_cookies(api: RunningApi) -> None:
    await api.add_user("olga", Role.OPERATOR)
    olga = await api.sign_in("olga")
    token = olga.client.cookies["bf_session"]
    without_csrf = await olga.client.post("/api/v1/auth/logout")
    assert without_csrf.status_code == 403
    response = await olga.client.post("/api/v1/auth/logout", headers=olga.csrf_header)
    assert response.status_code == 204
    cleared = _cookies(response)
    assert "Max-Age=0" in cleared["bf_session"]
    assert "Max-Age=0" in cleared["bf_csrf"]
    # The old cookie, replayed, is dead on the server side too.
    replay = api.client(cookies={"bf_session": token})
    assert (await replay.get("/api/v1/auth/me")).status_code == 401
    (entry,) = await _audit(api, "auth.logout")
    assert entry.actor == "olga"


async def test_sessions_expire(api: RunningApi) -> None:
    await api.add_user("olga", Role.OPERATOR)
    olga = await api.sign_in("olga")
    api.clock.advance(SESSION_TTL - timedelta(seconds=1))
    assert (await olga.client.get("/api/v1/auth/me")).status_code == 200
    api.clock.advance(timedelta(seconds=1))
    expired = await olga.client.get("/api/v1/auth/me")
    assert expired.status_code == 401
    assert await api.services.prune_sessions_once() == 1


async def test_signing_in_again_replaces_the_browsers_old_session(api: RunningApi) -> None:
    await api.add_user("olga", Role.OPERATOR)
    olga = await api.sign_in("olga")
    old = olga.client.cookies["bf_session"]
    again = await olga.client.post(
        "/api/v1/auth/login", json={"username": "olga", "password": PASSWORD}
    )
    assert again.status_code == 200
    assert olga.client.cookies["bf_session"] != old
    assert (await api.client(cookies={"bf_session": old}).get("/api/v1/auth/me")).status_code == 401


# --- the first admin and passwords ---------------------------------------------------------


async def test_first_admin_must_change_the_password_before_anything_else(api: RunningApi) -> None:
    assert len(api.admin_password) >= 20
    admin = await api.sign_in("admin", api.admin_password)
    assert admin.body["must_change_password"] is True
    blocked = await admin.client.get("/api/v1/users")
    assert blocked.status_code == 403
    assert blocked.json()["type"] == "urn:bambufarm:problem:password-change-required"
    assert "POST /api/v1/auth/password" in blocked.json()["detail"]
    me = await admin.client.get("/api/v1/auth/me")
    assert me.status_code == 200
    assert me.json()["must_change_password"] is True

    changed = await admin.client.post(
        "/api/v1/auth/password",
        json={"current_password": api.admin_password, "new_password": NEW_PASSWORD},
        headers=admin.csrf_header,
    )
    assert changed.status_code == 204
    assert "Max-Age=0" in _cookies(changed)["bf_session"]
    # Every session ended, this one too.
    assert (await admin.client.get("/api/v1/auth/me")).status_code == 401
    again = await api.sign_in("admin", NEW_PASSWORD)
    assert again.body["must_change_password"] is False
    assert (await again.client.get("/api/v1/users")).status_code == 200
    (entry,) = await _audit(api, "auth.password_change")
    assert entry.actor == "admin"


async def test_password_change_checks_the_current_password_and_the_policy(
    api: RunningApi,
) -> None:
    olga = await api.user_session("olga", Role.OPERATOR)
    wrong = await olga.client.post(
        "/api/v1/auth/password",
        json={"current_password": "not the password", "new_password": NEW_PASSWORD},
        headers=olga.csrf_header,
    )
    assert wrong.status_code == 403
    assert wrong.json()["type"] == "urn:bambufarm:problem:wrong-password"
    weak = await olga.client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=olga.csrf_header,
    )
    assert weak.status_code == 422
    assert weak.json()["type"] == "urn:bambufarm:problem:weak-password"
    assert "at least 10 characters" in weak.json()["detail"]
    # Neither attempt changed anything: the session still works.
    assert (await olga.client.get("/api/v1/auth/me")).status_code == 200


async def test_guessing_the_current_password_from_a_session_is_rate_limited(
    api: RunningApi,
) -> None:
    olga = await api.user_session("olga", Role.OPERATOR)
    guess = {"current_password": "a wrong guess", "new_password": NEW_PASSWORD}
    for _ in range(MAX_FAILURES):
        response = await olga.client.post(
            "/api/v1/auth/password", json=guess, headers=olga.csrf_header
        )
        assert response.status_code == 403
    limited = await olga.client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=olga.csrf_header,
    )
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0


async def test_api_keys_cannot_change_passwords_or_sign_out(api: RunningApi) -> None:
    await api.add_user("olga", Role.OPERATOR)
    key = api.key_client(await api.add_key("olga", ["read", "control"]))
    password = await key.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert password.status_code == 403
    logout = await key.post("/api/v1/auth/logout")
    assert logout.status_code == 400
    assert "DELETE /api/v1/api-keys/" in logout.json()["detail"]


# --- API keys ------------------------------------------------------------------------------


async def test_api_key_is_shown_once_works_without_csrf_and_is_listed_without_secret(
    api: RunningApi,
) -> None:
    olga = await api.user_session("olga", Role.OPERATOR)
    created = await olga.client.post(
        "/api/v1/api-keys",
        json={"name": "erp", "scopes": ["read", "control"]},
        headers=olga.csrf_header,
    )
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    body = created.json()
    token = body["token"]
    assert token.startswith(f"bf_{body['id']}_")
    assert body["owner"] == "olga"
    assert body["scopes"] == ["control", "read"]
    key = api.key_client(token)
    me = await key.get("/api/v1/auth/me")
    assert me.json()["auth"] == "api_key"
    assert me.json()["api_key_id"] == body["id"]
    # An unsafe request with a key needs no CSRF token.
    second = await key.post("/api/v1/api-keys", json={"name": "x", "scopes": ["read"]})
    assert second.status_code == 403  # a control key cannot mint keys, but CSRF was not asked
    assert second.json()["type"] == "urn:bambufarm:problem:forbidden"
    listed = await olga.client.get("/api/v1/api-keys")
    (item,) = listed.json()["items"]
    assert "token" not in item
    assert token.split("_", 2)[2] not in listed.text
    assert item["last_used_at"] is not None
    (entry,) = await _audit(api, "api_key.create")
    assert entry.actor == "olga"
    assert entry.details == {"id": body["id"], "name": "erp", "scopes": ["control", "read"]}


async def test_key_scopes_are_limited_by_the_role(api: RunningApi) -> None:
    viewer = await api.user_session("vera", Role.VIEWER)
    refused = await viewer.client.post(
        "/api/v1/api-keys", json={"name": "x", "scopes": ["control"]}, headers=viewer.csrf_header
    )
    assert refused.status_code == 422
    assert refused.json()["type"] == "urn:bambufarm:problem:invalid-scopes"
    unknown = await viewer.client.post(
        "/api/v1/api-keys", json={"name": "x", "scopes": ["root"]}, headers=viewer.csrf_header
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "body.scopes.0"


async def test_a_read_key_can_view_but_not_administer(api: RunningApi) -> None:
    await api.add_user("root", Role.ADMIN)
    read = api.key_client(await api.add_key("root", ["read"]))
    await read.get("/api/v1/users/root")
    metrics = await read.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    # Requests are counted by route template, never by the name in the path.
    assert (
        'bambufarm_http_requests_total{method="GET",route="/api/v1/users/{username}",'
        'status="403"} 1.0'
    ) in metrics.text
    assert "/api/v1/users/root" not in metrics.text
    refused = await read.get("/api/v1/users")
    assert refused.status_code == 403
    assert "admin scope" in refused.json()["detail"]
    admin_key = api.key_client(await api.add_key("root", ["admin"]))
    assert (await admin_key.get("/api/v1/users")).status_code == 200


async def test_revoked_key_stops_working_at_once(api: RunningApi) -> None:
    olga = await api.user_session("olga", Role.OPERATOR)
    token = await api.add_key("olga", ["read"])
    key = api.key_client(token)
    assert (await key.get("/api/v1/auth/me")).status_code == 200
    key_id = token.split("_")[1]
    revoked = await olga.client.delete(f"/api/v1/api-keys/{key_id}", headers=olga.csrf_header)
    assert revoked.status_code == 204
    assert (await key.get("/api/v1/auth/me")).status_code == 401
    assert (await olga.client.get("/api/v1/api-keys")).json()["items"] == []
    everything = await olga.client.get("/api/v1/api-keys", params={"include_revoked": "true"})
    assert everything.json()["items"][0]["revoked_at"] is not None
    (entry,) = await _audit(api, "api_key.revoke")
    assert entry.details == {"id": key_id, "owner": "olga"}


async def test_others_keys_are_invisible_to_users_and_managed_by_admins(api: RunningApi) -> None:
    olga = await api.user_session("olga", Role.OPERATOR)
    otto = await api.user_session("otto", Role.OPERATOR)
    admin = await api.user_session("root", Role.ADMIN)
    otto_key = (await api.add_key("otto", ["read"])).split("_")[1]
    not_hers = await olga.client.delete(f"/api/v1/api-keys/{otto_key}", headers=olga.csrf_header)
    assert not_hers.status_code == 404
    assert (await olga.client.get("/api/v1/api-keys", params={"owner": "otto"})).status_code == 403
    assert (await olga.client.get("/api/v1/api-keys", params={"all": "true"})).status_code == 403
    assert (await otto.client.get("/api/v1/api-keys")).json()["items"][0]["id"] == otto_key
    everybody = await admin.client.get("/api/v1/api-keys", params={"all": "true"})
    assert [k["owner"] for k in everybody.json()["items"]] == ["otto"]
    his = await admin.client.get("/api/v1/api-keys", params={"owner": "OTTO"})
    assert [k["id"] for k in his.json()["items"]] == [otto_key]
    revoked = await admin.client.delete(f"/api/v1/api-keys/{otto_key}", headers=admin.csrf_header)
    assert revoked.status_code == 204
    (entry,) = await _audit(api, "api_key.revoke")
    assert entry.actor == "root"


# --- users ---------------------------------------------------------------------------------


async def test_admin_creates_users_with_a_generated_or_given_password(api: RunningApi) -> None:
    admin = await api.user_session("root", Role.ADMIN)
    generated = await admin.client.post(
        "/api/v1/users", json={"username": "Otto", "role": "operator"}, headers=admin.csrf_header
    )
    assert generated.status_code == 201
    assert generated.headers["location"] == "/api/v1/users/otto"
    body = generated.json()
    assert body["username"] == "otto"
    assert body["must_change_password"] is True
    first = await api.sign_in("otto", body["initial_password"])
    assert first.body["must_change_password"] is True
    given = await admin.client.post(
        "/api/v1/users",
        json={"username": "vera", "password": "chosen by the admin"},
        headers=admin.csrf_header,
    )
    assert given.status_code == 201
    assert given.json()["role"] == "viewer"
    assert given.json()["initial_password"] is None
    duplicate = await admin.client.post(
        "/api/v1/users", json={"username": "OTTO"}, headers=admin.csrf_header
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["type"] == "urn:bambufarm:problem:already-exists"
    bad_name = await admin.client.post(
        "/api/v1/users", json={"username": "no spaces"}, headers=admin.csrf_header
    )
    assert bad_name.status_code == 422
    assert bad_name.json()["type"] == "urn:bambufarm:problem:validation"
    assert bad_name.json()["errors"][0]["field"] == "body.username"
    page = await admin.client.get("/api/v1/users", params={"limit": 2})
    assert page.json()["total"] == 4  # admin, otto, root, vera
    assert [u["username"] for u in page.json()["items"]] == ["admin", "otto"]
    rest = await admin.client.get("/api/v1/users", params={"limit": 2, "offset": 2})
    assert [u["username"] for u in rest.json()["items"]] == ["root", "vera"]
    assert "password_hash" not in page.text
    assert "$argon2" not in page.text
    assert "initial_password" not in page.text
    created = [e.details["username"] for e in await _audit(api, "user.create")]
    assert sorted(created) == ["admin", "otto", "vera"]


async def test_disabling_a_user_ends_their_sessions_and_keys(api: RunningApi) -> None:
    admin = await api.user_session("root", Role.ADMIN)
    olga = await api.user_session("olga", Role.OPERATOR)
    key = api.key_client(await api.add_key("olga", ["read"]))
    response = await admin.client.patch(
        "/api/v1/users/olga", json={"disabled": True}, headers=admin.csrf_header
    )
    assert response.status_code == 200
    assert response.json()["disabled"] is True
    assert (await olga.client.get("/api/v1/auth/me")).status_code == 401
    assert (await key.get("/api/v1/auth/me")).status_code == 401
    enabled = await admin.client.patch(
        "/api/v1/users/olga", json={"disabled": False, "role": "viewer"}, headers=admin.csrf_header
    )
    assert enabled.json()["role"] == "viewer"
    # The key works again, with the owner's new, smaller role.
    assert (await key.get("/api/v1/auth/me")).json()["role"] == "viewer"
    details = [e.details for e in await _audit(api, "user.update")]
    assert {"username": "olga", "disabled": True} in details
    assert {"username": "olga", "disabled": False, "role": "viewer"} in details


async def test_the_farm_always_keeps_an_admin(api: RunningApi) -> None:
    root = await api.user_session("root", Role.ADMIN)
    for change in ({"role": "operator"}, {"disabled": True}):
        response = await root.client.patch(
            "/api/v1/users/root", json=change, headers=root.csrf_header
        )
        assert response.status_code == 409
        assert "your own account" in response.json()["detail"]
    # The first admin is still there; root may demote it, and is then the only admin left.
    demoted = await root.client.patch(
        "/api/v1/users/admin", json={"role": "viewer"}, headers=root.csrf_header
    )
    assert demoted.status_code == 200
    empty = await root.client.patch("/api/v1/users/root", json={}, headers=root.csrf_header)
    assert empty.status_code == 422


async def test_admin_resets_a_password_shown_once(api: RunningApi) -> None:
    admin = await api.user_session("root", Role.ADMIN)
    olga = await api.user_session("olga", Role.OPERATOR)
    reset = await admin.client.post("/api/v1/users/olga/reset-password", headers=admin.csrf_header)
    assert reset.status_code == 200
    assert reset.headers["cache-control"] == "no-store"
    password = reset.json()["password"]
    assert (await olga.client.get("/api/v1/auth/me")).status_code == 401
    again = await api.sign_in("olga", password)
    assert again.body["must_change_password"] is True
    own = await admin.client.post("/api/v1/users/root/reset-password", headers=admin.csrf_header)
    assert own.status_code == 400
    missing = await admin.client.post(
        "/api/v1/users/nobody/reset-password", headers=admin.csrf_header
    )
    assert missing.status_code == 404
    (entry,) = await _audit(api, "user.reset_password")
    assert entry.actor == "root"


async def test_operators_cannot_manage_users(api: RunningApi) -> None:
    olga = await api.user_session("olga", Role.OPERATOR)
    response = await olga.client.post(
        "/api/v1/users", json={"username": "mallory", "role": "admin"}, headers=olga.csrf_header
    )
    assert response.status_code == 403
    assert "needs the admin role" in response.json()["detail"]


# --- TLS -----------------------------------------------------------------------------------


async def test_over_https_the_cookies_are_secure(database_url: str, tmp_path: Path) -> None:
    tls = self_signed_tls(tmp_path)
    async with running_api(database_url, tmp_path / "data", tls=tls) as api:
        assert api.url.startswith("https://127.0.0.1:")
        await api.add_user("olga", Role.OPERATOR)
        client = api.client()
        response = await client.post(
            "/api/v1/auth/login", json={"username": "olga", "password": PASSWORD}
        )
        assert response.status_code == 200
        for header in _cookies(response).values():
            assert "Secure" in header
        assert (await client.get("/api/v1/auth/me")).status_code == 200
        # Plain HTTP to the TLS port gets no API at all.
        plain = api.client(base_url=api.url.replace("https://", "http://"))
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, ssl.SSLError)):
            await plain.get("/api/health")
