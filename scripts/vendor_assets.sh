#!/usr/bin/env bash
# Vendor the JavaScript and CSS the map pages, the API docs (/docs, /redoc) and the admin
# pages use, so they load from our own origin under content-hashed names, and axe-core, which the accessibility tests run inside those pages.
#  - installs package.json's exact versions with `npm ci`, which checks every tarball against
#    the integrity hash package-lock.json holds
#  - copies only the files the pages use into api/static/vendor/<package>/<same path>
#    (git-ignored), with each package's package.json, whose version geo.maps.assets checks
#    against the version folium asks for
#  - builds api/static_dist: content-hashed copies of every static file, with gzip and
#    brotli variants (api.static)
#  - quick and silent on a second run: a stamp records the lock and folium's version
set -euo pipefail
cd "$(dirname "$0")/.."

dest=api/static/vendor
# package  files inside node_modules/<package>/  ->  $dest/<package>/<same path>
packages=(
  "leaflet dist/leaflet.js dist/leaflet.css dist/images"
  "leaflet.markercluster dist/leaflet.markercluster.js dist/MarkerCluster.css dist/MarkerCluster.Default.css"
  # Wards and zones drawn from vector tiles (/tiles) when a layer is too big to inline.
  "leaflet.vectorgrid dist/Leaflet.VectorGrid.bundled.min.js"
  # Test-only: the accessibility tests run axe in pages (tests/browser.py); no page loads it.
  "axe-core axe.min.js"
  # The API docs: Swagger UI at /docs, ReDoc's standalone bundle at /redoc (api/routers/docs.py).
  "swagger-ui-dist swagger-ui-bundle.js swagger-ui.css favicon-32x32.png"
  "redoc bundles/redoc.standalone.js"
)
python=.venv/bin/python
# folium ships some of its scripts (the heat layer's) inside the Python package: copied from
# there, so they are the very files folium's element definitions name.
folium=$("$python" -c 'import folium; print(folium.__version__)')
# The admin pages' scripts, styles and fonts come with sqladmin (a Python package) too.
sqladmin=$("$python" -c 'from importlib.metadata import version; print(version("sqladmin"))')
stamp="$dest/.stamp-$(cat package-lock.json scripts/vendor_assets.sh <(echo "$folium $sqladmin") | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  command -v npm >/dev/null || { echo "vendor_assets: npm is needed to fetch map assets" >&2; exit 1; }
  echo "vendor_assets: npm ci" >&2
  # redoc's standalone bundle carries its React; its peer dependencies are not needed.
  npm ci --ignore-scripts --no-audit --no-fund --legacy-peer-deps --loglevel=error >&2
  rm -rf "$dest"
  mkdir -p "$dest"
  for entry in "${packages[@]}"; do
    read -r name files <<<"$entry"
    mkdir -p "$dest/$name"
    for f in $files package.json; do
      src="node_modules/$name/$f"
      [ -e "$src" ] || { echo "vendor_assets: $name has no $f" >&2; exit 1; }
      # Keep the package's own layout: CSS finds images/ relatively.
      (cd "node_modules/$name" && cp -R --parents "$f" "$OLDPWD/$dest/$name/")
    done
  done
  mkdir -p "$dest/folium/templates"
  "$python" - "$dest/folium" <<'PY'
import json, shutil, sys
from importlib import resources
from pathlib import Path

import folium

out = Path(sys.argv[1])
shutil.copy(Path(str(resources.files("folium") / "templates" / "leaflet_heat.min.js")),
            out / "templates")
(out / "package.json").write_text(json.dumps({"name": "folium", "version": folium.__version__}))
PY
  "$python" - "$dest/sqladmin" "$sqladmin" <<'PY'
import json, shutil, sys
from importlib import resources
from pathlib import Path

out, version = Path(sys.argv[1]), sys.argv[2]
shutil.copytree(Path(str(resources.files("sqladmin") / "statics")), out, dirs_exist_ok=True)
(out / "package.json").write_text(json.dumps({"name": "sqladmin", "version": version}))
PY
  touch "$stamp"
fi
# Hashed, compressed copies of api/static: only what changed since the last build is redone.
"$python" -m geo.maps.assets api/static api/static_dist
