"""A small synchronous client for the control API, for tests and scripts."""

from __future__ import annotations

import base64
from types import TracebackType
from typing import Any

import httpx

from .state import token_id

__all__ = ["EmulatorControl"]


class EmulatorControl:
    """Steer a running emulator through ``/_emulator/``.

    Args:
        base_url: the emulator's root, e.g. ``http://127.0.0.1:8765``.
        timeout: seconds each control call may take (waits add their own).

    Raises:
        httpx.HTTPStatusError: when the emulator refuses a call (bad input).
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url + "/_emulator", timeout=timeout
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EmulatorControl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    # -- options and accounts -----------------------------------------------

    def configure(self, **options: Any) -> dict[str, Any]:
        """Change global options (``answer_tokens``, ``line_delay``, …)."""
        return self._call("POST", "/config", json=options)  # type: ignore[no-any-return]

    def config(self) -> dict[str, Any]:
        return self._call("GET", "/config")  # type: ignore[no-any-return]

    def add_account(
        self,
        token: str,
        *,
        pool: str = "basic",
        quota: int | None = None,
        remaining: int | None = None,
        window_seconds: int | None = None,
        blocked: bool = False,
    ) -> dict[str, Any]:
        """Add or replace the account for ``token``; returns its public view."""
        body: dict[str, Any] = {"token": token, "pool": pool, "blocked": blocked}
        for key, value in (
            ("quota", quota),
            ("remaining", remaining),
            ("window_seconds", window_seconds),
        ):
            if value is not None:
                body[key] = value
        return self._call("POST", "/accounts", json=body)  # type: ignore[no-any-return]

    def remove_account(self, token: str) -> None:
        self._call("DELETE", f"/accounts/{token_id(token)}")

    def accounts(self) -> list[dict[str, Any]]:
        return self._call("GET", "/accounts")  # type: ignore[no-any-return]

    def account(self, token: str) -> dict[str, Any]:
        """The public view of ``token``'s account (quota left, …)."""
        tid = token_id(token)
        for account in self.accounts():
            if account["token_id"] == tid:
                return account
        raise KeyError(f"no account for token id {tid}")

    # -- faults ---------------------------------------------------------------

    def fault(
        self,
        kind: str,
        *,
        token: str | None = None,
        times: int | None = 1,
        **params: Any,
    ) -> int:
        """Script a fault for the next ``times`` requests (``None``: until cleared).

        Args:
            kind: e.g. ``"401"``, ``"429"``, ``"cut"``, ``"stall"``.
            token: the only token it applies to; any token when omitted.
            times: how many requests it applies to.
            **params: ``endpoint`` (``chat``, ``continue``, ``upload``,
                ``rate-limits`` or ``any``), ``after_tokens``, ``code``,
                ``message``, ``seconds``, ``abort``, ``remaining``.

        Returns:
            the fault's id.
        """
        body = {"kind": kind, "token": token, "times": times, **params}
        return int(self._call("POST", "/faults", json=body)["id"])

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/faults")  # type: ignore[no-any-return]

    def clear_faults(self, fault_id: int | None = None) -> None:
        self._call("DELETE", "/faults" if fault_id is None else f"/faults/{fault_id}")

    # -- conversations ----------------------------------------------------------

    def conversations(self) -> list[dict[str, Any]]:
        """Conversations replies can go to: id, owner's token id, response ids."""
        return self._call("GET", "/conversations")  # type: ignore[no-any-return]

    def forget_conversations(self, conversation_id: str | None = None) -> None:
        """Forget one conversation (or all), as if it expired upstream.

        Raises:
            httpx.HTTPStatusError: 404 when the one named is unknown.
        """
        path = "/conversations"
        if conversation_id is not None:
            path += f"/{conversation_id}"
        self._call("DELETE", path)

    # -- log and uploads ------------------------------------------------------

    def requests(
        self,
        *,
        token: str | None = None,
        path: str | None = None,
        min_count: int = 0,
        settled: bool = False,
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """The request log, oldest first, optionally waiting for it to fill.

        Args:
            token: only requests that carried this token.
            path: only requests to this path.
            min_count: wait until at least this many requests match.
            settled: also wait until none of them is still streaming.
            timeout: how long to wait.

        Raises:
            TimeoutError: the condition did not hold in time.
        """
        params: dict[str, Any] = {"min_count": min_count, "timeout": timeout}
        if token is not None:
            params["token_id"] = token_id(token)
        if path is not None:
            params["path"] = path
        if settled:
            params["settled"] = "1"
        response = self._http.get("/requests", params=params, timeout=timeout + 10.0)
        if response.status_code == 504:
            raise TimeoutError(response.json()["error"])
        response.raise_for_status()
        return response.json()["requests"]  # type: ignore[no-any-return]

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    def upload(self, file_id: str) -> dict[str, Any]:
        """One stored upload; ``data`` holds its bytes."""
        upload: dict[str, Any] = self._call("GET", f"/uploads/{file_id}")
        upload["data"] = base64.b64decode(upload["content"])
        return upload

    def uploads(self) -> list[dict[str, Any]]:
        return self._call("GET", "/uploads")  # type: ignore[no-any-return]

    def reset(self) -> None:
        """Forget everything and restore the default options."""
        self._call("POST", "/reset")
