# The mailing service in a container: migrations, then schedule.py (scheduler, sending, web pages and API).
#   docker build -t webinar-mailer .
#   docker run --env-file deploy/mailer.env -p 8080:8080 -v mailer-var:/app/var webinar-mailer
# Set [web] enabled = true and host = "0.0.0.0" in config/mailer.toml (or mount your own config/ at
# /app/config) to serve the pages, /api/v1/, /hooks/ and /metrics on port 8080.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MAILER_CONFIG=/app/config \
    MAILER_LOG_FORMAT=json

WORKDIR /app
RUN useradd --system --create-home --home-dir /home/mailer mailer

COPY pyproject.toml README.md ./
COPY mailer ./mailer
RUN pip install --no-compile .

COPY schedule.py ./
COPY config ./config
COPY templates ./templates
RUN mkdir -p /app/var && chown mailer:mailer /app/var
USER mailer
VOLUME ["/app/var"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3).status == 200 else 1)"

# Migrate explicitly first (schedule.py would too, under a lock), so a failing migration stops the container
# with its own message; then run the service until SIGTERM.
CMD ["sh", "-c", "python -c 'from mailer.app import open_app; open_app().close()' && exec python schedule.py"]
