"""The one small error hierarchy of axpo_env.

Two audiences: `ToolCallError` carries a message *for the agent* (the env turns it into a tool
message and the episode goes on); every other `AxpoError` is for the programmer and says what to do.
"""

from __future__ import annotations


class AxpoError(Exception):
    """Base of every error axpo raises on purpose."""


class ToolCallError(AxpoError):
    """A tool call the agent got wrong; the message is shown to the agent, so keep it short."""


class ToolNotFoundError(AxpoError, LookupError):
    """A tool name that is neither built in, registered, nor shipped under our entry-point group."""


class EpisodeEndedError(AxpoError, RuntimeError):
    """`step()` after the episode terminated or was truncated."""


class SnapshotError(AxpoError, ValueError):
    """A snapshot restored into an env of another id or task, or a corrupt snapshot."""


class DatasetError(AxpoError, FileNotFoundError):
    """A benchmark's data is missing or not in its published schema."""


class ModelLoadError(AxpoError, ValueError):
    """A model spec (`agents.load_policy`) that names no loadable checkpoint or reachable server."""
