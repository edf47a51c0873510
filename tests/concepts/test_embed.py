"""Sentences, skip-gram and neighbours against brute force and planted co-occurrence."""
import numpy as np
import pytest

from neurocarto.concepts.embed import cosine_neighbors, image_sentences, nearest_to_mean, project_2d, train_skipgram
from neurocarto.config import EmbedParams


def test_sentences_match_brute_force():
    top_images = np.array([[0, 1, 2], [1, 2, 3], [2, 5, 6], [7, 8, 9]])
    offsets, words = image_sentences(top_images)
    sentences = [sorted(words[offsets[i]:offsets[i + 1]].tolist()) for i in range(len(offsets) - 1)]
    expected = [sorted(n for n in range(4) if image in top_images[n]) for image in range(10)]
    assert sentences == [s for s in expected if len(s) >= 2] == [[0, 1], [0, 1, 2]]


def planted_corpus(n_groups=6, group_size=10, n_sentences=3000, seed=0):
    rng = np.random.default_rng(seed)
    sentences = []
    for _ in range(n_sentences):
        group = rng.integers(n_groups)
        members = group * group_size + rng.choice(group_size, rng.integers(3, 7), replace=False)
        sentences.append(np.concatenate([members, rng.integers(0, n_groups * group_size, 1)]))
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sentences])])
    return offsets.astype(np.int64), np.concatenate(sentences).astype(np.int64), n_groups * group_size, group_size


@pytest.mark.parametrize("threads", [1, 2])
def test_skipgram_recovers_planted_cooccurrence(threads):
    offsets, words, vocabulary, group_size = planted_corpus()
    embedding, losses = train_skipgram(offsets, words, vocabulary, EmbedParams(dimensions=16, epochs=5,
                                                                                  threads=threads))
    neighbors, _ = cosine_neighbors(embedding, 3)
    same_group = (neighbors // group_size) == (np.arange(vocabulary) // group_size)[:, None]
    chance = (group_size - 1) / (vocabulary - 1)
    print(f"threads={threads}: nearest neighbour in the same group {same_group[:, 0].mean():.2f} (chance {chance:.2f}); "
          f"loss per epoch {np.round(losses, 3).tolist()}")
    assert same_group[:, 0].mean() >= 0.9 and same_group.mean() >= 0.8
    assert losses[-1] < losses[0]


def test_skipgram_is_deterministic_on_one_thread():
    offsets, words, vocabulary, _ = planted_corpus(n_sentences=500)
    config = EmbedParams(dimensions=8, epochs=2, seed=3)
    first, first_losses = train_skipgram(offsets, words, vocabulary, config)
    second, second_losses = train_skipgram(offsets, words, vocabulary, config)
    np.testing.assert_array_equal(first, second)
    assert first_losses == second_losses
    other, _ = train_skipgram(offsets, words, vocabulary, EmbedParams(dimensions=8, epochs=2, seed=4))
    assert not np.array_equal(first, other)


def test_cosine_neighbors_match_brute_force():
    rng = np.random.default_rng(2)
    embedding = rng.normal(size=(50, 5)).astype(np.float32)
    indices, similarities = cosine_neighbors(embedding, 4, block=16)
    unit = embedding / np.linalg.norm(embedding, axis=1, keepdims=True)
    full = unit @ unit.T
    np.fill_diagonal(full, -np.inf)
    expected = np.argsort(-full, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(similarities, np.take_along_axis(full, expected, 1), rtol=1e-5)


def test_nearest_to_a_group_mean_matches_brute_force():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(40, 6))
    vectors[7] = 0                                       # an all-zero row is never a neighbour ahead of a real one
    members = np.array([2, 5, 11])
    nearest, similarity = nearest_to_mean(vectors, members, 5)
    unit = [v / np.linalg.norm(v) if np.linalg.norm(v) else v for v in vectors]
    centre = np.mean([unit[m] for m in members], axis=0)
    cosine = {n: float(unit[n] @ centre / np.linalg.norm(centre)) for n in range(40) if n not in members}
    expected = sorted(cosine, key=lambda n: (-cosine[n], n))[:5]
    assert nearest.tolist() == expected and np.allclose(similarity, [cosine[n] for n in expected])


def test_projection_is_2d_and_reproducible(monkeypatch):
    import umap.umap_

    def no_search(*args, **kwargs):
        raise AssertionError("UMAP searched for neighbours itself")

    monkeypatch.setattr(umap.umap_, "nearest_neighbors", no_search)     # it uses cosine_neighbors' exact ones
    rng = np.random.default_rng(0)
    embedding = np.concatenate([rng.normal(0, 1, (40, 8)) + 5 * np.eye(8)[0], rng.normal(0, 1, (40, 8)) - 5 * np.eye(8)[0]])
    first, second = project_2d(embedding, seed=1), project_2d(embedding, seed=1, neighbors=cosine_neighbors(embedding))
    assert first.shape == (80, 2)
    np.testing.assert_array_equal(first, second)
    # the two planted blobs stay apart
    gap = np.linalg.norm(first[:40].mean(0) - first[40:].mean(0))
    spread = max(first[:40].std(0).max(), first[40:].std(0).max())
    assert gap > 2 * spread


def test_umaps_kernels_keep_their_compilation_on_disk():
    """umap-learn compiles its kernels afresh in every process; the projection keeps them, as numba does ours."""
    from pathlib import Path

    import umap.layouts
    import umap.umap_

    project_2d(np.random.default_rng(0).normal(size=(30, 4)), seed=0)
    for kernel in (umap.umap_.smooth_knn_dist, umap.umap_.compute_membership_strengths,
                   umap.layouts._nb_optimize_layout_euclidean_single_epoch):
        kept = list(Path(kernel._cache.cache_path).glob(f"*{kernel.py_func.__name__}*.nbi"))
        assert kept, f"{kernel.py_func.__name__}: no compilation kept in {kernel._cache.cache_path}"
