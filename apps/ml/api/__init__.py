"""The ML strategies' REST API (serializers and views; routes in apps/ml/api_urls.py)."""
