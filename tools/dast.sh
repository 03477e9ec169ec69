#!/usr/bin/env bash
# `make dast` (docs/dast.md): serve the portal as production does (gunicorn over TLS, production
# settings, a demo database of its own), scan it with wapiti, signed out, as a signed-in customer
# and as the demo admin, write the reports to build/dast/, and fail on any finding of medium or
# higher, on any header/CSP/cookie/CSRF finding (tools/dast_verdict.py) and on any 5xx answer.
# `make dast-baseline` runs the same with the passive checks only (every change, in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" # this checkout's portal, whatever the venv points at

BIN=${BIN:-.venv/bin}
WAPITI=${WAPITI:-.venv-tools/bin/wapiti}
OUT=build/dast
SCAN_SECONDS=${DAST_SCAN_SECONDS:-150}    # the whole scan's budget, crawl and attacks
ATTACK_SECONDS=${DAST_ATTACK_SECONDS:-20} # at most this long for each attack module
# A Redis database for the scan's rate limits alone: it is emptied first, so that limits left
# from the last scan do not turn this one's requests into 429s. (The tests use 15 and 14.)
REDIS_URL=${PORTAL_DAST_REDIS_URL:-redis://127.0.0.1:6379/13}
# Active modules: injection (sql, exec, file, xss, permanentxss, crlf), open redirect, CSRF,
# HTTP methods, leftover backup and .htaccess files, uploads; plus every passive check (headers,
# CSP, cookie flags, information and stack-trace disclosure, passwords over plain HTTP).
# Left out, each for its reason: ssl (the certificate here is a throw-away self-signed one; TLS
# is the deployment's proxy's), ssrf/xxe/log4shell (they need wapiti's public endpoint, which
# this machine cannot reach), timesql (time-based blind SQL needs minutes per parameter; the
# error- and boolean-based sql module runs), buster/nikto (word lists for other products).
MODULES=${DAST_MODULES:-passive,xss,permanentxss,sql,exec,file,crlf,redirect,csrf,methods,backup,htaccess,upload}

[ -x "$WAPITI" ] || { echo "dast: $WAPITI is missing: run 'make tools' first"; exit 2; }
rm -rf "$OUT" && mkdir -p "$OUT/instance"
port=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
origin="https://127.0.0.1:$port"
agent="portal-dast (wapiti)"

# Production settings, with fresh secrets that exist only for this scan.
export PORTAL_ENV=production
export PORTAL_BASE_URL="$origin"
export PORTAL_SECRET_KEY="$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(48))')"
export PORTAL_DATA_KEYS="$("$BIN/python" -c 'from portal.config import new_data_key; print(new_data_key())')"
export PORTAL_AUDIT_KEYS="$("$BIN/python" -c 'from portal.config import new_data_key; print(new_data_key())')"
export PORTAL_DATABASE_URL="sqlite:///$PWD/$OUT/portal.db"
export PORTAL_INSTANCE_PATH="$PWD/$OUT/instance"
export PORTAL_REDIS_URL="$REDIS_URL"
export PORTAL_MAIL_FROM="notices@example.test"
# One host for the scan (the staff-host split is tested in tests/test_staff_host.py), and the
# admin's minted session may use the app code: a scanner holds no security key, and under the
# production key policy every admin page would be the key page, so nothing else would be scanned.
export PORTAL_STAFF_SAME_HOST=1
export PORTAL_ADMIN_SECURITY_KEY_REQUIRED=0
redis-cli -u "$REDIS_URL" flushdb >/dev/null

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" \
  -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null
"$BIN/portal" db upgrade >"$OUT/setup.log" 2>&1
"$BIN/portal" demo >>"$OUT/setup.log" 2>&1
cookie=$("$BIN/python" tools/dast_session.py "$agent")

# The production settings of gunicorn.conf.py (access log without query strings, preloaded app,
# no forwarded header trusted), with this scan's address, two workers, TLS and log files.
PORTAL_WEB_BIND="127.0.0.1:$port" PORTAL_WEB_WORKERS=2 \
  PORTAL_WEB_ACCESS_LOG="$OUT/access.log" PORTAL_WEB_ERROR_LOG="$OUT/error.log" \
  "$BIN/gunicorn" -c gunicorn.conf.py wsgi:app \
  --certfile "$OUT/cert.pem" --keyfile "$OUT/key.pem" --capture-output &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do
  curl -skf -o /dev/null "$origin/healthz" && break
  kill -0 "$server" 2>/dev/null || { echo "dast: gunicorn did not start"; cat "$OUT/error.log"; exit 2; }
  sleep 0.5
done

started=$(date +%s)
status=0
# Signed in as a demo customer and as the demo admin (the cookies reach the signed-out pages
# too). Left alone so the sessions last the scan: sign-out, and the admin's acts on staff
# members (disable, end sessions, reset MFA), which could end the scan's own staff session.
# The CSRF token is not attacked: every mutation of it is refused before the view runs.
"$WAPITI" -u "$origin/" --scope folder -m "$MODULES" -A "$agent" -C "$cookie" --skip csrf_token \
  -s "$origin/me" -s "$origin/staff/cases" -s "$origin/admin/" -s "$origin/staff/login" \
  -x "$origin/logout" -x "$origin/staff/logout" -x "$origin/admin/staff/*" \
  --max-scan-time "$SCAN_SECONDS" --max-attack-time "$ATTACK_SECONDS" --tasks 4 \
  --flush-session --store-session "$OUT/session" --store-config "$OUT/config" \
  --verify-ssl 0 --no-bugreport -v 1 --log "$OUT/wapiti.log" \
  -f json -o "$OUT/wapiti.json" >"$OUT/wapiti.out" 2>&1 || status=$?
echo "dast: wapiti ran $(( $(date +%s) - started )) s (exit $status); report: $OUT/wapiti.json"
# An error the scanner did not rate is still a finding: the portal answers bad input with 4xx.
# (gunicorn.conf.py's access line: [time] "METHOD path PROTOCOL" status bytes duration id.)
answered_5xx='" 5[0-9][0-9] [0-9]+ [0-9]+ms '
if grep -Eq "$answered_5xx" "$OUT/access.log"; then
  echo "dast: the server answered 5xx:"; grep -E "$answered_5xx" "$OUT/access.log" | head -20; status=1
fi
"$BIN/python" tools/dast_verdict.py "$OUT/wapiti.json" || status=$?
exit "$status"
