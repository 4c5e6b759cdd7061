# syntax=docker/dockerfile:1
#
# Ephemeral query-image cache. Nothing in this image is ever written at run time: the
# container runs with a read-only root file system, and the only writable place is a tmpfs
# at /dev/shm (TMPDIR, and the storage folder of the tmpfs backend). No VOLUME on purpose:
# a volume would be a disk. Run it like this:
#
#   docker run --rm --name query-cache \
#     --read-only \
#     --tmpfs /dev/shm:rw,noexec,nosuid,nodev,size=2g,mode=1777 \
#     --ulimit core=0 --ulimit memlock=-1 \
#     --cap-drop ALL --security-opt no-new-privileges \
#     --memory 3g --memory-swap 3g \
#     -p 8080:8080 -p 127.0.0.1:8081:8081 \
#     -e CACHE_OPS_ADMIN_TOKEN \
#     query-cache
#
# --shm-size=2g instead of --tmpfs /dev/shm:... works too. --ulimit core=0 keeps core dumps
# off even before the service sets RLIMIT_CORE itself. --ulimit memlock=-1 lets the service
# mlockall() (guarantees.lock_memory) without any capability: an unprivileged process may
# lock up to RLIMIT_MEMLOCK, which must be at least storage.max_bytes plus a margin.
# --memory-swap equal to --memory gives the container no swap at all.
# The ops port (8081: /metrics, /admin/*) is published on loopback only: expose it to the
# monitoring network, never to the public.

FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# pdqhash (PDQ perceptual hashes) has no Linux wheel: pip builds it from its sdist, which
# needs a C++ compiler; our own PDQ core (cache/intake/_pdqcore.c, setup.py) needs the C
# compiler that comes with it. In this stage only: the final image has no compiler.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml setup.py ./
COPY cache/ cache/
# Installs the project and its dependencies, whose version ranges pyproject.toml pins. The
# service runs from /app/cache (copied below), so the compiled PDQ core goes there too.
RUN /opt/venv/bin/pip install --no-cache-dir . \
    && cp /opt/venv/lib/python3*/site-packages/cache/intake/_pdqcore.*.so cache/intake/ \
    && /opt/venv/bin/python -m compileall -q /src/cache


FROM python:3.11-slim

# Bind to all interfaces inside the container: the container's network namespace is the
# boundary (publish 8081 only to the monitoring network). TMPDIR points at the tmpfs, so no
# library can spill a temporary file to disk. No .pyc files are written at run time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/dev/shm \
    CACHE_SERVER_HOST=0.0.0.0 \
    CACHE_OPS_HOST=0.0.0.0

RUN groupadd --system --gid 10001 query-cache \
    && useradd --system --no-log-init --uid 10001 --gid 10001 \
       --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin query-cache

WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /src/cache/ cache/
COPY server.py config.toml ./

USER 10001:10001

EXPOSE 8080 8081

# SIGTERM purges every item, then the process exits 0 (allow server.shutdown_timeout + a few
# seconds before a SIGKILL: docker stop --time 30).
STOPSIGNAL SIGTERM

# slim has no curl: use the interpreter. Port 8080 = server.port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]

CMD ["python", "server.py", "--config", "config.toml"]
