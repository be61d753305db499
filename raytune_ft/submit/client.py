"""Reaching a Ray dashboard from a laptop: the address, the auth token, one clear line when
either is wrong. The token is never printed: messages name where it was read from."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import typer

from raytune_ft.errors import UserError

# Ray's own names (dashboard/utils.py get_address_for_submission_client; the C++ token loader).
API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"
RAY_ADDRESS_ENV = "RAY_ADDRESS"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = Path("~") / ".ray" / "auth_token"
TOKEN_PLACES = (
    f"the token is read from --token-file, else ${TOKEN_ENV}, else the file ${TOKEN_PATH_ENV} "
    f"names, else {DEFAULT_TOKEN_FILE}"
)
EXAMPLE = "expected a Ray dashboard, e.g. http://HEAD:8265"
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Address:
    url: str  # scheme://host:port, no trailing slash
    source: str  # what named it: --address, or an environment variable

    def unreachable(self, reason: str) -> UserError:
        return UserError(f"{self.source}: cannot reach {self.url}: {reason}; {EXAMPLE}")


def resolve_address(option: str | None, env: Mapping[str, str] = os.environ) -> Address:
    """--address, else $RAY_API_SERVER_ADDRESS, else $RAY_ADDRESS when it is an http(s) URL."""
    if option:
        source, value = "--address", option
    elif env.get(API_SERVER_ENV):
        source, value = API_SERVER_ENV, env[API_SERVER_ENV]
    elif env.get(RAY_ADDRESS_ENV, "").startswith(("http://", "https://")):
        source, value = RAY_ADDRESS_ENV, env[RAY_ADDRESS_ENV]
    else:
        raise UserError(f"--address: no address given; {EXAMPLE} (or ${API_SERVER_ENV} set to one)")
    value = value.strip()
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise UserError(f"{source}: {value!r} is not a URL ({exc}); {EXAMPLE}") from None
    try:
        port = parts.port
    except ValueError:
        port = -1
    why = None
    if parts.scheme not in ("http", "https"):
        why = "not an http:// or https:// URL"
    elif not parts.hostname or port == -1:
        why = "no host, or a bad port"
    elif parts.path.strip("/") or parts.query or parts.fragment:
        why = "a URL with a path; expected only scheme, host and port"
    if why:
        raise UserError(f"{source}: {value!r} is {why}; {EXAMPLE}")
    return Address(f"{parts.scheme}://{parts.netloc}", source)


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    source: str  # e.g. "$RAY_AUTH_TOKEN" or "--token-file /path": safe to print

    def __str__(self) -> str:
        return self.source


def _read_token(path: Path, source: str) -> Token:
    try:
        value = path.expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise UserError(f"{source}: cannot read it: {reason}; {TOKEN_PLACES}") from None
    if not value:
        raise UserError(f"{source}: the file is empty; expected the Ray auth token in it")
    return Token(value, source)


def resolve_token(token_file: Path | None, env: Mapping[str, str] = os.environ) -> Token | None:
    """The auth token from the first place that has one, in Ray's own order after --token-file."""
    if token_file is not None:
        return _read_token(token_file, f"--token-file {token_file}")
    if env.get(TOKEN_ENV, "").strip():
        return Token(env[TOKEN_ENV].strip(), f"${TOKEN_ENV}")
    if env.get(TOKEN_PATH_ENV):
        # Ray treats an unreadable RAY_AUTH_TOKEN_PATH as an error, not as "no token".
        return _read_token(Path(env[TOKEN_PATH_ENV]), f"${TOKEN_PATH_ENV} ({env[TOKEN_PATH_ENV]})")
    default = DEFAULT_TOKEN_FILE.expanduser()
    return _read_token(default, str(DEFAULT_TOKEN_FILE)) if default.is_file() else None


def auth_failed(address: Address, token: Token | None, status: int | None = None) -> UserError:
    answer = f" (HTTP {status})" if status else ""
    if token is None:
        what = f"the Ray head at {address.url} requires a token and none was found{answer}"
    else:
        what = f"the Ray head at {address.url} refused the token from {token.source}{answer}"
    return UserError(f"authentication failed: {what}; {TOKEN_PLACES}")


def _reason(exc: BaseException) -> str:
    """The innermost OS-level cause ("Connection refused"), else the first line of the error."""
    import requests

    if isinstance(exc, requests.exceptions.Timeout):
        return f"no answer within {PROBE_TIMEOUT_S:g} s"
    if "BadStatusLine" in repr(exc):  # e.g. the GCS port (6379) or Ray Client's (10001)
        return "the server there does not speak HTTP/1.1"
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        error = stack.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, OSError) and error.strerror:
            return error.strerror
        linked = (getattr(error, "reason", None), error.__cause__, error.__context__, *error.args)
        stack += [e for e in linked if isinstance(e, BaseException)]
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _get_json(url: str, headers: dict[str, str], address: Address) -> tuple[int, Any]:
    import requests

    try:
        response = requests.get(url, headers=headers, timeout=PROBE_TIMEOUT_S)
    except requests.exceptions.RequestException as exc:
        raise address.unreachable(_reason(exc)) from None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


def auth_headers(address: Address, token: Token | None) -> dict[str, str]:
    """Ask the head (public endpoint) whether it wants a token; check that it takes ours.

    The token is sent only to a head that asks for one. Returns the headers every request
    needs. Raises UserError when the address is no Ray dashboard or the token is refused.
    """
    status, body = _get_json(f"{address.url}/api/authentication_mode", {}, address)
    mode = body.get("authentication_mode") if status == 200 and isinstance(body, dict) else None
    if mode == "token" and token is None:
        raise auth_failed(address, None)
    headers = (
        {"Authorization": f"Bearer {token.value}"}
        if token and mode not in (None, "disabled")
        else {}
    )
    status, body = _get_json(f"{address.url}/api/version", headers, address)
    if status in (401, 403):
        raise auth_failed(address, token if headers else None, status)
    if status != 200 or not isinstance(body, dict) or "ray_version" not in body:
        got = f"HTTP {status}" if status != 200 else "an answer without ray_version"
        raise address.unreachable(f"no Ray dashboard there (GET /api/version gave {got})")
    return headers


@contextmanager
def _only(address: Address) -> Iterator[None]:
    # JobSubmissionClient lets $RAY_API_SERVER_ADDRESS / $RAY_ADDRESS override the address it
    # is given (dashboard/utils.py); the address we resolved must win.
    saved = {name: os.environ.get(name) for name in (API_SERVER_ENV, RAY_ADDRESS_ENV)}
    os.environ.pop(RAY_ADDRESS_ENV, None)
    os.environ[API_SERVER_ENV] = address.url
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class Jobs:
    """A connected JobSubmissionClient and what is needed to describe failures."""

    client: Any
    address: Address
    token: Token | None

    def calls(self) -> AbstractContextManager[None]:
        """Around calls of the client: auth, connection and server failures as one line."""
        return ray_errors(self.address, self.token)


def connect(address: Address, token_file: Path | None) -> Jobs:
    token = resolve_token(token_file)
    headers = auth_headers(address, token)
    import logging

    from ray.job_submission import JobSubmissionClient

    # Ray's job client sets its own loggers to INFO (each upload step, the log stream closing)
    # and warns about files over 10 MiB with advice for runtime_env excludes, naming our
    # staging folder; what we upload is checked and described by us.
    for name in ("ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk"):
        logging.getLogger(name).setLevel(logging.ERROR)

    with _only(address), ray_errors(address, token):
        client = JobSubmissionClient(address.url, headers=headers)
    return Jobs(client, address, token if headers else None)


@contextmanager
def ray_errors(address: Address, token: Token | None) -> Iterator[None]:
    """Errors from Ray's client as one line each: auth, connection, server."""
    import requests
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        status = 403 if "Forbidden" in str(exc) else 401
        raise auth_failed(address, token, status) from None
    except (requests.exceptions.RequestException, ConnectionError) as exc:
        raise address.unreachable(_reason(exc)) from None
    except RuntimeError as exc:  # Ray's client: "Request failed with status code N: ..."
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "status code 413" in first:
            raise UserError(
                f"--working-dir: the Ray head at {address.url} refused the upload as too large "
                "(HTTP 413); leave out what the job does not need with --exclude PATTERN, or "
                "read large data and models from remote storage (hub: or s3://)"
            ) from None
        typer.echo(f"failed: {address.url}: {first}", err=True)
        raise typer.Exit(1) from None
