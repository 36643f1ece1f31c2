"""Bad input: exit code != 0, one-line reason on stderr, nothing written. Runs without torch."""
import json
import os

import pytest

from .conftest import run_cli, write_bundle


def _err(r):
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert lines, "expected an error line on stderr"
    assert lines[-1].startswith("trainer: error: ")
    return lines[-1]


def test_missing_bundle(tmp_path):
    r = run_cli("train", str(tmp_path / "nope"), str(tmp_path / "out"))
    assert r.returncode == 2
    assert "bundle not found" in _err(r)
    assert not (tmp_path / "out").exists()


def test_empty_bundle(tmp_path):
    (tmp_path / "b").mkdir()
    r = run_cli("train", str(tmp_path / "b"), str(tmp_path / "out"))
    assert r.returncode == 2 and "empty" in _err(r)


def test_missing_job(tmp_path):
    b = write_bundle(str(tmp_path / "b"), base=False)
    os.remove(os.path.join(b, "job.json"))
    r = run_cli("validate", b)
    assert r.returncode == 2 and "job.json" in _err(r)


def test_malformed_jsonl_has_line_number(tmp_path):
    b = write_bundle(str(tmp_path / "b"), pairs=[{"anchor": "a", "positive": "b"}, '{"anchor": "x", "positive": ', {"anchor": "c", "positive": "d"}], base=False)
    r = run_cli("train", b, str(tmp_path / "out"))
    assert r.returncode == 2
    e = _err(r)
    assert "pairs.jsonl:2" in e and "malformed" in e
    assert not (tmp_path / "out").exists()


def test_empty_text(tmp_path):
    b = write_bundle(str(tmp_path / "b"), pairs=[{"anchor": "a", "positive": "b"}, {"anchor": "  ", "positive": "d"}], base=False)
    r = run_cli("validate", b)
    assert r.returncode == 2 and "pairs.jsonl:2" in _err(r) and "empty" in _err(r)


def test_empty_pairs(tmp_path):
    b = write_bundle(str(tmp_path / "b"), pairs=[], base=False)
    r = run_cli("validate", b)
    assert r.returncode == 2 and "pairs.jsonl is empty" in _err(r)


def test_eval_unknown_id(tmp_path):
    b = write_bundle(str(tmp_path / "b"), queries=[{"query": "q", "relevant": ["nope"]}], base=False)
    r = run_cli("validate", b)
    assert r.returncode == 2 and "eval.jsonl:1" in _err(r)


def test_bad_job_values(tmp_path):
    b = write_bundle(str(tmp_path / "b"), job={"loss": "triplet"}, base=False)
    r = run_cli("validate", b)
    assert r.returncode == 2 and "loss" in _err(r)
    b = write_bundle(str(tmp_path / "c"), job={"batch_size": 0}, base=False)
    r = run_cli("validate", b)
    assert r.returncode == 2 and "batch_size" in _err(r)


@pytest.mark.parametrize("job,word", [
    ({"soup": 0}, "soup"), ({"soup": 9}, "soup"), ({"soup": 1.5}, "soup"), ({"scale": 0}, "scale"),
    ({"directions": ["doc_to_query"]}, "query_to_doc"), ({"directions": ["query_to_doc", "sideways"]}, "directions"),
    ({"directions": []}, "directions"), ({"partition_mode": "both"}, "partition_mode"),
    ({"directions": ["query_to_doc", "doc_to_doc"], "partition_mode": "per_direction"}, "per_direction"),
    ({"hardness": {"mode": "harder"}}, "hardness"), ({"hardness": {"strength": -1}}, "hardness.strength"),
    ({"hardness": 3}, "hardness"), ({"engine": "turbo"}, "engine"), ({"bucket": "yes"}, "bucket"),
    ({"merge_columns": 1}, "merge_columns"), ({"pad_to": -1}, "pad_to"), ({"pad_to": "32"}, "pad_to"),
    ({"int8_eval_queries": 1.5}, "int8_eval_queries"), ({"int8_eval_corpus": -5}, "int8_eval_corpus"),
])
def test_bad_loss_and_soup_values(tmp_path, job, word):
    b = write_bundle(str(tmp_path / "b"), job=job, base=False)
    r = run_cli("validate", b)
    assert r.returncode == 2 and word in _err(r), _err(r)


@pytest.mark.parametrize("job,word", [
    ({"sweep": {"lr": []}}, "sweep.lr"), ({"sweep": {"epochs": "sometimes"}}, "sweep.epochs"),
    ({"sweep": {"select": "median"}}, "sweep.select"), ({"sweep": {"val_fraction": 1}}, "val_fraction"),
    ({"sweep": "on"}, "'sweep' must be"), ({"sweep": True, "soup": 2}, "alternatives"),
    ({"embed_corpus": "yes"}, "embed_corpus"), ({"embed_corpus": {"dtype": "int8"}}, "embed_corpus.dtype"),
    ({"embed_corpus": {"batch_size": 0}}, "embed_corpus.batch_size"), ({"embed_corpus": {"fast": 1}}, "unknown"),
])
def test_bad_sweep_and_embed_values(tmp_path, job, word):
    """job.json sweep / embed_corpus: exit 2 and exactly one stderr line naming the key."""
    b = write_bundle(str(tmp_path / "b"), job=job, base=False)
    r = run_cli("validate", b)
    assert r.returncode == 2 and word in _err(r), _err(r)
    assert len([l for l in r.stderr.splitlines() if l.strip()]) == 1


def test_missing_base(tmp_path):
    b = write_bundle(str(tmp_path / "b"), base=False)
    r = run_cli("validate", b)
    assert r.returncode == 2 and "base" in _err(r)


def test_output_exists(tmp_path):
    b = write_bundle(str(tmp_path / "b"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("keep")
    r = run_cli("train", b, str(out))
    assert r.returncode == 2 and "output exists" in _err(r)
    assert (out / "x").read_text() == "keep"


def test_validate_ok(tmp_path):
    b = write_bundle(str(tmp_path / "b"))
    r = run_cli("validate", b)
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout.strip().splitlines()[-1])
    assert ev["event"] == "valid" and ev["pairs"] == 64 and ev["base"].endswith(os.path.join("base", "pytorch"))
