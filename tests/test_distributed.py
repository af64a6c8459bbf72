"""Global mining across 2 gloo processes equals one process on the concatenated batch.

The processes are started the way users start them (``torch.multiprocessing.spawn``), on CPU,
with a file-based rendezvous so parallel test runs never fight over a port.
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tripletlab import distributed as tdist
from tripletlab.functional.distances import pairwise_distances

WORLD = 2
LOCAL_BATCH = 6
DIM = 5
MARGIN = 0.5


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.nn.Linear]:
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(WORLD * LOCAL_BATCH, 7, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 3, 0, 3, 1, 2, 3])
    torch.manual_seed(1)
    model = torch.nn.Linear(7, DIM).double()
    return inputs, labels, model


def _brute_force_batch_all(
    anchors: torch.Tensor,
    anchor_labels: torch.Tensor,
    anchor_index: torch.Tensor,
    ref: torch.Tensor,
    ref_labels: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ over all valid (a, p, n) of [d_ap − d_an + m]₊ with a among ``anchors``, p and n in
    ``ref`` (p ≠ a by global index); and the number of valid triplets. O(B·N²) on purpose."""
    dist = pairwise_distances(anchors, ref)
    same = anchor_labels[:, None] == ref_labels[None, :]
    not_self = anchor_index[:, None] != torch.arange(len(ref))[None, :]
    positive = same & not_self
    negative = ~same
    valid = positive[:, :, None] & negative[:, None, :]
    values = (dist[:, :, None] - dist[:, None, :] + MARGIN).clamp_min(0)
    return (values * valid).sum(), valid.sum()


def _partial_batch_all(embeddings, labels, gathered):
    index = gathered.local_indices(len(labels))
    return _brute_force_batch_all(embeddings, labels, index, gathered.embeddings, gathered.labels)


def _batch_all_mean(embeddings, labels):
    index = torch.arange(len(labels))
    total, count = _brute_force_batch_all(embeddings, labels, index, embeddings, labels)
    return total / count


def _single_process_reference():
    inputs, labels, model = _data()
    emb = model(inputs)
    total, count = _brute_force_batch_all(emb, labels, torch.arange(len(labels)), emb, labels)
    loss = total / count
    loss.backward()
    return loss.detach(), model.weight.grad.clone(), model.bias.grad.clone()


def _library_losses():
    """The library's batch losses, each with a non-default reduction where it matters."""
    from functools import partial

    from tripletlab.functional import (
        batch_all_triplet_loss,
        batch_hard_triplet_loss,
        batch_semi_hard_triplet_loss,
    )

    return {
        "batch_all_mean_active": partial(batch_all_triplet_loss, margin=MARGIN),
        "batch_all_smooth_mean": partial(
            batch_all_triplet_loss, margin=MARGIN, smoothing=0.3, reduction="mean"
        ),
        "batch_hard": partial(batch_hard_triplet_loss, margin=MARGIN),
        "batch_semi_hard": partial(batch_semi_hard_triplet_loss, margin=MARGIN),
    }


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    from tripletlab.train.distributed_training import DistributedContext

    tdist.init_distributed(
        "gloo", timeout_s=30, rank=rank, world_size=WORLD, init_method=f"file://{init_file}"
    )
    try:
        # every DistributedDataParallel of the test's own dies with _run_all's frame, while
        # the process group is alive: a DDP reducer holding the last reference to a destroyed
        # gloo group deadlocks in its destructor (seen: a rank hung for 300 s at exit)
        held = _run_all(rank, out_dir)
        # the caller still holds a DistributedTrainer, wrapped again by a step after its fit:
        # the library's close releases the wrapper, collects, waits for all, then destroys
        wrapped = held.ddp is not None
        DistributedContext(enabled=True, rank=rank, world_size=WORLD).close()
        torch.save(
            {
                "wrapped_before_close": wrapped,
                "released_by_close": held.ddp is None,
                "group_left": not torch.distributed.is_initialized(),
            },
            os.path.join(out_dir, f"close{rank}.pt"),
        )
    finally:
        tdist.destroy_distributed()  # after a failure (a no-op after close)


def _run_all(rank: int, out_dir: str):
    """The work of one rank (see _worker); returns a trained DistributedTrainer."""
    inputs, labels, model = _data()
    local = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    # (1) through DDP: the per-rank loss K·S_r/N, gradients averaged by DDP
    emb = ddp(inputs[local])
    loss = tdist.global_loss(_partial_batch_all, emb, labels[local])
    loss.backward()
    # (2) every rank evaluates the loss on the whole gathered batch (no rescaling)
    _, _, model2 = _data()
    ddp2 = torch.nn.parallel.DistributedDataParallel(model2)
    full = tdist.global_batch_loss(_batch_all_mean, ddp2(inputs[local]), labels[local])
    full.backward()
    # (3) without DDP, gradients of the local embeddings themselves (no K factor)
    x = model(inputs).detach()[local].requires_grad_(True)
    unscaled = tdist.global_loss(_partial_batch_all, x, labels[local], scale_by_world_size=False)
    unscaled.backward()
    _uneven_gather(rank, out_dir)
    trainer = _distributed_trainer(rank, out_dir)
    library = {}
    for name, loss_fn in _library_losses().items():
        _, _, model3 = _data()
        ddp3 = torch.nn.parallel.DistributedDataParallel(model3)
        value = tdist.global_batch_loss(loss_fn, ddp3(inputs[local]), labels[local])
        value.backward()
        library[name] = [value.detach(), model3.weight.grad, model3.bias.grad]
    torch.save(
        {
            "library": library,
            "global_loss": tdist.global_mean(loss),
            "summed_unscaled": tdist.all_reduce_sum(unscaled.detach()),
            "weight_grad": model.weight.grad,
            "bias_grad": model.bias.grad,
            "embedding_grad": x.grad,
            "full_loss": full.detach(),
            "full_weight_grad": model2.weight.grad,
            "full_bias_grad": model2.bias.grad,
        },
        os.path.join(out_dir, f"rank{rank}.pt"),
    )
    return trainer


def test_two_gloo_processes_equal_one_process_on_the_concatenated_batch(
    two_rank_results: Path,
) -> None:
    tmp_path = two_rank_results
    loss, weight_grad, bias_grad = _single_process_reference()

    inputs, labels, model = _data()
    emb = model(inputs).detach().requires_grad_(True)
    total, count = _brute_force_batch_all(emb, labels, torch.arange(len(labels)), emb, labels)
    (total / count).backward()
    assert count > 0 and loss > 0

    for rank in range(WORLD):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(result["global_loss"], loss, rtol=0, atol=1e-6)
        torch.testing.assert_close(result["summed_unscaled"], loss, rtol=0, atol=1e-6)
        torch.testing.assert_close(result["weight_grad"], weight_grad, rtol=0, atol=1e-6)
        torch.testing.assert_close(result["bias_grad"], bias_grad, rtol=0, atol=1e-6)
        torch.testing.assert_close(result["full_loss"], loss, rtol=0, atol=1e-6)
        torch.testing.assert_close(result["full_weight_grad"], weight_grad, rtol=0, atol=1e-6)
        torch.testing.assert_close(result["full_bias_grad"], bias_grad, rtol=0, atol=1e-6)
        for name, loss_fn in _library_losses().items():
            _, _, model = _data()
            want = loss_fn(model(inputs), labels)
            want.backward()
            assert want > 0, name
            got_loss, got_w, got_b = result["library"][name]
            torch.testing.assert_close(got_loss, want.detach(), rtol=0, atol=1e-6)
            torch.testing.assert_close(got_w, model.weight.grad, rtol=0, atol=1e-6)
            torch.testing.assert_close(got_b, model.bias.grad, rtol=0, atol=1e-6)
        local = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        torch.testing.assert_close(result["embedding_grad"], emb.grad[local], rtol=0, atol=1e-6)
        # the cross-rank terms are there: a gather without gradient would miss them
        assert result["embedding_grad"].abs().sum() > 0


def _uneven_gather(rank: int, out_dir: str) -> None:
    x = torch.full((rank + 2, 3), float(rank), requires_grad=True)
    batch = tdist.gather_batch(x, torch.arange(rank + 2) + 10 * rank)
    weights = torch.arange(len(batch.embeddings), dtype=torch.float32)[:, None]
    (batch.embeddings * weights).sum().backward()
    torch.save(
        {
            "embeddings": batch.embeddings.detach(),
            "labels": batch.labels,
            "offset": batch.offset,
            "grad": x.grad,
        },
        os.path.join(out_dir, f"uneven{rank}.pt"),
    )


def _trainer_data():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(48, 7, generator=gen, dtype=torch.float64)
    y = torch.arange(48) % 4
    return x, y


def _make_trainer(cls, checkpoint_dir=None):
    from tripletlab.functional import batch_all_triplet_loss

    torch.manual_seed(1)
    model = torch.nn.Linear(7, DIM).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return cls(
        model, batch_all_triplet_loss, opt, progress=False, seed=3, checkpoint_dir=checkpoint_dir
    )


def _distributed_trainer(rank: int, out_dir: str):
    from tripletlab.train.distributed_training import DistributedTrainer

    x, y = _trainer_data()
    ckpt = Path(out_dir, "ckpt")
    trainer = _make_trainer(DistributedTrainer, ckpt)
    wrapper = weakref.ref(trainer.ddp)
    trainer.fit(x, y, epochs=2, p=2, k=3)
    fit_released = wrapper() is None and trainer.ddp is None  # the trainer itself lives on
    saved_by_me = trainer.save("probe.pt") is not None
    half = _make_trainer(DistributedTrainer, Path(out_dir, "half"))
    half.fit(x, y, epochs=1, p=2, k=3)
    resumed = _make_trainer(DistributedTrainer, Path(out_dir, "half"))
    resumed.fit(x, y, epochs=2, p=2, k=3, resume_from=Path(out_dir, "half", "last.pt"))
    torch.save(
        {
            "weight": trainer.model.weight.detach(),
            "resumed_weight": resumed.model.weight.detach(),
            "steps": trainer.global_step,
            "saved_by_me": saved_by_me,
            "loss": [h["loss"] for h in trainer.history],
            "fit_released_ddp": fit_released,
        },
        os.path.join(out_dir, f"trainer{rank}.pt"),
    )
    local = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    trainer.train_step(x[local], y[local])  # after fit: the step wraps the model again
    return trainer


class _ConcatenatedSampler:
    """The single-process equivalent of 2 ranks: step t is rank 0's batch then rank 1's."""

    def __init__(self, labels, p, k, seed):
        from tripletlab.data.distributed_sampler import DistributedPKSampler

        self.ranks = [
            DistributedPKSampler(labels, p, k, seed=seed, num_replicas=WORLD, rank=r)
            for r in range(WORLD)
        ]

    def set_epoch(self, epoch):
        for s in self.ranks:
            s.set_epoch(epoch)

    def __len__(self):
        return len(self.ranks[0])

    def __iter__(self):
        for parts in zip(*(s.batches() for s in self.ranks), strict=True):
            yield [i for part in parts for i in part]


def test_distributed_trainer_equals_one_process_on_the_global_batches(
    two_rank_results: Path,
) -> None:
    from tripletlab.train.trainer import Trainer

    x, y = _trainer_data()
    single = _make_trainer(Trainer)
    single.fit(x, y, epochs=2, p=2, k=3, sampler=_ConcatenatedSampler(y, 2, 3, seed=3))
    results = [torch.load(two_rank_results / f"trainer{r}.pt") for r in range(WORLD)]
    for result in results:
        assert result["steps"] == single.global_step == 2 * 4  # 8 batches an epoch, 4 a rank
        torch.testing.assert_close(result["weight"], single.model.weight, rtol=0, atol=1e-6)
        torch.testing.assert_close(result["resumed_weight"], result["weight"], rtol=0, atol=1e-9)
        assert result["loss"] == pytest.approx([h["loss"] for h in single.history], abs=1e-6)
    assert [r["saved_by_me"] for r in results] == [True, False]  # rank-0-only checkpoints
    assert (two_rank_results / "ckpt" / "final.pt").is_file()


def test_ddp_wrappers_are_released_while_the_process_group_is_alive(
    two_rank_results: Path,
) -> None:
    # a DDP reducer outliving destroy_process_group can hang its rank in ~ProcessGroupGloo
    for rank in range(WORLD):
        trained = torch.load(two_rank_results / f"trainer{rank}.pt")
        assert trained["fit_released_ddp"]  # fit's end, with the trainer still held
        closed = torch.load(two_rank_results / f"close{rank}.pt")
        assert closed == {
            "wrapped_before_close": True,
            "released_by_close": True,
            "group_left": True,
        }


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 2-process run (process start-up dominates the cost) shared by the tests below."""
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(out / "init"), str(out)), nprocs=WORLD, join=True)
    return out


def test_gather_handles_uneven_batches_and_routes_gradients_to_their_owner(
    two_rank_results: Path,
) -> None:
    tmp_path = two_rank_results
    r0 = torch.load(tmp_path / "uneven0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "uneven1.pt", weights_only=True)
    expected = torch.cat([torch.zeros(2, 3), torch.ones(3, 3)])
    for result in (r0, r1):
        torch.testing.assert_close(result["embeddings"], expected)
        assert result["labels"].tolist() == [0, 1, 10, 11, 12]
    assert (r0["offset"], r1["offset"]) == (0, 2)
    # both ranks differentiate Σ_i i·row_i, so each row's gradient is 2·i (summed over ranks)
    torch.testing.assert_close(r0["grad"], 2 * torch.tensor([[0.0], [1.0]]).expand(2, 3))
    torch.testing.assert_close(r1["grad"], 2 * torch.tensor([[2.0], [3.0], [4.0]]).expand(3, 3))


#: The collective timeout of the failing-rank test, and how long its silent rank stays silent.
FAILING_TIMEOUT_S = 4
SILENT_SECONDS = 60
#: Spawned interpreters import torch at their own pace (tens of seconds apart on a loaded
#: machine): the ranks meet on files first, so the short timeout measures the collective only.
START_SKEW_LIMIT_S = 240


def _wait_for_all_ranks(rank: int, out_dir: str) -> None:
    Path(out_dir, f"ready{rank}").touch()
    deadline = time.monotonic() + START_SKEW_LIMIT_S
    while not all(Path(out_dir, f"ready{r}").exists() for r in range(WORLD)):
        if time.monotonic() > deadline:
            os._exit(4)
        time.sleep(0.05)


def _failing_worker(rank: int, init_file: str, out_dir: str, mode: str) -> None:
    _wait_for_all_ranks(rank, out_dir)
    tdist.init_distributed(
        "gloo",
        timeout_s=FAILING_TIMEOUT_S,
        rank=rank,
        world_size=WORLD,
        init_method=f"file://{init_file}",
    )
    if rank == 1:
        if mode == "dies":
            os._exit(3)  # a crash: no clean-up, no goodbye
        time.sleep(SILENT_SECONDS)  # alive but silent: the collective must time out
        os._exit(0)
    start = time.monotonic()
    try:
        tdist.gather_batch(torch.randn(4, 3), torch.arange(4))
        message = "no error"
    except tdist.DistributedError as exc:
        message = str(exc)
    Path(out_dir, f"{mode}.txt").write_text(f"{time.monotonic() - start:.3f}\n{message}")
    os._exit(0)


@pytest.mark.parametrize("mode", ["dies", "silent"])
def test_a_dead_or_silent_rank_gives_a_clear_error_within_the_timeout(
    tmp_path: Path, mode: str
) -> None:
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_failing_worker, args=(r, str(tmp_path / "init"), str(tmp_path), mode))
        for r in range(WORLD)
    ]
    for p in procs:
        p.start()
    procs[0].join(timeout=START_SKEW_LIMIT_S + SILENT_SECONDS)
    alive = procs[0].is_alive()
    for p in procs:
        if p.is_alive():
            p.kill()
        p.join()
    assert not alive, "rank 0 hung"
    elapsed, message = (tmp_path / f"{mode}.txt").read_text().split("\n", 1)
    assert "rank 0 of 2" in message and "failed" in message, message
    assert float(elapsed) < FAILING_TIMEOUT_S + 11  # the timeout, not the silent rank's 60 s


@pytest.mark.slow
def test_tripletlab_train_under_torchrun_two_ranks(tmp_path: Path) -> None:
    """`torchrun --nproc_per_node=2 -m tripletlab.cli train`: rank 0 alone writes and prints."""
    import json
    import subprocess
    import sys

    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "run"
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "tripletlab.cli",
        "train",
        "--epochs",
        "2",
        "--max-samples",
        "300",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run directory:") == 1  # printed by rank 0 only
    metrics = json.loads((out / "metrics.json").read_text())
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == metrics["steps"]  # one log, not one per rank
    assert [s["step"] for s in steps] == list(range(1, metrics["steps"] + 1))
    assert (out / "checkpoints" / "final.pt").is_file()
    assert 0 <= metrics["test"]["precision_at_1"] <= 1


@pytest.mark.slow
def test_torchrun_run_killed_mid_training_resumes_to_the_uninterrupted_result(
    tmp_path: Path,
) -> None:
    import json
    import signal
    import subprocess
    import sys

    torchrun = Path(sys.executable).with_name("torchrun")

    def command(out: Path, *extra: str) -> list[str]:
        return [
            str(torchrun),
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "tripletlab.cli",
            "train",
            "--epochs",
            "12",
            "--max-samples",
            "300",
            "--threads",
            "1",
            "--out",
            str(out),
            *extra,
        ]

    whole = subprocess.run(command(tmp_path / "whole"), capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    last = out / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 240
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    # torchrun starts each rank in its own session: kill the ranks by id, then the agent
    ranks = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True
    ).stdout.split()
    for pid in [*map(int, ranks), proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").is_file(), "the run finished before it could be killed"
    resumed = subprocess.run(command(out, "--resume"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    want = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    got = json.loads((out / "metrics.json").read_text())
    assert got["steps"] == want["steps"]
    assert got["test"] == want["test"]
