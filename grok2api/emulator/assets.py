"""The fake assets host: files only their owning account may download.

Grok keeps generated images and videos on ``assets.grok.com``, which answers
``GET /<path>`` only to the cookie of the account that owns the file. The
emulator serves the same thing from its own origin (point
``network.assets_url`` at the emulator): the bytes for the owner's
``sso``/``sso-rw`` cookie, 403 for any other cookie or none, 404 for a path
it does not know. Every download is logged like the other upstream requests,
so tests can count them, and faults scripted for ``endpoint="any"`` apply.

Tests put files in through the control API:

* ``POST /_emulator/assets`` -- ``token``, ``path``, ``content`` (base64),
  ``content_type``; answers the asset's ``path``, ``token_id`` and ``size``.
* ``GET /_emulator/assets`` -- every asset, without its bytes.
* ``DELETE /_emulator/assets`` -- forget them all (``/reset`` does too).

:class:`EmulatorAssets` is the synchronous client for these routes.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import uuid
from types import TracebackType
from typing import Any

import attrs
import httpx
from quart import Blueprint, Response, request
from quart_trio import QuartTrio

from .responses import blocked_user, cloudflare_response, fault_response, json_response
from .state import EmulatorState, token_id

__all__ = ["Asset", "AssetStore", "EmulatorAssets", "register_assets"]

#: Paths other routes own; an asset there could never be downloaded.
_RESERVED = ("rest/", "_emulator/")


@attrs.frozen
class Asset:
    """One file on the assets host and the account that owns it."""

    path: str
    token_id: str
    data: bytes = attrs.field(repr=False)
    content_type: str
    #: The id the account's asset list and delete calls use.
    asset_id: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    #: Order of creation; the asset list shows the newest first.
    sequence: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "token_id": self.token_id,
            "size": len(self.data),
            "content_type": self.content_type,
            "asset_id": self.asset_id,
        }


class AssetStore:
    """The files the fake assets host serves, by path (no leading slash)."""

    def __init__(self) -> None:
        self.assets: dict[str, Asset] = {}
        self._sequence = itertools.count(1)

    def put(self, token: str, path: str, data: bytes, content_type: str) -> Asset:
        """Store (or replace) the asset at ``path`` for ``token``'s account.

        Raises:
            ValueError: the token or path is empty, or the path belongs to
                another emulator route.
        """
        path = path.lstrip("/")
        if not token or not path or path.startswith(_RESERVED):
            raise ValueError("token and path must be non-empty; path not under rest/")
        asset = Asset(
            path, token_id(token), data, content_type, sequence=next(self._sequence)
        )
        self.assets[path] = asset
        return asset

    def owned_by(self, tid: str) -> list[Asset]:
        """The account's assets, newest first."""
        owned = [asset for asset in self.assets.values() if asset.token_id == tid]
        return sorted(owned, key=lambda asset: asset.sequence, reverse=True)

    def remove(self, tid: str, asset_id: str) -> bool:
        """Delete the account's asset ``asset_id``; False when it has none."""
        for path, asset in list(self.assets.items()):
            if asset.asset_id == asset_id and asset.token_id == tid:
                del self.assets[path]
                return True
        return False

    def clear(self) -> None:
        self.assets.clear()


def register_assets(
    app: QuartTrio, state: EmulatorState, store: AssetStore | None = None
) -> AssetStore:
    """Serve ``store`` (a new one by default) from ``app`` and add its control
    routes; it is also reachable as ``app.extensions["grok_emulator_assets"]``."""
    store = store if store is not None else AssetStore()
    app.extensions["grok_emulator_assets"] = store

    async def download(asset_path: str) -> Response:
        return _download(state, store, asset_path)

    app.add_url_rule("/<path:asset_path>", "asset", download, methods=["GET"])
    app.register_blueprint(_control_blueprint(store))

    @app.before_request
    async def forget_on_reset() -> None:
        if request.endpoint == "emulator_control.reset":
            store.clear()

    return store


def _download(state: EmulatorState, store: AssetStore, path: str) -> Response:
    token = request.cookies.get("sso") or ""
    tid = token_id(token) if token else None
    record = state.open_record(
        method="GET",
        path="/" + path,
        token_id=tid,
        body=None,
        user_agent=request.headers.get("user-agent"),
        statsig_present="x-statsig-id" in request.headers,
        cookie_names=sorted(request.cookies.keys()),
    )
    account = state.lookup(token) if token else None

    def refuse(response: Response, reason: str) -> Response:
        state.close_record(
            record, "rejected", status=response.status_code, reason=reason
        )
        return response

    fault = state.take_fault(tid, "asset", stream=False)
    if fault is not None:
        record.fault = fault.kind
        response = fault_response(fault.kind, None, 60, fault.remaining)
        return refuse(response, "fault:" + fault.kind)
    config = state.config
    if config.require_cf_clearance:
        clearance = request.cookies.get("cf_clearance")
        if not clearance or config.cf_clearance not in (None, clearance):
            return refuse(cloudflare_response(), "cloudflare")
    asset = store.assets.get(path)
    if asset is None:
        body = {"error": {"message": "no such asset"}}
        return refuse(json_response(404, body), "not-found")
    if account is not None and account.blocked:
        return refuse(blocked_user(), "blocked-user")
    owner = account is not None and request.cookies.get("sso-rw") == token
    if not owner or asset.token_id != tid:
        body = {"error": {"message": "access to this asset is forbidden"}}
        return refuse(json_response(403, body), "not-owner")
    state.close_record(record, "completed", status=200)
    return Response(asset.data, status=200, content_type=asset.content_type)


def _control_blueprint(store: AssetStore) -> Blueprint:
    bp = Blueprint("emulator_assets", __name__, url_prefix="/_emulator")

    @bp.errorhandler(ValueError)
    async def bad_input(error: ValueError) -> Response:
        return json_response(400, {"error": str(error)})

    @bp.route("/assets", methods=["GET", "POST", "DELETE"])
    async def assets() -> Response:
        if request.method == "DELETE":
            store.clear()
            return Response(b"", status=204)
        if request.method == "GET":
            return json_response(200, [a.to_json() for a in store.assets.values()])
        body = await request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        fields = ("token", "path", "content", "content_type")
        if not all(isinstance(body.get(name), str) for name in fields):
            raise ValueError("token, path, content and content_type must be strings")
        try:
            data = base64.b64decode(body["content"], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("content must be plain base64") from None
        asset = store.put(body["token"], body["path"], data, body["content_type"])
        return json_response(200, asset.to_json())

    return bp


class EmulatorAssets:
    """Put files on a running emulator's assets host.

    Args:
        base_url: the emulator's root, e.g. ``http://127.0.0.1:8765``.
        timeout: seconds each call may take.

    Raises:
        httpx.HTTPStatusError: when the emulator refuses a call.
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url + "/_emulator", timeout=timeout
        )

    def put(
        self, token: str, path: str, data: bytes, content_type: str
    ) -> dict[str, Any]:
        """Store ``data`` at ``path`` for ``token``'s account; returns the
        asset's public view. Its URL is ``{base_url}/{path}``."""
        body = {
            "token": token,
            "path": path,
            "content": base64.b64encode(data).decode(),
            "content_type": content_type,
        }
        response = self._http.post("/assets", json=body)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def list(self) -> list[dict[str, Any]]:
        response = self._http.get("/assets")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def clear(self) -> None:
        self._http.delete("/assets").raise_for_status()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EmulatorAssets:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
