import pytest
import torch

from models.bert4rec import append_mask
from models.convncf import ConvNCF, ConvNCFConfig
from models.layers import Dropout, gather_positions
from models.nrms import encode_titles
from models.registry import KINDS
from tests.models.conftest import TINY

SEQ_BATCH = {"item_seq": torch.tensor([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0], [6, 0, 0, 0, 0]]), "seq_len": torch.tensor([3, 2, 1]),
             "target": torch.tensor([7, 8, 9])}
# Batches by what the user encoder takes (a model declares it): the training family batches the same way.
TRAIN_BATCHES = {
    "user_id": {"user": torch.tensor([1, 2, 3]), "pos_item": torch.tensor([1, 2, 3]), "neg_item": torch.tensor([4, 5, 6])},
    "sequence": SEQ_BATCH,
    "news_vectors": {"history": torch.tensor([[1, 2, 0], [3, 0, 0], [0, 0, 0]]), "history_len": torch.tensor([2, 1, 0]),
             "candidates": torch.randint(1, 40, (3, 5))},
}
EVAL_BATCHES = {"user_id": {"user": torch.tensor([1, 2, 3])}, "sequence": SEQ_BATCH,
                "news_vectors": {"history": TRAIN_BATCHES["news_vectors"]["history"]}}


def test_every_registered_kind_has_a_tiny_fixture():
    assert set(TINY) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_three_parts_have_the_contract_shapes(models, kind):
    model = models[kind]
    parts = model.onnx_parts()
    items = parts["item_encoder"].module(*parts["item_encoder"].inputs.values())
    users = parts["user_encoder"].module(*parts["user_encoder"].inputs.values())
    n_in = len(next(iter(parts["item_encoder"].inputs.values())))
    b_in = len(next(iter(parts["user_encoder"].inputs.values())))
    assert items.dim() == 2 and items.shape[0] == n_in
    assert users.shape == (b_in, items.shape[1])
    scores = model.scorer(users, items[:2].unsqueeze(0).expand(b_in, -1, -1))
    assert scores.shape == (b_in, 2)
    full = model.full_sort_scores(model.user_vectors(EVAL_BATCHES[model.user_input]))
    assert full.shape == (3, model.n_items) and torch.isinf(full[:, 0]).all() and torch.isfinite(full[:, 1:]).all()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_loss_is_finite_and_has_gradients(models, kind):
    model = models[kind].train()
    loss = model.compute_loss(TRAIN_BATCHES[model.user_input])
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("kind", ["gru4recf", "bert4rec"])
def test_extra_trailing_padding_does_not_change_the_user_vector(models, kind):
    model = models[kind]
    seq, length = SEQ_BATCH["item_seq"], SEQ_BATCH["seq_len"]
    padded = torch.nn.functional.pad(seq, (0, 4))
    assert torch.allclose(model.user_encoder(seq, length), model.user_encoder(padded, length), atol=1e-5)


def test_full_sort_matches_the_scorer_for_every_model(models):
    for kind, model in models.items():
        users = model.user_vectors(EVAL_BATCHES[model.user_input])
        items = model.item_vectors()
        full = model.full_sort_scores(users, items)
        pairwise = model.scorer(users, items[1:].unsqueeze(0).expand(len(users), -1, -1))
        if model.score_meaning == "probability":
            full = torch.sigmoid(full)
        assert torch.allclose(full[:, 1:], pairwise, atol=1e-5), kind


def test_bert4rec_appends_the_mask_token_after_the_last_real_item():
    out = append_mask(torch.tensor([[5, 6, 0], [7, 0, 0], [1, 2, 3]]), torch.tensor([2, 1, 3]), mask_token=99)
    assert out.tolist() == [[5, 6, 99, 0], [7, 99, 0, 0], [1, 2, 3, 99]]


def test_bert4rec_bias_is_folded_into_the_item_vector(models):
    model = models["bert4rec"]
    with torch.no_grad():
        model.output_bias.copy_(torch.randn_like(model.output_bias))
    users = model.user_vectors(SEQ_BATCH)
    hidden = model.network(append_mask(SEQ_BATCH["item_seq"], SEQ_BATCH["seq_len"], model.mask_token))
    hidden = gather_positions(hidden, SEQ_BATCH["seq_len"])
    expected = hidden @ model.item_embedding.weight[: model.cfg.n_items].T + model.output_bias
    assert torch.allclose(users[:, -1], torch.ones(3))
    assert torch.allclose(model.full_sort_scores(users)[:, 1:], expected[:, 1:], atol=1e-5)


def test_bert4rec_training_mask_always_covers_the_last_item(models):
    model = models["bert4rec"]
    seq = torch.tensor([[1, 2, 3, 4, 0, 0]] * 200)
    last = torch.full((200,), 3)
    masked = model._training_mask(seq, last)
    assert masked[:, 3].all() and not masked[:, 4:].any()
    only_last = (masked.sum(1) == 1).float().mean()
    # the ft_ratio rows, plus the random rows whose other three items all stayed unmasked
    cfg = model.cfg
    assert abs(only_last - (cfg.ft_ratio + (1 - cfg.ft_ratio) * (1 - cfg.mask_ratio) ** 3)) < 0.1


def test_nrms_padding_never_changes_a_news_vector(models):
    encoder = models["nrms"].item_encoder
    title = torch.tensor([[5, 9, 13, 2, 0, 0]])
    longer = torch.nn.functional.pad(title, (0, 24))
    assert torch.allclose(encoder(title), encoder(longer), atol=1e-6)
    assert torch.allclose(encoder(title[:, :4]), encoder(title), atol=1e-6)


def test_nrms_padding_never_changes_a_user_vector(models):
    model = models["nrms"]
    history = torch.randn(1, 3, model.dim)
    mask = torch.ones(1, 3)
    padded = torch.cat([history, torch.randn(1, 4, model.dim)], dim=1)  # garbage in the padding slots
    padded_mask = torch.cat([mask, torch.zeros(1, 4)], dim=1)
    assert torch.allclose(model.user_encoder(history, mask), model.user_encoder(padded, padded_mask), atol=1e-6)


def test_nrms_empty_history_gives_a_finite_zero_user_vector(models):
    model = models["nrms"]
    user = model.user_encoder(torch.zeros(2, 5, model.dim), torch.zeros(2, 5))
    assert torch.isfinite(user).all() and user.abs().max() == 0


def test_length_buckets_encode_exactly_like_one_padded_batch(models):
    model = models["nrms"]
    tokens = model.title_tokens[1:]
    assert torch.allclose(encode_titles(model.item_encoder, tokens), model.item_encoder(tokens), atol=1e-5)

@pytest.mark.parametrize("dim,kernels", [(64, [4, 4, 2, 2]), (24, [2, 3]), (32, [4, 4])])
def test_convncf_patch_products_equal_the_conv_stack_values_and_gradients(dim, kernels):
    channels = [1] + [8] * len(kernels)
    model = ConvNCF(ConvNCFConfig(5, 9, embedding_size=dim, cnn_channels=channels, cnn_kernels=kernels,
                                  cnn_strides=kernels, dropout_prob=0.0))
    scorer = model.scorer
    assert scorer.patch_grid is not None
    user, items = torch.randn(3, dim), torch.randn(3, 4, dim)

    def scores_and_grads(grid):
        scorer.patch_grid = grid
        scorer.zero_grad()
        scores = scorer(user, items)
        (scores * torch.arange(12.0).view(3, 4)).sum().backward()
        return scores.detach(), [p.grad.clone() for p in scorer.parameters()]

    grid = scorer.patch_grid
    patch_scores, patch_grads = scores_and_grads(grid)
    conv_scores, conv_grads = scores_and_grads(None)
    assert torch.allclose(patch_scores, conv_scores, atol=1e-5)
    for a, b in zip(patch_grads, conv_grads):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)

    users, catalog = torch.randn(5, dim), torch.randn(6, dim)
    with torch.no_grad():
        expected = scorer(users, catalog.unsqueeze(0).expand(5, -1, -1))  # the conv stack (grid still None)
        scorer.patch_grid = grid
        assert torch.allclose(scorer.score_all(users, catalog, rows=2), expected, atol=1e-5)


def test_convncf_overlapping_kernels_use_the_conv_stack():
    model = ConvNCF(ConvNCFConfig(5, 9, embedding_size=16, cnn_channels=[1, 4, 4], cnn_kernels=[4, 2], cnn_strides=[2, 2]))
    assert model.scorer.patch_grid is None
    assert model.scorer(torch.randn(2, 16), torch.randn(2, 3, 16)).shape == (2, 3)


def test_dropout_zeroes_a_share_p_scales_the_rest_and_is_identity_in_eval():
    torch.manual_seed(0)
    drop, x = Dropout(0.3), torch.full((200, 500), 2.0)
    y = drop.train()(x)
    zeros = (y == 0).float().mean().item()
    assert abs(zeros - 0.3) < 0.01
    assert torch.allclose(y[y != 0], torch.tensor(2.0 / 0.7))
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
