"""Which envs an `axpo eval` covers (`resolve_envs`) and per-env option pairs (`pairs`)."""

from __future__ import annotations

from collections.abc import Sequence

from evaluation.results import EvalError


def resolve_envs(names: Sequence[str]) -> list[str]:
    """Env ids to evaluate, in order; an unknown id is an `EvalError` listing the registered.
    `module:Env-v0` (Gymnasium's form) imports `module` first, which registers the env."""
    import importlib

    from axpo_env import registered_envs
    from axpo_env.tasks import PAPER_BENCHMARKS, PAPER_GROUPS

    plain = []
    for name in names:
        module, colon, env_id = name.rpartition(":")
        if colon:
            try:
                importlib.import_module(module)
            except Exception as e:  # the user's module: any error importing it is theirs
                raise EvalError(f"{name}: cannot import {module} ({type(e).__name__}: {e})"
                                ) from None
        plain.append(env_id if colon else name)
    names = plain
    known = registered_envs()
    groups = {"all": known, "paper": list(PAPER_BENCHMARKS),
              **{name: list(ids) for name, ids in PAPER_GROUPS.items()}}
    out: list[str] = []
    for name in names:
        for env_id in groups.get(name, [name]):
            if env_id not in known:
                raise EvalError(f"unknown env {env_id!r}. Registered envs: {', '.join(known)} "
                                "(or 'paper', 'reasoning', 'perception', 'search', 'all').")
            if env_id not in out:
                out.append(env_id)
    return out


def pairs(values: Sequence[str] | None, envs: Sequence[str], flag: str,
           bare_for_all: bool) -> dict[str, str]:
    """ENV=VALUE pairs by env; a bare VALUE applies to every env (or to the only one)."""
    out: dict[str, str] = {}
    for value in values or []:
        env, eq, rest = value.partition("=")
        if not eq:
            if not bare_for_all and len(envs) != 1:
                raise EvalError(f"{flag} {value}: several envs are evaluated, so write ENV=PATH "
                                f"pairs (envs: {', '.join(envs)})")
            out.update({e: value for e in envs})
        elif env not in envs:
            raise EvalError(f"{flag} {value}: {env!r} is not among the evaluated envs "
                            f"({', '.join(envs)})")
        else:
            out[env] = rest
    return out
