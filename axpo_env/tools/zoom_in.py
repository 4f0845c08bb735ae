"""`image_zoom_in`: the zoom tool the AXPO paper authors' models call (the `crop:axpo` preset).

Their models call it as ``image_zoom_in({"bbox_2d": [x1, y1, x2, y2], "label": "...",
"img_idx": 0})`` (the trajectories on the authors' project page, GitHub
`ByungKwanLee/AXPO-page`, index.html). The coordinate convention is Qwen3-VL's: each value is
relative, 0-1000 of the chosen image's width (x) or height (y), whatever the image's size in
pixels. Qwen2.5-VL instead grounded in absolute pixels of the (resized) input image, which is
what DeepEyes' `image_zoom_in_tool` (`crop:deepeyes`) reads. (Beside Qwen-Agent's Qwen3-VL
tool below: roboflow/supervision reads Qwen3-VL boxes with resolution_wh=(1000, 1000) and
Qwen2.5-VL's in pixels of the input size, PR #2015; nut.js's vision docs match "pixels" to
Qwen2.5-VL and "normalized, 0-1000" to Qwen3-VL.)

How we know: the page's VisualProbe example calls bbox_2d [870, 450, 945, 517] on its 1200x801
question image. Read as 0-1000 that is pixels [1044, 360, 1134, 414], exactly the "Tel: 2563
1000" sign the page shows as the zoom result; read as pixels it is a dark corner of the street.
(The page's image is likely downscaled for the web: 0-1000 boxes do not depend on the scale.)
The page's zoom image is 800x495 (aspect 1.616): the crop resized by Qwen3-VL's smart_resize
(factor 32, min_pixels 256*32*32) is 672x416 (1.615), while the bare crop would be 1.677. So
the geometry is that of Qwen-Agent's `image_zoom_in_tool` for Qwen3-VL (QwenLM/Qwen-Agent,
qwen_agent/tools/image_zoom_in_qwen3vl.py: `rel / 1000 * width`), which `crop:qwen3vl`
(`crop.Qwen3VLZoom`) copies, and which this tool reuses: a box under 32 px a side grows about
its centre, and the crop is resized with smart_resize.

What differs from `crop:qwen3vl`: the name (`image_zoom_in`), `label` and `img_idx` are
optional (img_idx 0), the reply says in text which pixels were cut (so the agent and `axpo
view` can tell), and mistakes get messages the agent can act on: all four values within [0, 1]
(fractions, not 0-1000), a box outside the image, an index past the episode's images.

`img_idx` counts every image of the episode so far (`ToolContext.images`, what the env passes
every tool): the task's image(s) first, then the images tool calls returned, in order (earlier
zooms, and plots of the python tool), as Qwen-Agent counts the images of its messages. The
env appends "(image index N)" to each reply that holds an image. The tool keeps no state:
snapshot/restore of the env covers it (the images are in the snapshot).
"""

from __future__ import annotations

import math
from typing import Any

from PIL import Image

from axpo_env.errors import ToolCallError
from axpo_env.text import valid_text
from axpo_env.tools.base import ToolContext, ToolResult
from axpo_env.tools.crop import (
    _BBOX4,
    _BBOX_2D_DESCRIPTION,
    Qwen3VLZoom,
    _bbox,
    _cut,
    _fmt,
    _outside,
    _pick,
    _prop,
    _scale,
    _spec,
    smart_resize,
)

#: bbox_2d values are relative to this: 1000 is the image's full width (x) or height (y).
SCALE = 1000
MAX_LABEL_CHARS = 100
#: qwen-vl-utils' smart_resize refuses images more elongated than this.
MAX_ASPECT = 200.0


class AxpoZoom(Qwen3VLZoom):
    """`image_zoom_in`: bbox_2d in Qwen3-VL's 0-1000 relative coordinates of image `img_idx`
    (default 0, the task image; later indices are images tools returned), optional `label`.

    Example: on a 640x480 image, bbox_2d [250, 500, 750, 1000] is pixels [160, 240, 480, 480]
    (x * 640 / 1000, y * 480 / 1000); the 320x240 crop is shown at 608x448 (smart_resize,
    factor 32, at least 256*32*32 pixels)."""

    name = "image_zoom_in"
    _schema = _spec(
        "Zoom in on a specific region of an image by cropping it based on a bounding box "
        "(bbox) and an optional object label. Coordinates are relative: 0-1000 of the image's "
        "width and height.",
        ["bbox_2d"],
        bbox_2d={**_BBOX4, "description": _BBOX_2D_DESCRIPTION + ", each value 0-1000 of the "
                 "image's width (x) or height (y)"},
        label=_prop("string", "The name or label of the object in the specified bounding box "
                    "(optional)"),
        img_idx=_prop("integer", "The index of the image to zoom in on, starting from 0: the "
                      "question's image(s) first, then images returned by tools, in order "
                      "(default 0)"),
    )

    def run(self, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        rel = _bbox(arguments["bbox_2d"], "bbox_2d")
        if all(0.0 <= v <= 1.0 for v in rel):
            raise ToolCallError(
                f"bbox_2d {_fmt(rel)} looks like fractions of the image; this tool reads "
                f"coordinates relative to 0-{SCALE} (multiply fractions by {SCALE}).")
        index = arguments.get("img_idx", 0)
        image = _pick(ctx, index, "img_idx")
        width, height = image.size
        box = _scale(rel, width / SCALE, height / SCALE)
        if _outside(box, width, height):
            raise ToolCallError(
                f"bbox_2d {_fmt(rel)} lies outside image {int(index)}; coordinates are "
                f"relative, 0-{SCALE} of the image's width and height.")
        left, top, right, bottom = self._min_box(box, width, height)
        w, h = right - left, bottom - top
        if min(w, h) <= 0:
            raise ToolCallError(f"bbox_2d {_fmt(rel)} selects no pixels; give a larger box.")
        if max(w, h) / min(w, h) > MAX_ASPECT:
            raise ToolCallError(
                f"bbox_2d {_fmt(rel)} is {w:.0f}x{h:.0f} pixels of image {int(index)}, more "
                f"elongated than {MAX_ASPECT:g}:1; give a squarer box.")
        region = _cut(image, (left, top, right, bottom))
        # As Qwen-Agent: the size comes from the float box, PIL's bicubic resamples.
        new_h, new_w = smart_resize(h, w, self.factor, self.min_pixels, self.max_pixels)
        region = region.resize((new_w, new_h), resample=Image.BICUBIC)
        pixels = ", ".join(str(round(v)) for v in (left, top, right, bottom))
        clipped = min(rel) < 0 or max(rel) > SCALE
        label = _label(arguments.get("label"))
        text = (
            f"Cropped [{pixels}] (pixels) of image {int(index)} ({width}×{height}) from "
            f"bbox_2d {_fmt(rel)} (0-{SCALE} relative)"
            + (f", label {label!r}" if label else "")
            + (" (the box went past the image and was clipped to it)" if clipped else "")
            + f"; shown at {new_w}×{new_h}."
        )
        return ToolResult(text=text, images=(region,))


def _label(value: Any) -> str:
    """The label on one line, at most MAX_LABEL_CHARS characters, valid UTF-8."""
    if not isinstance(value, str):
        return ""
    text = " ".join(value[:4 * MAX_LABEL_CHARS].split())
    return valid_text(text[:MAX_LABEL_CHARS])


def to_bbox_2d(box: Any, size: tuple[int, int]) -> list[int]:
    """A pixel box [x1, y1, x2, y2] of an image of `size` (width, height) as `image_zoom_in`'s
    0-1000 bbox_2d, rounded outwards (for scripted demos: the zoom then covers the box)."""
    width, height = size
    x1, y1, x2, y2 = (float(v) for v in box)
    return [math.floor(x1 * SCALE / width), math.floor(y1 * SCALE / height),
            math.ceil(x2 * SCALE / width), math.ceil(y2 * SCALE / height)]


#: The AXPO paper authors' `image_zoom_in` (0-1000 relative bbox_2d, optional label, img_idx).
axpo_zoom = AxpoZoom()
