"""What a person writes by hand instead of `dlx train configs/quickstart.yaml`: one process,
the quickstart net (3x64 ReLU, He init, Adam lr 0.01) on 3-class spirals (2000 train / 500
test), 30 epochs of batch 64, per-layer gradient norms every step kept on the device, the
test accuracy at the end. The yardstick of benchmarks/bench_many.py (the same loop as
../shared/bench/compare_by_hand.py, one training)."""

import math
import sys

import numpy as np
import torch
from torch import nn

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)


def spirals(n, seed, k=3):
    r = np.random.default_rng(seed)
    y = r.integers(0, k, n)
    t = r.uniform(0, 1, n)
    a = t * 4 * math.pi + y * 2 * math.pi / k
    x = np.stack([t * np.cos(a), t * np.sin(a)], 1) + r.normal(0, 0.02, (n, 2))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


torch.manual_seed(0)
xtr, ytr = spirals(2000, 0)
xte, yte = spirals(500, 100)
net = nn.Sequential(
    nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3)
)
for m in net:
    if isinstance(m, nn.Linear):
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.zeros_(m.bias)
opt = torch.optim.Adam(net.parameters(), lr=0.01)
ws = [m.weight for m in net if isinstance(m, nn.Linear)]
steps = 30 * (2000 // 64)
norms = torch.zeros(steps, len(ws))
g = torch.Generator().manual_seed(0)
s = 0
for _epoch in range(30):
    perm = torch.randperm(2000, generator=g)
    for b in range(2000 // 64):
        i = perm[b * 64 : (b + 1) * 64]
        loss = nn.functional.cross_entropy(net(xtr[i]), ytr[i])
        opt.zero_grad()
        loss.backward()
        norms[s] = torch.stack(torch._foreach_norm([w.grad for w in ws]))
        s += 1
        opt.step()
with torch.no_grad():
    print("test_acc", round((net(xte).argmax(1) == yte).float().mean().item(), 3))
