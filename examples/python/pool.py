"""A Pool of three worker processes runs five tasks given with
apply_async, then is closed and joined."""
import os
import time
from multiprocessing import Pool


def sum_of_squares(n):
    time.sleep(0.05)
    return sum(i * i for i in range(n)), os.getpid()


if __name__ == "__main__":
    with Pool(3) as pool:
        inputs = [10, 100, 1_000, 10_000, 100_000]
        pending = [pool.apply_async(sum_of_squares, (n,)) for n in inputs]
        print(len(pending), "tasks submitted with apply_async")
        for n, handle in zip(inputs, pending):
            total, pid = handle.get(timeout=30)
            assert total == sum(i * i for i in range(n))
            print(f"  sum of squares below {n:>6} = {total:>15}  (worker {pid})")
        pool.close()
        pool.join()
    print("closed and joined: every worker exited")
