import pytest
import torch

from omnipatch.adapters import TabularAdapter
from omnipatch.batch import Batch
from omnipatch.errors import OmnipatchError
from omnipatch.modalities.tabular import category_code
from tests.adapters.contract import DIM, AdapterContract

COLUMNS = ["age", "colour", "height", "size"]
KINDS = ["numeric", "categorical", "numeric", "categorical"]
VOCAB = [[], ["red", "green", "blue"], [], ["S", "M"]]


def _adapter() -> TabularAdapter:
    return TabularAdapter(dim=DIM, columns=COLUMNS, kinds=KINDS, mean=[40.0, 0, 170.0, 0],
                          std=[10.0, 1, 8.0, 1], vocab=VOCAB)


def _rows(B: int, seed: int = 0, missing: float = 0.2) -> Batch:
    g = torch.Generator().manual_seed(seed)
    colours = ["red", "green", "blue", "violet"]  # violet is unseen
    x = torch.zeros(B, 4, dtype=torch.float64)
    x[:, 0] = 40 + 10 * torch.randn(B, generator=g, dtype=torch.float64)
    x[:, 2] = 170 + 8 * torch.randn(B, generator=g, dtype=torch.float64)
    x[:, 1] = torch.tensor([float(category_code(colours[int(i)])) for i in torch.randint(0, 4, (B,), generator=g)],
                           dtype=torch.float64)
    x[:, 3] = torch.tensor([float(category_code(s)) for s in ["S", "M"] * B][:B], dtype=torch.float64)
    m = torch.rand(B, 4, generator=g) < missing
    m[:, 0] = False  # never an all-missing row
    return Batch(x=x, ids=[str(i) for i in range(B)], x_mask=m)


class TestTabularAdapter(AdapterContract):
    def make_adapter(self):
        return _adapter()

    def make_batch(self, B):
        return _rows(B, seed=B)

    def odd_batch(self):  # a single column, numeric only, no missing cells
        a = TabularAdapter(dim=DIM, columns=["v"], kinds=["numeric"])
        b = Batch(x=torch.randn(3, 1, dtype=torch.float64))
        assert a.tokenize(b).tokens.shape == (3, 1, DIM)
        return _rows(5, seed=5, missing=0.6)

    def test_reconstruction_loss_zero_for_perfect_prediction(self):
        # cross-entropy has no zero at pred == one-hot target; a perfect prediction is a
        # confident logit on the right category (and the exact value for numeric cells)
        a = _adapter()
        t = a.tokenize(_rows(6))
        logits = torch.where(a.is_cat.view(1, -1, 1), t.targets * 40.0, t.targets)
        loss = a.reconstruction_loss(logits, t.targets, torch.ones(6, 4))
        assert float(loss) < 1e-6


def test_values_tokens_and_padding():
    a = _adapter()
    b = _rows(8)
    t = a.tokenize(b)
    assert t.tokens.shape == (8, 4, DIM)
    assert torch.equal(t.padding_mask, b.x_mask)  # missing cells are padding, not imputed
    assert torch.equal(t.groups, torch.arange(4))
    xn = a.normalize(b.x)
    torch.testing.assert_close(xn[:, 0], ((b.x[:, 0] - 40) / 10).float())
    # categories map to their vocabulary index; unseen ones to 0
    idx = {category_code(c): i + 1 for i, c in enumerate(VOCAB[1])}
    expect = torch.tensor([float(idx.get(int(v), 0)) for v in b.x[:, 1].tolist()])
    torch.testing.assert_close(xn[:, 1], expect)
    assert a.target_dim == 4 and t.targets.shape == (8, 4, 4)
    assert torch.equal(t.targets[:, 1].argmax(-1), xn[:, 1].long())


def test_nan_cells_are_missing_without_mask():
    a = _adapter()
    x = _rows(3).x.clone()
    x[0, 2] = float("nan")
    t = a.tokenize(Batch(x=x))
    assert t.padding_mask[0].tolist() == [False, False, True, False]
    assert torch.isfinite(t.tokens).all() and torch.isfinite(t.targets).all()


def test_unseen_category_shares_index_zero_and_loss_parts():
    a = _adapter()
    codes = torch.tensor([[float(category_code("violet")), float(category_code("M"))]], dtype=torch.float64)
    assert a.category_index(codes).tolist() == [[0, 2]]
    t = a.tokenize(_rows(4))
    pred = torch.zeros_like(t.targets)
    mask = torch.zeros(4, 4)
    mask[:, 0] = 1  # numeric only: plain MSE of z
    torch.testing.assert_close(a.reconstruction_loss(pred, t.targets, mask), t.targets[:, 0, 0].pow(2).mean())
    mask = torch.zeros(4, 4)
    mask[:, 3] = 1  # categorical with a 2-category vocabulary (+ unseen): uniform logits -> log 3
    torch.testing.assert_close(a.reconstruction_loss(pred, t.targets, mask), torch.tensor(3.0).log())


def test_config_roundtrip_and_wrong_shape():
    a = _adapter()
    b = TabularAdapter(**a.config())
    assert b.config() == a.config()
    batch = _rows(4)
    torch.manual_seed(0)
    a2 = TabularAdapter(**a.config())
    b2 = TabularAdapter(**a.config())
    b2.load_state_dict(a2.state_dict())
    torch.testing.assert_close(a2.tokenize(batch).tokens, b2.tokenize(batch).tokens)
    with pytest.raises(OmnipatchError, match=r"expected rows \(B, 4\)"):
        a.tokenize(Batch(x=torch.zeros(2, 3)))
    with pytest.raises(OmnipatchError, match="unknown column kind"):
        TabularAdapter(dim=DIM, columns=["a"], kinds=["text"])


def test_reconstruct_strips():
    a = _adapter()
    t = a.tokenize(_rows(3, missing=0.0))
    mask = torch.zeros(3, 4)
    mask[:, 1] = 1
    pics = a.reconstruct(t.targets, t, mask)
    assert pics["original"].shape == (3, 1, 1, 4)
    torch.testing.assert_close(pics["reconstruction"], pics["original"])
    assert (pics["masked"][..., 1] == 0).all()


def test_all_missing_row_stays_finite_through_the_model():
    from omnipatch.encoder import EncoderConfig
    from omnipatch.heads import DecoderConfig
    from omnipatch.masking import MaskSpec
    from omnipatch.model import OmniModel

    torch.manual_seed(0)
    a = _adapter()
    b = _rows(4)
    b.x_mask[2] = True  # a row with every cell missing: all padding, never scored
    model = OmniModel({"tabular": a}, EncoderConfig(DIM, 1, 2), DecoderConfig(16, 1, 2),
                      {"mae": {"weight": 1.0}}, {"tabular": MaskSpec("random", 0.5)})
    out = model([b], "tabular", torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"])
    emb = model.embed(b, "tabular")
    assert torch.isfinite(emb).all() and emb.shape == (4, DIM)


def test_periodic_numeric_embedding_option():
    a = TabularAdapter(dim=DIM, columns=COLUMNS, kinds=KINDS, vocab=VOCAB, numeric_embedding="periodic", frequencies=4)
    t = a.tokenize(_rows(3))
    assert t.tokens.shape == (3, 4, DIM) and torch.isfinite(t.tokens).all()
    assert a.num_freq.shape == (2, 4) and TabularAdapter(**a.config()).config() == a.config()
    with pytest.raises(OmnipatchError, match="numeric_embedding must be"):
        TabularAdapter(dim=DIM, columns=["a"], kinds=["numeric"], numeric_embedding="fourier")
