"""Pictures of rank lists: each row a query tracklet, then its nearest gallery tracklets, each shown
by one frame with a caption (rank and distance, then the cosine similarity of the two features),
framed green where the identity is right, red where it is wrong and grey where identities are unknown
(``tools/search.py``, ``tools/visualize_ranks.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..data.frame_check import read_frame

__all__ = ["Tile", "draw_rank_lists", "gallery_caption", "picture_format"]

GREEN, RED, GREY, WHITE, BLACK = (40, 180, 60), (220, 40, 40), (170, 170, 170), (255, 255, 255), (0, 0, 0)
LINE_HEIGHT = 12                     # pixels a caption line takes (Pillow's default font)
CAPTION_HEIGHT = 2 * LINE_HEIGHT + 2  # two lines: a gallery tile's rank and distance, then its cosine


@dataclass(frozen=True)
class Tile:
    frame: str                  # the picture's frame (a tracklet's middle frame)
    caption: str                # written under it, a line per "\n"-separated part
    right: bool | None = None   # the identity is the query's (None: unknown, or the query itself)


def gallery_caption(rank: int, distance: float, cosine: float) -> str:
    """``"#3 -127.4\\ncos 0.83"``: the rank and the distance ranked by, then the cosine similarity."""
    return f"#{rank} {distance:.4g}\ncos {cosine:.2f}"


def draw_rank_lists(rows: list[tuple[Tile, list[Tile]]], out: str | Path, tile: tuple[int, int] = (128, 64),
                    border: int = 4) -> Path:
    """``rows``: (query tile, gallery tiles nearest first) per query -> one picture at ``out``, in the format its
    suffix names (:func:`picture_format`)."""
    height, width = tile
    cell_w, cell_h = width + 2 * border, height + 2 * border + CAPTION_HEIGHT
    gap = width // 2
    columns = 1 + max(len(gallery) for _, gallery in rows)
    canvas = Image.new("RGB", (columns * cell_w + gap, len(rows) * cell_h), WHITE)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for r, (query, gallery) in enumerate(rows):
        y = r * cell_h
        for c, shown in enumerate([query, *gallery]):
            x = c * cell_w + (gap if c else 0)
            if shown is not query:
                colour = GREY if shown.right is None else GREEN if shown.right else RED
                draw.rectangle([x, y, x + cell_w - 1, y + height + 2 * border - 1], fill=colour)
            canvas.paste(read_frame(shown.frame).resize((width, height)), (x + border, y + border))
            for n, line in enumerate(shown.caption.split("\n")):
                draw.text((x + border, y + height + 2 * border + n * LINE_HEIGHT),
                          _fitted(draw, line, font, cell_w - border), fill=BLACK, font=font)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, format=picture_format(out))
    return out


def picture_format(path: Path) -> str:
    """The Pillow format of the suffix of ``path`` where Pillow writes it (``.jpg``: JPEG), else PNG (a name
    without a suffix, or with one Pillow only reads)."""
    name = Image.registered_extensions().get(path.suffix.lower())
    return name if name in Image.SAVE else "PNG"


def _fitted(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """``text``, or its end behind ``...`` where the whole is wider than ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    for start in range(1, len(text)):
        if draw.textlength("..." + text[start:], font=font) <= width:
            return "..." + text[start:]
    return ""
