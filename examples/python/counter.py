"""Ten processes decrement one shared counter 1,000 times each: a Value
whose own lock keeps every read-modify-write whole."""
from multiprocessing import Process, Value


def decrement(num):
    for _ in range(1000):
        with num.get_lock():
            num.value -= 1


if __name__ == "__main__":
    num = Value("q", 10_000)
    print("start:", num.value)
    children = [Process(target=decrement, args=(num,)) for _ in range(10)]
    for c in children:
        c.start()
    for c in children:
        c.join()
    print("end:", num.value, "after 10 x 1,000 decrements")
    assert num.value == 0
