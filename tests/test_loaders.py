"""Loaders on small files written here in the real formats, and user candidate files."""

import functools
import gzip
import http.server
import pickle
import threading

import numpy as np
import pytest

from explorer.errors import ExplorerError
from explorer.loaders.cifar import load_cifar10
from explorer.loaders.mnist import load_mnist, read_idx
from explorer.loaders.user import read_candidate_file
from explorer.tasks import load_task


def write_idx(path, array):
    """Write an unsigned-byte array as an IDX file (.gz if the name says so)."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def fake_mnist(directory, n=300, prefix="t10k", gz=True, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(y):  # a digit-dependent blob plus noise, so classes are learnable
        images[i, 2 + 2 * label: 8 + 2 * label, 4:24] = 200
        images[i] += rng.integers(0, 40, size=(28, 28), dtype=np.uint8)
    ext = ".gz" if gz else ""
    write_idx(directory / f"{prefix}-images-idx3-ubyte{ext}", images)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte{ext}", y.astype(np.uint8))
    return images, y


def test_idx_round_trip(tmp_path):
    images, y = fake_mnist(tmp_path, n=20, gz=False)
    assert np.array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte"), images)
    assert np.array_equal(read_idx(tmp_path / "t10k-labels-idx1-ubyte"), y)


def test_mnist_loader_scales_and_concatenates(tmp_path):
    fake_mnist(tmp_path, n=50, prefix="train")
    images, _ = fake_mnist(tmp_path, n=30, prefix="t10k", seed=1)
    raw = load_mnist(tmp_path)
    assert raw.X.shape == (80, 784) and raw.X.max() <= 1.0
    assert np.allclose(raw.X[50:], images.reshape(30, -1) / 255.0)
    assert raw.class_names == tuple("0123456789")


def test_mnist_task_from_a_directory(tmp_path):
    fake_mnist(tmp_path, n=1000)
    task = load_task("mnist", data_dir=tmp_path, seed_size=100)
    assert task.n_features == 784 and task.n_classes == 10
    assert len(task.y_train) == 100 and len(task.y_test) == 200 and len(task.y_pool) == 700


def test_corrupt_idx_files_are_refused(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04junk")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    with pytest.raises(ExplorerError, match="not an IDX file"):
        load_mnist(tmp_path)
    with pytest.raises(ExplorerError, match="truncated"):
        read_idx(tmp_path / "t10k-labels-idx1-ubyte")


def test_missing_mnist_directory_says_where_to_put_files(tmp_path):
    with pytest.raises(ExplorerError, match=r"does not exist.*--data-dir"):
        load_mnist(tmp_path / "absent")
    with pytest.raises(ExplorerError, match="holds no IDX"):
        load_mnist(tmp_path)


@pytest.fixture
def loopback_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_mnist_downloads_into_the_cache(tmp_path, monkeypatch, loopback_server):
    served, url = loopback_server
    fake_mnist(served, n=40, prefix="train")
    fake_mnist(served, n=20, prefix="t10k")
    monkeypatch.setenv("APPRAISAL_EXPLORER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("APPRAISAL_EXPLORER_MNIST_URL", url)
    monkeypatch.setattr("explorer.loaders.mnist.default_dirs", lambda: [])
    raw = load_mnist()
    assert raw.X.shape == (60, 784)
    cached = sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir())
    assert cached == sorted(["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])


def test_failed_download_leaves_nothing_and_says_what_to_do(tmp_path, monkeypatch,
                                                            loopback_server):
    _, url = loopback_server  # serves nothing: every file is a 404
    monkeypatch.setenv("APPRAISAL_EXPLORER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("APPRAISAL_EXPLORER_MNIST_URL", url)
    monkeypatch.setattr("explorer.loaders.mnist.default_dirs", lambda: [])
    with pytest.raises(ExplorerError, match=r"download failed.*--data-dir"):
        load_mnist()
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []


def write_batch(path, X, y):
    """Write images (n, 3072) uint8 and labels as a CIFAR-10 python batch."""
    with open(path, "wb") as f:
        pickle.dump({b"data": np.asarray(X, dtype=np.uint8), b"labels": [int(v) for v in y],
                     b"batch_label": path.name.encode()}, f)


def fake_cifar(directory, per_class=60, batches=2, seed=0):
    rng = np.random.default_rng(seed)
    d = directory / "cifar-10-batches-py"
    d.mkdir()

    def batch(n_per_class):
        y = np.repeat(np.arange(10), n_per_class)
        X = rng.integers(0, 256, size=(len(y), 3072)).astype(np.uint8)
        X[y == 0, :1024] //= 4  # planes: less red, so the classes differ
        return X, y

    for i in range(1, batches + 1):
        write_batch(d / f"data_batch_{i}", *batch(per_class))
    write_batch(d / "test_batch", *batch(per_class // 2))
    return d


def test_cifar_loader_reads_python_batches(tmp_path):
    fake_cifar(tmp_path, per_class=20)
    train, test = load_cifar10(tmp_path)
    assert train.X.shape == (400, 3072) and test.X.shape == (100, 3072)
    assert train.class_names[:2] == ("airplane", "automobile")
    assert train.X.min() >= 0 and train.X.max() <= 1


def test_cifar_planecar_task_has_paper_ratios(tmp_path):
    fake_cifar(tmp_path, per_class=550, batches=2)  # 1,100 planes and 1,100 cars to train
    task = load_task("cifar-planecar", data_dir=tmp_path)
    assert np.bincount(task.y_train).tolist() == [110, 11]  # 10:1 plane:car
    assert np.bincount(task.y_test).tolist() == [275, 275]  # balanced
    assert task.n_features == 3072 and task.class_names == ("airplane", "automobile")


def test_cifar_without_batches_is_a_clear_error(tmp_path):
    with pytest.raises(ExplorerError, match="no CIFAR-10 python batches"):
        load_cifar10(tmp_path)


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]))
    return path


def test_user_csv_with_indices_or_names(tmp_path):
    p = write_csv(tmp_path / "c.csv", ["a", "b", "label"], [[1, 2, 0], [3, 4, "benign"]])
    X, y = read_candidate_file(p, 2, ("malignant", "benign"))
    assert X.tolist() == [[1, 2], [3, 4]] and y.tolist() == [0, 1]


def test_user_npz(tmp_path):
    np.savez(tmp_path / "c.npz", X=np.ones((3, 2)), y=np.array([0, 1, 1]))
    X, y = read_candidate_file(tmp_path / "c.npz", 2, ("a", "b"))
    assert X.shape == (3, 2) and y.tolist() == [0, 1, 1]


@pytest.mark.parametrize("header, rows, message", [
    (["a", "b", "label"], [[1, "nan", 0]], "NaN or infinite"),
    (["a", "b", "label"], [[1, "inf", 0]], "NaN or infinite"),
    (["a", "b", "label"], [[1, "", 0]], "NaN or infinite"),
    (["a", "label"], [[1, 0]], "1 feature columns but the task has 2"),
    (["a", "b", "c"], [[1, 2, 0]], "no 'label' column"),
    (["a", "b", "label"], [[1, 2, 7]], "label 7 .* does not know"),
    (["a", "b", "label"], [[1, 2, "cat"]], "label 'cat'"),
    (["a", "b", "label"], [[1, 2, 0.5]], "label 0.5"),
    (["a", "b", "label"], [], "no samples"),
    (["a", "b", "label"], [["x", 2, 0]], "non-numeric"),
])
def test_bad_user_files(tmp_path, header, rows, message):
    p = write_csv(tmp_path / "c.csv", header, rows)
    with pytest.raises(ExplorerError, match=message):
        read_candidate_file(p, 2, ("malignant", "benign"))


def test_gzip_is_detected_by_name(tmp_path):
    with gzip.open(tmp_path / "x.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 2, 5, 6]))
    assert read_idx(tmp_path / "x.gz").tolist() == [5, 6]
