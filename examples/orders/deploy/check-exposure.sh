#!/bin/sh
# Asks a web server for every file and folder of this service and fails when one is served.
# Run it from the application root, with the URL that folder would have if a web server served
# it: after each deploy, and after moving anything.
#
#   sh deploy/check-exposure.sh https://example.com          # the app root uploaded as public_html
#   sh deploy/check-exposure.sh https://example.com/orders   # ... or as public_html/orders
#
# Every answer must be 403 (the shipped .htaccess) or 404 (the file is not there, or the service
# itself answered): a 2xx means that file, maybe .env or a private key, is readable by anyone.
set -u
base=${1:?"usage: sh deploy/check-exposure.sh URL (run it from the application root)"}
base=${base%/}
exposed=0
checked=0
body=$(mktemp)
trap 'rm -f "$body"' EXIT

probe() {  # probe PATH: request one path, report it, remember a 2xx
    status=$(curl -s -g -o "$body" -w '%{http_code}' "$base/$1")
    checked=$((checked + 1))
    case $status in
        2??) exposed=$((exposed + 1)); echo "EXPOSED $status /$1 ($(wc -c < "$body") bytes)" ;;
        *) [ -n "${VERBOSE:-}" ] && echo "ok      $status /$1" ;;
    esac
}

# Not every file of .git (there may be thousands), but the ones that give it away.
for path in .git/config .git/HEAD; do probe "$path"; done
# Everything else here: files, and folders (with a trailing slash, as a listing is asked for).
find . \( -name .git -o -name .venv -o -name venv \) -prune -o -print | sed 's|^\./||' | sort |
    while IFS= read -r path; do
        [ "$path" = "." ] && continue
        if [ -d "$path" ]; then echo "$path/"; else echo "$path"; fi
    done > "$body.list"
while IFS= read -r path; do probe "$(printf '%s' "$path" | sed 's/ /%20/g')"; done < "$body.list"
rm -f "$body.list"

echo "$checked paths asked for at $base: $exposed served"
[ "$exposed" -eq 0 ]
