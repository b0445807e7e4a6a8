# Production image: the quantbot command, running as an unprivileged user, with a volume for the
# recovery snapshots (a restarted container resumes where the last one stopped).
FROM python:3.11-slim AS build
# A C compiler for the decoder's compiled hot path (setup.py); only this stage needs it.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY quantbot ./quantbot
COPY connectors ./connectors
COPY sinks ./sinks
COPY flows ./flows
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app --create-home quantbot \
    && mkdir -p /var/lib/quantbot/recovery /var/lib/quantbot/recordings \
    && chown -R quantbot /var/lib/quantbot
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY --chown=quantbot config ./config
USER quantbot
# --http-port serves /healthz, /readyz and /metrics; in a container it must listen beyond loopback.
ENV QUANTBOT_PROFILE=production \
    QUANTBOT_CONFIG_DIR=/app/config \
    QUANTBOT_OBSERVABILITY_HTTP_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/quantbot"]
ENTRYPOINT ["quantbot"]
CMD ["doctor"]
