FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 AUDIOML_DATA_DIR=/data OMP_WAIT_POLICY=PASSIVE
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
# The web server; the worker service runs `python manage.py qcluster` (see docker-compose.yml).
CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py createcachetable && gunicorn audioml.wsgi:application --bind 0.0.0.0:8000 --workers ${WEB_WORKERS:-4} --timeout 300 --access-logfile -"]
