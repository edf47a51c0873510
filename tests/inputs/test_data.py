"""Datasets: IDX files, image-folder trees, synset names, subsamples."""
import gzip

import numpy as np
import pytest

from neurocarto.errors import NeuroCartoError
from neurocarto.inputs.data import FashionMNIST, ImageFolder, open_dataset, subsample


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_folder_reads_train_then_test(tmp_path):
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 255, (5, 28, 28)), rng.integers(0, 255, (3, 28, 28))
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3, 4]))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([9, 8, 7]))
    dataset = open_dataset(str(tmp_path), tmp_path)
    assert isinstance(dataset, FashionMNIST)
    assert len(dataset) == 8 and dataset.split_sizes == {"train": 5, "test": 3}
    assert dataset.label(6) == 8
    np.testing.assert_array_equal(np.asarray(dataset.load(5)), test[0])


def test_truncated_idx_file_is_reported(tmp_path):
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 100)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(10))
    with pytest.raises(NeuroCartoError, match="truncated"):
        open_dataset(str(tmp_path), tmp_path)


def test_image_folder_scan(image_folder):
    dataset = open_dataset(str(image_folder), image_folder)
    assert isinstance(dataset, ImageFolder)
    assert dataset.class_names == ["cat", "dog", "n01440764"]
    assert len(dataset) == 37 and dataset.label(0) == 0 and dataset.label(36) == 2
    assert dataset.load(0).mode == "RGB"


def test_synset_folders_get_readable_names(tmp_path):
    for wnid in ("n01440764", "n01443537"):
        (tmp_path / wnid).mkdir()
        (tmp_path / wnid / "a.png").write_bytes(b"")
    (tmp_path / "LOC_synset_mapping.txt").write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n")
    assert ImageFolder.scan(tmp_path).class_names == ["tench", "goldfish"]
    (tmp_path / "LOC_synset_mapping.txt").unlink()
    assert ImageFolder.scan(tmp_path, ["tench", "goldfish"]).class_names == ["tench", "goldfish"]
    assert ImageFolder.scan(tmp_path, ["a", "b", "c"]).class_names == ["n01440764", "n01443537"]


def test_empty_and_missing_datasets_are_clear(tmp_path):
    with pytest.raises(NeuroCartoError, match="no such folder"):
        open_dataset(str(tmp_path / "nowhere"), tmp_path)
    with pytest.raises(NeuroCartoError, match="has no class folders"):
        open_dataset(str(tmp_path), tmp_path)
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "notes.txt").write_text("no images here")
    with pytest.raises(NeuroCartoError, match="1 class folders but no image files"):
        open_dataset(str(tmp_path), tmp_path)


def test_fingerprint_changes_with_files(image_folder, tmp_path):
    before = ImageFolder.scan(image_folder).fingerprint
    assert ImageFolder.scan(image_folder).fingerprint == before
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(image_folder, copy)
    (copy / "dog" / "00.png").unlink()
    assert ImageFolder.scan(copy).fingerprint != before


def test_subsample_is_seeded_sorted_and_complete_when_large():
    a, b = subsample(1000, 50, seed=3), subsample(1000, 50, seed=3)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 50 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, subsample(1000, 50, seed=4))
    np.testing.assert_array_equal(subsample(10, None, 0), np.arange(10))
    np.testing.assert_array_equal(subsample(10, 20, 0), np.arange(10))
