"""Online scoring (adplg watch): the streaming scorer against offline scoring, streaming alerts against
alert_segments."""

import numpy as np
import pytest
import torch

from adplg.alert_rules import AlertRules, alert_segments
from adplg.config import build_config
from adplg.errors import AdplgError
from adplg.inference.online_alerts import OnlineAlerts
from adplg.live.online import OnlineScorer, default_delay
from adplg.models.apply import forward_in_chunks
from adplg.models.build import build_snippet_branch

FPS = 30.0
RULES = [
    AlertRules(on_threshold=0.5),
    AlertRules(on_threshold=0.6, off_threshold=0.4),
    AlertRules(on_threshold=0.5, off_threshold=0.3, min_duration_s=0.2),
    AlertRules(on_threshold=0.5, off_threshold=0.5, merge_gap_s=0.1),
    AlertRules(on_threshold=0.7, off_threshold=0.35, min_duration_s=0.3, merge_gap_s=0.2),
    # products land exactly on frame counts
    AlertRules(on_threshold=0.5, off_threshold=0.45, min_duration_s=4 / FPS, merge_gap_s=3 / FPS),
]


def random_scores(rng: np.random.Generator, n: int) -> np.ndarray:
    """Plateaus (some exactly at 0.3 / 0.4 / 0.5 ...), short and long runs, short and long gaps, noise."""
    levels = np.array([0.0, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 1.0])
    parts = []
    while sum(len(p) for p in parts) < n:
        length = int(rng.choice([1, 2, 3, 5, 8, 20]))
        if rng.random() < 0.7:
            parts.append(np.full(length, rng.choice(levels)))
        else:
            parts.append(rng.random(length))
    return np.concatenate(parts)[:n]


def replay(scores: np.ndarray, rules: AlertRules, chunk: int):
    online = OnlineAlerts(rules, FPS)
    events = []
    for start in range(0, len(scores), chunk):
        events += online.push(scores[start:start + chunk])
    events += online.close()
    return online, events


def check_events(events, segments):
    open_alert = None
    ended = []
    for e in events:
        assert e.kind in ("started", "updated", "ended")
        if e.kind == "started":
            assert open_alert is None
            open_alert = e.start_frame
        else:
            assert open_alert == e.start_frame
            if e.kind == "ended":
                ended.append(e)
                open_alert = None
        assert e.end_s >= e.start_s
        assert set(e.to_dict()) >= {"kind", "start_s", "end_s", "peak_score", "mean_score"}
    assert open_alert is None
    assert [(e.start_frame, e.end_frame, e.peak_score) for e in ended] == [
        (g.start_frame, g.end_frame, g.peak_score) for g in segments]


def same_segments(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert (g.start_frame, g.end_frame, g.start_s, g.end_s, g.peak_score) == (
            e.start_frame, e.end_frame, e.start_s, e.end_s, e.peak_score)
        assert g.mean_score == pytest.approx(e.mean_score, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("rules", RULES, ids=range(len(RULES)))
def test_online_alerts_replay_matches_alert_segments(rules):
    rng = np.random.default_rng(0)
    for trial in range(40):
        scores = random_scores(rng, int(rng.integers(1, 400)))
        expected = alert_segments(scores, FPS, rules)
        for chunk in (1, 7, 1000):
            online, events = replay(scores, rules, chunk)
            same_segments(online.segments(), expected)
            check_events(events, expected)


def test_online_alerts_edge_cases():
    rules = AlertRules(on_threshold=0.5, off_threshold=0.4, min_duration_s=3 / FPS, merge_gap_s=2 / FPS)
    for scores in ([], [0.5], [0.5] * 3, [0.45] * 5, [0.5, 0.45, 0.39, 0.5, 0.5], [0.5, 0.3, 0.3, 0.5, 0.3, 0.3, 0.3],
                   [0.45, 0.5, 0.45, 0.45, 0.3, 0.3, 0.3, 0.6]):
        scores = np.asarray(scores, dtype=np.float64)
        for chunk in (1, 2, 7):
            online, events = replay(scores, rules, chunk)
            same_segments(online.segments(), alert_segments(scores, FPS, rules))
            check_events(events, online.segments())


def test_online_alerts_timing_of_events():
    rules = AlertRules(on_threshold=0.5, min_duration_s=5 / FPS, merge_gap_s=3 / FPS)
    online = OnlineAlerts(rules, FPS)
    assert online.push(np.ones(4)) == []  # 4 frames < 5: not yet certain
    started = online.push(np.ones(1))
    assert [e.kind for e in started] == ["started"] and started[0].end_frame == 5
    assert [e.kind for e in online.push(np.ones(2))] == ["updated"]
    assert online.push(np.zeros(3)) == []  # a run starting at frame 10 would still merge (gap 3 <= 3)
    ended = online.push(np.zeros(1))
    assert [e.kind for e in ended] == ["ended"] and (ended[0].start_frame, ended[0].end_frame) == (0, 7)
    assert online.close() == []
    with pytest.raises(Exception):
        online.push(np.ones(1))


def test_online_alerts_on_presentation_times():
    """With frame times the minimum duration and the merge gap are measured on them (a variable frame rate, a gap in
    the stream), and so are the events' times; ``cut()`` ends the open alert and nothing merges across it."""
    rules = AlertRules(on_threshold=0.5, min_duration_s=0.95, merge_gap_s=1.0)
    by_index = OnlineAlerts(rules, FPS)
    assert by_index.push(np.ones(10)) == [] and by_index.close() == []  # 10 frames / 30 fps = 0.33 s < 0.95 s
    timed = OnlineAlerts(rules, FPS)
    events = timed.push(np.ones(10), times_s=np.arange(10) * 0.1, end_s=1.0)  # the same 10 frames last 1 s
    assert [e.kind for e in events] == ["started"] and events[0].end_s == pytest.approx(1.0)
    # 2 frames below the threshold spanning 3 s (an outage-sized gap): longer than the merge gap
    assert [e.kind for e in timed.push(np.zeros(2), times_s=[1.0, 2.5], end_s=4.0)] == ["ended"]
    events = timed.push(np.ones(10), times_s=4.0 + np.arange(10) * 0.1, end_s=5.0)
    assert [(e.kind, e.start_s, e.start_frame) for e in events] == [("started", 4.0, 12)]
    assert [e.kind for e in timed.cut()] == ["ended"]
    events = timed.push(np.ones(10), times_s=5.2 + np.arange(10) * 0.1, end_s=6.2)  # within 1 s, but after a cut
    assert [(e.kind, e.start_s) for e in events] == [("started", pytest.approx(5.2))]
    assert [(g.start_s, g.end_s) for g in timed.segments()] == [(0.0, 1.0), (4.0, 5.0)]
    with pytest.raises(AdplgError, match="as in the first push"):
        timed.push(np.ones(1))
    with pytest.raises(AdplgError, match="both times_s and end_s"):
        timed.push(np.ones(1), times_s=[7.0])


@pytest.fixture(scope="module")
def small_model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny forwards: one thread is far faster on a shared CPU
    torch.manual_seed(0)
    cfg = build_config("demo-cpu-small", overrides=["data.feature_dim=64", "model.max_len=512"])
    yield cfg, build_snippet_branch(cfg).eval()
    torch.set_num_threads(threads)


def offline(model, x: np.ndarray) -> np.ndarray:
    """Offline crop-averaged scores of one video ``x [crops, T, D]``."""
    with torch.no_grad():
        return forward_in_chunks(model, torch.from_numpy(x), 65536).mean(dim=0).numpy()


def stream(scorer, x: np.ndarray, flush: bool = True):
    emitted, per_push = [], []
    for t in range(x.shape[1]):
        out = scorer.push(x[:, t] if x.shape[0] > 1 else x[0, t])
        per_push.append(out)
        emitted += out
    if flush:
        emitted += scorer.flush()
    return emitted, per_push


@pytest.mark.parametrize("delay", [None, 1000])
def test_online_scorer_equals_offline_with_whole_video(small_model, delay):
    _, model = small_model
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 37, 64)).astype(np.float32)
    scorer = OnlineScorer(model, window=64, delay=delay)
    emitted, _ = stream(scorer, x)
    assert [i for i, _ in emitted] == list(range(37))
    assert scorer.delay == (default_delay(model) if delay is None else 63)
    if delay is not None:  # every snippet scored with the whole video in the buffer
        np.testing.assert_allclose([s for _, s in emitted], offline(model, x), atol=1e-5)
    assert scorer.snippets_seen == 37


def test_online_scorer_window_equal_to_length(small_model):
    _, model = small_model
    x = np.random.default_rng(2).normal(size=(1, 20, 64)).astype(np.float32)
    scorer = OnlineScorer(model, window=20, delay=20)
    assert scorer.delay == 19  # capped at window - 1
    emitted, _ = stream(scorer, x)
    np.testing.assert_allclose([s for _, s in emitted], offline(model, x), atol=1e-5)


def test_online_scorer_small_window_emits_each_snippet_once_in_order(small_model):
    cfg, model = small_model
    x = np.random.default_rng(3).normal(size=(1, 60, 64)).astype(np.float32)
    scorer = OnlineScorer(model, window=16)
    assert scorer.delay == default_delay(model) == max(cfg.model.windows) + 1 == scorer.latency_snippets
    emitted, per_push = stream(scorer, x, flush=False)
    for t, out in enumerate(per_push):  # push t emits exactly snippet t - delay
        assert [i for i, _ in out] == ([t - scorer.delay] if t >= scorer.delay else [])
    rest = scorer.flush()
    assert [i for i, _ in emitted + rest] == list(range(60))
    assert scorer.flush() == []
    scores = np.array([s for _, s in emitted + rest])
    assert np.all((scores >= 0) & (scores <= 1))
    assert not np.allclose(scores, offline(model, x), atol=1e-5)  # a 16-snippet buffer is not the whole video


def test_online_scorer_averages_crops(small_model):
    _, model = small_model
    x = np.random.default_rng(4).normal(size=(3, 12, 64)).astype(np.float32)
    emitted, _ = stream(OnlineScorer(model, window=32, delay=100), x)
    np.testing.assert_allclose([s for _, s in emitted], offline(model, x), atol=1e-5)
    single = [stream(OnlineScorer(model, window=32, delay=100), x[c:c + 1])[0] for c in range(3)]
    np.testing.assert_allclose([s for _, s in emitted], np.mean([[s for _, s in e] for e in single], axis=0),
                               atol=1e-6)
    scorer = OnlineScorer(model, window=32)
    scorer.push(x[:, 0])
    with pytest.raises(Exception, match="crops"):
        scorer.push(x[0, 1])


def test_online_scorer_causal_smoothing(small_model):
    _, model = small_model
    x = np.random.default_rng(5).normal(size=(1, 15, 64)).astype(np.float32)
    raw = np.array([s for _, s in stream(OnlineScorer(model, window=32, delay=3), x)[0]])
    smooth = np.array([s for _, s in stream(OnlineScorer(model, window=32, delay=3, smooth_window=4), x)[0]])
    expected = [raw[max(0, i - 3):i + 1].mean() for i in range(len(raw))]
    np.testing.assert_allclose(smooth, expected, atol=1e-9)


def test_online_scorer_refuses_bad_settings(small_model):
    _, model = small_model
    with pytest.raises(Exception, match="max_len"):
        OnlineScorer(model, window=513)
    with pytest.raises(Exception, match="window"):
        OnlineScorer(model, window=0)
    with pytest.raises(Exception, match="delay"):
        OnlineScorer(model, window=8, delay=-1)


def test_default_delay_of_paper_config():
    cfg = build_config("ucf-i3d", overrides=["model.max_len=64"])
    assert tuple(cfg.model.windows) == (2, 4, 6, 8)
    torch.manual_seed(0)
    assert default_delay(build_snippet_branch(cfg)) == max(cfg.model.windows) + 1
    small = build_config("demo-cpu-small", overrides=["data.feature_dim=64", "model.windows=[3,5]",
                                                      "model.local_out_dim=64", "model.max_len=64"])
    assert default_delay(build_snippet_branch(small)) == 6
