#!/usr/bin/env python3
"""Python's multiprocessing in two of `compare`'s workloads, measured the
way `compare` measures its own cases (benches/benches/compare.rs runs this
script once per repetition and reads its figures from stdout).

    py_mp.py rt_block DURATION_MS
        round trips of a Python int through one multiprocessing.Pipe
        (conn.send / conn.recv, pickled), parent on core 0, child on core 1
    py_mp.py bytes DURATION_MS SIZE MAXSIZE
        SIZE-byte bytes objects one way through a multiprocessing.Queue
        bounded to MAXSIZE items (as many as shmipc's ring holds),
        producer on core 0, consumer on core 1
    py_mp.py typed_small DURATION_MS MAXSIZE
        (int, 16-character str, eight floats) tuples one way through a
        multiprocessing.Queue bounded to MAXSIZE items; `value` in Mmsg/s

Output: one "key value..." line per figure: `value` (ns per round trip,
or GB/s), `ops` (round trips or messages in the measured interval),
`cpu_ns` / `sys_ns` (getrusage of both processes, helper threads
included, over their measured intervals), `ipis` (function-call IPIs,
/proc/interrupts CAL, machine-wide) and, for round trips, `lat` (each
round trip of the second half of the interval, in ns).
"""

import multiprocessing as mp
import os
import resource
import sys
import time

STOP = -1
MEASURED = 1 << 40
WARMUP = 200


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return int((r.ru_utime + r.ru_stime) * 1e9), int(r.ru_stime * 1e9)


def ipis():
    try:
        with open("/proc/interrupts") as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] == "CAL:":
                    return sum(int(x) for x in parts[1:] if x.isdigit())
    except OSError:
        pass
    return None


def pin(core):
    n = os.cpu_count() or 1
    os.sched_setaffinity(0, {core % n})


def echo(conn):
    pin(1)
    start = None
    while True:
        v = conn.recv()
        if v == STOP:
            end = cpu()
            conn.send(STOP)
            conn.send((end[0] - start[0], end[1] - start[1]) if start else (0, 0))
            return
        if start is None and v >= MEASURED:
            start = cpu()
        conn.send(v)


def rt_block(dur_ns):
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    pin(0)
    child = ctx.Process(target=echo, args=(b,))
    child.start()
    for i in range(WARMUP):
        a.send(i)
        assert a.recv() == i
    ipi0, c0 = ipis(), cpu()
    half = dur_ns // 2
    n = 0
    t0 = time.perf_counter_ns()
    while time.perf_counter_ns() - t0 < half:
        for _ in range(32):
            v = MEASURED + n
            a.send(v)
            assert a.recv() == v
            n += 1
    mean = (time.perf_counter_ns() - t0) / n
    lat = []
    prev = time.perf_counter_ns()
    end = prev + half
    while True:
        v = MEASURED + n
        a.send(v)
        assert a.recv() == v
        n += 1
        now = time.perf_counter_ns()
        lat.append(now - prev)
        prev = now
        if now >= end:
            break
    c1, ipi1 = cpu(), ipis()
    a.send(STOP)
    assert a.recv() == STOP
    echo_cpu, echo_sys = a.recv()
    child.join()
    print("value", mean)
    print("ops", n)
    print("cpu_ns", c1[0] - c0[0] + echo_cpu)
    print("sys_ns", c1[1] - c0[1] + echo_sys)
    if ipi0 is not None and ipi1 is not None:
        print("ipis", ipi1 - ipi0)
    print("lat", " ".join(map(str, lat)))


def producer(q, barrier, dur_ns, size, res):
    pin(0)
    msg, stop = b"\x01" * size, b"\x02" * size
    barrier.wait()
    c0 = cpu()
    start = time.monotonic_ns()
    while True:
        for _ in range(16):
            q.put(msg)
        if time.monotonic_ns() - start >= dur_ns:
            break
    q.put(stop)
    # The feeder thread pickles and writes; wait until it has written all.
    q.close()
    q.join_thread()
    c1 = cpu()
    res.send((c1[0] - c0[0], c1[1] - c0[1]))


def consumer(q, barrier, res):
    pin(1)
    barrier.wait()
    ipi0, c0 = ipis(), cpu()
    t0 = time.monotonic_ns()
    n = 0
    while True:
        m = q.get()
        if m[0] == 2:
            break
        n += 1
    t1 = time.monotonic_ns()
    c1, ipi1 = cpu(), ipis()
    ipi = ipi1 - ipi0 if ipi0 is not None and ipi1 is not None else None
    res.send((n, t1 - t0, c1[0] - c0[0], c1[1] - c0[1], ipi))


def bytes_stream(dur_ns, size, maxsize):
    ctx = mp.get_context("fork")
    q = ctx.Queue(maxsize)
    barrier = ctx.Barrier(2)
    (p_rx, p_tx), (c_rx, c_tx) = ctx.Pipe(False), ctx.Pipe(False)
    prod = ctx.Process(target=producer, args=(q, barrier, dur_ns, size, p_tx))
    cons = ctx.Process(target=consumer, args=(q, barrier, c_tx))
    prod.start()
    cons.start()
    p_cpu, p_sys = p_rx.recv()
    n, elapsed, c_cpu, c_sys, ipi = c_rx.recv()
    prod.join()
    cons.join()
    print("value", n * size / elapsed)
    print("ops", n)
    print("cpu_ns", p_cpu + c_cpu)
    print("sys_ns", p_sys + c_sys)
    if ipi is not None:
        print("ipis", ipi)


def small_producer(q, barrier, dur_ns, res):
    pin(0)
    barrier.wait()
    c0 = cpu()
    start = time.monotonic_ns()
    i = 0
    while True:
        for _ in range(16):
            q.put((i, "sixteen-byte-str", [float(i)] * 8))
            i += 1
        if time.monotonic_ns() - start >= dur_ns:
            break
    q.put((STOP, "sixteen-byte-str", [0.0] * 8))
    q.close()
    q.join_thread()
    c1 = cpu()
    res.send((c1[0] - c0[0], c1[1] - c0[1]))


def small_consumer(q, barrier, res):
    pin(1)
    barrier.wait()
    ipi0, c0 = ipis(), cpu()
    t0 = time.monotonic_ns()
    n = 0
    while True:
        m = q.get()
        if m[0] == STOP:
            break
        assert len(m[1]) == 16
        n += 1
    t1 = time.monotonic_ns()
    c1, ipi1 = cpu(), ipis()
    ipi = ipi1 - ipi0 if ipi0 is not None and ipi1 is not None else None
    res.send((n, t1 - t0, c1[0] - c0[0], c1[1] - c0[1], ipi))


def typed_small(dur_ns, maxsize):
    ctx = mp.get_context("fork")
    q = ctx.Queue(maxsize)
    barrier = ctx.Barrier(2)
    (p_rx, p_tx), (c_rx, c_tx) = ctx.Pipe(False), ctx.Pipe(False)
    prod = ctx.Process(target=small_producer, args=(q, barrier, dur_ns, p_tx))
    cons = ctx.Process(target=small_consumer, args=(q, barrier, c_tx))
    prod.start()
    cons.start()
    p_cpu, p_sys = p_rx.recv()
    n, elapsed, c_cpu, c_sys, ipi = c_rx.recv()
    prod.join()
    cons.join()
    print("value", n * 1e3 / elapsed)
    print("ops", n)
    print("cpu_ns", p_cpu + c_cpu)
    print("sys_ns", p_sys + c_sys)
    if ipi is not None:
        print("ipis", ipi)


def main():
    what, dur_ms = sys.argv[1], int(sys.argv[2])
    dur_ns = dur_ms * 1_000_000
    if what == "rt_block":
        rt_block(dur_ns)
    elif what == "bytes":
        bytes_stream(dur_ns, int(sys.argv[3]), int(sys.argv[4]))
    elif what == "typed_small":
        typed_small(dur_ns, int(sys.argv[3]))
    else:
        sys.exit(f"py_mp.py: unknown workload {what!r} (rt_block, bytes or typed_small)")


if __name__ == "__main__":
    main()
