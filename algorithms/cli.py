"""Where the `axpo` console script pointed before the CLI moved up to `axpo_cli` (issue 16).

An install made before the move runs `algorithms.cli:main` until it is reinstalled
(`pip install -e .` writes `axpo_cli:main`); this keeps that script working meanwhile. Nothing
else imports it: delete it once no such install is left.
"""

from __future__ import annotations

from typing import Any


def main(argv: Any = None) -> int:
    from axpo_cli.cli import main as run

    return run(argv)
