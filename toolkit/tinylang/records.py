"""``StoryRecord``: the one plain record every corpus step reads and writes, and its file formats.

A record says where its text came from (``source``: llm or grammar), what was asked for (words,
features, or the source story's id for translations), and which model, prompt version and
parameters produced it, so any corpus can be audited and rebuilt.

    record = StoryRecord(id="fi-000001", lang="fi", text="...", source="grammar", mode="generate")
    handle.write(record_line(record))
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .sources import not_utf8_message


class StoryRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Unique in a corpus; translations keep the source story's id.")
    lang: str
    text: str
    source: Literal["llm", "grammar", "dataset"] = Field(description="Who wrote the text.")
    mode: Literal["generate", "translate", "import"] = "generate"
    words: dict[str, str] = Field(default_factory=dict, description="noun / verb / adjective asked for.")
    features: list[str] = Field(default_factory=list)
    source_id: str | None = Field(None, description="Id of the story this one translates.")
    source_dataset: str | None = None
    model: str | None = Field(None, description="LLM name, or grammar/<lang> for the story grammar.")
    prompt_version: str | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="Sampling parameters and seed.")
    usage: dict[str, int] = Field(default_factory=dict, description="prompt_tokens, completion_tokens.")
    instruct: str | None = Field(None, description="TinyStories-Instruct rendering (--format instruct).")
    meta: dict[str, Any] = Field(default_factory=dict, description="Anything else: filter notes, cache hit...")


def record_line(record: StoryRecord) -> str:
    return json.dumps(record.model_dump(exclude_none=True), ensure_ascii=False) + "\n"


def read_jsonl(path: Path) -> Iterator[StoryRecord]:
    """Read records; a torn last line (the process was killed mid-write) is skipped, not fatal."""
    try:
        with Path(path).open(encoding="utf-8") as handle:
            lines = handle.readlines()
    except UnicodeDecodeError:
        raise ValueError(not_utf8_message(Path(path))) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield StoryRecord.model_validate_json(line)
        except ValueError:
            if number == len(lines) and not line.endswith("\n"):
                return
            raise ValueError(f"{path}:{number}: not a story record") from None


def repair_torn_tail(path: Path) -> int:
    """Cut a partial last line left by a kill mid-write; returns the bytes removed."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return 0
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as handle:
        handle.truncate(keep)
    return len(data) - keep


_JSON_FIELDS = ("words", "params", "usage", "meta")


def _parquet_schema():
    import pyarrow as pa

    text = pa.string()
    columns = [(name, text) for name in StoryRecord.model_fields]
    return pa.schema([(name, pa.list_(text) if name == "features" else kind) for name, kind in columns])


def _flat_row(record: StoryRecord) -> dict[str, Any]:
    row = record.model_dump()
    for name in _JSON_FIELDS:
        row[name] = json.dumps(row[name], ensure_ascii=False, sort_keys=True)
    return row


class _ParquetSink:
    """Rows appended one by one, written to one parquet file in batches of ``batch_rows``."""

    def __init__(self, path: Path, batch_rows: int) -> None:
        import pyarrow.parquet as pq

        self.schema = _parquet_schema()
        self.writer = pq.ParquetWriter(str(path), self.schema)
        self.batch_rows = batch_rows
        self.batch: list[dict[str, Any]] = []
        self.count = 0

    def add(self, record: StoryRecord) -> None:
        self.batch.append(_flat_row(record))
        if len(self.batch) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        self.writer.write_table(pa.Table.from_pylist(self.batch, schema=self.schema))
        self.count += len(self.batch)
        self.batch = []

    def close(self) -> int:
        if self.batch or self.count == 0:  # an empty file still gets the schema
            self._flush()
        self.writer.close()
        return self.count


def write_parquet(path: Path, records: Iterable[StoryRecord], batch_rows: int = 10_000) -> int:
    """Stream records into one parquet file (loadable with ``datasets.load_dataset("parquet")``);
    nested fields are JSON strings so the schema never depends on the data. Returns the row count."""
    sink = _ParquetSink(path, batch_rows)
    for record in records:
        sink.add(record)
    return sink.close()


SPLIT_FILES = ("train.parquet", "validation.parquet")
REJECTED_FILE = "rejected.jsonl"  # every story the filters dropped, with why
KEPT_SCRATCH_FILE = "kept.jsonl.tmp"  # kept stories while filtering, before they are split


class StagedFiles:
    """Files that must change together (the splits, rejected.jsonl, ...), written under temporary
    names (``NAME.tmp`` beside ``NAME``) and renamed into place by ``commit`` once all are complete.
    An interruption before then leaves the earlier files whole, never a half-written split next to
    the old stats; the temporaries are removed on leaving the ``with`` block, and leftovers of a run
    killed outright are removed on entering it.

        with StagedFiles(out, ("train.parquet", "validation.parquet")) as staged:
            write_parquet(staged.path("train.parquet"), records)
            ...
            staged.commit()
    """

    SUFFIX = ".tmp"

    def __init__(self, directory: Path, names: Iterable[str]) -> None:
        self.directory = Path(directory)
        self.names = tuple(names)

    def path(self, name: str) -> Path:
        """Where ``name`` is written until ``commit``."""
        return self.directory / f"{name}{self.SUFFIX}"

    def commit(self) -> None:
        """Rename every file into place (each one written; one never written is an error)."""
        for name in self.names:
            self.path(name).replace(self.directory / name)

    def discard(self) -> None:
        for name in self.names:
            self.path(name).unlink(missing_ok=True)

    def __enter__(self) -> "StagedFiles":
        self.discard()
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


def write_split_parquets(directory: Path, records: Iterable[StoryRecord], validation: set[str],
                         batch_rows: int = 10_000, staged: StagedFiles | None = None) -> dict[str, int]:
    """``train.parquet`` and ``validation.parquet`` in one pass over ``records`` (under ``staged``'s
    temporary names when given, for the caller to commit); returns row counts."""
    def target(name: str) -> Path:
        return staged.path(f"{name}.parquet") if staged else Path(directory) / f"{name}.parquet"

    sinks = {name: _ParquetSink(target(name), batch_rows) for name in ("train", "validation")}
    for record in records:
        sinks["validation" if record.id in validation else "train"].add(record)
    return {name: sink.close() for name, sink in sinks.items()}


def read_parquet(path: Path) -> Iterator[StoryRecord]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            for name in _JSON_FIELDS:
                if isinstance(row.get(name), str):
                    row[name] = json.loads(row[name])
            yield StoryRecord.model_validate(row)
