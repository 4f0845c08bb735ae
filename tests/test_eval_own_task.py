"""`axpo eval --envs module:Env-v0` evaluates a task of the user's own module (Gymnasium's form),
and the eval's resume key includes an explicit --[no-]render-tools."""

from __future__ import annotations

import pytest

from evaluation.evaluate import EvalConfig, _load_bench, resolve_envs
from evaluation.results import EvalError

MODULE = '''
from axpo_env.tasks.quick import make_task

Mine = make_task("AXPOTest-OwnTask-v0",
                 [{"question": "1 + 1?", "answer": "2"}, {"question": "2 + 2?", "answer": "4"}])
'''


def test_a_module_env_id_imports_the_module_and_keeps_the_id(tmp_path, monkeypatch):
    (tmp_path / "own_task_mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_envs(["own_task_mod:AXPOTest-OwnTask-v0", "AXPO-ZoomBoxes-v0"]) == \
        ["AXPOTest-OwnTask-v0", "AXPO-ZoomBoxes-v0"]
    with pytest.raises(EvalError, match="no_such_mod_z:X-v0: cannot import no_such_mod_z"):
        resolve_envs(["no_such_mod_z:X-v0"])


def test_an_explicit_render_tools_is_part_of_the_settings_a_resume_must_match():
    def settings(**kw):
        return _load_bench("AXPO-ZoomBoxes-v0", EvalConfig(model="tiny", limit=1, **kw),
                           None, None).settings

    assert "render_tools" not in settings()  # results written before the field still resume
    assert settings(render_tools=False)["render_tools"] is False
