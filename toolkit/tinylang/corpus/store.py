"""The corpus folder: append-only raw shards written as results arrive, failures, and final splits.

Killing a build at any moment loses at most the line being written (cut off on the next start);
every finished story is on disk, so a rerun asks only for what is missing.

    store = CorpusStore(Path("data/fi-generate"))
    done = store.done_ids()
    store.write(record)
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..records import StagedFiles, StoryRecord, read_jsonl, record_line, repair_torn_tail, write_split_parquets
from ..sources import in_validation

SHARD_RECORDS = 50_000
# Written into raw/ when a build starts, so a first build stopped before its first story (a wrong key)
# is still recognised as build-corpus's own folder.
BUILD_MARK = ".build-corpus"
_SHARD_NAME = re.compile(r"shard-\d{5,}\.jsonl")


def is_build_folder(folder: Path) -> bool:
    """A folder build-corpus made (the mark every other command checks for): raw/ holding its mark or
    its shards (folders built before the mark), or a stats.json with a build plan. A raw/ folder alone
    is not enough: a user's folder of scraped pages in raw/ must not be overwritten as a corpus."""
    raw = Path(folder) / "raw"
    if not raw.is_dir():
        return False
    return (raw / BUILD_MARK).is_file() or bool(raw_shards(folder)) or isinstance(read_stats(folder).get("plan"), dict)


def read_stats(out: Path) -> dict:
    """The folder's stats.json, or {} when there is none (a new folder, or a first build cut short)."""
    try:
        stats = json.loads((Path(out) / "stats.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stats if isinstance(stats, dict) else {}


def raw_shards(folder: Path) -> list[Path]:
    """The raw shards of a build-corpus folder in write order; none for any other folder."""
    return sorted(p for p in (Path(folder) / "raw").glob("shard-*.jsonl") if _SHARD_NAME.fullmatch(p.name))


def failures_path(folder: Path) -> Path:
    return Path(folder) / "failures.jsonl"


def read_failures(folder: Path) -> dict[str, dict]:
    """Id -> the latest failure recorded for that story (a torn last line, from a kill, is skipped)."""
    path = failures_path(folder)
    if not path.is_file():
        return {}
    latest: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "id" in entry:
            latest[entry["id"]] = entry
    return latest


class CorpusStore:
    def __init__(self, directory: Path, shard_records: int = SHARD_RECORDS) -> None:
        self.directory = Path(directory)
        self.raw = self.directory / "raw"
        self.raw.mkdir(parents=True, exist_ok=True)
        (self.raw / BUILD_MARK).touch()
        self.shard_records = shard_records
        self.repaired_bytes = sum(repair_torn_tail(p) for p in self.shards())
        self._handle = None
        self._in_shard = 0
        self._failures = None

    def shards(self) -> list[Path]:
        return raw_shards(self.directory)

    def done_ids(self) -> set[str]:
        return set(self.scan())

    def scan(self) -> dict[str, str]:
        """Id -> source ("llm", "grammar") of every story already written."""
        done: dict[str, str] = {}
        for shard in self.shards():
            with shard.open(encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        row = json.loads(line)
                        done.setdefault(row["id"], row.get("source", ""))
        return done

    def _open_shard(self) -> None:
        if self._handle:
            self._handle.close()
        number = len(self.shards())
        self._handle = (self.raw / f"shard-{number:05d}.jsonl").open("a", encoding="utf-8")
        self._in_shard = 0

    def write(self, record: StoryRecord) -> None:
        """Append one record and hand it to the OS at once (a kill cannot lose it)."""
        if self._handle is None or self._in_shard >= self.shard_records:
            self._open_shard()
        self._handle.write(record_line(record))
        self._handle.flush()
        self._in_shard += 1

    def write_failure(self, request_id: str, kind: str, message: str, attempts: int) -> None:
        """Failed requests are logged here and retried by the next run (they are not done)."""
        if self._failures is None:
            self._failures = failures_path(self.directory).open("a", encoding="utf-8")
        entry = {"id": request_id, "kind": kind, "message": message, "attempts": attempts, "time": time.time()}
        self._failures.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._failures.flush()

    def close(self) -> None:
        for handle in (self._handle, self._failures):
            if handle:
                handle.close()
        self._handle = self._failures = None

    def prune_failures(self) -> int:
        """Rewrite failures.jsonl to hold only the stories still missing, each with its latest failure:
        a story a later run wrote is no longer a failure, and a file that listed it would contradict
        stats.json. Removes the file when nothing is missing; returns how many failures remain."""
        path = failures_path(self.directory)
        failures = read_failures(self.directory)
        if not failures and not path.exists():
            return 0
        written = self.done_ids()
        remaining = [entry for story_id, entry in failures.items() if story_id not in written]
        if not remaining:
            path.unlink(missing_ok=True)
            return 0
        temporary = path.with_suffix(".tmp")
        temporary.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in remaining), encoding="utf-8")
        temporary.replace(path)
        return len(remaining)

    def final_records(self, wanted: list[str]) -> Iterator[StoryRecord]:
        """Raw records whose id is in ``wanted`` (the plan), each once, streamed shard by shard."""
        wanted_ids, seen = set(wanted), set()
        for shard in self.shards():
            for record in read_jsonl(shard):
                if record.id in wanted_ids and record.id not in seen:
                    seen.add(record.id)
                    yield record

    def write_splits(self, records: Iterable[StoryRecord], wanted: list[str], validation_fraction: float,
                     key: Callable[[str], str] | None = None, staged: StagedFiles | None = None) -> dict[str, int]:
        """train.parquet and validation.parquet of ``records`` (the wanted stories, e.g. from
        ``final_records``), in one pass (under ``staged``'s temporary names when given); which are held
        out is decided by the wanted ids alone (through ``key``, see ``split_key``)."""
        validation = validation_ids(wanted, validation_fraction, key)
        return write_split_parquets(self.directory, records, validation, staged=staged)


def split_key(story_id: str, lang: str, mode: str) -> str:
    """What a story's split is decided by: its id. A translation keeps its source story's id, and
    hashing that alone would put every translation into its source story's split (a corpus translated
    from a tinylang train split would get no validation stories), so a translation's id is hashed
    together with its language into a key of its own."""
    if mode != "translate":
        return story_id
    return hashlib.sha256(f"{lang}:{story_id}".encode()).hexdigest()


def record_split_key(record: StoryRecord) -> str:
    return split_key(record.id, record.lang, record.mode)


def validation_ids(ids: Iterable[str], fraction: float, key: Callable[[str], str] | None = None) -> set[str]:
    """Which stories are held out: decided by the id alone (or by ``key(id)``), and a corpus of two or
    more stories always gets at least one validation story."""
    keys = {i: key(i) if key else i for i in ids}
    validation = {i for i, k in keys.items() if in_validation(k, fraction)}
    if not validation and len(keys) > 1:
        validation = {min(keys, key=lambda i: zlib.crc32(keys[i].encode()))}
    return validation
