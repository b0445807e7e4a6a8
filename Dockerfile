# Production image: the quantbot command, running as an unprivileged user, with a volume for the
# recovery snapshots and recordings (a restarted container resumes where the last one stopped).
#
#   docker build -t quantbot .
#   docker run --env-file .env -v quantbot:/var/lib/quantbot quantbot replay /var/lib/quantbot/recordings \
#       --recovery-dir /var/lib/quantbot/recovery --http-port 9108
#
# The build runs the commands the README's set-up runs (./dev: apt-get install, pip install/wheel of
# this directory); tests/test_deploy.py holds it to that.
FROM python:3.11-slim AS build
# A C compiler for the decoder's compiled hot path (setup.py); only this stage needs it.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY quantbot ./quantbot
COPY connectors ./connectors
COPY sinks ./sinks
COPY flows ./flows
RUN python -m pip install --no-cache-dir --upgrade pip && python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app --create-home quantbot \
    && mkdir -p /var/lib/quantbot/recovery /var/lib/quantbot/recordings \
    && chown -R quantbot /var/lib/quantbot
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY --chown=quantbot config ./config
USER quantbot
# HTTP_PORT is where `--http-port` serves /healthz, /readyz and /metrics (the compose file passes the
# same number); in a container it listens on every interface, so that Prometheus can scrape it.
ENV QUANTBOT_PROFILE=production \
    QUANTBOT_CONFIG_DIR=/app/config \
    QUANTBOT_OBSERVABILITY_HTTP_HOST=0.0.0.0 \
    HTTP_PORT=9108 \
    PYTHONUNBUFFERED=1
EXPOSE 9108
VOLUME ["/var/lib/quantbot"]
# The slim image has no curl: Python's urllib asks /healthz, and fails on a refused connection or a
# status other than 2xx. A replay's start-up (imports, store connections) takes a few seconds.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['HTTP_PORT'], timeout=4)"]
# SIGTERM stops a flow cleanly (exit 0) within 30 s; give it more before the runtime's SIGKILL
# (`docker stop --time 45`, compose's stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["quantbot"]
CMD ["doctor"]
