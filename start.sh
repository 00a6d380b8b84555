#!/usr/bin/env bash
# The image's default command (CMD bash /usr/bin/start.sh): runs the tasks /in/env.yaml asks for.
# Outside the image it runs the checkout's app/ (set DEFAULT_ENV_FILE_PATH to use another env.yaml).
set -euo pipefail
app=/app/start.py
if [ ! -f "$app" ]; then
    app="$(cd "$(dirname "$(readlink -f "$0")")" && pwd)/app/start.py"
fi
exec python3 "$app" "$@"
