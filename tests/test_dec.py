"""unsuplab.models.dec: DEC's soft assignment, its sharpened target and the KL refinement."""

import pytest
import torch
from torch import nn

from unsuplab.models import dec


def test_soft_assignment_is_students_t_normalised():
    z, mu = torch.tensor([[0.0, 0.0], [3.0, 4.0]]), torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    q = dec.soft_assignment(z, mu)
    # row 0: kernels 1 and 1/10; row 1: 1/26 and 1/17
    expected = torch.tensor([[1.0, 0.1], [1 / 26, 1 / 17]])
    torch.testing.assert_close(q, expected / expected.sum(1, keepdim=True))


def test_target_sharpens_and_divides_out_cluster_size():
    q = torch.tensor([[0.6, 0.4], [0.6, 0.4], [0.6, 0.4], [0.1, 0.9]])
    p = dec.target_distribution(q)
    torch.testing.assert_close(p.sum(1), torch.ones(4))
    assert p[3, 1] > q[3, 1]                      # a confident assignment becomes more confident
    # cluster 0 holds 1.9 of the mass, cluster 1 2.1: the uncertain rows lean less to the larger cluster 0
    # than q did: p = (0.36 / 1.9) / (0.36 / 1.9 + 0.16 / 2.1)
    assert p[0, 0].item() == pytest.approx((0.36 / 1.9) / (0.36 / 1.9 + 0.16 / 2.1))


def test_training_separates_two_blobs_and_stops_when_assignments_settle():
    torch.manual_seed(0)
    x = torch.cat([torch.randn(200, 2) * 0.3 + 2, torch.randn(200, 2) * 0.3 - 2])
    encoder = nn.Linear(2, 2)
    with torch.no_grad():
        encoder.weight.copy_(torch.eye(2)), encoder.bias.zero_()
    model = dec.DEC(encoder, torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
    history = dec.train_dec(model, x, steps=300, batch_size=64, lr=0.01, update_interval=50, seed=0,
                            eval_fn=lambda m: {"n": 1})
    labels = model.assign(x).argmax(1)
    assert (labels[:200] == labels[0]).all() and (labels[200:] != labels[0]).all()
    changed = history.steps["changed"]
    assert changed and changed[-1] < 0.001 and len(history.steps["loss"]) < 300   # stopped early
    assert history.steps["step"][-1] == len(history.steps["loss"]) and history.steps["step"][-1] % 50 == 0
    assert history.steps["eval_step"][0] == 0 and history.steps["n"] == [1] * len(history.steps["eval_step"])
    assert len(history.steps["eval_step"]) == len(changed)        # at the start and every update but the last


def test_dec_uses_an_autoencoders_encode_method():
    class AE(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def encode(self, x):
            return self.lin(x.flatten(1))

        def forward(self, x):
            raise AssertionError("DEC must call encode, not the reconstruction")

    model = dec.DEC(AE(), torch.zeros(3, 2))
    assert model(torch.randn(5, 2, 2)).shape == (5, 3)
    with pytest.raises(ValueError, match="steps >= 1"):
        dec.train_dec(model, torch.randn(5, 4), steps=0)
