"""Specification of the training configs and of the `axpo` command generated from them."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from algorithms.config import AXPOConfig, GRPOConfig, SFTConfig, literal_choices
from axpo_cli import cli

# ----------------------------------------------------------------------------- configs


def test_grpo_defaults_use_trl_names_and_values():
    c = GRPOConfig()
    # Same name and default as TRL's GRPOConfig (trl/trainer/grpo_config.py):
    assert c.num_generations == 8
    assert c.temperature == 1.0 and c.top_p == 1.0 and c.top_k == 0  # no truncation of sampling
    assert c.learning_rate == 1e-6  # TRL overrides TrainingArguments' 5e-5 for GRPO
    assert c.epsilon == 0.2
    assert c.loss_type == "dapo"  # TRL's current default: token-level, no length bias
    assert c.scale_rewards == "group"  # original GRPO std scaling
    assert c.num_iterations == 1  # fully on-policy
    assert c.mask_truncated_completions is False
    assert c.max_grad_norm == 1.0
    assert c.weight_decay == 0.0 and c.warmup_steps == 0
    # Deliberately different from TRL (each field's help says why):
    assert c.max_completion_length == 512  # per turn, room to think before a tool call (TRL 256)
    assert c.bf16 is False  # the embedded tiny model trains exactly on CPU (TRL: True on GPU)
    assert c.gradient_accumulation_steps is None  # one update a step (TRL: 1 update a generation)
    assert c.logging_steps == 1  # a step is a whole rollout batch (TRL 10)
    assert c.save_steps == 50 and c.max_steps == 200  # RL runs count steps, no epochs (TRL -1)
    # the AXPO paper's objective (Eq. 6) for GRPO too (TRL: epsilon_high None, beta 0.0)
    assert (c.epsilon_high, c.beta) == (0.4, 1e-3)
    assert c.seed == 0


def test_grpo_defaults_of_axpo_own_fields():
    c = GRPOConfig()
    assert (c.model, c.env_id, c.tools, c.task_ids) == ("", "AXPO-MathVista-v0", None, None)
    assert (c.max_turns, c.tasks_per_step, c.output_dir, c.resume) == (4, 8, "runs/grpo", False)
    assert c.report_to == ["jsonl", "csv", "tensorboard", "stdout"]
    assert c.clip_range == (0.2, 0.4)
    assert GRPOConfig(epsilon_high=None).clip_range == (0.2, 0.2)
    assert GRPOConfig(epsilon_high=0.28).clip_range == (0.2, 0.28)  # DAPO's clip-higher


def test_axpo_defaults_extend_grpo():
    c = AXPOConfig()
    assert isinstance(c, GRPOConfig) and c.output_dir == "runs/axpo"
    # the AXPO paper's defaults: K = 4, r = 0.25, N = 8, Eq. 6's clip 0.2 / 0.4 and KL 1e-3
    assert (c.resamples_per_prefix, c.resample_ratio, c.num_generations) == (4, 0.25, 8)
    assert (c.epsilon, c.epsilon_high, c.beta) == (0.2, 0.4, 1e-3)
    assert (c.ranking, c.prefix_fix, c.resample_subgroup) == ("uncertainty", True, "tool")
    assert (c.prefix_credit, c.separate_advantage_group, c.exploration) == (True, True, "axpo")
    assert GRPOConfig().tool_reward == 0.0


def test_switching_the_algorithm_changes_no_other_default():
    # `axpo train --algo grpo` is the same run as `--algo axpo` without the exploration
    grpo, axpo = GRPOConfig().to_dict(), AXPOConfig().to_dict()
    differ = {k for k in grpo if grpo[k] != axpo[k]}
    assert differ == {"output_dir"}
    cli_grpo = cli.parse(["train", "--algo", "grpo"])[2].to_dict()
    cli_axpo = cli.parse(["train", "--algo", "axpo"])[2].to_dict()
    assert {k for k in cli_grpo if cli_grpo[k] != cli_axpo[k]} == {"output_dir"}


def test_sft_defaults_follow_trl_sftconfig():
    c = SFTConfig(data_path="data.jsonl")
    assert c.learning_rate == 2e-5  # TRL's SFTConfig default
    assert (c.num_train_epochs, c.max_steps, c.per_device_train_batch_size) == (3, -1, 8)
    assert (c.logging_steps, c.save_steps, c.output_dir) == (10, 500, "runs/sft")
    assert c.max_length == 4096  # multi-turn trajectories with images outgrow TRL's 1024


@pytest.mark.parametrize("cls, kwargs, message", [
    (GRPOConfig, {"num_generations": 1}, "num_generations must be >= 2"),
    (GRPOConfig, {"epsilon": 0.0}, "epsilon must be in (0, 1)"),
    (GRPOConfig, {"epsilon_high": 0.1}, "epsilon_high (0.1) must be >= epsilon (0.2)"),
    (GRPOConfig, {"loss_type": "ppo"}, "loss_type must be one of"),
    (GRPOConfig, {"scale_rewards": "std"}, "scale_rewards must be one of"),
    (GRPOConfig, {"temperature": 0.0}, "temperature must be > 0"),
    (GRPOConfig, {"top_p": 0.0}, "top_p must be in (0, 1]"),
    (GRPOConfig, {"max_steps": 0}, "max_steps must be >= 1"),
    (GRPOConfig, {"report_to": ["wandb"]}, "unknown reporter(s) ['wandb']"),
    (GRPOConfig, {"tools": 3}, "tools must be None or a list of strings"),
    (AXPOConfig, {"ranking": "variance"}, "ranking must be one of"),
    (AXPOConfig, {"resample_subgroup": "all"}, "resample_subgroup must be one of"),
    (AXPOConfig, {"exploration": "brute"}, "exploration must be one of"),
    (AXPOConfig, {"resample_ratio": -0.1}, "resample_ratio must be in [0, 4]"),
    (AXPOConfig, {"resamples_per_prefix": 1}, "resamples_per_prefix must be >= 2"),
    (SFTConfig, {}, "data_path is required"),
    (SFTConfig, {"data_path": "d.jsonl", "max_steps": 0}, "max_steps must be -1"),
])
def test_invalid_values_raise_clear_errors(cls, kwargs, message):
    with pytest.raises(ValueError) as err:
        cls(**kwargs)
    assert message in str(err.value)


def test_scale_rewards_accepts_trls_legacy_bools():
    assert GRPOConfig(scale_rewards=True).scale_rewards == "group"
    assert GRPOConfig(scale_rewards=False).scale_rewards == "none"


def test_report_to_none_turns_reporting_off():
    assert GRPOConfig(report_to=["none"]).report_to == []


@pytest.mark.parametrize("config", [GRPOConfig(tools=["crop"], epsilon_high=0.28),
                                    AXPOConfig(ranking="random", prefix_credit=False),
                                    SFTConfig(data_path="d.jsonl")])
def test_to_dict_from_dict_round_trips_through_json(config):
    data = json.loads(json.dumps(config.to_dict()))
    assert type(config).from_dict(data) == config


def test_from_dict_names_unknown_keys_and_valid_ones():
    with pytest.raises(ValueError, match=r"unknown GRPOConfig key\(s\): resample_ratio.*"
                                         r"Valid keys: model, seed"):
        GRPOConfig.from_dict({"resample_ratio": 0.5})


def test_literal_choices_match_the_loss_module():
    from algorithms import loss

    choices = literal_choices(GRPOConfig)
    assert set(choices["loss_type"]) == set(loss.LOSS_TYPES)
    assert set(choices["scale_rewards"]) == set(loss.SCALE_MODES)


def test_docstring_lists_every_field_with_type_default_and_help():
    doc = AXPOConfig.__doc__
    for f in dataclasses.fields(AXPOConfig):
        assert f"{f.name} (`" in doc and f.metadata["help"].split()[0] in doc
    assert "num_generations (`int`, defaults to `8`)" in doc
    assert "> Parameters that control generation" in doc

# ----------------------------------------------------------------------------- CLI


def test_parse_train_axpo_with_flags():
    command, algo, config = cli.parse(["train", "--algo", "axpo", "--num-generations", "4",
                                       "--bf16"])
    assert (command, algo, type(config)) == ("train", "axpo", AXPOConfig)
    assert config.num_generations == 4 and config.bf16 is True
    assert config.output_dir == "runs/axpo"


def test_parse_accepts_underscores_no_flags_lists_optionals_and_literals():
    _, algo, config = cli.parse([
        "train", "--algo=grpo", "--num_generations=6", "--no-bf16", "--tools", "crop, python",
        "--task-ids", "8,11", "--epsilon-high", "0.28", "--scale-rewards", "false",
        "--loss_type", "dr_grpo", "--learning-rate", "3e-6"])
    assert algo == "grpo" and type(config) is GRPOConfig and config.output_dir == "runs/grpo"
    assert (config.num_generations, config.bf16, config.tools) == (6, False, ["crop", "python"])
    assert (config.task_ids, config.epsilon_high) == (["8", "11"], 0.28)
    assert (config.scale_rewards, config.loss_type, config.learning_rate) == ("none", "dr_grpo",
                                                                              3e-6)
    assert cli.parse(["train", "--epsilon-high", "none"])[2].epsilon_high is None


def test_default_algo_is_axpo():
    assert cli.parse(["train"])[1:] == ("axpo", AXPOConfig())


def _write(path: Path, data: dict) -> str:
    if path.suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        import yaml

        path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_file_gives_defaults_that_flags_override(tmp_path, suffix):
    path = _write(tmp_path / f"run{suffix}", {
        "algo": "grpo", "num_generations": 4, "learning_rate": "2e-6", "bf16": True,
        "tools": ["crop"], "max-turns": 3, "epsilon_high": None})
    _, algo, config = cli.parse(["train", "--config", path, "--num-generations", "6",
                                 "--no-bf16"])
    assert algo == "grpo" and type(config) is GRPOConfig
    assert (config.num_generations, config.bf16) == (6, False)  # flags win
    assert (config.learning_rate, config.tools, config.max_turns) == (2e-6, ["crop"], 3)
    assert cli.parse(["train", "-c", path, "--algo", "axpo"])[1] == "axpo"  # flag beats file


def test_yaml_scalars_parse_as_yaml_writes_them(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("learning_rate: 1e-6\nscale_rewards: false\nreport_to: jsonl,stdout\n")
    config = cli.parse(["train", "-c", str(path)])[2]
    assert (config.learning_rate, config.scale_rewards) == (1e-6, "none")  # YAML 1.1 quirks
    assert config.report_to == ["jsonl", "stdout"]


def test_config_file_round_trips_a_saved_config(tmp_path):
    saved = AXPOConfig(num_generations=4, resample_ratio=0.5, tools=["crop"])
    path = _write(tmp_path / "config.json", saved.to_dict())
    assert cli.parse(["train", "-c", path])[2] == saved


def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.parse(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_unknown_config_keys_are_named_with_the_valid_ones(tmp_path, capsys):
    path = _write(tmp_path / "run.yaml", {"num_gens": 4, "lr": 1e-6})
    err = _error(capsys, ["train", "-c", path])
    assert "unknown key(s): lr, num_gens" in err and "Valid keys: algo, model, seed" in err
    assert "resample_ratio" in err and err.startswith("usage: axpo train")


def test_axpo_only_settings_with_grpo_are_an_error(tmp_path, capsys):
    assert "--resample-ratio: only with --algo axpo" in _error(
        capsys, ["train", "--algo", "grpo", "--resample-ratio", "0.5"])
    assert "--prefix-credit: only with --algo axpo" in _error(
        capsys, ["train", "--algo", "grpo", "--no-prefix-credit"])
    path = _write(tmp_path / "run.json", {"algo": "grpo", "ranking": "random"})
    assert "ranking: only with --algo axpo (got algo grpo)" in _error(
        capsys, ["train", "-c", path])


@pytest.mark.parametrize("argv, message", [
    (["train", "--loss-type", "ppo"],
     "argument --loss-type: invalid choice: 'ppo' (choose from 'grpo', 'bnpo', 'dr_grpo', "
     "'dapo')"),
    (["train", "--num-generations", "four"],
     "argument --num-generations: expected an integer, got 'four'"),
    (["train", "--num-generations", "1"], "num_generations must be >= 2"),
    (["train", "--algo", "ppo"], "argument --algo: invalid choice: 'ppo'"),
    (["train", "--ranking", "variance"], "argument --ranking: invalid choice"),
    (["sft"], "the following arguments are required: --data-path"),
    (["sft", "--data-path", "d.jsonl", "--resample-ratio", "4"], "unrecognized arguments"),
    ([], "the following arguments are required: {train,sft,eval,view}"),
])
def test_bad_flags_exit_with_argparse_errors(capsys, argv, message):
    assert message in _error(capsys, argv)


@pytest.mark.parametrize("content, message", [
    ("num_generations: four\n", "num_generations: expected an integer, got 'four'"),
    ("bf16: 3\n", "bf16: expected true or false, got 3"),
    ("loss_type: ppo\n", "loss_type: invalid choice: 'ppo'"),
    ("tools: [true, {a: 1}]\n", "tools: expected a list of strings"),
    ("- a\n- b\n", "expected a mapping of field names to values"),
    ("num_generations: [\n", "not valid YAML"),
    ("algo: ppo\n", "algo must be one of ['axpo', 'grpo']"),
])
def test_bad_config_file_values_exit_with_argparse_errors(tmp_path, capsys, content, message):
    path = tmp_path / "run.yaml"
    path.write_text(content)
    assert message in _error(capsys, ["train", "--config", str(path)])


def test_config_file_must_exist_and_be_yaml_or_json(tmp_path, capsys):
    assert "cannot read it" in _error(capsys, ["train", "-c", str(tmp_path / "missing.yaml")])
    toml = tmp_path / "run.toml"
    toml.write_text("")
    assert "expected a .yaml, .yml or .json file" in _error(capsys, ["train", "-c", str(toml)])


def test_sft_parses_its_own_fields(tmp_path):
    path = _write(tmp_path / "sft.yaml", {"data_path": "d.jsonl", "num_train_epochs": 2})
    command, algo, config = cli.parse(["sft", "-c", path, "--max-length", "1024"])
    assert (command, algo) == ("sft", None)
    assert config == SFTConfig(data_path="d.jsonl", num_train_epochs=2, max_length=1024)


def test_main_dispatches_lazily_to_trainer_and_sft(monkeypatch):
    calls = []

    class FakeTrainer:
        def __init__(self, **kwargs):
            calls.append(("init", kwargs))

        def train(self):
            calls.append(("train",))

    monkeypatch.setitem(sys.modules, "algorithms.trainer",
                        types.SimpleNamespace(Trainer=FakeTrainer))
    monkeypatch.setitem(sys.modules, "algorithms.sft",
                        types.SimpleNamespace(train_sft=lambda c: calls.append(("sft", c))))
    assert cli.main(["train", "--algo", "grpo", "--env-id", "AXPO-Toy-v0"]) == 0
    init = calls[0][1]
    assert (init["algorithm"], init["env_id"], init["policy"]) == ("grpo", "AXPO-Toy-v0", None)
    assert type(init["config"]) is GRPOConfig and calls[1] == ("train",)
    assert cli.main(["sft", "--data-path", "d.jsonl"]) == 0
    assert calls[2] == ("sft", SFTConfig(data_path="d.jsonl"))


def _console_script() -> str:
    script = Path(sys.executable).parent / "axpo"
    assert script.exists(), "reinstall with `pip install -e .` to get the axpo command"
    return str(script)


def test_axpo_help_lists_the_commands():
    out = subprocess.run([_console_script(), "--help"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert "usage: axpo" in out and "train" in out and "sft" in out


def test_axpo_train_help_lists_every_field_with_its_help():
    out = subprocess.run([_console_script(), "train", "--help"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    flat = " ".join(out.split())
    for f in dataclasses.fields(AXPOConfig):
        assert "--" + f.name.replace("_", "-") in out
    assert "--bf16, --no-bf16" in out
    assert "Rollouts per task (the group size G)" in flat
    assert "(default: runs/axpo; runs/grpo with --algo grpo)" in flat
    assert "Parameters that control AXPO's exploration" in out


def test_train_reports_a_bad_env_and_an_interrupt_in_one_line(monkeypatch, tmp_path, capsys):
    out = ["--output-dir", str(tmp_path), "--model", "no/such/model"]
    # checked before the model loads: the model path here would fail too, later
    assert cli.main(["train", "--algo", "grpo", "--env-id", "AXPO-Nope-v0", *out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("axpo train: error: unknown env 'AXPO-Nope-v0'") and err.count("\n") == 1

    class Interrupted:
        def __init__(self, **kwargs):
            pass

        def train(self):
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "algorithms.trainer",
                        types.SimpleNamespace(Trainer=Interrupted))
    assert cli.main(["train", "--algo", "grpo", *out]) == 130
    err = capsys.readouterr().err
    assert err == (f"axpo train: interrupted; the checkpoints in {tmp_path} are intact: run "
                   "again with --resume\n")


@pytest.mark.parametrize("argv", [["train"], ["eval", "--model", "tiny"],
                                  ["sft", "--data-path", "d.jsonl"]])
def test_tool_call_format_flag_on_every_command_that_touches_tool_calls(argv, capsys):
    from axpo_env.protocol import TOOL_CALL_FORMATS

    assert cli.parse(argv)[2].tool_call_format == "hermes"
    assert cli.parse([*argv, "--tool-call-format", "qwen3_coder"])[2].tool_call_format == \
        "qwen3_coder"
    err = _error(capsys, [*argv, "--tool-call-format", "json"])
    assert "argument --tool-call-format: invalid choice: 'json' (choose from 'hermes', " \
        "'qwen3_coder')" in err
    for cls in (GRPOConfig, SFTConfig):
        assert literal_choices(cls)["tool_call_format"] == TOOL_CALL_FORMATS


def test_tool_call_format_reaches_the_run_envs():
    from algorithms.preflight import check_env, env_kwargs

    config = GRPOConfig(env_id="AXPO-ZoomBoxes-v0", tool_call_format="qwen3_coder")
    assert env_kwargs(config)["tool_call_format"] == "qwen3_coder"
    assert "tool_call_format" not in env_kwargs(GRPOConfig())  # plugin envs need not take it
    env, _ = check_env(config)
    assert env.unwrapped.tool_call_format == "qwen3_coder"
    env.close()
    with pytest.raises(ValueError, match="tool_call_format must be one of"):
        GRPOConfig(tool_call_format="json")
