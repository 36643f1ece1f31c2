"""End-to-end training on the tiny fixture model (torch required; GPU used when present)."""
import json
import os

import pytest

from .conftest import needs_torch, run_cli, write_bundle

REQUIRED = ["config.json", "tokenizer.json", "tokenizer_config.json", "onnx/model.onnx", "onnx/model_quantized.onnx",
            "pytorch/modules.json", "model_card.json", "train_report.json"]


@needs_torch
@pytest.mark.parametrize("loss", ["mnrl", "cached_mnrl"])
def test_train_writes_artifact(tmp_path, loss):
    b = write_bundle(str(tmp_path / "b"), job={"loss": loss, "mini_batch_size": 4})
    out = tmp_path / "model"
    r = run_cli("train", b, str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    events = [json.loads(l) for l in r.stdout.strip().splitlines()]  # stdout is pure JSON lines
    prog = [e for e in events if e["event"] == "progress"]
    assert prog and all({"step", "total", "loss"} <= e.keys() for e in prog)
    assert events[-1]["event"] == "done"
    for f in REQUIRED:
        assert (out / f).is_file(), f
    card = json.loads((out / "model_card.json").read_text())
    assert card["pooling"] == "mean" and card["normalize"] is True and card["dim"] == 64
    assert card["parent_version"] == "tiny-1" and card["training_data_hash"].startswith("sha256:")
    assert {"before", "after", "int8"} <= card["eval"].keys()
    rep = json.loads((out / "train_report.json").read_text())
    assert rep["onnx_parity_max_abs_diff"] < 1e-4 and rep["onnx_parity_n"] == 200
    assert rep["samples_per_second"] > 0 and rep["loss_curve"] and "ndcg@10" in rep["int8_metric_loss"]
    # nothing half-written left beside the output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "model"]


@needs_torch
def test_train_from_trained_artifact_and_hard_negatives(tmp_path):
    b = write_bundle(str(tmp_path / "b"), job={"hard_negatives": {"num_negatives": 1, "range_min": 0, "range_max": 5, "max_score": 1.0}})
    r = run_cli("train", b, str(tmp_path / "m1"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert any(json.loads(l)["event"] == "hard_negatives" for l in r.stdout.splitlines())
    # continue training from the produced artifact (its pytorch/ weights)
    import shutil

    shutil.rmtree(os.path.join(b, "base"))
    shutil.copytree(tmp_path / "m1", os.path.join(b, "base"))
    r = run_cli("train", b, str(tmp_path / "m2"))
    assert r.returncode == 0, r.stderr[-3000:]
    card = json.loads((tmp_path / "m2" / "model_card.json").read_text())
    assert card["parent_version"] == json.loads((tmp_path / "m1" / "model_card.json").read_text())["version"]


@needs_torch
def test_gpu_required_without_gpu(tmp_path):
    b = write_bundle(str(tmp_path / "b"), job={"gpu": "required"})
    r = run_cli("train", b, str(tmp_path / "out"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 3
    assert r.stderr.strip().splitlines()[-1].startswith("trainer: error: no CUDA GPU")
    assert not (tmp_path / "out").exists()


@needs_torch
def test_export_subcommand_rewrites_onnx_with_parity(tmp_path):
    import shutil

    from .conftest import TINY

    m = tmp_path / "m"
    shutil.copytree(TINY, m)
    (m / "onnx" / "model.onnx").unlink()
    r = run_cli("export", str(m))
    assert r.returncode == 0, r.stderr[-3000:]
    ev = json.loads(r.stdout.strip().splitlines()[-1])
    assert ev["event"] == "exported" and ev["onnx_parity_max_abs_diff"] < 1e-4
    assert (m / "onnx" / "model.onnx").is_file() and (m / "onnx" / "model_quantized.onnx").is_file()
    assert not any(p.name.endswith(".tmp") for p in (m / "onnx").iterdir())


@needs_torch
@pytest.mark.parametrize("concurrency", [1, 2])
def test_soup_is_the_average_of_its_members(tmp_path, concurrency):
    """soup: 2 trains seeds s and s+1 and serves their uniform weight average: it must equal the average of two
    single runs with those seeds (training is deterministic on CPU for a fixed seed), whether the members train
    one after the other in the trainer's process or side by side in their own processes."""
    import torch
    from safetensors.torch import load_file

    loss = {"directions": ["query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"],
            "hardness": {"mode": "in_batch_negatives", "strength": 5}, "scale": 30, "epochs": 2}
    env = {"CUDA_VISIBLE_DEVICES": ""}
    outs = {}
    for name, job in (("soup", {"soup": 2, "seed": 3, "soup_concurrency": concurrency}), ("s3", {"seed": 3}), ("s4", {"seed": 4})):
        b = write_bundle(str(tmp_path / f"b-{name}"), job={**loss, **job})
        r = run_cli("train", b, str(tmp_path / name), env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        outs[name] = [json.loads(l) for l in r.stdout.strip().splitlines()]
    w = {n: load_file(str(tmp_path / n / "pytorch" / "model.safetensors")) for n in outs}
    diff = max(float((w["soup"][k].float() - (w["s3"][k].float() + w["s4"][k].float()) / 2).abs().max()) for k in w["soup"])
    assert diff < 1e-5, diff
    assert max(float((w["s3"][k] - w["s4"][k]).abs().max()) for k in w["s3"]) > 1e-3  # the members do differ
    ev = outs["soup"]
    # concurrent members report in the order they finish
    members = sorted((e for e in ev if e["event"] == "eval" and e.get("when") == "member"), key=lambda e: e["seed"])
    assert [m["seed"] for m in members] == [3, 4]
    prog = [e for e in ev if e["event"] == "progress"]
    assert prog[-1]["step"] == prog[-1]["total"] and {p["member"] for p in prog} == {0, 1}
    rep = json.loads((tmp_path / "soup" / "train_report.json").read_text())
    assert [m["seed"] for m in rep["soup"]["members"]] == [3, 4] and rep["soup"]["concurrency"] == concurrency
    assert all("state" not in m for m in rep["soup"]["members"])
    assert rep["steps"] == sum(m["steps"] for m in rep["soup"]["members"])
    assert rep["loss_config"]["directions"][-1] == "doc_to_doc" and rep["loss_config"]["scale"] == 30.0
    # the member's own metrics match its single-seed twin
    single = [e for e in outs["s4"] if e["event"] == "eval" and e.get("when") == "after"][0]
    assert abs(members[1]["ndcg@10"] - single["ndcg@10"]) < 1e-6
    assert torch.isfinite(torch.tensor(rep["eval_after"]["ndcg@10"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b-s3", "b-s4", "b-soup", "s3", "s4", "soup"]


@needs_torch
def test_soup_member_killed_fails_the_job_cleanly(tmp_path):
    """A member process that dies (e.g. the OOM killer) fails the whole job with a one-line reason, the other
    member is stopped, and nothing is written: no artifact, no member weights left behind."""
    import signal
    import subprocess
    import sys
    import time

    from .conftest import REPO

    b = write_bundle(str(tmp_path / "b"), job={"soup": 2, "soup_concurrency": 2, "epochs": 40, "seed": 3})
    out = tmp_path / "model"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    p = subprocess.Popen([sys.executable, "-m", "trainer", "train", b, str(out)], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def children(pid):
        r = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True)
        return [int(l.split()[0]) for l in r.stdout.splitlines() if "spawn_main" in l]

    try:
        # wait until a member is training (its first progress line), then kill one member
        for line in p.stdout:
            if '"progress"' in line:
                break
        kids = children(p.pid)
        assert kids, "no member processes found"
        os.kill(kids[0], signal.SIGKILL)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("trainer: error: RuntimeError: soup member") and "exited with code -9" in last, last
    time.sleep(0.5)
    assert children(p.pid) == []
    assert sorted(x.name for x in tmp_path.iterdir()) == ["b"]
