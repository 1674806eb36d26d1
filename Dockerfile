FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 AUDIOML_DATA_DIR=/data \
    WEB_WORKERS=4 WEB_THREADS=4 PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg espeak-ng sox \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY audioml ./audioml
COPY datasets_app ./datasets_app
COPY training_app ./training_app
COPY registry_app ./registry_app
RUN pip install --no-cache-dir .
COPY manage.py ./
COPY templates ./templates
COPY static ./static
RUN SECRET_KEY=build-only python manage.py collectstatic --noinput

RUN useradd --create-home audioml && mkdir -p /data && chown audioml /data
USER audioml
VOLUME ["/data"]
EXPOSE 8000
# The web server: gunicorn (WEB_WORKERS processes x WEB_THREADS threads; more options through GUNICORN_CMD_ARGS),
# static files served by whitenoise. `exec` makes gunicorn PID 1, so `docker stop` reaches it and it stops
# gracefully; the per-container metrics folder starts empty; no control socket (gunicorn 27 otherwise shares one
# per user between instances). Workers run from the same image with
# `python manage.py qcluster` and `Q_CLUSTER_NAME=training python manage.py qcluster`, one process per
# container (see "Running in production" in the README).
CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py createcachetable && python manage.py sweep && rm -rf \"$PROMETHEUS_MULTIPROC_DIR\" && mkdir -p \"$PROMETHEUS_MULTIPROC_DIR\" && exec gunicorn audioml.wsgi:application --bind 0.0.0.0:8000 --workers \"$WEB_WORKERS\" --threads \"$WEB_THREADS\" --timeout 300 --access-logfile - --no-control-socket"]
