"""Research on top of the backtest engine, pure (no Django): the platform's services and Celery
tasks wrap these, in chunks where a job is long.

- :mod:`.optimise`: objectives, search spaces (:mod:`.space`), the grid and Optuna TPE (a study
  in the database shared by workers), best trial, heat map.
- :mod:`.walkforward`: rolling / anchored windows, optimise in each train window, trade the best
  params out of sample, stitch the OOS equity, IS vs OOS degradation.
- :mod:`.montecarlo`: resample or reshuffle a backtest's trades thousands of times.

Errors are :class:`.errors.ResearchInputError` (a ValidationFailed naming the field).
"""
