"""Reading an uploaded file from a request: a raw body, or the ``file`` part of a
multipart/form-data body, streamed into a spool file (counted, hashed, limited) as it arrives."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import ClientDisconnect, Request

from jobwire.api.problems import Problem
from jobwire.errors import Violation
from jobwire.storage.spool import ChecksumMismatch, Spooled, TooLarge, spool

#: What a multipart body may carry beside its file part, in bytes (field values, headers).
MAX_FORM_OVERHEAD = 64 * 1024
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
DEFAULT_TYPE = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Upload:
    spooled: Spooled
    filename: str | None
    content_type: str


def announced_sha256(request: Request) -> str | None:
    """The checksum the client announces: ``X-Checksum-SHA256`` (hex) or ``Content-Digest``
    (RFC 9530, ``sha-256=:<base64>:``); 400 when malformed."""
    hex_value = request.headers.get("x-checksum-sha256")
    if hex_value is not None:
        if not SHA256_HEX.fullmatch(hex_value.strip()):
            raise Problem(400, "X-Checksum-SHA256 must be 64 hex digits",
                          violations=[Violation("/headers/x-checksum-sha256", "not a sha256")])
        return hex_value.strip().lower()
    digest = request.headers.get("content-digest")
    if digest is None:
        return None
    for item in digest.split(","):
        name, _, value = item.strip().partition("=")
        if name.strip().lower() == "sha-256":
            try:
                raw = base64.b64decode(value.strip().strip(":"), validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise Problem(400, "Content-Digest's sha-256 must be the base64 of 32 bytes",
                              violations=[Violation("/headers/content-digest", "not a sha-256 digest")])
            return raw.hex()
    return None


async def read_upload(request: Request, directory: Path, max_bytes: int) -> Upload:
    """The request's file, spooled; 413 past ``max_bytes``, 400 for a malformed body or a
    checksum that does not match."""
    declared = request.headers.get("content-length")
    overhead = MAX_FORM_OVERHEAD if _media_type(request) == "multipart/form-data" else 0
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > max_bytes + overhead:
        raise Problem(413, f"the file is {declared} bytes; the limit is {max_bytes}")
    expected = announced_sha256(request)
    try:
        if _media_type(request) == "multipart/form-data":
            return await _multipart(request, directory, max_bytes, expected)
        content_type = request.headers.get("content-type") or DEFAULT_TYPE
        spooled = await spool(request.stream(), directory, max_bytes, expected)
        return Upload(spooled, _disposition_filename(request.headers.get("content-disposition")), content_type)
    except TooLarge as exc:
        raise Problem(413, str(exc)) from None
    except ChecksumMismatch as exc:
        raise Problem(400, str(exc), violations=[Violation("/body", "does not match the announced sha256")]) from None
    except ClientDisconnect:
        raise Problem(400, "the client went away before the file was sent whole") from None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _disposition_filename(value: str | None) -> str | None:
    if not value:
        return None
    _, options = parse_options_header(value)
    if b"filename*" in options:  # RFC 5987: charset'lang'percent-encoded
        charset, _, rest = options[b"filename*"].decode("latin-1").partition("'")
        _, _, encoded = rest.partition("'")
        try:
            return unquote(encoded, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            return None
    name = options.get(b"filename")
    return name.decode("utf-8", "replace") if name else None


async def _multipart(request: Request, directory: Path, max_bytes: int, expected: str | None) -> Upload:
    _, params = parse_options_header(request.headers["content-type"])
    boundary = params.get(b"boundary")
    if not boundary:
        raise Problem(400, "a multipart/form-data body needs a boundary")
    state = _Parts()
    parser = MultipartParser(boundary, {
        "on_part_begin": state.begin, "on_header_field": state.header_field, "on_header_value": state.header_value,
        "on_header_end": state.header_end, "on_headers_finished": state.headers_finished,
        "on_part_data": state.data, "on_part_end": state.end,
    })

    async def file_chunks() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise Problem(400, f"the multipart body is malformed: {exc}") from None
            if state.overhead > MAX_FORM_OVERHEAD:
                raise Problem(413, "the multipart body carries too much beside its file")
            while state.pieces:
                yield state.pieces.pop(0)
        parser.finalize()
        if parser.state is not MultipartState.END:
            raise Problem(400, "the multipart body ends before its closing boundary: the file may be cut short")
        if not state.seen_file:
            raise Problem(422, "the multipart body has no part named 'file'",
                          violations=[Violation("/body/file", "required")])
        while state.pieces:
            yield state.pieces.pop(0)

    spooled = await spool(file_chunks(), directory, max_bytes, expected)
    return Upload(spooled, state.filename, state.content_type or DEFAULT_TYPE)


class _Parts:
    """What the parser's callbacks collect: the ``file`` part's bytes, name and type."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self.in_file = False
        self.seen_file = False
        self.filename: str | None = None
        self.content_type: str | None = None
        self.overhead = 0

    def begin(self) -> None:
        self.headers = {}

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]
        self.overhead += end - start

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]
        self.overhead += end - start

    def header_end(self) -> None:
        self.headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.in_file = options.get(b"name") == b"file" and not self.seen_file
        if self.in_file:
            self.seen_file = True
            self.filename = _disposition_filename(self.headers.get(b"content-disposition", b"").decode("latin-1"))
            part_type = self.headers.get(b"content-type")
            self.content_type = part_type.decode("latin-1").strip() if part_type else None

    def data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.pieces.append(data[start:end])
        else:
            self.overhead += end - start

    def end(self) -> None:
        self.in_file = False
