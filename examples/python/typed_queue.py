"""Two producers and two consumers share one Queue of jobs (a dataclass
with a string and a list); every job is summed exactly once."""
from dataclasses import dataclass
from multiprocessing import Process, Queue


@dataclass
class Job:
    id: int
    owner: str
    sizes: list


def produce(jobs, p):
    for i in range(1000):
        jobs.put(Job(p * 1000 + i, f"user-{p}", [i, i + 1, i + 2]))


def consume(jobs, results):
    while (job := jobs.get()) is not None:
        results.put((job.id, job.owner, sum(job.sizes)))


if __name__ == "__main__":
    jobs, results = Queue(), Queue()
    producers = [Process(target=produce, args=(jobs, p)) for p in range(2)]
    consumers = [Process(target=consume, args=(jobs, results)) for _ in range(2)]
    for w in producers + consumers:
        w.start()
    got = [results.get() for _ in range(2000)]
    for w in producers:
        w.join()
    for _ in consumers:
        jobs.put(None)
    for w in consumers:
        w.join()
    assert len({id for id, _, _ in got}) == 2000
    print("jobs:", len(got), "total size:", sum(s for _, _, s in got))
