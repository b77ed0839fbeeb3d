"""A Pool counts the words of generated documents: map in order, imap
in order as they come, apply_async with a callback, and a task that
fails."""
from multiprocessing import Pool


def make_doc(i):
    return {"title": f"doc {i}", "words": ["w" * (k % 7 + 1) for k in range(i)]}


def count(doc):
    return (doc["title"], len(doc["words"]), max(map(len, doc["words"]), default=0))


def check(n):
    if n == 13:
        raise ValueError("unlucky")
    return n


if __name__ == "__main__":
    with Pool(3, maxtasksperchild=50) as pool:
        docs = [make_doc(i) for i in range(100)]
        counts = pool.map(count, docs, chunksize=8)
        total = sum(n for _, n, _ in counts)
        firsts = [title for title, _, _ in pool.imap(count, docs[:5])]
        done = []
        r = pool.apply_async(count, (docs[42],), callback=done.append)
        r.wait(10)
        try:
            pool.apply(check, (13,))
        except ValueError as e:
            failure = str(e)
        print("words:", total, "first titles:", firsts)
        print("callback got:", done[0][:2], "failure:", failure)
