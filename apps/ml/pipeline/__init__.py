"""The ML pipeline: pure pandas / NumPy / scikit-learn / LightGBM, no Django, no I/O.

features.py   the feature catalogue and ``features_build(candles, names, timeframe=, higher_timeframe=)``:
              a float64 frame on the candles' index; row t uses candles up to t only (the
              higher timeframe's only once its bar has closed); NaN during warm-up.
              ``features_warmup``: the window after which a tick's features equal the full
              history's (what a deployment computes on).
labels.py     ``LabelSpec`` and ``labels_build(candles, spec) -> Labels``: the label per bar
              (1.0 / 0.0, NaN where the future is not known yet) and the bar its outcome is
              known at (``end``), which purging needs.
splits.py     ``purged_walk_forward(times, ends, n_splits=, embargo=, min_train=)``: train before
              test, training samples whose label outcome reaches into the test block purged, and
              an embargo of bars between them.
estimators.py the three model families (``logistic``, ``hist_gb``, ``lightgbm``), their
              parameters validated, seeded, fitted and applied single-threaded; importances.
training.py   ``TrainConfig`` and ``train(candles or [candles, ...], config, progress=,
              shuffle_labels=) -> TrainResult``: features, labels, walk-forward out-of-sample
              metrics and the backtest of the out-of-sample signals, the final fit,
              importances, the drift reference.
bundle.py     ``ModelBundle``: the fitted estimator with everything needed to use it;
              ``bundle_dumps`` / ``bundle_loads`` (bytes, checked against a SHA-256);
              ``bundle_signals(bundle, candles)``: the strategy's signal frame and probabilities.
drift.py      ``reference_distribution`` (training bins) and ``psi`` (live vs reference).
errors.py     MLInputError (a bad configuration or data, with the field it is about),
              ModelLoadError.
"""
