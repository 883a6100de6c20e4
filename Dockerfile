# One image for both the stream worker and the web app (production shape, see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY crisis ./crisis
COPY streams ./streams
COPY playbooks ./playbooks
COPY notifiers ./notifiers
COPY web ./web
RUN pip install --no-cache-dir .
RUN useradd --system --home /var/lib/crisis crisis && mkdir -p /var/lib/crisis && chown crisis /var/lib/crisis
USER crisis
ENV CRISIS_DATA_DIR=/var/lib/crisis
EXPOSE 8000
CMD ["crisis", "web", "--host", "0.0.0.0", "--port", "8000"]
