"""Image crop/zoom: our own `crop` tool, and presets that speak the call formats of existing
thinking-with-images checkpoints so they work in our envs unchanged.

Each tool crops one image of the episode (`ctx.images`: 0 = task image, later = earlier tool
results) and returns the region as a new RGB image. A bad call raises `ToolCallError` with a
short message the agent can act on; the source image is never modified.
"""

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from axpo_env.errors import ToolCallError
from axpo_env.tools.base import Tool, ToolContext, ToolResult, tool

# Float slack so that e.g. 0.4 * 1000 = 400.00000000000006 does not grow a box by a pixel.
_EPS = 1e-6


@dataclass(frozen=True)
class Zoom:
    """How a cropped region is resized before the agent sees it.

    Small regions are upscaled so a VLM's patch grid resolves their details; the caps keep one
    tool image from costing thousands of visual tokens or magnifying noise.
    """

    min_short_side: int = 448
    max_long_side: int = 1536
    max_upscale: float = 8.0

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) a `width` x `height` region is shown at."""
        scale = 1.0
        if min(width, height) < self.min_short_side:
            scale = min(self.min_short_side / min(width, height), self.max_upscale)
        if max(width, height) * scale > self.max_long_side:
            scale = self.max_long_side / max(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def apply(self, region: Image.Image) -> Image.Image:
        return _resize(region, self.size_for(*region.size))


def smart_resize(
    height: float, width: float, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """Qwen-VL's `smart_resize` (qwen-vl-utils): sides a multiple of `factor`, area within
    [min_pixels, max_pixels], aspect ratio kept. Returns (height, width)."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _resize(region: Image.Image, size: tuple[int, int]) -> Image.Image:
    """opencv resize: bicubic to enlarge, area averaging to shrink (no aliasing)."""
    if size == region.size:
        return region
    enlarge = size[0] * size[1] > region.size[0] * region.size[1]
    interp = cv2.INTER_CUBIC if enlarge else cv2.INTER_AREA
    return Image.fromarray(cv2.resize(np.asarray(region), size, interpolation=interp))


def _cut(image: Image.Image, box: Sequence[float]) -> Image.Image:
    """The region as a new RGB image. PIL copies only the region (rounding the box, and padding
    with black where it leaves the image, as the presets' sources do)."""
    region = image.crop(tuple(box))
    return region if region.mode == "RGB" else region.convert("RGB")


def _bbox(value: Any, arg: str) -> tuple[float, float, float, float]:
    """Four finite numbers, or a `ToolCallError` that says what a box looks like."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        n = len(value) if isinstance(value, (list, tuple)) else 1
        raise ToolCallError(f"{arg} must be 4 numbers [x1, y1, x2, y2], got {n}.")
    if not all(math.isfinite(v) for v in value):
        raise ToolCallError(f"{arg} must be finite numbers, got {list(value)}.")
    x1, y1, x2, y2 = (float(v) for v in value)
    if x2 == x1 or y2 == y1:
        raise ToolCallError(f"{arg} {_fmt(value)} has zero area; give x1 < x2 and y1 < y2.")
    if x2 < x1 or y2 < y1:
        raise ToolCallError(
            f"{arg} {_fmt(value)} is inverted; give the top-left corner (x1, y1) first, "
            f"then the bottom-right (x2, y2), with x1 < x2 and y1 < y2."
        )
    return x1, y1, x2, y2


def _pick(ctx: ToolContext, index: Any, arg: str, base: int = 0) -> Image.Image:
    """The image `index` names (counting from `base`), or an error listing the valid ones."""
    n = len(ctx.images)
    if n == 0:
        raise ToolCallError("There is no image to crop in this episode.")
    whole = isinstance(index, int) or (isinstance(index, float) and index.is_integer())
    if isinstance(index, bool) or not whole:
        raise ToolCallError(f"{arg} must be a whole number, got {index}.")
    i = int(index) - base
    if not 0 <= i < n:
        valid = f"{base}" if n == 1 else f"{base} to {base + n - 1}"
        raise ToolCallError(
            f"{arg}={int(index)} does not exist: the episode has {n} image{'s' * (n != 1)}, "
            f"so use {valid} ({base} is the original image)."
        )
    return ctx.images[i]


def _outside(box: Sequence[float], width: int, height: int) -> bool:
    x1, y1, x2, y2 = box
    return x1 >= width or y1 >= height or x2 <= 0 or y2 <= 0


def _clip(box: Sequence[float], width: int, height: int) -> tuple[float, ...]:
    return max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]), min(float(height), box[3])


def _grow(box: Sequence[float], min_side: int) -> tuple[int, int, int, int]:
    """Grow a box whose shorter side is under `min_side` about its centre, aspect kept, until
    that side is `min_side` (`maybe_resize_bbox` of the DeepEyes and Qwen-Agent sources)."""
    left, top, right, bottom = box
    h, w = bottom - top, right - left
    cx, cy, ratio = (left + right) / 2, (top + bottom) / 2, min_side / min(h, w)
    half_h, half_w = math.ceil(h * ratio * 0.5), math.ceil(w * ratio * 0.5)
    return (
        math.floor(cx - half_w),
        math.floor(cy - half_h),
        math.ceil(cx + half_w),
        math.ceil(cy + half_h),
    )


def _scale(box: Sequence[float], sx: float, sy: float) -> tuple[float, ...]:
    return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy


def _fmt(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def make_crop(zoom: Zoom | None = None, min_size: int = 4, name: str = "crop") -> Tool:
    """A `crop` tool with its own resize policy (default `Zoom()`) and minimum region size
    (pixels a side)."""
    zoom, min_size = zoom or Zoom(), max(1, min_size)

    def crop(
        bbox: list[float],
        image_index: int = 0,
        normalized: bool | None = None,
        ctx: ToolContext | None = None,
    ) -> ToolResult:
        """Crop a region of an image and zoom in on it, to read small text or see fine details.

        The region comes back as a new, enlarged image.

        Args:
            bbox: The region as [x1, y1, x2, y2]: (x1, y1) is its top-left corner and (x2, y2)
                its bottom-right corner, x to the right and y down from the image's top-left.
                Either pixels of the chosen image or fractions of its width and height (see
                `normalized`).
            image_index: Which image to crop: 0 is the original task image; 1, 2, ... are the
                images returned by earlier tool calls, in order.
            normalized: true if bbox holds fractions in [0, 1], false if it holds pixels. Leave
                it out to decide automatically: if all four values are within [0, 1] they are
                fractions, otherwise pixels.
        """
        ctx = ctx or ToolContext()
        box = _bbox(bbox, "bbox")
        image = _pick(ctx, image_index, "image_index")
        width, height = image.size
        if normalized is None:
            normalized = all(0.0 <= v <= 1.0 for v in box)
        unit = "fractions" if normalized else "pixels"
        if normalized:
            box = _scale(box, width, height)
        if _outside(box, width, height):
            raise ToolCallError(
                f"bbox {_fmt(bbox)} ({unit}) lies entirely outside image {int(image_index)}, "
                f"which is {width}x{height} pixels; give a box inside it."
            )
        x1 = max(0, math.floor(box[0] + _EPS))
        y1 = max(0, math.floor(box[1] + _EPS))
        x2 = min(width, math.ceil(box[2] - _EPS))
        y2 = min(height, math.ceil(box[3] - _EPS))
        clipped = (
            box[0] < -_EPS or box[1] < -_EPS or box[2] > width + _EPS or box[3] > height + _EPS
        )
        if x2 - x1 < min_size or y2 - y1 < min_size:
            raise ToolCallError(
                f"bbox {_fmt(bbox)} ({unit}) covers only {max(0, x2 - x1)}x{max(0, y2 - y1)} "
                f"pixels{' after clipping to the image' if clipped else ''}; regions must be "
                f"at least {min_size} pixels a side. Give a larger box."
            )
        region = zoom.apply(_cut(image, (x1, y1, x2, y2)))
        note = " (the box was partly outside the image and was clipped to it)" if clipped else ""
        return ToolResult(
            text=(
                f"Cropped [{x1}, {y1}, {x2}, {y2}] (pixels) of image {int(image_index)} "
                f"({width}×{height}){note}, shown at "
                f"{region.width}×{region.height}."
            ),
            images=(region,),
        )

    return tool(crop, name=name)


#: Crop in pixels or normalized coordinates; the region is shown upscaled (see `Zoom`).
crop = make_crop()


# ---------------------------------------------------------------------------------------------
# Presets: the exact call formats existing checkpoints were trained with. Schema text, property
# order included, is copied from each source, so a chat template renders the prompt it saw.


class _Preset(Tool):
    """A zoom tool whose schema is fixed text copied from the checkpoint's training setup."""

    _schema: dict[str, Any]

    @property
    def schema(self) -> dict[str, Any]:
        schema = copy.deepcopy(self._schema)
        return {"type": "function", "function": {"name": self.name, **schema}}


def _spec(description: str, required: list[str], **properties: Any) -> dict[str, Any]:
    params = {"type": "object", "properties": properties, "required": required}
    return {"description": description, "parameters": params}


def _prop(kind: str, description: str) -> dict[str, str]:
    return {"type": kind, "description": description}


_BBOX4 = {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}
_BBOX_2D_DESCRIPTION = (
    "The bounding box of the region to zoom in, as [x1, y1, x2, y2], where (x1, y1) is the "
    "top-left corner and (x2, y2) is the bottom-right corner"
)


# Source: QwenLM/Qwen-Agent, qwen_agent/tools/image_zoom_in_qwen3vl.py (the tool of the
# Qwen3-VL cookbook "think with images"). bbox_2d is relative, 0-1000 of the image img_idx
# (0-based over every image of the conversation); a box under 32 px a side grows about its
# centre to 32 px (`maybe_resize_bbox`); the crop is resized with PIL bicubic to
# smart_resize(factor=32, min_pixels=256*32*32, max_pixels=12845056) of the float box's size.
# The reply is the image alone. All three arguments are required there.
class Qwen3VLZoom(_Preset):
    """Qwen3-VL's own `image_zoom_in_tool`: bbox_2d in 0-1000 relative coordinates, img_idx."""

    name = "image_zoom_in_tool"
    min_side = 32
    factor = 32
    min_pixels = 256 * 32 * 32
    max_pixels = 12845056
    _schema = _spec(
        "Zoom in on a specific region of an image by cropping it based on a bounding box (bbox) "
        "and an optional object label",
        ["bbox_2d", "label", "img_idx"],
        bbox_2d={**_BBOX4, "description": _BBOX_2D_DESCRIPTION},
        label=_prop("string", "The name or label of the object in the specified bounding box"),
        img_idx=_prop("number", "The index of the zoomed-in image (starting from 0)"),
    )

    def run(self, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        rel = _bbox(arguments["bbox_2d"], "bbox_2d")
        image = _pick(ctx, arguments["img_idx"], "img_idx")
        width, height = image.size
        box = _scale(rel, width / 1000, height / 1000)
        if _outside(box, width, height):
            raise ToolCallError(
                f"bbox_2d {_fmt(rel)} lies outside the image; coordinates are relative, "
                f"0-1000 of the image's width and height."
            )
        left, top, right, bottom = self._min_box(box, width, height)
        region = _cut(image, (left, top, right, bottom))
        if region.width < 1 or region.height < 1:
            raise ToolCallError(f"bbox_2d {_fmt(rel)} selects no pixels; give a larger box.")
        # As the source: the size comes from the (float) box, not from the pixels PIL cut,
        # and PIL's bicubic resamples; the reply is the image alone, with no text.
        new_h, new_w = smart_resize(
            bottom - top, right - left, self.factor, self.min_pixels, self.max_pixels
        )
        region = region.resize((new_w, new_h), resample=Image.BICUBIC)
        return ToolResult(text="", images=(region,), note_image_index=False)

    def _min_box(self, box: Sequence[float], width: int, height: int) -> Sequence[float]:
        """Clip to the image; a box under `min_side` grows (kept in the image) and the grown
        box is used only if it clears `min_side`, as in the source."""
        box = _clip(box, width, height)
        if _EPS < min(box[2] - box[0], box[3] - box[1]) < self.min_side:
            grown = _clip(_grow(box, self.min_side), width, height)
            if min(grown[2] - grown[0], grown[3] - grown[1]) > self.min_side:
                return grown
        return box


# Source: Visual-Agent/DeepEyes, verl/workers/agent/envs/mm_process_engine/visual_toolbox_v2.py
# (same rules in visual_toolbox_v5.py; schema text from prompt.py SYSTEM_PROMPT_V2 and
# eval/eval_vstar.py). bbox_2d is in absolute pixels of the original image (always image 0;
# there is no image argument); the box is clipped to the image, must have x1 < x2, y1 < y2 and
# an aspect ratio <= 100; a side under 28 px grows about the centre to 28 px (not clipped, so
# PIL pads it with black); the crop is returned at native size (the processor resizes it).
# The source schema says "required": ["bbox"], a typo for its only box property; we require
# "bbox_2d" so a correct call validates.
class DeepEyesZoom(_Preset):
    """DeepEyes' `image_zoom_in_tool`: bbox_2d in absolute pixels of the original image."""

    name = "image_zoom_in_tool"
    min_side = 28
    max_aspect = 100.0
    _schema = _spec(
        "Zoom in on a specific region of an image by cropping it based on a bounding box (bbox) "
        "and an optional object label.",
        ["bbox_2d"],
        bbox_2d={**_BBOX4, "description": _BBOX_2D_DESCRIPTION + "."},
        label=_prop(
            "string", "The name or label of the object in the specified bounding box (optional)."
        ),
    )

    def run(self, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        box = _bbox(arguments["bbox_2d"], "bbox_2d")
        image = _pick(ctx, 0, "image")
        width, height = image.size
        if _outside(box, width, height):
            raise ToolCallError(
                f"bbox_2d {_fmt(box)} lies outside the image, which is {width}x{height} "
                f"pixels; coordinates are absolute pixels of the original image."
            )
        box = _clip(box, width, height)
        self._check(box)
        if min(box[2] - box[0], box[3] - box[1]) < self.min_side:
            box = _grow(box, self.min_side)  # not clipped: PIL pads it with black
            self._check(box)
        return ToolResult(text="", images=(_cut(image, box),))

    def _check(self, box: Sequence[float]) -> None:
        w, h = box[2] - box[0], box[3] - box[1]
        if min(h, w) < _EPS:  # also keeps the growth ratio below from overflowing
            raise ToolCallError("bbox_2d has zero area inside the image; give a larger box.")
        if max(h, w) / min(h, w) > self.max_aspect:
            raise ToolCallError(
                f"bbox_2d is {w:g}x{h:g} pixels: its aspect ratio is over {self.max_aspect:g}. "
                f"Give a less elongated box."
            )


# Source: TIGER-AI-Lab/Pixel-Reasoner, curiosity_driven_rl/openrlhf/trainer/ppo_utils/
# experience_maker.py (`CropImageNormalized`, `crop_image_normalized`, `execute_tool`,
# `resize_cropped`). The RL code registers the schema under "crop_image_normalized" but its
# prompts' guideline says `crop_image`, the name TIGER-AI-Lab/verl-tool's Pixel-Reasoner
# prompts use and the default here (`name=` switches it). target_image is 1-based over every
# image so far. bbox_2d is read as fractions when all four values are below 1 (we also accept
# exactly 1, which the source would misread as pixels), else as pixels; 0.1 of the image is
# added on each side, the box is clipped to [0, 1], the crop must exceed 28 px a side, and it is
# resized with smart_resize(factor=28, min_pixels=256*28*28, max_pixels=5120*28*28), the
# evaluation setting (training used min_pixels=4*28*28). The reply text is the source's.
class PixelReasonerCrop(_Preset):
    """Pixel-Reasoner's `crop_image`: normalized bbox_2d, 1-based target_image, 0.1 padding."""

    padding = 0.1
    min_side = 28
    factor = 28
    min_pixels = 256 * 28 * 28
    max_pixels = 5120 * 28 * 28
    max_aspect = 200.0  # qwen-vl-utils' smart_resize refuses more elongated images
    _schema = _spec(
        "Zoom in on the image based on the bounding box coordinates. It is useful when the "
        "object or text in the image is too small to be seen.",
        ["bbox_2d", "target_image"],
        bbox_2d={
            "type": "array",
            "description": "coordinates for bounding box of the area you want to zoom in. "
            "Values should be within [0.0,1.0].",
            "items": {"type": "number"},
        },
        target_image=_prop(
            "number",
            "The index of the image to crop. Index from 1 to the number of images. Choose 1 to "
            "operate on original image.",
        ),
    )

    def __init__(self, name: str = "crop_image"):
        self.name = name

    def run(self, arguments: dict[str, Any], ctx: ToolContext) -> ToolResult:
        box = _bbox(arguments["bbox_2d"], "bbox_2d")
        image = _pick(ctx, arguments["target_image"], "target_image", base=1)
        width, height = image.size
        if not all(v <= 1.0 for v in box):
            box = _scale(box, 1 / width, 1 / height)
        if _outside(box, 1, 1):
            raise ToolCallError(
                f"bbox_2d {_fmt(arguments['bbox_2d'])} lies outside the image; give normalized "
                f"coordinates within [0.0, 1.0]."
            )
        p = self.padding
        padded = _clip((box[0] - p, box[1] - p, box[2] + p, box[3] + p), 1, 1)
        region = _cut(image, _scale(padded, width, height))
        w, h = region.size
        if w <= self.min_side or h <= self.min_side:
            raise ToolCallError(f"Cropped image is too small: {w}x{h}. Give a larger box.")
        if max(w, h) / min(w, h) > self.max_aspect:
            raise ToolCallError(f"Cropped image is too elongated: {w}x{h}. Give a squarer box.")
        new_h, new_w = smart_resize(h, w, self.factor, self.min_pixels, self.max_pixels)
        region = _resize(region, (new_w, new_h))
        return ToolResult(
            text=f"Here is the cropped image (Image Size: {new_w}x{new_h}):", images=(region,)
        )


#: Qwen3-VL's `image_zoom_in_tool` (0-1000 relative bbox_2d, img_idx, label).
qwen3vl_zoom = Qwen3VLZoom()
#: DeepEyes' `image_zoom_in_tool` (absolute-pixel bbox_2d on the original image, label).
deepeyes_zoom = DeepEyesZoom()
#: Pixel-Reasoner's `crop_image` (normalized bbox_2d, 1-based target_image).
pixel_reasoner_crop = PixelReasonerCrop()
