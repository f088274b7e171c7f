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


def test_by_value_matches_tf():
    grads = _grads()
    for ours, ref in zip(clipping.ByValue(0.5)(grads, _variables()), grads, strict=False):
        np.testing.assert_allclose(ours, tf.clip_by_value(ref, -0.5, 0.5))


def test_by_norm_matches_tf():
    grads = _grads()
    for ours, ref in zip(clipping.ByNorm(1.0)(grads, _variables()), grads, strict=False):
        np.testing.assert_allclose(ours, tf.clip_by_norm(ref, 1.0), rtol=1e-6)


def test_by_global_norm_matches_tf_and_keeps_none():
    grads = _grads()
    reference, _ = tf.clip_by_global_norm(grads, 1.0)
    ours = clipping.ByGlobalNorm(1.0)([grads[0], None, grads[1]], [None] * 3)
    assert ours[1] is None
    np.testing.assert_allclose(ours[0], reference[0], rtol=1e-6)
    np.testing.assert_allclose(ours[2], reference[1], rtol=1e-6)


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
    for g, v, o in zip(grads, variables, ours, strict=False):
        np.testing.assert_allclose(o, _numpy_agc(g.numpy(), v.numpy(), clip, 1e-3), rtol=1e-5)


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
