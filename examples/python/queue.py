"""Three producers and two consumers share one Queue; every item arrives
exactly once."""
from multiprocessing import Process, Queue

PRODUCERS, CONSUMERS, ITEMS = 3, 2, 50_000


def produce(queue, p):
    for i in range(ITEMS):
        queue.put(p * ITEMS + i)
    print(f"  producer {p}: {ITEMS} items put")


def consume(queue, tally, c):
    n = total = 0
    while (v := queue.get()) is not None:
        n, total = n + 1, total + v
    print(f"  consumer {c}: {n} items")
    tally.put((n, total))


if __name__ == "__main__":
    queue, tally = Queue(), Queue()
    consumers = [Process(target=consume, args=(queue, tally, c)) for c in range(CONSUMERS)]
    producers = [Process(target=produce, args=(queue, p)) for p in range(PRODUCERS)]
    for w in consumers + producers:
        w.start()
    for w in producers:
        w.join()
    for _ in consumers:
        queue.put(None)
    results = [tally.get() for _ in consumers]
    for w in consumers:
        w.join()
    n, total = sum(r[0] for r in results), sum(r[1] for r in results)
    count = PRODUCERS * ITEMS
    assert n == count and total == count * (count - 1) // 2
    print(n, "items received; the sum matches the sum sent")
