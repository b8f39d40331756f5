#!/usr/bin/env bash
# Screenshots of the built site as a reader sees it, each page at a desktop and a phone width, with headless
# Chromium (Debian's package: apt-get install chromium); the pages are those a change to the site touched last.
# The site is served from this machine only, so the shots also show that it needs no internet access (the
# equation is MathML, typeset by the browser).
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
section() {  # page folder, heading id: a copy of the page that starts at that section (headless Chromium paints
            # nothing when it scrolls to an anchor, so the sections before it are hidden instead)
    local hide="let n = document.getElementById('$2').previousElementSibling; while (n) { const p = n.previousElementSibling;"
    hide+=" if (n.tagName !== 'H1') n.style.display = 'none'; n = p; }"
    sed "s#</body>#<script>$hide</script></body>#" "$SITE/$1/index.html" > "$SITE/$1/section-$2.html"
    echo "$1/section-$2.html"
}
for page in "home:" "tutorial-layer:layer/" "theta:$(section layer what-theta-means)" \
            "convert-drop-path:$(section convert models-that-already-drop-paths)" "reproduce:reproduce/" \
            "tuning-search:$(section tuning what-a-search-does)" "tuning-database:$(section tuning setting-up-the-database)" \
            "cli-sweep:cli/sweep/" "api-convert:api/convert/" "results-cpu:$(section results the-papers-claims-at-a-budget-two-cpu-cores-can-train)"; do
    name=${page%%:*}; path=${page#*:}
    shoot "$name-desktop" "$path" 1280 900
    shoot "$name-phone" "$path" 390 844
done
ls docs/screenshots
