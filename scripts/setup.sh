#!/usr/bin/env bash
# Prepares this machine for spmd, doing only what is missing:
#   1. a virtual environment (.venv) with the project installed (editable; the test, aws and
#      neuro extras: CI runs the neuroimaging examples) and the example backend plugin
#      (examples/spmd-process-backend);
#   2. a Docker engine that answers (installed and started where we are root on Debian);
#   3. Debian's debootstrap and docker-registry (base image bootstrap, AWS tests), slurm-wlm,
#      munge and Charliecloud (Slurm backend tests);
#   4. a base image with this Python (pulled, or made from Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "[setup] $*" >&2; }
PYTHON=${PYTHON:-python3}

# 1. virtual environment, reinstalled when pyproject.toml or the extras change
extras=test,aws,neuro
stamp=.venv/.spmd-installed
want=$( (cat pyproject.toml scripts/constraints.txt; echo "$extras") | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing spmd and its extras ($extras) into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -c scripts/constraints.txt -e ".[$extras]" 2> >(grep -v "^WARNING: Location" >&2)
    echo "$want" > "$stamp"
fi
# the example third-party backend plugin, which the conformance tests run the kit on
.venv/bin/python -c "import spmd_process" 2>/dev/null || .venv/bin/python -m pip install --quiet \
    --disable-pip-version-check -e examples/spmd-process-backend 2> >(grep -v "^WARNING: Location" >&2)

# 2 and 3. system packages and the Docker engine
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
[ -x /bin/busybox ] || missing+=(busybox-static)   # a tiny image with no python3 (command-job tests)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing ${missing[*]} with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    elif ! docker info >/dev/null 2>&1; then
        say "no Docker engine answers and I cannot install one (not root, or no apt-get)."
        say "Install and start Docker (https://docs.docker.com/engine/install/), then run this again."
        exit 1
    else
        say "note: ${missing[*]} not installed; some tests need them (apt-get install ${missing[*]})"
    fi
fi

# Slurm and munge from Debian, for the Slurm backend's tests (scripts/slurm.sh starts a
# private single-node cluster; nothing is started here)
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing slurm-wlm and munge with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    else
        say "note: Slurm is not installed; the Slurm tests need it (apt-get install slurm-wlm munge)"
    fi
fi
# Charliecloud (runtime = "charliecloud" on Slurm: ch-run on the nodes, ch-convert where map runs)
if ! command -v ch-run >/dev/null 2>&1 || ! command -v ch-convert >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing charliecloud-runtime and charliecloud-builders with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            charliecloud-runtime charliecloud-builders >/dev/null
    else
        say "note: Charliecloud is not installed; the Slurm charliecloud tests need it (apt-get install charliecloud-runtime charliecloud-builders)"
    fi
fi

# Chromium and its driver, headless, for the dashboard's browser tests (tests/local/test_dashboard.py)
install_chromium() {
    command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing chromium and chromium-driver with apt-get (the dashboard's browser tests)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            chromium chromium-driver >/dev/null
    else
        say "note: chromium is not installed; the dashboard's browser tests need it (apt-get install chromium chromium-driver)"
    fi
}
install_chromium

if ! docker info >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null 2>&1; then
        say "starting dockerd in the background (log: /var/log/spmd-dockerd.log)"
        setsid nohup dockerd >/var/log/spmd-dockerd.log 2>&1 < /dev/null &
        for _ in $(seq 1 120); do
            docker info >/dev/null 2>&1 && break
            sleep 0.5
        done
    fi
    if ! docker info >/dev/null 2>&1; then
        say "no Docker engine answers. Start Docker (Docker Desktop, or 'sudo dockerd &'), then run this again."
        [ -f /var/log/spmd-dockerd.log ] && tail -n 20 /var/log/spmd-dockerd.log >&2
        exit 1
    fi
fi
say "Docker engine: $(docker info --format '{{.ServerVersion}} ({{.Driver}}, {{.NCPU}} CPUs)')"

# 4. a base image with this Python
.venv/bin/spmd image bootstrap --if-missing >&2
