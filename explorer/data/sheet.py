"""Contact sheet: scenes with their labels drawn, to check the world by eye."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from explorer.data.classes import CLASS_NAMES
from explorer.data.formats.voc import voc_colormap
from explorer.data.world import Scene, SceneGenerator


def draw_scene(scene: Scene) -> Image.Image:
    """Image with boxes + class names (dominant in thick yellow) next to its colourised seg map."""
    h, w = scene.seg.shape
    left = Image.fromarray(scene.image).copy()
    d = ImageDraw.Draw(left)
    for j, inst in enumerate(scene.instances):
        dom = j == scene.dominant
        colour = (255, 230, 0) if dom else (0, 255, 255)
        x0, y0, x1, y1 = inst.box_xyxy
        d.rectangle([x0, y0, x1 - 1, y1 - 1], outline=colour, width=3 if dom else 1)
        name = CLASS_NAMES[inst.class_id]
        tx, ty = x0 + 2, max(0, y0 - 11) if y0 >= 11 else y0 + 1
        d.rectangle([tx - 1, ty, tx + 6 * len(name) + 1, ty + 10], fill=(0, 0, 0))
        d.text((tx, ty - 1), name, fill=colour)
    seg_rgb = voc_colormap()[scene.seg]
    right = Image.fromarray((0.35 * scene.image + 0.65 * seg_rgb).astype(np.uint8))
    tile = Image.new("RGB", (2 * w + 4, h + 14), (255, 255, 255))
    tile.paste(left, (0, 0))
    tile.paste(right, (w + 4, 0))
    ImageDraw.Draw(tile).text((2, h + 1), f"{scene.kind}: {CLASS_NAMES[scene.label]}", fill=(0, 0, 0))
    return tile


def contact_sheet(seed: int = 0, n: int = 16, size: int = 224, columns: int = 4, start: int = 0) -> Image.Image:
    """Grid of ``n`` scenes starting at index ``start``."""
    gen = SceneGenerator(seed, size)
    tiles = [draw_scene(gen.scene(start + k)) for k in range(n)]
    tw, th = tiles[0].size
    rows = (n + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (tw + 8), rows * (th + 8)), (255, 255, 255))
    for k, t in enumerate(tiles):
        sheet.paste(t, ((k % columns) * (tw + 8), (k // columns) * (th + 8)))
    return sheet


def write_contact_sheet(out: Path, seed: int = 0, n: int = 16, size: int = 224, palette: bool = False) -> Path:
    """Save the sheet; ``palette`` stores 256 colours (about 3x smaller, for committed docs)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet = contact_sheet(seed, n, size)
    if palette:
        sheet = sheet.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    sheet.save(out, optimize=True)
    return out
