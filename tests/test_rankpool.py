"""The session's pool of rank processes (``tests/rankpool.py``) that ``spawned_ranks`` runs jobs
on: a job runs on the pool's first ranks, one after another in the same processes, and a rank's
failure or death is the test's error, never a hang. (Its use with gloo is every multi-rank test:
tests/test_ring.py, test_engine_exact.py, ...)"""

from __future__ import annotations

import os

import pytest

from tests.rankpool import RankPool


def _write_pid(rank, procs, init_file, out):
    with open(f"{out}.{rank}", "w") as handle:
        handle.write(f"{procs} {os.getpid()} {os.environ.get('RANKPOOL_TEST', '-')}")


def _fail_on_rank_1(rank, procs, init_file, out):
    if rank == 1:
        raise ValueError("rank 1 says no")


def _die_on_rank_0(rank, procs, init_file, out):
    if rank == 0:
        os._exit(3)


@pytest.fixture
def pool():
    pool = RankPool(3, warm=False)
    yield pool
    pool.close()


def test_jobs_run_on_the_first_ranks_in_the_same_processes_and_the_tests_environment(
    pool, tmp_path, monkeypatch
):
    pids = []
    for job, procs in enumerate((2, 3)):
        monkeypatch.setenv("RANKPOOL_TEST", f"job{job}")
        out = str(tmp_path / f"job{job}")
        pool.run(_write_pid, procs, str(tmp_path / "init"), out)
        found = sorted(p.name for p in tmp_path.glob(f"job{job}.*"))
        assert found == [f"job{job}.{r}" for r in range(procs)]
        pids.append([(tmp_path / f"job{job}.{r}").read_text().split() for r in range(procs)])
    assert [(procs, env) for procs, _, env in pids[0]] == [("2", "job0")] * 2
    assert [(procs, env) for procs, _, env in pids[1]] == [("3", "job1")] * 3
    assert [pid for _, pid, _ in pids[0]] == [pid for _, pid, _ in pids[1][:2]]  # the same processes
    assert len({pid for _, pid, _ in pids[1]}) == 3


def test_a_rank_that_raises_fails_the_job_with_its_traceback(pool, tmp_path):
    with pytest.raises(RuntimeError, match=r"(?s)rank 1 ---.*ValueError: rank 1 says no"):
        pool.run(_fail_on_rank_1, 2, str(tmp_path / "init"), str(tmp_path / "out"))


def test_a_rank_that_dies_fails_the_job(pool, tmp_path):
    with pytest.raises(RuntimeError, match=r"died, exit codes \{0: 3\}"):
        pool.run(_die_on_rank_0, 2, str(tmp_path / "init"), str(tmp_path / "out"), timeout=60)
