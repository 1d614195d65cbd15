"""Pictures from analysis results: overlays, colour maps, boxes, the Gram heatmap, legends.

Why numpy/cv2 and a precomputed colour table: a slider or click must answer in a few
milliseconds, and calling matplotlib per frame costs tens of them. Matplotlib is consulted
once per colour map (to build a 256-entry lookup table), never per call.
"""

from __future__ import annotations

import colorsys
import html
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
from PIL import Image

Grid = tuple[int, int]  # (h, w) patches
Size = tuple[int, int]  # (W, H) pixels, PIL order

MARK_COLOR = (0, 255, 255)  # cyan: clicked / selected patch
BOX_COLOR = (255, 220, 0)  # yellow: TokenCut box
MASK_COLOR = (0, 220, 120)  # green: foreground mask


# ---------------------------------------------------------------- colour tables
@lru_cache(maxsize=16)
def colormap_lut(name: str = "inferno") -> np.ndarray:
    """uint8[256, 3] table of a matplotlib colour map (built once per name)."""
    from matplotlib import colormaps  # lazy: importing matplotlib costs ~0.3 s

    cmap = colormaps[name]
    rgb = cmap(np.linspace(0.0, 1.0, 256))[:, :3]
    return np.ascontiguousarray(np.rint(rgb * 255.0).astype(np.uint8))


def to_uint8_index(values: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Scale values linearly to 0..255 table indices (NaN -> 0)."""
    v = np.asarray(values, dtype=np.float32)
    lo = float(np.nanmin(v)) if vmin is None else float(vmin)
    hi = float(np.nanmax(v)) if vmax is None else float(vmax)
    span = hi - lo if hi > lo else 1.0
    idx = np.clip((v - lo) * (255.0 / span), 0.0, 255.0)
    return np.nan_to_num(idx, nan=0.0).astype(np.uint8)


def colorize(
    values: np.ndarray,
    cmap: str = "inferno",
    vmin: float | None = None,
    vmax: float | None = None,
    size: Size | None = None,
    smooth: bool = True,
) -> np.ndarray:
    """[h, w] values -> uint8[H, W, 3] colour image, upsampled to `size` (W, H) if given.

    Speed matters (this runs per slider move): nearest upsampling colours the small grid and
    resizes the colour image; bilinear resizes the values, then maps them with `cv2.LUT`.
    Both avoid a per-pixel numpy gather over the full-size image.
    """
    v = np.asarray(values, dtype=np.float32)
    lut = colormap_lut(cmap)
    idx = to_uint8_index(v, vmin, vmax)
    if size is None or (v.shape[1], v.shape[0]) == tuple(size):
        return lut[idx]
    if not smooth:
        return cv2.resize(lut[idx], (int(size[0]), int(size[1])), interpolation=cv2.INTER_NEAREST)
    lo = float(np.nanmin(v)) if vmin is None else float(vmin)
    hi = float(np.nanmax(v)) if vmax is None else float(vmax)
    big = _resize_grid(v, size, cv2.INTER_LINEAR)
    big_idx = to_uint8_index(big, lo, hi)
    return cv2.LUT(cv2.merge([big_idx, big_idx, big_idx]), lut.reshape(256, 1, 3))


def _resize_grid(v: np.ndarray, size: Size, interp: int) -> np.ndarray:
    """Upsample a patch grid so each patch covers its own pixel block (cell-centred, like the model)."""
    return cv2.resize(np.ascontiguousarray(v), (int(size[0]), int(size[1])), interpolation=interp)


# ---------------------------------------------------------------- base images
def as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """uint8[H, W, 3] view of a PIL image or array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr[..., :3].astype(np.uint8, copy=False))


def display_array(image: Image.Image, max_side: int = 640, min_side: int = 0) -> np.ndarray:
    """The image as uint8[H, W, 3] with its longer side in [min_side, max_side] (resized if outside).

    Overlays are drawn at this resolution: large enough to read (small uploads are enlarged so a
    patch is more than a few pixels), small enough to blend in ~1 ms.
    """
    w, h = image.size
    long_side = max(w, h)
    scale = min(1.0, max_side / long_side) if long_side > max_side else max(1.0, min_side / long_side)
    if scale != 1.0:
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(as_rgb_array(image))


# ---------------------------------------------------------------- overlays
def heatmap_overlay(
    base: np.ndarray,
    values: np.ndarray,
    cmap: str = "inferno",
    alpha: float = 0.6,
    vmin: float | None = None,
    vmax: float | None = None,
    smooth: bool = True,
) -> np.ndarray:
    """Blend a colour-mapped [h, w] grid over `base` (uint8[H, W, 3]) at the base's resolution."""
    H, W = base.shape[:2]
    colour = colorize(values, cmap, vmin, vmax, size=(W, H), smooth=smooth)
    return cv2.addWeighted(colour, float(alpha), base, 1.0 - float(alpha), 0.0)


def grid_image(rgb: np.ndarray, size: Size, smooth: bool = False) -> np.ndarray:
    """[h, w, 3] floats in [0, 1] (e.g. PCA colours) -> uint8[H, W, 3] upscaled to `size` (W, H)."""
    arr = np.clip(np.asarray(rgb, dtype=np.float32) * 255.0, 0, 255).astype(np.uint8)
    interp = cv2.INTER_LINEAR if smooth else cv2.INTER_NEAREST
    return cv2.resize(np.ascontiguousarray(arr), (int(size[0]), int(size[1])), interpolation=interp)


def mask_overlay(
    base: np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] = MASK_COLOR,
    alpha: float = 0.45,
    dim_background: float = 0.45,
) -> np.ndarray:
    """Tint the [h, w] boolean patch mask over `base`, dim the rest, outline the mask border."""
    H, W = base.shape[:2]
    m = cv2.resize(np.asarray(mask, dtype=np.uint8), (W, H), interpolation=cv2.INTER_NEAREST)
    # Whole-image uint8 passes in cv2 (saturating, vectorised) then one masked copy: ~1 ms at 640 px,
    # where boolean fancy indexing in float32 took ~20 ms.
    out = cv2.convertScaleAbs(base, alpha=1.0 - float(dim_background))
    tinted = cv2.convertScaleAbs(base, alpha=1.0 - float(alpha))
    cv2.add(tinted, tuple(float(c) * float(alpha) for c in color) + (0.0,), dst=tinted)
    cv2.copyTo(tinted, m, out)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, color, max(1, round(max(H, W) / 300)))
    return out


@lru_cache(maxsize=16)
def class_palette(n: int) -> np.ndarray:
    """uint8[n, 3] distinct colours for class ids; index 0 (background) is black and never painted.

    Golden-ratio hue steps keep neighbouring class ids far apart in colour.
    """
    out = np.zeros((max(n, 1), 3), np.uint8)
    for i in range(1, n):
        h = (0.08 + (i - 1) * 0.618034) % 1.0
        s, v = (0.85, 0.95) if i % 2 else (0.6, 0.8)
        out[i] = np.rint(np.array(colorsys.hsv_to_rgb(h, s, v)) * 255)
    out.flags.writeable = False  # shared by every caller through the cache
    return out


def blend_classes(base: np.ndarray, classes: np.ndarray, palette: np.ndarray, opacity: float,
                  skip: int | None = 0) -> np.ndarray:
    """Paint the pixels of class map ``classes`` (same H×W as ``base``) with their colour at ``opacity``;
    pixels of class ``skip`` (background; None = paint all) keep the image."""
    colour = np.ascontiguousarray(palette[classes])
    mixed = cv2.addWeighted(colour, float(opacity), base, 1.0 - float(opacity), 0.0)
    if skip is None:
        return mixed
    out = base.copy()
    cv2.copyTo(mixed, (classes != skip).astype(np.uint8), out)
    return out


def draw_detections(base: np.ndarray, dets: list[dict[str, Any]], scale: float, palette: np.ndarray,
                    colour_offset: int = 1) -> np.ndarray:
    """Boxes ``d["box_xyxy"]`` (original-image pixels times ``scale`` = display pixels) with a "name score"
    tag each, coloured ``palette[(class_id + colour_offset) % len]``; best drawn last, on top."""
    out = np.ascontiguousarray(base.copy())
    H, W = out.shape[:2]
    t = max(2, round(max(H, W) / 250))
    font_scale = max(0.4, max(H, W) / 1100)
    for d in reversed(dets):
        x0, y0, x1, y1 = (int(round(v * scale)) for v in d["box_xyxy"])
        colour = tuple(int(c) for c in palette[(d["class_id"] + colour_offset) % len(palette)])
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, t)
        tag = f"{d['label']} {d['score']:.2f}"
        (tw, th), base_line = cv2.getTextSize(tag, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        ty = y0 - 2 if y0 - th - base_line - 2 >= 0 else min(H - 1, y0 + th + base_line + 2)
        cv2.rectangle(out, (x0, ty - th - base_line), (min(W - 1, x0 + tw + 4), ty + 1), colour, -1)
        cv2.putText(out, tag, (x0 + 2, ty - base_line + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def draw_points(base: np.ndarray, points_xy: list[tuple[float, float]], colours: list[tuple[int, int, int]],
                radius: int | None = None) -> np.ndarray:
    """Filled dots with a dark rim at display pixels (the teaching marks)."""
    out = np.ascontiguousarray(base.copy())
    r = radius or max(3, round(max(out.shape[:2]) / 120))
    for (x, y), c in zip(points_xy, colours, strict=True):
        cv2.circle(out, (int(round(x)), int(round(y))), r + 1, (0, 0, 0), -1, cv2.LINE_AA)
        cv2.circle(out, (int(round(x)), int(round(y))), r, tuple(int(v) for v in c), -1, cv2.LINE_AA)
    return out


# ---------------------------------------------------------------- geometry
def pixel_to_patch(x: float, y: float, size: Size, grid: Grid) -> tuple[int, int]:
    """(x, y) pixels of an image of `size` (W, H) -> (row, col) of the patch grid (h, w).

    The model sees the image resized to grid*patch pixels (aspect kept up to rounding), so each
    patch covers the fraction 1/w of the width and 1/h of the height: map by fraction, per axis.
    """
    W, H = size
    h, w = grid
    col = int(np.clip(np.floor(float(x) / W * w), 0, w - 1))
    row = int(np.clip(np.floor(float(y) / H * h), 0, h - 1))
    return row, col


def patch_to_pixels(row0: float, col0: float, row1: float, col1: float, size: Size, grid: Grid) -> tuple[int, int, int, int]:
    """Patch-unit box (r0, c0, r1, c1), end-exclusive -> pixel box (x0, y0, x1, y1), end-inclusive."""
    W, H = size
    h, w = grid
    x0, x1 = round(col0 * W / w), round(col1 * W / w) - 1
    y0, y1 = round(row0 * H / h), round(row1 * H / h) - 1
    return int(x0), int(y0), int(max(x0, x1)), int(max(y0, y1))


def draw_box(
    image: np.ndarray,
    box: tuple[int, int, int, int],
    grid: Grid,
    color: tuple[int, int, int] = BOX_COLOR,
    thickness: int | None = None,
) -> np.ndarray:
    """Draw a patch-unit box (r0, c0, r1, c1) (end-exclusive) on a copy of `image`."""
    out = np.ascontiguousarray(image.copy())
    H, W = out.shape[:2]
    r0, c0, r1, c1 = box
    x0, y0, x1, y1 = patch_to_pixels(r0, c0, r1, c1, (W, H), grid)
    t = thickness or max(2, round(max(H, W) / 200))
    cv2.rectangle(out, (x0, y0), (x1, y1), color, t)
    return out


def mark_patch(
    image: np.ndarray,
    row: int,
    col: int,
    grid: Grid,
    color: tuple[int, int, int] = MARK_COLOR,
) -> np.ndarray:
    """Outline one patch (the clicked or selected one) with a dark halo so it shows on any colour."""
    out = np.ascontiguousarray(image.copy())
    H, W = out.shape[:2]
    x0, y0, x1, y1 = patch_to_pixels(row, col, row + 1, col + 1, (W, H), grid)
    t = max(1, round(max(H, W) / 300))
    cv2.rectangle(out, (x0 - t, y0 - t), (x1 + t, y1 + t), (0, 0, 0), t + 2)
    cv2.rectangle(out, (x0, y0), (x1, y1), color, t)
    return out


# ---------------------------------------------------------------- plots and legends
def downsample_square(matrix: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """Block-average a P×P matrix to at most max_side² cells (a browser chokes on 10 M cells)."""
    m = np.asarray(matrix, dtype=np.float32)
    p = m.shape[0]
    step = max(1, int(np.ceil(p / max_side)))
    if step == 1:
        return m, 1
    n = p // step
    trimmed = m[: n * step, : n * step]
    return trimmed.reshape(n, step, n, step).mean(axis=(1, 3)), step


def gram_figure(
    gram: np.ndarray,
    highlight: int | None = None,
    max_side: int = 320,
    title: str = "Gram matrix, patches reordered",
):
    """Plotly heatmap of a (reordered) Gram matrix; `highlight` is a row in the reordered order."""
    import plotly.graph_objects as go

    shown, step = downsample_square(gram, max_side)
    z = np.round(shown, 3)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            colorscale="RdBu_r",
            zmin=-1.0,
            zmax=1.0,
            colorbar={"title": {"text": "cos"}},
            hovertemplate="row %{y}, col %{x}<br>cos %{z}<extra></extra>",
        )
    )
    if highlight is not None:
        y = highlight // step
        fig.add_shape(type="rect", x0=-0.5, x1=z.shape[1] - 0.5, y0=y - 0.5, y1=y + 0.5,
                      line={"color": "#00c8c8", "width": 2})
    note = f" (1/{step}, block-averaged)" if step > 1 else ""
    fig.update_layout(
        title={"text": title + note, "font": {"size": 13}},
        yaxis={"autorange": "reversed", "scaleanchor": "x", "title": "patch (reordered)"},
        xaxis={"title": "patch (reordered)"},
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
        height=460,
    )
    return fig


def class_legend_html(class_names: list[str], classes: np.ndarray, palette: np.ndarray,
                      background: int | None = 0) -> str:
    """Swatches of the classes present in a class map (largest area first) with their share of the image;
    class ``background`` gets a dashed, empty swatch (it is not painted)."""
    counts = np.bincount(np.asarray(classes).ravel(), minlength=len(class_names))
    total = max(1, int(np.asarray(classes).size))
    items = []
    for k in np.argsort(-counts, kind="stable"):
        if counts[k] == 0 or k >= len(class_names):
            continue
        r, g, b = (int(c) for c in palette[k])
        swatch = "transparent;border:1px dashed #888" if k == background else f"rgb({r},{g},{b})"
        items.append(
            f'<span style="display:inline-flex;align-items:center;gap:4px;margin-right:12px">'
            f'<span style="width:14px;height:14px;border-radius:3px;background:{swatch}"></span>'
            f"{html.escape(class_names[k])} {100 * counts[k] / total:.1f}%</span>"
        )
    return f'<div class="seg-legend" style="font-size:13px;line-height:1.9">{"".join(items)}</div>'


def legend_html(cmap: str, vmin: float, vmax: float, label: str) -> str:
    """A small colour bar as HTML (a CSS gradient sampled from the same lookup table)."""
    lut = colormap_lut(cmap)
    stops = ", ".join(f"rgb({r},{g},{b}) {i / 10 * 100:.0f}%" for i, (r, g, b) in enumerate(lut[::25][:11]))
    return (
        f'<div style="display:flex;align-items:center;gap:8px;font-size:12px">'
        f"<span>{label}</span><span>{vmin:.2f}</span>"
        f'<div style="width:180px;height:12px;border-radius:3px;background:linear-gradient(to right, {stops})"></div>'
        f"<span>{vmax:.2f}</span></div>"
    )


# ---------------------------------------------------------------- several objects
def draw_objects(
    base: np.ndarray,
    masks: list[np.ndarray],
    boxes: list[tuple[int, int, int, int]],
    labels: list[str],
    grid: Grid,
    cmap: str = "tab10",
) -> np.ndarray:
    """Each [h, w] mask tinted, its patch-unit box drawn and labelled, one colour per object."""
    lut = colormap_lut(cmap)
    out = np.ascontiguousarray(base.copy())
    H, W = out.shape[:2]
    scale = max(H, W) / 640.0
    for k, (mask, box, text) in enumerate(zip(masks, boxes, labels, strict=True)):
        color = tuple(int(c) for c in lut[(k % 10) * 25 + 12])
        out = mask_overlay(out, mask, color=color, alpha=0.45, dim_background=0.35 if k == 0 else 0.0)
        out = draw_box(out, box, grid, color=color)
        x0, y0, _, _ = patch_to_pixels(*box, (W, H), grid)
        org = (x0 + 4, max(y0 + int(18 * scale), int(16 * scale)))
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (0, 0, 0), max(3, int(3 * scale)), cv2.LINE_AA)
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, color, max(1, int(scale)), cv2.LINE_AA)
    return out
