"""evaluation: run a policy over benchmark envs and report Pass@1/Pass@k and tool use.

    from evaluation import EvalConfig, run_eval

    report = run_eval(EvalConfig(model="http://localhost:8000/v1", envs=["paper"], samples=4))

Beside `algorithms` (training), on top of `agents` and `axpo_env`: `evaluate` runs episodes
(resumable, batched), `envs` names the envs a run covers, `results` is the results.jsonl record,
`report` the tables and plots, `metrics` the estimators (pass@k, the Thinking-Acting Gap) that
training logs too; `paper_table` puts the AXPO paper's Pass@4 beside a run's (`--paper-table`),
`rescore` scores a finished run's saved answers again without a model (`--rescore DIR`).
Names are imported on first use; evaluating a server's model needs no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EvalConfig": "evaluation.evaluate", "EvalError": "evaluation.results",
    "run_eval": "evaluation.evaluate", "resolve_envs": "evaluation.evaluate",
    "Report": "evaluation.report", "summarize": "evaluation.report",
    "markdown": "evaluation.report", "pass_at_k": "evaluation.metrics",
    "thinking_acting_gap": "evaluation.metrics",
    "PaperTable": "evaluation.paper_table", "rescore": "evaluation.rescore",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
