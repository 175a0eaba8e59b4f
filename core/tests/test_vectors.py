"""The vector index (core/ai/vectors.py): the file store under its lock, a real `chroma run`
server shared by several processes, cosine scores, metadata filters, one collection per
embedder and dimension, timeouts, no telemetry, no default embedding function, and the rule
that DEBUG off needs a Chroma server (core.E001)."""

import base64
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.checks import registry
from django.core.exceptions import ImproperlyConfigured

from core.ai import vectors
from core.ai.types import ProviderUnavailable
from core.ai.vectors import (
    METADATA_FIELDS,
    VectorIndexBusy,
    collection_name,
    vector_index_check,
    vector_index_open,
    where_clause,
)
from core.tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
# Passed through to subprocesses; everything else is chosen by the test.
_PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


@dataclass(frozen=True)
class Space:
    """Stands for an embedder: a collection is picked by name and dimension."""

    name: str
    dimension: int


def a_space(dimension: int = 3) -> Space:
    return Space(f"test-{uuid.uuid4().hex[:10]}", dimension)


def subprocess_env(var_dir: Path, **extra: str) -> dict:
    env = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
    env |= {"DJANGO_SETTINGS_MODULE": "pastq.settings", "DEBUG": "on",
            "PASTQ_VAR_DIR": str(var_dir), "SECRET_KEY": "vector-index-tests",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    return {name: value for name, value in (env | extra).items() if value is not None}


def run_python(code: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def nothing_open_under(pid: int | str, directory: Path) -> list[str]:
    """Files of process `pid` open under `directory` (none for a process using the server)."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


def remote_addresses(pid: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The peer address of every TCP/UDP socket process `pid` has open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    peers = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[9] not in inodes:
                continue
            raw = bytes.fromhex(fields[2].split(":")[0])
            # /proc/net shows addresses as host-order 32-bit words
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            peers.append(ipaddress.ip_address(raw))
    return peers


def is_local(address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    address = mapped or address
    return address.is_loopback or address.is_unspecified


# --- Fixtures --------------------------------------------------------------------------------


@pytest.fixture
def file_store(settings, tmp_path):
    """Development settings, no server: the index is the file store under tmp_path/var."""
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path / "var"
    settings.CHROMA_URL = ""
    settings.CHROMA_LOCK_TIMEOUT = 10
    yield vectors.vector_index_settings()
    assert not vectors._file_store, "a test left the file store open"


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A real Chroma server for the session, started the way `make run` starts it
    (`manage.py chroma_server` on a free loopback port) over its own var dir."""
    var_dir = tmp_path_factory.mktemp("chroma-server") / "var"
    var_dir.mkdir()
    log_path = var_dir.parent / "chroma_server.out"
    log = log_path.open("w")
    process = subprocess.Popen([sys.executable, "manage.py", "chroma_server"], cwd=ROOT,
                               env=subprocess_env(var_dir), stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    record_file = var_dir / "chroma-server.json"
    started = time.monotonic()
    try:
        wait_for(lambda: record_file.exists() or process.poll() is not None, timeout=90,
                 interval=0.05, what="chroma_server to record its address")
        assert process.poll() is None, log_path.read_text()
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    record = json.loads(record_file.read_text())
    server = SimpleNamespace(var_dir=var_dir, record=record, process=process,
                             url=f"http://{record['host']}:{record['port']}",
                             started_in=time.monotonic() - started, log=log_path)
    yield server
    os.killpg(process.pid, signal.SIGTERM)  # what honcho does on Ctrl-C
    try:
        process.wait(timeout=15)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
    assert not record_file.exists(), "chroma_server left its record behind"


@pytest.fixture
def on_server(settings, chroma_server):
    """Development settings over the session's server var dir: the index is found through
    var/chroma-server.json."""
    settings.DEBUG = True
    settings.VAR_DIR = chroma_server.var_dir
    settings.CHROMA_URL = ""
    return chroma_server


@pytest.fixture(params=["file", "server"])
def any_index(request, settings, tmp_path):
    if request.param == "file":
        request.getfixturevalue("file_store")
    else:
        request.getfixturevalue("on_server")
    return request.param


# --- Collections, cosine scores, filters ------------------------------------------------------


def test_one_collection_per_embedder_and_dimension_with_a_readable_name():
    assert collection_name("all-MiniLM-L6-v2", 384) == "questions__all-minilm-l6-v2__384"
    assert collection_name("all-MiniLM-L6-v2+formula", 384) == \
        "questions__all-minilm-l6-v2-formula__384"
    assert collection_name("gemini-embedding-001", 768) != \
        collection_name("gemini-embedding-001", 3072)


def test_upsert_query_with_filters_and_delete(any_index):
    space = a_space()
    with vector_index_open() as index:
        assert index.kind == any_index
        collection = index.collection(space)
        calls = collection.upsert(
            [1, 2, 3, 4],
            [[1, 0, 0], [0, 1, 0], [-1, 0, 0], [0.6, 0.8, 0]],
            [{"subject": "Mathematics", "topic": "Algebra", "year": 2019, "type": "mcq",
              "difficulty": "easy"},
             {"subject": "Physics", "topic": None, "year": 2020, "type": "mcq",
              "difficulty": None},  # None: no value (Chroma keeps no key for it)
             {"subject": "Mathematics", "year": 2020},
             None])
        assert calls == 1  # the batch in one request
        assert collection.count() == 4

        nearest = collection.query([1, 0, 0], k=4)
        # cosine similarity = 1 - Chroma's cosine distance
        assert [n.id for n in nearest] == ["1", "4", "2", "3"]
        assert [round(n.similarity, 4) for n in nearest] == [1.0, 0.6, 0.0, -1.0]
        assert nearest[0].metadata == {"subject": "Mathematics", "topic": "Algebra",
                                       "year": 2019, "type": "mcq", "difficulty": "easy"}
        assert nearest[2].metadata == {"subject": "Physics", "year": 2020, "type": "mcq"}
        assert nearest[1].metadata == {}

        def ids(**filters):
            return [n.id for n in collection.query([1, 0, 0], k=10, where=filters)]

        assert ids(subject="Mathematics") == ["1", "3"]
        assert ids(subject="Mathematics", year=2020) == ["3"]
        assert ids(year=[2019, 2020]) == ["1", "2", "3"]
        assert ids(year={"$gte": 2020}) == ["2", "3"]
        assert ids(subject="Physics", topic=None) == ["2"]  # None: no condition
        assert [n.id for n in collection.query([1, 0, 0], k=2, exclude_ids=[1])] == ["4", "2"]
        assert collection.vectors([4, 99]) == {"4": pytest.approx([0.6, 0.8, 0.0])}

        # upsert replaces a vector and its metadata (a field now None is gone, not kept)
        collection.upsert([1], [[0, 0, 1]], [{"subject": "Mathematics", "topic": None}])
        assert collection.query([0, 0, 1], k=1)[0].metadata == {"subject": "Mathematics"}
        assert ids(topic="Algebra") == []

        collection.delete([1, 2, 99])
        assert collection.count() == 2
        assert [n.id for n in collection.query([1, 0, 0], k=10)] == ["4", "3"]
        assert index.collection_drop(collection.name) is True
        assert index.collection_drop(collection.name) is False


def test_embedders_and_dimensions_never_share_a_collection(file_store):
    model_a, model_b, model_a_wider = Space("model-a", 3), Space("model-b", 3), Space("model-a", 4)
    with vector_index_open() as index:
        index.collection(model_a).upsert([1], [[1, 0, 0]], [{"subject": "A"}])
        index.collection(model_b).upsert([1, 2], [[0, 1, 0], [0, 0, 1]], [{"subject": "B"}] * 2)
        index.collection(model_a_wider).upsert([1], [[0, 0, 0, 1]])
        assert [(c.name, c.embedder, c.dimension, c.count) for c in index.collections()] == [
            ("questions__model-a__3", "model-a", 3, 1),
            ("questions__model-a__4", "model-a", 4, 1),
            ("questions__model-b__3", "model-b", 3, 2)]
        found = index.collection(model_a).query([0, 1, 0], k=5)
        assert [(n.id, n.metadata["subject"]) for n in found] == [("1", "A")]
        with pytest.raises(ValueError, match="has 3 dimensions"):
            index.collection(model_a_wider).upsert([2], [[1, 0, 0]])
        index.collection_drop("questions__model-b__3")
        assert [c.name for c in index.collections()] == [
            "questions__model-a__3", "questions__model-a__4"]


def test_bad_input_is_refused_before_anything_is_written(file_store):
    with vector_index_open() as index:
        collection = index.collection(a_space())
        with pytest.raises(ValueError, match="Unknown metadata"):
            collection.upsert([1], [[1, 0, 0]], [{"subjet": "typo"}])
        with pytest.raises(ValueError, match="only str, int, float and bool"):
            collection.upsert([1], [[1, 0, 0]], [{"year": [2019]}])
        with pytest.raises(ValueError, match="one to one"):
            collection.upsert([1, 2], [[1, 0, 0]])
        assert collection.count() == 0


def test_where_clause():
    assert where_clause(None) is None
    assert where_clause({"topic": None}) is None
    assert where_clause({"subject": "Maths"}) == {"subject": {"$eq": "Maths"}}
    assert where_clause({"subject": "Maths", "year": (2019, 2020)}) == {
        "$and": [{"subject": {"$eq": "Maths"}}, {"year": {"$in": [2019, 2020]}}]}
    raw = {"$or": [{"year": 2019}, {"year": 2020}]}
    assert where_clause(raw) == raw
    assert set(METADATA_FIELDS) == {"subject", "topic", "year", "type", "difficulty"}


def test_a_batch_is_one_request_up_to_the_servers_limits(file_store, monkeypatch):
    with vector_index_open() as index:
        assert index.max_batch_size() == 5461  # chromadb 1.5.9's pre-flight answer
        collection = index.collection(a_space(8))
        requests = []
        real_upsert = collection._collection.upsert
        monkeypatch.setattr(collection._collection, "upsert",
                            lambda **kw: requests.append(len(kw["ids"])) or real_upsert(**kw))
        vectors_ = [[float(i + 1)] + [0.0] * 7 for i in range(100)]
        assert collection.upsert(range(100), vectors_) == 1
        index._max_batch = 40  # a smaller server limit: chunks of at most 40
        assert collection.upsert(range(100), vectors_) == 3
        assert requests == [100, 40, 40, 20]
        assert collection.count() == 100
        # 3072 dimensions: a request stays under the server's 40 MB body limit
        index._max_batch = None
        assert index.collection(Space("wide", 3072))._chunk_size() * (3072 * 16 // 3) < 40e6


# --- Never the default embedding function, never the network -----------------------------------


@pytest.fixture
def default_embedding_function_forbidden(monkeypatch):
    """Chroma's default embedding function downloads an ONNX model the first time it runs:
    any use of it fails the test."""
    from chromadb.api.types import DefaultEmbeddingFunction
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    def forbidden(*args, **kwargs):
        raise AssertionError("Chroma's default embedding function ran")

    monkeypatch.setattr(DefaultEmbeddingFunction, "__call__", forbidden)
    for name in ("__init__", "__call__", "_download_model_if_not_exists"):
        monkeypatch.setattr(ONNXMiniLM_L6_V2, name, forbidden)


@pytest.fixture
def loopback_only(monkeypatch):
    """Any connection this process opens to another machine fails the test."""
    attempts = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = ipaddress.ip_address(socket.gethostbyname(address[0])
                                        if sock.family == socket.AF_INET else address[0])
            attempts.append(host)
            if not is_local(host):
                raise AssertionError(f"connection to {address} attempted")

    monkeypatch.setattr(socket.socket, "connect",
                        lambda sock, address: check(sock, address) or real_connect(sock, address))
    monkeypatch.setattr(socket.socket, "connect_ex",
                        lambda sock, address: check(sock, address) or real_connect_ex(sock,
                                                                                      address))
    return attempts


def test_no_default_embedding_function_no_telemetry_no_network(
        any_index, default_embedding_function_forbidden, loopback_only):
    with vector_index_open() as index:
        assert index._client.get_settings().anonymized_telemetry is False
        collection = index.collection(a_space())
        chroma_collection = collection._collection
        assert chroma_collection._embedding_function is None
        collection.upsert([1, 2], [[1, 0, 0], [0, 1, 0]], [{"subject": "A"}, None])
        assert [n.id for n in collection.query([1, 0, 0], k=2)] == ["1", "2"]
        collection.delete([2])
        # Without vectors Chroma would have to embed the text itself: it refuses instead.
        with pytest.raises(ValueError, match="embedding function"):
            chroma_collection.add(ids=["3"], documents=["What is 3x + 7 = 22?"])
        with pytest.raises(ValueError, match="embedding function"):
            chroma_collection.query(query_texts=["3x + 7 = 22"], n_results=1)
        index.collection_drop(collection.name)
    if any_index == "server":
        assert loopback_only  # it did talk to the server, on loopback
        pid = json.loads((vectors.vector_index_settings().server_file).read_text())["pid"]
        peers = remote_addresses(pid)
        assert peers and all(is_local(peer) for peer in peers), peers
    assert all(is_local(peer) for peer in remote_addresses(os.getpid()))


# --- Where the index lives --------------------------------------------------------------------


def test_a_vector_written_by_one_process_is_found_by_another(on_server):
    space = a_space()
    store = str(on_server.var_dir / "chroma")
    code = f"""
import django, json
django.setup()
from core.ai.vectors import vector_index_open
from core.tests.test_vectors import Space, nothing_open_under
with vector_index_open() as index:
    collection = index.collection(Space({space.name!r}, 3))
    collection.upsert([101], [[0.0, 1.0, 0.0]], [{{"subject": "Physics", "year": 2021}}])
    found = collection.query([1.0, 0.0, 0.0], k=5)
    print(json.dumps({{"kind": index.kind, "where": index.where,
                      "found": [[n.id, round(n.similarity, 4)] for n in found],
                      "opened": nothing_open_under("self", {store!r})}}))
"""
    with vector_index_open() as index:
        collection = index.collection(space)
        collection.upsert([100], [[1.0, 0.0, 0.0]], [{"subject": "Mathematics", "year": 2020}])
        result = run_python(code, subprocess_env(on_server.var_dir))
        assert result.returncode == 0, result.stderr
        other = json.loads(result.stdout.strip().splitlines()[-1])
        # The other process found the server through var/chroma-server.json, saw this
        # process's vector, and never opened the server's directory itself.
        assert (other["kind"], other["where"]) == ("server", on_server.url)
        assert other["found"][0] == ["100", 1.0]
        assert other["opened"] == []
        # ... and this process sees the other's.
        found = collection.query([0.0, 1.0, 0.0], k=1, where={"subject": "Physics"})
        assert [(n.id, round(n.similarity, 4), n.metadata) for n in found] == [
            ("101", 1.0, {"subject": "Physics", "year": 2021})]
        assert index.kind == "server"
        assert nothing_open_under(os.getpid(), on_server.var_dir / "chroma") == []
        index.collection_drop(collection.name)


HOLD_THE_FILE_STORE = """
import django, sys
django.setup()
from core.ai.vectors import vector_index_open
from core.tests.test_vectors import Space
with vector_index_open() as index:
    index.collection(Space("held", 3)).upsert([7], [[1.0, 0.0, 0.0]])
    print(index.kind, flush=True)
    sys.stdin.readline()  # hold the file store until told
"""


def test_two_processes_never_open_the_file_store_at_once(file_store, settings, caplog):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_FILE_STORE], cwd=ROOT,
                              env=subprocess_env(file_store.var_dir), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "file", holder.stderr.read()
        settings.CHROMA_LOCK_TIMEOUT = 0.5
        started = time.monotonic()
        with pytest.raises(VectorIndexBusy) as refused:
            vector_index_open()
        assert time.monotonic() - started < 5
        assert f"in use by {holder.pid} " in str(refused.value)
        assert "make run" in str(refused.value)
        assert isinstance(refused.value, ProviderUnavailable)  # a job retries later
        assert "waiting up to 0.5 s" in caplog.text

        # The second one waits while the first finishes, then opens it.
        settings.CHROMA_LOCK_TIMEOUT = 30
        def release():
            holder.stdin.write("done\n")
            holder.stdin.flush()

        threading.Timer(0.5, release).start()
        with vector_index_open() as index:
            assert index.kind == "file"
            assert index.collection(Space("held", 3)).vectors([7]) == {"7": [1.0, 0.0, 0.0]}
        assert holder.wait(timeout=30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_one_process_may_open_the_file_store_more_than_once(file_store):
    with vector_index_open() as outer, vector_index_open() as inner:
        inner.collection(Space("nested", 3)).upsert([1], [[1, 0, 0]])
        assert outer.collection(Space("nested", 3)).count() == 1
    assert not vectors._file_store  # released with the last one


def test_a_forked_child_does_not_inherit_the_file_store(file_store, settings):
    """django-q forks its workers: a child must neither use its parent's file-store client
    nor keep the parent's lock alive."""
    settings.CHROMA_LOCK_TIMEOUT = 0.2
    read_end, write_end = os.pipe()
    with vector_index_open() as index:
        index.collection(Space("forked", 3)).upsert([1], [[1, 0, 0]])
        child = os.fork()
        if child == 0:  # the child: report, then outlive the parent's use of the lock
            try:
                inherited = bool(vectors._file_store)
                try:
                    vector_index_open()
                    outcome = "opened"
                except VectorIndexBusy:
                    outcome = "busy"
                os.write(write_end, f"{inherited} {outcome}".encode())
                time.sleep(3)
            finally:
                os._exit(0)
        os.close(write_end)
        assert os.read(read_end, 100).decode() == "False busy"
        os.close(read_end)
    try:
        assert vectors._file_store_is_free(file_store)  # the child still lives
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_a_stale_server_record_is_ignored(file_store):
    dead = subprocess.Popen(["true"])
    dead.wait()
    for pid, port in ((dead.pid, 1), (os.getpid(), 9)):  # a dead process; a live one not listening
        file_store.var_dir.mkdir(parents=True, exist_ok=True)
        file_store.server_file.write_text(json.dumps(
            {"host": "127.0.0.1", "port": port, "pid": pid, "started_at": "", "path": ""}))
        with vector_index_open() as index:
            assert index.kind == "file"


def test_a_server_that_does_not_answer_is_provider_unavailable(settings):
    settings.DEBUG = True
    settings.CHROMA_TIMEOUT = 1
    # Nothing listening: refused at once.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.CHROMA_URL = f"http://127.0.0.1:{closed_port}"
    with pytest.raises(ProviderUnavailable, match="does not answer"):
        vector_index_open()
    # Listening, accepting, never answering: the heartbeat gives up quickly.
    silent = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: held.append(silent.accept()), daemon=True).start()
    settings.CHROMA_URL = f"http://127.0.0.1:{silent.getsockname()[1]}"
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable):
        vector_index_open()
    assert time.monotonic() - started < 5
    silent.close()


class StallingProxy:
    """A TCP proxy to the server that, once stalled, swallows what the client sends: the
    server never answers."""

    def __init__(self, upstream_port: int):
        self.upstream_port, self.stalled = upstream_port, threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source, target):
        try:
            while data := source.recv(65536):
                if not self.stalled.is_set():
                    target.sendall(data)
        except OSError:
            pass

    def close(self):
        self.listener.close()


def test_every_call_to_a_server_has_a_timeout(settings, chroma_server):
    proxy = StallingProxy(chroma_server.record["port"])
    settings.DEBUG, settings.CHROMA_TIMEOUT = False, 1  # production: CHROMA_URL
    settings.CHROMA_URL = f"http://127.0.0.1:{proxy.port}"
    try:
        with vector_index_open() as index:
            assert (index.kind, index.where) == ("server", settings.CHROMA_URL)
            collection = index.collection(a_space())
            collection.upsert([1], [[1, 0, 0]])
            proxy.stalled.set()
            started = time.monotonic()
            with pytest.raises(ProviderUnavailable, match="did not answer within 1 s"):
                collection.query([1, 0, 0], k=1)
            assert time.monotonic() - started < 5
            proxy.stalled.clear()
            index.collection_drop(collection.name)
    finally:
        proxy.close()


# --- DEBUG off: a Chroma server is required ---------------------------------------------------


def test_with_debug_off_a_chroma_server_is_required(settings, tmp_path):
    settings.DEBUG, settings.CHROMA_URL, settings.VAR_DIR = False, "", tmp_path
    with pytest.raises(ImproperlyConfigured, match="CHROMA_URL is not set"):
        vector_index_open()
    [error] = vector_index_check(None)
    assert error.id == "core.E001" and "CHROMA_URL" in error.hint
    assert not (tmp_path / "chroma").exists()  # the file store was never opened

    settings.CHROMA_URL = "chroma.internal:8000"
    assert "must look like http://host:8000" in vector_index_check(None)[0].msg
    settings.CHROMA_URL = "http://chroma.internal:8000"
    assert vector_index_check(None) == []
    settings.DEBUG, settings.CHROMA_URL = True, ""
    assert vector_index_check(None) == []


def test_it_is_a_deploy_check():
    assert vector_index_check in registry.registry.get_checks(include_deployment_checks=True)
    assert vector_index_check not in registry.registry.get_checks()


PRODUCTION = {"DEBUG": "off", "SECRET_KEY": secrets.token_urlsafe(50),
              "ALLOWED_HOSTS": "pastq.example.com",
              "EMAIL_URL": "smtp+tls://mailer:password@smtp.example.com:587",
              "BACKUP_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode()}


def test_without_chroma_url_check_deploy_qcluster_and_gunicorn_refuse(tmp_path):
    env = subprocess_env(tmp_path / "var", **PRODUCTION)
    check = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 1
    assert "(core.E001) CHROMA_URL is not set" in check.stderr
    assert "System check identified 1 issue" in check.stderr  # nothing else

    qcluster = subprocess.run([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert qcluster.returncode == 1
    assert "CommandError: CHROMA_URL is not set" in qcluster.stderr

    gunicorn = subprocess.run(
        [str(ROOT / ".venv/bin/gunicorn"), "pastq.wsgi:application", "--bind", "127.0.0.1:0",
         "--workers", "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert gunicorn.returncode != 0
    assert "CHROMA_URL is not set" in gunicorn.stderr


# --- manage.py chroma_server ------------------------------------------------------------------


def test_chroma_server_records_its_address_and_refuses_a_second_one(chroma_server):
    record = chroma_server.record
    assert record["host"] == "127.0.0.1" and record["path"] == str(chroma_server.var_dir / "chroma")
    assert vectors._pid_alive(record["pid"]) and record["started_at"]
    assert vectors._heartbeat(chroma_server.url)
    print(f"chroma_server answered {chroma_server.started_in:.1f}s after it was started")
    second = subprocess.run([sys.executable, "manage.py", "chroma_server"], cwd=ROOT,
                            env=subprocess_env(chroma_server.var_dir), capture_output=True,
                            text=True, timeout=60)
    assert second.returncode == 1
    assert f"already runs at {chroma_server.url}" in second.stderr


def test_chroma_server_waits_for_the_file_store_then_stops_on_sigterm(file_store):
    """`make run` starting while a command has the file store open: the server waits for it.
    Then honcho's SIGTERM to the process group stops it and its record goes."""
    with vector_index_open() as index:
        index.collection(Space("before-the-server", 3)).upsert([1], [[1, 0, 0]])
        log = file_store.var_dir / "wrapper.out"
        server = subprocess.Popen([sys.executable, "manage.py", "chroma_server"], cwd=ROOT,
                                  env=subprocess_env(file_store.var_dir),
                                  stdout=log.open("w"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            wait_for(lambda: "Waiting for" in log.read_text(), timeout=60,
                     what="chroma_server to wait for the file store")
            assert not file_store.server_file.exists()
        except BaseException:
            os.killpg(server.pid, signal.SIGKILL)
            raise
    try:
        wait_for(lambda: vectors.chroma_server_record(file_store), timeout=60,
                 what="the server to start once the file store is free")
        with vector_index_open() as index:
            assert index.kind == "server"
            assert index.collection(Space("before-the-server", 3)).count() == 1
        server_pid = vectors.chroma_server_record(file_store).pid
        started = time.monotonic()
        os.killpg(server.pid, signal.SIGTERM)
        assert server.wait(timeout=15) == 0
        print(f"chroma_server stopped {time.monotonic() - started:.2f}s after SIGTERM")
        assert not vectors._pid_alive(server_pid)
        assert not file_store.server_file.exists()
        assert "Chroma server stopped." in log.read_text()
        with vector_index_open() as index:  # the file store again, with what the server wrote
            assert index.kind == "file"
            assert index.collection(Space("before-the-server", 3)).count() == 1
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
