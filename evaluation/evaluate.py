"""`axpo eval`: run every item of each benchmark env k times and report Pass@1/Pass@k and tool use.

Answers are scored in each task's official mode (the benchmark's published rules, quirks
included) unless `scoring="lenient"`; the mode is recorded per env and printed with the table.

Episodes go through `agents.rollout` in batches and stream, one batch at a time, to
`<output_dir>/results.jsonl`, so an interrupted run picks up where it stopped: finished episodes are
never recomputed and never lost. Each env's first line in that file records the settings its
results depend on; resuming with other settings is refused rather than mixing two evaluations.
`paper_table` prints the AXPO paper's Pass@4 beside the run's (`evaluation.paper_table`);
`rescore` and a `paper_table` without a model read a finished run only (`evaluation.rescore`).

An episode is identified by (env, task id, sample). Its env seed is `seed + j` with
`j = item * samples + sample`, whatever the batch size or `--limit`; with a local model the
sampling seed is fixed per aligned block of `batch_size` episodes, so a resumed run reproduces an
uninterrupted one exactly at the same batch size. A server samples with its own randomness (one
seed for every request would make the k samples of an item identical on vLLM).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import shutil
import sys
import typing
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym

from agents.loading import VLLM, is_server, is_tiny, load_policy
from axpo_env.config_fields import (
    ToolCallFormat,
    check,
    config_field,
    documented,
    string_list,
    tool_call_format_field,
)
from axpo_env.errors import ModelLoadError
from axpo_env.protocol import check_tool_call_format
from axpo_env.tasks import SCORING_MODES, load_task_class
from evaluation.envs import pairs as _pairs
from evaluation.envs import resolve_envs
from evaluation.report import Report, report_files, summarize, write_report
from evaluation.results import EvalError, ResultsFile, check_settings

__all__ = ["EvalConfig", "EvalError", "make_policy", "resolve_envs", "run_eval"]
RESULTS = "results.jsonl"
OWN_RULE = "own rule"  # the scoring of a task that has no official/lenient modes


@documented
@dataclass
class EvalConfig:
    """Configuration of `axpo eval`: which model, which benchmark envs, how many samples."""

    model: str = config_field(
        "", "Checkpoint directory or hub name (loaded with HFPolicy.from_pretrained), an "
        "OpenAI-compatible server URL such as http://localhost:8000/v1 (OpenAIPolicy), "
        "'vllm:PATH' (the checkpoint on an in-process vLLM engine: VLLMPolicy), or 'tiny' "
        "for the embedded tiny model (smoke tests only). Required.", "model")
    render_tools: bool | None = config_field(
        None, "Put the env's tool schemas in the prompt. None: as the checkpoint records it "
        "(axpo sft/train write it beside the weights; a model from elsewhere: yes), so the model "
        "is evaluated on the prompt it was trained on. Local and vLLM models only.", "model")
    envs: list[str] = config_field(
        ["paper"], "Benchmark env ids, comma-separated; 'paper' means the AXPO paper's nine "
        "benchmarks in its order (MathVision, DynaMath, Math-VR; V*, VisualProbe, HR-Bench 4K/8K; "
        "HR-MMSearch, MMSearch); 'reasoning', 'perception', 'search' one of its groups; 'all' "
        "every registered axpo env (MathVista, MathVerse, We-Math, plugins and ToolArith too).",
        "model")
    split: list[str] | None = config_field(
        None, "Split to evaluate: one name for every env, or ENV=SPLIT pairs. None: each task's "
        "default split (MathVista: testmini).", "model")
    data_dir: list[str] | None = config_field(
        None, "ENV=PATH pairs (a folder/file in the benchmark's published layout, or a hub name); "
        "a bare PATH when one env is evaluated. None: each task's bundled fixture.", "model")
    tools: list[str] | None = config_field(
        None, "Tool names the agent may call. None: each task's default tools.", "model")
    scoring: Literal["official", "lenient"] = config_field(
        "official", "How answers are scored. official: the verdict each benchmark's published "
        "scoring code gives on the extracted answer, quirks included, so numbers compare with "
        "published ones; lenient: axpo's tolerant rules (the RL training reward). Each task "
        "module's docstring names the upstream file and commit and every lenient deviation.",
        "model")
    tool_call_format: ToolCallFormat = tool_call_format_field(
        "model", "The envs read the model's calls in this format and word their prompt for it "
        "(ToolUseEnv(tool_call_format=...)); a server URL's native tool_calls are converted "
        "from and to it.")
    max_turns: int = config_field(
        8, "Agent turns per episode (as ToolUseEnv's default). An episode that has not answered "
        "by then is truncated and scored wrong.", "model")
    served_model_name: str | None = config_field(
        None, "Model name to request from a server URL. None: the first model the server's "
        "/models lists.", "model")
    api_key: str | None = config_field(
        None, "Bearer token for a server URL. None: $OPENAI_API_KEY if set.", "model")
    device: str | None = config_field(
        None, "Device of a local model, e.g. cuda or cuda:1. None: cuda when available, else cpu.",
        "model")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = config_field(
        "auto", "Weights' dtype for a local model. auto: bfloat16 on a GPU, float32 on a CPU.",
        "model")
    samples: int = config_field(
        4, "Episodes per item (k): Pass@1 and Pass@k use the unbiased estimator over them "
        "(Chen et al., 2021).", "generation")
    max_completion_length: int = config_field(
        512, "New tokens per turn (thinking plus one tool call or answer); also --max-new-tokens. "
        "Thinking models need several thousand.", "generation")
    temperature: float = config_field(
        1.0, "Sampling temperature. 1.0 samples from the model's own distribution, which Pass@k "
        "over several samples needs; use the model card's values for published numbers.",
        "generation")
    top_p: float = config_field(1.0, "Nucleus sampling mass in (0, 1]; 1.0 is off.", "generation")
    top_k: int = config_field(0, "Sample from the k most likely tokens; 0 is off.", "generation")
    batch_size: int = config_field(
        16, "Episodes advanced together (one batched generate per turn); also how many episodes "
        "each write to results.jsonl holds.", "generation")
    request_timeout: float = config_field(
        600.0, "Seconds to wait for one server response (long thinking turns are slow).",
        "generation")
    limit: int | None = config_field(
        None, "Evaluate only the first N items of each env. None: every item of the split.",
        "data")
    seed: int = config_field(0, "Seed of the episodes and of local sampling.", "data")
    output_dir: str = config_field(
        "runs/eval", "Where results.jsonl, summary.md/.csv/.json and plots/ go.", "logging")
    resume: bool = config_field(
        True, "Reuse the finished episodes in output_dir/results.jsonl (refused if they were run "
        "with other settings); --no-resume starts over: it deletes the files an earlier axpo "
        "eval wrote there (results.jsonl, summary.md/.csv/.json, paper_table.md/.json, its charts "
        "in plots/, trajectories/episodes.jsonl, and the rescored-<mode>/ folders of axpo eval "
        "--rescore, which rescored those results) and nothing else; saved images stay, and a "
        "trajectories folder holding a training run's records is refused.", "logging")
    retry_errors: bool = config_field(
        False, "On resume, run again the episodes that ended in an error (a server outage, a "
        "corrupt image) instead of keeping them as wrong answers.", "logging")
    save_trajectories: bool = config_field(
        False, "Also save every episode's turns and tool images to output_dir/trajectories/ "
        "for `axpo view` (images once each, by content hash; README gives the cost).", "logging")
    paper_table: Literal["2B", "4B", "8B"] | None = config_field(
        None, "After the eval, print the AXPO paper's Pass@4 per benchmark at this scale (Base, "
        "+GRPO, +AXPO, from the authors' page) beside this run's Pass@4, averaged as the paper "
        "averages, and write paper_table.md/.json to output_dir. Without --model (and without "
        "--rescore) it only reads output_dir's finished results: nothing runs.", "logging",
        aliases={"2b": "2B", "4b": "4B", "8b": "8B"})
    rescore: str | None = config_field(
        None, "Output dir of a finished eval: score its saved answers again in --scoring mode "
        "with the current scorers, without a model, and print what changed. The original stays "
        "as it is; the rescored results and summaries go to --output-dir if it is set to "
        "another folder, else to DIR/rescored-<mode>/.", "logging")

    def __post_init__(self) -> None:
        for name in _list_fields():
            setattr(self, name, string_list(name, getattr(self, name)))
        if isinstance(self.paper_table, str):
            self.paper_table = self.paper_table.upper()  # type: ignore[assignment]
        check(self.paper_table in (None, "2B", "4B", "8B"),
              f"paper_table must be 2B, 4B or 8B, got {self.paper_table!r}")
        check(bool(self.model) or bool(self.rescore) or self.paper_table is not None,
              "model is required: a checkpoint path, a hub name, an OpenAI-compatible URL "
              "(http://host:port/v1) or 'tiny' (or --rescore DIR, or --paper-table alone to "
              "read output_dir's finished results)")
        check(bool(self.envs), "envs must name at least one env (or 'paper', 'all')")
        for name, low in (("samples", 1), ("max_turns", 1), ("max_completion_length", 1),
                          ("batch_size", 1)):
            check(getattr(self, name) >= low, f"{name} must be >= {low}, got "
                   f"{getattr(self, name)}")
        check(self.limit is None or self.limit >= 1, f"limit must be >= 1, got {self.limit}")
        check(self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}")
        check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        check(self.top_k >= 0, f"top_k must be >= 0 (0 turns it off), got {self.top_k}")
        check(self.request_timeout > 0, "request_timeout must be > 0")
        check(self.scoring in SCORING_MODES,
               f"scoring must be one of {list(SCORING_MODES)}, got {self.scoring!r}")
        check_tool_call_format(self.tool_call_format)  # a ValueError naming the formats
        choices = ("auto", "bfloat16", "float16", "float32")
        check(self.dtype in choices, f"dtype must be one of {list(choices)}, got {self.dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@functools.cache
def _list_fields() -> tuple[str, ...]:
    """The fields typed `list[str]` (or `list[str] | None`)."""
    hints = typing.get_type_hints(EvalConfig)
    return tuple(f.name for f in dataclasses.fields(EvalConfig)
                 if list[str] in (hints[f.name], *typing.get_args(hints[f.name])))


# ------------------------------------------------------------------------------- policy


def model_id(config: EvalConfig) -> str:
    """What identifies the model in the results: an absolute path, a hub name, or URL#name."""
    if is_server(config.model):
        return f"{config.model.rstrip('/')}#{config.served_model_name or ''}"
    engine, spec = (VLLM, config.model[len(VLLM):]) if config.model.startswith(VLLM) \
        else ("", config.model)
    path = Path(spec).expanduser()
    return engine + (str(path.resolve()) if path.exists() and not is_tiny(spec) else spec)


def make_policy(config: EvalConfig) -> Any:
    """The policy `config.model` names (`agents.load_policy`: HFPolicy for a path, hub name or
    'tiny'; OpenAIPolicy for an http(s) URL); one that loads nothing is an `EvalError`."""
    try:
        return load_policy(config.model, device=config.device or "auto", dtype=config.dtype,
                           render_tools=config.render_tools,
                           api_key=config.api_key, served_model_name=config.served_model_name,
                           timeout_s=config.request_timeout, max_workers=config.batch_size,
                           tool_call_format=config.tool_call_format)
    except ModelLoadError as e:
        raise EvalError(str(e)) from None


# ------------------------------------------------------------------------------- the run


@dataclass
class _Bench:
    """One env's items and the settings its results depend on."""

    env_id: str
    make: Any  # () -> gym.Env sharing one loaded Task
    task_ids: list[str]
    settings: dict[str, Any]


def _load_bench(env_id: str, config: EvalConfig, split: str | None, data_dir: str | None
                ) -> _Bench:
    """Load the env's task once (a DatasetError surfaces here, before any model is loaded)."""
    kwargs: dict[str, Any] = {"max_turns": config.max_turns}
    if config.tools is not None:
        kwargs["tools"] = list(config.tools)
    if config.tool_call_format != "hermes":  # a plugin env need not take the keyword
        kwargs["tool_call_format"] = config.tool_call_format
    scoring = config.scoring if _has_scoring_modes(env_id) else OWN_RULE
    options = {"scoring": scoring} if scoring != OWN_RULE else {}
    first = gym.make(env_id, split=split, data_dir=data_dir, task_options=options, **kwargs)
    task = first.unwrapped.task
    ids = task.task_ids
    first.close()
    if config.limit is not None:
        ids = ids[:config.limit]
    local = data_dir is not None and Path(data_dir).expanduser().exists()
    settings = {
        "model": model_id(config), "split": task.split,
        "data_dir": str(Path(data_dir).expanduser().resolve()) if local else data_dir,
        "tools": config.tools, "max_turns": config.max_turns, "samples": config.samples,
        "max_completion_length": config.max_completion_length,
        "temperature": config.temperature, "top_p": config.top_p, "top_k": config.top_k,
        "seed": config.seed, "scoring": scoring,
    }
    if config.render_tools is not None:  # only when set: results of earlier evals still resume
        settings["render_tools"] = config.render_tools
    if config.tool_call_format != "hermes":  # likewise: absent for the default
        settings["tool_call_format"] = config.tool_call_format
    return _Bench(env_id, lambda: gym.make(env_id, task=task, **kwargs), ids, settings)


def _has_scoring_modes(env_id: str) -> bool:
    """Whether the env's task takes `scoring=` (a plugin task may define its own __init__)."""
    task = gym.spec(env_id).kwargs.get("task")
    try:
        cls = load_task_class(task) if isinstance(task, str) else task
        params = inspect.signature(cls.__init__).parameters.values()
    except (TypeError, ValueError, ImportError, AttributeError):
        return False
    return any(p.name == "scoring" or p.kind is p.VAR_KEYWORD for p in params)


def _blocks(pending: set[int], total: int, size: int) -> Iterator[list[int]]:
    """Pending episode numbers in aligned blocks of `size`, split where a finished one sits,
    so each rollout call covers consecutive episode numbers (their env seeds follow)."""
    for start in range(0, total, size):
        run: list[int] = []
        for j in range(start, min(start + size, total)):
            if j in pending:
                run.append(j)
            elif run:
                yield run
                run = []
        if run:
            yield run


class _EnvPool:
    """Envs reused from batch to batch (rollout closes the envs it is given; these stay open)."""

    def __init__(self, make: Any):
        self._make, self.envs = make, []

    def factory(self) -> Any:
        handed = iter(range(1 << 30))

        def make() -> Any:
            i = next(handed)
            while len(self.envs) <= i:
                self.envs.append(_Kept(self._make()))
            return self.envs[i]
        return make

    def close(self) -> None:
        for e in self.envs:
            e.env.close()


class _Kept(gym.Wrapper):
    def close(self) -> None:  # closed by _EnvPool.close after the env's last episode
        pass


def run_eval(config: EvalConfig, policy: Any = None, progress: bool = True) -> Report:
    """Evaluate `policy` (default: `make_policy(config)`) on every env of `config` and write
    results.jsonl, summary.md/.csv/.json and plots/ under `config.output_dir`."""
    envs = resolve_envs(config.envs)
    splits = _pairs(config.split, envs, "--split", bare_for_all=True)
    dirs = _pairs(config.data_dir, envs, "--data-dir", bare_for_all=False)
    benches = [_load_bench(e, config, splits.get(e), dirs.get(e)) for e in envs]
    if not config.resume:
        _start_over(Path(config.output_dir))
    file = ResultsFile(Path(config.output_dir) / RESULTS, config.resume)
    try:
        for b in benches:
            check_settings(file, b.env_id, b.settings)
        pending = {b.env_id: _pending(b, config, file) for b in benches}
        if policy is None and any(pending.values()):  # nothing left to run: no model needed
            policy = make_policy(config)
        for b in benches:
            _run_bench(b, config, policy, file, pending[b.env_id], progress)
    finally:
        file.close()
    rows = []
    for b in benches:
        done = file.episodes(b.env_id)
        rows += [done[(t, s)] for t in b.task_ids for s in range(config.samples)]
    report = summarize(rows, config.samples, envs)
    report.scoring = {b.env_id: b.settings["scoring"] for b in benches}
    write_report(report, Path(config.output_dir), config.to_dict())
    if config.paper_table:
        from evaluation import paper_table

        report.paper = paper_table.build(config.paper_table, rows,
                                         {b.env_id: b.settings for b in benches})
        report.paper.write(config.output_dir)
    return report


def _start_over(out: Path) -> None:
    """--no-resume: delete what an earlier `axpo eval` wrote in `out` (results, summaries,
    charts, trajectory records), so neither the new summary nor `axpo view` shows a stale
    episode or chart. Only files the eval writes go: trajectory records that a training run
    wrote there are refused, not deleted; saved images (shared, named by content) stay. The
    `rescored-<mode>/` folders of `axpo eval --rescore` go too: they hold verdicts of results
    that no longer exist, and rescoring again costs seconds, no model."""
    from axpo_view.record import FOLDER, RECORDS, only_eval_records
    from evaluation.rescore import stale_rescores

    if not only_eval_records(out / FOLDER):
        raise EvalError(f"{out / FOLDER} holds records axpo eval does not write (a training "
                        "run's trajectories); --no-resume would delete them. Use another "
                        "--output-dir.")
    old = [p for p in (out / RESULTS, out / FOLDER / RECORDS) if p.is_file()]
    old += report_files(out)
    for p in old:
        p.unlink()
    for folder in stale_rescores(out):  # rescores of the results just deleted
        shutil.rmtree(folder)
        old.append(folder)
    if old:
        print(f"axpo eval: --no-resume: starting over; deleted the last run's "
              f"{', '.join(str(p.relative_to(out)) for p in old)} in {out}", file=sys.stderr)


def _pending(b: _Bench, config: EvalConfig, file: ResultsFile) -> set[int]:
    """Episode numbers j (item j // k, sample j % k) that have no result yet."""
    k, done = config.samples, file.episodes(b.env_id)
    return {j for j in range(len(b.task_ids) * k)
            if (r := done.get((b.task_ids[j // k], j % k))) is None
            or (config.retry_errors and r.get("error"))}


def _run_bench(b: _Bench, config: EvalConfig, policy: Any, file: ResultsFile,
               pending: set[int], progress: bool) -> None:
    from tqdm.auto import tqdm

    from agents.policy import SamplingParams, TokenPolicy
    from agents.rollout import rollout
    from axpo_view.record import record_eval

    k, total = config.samples, len(b.task_ids) * config.samples
    if file.settings(b.env_id) is None:
        file.append([{"type": "config", "env": b.env_id, "config": b.settings}])
    seeded = isinstance(policy, TokenPolicy)
    salt = zlib.crc32(b.env_id.encode()) % 1_000_003
    pool = _EnvPool(b.make)
    bar = tqdm(total=total, initial=total - len(pending), desc=b.env_id, unit="ep",
               disable=not progress)
    try:
        for block in _blocks(pending, total, config.batch_size):
            sampling = SamplingParams.of(
                config, seed=config.seed + salt + block[0] - block[0] % config.batch_size
                if seeded else None)
            trajs = rollout(pool.factory(), policy, [j // k for j in block], group_size=1,
                            sampling=sampling, seed=config.seed + block[0],
                            batch_size=len(block), progress=False)
            file.append([_row(b, j, k, config.seed, t) for j, t in zip(block, trajs)])
            if config.save_trajectories:  # for `axpo view`
                record_eval(config.output_dir, pool.envs[0], [j % k for j in block], trajs)
            bar.update(len(block))
    finally:
        bar.close()
        pool.close()


def _row(b: _Bench, j: int, k: int, seed: int, traj: Any) -> dict[str, Any]:
    """One finished episode as a results.jsonl line."""
    info, last = traj.info, traj.turns[-1] if traj.turns else None
    return {
        "type": "episode", "env": b.env_id, "task_id": b.task_ids[j // k], "index": j // k,
        "sample": j % k, "seed": seed + j,
        "correct": bool(info.get("correct")) and traj.error is None,
        "reward": float(traj.reward), "answer": info.get("answer"),
        "tool_calls": int(info.get("tool_calls", 0)),
        "tool_errors": int(info.get("tool_errors", 0)),
        "format_errors": int(info.get("format_errors", 0)), "turns": len(traj.turns),
        "truncated": bool(last and last.truncated), "error": traj.error,
        "response": last.completion.text[-2000:] if last else None,
    }
