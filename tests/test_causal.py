"""Issue 27: the causal snippet branch (``model.causal``). Live scores equal offline scores: the online scorer at
delay 0 reproduces the whole-video forward for any chunking and a video longer than its buffer; no score depends on
a later snippet; the faithful model is unchanged (tests/test_parity.py and friends); a causal preset trains and its
checkpoint round-trips; ``adplg watch`` takes delay 0 for a causal checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from media import write_video

from adplg.config import build_config
from adplg.conventions import SNIPPET_FRAMES
from adplg.errors import AdplgError
from adplg.live.online import OnlineScorer
from adplg.models.apply import smooth_scores, video_snippet_scores
from adplg.models.build import build_snippet_branch
from adplg.models.snippet_branch import SnippetBranch, is_causal, receptive_field
from adplg.preset_files import preset_names

pytest_plugins = ["watch_models"]  # the clip_run fixture (tiny random CLIP weights)

DIM = 16
TINY = [f"data.feature_dim={DIM}", "model.model_dim=32", "model.local_out_dim=8", "model.windows=[2,3,4,1]",
        "model.local_heads=2", "model.local_dim_head=8", "model.global_heads=2", "model.global_dim_head=8",
        "model.mlp_dim=16", "model.attn_dim=8", "model.hidden_dim=8", "model.max_len=16"]
CAUSAL = ["model.causal=true", "model.causal_window=8"]


def tiny(*overrides: str, seed: int = 0):
    """A tiny branch 2 (an ensemble with ``model.snippet_members=K``) in eval mode, weights jittered off their init."""
    cfg = build_config("demo-cpu-small", overrides=[*TINY, *overrides])
    torch.manual_seed(seed)
    net = build_snippet_branch(cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return cfg, net


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny forwards: one thread is far faster on a shared CPU
    yield
    torch.set_num_threads(threads)


def stream(scorer: OnlineScorer, x: np.ndarray, chunk: int) -> list[tuple[int, float]]:
    """Push ``x [crops, T, D]`` in chunks of ``chunk`` snippets (1: :meth:`push`, else :meth:`push_many`)."""
    out = []
    for start in range(0, x.shape[1], chunk):
        if chunk == 1:
            out += scorer.push(x[:, start])
        else:
            out += scorer.push_many(x[:, start:start + chunk].transpose(1, 0, 2))
    return out + scorer.flush()


def test_receptive_field_formula_and_detection():
    cfg, net = tiny(*CAUSAL)
    assert isinstance(net, SnippetBranch) and is_causal(net)
    # conv 2 + max(windows) + global_depth * (causal_window - 1)
    assert receptive_field(net) == net.receptive_field() == 2 + 4 + cfg.model.global_depth * 7 == 20
    _, ensemble = tiny(*CAUSAL, "model.snippet_members=2")
    assert is_causal(ensemble) and receptive_field(ensemble) == 20
    _, faithful = tiny()
    assert not is_causal(faithful)
    with pytest.raises(AdplgError, match="not causal|causal snippet branch"):
        receptive_field(faithful)
    assert not any("pos_emb" in k for k in net.state_dict())  # no absolute positions in a causal branch
    assert any("pos_emb" in k for k in faithful.state_dict())
    assert not is_causal(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("members", [1, 2])
def test_online_at_delay_0_equals_offline_for_any_chunking(members):
    """T = 3R snippets (longer than the R + 1 buffer), 2 crops, trailing smoothing over 4: every chunking emits each
    snippet once, in order, at delay 0, with the offline score (one forward over the whole video) within 1e-5."""
    _, net = tiny(*CAUSAL, f"model.snippet_members={members}")
    R = receptive_field(net)
    T = 3 * R
    x = np.random.default_rng(members).normal(size=(2, T, DIM)).astype(np.float32)
    assert T > 16  # longer than the config's max_len too: no positional table limits a causal branch
    for smooth in (0, 4):
        offline = video_snippet_scores(net, x, smooth_window=smooth, smooth_mode="trailing")
        for chunk in (1, 7, T):
            scorer = OnlineScorer(net, smooth_window=smooth)
            assert (scorer.delay, scorer.window, scorer.latency_snippets) == (0, R + 1, 0)
            got = stream(scorer, x, chunk)
            assert [i for i, _ in got] == list(range(T))
            np.testing.assert_allclose([s for _, s in got], offline, atol=1e-5, err_msg=f"chunk {chunk}")


def test_each_push_emits_the_new_snippet_and_delay_only_holds_scores_back():
    _, net = tiny(*CAUSAL)
    R = receptive_field(net)
    x = np.random.default_rng(3).normal(size=(1, 2 * R + 5, DIM)).astype(np.float32)
    offline = video_snippet_scores(net, x)
    scorer = OnlineScorer(net)
    for t in range(x.shape[1]):
        (index, score), = scorer.push(x[0, t])
        assert index == t and score == pytest.approx(offline[t], abs=1e-5)
    assert scorer.flush() == []
    late = OnlineScorer(net, delay=3, window=4)  # the window of a causal model is its receptive field + 1
    assert (late.window, late.requested_window, late.delay) == (R + 1, 4, 3)
    assert "window 4 ignored" in (late.causal_note() or "")
    got = stream(late, x, 5)
    np.testing.assert_allclose([s for _, s in got], offline, atol=1e-5)
    assert OnlineScorer(net, window=R + 30).window == R + 1


def test_incremental_stream_of_a_nested_ensemble_equals_its_forward():
    """``adplg score --checkpoint A B`` of ensembles nests them (here 1 + 2 members): the stream averages as the
    forward does, mean of means, not of the flattened members."""
    from adplg.models.ensemble import SnippetEnsemble
    from adplg.models.streaming import CausalStream

    _, one = tiny(*CAUSAL, seed=1)
    _, two = tiny(*CAUSAL, "model.snippet_members=2", seed=2)
    nested = SnippetEnsemble([one, two]).eval()
    x = torch.randn(3, 50, DIM, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        whole = nested(x)
        stream = CausalStream(nested)
        got = torch.cat([stream.step(x[:, a:a + 6]) for a in range(0, 50, 6)], dim=1)
    torch.testing.assert_close(got, whole, atol=1e-5, rtol=0)
    with pytest.raises(AdplgError, match="causal"):
        CausalStream(tiny()[1])


@pytest.mark.parametrize("attention", ["blocked", "dense"])
def test_no_score_depends_on_a_later_snippet(attention):
    _, net = tiny(*CAUSAL, f"model.attention={attention}")
    R = receptive_field(net)
    x = torch.randn(2, 3 * R, DIM, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        base = net(x)
        for k in (0, 5, R, 2 * R + 3):
            changed = x.clone()
            changed[:, k] += 3.0
            diff = (net(changed) - base).abs()
            if k:
                assert diff[:, :k].max().item() < 1e-7, f"a score before snippet {k} changed"
            assert diff[:, k:].max().item() > 1e-4  # and the perturbation does reach the scores from k on
        # the receptive field is exact: R past snippets suffice, R - 1 do not
        i = 2 * R
        assert net(x[:, i - R:i + 1])[:, -1] == pytest.approx(base[:, i], abs=1e-5)
        assert (net(x[:, i - R + 1:i + 1])[:, -1] - base[:, i]).abs().max().item() > 1e-7


def test_blocked_and_dense_agree_in_causal_mode():
    _, net = tiny(*CAUSAL)
    x = torch.randn(3, 45, DIM, generator=torch.Generator().manual_seed(5))  # a multiple of no window but 1 and 3
    with torch.no_grad():
        net.attention = "blocked"
        blocked = net(x)
        net.attention = "dense"
        dense = net(x)
    torch.testing.assert_close(blocked, dense, atol=1e-5, rtol=0)


def test_trailing_smoothing_is_the_mean_of_the_last_window_scores():
    scores = np.random.default_rng(6).random(11)
    expected = [scores[max(0, i - 3):i + 1].mean() for i in range(11)]
    np.testing.assert_allclose(smooth_scores(scores, 4, "trailing"), expected, atol=1e-12)
    np.testing.assert_allclose(smooth_scores(scores, 3, "centred")[1:-1], np.convolve(scores, np.ones(3) / 3, "valid"))
    assert smooth_scores(scores, 1, "trailing") is scores
    with pytest.raises(AdplgError, match="smooth_mode"):
        smooth_scores(scores, 3, "forward")


def test_causal_branch_scripts_and_takes_any_length():
    from adplg.deploy.export import script_snippet_branch

    _, net = tiny(*CAUSAL)
    scripted = script_snippet_branch(net)
    x = torch.randn(2, 41, DIM, generator=torch.Generator().manual_seed(7))  # beyond the config's max_len 16
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=0)


def test_causal_presets_differ_from_their_twins_only_by_causality():
    assert {"r1-improved-causal", "r1-improved-causal-paper"} <= set(preset_names())
    for twin in ("r1-improved", "r1-improved-paper"):
        base = build_config(twin).to_dict()
        causal = build_config(f"{twin.replace('r1-improved', 'r1-improved-causal')}").to_dict()
        differ = {(s, k) for s in base if isinstance(base[s], dict) for k in base[s] if base[s][k] != causal[s][k]}
        assert differ == {("model", "causal"), ("eval", "smooth_mode")}
        assert causal["model"]["causal"] is True and causal["eval"]["smooth_mode"] == "trailing"


def test_causal_preset_trains_and_its_checkpoint_round_trips(tmp_path):
    from adplg.checkpoints.load import load_scorer
    from adplg.data.datasets import build_test_set, build_train_set
    from adplg.data.synthetic import generate_synthetic_ucf
    from adplg.training.engine import Trainer, create_run_dir

    data = generate_synthetic_ucf(tmp_path / "syn", num_train_normal=6, num_train_abnormal=6, num_test_normal=2,
                                  num_test_abnormal=2, feature_dim=DIM, crops=1, max_snippets=80, seed=2)
    cfg = build_config("r1-improved-causal", overrides=[
        f"data.list_dir={data.root}", f"data.feature_dim={DIM}", "data.layout.kind=uniform", "train.progress=false",
        "train.batch_size=4", "train.warm_up=2", "train.num_iters=4", "train.eval_every=4", "train.average_from=2",
        "model.causal_window=16", "model.model_dim=32", "model.local_out_dim=8", "model.mlp_dim=16"])
    run = create_run_dir(cfg, tmp_path / "run")
    trainer = Trainer(cfg, build_train_set(cfg, progress=False), build_test_set(cfg, progress=False), run)
    trainer.fit()
    loaded_cfg, loaded = load_scorer([run / "checkpoints" / "last.safetensors"])
    assert loaded_cfg.model.causal and loaded_cfg.model.causal_window == 16
    assert loaded_cfg.eval.smooth_mode == "trailing"
    assert is_causal(loaded) and len(loaded.members) == 3
    assert receptive_field(loaded) == 2 + 8 + 2 * 15
    x = np.random.default_rng(8).normal(size=(1, 100, DIM)).astype(np.float32)  # longer than any training video
    np.testing.assert_allclose(video_snippet_scores(loaded, x), video_snippet_scores(trainer.scoring_net.cpu(), x),
                               atol=1e-6)


def test_watch_takes_delay_0_for_a_causal_checkpoint_and_matches_score(clip_run, tmp_path):
    from watch_models import random_checkpoint  # (registered as a plugin above: imported once it is)

    from adplg.cli.main import main
    from adplg.live.watch import watch

    _, weights = clip_run
    checkpoint = random_checkpoint(tmp_path / "causal", "model.causal=true", "model.causal_window=2",
                                   "eval.smooth_window=3", "eval.smooth_mode=trailing")
    snippets = 30  # receptive field 2 + 8 + 2 * 1 = 12: the buffer holds 13 snippets, the video 30
    video = write_video(tmp_path / "cam.mp4", snippets * SNIPPET_FRAMES, width=64, height=48, fps=25, seed=5)
    assert main(["score", str(video), "--checkpoint", str(checkpoint), "--weights", str(weights), "--out",
                 str(tmp_path / "offline"), "--no-plot", "--quiet"]) == 0
    offline = np.asarray(json.loads((tmp_path / "offline" / "cam.json").read_text())["score"])[::SNIPPET_FRAMES]
    lines: list[str] = []
    report = watch(video, checkpoint, weights=weights, device="cpu", announce=lines.append)
    assert report.delay == 0 and report.latency_s == 0.0
    assert any(line.startswith("causal model: live scores equal offline scores, delay 0") for line in lines), lines
    assert len(report.snippet_scores) == snippets
    np.testing.assert_allclose(report.snippet_scores, offline, atol=1e-5)
