"""Data-parallel training with torch.distributed (gloo) on a 2-node pool:
`python examples/functions/ddp.py`.

Every node runs `train` (`@ pool`); `skyhop.instance_info()` gives each its rank and the
head's address and port for the rendezvous. On this machine the two nodes are local
sandboxes; `skyhop.Compute(accelerators="A100:1", nodes=2)` runs the same code on two cloud
GPUs (use the "nccl" backend there).
"""

import skyhop


@skyhop.function
def train(steps: int) -> dict:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    info = skyhop.instance_info()
    dist.init_process_group("gloo", init_method=f"tcp://{info.head_addr}:{info.port}",
                            rank=info.rank, world_size=info.node_count)
    try:
        torch.manual_seed(0)  # the same initial weights everywhere
        model = DistributedDataParallel(torch.nn.Linear(8, 1))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        target = torch.arange(8, dtype=torch.float32) / 8
        generator = torch.Generator().manual_seed(1000 + info.rank)  # each rank its own data
        for step in range(steps):
            x = torch.randn(64, 8, generator=generator)
            loss = torch.nn.functional.mse_loss(model(x).squeeze(-1), x @ target)
            optimizer.zero_grad()
            loss.backward()  # gradients are averaged across the ranks here
            optimizer.step()
            if step % 50 == 0:
                print(f"rank {info.rank} step {step} loss {loss.item():.4f}")
        weights = model.module.weight.detach().flatten()
        return {"rank": info.rank, "loss": loss.item(), "weights": weights.tolist()}
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    with skyhop.Compute(infra="local", nodes=2) as pool:
        results = train(200) @ pool
    for r in results:
        print(f"rank {r['rank']}: final loss {r['loss']:.5f}")
    first, second = results[0]["weights"], results[1]["weights"]
    same = all(abs(a - b) < 1e-6 for a, b in zip(first, second, strict=True))
    print("ranks agree on the weights" if same else "ranks DISAGREE on the weights")
    raise SystemExit(0 if same else 1)
