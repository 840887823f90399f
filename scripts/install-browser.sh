#!/usr/bin/env bash
# Chromium and its WebDriver for the browser tests (tests/test_simulator_browser.py, tests/test_console_browser.py),
# and Debian's Noto CJK fonts, without which the console's Chinese pages (and their screenshots) show boxes.
# Idempotent: does nothing when all are already there. CI runs it before the tests.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
DRIVER=/usr/bin/chromedriver
CJK_FONT=/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
PACKAGES=(chromium chromium-driver fonts-noto-cjk)

if [ -x "$CHROMIUM" ] && [ -x "$DRIVER" ] && [ -f "$CJK_FONT" ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-browser: $CHROMIUM, $DRIVER or $CJK_FONT missing; as root run:" >&2
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

if [ ! -x "$CHROMIUM" ] || [ ! -x "$DRIVER" ] || [ ! -f "$CJK_FONT" ]; then
  echo "install-browser: installed ${PACKAGES[*]} but $CHROMIUM, $DRIVER or $CJK_FONT is still missing" >&2
  exit 1
fi
echo "install-browser: $("$CHROMIUM" --version 2>/dev/null || echo chromium), $("$DRIVER" --version 2>/dev/null | head -n1)"
