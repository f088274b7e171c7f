"""Keras 3 building blocks: deterministic, variational and distribution-output layers."""

from tfcraft.layers import priors
from tfcraft.layers.conv_variational import Conv2DFlipout
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
    is_stochastic,
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
    "find_head",
    "is_stochastic",
    "priors",
    "set_num_train_examples",
    "variational_layers",
]
