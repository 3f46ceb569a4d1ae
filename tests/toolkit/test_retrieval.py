import pytest
import torch

from omnipatch.errors import OmnipatchError
from omnipatch.eval.retrieval import Index, build_index, evaluate, ranking_metrics, relevance


def test_perfect_ranking():
    sim = torch.eye(5) + 0.01 * torch.rand(5, 5)
    m = ranking_metrics(sim, torch.eye(5, dtype=torch.bool))
    assert m["recall@1"] == 1.0 and m["mAP"] == 1.0 and m["median_rank"] == 1.0


def test_reversed_ranking_is_worst():
    N = 6
    rel = torch.eye(N, dtype=torch.bool)
    sim = -torch.eye(N)  # the relevant item is always ranked last
    m = ranking_metrics(sim, rel, ks=(1, 5))
    assert m["recall@1"] == 0.0 and m["recall@5"] == 0.0
    assert m["median_rank"] == N and m["mAP"] == pytest.approx(1 / N)


def test_random_ranking_near_chance():
    torch.manual_seed(0)
    N = 400
    m = ranking_metrics(torch.randn(N, N), torch.eye(N, dtype=torch.bool), ks=(1, 10))
    assert abs(m["recall@1"] - 1 / N) < 0.01 and abs(m["recall@10"] - 10 / N) < 0.03
    assert abs(m["median_rank"] - N / 2) < N * 0.15


def test_map_hand_computed():
    # relevant at ranks 1 and 3: AP = (1/1 + 2/3) / 2
    sim = torch.tensor([[0.9, 0.8, 0.7, 0.1]])
    rel = torch.tensor([[True, False, True, False]])
    assert ranking_metrics(sim, rel)["mAP"] == pytest.approx((1 + 2 / 3) / 2)


def test_class_level_relevance_and_both_directions():
    la, lb = [0, 0, 1, 1], [1, 0, 1]
    rel = relevance(la, lb)
    assert rel.tolist() == [[False, True, False], [False, True, False], [True, False, True], [True, False, True]]
    a = torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [0.1, 1]])
    b = torch.tensor([[0.0, 1], [1, 0], [0.1, 1]])
    out = evaluate(a, la, b, lb)
    assert out["a->b"]["recall@1"] == 1.0 and out["b->a"]["recall@1"] == 1.0


def test_index_save_load_search(tmp_path):
    torch.manual_seed(0)
    v = torch.randn(3000, 32)
    idx = build_index(v, [f"i{j}" for j in range(3000)], {"modality": "image"})
    idx.save(tmp_path / "ix")
    back = Index.load(tmp_path / "ix")
    assert torch.equal(back.vectors, idx.vectors) and back.ids == idx.ids and back.meta["modality"] == "image"
    s, i = back.search(v[:50] * 3.0, k=5, chunk=16)  # scale-invariant; chunked
    assert i.shape == (50, 5) and torch.equal(i[:, 0], torch.arange(50))
    assert torch.all(s[:, :-1] >= s[:, 1:])
    with pytest.raises(OmnipatchError, match="query width"):
        back.search(torch.randn(2, 8))
    with pytest.raises(OmnipatchError, match="not a retrieval index"):
        Index.load(tmp_path)


@pytest.mark.parametrize("args, message", [
    (["--k", "0", "--out", "r.csv"], "--k must be at least 1"),
    (["--out", "r.txt"], "written as .csv or .json"),
    (["--out", "r.csv", "--plot", "p.png", "--plot-queries", "0"], "--plot-queries must be at least 1"),
    (["--out", "r.csv"], "not a retrieval index"),
])
def test_query_cli_errors(tmp_path, capsys, args, message):
    from omnipatch.cli import main

    code = main(["retrieve", "query", "--index", str(tmp_path / "none"), "--modality", "image",
                 "--data", str(tmp_path), *args])
    assert code == 2 and message in capsys.readouterr().err
