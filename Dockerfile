# The bot as a container: `docker compose up` starts it next to a Redis server.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 BOT_HOST=0.0.0.0 BOT_PORT=8080 BOT_VAR_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY dialogs ./dialogs
COPY integrations ./integrations
COPY content ./content
RUN pip install --no-cache-dir . && useradd --system --home /data bot && mkdir -p /data && chown bot /data
USER bot
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz').status==200 else 1)"
CMD ["bot", "serve", "--workers", "2"]
