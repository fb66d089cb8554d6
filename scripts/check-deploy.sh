#!/usr/bin/env bash
# Checks deploy/: the Prometheus alert rules (`promtool check rules`, then their unit tests with
# `promtool test rules`) and that the Grafana dashboard is valid JSON. Installs promtool (Debian's `prometheus`
# package) when missing. The API tests check that every metric these files use is one wxshop exports.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null; then
    echo "check-deploy: installing promtool (Debian package prometheus)" >&2
    sudo_=""
    [ "$(id -u)" = 0 ] || sudo_=sudo
    $sudo_ apt-get update -q >/dev/null
    # The package's own service is not wanted here: only its promtool.
    $sudo_ env RUNLEVEL=1 apt-get install -y -q --no-install-recommends prometheus >/dev/null
    $sudo_ pkill -x prometheus 2>/dev/null || true
fi
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["panels"], "no panels"; print("  SUCCESS: dashboard with", len(d["panels"]), "panels")' deploy/grafana/wxshop.json
