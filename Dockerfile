# The gridshift worker image. Built by docker-compose.yml; runs as a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY optimizer ./optimizer
COPY streams ./streams
COPY scenarios ./scenarios
# Extras per image: the workers' can also run backtests (`gridshift backtest northern-data`
# with the data folder mounted); compose builds the sources' and the site services' images with
# theirs. A writable folder for the sources' checkpoints.
ARG EXTRAS="[backtest]"
RUN pip install ".${EXTRAS}" && useradd --create-home --uid 10001 gridshift \
 && mkdir -p /var/lib/gridshift-sources && chown gridshift /var/lib/gridshift-sources
USER gridshift
# Every interface of the container, so a published port reaches it. Off loopback the API is
# safe by default: with no token set, reads and writes are refused (only /health, /metrics and
# the data-free dashboard page answer); set GRIDSHIFT_HTTP_READ_TOKEN and GRIDSHIFT_HTTP_TOKEN (docs/SECURITY.md).
ENV GRIDSHIFT_HTTP_HOST=0.0.0.0 GRIDSHIFT_HTTP_PORT=8780
EXPOSE 8780
# /health needs no token and answers any Host name.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8780/health', timeout=4).status == 200 else 1)"
ENTRYPOINT ["gridshift"]
CMD ["worker"]
