#!/usr/bin/env bash
# Chromium and its WebDriver for the browser test (tests/test_simulator_browser.py).
# Idempotent: does nothing when both are already there. CI runs it before the tests.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
DRIVER=/usr/bin/chromedriver
PACKAGES=(chromium chromium-driver)

if [ -x "$CHROMIUM" ] && [ -x "$DRIVER" ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-browser: $CHROMIUM and/or $DRIVER missing; as root run:" >&2
  echo "  apt-get update && apt-get install -y ${PACKAGES[*]}" >&2
  echo "(without them the browser test is skipped locally and fails when CI is set)" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: no apt-get here; install ${PACKAGES[*]} (Debian names) so that $CHROMIUM and $DRIVER exist" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when apt does not know the packages yet (fresh container).
if ! apt-cache show "${PACKAGES[@]}" >/dev/null 2>&1; then
  apt-get update -qq
fi
if ! apt-get install -y -qq "${PACKAGES[@]}"; then
  # Lists may be stale (a moved mirror version): refresh once and retry.
  apt-get update -qq
  apt-get install -y -qq "${PACKAGES[@]}"
fi

if [ ! -x "$CHROMIUM" ] || [ ! -x "$DRIVER" ]; then
  echo "install-browser: installed ${PACKAGES[*]} but $CHROMIUM or $DRIVER is still missing" >&2
  exit 1
fi
echo "install-browser: $("$CHROMIUM" --version 2>/dev/null || echo chromium), $("$DRIVER" --version 2>/dev/null | head -n1)"
