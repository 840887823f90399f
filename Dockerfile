# The bot as a container: `docker compose up` starts it next to a Redis server (compose.yaml).
# Production install: requirements.txt (hashes checked), no test tools and no embedded Redis, so the
# container needs REDIS_URL. Without WECHAT_APPID/WECHAT_APPSECRET it listens on the container's
# loopback only (scripts/docker-entrypoint.sh): development mode is never served on 0.0.0.0 by default.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BOT_PORT=8080 BOT_VAR_DIR=/data
# tini as PID 1: forwards docker stop's SIGTERM to the bot and reaps its worker processes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# The locked dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir --require-hashes -r requirements.txt
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY dialogs ./dialogs
COPY integrations ./integrations
COPY content ./content
COPY scripts/docker-entrypoint.sh /usr/local/bin/docker-entrypoint
# setuptools and wheel come from the lock (build tools are pinned there too).
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
 && useradd --system --home /data bot && mkdir -p /data && chown bot /data
USER bot
# var/: the generated data key (data.key) when BOT_DATA_KEY is not set. Keep it on a volume.
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('BOT_PORT', '8080'), timeout=2).status == 200 else 1)"]
ENTRYPOINT ["/usr/bin/tini", "--", "docker-entrypoint"]
CMD ["bot", "serve", "--workers", "2"]
