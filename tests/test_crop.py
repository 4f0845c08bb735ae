"""The crop tool and the checkpoint presets, called the way the env calls them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from axpo_env.errors import ToolCallError
from axpo_env.tools.base import ToolContext, get_tool
from axpo_env.tools.crop import (
    PixelReasonerCrop,
    Zoom,
    crop,
    deepeyes_zoom,
    make_crop,
    pixel_reasoner_crop,
    qwen3vl_zoom,
    smart_resize,
)

GRAY, RED, BLUE = (128, 128, 128), (255, 0, 0), (0, 0, 255)
W, H = 1000, 800
SQUARE = (200, 300, 400, 500)  # x1, y1, x2, y2 of the red square


def square_image() -> Image.Image:
    """1000x800 gray with a red 200x200 square at SQUARE."""
    a = np.full((H, W, 3), GRAY, np.uint8)
    x1, y1, x2, y2 = SQUARE
    a[y1:y2, x1:x2] = RED
    return Image.fromarray(a)


def quadrants() -> Image.Image:
    """1000x800 with four colored quadrants: red top-left, green, blue, white."""
    a = np.zeros((H, W, 3), np.uint8)
    a[: H // 2, : W // 2] = RED
    a[: H // 2, W // 2 :] = (0, 255, 0)
    a[H // 2 :, : W // 2] = BLUE
    a[H // 2 :, W // 2 :] = (255, 255, 255)
    return Image.fromarray(a)


def ctx(*images: Image.Image) -> ToolContext:
    return ToolContext(images=images or (square_image(),))


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img).reshape(-1, 3).astype(int)


def all_close(img: Image.Image, color: tuple[int, int, int], tol: int = 2) -> bool:
    return bool(np.abs(pixels(img) - color).max() <= tol)


def only(result) -> Image.Image:
    assert len(result.images) == 1
    img = result.images[0]
    assert isinstance(img, Image.Image) and img.mode == "RGB"
    return img


# ---------------------------------------------------------------------------------------------
# crop: coordinates


@pytest.mark.parametrize(
    "args",
    [
        {"bbox": list(SQUARE)},
        {"bbox": list(SQUARE), "normalized": False},
        {"bbox": [0.2, 0.375, 0.4, 0.625]},
        {"bbox": [0.2, 0.375, 0.4, 0.625], "normalized": True},
        {"bbox": [200.0, 300.0, 400.0, 500.0], "image_index": 0, "normalized": None},
    ],
)
def test_crop_returns_the_square_in_every_coordinate_mode(args):
    result = crop(args, ctx())
    img = only(result)
    assert img.size == (448, 448)  # 200 px upscaled to the 448 px minimum short side
    assert all_close(img, RED)
    assert result.text == (
        "Cropped [200, 300, 400, 500] (pixels) of image 0 (1000×800), shown at 448×448."
    )


def test_auto_mode_reads_values_within_0_1_as_fractions():
    whole = only(crop({"bbox": [0, 0, 1, 1]}, ctx()))
    assert whole.size == (W, H)  # the whole image, already big enough: not resized
    assert np.array_equal(np.asarray(whole), np.asarray(square_image()))
    with pytest.raises(ToolCallError, match="covers only 1x1 pixels"):
        crop({"bbox": [0, 0, 1, 1], "normalized": False}, ctx())


def test_crop_of_a_region_around_the_square_keeps_its_place():
    img = only(crop({"bbox": [100, 200, 500, 600]}, ctx()))  # square in the middle half
    assert img.size == (448, 448)
    a = np.asarray(img)
    assert tuple(a[224, 224]) == RED and tuple(a[5, 5]) == GRAY and tuple(a[440, 440]) == GRAY


def test_partly_outside_box_is_clipped_and_says_so():
    result = crop({"bbox": [-100, -50, 400, 500]}, ctx())
    img = only(result)
    assert "[0, 0, 400, 500]" in result.text and "clipped" in result.text
    assert img.size == (448, 560)  # 400x500 region, short side to 448
    a = np.asarray(img)
    assert tuple(a[0, 0]) == GRAY and tuple(a[-1, -1]) == RED
    normalized = crop({"bbox": [0.5, 0.5, 1.5, 1.5], "normalized": True}, ctx(quadrants()))
    assert "[500, 400, 1000, 800]" in normalized.text and "clipped" in normalized.text
    assert all_close(only(normalized), (255, 255, 255))


def test_image_index_selects_a_later_tool_image():
    blue = Image.fromarray(np.full((100, 120, 3), BLUE, np.uint8))
    result = crop({"bbox": [10, 10, 60, 60], "image_index": 1}, ctx(square_image(), blue))
    assert all_close(only(result), BLUE)
    assert "of image 1 (120×100)" in result.text


def test_non_rgb_source_gives_rgb_result():
    gray = Image.new("L", (300, 300), 77)
    rgba = Image.new("RGBA", (300, 300), (10, 20, 30, 255))
    assert all_close(only(crop({"bbox": [0, 0, 100, 100]}, ctx(gray))), (77, 77, 77))
    assert all_close(only(crop({"bbox": [0, 0, 100, 100]}, ctx(rgba))), (10, 20, 30))


# ---------------------------------------------------------------------------------------------
# crop: sizes


@pytest.mark.parametrize(
    ("region", "shown"),
    [
        ((200, 200), (448, 448)),  # upscaled to the minimum short side
        ((20, 20), (160, 160)),  # ...but never more than 8x
        ((2000, 100), (1536, 77)),  # the long side is capped
        ((1000, 800), (1000, 800)),  # big enough: as is
        ((3000, 2000), (1536, 1024)),  # too big: downscaled
    ],
)
def test_zoom_sizes(region, shown):
    assert Zoom().size_for(*region) == shown


def test_crop_upscales_small_and_downscales_large_regions():
    assert only(crop({"bbox": [200, 300, 220, 320]}, ctx())).size == (160, 160)
    big = Image.fromarray(np.full((2000, 3000, 3), GRAY, np.uint8))
    img = only(crop({"bbox": [0, 0, 3000, 2000]}, ctx(big)))
    assert img.size == (1536, 1024) and all_close(img, GRAY)


def test_make_crop_is_configurable():
    small = make_crop(Zoom(min_short_side=100, max_long_side=300), min_size=30, name="zoom")
    assert small.name == "zoom" and small.schema["function"]["name"] == "zoom"
    assert only(small({"bbox": [200, 300, 250, 350]}, ctx())).size == (100, 100)
    with pytest.raises(ToolCallError, match="at least 30 pixels"):
        small({"bbox": [200, 300, 220, 320]}, ctx())


# ---------------------------------------------------------------------------------------------
# crop: bad calls


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"bbox": [1, 2, 3]}, "bbox must be 4 numbers [x1, y1, x2, y2], got 3"),
        ({"bbox": [1, 2, 3, 4, 5]}, "got 5"),
        ({"bbox": [float("nan"), 0, 10, 10]}, "finite"),
        ({"bbox": [0, 0, float("inf"), 10]}, "finite"),
        ({"bbox": [300, 10, 200, 90]}, "inverted"),
        ({"bbox": [10, 90, 200, 10]}, "inverted"),
        ({"bbox": [10, 10, 10, 90]}, "zero area"),
        ({"bbox": [0.5, 0.5, 0.7, 0.5]}, "zero area"),
        ({"bbox": [2000, 2000, 3000, 3000]}, "entirely outside image 0"),
        ({"bbox": [-50, -50, -10, -10]}, "entirely outside"),
        ({"bbox": [1.2, 0.2, 1.5, 0.4], "normalized": True}, "entirely outside"),
        ({"bbox": [0, 0, 10, 10], "image_index": 2}, "image_index=2 does not exist"),
        ({"bbox": [0, 0, 10, 10], "image_index": -1}, "the episode has 1 image, so use 0"),
        ({"bbox": [10, 10, 13, 50]}, "covers only 3x40 pixels"),
        ({"bbox": [998, 10, 1100, 100]}, "covers only 2x90 pixels after clipping"),
        # The schema check that Tool.__call__ runs first.
        ({}, "'bbox' is a required property"),
        ({"bbox": [0, 0, 10, 10], "zoom": 2}, "'zoom' was unexpected"),
        ({"bbox": "0 0 10 10"}, "is not of type 'array'"),
        ({"bbox": [0, "a", 10, 10]}, "is not of type 'number'"),
        ({"bbox": [0, 0, 10, 10], "image_index": "1"}, "is not of type 'integer'"),
        ({"bbox": [0, 0, 10, 10], "normalized": "yes"}, "is not of type"),
    ],
)
def test_bad_crop_calls_say_what_is_wrong(args, message):
    with pytest.raises(ToolCallError) as err:
        crop(args, ctx())
    assert message in str(err.value)
    assert len(str(err.value)) < 300


def test_image_index_error_lists_the_images_there_are():
    with pytest.raises(ToolCallError, match="has 3 images, so use 0 to 2"):
        crop({"bbox": [0, 0, 10, 10], "image_index": 3}, ctx(*[square_image()] * 3))
    with pytest.raises(ToolCallError, match="no image"):
        crop({"bbox": [0, 0, 10, 10]}, ToolContext())


def test_arguments_that_are_not_an_object_are_an_error():
    with pytest.raises(ToolCallError, match="must be a JSON object"):
        crop([0, 0, 10, 10], ctx())


# ---------------------------------------------------------------------------------------------
# Source images are never changed; results are new images.

CALLS = [
    (crop, {"bbox": [150, 250, 450, 550]}),
    (crop, {"bbox": [0, 0, 1, 1]}),
    (qwen3vl_zoom, {"bbox_2d": [0, 0, 500, 500], "label": "x", "img_idx": 0}),
    (deepeyes_zoom, {"bbox_2d": [0, 0, 10, 10]}),
    (pixel_reasoner_crop, {"bbox_2d": [0.2, 0.3, 0.4, 0.6], "target_image": 1}),
]


@pytest.mark.parametrize(("tool", "args"), CALLS, ids=lambda x: getattr(x, "name", ""))
def test_source_image_is_unchanged(tool, args):
    src = square_image()
    before = src.tobytes()
    out = only(tool(args, ctx(src)))
    assert src.tobytes() == before and src.size == (W, H) and src.mode == "RGB"
    assert out is not src
    np.asarray(out)[0, 0]  # a plain, readable image of its own


def test_registry_names_resolve_to_the_module_tools():
    assert get_tool("crop") is crop
    assert get_tool("crop:qwen3vl") is qwen3vl_zoom
    assert get_tool("crop:deepeyes") is deepeyes_zoom
    assert get_tool("crop:pixel_reasoner") is pixel_reasoner_crop


def test_crop_schema_documents_the_coordinate_modes():
    fn = crop.schema["function"]
    assert fn["name"] == "crop"
    params = fn["parameters"]
    assert list(params["properties"]) == ["bbox", "image_index", "normalized"]
    assert params["required"] == ["bbox"]
    assert "[0, 1]" in params["properties"]["normalized"]["description"]
    assert "automatically" in params["properties"]["normalized"]["description"]
    assert "ctx" not in params["properties"]


# ---------------------------------------------------------------------------------------------
# Presets


def props(tool):
    return tool.schema["function"]["parameters"]


def test_smart_resize_matches_qwen_vl_utils():
    assert smart_resize(400, 500, 32, 256 * 32 * 32, 12845056) == (480, 576)
    assert smart_resize(1000, 1000, 28, 256 * 28 * 28, 1000 * 28 * 28) == (868, 868)
    h, w = smart_resize(4000, 3000, 28, 4 * 28 * 28, 5120 * 28 * 28)
    assert h % 28 == w % 28 == 0 and h * w <= 5120 * 28 * 28


def test_qwen3vl_schema():
    fn = qwen3vl_zoom.schema["function"]
    assert fn["name"] == "image_zoom_in_tool"
    params = props(qwen3vl_zoom)
    assert list(params["properties"]) == ["bbox_2d", "label", "img_idx"]
    assert params["required"] == ["bbox_2d", "label", "img_idx"]
    bbox = params["properties"]["bbox_2d"]
    assert bbox["type"] == "array" and bbox["minItems"] == bbox["maxItems"] == 4
    assert params["properties"]["img_idx"]["type"] == "number"


def test_qwen3vl_coordinates_are_relative_0_1000():
    out = qwen3vl_zoom({"bbox_2d": [0, 0, 500, 500], "label": "x", "img_idx": 0}, ctx(quadrants()))
    img = only(out)
    assert out.text == ""
    assert all_close(img, RED)  # the top-left quarter, and only it
    assert img.size == (576, 480)  # smart_resize(400, 500, factor 32, min 256*32*32)
    img = only(
        qwen3vl_zoom(
            {"bbox_2d": [500, 500, 1000, 1000], "label": "x", "img_idx": 0}, ctx(quadrants())
        )
    )
    assert all_close(img, (255, 255, 255))


def test_qwen3vl_img_idx_is_0_based_over_all_images():
    blue = Image.fromarray(np.full((64, 64, 3), BLUE, np.uint8))
    c = ctx(square_image(), blue)
    args = {"bbox_2d": [0, 0, 1000, 1000], "label": "all"}
    assert all_close(only(qwen3vl_zoom({**args, "img_idx": 1}, c)), BLUE)
    assert all_close(only(qwen3vl_zoom({**args, "img_idx": 1.0}, c)), BLUE)
    with pytest.raises(ToolCallError, match="img_idx=2 does not exist"):
        qwen3vl_zoom({**args, "img_idx": 2}, c)
    with pytest.raises(ToolCallError, match="whole number"):
        qwen3vl_zoom({**args, "img_idx": 0.5}, c)


def test_qwen3vl_small_box_grows_to_32_px():
    a = np.full((H, W, 3), GRAY, np.uint8)
    a[400:411, 500:511] = RED  # 11x11 marker
    img = only(
        qwen3vl_zoom(
            {"bbox_2d": [500, 500, 511, 513.75], "label": "dot", "img_idx": 0},
            ctx(Image.fromarray(a)),
        )
    )
    assert img.size == (512, 512)  # the grown 33x33 box, through smart_resize
    b = np.asarray(img)
    assert tuple(b[256, 256]) == RED and tuple(b[3, 3]) == GRAY  # grown around the marker


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"bbox_2d": [0, 0, 500, 500], "img_idx": 0}, "'label' is a required property"),
        ({"bbox_2d": [0, 0, 500, 500], "label": "x"}, "'img_idx' is a required property"),
        ({"bbox_2d": [0, 0, 500], "label": "x", "img_idx": 0}, "is too short"),
        ({"bbox_2d": [500, 0, 0, 500], "label": "x", "img_idx": 0}, "inverted"),
        ({"bbox_2d": [1100, 0, 1200, 500], "label": "x", "img_idx": 0}, "0-1000"),
        ({"bbox": [0, 0, 500, 500], "label": "x", "img_idx": 0}, "required property"),
    ],
)
def test_qwen3vl_bad_calls(args, message):
    with pytest.raises(ToolCallError) as err:
        qwen3vl_zoom(args, ctx())
    assert message in str(err.value)


def test_deepeyes_schema():
    fn = deepeyes_zoom.schema["function"]
    assert fn["name"] == "image_zoom_in_tool"
    params = props(deepeyes_zoom)
    assert list(params["properties"]) == ["bbox_2d", "label"]
    assert params["required"] == ["bbox_2d"]
    assert "(optional)" in params["properties"]["label"]["description"]


def test_deepeyes_coordinates_are_absolute_pixels_of_the_original_image():
    blue = Image.fromarray(np.full((64, 64, 3), BLUE, np.uint8))
    out = deepeyes_zoom({"bbox_2d": list(SQUARE), "label": "square"}, ctx(square_image(), blue))
    img = only(out)
    assert img.size == (200, 200)  # native size: no resizing
    assert all_close(img, RED, tol=0)  # image 0, never a later one


def test_deepeyes_small_box_grows_to_28_px():
    img = only(deepeyes_zoom({"bbox_2d": [200, 300, 210, 310]}, ctx()))
    assert img.size == (28, 28)
    a = np.asarray(img)
    assert tuple(a[0, 0]) == GRAY and tuple(a[27, 27]) == RED  # centred on the box
    edge = np.asarray(only(deepeyes_zoom({"bbox_2d": [0, 0, 10, 10]}, ctx())))
    assert edge.shape == (28, 28, 3) and tuple(edge[0, 0]) == (0, 0, 0)  # padded like PIL


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"bbox_2d": [0, 0, 1000, 5]}, "aspect ratio is over 100"),
        ({"bbox_2d": [300, 0, 200, 500]}, "inverted"),
        ({"bbox_2d": [1000, 0, 1200, 500]}, "outside the image"),
        ({"bbox_2d": [0, 0, 10, 10], "img_idx": 0}, "'img_idx' was unexpected"),
        ({"label": "x"}, "'bbox_2d' is a required property"),
    ],
)
def test_deepeyes_bad_calls(args, message):
    with pytest.raises(ToolCallError) as err:
        deepeyes_zoom(args, ctx())
    assert message in str(err.value)


def test_pixel_reasoner_schema():
    fn = pixel_reasoner_crop.schema["function"]
    assert fn["name"] == "crop_image"
    params = props(pixel_reasoner_crop)
    assert list(params["properties"]) == ["bbox_2d", "target_image"]
    assert params["required"] == ["bbox_2d", "target_image"]
    assert "[0.0,1.0]" in params["properties"]["bbox_2d"]["description"]
    assert "Index from 1" in params["properties"]["target_image"]["description"]
    assert PixelReasonerCrop("crop_image_normalized").schema["function"]["name"] == (
        "crop_image_normalized"
    )


def test_pixel_reasoner_normalized_box_with_its_padding():
    out = pixel_reasoner_crop({"bbox_2d": [0.2, 0.375, 0.4, 0.625], "target_image": 1}, ctx())
    img = only(out)
    # 0.1 of the image added on each side: x 100..500, y 220..580 = 400x360 px, then
    # smart_resize(360, 400, factor 28, min 256*28*28).
    assert img.size == (476, 448)
    assert out.text == "Here is the cropped image (Image Size: 476x448):"
    a = np.asarray(img)
    assert tuple(a[224, 238]) == RED and tuple(a[2, 2]) == GRAY
    pixel = pixel_reasoner_crop({"bbox_2d": list(SQUARE), "target_image": 1}, ctx())
    assert np.array_equal(np.asarray(only(pixel)), a)  # pixels are accepted too, as in source


def test_pixel_reasoner_target_image_is_1_based():
    blue = Image.fromarray(np.full((300, 300, 3), BLUE, np.uint8))
    c = ctx(square_image(), blue)
    assert all_close(
        only(pixel_reasoner_crop({"bbox_2d": [0, 0, 0.5, 0.5], "target_image": 2}, c)), BLUE
    )
    for bad in (0, 3):
        with pytest.raises(ToolCallError, match=f"target_image={bad} does not exist.*use 1 to 2"):
            pixel_reasoner_crop({"bbox_2d": [0, 0, 0.5, 0.5], "target_image": bad}, c)


def test_pixel_reasoner_crop_must_exceed_28_px():
    small = Image.fromarray(np.full((100, 100, 3), GRAY, np.uint8))
    args = {"bbox_2d": [0.4, 0.4, 0.45, 0.45], "target_image": 1}
    with pytest.raises(ToolCallError, match="Cropped image is too small: 25x25"):
        pixel_reasoner_crop(args, ctx(small))
    bigger = Image.fromarray(np.full((200, 200, 3), GRAY, np.uint8))
    assert only(pixel_reasoner_crop(args, ctx(bigger))).size == (448, 448)  # 50 px, resized


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"bbox_2d": [0.5, 0.5, 0.2, 0.9], "target_image": 1}, "inverted"),
        ({"bbox_2d": [0.1, 0.1, 0.5], "target_image": 1}, "4 numbers"),
        ({"bbox_2d": [0.1, 0.1, 0.5, 0.5]}, "'target_image' is a required property"),
        ({"bbox_2d": [-0.5, -0.5, -0.1, -0.1], "target_image": 1}, "outside the image"),
    ],
)
def test_pixel_reasoner_bad_calls(args, message):
    with pytest.raises(ToolCallError) as err:
        pixel_reasoner_crop(args, ctx())
    assert message in str(err.value)


# ---------------------------------------------------------------------------------------------
# crop:qwen3vl against Qwen-Agent's image_zoom_in_tool, step for step


def qwen_agent_zoom(image: Image.Image, bbox: list[float]) -> Image.Image:
    """Qwen-Agent `ImageZoomInToolQwen3VL.call` (qwen_agent/tools/image_zoom_in_qwen3vl.py),
    transcribed: relative 0-1000 box, `maybe_resize_bbox`, PIL crop of the float box, size from
    `smart_resize((right - left), (bottom - top), factor=32, min_pixels=256*32*32)` of the
    float box, PIL bicubic."""
    import math

    w, h = image.size
    left, top, right, bottom = (bbox[0] / 1000 * w, bbox[1] / 1000 * h, bbox[2] / 1000 * w,
                                bbox[3] / 1000 * h)
    left, top, right, bottom = max(0, left), max(0, top), min(w, right), min(h, bottom)
    height, width = bottom - top, right - left
    if height < 32 or width < 32:
        cx, cy, ratio = (left + right) / 2, (top + bottom) / 2, 32 / min(height, width)
        hh, hw = math.ceil(height * ratio * 0.5), math.ceil(width * ratio * 0.5)
        nl, nr = max(0, math.floor(cx - hw)), min(w, math.ceil(cx + hw))
        nt, nb = max(0, math.floor(cy - hh)), min(h, math.ceil(cy + hh))
        if nb - nt > 32 and nr - nl > 32:
            left, top, right, bottom = nl, nt, nr, nb
    region = image.crop((left, top, right, bottom))
    new_w, new_h = smart_resize(right - left, bottom - top, 32, 256 * 32 * 32, 12845056)
    return region.resize((new_w, new_h), resample=Image.BICUBIC)


@pytest.mark.parametrize("bbox", [
    [990, 990, 1000, 1000],  # a corner box that cannot grow to 32 px inside the image
    [0, 0, 8, 8], [495, 495, 505, 505], [123.4, 56.7, 345.6, 789.1], [0, 0, 1000, 1000],
    [100, 200, 101, 900], [999, 0, 1000, 1000],
])
def test_qwen3vl_reply_is_qwen_agents_pixel_for_pixel(bbox):
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (750, 1000, 3), np.uint8))
    out = qwen3vl_zoom({"bbox_2d": bbox, "label": "x", "img_idx": 0}, ctx(image))
    expected = qwen_agent_zoom(image, bbox)
    assert out.text == "" and not out.note_image_index  # the image alone, as the source
    assert only(out).size == expected.size
    assert np.array_equal(np.asarray(only(out)), np.asarray(expected))


def test_qwen3vl_tiny_corner_box_is_sized_from_the_float_box():
    """[990, 990, 1000, 1000] of a 1000x750 image is a 10x7.5 box: the source sizes it
    608x448; sizing from the rounded 10x8 pixel crop would give 576x480."""
    image = Image.new("RGB", (1000, 750), GRAY)
    out = qwen3vl_zoom({"bbox_2d": [990, 990, 1000, 1000], "label": "x", "img_idx": 0},
                       ctx(image))
    assert only(out).size == (608, 448)


def test_qwen3vl_reply_in_the_env_has_no_image_index_text():
    from axpo_env import ToolUseEnv
    from tests.conftest import ToyTask

    env = ToolUseEnv(ToyTask(), tools=["crop:qwen3vl", "crop"], max_turns=3)
    env.reset(seed=0, options={"index": 0})
    call = '<tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [0, 0, 500, ' \
           '500], "label": "x", "img_idx": 0}}</tool_call>'
    obs, *_ = env.step(call)
    assert [p["type"] for p in obs["messages"][-1]["content"]] == ["image", "text"]
    assert obs["messages"][-1]["content"][-1]["text"] == ""
    obs, *_ = env.step('<tool_call>{"name": "crop", "arguments": {"bbox": [0, 0, 9, 9]}}'
                       '</tool_call>')
    assert "(image index 2)" in obs["messages"][-1]["content"][-1]["text"]  # ours still says
    env.close()
