"""InfoGAN on MNIST, one configuration per run: lab 6's section 9 (cpu profile) and its metric, with the
architecture and the optimisation as options (chapter 6, issue 18).

It reproduces the lab exactly with ``--arch lab`` (same seeds, data stream, feature net and metric: the
code's one-to-one match with the digit the course's classifier reads, on 500 samples per code value) and
also reports Q's match on the real test digits. ``--gfc`` and ``--dfc`` add InfoGAN's fully connected layer
(Chen et al. 2016) to G and to D's shared trunk. Each run appends one JSON line (its settings, the curve of
``--evals`` steps, steps per second) to ``--out``::

    python benchmarks/infogan_ablation.py --arch lab --steps 800                      # the lab before the fix
    python benchmarks/infogan_ablation.py --arch new --gfc 1024 --dfc 1024 --steps 1200 --evals 400,800,1200
"""
import argparse
import json
import time
from pathlib import Path

import torch

import unsuplab as ul
from unsuplab.models import gan
from unsuplab.models.mnist_classifier import classify, train_classifier

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--steps", type=int, default=800)
p.add_argument("--evals", default="200,400,800")
p.add_argument("--arch", default="lab")          # lab | new (uses patched gan module classes with kwargs)
p.add_argument("--width", type=int, default=16)  # G width
p.add_argument("--dwidth", type=int, default=None)
p.add_argument("--gfc", type=int, default=0)     # hidden FC units in G before projection (0 = none)
p.add_argument("--dfc", type=int, default=0)     # hidden FC units in D trunk (0 = none)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--lrG", type=float, default=1e-3)
p.add_argument("--lrD", type=float, default=2e-4)
p.add_argument("--lam", type=float, default=1.0)
p.add_argument("--noise", type=int, default=62)
p.add_argument("--step", default="lib")         # lib | variants
p.add_argument("--threads", type=int, default=2)
p.add_argument("--tag", default="")
p.add_argument("--warm", type=int, default=0)
p.add_argument("--ramp", type=int, default=0)
p.add_argument("--out", default="results/benchmarks/infogan_ablation-cpu.jsonl")
p.add_argument("--checkpoints", default="checkpoints")
a = p.parse_args()
torch.set_num_threads(a.threads)
seed = a.seed
K = 10
ul.runtime.seed_everything(seed)

x_train, y_train = ul.data.mnist("train", n=60_000)
x_test, y_test = ul.data.mnist("test", n=5_000)
x_gan = gan.to_signed(x_train)
fn_ck = Path(a.checkpoints) / f"06_feature_net-ablation-seed{seed}.pt"
feature_net = train_classifier(x_train[:20_000], y_train[:20_000], epochs=2, width=16, seed=seed, checkpoint=fn_ck)

torch.manual_seed(seed)
dw = a.dwidth or a.width
if a.arch == "lab":
    G = gan.DCGANGenerator(a.noise + K, a.width)
    D = gan.DCGANDiscriminator(a.width, n_codes=K)
else:
    G = gan.DCGANGenerator(a.noise + K, a.width, hidden=a.gfc)
    D = gan.DCGANDiscriminator(dw, n_codes=K, hidden=a.dfc)
opt_G = torch.optim.Adam(G.parameters(), lr=a.lrG, betas=(0.5, 0.999))
opt_D = torch.optim.Adam(D.parameters(), lr=a.lrD, betas=(0.5, 0.999))
g_info = torch.Generator().manual_seed(seed + 5)
B = a.batch

def evaluate():
    g = torch.Generator().manual_seed(seed + 6)
    def with_codes(noise, codes):
        return torch.cat([noise, gan.one_hot_codes(codes, K)], dim=1)
    noise = torch.randn(10, a.noise, generator=g).repeat(K, 1)
    per_code = max(10, len(x_test) // K)
    codes = torch.arange(K).repeat_interleave(per_code)
    _, p_info = classify(feature_net, gan.generate(G, with_codes(torch.randn(len(codes), a.noise, generator=g), codes)))
    digit = p_info.argmax(1)
    acc = ul.metrics.cluster_accuracy(digit, codes)
    majority = [int(torch.bincount(digit[codes == c], minlength=10).argmax()) for c in range(K)]
    # also: Q on real test digits (majority mapping), a sanity check of the alternative metric
    with torch.no_grad():
        D.eval(); q = D.q_logits(D.features(gan.to_signed(x_test))).argmax(1); D.train()
    q_acc = ul.metrics.cluster_accuracy(y_test, q)
    return acc, majority, q_acc

evals = sorted(int(s) for s in a.evals.split(","))
curve = []
t_train = 0.0
last = {}
for step in range(1, a.steps + 1):
    t0 = time.perf_counter()
    x_real = x_gan[torch.randint(len(x_gan), (B,), generator=g_info)]
    noise = torch.randn(B, a.noise, generator=g_info)
    codes = torch.randint(K, (B,), generator=g_info)
    lam = a.lam * (0.0 if step <= a.warm else min(1.0, (step - a.warm) / a.ramp) if a.ramp else 1.0)
    last = gan.infogan_step(G, D, opt_G, opt_D, x_real, noise, codes, lam)
    t_train += time.perf_counter() - t0
    if step in evals:
        acc, maj, q_acc = evaluate()
        curve.append(dict(step=step, acc=round(acc, 4), distinct=len(set(maj)), q_real_acc=round(q_acc, 4),
                          sec=round(t_train, 1), info=round(float(last["info"]), 3)))
        print(json.dumps(curve[-1]), maj, flush=True)
res = dict(args=vars(a), curve=curve, steps_per_s=round(a.steps / t_train, 2), train_s=round(t_train, 1))
print("RESULT", json.dumps(res), flush=True)
Path(a.out).parent.mkdir(parents=True, exist_ok=True)
with open(a.out, "a") as f:
    f.write(json.dumps(res) + "\n")
