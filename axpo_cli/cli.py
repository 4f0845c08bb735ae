"""The `axpo` command: `axpo train --algo axpo|grpo ...`, `axpo sft ...` and `axpo eval ...`.

It sits above what it dispatches (`algorithms` for train and sft, `evaluation` for eval,
`axpo_view` for view); it reads their configs up front and imports the code that runs (torch)
only when a command needs it. Every flag is generated from a field of the config dataclasses
(`axpo_env.config_fields` says how a field is declared): its name (`--num-generations`, or
`--num_generations`), its type from the annotation (`--bf16/--no-bf16` for bools, `none` for
Optional, choices for Literal, comma-separated lists), its default and its help text. Adding a
field to a config adds its flag; nothing here lists fields by hand.
`--config run.yaml|run.json` supplies values that explicit flags override.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from algorithms.config import AXPOConfig, GRPOConfig, SFTConfig
from axpo_env.config_fields import GROUPS
from evaluation.evaluate import EvalConfig

ALGOS: dict[str, type[GRPOConfig]] = {"axpo": AXPOConfig, "grpo": GRPOConfig}
_NONE = ("none", "null")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")

_EPILOG = """examples:
  axpo train --algo axpo --model Qwen/Qwen3-VL-2B-Instruct --num-generations 8 --bf16
  axpo train --algo grpo --config run.yaml --learning-rate 2e-6
  axpo sft --data-path trajectories.jsonl --num-train-epochs 2
  axpo eval --model Qwen/Qwen3-VL-2B-Thinking --envs AXPO-MathVista-v0 --samples 4
  axpo eval --model Qwen/Qwen3-VL-8B-Thinking --envs paper --samples 4 --paper-table 8B
  axpo eval --rescore runs/eval --scoring lenient
  axpo view runs/eval

Flags may be spelled with - or _ (--num-generations, --num_generations). In a --config file
(YAML or JSON) keys are field names; explicit flags override them."""


@dataclasses.dataclass(frozen=True)
class _Spec:
    """How one config field reads from text (a flag) or from a YAML/JSON value."""

    name: str
    kind: Any  # bool, int, float, str, list, or the tuple of a Literal's choices
    optional: bool
    aliases: dict[str, str]

    @property
    def metavar(self) -> str:
        base = {int: "INT", float: "FLOAT", str: "STR", list: "A,B,..."}.get(self.kind, "")
        if isinstance(self.kind, tuple):
            base = "{" + ",".join(self.kind) + "}"
        return f"{base}|none" if self.optional else base

    def from_text(self, text: str) -> Any:
        """Parse a flag's text; raises `ArgumentTypeError` with a message for the user."""
        if self.optional and text.strip().lower() in _NONE:
            return None
        if self.kind is bool:
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        if self.kind in (int, float):
            try:
                return self.kind(text)
            except ValueError:
                noun = "an integer" if self.kind is int else "a number"
                raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if self.kind is list:
            return [part.strip() for part in text.split(",") if part.strip()]
        if isinstance(self.kind, tuple):
            value = self.aliases.get(text.lower(), text)
            if value not in self.kind:
                choices = ", ".join(repr(c) for c in self.kind)
                raise argparse.ArgumentTypeError(
                    f"invalid choice: {text!r} (choose from {choices})")
            return value
        return text

    def from_value(self, value: Any) -> Any:
        """Check and convert a value read from a YAML or JSON file."""
        if isinstance(value, str):
            return self.from_text(value)
        if value is None and self.optional:
            return None
        if self.kind is bool and isinstance(value, bool):
            return value
        if self.kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if self.kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if self.kind is list and isinstance(value, list) and all(
                isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
            return [str(v) for v in value]  # task_ids: [1, 2] and reward_weights: [1.0, 0.2]
        if isinstance(self.kind, tuple) and isinstance(value, bool):
            return self.from_text(str(value))
        if isinstance(self.kind, tuple):
            expected = f"one of {list(self.kind)}"
        else:
            expected = {bool: "true or false", int: "an integer", float: "a number",
                        str: "a string", list: "a list of strings"}[self.kind]
        if self.optional:
            expected += " or null"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")


def _specs(cls: type) -> dict[str, _Spec]:
    """One `_Spec` per dataclass field, read from the type annotations."""
    hints = typing.get_type_hints(cls)
    specs = {}
    for f in dataclasses.fields(cls):
        tp, optional = hints[f.name], False
        args = typing.get_args(tp)
        if type(None) in args:
            optional = True
            tp = next(a for a in args if a is not type(None))
        if typing.get_origin(tp) is Literal:
            kind: Any = typing.get_args(tp)
        elif typing.get_origin(tp) is list or tp is list:
            kind = list
        elif tp in (bool, int, float, str):
            kind = tp
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: the CLI cannot parse type {tp!r}")
        specs[f.name] = _Spec(f.name, kind, optional, dict(f.metadata.get("aliases", {})))
    return specs


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if callable(f.default_factory) else f.default


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(value) or "none"
    return "none" if value is None else str(value) or "''"


def _add_fields(parser: argparse.ArgumentParser, cls: type,
                others: dict[str, type] | None = None) -> None:
    """Add a flag per field of `cls`, in argument groups by concern; `others` are configs of the
    same command, by when they apply, whose differing defaults the help mentions."""
    specs = _specs(cls)
    fields = dataclasses.fields(cls)
    for group, title in GROUPS.items():
        members = [f for f in fields if f.metadata.get("group") == group]
        if not members:
            continue
        section = parser.add_argument_group(title)
        for f in members:
            spec, flag = specs[f.name], "--" + f.name.replace("_", "-")
            default = f"default: {_show(_default(f))}"
            for when, other in (others or {}).items():
                match = [g for g in dataclasses.fields(other) if g.name == f.name]
                if match and _default(match[0]) != _default(f):
                    default += f"; {_show(_default(match[0]))} {when}"
            help_text = f"{f.metadata.get('help', '')} ({default})".replace("%", "%%")
            if spec.kind is bool:
                section.add_argument(flag, action=argparse.BooleanOptionalAction,
                                     default=argparse.SUPPRESS, help=help_text)
            else:
                section.add_argument(flag, type=spec.from_text, metavar=spec.metavar,
                                     default=argparse.SUPPRESS, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    """The `axpo` parser with its `train`, `sft` and `eval` subcommands."""
    return _build()[0]


def _build() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="axpo", formatter_class=fmt, epilog=_EPILOG,
        description="Train LLM/VLM agents on tool-use Gymnasium environments with AXPO or GRPO, "
        "or supervised fine-tune them on tool-use trajectories.")
    commands = parser.add_subparsers(dest="command", metavar="{train,sft,eval,view}",
                                     required=True)
    train = commands.add_parser(
        "train", formatter_class=fmt, epilog=_EPILOG, help="RL training with AXPO or GRPO",
        usage="axpo train [-h] [--algo {axpo,grpo}] [-c FILE] [--FIELD VALUE ...]",
        description="RL training on a tool-use environment. AXPO is GRPO plus resampling of "
        "all-wrong tool-using groups from uncertain thinking prefixes.")
    train.add_argument("--algo", choices=tuple(ALGOS), default=argparse.SUPPRESS,
                       help="axpo or grpo (default: axpo, or the file's 'algo' key)")
    sft = commands.add_parser(
        "sft", formatter_class=fmt, epilog=_EPILOG, help="supervised fine-tuning",
        usage="axpo sft [-h] [-c FILE] --data-path FILE [--FIELD VALUE ...]",
        description="Supervised fine-tuning on chat-message trajectories (a cold start before RL).")
    evaluate = commands.add_parser(
        "eval", formatter_class=fmt, epilog=_EPILOG, help="evaluate a model on benchmark envs",
        usage="axpo eval [-h] [-c FILE] --model PATH|URL [--envs A,B,...] [--FIELD VALUE ...]",
        description="Run every item of each benchmark env --samples times (batched, resumable) "
        "and report Pass@1, Pass@k and tool use per benchmark and on average.")
    for sub in (train, sft, evaluate):
        sub.add_argument("-c", "--config", metavar="FILE", default=None,
                         help="YAML or JSON file of field values; explicit flags override them")
    _add_fields(train, AXPOConfig, others={"with --algo grpo": GRPOConfig})
    _add_fields(sft, SFTConfig)
    _add_fields(evaluate, EvalConfig)
    evaluate.add_argument("--max-new-tokens", dest="max_completion_length", metavar="INT",
                          type=int, default=argparse.SUPPRESS, help="same as "
                          "--max-completion-length")
    view = commands.add_parser("view", help="write an HTML report of saved trajectories",
                               description="One static HTML page (opens from disk) of an eval "
                               "or training output dir or a trajectories folder/.jsonl.")
    view.add_argument("path", help="axpo eval/train --output-dir, or a trajectories folder/.jsonl")
    view.add_argument("--out", default=None, help="the page's path (default: PATH/report.html)")
    return parser, {"train": train, "sft": sft, "eval": evaluate, "view": view}


def _normalize(argv: Sequence[str]) -> list[str]:
    """Accept --num_generations as --num-generations (options only, up to a bare `--`)."""
    out, options = [], True
    for arg in argv:
        if arg == "--":
            options = False
        elif options and arg.startswith("--"):
            name, eq, value = arg.partition("=")
            arg = name.replace("_", "-") + eq + value
        out.append(arg)
    return out


def _read_file(path: str, sub: argparse.ArgumentParser) -> dict[str, Any]:
    """The key/value mapping of a YAML or JSON config file; errors go through `sub.error`."""
    file = Path(path)
    if file.suffix.lower() not in (".yaml", ".yml", ".json"):
        sub.error(f"--config {path}: expected a .yaml, .yml or .json file")
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        sub.error(f"--config {path}: cannot read it ({exc.strerror or exc})")
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError or json.JSONDecodeError: report, don't trace
        sub.error(f"--config {path}: not valid {file.suffix[1:].upper()}: {exc}")
    data = {} if data is None else data
    if not isinstance(data, dict):
        sub.error(f"--config {path}: expected a mapping of field names to values, "
                  f"got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def parse(argv: Sequence[str] | None = None
          ) -> tuple[str, str | None, GRPOConfig | SFTConfig | EvalConfig]:
    """Parse a command line into (command, algo, config); algo is None for `sft` and `eval`.

    Values come from the config's defaults, then the --config file, then explicit flags. Errors
    exit with status 2 and an argparse-style message, as for any bad flag.
    """
    parser, subs = _build()
    args = vars(parser.parse_args(_normalize(sys.argv[1:] if argv is None else argv)))
    command = args.pop("command")
    if command == "view":  # no config dataclass: a path and --out
        return command, None, args  # type: ignore[return-value]
    sub = subs[command]  # errors show this subcommand's usage line
    path = args.pop("config")
    file = _read_file(path, sub) if path else {}

    algo: str | None = None
    if command == "train":
        file_algo = file.pop("algo", None)
        algo = args.pop("algo", None) or file_algo or "axpo"
        if not isinstance(algo, str) or algo not in ALGOS:
            sub.error(f"--config {path}: algo must be one of {list(ALGOS)}, got {algo!r}")
        cls: type = ALGOS[algo]
    else:
        cls = EvalConfig if command == "eval" else SFTConfig
    names = [f.name for f in dataclasses.fields(cls)]
    axpo_only = [n for n in _specs(AXPOConfig) if n not in names] if command == "train" else []

    unknown = sorted(k for k in file if k not in names)
    misplaced = [k for k in unknown if k in axpo_only]
    if misplaced:
        sub.error(f"--config {path}: {', '.join(misplaced)}: only with --algo axpo "
                  f"(got algo {algo})")
    if unknown:
        valid = (["algo"] if command == "train" else []) + names
        sub.error(f"--config {path}: unknown key(s): {', '.join(unknown)}. "
                  f"Valid keys: {', '.join(valid)}")
    flagged = [k for k in args if k in axpo_only]
    if flagged:
        flags = ", ".join("--" + k.replace("_", "-") for k in flagged)
        sub.error(f"{flags}: only with --algo axpo (got --algo {algo})")

    specs = _specs(cls)
    values: dict[str, Any] = {}
    for key, value in file.items():
        try:
            values[key] = specs[key].from_value(value)
        except argparse.ArgumentTypeError as exc:
            sub.error(f"--config {path}: {key}: {exc}")
    values.update(args)
    if cls is SFTConfig and not values.get("data_path"):
        sub.error("the following arguments are required: --data-path (or data_path in --config)")
    try:
        config = cls(**values)
    except ValueError as exc:
        sub.error(str(exc))
    return command, algo, config


def _train(algo: str, config: GRPOConfig) -> int:
    """Run RL; the Trainer loads config.model through `agents.load_policy`. A checkpoint that
    `--resume` cannot load (or refuses: a hostile or damaged trainer state) is one line and
    status 1."""
    from agents.vllm_engine import EngineError
    from algorithms.outputs import CheckpointError
    from algorithms.preflight import RunError
    from algorithms.trainer import Trainer  # heavy (torch, accelerate): only when training
    from axpo_env.errors import ModelLoadError

    again = f"the checkpoints in {config.output_dir} are intact: run again with --resume"
    _, status = _guard("train", lambda: Trainer(
        algorithm=algo, config=config, policy=config.model or None, env_id=config.env_id).train(),
        [(CheckpointError, 1, lambda e: f"error: {' '.join(str(e).split())}"),
         (RunError, 2, lambda e: f"error: {e}"),
         (ModelLoadError, 2, lambda e: f"error: {e}"),
         (EngineError, 1, lambda e: f"error: {e}; fix the engine; {again}"),
         (KeyboardInterrupt, 130, lambda e: f"interrupted; {again}")])
    return status or 0


def _sft(config: SFTConfig) -> None:
    from algorithms.sft import train_sft

    train_sft(config)


def _say(command: str, message: str) -> None:
    """One line to stderr, as every command reports: `axpo <command>: <message>`."""
    print(f"axpo {command}: {message}", file=sys.stderr)


_Failures = Sequence[tuple[type[BaseException], int, Callable[[BaseException], str]]]


def _guard(command: str, run: Callable[[], Any], failures: _Failures) -> tuple[Any, int | None]:
    """(`run()`, None); or, when it raises one of `failures` (type, exit status, message; the
    first that matches, as except clauses), (None, that status) after one line on stderr: bad
    input is a message, not a traceback."""
    try:
        return run(), None
    except tuple(kind for kind, _, _ in failures) as e:
        _, status, message = next(f for f in failures if isinstance(e, f[0]))
        _say(command, message(e))
        return None, status


def _eval(config: EvalConfig) -> int:
    """Run `axpo eval`; bad input and missing data are one-line errors, not tracebacks. With
    --rescore it scores saved answers again; with --paper-table and no --model it only reads
    output_dir's results; neither runs a model."""
    from agents.vllm_engine import EngineError
    from axpo_env.errors import DatasetError
    from evaluation.evaluate import EvalError, run_eval
    from evaluation.report import markdown

    failures: _Failures = [
        (EvalError, 2, lambda e: f"error: {e}"),
        (DatasetError, 1, lambda e: f"dataset error: {e}"),
        (EngineError, 1, lambda e: f"error: {e}; finished episodes are saved in "
         f"{config.output_dir}. Run the same command again to continue."),
        (KeyboardInterrupt, 130, lambda e: f"interrupted; finished episodes are saved in "
         f"{config.output_dir}. Run the same command again to continue."),
    ]
    if config.rescore or not config.model:
        return _eval_offline(config, [*failures[:2], (OSError, 1, lambda e: f"error: {e}"),
                                      (KeyboardInterrupt, 130, lambda e: "interrupted")])
    _say("eval", f"scoring answers in {config.scoring} mode"
         + (" (each benchmark's published rules)" if config.scoring == "official" else
            " (axpo's lenient rules; not comparable with published numbers)"))
    report, status = _guard("eval", lambda: run_eval(config), failures)
    if status is not None:
        return status
    print(markdown(report))
    if report.paper is not None:
        print("\n" + report.paper.markdown())
    errors = report.average.get("errors", 0)
    if errors:
        _say("eval", f"{errors} episode(s) ended in an error and count as wrong (see 'error' in "
             "results.jsonl); --retry-errors runs them again.")
    extra = ", paper_table.md/.json" if report.paper is not None else ""
    _say("eval", f"results, summary.md/.csv/.json{extra} and plots/ are in {config.output_dir}")
    return 0


def _eval_offline(config: EvalConfig, failures: _Failures) -> int:
    """`axpo eval --rescore DIR [--paper-table S]` or `axpo eval --paper-table S` (no model):
    what a finished eval's saved results give, without running anything."""
    from evaluation.rescore import offline

    if config.rescore and config.model:
        _say("eval", "--rescore runs no model: --model is not used")
    done, status = _guard("eval", lambda: offline(config), failures)
    if status is not None:
        return status
    print(done[0])
    _say("eval", done[1])
    return 0


def _view(path: str, out: str | None) -> int:
    """`axpo view`: write the report, print its path; bad input is a one-line error."""
    from axpo_view import ViewError, write_report  # no torch: a report needs none

    target, status = _guard("view", lambda: write_report(path, out), [
        (ViewError, 2, lambda e: f"error: {e}"),
        (OSError, 1, lambda e: f"error: cannot write the report ({e})"),
    ])
    if status is None:
        print(target)
    return status or 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `axpo` console script."""
    # A task or reward module of the user's folder (`--env-id my_task:Env-v0`, `--reward-funcs
    # my_rewards:f`) imports as under `python -m`; after site-packages, so it shadows nothing.
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    command, algo, config = parse(argv)
    if command == "view":
        return _view(config["path"], config["out"])
    if command == "train":
        return _train(algo, config)
    if command == "eval":
        return _eval(config)
    _sft(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
