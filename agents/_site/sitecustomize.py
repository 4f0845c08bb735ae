"""Run at the start of every Python process whose PYTHONPATH has this folder (vLLM's engine and
registry processes, see `agents.torchvision_free.child_env`)."""

from agents.torchvision_free import install

install()
