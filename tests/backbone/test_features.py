"""`Features` refuses fields that do not agree, with a message naming the field."""

from __future__ import annotations

import pytest
import torch

from explorer.backbone import Features


def make(**changes) -> Features:
    fields = dict(cls=torch.zeros(8), registers=torch.zeros(4, 8), patches=torch.zeros(2, 3, 8), layer=1,
                  input_size=(32, 48), patch_size=16, model_id="m", image_size=(20, 30))
    return Features(**{**fields, **changes})


def test_consistent_fields_are_accepted() -> None:
    features = make()
    assert features.grid == (2, 3) and features.dim == 8 and features.flat().shape == (6, 8)


@pytest.mark.parametrize(("changes", "message"), [
    (dict(cls=torch.zeros(7)), "cls must be"),
    (dict(registers=torch.zeros(4, 7)), "registers must be"),
    (dict(patches=torch.zeros(6, 8)), "patches must be"),
    (dict(patches=torch.zeros(3, 2, 8)), "gives a 2x3 grid"),
    (dict(patches=torch.zeros(2, 3, 8, dtype=torch.float16)), "float32"),
    (dict(layer=0), "1-based"),
    (dict(patch_size=0), "positive"),
])
def test_inconsistent_fields_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(**changes)
