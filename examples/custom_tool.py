"""Write your own tool and use it in a task env beside the built-in ones.

    python examples/custom_tool.py

A tool is a typed function with a Google-style docstring; `@tool` gives it the JSON schema a chat
template renders (`transformers.utils.get_json_schema`). Taking `ctx: ToolContext` gives it the
episode's images. To ship tools from your own package, declare them in its pyproject.toml:

    [project.entry-points."axpo_env.tools"]
    histogram = "my_package.tools:histogram"

and `gym.make(..., tools=["histogram"])` finds them by name. A task of your own (questions, a
scoring function, demonstrations, SFT, RL, evaluation): the README's "Your own task" and
docs/tasks.md.
"""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np

import axpo_env
from axpo_env import ToolContext, render_tool_call, tool


@tool
def histogram(channel: str, ctx: ToolContext, image_index: int = 0) -> str:
    """Summarise the brightness of one color channel of an image.

    Args:
        channel: One of "red", "green", "blue".
        image_index: Which image of the conversation (0 is the task image).
    """
    if channel not in ("red", "green", "blue"):
        raise axpo_env.ToolCallError('channel must be "red", "green" or "blue"')
    if not 0 <= image_index < len(ctx.images):
        raise axpo_env.ToolCallError(f"image_index must be in [0, {len(ctx.images) - 1}]")
    rgb = np.asarray(ctx.images[image_index].convert("RGB"))
    pixels = rgb[..., ("red", "green", "blue").index(channel)]
    counts, _ = np.histogram(pixels, bins=4, range=(0, 256))
    return f"{channel} pixels per quarter of the 0-255 range: {counts.tolist()}"


def main() -> None:
    print("schema:", json.dumps(histogram.schema["function"]["parameters"], indent=1))
    env = gym.make("AXPO-MathVista-v0", tools=["crop", histogram])
    obs, info = env.reset(seed=0, options={"index": 0})
    print("tools offered:", [t["function"]["name"] for t in obs["tools"]])

    for action in [
        render_tool_call("histogram", {"channel": "red"}),
        render_tool_call("histogram", {"channel": "purple"}),  # a bad call: an error message
        render_tool_call("crop", {"bbox": [0, 0, 0.5, 0.5]}),
        render_tool_call("histogram", {"channel": "blue", "image_index": 1}),
    ]:
        obs, reward, terminated, truncated, info = env.step(action)
        print(f"-> {obs['messages'][-1]['content'][-1]['text']}")
    print("info:", info)
    env.close()


if __name__ == "__main__":
    main()
