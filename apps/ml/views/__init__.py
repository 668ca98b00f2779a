"""Portal pages of ML strategies (``/ml/``): the list, the create / edit form, the model page
(training with live progress, versions, charts, schedule, deployments, backtest and deploy) and
the POST actions behind its buttons. Reads go through apps.ml.selectors (another user's ML
strategy is a 404), writes through apps.ml.services; a service error is shown at the input it
names, or as a message on the page."""
