#!/usr/bin/env bash
# Screenshots of the built site as a reader sees it: the front page, a tutorial and an API page, each at a
# desktop and a phone width, with headless Chromium (Debian's package: apt-get install chromium).
#   bash docs/screenshots.sh            # writes docs/screenshots/*.png
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$SITE"' EXIT
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet --site-dir "$SITE"
python -m http.server 8765 --bind 127.0.0.1 --directory "$SITE" >/dev/null 2>&1 &
SERVER=$!
sleep 1
mkdir -p docs/screenshots
shoot() {  # name, path, width, height
    chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
        --window-size="$3,$4" --virtual-time-budget=4000 --screenshot="docs/screenshots/$1.png" \
        "http://127.0.0.1:8765/$2" 2>/dev/null
}
for page in "home:" "tutorial-layer:layer/" "api-inference:api/inference/"; do
    name=${page%%:*}; path=${page#*:}
    shoot "$name-desktop" "$path" 1280 900
    shoot "$name-phone" "$path" 390 844
done
ls docs/screenshots
