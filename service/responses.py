"""A lean JSON response: the handlers build plain dicts, this encodes them once, with no model validation."""
from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


class FastJSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encode(content).encode()
