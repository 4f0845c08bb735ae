"""The packages' public names: importable as the README shows, and cheap to import."""

from __future__ import annotations

import subprocess
import sys


def test_readme_imports_work():
    from agents import HFPolicy, OpenAIPolicy, Trajectory, rollout, tiny  # noqa: F401
    from algorithms import AXPOConfig, GRPOConfig, SFTConfig, Trainer, train_sft  # noqa: F401

    assert AXPOConfig().resamples_per_prefix == 4 and Trainer.__name__ == "Trainer"


def test_rollout_is_the_function_whichever_name_comes_first():
    # `branch` imports the module agents.rollout, which Python sets on the package as `rollout`
    code = ("from agents import SamplingParams, branch, load_policy, rollout; import agents; "
            "import agents.rollout; print(rollout.__name__, type(agents.rollout).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.split() == ["rollout", "function"]


def test_configs_and_the_openai_policy_import_without_torch():
    code = ("import sys; from algorithms import AXPOConfig; from agents import OpenAIPolicy; "
            "AXPOConfig(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_names_are_attribute_errors():
    import agents
    import algorithms

    for module in (agents, algorithms):
        try:
            module.NoSuchThing  # noqa: B018
        except AttributeError as err:
            assert "NoSuchThing" in str(err)
        else:
            raise AssertionError("expected AttributeError")


def test_the_new_homes_export_their_names():
    from agents import TokenPolicy, TokenPrompt, load_policy  # noqa: F401
    from axpo_cli import main  # noqa: F401
    from evaluation import EvalConfig, EvalError, pass_at_k, run_eval  # noqa: F401

    assert EvalConfig(model="tiny").samples == 4 and pass_at_k(4, 1, 1) == 0.25


def test_evaluation_exports_are_lazy_and_unknown_names_are_attribute_errors():
    import pytest

    import evaluation

    with pytest.raises(AttributeError, match="NoSuchThing"):
        evaluation.NoSuchThing  # noqa: B018
    code = "import sys; from evaluation import EvalConfig, run_eval; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True).stdout.split() == ["False"]
