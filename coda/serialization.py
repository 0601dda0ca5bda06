# TEMPORARY SHIM written by the lead to test the engine; helper-1 replaces this file.
from __future__ import annotations
import json
from typing import Any
import msgspec
DEFAULT_SERIALIZER = "msgpack"
class _Reg:
    types = {"msgpack": "application/x-msgpack", "json": "application/json", "pickle": "application/x-python-serialize"}
    def content_type_for(self, name: str) -> str:
        return self.types[name]
    def dumps(self, obj: Any, serializer: str = "msgpack") -> tuple[str, str, bytes]:
        if serializer == "json":
            return "application/json", "utf-8", json.dumps(obj).encode()
        return "application/x-msgpack", "binary", msgspec.msgpack.encode(obj)
    def loads(self, body: bytes, ct: str, enc: str = "utf-8", accept: Any = None) -> Any:
        if ct == "application/json":
            return json.loads(body)
        return msgspec.msgpack.decode(body)
registry = _Reg()
