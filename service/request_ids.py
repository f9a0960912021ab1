"""Request ids: every /rank and /recommend answer has one (body and X-Request-ID header), the key that ties
the clicks it brings to it. A client's own X-Request-ID (a trace id) is kept when it is a single printable
token of at most 128 characters; anything else is refused (422 naming the header), so no log line carries a
forged newline or a megabyte of header."""
from __future__ import annotations

import os
import re

from service.errors import unprocessable
from service.schemas import MAX_REQUEST_ID, REQUEST_ID_PATTERN

HEADER = "x-request-id"
_VALID = re.compile(REQUEST_ID_PATTERN)


def request_id(headers) -> str:
    """The client's X-Request-ID if valid, else a new random one (128 bits, hex); 422 for an invalid one."""
    given = headers.get(HEADER)
    if given is None:
        return os.urandom(16).hex()
    if not 0 < len(given) <= MAX_REQUEST_ID or not _VALID.match(given):
        raise unprocessable("X-Request-ID", f"must be 1-{MAX_REQUEST_ID} printable ASCII characters without "
                                            "spaces; leave the header out and the service makes one")
    return given
