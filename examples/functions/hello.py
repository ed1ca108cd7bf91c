"""Python functions on a pool: `python examples/functions/hello.py`.

Runs on this machine (`infra="local"`); change the Compute line to run the same code on a
cloud GPU, e.g. `skyhop.Compute(accelerators="A100:1")`, or on your own machines
(`infra="ssh/lab"`).
"""

import platform

import skyhop


@skyhop.function
def greet(name: str) -> str:
    info = skyhop.instance_info()
    print(f"greeting {name} from node {info.rank} of {info.node_count}")
    return f"hello {name} from {platform.node()} (Python {platform.python_version()})"


@skyhop.function(timeout=60, retries=1)
def square(x: int) -> int:
    return x * x


if __name__ == "__main__":
    with skyhop.Compute(infra="local", nodes=2) as pool:
        print(greet("world") >> pool)  # one node
        print(greet("everyone") @ pool)  # every node, in rank order
        future = square(12) > pool  # a concurrent.futures.Future
        a, b = (square(3) & square(4)) >> pool  # concurrently
        print(future.result(), a + b)
        print(sum(pool.map(square, range(1000))))  # 1,000 calls, bounded window
    # the pool and its nodes are gone here
