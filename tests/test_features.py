"""FeatureStore validation (every problem of a load in one error) and the segment resampling rules."""

import numpy as np
import pytest

from adplg.data import CropItem, FeatureStore, read_list, resample_segments
from adplg.errors import AdplgError, DataValidationError

D = 8


def _item(path, video, crop=0, label=1, array_index=None):
    return CropItem(path=path, video=video, crop=crop, label=label, history_key=f"{video}__{crop}",
                    array_index=array_index)


def _good_set(tmp_path, dtype=np.float32):
    rng = np.random.default_rng(0)
    items, arrays = [], []
    for v, t in (("v0", 5), ("v1", 70)):
        for c in range(2):
            a = rng.standard_normal((t, D)).astype(dtype)
            p = tmp_path / f"{v}__{c}.npy"
            np.save(p, a)
            items.append(_item(p, v, c))
            arrays.append(a)
    return items, arrays


def test_good_load_and_mmap(tmp_path):
    items, arrays = _good_set(tmp_path)
    store = FeatureStore.load(items, feature_dim=D, crops_per_video=2, progress=False)
    assert len(store) == 4 and store.feature_dim == D
    assert store.lengths.tolist() == [5, 5, 70, 70]
    for i, a in enumerate(arrays):
        assert store[i].dtype == np.float32 and np.array_equal(store[i], a)
    mm = FeatureStore.load(items, feature_dim=D, crops_per_video=2, mmap=True, progress=False)
    assert isinstance(mm[0], np.memmap) or isinstance(mm[0].base, np.memmap)
    for i in range(4):
        assert np.array_equal(mm[i], store[i])
    assert np.array_equal(mm.pooled(16), store.pooled(16))
    pooled = store.pooled(64)
    assert pooled.shape == (4, 64, D) and pooled.dtype == np.float32
    assert store.pooled(64) is pooled  # computed once
    assert np.allclose(pooled[2], resample_segments(arrays[2], 64))
    assert np.array_equal(store.pooled(64, "pad")[0, 5:], np.zeros((59, D), np.float32))


def test_float16_and_shared_3d_file(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 3, D)).astype(np.float16)
    p = tmp_path / "vid.npy"
    np.save(p, a)
    items = [_item(p, "vid", c, array_index=c) for c in range(3)]
    for mmap in (False, True):
        store = FeatureStore.load(items, crops_per_video=3, mmap=mmap, progress=False)
        assert store.feature_dim == D and store.lengths.tolist() == [6, 6, 6]
        for c in range(3):
            assert store[c].dtype == np.float32 and np.array_equal(store[c], a[:, c, :].astype(np.float32))


def test_folder_list_roundtrip(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((4, 2, D), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((9, 2, D), np.float32))
    (tmp_path / "v.csv").write_text("video,label\na,1\nb,0\n")
    store = FeatureStore.load(read_list(tmp_path / "v.csv", "folder"), feature_dim=D, crops_per_video=2,
                              progress=False)
    assert store.lengths.tolist() == [4, 4, 9, 9]


def test_all_problems_in_one_error(tmp_path):
    rng = np.random.default_rng(2)
    ok = tmp_path / "ok.npy"
    np.save(ok, rng.standard_normal((10, D)).astype(np.float32))
    missing = tmp_path / "missing.npy"
    truncated = tmp_path / "truncated.npy"
    np.save(truncated, rng.standard_normal((50, D)).astype(np.float32))
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) - 100])
    wrong_dim = tmp_path / "wrong_dim.npy"
    np.save(wrong_dim, rng.standard_normal((10, D + 3)).astype(np.float32))
    nans = tmp_path / "nans.npy"
    a = rng.standard_normal((10, D)).astype(np.float32)
    a[1, 2] = np.nan
    a[3, :3] = np.inf
    np.save(nans, a)
    ints = tmp_path / "ints.npy"
    np.save(ints, np.arange(10 * D).reshape(10, D))
    one_d = tmp_path / "one_d.npy"
    np.save(one_d, np.zeros(D, np.float32))
    lonely = tmp_path / "lonely.npy"  # a video with one crop where two are expected
    np.save(lonely, np.zeros((4, D), np.float32))

    items = [
        _item(ok, "ok", 0), _item(ok, "ok", 1),  # the same file twice: read once, fine
        _item(missing, "missing", 0), _item(missing, "missing", 1),
        _item(truncated, "truncated", 0), _item(truncated, "truncated", 1),
        _item(wrong_dim, "wrong_dim", 0), _item(wrong_dim, "wrong_dim", 1),
        _item(nans, "nans", 0), _item(nans, "nans", 1),
        _item(ints, "ints", 0), _item(ints, "ints", 1),
        _item(one_d, "one_d", 0), _item(one_d, "one_d", 1),
        _item(lonely, "lonely", 0),
    ]
    for mmap in (False, True):
        with pytest.raises(DataValidationError) as exc:
            FeatureStore.load(items, feature_dim=D, crops_per_video=2, mmap=mmap, progress=False, context="train")
        probs = exc.value.problems
        text = str(exc.value)
        assert text.startswith(f"train: {len(probs)} problem(s)")

        def the(path):
            found = [p for p in probs if p.startswith(str(path))]
            assert len(found) == 1, (path, probs)
            return found[0]

        assert not any(p.startswith(str(ok)) for p in probs)
        assert "not found" in the(missing)
        assert "cannot be read" in the(truncated)
        assert f"wrong feature dimension: expected {D}, got {D + 3}" in the(wrong_dim)
        assert "expected all finite, got 4 NaN/Inf" in the(nans)
        assert "wrong dtype: expected a float dtype" in the(ints) and "int64" in the(ints)
        assert "wrong number of dimensions: expected 2 ([T, D]), got 1" in the(one_d)
        assert "video 'lonely' has the wrong number of crops: expected 2, got 1" in the(lonely)
        assert len(probs) == 7


def test_dimension_majority_and_unequal_crops(tmp_path):
    rng = np.random.default_rng(3)
    paths = []
    for i, (t, d) in enumerate([(5, D), (5, D), (6, D), (5, D + 1)]):
        p = tmp_path / f"f{i}.npy"
        np.save(p, rng.standard_normal((t, d)).astype(np.float32))
        paths.append(p)
    items = [_item(paths[0], "a", 0), _item(paths[1], "a", 1), _item(paths[2], "b", 0), _item(paths[3], "c", 0)]
    with pytest.raises(DataValidationError) as exc:
        FeatureStore.load(items, progress=False)
    assert len(exc.value.problems) == 1
    assert f"f3.npy: feature dimension differs from the other files: expected {D} (the most common), got {D + 1}" \
        in exc.value.problems[0]
    items = [_item(paths[0], "a", 0), _item(paths[2], "a", 1)]
    with pytest.raises(DataValidationError, match="crops of video 'a' differ in length: expected T = 5"):
        FeatureStore.load(items, progress=False)
    assert FeatureStore.load(items, progress=False, equal_crop_lengths=False).lengths.tolist() == [5, 6]
    with pytest.raises(AdplgError, match="no feature files"):
        FeatureStore.load([], progress=False)


def test_bad_array_index(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.zeros((4, 2, D), np.float32))
    with pytest.raises(DataValidationError, match=r"crop index out of range: expected < 2 .*got \[2\]"):
        FeatureStore.load([_item(p, "x", c, array_index=c) for c in range(3)], progress=False)
    with pytest.raises(DataValidationError, match=r"expected 3 \(\[T, C, D\]\), got 2"):
        q = tmp_path / "y.npy"
        np.save(q, np.zeros((4, D), np.float32))
        FeatureStore.load([_item(q, "y", 0, array_index=0)], progress=False)


# -------------------------------------------------------------------------------------------------------- resampling
def _official_mean(feat, s):
    # the METHOD §4.1 rule, written out literally
    r = np.linspace(0, len(feat), s + 1).astype(np.int64)
    out = np.zeros((s, feat.shape[1]), np.float32)
    for i in range(s):
        out[i] = feat[r[i]:r[i + 1]].mean(0) if r[i] != r[i + 1] else feat[r[i]]
    return out


def test_resample_known_values():
    feat = np.arange(3 * 2, dtype=np.float32).reshape(3, 2)  # L = 3 < 4: snippets repeated, no padding
    out = resample_segments(feat, 4)
    # r = [0, 0, 1, 2, 3] -> segments feat[0], feat[0:1], feat[1:2], feat[2:3]
    assert np.array_equal(out, feat[[0, 0, 1, 2]])
    feat = np.arange(10, dtype=np.float32)[:, None]  # L = 10 > 4: r = [0, 2, 5, 7, 10]
    assert resample_segments(feat, 4)[:, 0].tolist() == [0.5, 3.0, 5.5, 8.0]
    feat = np.random.default_rng(0).standard_normal((64, 5)).astype(np.float32)
    assert np.array_equal(resample_segments(feat, 64), feat)  # L == 64: identity
    assert np.array_equal(resample_segments(feat, 64, "pad"), feat)


@pytest.mark.parametrize("length", [1, 2, 17, 63, 65, 100, 129, 1000])
def test_resample_matches_official_rule(length):
    feat = np.random.default_rng(length).standard_normal((length, 6)).astype(np.float32)
    out = resample_segments(feat, 64)
    assert out.shape == (64, 6) and out.dtype == np.float32
    np.testing.assert_allclose(out, _official_mean(feat, 64), rtol=1e-6, atol=1e-6)


def test_resample_pad_mode():
    feat = np.ones((5, 3), np.float32)
    out = resample_segments(feat, 8, "pad")  # L <= S: zero-padded (VadCLIP process_feat)
    assert out.shape == (8, 3)
    assert np.array_equal(out[:5], feat) and not out[5:].any()
    feat = np.arange(10, dtype=np.float32)[:, None]  # L > S: averaged like "mean"
    assert np.array_equal(resample_segments(feat, 4, "pad"), resample_segments(feat, 4, "mean"))
    with pytest.raises(AdplgError, match="unknown resample mode"):
        resample_segments(feat, 4, "nearest")
    with pytest.raises(AdplgError, match=r"expected a \[L, D\] array"):
        resample_segments(np.zeros(4), 4)
