import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(REPO, "test", "fixtures", "models", "tiny")


# A trainer run that takes longer than this fails its test, with every Python stack of the trainer and its soup
# members (they dump them on SIGUSR1) in the failure report. TRAINER_TEST_CLI_TIMEOUT overrides it.
CLI_TIMEOUT = float(os.environ.get("TRAINER_TEST_CLI_TIMEOUT") or 420)
_terminated: list[int] = []  # set once this pytest got SIGTERM (e.g. from `timeout`) while a trainer ran


class _Terminated(Exception):
    pass


def _process_tree(root: int) -> list[str]:
    """`ps` lines of `root`'s process group (started as its own session, it keeps orphaned grandchildren) and of its
    descendants by parent pid, root first."""
    r = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,pgid=,stat=,etime=,args="], capture_output=True, text=True)
    rows = {}
    for line in r.stdout.splitlines():
        f = line.split(None, 5)
        if len(f) >= 5 and f[0].isdigit():
            rows[int(f[0])] = (int(f[1]), int(f[2]), line.strip())
    keep = [pid for pid, (_, pgid, _) in rows.items() if pgid == root or pid == root]
    todo = list(keep)
    while todo:  # `ps --ppid`, recursively
        parent = todo.pop()
        for pid, (ppid, _, _) in rows.items():
            if ppid == parent and pid not in keep:
                keep.append(pid)
                todo.append(pid)
    keep.sort(key=lambda pid: (pid != root, pid))
    return [rows[pid][2] for pid in keep]


def _dump_and_kill(p: subprocess.Popen) -> tuple[str, str, str]:
    """SIGUSR1 to the trainer and everything it started, one process at a time so that their dumps do not interleave
    (the trainer and its soup members print every thread's stack to stderr; a process without that handler, such as
    multiprocessing's resource tracker, just dies), then SIGKILL to all. Returns (ps listing, stdout, stderr)."""
    import signal
    import time

    tree = _process_tree(p.pid)
    pids = [int(line.split()[0]) for line in tree]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGUSR1)
        except OSError:
            pass
        time.sleep(0.3)
    time.sleep(0.5)
    for kill in [lambda: os.killpg(p.pid, signal.SIGKILL)] + [lambda pid=pid: os.kill(pid, signal.SIGKILL) for pid in pids]:
        try:
            kill()
        except OSError:
            pass
    try:
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = "", "(no output: the pipes stayed open after the kill)"
    return "\n".join(tree), out or "", err or ""


def _stacks(err: str) -> str:
    """The faulthandler dumps in `err`, without the log lines written between them."""
    import re

    out, inside = [], False
    for line in err.splitlines():
        if re.match(r"(Current thread|Thread) 0x[0-9a-f]+ \(most recent call first\):$", line):
            inside = True
            out.append(("\n" if out else "") + line)
        elif inside and line.startswith("  "):
            out.append(line)
        else:
            inside = False
    return "\n".join(out)


def run_cli(*args, env=None, timeout=None):
    """`python -m trainer ARGS` in the repo root: a CompletedProcess (returncode, stdout, stderr). A run past
    `timeout` (CLI_TIMEOUT) fails the test with the process tree, the Python stacks of the trainer and its members and
    the tail of their output."""
    import signal
    import threading

    if _terminated:
        pytest.exit("pytest got SIGTERM while a trainer ran (see that test's failure)", returncode=1)
    timeout = CLI_TIMEOUT if timeout is None else timeout
    e = dict(os.environ)
    e.update(env or {})
    cmd = [sys.executable, "-m", "trainer", *args]
    # its own session: one process group for the trainer, its soup members and their children, even orphaned ones
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
                         start_new_session=True)

    def on_term(signum, frame):
        _terminated.append(signum)
        raise _Terminated()

    main = threading.current_thread() is threading.main_thread()  # only there can a signal handler be set
    old = signal.signal(signal.SIGTERM, on_term) if main else None
    why = None
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        why = f"timed out after {timeout:g} s"
    except _Terminated:
        why = "interrupted: pytest got SIGTERM"
    except BaseException:
        _dump_and_kill(p)
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)
    if why is None:
        return subprocess.CompletedProcess(cmd, p.returncode, out, err)
    tree, out, err = _dump_and_kill(p)
    pytest.fail(f"python -m trainer {' '.join(args)}: {why}\n--- processes then ---\n{tree}\n"
                f"--- stdout tail ---\n{out[-2000:]}\n--- stderr tail ---\n{err[-3000:]}\n"
                f"--- Python stacks (SIGUSR1), process by process in the order above ---\n{_stacks(err)[-60000:]}",
                pytrace=False)


def pytest_runtest_setup(item):
    if _terminated:  # stop here: the test that was running has reported the trainer's stacks
        pytest.exit("pytest got SIGTERM while a trainer ran (see that test's failure)", returncode=1)


def write_bundle(d, pairs=None, queries=None, corpus=None, job=None, base=True):
    import shutil

    os.makedirs(d, exist_ok=True)
    corpus = corpus if corpus is not None else [
        {"id": f"d{i}", "text": t} for i, t in enumerate([
            "The process of cell division in which chromosomes separate.",
            "Binding to a DNA sequence that regulates transcription.",
            "The membrane that surrounds the mitochondrion.",
            "Any process that decreases the rate of protein synthesis.",
            "The chemical reactions resulting in the breakdown of glucose.",
            "A complex of proteins that degrades ubiquitinated proteins.",
            "Movement of ions across a membrane through a channel.",
            "The formation of new blood vessels from existing ones.",
        ])]
    if pairs is None:
        qs = ["cell division", "dna binding transcription regulator", "mitochondrial membrane",
              "negative regulation of translation", "glucose catabolism", "proteasome complex",
              "ion channel transport", "angiogenesis"]
        pairs = [{"anchor": q, "positive": corpus[i]["text"]} for i, q in enumerate(qs)] * 8
    if queries is None:
        queries = [{"query": "chromosome separation", "relevant": ["d0"]},
                   {"query": "breakdown of glucose", "relevant": ["d4"]},
                   {"query": "new blood vessel formation", "relevant": ["d7"]}]
    for name, rows in (("pairs.jsonl", pairs), ("eval.jsonl", queries), ("corpus.jsonl", corpus)):
        with open(os.path.join(d, name), "w") as f:
            for r in rows:
                f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    j = {"loss": "mnrl", "batch_size": 8, "epochs": 1, "lr": 1e-4, "seed": 1, "max_seq_length": 64, "gpu": "auto"}
    j.update(job or {})
    with open(os.path.join(d, "job.json"), "w") as f:
        json.dump(j, f)
    if base:
        shutil.copytree(TINY, os.path.join(d, "base"), dirs_exist_ok=True)
    return d


def have_torch():
    # found, not imported: importing sentence-transformers takes seconds, and the soup tests' spawned stand-in
    # members import this module too
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "sentence_transformers"))


needs_torch = pytest.mark.skipif(not have_torch(), reason="needs torch + sentence-transformers")
