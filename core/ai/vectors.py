"""The vector index: question embeddings in Chroma (chromadb 1.5), one collection per embedder.

Where the index lives (docs/vectors.md):

- `CHROMA_URL` set: that Chroma server, always. With `DEBUG` off it is required (core.E001).
- Otherwise (development), the server `make run` starts (`manage.py chroma_server`), found
  through `var/chroma-server.json` (its pid must be alive and it must answer a heartbeat).
- No server: the file store `var/chroma` in this process, under an exclusive lock on
  `var/chroma.lock` held while the index is open, so two processes never open it at once (a
  second one waits up to `CHROMA_LOCK_TIMEOUT`, then `VectorIndexBusy`). chromadb's
  PersistentClient is not safe across processes; the server holds the same lock while it runs.

Traps in chromadb 1.5.9 handled here, each with its reason where it is handled:
- its HTTP client is built with `httpx.Client(timeout=None)`: a server that stops answering
  would hang a worker for ever, so every client gets timeouts and a heartbeat comes first;
- collections default to `DefaultEmbeddingFunction`, which downloads an ONNX model the first
  time it embeds: every collection here is opened with `embedding_function=None`, so adding or
  querying without vectors raises instead of downloading;
- upsert merges metadata (a key left out keeps its old value; None removes it): every field
  of METADATA_FIELDS is always sent, None for "no value", so an upsert replaces;
- a request carries at most the server's max batch size (5461 records) and 40 MB;
- `import chromadb` takes 2-5 s, so only a process that opens the index pays it.

Nothing here imports the project's models: callers hand over ids, vectors and metadata.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import functools
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured

from core.ai.types import ProviderUnavailable

logger = logging.getLogger(__name__)

# What each vector carries for filtered search. Always sent in full (see the module docstring).
METADATA_FIELDS = ("subject", "topic", "year", "type", "difficulty")
COLLECTION_PREFIX = "questions"
HEARTBEAT_TIMEOUT = 2.0  # seconds: finding out whether a server is there must be quick
# A request stays well under the server's 40 MB body limit (max_payload_size_bytes).
PAYLOAD_BUDGET_BYTES = 24 * 1024 * 1024
SERVER_HOST = "127.0.0.1"  # the server `make run` starts listens on loopback only
# `chroma run` without importing the chromadb package (0.3 s to answer instead of 3-4 s, 40 MB
# instead of 120 MB): the same Rust entry point the `chroma` script calls.
_CHROMA_CLI = ("import sys, chromadb_rust_bindings; "
               "chromadb_rust_bindings.cli(['chroma', *sys.argv[1:]])")


class VectorIndexError(Exception):
    """The index cannot be used as configured (a bad record, a second server, ...)."""


class VectorIndexBusy(ProviderUnavailable):
    """Another process has the file store open; transient: a job retries later."""


class EmbeddingSpace(Protocol):
    """What picks a collection: an embedder (core.ai.types.Embedder) or anything like it."""

    name: str
    dimension: int


@dataclass(frozen=True)
class Neighbour:
    id: str
    similarity: float  # cosine similarity = 1 - Chroma's cosine distance
    metadata: dict[str, Any]


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    embedder: str
    dimension: int
    count: int


# --- Settings: the one place they are read ---------------------------------------------------


@dataclass(frozen=True)
class VectorIndexSettings:
    url: str  # CHROMA_URL
    port: int  # CHROMA_PORT: the port chroma_server listens on (0: a free one)
    timeout: float  # CHROMA_TIMEOUT: seconds for every call to a server
    lock_timeout: float  # CHROMA_LOCK_TIMEOUT: how long to wait for the file store
    debug: bool
    var_dir: Path

    @property
    def store_dir(self) -> Path:
        return self.var_dir / "chroma"

    @property
    def server_file(self) -> Path:
        return self.var_dir / "chroma-server.json"

    @property
    def server_log(self) -> Path:
        return self.var_dir / "chroma-server.log"

    @property
    def lock_file(self) -> Path:
        return self.var_dir / "chroma.lock"


_MISSING = object()


def _setting(name: str, default, cast):
    value = getattr(settings, name, _MISSING)
    if value is _MISSING:
        # Until pastq/settings.py defines it: the environment variable, as settings.py reads it.
        raw = os.environ.get(name, "")
        return cast(raw) if raw.strip() else default
    return cast(value) if value not in (None, "") else default


def vector_index_settings() -> VectorIndexSettings:
    return VectorIndexSettings(
        url=_setting("CHROMA_URL", "", str).strip(),
        port=_setting("CHROMA_PORT", 0, int),
        timeout=_setting("CHROMA_TIMEOUT", 30.0, float),
        lock_timeout=_setting("CHROMA_LOCK_TIMEOUT", 30.0, float),
        debug=bool(settings.DEBUG),
        var_dir=Path(settings.VAR_DIR),
    )


def _url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"CHROMA_URL must look like http://host:8000 or https://host, not {url!r}"
    if parts.path not in ("", "/") or parts.query or parts.username:
        return f"CHROMA_URL must be a bare server address (scheme, host, port), not {url!r}"
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        return f"CHROMA_URL has an invalid port: {url!r}"
    return None


def vector_index_configuration_problem(config: VectorIndexSettings | None = None) -> str | None:
    config = config or vector_index_settings()
    if config.url:
        return _url_problem(config.url)
    if not config.debug:
        return ("CHROMA_URL is not set: with DEBUG off the vector index must be a Chroma server "
                "that every web process and worker shares (the file store under var/chroma "
                "can be opened by one process at a time).")
    return None


def vector_index_require_configuration() -> None:
    """Start-up check of the processes that serve (gunicorn through pastq/wsgi.py, qcluster)."""
    problem = vector_index_configuration_problem()
    if problem:
        raise ImproperlyConfigured(problem)


def vector_index_check(app_configs=None, **kwargs) -> list[Error]:
    """core.E001 (`manage.py check --deploy`): with DEBUG off a Chroma server is required."""
    problem = vector_index_configuration_problem()
    if not problem:
        return []
    return [Error(problem, id="core.E001",
                  hint="Set CHROMA_URL to a Chroma server, e.g. http://127.0.0.1:8000 for "
                       "`chroma run --path /srv/pastq/chroma --host 127.0.0.1 --port 8000` "
                       "(or `manage.py chroma_server` with CHROMA_PORT=8000).")]


# --- chromadb, imported when first needed ----------------------------------------------------


@functools.cache
def _chroma() -> SimpleNamespace:
    import chromadb  # noqa: PLC0415  (2-5 s to import: only processes that open the index pay)
    import httpx  # noqa: PLC0415  (comes with chromadb)
    from chromadb.config import Settings  # noqa: PLC0415
    from chromadb.errors import ChromaError, NotFoundError  # noqa: PLC0415

    return SimpleNamespace(chromadb=chromadb, httpx=httpx, ChromaError=ChromaError,
                           NotFoundError=NotFoundError, Settings=Settings)


def _client_settings():
    # Telemetry off in the client. (chromadb 1.5.9's Posthog client sends nothing anyway, but
    # the switch is what the library documents.) _env_file=None: chromadb's settings would
    # otherwise read a .env file in the working directory.
    return _chroma().Settings(_env_file=None, anonymized_telemetry=False, allow_reset=False)


# --- The server make run starts: its record in var/ -----------------------------------------


@dataclass(frozen=True)
class ServerRecord:
    host: str
    port: int
    pid: int
    started_at: str
    path: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (ended, not yet reaped by its parent) answers kill(0) too.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def chroma_server_record(config: VectorIndexSettings | None = None) -> ServerRecord | None:
    """The server recorded in var/chroma-server.json, if its process is alive."""
    config = config or vector_index_settings()
    try:
        data = json.loads(config.server_file.read_text())
        record = ServerRecord(host=str(data["host"]), port=int(data["port"]),
                              pid=int(data["pid"]), started_at=str(data.get("started_at", "")),
                              path=str(data.get("path", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if _pid_alive(record.pid) else None


def _heartbeat(url: str, timeout: float = HEARTBEAT_TIMEOUT) -> bool:
    # urllib without proxies: a loopback server must not be sent through HTTP_PROXY.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url.rstrip("/") + "/api/v2/heartbeat", timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


# --- The file-store lock ---------------------------------------------------------------------


class _FileStoreLock:
    """An exclusive flock on var/chroma.lock. The file says who holds it, for messages."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def try_acquire(self, holder: str) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()} {holder}\n".encode(), 0)
        return True

    def holder(self) -> str:
        return _lock_holder(self.path)

    def close(self) -> None:
        # Only close: flock(LOCK_UN) would also unlock a copy a child process still holds.
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _lock_holder(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text().strip() or "another process"
    return "another process"


def _holder_description() -> str:
    return " ".join(Path(arg).name if i == 0 else arg for i, arg in enumerate(sys.argv))[:200]


# --- Opening the index -----------------------------------------------------------------------

_state_lock = threading.RLock()
_http_clients: dict[tuple, tuple[int, Any]] = {}  # (url, timeout) -> (pid, client)
_file_store: dict[str, Any] = {}  # pid, lock, client, refs


def _forget_inherited_state() -> None:
    """In a child made by fork (django-q's workers are): what the parent had open is not this
    process's. Drop it without closing it for the parent; close only this copy of the lock's
    descriptor, so the lock ends when the parent releases it."""
    global _state_lock
    _state_lock = threading.RLock()  # it may have been held by another thread at fork time
    lock = _file_store.get("lock")
    if lock is not None:
        with contextlib.suppress(OSError):
            os.close(lock.fd)
    _file_store.clear()
    _http_clients.clear()
    if "chromadb" in sys.modules:
        # chromadb caches its clients' systems per path: a forked copy must not be reused.
        _chroma().chromadb.api.shared_system_client.SharedSystemClient.clear_system_cache()


os.register_at_fork(after_in_child=_forget_inherited_state)


def vector_index_open() -> VectorIndex:
    """Open the index where it lives (see the module docstring); use it as a context manager:

        with vector_index_open() as index:
            index.collection(embedder).upsert(ids, vectors, metadatas)

    Raises ImproperlyConfigured (no server with DEBUG off), ProviderUnavailable (a server that
    does not answer) or VectorIndexBusy (another process has the file store)."""
    config = vector_index_settings()
    problem = vector_index_configuration_problem(config)
    if problem:
        raise ImproperlyConfigured(problem)
    if config.url:
        return _server_index(config.url, config)
    deadline = time.monotonic() + config.lock_timeout
    told = False
    while True:
        record = chroma_server_record(config)
        if record is not None:
            if _heartbeat(record.url):
                return _server_index(record.url, config)
            if not _file_store_is_free(config):
                # Its process is alive and holds the directory, but does not answer.
                raise ProviderUnavailable(
                    f"The Chroma server at {record.url} (pid {record.pid}, recorded in "
                    f"{config.server_file}) does not answer.")
        index = _file_store_index(config)
        if index is not None:
            return index
        if time.monotonic() >= deadline:
            raise VectorIndexBusy(
                f"The vector index file store {config.store_dir} is in use by "
                f"{_lock_holder(config.lock_file)} (waited {config.lock_timeout:g} s). "
                "Run `make run` (its Chroma server lets every process share the index), or "
                "try again when that process has finished.")
        if not told:
            logger.warning("The vector index file store %s is in use by %s: waiting up to %g s.",
                           config.store_dir, _lock_holder(config.lock_file),
                           config.lock_timeout)
            told = True
        time.sleep(0.1)


def _file_store_is_free(config: VectorIndexSettings) -> bool:
    with _state_lock:
        if _file_store.get("pid") == os.getpid():
            return False
    probe = _FileStoreLock(config.lock_file)
    try:
        if probe.try_acquire("probe"):
            fcntl.flock(probe.fd, fcntl.LOCK_UN)
            return True
        return False
    finally:
        probe.close()


def _server_index(url: str, config: VectorIndexSettings) -> VectorIndex:
    if not _heartbeat(url, min(HEARTBEAT_TIMEOUT, config.timeout)):
        raise ProviderUnavailable(f"The Chroma server at {url} does not answer.")
    key = (url, config.timeout)
    with _state_lock:
        pid, client = _http_clients.get(key, (None, None))
        if pid != os.getpid():  # none yet, or one inherited through fork (not fork-safe)
            client = _http_client(url, config.timeout)
            _http_clients[key] = (os.getpid(), client)
    return VectorIndex(client, kind="server", where=url, timeout=config.timeout)


def _http_client(url: str, timeout: float):
    lib = _chroma()
    parts = urlsplit(url)
    ssl = parts.scheme == "https"
    with _server_errors(url, timeout):
        client = lib.chromadb.HttpClient(host=parts.hostname,
                                         port=parts.port or (443 if ssl else 80), ssl=ssl,
                                         settings=_client_settings())
    # chromadb builds its httpx client with timeout=None: without this a server that accepts
    # and never answers would hang the caller for ever. (The constructor's own few requests
    # ran without it; the heartbeat before them is what bounds them.)
    client._server._session.timeout = lib.httpx.Timeout(timeout, connect=min(timeout, 5.0))
    return client


def _file_store_index(config: VectorIndexSettings) -> VectorIndex | None:
    """The file store in this process, or None while another process holds its lock."""
    with _state_lock:
        if _file_store.get("pid") == os.getpid():
            _file_store["refs"] += 1
            return VectorIndex(_file_store["client"], kind="file", where=str(config.store_dir),
                               timeout=config.timeout, on_close=_file_store_release)
        _file_store.clear()  # nothing, or state inherited through fork: never reuse it
        lock = _FileStoreLock(config.lock_file)
        if not lock.try_acquire(_holder_description()):
            lock.close()
            return None
        try:
            lib = _chroma()
            client = lib.chromadb.PersistentClient(path=str(config.store_dir),
                                                   settings=_client_settings())
        except BaseException:
            lock.close()
            raise
        _file_store.update(pid=os.getpid(), lock=lock, client=client, refs=1)
        return VectorIndex(client, kind="file", where=str(config.store_dir),
                           timeout=config.timeout, on_close=_file_store_release)


def _file_store_release() -> None:
    with _state_lock:
        if _file_store.get("pid") != os.getpid():
            return
        _file_store["refs"] -= 1
        if _file_store["refs"] > 0:
            return
        try:
            _file_store["client"].close()  # stops chromadb's system: its files are closed
        finally:
            _file_store["lock"].close()
            _file_store.clear()


@contextlib.contextmanager
def _server_errors(where: str, timeout: float) -> Iterator[None]:
    """A server that does not answer, or fails on its side, is transient: ProviderUnavailable
    (the job system retries). Bad input keeps its own error."""
    lib = _chroma()
    try:
        yield
    except lib.httpx.TimeoutException as exc:
        raise ProviderUnavailable(f"The Chroma server at {where} did not answer within "
                                  f"{timeout:g} s.") from exc
    except lib.httpx.TransportError as exc:
        raise ProviderUnavailable(f"The Chroma server at {where} cannot be reached: {exc}") from exc
    except lib.ChromaError as exc:
        if exc.code() >= 500 or exc.code() == 429:
            raise ProviderUnavailable(f"The Chroma server at {where} failed: {exc}") from exc
        raise
    except ValueError as exc:
        if "Could not connect to a Chroma server" in str(exc):
            raise ProviderUnavailable(f"The Chroma server at {where} cannot be reached.") from exc
        raise


# --- The index and its collections -----------------------------------------------------------


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:100] or "embedder"


def collection_name(embedder_name: str, dimension: int) -> str:
    """One collection per embedder and dimension, so switching models never mixes vectors."""
    return f"{COLLECTION_PREFIX}__{_slug(embedder_name)}__{int(dimension)}"


class VectorIndex:
    """An open index: `kind` is "server" or "file", `where` its URL or directory."""

    def __init__(self, client, *, kind: str, where: str, timeout: float,
                 on_close: Callable[[], None] | None = None):
        self._client, self.kind, self.where, self.timeout = client, kind, where, timeout
        self._on_close = on_close
        self._collections: dict[str, VectorCollection] = {}
        self._max_batch: int | None = None

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def _errors(self):
        return _server_errors(self.where, self.timeout)

    def max_batch_size(self) -> int:
        """Records one request may carry (the server's pre-flight answer; 5461 in 1.5.9)."""
        if self._max_batch is None:
            with self._errors():
                self._max_batch = int(self._client.get_max_batch_size())
        return self._max_batch

    def collection(self, embedder: EmbeddingSpace) -> VectorCollection:
        """The collection of this embedder's vectors, created on first use (cosine space, no
        embedding function: vectors always come from the pipeline)."""
        name = collection_name(embedder.name, embedder.dimension)
        if name not in self._collections:
            with self._errors():
                chroma_collection = self._client.get_or_create_collection(
                    name, embedding_function=None,
                    configuration={"hnsw": {"space": "cosine"}},
                    metadata={"embedder": embedder.name, "dimension": int(embedder.dimension)})
            recorded = (chroma_collection.metadata or {}).get("embedder")
            if recorded != embedder.name:
                raise VectorIndexError(f"Collection {name} holds vectors of embedder "
                                       f"{recorded!r}, not {embedder.name!r}.")
            space = _space_of(chroma_collection.configuration_json or {})
            if space != "cosine":
                raise VectorIndexError(f"Collection {name} uses the {space!r} space, not cosine: "
                                       "drop it and index again.")
            self._collections[name] = VectorCollection(self, chroma_collection,
                                                       embedder.name, int(embedder.dimension))
        return self._collections[name]

    def collections(self) -> list[CollectionInfo]:
        with self._errors():
            found = sorted(self._client.list_collections(), key=lambda c: c.name)
            return [CollectionInfo(name=c.name,
                                   embedder=str((c.metadata or {}).get("embedder", "")),
                                   dimension=int((c.metadata or {}).get("dimension", 0)),
                                   count=c.count())
                    for c in found]

    def collection_drop(self, name: str) -> bool:
        """Delete a collection and its vectors; False when there was none."""
        self._collections.pop(name, None)
        with self._errors():
            try:
                self._client.delete_collection(name)
            except (_chroma().NotFoundError, ValueError):
                return False
        return True


def _space_of(configuration: Mapping) -> str | None:
    for index_kind in ("hnsw", "spann"):
        space = (configuration.get(index_kind) or {}).get("space")
        if space:
            return space
    return None


class VectorCollection:
    def __init__(self, index: VectorIndex, chroma_collection, embedder: str, dimension: int):
        self._index, self._collection = index, chroma_collection
        self.name, self.embedder, self.dimension = chroma_collection.name, embedder, dimension

    def count(self) -> int:
        with self._index._errors():
            return int(self._collection.count())

    def upsert(self, ids: Sequence[int | str], vectors, metadatas: Sequence[Mapping | None]
               | None = None) -> int:
        """Write vectors by question id, replacing what each id had. One request per batch, or
        as few as the server's limits allow (max batch size, payload); returns how many."""
        ids = [str(i) for i in ids]
        metadatas = list(metadatas) if metadatas is not None else [None] * len(ids)
        if not (len(ids) == len(vectors) == len(metadatas)):
            raise ValueError(f"{len(ids)} ids, {len(vectors)} vectors and {len(metadatas)} "
                             "metadata entries: they must match one to one.")
        for id_, vector in zip(ids, vectors, strict=True):
            if len(vector) != self.dimension:
                raise ValueError(f"The vector of {id_} has {len(vector)} dimensions; "
                                 f"{self.name} holds {self.dimension}.")
        prepared = [_metadata(m) for m in metadatas]
        size = self._chunk_size()
        calls = 0
        for start in range(0, len(ids), size):
            with self._index._errors():
                self._collection.upsert(ids=ids[start:start + size],
                                        embeddings=vectors[start:start + size],
                                        metadatas=prepared[start:start + size])
            calls += 1
        return calls

    def _chunk_size(self) -> int:
        # base64 float32 (the HTTP client's encoding) plus the id and metadata as JSON
        per_record = math.ceil(self.dimension * 4 * 4 / 3) + 400
        return max(1, min(self._index.max_batch_size(), PAYLOAD_BUDGET_BYTES // per_record))

    def delete(self, ids: Sequence[int | str]) -> None:
        ids = [str(i) for i in ids]
        size = self._index.max_batch_size()
        for start in range(0, len(ids), size):
            with self._index._errors():
                self._collection.delete(ids=ids[start:start + size])

    def vectors(self, ids: Sequence[int | str]) -> dict[str, list[float]]:
        """The stored vectors of these ids (those that have one)."""
        with self._index._errors():
            found = self._collection.get(ids=[str(i) for i in ids], include=["embeddings"])
        return {id_: [float(x) for x in vector]
                for id_, vector in zip(found["ids"], found["embeddings"], strict=True)}

    def query(self, vector: Sequence[float], *, k: int = 5, where: Mapping | None = None,
              exclude_ids: Sequence[int | str] = ()) -> list[Neighbour]:
        """The k nearest vectors, most similar first. `where`: {"subject": "Mathematics",
        "year": [2019, 2020], "difficulty": {"$ne": "hard"}} (None values are ignored), or
        Chroma's own where syntax."""
        return self.query_many([vector], k=k, where=where, exclude_ids=exclude_ids)[0]

    def query_many(self, vectors, *, k: int = 5, where: Mapping | None = None,
                   exclude_ids: Sequence[int | str] = ()) -> list[list[Neighbour]]:
        if k < 1 or not len(vectors):
            return [[] for _ in range(len(vectors))]
        excluded = {str(i) for i in exclude_ids}
        with self._index._errors():
            found = self._collection.query(
                query_embeddings=vectors, n_results=k + len(excluded), where=where_clause(where),
                include=["metadatas", "distances"])
        results = []
        for ids, distances, metadatas in zip(found["ids"], found["distances"],
                                             found["metadatas"], strict=True):
            neighbours = [
                Neighbour(id=id_, similarity=max(-1.0, min(1.0, 1.0 - float(distance))),
                          metadata=dict(metadata or {}))
                for id_, distance, metadata in zip(ids, distances, metadatas, strict=True)
                if id_ not in excluded]
            results.append(neighbours[:k])
        return results


def _metadata(metadata: Mapping | None) -> dict[str, Any]:
    metadata = dict(metadata or {})
    unknown = set(metadata) - set(METADATA_FIELDS)
    if unknown:
        raise ValueError(f"Unknown metadata {sorted(unknown)}: a vector carries "
                         f"{', '.join(METADATA_FIELDS)}.")
    for key, value in metadata.items():
        if value is not None and not isinstance(value, str | int | float | bool):
            raise ValueError(f"Metadata {key}={value!r}: only str, int, float and bool values.")
    # Every field, None for "none": Chroma's upsert keeps a key that is left out, and removes
    # one that is None (nor does it accept an empty dict).
    return {key: metadata.get(key) for key in METADATA_FIELDS}


def where_clause(filters: Mapping | None) -> dict | None:
    """Simple filters to Chroma's where: one field is {field: {"$eq": v}}, a list is "$in",
    a dict is an operator ({"$gte": 2015}); several fields are joined with "$and"."""
    if not filters:
        return None
    if any(str(key).startswith("$") for key in filters):
        return dict(filters)  # already Chroma's syntax
    clauses = []
    for key, value in filters.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            clauses.append({key: dict(value)})
        elif isinstance(value, list | tuple | set | frozenset):
            clauses.append({key: {"$in": list(value)}})
        else:
            clauses.append({key: {"$eq": value}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


# --- The server make run starts (manage.py chroma_server) -----------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((SERVER_HOST, 0))
        return probe.getsockname()[1]


class _Stop:
    """SIGTERM, SIGINT or SIGHUP: stop the server and leave. honcho sends SIGTERM to the
    process group, which reaches the server too; forwarding it again is harmless."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self):
        self.requested = False
        self.child: subprocess.Popen | None = None
        self._saved = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum, frame) -> None:
        self.requested = True
        if self.child is not None and self.child.poll() is None:
            with contextlib.suppress(OSError):
                self.child.send_signal(signal.SIGTERM)  # its graceful shutdown (SIGINT is not)

    def restore(self) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


def chroma_server_run(*, port: int | None = None, report: Callable[[str], None] = print) -> int:
    """Run `chroma run` on loopback over var/chroma until a signal stops it; record its address
    in var/chroma-server.json while it runs. Returns the exit status for the command."""
    config = vector_index_settings()
    if config.url:
        report(f"Note: CHROMA_URL is set ({config.url}): processes use that server, not this one.")
    running = chroma_server_record(config)
    if running is not None and _heartbeat(running.url):
        raise VectorIndexError(f"A Chroma server for {config.var_dir} already runs at "
                               f"{running.url} (pid {running.pid}).")
    stop = _Stop()
    lock = _FileStoreLock(config.lock_file)
    child: subprocess.Popen | None = None
    try:
        told = False
        while not lock.try_acquire(f"chroma_server (pid {os.getpid()})"):
            if stop.requested:
                return 0
            if not told:
                report(f"Waiting for {lock.holder()} to close the file store {config.store_dir}.")
                told = True
            time.sleep(0.2)
        config.store_dir.mkdir(parents=True, exist_ok=True)
        fixed_port = port or config.port
        for _attempt in range(3):
            chosen = fixed_port or _free_port()
            child = _server_start(config, chosen, lock)
            stop.child = child
            if stop.requested:
                return 0
            if _server_wait_ready(f"http://{SERVER_HOST}:{chosen}", child, stop):
                break
            if stop.requested:
                return 0
            # Another process may have taken a free port between the probe and the bind.
            if fixed_port or "not available" not in _log_tail(config.server_log):
                raise VectorIndexError(f"chroma run did not start:\n{_log_tail(config.server_log)}")
        else:
            raise VectorIndexError(f"chroma run did not start:\n{_log_tail(config.server_log)}")
        record = {"host": SERVER_HOST, "port": chosen, "pid": child.pid,
                  "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                  "path": str(config.store_dir), "wrapper_pid": os.getpid()}
        _write_atomically(config.server_file, json.dumps(record, indent=2) + "\n")
        report(f"Chroma server at http://{SERVER_HOST}:{chosen} (pid {child.pid}), data in "
               f"{config.store_dir}, log in {config.server_log}.")
        code = child.wait()
        if stop.requested:
            report("Chroma server stopped.")
            return 0
        report(f"chroma run ended by itself (status {code}):\n{_log_tail(config.server_log)}")
        return 1
    finally:
        if child is not None:
            _server_stop(child)
            _record_remove(config.server_file, child.pid)
        lock.close()
        stop.restore()


def _server_start(config: VectorIndexSettings, port: int, lock: _FileStoreLock):
    # Telemetry: chromadb 1.5.9's Rust server has no product telemetry; the only thing it can
    # export is OpenTelemetry, and only when a config file has an `open_telemetry` section.
    # `chroma run --path` uses the built-in single-node config (just persist_path), so nothing
    # leaves the machine. ANONYMIZED_TELEMETRY=False keeps it so if a later version reads it.
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
    with config.server_log.open("w") as log:
        # The child inherits the lock (pass_fds): the directory stays locked while the server
        # lives, even if this process is killed first.
        return subprocess.Popen(
            [sys.executable, "-c", _CHROMA_CLI, "run", "--path", str(config.store_dir),
             "--host", SERVER_HOST, "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            pass_fds=(lock.fd,))


def _server_wait_ready(url: str, child: subprocess.Popen, stop: _Stop,
                       timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.requested:
        if child.poll() is not None:
            return False
        if _heartbeat(url, 0.5):
            return True
        time.sleep(0.05)
    return False


def _server_stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        with contextlib.suppress(OSError):
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=8)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _record_remove(path: Path, pid: int) -> None:
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == pid:  # never another server's record
            path.unlink()


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)  # readers see the old file or the new one, never half


def _log_tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""
