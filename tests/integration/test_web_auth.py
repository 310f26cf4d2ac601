"""Sign-in through the web pages: password + TOTP, replay, recovery codes, lock-out, session
rotation, CSRF, sign-out. A real platform (SQLite) with a clock the test moves."""

from __future__ import annotations

from urllib.parse import quote

from test_web_auth_rig import (
    ADMIN_EMAIL,
    PASSWORD,
    Totp,
    Web,
    admin_with_totp,
    csrf_of,
    enrol_totp,
    session_cookie,
    setup_admin,
    sign_in,
    text_of,
    web,
)

from secretum.web.authflow import TRUST_COOKIE
from secretum.web.deps import CSRF_COOKIE, SESSION_COOKIE
from secretum.web.routes.auth import setup_link

__all__ = ["web"]


def _second_factor(web: Web, code: str, method: str = "totp", next_url: str = "/") -> object:
    page = web.client.get(f"/sign-in/second-factor?next={quote(next_url)}")
    assert page.status_code == 200
    return web.client.post(
        "/sign-in/second-factor",
        data={"csrf_token": csrf_of(page), "method": method, "code": code, "next": next_url},
    )


def _next_code(web: Web, totp: Totp) -> str:
    """A code of the next time step (the current one may be spent already)."""
    web.clock.advance(seconds=30)
    return totp.code(web.clock.now)


def _sign_out(web: Web) -> None:
    page = web.client.get("/account/security")
    done = web.client.post("/sign-out", data={"csrf_token": csrf_of(page)})
    assert done.status_code == 303 and done.headers["location"] == "/sign-in"


def test_setup_then_admin_signs_in_with_password_and_totp(web: Web) -> None:
    totp = admin_with_totp(web)
    assert len(totp.recovery_codes) == 10
    assert setup_link(web.platform) is None  # an administrator exists: set-up is closed
    _sign_out(web)

    code = _next_code(web, totp)
    first = sign_in(web.client, ADMIN_EMAIL, next_url="/admin/settings")
    assert first.status_code == 303
    assert first.headers["location"].startswith("/sign-in/second-factor")
    assert session_cookie(web.client) is None  # nothing granted yet
    pending = web.client.get(first.headers["location"])
    assert "Application d'authentification" in text_of(pending)
    done = _second_factor(web, code, next_url="/admin/settings")
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/admin/settings"
    assert web.client.get("/admin/settings").status_code == 200
    assert web.client.get("/").headers["location"] == "/admin/users"


def test_totp_code_replay_is_refused(web: Web) -> None:
    totp = admin_with_totp(web)
    _sign_out(web)
    code = _next_code(web, totp)
    sign_in(web.client, ADMIN_EMAIL)
    assert _second_factor(web, code).status_code == 303
    _sign_out(web)
    sign_in(web.client, ADMIN_EMAIL)
    replayed = _second_factor(web, code)
    assert replayed.status_code == 401
    assert "déjà été utilisé" in text_of(replayed)


def test_recovery_code_works_once(web: Web) -> None:
    totp = admin_with_totp(web)
    code = totp.recovery_codes[3]
    _sign_out(web)
    sign_in(web.client, ADMIN_EMAIL)
    used = _second_factor(web, code, method="recovery-code")
    assert used.status_code == 303
    assert web.client.get("/account/security").text.count("restants : 9") == 1
    _sign_out(web)
    sign_in(web.client, ADMIN_EMAIL)
    again = _second_factor(web, code, method="recovery-code")
    assert again.status_code == 401 and "Code incorrect" in text_of(again)


def test_lock_out_after_repeated_failures_says_when_to_retry(web: Web) -> None:
    setup_admin(web)
    for _ in range(5):
        wrong = sign_in(web.client, ADMIN_EMAIL, "not the password at all")
        assert wrong.status_code == 401
        assert "Adresse e-mail ou mot de passe incorrect" in text_of(wrong)
    throttled = sign_in(web.client, ADMIN_EMAIL, PASSWORD)  # even the right password waits
    assert throttled.status_code == 429
    assert "Trop de tentatives" in text_of(throttled)
    assert int(throttled.headers["retry-after"]) >= 1
    for _ in range(5):  # failures 6..10, each after the delay: the 10th locks
        web.clock.advance(minutes=6)
        sign_in(web.client, ADMIN_EMAIL, "not the password at all")
    locked = sign_in(web.client, ADMIN_EMAIL, PASSWORD)
    assert locked.status_code == 429
    assert "bloqué temporairement" in text_of(locked)
    assert 800 <= int(locked.headers["retry-after"]) <= 901
    web.clock.advance(minutes=16)
    assert sign_in(web.client, ADMIN_EMAIL, PASSWORD).status_code == 303


def test_an_attacker_locks_only_untrusted_browsers_out(web: Web) -> None:
    """OWASP device cookies: ten wrong passwords from the attacker's browser no longer lock
    the administrator's own browser, which completed a sign-in before."""
    totp = admin_with_totp(web)
    _sign_out(web)
    sign_in(web.client, ADMIN_EMAIL)
    done = _second_factor(web, _next_code(web, totp))
    [cookie] = [c for c in done.headers.get_list("set-cookie") if c.startswith(TRUST_COOKIE)]
    attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
    assert TRUST_COOKIE.startswith("__Host-") and "domain" not in attributes
    assert {"secure", "httponly", "samesite", "path", "max-age"} <= set(attributes)
    assert attributes["samesite"].lower() == "samesite=strict"
    assert int(attributes["max-age"].split("=")[1]) >= 180 * 24 * 3600
    _sign_out(web)
    attacker = web.new_client()  # same address as the user, even: only the cookie differs
    for _ in range(10):
        web.clock.advance(minutes=6)
        sign_in(attacker, ADMIN_EMAIL, "not the password at all")
    assert sign_in(attacker, ADMIN_EMAIL, PASSWORD).status_code == 429
    forged = web.new_client()
    forged.cookies.set(TRUST_COOKIE, "v1.1900000000.AAAAAAAAAAAAAAAAAAAAAA.AAAA")
    assert sign_in(forged, ADMIN_EMAIL, PASSWORD).status_code == 429
    step = sign_in(web.client, ADMIN_EMAIL)
    assert step.status_code == 303 and "second-factor" in step.headers["location"]
    assert _second_factor(web, _next_code(web, totp)).status_code == 303
    assert sign_in(attacker, ADMIN_EMAIL, PASSWORD).status_code == 429


def test_unknown_email_and_wrong_password_answer_alike(web: Web) -> None:
    setup_admin(web)
    unknown = sign_in(web.client, "nobody@example.org", PASSWORD)
    wrong = sign_in(web.client, ADMIN_EMAIL, "not the password at all")
    assert unknown.status_code == wrong.status_code == 401
    assert "Adresse e-mail ou mot de passe incorrect" in text_of(unknown)
    strip = [text_of(r).split('<main id="main">')[1] for r in (unknown, wrong)]
    assert strip[0].replace("nobody@example.org", ADMIN_EMAIL) == strip[1]


def test_session_id_changes_at_sign_in_and_enrolment(web: Web) -> None:
    setup_admin(web)
    planted = web.new_client()  # session fixation: a planted id is never adopted
    planted.cookies.set(SESSION_COOKIE, "planted-by-an-attacker")
    granted = sign_in(planted, ADMIN_EMAIL).cookies.get(SESSION_COOKIE)
    assert granted and granted != "planted-by-an-attacker"

    sign_in(web.client, ADMIN_EMAIL)
    enrolment = session_cookie(web.client)
    assert enrolment and enrolment != granted
    totp = enrol_totp(web)
    strong = session_cookie(web.client)
    assert strong and strong != enrolment  # rotated when the first factor was enrolled
    old = web.new_client()
    old.cookies.set(SESSION_COOKIE, enrolment)
    assert old.get("/account/mfa").status_code == 401  # the old id is dead
    _sign_out(web)
    sign_in(web.client, ADMIN_EMAIL)
    _second_factor(web, _next_code(web, totp))
    assert session_cookie(web.client) not in (None, enrolment, strong)


def test_session_cookie_is_host_only_secure_httponly_strict(web: Web) -> None:
    setup_admin(web)
    signed = sign_in(web.new_client(), ADMIN_EMAIL)
    [cookie] = [c for c in signed.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)]
    attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
    assert SESSION_COOKIE.startswith("__Host-")  # no Domain, Path=/, Secure: the browser enforces
    assert {"secure", "httponly", "samesite", "path"} <= set(attributes)
    assert attributes["samesite"].lower() == "samesite=strict"
    assert attributes["path"] == "Path=/" and "domain" not in attributes
    assert "max-age" not in attributes and "expires" not in attributes  # a browser session
    session_id = cookie.split(";")[0].split("=", 1)[1]
    assert len(session_id) >= 43  # 256 random bits, URL-safe


def test_csrf_token_is_required(web: Web) -> None:
    admin_with_totp(web)
    page = web.client.get("/account/security")
    token = csrf_of(page)
    assert web.client.post("/account/sign-out-everywhere").status_code == 403
    assert (
        web.client.post("/account/sign-out-everywhere", data={"csrf_token": "forged"}).status_code
        == 403
    )
    api = web.client.post("/account/credentials/options", json={"kind": "passkey"})
    assert api.status_code == 403
    ok = web.client.post(
        "/account/credentials/options", json={"kind": "passkey"}, headers={"X-CSRF-Token": token}
    )
    assert ok.status_code == 200 and {"options", "ceremony"} <= set(ok.json())
    assert web.client.get("/account/security").status_code == 200  # still signed in

    anonymous = web.new_client()
    form = anonymous.get("/sign-in")
    assert anonymous.cookies.get(CSRF_COOKIE)
    refused = anonymous.post("/sign-in", data={"email": ADMIN_EMAIL, "password": PASSWORD})
    assert refused.status_code == 403
    assert anonymous.post("/sign-in/passkey/options", json={}).status_code == 403
    passkey = anonymous.post(
        "/sign-in/passkey/options", json={}, headers={"X-CSRF-Token": csrf_of(form)}
    )
    assert (
        passkey.status_code == 200 and passkey.json()["options"]["userVerification"] == "required"
    )


def test_sign_out_invalidates_the_session(web: Web) -> None:
    admin_with_totp(web)
    old = session_cookie(web.client)
    _sign_out(web)
    assert session_cookie(web.client) is None
    thief = web.new_client()
    thief.cookies.set(SESSION_COOKIE, old or "")
    page = thief.get("/account/security", headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"].startswith("/sign-in")
    assert thief.get("/account/security").status_code == 401


def test_sign_out_everywhere_ends_every_session(web: Web) -> None:
    totp = admin_with_totp(web)
    other = web.new_client()
    sign_in(other, ADMIN_EMAIL)
    page = other.get("/sign-in/second-factor")
    other.post(
        "/sign-in/second-factor",
        data={"csrf_token": csrf_of(page), "code": _next_code(web, totp)},
    )
    security = web.client.get("/account/security")
    assert "cette session" in text_of(security) and "autre appareil" in text_of(security)
    web.client.post("/account/sign-out-everywhere", data={"csrf_token": csrf_of(security)})
    assert other.get("/account/security").status_code == 401
    assert web.client.get("/account/security").status_code == 401


def test_next_is_only_followed_to_local_paths(web: Web) -> None:
    totp = admin_with_totp(web)
    _sign_out(web)
    sign_in(web.client, ADMIN_EMAIL, next_url="//evil.example/steal")
    done = _second_factor(web, _next_code(web, totp), next_url="//evil.example")
    assert done.headers["location"] == "/"


def test_enrolment_only_session_reaches_only_the_mfa_pages(web: Web) -> None:
    setup_admin(web)
    first = sign_in(web.client, ADMIN_EMAIL, next_url="/admin/users")
    assert first.headers["location"] == "/account/mfa"
    assert web.client.get("/").headers["location"] == "/account/mfa"
    assert web.client.get("/account/security").headers["location"] == "/account/mfa"
    assert web.client.get("/admin/users").headers["location"] == "/account/mfa"
    mfa = web.client.get("/account/mfa")
    assert "exige un second facteur" in text_of(mfa)


def test_language_switch_and_english_messages(web: Web) -> None:
    setup_admin(web)
    page = web.client.get("/sign-in")
    assert 'lang="fr"' in page.text
    switched = web.client.post(
        "/lang", data={"csrf_token": csrf_of(page), "lang": "en", "next": "/sign-in"}
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/sign-in"
    wrong = sign_in(web.client, ADMIN_EMAIL, "not the password at all")
    assert 'lang="en"' in wrong.text
    assert "Incorrect e-mail address or password." in text_of(wrong)
    assert web.client.post("/lang", data={"lang": "fr"}).status_code == 403
