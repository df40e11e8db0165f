#!/usr/bin/env bash
# Install whatever this checkout needs and is missing; quick and silent when all is there.
#  - Debian's PostgreSQL 15 server and PostGIS 3 (apt-get, only when absent)
#  - a virtualenv in .venv with issuemap and its development tools, at the versions and
#    hashes requirements.lock pins (only when the lock or pyproject.toml changed since the
#    last install; `make lock` refreshes the lock)
#  - the pages' scripts and styles, from package-lock.json (scripts/vendor_assets.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need_apt+=(postgresql-15)
ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1 || need_apt+=(postgresql-15-postgis-3)
# The browser tests drive Debian's Chromium through Playwright (no browser download).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# Thai glyphs for the browser tests' screenshots (Debian's Chromium ships no Thai font).
[ -d /usr/share/fonts/truetype/tlwg ] || need_apt+=(fonts-thai-tlwg)
# npm fetches the map pages' Leaflet assets (scripts/vendor_assets.sh).
command -v npm >/dev/null || need_apt+=(npm)
# bench/http_load.py and bench/national.py load the service over HTTP with wrk.
command -v wrk >/dev/null || need_apt+=(wrk)
# tests/test_deploy.py checks deploy/: the systemd units with systemd-analyze (no running
# systemd needed), the nginx site with nginx -t and nginx itself, over a certificate that
# openssl makes. Where systemd runs, Debian starts nginx on port 80 as it installs it.
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v openssl >/dev/null || need_apt+=(openssl)
# tests/test_ogc.py reads /ogc with GDAL's own OGC API Features client (ogrinfo, ogr2ogr).
command -v ogrinfo >/dev/null || need_apt+=(gdal-bin)
# tests/test_pgbouncer.py puts its own pgbouncer (transaction mode, on a private socket)
# in front of the test cluster; the service Debian's package sets up is never used.
[ -x /usr/sbin/pgbouncer ] || need_apt+=(pgbouncer)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${need_apt[*]} from Debian" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # Debian starts a system cluster on install; issuemap runs its own and needs none.
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: issuemap needs Python 3.11 or newer (found: $("$python" --version 2>&1))" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing issuemap into .venv" >&2
  # Every dependency, the build backend included, at the version and hash the lock pins;
  # then issuemap itself, built by that backend, with nothing left to resolve.
  if ! {
    .venv/bin/python -m pip install --require-hashes -r requirements.lock &&
      .venv/bin/python -m pip install --no-deps --no-build-isolation -e .
  } >.venv/install.log 2>&1; then
    cat .venv/install.log >&2
    exit 1
  fi
  .venv/bin/python -c 'import geo, api' >/dev/null
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# The Thai and English message catalogs, compiled whenever a .po is newer than its .mo.
for po in geo/locale/*/LC_MESSAGES/issuemap.po; do
  mo=${po%.po}.mo
  lang=$(basename "$(dirname "$(dirname "$po")")")
  if [ ! -f "$mo" ] || [ "$po" -nt "$mo" ]; then
    .venv/bin/pybabel -q compile -D issuemap -l "$lang" -i "$po" -o "$mo" >/dev/null
  fi
done
# Leaflet and its plugins, served from our own origin (the maps never load CDN assets), and
# the hashed, compressed copies /static serves.
scripts/vendor_assets.sh
