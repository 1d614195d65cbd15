"""The one head interface: every head — shipped, trained by a command, or taught in the browser — is data
(a card) plus ``predict(features)``.

What a caller may rely on, whatever the kind:

- ``kind``: ``"probe"``, ``"segmentation"``, ``"detection"``, ``"taught-segmentation"``, ``"taught-classification"``;
- ``card``: the JSON card (backbone fingerprint, classes, layer, pixel spec, recipe, metrics);
- ``class_names``, ``layer`` (1-based block the head reads), ``size`` (longer side of the pixels it reads,
  made by ``Backbone.preprocess``) and ``pixel_spec`` (``Backbone.pixel_spec(size)`` at training time);
- ``predict(features)`` on ONE image's ``Features``; what comes back depends on the task:
  classification -> probabilities ``float[K]``; segmentation -> class map ``uint8[H, W]`` at
  ``features.image_size``; detection -> ``{"boxes_xyxy", "scores", "labels"}`` in input pixels.

A head is served on ``serving_request(head)``: the same size and layer it was taught or trained on, so the
app feeds it exactly the pixels its card records.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

DEFAULT_SIZE = 224  # cards written before pixel specs existed were all trained at 224 px


@runtime_checkable
class Head(Protocol):
    kind: str
    card: dict[str, Any]
    class_names: list[str]

    @property
    def layer(self) -> int | None: ...

    @property
    def size(self) -> int: ...

    @property
    def pixel_spec(self) -> dict[str, Any]: ...

    def predict(self, features: Any) -> Any: ...


def card_size(card: dict[str, Any]) -> int:
    """Longer side (px) of the pixels the head reads: the pixel spec's size, else the old ``input_size``."""
    spec = card.get("pixel_spec") or {}
    if "size" in spec:
        return int(spec["size"])
    size = card.get("input_size", DEFAULT_SIZE)
    return int(max(size) if isinstance(size, (list, tuple)) else size)


class CardFields:
    """``kind``, ``layer``, ``size`` and ``pixel_spec`` read from ``self.card``: one definition for every head."""

    card: dict[str, Any]
    default_kind = "head"

    @property
    def kind(self) -> str:
        return str(self.card.get("kind") or self.default_kind)

    @property
    def layer(self) -> int | None:
        layer = self.card.get("layer")
        return None if layer is None else int(layer)

    @property
    def size(self) -> int:
        return card_size(self.card)

    @property
    def pixel_spec(self) -> dict[str, Any]:
        return dict(self.card.get("pixel_spec") or {"size": self.size})


def serving_request(head: Head) -> tuple[int, int | None]:
    """(size, layer) to prepare features at so the head reads what it was made on."""
    return head.size, head.layer
