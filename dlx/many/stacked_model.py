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


def _col(groups: list, fn, dev):
    """One number per trial (from its torch param group) as a [k, 1] column."""
    import torch

    return torch.tensor([float(fn(g)) for g in groups], dtype=torch.float32, device=dev)[:, None]


class _Family:
    """One optimizer family's trials in a stack: their numbers as [k, 1] columns, their state
    as [k, P] tensors, their learning rates as [steps, k] (k: the family's trials).

    positions: the trials' places in the stack, ascending; rows: the same as a device index
    tensor, or None when the family holds the whole stack (its tensors are the stack's)."""

    # The per-trial rows ([k, ...]) and the per-step columns ([steps, k]) of the state.
    ROWS: tuple[str, ...] = ()
    COLUMNS: tuple[str, ...] = ("lr_table",)

    def __init__(self, positions: list[int], rows, lr_table):
        self.positions, self.rows, self.lr_table = positions, rows, lr_table

    def keep(self, local) -> None:
        """Only the family's trials local (a device index tensor into its rows) step on."""
        for name in self.ROWS:
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, v.index_select(0, local))
        for name in self.COLUMNS:
            v = getattr(self, name)
            setattr(self, name, v.index_select(1, local.to(v.device)))


class _Sgd(_Family):
    """PyTorch's SGD: momentum, dampening, nesterov, weight decay (sgd, momentum, nesterov)."""

    ROWS = ("wd", "momentum", "damp", "nesterov", "buf")

    def __init__(self, positions, rows, lr_table, groups: list, P: int):
        super().__init__(positions, rows, lr_table)
        dev = lr_table.device
        self.wd = _col(groups, lambda g: g["weight_decay"], dev)
        self.any_wd = bool((self.wd != 0).any())
        self.momentum = _col(groups, lambda g: g["momentum"], dev)
        self.damp = 1 - _col(groups, lambda g: g["dampening"], dev)
        self.nesterov = _col(groups, lambda g: g["nesterov"], dev) != 0
        self.any_momentum = bool((self.momentum != 0).any())
        self.any_damp = bool((self.damp != 1).any())
        self.any_nesterov = bool(self.nesterov.any())
        self.buf = None

    def update(self, s: int, g, flat_p):
        """Step s's update [k, P] from the gradients g [k, P]; flat_p() gives the weights [k, P]."""
        import torch

        if self.any_wd:
            g = g + self.wd * flat_p()
        if self.any_momentum:
            if self.buf is None:
                self.buf = g.clone()  # torch's first step: v = grad, no dampening
            else:
                self.buf.mul_(self.momentum).add_(self.damp * g if self.any_damp else g)
            # momentum 0 (plain sgd in the stack): buf is the gradient itself, as torch steps it.
            g = torch.where(self.nesterov, g + self.momentum * self.buf, self.buf) if self.any_nesterov else self.buf
        return self.lr_table[s][:, None] * g

    def state(self, j: int, cols: slice, shape, step_count: int) -> dict | None:
        if float(self.momentum[j]) != 0 and self.buf is not None:
            return {"momentum_buffer": self.buf[j, cols].view(shape).clone()}
        return None


class _Adam(_Family):
    """PyTorch's Adam and AdamW (amsgrad off): coupled or decoupled weight decay."""

    ROWS = ("wd_coupled", "wd_decoupled", "one_minus_beta1", "beta2", "one_minus_beta2", "eps")
    ROWS += ("exp_avg", "exp_avg_sq")
    COLUMNS = ("lr_table", "step_size", "bc2_sqrt")

    def __init__(self, positions, rows, lr_table, groups: list, P: int):
        import torch

        super().__init__(positions, rows, lr_table)
        dev = lr_table.device
        wd = _col(groups, lambda g: g["weight_decay"], dev)
        decoupled = _col(groups, lambda g: g.get("decoupled_weight_decay", False), dev)
        self.wd_coupled, self.wd_decoupled = wd * (1 - decoupled), wd * decoupled
        self.any_coupled = bool((self.wd_coupled != 0).any())
        self.any_decoupled = bool((self.wd_decoupled != 0).any())
        self.one_minus_beta1 = 1 - _col(groups, lambda g: g["betas"][0], dev)
        self.beta2 = _col(groups, lambda g: g["betas"][1], dev)
        self.one_minus_beta2 = 1 - self.beta2
        self.eps = _col(groups, lambda g: g["eps"], dev)
        # Bias corrections per step, in double as torch computes them, then as tensors.
        b1 = torch.tensor([g["betas"][0] for g in groups], dtype=torch.float64)
        b2 = torch.tensor([g["betas"][1] for g in groups], dtype=torch.float64)
        steps = torch.arange(1, len(lr_table) + 1, dtype=torch.float64)[:, None]
        self.step_size = (lr_table.double().cpu() / (1 - b1**steps)).float().to(dev)
        self.bc2_sqrt = ((1 - b2**steps) ** 0.5).float().to(dev)
        self.exp_avg = torch.zeros(len(groups), P, device=dev)
        self.exp_avg_sq = torch.zeros(len(groups), P, device=dev)

    def update(self, s: int, g, flat_p):
        """Step s's update [k, P] from the gradients g [k, P]; flat_p() gives the weights [k, P]."""
        update = None
        if self.any_coupled or self.any_decoupled:
            w = flat_p()
            if self.any_coupled:
                g = g + self.wd_coupled * w
            if self.any_decoupled:
                update = w * (self.lr_table[s][:, None] * self.wd_decoupled)  # torch: w *= 1 - lr * wd first
        self.exp_avg.lerp_(g, self.one_minus_beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(g, g * self.one_minus_beta2)
        denom = (self.exp_avg_sq.sqrt() / self.bc2_sqrt[s][:, None]).add_(self.eps)
        step = self.exp_avg / denom * self.step_size[s][:, None]
        return step if update is None else update.add_(step)

    def state(self, j: int, cols: slice, shape, step_count: int) -> dict | None:
        import torch

        if not step_count:
            return None
        return {
            "step": torch.tensor(float(step_count)),
            "exp_avg": self.exp_avg[j, cols].view(shape).clone(),
            "exp_avg_sq": self.exp_avg_sq[j, cols].view(shape).clone(),
        }


class StackedOptimizer:
    """PyTorch's SGD (momentum, dampening, nesterov, weight decay) and Adam/AdamW steps for K
    trials at once, each trial's numbers a [K] tensor and torch's formulas, so a trial steps
    as its own torch optimizer would (tests/test_stacking.py checks every one against it).

    The state lives in one [k, P] tensor per kind (P: one trial's parameter count) and a
    step works on the gradients concatenated: a few whole-stack operations per step instead
    of a few per parameter tensor (a small net's step is launch-bound).

    One stack may hold both families (families[k]: "sgd" or "adam" for trial k): each
    family computes its update on its own rows of the gradients (index_select) and writes
    it into the one update (index_copy) that is applied. A stack of one family works on the
    whole tensors, with no copies."""

    FAMILIES = {"sgd": _Sgd, "adam": _Adam}

    def __init__(self, families: list[str], optimizers: list, params: list, lr_table):
        import torch

        unknown = sorted(set(families) - set(self.FAMILIES))
        if unknown:
            raise ValueError(f"optimizer family {unknown[0]!r}: the stack steps {' and '.join(self.FAMILIES)}")
        if len(families) != len(optimizers):
            raise ValueError(f"{len(families)} families for {len(optimizers)} optimizers")
        self.params = params
        dev = params[0].device
        self.K = params[0].shape[0]
        self.sizes = [p[0].numel() for p in params]
        P = sum(self.sizes)
        groups = [o.param_groups[0] for o in optimizers]
        self.step_count = 0
        self.parts: list = []
        for name, cls in self.FAMILIES.items():
            pos = [k for k, f in enumerate(families) if f == name]
            if not pos:
                continue
            if len(pos) == self.K:
                rows, lrs = None, lr_table
            else:
                rows = torch.tensor(pos, device=dev)
                lrs = lr_table.index_select(1, rows.to(lr_table.device))
            self.parts.append(cls(pos, rows, lrs, [groups[k] for k in pos], P))

    def keep(self, idx, params: list) -> None:
        """Only the trials idx (a device index tensor, ascending) step on, from these parameters."""
        import torch

        self.params, self.K = params, params[0].shape[0]
        if len(self.parts) == 1:
            part = self.parts[0]
            part.keep(idx)
            part.positions = list(range(self.K))
            return
        new = {old: i for i, old in enumerate(idx.tolist())}  # place in the stack: old -> new
        parts = []
        for part in self.parts:
            local = [i for i, old in enumerate(part.positions) if old in new]
            if not local:
                continue  # every trial of this family ended
            if len(local) < len(part.positions):
                part.keep(torch.tensor(local, device=idx.device))
            part.positions = [new[part.positions[i]] for i in local]
            whole = len(part.positions) == self.K
            part.rows = None if whole else torch.tensor(part.positions, device=idx.device)
            parts.append(part)
        self.parts = parts

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
            if len(self.parts) == 1:
                self._apply(self.parts[0].update(s, g, lambda: self._flat(self.params)))
                return
            flat: list = []  # the weights [K, P], concatenated once if a family needs them

            def rows_of_weights(rows):
                if not flat:
                    flat.append(self._flat(self.params))
                return flat[0].index_select(0, rows)

            update = torch.empty_like(g)
            for part in self.parts:
                rows = part.rows
                part_update = part.update(s, g.index_select(0, rows), lambda rows=rows: rows_of_weights(rows))
                update.index_copy_(0, rows, part_update)
            self._apply(update)

    def trial_state(self, j: int, torch_params: list) -> dict:
        """Trial j's optimizer state in its torch optimizer's own format (for its checkpoint)."""
        part = next(p for p in self.parts if j in p.positions)
        local = part.positions.index(j)
        out: dict = {}
        for i, tp in enumerate(torch_params):
            lo = sum(self.sizes[:i])
            state = part.state(local, slice(lo, lo + self.sizes[i]), tp.shape, self.step_count)
            if state is not None:
                out[tp] = state
        return out


def torch_cat(tensors):
    import torch

    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=1)


# ---------------------------------------------------------------------- the loop
