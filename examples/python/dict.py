"""Ten processes fill a shared dict (a word count and their own entries)
under one lock; no update is lost."""
import os
from multiprocessing import Lock, Manager, Process

TEXT = "the quick brown fox jumps over the lazy dog the end"


def count(words, pids, lock, p):
    for word in TEXT.split(" "):
        with lock:
            words[word] = words.get(word, 0) + 1
    pids[f"pid-of-{p}"] = os.getpid()


if __name__ == "__main__":
    with Manager() as manager:
        words, pids, lock = manager.dict(), manager.dict(), Lock()
        children = [Process(target=count, args=(words, pids, lock, p)) for p in range(10)]
        for c in children:
            c.start()
        for c in children:
            c.join()
        for word, n in sorted(words.items()):
            expected = 10 * TEXT.split(" ").count(word)
            assert n == expected
            print(f"  {word:<10} -> {n} (expected {expected})")
        for key, pid in sorted(pids.items()):
            print(f"  {key:<10} -> {pid}")
        print("no update was lost")
