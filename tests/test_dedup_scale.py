"""The dedup index at scale: exact hash search, the vocabulary tree, many evaluation sets in one
index with per-set report tables, memory-mapped loading, the old format refused with the command
to rebuild, and the per-image cost of the index."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest
from PIL import Image

from core.config import parse_config
from dedup import features, hashindex, quality, store, transforms, vocab
from dedup.audit import AuditConfig
from dedup.detect import Detector
from dedup.index import IndexConfig
from tests.conftest import require_shared_data
from tests.dedup_jobs import audit_config, run_audit, run_index, same_files


@pytest.fixture(scope="module")
def photos():
    data = require_shared_data()
    return quality.photo_sets(data, 8, seed=5)


def test_hash_search_is_exact_within_its_radius_on_real_codes(photos):
    """Every code within the radius, and only those, as faiss's exhaustive search finds them."""
    import faiss

    config = features.FeatureConfig()
    codes = np.concatenate([features.eval_hashes(features.decode_grey(p.read_bytes()), config)
                            for p in photos[1][:60]])
    rng = np.random.default_rng(0)
    bits = np.unpackbits(codes[rng.integers(0, len(codes), 40)], axis=1)
    for row, count in enumerate(rng.integers(0, 8, len(bits))):
        bits[row, rng.choice(64, count, replace=False)] ^= 1
    queries = np.packbits(bits, axis=1)
    order, starts = hashindex.build(codes)
    for radius in (0, 4, 5, 7):
        query, rows, distance = hashindex.search(codes, order, starts, queries, radius)
        flat = faiss.IndexBinaryFlat(64)
        flat.add(codes)
        limits, distances, ids = flat.range_search(queries, radius + 1)
        expected = {(q, int(ids[j]), int(distances[j])) for q in range(len(queries))
                    for j in range(limits[q], limits[q + 1])}
        assert set(zip(query.tolist(), rows.tolist(), distance.tolist())) == expected
        assert len(expected) > 0
    with pytest.raises(ValueError, match="exact up to 7"):
        hashindex.search(codes, order, starts, queries, 8)


def test_pool_settings_recorded_by_older_indexes_are_ignored():
    """How the pool is described moved to the detector: an index that recorded it still loads and
    compares equal with one built today."""
    legacy = {**features.FeatureConfig().to_dict(), "pool_keypoints": 250, "pool_levels": 3}
    assert features.FeatureConfig.from_dict(legacy) == features.FeatureConfig()
    with pytest.raises(TypeError):
        features.FeatureConfig.from_dict({**legacy, "unknown_setting": 1})


def test_frame_overlap_accepts_copies_maps_and_refuses_a_shared_shape_at_an_offset():
    from dedup.detect import frame_overlap

    same = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    assert frame_overlap(same, (200, 256), (200, 256)) == pytest.approx(1.0)
    # a crop of the middle 70% shown at 256 px: the pool frame maps inside the evaluation frame
    crop = np.array([[0.7, 0, 38.4], [0, 0.7, 38.4]])
    assert frame_overlap(crop, (256, 256), (256, 256)) == pytest.approx(1.0)
    # padded to a square (a border): the evaluation frame lies inside the pool frame
    border = np.array([[1.0, 0, 0], [0, 1.0, -40]])
    assert frame_overlap(border, (256, 256), (176, 256)) == pytest.approx(1.0)
    # a mirrored map covers as much as the plain one
    mirror = np.array([[-1.0, 0, 256], [0, 1.0, 0]])
    assert frame_overlap(mirror, (256, 256), (256, 256)) == pytest.approx(1.0)
    # one star matched to another half an image away: half of each frame is shared
    shifted = np.array([[1.0, 0, 128], [0, 1.0, 0]])
    assert frame_overlap(shifted, (256, 256), (256, 256)) == pytest.approx(0.5)


def test_vote_counting_is_the_same_dense_or_sorted():
    """A small index counts votes in one bincount, a large one sorts them: the same candidates
    in the same order (most votes first, ties to the lower key), with a floor on the votes."""
    from dedup.detect import top_keys

    rng = np.random.default_rng(4)
    for space, size in ((50, 400), (5000, 300), (200_000, 3000)):
        keys = rng.integers(0, space, size) if space > 50 else rng.zipf(1.5, size) % space
        for least, top in ((1, 4), (3, 4), (2, 50)):
            dense, sparse = top_keys(keys, space, least, top, dense=True), top_keys(keys, space, least, top, dense=False)
            assert np.array_equal(dense, sparse)
            counts = np.bincount(keys, minlength=space)
            expected = sorted((k for k in range(space) if counts[k] >= least), key=lambda k: (-counts[k], k))[:top]
            assert dense.tolist() == expected


def test_vocabulary_tree_is_seeded_and_its_postings_are_complete():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (3000, 32), np.uint8)
    nodes = vocab.train(codes, 4, 3, seed=2)
    assert np.array_equal(nodes, vocab.train(codes, 4, 3, seed=2))
    assert vocab.word_count(nodes) == 64
    words = vocab.assign(nodes, codes)[:, 0]
    assert words.min() >= 0 and words.max() < 64
    # a code's own word holds it; two nearest leaves include the nearest
    assert np.array_equal(vocab.assign(nodes, codes, spread=2)[:, 0], words)
    # the spread leaves are the parent's nearest children in a stable order (ties to the lower)
    parents = words // 4
    distances = vocab._hamming(codes, nodes[vocab.level_start(2, 4) + parents])
    nearest = parents[:, None] * 4 + np.argsort(distances, axis=1, kind="stable")[:, :3]
    assert np.array_equal(vocab.assign(nodes, codes, spread=3), nearest)
    rows = np.arange(len(codes), dtype=np.int32) // 10
    lists, starts = vocab.postings(words, rows, 64)
    for word in (int(words[0]), int(words[17])):
        assert sorted(vocab.gather(starts, lists, np.array([word]))) == sorted(rows[words == word])
    both = vocab.gather(starts, lists, np.array([words[0], words[17]]))
    assert len(both) == (words == words[0]).sum() + (words == words[17]).sum()


def _copy(photo, family: str) -> bytes:
    with Image.open(photo) as image:
        return quality.encode(transforms.apply(family, image.convert("RGB"), random.Random(photo.name)))


def test_many_sets_in_one_index_report_per_set(tmp_path, photos):
    """`wit dedup index --set A=... --set B=... --set-labels` makes one index; the audit's
    report has one row per set, each with its own overlap, and the HTML one table per set."""
    from dedup import audit
    from pipeline import shards

    for name, chosen in (("alpha", photos[0][:3]), ("beta", photos[0][3:6])):
        (tmp_path / name).mkdir()
        for photo in chosen:
            (tmp_path / name / photo.name).write_bytes(photo.read_bytes())
    (tmp_path / "alpha.tsv").write_text("file\tlabel\n" + "".join(f"{p.name}\tthing\n" for p in photos[0][:3]))
    run_index(IndexConfig(name="suite", set_specs=[f"alpha={tmp_path / 'alpha'}", f"beta={tmp_path / 'beta'}"],
                          set_labels=[f"alpha={tmp_path / 'alpha.tsv'}"], out=str(tmp_path / "index")))
    meta = json.loads((tmp_path / "index" / "index.json").read_text())
    assert meta["format"] == store.FORMAT and meta["sets"] == {"alpha": {"items": 3, "readable": 3},
                                                               "beta": {"items": 3, "readable": 3}}
    # one copy from alpha, two from beta, two distractors
    rows = [(photos[0][0], "crop"), (photos[0][3], "flip"), (photos[0][4], "border"),
            (photos[1][0], "jpeg"), (photos[1][1], "rotate")]
    samples = [shards.Sample(key=f"00000{i:04d}", url=f"https://example.com/{i}.jpg", caption="c", status="success",
                             image=_copy(photo, family)) for i, (photo, family) in enumerate(rows)]
    shards.write_shard(str(tmp_path / "shards"), 0, samples, "jpg")
    run_audit(audit_config(tmp_path / "shards" / "*.tar", tmp_path / "index", tmp_path / "audit"))
    # The argv smoke test of the audit job in this file: the flags a user types, ours and Beam's
    # mixed, parse to the same config and give the same bytes.
    argv = ["--shards", str(tmp_path / "shards" / "*.tar"), "--index", str(tmp_path / "index"),
            "--out", str(tmp_path / "audit-argv")]
    assert parse_config(AuditConfig, argv) == audit_config(tmp_path / "shards" / "*.tar", tmp_path / "index",
                                                           tmp_path / "audit-argv")
    assert audit.run(argv + ["--direct_num_workers", "1"]) == 0
    same_files(tmp_path / "audit", tmp_path / "audit-argv")
    report = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert {name: (s["all"], s["overlap"], s["clean"]) for name, s in report["eval_sets"].items()} == {
        "alpha": (3, 1, 2), "beta": (3, 2, 1)}
    html = (tmp_path / "audit" / "report.html").read_text()
    assert "alpha: 1 matched pairs" in html and "beta: 2 matched pairs" in html
    loaded = store.load(str(tmp_path / "index"))
    assert {item["eval_set"]: item["label"] for item in loaded.items if item["eval_set"] == "alpha"} == {"alpha": "thing"}


def test_sets_file_and_set_names_must_differ(tmp_path, photos, capsys):
    from dedup import index as index_job

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(photos[0][0].read_bytes())
    sets = tmp_path / "sets.yaml"
    sets.write_text(f"sets:\n  - name: first\n    images: [{tmp_path / 'a'}]\n  - name: second\n"
                    f"    images: {tmp_path / 'a'}\n")
    run_index(IndexConfig(sets_file=str(sets), out=str(tmp_path / "index")))
    assert store.load(str(tmp_path / "index")).sets == ["first", "second"]
    with pytest.raises(ValueError, match=r"two sets share a name: \['one', 'one'\]"):
        IndexConfig(set_specs=[f"one={tmp_path / 'a'}", f"one={tmp_path / 'a'}"], out=str(tmp_path / "i2"))
    # The argv smoke test of the index job in this file: `--sets FILE` parses to the same config and
    # gives the same bytes; a bad set list on the command line is a usage error (exit 2) naming it.
    argv = ["--sets", str(sets), "--out", str(tmp_path / "index-argv")]
    assert parse_config(IndexConfig, argv) == IndexConfig(sets_file=str(sets), out=str(tmp_path / "index-argv"))
    assert index_job.run(argv + ["--direct_num_workers", "1"]) == 0
    same_files(tmp_path / "index", tmp_path / "index-argv")
    with pytest.raises(SystemExit) as exited:
        index_job.run(["--set", f"one={tmp_path / 'a'}", "--set", f"one={tmp_path / 'a'}", "--out", str(tmp_path / "i2")])
    assert exited.value.code == 2 and "two sets share a name" in capsys.readouterr().err


def _mapped(array: np.ndarray) -> bool:
    """Whether the array's memory is a file mapping (not a copy in the process)."""
    import mmap

    while array is not None and not isinstance(array, mmap.mmap):
        array = getattr(array, "base", None)
    return array is not None


def test_loaded_index_is_mapped_pickles_as_its_path_and_costs_under_5_kb_an_image(tmp_path, photos):
    index = quality.index_photos("eight", photos[0])
    store.save(index, str(tmp_path / "index"))
    loaded = store.load(str(tmp_path / "index"))
    assert all(_mapped(array) for array in loaded.arrays.values())
    assert len(pickle.dumps(loaded)) < 1000  # a Beam side input carries the path, each worker maps the files
    again = pickle.loads(pickle.dumps(loaded))
    assert again.path == loaded.path and np.array_equal(again.descriptors, index.descriptors)
    # the part that grows with the index (the tree, the word and hash-table starts are fixed costs)
    fixed = sum(loaded.arrays[name].nbytes for name in ("vocab", "word_starts", "hash_starts"))
    per_image = (loaded.nbytes() - fixed) / len(loaded)
    assert per_image <= 5000, per_image
    found = Detector([again]).match(_copy(photos[0][2], "crop"))
    assert [again.key(m.item)[1] for m in found if m.is_duplicate] == [photos[0][2].name]


def test_an_index_of_the_previous_format_is_refused_with_the_command_to_rebuild_it(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "index.json").write_text(json.dumps({"format": "wit-dedup-index/1", "name": "imagenet-val"}))
    with pytest.raises(store.IndexError_, match=r"wit-dedup-index/1.*wit dedup index --name imagenet-val"):
        store.load(str(folder))
