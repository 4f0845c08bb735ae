"""Without torch installed, the envs, `import agents` and `axpo eval --model http://...` work.

torch is an optional extra (`pip install axpo[train]`); the OpenAI path promises not to need it.
Each check runs in a child interpreter whose import system cannot find torch (`find_spec` says
it is not there, as on a machine without it), so transformers also sees no torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.openai_server import running

ROOT = Path(__file__).resolve().parent.parent
NO_TORCH = r"""
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    '''Finds every module (and distribution) the usual finders find, except torch.'''

    def __init__(self, finders):
        self.finders = finders

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            return None
        for finder in self.finders:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                return spec
        return None

    def find_distributions(self, *args, **kwargs):  # importlib.metadata asks here
        for finder in self.finders:
            for dist in getattr(finder, "find_distributions", lambda *a, **k: ())(*args,
                                                                                 **kwargs):
                if (dist.metadata["Name"] or "").lower() != "torch":
                    yield dist

    def invalidate_caches(self):
        for finder in self.finders:
            if hasattr(finder, "invalidate_caches"):
                finder.invalidate_caches()

sys.meta_path[:] = [NoTorch(list(sys.meta_path))]
"""


def _run(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-c", NO_TORCH + code], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


def test_the_child_really_has_no_torch():
    out = _run("import importlib.util\n"
               "try:\n    import torch\nexcept ImportError:\n    print('blocked')\n"
               "print(importlib.util.find_spec('torch'))")
    assert out.stdout.split() == ["blocked", "None"], out.stderr


def test_agents_and_the_envs_import_and_roll_out_without_torch():
    out = _run("import gymnasium as gym, axpo_env, agents\n"
               "from agents import OpenAIPolicy, SamplingParams, TokenPolicy, load_policy, "
               "rollout\n"
               "from evaluation import EvalConfig, run_eval\n"
               "env = gym.make('AXPO-ToolArith-v0', split='test')\n"
               "obs, info = env.reset(seed=0)\n"
               "print('torch' in sys.modules, len(obs['messages']) > 0)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_axpo_eval_of_a_server_url_runs_without_torch(tmp_path):
    with running() as url:
        out = _run(
            "from axpo_cli.cli import main\n"
            f"rc = main(['eval', '--model', {url!r}, '--envs', 'AXPO-ToolArith-v0', "
            f"'--split', 'test', '--samples', '2', '--limit', '4', '--max-turns', '3', "
            f"'--output-dir', {str(tmp_path / 'out')!r}])\n"
            "print('torch' in sys.modules, rc)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["False", "0"], out.stdout + out.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "AXPO-ToolArith-v0" in json.dumps(summary)
    assert "pass@1" in out.stdout.lower() or "Pass@1" in out.stdout
