"""Default chunks deal the items out, so a slow tail spreads over the tasks."""
from spmd.batch_queue import Resources
from spmd.layout import Manifest, dealt


def manifest(n_items: int, chunksize: int, **fields) -> Manifest:
    return Manifest(job_id="j", name="n", backend="local", profile=None, n_items=n_items,
                    chunksize=chunksize, tasks_per_shard=100, image="", resources=Resources(),
                    **fields)


def test_a_slow_tail_lands_in_as_many_tasks_as_it_has_items():
    m = manifest(48, 6, spread=True)  # the benchmark's 48 items, the last 6 slow
    tasks_of_tail = [m.task_of(i) for i in range(42, 48)]
    assert len(set(tasks_of_tail)) == 6
    assert sorted(i for t in range(m.n_tasks) for i in m.items_of(t)) == list(range(48))
    assert all(i in m.items_of(m.task_of(i)) for i in range(48))


def test_dealing_keeps_every_item_once_when_chunks_do_not_divide_the_items():
    order = dealt(list(range(50)), 7)
    assert sorted(order) == list(range(50))
    chunks = [order[j:j + 7] for j in range(0, 50, 7)]
    assert max(sum(i >= 43 for i in chunk) for chunk in chunks) <= 2  # the last 7 spread


def test_a_spread_manifest_round_trips_and_reuse_still_names_the_items_that_run():
    m = manifest(10, 3, spread=True, items=[0, 2, 4, 5, 6, 7, 9])
    again = Manifest.from_json(m.to_json())
    assert again.submitted == m.submitted and sorted(again.submitted) == [0, 2, 4, 5, 6, 7, 9]
    assert again.reused == [1, 3, 8]
    assert again.task_of(1) is None and again.task_of(9) is not None
