"""Ten diners, three seats: a BoundedSemaphore(3) lets at most three
processes eat at once."""
import time
from multiprocessing import BoundedSemaphore, Process, Value


def dine(seats, seated, peak, diner):
    with seats:
        with seated.get_lock():
            seated.value += 1
            peak.value = max(peak.value, seated.value)
            print(f"  diner {diner} sits down ({seated.value} seated)")
        time.sleep(0.1)
        with seated.get_lock():
            seated.value -= 1
        print(f"  diner {diner} leaves")


if __name__ == "__main__":
    seats, seated, peak = BoundedSemaphore(3), Value("i", 0), Value("i", 0)
    diners = [Process(target=dine, args=(seats, seated, peak, d)) for d in range(10)]
    for d in diners:
        d.start()
    for d in diners:
        d.join()
    print(f"at most {peak.value} diners sat at once")
    assert peak.value <= 3
