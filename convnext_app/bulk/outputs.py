"""The output files of ``predict --output`` and ``embed --output``, written batch by batch.

Every run writes a *part*: the rows of its images, appended and flushed after each batch, so that a
killed run leaves every finished batch behind and at most one partial line, which the resume drops.

- ``.jsonl`` and ``.csv`` (predictions) are line files: the part is the output itself (under torchrun,
  one part per rank, concatenated in rank order at the end).
- ``.parquet`` (both tasks), ``.npy`` + ``NAME.index.jsonl`` and ``.safetensors`` (embeddings) cannot
  be appended to and stay valid, so the part is a journal beside the output (``OUT.partial.jsonl``;
  for vectors ``OUT.partial.f32`` + ``OUT.partial.index.jsonl``) and the output is written from the
  journals at the end, in chunks, beside its destination and renamed into place.

A prediction row is ``{"path", "labels", "probabilities"}`` (top-k, best first) or ``{"path",
"error"}``; an embedding row is the path and a float32 vector, or the path and an error.
"""

from __future__ import annotations

import csv
import io
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from convnext_common.fileio import writing

PREDICT_FORMATS = (".jsonl", ".csv", ".parquet")
EMBED_FORMATS = (".npy", ".safetensors", ".parquet")
PARQUET_MISSING = 'writing .parquet needs pyarrow: pip install "convnext-twins[parquet]"'
CHUNK_ROWS = 8192  # rows per parquet row group and per read when a journal becomes the output


class OutputError(ValueError):
    """An output file cannot be written or resumed; the message names it."""


@dataclass
class Row:
    """One image's result: ``error`` for a failed image, else the top-k or the vector."""

    path: str
    error: Optional[str] = None
    labels: Optional[list[str]] = None
    probabilities: Optional[list[float]] = None
    vector: Optional[np.ndarray] = None


@dataclass
class Counts:
    rows: int = 0
    failed: int = 0

    def add(self, other: "Counts") -> None:
        self.rows += other.rows
        self.failed += other.failed


def output_format(out: Path, task: str) -> str:
    """The format named by ``out``'s extension, checked against the task (``predict`` or ``embed``)."""
    suffix = out.suffix.lower()
    allowed = PREDICT_FORMATS if task == "predict" else EMBED_FORMATS
    if suffix not in allowed:
        raise OutputError(f"{out}: {task} writes {', '.join(allowed)} (chosen by the extension), not {suffix or 'no extension'!r}")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise OutputError(PARQUET_MISSING) from None
    return suffix


def index_path(out: Path) -> Path:
    """The paths that go with an ``.npy`` of vectors: ``NAME.index.jsonl``."""
    return out.with_suffix(".index.jsonl")


def part_base(out: Path, rank: int, world: int) -> Path:
    """Where a run (rank ``rank`` of ``world``) writes its part, without the journal's extension."""
    return Path(f"{out}.partial") if world == 1 else Path(f"{out}.part-{rank}-of-{world}")


def in_place(fmt: str) -> bool:
    """Whether the part of a single process is the output itself (line files)."""
    return fmt in (".jsonl", ".csv")


def part_files(out: Path, fmt: str, task: str, rank: int, world: int) -> list[Path]:
    base = part_base(out, rank, world)
    if in_place(fmt):
        return [out] if world == 1 else [base]
    if task == "predict":
        return [Path(f"{base}.jsonl")]
    return [Path(f"{base}.f32"), Path(f"{base}.index.jsonl")]


def final_files(out: Path, fmt: str) -> list[Path]:
    return [out, index_path(out)] if fmt == ".npy" else [out]


# ---------------------------------------------------------------- line files


def _complete_lines(path: Path) -> Iterator[str]:
    """The complete lines of ``path`` (a last line without its newline is cut off the file)."""
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        end = size
        while end > 0:  # find the last newline, reading backwards in blocks
            start = max(0, end - 65536)
            f.seek(start)
            block = f.read(end - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                end = start + cut + 1
                break
            end = start
        if end != size:
            f.truncate(end)
    with open(path, encoding="utf-8", newline="") as f:
        for line in f:
            yield line


class JsonlCodec:
    header: Optional[str] = None

    def __init__(self, top_k: int = 0):
        self.top_k = top_k

    def encode(self, row: Row) -> str:
        if row.error is not None:
            doc = {"path": row.path, "error": row.error}
        else:
            doc = {"path": row.path, "labels": row.labels, "probabilities": row.probabilities}
        return json.dumps(doc, ensure_ascii=False) + "\n"

    def decode(self, line: str, where: Path) -> tuple[str, bool]:
        try:
            doc = json.loads(line)
            return str(doc["path"]), "error" in doc
        except (ValueError, KeyError, TypeError):
            raise OutputError(f"{where}: not a results line of this command: {line[:80]!r}") from None


class CsvCodec:
    """``path, label_1..label_k, probability_1..probability_k, error``: one row per image, best first."""

    def __init__(self, top_k: int):
        self.top_k = top_k
        cols = ["path"] + [f"label_{i}" for i in range(1, top_k + 1)]
        cols += [f"probability_{i}" for i in range(1, top_k + 1)] + ["error"]
        self.columns = cols
        self.header = self._line(cols)

    @staticmethod
    def _line(cells: Sequence[str]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(cells)
        return buf.getvalue()

    def encode(self, row: Row) -> str:
        k = self.top_k
        if row.error is not None:
            return self._line([row.path] + [""] * (2 * k) + [row.error])
        return self._line([row.path, *row.labels, *(repr(p) for p in row.probabilities), ""])

    def decode(self, line: str, where: Path) -> tuple[str, bool]:
        cells = next(csv.reader([line]))
        if len(cells) != len(self.columns):
            raise OutputError(f"{where}: a row of {len(cells)} columns, expected {len(self.columns)} "
                              f"(was it written with another --top-k?)")
        return cells[0], cells[-1] != ""


class LinePart:
    """A part that is a line file (``.jsonl`` or ``.csv``; also the journal of a parquet output)."""

    def __init__(self, path: Path, codec, resume: bool):
        self.path = path
        self.codec = codec
        self.done: list[str] = []
        self.counts = Counts()
        if resume and path.exists():
            lines = _complete_lines(path)
            if codec.header is not None:
                first = next(lines, None)
                if first is not None and first != codec.header:
                    raise OutputError(f"{path}: its columns differ from this run's ({codec.header.strip()})")
            for line in lines:
                if line.strip():
                    p, failed = codec.decode(line, path)
                    self.done.append(p)
                    self.counts.rows += 1
                    self.counts.failed += failed
        with writing(path):
            self._file = open(path, "a" if resume else "w", encoding="utf-8", newline="")
            if codec.header is not None and self._file.tell() == 0:
                self._file.write(codec.header)
                self._file.flush()

    def append(self, rows: Sequence[Row]) -> None:
        with writing(self.path):
            self._file.write("".join(self.codec.encode(r) for r in rows))
            self._file.flush()
        for r in rows:
            self.counts.rows += 1
            self.counts.failed += r.error is not None

    def close(self) -> None:
        with writing(self.path):
            self._file.close()


# ---------------------------------------------------------------- vectors


class VectorPart:
    """A journal of vectors: ``BASE.f32`` (rows of float32) and ``BASE.index.jsonl`` (a first line
    ``{"dim": D}``, then per image ``{"path", "row"}`` or ``{"path", "error"}``). The vectors of a batch
    are flushed before its index lines, so every index line's row is on disk."""

    def __init__(self, base: Path, dim: int, resume: bool):
        self.vectors_path = Path(f"{base}.f32")
        self.index_path = Path(f"{base}.index.jsonl")
        self.dim = dim
        self.done: list[str] = []
        self.counts = Counts()
        self.vector_rows = 0
        if resume and self.index_path.exists():
            lines = _complete_lines(self.index_path)
            head = next(lines, None)
            if head is not None:
                found = json.loads(head).get("dim")
                if found != dim:
                    raise OutputError(f"{self.index_path}: vectors of {found} values, this run makes {dim} "
                                      f"(another --stage or model?)")
            for line in lines:
                doc = json.loads(line)
                self.done.append(doc["path"])
                self.counts.rows += 1
                if "error" in doc:
                    self.counts.failed += 1
                else:
                    self.vector_rows += 1
            with open(self.vectors_path, "ab") as f:
                f.truncate(self.vector_rows * dim * 4)
        else:
            resume = False
        with writing(self.vectors_path):
            self._vectors = open(self.vectors_path, "ab" if resume else "wb")
        with writing(self.index_path):
            self._index = open(self.index_path, "a" if resume else "w", encoding="utf-8")
            if self._index.tell() == 0:
                self._index.write(json.dumps({"dim": dim}) + "\n")
                self._index.flush()

    def append(self, rows: Sequence[Row]) -> None:
        vectors = [r.vector for r in rows if r.error is None]
        if vectors:
            with writing(self.vectors_path):
                self._vectors.write(np.ascontiguousarray(np.stack(vectors), dtype="<f4").tobytes())
                self._vectors.flush()
        lines = []
        for r in rows:
            if r.error is None:
                lines.append(json.dumps({"path": r.path, "row": self.vector_rows}, ensure_ascii=False) + "\n")
                self.vector_rows += 1
            else:
                lines.append(json.dumps({"path": r.path, "error": r.error}, ensure_ascii=False) + "\n")
                self.counts.failed += 1
            self.counts.rows += 1
        with writing(self.index_path):
            self._index.write("".join(lines))
            self._index.flush()

    def close(self) -> None:
        with writing(self.vectors_path):
            self._vectors.close()
        with writing(self.index_path):
            self._index.close()


def open_part(out: Path, fmt: str, task: str, rank: int, world: int, resume: bool, top_k: int = 0,
              dim: int = 0):
    """This run's part: appended batch by batch, resumed from what it already holds when ``resume``."""
    if task == "embed":
        return VectorPart(part_base(out, rank, world), dim, resume)
    codec = CsvCodec(top_k) if fmt == ".csv" else JsonlCodec(top_k)
    return LinePart(part_files(out, fmt, task, rank, world)[0], codec, resume)


# ---------------------------------------------------------------- the output from the parts


def _replace_into(tmp: Path, out: Path) -> None:
    os.replace(tmp, out)


def _tmp(out: Path) -> Path:
    return out.with_name(f".{out.name}.tmp-{os.getpid()}")


def finish(out: Path, fmt: str, task: str, world: int, top_k: int = 0) -> Counts:
    """Write ``out`` from the parts of all ``world`` runs (in rank order) and remove the parts; the
    row and failure counts of the output. A failure to write names ``out``; the parts stay for a resume."""
    parts = [part_files(out, fmt, task, r, world) for r in range(world)]
    with writing(out):
        try:
            if task == "embed":
                counts = _finish_vectors(out, fmt, [p[1] for p in parts], [p[0] for p in parts])
            elif fmt == ".parquet":
                counts = _finish_prediction_parquet(out, [p[0] for p in parts])
            elif world == 1:
                return Counts()  # the part is the output; the runner knows its counts
            else:
                counts = _concatenate_lines(out, [p[0] for p in parts],
                                            CsvCodec(top_k) if fmt == ".csv" else JsonlCodec())
        except BaseException:
            for partial in (_tmp(out), _tmp(index_path(out))):
                partial.unlink(missing_ok=True)
            raise
    for files in parts:
        for f in files:
            if f != out and f.exists():
                f.unlink()
    return counts


def _concatenate_lines(out: Path, parts: Sequence[Path], codec) -> Counts:
    counts = Counts()
    tmp = _tmp(out)
    with open(tmp, "w", encoding="utf-8", newline="") as dst:
        if codec.header is not None:
            dst.write(codec.header)
        for part in parts:
            lines = _complete_lines(part)
            if codec.header is not None:
                next(lines, None)
            for line in lines:
                _, failed = codec.decode(line, part)
                counts.rows += 1
                counts.failed += failed
                dst.write(line)
    _replace_into(tmp, out)
    return counts


def _jsonl_docs(paths: Sequence[Path]) -> Iterator[dict]:
    for path in paths:
        for line in _complete_lines(path):
            yield json.loads(line)


def _chunked(docs: Iterator[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _finish_prediction_parquet(out: Path, journals: Sequence[Path]) -> Counts:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("path", pa.string()), ("labels", pa.list_(pa.string())),
                        ("probabilities", pa.list_(pa.float64())), ("error", pa.string())])
    counts = Counts()
    tmp = _tmp(out)
    with pq.ParquetWriter(tmp, schema) as writer:
        for chunk in _chunked(_jsonl_docs(journals), CHUNK_ROWS):
            counts.rows += len(chunk)
            counts.failed += sum("error" in d for d in chunk)
            writer.write_table(pa.table({"path": [d["path"] for d in chunk],
                                         "labels": [d.get("labels") for d in chunk],
                                         "probabilities": [d.get("probabilities") for d in chunk],
                                         "error": [d.get("error") for d in chunk]}, schema=schema))
    _replace_into(tmp, out)
    return counts


def _vector_entries(indexes: Sequence[Path], vector_files: Sequence[Path]) -> tuple[int, Iterator[tuple[dict, Path]]]:
    dims = set()
    for index in indexes:
        with open(index, encoding="utf-8") as f:
            head = f.readline()
        dims.add(json.loads(head)["dim"] if head.strip() else None)
    dims.discard(None)
    if len(dims) > 1:
        raise OutputError(f"{indexes[0]}: the parts hold vectors of different sizes ({sorted(dims)})")
    dim = dims.pop() if dims else 0

    def entries():
        for index, vectors in zip(indexes, vector_files):
            lines = _complete_lines(index)
            next(lines, None)
            for line in lines:
                yield json.loads(line), vectors

    return dim, entries()


def _vector_chunks(indexes, vector_files) -> tuple[int, Iterator[tuple[list[dict], np.ndarray]]]:
    """Chunks of index entries with the vectors of their successful rows, read from the journals."""
    dim, entries = _vector_entries(indexes, vector_files)
    maps: dict[Path, np.ndarray] = {}

    def vectors_of(path: Path) -> np.ndarray:
        if path not in maps:
            size = path.stat().st_size // (4 * dim) if dim else 0
            maps[path] = (np.memmap(path, dtype="<f4", mode="r", shape=(size, dim)) if size
                          else np.zeros((0, dim), np.float32))
        return maps[path]

    def chunks():
        docs: list[dict] = []
        rows: list[np.ndarray] = []
        for doc, vectors in entries:
            docs.append(doc)
            if "error" not in doc:
                rows.append(np.asarray(vectors_of(vectors)[doc["row"]]))
            if len(docs) == CHUNK_ROWS:
                yield docs, (np.stack(rows) if rows else np.zeros((0, dim), np.float32))
                docs, rows = [], []
        if docs:
            yield docs, (np.stack(rows) if rows else np.zeros((0, dim), np.float32))

    return dim, chunks()


def _count_vectors(indexes) -> Counts:
    counts = Counts()
    for index in indexes:
        lines = _complete_lines(index)
        next(lines, None)
        for line in lines:
            counts.rows += 1
            counts.failed += "error" in json.loads(line)
    return counts


def _finish_vectors(out: Path, fmt: str, indexes: Sequence[Path], vector_files: Sequence[Path]) -> Counts:
    counts = _count_vectors(indexes)
    ok = counts.rows - counts.failed
    dim, chunks = _vector_chunks(indexes, vector_files)
    tmp = _tmp(out)
    if fmt == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("path", pa.string()), ("embedding", pa.list_(pa.float32(), dim)),
                            ("error", pa.string())])
        with pq.ParquetWriter(tmp, schema) as writer:
            for docs, vectors in chunks:
                column: list = []
                it = iter(vectors)
                for d in docs:
                    column.append(None if "error" in d else next(it))
                flat = pa.array([None if v is None else v.tolist() for v in column],
                                type=pa.list_(pa.float32(), dim))
                writer.write_table(pa.table({"path": [d["path"] for d in docs], "embedding": flat,
                                             "error": [d.get("error") for d in docs]}, schema=schema))
        _replace_into(tmp, out)
        return counts
    if fmt == ".npy":
        tmp_index = _tmp(index_path(out))
        with open(tmp, "wb") as f, open(tmp_index, "w", encoding="utf-8") as idx:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (ok, dim)})
            row = 0
            for docs, vectors in chunks:
                f.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
                for d in docs:
                    if "error" in d:
                        idx.write(json.dumps({"path": d["path"], "error": d["error"]}, ensure_ascii=False) + "\n")
                    else:
                        idx.write(json.dumps({"path": d["path"], "row": row}, ensure_ascii=False) + "\n")
                        row += 1
        _replace_into(tmp_index, index_path(out))
        _replace_into(tmp, out)
        return counts
    # .safetensors: one tensor "embeddings" (rows of the images that worked, in order); the paths of
    # those rows and the failures (path -> reason) as JSON in the header's metadata
    paths: list[str] = []
    errors: dict[str, str] = {}
    for docs, _ in _vector_chunks(indexes, vector_files)[1]:
        for d in docs:
            if "error" in d:
                errors[d["path"]] = d["error"]
            else:
                paths.append(d["path"])
    header = {"embeddings": {"dtype": "F32", "shape": [ok, dim], "data_offsets": [0, ok * dim * 4]},
              "__metadata__": {"paths": json.dumps(paths, ensure_ascii=False),
                               "errors": json.dumps(errors, ensure_ascii=False)}}
    text = json.dumps(header, ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, vectors in chunks:
            f.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
    _replace_into(tmp, out)
    return counts


def read_finished_paths(out: Path, fmt: str, task: str) -> list[str]:
    """The paths of a finished output (for a resume that finds nothing left to do)."""
    if fmt == ".parquet":
        import pyarrow.parquet as pq

        return [str(p) for p in pq.read_table(out, columns=["path"]).column("path").to_pylist()]
    if fmt == ".npy":
        with open(index_path(out), encoding="utf-8") as f:
            return [json.loads(line)["path"] for line in f if line.strip()]
    if fmt == ".safetensors":
        with open(out, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            meta = json.loads(f.read(n))["__metadata__"]
        return json.loads(meta["paths"]) + list(json.loads(meta["errors"]))
    raise AssertionError(fmt)
