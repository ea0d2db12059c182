"""A small OpenID Connect provider for tests, built on Authlib's authorization server, served on loopback.

It implements the authorization-code flow as a real provider does — discovery document
(``/.well-known/openid-configuration``), ``/authorize`` (PKCE S256 and ``nonce`` honoured), ``/token``
(client authenticated with its secret; an RS256-signed ID token), ``/jwks``, ``/userinfo`` — so the dashboard's
``st.login`` (Streamlit + Authlib's client) runs unchanged against it. Only the sign-in form is missing:
``/authorize`` signs in the user named by ``?login_hint=`` (subject or email), else the provider's
``signed_in`` user, without asking.

Use::

    with OIDCProvider([TestUser("u-1", "viewer@clinic.test", "Dr Viewer")]) as provider:
        provider.metadata_url        # what [auth] server_metadata_url points at
        provider.login("viewer@clinic.test")   # the flow as a client: the verified ID-token claims
        secrets_toml(provider.auth_section(), {"roles": {"admin": [...]}})   # a .streamlit/secrets.toml

tests/conftest.py has the fixtures: ``oidc_provider`` (a running provider whose accounts are ``OIDC_USERS``:
a viewer, a reviewer and an admin) and ``oidc_secrets`` (the app's secrets for it: ``[auth]`` and the
``[spermlib]`` roles ``OIDC_ROLES``, as a dict for ``AppTest.secrets``; ``secrets_toml(**oidc_secrets)``
writes the file a real server reads).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import httpx
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, JsonRequest, OAuth2Error, OAuth2Request, grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

LOOPBACK = "127.0.0.1"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
SCOPES = "openid email profile"


@dataclass(frozen=True)
class TestUser:
    """One account of the provider: ``sub`` is the stable subject, ``email`` verified unless told."""

    __test__ = False  # not a pytest test class

    sub: str
    email: str
    name: str
    email_verified: bool = True

    def claims(self, scope: str) -> UserInfo:
        info = UserInfo(sub=self.sub)
        if "profile" in scope.split():
            info["name"] = self.name
        if "email" in scope.split():
            info.update(email=self.email, email_verified=self.email_verified)
        return info


# ---------------------------------------------------------------------------------------------
# Authlib's server models: one registered client, authorization codes and tokens in memory
# ---------------------------------------------------------------------------------------------


@dataclass
class _Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope):
        return " ".join(s for s in (scope or "").split() if s in SCOPES.split())

    def check_redirect_uri(self, redirect_uri):
        # RFC 8252 §7.3: any port for a loopback redirect URI (the app's port is picked when it starts).
        asked = urlsplit(redirect_uri)
        for uri in self.redirect_uris:
            known = urlsplit(uri)
            same_port = known.port == asked.port or asked.hostname in LOOPBACK_HOSTS
            if (known.scheme, known.hostname, known.path) == (asked.scheme, asked.hostname, asked.path) and same_port:
                return True
        return False

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


@dataclass
class _Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: TestUser
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None


class _Request(OAuth2Request):
    """An OAuth 2 request as Authlib's server reads it, from the query and form of one HTTP request."""

    def __init__(self, method: str, uri: str, headers: Mapping[str, str], query: dict, form: dict):
        super().__init__(method, uri, headers=dict(headers))
        self._query, self._form = query, form
        self.payload = BasicOAuth2Payload({**query, **form})

    @property
    def args(self):
        return self._query

    @property
    def form(self):
        return self._form


class _AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code, request):
        data = request.payload.data
        self.server.provider.codes[code] = _Code(
            code, request.client.get_client_id(), request.payload.redirect_uri, request.scope, request.user,
            data.get("nonce"), data.get("code_challenge"), data.get("code_challenge_method"))

    def query_authorization_code(self, code, client):
        item = self.server.provider.codes.get(code)
        return item if item and item.client_id == client.get_client_id() else None

    def delete_authorization_code(self, authorization_code):
        self.server.provider.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code):
        return authorization_code.user


class _OpenIDCode(OpenIDCode):
    def __init__(self, provider: OIDCProvider):
        super().__init__(require_nonce=True)
        self.provider = provider

    def exists_nonce(self, nonce, request):
        return any(c.nonce == nonce for c in self.provider.codes.values())

    def resolve_client_private_key(self, client):
        return self.provider.key

    def get_client_algorithm(self, client):
        return "RS256"

    def get_client_claims(self, client):
        return {"iss": self.provider.issuer, "aud": [client.get_client_id()]}

    def get_encode_header(self, client):
        return {"alg": "RS256", "kid": self.provider.key.kid}

    def generate_user_info(self, user, scope):
        return user.claims(scope)


class _Server(AuthorizationServer):
    def __init__(self, provider: OIDCProvider):
        super().__init__(scopes_supported=SCOPES.split())
        self.provider = provider
        self.register_token_generator("default", BearerTokenGenerator(lambda *a, **k: secrets.token_urlsafe(32)))
        self.register_grant(_AuthorizationCodeGrant, [_OpenIDCode(provider), CodeChallenge(required=False)])

    def query_client(self, client_id):
        return self.provider.client if client_id == self.provider.client.client_id else None

    def save_token(self, token, request):
        self.provider.access_tokens[token["access_token"]] = request.user

    def create_oauth2_request(self, request):
        return request

    def create_json_request(self, request):
        return JsonRequest(request.method, request.uri, request.headers)

    def handle_response(self, status, body, headers):
        return status, body, headers

    def send_signal(self, name, *args, **kwargs):
        pass


# ---------------------------------------------------------------------------------------------
# The provider: its HTTP endpoints and a thread serving them
# ---------------------------------------------------------------------------------------------


class OIDCProvider:
    """An OpenID Connect provider on ``127.0.0.1`` (a free port) for the duration of a ``with`` block."""

    def __init__(self, users: Sequence[TestUser], client_id: str = "spermlib-dashboard",
                 client_secret: str | None = None,
                 redirect_uris: Sequence[str] = ("http://127.0.0.1:8501/oauth2callback",)):
        self.users = {u.sub: u for u in users}
        self.signed_in: TestUser = users[0]
        self.client = _Client(client_id, client_secret or secrets.token_urlsafe(24), tuple(redirect_uris))
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig", "alg": "RS256"})
        self.codes: dict[str, _Code] = {}
        self.access_tokens: dict[str, TestUser] = {}
        self.server = _Server(self)
        self._http: ThreadingHTTPServer | None = None

    # lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> OIDCProvider:
        self._http = ThreadingHTTPServer((LOOPBACK, 0), _handler(self))
        threading.Thread(target=self._http.serve_forever, name="oidc-provider", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    @property
    def issuer(self) -> str:
        if self._http is None:
            raise RuntimeError("the provider is not running (use it in a with block)")
        return f"http://{LOOPBACK}:{self._http.server_address[1]}"

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def user(self, hint: str) -> TestUser:
        """The account whose subject or email is ``hint``."""
        for u in self.users.values():
            if hint in (u.sub, u.email):
                return u
        raise KeyError(f"no test user {hint!r}")

    # what the endpoints answer ---------------------------------------------------------------

    def metadata(self) -> dict:
        return {
            "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
            "userinfo_endpoint": f"{self.issuer}/userinfo", "response_types_supported": ["code"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": SCOPES.split(), "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "name", "email", "email_verified"],
        }

    def jwks(self) -> dict:
        return KeySet([self.key]).as_dict(private=False)

    def authorize(self, request: _Request) -> tuple[int, object, list]:
        hint = request.payload.data.get("login_hint")
        user = self.user(hint) if hint else self.signed_in
        try:
            grant = self.server.get_consent_grant(request, end_user=user)
        except OAuth2Error as err:
            return self.server.handle_error_response(request, err)
        return self.server.create_authorization_response(request, grant_user=user, grant=grant)

    def userinfo(self, authorization: str) -> tuple[int, object, list]:
        scheme, _, token = authorization.partition(" ")
        user = self.access_tokens.get(token) if scheme.lower() == "bearer" else None
        if user is None:
            return 401, {"error": "invalid_token"}, [("WWW-Authenticate", 'Bearer error="invalid_token"')]
        return 200, dict(user.claims(SCOPES)), []

    # the flow as a client does it (for tests that need verified claims without a browser) ----

    def login(self, hint: str | None = None, redirect_uri: str | None = None) -> dict:
        """Sign ``hint`` (subject or email; else ``signed_in``) in through the authorization-code flow with
        PKCE and a nonce, as a relying party does, and return the ID token's claims after verifying its
        signature (the provider's JWKS), issuer, audience, nonce and expiry."""
        redirect_uri = redirect_uri or self.client.get_default_redirect_uri()
        nonce, state = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        verifier = secrets.token_urlsafe(48)  # RFC 7636: 43 to 128 characters
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = {"response_type": "code", "client_id": self.client.client_id, "redirect_uri": redirect_uri,
                 "scope": SCOPES, "state": state, "nonce": nonce, "code_challenge": challenge,
                 "code_challenge_method": "S256", **({"login_hint": hint} if hint else {})}
        with httpx.Client(base_url=self.issuer) as http:
            answer = http.get("/authorize", params=query)
            back = dict(parse_qsl(urlsplit(answer.headers["location"]).query))
            if back.get("state") != state or "code" not in back:
                raise RuntimeError(f"authorization failed: {back}")
            token = http.post("/token", auth=(self.client.client_id, self.client.client_secret), data={
                "grant_type": "authorization_code", "code": back["code"], "redirect_uri": redirect_uri,
                "code_verifier": verifier}).raise_for_status().json()
            jwks = KeySet.import_key_set(http.get("/jwks").json())
        claims = jwt.decode(token["id_token"], jwks, algorithms=["RS256"]).claims
        jwt.JWTClaimsRegistry(iss={"essential": True, "value": self.issuer},
                              aud={"essential": True, "value": self.client.client_id},
                              nonce={"essential": True, "value": nonce}, exp={"essential": True}).validate(claims)
        return claims

    def streamlit_user(self, hint: str | None = None) -> dict:
        """What Streamlit keeps as ``st.user`` after ``hint`` logs in through this provider (the verified
        ID-token claims, ``is_logged_in``): for ``AppTest.user``."""
        return {**self.login(hint), "is_logged_in": True, "provider": "default", "origin": "http://127.0.0.1"}

    # configuration of the app that logs in here ----------------------------------------------

    def auth_section(self, redirect_uri: str = "http://127.0.0.1:{port}/oauth2callback") -> dict:
        """The ``[auth]`` section of the app's secrets.toml (``{port}``: Streamlit puts in its own port)."""
        return {"redirect_uri": redirect_uri, "cookie_secret": secrets.token_urlsafe(32),
                "client_id": self.client.client_id, "client_secret": self.client.client_secret,
                "server_metadata_url": self.metadata_url}


def secrets_toml(auth: Mapping[str, str], spermlib: Mapping[str, object] | None = None) -> str:
    """A secrets.toml: ``[auth]``, ``[spermlib] default_role`` and ``[spermlib.roles]`` (JSON strings are TOML
    basic strings)."""
    settings = dict(spermlib or {})
    roles = dict(settings.pop("roles", {}))
    lines = ["[auth]", *(f"{k} = {json.dumps(v)}" for k, v in auth.items()), "",
             "[spermlib]", *(f"{k} = {json.dumps(v)}" for k, v in settings.items()), "", "[spermlib.roles]",
             *(f"{role} = {json.dumps(list(members))}" for role, members in roles.items())]
    return "\n".join(lines) + "\n"


def _handler(provider: OIDCProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet: pytest shows failures, not every request
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._answer(self._route("GET"))

        def do_POST(self) -> None:  # noqa: N802
            self._answer(self._route("POST"))

        def _route(self, method: str) -> tuple[int, object, list]:
            url = urlsplit(self.path)
            query = dict(parse_qsl(url.query))
            size = int(self.headers.get("Content-Length") or 0)
            form = dict(parse_qsl(self.rfile.read(size).decode())) if method == "POST" else {}
            request = _Request(method, f"{provider.issuer}{self.path}", self.headers, query, form)
            routes = {
                ("GET", "/.well-known/openid-configuration"): lambda: (200, provider.metadata(), []),
                ("GET", "/jwks"): lambda: (200, provider.jwks(), []),
                ("GET", "/authorize"): lambda: provider.authorize(request),
                ("POST", "/token"): lambda: provider.server.create_token_response(request),
                ("GET", "/userinfo"): lambda: provider.userinfo(self.headers.get("Authorization", "")),
            }
            route = routes.get((method, url.path))
            return route() if route else (404, {"error": "not_found"}, [])

        def _answer(self, response: tuple[int, object, list]) -> None:
            status, body, headers = response
            data = json.dumps(body).encode() if isinstance(body, dict) else str(body or "").encode()
            self.send_response(status)
            if isinstance(body, dict):
                self.send_header("Content-Type", "application/json")
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


__all__ = ["OIDCProvider", "TestUser", "secrets_toml"]
