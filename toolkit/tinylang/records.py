"""``StoryRecord``: the one plain record every corpus step reads and writes, and its file formats.

A record says where its text came from (``source``: llm or grammar), what was asked for (words,
features, or the source story's id for translations), and which model, prompt version and
parameters produced it, so any corpus can be audited and rebuilt.

    record = StoryRecord(id="fi-000001", lang="fi", text="...", source="grammar", mode="generate")
    append_jsonl(path, [record])
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


def append_jsonl(path: Path, records: Iterable[StoryRecord]) -> None:
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.writelines(record_line(r) for r in records)


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


def write_parquet(path: Path, records: Iterable[StoryRecord], batch_rows: int = 10_000) -> int:
    """Stream records into one parquet file (loadable with ``datasets.load_dataset("parquet")``);
    nested fields are JSON strings so the schema never depends on the data. Returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema()
    count = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        batch: list[dict[str, Any]] = []
        for record in records:
            batch.append(_flat_row(record))
            if len(batch) >= batch_rows:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                count += len(batch)
                batch = []
        if batch or count == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    return count


def read_parquet(path: Path) -> Iterator[StoryRecord]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            for name in _JSON_FIELDS:
                if isinstance(row.get(name), str):
                    row[name] = json.loads(row[name])
            yield StoryRecord.model_validate(row)
