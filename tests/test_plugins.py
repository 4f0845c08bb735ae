"""Tools and task envs shipped by another package are found through our entry-point groups."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

PLUGIN_MODULE = textwrap.dedent('''
    from PIL import Image

    from axpo_env import Task, TaskItem, tool


    @tool
    def word_count(text: str) -> int:
        """Count the words in a text.

        Args:
            text: The text whose words to count.
        """
        return len(text.split())


    class EchoTask(Task):
        env_id = "AXPOPlugin-Echo-v0"
        default_tools = ("word_count", "calculator")

        def load_items(self):
            return [TaskItem("echo-0", "How many words: 'a b c'?",
                             (Image.new("RGB", (8, 8)),), "3")]

        def score(self, item, response):
            return float(response.strip() == item.answer)
''')

PYPROJECT = textwrap.dedent('''
    [build-system]
    requires = ["setuptools"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "axpo-echo-plugin"
    version = "0.1"

    [project.entry-points."axpo_env.tools"]
    word_count = "axpo_echo_plugin:word_count"

    [project.entry-points."axpo_env.tasks"]
    echo = "axpo_echo_plugin:EchoTask"

    [tool.setuptools]
    py-modules = ["axpo_echo_plugin"]
''')

# Runs in a fresh interpreter that has the plugin on its path; no explicit `import axpo_env`.
CHILD = textwrap.dedent('''
    import json
    import gymnasium as gym

    env = gym.make("axpo_env:AXPOPlugin-Echo-v0")
    obs, info = env.reset(seed=0)
    tools = [t["function"]["name"] for t in obs["tools"]]
    call = '<tool_call>{"name": "word_count", "arguments": {"text": "a b c"}}</tool_call>'
    obs, *_ = env.step(call)
    result = obs["messages"][-1]["content"][-1]["text"]
    _, reward, terminated, _, info = env.step("<answer>3</answer>")

    from axpo_env import get_tool
    by_name = get_tool("word_count")({"text": "one two"}).text
    print(json.dumps({"tools": tools, "result": result, "reward": reward, "by_name": by_name}))
''')


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    src = tmp_path_factory.mktemp("plugin_src")
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "axpo_echo_plugin.py").write_text(PLUGIN_MODULE)
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--target", str(target), str(src)],
        check=True, capture_output=True,
    )
    return target


def test_installed_plugin_registers_its_task_env_and_tool(plugin_path):
    env = dict(os.environ, PYTHONPATH=str(plugin_path))
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"tools": ["word_count", "calculator"], "result": "3", "reward": 1.0,
                   "by_name": "2"}


def test_unknown_tool_name_lists_what_is_available():
    from axpo_env import ToolNotFoundError, get_tool

    with pytest.raises(ToolNotFoundError, match="Available: .*calculator.*crop"):
        get_tool("no-such-tool")


def test_registered_function_tool_is_found_by_name():
    from axpo_env import get_tool, register_tool, tool

    @tool
    def shout(text: str) -> str:
        """Upper-case a text.

        Args:
            text: What to shout.
        """
        return text.upper()

    register_tool(shout)
    assert get_tool("shout")({"text": "hi"}).text == "HI"
    schema = get_tool("shout").schema
    assert schema["function"]["parameters"]["required"] == ["text"]


BROKEN_CHILD = textwrap.dedent('''
    import json, warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import axpo_env
    import gymnasium as gym

    print(json.dumps({"warnings": [str(w.message) for w in caught],
                      "builtin": "AXPO-ToolArith-v0" in gym.registry}))
''')


def test_a_broken_plugin_is_skipped_with_a_warning_naming_its_package(tmp_path):
    site = tmp_path / "site"
    info = site / "axpo_broken_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: axpo-broken-plugin\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[axpo_env.tasks]\ncrashes = axpo_broken_plugin:Missing\n"
        "not_a_task = axpo_broken_plugin:NOT_A_TASK\n")
    (site / "axpo_broken_plugin.py").write_text("NOT_A_TASK = 3\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), root]))
    out = subprocess.run([sys.executable, "-c", BROKEN_CHILD], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["builtin"] is True
    skipped = [w for w in got["warnings"] if "axpo-broken-plugin" in w]
    assert len(skipped) == 2
    assert any("'crashes'" in w and "AttributeError" in w for w in skipped)
    assert any("'not_a_task'" in w and "not a Task subclass" in w for w in skipped)
