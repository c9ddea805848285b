"""The stacked model and optimizer of dlx.many.stacking: K mlps' weights as [K, out, in]
tensors stepped as one, each trial's optimizer formula and hyperparameters carried as tensors."""

from __future__ import annotations


class StackedMLP:
    """The forward pass of K MLPs at once from their stacked parameters (leaves [K, ...])."""

    def __init__(self, models: list, params: list):
        import torch
        from torch import nn

        self.K = len(models)
        names = [n for n, _ in models[0].named_parameters()]
        self.param = dict(zip(names, params))
        act_names = {n for n, _ in models[0].activation_modules()}
        self.ops: list[tuple] = []
        for name, m in models[0].named_children():
            if type(m) is nn.Linear:
                self.ops.append(("linear", name))
            elif type(m) is nn.LayerNorm:
                self.ops.append(("layer_norm", name, m.normalized_shape, m.eps))
            elif not any(True for _ in m.parameters()) and (name in act_names or isinstance(m, nn.Sigmoid)):
                self.ops.append(("act", name, m))
            else:
                raise ValueError(f"layer {name} ({type(m).__name__}) cannot be stacked")
        self.use(params)
        self.watching = False
        self.outs: dict[str, torch.Tensor] = {}

    def use(self, params: list) -> None:
        """Step from these stacked parameters (in the models' parameter order): at the start,
        and when trials that ended leave the stack (StackedTrainer._shrink)."""
        self.param = dict(zip(self.param, params))
        self.K = params[0].shape[0]
        self.weights = [self.param[f"{op[1]}.weight"] for op in self.ops if op[0] == "linear"]
        self.biases = [self.param[f"{op[1]}.bias"] for op in self.ops if op[0] == "linear"]

    def __call__(self, x):
        import torch
        import torch.nn.functional as F

        from dlx.run.probes import ACT_SAMPLE

        h = x.flatten(2)
        for op in self.ops:
            if op[0] == "linear":
                w, b = self.param[f"{op[1]}.weight"], self.param[f"{op[1]}.bias"]
                h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            elif op[0] == "layer_norm":
                g, b = self.param[f"{op[1]}.weight"], self.param[f"{op[1]}.bias"]
                h = F.layer_norm(h, op[2], None, None, op[3]) * g.unsqueeze(1) + b.unsqueeze(1)
            else:
                h = op[2](h)
                if self.watching:
                    self.outs[op[1]] = h.detach()[:, :ACT_SAMPLE]
        return h


class StackedOptimizer:
    """PyTorch's SGD (momentum, dampening, nesterov, weight decay) or Adam/AdamW step for K
    trials at once, each trial's numbers a [K] tensor and torch's formulas, so a trial steps
    as its own torch optimizer would (tests/test_stacking.py checks every one against it).

    The state lives in one [K, P] tensor per kind (P: one trial's parameter count) and a
    step works on the gradients concatenated: a few whole-stack operations per step instead
    of a few per parameter tensor (a small net's step is launch-bound)."""

    def __init__(self, family: str, optimizers: list, params: list, lr_table):
        import torch

        self.family, self.params, self.lr_table = family, params, lr_table
        dev = params[0].device
        self.K = params[0].shape[0]
        self.sizes = [p[0].numel() for p in params]
        P = sum(self.sizes)
        groups = [o.param_groups[0] for o in optimizers]

        def col(fn):
            return torch.tensor([float(fn(g)) for g in groups], dtype=torch.float32, device=dev)[:, None]

        self.wd = col(lambda g: g["weight_decay"])
        self.any_wd = bool((self.wd != 0).any())
        self.step_count = 0
        if family == "sgd":
            self.momentum = col(lambda g: g["momentum"])
            self.damp = 1 - col(lambda g: g["dampening"])
            self.nesterov = col(lambda g: g["nesterov"]) != 0
            self.any_momentum = bool((self.momentum != 0).any())
            self.any_damp = bool((self.damp != 1).any())
            self.any_nesterov = bool(self.nesterov.any())
            self.buf = None
        else:
            decoupled = col(lambda g: g.get("decoupled_weight_decay", False))
            self.wd_coupled, self.wd_decoupled = self.wd * (1 - decoupled), self.wd * decoupled
            self.any_coupled = bool((self.wd_coupled != 0).any())
            self.any_decoupled = bool((self.wd_decoupled != 0).any())
            self.one_minus_beta1 = 1 - col(lambda g: g["betas"][0])
            self.beta2 = col(lambda g: g["betas"][1])
            self.one_minus_beta2 = 1 - self.beta2
            self.eps = col(lambda g: g["eps"])
            # Bias corrections per step, in double as torch computes them, then as tensors.
            b1 = torch.tensor([g["betas"][0] for g in groups], dtype=torch.float64)
            b2 = torch.tensor([g["betas"][1] for g in groups], dtype=torch.float64)
            steps = torch.arange(1, len(lr_table) + 1, dtype=torch.float64)[:, None]
            self.step_size = (lr_table.double().cpu() / (1 - b1**steps)).float().to(dev)
            self.bc2_sqrt = ((1 - b2**steps) ** 0.5).float().to(dev)
            self.exp_avg = torch.zeros(self.K, P, device=dev)
            self.exp_avg_sq = torch.zeros(self.K, P, device=dev)

    # The per-trial rows ([K, ...]) and the per-step columns ([steps, K]) of the state.
    ROWS = ("wd", "momentum", "damp", "nesterov", "buf", "wd_coupled", "wd_decoupled", "one_minus_beta1")
    ROWS += ("beta2", "one_minus_beta2", "eps", "exp_avg", "exp_avg_sq")
    COLUMNS = ("lr_table", "step_size", "bc2_sqrt")

    def keep(self, idx, params: list) -> None:
        """Only the trials idx (a device index tensor) step on, from these parameters."""
        self.params, self.K = params, params[0].shape[0]
        for name in self.ROWS:
            v = getattr(self, name, None)
            if v is not None:
                setattr(self, name, v.index_select(0, idx))
        for name in self.COLUMNS:
            v = getattr(self, name, None)
            if v is not None:
                setattr(self, name, v.index_select(1, idx.to(v.device)))

    def _flat(self, tensors):
        return torch_cat([t.reshape(self.K, -1) for t in tensors])

    def _apply(self, update) -> None:
        """params -= update, each parameter from its columns of update [K, P]."""
        import torch

        views = [u.view(p.shape) for u, p in zip(update.split(self.sizes, dim=1), self.params)]
        torch._foreach_sub_(self.params, views)

    def step(self) -> None:
        import torch

        s = self.step_count
        self.step_count += 1
        with torch.no_grad():
            g = self._flat([p.grad for p in self.params])
            lr = self.lr_table[s][:, None]
            if self.family == "sgd":
                if self.any_wd:
                    g = g + self.wd * self._flat(self.params)
                if self.any_momentum:
                    if self.buf is None:
                        self.buf = g.clone()  # torch's first step: v = grad, no dampening
                    else:
                        self.buf.mul_(self.momentum).add_(self.damp * g if self.any_damp else g)
                    # momentum 0 (plain sgd in the stack): buf is the gradient itself, as torch steps it.
                    g = (
                        torch.where(self.nesterov, g + self.momentum * self.buf, self.buf)
                        if self.any_nesterov
                        else self.buf
                    )
                self._apply(lr * g)
                return
            update = None
            if self.any_coupled or self.any_decoupled:
                flat_p = self._flat(self.params)
                if self.any_coupled:
                    g = g + self.wd_coupled * flat_p
                if self.any_decoupled:
                    update = flat_p * (lr * self.wd_decoupled)  # torch: w *= 1 - lr * weight_decay first
            self.exp_avg.lerp_(g, self.one_minus_beta1)
            self.exp_avg_sq.mul_(self.beta2).addcmul_(g, g * self.one_minus_beta2)
            denom = (self.exp_avg_sq.sqrt() / self.bc2_sqrt[s][:, None]).add_(self.eps)
            step = self.exp_avg / denom * self.step_size[s][:, None]
            self._apply(step if update is None else update.add_(step))

    def trial_state(self, j: int, torch_params: list) -> dict:
        """Trial j's optimizer state in its torch optimizer's own format (for its checkpoint)."""
        import torch

        out: dict = {}
        for i, tp in enumerate(torch_params):
            lo = sum(self.sizes[:i])
            cols = slice(lo, lo + self.sizes[i])
            if self.family == "sgd":
                if float(self.momentum[j]) != 0 and self.buf is not None:
                    out[tp] = {"momentum_buffer": self.buf[j, cols].view(tp.shape).clone()}
            elif self.step_count:
                out[tp] = {
                    "step": torch.tensor(float(self.step_count)),
                    "exp_avg": self.exp_avg[j, cols].view(tp.shape).clone(),
                    "exp_avg_sq": self.exp_avg_sq[j, cols].view(tp.shape).clone(),
                }
        return out


def torch_cat(tensors):
    import torch

    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=1)


# ---------------------------------------------------------------------- the loop
