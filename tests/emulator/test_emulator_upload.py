"""Uploading a file and attaching it to a chat."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def _upload(
    emulator: Any, token: str = "tok-a", content: str | None = None
) -> httpx.Response:
    body = {
        "fileName": "photo.png",
        "fileMimeType": "image/png",
        "content": base64.b64encode(PNG).decode() if content is None else content,
    }
    return emulator.http.post(
        emulator.UPLOAD, json=body, headers=emulator.headers(token)
    )


def test_upload_returns_id_and_uri(emulator: Any) -> None:
    response = _upload(emulator)
    assert response.status_code == 200
    file_id = response.json()["fileMetadataId"]
    assert re.fullmatch(r"[0-9a-f-]{36}", file_id)
    assert re.fullmatch(
        rf"users/[0-9a-f-]{{36}}/{file_id}/content", response.json()["fileUri"]
    )
    stored = emulator.control.upload(file_id)
    assert stored["data"] == PNG
    assert stored["fileName"] == "photo.png"
    # The log keeps a short stand-in instead of the base64 payload.
    (record,) = emulator.control.requests(path=emulator.UPLOAD)
    assert record["body"]["content"] == f"<{len(PNG)} bytes>"


def test_upload_bad_base64_is_400(emulator: Any) -> None:
    assert _upload(emulator, content="data:image/png;base64,AAAA").status_code == 400
    assert _upload(emulator, content="@@@").status_code == 400
    assert emulator.control.uploads() == []


def test_upload_then_chat_carries_attachment(emulator: Any) -> None:
    file_id = _upload(emulator).json()["fileMetadataId"]
    body = emulator.body("describe this", fileAttachments=[file_id])
    response = emulator.chat(body=body)
    assert response.status_code == 200
    assert "[files: photo.png]" in response.text

    chat = emulator.control.requests(path=emulator.CHAT)[-1]
    assert chat["body"]["fileAttachments"] == [file_id]
    assert emulator.control.upload(file_id)["data"] == PNG


def test_upload_attachment_of_other_account_is_400(emulator: Any) -> None:
    emulator.control.add_account("tok-b")
    file_id = _upload(emulator, "tok-b").json()["fileMetadataId"]
    body = emulator.body(fileAttachments=[file_id])
    assert emulator.chat("tok-a", body).status_code == 400
    assert (
        emulator.chat("tok-a", emulator.body(fileAttachments=["nope"])).status_code
        == 400
    )
    assert emulator.control.account("tok-a")["remaining"] == 10


def test_upload_checks_account(emulator: Any) -> None:
    assert _upload(emulator, "tok-unknown").status_code == 401
