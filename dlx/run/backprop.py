"""dlx backprop: one step of backpropagation on a tiny net, worked by hand and printed line by
line (every forward value, local derivative, delta and weight gradient, each with the
chain-rule formula it applies), then checked against autograd.

For an mlp config (its first batch of `samples` training samples, its init from the seed),
or for Mazur's worked example ("A Step by Step Backpropagation Example", 2015: 2-2-2
sigmoid, squared error, lr 0.5), whose numbers it reproduces: E = 0.298371109,
w5 -> 0.35891648.

The loss is dlx's: mean squared error over every output (for Mazur's two outputs and one
sample, mean((t-o)^2) = 1/2 sum (t-o)^2, his E), or softmax cross-entropy averaged over the
batch. Everything is in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dlx.components.activations import ACTIVATIONS

# The derivative of each activation written from its output a or input z, as the notes do:
# the activations whose spec declares one (dlx.components.activations: sigmoid, tanh, relu, identity).
DERIVATIVES = {n: d for n in ACTIVATIONS.names() if (d := ACTIVATIONS.get(n).derivative) is not None}
FUNCTIONS = {n: ACTIVATIONS.parse(n).build(1) for n in DERIVATIVES}  # each activation's own module


@dataclass
class Net:
    """A tiny mlp by its numbers: weights[l] [out, in], biases[l] [out], the hidden and the
    output activation, the loss ("mse" | "cross_entropy"), one batch x [n, in], y."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    hidden: str
    output: str
    loss: str
    x: torch.Tensor
    y: torch.Tensor
    lr: float
    names: list[str] = field(default_factory=list)


def mazur() -> Net:
    """Mazur's worked example: w1..w4 = .15 .20 .25 .30, w5..w8 = .40 .45 .50 .55, b1 = .35,
    b2 = .60, input .05 .10, target .01 .99."""
    d = torch.float64
    return Net(
        weights=[
            torch.tensor([[0.15, 0.20], [0.25, 0.30]], dtype=d),
            torch.tensor([[0.40, 0.45], [0.50, 0.55]], dtype=d),
        ],
        biases=[torch.tensor([0.35, 0.35], dtype=d), torch.tensor([0.60, 0.60], dtype=d)],
        hidden="sigmoid",
        output="sigmoid",
        loss="mse",
        x=torch.tensor([[0.05, 0.10]], dtype=d),
        y=torch.tensor([[0.01, 0.99]], dtype=d),
        lr=0.5,
        names=["hidden (w1..w4, b1)", "output (w5..w8, b2)"],
    )


def from_config(cfg, samples: int = 1) -> Net:
    """The net of an mlp config as its step 0 has it, on its first `samples` training samples."""
    import torch.nn as nn

    from dlx.core.errors import UsageError
    from dlx.run.trainer import Trainer

    if cfg.model.name != "mlp":
        raise UsageError(f"dlx backprop traces a plain mlp; this config's model is {cfg.model.name}")
    reg = cfg.regularization
    if reg.norm != "none" or reg.dropout or reg.dropconnect:
        raise UsageError("dlx backprop traces a plain mlp: set regularization.norm: none and no dropout")
    act = cfg.activation.name
    if act not in DERIVATIVES:
        raise UsageError(f"dlx backprop writes out sigmoid, tanh, relu and identity; this config uses {act}")
    out_act = getattr(cfg.model, "output_activation", "none")
    tr = Trainer(cfg)
    layers = [m for _, m in tr.model.init_targets()]
    if not all(isinstance(m, nn.Linear) for m in layers):
        raise UsageError("dlx backprop traces Linear layers only")
    data = tr.data
    x = data.as_float(data.x_train[:samples]).double()
    y = data.y_train[:samples]
    loss = cfg.train.loss
    if data.task == "classification" and loss == "mse":
        y = torch.nn.functional.one_hot(y, data.n_classes).double()
    elif data.task == "regression":
        y = y.double()
    return Net(
        weights=[m.weight.detach().double().clone() for m in layers],
        biases=[m.bias.detach().double().clone() for m in layers],
        hidden=act,
        output="sigmoid" if out_act == "sigmoid" else "identity",
        loss=loss,
        x=x,
        y=y,
        lr=float(cfg.optimizer.lr),
        names=[n for n, _ in tr.model.init_targets()],
    )


def _v(t: torch.Tensor) -> str:
    vals = t.reshape(-1).tolist()
    vals = [v + 0.0 for v in vals]  # -0.0 prints as 0
    return "[" + ", ".join(f"{v:.9g}" for v in vals) + "]" if len(vals) > 1 else f"{vals[0]:.9g}"


def trace(net: Net) -> tuple[list[str], dict]:
    """The worked step as lines of text, and the numbers (E, gradients, new weights, the
    largest difference from autograd)."""
    L = len(net.weights)
    lines: list[str] = []
    n = len(net.x)
    names = net.names or [f"layer {i + 1}" for i in range(L)]
    a = [net.x]
    z: list[torch.Tensor] = []
    lines.append(f"forward ({n} sample{'s' if n > 1 else ''}; a0 = x = {_v(net.x)})")
    for i in range(L):
        f = net.output if i == L - 1 else net.hidden
        zi = a[-1] @ net.weights[i].T + net.biases[i]
        ai = FUNCTIONS[f](zi)
        z.append(zi)
        a.append(ai)
        lines.append(f"  {names[i]}: z{i + 1} = W{i + 1} a{i} + b{i + 1} = {_v(zi)}")
        if n == 1:
            for j in range(zi.shape[1]):
                terms = " + ".join(f"{w:.6g}*{x:.6g}" for w, x in zip(net.weights[i][j].tolist(), a[-2][0].tolist()))
                lines.append(f"      z{i + 1}[{j}] = {terms} + {net.biases[i][j]:.6g} = {zi[0, j]:.9g}")
        lines.append(f"    a{i + 1} = {f}(z{i + 1}) = {_v(ai)}")
    out = a[-1]
    if net.loss == "mse":
        E = ((out - net.y) ** 2).mean()
        lines.append(f"loss: E = mean((a{L} - y)^2) over {out.numel()} outputs = {E.item():.9g}   (y = {_v(net.y)})")
        d_out = 2 * (out - net.y) / out.numel()
        lines.append("backward")
        lines.append(f"  dE/da{L} = 2 (a{L} - y) / {out.numel()} = {_v(d_out)}")
        name, fp = DERIVATIVES[net.output]
        delta = d_out * fp(z[-1], out)
        lines.append(f"  delta{L} = dE/dz{L} = dE/da{L} * {net.output}'(z{L}) = dE/da{L} * {name} = {_v(delta)}")
    else:
        logp = torch.log_softmax(out, -1)
        E = -logp[torch.arange(n), net.y].mean()
        lines.append(f"loss: E = mean(-log softmax(a{L})[y]) = {E.item():.9g}   (y = {net.y.tolist()})")
        onehot = torch.nn.functional.one_hot(net.y, out.shape[1]).double()
        delta = (logp.exp() - onehot) / n
        lines.append("backward")
        lines.append(f"  delta{L} = dE/dz{L} = (softmax(z{L}) - onehot(y)) / {n} = {_v(delta)}")
    grads_w, grads_b = [None] * L, [None] * L
    for i in range(L - 1, -1, -1):
        grads_w[i] = delta.T @ a[i]
        grads_b[i] = delta.sum(0)
        lines.append(f"  dE/dW{i + 1} = delta{i + 1}^T a{i} = {_v(grads_w[i])}")
        if n == 1:
            for j in range(grads_w[i].shape[0]):
                for k in range(grads_w[i].shape[1]):
                    lines.append(
                        f"      dE/dW{i + 1}[{j},{k}] = delta{i + 1}[{j}] * a{i}[{k}] = "
                        f"{delta[0, j]:.9g} * {a[i][0, k]:.9g} = {grads_w[i][j, k]:.9g}"
                    )
        lines.append(f"  dE/db{i + 1} = sum over samples of delta{i + 1} = {_v(grads_b[i])}")
        if i > 0:
            back = delta @ net.weights[i]
            name, fp = DERIVATIVES[net.hidden]
            lines.append(f"  dE/da{i} = delta{i + 1} W{i + 1} = {_v(back)}")
            delta = back * fp(z[i - 1], a[i])
            lines.append(f"  delta{i} = dE/da{i} * {net.hidden}'(z{i}) = dE/da{i} * {name} = {_v(delta)}")
    new_w = [w - net.lr * g for w, g in zip(net.weights, grads_w)]
    lines.append(f"update (gradient descent, lr {net.lr:g}): W <- W - lr dE/dW")
    for i in range(L):
        lines.append(f"  W{i + 1}: {_v(net.weights[i])} -> {_v(new_w[i])}")
    diff = _check(net, E, grads_w, grads_b)
    lines.append(f"checked against autograd: largest |difference| {diff:.2g} over every weight and bias gradient")
    return lines, {"E": E.item(), "grad_w": grads_w, "grad_b": grads_b, "new_w": new_w, "autograd_diff": diff}


def _check(net: Net, E: torch.Tensor, grads_w, grads_b) -> float:
    """The same step by autograd: the largest difference of any gradient (and of E)."""
    ws = [w.clone().requires_grad_() for w in net.weights]
    bs = [b.clone().requires_grad_() for b in net.biases]
    a = net.x
    for i, (w, b) in enumerate(zip(ws, bs)):
        a = FUNCTIONS[net.output if i == len(ws) - 1 else net.hidden](a @ w.T + b)
    if net.loss == "mse":
        loss = torch.nn.functional.mse_loss(a, net.y)
    else:
        loss = torch.nn.functional.cross_entropy(a, net.y)
    gw = torch.autograd.grad(loss, ws + bs)
    diffs = [float((g - h).abs().max()) for g, h in zip(gw, [*grads_w, *grads_b])]
    return max([*diffs, abs(float(loss.detach()) - float(E))])
