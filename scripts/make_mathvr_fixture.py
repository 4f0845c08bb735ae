"""Generate the small Math-VR fixture bundled with axpo (`axpo_env/tasks/fixtures/mathvr/`).

Written in the schema and Hub layout of `gogoduan/Math-VR-bench` as the official scripts of
HKU-MMLab/Math-VR-CodePlot-CoT read it (`data/test-00000-of-00001.parquet`; `id` = row index;
`question` with `<imageN>` markers; `image1` ... `image8`; `category`; `number_of_answers`;
`answers`; `total_score`; `scoring_points`; `scores`). Figures are drawn with PIL and every
answer can be worked out from its question and figure. Deterministic: running it twice writes
identical files.

    python scripts/make_mathvr_fixture.py
"""

from __future__ import annotations

import io
from pathlib import Path

import datasets
from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parents[1] / "axpo_env" / "tasks" / "fixtures" / "mathvr"
S, INT = datasets.Value("string"), datasets.Value("int64")
FEATURES = datasets.Features({
    "id": S, "question": S, **{f"image{n}": datasets.Image() for n in range(1, 9)},
    "category": S, "number_of_answers": INT, "answers": S, "total_score": INT,
    "scoring_points": S, "scores": S,
})  # fmt: skip


def _font(size: int = 16) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _png(img: Image.Image) -> dict:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return {"bytes": buf.getvalue(), "path": None}


def square_in_square() -> Image.Image:
    """A 12 x 12 square with a square of side 6 in its lower-left corner."""
    img = Image.new("RGB", (320, 320), "white")
    d = ImageDraw.Draw(img)
    d.rectangle([40, 40, 280, 280], outline="black", width=3)
    d.rectangle([40, 160, 160, 280], outline="blue", width=3)
    d.text((160, 25), "12", fill="black", font=_font(), anchor="mm")
    d.text((100, 295), "6", fill="blue", font=_font(), anchor="mm")
    return img


def right_triangle() -> Image.Image:
    """Legs 5 and 12: the hypotenuse is 13, the altitude to it 60/13."""
    img = Image.new("RGB", (360, 260), "white")
    d = ImageDraw.Draw(img)
    d.polygon([(40, 220), (320, 220), (40, 60)], outline="black", width=3)
    d.text((180, 240), "12", fill="black", font=_font(), anchor="mm")
    d.text((22, 140), "5", fill="black", font=_font(), anchor="mm")
    for xy, s in (((40, 50), "A"), ((30, 232), "C"), ((332, 232), "B")):
        d.text(xy, s, fill="black", font=_font(), anchor="mm")
    return img


def parabola() -> Image.Image:
    """y = x^2 - 4x + 3 on a grid: roots 1 and 3, vertex (2, -1)."""
    img = Image.new("RGB", (320, 320), "white")
    d = ImageDraw.Draw(img)
    ox, oy, u = 80, 200, 40
    for k in range(-2, 7):
        d.line([(ox + k * u, 20), (ox + k * u, 300)], fill=(225, 225, 225))
        d.line([(20, oy - k * u), (300, oy - k * u)], fill=(225, 225, 225))
    d.line([(20, oy), (300, oy)], fill="black", width=2)
    d.line([(ox, 20), (ox, 300)], fill="black", width=2)
    pts = [(ox + x / 10 * u, oy - ((x / 10) ** 2 - 4 * x / 10 + 3) * u) for x in range(-5, 46)]
    d.line([p for p in pts if 10 <= p[1] <= 310], fill="red", width=3)
    d.text((250, 40), "y = x² - 4x + 3", fill="red", font=_font(), anchor="mm")
    return img


def circle_chord() -> Image.Image:
    """Radius 5, a chord 3 from the centre: its half-length is 4, the chord 8."""
    img = Image.new("RGB", (300, 300), "white")
    d = ImageDraw.Draw(img)
    d.ellipse([50, 50, 250, 250], outline="black", width=3)
    d.line([(70, 210), (230, 210)], fill="blue", width=3)
    d.line([(150, 150), (150, 210)], fill="grey", width=2)
    d.text((162, 180), "3", fill="grey", font=_font(), anchor="mm")
    d.text((150, 30), "r = 5", fill="black", font=_font(), anchor="mm")
    return img


def _row(i: int, question: str, category: str, answers: str, points: list[str],
         values: list[int], images: tuple[Image.Image, ...] = (), n_answers: int = 1) -> dict:
    row = {f"image{n}": None for n in range(1, 9)}
    row.update({f"image{n}": _png(img) for n, img in enumerate(images, 1)})
    row.update({
        "id": str(i), "question": question, "category": category,
        "number_of_answers": n_answers, "answers": answers, "total_score": sum(values),
        "scoring_points": str({f"p{k}": p for k, p in enumerate(points, 1)}),
        "scores": str({f"p{k}": v for k, v in enumerate(values, 1)}),
    })  # fmt: skip
    return row


def rows() -> list[dict]:
    return [
        _row(0, "<image1>The large square has side 12 and the small blue square side 6. What "
             "is the area of the part of the large square outside the small one?",
             "multimodal", "108", ["area of the large square 144", "area of the small 36",
                                   "difference 108"], [1, 1, 2], (square_in_square(),)),
        _row(1, "<image1>In right triangle ABC the legs are AC = 5 and BC = 12. Find (1) the "
             "hypotenuse AB; (2) the altitude from C to AB.", "multimodal", "(1) 13; (2) 60/13",
             ["Pythagoras gives AB = 13", "area 30 = AB * h / 2", "h = 60/13"], [2, 1, 2],
             (right_triangle(),), n_answers=2),
        _row(2, "Plot y = x^2 - 4x + 3. For which x is y < 0? Give the interval.", "text",
             "(1, 3)", ["roots 1 and 3", "parabola opens upward", "interval (1, 3)"], [2, 1, 1]),
        _row(3, "<image1>A chord lies 3 from the centre of a circle of radius 5. <image2>The "
             "second figure, a parabola, is only for comparison. How long is the chord?",
             "multimodal",
             "8", ["half-chord by Pythagoras: 4", "chord 8"], [2, 2],
             (circle_chord(), parabola())),
        _row(4, "Points A(0, 0), B(4, 0) and C(4, 3) form a triangle. Draw it and find the "
             "perimeter.", "text", "12", ["AC = 5", "perimeter 4 + 3 + 5 = 12"], [2, 2]),
        _row(5, "The line y = 2x + 1 meets the y-axis at P and the x-axis at Q. Find the area "
             "of triangle OPQ.", "text", "\\frac{1}{4}", ["P = (0, 1)", "Q = (-1/2, 0)",
                                                          "area 1/4"], [1, 1, 2]),
    ]


README = """# Math-VR fixture (synthetic)

6 `test` rows (3 text, 3 multimodal; one with two images, one with a two-part answer) in the
schema and Hub layout of `gogoduan/Math-VR-bench`, as the official scripts of
HKU-MMLab/Math-VR-CodePlot-CoT read it. Figures are drawn by PIL. Generated by
`scripts/make_mathvr_fixture.py` (deterministic); do not edit by hand.
"""


def main() -> None:
    path = OUT / "data" / "test-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = datasets.Dataset.from_list(rows(), features=FEATURES)
    ds.to_parquet(str(path))
    (OUT / "README.md").write_text(README, encoding="utf-8")
    print(f"wrote {len(ds)} rows to {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
