"""The one function that fetches a URL on a user's behalf.

A user's ``image_url`` must never become a way into the gateway's own network:
every address the host resolves to is checked, and loopback, private,
link-local (cloud metadata lives there), multicast, reserved and unspecified
addresses are refused, including IPv4 addresses wrapped in IPv6. Redirects are
followed by hand, each hop checked again, up to a small cap; the body is
capped in size and the whole fetch in time. No upstream credential is ever
sent: this client is separate from the upstream client.

TODO: the connection is made by hostname after the check, so a DNS answer
that changes between the check and the connect (rebinding) is not caught;
pinning the connection to the checked address is part of the security issue.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from urllib.parse import urljoin, urlsplit

import attrs
import httpx
import trio

from grok2api.errors import MediaFetchError

__all__ = ["FetchedMedia", "fetch_user_url", "is_public_address"]

_MAX_REDIRECTS = 3


@attrs.frozen
class FetchedMedia:
    content: bytes
    mime_type: str
    filename: str


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


async def _check_host(
    host: str, port: int, allow_hosts: Collection[str], param: str
) -> None:
    if host.lower() in allow_hosts:
        return
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise MediaFetchError(
            f"The URL at {param} could not be fetched.", param=param
        ) from exc
    if not infos or not all(is_public_address(str(info[4][0])) for info in infos):
        raise MediaFetchError(f"The URL at {param} is not allowed.", param=param)


async def fetch_user_url(
    url: str,
    *,
    param: str,
    max_bytes: int,
    timeout: float,
    allow_hosts: Collection[str] = (),
    proxy: str | None = None,
) -> FetchedMedia:
    """Fetch a user-supplied http(s) URL under the guard.

    Raises:
        MediaFetchError: the URL is refused, unreachable, not a success, too
            large or too slow. The message names ``param`` and nothing about
            the target, so the error cannot be used to probe a network.
    """
    allowed = {host.lower() for host in allow_hosts}
    try:
        with trio.fail_after(timeout):
            async with httpx.AsyncClient(
                follow_redirects=False, proxy=proxy, trust_env=False
            ) as client:
                for _ in range(_MAX_REDIRECTS + 1):
                    parts = urlsplit(url)
                    if parts.scheme not in ("http", "https") or not parts.hostname:
                        raise MediaFetchError(
                            f"The URL at {param} must be http or https.", param=param
                        )
                    port = parts.port or (443 if parts.scheme == "https" else 80)
                    await _check_host(parts.hostname, port, allowed, param)
                    async with client.stream("GET", url) as response:
                        if response.is_redirect and "location" in response.headers:
                            url = urljoin(url, response.headers["location"])
                            continue
                        if response.status_code != 200:
                            raise MediaFetchError(
                                f"The URL at {param} could not be fetched.", param=param
                            )
                        content = await _read_capped(response, max_bytes, param)
                        mime = (
                            response.headers.get("content-type", "")
                            .split(";")[0]
                            .strip()
                        )
                        name = parts.path.rsplit("/", 1)[-1] or "file"
                        return FetchedMedia(
                            content, mime or "application/octet-stream", name
                        )
    except trio.TooSlowError as exc:
        raise MediaFetchError(
            f"The URL at {param} took too long to fetch.", param=param
        ) from exc
    except httpx.HTTPError as exc:
        raise MediaFetchError(
            f"The URL at {param} could not be fetched.", param=param
        ) from exc
    raise MediaFetchError(f"The URL at {param} redirected too many times.", param=param)


async def _read_capped(response: httpx.Response, max_bytes: int, param: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise MediaFetchError(
                f"The file at {param} is larger than {max_bytes} bytes.", param=param
            )
        chunks.append(chunk)
    return b"".join(chunks)
