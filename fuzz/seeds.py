#!/usr/bin/env python3
"""Writes the small seed corpus in fuzz/corpus/<target>/ (run from anywhere).

Seeds only give the fuzzer a head start; any bytes are a valid input for
every harness (see fuzz/src/). Re-run after a layout change, review the
diff, commit. Crash reproducers go in fuzz/regressions/<target>/ instead.
"""
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = b"\x7fSHMIPC\x00"
INITIALIZING, READY = 1, 2
BYTES, LOCK, SEMAPHORE, EVENT = 1, 2, 3, 4
REAL = 0xE0  # control bits 5-7: also open a real /dev/shm segment


SLOT = 32  # bytes per peer-table slot


def header(kind, size, align, state=READY, pid=1, params=(0, 0, 0, 0), version=2, slots=2):
    """A header (layout version 2); the segment is the header, the object,
    padding to 128, then `slots` peer-table slots (see `segment`)."""
    peers = (128 + size + 127) & ~127
    h = MAGIC + struct.pack("<IIII", version, state, pid, kind)
    h += struct.pack("<QQQQ", peers + slots * SLOT, 128, size, align)
    h += struct.pack("<4Q", *params) + struct.pack("<QI", peers, slots) + bytes(28)
    assert len(h) == 128
    return h


def segment(kind, size, align, **kw):
    """A whole valid segment file: header, zeroed object and peer table."""
    h = header(kind, size, align, **kw)
    total = struct.unpack_from("<Q", h, 24)[0]
    return h + bytes(total - 128)


def seeds():
    rnd = random.Random(7)
    noise = lambda n: bytes(rnd.randrange(256) for _ in range(n))
    yield "segment_open", {
        "lock_valid": bytes([1]) + segment(LOCK, 16, 8),
        "lock_valid_real": bytes([REAL | 1]) + segment(LOCK, 16, 8),
        "bytes_valid_real": bytes([REAL | 0]) + segment(BYTES, 64, 1),
        "custom_kind": bytes([6]) + segment(1000, 24, 8, params=(7, 0, 0, 1)),
        "truncated_header_real": bytes([REAL | 1]) + header(LOCK, 16, 8)[:40],
        "truncated_object_real": bytes([REAL | 2]) + header(SEMAPHORE, 12, 4) + bytes(5),
        "truncated_peer_table_real": bytes([REAL | 2]) + segment(SEMAPHORE, 12, 4)[:-1],
        "too_many_slots": bytes([2]) + segment(SEMAPHORE, 12, 4, slots=4095),
        "zeros_real": bytes([REAL | 3]) + bytes(256),
        "empty_real": bytes([REAL | 5]),
        # A Python multiprocessing.shared_memory block holding a pickle.
        "python_foreign_real": bytes([REAL | 0]) + b"\x80\x04\x95\x1a\x00\x00\x00" + noise(57),
        "initializing_alive_real": bytes([REAL | 3]) + segment(EVENT, 4, 4, state=INITIALIZING, pid=1),
        "initializing_dead_real": bytes([REAL | 3]) + segment(EVENT, 4, 4, state=INITIALIZING, pid=0x3FFFFFF0),
        "version_1": bytes([7]) + segment(EVENT, 4, 4, version=1),
    }
    yield "spsc_ops", {
        # type u64, capacity 4; pushes, slices, pops, close, drain.
        "fill_drain": bytes([0, 2] + [0] * 5 + [3] * 5 + [7]),
        "slices_wrap": bytes([3, 3, 2, 5, 5, 3, 2, 7, 5, 9, 7, 8, 9, 10, 6, 0, 5, 9]),
        "timeouts": bytes([1, 0, 4, 1, 0, 1, 1, 2, 3, 4, 1, 6, 1, 0, 3, 4, 0]),
        "noise": bytes([2, 6]) + noise(200),
    }
    yield "mpmc_ops", {
        "fill_drain": bytes([0, 1] + [0] * 5 + [2] * 5 + [5]),
        "handles": bytes([3, 2, 6, 7, 0x10, 0x21, 1, 0x32, 3, 2, 8, 9, 4, 2, 2, 5]),
        "noise": bytes([1, 5]) + noise(200),
    }
    yield "bytes_ops", {
        # capacity 64, max 24: sends of growing length force skip records.
        "send_recv_wrap": bytes([0, 24] + sum(([0, n, 8, 30] for n in range(0, 26, 3)), [])),
        "grants": bytes([1, 40, 2, 10, 2, 20, 2, 30, 3, 1, 5, 5, 0, 0, 0, 0, 4, 0, 5, 0, 0, 0, 1, 3, 0, 3, 5, 0, 0, 0, 0, 7, 0, 11, 10, 8, 50, 11]),
        "noise": bytes([2, 100]) + noise(300),
    }
    # The hostile targets' first byte: the queue in its low bits, then the
    # mode (fuzz/src/hostile.rs): CONCURRENT (a script of writes that a
    # second thread runs while the operations do) and PAYLOAD_ONLY (writes
    # only into payload bytes, and a model checked).
    # Their noise comes from a generator of its own, so that adding seeds
    # leaves the others as they were.
    CONCURRENT, PAYLOAD_ONLY = 1, 2
    rnd2 = random.Random(11)
    noise2 = lambda n: bytes(rnd2.randrange(256) for _ in range(n))
    script = lambda n: bytes([n - 4]) + noise2(n)
    yield "bytes_hostile", {
        "poke_control": bytes([0, 24, 4, 16, 4, 0, 0x10, 0, 64, 0, 0, 0, 0, 0, 0, 0, 7, 0, 9, 30, 0, 10, 0]),
        "noise": bytes([1, 40]) + noise(300),
        "noise_big": bytes([3, 200]) + noise(400),
        # capacity 128, max 40, messages of 16 bytes (32-byte records).
        "payload_model": bytes([PAYLOAD_ONLY << 2 | 1, 40, 16]) + bytes([4, 0, 0, 4, 0, 0, 0, 0x11, 3, 7, 9, 0, 40, 9, 0, 8, 10, 0, 4, 0, 0, 5, 0x80, 0, 10, 0x80, 9, 0, 40, 9, 0, 40]),
        "payload_model_concurrent": bytes([(PAYLOAD_ONLY | CONCURRENT) << 2 | 1, 40, 16]) + script(64) + bytes([4, 0, 0] * 3 + [9, 0, 40] * 2 + [7, 0] + [10, 0]) + noise2(200),
        "concurrent_anywhere": bytes([CONCURRENT << 2 | 2, 60]) + script(96) + noise2(300),
    }
    yield "ring_hostile", {
        "spsc_poke_tail": bytes([0, 2, 4, 4, 1, 0x11, 255, 7, 7, 7, 13, 12]),
        "mpmc_poke_seq": bytes([4, 2, 4, 4, 3, 0x12, 5, 6, 6, 6, 9]),
        "noise_spsc": bytes([3, 3]) + noise(300),
        "noise_mpmc": bytes([7, 3]) + noise(300),
        "spsc_payload_model": bytes([PAYLOAD_ONLY << 3 | 0, 2]) + bytes([4, 4, 6, 9, 0, 0x22, 7, 9, 10, 11, 12, 13, 7, 8, 0]) + noise2(100),
        "mpmc_payload_model": bytes([PAYLOAD_ONLY << 3 | 7, 2]) + bytes([4, 4, 0, 0x21, 5, 6, 7, 8, 9, 8]) + noise2(100),
        "spsc_concurrent_model": bytes([(PAYLOAD_ONLY | CONCURRENT) << 3 | 3, 3]) + script(48) + noise2(300),
        "mpmc_concurrent_model": bytes([(PAYLOAD_ONLY | CONCURRENT) << 3 | 4, 3]) + script(48) + noise2(300),
        "spsc_concurrent_anywhere": bytes([CONCURRENT << 3 | 1, 3]) + script(64) + noise2(300),
        "mpmc_concurrent_anywhere": bytes([CONCURRENT << 3 | 6, 3]) + script(64) + noise2(300),
    }
    yield "sync_words", {
        "zeros": bytes(32) + bytes([0, 3, 0, 1, 0, 2, 4, 6, 6, 4, 5, 0, 8, 10, 0, 9, 10, 1, 11]),
        "ones": b"\xff" * 32 + bytes([0, 1, 0, 2, 4, 5, 0, 6, 8, 9, 10, 1]),
        "noise": noise(32) + noise(200),
        # A lock held by peer slot 5 (generation 1): judged dead it is taken
        # over (op 12, 0xa5, verdict 1), then released; judged alive (0) or
        # unjudgeable (2) it is waited for and not taken.
        "takeover_dead": held_lock(6 | 1 << 12) + bytes(16) + bytes([12, 0xA5, 1, 3, 2, 0, 2]),
        "takeover_alive": held_lock(6 | 1 << 12) + bytes(16) + bytes([12, 0xA5, 0, 12, 0xA5, 2, 3]),
        "takeover_garbage_owner": held_lock(0x3FFF_FFFF) + bytes(16) + bytes([12, 0xA5, 1, 3]),
    }
    # Whole segment files for the inspector's decoder (no control byte).
    # The queue offsets follow the control blocks' structs (a 64-byte
    # queue header, then 128-byte padded words): enqueue/tail at 128,
    # dequeue/head (or a byte queue's readers) at 256, the two sleeper
    # signals at 384 and 512. Exactness only helps the fuzzer start.
    tok = 1 | 1 << 12  # peer slot 0, generation 1
    peer0 = struct.pack("<IIQQQ", 1, 4242, 4026531836, 1, 0)
    yield "inspect", {
        "lock_held": with_object(segment(LOCK, 16, 8), held_lock(tok), peer=peer0),
        "lock_unrecoverable": with_object(segment(LOCK, 16, 8), held_lock(0x3FFF_FFFF)),
        "event_set": with_object(segment(EVENT, 4, 4), struct.pack("<I", 1 | 4)),
        "semaphore": with_object(segment(SEMAPHORE, 24, 8), struct.pack("<IIIIQ", 3, 5, 0, 0, 2)),
        "barrier_broken": with_object(segment(133, 16, 8), struct.pack("<IIQ", 1 | 2 << 16 | 1 << 31, 3, 0)),
        "queue_items": with_object(
            segment(64, 1024, 128, params=(4, 0, 0, 8 | 8 << 32)),
            {128: struct.pack("<Q", 3 | 1 << 63), 256: struct.pack("<Q", 1)},
            peer=peer0,
        ),
        # An MPMC queue of this layout (control version 5: one 32-byte
        # record per slot of u64 items, the records after the 640-byte
        # control block) with a push claim of peer slot 0 held at
        # position 1, so that the claims scan has a record to decode.
        "queue_claim": with_object(
            segment(64, 768, 128, params=(4, 0, 0, 8 | 8 << 32)),
            {
                0: b"SHMIPCQ1" + struct.pack("<IIIIQQQQQ", 2, 5, 8, 8, 4, 0, 0, 0, 768),
                128: struct.pack("<Q", 2),
                640: struct.pack("<QQ", 1, 0),
                640 + 32: struct.pack("<QQ", 1, 1 << 62 | tok << 32 | 1),
            },
            peer=peer0,
        ),
        "spsc_roles": with_object(
            segment(65, 1024, 128, params=(4, 0, 0, 4 | 4 << 32)),
            {0: struct.pack("<II", tok, 0), 128 + 128: struct.pack("<Q", 2)},
            peer=peer0,
        ),
        "byte_queue": with_object(
            segment(66, 1024, 128, params=(64, 16, 0, 0)),
            {128: held_lock(tok) + struct.pack("<QQ", 48, 16), 256 + 16: struct.pack("<Q", 32)},
            peer=peer0,
        ),
        "pipe": with_object(segment(67, 4096, 128, params=(64, 16, 0, 0)), struct.pack("<II", tok, 0), peer=peer0),
        "dict": with_object(segment(130, 64 + 7 * 48, 8, params=(5, 7, 8, 8)), bytes(16) + struct.pack("<IIQ", 2, 1, 9)),
        "zeros": bytes(4096),
        "noise": MAGIC + noise(600),
    }


def with_object(seg, obj, peer=None):
    """`seg` with its object's first bytes replaced by `obj` (or, for a
    dict `{offset: bytes}`, those bytes at those offsets of the object), and
    its first peer slot by `peer`."""
    b = bytearray(seg)
    for off, data in (obj.items() if isinstance(obj, dict) else [(0, obj)]):
        b[128 + off:128 + off + len(data)] = data
    if peer is not None:
        peers = struct.unpack_from("<Q", b, 88)[0]
        b[peers:peers + len(peer)] = peer
    return bytes(b)


def held_lock(owner):
    """A Lock's 16 bytes with `owner` in the word, a tid, and a stamp that
    is not this process's."""
    return struct.pack("<IIQ", owner, 4242, 0xDEAD_0000_0001)


def main():
    for target, files in seeds():
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
