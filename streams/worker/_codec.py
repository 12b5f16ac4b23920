"""The faust value codec: the contract's JSON codec (``streams/engine/codec.py``) wrapped for
faust topics."""

from __future__ import annotations

from typing import Any

from faust.serializers.codecs import Codec
from pydantic import BaseModel

from streams.engine.codec import encode


class PydanticCodec(Codec):
    """faust value codec for one pydantic model (strict on the way in and out)."""

    def __init__(self, model: type[BaseModel], **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)
        self.model = model

    def _dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, self.model):
            obj = self.model.model_validate(obj)
        return encode(obj)

    def _loads(self, s: bytes) -> Any:
        return self.model.model_validate_json(s)
