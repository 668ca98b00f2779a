# The platform's image: web (uvicorn, ASGI), Celery worker and Celery beat all run from it;
# docker-compose.yml picks the command. Every wheel in requirements/prod.txt is a binary
# manylinux wheel (TA-Lib's bundles its C library), so no compiler is needed.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=tradingplatform.settings.prod \
    NUMBA_CACHE_DIR=/home/app/.cache/numba

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app

WORKDIR /app

# LightGBM's wheel links the system's OpenMP runtime (python:3.12-slim does not have it).
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, so a code change does not reinstall them.
COPY requirements/prod.txt requirements/
RUN pip install -r requirements/prod.txt

COPY . .

# Static files are collected into the image and served by whitenoise. The settings demand a
# SECRET_KEY, ALLOWED_HOSTS and REDIS_URL; these throwaway values exist only for this step
# (collectstatic connects to neither the database nor Redis).
RUN SECRET_KEY=build-only-not-a-secret-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n') \
    ALLOWED_HOSTS=build.invalid REDIS_URL=redis://build.invalid:6379/0 \
    python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p /home/app/.cache/numba /home/app/prometheus && chown -R app:app /home/app

USER app

EXPOSE 8000

CMD ["uvicorn", "tradingplatform.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--lifespan", "on", "--ws", "websockets-sansio", "--proxy-headers"]
