"""A child blocks on an Event until its parent sets it."""
import time
from multiprocessing import Event, Process


def child(go, started):
    print("  child:  waiting for the event")
    assert go.wait(30)
    print(f"  child:  the event is set after {time.monotonic() - started:.2f}s; off I go")


if __name__ == "__main__":
    go, started = Event(), time.monotonic()
    p = Process(target=child, args=(go, started))
    p.start()
    time.sleep(0.3)
    print(f"  parent: setting the event after {time.monotonic() - started:.2f}s")
    go.set()
    p.join()
    print("child ended:", p.exitcode)
