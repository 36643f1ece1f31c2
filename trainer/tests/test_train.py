"""End-to-end training on the tiny fixture model (torch required; GPU used when present), and how a soup's
side-by-side members fail: stand-in members (module-level functions here, which spawned processes import by name)
take the place of train._member_main."""
import contextlib
import json
import os
import signal
import time

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
    # a bundle smaller than the int8 sample: the int8 model is scored on the whole eval set, against eval_after
    assert rep["int8_sample"]["full"] is True and rep["int8_sample"]["fp32"] == rep["eval_after"]
    # nothing half-written left beside the output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "model"]


def test_eval_sample_is_seeded_and_keeps_the_relevant_passages():
    from trainer.evaluate import eval_sample

    corpus = [{"id": f"d{i}", "text": f"t{i}"} for i in range(100)]
    queries = [{"id": f"q{i}", "query": f"q{i}", "relevant": [f"d{i}", f"d{(i + 50) % 100}"]} for i in range(40)]
    q, c, info = eval_sample(queries, corpus, 7, 10, 30)
    assert info == {"n_queries": 10, "n_corpus": 30, "of_queries": 40, "of_corpus": 100, "seed": 7, "full": False}
    assert len(q) == 10 and len(c) == 30 and len({x["id"] for x in c}) == 30
    ids = {x["id"] for x in c}
    assert all(r in ids for x in q for r in x["relevant"])  # 20 relevant + 10 distractors
    assert [x["id"] for x in q] == sorted((x["id"] for x in q), key=lambda s: int(s[1:]))  # input order kept
    assert [x["id"] for x in c] == sorted(ids, key=lambda s: int(s[1:]))
    assert (q, c) == eval_sample(queries, corpus, 7, 10, 30)[:2]
    assert (q, c) != eval_sample(queries, corpus, 8, 10, 30)[:2]
    # more relevant passages than the corpus limit: all of them, no distractors
    q2, c2, info2 = eval_sample(queries, corpus, 7, 20, 30)
    assert info2["n_corpus"] == 40 and {r for x in q2 for r in x["relevant"]} == {x["id"] for x in c2}
    # limits of 0, or at least the set's size: everything
    for lim in ((0, 0), (40, 100), (1000, 5000)):
        q3, c3, info3 = eval_sample(queries, corpus, 7, *lim)
        assert q3 == queries and c3 == corpus and info3["full"] is True


@needs_torch
def test_int8_eval_on_a_sample_and_fast_engine_padding(tmp_path):
    """int8_eval_queries/int8_eval_corpus below the eval set's size: the PyTorch model and the int8 ONNX are both
    scored on one seeded sample (its sizes in the report, card and event) and int8_metric_loss is their difference;
    eval_after stays the full set. The fast engine reports its padding (pad_to) and the widths it ran."""
    b = write_bundle(str(tmp_path / "b"), job={"engine": "fast", "int8_eval_queries": 2, "int8_eval_corpus": 4})
    out = tmp_path / "model"
    r = run_cli("train", b, str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    events = [json.loads(l) for l in r.stdout.strip().splitlines()]
    rep = json.loads((out / "train_report.json").read_text())
    card = json.loads((out / "model_card.json").read_text())
    s = rep["int8_sample"]
    assert {k: s[k] for k in ("n_queries", "n_corpus", "of_queries", "of_corpus", "full")} == {
        "n_queries": 2, "n_corpus": 4, "of_queries": 3, "of_corpus": 8, "full": False}
    assert card["eval"]["int8_sample"]["n_corpus"] == 4 and card["eval"]["int8"] == rep["eval_int8"]
    assert rep["int8_metric_loss"] == {k: s["fp32"][k] - rep["eval_int8"][k] for k in s["fp32"]}
    assert card["eval"]["n_queries"] == 3 and card["eval"]["n_corpus"] == 8  # eval.after: the whole set
    ev = [e for e in events if e["event"] == "eval" and e["when"] == "int8"]
    assert len(ev) == 1 and ev[0]["n_queries"] == 2 and ev[0]["n_corpus"] == 4
    t = rep["timings"]
    assert t["engine"] == "fast" and t["pad_to"] == 32 and t["distinct_widths"] >= 1 and t["eval_int8"] >= 0


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
        # -ww: unlimited width (piped, ps cuts args at 80 columns, before "spawn_main" under a long interpreter path)
        r = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True)
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


@pytest.mark.parametrize("value", [-1, "10", True])
def test_bad_soup_stall_seconds(tmp_path, value):
    b = write_bundle(str(tmp_path / "b"), job={"soup_stall_seconds": value}, base=False)
    r = run_cli("validate", b)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("trainer: error: job.json: 'soup_stall_seconds' must be"), r.stderr


def test_soup_stall_seconds_default_and_value(tmp_path):
    for job, want in (({}, 0), ({"soup_stall_seconds": 900}, 900)):
        b = write_bundle(str(tmp_path / f"b{want}"), job=job)
        r = run_cli("validate", b)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout.strip().splitlines()[-1])["job"]["soup_stall_seconds"] == want


# --- soup members that misbehave, trained side by side in spawned processes (train._soup_parallel) ---

def _member_reports_or_exits(bundle_path, member, seed, device, state_path, q, threads=0):
    """Member 0 reports its result and exits at once; member 1 logs a step and exits with code 0, never
    reporting its result (as when a message is lost, e.g. one its queue could not pickle)."""
    import torch

    if member == 0:
        torch.save({"w": torch.full((2,), float(seed))}, state_path)
        q.put(("done", member, {"member": member, "seed": seed, "state": state_path,
                                "eval_after": {"ndcg@10": 0.5, "recall@10": 0.5, "mrr@10": 0.5}}))
    else:
        q.put(("log", member, {"step": 1, "total": 2, "loss": 1.0, "lr": 0.0, "epoch": 0.5}))


def _member_reports(bundle_path, member, seed, device, state_path, q, threads=0):
    """Both members report and exit at once: their results are often read after they have exited."""
    import torch

    torch.save({"w": torch.full((2,), float(seed))}, state_path)
    q.put(("log", member, {"step": 1, "total": 1, "loss": 1.0, "lr": 0.0, "epoch": 1.0, "threads": threads}))
    q.put(("done", member, {"member": member, "seed": seed, "state": state_path,
                            "eval_after": {"ndcg@10": 0.5, "recall@10": 0.5, "mrr@10": 0.5}}))


def _member_stalls(bundle_path, member, seed, device, state_path, q, threads=0):
    """Logs a step, then hangs; dumps its stacks on SIGUSR1 as the real member does."""
    from trainer.train import dump_stacks_on_sigusr1

    dump_stacks_on_sigusr1()
    q.put(("log", member, {"step": 1, "total": 2, "loss": 1.0, "lr": 0.0, "epoch": 0.5}))
    time.sleep(600)


@contextlib.contextmanager
def _deadline(secs):
    """Fail instead of hanging: the soup loop used to wait forever for a member that exited with code 0."""
    def on_alarm(*_):
        raise TimeoutError(f"_soup_parallel still waiting after {secs} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(secs)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _soup_with(monkeypatch, tmp_path, member_main, events, **job):
    """train._soup_parallel (2 CPU members side by side, seeds 3 and 4) with `member_main` as the members' code."""
    import multiprocessing
    import types

    from trainer import train

    monkeypatch.setattr(train, "_member_main", member_main)
    tracker = train._SoupProgress(2, lambda **kw: events.append(kw), [])
    try:
        with _deadline(90):
            return train._soup_parallel(types.SimpleNamespace(path=str(tmp_path)), {"seed": 3, **job}, "cpu", 2, 2,
                                        str(tmp_path / "model"), tracker, lambda **kw: events.append(kw))
    finally:
        # members stopped and reaped, their scratch directory gone
        assert multiprocessing.active_children() == []
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".soup-")]


@needs_torch
def test_soup_member_exiting_without_its_result_fails_the_job(monkeypatch, tmp_path):
    """A member whose process ends without having reported its result fails the job even with exit code 0, after
    what it did send has been read: one line naming the member, its seed and its exit code."""
    events: list[dict] = []
    with pytest.raises(RuntimeError) as e:
        _soup_with(monkeypatch, tmp_path, _member_reports_or_exits, events)
    assert str(e.value) == "soup member 1 (seed 4) exited with code 0 without reporting its result"
    assert any(ev["event"] == "progress" and ev["member"] == 1 for ev in events)


@needs_torch
def test_soup_members_exiting_right_after_their_result_succeed(monkeypatch, tmp_path):
    import torch

    events: list[dict] = []
    reports = _soup_with(monkeypatch, tmp_path, _member_reports, events)
    assert [r["seed"] for r in reports] == [3, 4]
    assert [float(r["state"]["w"][0]) for r in reports] == [3.0, 4.0]
    assert sorted(ev["seed"] for ev in events if ev.get("when") == "member") == [3, 4]
    # CPU members split this process's torch threads between them
    cores = min(torch.get_num_threads(), len(os.sched_getaffinity(0)))
    assert {ev["threads"] for ev in events if ev["event"] == "progress"} == {max(1, cores // 2)}


@needs_torch
def test_soup_stall_guard_dumps_the_members_stacks_and_fails(monkeypatch, tmp_path, capfd):
    t = time.time()
    with pytest.raises(RuntimeError) as e:
        _soup_with(monkeypatch, tmp_path, _member_stalls, [], soup_stall_seconds=4)
    assert str(e.value) == ("soup members 0 (seed 3), 1 (seed 4) sent nothing for 4 s (job soup_stall_seconds); "
                            "their Python stacks are on stderr above")
    assert time.time() - t < 60
    err = capfd.readouterr().err
    assert err.count("in _member_stalls") == 2, err[-3000:]


@needs_torch
def test_run_cli_timeout_reports_the_stacks_of_the_trainer_and_its_members(tmp_path):
    """A trainer run that overstays its test's timeout is killed with its members, and the failure shows where each
    process was (SIGUSR1 -> faulthandler in the trainer and in each member)."""
    b = write_bundle(str(tmp_path / "b"), job={"soup": 2, "soup_concurrency": 2, "epochs": 5000, "seed": 3})
    # 60 s: far from the end of training, and long enough for both members to be training even on a busy box
    with pytest.raises(pytest.fail.Exception) as e:
        run_cli("train", b, str(tmp_path / "model"), env={"CUDA_VISIBLE_DEVICES": ""}, timeout=60)
    msg = str(e.value)
    assert "timed out after 60 s" in msg and "--- processes then ---" in msg
    assert "in _soup_parallel" in msg, msg[-6000:]  # the trainer's own stack
    assert msg.count("in _member_main") >= 2, msg[-6000:]  # and each member's
    # and nothing of it is left running
    pids = [int(line.split()[0]) for line in msg.split("--- processes then ---\n")[1].split("\n--- ")[0].splitlines()]
    assert len(pids) >= 3
    t = time.time()
    while time.time() - t < 10 and any(_running(pid) for pid in pids):
        time.sleep(0.2)
    assert not [pid for pid in pids if _running(pid)]


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
