"""A parent and its child hold a conversation through a Pipe."""
from multiprocessing import Pipe, Process


def child(me):
    while True:
        try:
            line = me.recv()
        except EOFError:
            print("  child:  the pipe is closed; goodbye")
            return
        if line == "hello":
            me.send("hello, parent")
        elif line == "how are you?":
            me.send("busy being a child process")
        else:
            me.send(f"{len(line)} letters")


if __name__ == "__main__":
    parent, child_end = Pipe()
    p = Process(target=child, args=(child_end,))
    p.start()
    child_end.close()
    for line in ["hello", "how are you?", "count these"]:
        parent.send(line)
        print(f"  parent: {line:<14} child: {parent.recv()}")
    parent.close()
    p.join()
    print("child ended:", p.exitcode)
