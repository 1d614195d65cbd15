"""Emoji sprite atlas: rendered once from the font, read from a PNG at run time.

Why an atlas: the colour-emoji font is a Debian package that a GPU box or a
Hugging Face Space does not have. Rendering the 64 sprites once and committing
them as one small RGBA PNG (plus a JSON index) makes the generator depend on
nothing but numpy, OpenCV and Pillow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from explorer.data.classes import CLASS_CODEPOINTS, CLASS_NAMES

DEFAULT_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
ATLAS_DIR = Path(__file__).resolve().parents[2] / "assets" / "emoji"
CELL = 96        # sprite cell size in the atlas; the longer sprite side fills it
COLUMNS = 8
FONT_SIZE = 109  # the only size at which the Noto CBDT bitmap font renders


def render_sprite(font: ImageFont.FreeTypeFont, codepoint: str, cell: int = CELL) -> Image.Image:
    """Render one emoji in colour, crop to its alpha bbox, scale its longer side to ``cell``."""
    canvas = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((32, 32), chr(int(codepoint, 16)), font=font, embedded_color=True)
    bbox = canvas.getchannel("A").getbbox()
    if bbox is None:
        raise ValueError(f"font has no glyph for U+{codepoint}")
    sprite = canvas.crop(bbox)
    scale = cell / max(sprite.size)
    size = (max(1, round(sprite.width * scale)), max(1, round(sprite.height * scale)))
    return sprite.resize(size, Image.Resampling.LANCZOS)


def build_atlas(font_path: Path = DEFAULT_FONT, out_dir: Path = ATLAS_DIR, cell: int = CELL) -> Path:
    """Render every class into ``out_dir/atlas.png`` + ``atlas.json``; returns the PNG path."""
    font = ImageFont.truetype(str(font_path), FONT_SIZE)
    rows = (len(CLASS_NAMES) + COLUMNS - 1) // COLUMNS
    atlas = Image.new("RGBA", (COLUMNS * cell, rows * cell), (0, 0, 0, 0))
    entries = []
    for k, name in enumerate(CLASS_NAMES):
        sprite = render_sprite(font, CLASS_CODEPOINTS[name], cell)
        x = (k % COLUMNS) * cell + (cell - sprite.width) // 2
        y = (k // COLUMNS) * cell + (cell - sprite.height) // 2
        atlas.paste(sprite, (x, y))
        entries.append({"name": name, "class_id": k, "codepoint": f"U+{CLASS_CODEPOINTS[name]}",
                        "x": x, "y": y, "w": sprite.width, "h": sprite.height})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "atlas.png"
    atlas.save(png, optimize=True)
    index = {"source": "Noto Color Emoji (SIL Open Font License 1.1), Debian fonts-noto-color-emoji",
             "font_size": FONT_SIZE, "cell": cell, "columns": COLUMNS, "sprites": entries}
    (out_dir / "atlas.json").write_text(json.dumps(index, indent=1) + "\n")
    return png


def load_atlas(atlas_dir: Path = ATLAS_DIR) -> list[np.ndarray]:
    """Sprites as RGBA uint8 arrays, one per class in ``CLASS_NAMES`` order."""
    atlas_dir = Path(atlas_dir)
    index = json.loads((atlas_dir / "atlas.json").read_text())
    sheet = np.asarray(Image.open(atlas_dir / "atlas.png").convert("RGBA"))
    by_name = {e["name"]: e for e in index["sprites"]}
    missing = [n for n in CLASS_NAMES if n not in by_name]
    if missing:
        raise ValueError(f"atlas lacks classes {missing}; rebuild with `python -m explorer data atlas`")
    out = []
    for name in CLASS_NAMES:
        e = by_name[name]
        out.append(np.ascontiguousarray(sheet[e["y"]:e["y"] + e["h"], e["x"]:e["x"] + e["w"]]))
    return out
