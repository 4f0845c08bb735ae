"""axpo_cli: the `axpo` command, above everything it dispatches.

    axpo train --algo axpo|grpo ...   -> algorithms.trainer.Trainer
    axpo sft ...                      -> algorithms.sft.train_sft
    axpo eval ...                     -> evaluation.run_eval
    axpo view PATH                    -> axpo_view.write_report

`cli` builds the parser from the config dataclasses; `fields` is how those dataclasses declare a
field (the one part the configs import, so it imports nothing of the project).
"""

from __future__ import annotations

from typing import Any

__all__ = ["main"]


def main(argv: Any = None) -> int:
    """Entry point of the `axpo` console script (see `axpo_cli.cli.main`)."""
    from axpo_cli.cli import main as run

    return run(argv)
