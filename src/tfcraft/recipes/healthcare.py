"""Healthcare: diagnosis with calibrated uncertainty that knows when to refer a case.

Four tfcraft classifiers on the same stratified split of a diagnosis set
(`tfcraft.datasets.load_clinical`): a deterministic net, MC dropout, a
Bayesian (Flipout) net and a deep ensemble, each trained by the `Trainer`
with validation data and early stopping. Each is judged on the held-out part
by accuracy, ROC-AUC, Brier score, ECE, and by what abstention buys: the
area under the risk-coverage curve (AURC), accuracy on the 90% / 80% most
confident cases, and split-conformal (LAC) prediction sets at 90% / 95%.

Protocol of one split: stratified 70/30 train/test; the training part is
split again 80/20 (stratified) into fitting and validation data; features are
standardised with the fitting part's statistics. The validation part drives
early stopping and also calibrates the conformal sets (one scalar, the
stopping epoch, depends on it; a separate calibration part would cost a
quarter of the training data on sets of 300-800 cases). `fit_predict(...,
temperature=True)` also temperature-scales on it (off by default, measured).

Defaults (two ReLU layers of 32 units, Adam 3e-3, batch 32, patience 20, dropout
0.2, 5 ensemble members, 50 passes) are one setting for every set, fixed
before the benchmark splits were run and not tuned on them; a development study
on four other medical sets (`benchmarks/healthcare_dev_study.py`) found no
learning rate or weight decay that did better. The conformal sets use smoothed
p-values (`evaluate_probs(smoothing=True)`), so their coverage is the level in
expectation even on 42-case calibration parts.

Example:

>>> result = run("cleveland", quick=True)  # doctest: +SKIP
>>> sorted(result.tables)  # doctest: +SKIP
['metrics']
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from tfcraft._validation import check_choice
from tfcraft.recipes.base import RecipeResult, save_figure

__all__ = [
    "MODELS",
    "evaluate_probs",
    "fit_predict",
    "plot_reliability",
    "plot_risk_coverage",
    "prepare_split",
    "run",
    "split",
    "temperature_scale",
]

MODELS: tuple[str, ...] = ("deterministic", "mc_dropout", "flipout", "ensemble")
_UNITS, _DROPOUT, _LEARNING_RATE, _PATIENCE, _BATCH = 32, 0.2, 3e-3, 20, 32


def split(X, y, seed: int, test_fraction: float = 0.3):
    """Stratified train/test indices of one split (scikit-learn's `train_test_split`)."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    return train_test_split(index, test_size=test_fraction, stratify=y, random_state=seed)


def _standardise(fit_part, *others):
    mean, std = fit_part.mean(axis=0), fit_part.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [((a - mean) / std).astype(np.float32) for a in (fit_part, *others)]


def _network(kind: str, num_features: int, seed: int):
    import keras

    from tfcraft.layers import CategoricalHead, DenseFlipout, MCDropout

    inputs = keras.Input((num_features,))
    hidden = inputs
    for layer in range(2):
        layer_seed = seed + 17 * layer
        if kind == "flipout":
            hidden = DenseFlipout(_UNITS, activation="relu", seed=layer_seed)(hidden)
            continue
        hidden = keras.layers.Dense(
            _UNITS, activation="relu", kernel_initializer=keras.initializers.HeNormal(layer_seed)
        )(hidden)
        if kind == "mc_dropout":
            hidden = MCDropout(_DROPOUT, seed=layer_seed + 1)(hidden)
    return keras.Model(inputs, CategoricalHead(2, seed=seed + 99)(hidden))


def _deterministic_member(seed: int):
    return _network("deterministic", _deterministic_member.num_features, seed)


def fit_predict(
    kind: str,
    x_fit,
    y_fit,
    x_val,
    y_val,
    x_test,
    quick: bool = False,
    seed: int = 0,
    temperature: bool = False,
    learning_rate: float = _LEARNING_RATE,
    weight_decay: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Train one model kind; return the mean class probabilities on `x_val` and `x_test`.

    With `temperature=True` both are temperature-scaled
    (`tfcraft.bayes.TemperatureScaling` fitted on the validation part's NLL).
    For two classes this changes neither the ranking of the cases by
    confidence nor the conformal sets, only how far the probabilities are
    from 0.5 (ECE, Brier); a temperature below 1 can round confident cases to
    exactly 1.0, which ties them in AURC. Off by default: over the benchmark's
    10 splits it lowered ECE on Pima (0.069 -> 0.058) but raised it on WDBC
    and Cleveland (`benchmarks/results/healthcare_temperature.md`).

    `learning_rate` and `weight_decay` (AdamW's decoupled decay when positive,
    else Adam) are exposed for the development study
    (`benchmarks/healthcare_dev_study.py`).

    Returns:
        `(probs_val, probs_test)`, each `(n, 2)`.
    """
    import keras

    from tfcraft.bayes import DeepEnsemble, predict
    from tfcraft.losses import NegativeLogLikelihood
    from tfcraft.training import EarlyStopping, Trainer

    kind = check_choice("models", kind, MODELS)
    loss = NegativeLogLikelihood("categorical")
    epochs = 40 if quick else 300
    passes = 20 if quick else 50

    def stopper():
        patience = 8 if quick else _PATIENCE
        return EarlyStopping("val_loss", patience=patience, restore_best_weights=True)

    validation = (x_val, y_val)

    def optimizer():
        if weight_decay > 0:
            return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
        return keras.optimizers.Adam(learning_rate)

    # Quick runs are dominated by XLA compilation on a few hundred rows: skip it.
    jit = {"jit_compile": False} if quick else {}
    if kind == "ensemble":
        _deterministic_member.num_features = x_fit.shape[1]
        ensemble = DeepEnsemble(_deterministic_member, num_members=3 if quick else 5, seed=seed)
        ensemble.fit(
            x_fit,
            y_fit,
            epochs=epochs,
            batch_size=_BATCH,
            loss=loss,
            optimizer=optimizer(),
            validation_data=validation,
            callbacks=[stopper()],
            **jit,
        )
        model = ensemble
    else:
        model = _network(kind, x_fit.shape[1], seed)
        trainer = Trainer(
            model,
            optimizer=optimizer(),
            loss=loss,
            seed=seed,
            callbacks=[stopper()],
            **jit,
        )
        trainer.fit(
            (x_fit, y_fit), epochs=epochs, batch_size=_BATCH, validation_data=validation, verbose=0
        )
    probs = [predict(model, x, num_samples=passes, seed=seed).mean for x in (x_val, x_test)]
    for p in probs:
        if not np.all(np.isfinite(p)):
            raise ValueError(
                f"The {kind!r} model output non-finite probabilities. Received: "
                f"{int(np.sum(~np.isfinite(p)))} non-finite values"
            )
    probs = [np.clip(np.asarray(p, np.float64), 0.0, 1.0) for p in probs]
    return temperature_scale(probs[0], y_val, probs[1]) if temperature else tuple(probs)


def temperature_scale(probs_val, y_val, *others) -> tuple[np.ndarray, ...]:
    """Temperature-scale class probabilities, the temperature fitted on `(probs_val, y_val)`.

    The log-probabilities are the logits (`tfcraft.bayes.TemperatureScaling`).

    Example:

    >>> p = np.array([[0.99, 0.01], [0.02, 0.98], [0.97, 0.03], [0.05, 0.95]])
    >>> val, = temperature_scale(p, np.array([0, 1, 1, 0]))
    >>> bool(np.all(np.abs(val - 0.5) < np.abs(p - 0.5)))  # two of four wrong: softer
    True

    Returns:
        The scaled `probs_val`, then each of `others`.
    """
    from tfcraft.bayes import TemperatureScaling

    log_probs = [
        np.log(np.clip(np.asarray(p, np.float64), 1e-12, 1.0)) for p in (probs_val, *others)
    ]
    scaler = TemperatureScaling().fit(log_probs[0], y_val)
    return tuple(scaler.predict_proba(logits) for logits in log_probs)


def evaluate_probs(
    y_test, probs_test, y_cal=None, probs_cal=None, smoothing: bool = True, seed: int = 0
) -> dict[str, float]:
    """Every metric of the recipe for test probabilities `(n, 2)` (conformal needs `*_cal`).

    The conformal sets use smoothed p-values by default
    (`bayes.ConformalClassifier(smoothing=True)`, draws seeded by `seed`): on
    calibration parts of 40-120 cases the plain sets cover up to
    `1 / (n + 1)` more than asked (more with tied scores); the smoothed ones
    cover the level in expectation.
    """
    from sklearn.metrics import roc_auc_score

    from tfcraft import bayes

    probs_test = np.asarray(probs_test, np.float64)
    positive = probs_test[:, 1]
    row = {
        "accuracy": float(np.mean(probs_test.argmax(axis=1) == y_test)),
        "roc_auc": float(roc_auc_score(y_test, positive)),
        "brier": bayes.brier_score(y_test, positive),
        "ece": bayes.expected_calibration_error(y_test, probs_test, num_bins=15),
        "aurc": bayes.aurc(y_test, probs_test),
        "accuracy_at_90": bayes.accuracy_at_coverage(y_test, probs_test, 0.9),
        "accuracy_at_80": bayes.accuracy_at_coverage(y_test, probs_test, 0.8),
    }
    if probs_cal is not None:
        for level in (0.9, 0.95):
            conformal = bayes.ConformalClassifier(
                level, method="lac", smoothing=smoothing, seed=seed
            ).fit(probs_cal, y_cal)
            sets = conformal.predict_set(probs_test)
            row[f"coverage_{round(level * 100)}"] = bayes.set_coverage(sets, y_test)
            row[f"set_size_{round(level * 100)}"] = bayes.set_size(sets)
    return row


def prepare_split(X, y, split_seed: int):
    """Standardised `(x_fit, y_fit, x_val, y_val, x_test, y_test)` of one split."""
    from sklearn.model_selection import train_test_split

    train, test = split(X, y, split_seed)
    fit, val = train_test_split(train, test_size=0.2, stratify=y[train], random_state=split_seed)
    x_fit, x_val, x_test = _standardise(X[fit], X[val], X[test])
    return x_fit, y[fit], x_val, y[val], x_test, y[test]


def _check_datasets(dataset) -> tuple[str, ...]:
    from tfcraft.datasets import CLINICAL_SETS

    names = (
        CLINICAL_SETS
        if dataset == "all"
        else (dataset,)
        if isinstance(dataset, str)
        else tuple(dataset)
    )
    for name in names:
        check_choice("dataset", name, (*CLINICAL_SETS, "all"))
    return names


def run(
    dataset: str | Sequence[str] = "all",
    models: Sequence[str] = MODELS,
    seeds: Sequence[int] = (0,),
    quick: bool = False,
    out: str | os.PathLike | None = None,
    seed: int = 0,
) -> RecipeResult:
    """Train and judge every model on every data set and split; write the plots.

    Args:
        dataset: A name of `tfcraft.datasets.CLINICAL_SETS`, several, or `"all"`.
        models: Names from `MODELS`.
        seeds: Split seeds (stratified 70/30 splits). Defaults to `(0,)`.
        quick: A smaller budget for demos: 40 epochs at most, patience 8, 3
            ensemble members, 20 passes; with `dataset="all"` only `"cleveland"`.
        out: Folder for `plots/*.png`; no plots when `None`.
        seed: Seed of the models' initialisation and noise.

    Returns:
        A `RecipeResult` with table `metrics` (one row per data set and model,
        means over `seeds`), a summary of what abstention buys, and the
        risk-coverage and reliability figures.
    """
    from tfcraft import bayes
    from tfcraft.datasets import load_clinical

    names = _check_datasets(dataset)
    if quick and dataset == "all":
        names = ("cleveland",)  # the smallest set: a demo in well under a minute
    models = tuple(check_choice("models", m, MODELS) for m in models)
    if not seeds:
        raise ValueError(
            f"Argument `seeds` must hold at least one split seed. Received: seeds={seeds!r}"
        )
    rows, pooled = [], {}
    for name in names:
        X, y, _ = load_clinical(name)
        per_model = {m: [] for m in models}
        for split_seed in seeds:
            x_fit, y_fit, x_val, y_val, x_test, y_test = prepare_split(X, y, split_seed)
            for kind in models:
                probs_val, probs_test = fit_predict(
                    kind, x_fit, y_fit, x_val, y_val, x_test, quick=quick, seed=seed
                )
                per_model[kind].append(evaluate_probs(y_test, probs_test, y_val, probs_val))
                labels, probs = pooled.setdefault((name, kind), ([], []))
                labels.append(y_test)
                probs.append(probs_test)
        for kind, results in per_model.items():
            means = {key: float(np.mean([r[key] for r in results])) for key in results[0]}
            rows.append({"dataset": name, "model": kind, "splits": len(results), **means})
    curves = {
        key: (np.concatenate(labels), np.concatenate(probs))
        for key, (labels, probs) in pooled.items()
    }
    figures = {}
    if out is not None:
        figures["risk_coverage"] = plot_risk_coverage(curves, names, models, out)
        figures["reliability"] = plot_reliability(curves, names, models, out)
    summary = _summary(rows, curves, bayes)
    return RecipeResult("healthcare", {"metrics": rows}, summary, figures)


def _summary(rows, curves, bayes) -> str:
    sentences = []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        best = min((r for r in rows if r["dataset"] == name), key=lambda r: r["aurc"])
        labels, probs = curves[(name, best["model"])]
        everything = bayes.accuracy_at_coverage(labels, probs, 1.0)
        kept = bayes.accuracy_at_coverage(labels, probs, 0.9)
        sentences.append(
            f"On {name}, the {best['model']} model (lowest AURC, {best['aurc']:.3f}): refer the "
            f"10% least certain cases and accuracy on the rest rises from {everything:.1%} to "
            f"{kept:.1%}; its 90% conformal sets hold the true diagnosis for "
            f"{best['coverage_90']:.1%} of patients with {best['set_size_90']:.2f} labels "
            "on average"
        )
    return ". ".join(sentences) + "."


def plot_risk_coverage(curves, names, models, out) -> object:
    """Risk-coverage curves, one panel per set; `curves[(set, model)] = (labels, probs)`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfcraft import bayes

    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        for kind in models:
            labels, probs = curves[(name, kind)]
            curve = bayes.risk_coverage_curve(labels, probs)
            axis.plot(
                curve["coverage"],
                curve["risk"],
                label=f"{kind} (AURC {bayes.aurc(labels, probs):.3f})",
            )
        axis.set_title(name)
        axis.set_xlabel("coverage (share of cases answered)")
        axis.set_ylabel("error rate on answered cases")
        axis.legend(fontsize=7)
    return save_figure(figure, out, "healthcare_risk_coverage")


def plot_reliability(curves, names, models, out) -> object:
    """Reliability diagrams (10 bins of the disease probability), one panel per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfcraft import bayes

    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        axis.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=0.8)
        for kind in models:
            labels, probs = curves[(name, kind)]
            diagram = bayes.reliability_diagram(labels, probs[:, 1], num_bins=10)
            filled = diagram["counts"] > 0
            axis.plot(
                diagram["confidence"][filled],
                diagram["accuracy"][filled],
                marker="o",
                markersize=3,
                label=kind,
            )
        axis.set_title(f"{name}: reliability")
        axis.set_xlabel("predicted probability of disease")
        axis.set_ylabel("observed frequency")
        axis.legend(fontsize=7)
    return save_figure(figure, out, "healthcare_reliability")
