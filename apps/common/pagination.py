"""The API's pagination: limit/offset with a ceiling, so `?limit=100000000` cannot turn one request
into a dump of a whole table."""

from rest_framework.pagination import LimitOffsetPagination


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    max_limit = 1000
