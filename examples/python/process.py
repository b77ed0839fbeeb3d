"""Processes: a target with arguments and its exit code, terminate a
sleeper (is_alive before and after), current_process, active_children and
cpu_count, and a daemon child that ends with its parent."""
import os
import sys
import time
from multiprocessing import Process, Queue, active_children, cpu_count, current_process


def work(name, sizes):
    print(f"  [{current_process().name} {os.getpid()}] {name}: {sum(sizes)}")
    sys.exit(3)


def nap(seconds):
    time.sleep(seconds)


def parent(pids):
    daemon = Process(target=nap, name="daemon", args=(30,), daemon=True)
    daemon.start()
    pids.put(daemon.pid)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except FileNotFoundError:
        return False


if __name__ == "__main__":
    worker = Process(target=work, name="worker", args=("ada", [1, 2, 3]))
    worker.start()
    worker.join()
    print(f"1. {worker.name} (pid {worker.pid}) exitcode {worker.exitcode}")
    sleeper = Process(target=nap, name="sleeper", args=(60,))
    sleeper.start()
    active = [c.name for c in active_children()]
    print(f"2. {sleeper.name} is_alive: {sleeper.is_alive()}; active: {active}")
    sleeper.terminate()
    sleeper.join()
    print(f"   after terminate: is_alive: {sleeper.is_alive()}, exitcode {sleeper.exitcode}")
    pids = Queue()
    p = Process(target=parent, name="parent", args=(pids,))
    p.start()
    daemon = pids.get()
    p.join()
    print(f"3. parent ended with {p.exitcode}; its daemon {daemon} alive: {alive(daemon)}")
    print(f"{cpu_count()} CPUs; this is {current_process().name}")
    assert not alive(daemon)
