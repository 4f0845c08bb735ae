"""The bundled image-search corpus: national flags drawn from their official band layouts.

Why flags: they are real-world objects an agent must identify from pixels (a flag in a photo
or a chart), they can be drawn exactly without downloading anything, and their captions carry
facts a question can ask about. `python -m axpo_env.tools._image_corpus` rewrites
`data/image_corpus.jsonl` (one `{"id", "caption", "url", "image": data URL}` a line); a test
checks that the bundled file is what this script draws.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from PIL import Image, ImageDraw

CORPUS_PATH = Path(__file__).parent / "data" / "image_corpus.jsonl"
SIZE = (90, 60)

BLUE, WHITE, RED = (0, 85, 164), (255, 255, 255), (239, 65, 53)
GREEN, ORANGE, BLACK = (0, 146, 70), (255, 136, 62), (0, 0, 0)
YELLOW, GOLD = (253, 218, 36), (255, 206, 0)

#: id -> (caption, layout): "v"/"h" bands (colours in order), "disc" (field, disc colour),
#: "cross" (field, cross colour, inner cross colour or None; Nordic crosses sit off-centre).
FLAGS: dict[str, tuple[str, tuple]] = {
    "france": ("Flag of France: three vertical bands of blue, white and red (the Tricolore).",
               ("v", BLUE, WHITE, RED)),
    "italy": ("Flag of Italy: three vertical bands of green, white and red (il Tricolore).",
              ("v", GREEN, WHITE, RED)),
    "ireland": ("Flag of Ireland: three vertical bands of green, white and orange.",
                ("v", (22, 155, 98), WHITE, ORANGE)),
    "belgium": ("Flag of Belgium: three vertical bands of black, yellow and red.",
                ("v", BLACK, YELLOW, RED)),
    "germany": ("Flag of Germany: three horizontal bands of black, red and gold.",
                ("h", BLACK, (221, 0, 0), GOLD)),
    "netherlands": ("Flag of the Netherlands: three horizontal bands of red, white and blue.",
                    ("h", (174, 28, 40), WHITE, (33, 70, 139))),
    "russia": ("Flag of Russia: three horizontal bands of white, blue and red.",
               ("h", WHITE, (0, 57, 166), (213, 43, 30))),
    "austria": ("Flag of Austria: three horizontal bands of red, white and red.",
                ("h", (200, 16, 46), WHITE, (200, 16, 46))),
    "hungary": ("Flag of Hungary: three horizontal bands of red, white and green.",
                ("h", (206, 41, 57), WHITE, (71, 112, 80))),
    "poland": ("Flag of Poland: two horizontal bands, white above red.",
               ("h", WHITE, (220, 20, 60))),
    "indonesia": ("Flag of Indonesia: two horizontal bands, red above white.",
                  ("h", (206, 17, 38), WHITE)),
    "ukraine": ("Flag of Ukraine: two horizontal bands, blue above yellow.",
                ("h", (0, 87, 183), (255, 215, 0))),
    "japan": ("Flag of Japan: a red disc on a white field (the Hinomaru).",
              ("disc", WHITE, (188, 0, 45))),
    "bangladesh": ("Flag of Bangladesh: a red disc on a dark green field.",
                   ("disc", (0, 106, 78), (244, 42, 65))),
    "switzerland": ("Flag of Switzerland: a white cross on a red field.",
                    ("cross", (218, 41, 28), WHITE, None, False)),
    "denmark": ("Flag of Denmark: a white Nordic cross on a red field (the Dannebrog).",
                ("cross", (200, 16, 46), WHITE, None, True)),
    "sweden": ("Flag of Sweden: a yellow Nordic cross on a blue field.",
               ("cross", (0, 106, 167), (254, 204, 0), None, True)),
    "finland": ("Flag of Finland: a blue Nordic cross on a white field.",
                ("cross", WHITE, (0, 47, 108), None, True)),
    "norway": ("Flag of Norway: a blue Nordic cross edged in white on a red field.",
               ("cross", (186, 12, 47), WHITE, (0, 32, 91), True)),
    "colombia": ("Flag of Colombia: horizontal bands of yellow (top half), blue and red.",
                 ("h", (252, 209, 22), (252, 209, 22), (0, 56, 147), (206, 17, 38))),
}


def draw(layout: tuple) -> Image.Image:
    """One flag at SIZE."""
    w, h = SIZE
    kind, *spec = layout
    img = Image.new("RGB", SIZE, spec[0] if kind in ("disc", "cross") else WHITE)
    d = ImageDraw.Draw(img)
    if kind in ("v", "h"):
        n = len(spec)
        for i, colour in enumerate(spec):
            if kind == "v":
                d.rectangle([i * w // n, 0, (i + 1) * w // n - 1, h - 1], fill=colour)
            else:
                d.rectangle([0, i * h // n, w - 1, (i + 1) * h // n - 1], fill=colour)
    elif kind == "disc":
        r = h * 3 // 10
        d.ellipse([w // 2 - r, h // 2 - r, w // 2 + r, h // 2 + r], fill=spec[1])
    else:
        _, colour, inner, nordic = spec
        cx = w * 3 // 8 if nordic else w // 2
        for width, fill in ((h // 5, colour), (h // 10, inner)):
            if fill is None:
                continue
            d.rectangle([cx - width // 2, 0, cx + width // 2, h - 1], fill=fill)
            d.rectangle([0, h // 2 - width // 2, w - 1, h // 2 + width // 2], fill=fill)
    return img


def records() -> list[dict[str, str]]:
    """The corpus as JSON records, images as PNG data URLs."""
    out = []
    for name, (caption, layout) in FLAGS.items():
        buf = io.BytesIO()
        draw(layout).save(buf, format="PNG", optimize=False)
        out.append({"id": name, "caption": caption,
                    "url": "https://en.wikipedia.org/wiki/Flag_of_"
                           + ("the_" if name == "netherlands" else "") + name.title(),
                    "image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()})
    return out


def write(path: Path = CORPUS_PATH) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records()), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write())
