"""The SQLite gallery store: enrol / remove / list / search, the index in step with the
table, two processes on one file, and no acknowledged enrolment lost to ``kill -9``."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tripletlab.deploy.gallery_store import GalleryStore, StoreError
from tripletlab.errors import DataError

DIM = 4


def _vectors(seed: int, n: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def test_enrol_search_list_remove(tmp_path):
    store = GalleryStore(tmp_path / "g.sqlite", dim=DIM, metric="sqeuclidean")
    a = store.enrol("alice", _vectors(1), refs=["a1.png", "a2.png"], thumbnails=[b"x", None])
    b = store.enrol("bob", _vectors(2, 3))
    assert a == [1, 2] and b == [3, 4, 5]
    assert store.enrol("alice", _vectors(3, 1)) == [6]  # more images of a known identity
    infos = {i.identity: i.images for i in store.identities()}
    assert infos == {"alice": 3, "bob": 3}
    query = _vectors(2, 3)[1:2] + 1e-3  # near bob's second image
    found = store.search(query, 5)[0]
    assert [m.identity for m in found] == ["bob", "alice"]
    assert found[0].image_id == 4 and found[0].distance == pytest.approx(4e-6, abs=1e-5)
    assert store.thumbnail(1) == b"x" and store.thumbnail(2) is None
    assert store.remove("bob") == 3
    assert [m.identity for m in store.search(query, 5)[0]] == ["alice"]
    with pytest.raises(StoreError, match="no identity 'bob'"):
        store.remove("bob")
    store.check_index()
    store.close()
    reopened = GalleryStore(tmp_path / "g.sqlite")
    assert reopened.counts() == {"identities": 1, "images": 3}
    reopened.check_index()


def test_search_on_an_empty_store_and_bad_input(tmp_path):
    store = GalleryStore(tmp_path / "g.sqlite", dim=DIM, metric="cosine")
    assert store.search(_vectors(0, 2), 3) == [[], []]
    with pytest.raises(DataError, match=r"shape \(n ≥ 1, 4\)"):
        store.enrol("x", np.zeros((1, 3)))
    with pytest.raises(DataError, match="NaN"):
        store.enrol("x", np.full((1, DIM), np.nan))
    for name in ("", " ", "a/b", "tab\there", "x" * 201):
        with pytest.raises(StoreError):
            store.enrol(name, _vectors(0, 1))
    assert store.counts() == {"identities": 0, "images": 0}


def test_a_store_of_another_model_is_refused(tmp_path):
    GalleryStore(tmp_path / "g.sqlite", dim=DIM, metric="sqeuclidean", model_id="aaa").close()
    with pytest.raises(StoreError, match="model_id = aaa"):
        GalleryStore(tmp_path / "g.sqlite", dim=DIM, metric="sqeuclidean", model_id="bbb")
    with pytest.raises(StoreError, match="dim = 4"):
        GalleryStore(tmp_path / "g.sqlite", dim=5, metric="sqeuclidean")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not a usable gallery store"):
        GalleryStore(tmp_path / "junk.sqlite", dim=DIM, metric="sqeuclidean")


def test_a_second_connection_sees_writes_and_rebuilds_its_index(tmp_path):
    writer = GalleryStore(tmp_path / "g.sqlite", dim=DIM, metric="euclidean")
    reader = GalleryStore(tmp_path / "g.sqlite")
    writer.enrol("alice", _vectors(1))
    assert [m.identity for m in reader.search(_vectors(1, 1), 3)[0]] == ["alice"]
    reader.enrol("carol", _vectors(5, 1))  # both may write
    writer.remove("alice")
    assert reader.counts() == {"identities": 1, "images": 1}
    assert writer.counts() == {"identities": 1, "images": 1}
    reader.check_index()
    writer.check_index()


# -- kill -9 during a stream of enrolments -------------------------------------------------

#: The "server": enrols what it reads on stdin and acknowledges each enrolment on stdout
#: only after GalleryStore.enrol has returned (committed).
_WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from tripletlab.deploy.gallery_store import GalleryStore

    store = GalleryStore(sys.argv[1], dim=4, metric="sqeuclidean")
    print("ready", flush=True)
    for line in sys.stdin:
        name, seed = line.split()
        vectors = np.random.default_rng(int(seed)).standard_normal((2, 4)).astype(np.float32)
        ids = store.enrol(name, vectors, refs=[name + "-0", name + "-1"])
        print("ack", name, *ids, flush=True)
    """
)
ENROLMENTS_PER_TRIAL = 400
TRIALS = 3


def _start_worker(script, db):
    return subprocess.Popen(
        [sys.executable, str(script), str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


def test_no_acknowledged_enrolment_is_lost_to_kill_9(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    db = tmp_path / "g.sqlite"
    acked: dict[str, int] = {}  # name → seed of every acknowledged enrolment
    reader = None
    for trial in range(TRIALS):
        rng = random.Random(trial)  # deterministic kill points (in acknowledgements)
        worker = _start_worker(script, db)
        assert worker.stdout.readline().strip() == "ready"
        if reader is None:  # a second process-level reader, open across all the kills
            reader = GalleryStore(db)
        stream = "".join(f"t{trial}-{i} {trial * 1000 + i}\n" for i in range(ENROLMENTS_PER_TRIAL))
        worker.stdin.write(stream)
        worker.stdin.flush()
        kill_after = rng.randint(5, 60)
        seen = 0
        while seen < kill_after:
            line = worker.stdout.readline()
            assert line.startswith("ack"), line
            acked[line.split()[1]] = int(line.split()[1].split("-")[1]) + trial * 1000
            seen += 1
        time.sleep(rng.uniform(0, 0.02))  # land anywhere inside the next enrolments
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        for line in worker.stdout:  # acknowledgements flushed before the kill count too
            # (a line cut by the kill — no newline — was never a whole acknowledgement)
            if line.startswith("ack") and line.endswith("\n"):
                acked[line.split()[1]] = int(line.split()[1].split("-")[1]) + trial * 1000
        assert worker.returncode == -signal.SIGKILL
        # The reader (never restarted) follows the other process's commits.
        reader.check_index()
        restarted = GalleryStore(db)
        restarted.check_index()
        counts = {i.identity: i.images for i in restarted.identities()}
        assert set(acked) <= set(counts)
        assert set(counts.values()) == {2}  # an enrolment is all there or not at all
        for name, seed in acked.items():
            expected = np.random.default_rng(seed).standard_normal((2, 4)).astype(np.float32)
            nearest = restarted.search(expected[:1], 1)[0][0]
            assert nearest.identity == name and nearest.distance == pytest.approx(0, abs=1e-5)
        assert reader.counts() == restarted.counts()
        restarted.close()
    assert len(acked) >= TRIALS * 5
    reader.close()


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cosine"])
def test_nearest_identities_equal_a_brute_force_reference(metric):
    from tripletlab.deploy.vector_index import VectorIndex, pairwise_distances

    rng = np.random.default_rng(7)
    for trial in range(20):
        n, dim, k = int(rng.integers(1, 60)), int(rng.integers(1, 6)), int(rng.integers(1, 8))
        owners = rng.integers(0, 9, n)
        vectors = rng.integers(-2, 3, (n, dim)).astype(np.float32)  # small integers: ties
        index = VectorIndex(dim, metric)
        index.add(np.arange(100, 100 + n), owners, vectors)
        if trial % 3 == 0:  # removals keep the grouping right
            index.remove_identity(int(owners[0]))
        queries = rng.integers(-2, 3, (4, dim)).astype(np.float32)
        found = index.nearest_identities(queries, k)
        full = pairwise_distances(queries, index.embeddings, metric)
        for row, matches in zip(full, found, strict=True):
            best = {}
            for d, owner, image in zip(row, index.identity_ids, index.image_ids, strict=True):
                if owner not in best or d < best[owner][0]:
                    best[owner] = (d, image)
            expected = sorted((d, owner, image) for owner, (d, image) in best.items())[:k]
            got = [(m.distance, m.identity_id, m.image_id) for m in matches]
            assert [(o, i) for _, o, i in got] == [(o, i) for _, o, i in expected]
            np.testing.assert_allclose([g[0] for g in got], [e[0] for e in expected], atol=1e-5)
