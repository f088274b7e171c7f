import numpy as np
import pytest
import tensorflow as tf

from tfcraft.training.data import ArrayData, DatasetData, adapt, epoch_permutation


def test_arrays_become_float32_tensors_of_one_length():
    data = adapt((np.zeros((6, 2)), np.arange(6), np.ones(6)))
    assert isinstance(data, ArrayData)
    assert data.num_examples == 6
    assert data.tensors[0].dtype == tf.float32
    assert data.tensors[1].dtype == tf.int64


def test_dict_features_are_supported():
    data = adapt(({"a": np.zeros((4, 2)), "b": np.zeros((4, 1))}, np.zeros(4)))
    assert data.num_examples == 4
    assert set(data.tensors[0]) == {"a", "b"}


def test_lengths_must_match():
    with pytest.raises(ValueError, match=r"same length. Received: len\(x\)=5, len\(y\)=4"):
        adapt((np.zeros((5, 2)), np.zeros(4)))


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.array([object(), object()])])
def test_non_numeric_data_is_rejected(bad):
    with pytest.raises(TypeError, match=r"`x` must hold numbers. Received: x with dtype="):
        adapt((bad, np.zeros(2)))


def test_unsupported_type_is_rejected():
    with pytest.raises(TypeError, match=r"Received: data of type int"):
        adapt(3)


def test_dataset_cardinality_and_counting():
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((10, 2)), np.zeros(10))).batch(4)
    data = adapt(ds)
    assert isinstance(data, DatasetData)
    assert data.cardinality == 3
    assert data.count_examples() == 10
    assert adapt(ds.repeat()).cardinality is None


def test_generators_and_callables():
    def batches():
        for _ in range(3):
            yield np.zeros((2, 2)), np.zeros((2, 1))

    from_callable = adapt(batches)
    assert [len(list(from_callable.dataset)) for _ in range(2)] == [3, 3]  # fresh every pass
    once = adapt(batches())
    assert once.single_pass
    assert once.first_batch()[0].shape == (2, 2)  # peeked batch is not lost
    assert len(list(once.dataset)) == 3
    assert once.dataset.element_spec[0].dtype == tf.float32
    with pytest.raises(ValueError, match=r"produced no batches"):
        adapt(iter([]))


def test_epoch_permutation_is_a_pure_function_of_seed_and_epoch():
    a = epoch_permutation(100, seed=3, epoch=2).numpy()
    np.testing.assert_array_equal(a, epoch_permutation(100, seed=3, epoch=2).numpy())
    assert sorted(a.tolist()) == list(range(100))
    assert not np.array_equal(a, epoch_permutation(100, seed=3, epoch=3).numpy())
    assert not np.array_equal(a, epoch_permutation(100, seed=4, epoch=2).numpy())
