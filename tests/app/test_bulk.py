"""Bulk runs (``predict --output``, ``embed``): order and values against the in-memory runner and
the models themselves, bad files, the output formats, resume (also after a real kill) and torchrun."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, REPO
from convnext_app.bulk import BulkJob, run_bulk
from convnext_app.bulk.files import image_paths
from convnext_app.bulk.outputs import Row, VectorPart
from convnext_app.cli import main
from convnext_app.inference import (
    batched_logits, default_model_dir, load_classifier, load_processor, softmax,
)

ROOT = REPO
HF_CLASSIFIER = FIXTURES / "hf-convnext"


def _photos(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` images of different sizes and formats cut from the fixture photos, in sub-folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    sources = [Image.open(FIXTURES / "images" / n).convert("RGB") for n in ("china.jpg", "flower.png")]
    for i in range(count):
        src = sources[i % 2]
        w, h = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        x, y = int(rng.integers(0, src.width - 200)), int(rng.integers(0, src.height - 200))
        img = src.crop((x, y, x + 200, y + 200)).resize((w, h))
        sub = folder / ("a" if i % 3 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        img.save(sub / f"img{i:03d}.{'jpg' if i % 2 else 'png'}")
    return folder


def _broken(folder: Path) -> list[str]:
    """A zero-byte file, a truncated JPEG and a text file named .jpg; their paths."""
    good = next(folder.rglob("*.jpg")).read_bytes()
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "notes.jpg").write_text("not an image\n")
    return [str(folder / n) for n in ("notes.jpg", "truncated.jpg", "zero.jpg")]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_same_results(a: list[dict], b: list[dict], tol: float = 1e-6) -> None:
    assert [r["path"] for r in a] == [r["path"] for r in b]
    for x, y in zip(a, b):
        assert ("error" in x) == ("error" in y), x["path"]
        if "error" not in x:
            assert x["labels"] == y["labels"], x["path"]
            np.testing.assert_allclose(x["probabilities"], y["probabilities"], atol=tol)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return _photos(tmp_path_factory.mktemp("photos"), 14)


@pytest.mark.parametrize("workers", [pytest.param(0, marks=pytest.mark.slow), 2])
def test_predict_output_matches_in_memory_runner_in_order(photos, tmp_path, workers):
    out = tmp_path / "out.jsonl"
    paths = image_paths([photos])
    summary = run_bulk(BulkJob("predict", default_model_dir(), paths, out, batch_size=4, workers=workers,
                               top_k=10, progress=False))
    assert (summary.images, summary.failed) == (len(paths), 0)
    classifier = load_classifier(default_model_dir())
    (logits,) = batched_logits([classifier], load_processor(default_model_dir()), [Path(p) for p in paths],
                               batch_size=5)
    probs = softmax(logits)
    rows = _jsonl(out)
    assert [r["path"] for r in rows] == paths
    for row, p in zip(rows, probs):
        order = np.argsort(-p, kind="stable")
        assert row["labels"] == [classifier.labels[j] for j in order]
        np.testing.assert_allclose(row["probabilities"], p[order], atol=1e-6)


@pytest.mark.tf
@pytest.mark.slow
def test_keras_twin_through_the_worker_pool_matches_in_memory_runner(photos, tmp_path):
    out = tmp_path / "out.jsonl"
    paths = image_paths([photos])
    run_bulk(BulkJob("predict", default_model_dir(), paths, out, framework="tf", batch_size=8, workers=1,
                     top_k=10, progress=False))
    classifier = load_classifier(default_model_dir(), "tf")
    (logits,) = batched_logits([classifier], load_processor(default_model_dir()), [Path(p) for p in paths])
    probs = softmax(logits)
    rows = _jsonl(out)
    assert [r["path"] for r in rows] == paths
    for row, p in zip(rows, probs):
        np.testing.assert_allclose(row["probabilities"], np.sort(p)[::-1], atol=1e-5)


def test_broken_files_become_error_rows(tmp_path, capsys):
    folder = _photos(tmp_path / "mixed", 4)
    bad = _broken(folder)
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(folder), "--output", str(out), "--workers", "1", "-q"]) == 0
    rows = {r["path"]: r for r in _jsonl(out)}
    assert len(rows) == 7
    for path in bad:
        assert set(rows[path]) == {"path", "error"} and path in rows[path]["error"]
        assert "\n" not in rows[path]["error"]
    assert "truncated" in rows[str(folder / "truncated.jpg")]["error"]
    assert "empty" in rows[str(folder / "zero.jpg")]["error"]
    assert sum("error" in r for r in rows.values()) == 3


def test_truncated_jpeg_fails_in_workers_even_if_the_caller_allows_truncation(tmp_path):
    from PIL import ImageFile

    folder = _photos(tmp_path / "p", 2)
    _broken(folder)
    out = tmp_path / "out.jsonl"
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        run_bulk(BulkJob("predict", default_model_dir(), [str(folder / "truncated.jpg")], out, workers=1,
                         progress=False))
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    assert "truncated" in _jsonl(out)[0]["error"]


def test_exit_status_when_every_image_fails_and_with_strict(tmp_path, capsys):
    folder = tmp_path / "bad"
    _photos(folder, 2)
    bad = _broken(folder)
    out = tmp_path / "out.jsonl"
    assert main(["predict", *bad, "--output", str(out), "--workers", "0"]) == 1
    assert "3 images, 3 failed" in capsys.readouterr().err
    good = [str(p) for p in folder.rglob("img*")]
    out2 = tmp_path / "strict.jsonl"
    assert main(["predict", *good, bad[0], *good, "--output", str(out2), "--workers", "0", "--strict"]) == 1
    err = capsys.readouterr().err
    assert bad[0] in err and len(err.strip().splitlines()) == 1
    assert [r["path"] for r in _jsonl(out2)] == good  # the rows before the failure are kept


def test_csv_and_parquet_hold_the_jsonl_rows(photos, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    folder = tmp_path / "p"
    shutil.copytree(photos, folder)
    _broken(folder)
    paths = image_paths([folder])
    outs = {}
    for ext in ("jsonl", "csv", "parquet"):
        outs[ext] = tmp_path / f"out.{ext}"
        run_bulk(BulkJob("predict", default_model_dir(), paths, outs[ext], workers=0, top_k=3, progress=False))
    reference = _jsonl(outs["jsonl"])
    with open(outs["csv"], newline="") as f:
        table = list(csv.DictReader(f))
    from_csv = [{"path": r["path"], "error": r["error"]} if r["error"] else
                {"path": r["path"], "labels": [r[f"label_{i}"] for i in (1, 2, 3)],
                 "probabilities": [float(r[f"probability_{i}"]) for i in (1, 2, 3)]} for r in table]
    _assert_same_results(from_csv, reference, tol=0)
    from_parquet = [{k: v for k, v in r.items() if v is not None}
                    for r in pq.read_table(outs["parquet"]).to_pylist()]
    _assert_same_results(from_parquet, reference, tol=0)
    assert not list(tmp_path.glob("*.partial*"))


def test_existing_output_is_kept_without_resume_or_overwrite(photos, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    out.write_text("")
    assert main(["predict", str(photos), "--output", str(out), "-q"]) == 1
    assert "--resume" in capsys.readouterr().err


def test_resume_discards_a_partial_line_and_appends_the_rest(photos, tmp_path):
    paths = image_paths([photos])
    full = tmp_path / "full.jsonl"
    run_bulk(BulkJob("predict", default_model_dir(), paths, full, workers=0, batch_size=4, progress=False))
    lines = full.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2])  # a kill in the middle of a line
    summary = run_bulk(BulkJob("predict", default_model_dir(), paths, cut, workers=0, batch_size=4, resume=True,
                               progress=False))
    assert summary.processed == len(paths) - 5 and summary.images == len(paths)
    _assert_same_results(_jsonl(cut), _jsonl(full))


@pytest.mark.parametrize("ext", [".npy", pytest.param(".safetensors", marks=pytest.mark.slow),
                                 pytest.param(".parquet", marks=pytest.mark.slow)])
def test_embedding_resume_from_a_journal_cut_mid_batch(photos, tmp_path, ext):
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    paths = image_paths([photos])[:7]
    full = tmp_path / f"full{ext}"
    run_bulk(BulkJob("embed", HF_CLASSIFIER, paths, full, workers=0, batch_size=4, progress=False))
    # a journal as a killed run leaves it: three rows, then half a vector and half an index line
    out = tmp_path / f"cut{ext}"
    reference = _read_embeddings(full, ext)
    part = VectorPart(Path(f"{out}.partial"), reference[0].shape[1], resume=False)
    part.append([Row(p, vector=v) for p, v in zip(paths[:3], reference[0][:3])])
    part.close()
    with open(f"{out}.partial.f32", "ab") as f:
        f.write(reference[0][3].tobytes()[:100])
    with open(f"{out}.partial.index.jsonl", "a") as f:
        f.write('{"path": "x", "ro')
    run_bulk(BulkJob("embed", HF_CLASSIFIER, paths, out, workers=0, batch_size=4, resume=True, progress=False))
    vectors, names = _read_embeddings(out, ext)
    assert names == reference[1]
    np.testing.assert_allclose(vectors, reference[0], atol=1e-6)
    assert not list(tmp_path.glob("*.partial*"))


def _read_embeddings(out: Path, ext: str) -> tuple[np.ndarray, list[str]]:
    if ext == ".npy":
        index = _jsonl(out.with_suffix(".index.jsonl"))
        vectors = np.load(out)
        assert [r["row"] for r in index if "row" in r] == list(range(len(vectors)))
        return vectors, [r["path"] for r in index if "row" in r]
    if ext == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(out), "np") as f:
            return f.get_tensor("embeddings"), json.loads(f.metadata()["paths"])
    import pyarrow.parquet as pq

    rows = [r for r in pq.read_table(out).to_pylist() if r["error"] is None]
    return np.array([r["embedding"] for r in rows], np.float32), [r["path"] for r in rows]


@pytest.mark.parametrize("framework", ["pt", pytest.param("tf", marks=[pytest.mark.tf, pytest.mark.slow])])
@pytest.mark.parametrize("folder,stage", [("hf-convnext", None), ("hf-convnext-backbone", 2),
                                          pytest.param("hf-convnext-base", None, marks=pytest.mark.slow),
                                          pytest.param("hf-convnextv2", 4, marks=pytest.mark.slow)])
def test_embeddings_equal_the_base_model_outputs(photos, tmp_path, framework, folder, stage):
    import torch

    from convnext_pt import AutoModel

    source = FIXTURES / folder
    paths = image_paths([photos])[:6]
    out = tmp_path / "emb.npy"
    run_bulk(BulkJob("embed", source, paths, out, framework=framework, workers=0, stage=stage, normalize=True,
                     progress=False))
    vectors, names = _read_embeddings(out, ".npy")
    assert names == paths and vectors.dtype == np.float32
    pixels = load_processor(source)([__import__("PIL.Image").Image.open(p).convert("RGB") for p in paths],
                                    return_tensors="np")["pixel_values"]
    model = AutoModel.from_pretrained(source).eval()
    with torch.no_grad():
        o = model(torch.from_numpy(pixels), output_hidden_states=True)
    expected = (o.pooler_output if stage is None else o.hidden_states[stage].mean((2, 3))).numpy()
    expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-4 if framework == "tf" else 1e-5)


def test_backbone_without_stage_is_refused_in_one_line(photos, tmp_path, capsys):
    code = main(["embed", str(photos), "--model", str(FIXTURES / "hf-convnext-backbone"), "--output",
                 str(tmp_path / "e.npy")])
    err = capsys.readouterr().err
    assert code == 1 and "--stage" in err and len(err.strip().splitlines()) == 1


def test_unknown_output_format_is_one_line(photos, tmp_path, capsys):
    assert main(["predict", str(photos), "--output", str(tmp_path / "x.txt")]) == 1
    assert ".jsonl, .csv, .parquet" in capsys.readouterr().err


# ---------------------------------------------------------------- real processes


def _child_env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    return env


def _default_signals() -> None:
    # a test run started in the background inherits SIGINT/SIGTERM ignored; the child gets the defaults
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("ext", [".jsonl", ".npy"])
def test_resume_after_a_real_kill_equals_an_uninterrupted_run(tmp_path, ext):
    folder = _photos(tmp_path / "photos", 60)
    _broken(folder)
    task = "predict" if ext == ".jsonl" else "embed"
    args = [sys.executable, "-m", "convnext_app", task, str(folder), "--model", str(HF_CLASSIFIER),
            "--batch-size", "2", "--workers", "1", "-q"]
    full = tmp_path / f"full{ext}"
    subprocess.run(args + ["--output", str(full)], env=_child_env(), check=True, timeout=300)
    out = tmp_path / f"killed{ext}"
    progress_file = out if ext == ".jsonl" else Path(f"{out}.partial.index.jsonl")
    child = subprocess.Popen(args + ["--output", str(out)], env=_child_env(), preexec_fn=_default_signals,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if progress_file.exists() and progress_file.read_text().count("\n") >= 10:
            break
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    written = progress_file.read_text().count("\n")
    assert 10 <= written < 63
    subprocess.run(args + ["--output", str(out), "--resume"], env=_child_env(), check=True, timeout=300)
    if ext == ".jsonl":
        _assert_same_results(_jsonl(out), _jsonl(full))
    else:
        assert _jsonl(out.with_suffix(".index.jsonl")) == _jsonl(full.with_suffix(".index.jsonl"))
        np.testing.assert_allclose(np.load(out), np.load(full), atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("task,ext", [("predict", ".csv"), ("embed", ".safetensors")])
def test_torchrun_two_processes_merge_to_the_single_process_result(tmp_path, task, ext):
    folder = _photos(tmp_path / "photos", 15)
    _broken(folder)
    common = [task, str(folder), "--model", str(HF_CLASSIFIER), "--batch-size", "3", "--workers", "0", "-q"]
    single = tmp_path / f"single{ext}"
    subprocess.run([sys.executable, "-m", "convnext_app", *common, "--output", str(single)], env=_child_env(),
                   check=True, timeout=300)
    merged = tmp_path / f"merged{ext}"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                f"--master_port={_free_port()}", "-m", "convnext_app"]
    subprocess.run(torchrun + common + ["--output", str(merged)], env=_child_env(), check=True, timeout=300,
                   preexec_fn=_default_signals)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["photos", single.name, merged.name])
    if ext == ".csv":
        a, b = (list(csv.reader(open(p, newline=""))) for p in (merged, single))
        assert [r[:4] + r[-1:] for r in a] == [r[:4] + r[-1:] for r in b]
        np.testing.assert_allclose(np.array([r[4:7] for r in a[1:] if not r[-1]], float),
                                   np.array([r[4:7] for r in b[1:] if not r[-1]], float), atol=1e-6)
    else:
        va, pa = _read_embeddings(merged, ext)
        vb, pb = _read_embeddings(single, ext)
        assert pa == pb and len(pa) == 15
        np.testing.assert_allclose(va, vb, atol=1e-6)
