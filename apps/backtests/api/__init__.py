"""The backtests REST API: serializers and views (see views.py for the routes)."""
