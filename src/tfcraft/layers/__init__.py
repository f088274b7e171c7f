"""Keras 3 building blocks: deterministic, variational and distribution-output layers.

`tfcraft.layers.walk` walks a model (its layers, variational and random-drawing
layers, seed generators, metric directions); its functions are re-exported here.
"""

from tfcraft.layers import priors, walk
from tfcraft.layers.conv_variational import Conv2DFlipout
from tfcraft.layers.flipout import flipout, rademacher
from tfcraft.layers.heads import (
    BernoulliHead,
    CategoricalHead,
    DistributionHead,
    MixtureNormalHead,
    NormalHead,
    StudentTHead,
    find_head,
)
from tfcraft.layers.linear import Linear
from tfcraft.layers.mc_dropout import MCDropout
from tfcraft.layers.priors import NormalPrior, ScaleMixturePrior
from tfcraft.layers.variational import (
    DenseFlipout,
    DenseLocalReparameterization,
    DenseReparameterization,
    VariationalLayer,
)
from tfcraft.layers.walk import (
    draws_random_numbers,
    is_stochastic,
    iter_layers,
    metric_direction,
    model_losses,
    output_layer,
    seed_generators,
    set_num_train_examples,
    variational_layers,
)

__all__ = [
    "BernoulliHead",
    "CategoricalHead",
    "Conv2DFlipout",
    "DenseFlipout",
    "DenseLocalReparameterization",
    "DenseReparameterization",
    "DistributionHead",
    "Linear",
    "MCDropout",
    "MixtureNormalHead",
    "NormalHead",
    "NormalPrior",
    "ScaleMixturePrior",
    "StudentTHead",
    "VariationalLayer",
    "draws_random_numbers",
    "find_head",
    "flipout",
    "is_stochastic",
    "iter_layers",
    "metric_direction",
    "model_losses",
    "output_layer",
    "priors",
    "rademacher",
    "seed_generators",
    "set_num_train_examples",
    "variational_layers",
    "walk",
]
