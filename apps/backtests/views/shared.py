"""What the backtests pages share: reads that 404 for outsiders, the run form's context (the
catalogue JSON its script reads, the stored timeframes per instrument), initial values that
repeat a backtest, and the state of a job for its live progress bar."""

from collections.abc import Callable
from typing import Any

from django.http import Http404

from apps.backtests import selectors
from apps.backtests.forms import RunSpecForm, run_initial, space_defaults
from apps.backtests.models import Backtest, JobStatus
from apps.common.errors import NotFound
from apps.marketdata import selectors as market_selectors
from apps.strategies import selectors as strategy_selectors
from apps.users.requests import AuthenticatedHttpRequest

LIST_RECENT = 20


def or_404[T](read: Callable[..., T], **kwargs: Any) -> T:
    try:
        return read(**kwargs)
    except NotFound as exc:
        raise Http404(exc.message) from exc


# --- shared bits --------------------------------------------------------------------------------


def catalogue_json(catalogue: list[dict[str, Any]]) -> dict[str, Any]:
    """What the form's script needs per strategy: name, summary, params schema, search space."""
    return {
        item["key"]: {
            "name": item["name"],
            "summary": item["summary"],
            "params": item["params_schema"].get("properties", {}),
            "space": space_defaults(item["params_schema"]),
        }
        for item in catalogue
    }


def form_kwargs(request: AuthenticatedHttpRequest) -> dict[str, Any]:
    return {
        "catalogue": strategy_selectors.strategy_catalogue(),
        "rule_sets": list(strategy_selectors.rule_set_list_for_user(user=request.user)),
        "instruments": list(market_selectors.instrument_list()),
    }


def form_page_context(form: RunSpecForm, kwargs: dict[str, Any]) -> dict[str, Any]:
    instruments = kwargs["instruments"]
    return {
        "form": form,
        "form_config": {
            "catalogue": catalogue_json(kwargs["catalogue"]),
            "timeframes": {str(i.pk): market_selectors.stored_timeframes(instrument=i) for i in instruments},
            "ruleSets": {f"rules:{rs.pk}": rs.name for rs in kwargs["rule_sets"]},
        },
    }


def default_initial(request: AuthenticatedHttpRequest, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Initial values from the query string: ``?from=<backtest id>`` repeats a backtest,
    ``?strategy=<key or rules:id>`` preselects a strategy; else the first instrument with
    candles on its default timeframe."""
    initial: dict[str, Any] = {}
    source = request.GET.get("from", "")
    if source.isdigit():
        backtest = or_404(selectors.backtest_get_for_user, user=request.user, backtest_id=int(source))
        initial = run_initial(backtest)
    elif request.GET.get("strategy"):
        initial["strategy"] = request.GET["strategy"]
    if "instrument" not in initial:
        for instrument in kwargs["instruments"]:
            timeframe = market_selectors.default_timeframe(instrument=instrument)
            if timeframe:
                initial.update(instrument=instrument.pk, timeframe=timeframe)
                break
    return initial


def status_payload(kind: str, job: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "id": job.pk,
        "status": job.status,
        "progress": job.progress,
        "error": job.error,
        "finished": job.is_finished,
    }


def job_context(kind: str, job: Any, status_url: str) -> dict[str, Any]:
    return {
        "job_config": {**status_payload(kind, job), "statusUrl": status_url},
        "progress_pct": round(job.progress * 100),
    }


def finished_backtest(request: AuthenticatedHttpRequest, backtest_id: int) -> Backtest:
    backtest = or_404(selectors.backtest_get_for_user, user=request.user, backtest_id=backtest_id)
    if backtest.status != JobStatus.SUCCEEDED:
        raise Http404("This backtest has no results yet.")
    return backtest


def _rounded(values: list[Any], digits: int) -> list[Any]:
    return [round(v, digits) if isinstance(v, float) else v for v in values]


def chart_curves(curves: dict[str, Any]) -> dict[str, list[Any]]:
    """Stored curves for the page's chart script, rounded to what a chart can show (money to
    the cent, drawdown to 0.0001 %), which halves the JSON of a 5,000-point curve."""
    return {
        "t": list(curves.get("t") or []),
        "equity": _rounded(curves.get("equity") or [], 2),
        "benchmark": _rounded(curves.get("benchmark") or [], 2),
        "drawdown": _rounded(curves.get("drawdown") or [], 6),
    }
