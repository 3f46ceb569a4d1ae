"""train.precision: the probe's choice (probe forced), its cache, the run-directory record,
the deprecated train.bf16 alias, attention auto by length, and the compiled path."""

import json

import pytest
import torch

from omnipatch.config import Config
from omnipatch.errors import OmnipatchError
from omnipatch.train import precision as P


def _figures(fp32_ms, bf16_ms, cross_bf16=1024, cross_fp32=128):
    return {"fp32_ms": fp32_ms, "bf16_ms": bf16_ms, "bf16_speedup": fp32_ms / bf16_ms,
            "attention": {"bf16": {"crossover": cross_bf16}, "fp32": {"crossover": cross_fp32}}}


@pytest.fixture
def forced(monkeypatch, tmp_path):
    """Replace the timed probe by given figures; count its calls; a private cache folder."""
    from omnipatch.layers import attention

    monkeypatch.setenv("OMNIPATCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(attention, "_CPU_CROSSOVER", dict(attention._CPU_CROSSOVER))
    calls = []

    def force(figures):
        monkeypatch.setattr(P, "probe_cpu", lambda: calls.append(1) or dict(figures))
        return calls

    return force


@pytest.mark.parametrize("fp32_ms, bf16_ms, want", [(100.0, 50.0, "bf16"), (100.0, 140.0, "fp32"),
                                                     (100.0, 97.0, "fp32")])  # a tie keeps fp32
def test_auto_follows_the_probe_and_logs_it(forced, tmp_path, fp32_ms, bf16_ms, want):
    forced(_figures(fp32_ms, bf16_ms))
    p = P.resolve("auto", "cpu", tmp_path / "run")
    assert p.name == want and p.dtype == P.DTYPES[want]
    rec = json.loads((tmp_path / "run" / "precision.json").read_text())
    assert rec["name"] == want and rec["requested"] == "auto" and rec["probe"]["fp32_ms"] == fp32_ms
    assert torch.__version__ in rec["machine"] and P.cpu_model() in rec["machine"]


def test_probe_is_cached_per_machine(forced, tmp_path, monkeypatch):
    calls = forced(_figures(100.0, 50.0))
    assert P.resolve("auto", "cpu").probe["cached"] is False
    assert P.resolve("auto", "cpu").probe["cached"] is True and len(calls) == 1
    assert (tmp_path / "cache" / "machine_profile.json").is_file()
    monkeypatch.setattr(P, "cpu_model", lambda: "another CPU")  # a new key: measured again
    P.resolve("auto", "cpu")
    assert len(calls) == 2


def test_explicit_precision_runs_no_probe(forced):
    calls = forced(_figures(100.0, 50.0))
    assert P.resolve("fp32", "cpu").name == "fp32" and P.resolve("bf16", "cpu").name == "bf16"
    assert calls == []


def test_probe_sets_attention_crossover(forced):
    from omnipatch.layers.attention import cpu_crossover

    forced(_figures(100.0, 50.0, cross_bf16=512, cross_fp32=64))
    P.resolve("auto", "cpu")
    assert cpu_crossover(torch.bfloat16) == 512 and cpu_crossover(torch.float32) == 64


@pytest.mark.parametrize("bf16_ok, want", [(True, "bf16"), (False, "fp16")])
def test_cuda_uses_bf16_where_supported(forced, monkeypatch, bf16_ok, want):
    calls = forced(_figures(100.0, 50.0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    assert P.resolve("auto", "cuda").name == want and calls == []


def test_resume_keeps_the_first_choice(forced, tmp_path):
    run = tmp_path / "run"
    forced(_figures(100.0, 50.0))
    assert P.resolve("auto", "cpu", run).name == "bf16"
    forced(_figures(50.0, 100.0))
    P.machine_profile(refresh=True)  # this machine now measures otherwise
    assert P.resolve("auto", "cpu", run, resume=True).name == "bf16"
    assert P.resolve("auto", "cpu", run).name == "fp32"


def test_bad_precision_names_the_key():
    with pytest.raises(OmnipatchError, match=r"'train.precision' must be one of auto, bf16, fp16, fp32, got 'fp8'"):
        Config.from_dict({"train": {"precision": "fp8"}})
    with pytest.raises(OmnipatchError, match="train.precision"):
        P.resolve("half", "cpu")


def test_old_bf16_key_still_loads():
    """A run config saved before train.precision (checkpoint/config.json) keeps loading."""
    old = Config().to_dict()
    old["train"].pop("precision"), old["train"].pop("compile")
    for flag, want in ((True, "bf16"), (False, "fp32"), ("false", "fp32")):
        old["train"]["bf16"] = flag
        c = Config.from_dict(old)
        assert c.train.precision == want and c.train.bf16 == (want != "fp32")
    assert "bf16" not in Config().to_dict()["train"]
    c = Config()
    c.train.bf16 = False  # old scripts set the attribute
    assert c.train.precision == "fp32"


def test_fp16_on_cpu_trains_with_loss_scaling(png_folder, tmp_path):
    from omnipatch.train.pretrain import pretrain

    c = Config()
    c.data.source = str(png_folder / "manifest.csv")
    c.data.options = {"image_size": 16, "patch_size": 4, "channels": 1}
    c.model.preset = "micro"
    c.model.decoder_dim, c.model.decoder_depth = 32, 1
    c.train.steps, c.train.batch_size, c.train.log_every, c.train.precision = 3, 8, 1, "fp16"
    pretrain(c, tmp_path / "run", quiet=True)
    rec = json.loads((tmp_path / "run" / "precision.json").read_text())
    assert rec["name"] == "fp16" and rec["reason"] == "requested"
    losses = [json.loads(x)["loss"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and all(map(lambda v: v == v, losses))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n", [7, 300])
def test_attention_auto_matches_both_paths_with_padding(dtype, n, monkeypatch):
    """explicit, SDPA and auto (on either side of the crossover) agree, key-padding mask on."""
    from omnipatch.layers import attention as A

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 16).to(dtype).requires_grad_() for _ in range(3))
    allowed = torch.ones(2, n, dtype=torch.bool)
    allowed[1, n // 2:] = False
    mask = allowed[:, None, None, :]
    outs, grads = {}, {}
    for impl in ("explicit", "sdpa"):
        y = A.attention(q, k, v, mask, impl)
        y.float().square().sum().backward()
        outs[impl], grads[impl] = y.detach().float(), [t.grad.float() for t in (q, k, v)]
        for t in (q, k, v):
            t.grad = None
    tol = dict(rtol=5e-2, atol=5e-2) if dtype == torch.bfloat16 else dict(rtol=1e-5, atol=1e-5)  # bf16: 8-bit mantissa
    torch.testing.assert_close(outs["explicit"], outs["sdpa"], **tol)
    for a, b in zip(grads["explicit"], grads["sdpa"]):
        torch.testing.assert_close(a, b, **tol)
    monkeypatch.setattr(A, "_CPU_CROSSOVER", {dtype: 100, torch.float32: 100})
    assert A.choose_impl(q) == ("explicit" if n < 100 else "sdpa")
    torch.testing.assert_close(A.attention(q, k, v, mask).detach().float(), outs[A.choose_impl(q)])


def test_attention_auto_avoids_quadratic_memory(monkeypatch):
    from omnipatch.layers import attention as A

    monkeypatch.setattr(A, "_CPU_CROSSOVER", {torch.float32: 10**6})
    assert A.choose_impl(torch.empty(1, 1, 512, 8)) == "explicit"
    assert A.choose_impl(torch.empty(64, 8, 1024, 8)) == "sdpa"  # 3 GiB of scores: never explicit


@pytest.mark.slow
def test_compile_flag_trains_the_same(png_folder, tmp_path):
    """train.compile=true: the blocks run through torch.compile, losses match eager."""
    from omnipatch.train.pretrain import pretrain

    losses = {}
    for flag in (False, True):
        c = Config()
        c.data.source = str(png_folder / "manifest.csv")
        c.data.options = {"image_size": 16, "patch_size": 4, "channels": 1}
        c.model.preset = "micro"
        c.model.decoder_dim, c.model.decoder_depth = 32, 1
        c.train.steps, c.train.batch_size, c.train.log_every = 3, 8, 1
        c.train.precision, c.train.compile, c.train.monitor_every = "fp32", flag, 0
        pretrain(c, tmp_path / f"run{flag}", quiet=True)
        losses[flag] = [json.loads(x)["loss"] for x in (tmp_path / f"run{flag}" / "metrics.jsonl").read_text().splitlines()]
    assert losses[True] == pytest.approx(losses[False], rel=1e-3, abs=1e-4)
