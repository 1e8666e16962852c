# Production image: one ASGI process (HTTP + WebSockets) per container; run
# several behind a load balancer with sticky WebSocket sessions (README).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000 \
    STATIC_ROOT=/app/staticfiles \
    MEDIA_ROOT=/app/var/media

WORKDIR /app

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

# Runtime dependencies only (requirements-dev.txt stays out of the image).
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .

# Static files are collected at build time. The settings refuse to load
# without SECRET_KEY when DEBUG is off, so the build uses a throwaway one that
# exists only in this RUN step (never in the image's environment).
RUN DEBUG=0 SECRET_KEY=build-time-collectstatic-only ALLOWED_HOSTS=localhost \
        python manage.py collectstatic --noinput -v 0 \
    && mkdir -p /app/var/media \
    && chown -R app:app /app/var

USER app

EXPOSE 8000

# /healthz answers when the process is alive. The Host header is the first
# ALLOWED_HOSTS entry so Django's host check accepts the probe.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; h = os.environ.get('ALLOWED_HOSTS', 'localhost').split(',')[0].strip().lstrip('.*') or 'localhost'; u.urlopen(u.Request('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), headers={'Host': h}), timeout=4)"]

# The launcher is uvicorn plus a graceful drain on SIGTERM (docs/operations.md).
CMD ["sh", "-c", "exec python -m voiceai.ops.serve --host 0.0.0.0 --port ${PORT}"]
