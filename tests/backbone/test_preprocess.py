"""The one pixels path: aspect kept, sides multiples of the patch."""

from __future__ import annotations

import pytest

from explorer.backbone import target_size


@pytest.mark.parametrize(("width", "height"), [(640, 480), (480, 640), (1000, 17), (16, 16)])
@pytest.mark.parametrize("patch", [14, 16, 32])
def test_target_size_keeps_aspect_and_patch_multiple(width: int, height: int, patch: int) -> None:
    out_h, out_w = target_size(width, height, 448, patch)
    assert out_h % patch == 0 and out_w % patch == 0
    assert abs(max(out_h, out_w) - 448) <= patch / 2
    # each side is the exact scaled side rounded to the nearest multiple of the patch (at least one patch)
    scale = 448 / max(width, height)
    for side, exact in ((out_h, height * scale), (out_w, width * scale)):
        assert side == max(patch, round(exact / patch) * patch)
