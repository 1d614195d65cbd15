"""viz: colour tables match matplotlib, overlays land on the right pixels, clicks map to patches."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from explorer import viz


def test_lut_matches_matplotlib() -> None:
    lut = viz.colormap_lut("viridis")
    ref = np.rint(colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    np.testing.assert_array_equal(lut, ref)


def test_colorize_extremes_and_upsampling() -> None:
    v = np.array([[0.0, 1.0], [0.5, 0.0]], dtype=np.float32)
    img = viz.colorize(v, "gray", size=(20, 10), smooth=False)
    assert img.shape == (10, 20, 3)
    assert tuple(img[0, 15]) == (255, 255, 255)  # top-right patch = max
    assert tuple(img[0, 0]) == (0, 0, 0)  # top-left patch = min
    assert abs(int(img[9, 0, 0]) - 128) <= 1  # bottom-left = mid


@pytest.mark.parametrize(
    "size,grid,xy,expected",
    [
        ((640, 480), (30, 40), (0, 0), (0, 0)),
        ((640, 480), (30, 40), (639, 479), (29, 39)),
        ((640, 480), (30, 40), (16 * 5 + 3, 16 * 7 + 15), (7, 5)),
        ((300, 900), (42, 14), (150, 450), (21, 7)),  # tall, non-square
        ((1000, 200), (6, 28), (999, 0), (0, 27)),  # wide, rounding of sides
        ((1000, 200), (6, 28), (1200, -5), (0, 27)),  # outside the image is clamped
    ],
)
def test_pixel_to_patch(size, grid, xy, expected) -> None:
    assert viz.pixel_to_patch(*xy, size=size, grid=grid) == expected


def test_patch_round_trip_every_patch() -> None:
    size, grid = (333, 517), (32, 21)
    for r in range(grid[0]):
        for c in range(grid[1]):
            x0, y0, x1, y1 = viz.patch_to_pixels(r, c, r + 1, c + 1, size, grid)
            assert viz.pixel_to_patch((x0 + x1) / 2, (y0 + y1) / 2, size, grid) == (r, c)


def test_heatmap_overlay_peak_at_the_hot_patch() -> None:
    base = np.full((60, 90, 3), 100, np.uint8)
    v = np.zeros((4, 6), np.float32)
    v[2, 4] = 1.0
    out = viz.heatmap_overlay(base, v, "inferno", alpha=0.7, smooth=False)
    lum = out.astype(int).sum(axis=2)
    y, x = np.unravel_index(np.argmax(lum), lum.shape)
    assert viz.pixel_to_patch(x, y, (90, 60), (4, 6)) == (2, 4)
    assert out.shape == base.shape and out.dtype == np.uint8


def test_mask_overlay_tints_inside_dims_outside() -> None:
    base = np.full((40, 40, 3), 200, np.uint8)
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    out = viz.mask_overlay(base, mask, color=(0, 255, 0), alpha=0.5, dim_background=0.5)
    assert np.abs(out[20, 20].astype(int) - (100, 227.5, 100)).max() <= 1
    assert tuple(out[2, 2]) == (100, 100, 100)


def test_draw_box_and_mark_patch_positions() -> None:
    img = np.zeros((64, 128, 3), np.uint8)
    out = viz.draw_box(img, (1, 2, 3, 6), grid=(4, 8), color=(255, 0, 0), thickness=1)
    ys, xs = np.nonzero(out[..., 0])
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (32, 95, 16, 47)
    assert img.sum() == 0  # input untouched
    marked = viz.mark_patch(img, 3, 7, grid=(4, 8), color=(0, 0, 255))
    ys, xs = np.nonzero(marked[..., 2] == 255)
    assert xs.min() >= 112 and ys.min() >= 48


def test_grid_image_nearest() -> None:
    rgb = np.zeros((2, 2, 3), np.float32)
    rgb[0, 1] = (1.0, 0.0, 0.0)
    out = viz.grid_image(rgb, (8, 4))
    assert out.shape == (4, 8, 3)
    assert tuple(out[0, 7]) == (255, 0, 0) and tuple(out[3, 0]) == (0, 0, 0)


def test_display_array_caps_long_side() -> None:
    arr = viz.display_array(Image.new("RGB", (1200, 300)), max_side=600)
    assert arr.shape == (150, 600, 3)
    small = viz.display_array(Image.new("RGB", (240, 144)), max_side=640, min_side=480)
    assert small.shape == (288, 480, 3)
    same = viz.display_array(Image.new("RGB", (500, 100)), max_side=640, min_side=480)
    assert same.shape == (100, 500, 3)


def test_downsample_square_block_mean() -> None:
    m = np.arange(36, dtype=np.float32).reshape(6, 6)
    small, step = viz.downsample_square(m, 3)
    assert step == 2 and small.shape == (3, 3)
    assert small[0, 0] == pytest.approx(np.mean([0, 1, 6, 7]))


def test_gram_figure_has_heatmap_and_highlight() -> None:
    g = np.eye(10, dtype=np.float32)
    fig = viz.gram_figure(g, highlight=4)
    assert fig.data[0].type == "heatmap"
    assert np.asarray(fig.data[0].z).shape == (10, 10)
    assert fig.layout.shapes[0].y0 == pytest.approx(3.5)


def test_legend_html_mentions_range() -> None:
    html = viz.legend_html("inferno", -1.0, 1.0, "cosine")
    assert "-1.00" in html and "1.00" in html and "linear-gradient" in html


def test_class_palette_blend_and_legend() -> None:
    pal = viz.class_palette(4)
    assert pal.shape == (4, 3) and (pal[0] == 0).all() and len({tuple(c) for c in pal[1:]}) == 3
    base = np.full((2, 3, 3), 100, np.uint8)
    classes = np.array([[0, 1, 2], [3, 0, 1]], np.uint8)
    out = viz.blend_classes(base, classes, pal, 0.5)
    assert (out[classes == 0] == 100).all()  # background keeps the image
    want = np.rint(0.5 * pal[classes[classes > 0]].astype(float) + 50)
    assert np.abs(out[classes > 0].astype(int) - want).max() <= 1
    painted_all = viz.blend_classes(base, classes, pal, 1.0, skip=None)
    assert (painted_all == pal[classes]).all()
    html = viz.class_legend_html(["bg", "cat", "dog", "<b>"], classes, pal)
    assert html.index("cat") < html.index("dog") or html.count("%") == 4  # 2 px each: order is stable
    assert "&lt;b&gt;" in html and "33.3%" in html and "dashed" in html


def test_draw_detections_marks_the_box_edges() -> None:
    base = np.zeros((40, 60, 3), np.uint8)
    out = viz.draw_detections(base, [{"box_xyxy": [10, 10, 30, 20], "label": "x", "class_id": 0, "score": 0.5}],
                              1.0, viz.class_palette(3))
    assert not out[35, 50].any()  # outside the box and its tag: untouched
    assert out[20, 20].any() and out[15, 10].any()  # bottom edge and left edge are drawn
