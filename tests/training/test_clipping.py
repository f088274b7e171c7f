import numpy as np
import pytest
import tensorflow as tf

from tfcraft.training import clipping


def _grads():
    rng = np.random.default_rng(0)
    return [
        tf.constant(rng.normal(size=(4, 3)) * 3, tf.float32),
        tf.constant(rng.normal(size=(3,)), tf.float32),
    ]


def _variables():
    rng = np.random.default_rng(1)
    return [
        tf.Variable(rng.normal(size=(4, 3)).astype("float32")),
        tf.Variable(np.array([0.0, 0.5, -2.0], "float32")),
    ]


def _numpy(grads):
    return [None if g is None else np.asarray(g, np.float64) for g in grads]


def _check_same(ours, expected, rtol=1e-6):
    assert len(ours) == len(expected)
    for o, e in zip(ours, expected, strict=True):
        if e is None:
            assert o is None
        else:
            assert o.shape == e.shape
            np.testing.assert_allclose(o, e, rtol=rtol, atol=1e-7)


def test_by_value_matches_numpy():
    grads = _grads()
    expected = [np.clip(g, -0.5, 0.5) for g in _numpy(grads)]
    assert any(np.any(np.abs(g) > 0.5) for g in _numpy(grads))  # the clip acts
    _check_same(clipping.ByValue(0.5)(grads, _variables()), expected)


def test_by_norm_matches_numpy():
    grads = _grads()
    expected = [g * min(1.0, 1.0 / np.linalg.norm(g)) for g in _numpy(grads)]
    assert all(np.linalg.norm(g) > 1.0 for g in _numpy(grads))  # both tensors get rescaled
    _check_same(clipping.ByNorm(1.0)(grads, _variables()), expected)


def test_by_global_norm_matches_numpy_and_keeps_none():
    grads = [_grads()[0], None, _grads()[1]]
    present = [g for g in _numpy(grads) if g is not None]
    norm = np.sqrt(sum(np.sum(g**2) for g in present))
    assert norm > 1.0
    expected = [None if g is None else g / norm for g in _numpy(grads)]
    _check_same(clipping.ByGlobalNorm(1.0)(grads, [None] * 3), expected)
    # Below the threshold nothing changes.
    _check_same(clipping.ByGlobalNorm(2 * norm)(grads, [None] * 3), _numpy(grads))


def _numpy_agc(grad, weight, clip, eps):
    if grad.ndim <= 1:
        w_norm, g_norm = np.abs(weight), np.abs(grad)
    else:
        axes = tuple(range(grad.ndim - 1))
        w_norm = np.sqrt((weight**2).sum(axis=axes, keepdims=True))
        g_norm = np.sqrt((grad**2).sum(axis=axes, keepdims=True))
    max_norm = clip * np.maximum(w_norm, eps)
    scale = np.where(g_norm > max_norm, max_norm / np.maximum(g_norm, 1e-30), 1.0)
    return grad * scale


@pytest.mark.parametrize("clip", [0.01, 0.1, 10.0])
def test_adaptive_matches_numpy_agc(clip):
    grads, variables = _grads(), _variables()
    ours = clipping.Adaptive(clipping=clip, eps=1e-3)(grads, variables)
    expected = [
        _numpy_agc(g.numpy().astype(np.float64), v.numpy().astype(np.float64), clip, 1e-3)
        for g, v in zip(grads, variables, strict=True)
    ]
    _check_same(ours, expected, rtol=1e-5)


def test_global_norm_skips_none():
    assert float(clipping.global_norm([tf.constant([3.0]), None, tf.constant([4.0])])) == 5.0


@pytest.mark.parametrize(
    ("spec", "kind", "value"),
    [
        (1.5, clipping.ByGlobalNorm, 1.5),
        ("global_norm:1.0", clipping.ByGlobalNorm, 1.0),
        ("value:0.5", clipping.ByValue, 0.5),
        ("norm:2", clipping.ByNorm, 2.0),
        ("adaptive:0.01", clipping.Adaptive, 0.01),
    ],
)
def test_get_parses_specs(spec, kind, value):
    clipper = clipping.get(spec)
    assert isinstance(clipper, kind)
    assert next(iter(vars(clipper).values())) == value


def test_get_passes_through_none_objects_and_callables():
    assert clipping.get(None) is None
    clipper = clipping.ByValue(1.0)
    assert clipping.get(clipper) is clipper

    def fn(grads, variables):
        return grads

    assert clipping.get(fn) is fn


@pytest.mark.parametrize("spec", ["bogus:1", "value", "value:abc", True, object()])
def test_get_unknown_spec_lists_valid_forms(spec):
    with pytest.raises(ValueError, match=r"global_norm:N.*Received: clip="):
        clipping.get(spec)


def test_negative_threshold_is_rejected():
    with pytest.raises(ValueError, match=r"Received: norm=-1"):
        clipping.get("global_norm:-1")
