"""Lab 7b's methods (unsuplab.models.pretext): exact answers on cases small enough to work out by hand."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from unsuplab.models import ssl


def unique_images(b=2, c=3, side=32):
    """Images whose every pixel value is different, so that a crop can be found again in its image."""
    n = b * c * side * side
    return (torch.arange(n, dtype=torch.float32) / n).view(b, c, side, side)


# ------------------------------------------------------------------------------------------------ jigsaw

def test_choose_far_apart_on_three_tiles_finds_the_latin_square():
    # From (0,1,2): the farthest are (1,2,0) and (2,0,1) (distance 3; the first is taken), then (2,0,1),
    # whose summed distance 3 + 3 = 6 beats every other candidate's 4: the three cyclic shifts.
    candidates = ssl.all_permutations(3)
    chosen = ssl.choose_far_apart(candidates, 3, first=0)
    assert chosen.tolist() == [[0, 1, 2], [1, 2, 0], [2, 0, 1]]
    assert ssl.mean_hamming_distance(chosen) == (3.0, 3)


def test_choose_far_apart_never_repeats_and_can_take_every_permutation():
    candidates = ssl.all_permutations(4)
    chosen = ssl.choose_far_apart(candidates, 24, first=5)
    assert len({tuple(r) for r in chosen.tolist()}) == 24 and chosen[0].equal(candidates[5])
    with pytest.raises(ValueError, match="n_permutations must be 1 to 24"):
        ssl.choose_far_apart(candidates, 25, first=0)


def test_hamming_set_is_farther_apart_than_a_random_one():
    g = torch.Generator().manual_seed(0)
    chosen = ssl.hamming_permutations(9, 64, generator=g)
    assert chosen.shape == (64, 9) and all(sorted(r) == list(range(9)) for r in chosen.tolist())
    candidates = ssl.all_permutations(9)
    random_set = candidates[torch.randperm(len(candidates), generator=g)[:64]]
    assert ssl.mean_hamming_distance(chosen)[0] > ssl.mean_hamming_distance(random_set)[0] + 0.05
    with pytest.raises(ValueError, match="n_tiles must be 2 to 9"):
        ssl.all_permutations(10)


def test_jigsaw_tiles_are_crops_in_reading_order_one_cell_apart():
    x = unique_images()
    tile, gap = 9, 1
    tiles = ssl.jigsaw_tiles(x, tile=tile, gap=gap, jitter=0)
    assert tiles.shape == (2, 9, 3, tile, tile)
    for b in range(2):
        corners = []
        for p in range(9):
            first = tiles[b, p, 0, 0, 0]
            row, col = [int(v) for v in torch.nonzero(x[b, 0] == first)[0]]
            assert torch.equal(x[b, :, row:row + tile, col:col + tile], tiles[b, p])
            corners.append((row, col))
        top, left = corners[0]
        assert corners == [(top + r * (tile + gap), left + c * (tile + gap)) for r in range(3) for c in range(3)]
    with pytest.raises(ValueError, match="needs 34 pixels"):
        ssl.jigsaw_tiles(x, tile=10, gap=1, jitter=1)


def test_shuffle_tiles_puts_tile_perm_p_at_position_p():
    tiles = torch.arange(2 * 4, dtype=torch.float32).view(2, 4, 1, 1, 1)       # tile i of image b holds 4b + i
    permutations = torch.tensor([[0, 1, 2, 3], [2, 0, 3, 1]])
    puzzles = ssl.shuffle_tiles(tiles, permutations, torch.tensor([1, 0]))
    assert puzzles.flatten(1).tolist() == [[2, 0, 3, 1], [4, 5, 6, 7]]


def test_jigsaw_net_sees_each_tile_alone_and_names_the_permutation():
    torch.manual_seed(0)
    net = ssl.JigsawNet(ssl.convnet(4), n_tiles=9, n_permutations=16).eval()
    puzzles, j = ssl.jigsaw_batch(torch.rand(3, 3, 32, 32), ssl.hamming_permutations(9, 16))
    assert puzzles.shape == (3, 9, 3, 9, 9) and j.shape == (3,) and int(j.max()) < 16
    assert net(puzzles).shape == (3, 16)
    # the context-free network: changing one tile changes that tile's features only
    f = net.backbone(puzzles.flatten(0, 1)).view(3, 9, -1)
    other = puzzles.clone()
    other[:, 4] = torch.rand_like(other[:, 4])
    g = net.backbone(other.flatten(0, 1)).view(3, 9, -1)
    assert torch.allclose(f[:, [0, 1, 2, 3, 5, 6, 7, 8]], g[:, [0, 1, 2, 3, 5, 6, 7, 8]])
    assert not torch.allclose(f[:, 4], g[:, 4])


# ------------------------------------------------------------------------------------------------ context encoders

def test_mask_centre_fills_only_the_centre_with_the_mean_colour():
    x = torch.rand(2, 3, 32, 32)
    masked, centre = ssl.mask_centre(x, 16)
    assert torch.equal(centre, x[:, :, 8:24, 8:24])
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[8:24, 8:24] = True
    assert torch.equal(masked[:, :, ~inside], x[:, :, ~inside])
    assert torch.allclose(masked[:, :, inside], torch.tensor(ssl.CIFAR_MEAN).view(1, 3, 1).expand(2, 3, 256))
    with pytest.raises(ValueError, match="smaller than the images"):
        ssl.mask_centre(x, 32)


def test_channelwise_linear_maps_each_channel_by_its_own_matrix():
    torch.manual_seed(0)
    layer = ssl.ChannelwiseLinear(3, 2)
    h = torch.randn(5, 3, 2, 2, requires_grad=True)
    out = layer(h)
    expected = torch.stack([h[:, c].flatten(1) @ layer.weight[c] + layer.bias[c] for c in range(3)], dim=1)
    assert torch.allclose(out.flatten(2), expected, atol=1e-6)
    out[:, 1].sum().backward()  # channel 1 of the output depends on channel 1 of the input only
    assert h.grad[:, [0, 2]].abs().sum() == 0 and h.grad[:, 1].abs().sum() > 0


def test_context_encoder_paints_the_centre_and_training_lowers_the_error():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 32, 32) * 0.2 + torch.linspace(0, 0.8, 32).view(1, 1, 1, 32)  # a ramp to continue
    model = ssl.ContextEncoder(ssl.convnet(8), centre=16)
    disc = ssl.CentreDiscriminator(8)
    with torch.no_grad():
        painted = model(ssl.mask_centre(x[:4], 16)[0])
    assert painted.shape == (4, 3, 16, 16) and 0 <= float(painted.min()) and float(painted.max()) <= 1
    d_before = [p.detach().clone() for p in disc.parameters()]
    history = ssl.train_context_encoder(model, disc, x, steps=40, batch_size=16, lr=3e-3, progress_bar=False,
                                            augment=lambda images: images)
    rec = history.steps["rec"]
    assert len(rec) == 40 and len(history.steps["adv"]) == 40
    assert sum(rec[-5:]) / 5 < 0.7 * sum(rec[:5]) / 5
    assert any(not torch.equal(a, b) for a, b in zip(d_before, disc.parameters()))  # D was trained too
    alone = ssl.train_context_encoder(ssl.ContextEncoder(ssl.convnet(8)), None, x, steps=2, batch_size=16,
                                          lr=1e-3, progress_bar=False)
    assert "adv" not in alone.steps
    with pytest.raises(ValueError, match="power of two"):
        ssl.ContextEncoder(ssl.convnet(8), centre=12)


def test_reconstruction_loss_sums_pixels_and_averages_images():
    painted, centre = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    centre[1] = 0
    assert ssl.reconstruction_loss(painted, centre).item() == pytest.approx(48 / 2)


# ------------------------------------------------------------------------------------------------ Exemplar-CNN

def test_exemplar_loss_is_the_cross_entropy_of_each_view_against_its_own_index():
    torch.manual_seed(0)
    model = ssl.ExemplarCNN(ssl.convnet(4), 10).eval()
    exemplars = torch.rand(10, 3, 32, 32)
    index = torch.tensor([3, 7, 7, 0])
    loss = ssl.exemplar_loss(model, exemplars, index, augment=lambda images: images)
    assert loss.item() == pytest.approx(F.cross_entropy(model(exemplars[index]), index).item(), abs=1e-6)


# ------------------------------------------------------------------------------------------------ noise as targets

def test_targets_are_on_the_unit_sphere_and_the_features_too():
    targets = ssl.unit_sphere_targets(100, 8, torch.Generator().manual_seed(0))
    assert torch.allclose(targets.norm(dim=1), torch.ones(100))
    model = ssl.NoiseAsTargets(ssl.convnet(4), dim=8).eval()
    assert torch.allclose(model(torch.rand(3, 3, 32, 32)).norm(dim=1), torch.ones(3), atol=1e-6)


def test_nat_assign_finds_the_optimum_of_every_permutation():
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        z = F.normalize(torch.randn(5, 3, generator=g), dim=1)
        c = F.normalize(torch.randn(5, 3, generator=g), dim=1)
        perm = ssl.nat_assign(z, c)
        assert sorted(perm.tolist()) == list(range(5))
        best = min(((z - c[list(p)]) ** 2).sum().item() for p in itertools.permutations(range(5)))
        assert ((z - c[perm]) ** 2).sum().item() == pytest.approx(best, abs=1e-5)


def test_nat_loss_reassigns_within_the_batch_and_keeps_a_permutation():
    torch.manual_seed(0)
    n, dim = 40, 6
    model = ssl.NoiseAsTargets(ssl.convnet(4), dim=dim).eval()   # eval: batch norm gives the same z twice
    state = ssl.NatState(n, dim, "cpu", generator=torch.Generator().manual_seed(0))
    x = torch.rand(n, 3, 32, 32)
    index = torch.tensor([1, 5, 9, 20, 33, 39])
    before = state.assigned.clone()
    loss, logged = ssl.nat_loss(model, x, index, state, augment=lambda images: images)
    assert sorted(state.assigned.tolist()) == list(range(n))                        # still one target per image
    assert sorted(state.assigned[index].tolist()) == sorted(before[index].tolist())   # swapped among the batch only
    keep = torch.ones(n, dtype=torch.bool)
    keep[index] = False
    assert torch.equal(state.assigned[keep], before[keep])
    with torch.no_grad():
        z = model(x[index])
    assert 0 <= logged["changed"] <= 1
    assert loss.item() == pytest.approx((z - state.targets[state.assigned[index]]).pow(2).sum(1).mean().item(), abs=1e-5)


def test_nat_reassigns_only_in_every_kth_pass_over_the_images():
    torch.manual_seed(0)
    n, dim = 8, 4
    model = ssl.NoiseAsTargets(ssl.convnet(4), dim=dim).eval()
    state = ssl.NatState(n, dim, "cpu", generator=torch.Generator().manual_seed(0), reassign_every=3)
    x, calls = torch.rand(n, 3, 32, 32), []

    def counting(z, targets):  # the Hungarian step, counted
        calls.append(len(z))
        return ssl.nat_assign(z, targets)

    for _ in range(7):  # passes 0 to 6 over the 8 images, in batches of 4
        for start in (0, 4):
            ssl.nat_loss(model, x, torch.arange(start, start + 4), state, augment=lambda images: images,
                         assign=counting)
    assert state.seen == 56 and calls == [4] * 6  # both batches of passes 0, 3 and 6, none of the others
    with pytest.raises(ValueError, match="reassign_every"):
        ssl.NatState(n, dim, "cpu", reassign_every=0)
