"""Two CPU processes (gloo) run the same trainer code and stay in sync."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import hashlib, json, sys, torch
    sys.path[:0] = [sys.argv[2], sys.argv[2] + '/..']  # these tests, this checkout's code
    from test_trainer import make_policy
    from algorithms.config import GRPOConfig
    from algorithms.trainer import Trainer

    cfg = GRPOConfig(max_steps=1, tasks_per_step=2, num_generations=4, max_completion_length=8,
                     max_turns=1, task_ids=["13", "8"], tools=["calculator"],
                     output_dir=sys.argv[1], report_to=["jsonl"], save_steps=100,
                     learning_rate=1e-2, seed=3)
    trainer = Trainer("grpo", cfg, make_policy())
    before = hashlib.sha256(b"".join(v.numpy().tobytes() for v in
                                     trainer.policy.model.state_dict().values())).hexdigest()
    (metrics,) = trainer.train()
    after = hashlib.sha256(b"".join(v.detach().numpy().tobytes() for v in
                                    trainer.policy.model.state_dict().values())).hexdigest()
    acc = trainer.accelerator
    print("RESULT " + json.dumps({"rank": acc.process_index, "world": acc.num_processes,
                                  "before": before, "after": after,
                                  "trained": metrics["trained_rollouts"]}))
''')


def test_two_processes_train_in_sync(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", "29541", str(script), str(tmp_path / "out"), tests_dir],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(line.split("RESULT ", 1)[1]) for line in out.stdout.splitlines()
               if line.startswith("RESULT ")]
    assert sorted(r["rank"] for r in results) == [0, 1]
    assert all(r["world"] == 2 and r["trained"] == 4 for r in results)  # each its share
    assert results[0]["before"] != results[0]["after"]  # they learned...
    assert results[0]["after"] == results[1]["after"]  # ...the same weights (gloo all-reduce)


UPDATE_SCRIPT = textwrap.dedent('''
    import sys, torch
    sys.path[:0] = [sys.argv[2], sys.argv[2] + '/..']  # these tests, this checkout's code
    from test_trainer import config, hand_batch, make_policy, shared_prompt_rows
    from agents import tiny
    from agents.hf import HFPolicy

    tiny.cached('text')  # before the process group exists: then save_pretrained skips rank 1
    from algorithms.config import GRPOConfig
    from algorithms.grpo import TrainBatch
    from algorithms.trainer import Trainer

    def gradient(loss_type, share, size=2, accumulation=2, shared=False):
        """The all-reduced gradient of one update where this rank trains `share` of the rows
        (`shared`: the text model on rows that share prompts, the update's shared-prefix path)."""
        cfg = config(GRPOConfig, sys.argv[1], loss_type=loss_type, max_completion_length=4,
                     max_grad_norm=0.0, per_device_train_batch_size=size,
                     gradient_accumulation_steps=accumulation)
        policy = HFPolicy.from_pretrained(tiny.cached("text")) if shared else make_policy()
        trainer = Trainer("grpo", cfg, policy)
        seen = []
        trainer.optimizer.step = lambda *a, **k: seen.append(torch.cat(
            [(torch.zeros_like(p) if p.grad is None else p.grad).flatten().clone()
             for p in trainer.policy.model.parameters()]))
        rank = trainer.accelerator.process_index
        rows = shared_prompt_rows(trainer.policy) if shared else hand_batch(trainer.policy).samples
        samples = share(rows, rank)
        out = trainer.update(TrainBatch(samples, len(samples), int(sum(s.mask.sum()
                                                                      for s in samples))))
        assert out["optimizer_updates"] == 1 == len(seen), out
        return rank, seen[0]

    rank, split = gradient("grpo", lambda rows, r: rows[r::2])  # 2 rows and 1 row
    _, idle = gradient("dapo", lambda rows, r: rows if r == 0 else [])  # rank 1 has nothing
    _, shared = gradient("dapo", lambda rows, r: rows[r::2], 4, 3, shared=True)  # 4 rows each
    if rank == 0:
        torch.save({"split": split, "idle": idle, "shared": shared}, sys.argv[1] + "/grads.pt")
''')


def test_two_processes_update_like_one_and_an_idle_process_does_not_hang(tmp_path):
    import pytest
    import torch
    from test_trainer import update_gradient

    script = tmp_path / "update.py"
    script.write_text(UPDATE_SCRIPT)
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
             "--master_port", "29542", str(script), str(tmp_path), tests_dir],
            capture_output=True, text=True, timeout=240)  # a hang fails here, not forever
    except subprocess.TimeoutExpired:
        pytest.fail("a process with an empty batch left the other waiting in its backward")
    assert out.returncode == 0, out.stderr[-3000:]
    got = torch.load(tmp_path / "grads.pt")
    for key, loss_type, size, accumulation, rows in [("split", "grpo", 2, 2, None),
                                                     ("idle", "dapo", 2, 2, None),
                                                     ("shared", "dapo", 4, 3, "shared")]:
        # the same rows on one process, same micro-batch size: DDP's average of the two
        # ranks' gradients must be this one's (normalizers are summed over processes); in
        # "shared" a prompt's prefix pass runs outside DDP's forward, its gradient still syncs
        one = update_gradient(tmp_path / key, loss_type, size, accumulation, rows)
        torch.testing.assert_close(got[key], one, rtol=1e-4,
                                   atol=1e-5 * one.abs().max().item())
