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
    with Path(path).open(encoding="utf-8") as handle:
        lines = handle.readlines()
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


def write_split_parquets(directory: Path, records: Iterable[StoryRecord], validation: set[str],
                         batch_rows: int = 10_000) -> dict[str, int]:
    """``train.parquet`` and ``validation.parquet`` in one pass over ``records``; returns row counts."""
    sinks = {name: _ParquetSink(Path(directory) / f"{name}.parquet", batch_rows) for name in ("train", "validation")}
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
