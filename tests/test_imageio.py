"""Every odd upload a public Space must survive (the charter's "Bad input" list), generated on the fly."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explorer import imageio
from explorer.imageio import ImageError, load_image, load_image_with_notes


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose IHDR claims w×h but whose pixel data is a stub (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(
        b"IEND", b""
    )


def test_zero_bytes_path_and_bytes(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for src in (empty, b""):
        with pytest.raises(ImageError, match="empty"):
            load_image(src)


def test_text_named_png(tmp_path: Path) -> None:
    p = tmp_path / "notes.png"
    p.write_text("hello, I am not a picture\n" * 10)
    with pytest.raises(ImageError, match="not an image"):
        load_image(p)


def test_truncated_png_and_corrupt_jpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    data = buf.getvalue()
    with pytest.raises(ImageError, match="damaged|truncated"):
        load_image(data[: len(data) // 2])
    jbuf = io.BytesIO()
    Image.fromarray(arr).save(jbuf, format="JPEG")
    jdata = bytearray(jbuf.getvalue())
    jdata = jdata[: len(jdata) // 3]  # header intact, entropy-coded data cut
    with pytest.raises(ImageError, match="damaged|truncated"):
        load_image(bytes(jdata))


@pytest.mark.parametrize("size", [(1, 1), (15, 200), (200, 15)])
def test_smaller_than_a_patch(size: tuple[int, int]) -> None:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buf, format="PNG")
    with pytest.raises(ImageError, match="too small"):
        load_image(buf.getvalue())


def test_exactly_one_patch_is_fine() -> None:
    assert load_image(Image.new("RGB", (16, 16))).size == (16, 16)


def test_extreme_aspect_refused_and_limit_accepted() -> None:
    with pytest.raises(ImageError, match="aspect"):
        load_image(Image.new("RGB", (16 * 21, 16)))
    assert load_image(Image.new("RGB", (16 * 20, 16))).size == (320, 16)


def test_png_bomb_header_is_refused_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    # 20000x20000: a real decode would need 1.2 GB. The stub pixel data proves we never decode (a
    # decode attempt would report "damaged", not "too large"), and so does a pixel loader that fails.
    from PIL import ImageFile

    def no_decode(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the pixels of an oversized image were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(ImageError, match="too large"):
        load_image(_png_header_only(20000, 20000))
    with pytest.raises(ImageError, match="too large"):
        load_image(_png_header_only(8000, 6000))  # 48 MP: under Pillow's own limit, over ours


def test_large_jpeg_is_decoded_reduced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imageio, "MAX_PIXELS", 500_000)
    buf = io.BytesIO()
    Image.new("RGB", (1600, 800), (200, 30, 40)).save(buf, format="JPEG", quality=95)
    out = load_image_with_notes(buf.getvalue())
    assert out.image.width * out.image.height <= 500_000
    assert out.image.width / out.image.height == pytest.approx(2.0, rel=0.02)
    assert out.original_size == (1600, 800)
    assert any("reduced" in n for n in out.notes)
    r, g, b = out.image.getpixel((100, 100))
    assert abs(r - 200) < 8 and abs(g - 30) < 8 and abs(b - 40) < 8


def test_large_png_over_limit_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imageio, "MAX_PIXELS", 500_000)
    buf = io.BytesIO()
    Image.new("RGB", (1600, 800)).save(buf, format="PNG")
    with pytest.raises(ImageError, match="too large"):
        load_image(buf.getvalue())


def test_big_image_downscaled_to_max_side() -> None:
    out = load_image_with_notes(Image.new("RGB", (3000, 1000), (1, 2, 3)))
    assert out.image.size == (2048, 683)
    assert out.original_size == (3000, 1000)
    assert out.scale == pytest.approx(2048 / 3000)
    assert any("downscaled" in n for n in out.notes)


def test_16bit_grey_scaled_by_full_range(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 32 * 32).astype(np.uint16).reshape(32, 32)
    p = _save(Image.fromarray(ramp), tmp_path / "deep.png")
    assert Image.open(p).mode.startswith("I")
    out = load_image_with_notes(p)
    arr = np.asarray(out.image)
    assert out.image.mode == "RGB"
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(arr[..., 0], expected)
    np.testing.assert_array_equal(arr[..., 1], expected)
    assert any("16-bit" in n for n in out.notes)


def test_float_image_in_unit_range() -> None:
    a = np.full((20, 20), 0.5, dtype=np.float32)
    out = load_image(Image.fromarray(a, mode="F"))
    assert out.getpixel((0, 0)) == (128, 128, 128)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    cyan = Image.new("CMYK", (32, 32), (255, 0, 0, 0))
    p = _save(cyan, tmp_path / "cmyk.jpg", quality=100)
    out = load_image_with_notes(p)
    r, g, b = out.image.getpixel((16, 16))
    assert r < 15 and g > 240 and b > 240
    assert any("CMYK" in n for n in out.notes)


def test_rgba_composited_on_white() -> None:
    a = np.zeros((20, 20, 4), dtype=np.uint8)
    a[..., 0] = 255
    a[:, :10, 3] = 255  # left: opaque red
    a[:, 10:, 3] = 0  # right: fully transparent
    out = load_image(Image.fromarray(a, mode="RGBA"))
    assert out.getpixel((2, 2)) == (255, 0, 0)
    assert out.getpixel((15, 2)) == (255, 255, 255)


def test_half_transparent_blends() -> None:
    a = np.zeros((20, 20, 4), dtype=np.uint8)
    a[..., 2] = 255
    a[..., 3] = 128
    r, g, b = load_image(Image.fromarray(a, mode="RGBA")).getpixel((5, 5))
    assert b == 255 and abs(r - 127) <= 1 and abs(g - 127) <= 1


def test_palette_with_transparency(tmp_path: Path) -> None:
    p_img = Image.new("P", (20, 20), 0)
    p_img.putpalette([0, 255, 0] + [255, 0, 0] + [0] * 762)
    for x in range(10):
        for y in range(20):
            p_img.putpixel((x, y), 1)
    path = _save(p_img, tmp_path / "pal.png", transparency=0)  # index 0 (green) is transparent
    out = load_image(path)
    assert out.getpixel((2, 2)) == (255, 0, 0)
    assert out.getpixel((15, 2)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["L", "LA", "1"])
def test_grayscale_modes(mode: str) -> None:
    base = Image.new("L", (20, 20), 200 if mode != "1" else 255)
    out = load_image(base.convert(mode))
    assert out.mode == "RGB"
    assert out.getpixel((3, 3)) == ((200,) * 3 if mode != "1" else (255,) * 3)


def test_exif_rotated_jpeg_is_upright(tmp_path: Path) -> None:
    a = np.zeros((32, 64, 3), dtype=np.uint8)  # stored 64 wide, 32 tall; top half red
    a[:16, :, 0] = 255
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    p = _save(img, tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    out = load_image_with_notes(p)
    assert out.image.size == (32, 64)
    assert out.original_size == (32, 64)
    right = np.asarray(out.image)[:, 24:, 0].mean()
    left = np.asarray(out.image)[:, :8, 0].mean()
    assert right > 200 and left < 50  # the stored top is now on the right
    assert any("EXIF" in n for n in out.notes)


def test_animated_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (24, 24), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = load_image_with_notes(p)
    r, g, b = out.image.getpixel((5, 5))
    assert r > 200 and g < 30 and b < 30
    assert any("3 frames" in n and "first frame" in n for n in out.notes)


def test_file_object_and_plain_rgb_untouched() -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    buf.seek(0)
    out = load_image_with_notes(buf)
    np.testing.assert_array_equal(np.asarray(out.image), arr)
    assert out.notes == []
